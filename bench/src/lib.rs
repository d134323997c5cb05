//! Shared generators for the benches: leads and events shaped like real ones.

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadscore::clock::{Clock, SystemClock};
use leadscore::gathered::Gathered;
use leadscore::store::agents::{AgentInput, Skills};
use leadscore::store::lead::{Consent, Value};
use leadscore::store::mutation::{EventInput, LeadInput, fingerprint};
use leadscore::store::{FsyncPolicy, Store, StoreOptions};
use leadscore_proto::tonic::transport::Channel;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;

/// Events each lead gets from `fill`.
pub const EVENTS_PER_LEAD: u64 = 20;
/// The time of the first generated event; the others follow an hour apart.
pub const FIRST_EVENT_MS: i64 = 1_700_000_000_000;
const CHUNK: u64 = 1000;

const ROLES: &[&str] = &["CEO", "CTO", "Director", "Project Manager", "Assistant", "Analyst"];
const DEPARTMENTS: &[&str] = &["IT", "Finance", "Marketing", "Sales", "Operations"];
const KINDS: &[&str] = &["email_open", "email_click", "page_view:/pricing", "webinar_attended", "content_download"];

/// A lead with ten attributes (six text, three numbers, one flag), as a CRM would send it.
pub fn lead(i: u64) -> LeadInput {
    let text = |s: &str| Value::Text(s.into());
    LeadInput {
        id: format!("{:08x}-5132-4136-86fa-dcc88c88f482", i).into(),
        attributes: vec![
            ("role".into(), text(ROLES[i as usize % ROLES.len()])),
            ("department".into(), text(DEPARTMENTS[i as usize % DEPARTMENTS.len()])),
            ("country".into(), text("Germany")),
            ("industry".into(), text("Software")),
            ("lead_source".into(), text("Organic Search")),
            ("city".into(), text("Berlin")),
            ("employees".into(), Value::Number((i % 5000) as f64)),
            ("budget".into(), Value::Number((i % 100) as f64 * 1000.0)),
            ("total_visits".into(), Value::Number((i % 30) as f64)),
            ("newsletter".into(), Value::Flag(i.is_multiple_of(2))),
        ],
        time_zone: Some(chrono_tz::Europe::Berlin),
        consent: Consent::default(),
        campaigns: Vec::new(),
        owner: Default::default(),
        phone: Default::default(),
        email: Default::default(),
    }
}

/// Fifty time zones the dialer benches spread leads over, from UTC-10 to UTC+13:45.
pub const ZONES: [&str; 50] = [
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Vancouver",
    "America/Denver",
    "America/Phoenix",
    "America/Chicago",
    "America/Mexico_City",
    "America/New_York",
    "America/Toronto",
    "America/Halifax",
    "America/St_Johns",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
    "Atlantic/Azores",
    "Atlantic/Reykjavik",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Africa/Casablanca",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Rome",
    "Africa/Lagos",
    "Europe/Athens",
    "Europe/Helsinki",
    "Africa/Cairo",
    "Africa/Johannesburg",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Tehran",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Jakarta",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Australia/Perth",
    "Asia/Tokyo",
    "Asia/Seoul",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Guam",
    "Pacific/Noumea",
    "Pacific/Auckland",
    "Pacific/Chatham",
];

/// A lead the dialer may call: `lead(i)` with a time zone among `ZONES`, a unique phone
/// number and consent to be called.
pub fn dial_lead(i: u64) -> LeadInput {
    LeadInput {
        time_zone: Some(ZONES[i as usize % ZONES.len()].parse().expect("a known zone")),
        phone: format!("+1{}", 2_000_000_000 + i).into(),
        consent: Consent { phone_consent: true, ..Consent::default() },
        ..lead(i)
    }
}

/// Event `n` of lead `i`: a UUID-sized id, a kind, a time; no value or properties.
pub fn event(i: u64, n: u64) -> EventInput {
    EventInput {
        lead_id: lead(i).id,
        fingerprint: fingerprint(&format!("{i:08x}-{n:04x}-4136-86fa-dcc88c88f482")),
        kind: KINDS[(i + n) as usize % KINDS.len()].into(),
        at_ms: FIRST_EVENT_MS + (n as i64) * 3_600_000,
        value: 0.0,
        properties: Vec::new(),
    }
}

/// Agent `i` of a call center: one to three languages, tiers 1-3, three leads at a time.
pub fn agent(i: u64) -> AgentInput {
    const LANGUAGES: &[&[&str]] = &[&["en"], &["en", "es"], &["de", "en"], &["fr", "en"], &["es"]];
    AgentInput {
        id: format!("agent-{i:04}").into(),
        name: format!("Agent {i}").into(),
        skills: Skills {
            languages: LANGUAGES[i as usize % LANGUAGES.len()].iter().map(|l| (*l).into()).collect(),
            regions: Vec::new(),
            products: Vec::new(),
            tier: 1 + (i % 3) as u32,
        },
        capacity: 3,
    }
}

/// A tokio runtime with this many worker threads; 1 is a single-threaded runtime, which on two
/// cores often serves best (runtime threads otherwise fight over the cores).
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
}

/// A loopback gRPC channel with Nagle's algorithm off, as the server has it.
pub async fn connect(target: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{target}"))?.tcp_nodelay(true).connect().await?)
}

/// Connections accepted as leadscore's server accepts them (`leadscore::gathered::accepted`):
/// an echo served on them differs from leadscore by the engine's work alone, not by one
/// `writev` an answer.
pub async fn incoming_like_leadscore(
    listen: &str,
) -> std::io::Result<impl Stream<Item = std::io::Result<Gathered<TcpStream>>> + use<>> {
    Ok(leadscore::gathered::accepted(TcpListener::bind(listen).await?))
}

/// `n` channels to `target`, each its own connection: load workers share them in turn, as
/// many dialers or services would rather than one client multiplexing everything.
pub async fn connect_many(target: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        channels.push(connect(target).await?);
    }
    Ok(channels)
}

/// A load worker: the latencies it measured (µs) and a count of its own.
pub type Worker = tokio::task::JoinHandle<Result<(Vec<f64>, u64), leadscore_proto::tonic::Status>>;

/// Waits for load workers that each return the latencies they measured (µs) and a count;
/// returns all the latencies, sorted, and the counts' sum.
pub async fn gather(workers: Vec<Worker>) -> anyhow::Result<(Vec<f64>, u64)> {
    let (mut latencies, mut count) = (Vec::new(), 0);
    for worker in workers {
        let (mine, n) = worker.await??;
        latencies.extend(mine);
        count += n;
    }
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, count))
}

/// Health checks on a connection of their own every 50 ms until `deadline`, as an
/// orchestrator's probe would make them; their latencies in ms, sorted.
pub async fn probe_health(
    target: &str,
    deadline: Instant,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Vec<f64>>>> {
    let channel = connect(target).await?;
    Ok(tokio::spawn(async move {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let mut latencies = Vec::new();
        while Instant::now() < deadline {
            let started = Instant::now();
            client.check(tonic_health::pb::HealthCheckRequest::default()).await?;
            latencies.push(started.elapsed().as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    }))
}

/// "Health p99 X ms, max Y ms" for sorted latencies in ms.
pub fn health_summary(latencies: &[f64]) -> String {
    format!("Health p99 {:.1} ms, max {:.1} ms", quantile(latencies, 0.99), quantile(latencies, 1.0))
}

/// "R/s, p50 X µs, p99 Y µs" for sorted latencies (µs) measured over `length`.
pub fn rate_and_percentiles(latencies: &[f64], length: Duration) -> String {
    let rate = latencies.len() as f64 / length.as_secs_f64();
    format!("{rate:.0}/s, p50 {:.0} µs, p99 {:.0} µs", quantile(latencies, 0.5), quantile(latencies, 0.99))
}

/// The `q` quantile of sorted figures; NaN for none (no call finished in time).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * q) as usize).copied().unwrap_or(f64::NAN)
}

/// Opens a store for benches: fsync `never`, no automatic snapshots.
/// This process's resident memory, from `/proc/self/statm`.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

pub fn open_store(dir: &Path) -> Arc<Store> {
    open_store_on(dir, Arc::new(SystemClock))
}

/// A store as `open_store` opens it, on `clock`: a run on a moved clock stamps its leases and
/// calls by the same time its checks read.
pub fn open_store_on(dir: &Path, clock: Arc<dyn Clock>) -> Arc<Store> {
    let options = StoreOptions {
        data_dir: dir.to_owned(),
        fsync: FsyncPolicy::Never,
        fsync_interval: Duration::from_secs(1),
        snapshot_log_bytes: u64::MAX,
        max_events_per_lead: 10_000,
    };
    Store::open(options, clock).unwrap()
}

/// Stores `leads` generated leads, then `EVENTS_PER_LEAD` events for each, in batches of a
/// thousand; returns the time each half took.
pub fn fill(store: &Store, leads: u64) -> (Duration, Duration) {
    let started = std::time::Instant::now();
    for start in (0..leads).step_by(CHUNK as usize) {
        let end = (start + CHUNK).min(leads);
        store.upsert_leads((start..end).map(lead).collect()).unwrap();
    }
    let upserted = started.elapsed();
    let started = std::time::Instant::now();
    for n in 0..EVENTS_PER_LEAD {
        for start in (0..leads).step_by(CHUNK as usize) {
            let end = (start + CHUNK).min(leads);
            store.record_events((start..end).map(|i| event(i, n)).collect()).unwrap();
        }
    }
    (upserted, started.elapsed())
}

/// The median of some measurements.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median wall time of `runs` runs of `work`, in seconds.
pub fn median_seconds(runs: usize, mut work: impl FnMut()) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                let started = std::time::Instant::now();
                work();
                started.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// A plugin library cargo built in this profile (`leadscore_fit` is `libleadscore_fit.so`),
/// found beside the running bench.
pub fn built_library(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let file = format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    [deps.join(&file), deps.parent().unwrap().join(&file)]
        .into_iter()
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{file} not found beside {}: run `cargo build --release` first", exe.display()))
}
