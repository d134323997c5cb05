//! What one cell of a CRM export means: a yes/no flag in the spellings exports use, a number
//! (with a decimal point, or a decimal comma and thousands dots), a phone number as people
//! write it, and the type a whole column takes.

use phonenumber::country::Id as Country;
use phonenumber::{Mode, PhoneNumber};

/// The spellings a yes/no cell may take, for error messages.
pub const FLAG_SPELLINGS: &str = "1/0, Y/N, yes/no, true/false, x/blank";

/// A cell that is not one of `FLAG_SPELLINGS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAFlag;

/// A yes/no cell, in any case: `Ok(None)` when blank, `Err` for anything else than
/// `FLAG_SPELLINGS`. Salesforce writes checkboxes as 1/0; many sheets mark a yes with an x.
pub fn flag(value: &str) -> Result<Option<bool>, NotAFlag> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "1" | "y" | "yes" | "true" | "x" => Ok(Some(true)),
        "0" | "n" | "no" | "false" => Ok(Some(false)),
        _ => Err(NotAFlag),
    }
}

/// How the file writes numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decimals {
    /// `1500.5`; a column whose dotted values all look like thousands (`1.500`) is refused.
    #[default]
    Unsaid,
    /// `1500.5`, and `1.500` is one and a half.
    Point,
    /// `1.500,5`: dots group thousands, the comma is the decimal mark.
    Comma,
}

/// A number cell: an optional minus, digits without a leading zero (codes such as `01234`
/// stay text), and a fraction; no plus sign, exponent or spaces. `None` if it is not one.
pub fn number(value: &str, decimals: Decimals) -> Option<f64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = match decimals {
        Decimals::Comma => {
            let (whole, fraction) = digits.split_once(',').unwrap_or((digits, "0"));
            let mut groups = whole.split('.');
            let first = groups.next().unwrap_or("");
            let grouped = whole.contains('.');
            if grouped && (first.len() > 3 || !groups.all(|g| g.len() == 3 && all_digits(g))) {
                return None;
            }
            (whole.replace('.', ""), fraction)
        }
        _ => {
            let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
            (whole.to_owned(), fraction)
        }
    };
    let plain = all_digits(&whole) && all_digits(fraction) && (whole == "0" || !whole.starts_with('0'));
    plain.then(|| {
        format!("{whole}.{fraction}").parse::<f64>().ok().map(|n| if value.starts_with('-') { -n } else { n })
    })?
}

/// Whether a number written with a decimal point could be a thousands-grouped one (`1.500`,
/// `10.000`, `1.000.000`): what a European export with `;` delimiters writes.
pub fn looks_grouped(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let mut groups = digits.split('.');
    let first = groups.next().unwrap_or("");
    let rest: Vec<&str> = groups.collect();
    !rest.is_empty()
        && (1..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_digit())
        && rest.iter().all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
}

/// What a column holds, widened value by value over the whole file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColumnType {
    /// Blank in every row so far.
    #[default]
    Empty,
    Number,
    Flag,
    Text,
}

impl ColumnType {
    /// The type that holds this column's values so far and `value` too.
    pub fn widen(self, value: &str, decimals: Decimals) -> Self {
        let value = value.trim();
        if value.is_empty() || self == ColumnType::Text {
            return self;
        }
        let this = if number(value, decimals).is_some() {
            ColumnType::Number
        } else if matches!(value.to_ascii_lowercase().as_str(), "yes" | "no" | "true" | "false") {
            ColumnType::Flag
        } else {
            ColumnType::Text
        };
        match self {
            ColumnType::Empty => this,
            seen if seen == this => seen,
            _ => ColumnType::Text,
        }
    }
}

/// A phone number as people write it (`+49 30 123456`, `(212) 555-0100`, `212.555.0100`,
/// `0049301234567`), in E.164; numbers without a country code are read as `country`'s.
pub fn phone(value: &str, country: Option<Country>) -> Result<String, String> {
    let parsed: Result<PhoneNumber, _> = phonenumber::parse(country, value);
    match parsed {
        Ok(number) if phonenumber::is_valid(&number) => Ok(number.format().mode(Mode::E164).to_string()),
        Ok(_) => Err(format!("{value:?} is not a valid phone number")),
        Err(_) if country.is_none() && !value.trim_start().starts_with('+') => Err(format!(
            "{value:?} has no country code (+49 …); pass --default-country to read such numbers as one country's"
        )),
        Err(err) => Err(format!("{value:?} is not a phone number ({err})")),
    }
}

/// Zone names that are fixed offsets or legacy rules rather than a place's time, with the
/// IANA name people usually mean: calling hours would be off by an hour half the year.
pub fn legacy_zone(name: &str) -> Option<&'static str> {
    Some(match name {
        "EST" => "America/New_York",
        "MST" => "America/Denver",
        "HST" => "Pacific/Honolulu",
        "CET" | "MET" => "Europe/Berlin",
        "EET" => "Europe/Athens",
        "WET" => "Europe/Lisbon",
        "EST5EDT" => "America/New_York",
        "CST6CDT" => "America/Chicago",
        "MST7MDT" => "America/Denver",
        "PST8PDT" => "America/Los_Angeles",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_the_spellings_exports_use_and_nothing_else() {
        for yes in ["1", "Y", "y", "yes", "YES", "True", "x", "X", " x "] {
            assert_eq!(flag(yes), Ok(Some(true)), "{yes}");
        }
        for no in ["0", "N", "no", "No", "false", "FALSE"] {
            assert_eq!(flag(no), Ok(Some(false)), "{no}");
        }
        assert_eq!(flag(""), Ok(None));
        for other in ["maybe", "2", "-", "ja", "on"] {
            assert_eq!(flag(other), Err(NotAFlag), "{other}");
        }
    }

    #[test]
    fn numbers_are_plain_decimals_or_with_a_decimal_comma_grouped_decimals() {
        for (text, n) in [("0", 0.0), ("12", 12.0), ("-3", -3.0), ("2.5", 2.5), ("0.25", 0.25), ("1.500", 1.5)] {
            assert_eq!(number(text, Decimals::Unsaid), Some(n), "{text}");
        }
        for no in ["01234", "", "1e5", "1e3", "+49301234", "1.", ".5", "NaN", "1,5", "1 000"] {
            assert_eq!(number(no, Decimals::Unsaid), None, "{no}");
        }
        for (text, n) in [("1.500", 1500.0), ("10.000", 10_000.0), ("1.234,56", 1234.56), ("2,5", 2.5), ("-7", -7.0)] {
            assert_eq!(number(text, Decimals::Comma), Some(n), "{text}");
        }
        for no in ["31.12.2025", "1.50", "12.3456,1", "1,2,3"] {
            assert_eq!(number(no, Decimals::Comma), None, "{no}");
        }
        assert!(looks_grouped("1.500") && looks_grouped("10.000") && looks_grouped("1.000.000"));
        assert!(!looks_grouped("1.5") && !looks_grouped("2.25") && !looks_grouped("1500"));
    }

    #[test]
    fn a_column_widens_to_the_type_that_holds_every_value() {
        let typed = |values: &[&str]| values.iter().fold(ColumnType::Empty, |t, v| t.widen(v, Decimals::Unsaid));
        assert_eq!(typed(&["1", "", "2.5"]), ColumnType::Number);
        assert_eq!(typed(&["Yes", "no"]), ColumnType::Flag);
        assert_eq!(typed(&["1067", "01067"]), ColumnType::Text, "a code with a leading zero anywhere");
        assert_eq!(typed(&["1", "yes"]), ColumnType::Text);
        assert_eq!(typed(&["", ""]), ColumnType::Empty);
    }

    #[test]
    fn phones_as_people_write_them_become_e164() {
        let us = Some(Country::US);
        assert_eq!(phone("+49 30 123456", None).unwrap(), "+4930123456");
        assert_eq!(phone("(212) 555-0100", us).unwrap(), "+12125550100");
        assert_eq!(phone("212.555.0100", us).unwrap(), "+12125550100");
        assert_eq!(phone("0049301234567", Some(Country::DE)).unwrap(), "+49301234567");
        assert!(phone("(212) 555-0100", None).unwrap_err().contains("--default-country"));
        assert!(phone("12345", us).is_err());
    }
}
