//! `leadscore export-outcomes`: the calls the dialer recorded, as training data. One row per
//! lead whose calls reached a decision (converted; or lost, or not interested), with the lead's
//! attributes as columns and `Converted` as the target, ready for `leadscore train`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use leadscore_config::Config;
use leadscore_store::Store;
use leadscore_store::clock::SystemClock;
use leadscore_store::dial::CallResult;
use leadscore_store::lead::Value;

/// The target column written.
pub const TARGET: &str = "Converted";

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The server's data directory. The server must be stopped (or export from a copy): a data
    /// directory is opened by one process at a time.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Where to write the CSV file.
    #[arg(long)]
    pub out: PathBuf,
    /// Only calls made in this campaign; all campaigns when left out.
    #[arg(long)]
    pub campaign: Option<String>,
}

/// Rows written, by label.
#[derive(Debug, PartialEq, Eq)]
pub struct Exported {
    pub converted: usize,
    pub not_converted: usize,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<Exported> {
    let mut config = Config::default();
    config.store.data_dir = args.data_dir.clone();
    let store = Store::open(config.store_options(), Arc::new(SystemClock))
        .with_context(|| format!("opening {}", args.data_dir.display()))?;
    let in_campaign = |campaign: &str| args.campaign.as_deref().is_none_or(|c| c == campaign);
    let mut rows = Vec::new();
    for id in store.lead_ids() {
        let label = store.read_dial(&id, |dial| {
            let results = dial.attempts.iter().filter(|a| in_campaign(&a.campaign)).map(|a| a.result);
            label(results)
        });
        if let Some(Some(converted)) = label
            && let Some(attributes) = store.read_lead(&id, |lead| {
                lead.attributes.iter().map(|(sym, v)| (store.attribute_name(*sym), v.clone())).collect::<Vec<_>>()
            })
        {
            rows.push((id, attributes, converted));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let columns: BTreeSet<Arc<str>> =
        rows.iter().flat_map(|(_, attributes, _)| attributes.iter().map(|(n, _)| n.clone())).collect();
    let mut out = csv::Writer::from_path(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut header = vec!["lead_id".to_string()];
    header.extend(columns.iter().map(|c| c.to_string()));
    header.push(TARGET.into());
    out.write_record(&header)?;
    for (id, attributes, converted) in &rows {
        let mut record = vec![id.to_string()];
        record.extend(
            columns
                .iter()
                .map(|column| attributes.iter().find(|(n, _)| n == column).map(|(_, v)| text(v)).unwrap_or_default()),
        );
        record.push(if *converted { "1" } else { "0" }.into());
        out.write_record(&record)?;
    }
    out.flush()?;
    let converted = rows.iter().filter(|r| r.2).count();
    Ok(Exported { converted, not_converted: rows.len() - converted })
}

/// Whether a lead's calls ended in a conversion (`Some(true)`), in a refusal (`Some(false)`),
/// or have not decided yet (`None`: only unanswered calls, callbacks, wrong numbers).
pub fn label(results: impl Iterator<Item = CallResult>) -> Option<bool> {
    let mut decided = None;
    for result in results {
        match result {
            CallResult::Converted => return Some(true),
            CallResult::Lost | CallResult::ConnectedNotInterested | CallResult::DoNotCall => decided = Some(false),
            _ => {}
        }
    }
    decided
}

fn text(value: &Value) -> String {
    match value {
        Value::Text(t) => t.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Flag(true) => "Yes".into(),
        Value::Flag(false) => "No".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallResult::*;

    #[test]
    fn a_conversion_anywhere_wins_and_undecided_leads_are_left_out() {
        assert_eq!(label([NoAnswer, Busy].into_iter()), None);
        assert_eq!(label([NoAnswer, ConnectedNotInterested].into_iter()), Some(false));
        assert_eq!(label([Lost, Callback, Converted].into_iter()), Some(true));
        assert_eq!(label([WrongNumber].into_iter()), None);
    }
}
