//! Live ranked lists under load: `WatchTopLeads` subscribers while scores change.
//!
//! - `seed ADDR --leads N`: stores N leads (no events: their scores are fit alone).
//! - `run ADDR --subscribers S --limit K --changes-per-second C --seconds T --server-pid P`:
//!   S subscribers watch the top K while C events a second go to random leads (each a score
//!   change); twice a second a marker lead is given events that take it to the top. Prints
//!   each marker's delay from the write to each subscriber's diff that lists it (median, p99,
//!   max over every subscriber and marker), and the server's CPU over the run (from
//!   /proc/P/stat), which the script compares with the same writes and no subscriber.
//!
//! `bench/watch_bench.sh` runs it against `leadscore serve`.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use leadscore_bench::{connect, connect_many, runtime};
use leadscore_proto::v1 as pb;
use pb::lead_service_client::LeadServiceClient;
use pb::scoring_service_client::ScoringServiceClient;
use pb::watch_top_leads_response::Change;
use tokio_stream::StreamExt;

/// A marker every half second, and no more than the list holds, so that each one enters it at
/// once (markers tie with each other, and a later one might wait for an earlier to leave).
const MARKER_EVERY_MS: u64 = 500;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[arg(long, global = true, default_value_t = 1)]
    worker_threads: usize,
}

#[derive(Subcommand)]
enum Command {
    Seed {
        target: String,
        #[arg(long, default_value_t = 1_000_000)]
        leads: usize,
    },
    Run {
        target: String,
        #[arg(long, default_value_t = 1_000_000)]
        leads: usize,
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 5000)]
        changes_per_second: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// The server's process, whose CPU time the run reports.
        #[arg(long)]
        server_pid: Option<u32>,
    },
}

fn text(s: &str) -> pb::AttributeValue {
    pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Text(s.into())) }
}

fn number(n: f64) -> pb::AttributeValue {
    pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Number(n)) }
}

fn lead(id: String, i: usize) -> pb::Lead {
    pb::Lead {
        id,
        attributes: [
            ("role".to_string(), text(["CTO", "Director", "Engineer", "VP Sales"][i % 4])),
            ("department".to_string(), text(["IT", "Sales", "Marketing"][i % 3])),
            ("employees".to_string(), number((10 + i * 37 % 2000) as f64)),
        ]
        .into(),
        time_zone: "America/New_York".into(),
        ..Default::default()
    }
}

fn event(lead_id: String, id: String, kind: &str) -> pb::Event {
    pb::Event { id, lead_id, kind: kind.into(), ..Default::default() }
}

/// CPU seconds a process has used (user and system), from /proc (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn seed(target: &str, leads: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let channels = connect_many(target, 2).await?;
    let mut writers = Vec::new();
    for (part, channel) in channels.into_iter().enumerate() {
        writers.push(tokio::spawn(async move {
            let mut client = LeadServiceClient::new(channel);
            for start in (part * 2000..leads).step_by(4000) {
                let batch = (start..(start + 2000).min(leads)).map(|i| lead(format!("w-{i}"), i)).collect();
                client.upsert_leads(pb::UpsertLeadsRequest { leads: batch }).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    println!("seeded {leads} leads in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn run(
    target: &str,
    (leads, subscribers, limit): (usize, usize, u32),
    changes_per_second: usize,
    seconds: u64,
    server_pid: Option<u32>,
) -> anyhow::Result<()> {
    // When each marker was written, and when each subscriber saw it listed.
    let written: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let delays: Arc<Mutex<Vec<f64>>> = Arc::default();
    let channels = connect_many(target, 4).await?;
    let mut watching = Vec::new();
    for s in 0..subscribers {
        let mut scoring = ScoringServiceClient::new(channels[s % channels.len()].clone());
        let request = pb::TopLeadsRequest { limit, ..Default::default() };
        let mut stream = scoring.watch_top_leads(request).await?.into_inner();
        let (written, delays) = (written.clone(), delays.clone());
        watching.push(tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            while let Some(message) = stream.next().await {
                let listed = match message?.change {
                    Some(Change::Entered(r) | Change::Moved(r)) => r.score.map(|s| s.lead_id),
                    _ => None,
                };
                // A marker's first appearance in this list: later moves are other changes.
                let Some(id) = listed.filter(|id| id.starts_with("marker-") && !seen.contains(id)) else { continue };
                let at = written.lock().unwrap().get(&id).copied();
                if let Some(at) = at {
                    delays.lock().unwrap().push(at.elapsed().as_secs_f64() * 1000.0);
                    seen.insert(id);
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let cpu_before = server_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let length = Duration::from_secs(seconds);
    // Changes: a batch every 10 ms, each event to a random stored lead.
    let mut client = LeadServiceClient::new(connect(target).await?);
    let per_batch = (changes_per_second / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut sent, mut markers, mut n) = (0usize, 0usize, 0u64);
    let mut markers_due = Instant::now();
    while started.elapsed() < length {
        tick.tick().await;
        let events = (0..per_batch)
            .map(|_| {
                n += 1;
                let i = (n.wrapping_mul(2_654_435_761) % leads as u64) as usize;
                event(format!("w-{i}"), format!("c-{n}"), "email_open")
            })
            .collect();
        client.record_events(pb::RecordEventsRequest { events }).await?;
        sent += per_batch;
        if Instant::now() >= markers_due && markers < limit as usize {
            markers_due += Duration::from_millis(MARKER_EVERY_MS);
            let id = format!("marker-{markers}");
            markers += 1;
            let profile = lead(id.clone(), 0);
            let hot = ["demo_request", "page_view:/pricing", "webinar_attended", "demo_request"];
            let events = hot.iter().enumerate().map(|(k, kind)| event(id.clone(), format!("{id}-{k}"), kind)).collect();
            written.lock().unwrap().insert(id, Instant::now());
            client.upsert_leads(pb::UpsertLeadsRequest { leads: vec![profile] }).await?;
            client.record_events(pb::RecordEventsRequest { events }).await?;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = server_pid.and_then(cpu_seconds).zip(cpu_before).map(|(after, before)| (after - before) / wall);
    // The last markers' diffs are let in before the figures are read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for watcher in &watching {
        watcher.abort();
    }
    let mut delays = delays.lock().unwrap().clone();
    delays.sort_by(f64::total_cmp);
    let at = |q: f64| delays.get(((delays.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(f64::NAN);
    println!(
        "{subscribers} subscribers to the top {limit} of {leads} leads, {:.0} changes/s for {wall:.0} s: \
         server CPU {} cores; marker delay from write to diff, first sightings ({} of {} possible): \
         median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sent as f64 / wall,
        cpu.map_or("?".to_string(), |c| format!("{c:.3}")),
        delays.len(),
        markers * subscribers,
        at(0.5),
        at(0.99),
        delays.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    runtime(cli.worker_threads)?.block_on(async {
        match cli.command {
            Command::Seed { target, leads } => seed(&target, leads).await,
            Command::Run { target, leads, subscribers, limit, changes_per_second, seconds, server_pid } => {
                run(&target, (leads, subscribers, limit), changes_per_second, seconds, server_pid).await
            }
        }
    })
}
