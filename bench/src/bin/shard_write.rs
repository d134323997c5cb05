//! Acknowledged writes per second into one shard's store, in process (no gRPC): over its
//! JetStream stream (`--nats`: three servers, three replicas, `sync_interval: always`) beside
//! the local log with fsync `always`, in the same run. Each of `writers` threads upserts one
//! lead at a time and waits for it to be acknowledged (`bench/cluster_bench.sh`).

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use leadscore::clock::SystemClock;
use leadscore::store::mutation::LeadInput;
use leadscore::store::{FsyncPolicy, Store, StoreOptions};
use leadscore_bench::rate_and_percentiles;
use leadscore_cluster::{Nats, StreamLog, StreamSettings};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    /// The NATS servers, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    nats: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    #[arg(long, default_value_t = 8)]
    seconds: u64,
}

fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        data_dir: dir.to_owned(),
        fsync: FsyncPolicy::Always,
        fsync_interval: Duration::from_secs(1),
        snapshot_log_bytes: u64::MAX,
        max_events_per_lead: 100,
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let nats = Nats::connect(&cli.nats, "shard-write")?;
    for writers in cli.writers.iter().copied() {
        let local = tempfile::tempdir()?;
        let store = Store::open(options(local.path()), Arc::new(SystemClock))?;
        println!("{writers:>3} writers, local log:    {}", run(&store, writers, cli.seconds));
        drop(store);

        // A fresh shard per round: every round starts from an empty stream, as the local log does.
        let dir = tempfile::tempdir()?;
        let log = StreamLog::open(&nats, writers as u32, "shard-write.1", &StreamSettings::default())?;
        let store = Store::open_with_log(options(dir.path()), Arc::new(SystemClock), Box::new(log))?;
        println!("{writers:>3} writers, shard stream: {}", run(&store, writers, cli.seconds));
    }
    Ok(())
}

/// Writes from `writers` threads for `seconds`; the rate and the latencies of the writes.
fn run(store: &Arc<Store>, writers: usize, seconds: u64) -> String {
    let length = Duration::from_secs(seconds);
    let deadline = Instant::now() + length;
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let lead = LeadInput {
                        id: format!("w{writer}-{}", latencies.len() % 1000).into(),
                        attributes: Vec::new(),
                        time_zone: Some(chrono_tz::UTC),
                        consent: Default::default(),
                        campaigns: Vec::new(),
                        owner: Default::default(),
                        phone: Default::default(),
                        email: Default::default(),
                    };
                    let started = Instant::now();
                    store.upsert_leads(vec![lead]).expect("the write is acknowledged");
                    latencies.push(started.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<f64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    latencies.sort_by(f64::total_cmp);
    rate_and_percentiles(&latencies, length)
}
