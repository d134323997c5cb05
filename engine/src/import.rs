//! `leadscore import`: streams a CSV export into a running server through `ImportLeads`.
//! Each column becomes an attribute, typed by what the column holds; a few columns can be
//! mapped to the lead's own fields instead.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use leadscore_proto::v1 as pb;
use pb::lead_service_client::LeadServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::remote::Remote;

/// Rows read before column types are decided.
const INFER_ROWS: usize = 1000;

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The CSV file; its first line names the columns.
    #[arg(long)]
    pub csv: PathBuf,
    /// The column holding each lead's id.
    #[arg(long)]
    pub id_column: String,
    #[command(flatten)]
    pub remote: Remote,
    /// Leads per message.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Field delimiter.
    #[arg(long, default_value = ",")]
    pub delimiter: char,
    /// A column holding IANA time zone names.
    #[arg(long)]
    pub time_zone_column: Option<String>,
    /// A column holding E.164 phone numbers.
    #[arg(long)]
    pub phone_column: Option<String>,
    /// A column holding e-mail addresses.
    #[arg(long)]
    pub email_column: Option<String>,
    /// A yes/no column that sets the lead's do-not-call flag (it stays an attribute too).
    #[arg(long)]
    pub do_not_call_column: Option<String>,
}

/// What happened to the rows.
#[derive(Debug, Default)]
pub struct Summary {
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// (line number, lead id, reason), in line order.
    pub rejections: Vec<(u64, String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColumnType {
    Number,
    Flag,
    Text,
}

pub async fn run(args: ImportArgs) -> anyhow::Result<Summary> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let file = File::open(&args.csv).with_context(|| format!("opening {}", args.csv.display()))?;
    let size = file.metadata()?.len();
    let mut reader = csv::ReaderBuilder::new().delimiter(args.delimiter as u8).flexible(true).from_reader(file);
    let headers = reader.headers().with_context(|| format!("reading the header of {}", args.csv.display()))?.clone();
    let column = |name: &str| -> anyhow::Result<usize> {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no column named {name:?} in {}", args.csv.display()))
    };
    let id_column = column(&args.id_column)?;
    let mapped = |name: &Option<String>| name.as_deref().map(column).transpose();
    let mapping = Mapping {
        id: Some(id_column),
        time_zone: mapped(&args.time_zone_column)?,
        phone: mapped(&args.phone_column)?,
        email: mapped(&args.email_column)?,
        do_not_call: mapped(&args.do_not_call_column)?,
    };

    let (channel, bearer) = args.remote.connect().await?;
    let mut client = LeadServiceClient::with_interceptor(channel, bearer).max_encoding_message_size(64 << 20);
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}").expect("a valid template"),
    );
    let (sender, receiver) = mpsc::channel(4);
    let progress_reader = progress.clone();
    let batch = args.batch;
    // Reading and converting rows is blocking work; it feeds the stream through a channel.
    let reader_task = tokio::task::spawn_blocking(move || -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        let mut rows = reader.records();
        let mut buffered = Vec::new();
        for row in rows.by_ref().take(INFER_ROWS) {
            buffered.push(row);
        }
        let types = infer_types(headers.len(), buffered.iter().filter_map(|r| r.as_ref().ok()));
        let mut chunk = pb::ImportLeadsRequest::default();
        for row in buffered.into_iter().chain(rows) {
            summary.rows += 1;
            let record = match row {
                Ok(record) => record,
                Err(err) => {
                    let line = err.position().map_or(0, |p| p.line());
                    summary.rejections.push((line, String::new(), format!("unreadable row: {err}")));
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line());
            progress_reader.set_position(record.position().map_or(0, |p| p.byte()));
            if record.len() != headers.len() {
                let reason = format!("row has {} fields, the header has {}", record.len(), headers.len());
                summary.rejections.push((line, record.get(id_column).unwrap_or("").to_owned(), reason));
                continue;
            }
            chunk.leads.push(lead_from_row(&headers, &types, &mapping, &record));
            chunk.line_numbers.push(line);
            if chunk.leads.len() == batch && sender.blocking_send(std::mem::take(&mut chunk)).is_err() {
                return Ok(summary);
            }
        }
        if !chunk.leads.is_empty() {
            let _ = sender.blocking_send(chunk);
        }
        Ok(summary)
    });
    let response = client.import_leads(ReceiverStream::new(receiver)).await;
    let mut summary = reader_task.await??;
    progress.finish_and_clear();
    let response = response.context("import failed")?.into_inner();
    summary.accepted = response.accepted;
    summary.rejected = response.rejected + summary.rejections.len() as u64;
    summary.rejections.extend(response.rejections.into_iter().map(|r| (r.line_number, r.lead_id, r.reason)));
    summary.rejections.sort_by_key(|r| r.0);
    Ok(summary)
}

/// Rows of a CSV file as leads: each column an attribute, typed by what its first rows hold.
pub struct Table {
    headers: csv::StringRecord,
    types: Vec<ColumnType>,
    mapping: Mapping,
}

impl Table {
    /// Types the columns from the first rows of `sample`; `id` names the id column, if any.
    pub fn new<'a>(
        headers: csv::StringRecord,
        id: Option<usize>,
        sample: impl Iterator<Item = &'a csv::StringRecord>,
    ) -> Self {
        let types = infer_types(headers.len(), sample.take(INFER_ROWS));
        let mapping = Mapping { id, time_zone: None, phone: None, email: None, do_not_call: None };
        Self { headers, types, mapping }
    }

    pub fn lead(&self, record: &csv::StringRecord) -> pb::Lead {
        lead_from_row(&self.headers, &self.types, &self.mapping, record)
    }
}

/// Which columns fill the lead's own fields.
struct Mapping {
    id: Option<usize>,
    time_zone: Option<usize>,
    phone: Option<usize>,
    email: Option<usize>,
    do_not_call: Option<usize>,
}

fn lead_from_row(
    headers: &csv::StringRecord,
    types: &[ColumnType],
    mapping: &Mapping,
    record: &csv::StringRecord,
) -> pb::Lead {
    use pb::attribute_value::Kind;
    let field = |column: Option<usize>| column.and_then(|c| record.get(c)).unwrap_or("").trim().to_owned();
    let mut attributes = HashMap::new();
    for (index, (name, raw)) in headers.iter().zip(record.iter()).enumerate() {
        let raw = raw.trim();
        if Some(index) == mapping.id
            || raw.is_empty()
            || [mapping.time_zone, mapping.phone, mapping.email].contains(&Some(index))
        {
            continue;
        }
        let kind = match types[index] {
            ColumnType::Number => raw.parse().map(Kind::Number).unwrap_or_else(|_| Kind::Text(raw.to_owned())),
            ColumnType::Flag => parse_flag(raw).map(Kind::Flag).unwrap_or_else(|| Kind::Text(raw.to_owned())),
            ColumnType::Text => Kind::Text(raw.to_owned()),
        };
        attributes.insert(name.to_owned(), pb::AttributeValue { kind: Some(kind) });
    }
    pb::Lead {
        id: field(mapping.id),
        attributes,
        time_zone: field(mapping.time_zone),
        phone: field(mapping.phone),
        email: field(mapping.email),
        consent: Some(pb::Consent {
            do_not_call: parse_flag(&field(mapping.do_not_call)).unwrap_or(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A column is numeric when every non-empty value in the sample is a plain decimal number
/// (no leading zeros, so codes such as "01234" stay text), a flag when every value is
/// yes/no/true/false, and text otherwise.
fn infer_types<'a>(columns: usize, sample: impl Iterator<Item = &'a csv::StringRecord>) -> Vec<ColumnType> {
    let mut types = vec![None; columns];
    for record in sample {
        for (slot, value) in types.iter_mut().zip(record.iter()) {
            let value = value.trim();
            if value.is_empty() || *slot == Some(ColumnType::Text) {
                continue;
            }
            let this = if is_plain_number(value) {
                ColumnType::Number
            } else if parse_flag(value).is_some() {
                ColumnType::Flag
            } else {
                ColumnType::Text
            };
            *slot = match *slot {
                None => Some(this),
                Some(seen) if seen == this => Some(seen),
                Some(_) => Some(ColumnType::Text),
            };
        }
    }
    types.into_iter().map(|t| t.unwrap_or(ColumnType::Text)).collect()
}

fn is_plain_number(value: &str) -> bool {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && all_digits(fraction) && (whole == "0" || !whole.starts_with('0'))
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain_decimals_only() {
        for yes in ["0", "12", "-3", "2.5", "0.25", "674"] {
            assert!(is_plain_number(yes), "{yes}");
        }
        for no in ["01234", "", "1e5", "+49301234", "1.", ".5", "NaN", "1,5"] {
            assert!(!is_plain_number(no), "{no}");
        }
    }

    #[test]
    fn columns_are_typed_by_their_sample() {
        let rows =
            [csv::StringRecord::from(vec!["1", "Yes", "a", "01"]), csv::StringRecord::from(vec!["2.5", "no", "3", ""])];
        let types = infer_types(4, rows.iter());
        assert_eq!(types, [ColumnType::Number, ColumnType::Flag, ColumnType::Text, ColumnType::Text]);
    }
}
