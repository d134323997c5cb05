//! Acknowledged writes per second: `writers` concurrent clients each record one event at a
//! time (a fresh id on one of `LEADS` leads) and wait for the answer, for `--seconds`. Against a
//! server with fsync `always`, every answer means the write is on disk: the figure to set
//! beside Redis with `appendfsync always` under redis-benchmark at the same concurrency
//! (`bench/write_bench.sh`).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use clap::Parser;
use leadscore_bench::{connect_many, gather, rate_and_percentiles, runtime};
use leadscore_proto::tonic::Status;
use leadscore_proto::v1 as pb;
use pb::lead_service_client::LeadServiceClient;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Leads the writers' events go to.
const LEADS: usize = 1000;

#[derive(Parser)]
struct Cli {
    target: String,
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Connections the writers share in turn.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    worker_threads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    runtime(cli.worker_threads)?.block_on(async {
        let channels = connect_many(&cli.target, cli.connections).await?;
        let leads = (0..LEADS)
            .map(|i| pb::Lead {
                id: format!("w-{i}"),
                time_zone: "UTC".into(),
                phone: format!("+1555{i:07}"),
                ..Default::default()
            })
            .collect();
        LeadServiceClient::new(channels[0].clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await?;
        for (round, writers) in cli.writers.iter().copied().enumerate() {
            let length = Duration::from_secs(cli.seconds);
            let deadline = Instant::now() + length;
            let workers: Vec<_> = (0..writers)
                .map(|writer| {
                    let mut client = LeadServiceClient::new(channels[writer % channels.len()].clone());
                    tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        while Instant::now() < deadline {
                            let n = latencies.len();
                            let event = pb::Event {
                                id: format!("{round}-{writer}-{n}"),
                                lead_id: format!("w-{}", (writer * 7919 + n * 31) % LEADS),
                                kind: "page_view:/pricing".into(),
                                ..Default::default()
                            };
                            let started = Instant::now();
                            client.record_events(pb::RecordEventsRequest { events: vec![event] }).await?;
                            latencies.push(started.elapsed().as_secs_f64() * 1e6);
                        }
                        Ok::<_, Status>((latencies, 0))
                    })
                })
                .collect();
            let (latencies, _) = gather(workers).await?;
            println!(
                "{writers} writers over {} connection(s): acknowledged RecordEvents {}",
                channels.len().min(writers),
                rate_and_percentiles(&latencies, length)
            );
        }
        Ok(())
    })
}
