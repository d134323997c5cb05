//! A CSV file's rows as leads, typed by what the whole file holds.

use super::*;

/// Rows of a CSV file as leads: each column an attribute of the type every value of it
/// fits, a few columns the lead's own fields.
pub struct Table {
    pub(super) headers: csv::StringRecord,
    pub(super) types: Vec<ColumnType>,
    pub(super) decimals: Decimals,
    pub(super) mapping: Mapping,
}

impl Table {
    /// Types the columns by all of `rows`; `id` names the id column, if any.
    pub fn new<'a>(
        headers: csv::StringRecord,
        id: Option<usize>,
        rows: impl Iterator<Item = &'a csv::StringRecord>,
    ) -> Self {
        let mut types = vec![ColumnType::Empty; headers.len()];
        for row in rows {
            for (slot, value) in types.iter_mut().zip(row.iter()) {
                *slot = slot.widen(value, Decimals::Unsaid);
            }
        }
        let mapping = Mapping { id, ..Mapping::default() };
        Self { headers, types, decimals: Decimals::Unsaid, mapping }
    }

    /// A row as a lead, the text of each cell only (no phone or consent columns).
    pub fn lead(&self, record: &csv::StringRecord) -> pb::Lead {
        self.lead_of(record, None, &mut Vec::new()).0
    }

    /// The fields every row of this file has, as `ImportMerge` names them.
    pub(super) fn merge_fields(&self) -> Vec<String> {
        let own: Vec<Option<usize>> =
            self.mapping.fields().iter().chain(&self.mapping.consents()).map(|(c, _)| *c).collect();
        let attributes = self
            .headers
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.mapping.id && !own[..3].contains(&Some(*i)))
            .map(|(_, name)| name.to_owned());
        let fields = self.mapping.fields().into_iter().chain(self.mapping.consents());
        attributes.chain(fields.filter(|(c, _)| c.is_some()).map(|(_, name)| name.to_owned())).collect()
    }

    /// A row as a lead and the fields it leaves blank; each problem found goes in `problems`.
    pub(super) fn lead_of(
        &self,
        record: &csv::StringRecord,
        country: Option<Country>,
        problems: &mut Vec<String>,
    ) -> (pb::Lead, Vec<String>) {
        use pb::attribute_value::Kind;
        let mapping = &self.mapping;
        let cell = |column: Option<usize>| column.and_then(|c| record.get(c)).unwrap_or("").trim();
        let mut blanks = Vec::new();
        let mut attributes = BTreeMap::new();
        let own = [mapping.id, mapping.time_zone, mapping.phone, mapping.email];
        for (index, (name, raw)) in self.headers.iter().zip(record.iter()).enumerate() {
            let raw = raw.trim();
            if own.contains(&Some(index)) {
                continue;
            }
            if raw.is_empty() {
                blanks.push(name.to_owned());
                continue;
            }
            let kind = match self.types[index] {
                ColumnType::Number => {
                    cells::number(raw, self.decimals).map_or_else(|| Kind::Text(raw.to_owned()), Kind::Number)
                }
                ColumnType::Flag => Kind::Flag(matches!(raw.to_ascii_lowercase().as_str(), "yes" | "true")),
                ColumnType::Text | ColumnType::Empty => Kind::Text(raw.to_owned()),
            };
            attributes.insert(name.to_owned(), pb::AttributeValue { kind: Some(kind) });
        }
        for (column, field) in mapping.fields() {
            if column.is_some() && cell(column).is_empty() {
                blanks.push(field.to_owned());
            }
        }
        let mut consent = pb::Consent::default();
        let slots = [&mut consent.do_not_call, &mut consent.phone_consent, &mut consent.email_opt_out];
        for ((column, field), slot) in mapping.consents().into_iter().zip(slots) {
            let Some(index) = column else { continue };
            match cells::flag(cell(column)) {
                Ok(Some(value)) => *slot = value,
                Ok(None) => blanks.push(field.to_owned()),
                Err(cells::NotAFlag) => problems.push(format!(
                    "{field}: {:?} in column {:?} (field {}) is not a yes/no value ({FLAG_SPELLINGS})",
                    cell(column),
                    &self.headers[index],
                    index + 1
                )),
            }
        }
        let phone = match cell(mapping.phone) {
            "" => String::new(),
            written => cells::phone(written, country).unwrap_or_else(|problem| {
                problems.push(format!("phone: {problem}"));
                String::new()
            }),
        };
        let lead = pb::Lead {
            id: cell(mapping.id).to_owned(),
            attributes,
            time_zone: cell(mapping.time_zone).to_owned(),
            phone,
            email: cell(mapping.email).to_owned(),
            consent: Some(consent),
            ..Default::default()
        };
        (lead, blanks)
    }
}
