//! A running server seen from the terminal: `leadscore top`, `explain`, `status` and
//! `score --csv`. Each is a client of the gRPC contract, like `import` and `report`.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use leadscore_proto::tonic::Status;
use leadscore_proto::tonic::service::interceptor::InterceptedService;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::dialer_service_client::DialerServiceClient;
use pb::scoring_service_client::ScoringServiceClient;
use tokio_stream::StreamExt;

use crate::import;
use crate::remote::{Bearer, Remote, band_name};
use leadscore_config::Config;

/// Leads scored per `ScoreBatch` call by `score --csv`.
const SCORE_BATCH: usize = 500;
/// The widest bar `explain` draws, in characters.
const BAR_WIDTH: f64 = 40.0;

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The campaign; the default campaign if omitted.
    #[arg(long, default_value = "")]
    pub campaign: String,
    /// How many leads.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Only leads an agent could claim now: who to call first.
    #[arg(long)]
    pub callable_now: bool,
    /// Leave out leads whose latest call in the campaign was final (converted, lost, ...).
    #[arg(long)]
    pub exclude_finished: bool,
    /// Only leads with this text in their id, name, company or other display attribute.
    #[arg(long, default_value = "")]
    pub search: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The stored lead's id.
    pub lead: String,
    /// The campaign; the default campaign if omitted.
    #[arg(long, default_value = "")]
    pub campaign: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// The CSV file of leads to score; its first line names the columns, each an attribute.
    #[arg(long)]
    pub csv: PathBuf,
    /// Where to write the rows with their score, band and grade; standard output if omitted.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The column holding each lead's id; the row number if omitted.
    #[arg(long)]
    pub id_column: Option<String>,
    /// The campaign; the default campaign if omitted.
    #[arg(long, default_value = "")]
    pub campaign: String,
    /// Field delimiter.
    #[arg(long, default_value = ",")]
    pub delimiter: char,
    #[command(flatten)]
    pub remote: Remote,
}

type Scoring = ScoringServiceClient<InterceptedService<Channel, Bearer>>;

/// A refusal as the server worded it.
fn refused(status: Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// `leadscore top`: rank, lead, score, band, grade and top factor of the campaign's best leads.
pub async fn top(args: &TopArgs) -> anyhow::Result<String> {
    let (channel, bearer) = args.remote.connect().await?;
    let mut scoring: Scoring = ScoringServiceClient::with_interceptor(channel, bearer);
    let request = pb::TopLeadsRequest {
        campaign: args.campaign.clone(),
        limit: args.limit,
        explain: true,
        callable_now: args.callable_now,
        exclude_finished: args.exclude_finished,
        search: args.search.clone(),
        ..Default::default()
    };
    let ranked: Vec<pb::RankedLead> = scoring
        .top_leads(request)
        .await
        .map_err(refused)?
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .map_err(refused)?;
    let mut out = String::new();
    if ranked.is_empty() {
        let _ = writeln!(out, "no scored lead yet: load some with `leadscore import` or UpsertLeads");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:>4}  {:<24} {:<28} {:>8}  {:<12} {:<5}  {:<5} {:<26} top factor",
        "rank", "lead", "who", "score", "band", "grade", "calls", "next call"
    );
    for lead in ranked {
        let score = lead.score.unwrap_or_default();
        let factor = score
            .scorers
            .iter()
            .flat_map(|s| &s.top_factors)
            .max_by(|a, b| a.contribution.abs().total_cmp(&b.contribution.abs()))
            .map_or(String::from("-"), |f| {
                format!("{} ({:+.1})", if f.detail.is_empty() { &f.feature } else { &f.detail }, f.contribution)
            });
        // The campaign's display attributes ("Ada Lovelace · Acme · CTO"), cut to the column.
        let who: Vec<&str> = lead.card.iter().flat_map(|c| &c.display).map(|d| d.value.as_str()).collect();
        let who: String = who.join(" · ").chars().take(28).collect();
        let _ = writeln!(
            out,
            "{:>4}  {:<24} {who:<28} {:>8.1}  {:<12} {:<5}  {:<5} {:<26} {factor}",
            lead.rank,
            score.lead_id,
            score.score,
            band_name(score.band),
            score.grade,
            lead.dialing.as_ref().map_or(0, |d| d.attempts),
            next_call(lead.dialing.as_ref()),
        );
    }
    Ok(out)
}

/// When an agent may call a ranked lead: "now (09:41 local)", "2026-03-02T14:00Z (recycling)",
/// "never (do_not_call)".
fn next_call(dialing: Option<&pb::DialingState>) -> String {
    let Some(d) = dialing else { return "-".into() };
    if d.callable_now {
        return format!("now ({} local)", d.local_time.get(11..16).unwrap_or("?"));
    }
    match &d.next_callable_at {
        Some(at) => {
            let at = chrono::DateTime::from_timestamp(at.seconds, 0).unwrap_or_default();
            format!("{} ({})", at.format("%Y-%m-%d %H:%MZ"), d.reason)
        }
        None => format!("never ({})", d.reason),
    }
}

/// `leadscore explain`: each scorer's part and each top factor as a bar.
pub async fn explain(args: &ExplainArgs) -> anyhow::Result<String> {
    let (channel, bearer) = args.remote.connect().await?;
    let mut scoring: Scoring = ScoringServiceClient::with_interceptor(channel, bearer);
    let request =
        pb::ExplainRequest { contact_curve: false, lead_id: args.lead.clone(), campaign: args.campaign.clone() };
    let score = scoring.explain(request).await.map_err(refused)?.into_inner().score.unwrap_or_default();
    Ok(render_explanation(&score))
}

pub fn render_explanation(score: &pb::LeadScore) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{} in {}: score {:.1}, {}, grade {}",
        score.lead_id,
        score.campaign,
        score.score,
        band_name(score.band),
        score.grade
    );
    if let Some(account) = &score.account {
        let _ = write!(out, ", account {} ({:.1})", account.account, account.score);
    }
    out.push_str("\n\n");
    let factors: Vec<(&str, &pb::Factor)> =
        score.scorers.iter().flat_map(|s| s.top_factors.iter().map(move |f| (s.scorer.as_str(), f))).collect();
    let largest = score
        .scorers
        .iter()
        .map(|s| s.contribution.abs())
        .chain(factors.iter().map(|(_, f)| f.contribution.abs()))
        .fold(0.0, f64::max);
    for part in &score.scorers {
        let _ = writeln!(out, "  {:<34} {:>+8.1}  {}", part.scorer, part.contribution, bar(part.contribution, largest));
    }
    let _ = writeln!(out, "  {:<34} {:>8.1}", "= score", score.score);
    if !factors.is_empty() {
        let _ = writeln!(out, "\n  top factors");
        for (scorer, factor) in factors {
            let what = if factor.detail.is_empty() { &factor.feature } else { &factor.detail };
            let label: String = format!("{scorer}: {what}").chars().take(34).collect();
            let _ = writeln!(out, "  {label:<34} {:>+8.1}  {}", factor.contribution, bar(factor.contribution, largest));
        }
    }
    out
}

/// A bar as long as `value` is against `largest`: solid for points added, shaded for taken.
fn bar(value: f64, largest: f64) -> String {
    if largest <= 0.0 {
        return String::new();
    }
    let cells = (value.abs() / largest * BAR_WIDTH).round() as usize;
    let cell = if value < 0.0 { "░" } else { "█" };
    cell.repeat(cells.max(usize::from(value != 0.0)))
}

/// `leadscore status`: the store, the scorers, and each campaign's queue.
pub async fn status(args: &StatusArgs) -> anyhow::Result<String> {
    let (channel, bearer) = args.remote.connect().await?;
    let mut admin = AdminServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut dialer = DialerServiceClient::with_interceptor(channel, bearer);
    let stats = admin.stats(pb::StatsRequest {}).await.map_err(refused)?.into_inner();
    let scorers = admin.list_scorers(pb::ListScorersRequest {}).await.map_err(refused)?.into_inner().scorers;
    let config = admin.get_config(pb::GetConfigRequest {}).await.map_err(refused)?.into_inner();
    let config: Config = toml::from_str(&config.toml).context("reading the server's configuration")?;

    let mut out = String::new();
    let when = |t: Option<leadscore_proto::prost_types::Timestamp>| {
        t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0)).map_or("never".into(), |t| t.to_rfc3339())
    };
    let _ = writeln!(out, "leads {}, events {}, erased {}", stats.leads, stats.events, stats.suppressed);
    let _ = writeln!(
        out,
        "log: {} records ({:.1} MB); last snapshot {}; configuration version {}",
        stats.last_lsn,
        stats.log_bytes as f64 / 1e6,
        when(stats.last_snapshot_at),
        stats.config_version
    );
    let _ = writeln!(out, "serving since {}; watchdog stalls {}", when(stats.started_at), stats.watchdog_stalls);

    let _ = writeln!(
        out,
        "\n{:<14} {:<10} {:<12} {:<11} {:>12} {:>8} {:>12}",
        "scorer", "version", "status", "reads", "calls", "faults", "ns per lead"
    );
    for s in &scorers {
        let status = pb::ScorerStatus::try_from(s.status).map_or("?", |s| s.as_str_name());
        let name = if s.name.is_empty() { &s.path } else { &s.name };
        let _ = writeln!(
            out,
            "{name:<14} {:<10} {:<12} {:<11} {:>12} {:>8} {:>12.1}",
            s.version,
            status.trim_start_matches("SCORER_STATUS_").to_lowercase(),
            if s.attributes_only { "attributes" } else { "all" },
            s.calls,
            s.faults,
            s.ns_per_lead
        );
        if !s.status_reason.is_empty() {
            let _ = writeln!(out, "    {}", s.status_reason);
        }
    }

    let _ = writeln!(out, "\n{:<14} {:>9} {:>9}  not callable now", "campaign", "queued", "callable");
    for campaign in config.campaigns.keys() {
        let request = pb::WallboardRequest { campaign: campaign.clone(), minutes: 1 };
        let board = dialer.wallboard(request).await.map_err(refused)?.into_inner();
        let ineligible = board.ineligible.unwrap_or_default();
        let reasons = [
            ("outside window", ineligible.outside_calling_window),
            ("holiday", ineligible.holiday),
            ("recycling", ineligible.recycling),
            ("leased", ineligible.leased),
            ("max attempts", ineligible.max_attempts),
            ("do not call", ineligible.do_not_call),
            ("no consent", ineligible.missing_consent),
            ("campaign filter", ineligible.filtered_out),
            ("no phone", ineligible.no_phone),
            ("kept for an agent", ineligible.not_routable_to_agent),
            ("finished", ineligible.finished),
        ];
        let reasons: Vec<String> =
            reasons.iter().filter(|(_, n)| *n > 0).map(|(name, n)| format!("{name} {n}")).collect();
        let _ = writeln!(out, "{campaign:<14} {:>9} {:>9}  {}", board.queued, board.callable, reasons.join(", "));
    }
    Ok(out)
}

/// What `score --csv` did.
#[derive(Debug, Default)]
pub struct Scored {
    pub rows: u64,
}

/// `leadscore score --csv`: every row scored through `ScoreBatch` (not stored), written back
/// with its score, band and grade.
pub async fn score_csv(args: &ScoreArgs) -> anyhow::Result<Scored> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(args.delimiter as u8)
        .from_path(&args.csv)
        .with_context(|| format!("opening {}", args.csv.display()))?;
    let headers = reader.headers().with_context(|| format!("reading the header of {}", args.csv.display()))?.clone();
    let id = match &args.id_column {
        None => None,
        Some(name) => Some(
            headers.iter().position(|h| h == name).with_context(|| format!("--id-column: no column named {name:?}"))?,
        ),
    };
    let rows: Vec<csv::StringRecord> =
        reader.records().collect::<Result<_, _>>().with_context(|| format!("reading {}", args.csv.display()))?;
    let table = import::Table::new(headers.clone(), id, rows.iter());

    let (channel, bearer) = args.remote.connect().await?;
    let mut scoring: Scoring = ScoringServiceClient::with_interceptor(channel, bearer);
    let out: Box<dyn std::io::Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout()),
    };
    let mut writer = csv::WriterBuilder::new().delimiter(args.delimiter as u8).from_writer(out);
    let mut header = headers.clone();
    for column in ["score", "band", "grade"] {
        header.push_field(column);
    }
    writer.write_record(&header)?;
    for (chunk_index, chunk) in rows.chunks(SCORE_BATCH).enumerate() {
        let requests = chunk
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut lead = table.lead(row);
                if id.is_none() {
                    lead.id = format!("row-{}", chunk_index * SCORE_BATCH + i + 1);
                }
                pb::ScoreRequest { lead: Some(lead), campaign: args.campaign.clone(), ..Default::default() }
            })
            .collect();
        let scores = scoring
            .score_batch(pb::ScoreBatchRequest { requests })
            .await
            .map_err(refused)
            .with_context(|| {
                format!("scoring rows {}-{}", chunk_index * SCORE_BATCH + 1, chunk_index * SCORE_BATCH + chunk.len())
            })?
            .into_inner()
            .scores;
        for (row, score) in chunk.iter().zip(scores) {
            let mut record = row.clone();
            record.push_field(&format!("{:.2}", score.score));
            record.push_field(&band_name(score.band));
            record.push_field(&score.grade);
            writer.write_record(&record)?;
        }
    }
    writer.flush()?;
    Ok(Scored { rows: rows.len() as u64 })
}
