//! The feature schema: each column's type as inferred from the training data, and how a value
//! (a CSV cell, or a lead attribute when serving) becomes a number. Every feature is one `f64`
//! per row: the value for numbers and flags (0/1), the category's index for categories, and
//! `NaN` when missing. Models are trained on, and predict from, such rows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::data::{Table, is_missing};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub features: Vec<Feature>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// The column's name, which is also the lead attribute it is read from.
    pub name: String,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Numeric,
    /// Yes/no, true/false.
    Flag,
    /// The categories seen in training, most frequent first; anything else is "other", index
    /// `categories.len()`. (Models decide what to do with rare ones.)
    Categorical {
        categories: Vec<String>,
        /// Read as pandas reads a category column for LightGBM: a value is its category only
        /// when spelled exactly so, and anything else (unseen, or missing) is NaN.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pandas: bool,
    },
}

/// A value as a lead holds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Text(&'a str),
    Number(f64),
    Flag(bool),
}

impl Schema {
    /// Infers each column's type: numeric if every present value is a number, a flag if every
    /// one is yes/no or true/false, a category otherwise. Columns with a single value and no
    /// missing cells carry no information and are left out.
    pub fn infer(table: &Table) -> Self {
        let features = table
            .names
            .iter()
            .zip(&table.columns)
            .filter_map(|(name, column)| {
                let present: Vec<&str> = column.iter().flatten().map(String::as_str).collect();
                let constant = present.iter().all(|v| v.eq_ignore_ascii_case(present.first().copied().unwrap_or("")));
                if constant && present.len() == column.len() {
                    return None;
                }
                let kind = if present.iter().all(|v| parse_number(v).is_some()) {
                    Kind::Numeric
                } else if present.iter().all(|v| parse_flag(v).is_some()) {
                    Kind::Flag
                } else {
                    let mut seen: HashMap<&str, usize> = HashMap::new();
                    for value in &present {
                        *seen.entry(value).or_default() += 1;
                    }
                    let mut counts: Vec<(String, usize)> = seen.into_iter().map(|(v, n)| (v.to_string(), n)).collect();
                    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    let categories = counts.into_iter().map(|(c, _)| c).collect();
                    Kind::Categorical { categories, pandas: false }
                };
                Some(Feature { name: name.clone(), kind })
            })
            .collect();
        Self { features }
    }

    /// The table's rows encoded: `rows[row][feature]`.
    pub fn encode_table(&self, table: &Table) -> Vec<Vec<f64>> {
        let columns: Vec<Option<&Vec<Option<String>>>> = self
            .features
            .iter()
            .map(|f| table.names.iter().position(|n| *n == f.name).map(|c| &table.columns[c]))
            .collect();
        (0..table.rows())
            .map(|row| {
                self.features
                    .iter()
                    .zip(&columns)
                    .map(|(feature, column)| match column.and_then(|c| c[row].as_deref()) {
                        Some(cell) => feature.encode(Value::Text(cell)),
                        None => f64::NAN,
                    })
                    .collect()
            })
            .collect()
    }

    /// The index of the feature read from attribute `name`, if any. LightGBM writes spaces in
    /// column names as underscores, so `Lead Source` also finds `Lead_Source`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.features.iter().position(|f| f.name == name).or_else(|| {
            let underscored = name.replace(' ', "_");
            self.features.iter().position(|f| f.name == underscored)
        })
    }
}

impl Feature {
    /// A value as this feature's number; `NaN` when it is missing or cannot be read as this
    /// feature's type. Unknown categories read as "other".
    pub fn encode(&self, value: Value<'_>) -> f64 {
        if let Kind::Categorical { categories, pandas: true } = &self.kind {
            let text = match value {
                Value::Text(text) => text.to_owned(),
                Value::Number(n) => n.to_string(),
                Value::Flag(flag) => flag.to_string(),
            };
            return categories.iter().position(|c| *c == text).map_or(f64::NAN, |i| i as f64);
        }
        if let Value::Text(text) = value
            && is_missing(text)
        {
            return f64::NAN;
        }
        match &self.kind {
            Kind::Numeric => match value {
                Value::Number(n) => n,
                Value::Text(text) => parse_number(text).unwrap_or(f64::NAN),
                Value::Flag(flag) => f64::from(u8::from(flag)),
            },
            Kind::Flag => match value {
                Value::Flag(flag) => f64::from(u8::from(flag)),
                Value::Text(text) => parse_flag(text).map_or(f64::NAN, |f| f64::from(u8::from(f))),
                Value::Number(n) if n == 0.0 || n == 1.0 => n,
                Value::Number(_) => f64::NAN,
            },
            Kind::Categorical { categories, .. } => {
                let number;
                let text = match value {
                    Value::Text(text) => text.trim(),
                    Value::Number(n) => {
                        number = n.to_string();
                        &number
                    }
                    Value::Flag(flag) => {
                        if flag {
                            "Yes"
                        } else {
                            "No"
                        }
                    }
                };
                let index = categories.iter().position(|c| c.eq_ignore_ascii_case(text));
                index.unwrap_or(categories.len()) as f64
            }
        }
    }

    /// A feature's encoded value for people: the category, yes/no, or the number.
    pub fn describe(&self, encoded: f64) -> String {
        if encoded.is_nan() {
            return "missing".into();
        }
        match &self.kind {
            Kind::Numeric => format!("{encoded}"),
            Kind::Flag => if encoded != 0.0 { "yes" } else { "no" }.into(),
            Kind::Categorical { categories, .. } => {
                categories.get(encoded as usize).cloned().unwrap_or_else(|| "other".into())
            }
        }
    }

    /// How many category indices there are (with "other"); 0 for other kinds.
    pub fn cardinality(&self) -> usize {
        match &self.kind {
            Kind::Categorical { categories, .. } => categories.len() + 1,
            _ => 0,
        }
    }
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "y" => Some(true),
        "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[(&str, &[&str])]) -> Table {
        let rows = columns[0].1.len();
        Table {
            names: columns.iter().map(|(n, _)| n.to_string()).collect(),
            columns: columns
                .iter()
                .map(|(_, cells)| cells.iter().map(|c| (!is_missing(c)).then(|| c.to_string())).collect())
                .collect(),
            target: vec![false; rows],
            positive: "1".into(),
        }
    }

    #[test]
    fn infers_types_and_drops_constants() {
        let schema = Schema::infer(&table(&[
            ("visits", &["1", "2.5", "", "4", "0", "3"]),
            ("email_ok", &["Yes", "No", "yes", "", "No", "No"]),
            ("city", &["Pune", "Pune", "Pune", "Pune", "Pune", "Delhi"]),
            ("always", &["x", "x", "x", "x", "x", "x"]),
        ]));
        let kinds: Vec<(&str, &Kind)> = schema.features.iter().map(|f| (f.name.as_str(), &f.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("visits", &Kind::Numeric),
                ("email_ok", &Kind::Flag),
                ("city", &Kind::Categorical { categories: vec!["Pune".into(), "Delhi".into()], pandas: false })
            ]
        );
    }

    #[test]
    fn encodes_values_from_cells_and_attributes() {
        let city = Feature {
            name: "city".into(),
            kind: Kind::Categorical { categories: vec!["Pune".into(), "Delhi".into()], pandas: false },
        };
        assert_eq!(city.encode(Value::Text("delhi")), 1.0);
        assert_eq!(city.encode(Value::Text("Paris")), 2.0, "unknown is other");
        assert!(city.encode(Value::Text("Select")).is_nan());
        let flag = Feature { name: "ok".into(), kind: Kind::Flag };
        assert_eq!((flag.encode(Value::Flag(true)), flag.encode(Value::Text("No"))), (1.0, 0.0));
        let number = Feature { name: "n".into(), kind: Kind::Numeric };
        assert_eq!(number.encode(Value::Text(" 2.5 ")), 2.5);
        assert!(number.encode(Value::Text("many")).is_nan());
        assert_eq!(city.describe(2.0), "other");
    }
}
