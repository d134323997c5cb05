//! `leadscore import`: streams a CSV export into a running server through `ImportLeads`, and
//! never stores it silently wrong. A first pass reads the whole file: it types each column by
//! every value it holds, counts the physical lines, finds an unclosed quote, text that is not
//! UTF-8, duplicate ids and ambiguous numbers, and refuses what it cannot read rightly before
//! anything is sent. The second pass sends each row, or rejects it naming every problem. A
//! re-import merges: columns the file lacks, and blank cells, keep the stored values, and
//! consent is only tightened unless told otherwise.

pub mod cells;
mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use cells::{ColumnType, Decimals, FLAG_SPELLINGS};
use indicatif::{ProgressBar, ProgressStyle};
use leadscore_proto::v1 as pb;
use pb::lead_service_client::LeadServiceClient;
use phonenumber::country::Id as Country;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::remote::Remote;
use leadscore_store::merge;
pub use table::Table;

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
    /// The file's text encoding: utf-8, or windows-1252 (Excel's "CSV" on Western Windows).
    #[arg(long, value_enum, default_value_t = Encoding::Utf8)]
    pub encoding: Encoding,
    /// Numbers are written with a decimal comma and thousands dots (`1.500,5`).
    #[arg(long, conflicts_with = "decimal_point")]
    pub decimal_comma: bool,
    /// Numbers are written with a decimal point, even those that look like thousands (`1.500` is 1.5).
    #[arg(long)]
    pub decimal_point: bool,
    /// A column holding IANA time zone names.
    #[arg(long)]
    pub time_zone_column: Option<String>,
    /// A column holding phone numbers, in any common format; they are stored in E.164.
    #[arg(long)]
    pub phone_column: Option<String>,
    /// The country (ISO 3166 code, e.g. US or DE) of phone numbers written without a country code.
    #[arg(long)]
    pub default_country: Option<String>,
    /// A column holding e-mail addresses.
    #[arg(long)]
    pub email_column: Option<String>,
    /// A yes/no column (1/0, Y/N, yes/no, true/false, x/blank) setting the lead's do-not-call
    /// flag; it stays an attribute too.
    #[arg(long)]
    pub do_not_call_column: Option<String>,
    /// A yes/no column: the lead gave express consent to be called.
    #[arg(long)]
    pub phone_consent_column: Option<String>,
    /// A yes/no column: the lead opted out of e-mail.
    #[arg(long)]
    pub email_opt_out_column: Option<String>,
    /// What a blank cell does to a stored lead's value: keeps it, or clears it.
    #[arg(long, value_enum, default_value_t = Blank::Keeps)]
    pub blank: Blank,
    /// Let the file loosen a stored lead's consent (withdraw a do-not-call or an e-mail
    /// opt-out, give phone consent); otherwise such rows are rejected.
    #[arg(long)]
    pub allow_consent_changes: bool,
    /// Write every rejected row to this CSV file: the row as it was, its line and the reasons.
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// Rejected rows tolerated before the import counts as failed (exit code 1).
    #[arg(long, default_value_t = 0)]
    pub max_rejects: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    #[value(name = "utf-8")]
    Utf8,
    #[value(name = "windows-1252")]
    Windows1252,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Blank {
    Keeps,
    Clears,
}

/// What happened to the file.
#[derive(Debug, Default)]
pub struct Summary {
    /// Physical lines, the header's included.
    pub lines: u64,
    /// Rows read (a quoted field may span lines).
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// (line number, lead id, reasons), in line order.
    pub rejections: Vec<(u64, String, String)>,
    /// What was stored but deserves a look: duplicate ids, legacy zone names, headers.
    pub warnings: Vec<String>,
    /// Interrupted: only the rows sent before (whole batches) were stored.
    pub interrupted: bool,
}

/// Which columns fill the lead's own fields.
#[derive(Clone, Copy, Debug, Default)]
struct Mapping {
    id: Option<usize>,
    time_zone: Option<usize>,
    phone: Option<usize>,
    email: Option<usize>,
    do_not_call: Option<usize>,
    phone_consent: Option<usize>,
    email_opt_out: Option<usize>,
}

impl Mapping {
    /// The columns that are the lead's own fields, not attributes.
    fn fields(&self) -> [(Option<usize>, &'static str); 3] {
        [(self.time_zone, merge::TIME_ZONE), (self.phone, merge::PHONE), (self.email, merge::EMAIL)]
    }

    fn consents(&self) -> [(Option<usize>, &'static str); 3] {
        [
            (self.do_not_call, merge::DO_NOT_CALL),
            (self.phone_consent, merge::PHONE_CONSENT),
            (self.email_opt_out, merge::EMAIL_OPT_OUT),
        ]
    }
}

/// Opens the file as UTF-8 text, transcoding a Windows one.
fn open(path: &Path, encoding: Encoding) -> anyhow::Result<Box<dyn Read + Send>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(match encoding {
        Encoding::Utf8 => Box::new(file),
        Encoding::Windows1252 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new().encoding(Some(encoding_rs::WINDOWS_1252)).build(file),
        ),
    })
}

fn reader(path: &Path, args: &ImportArgs) -> anyhow::Result<csv::Reader<Box<dyn Read + Send>>> {
    Ok(csv::ReaderBuilder::new().delimiter(args.delimiter as u8).flexible(true).from_reader(open(path, args.encoding)?))
}

/// The file's physical lines, to name the line a row starts on: csv's own positions point
/// at the end of the line before, and skip blank lines uncounted.
#[derive(Debug, Default)]
struct Lines {
    /// Each line's first byte and the byte its terminator starts at.
    spans: Vec<(u64, u64)>,
}

impl Lines {
    fn count(&self) -> u64 {
        self.spans.len() as u64
    }

    /// The line (from 1) of the first text at or after byte `at`.
    fn of(&self, at: u64) -> u64 {
        let mut i = self.spans.partition_point(|(start, _)| *start <= at).saturating_sub(1);
        while let Some((start, end)) = self.spans.get(i)
            && (at >= *end || start == end)
            && i + 1 < self.spans.len()
        {
            i += 1;
        }
        i as u64 + 1
    }
}

/// The lines of `text`, and the line where a quoted field opened that never closes: csv's
/// rules (a quote opens one only at a field's start, `""` inside is a quote), byte by byte.
fn scan_lines(text: impl Read, delimiter: u8) -> io::Result<(Lines, Option<u64>)> {
    let mut text = io::BufReader::with_capacity(1 << 16, text);
    let mut lines = Lines::default();
    let (mut offset, mut start, mut end) = (0u64, 0u64, None::<u64>);
    let (mut at_field_start, mut quoted, mut quote_pending) = (true, None::<u64>, false);
    let mut buf = [0u8; 1 << 16];
    loop {
        let n = text.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            match quoted {
                Some(_) if quote_pending => {
                    quote_pending = false;
                    if b != b'"' {
                        quoted = None;
                    }
                }
                Some(_) if b == b'"' => quote_pending = true,
                _ => {}
            }
            if quoted.is_none() {
                if b == b'"' && at_field_start && !quote_pending {
                    quoted = Some(lines.count() + 1);
                }
                at_field_start = b == delimiter || b == b'\n' || b == b'\r';
            }
            if b == b'\r' && end.is_none() {
                end = Some(offset);
            }
            if b == b'\n' {
                lines.spans.push((start, end.unwrap_or(offset)));
                (start, end) = (offset + 1, None);
            }
            offset += 1;
        }
    }
    if start < offset {
        lines.spans.push((start, end.unwrap_or(offset)));
    }
    // A quote still open at the end with its closing one the very last byte was closed.
    let unclosed = if quote_pending { None } else { quoted };
    Ok((lines, unclosed))
}

/// What the first pass learns of the whole file.
struct Survey {
    types: Vec<ColumnType>,
    decimals: Decimals,
    lines: Arc<Lines>,
    /// The line where a quote opened that never closes.
    unclosed: Option<u64>,
    warnings: Vec<String>,
}

fn survey(args: &ImportArgs, headers: &csv::StringRecord, mapping: &Mapping) -> anyhow::Result<Survey> {
    let path = &args.csv;
    let (lines, unclosed) = scan_lines(open(path, args.encoding)?, args.delimiter as u8)
        .with_context(|| format!("reading {}", path.display()))?;
    let decimals = match (args.decimal_comma, args.decimal_point) {
        (true, _) => Decimals::Comma,
        (_, true) => Decimals::Point,
        _ => Decimals::Unsaid,
    };
    let mut types = vec![ColumnType::Empty; headers.len()];
    // Per column, a value written with dots that could be thousands, while all such are.
    let mut grouped: Vec<Option<Option<(u64, String)>>> = vec![None; headers.len()];
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut legacy: HashMap<String, u64> = HashMap::new();
    let mut reader = reader(path, args)?;
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).with_context(|| format!("reading {}", path.display()))? {
        let line = lines.of(record.position().map_or(0, |p| p.byte()));
        for (field, bytes) in record.iter().enumerate() {
            let Ok(value) = std::str::from_utf8(bytes) else {
                bail!(
                    "{}: line {line}, field {}: the text is not UTF-8 (a Windows export?); save the file as \
                     UTF-8 (Excel: \"CSV UTF-8\"), or pass --encoding windows-1252",
                    path.display(),
                    field + 1
                );
            };
            let Some(slot) = types.get_mut(field) else { continue };
            *slot = slot.widen(value, decimals);
            let value = value.trim();
            if value.contains('.') && cells::number(value, Decimals::Point).is_some() {
                let entry = &mut grouped[field];
                match (cells::looks_grouped(value), &entry) {
                    (true, None) => *entry = Some(Some((line, value.to_owned()))),
                    (false, _) => *entry = Some(None),
                    (true, Some(_)) => {}
                }
            }
            if Some(field) == mapping.id
                && !value.is_empty()
                && let Some(first) = seen.insert(value.to_owned(), line)
            {
                duplicates.push((value.to_owned(), first, line));
            }
            if Some(field) == mapping.time_zone && cells::legacy_zone(value).is_some() {
                *legacy.entry(value.to_owned()).or_default() += 1;
            }
        }
    }
    if decimals == Decimals::Unsaid {
        for (field, entry) in grouped.iter().enumerate() {
            if let (ColumnType::Number, Some(Some((line, value)))) = (types[field], entry) {
                bail!(
                    "column {:?}: {value:?} (line {line}) and its other values with dots look like numbers with \
                     thousands separators, as European exports write them; pass --decimal-comma if {value:?} \
                     means {}, or --decimal-point if it means {}",
                    &headers[field],
                    value.replace('.', ""),
                    cells::number(value, Decimals::Point).unwrap_or_default()
                );
            }
        }
    }
    let mut warnings = Vec::new();
    if let Some((id, first, again)) = duplicates.first() {
        warnings.push(format!(
            "{} ids appear on more than one line ({id:?} on lines {first} and {again}, …): the last line of each wins",
            duplicates.len()
        ));
    }
    for (zone, rows) in legacy {
        let meant = cells::legacy_zone(&zone).unwrap_or_default();
        warnings.push(format!(
            "{rows} rows give the time zone {zone:?}, a fixed offset or legacy rule that ignores local summer time; \
             calling hours follow it as written. Did you mean an IANA name such as {meant:?}?"
        ));
    }
    Ok(Survey { types, decimals, lines: Arc::new(lines), unclosed, warnings })
}

/// Checks the header: one column that holds another delimiter, names given twice.
fn check_header(headers: &csv::StringRecord, args: &ImportArgs, warnings: &mut Vec<String>) -> anyhow::Result<()> {
    if headers.len() == 1
        && let Some(other) = [';', '\t', '|', ','].into_iter().find(|d| *d != args.delimiter && headers[0].contains(*d))
    {
        bail!(
            "{}: the header reads as one column, {:?}; is the file separated by {other:?}? Pass --delimiter '{other}'",
            args.csv.display(),
            &headers[0]
        );
    }
    let mut names = HashSet::new();
    for (i, name) in headers.iter().enumerate() {
        if !names.insert(name) {
            warnings.push(format!(
                "the header names {name:?} more than once (field {}): its last column is the attribute kept",
                i + 1
            ));
        }
    }
    Ok(())
}

pub async fn run(args: ImportArgs) -> anyhow::Result<Summary> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let country = match &args.default_country {
        None => None,
        Some(code) => Some(code.to_ascii_uppercase().parse::<Country>().map_err(|_| {
            anyhow::anyhow!("--default-country: {code:?} is not an ISO 3166 country code such as US or DE")
        })?),
    };
    let mut reader = reader(&args.csv, &args)?;
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(err) if matches!(err.kind(), csv::ErrorKind::Utf8 { .. }) => bail!(
            "{}: the header is not UTF-8 (a Windows export?); save the file as UTF-8, or pass --encoding windows-1252",
            args.csv.display()
        ),
        Err(err) => return Err(err).with_context(|| format!("reading the header of {}", args.csv.display())),
    };
    let mut warnings = Vec::new();
    check_header(&headers, &args, &mut warnings)?;
    let column = |flag: &str, name: &str| -> anyhow::Result<usize> {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{flag}: no column named {name:?} in {} (its columns: {})",
                args.csv.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let mapped = |flag: &str, name: &Option<String>| name.as_deref().map(|n| column(flag, n)).transpose();
    let mapping = Mapping {
        id: Some(column("--id-column", &args.id_column)?),
        time_zone: mapped("--time-zone-column", &args.time_zone_column)?,
        phone: mapped("--phone-column", &args.phone_column)?,
        email: mapped("--email-column", &args.email_column)?,
        do_not_call: mapped("--do-not-call-column", &args.do_not_call_column)?,
        phone_consent: mapped("--phone-consent-column", &args.phone_consent_column)?,
        email_opt_out: mapped("--email-opt-out-column", &args.email_opt_out_column)?,
    };
    let survey = {
        let (args, headers) = (args.clone(), headers.clone());
        tokio::task::spawn_blocking(move || survey(&args, &headers, &mapping)).await??
    };
    warnings.extend(survey.warnings.iter().cloned());

    let (channel, bearer) = args.remote.connect().await?;
    let mut client = LeadServiceClient::with_interceptor(channel, bearer).max_encoding_message_size(64 << 20);
    let size = std::fs::metadata(&args.csv)?.len();
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}").expect("a valid template"),
    );
    let (sender, receiver) = mpsc::channel(4);
    let stop = Arc::new(AtomicBool::new(false));
    let table = Table { headers: headers.clone(), types: survey.types.clone(), decimals: survey.decimals, mapping };
    let merge = pb::ImportMerge {
        fields: table.merge_fields(),
        blank_clears: args.blank == Blank::Clears,
        allow_consent_changes: args.allow_consent_changes,
    };
    let (progress_reader, stopping, batch) = (progress.clone(), stop.clone(), args.batch);
    let (unclosed, lines) = (survey.unclosed, survey.lines.clone());
    // Reading and converting rows is blocking work; it feeds the stream through a channel.
    let reader_task = tokio::task::spawn_blocking(move || -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        let mut chunk = pb::ImportLeadsRequest { merge: Some(merge), ..Default::default() };
        let mut records = reader.records().peekable();
        while let Some(row) = records.next() {
            if stopping.load(Ordering::Relaxed) {
                summary.interrupted = true;
                break;
            }
            summary.rows += 1;
            let record = row.with_context(|| "reading a row")?;
            let line = lines.of(record.position().map_or(0, |p| p.byte()));
            progress_reader.set_position(record.position().map_or(0, |p| p.byte()));
            let id = record.get(table.mapping.id.unwrap_or(0)).unwrap_or("").trim().to_owned();
            let mut problems = Vec::new();
            if let Some(opened) = unclosed.filter(|_| records.peek().is_none()) {
                problems.push(format!(
                    "a quote opened on line {opened} never closes, so every line from there to the end of the file \
                     read as one field; nothing from them was stored"
                ));
            }
            if record.len() != table.headers.len() {
                problems.push(format!("row has {} fields, the header has {}", record.len(), table.headers.len()));
            }
            let (lead, blanks) = table.lead_of(&record, country, &mut problems);
            if !problems.is_empty() {
                summary.rejections.push((line, id, problems.join("; ")));
                continue;
            }
            chunk.leads.push(lead);
            chunk.line_numbers.push(line);
            chunk.blanks.push(pb::BlankFields { fields: blanks });
            if chunk.leads.len() == batch && sender.blocking_send(std::mem::take(&mut chunk)).is_err() {
                return Ok(summary);
            }
        }
        if !chunk.leads.is_empty() {
            let _ = sender.blocking_send(chunk);
        }
        Ok(summary)
    });
    let response = client.import_leads(ReceiverStream::new(receiver));
    tokio::pin!(response);
    // Ctrl-C ends the stream where it is: the server stores the rows it was sent, in whole
    // batches, and answers for them; a second Ctrl-C stops at once.
    let response = tokio::select! {
        response = &mut response => response,
        _ = tokio::signal::ctrl_c() => {
            stop.store(true, Ordering::Relaxed);
            progress.suspend(|| eprintln!("interrupted: storing the rows already sent (Ctrl-C again stops at once)"));
            tokio::select! {
                response = &mut response => response,
                _ = tokio::signal::ctrl_c() => bail!("stopped at once; some rows sent may not have been stored"),
            }
        }
    };
    let mut summary = reader_task.await??;
    progress.finish_and_clear();
    let response = response.context("import failed")?.into_inner();
    summary.lines = survey.lines.count();
    summary.warnings = warnings;
    summary.accepted = response.accepted;
    summary.rejected = response.rejected + summary.rejections.len() as u64;
    summary.rejections.extend(response.rejections.into_iter().map(|r| (r.line_number, r.lead_id, r.reason)));
    summary.rejections.sort_by_key(|r| r.0);
    if let Some(path) = &args.errors {
        write_errors(&args, &survey.lines, path, &summary.rejections)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(summary)
}

/// Writes each rejected row as it was in the file, then its line and reasons: a file an admin
/// can fix and import again.
fn write_errors(
    args: &ImportArgs,
    lines: &Lines,
    path: &Path,
    rejections: &[(u64, String, String)],
) -> anyhow::Result<()> {
    let reasons: HashMap<u64, &str> = rejections.iter().map(|(line, _, reason)| (*line, reason.as_str())).collect();
    let mut reader = reader(&args.csv, args)?;
    let mut writer = csv::WriterBuilder::new().flexible(true).from_path(path)?;
    let mut header = reader.headers()?.clone();
    header.push_field("line");
    header.push_field("reason");
    writer.write_record(&header)?;
    for record in reader.records() {
        let mut record = record?;
        let line = lines.of(record.position().map_or(0, |p| p.byte()));
        if let Some(reason) = reasons.get(&line) {
            record.push_field(&line.to_string());
            record.push_field(reason);
            writer.write_record(&record)?;
        }
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_and_an_unclosed_quote_is_found_where_it_opened() {
        let scan = |text: &str| {
            let (lines, unclosed) = scan_lines(text.as_bytes(), b',').unwrap();
            (lines.count(), unclosed)
        };
        assert_eq!(scan("a,b\n1,2\n3,4"), (3, None));
        assert_eq!(scan("a,b\r\n1,\"x\r\ny\"\r\n"), (3, None), "a quoted newline closes");
        assert_eq!(scan("a,b\n1,\"say \"\"hi\"\"\"\n"), (2, None), "doubled quotes inside");
        assert_eq!(scan("a,b\n1,27\" monitor\n"), (2, None), "a quote inside a field is text");
        let broken = "id,item,company\n1,a,b\n2,a,b\n3,27\" monitor,\"Acme, Inc\n4,a,b\n5,a,b\n6,a,b\n7,a,b\n";
        assert_eq!(scan(broken), (8, Some(4)));
    }

    #[test]
    fn a_row_is_named_by_the_line_it_starts_on_whatever_csv_says() {
        // csv puts a row's start at the end of the line before, across blank lines.
        for text in
            ["id,a\r\nb-1,x\r\n\r\nb-2,\"two\r\nlines\"\r\nb-3,y\r\n", "id,a\nb-1,x\n\nb-2,\"two\nlines\"\nb-3,y\n"]
        {
            let (lines, _) = scan_lines(text.as_bytes(), b',').unwrap();
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let starts: Vec<u64> = reader.records().map(|r| lines.of(r.unwrap().position().unwrap().byte())).collect();
            assert_eq!(starts, [2, 4, 6], "{text:?}");
        }
    }
}
