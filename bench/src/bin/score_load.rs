//! The synchronous scoring calls under load, and the bare peer they are measured against.
//!
//! - `seed ADDR`: stores `LEADS` leads of ten attributes and five events each in a server.
//! - `echo ADDR --like TARGET`: a bare tonic server answering `Score`, `ScoreBatch`, `Explain`
//!   and `GetLead` at once with the answers TARGET (a seeded leadscore) gave for the same
//!   leads: the same generated code, codec, transport and message sizes, so the difference is
//!   the engine's work. It counts `UpsertLeads`' leads as created and `RecordEvents`'
//!   events as recorded, for `write-load`.
//! - `load ADDR --rpc score|batch|explain|get|top`: that call in a loop at each concurrency,
//!   over `--connections` connections, `--compression gzip|zstd` asked for both ways; prints
//!   throughput, latency percentiles and the loopback bytes per call.
//!
//! `bench/score_bench.sh` runs them against `leadscore serve`.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use leadscore::remote::Bearer;
use leadscore_bench::{
    connect, connect_many, gather, health_summary, incoming_like_leadscore, probe_health, rate_and_percentiles, runtime,
};
use leadscore_proto::tonic::transport::Server;
use leadscore_proto::tonic::{self, Request, Response, Status, Streaming};
use leadscore_proto::v1 as pb;
use pb::lead_service_client::LeadServiceClient;
use pb::lead_service_server::{LeadService, LeadServiceServer};
use pb::scoring_service_client::ScoringServiceClient;
use pb::scoring_service_server::{ScoringService, ScoringServiceServer};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LEADS: usize = 1000;
/// Leads in one `ScoreBatch`.
const BATCH: usize = 100;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[arg(long, global = true, default_value_t = 1)]
    worker_threads: usize,
    /// A bearer token for a server that requires one (sent to the echo too: the same requests).
    #[arg(long, global = true, env = "LEADSCORE_TOKEN")]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    Seed {
        target: String,
    },
    Echo {
        listen: String,
        #[arg(long)]
        like: String,
    },
    Load {
        target: String,
        #[arg(long, value_enum)]
        rpc: Rpc,
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        #[arg(long, value_enum, default_value = "none")]
        compression: Compression,
    },
}

/// What the load's clients send compressed and ask answers in.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn encoding(self) -> Option<tonic::codec::CompressionEncoding> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(tonic::codec::CompressionEncoding::Gzip),
            Compression::Zstd => Some(tonic::codec::CompressionEncoding::Zstd),
        }
    }
}

/// Bytes sent over loopback so far, both ways of every connection (Linux).
fn loopback_bytes() -> Option<u64> {
    std::fs::read_to_string("/sys/class/net/lo/statistics/tx_bytes").ok()?.trim().parse().ok()
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Rpc {
    /// One inline lead of ten attributes and five events.
    Score,
    /// A hundred such leads.
    Batch,
    /// A stored lead, explained factor by factor.
    Explain,
    /// A stored lead with its events.
    Get,
    /// The hundred best stored leads (on a cluster: every shard's, merged).
    Top,
}

fn attributes(i: usize) -> std::collections::BTreeMap<String, pb::AttributeValue> {
    let text = |s: &str| pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Text(s.into())) };
    let number = |n: f64| pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Number(n)) };
    [
        ("role", text(["CTO", "Director", "Engineer", "VP Sales"][i % 4])),
        ("department", text(["IT", "Sales", "Marketing"][i % 3])),
        ("employees", number((10 + i * 37 % 2000) as f64)),
        ("industry", text(["software", "retail", "finance"][i % 3])),
        ("country", text(["US", "DE", "FR", "GB"][i % 4])),
        ("annual_revenue", number((i * 7919 % 50_000_000) as f64)),
        ("lead_source", text(["web", "event", "referral"][i % 3])),
        ("title_seniority", number((i % 5) as f64)),
        ("budget_confirmed", text(if i.is_multiple_of(2) { "yes" } else { "no" })),
        ("company", text(&format!("company-{}", i % 97))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn events(lead_id: &str, i: usize) -> Vec<pb::Event> {
    ["email_open", "page_view:/pricing", "webinar_attended", "demo_request", "email_click"]
        .iter()
        .enumerate()
        .map(|(n, kind)| pb::Event {
            id: format!("{i}-{n}"),
            lead_id: lead_id.into(),
            kind: (*kind).into(),
            ..Default::default()
        })
        .collect()
}

fn lead(i: usize) -> pb::Lead {
    pb::Lead { id: format!("s-{i}"), attributes: attributes(i), time_zone: "UTC".into(), ..Default::default() }
}

fn score_request(i: usize) -> pb::ScoreRequest {
    pb::ScoreRequest { lead: Some(lead(i)), events: events("", i), campaign: String::new(), explain: false }
}

fn batch_request(i: usize) -> pb::ScoreBatchRequest {
    pb::ScoreBatchRequest { requests: (i..i + BATCH).map(score_request).collect() }
}

fn explain_request(i: usize) -> pb::ExplainRequest {
    pb::ExplainRequest { contact_curve: false, lead_id: format!("s-{}", i % LEADS), campaign: String::new() }
}

fn get_request(i: usize) -> pb::GetLeadRequest {
    pb::GetLeadRequest { id: format!("s-{}", i % LEADS), include_events: true }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bearer = Bearer::new(cli.token.as_deref())?;
    runtime(cli.worker_threads)?.block_on(async move {
        match cli.command {
            Command::Seed { target } => seed(&target, &bearer).await,
            Command::Echo { listen, like } => echo(&listen, &like, &bearer).await,
            Command::Load { target, rpc, concurrency, connections, seconds, compression } => {
                for c in concurrency {
                    let length = Duration::from_secs(seconds);
                    load(&target, rpc, c, connections, length, compression, &bearer).await?;
                }
                Ok(())
            }
        }
    })
}

async fn seed(target: &str, bearer: &Bearer) -> anyhow::Result<()> {
    let channel = connect(target).await?;
    let mut leads = LeadServiceClient::with_interceptor(channel, bearer.clone());
    let batch: Vec<pb::Lead> = (0..LEADS).map(lead).collect();
    let events: Vec<pb::Event> = (0..LEADS).flat_map(|i| events(&format!("s-{i}"), i)).collect();
    // A cluster answers UNAVAILABLE while a shard moves: sent again, as clients must.
    for tries in 1.. {
        let stored = async {
            leads.upsert_leads(pb::UpsertLeadsRequest { leads: batch.clone() }).await?;
            leads.record_events(pb::RecordEventsRequest { events: events.clone() }).await
        };
        match stored.await {
            Err(status) if status.code() == tonic::Code::Unavailable && tries < 100 => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            stored => {
                stored?;
                break;
            }
        }
    }
    println!("seeded {LEADS} leads of ten attributes and five events");
    Ok(())
}

/// The answers a seeded leadscore gives, replayed: for `Explain` and `GetLead` the answer for
/// the lead asked for, since a stored lead's answer grows with its number (its id, its events'
/// ids); `Score`'s answer is the same size for any inline lead.
struct Echo {
    score: pb::ScoreResponse,
    batch: pb::ScoreBatchResponse,
    explain: HashMap<String, pb::ExplainResponse>,
    get: HashMap<String, pb::GetLeadResponse>,
}

async fn echo(listen: &str, like: &str, bearer: &Bearer) -> anyhow::Result<()> {
    let channel = connect(like).await?;
    let mut scoring = ScoringServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut leads = LeadServiceClient::with_interceptor(channel, bearer.clone());
    let (mut explain, mut get) = (HashMap::new(), HashMap::new());
    for i in 0..LEADS {
        let request = get_request(i);
        get.insert(request.id.clone(), leads.get_lead(request).await?.into_inner());
        let request = explain_request(i);
        explain.insert(request.lead_id.clone(), scoring.explain(request).await?.into_inner());
    }
    let echo = Echo {
        score: scoring.score(score_request(0)).await?.into_inner(),
        batch: scoring.score_batch(batch_request(0)).await?.into_inner(),
        explain,
        get,
    };
    let echo = std::sync::Arc::new(echo);
    // Connections and health as leadscore serves them: the load probes health beside the calls.
    Server::builder()
        .add_service(tonic_health::server::health_reporter().1)
        .add_service(ScoringServiceServer::from_arc(echo.clone()))
        .add_service(LeadServiceServer::from_arc(echo))
        .serve_with_incoming(incoming_like_leadscore(listen).await?)
        .await?;
    Ok(())
}

/// The answer kept for `id`, or NOT_FOUND as leadscore would answer a lead it does not hold.
fn kept<T: Clone>(answers: &HashMap<String, T>, id: &str) -> Result<Response<T>, Status> {
    answers.get(id).map(|answer| Response::new(answer.clone())).ok_or_else(|| Status::not_found(id.to_owned()))
}

type Nothing<T> = tokio_stream::Empty<Result<T, Status>>;

#[tonic::async_trait]
impl ScoringService for Echo {
    type TopLeadsStream = Nothing<pb::RankedLead>;
    type WatchScoresStream = Nothing<pb::BandCrossing>;
    type TopAccountsStream = Nothing<pb::RankedAccount>;
    type WatchTopLeadsStream = Nothing<pb::WatchTopLeadsResponse>;

    async fn score(&self, _: Request<pb::ScoreRequest>) -> Result<Response<pb::ScoreResponse>, Status> {
        Ok(Response::new(self.score.clone()))
    }
    async fn score_batch(&self, _: Request<pb::ScoreBatchRequest>) -> Result<Response<pb::ScoreBatchResponse>, Status> {
        Ok(Response::new(self.batch.clone()))
    }
    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Result<Response<pb::ExplainResponse>, Status> {
        kept(&self.explain, &request.get_ref().lead_id)
    }
    async fn top_leads(&self, _: Request<pb::TopLeadsRequest>) -> Result<Response<Self::TopLeadsStream>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn watch_scores(
        &self,
        _: Request<pb::WatchScoresRequest>,
    ) -> Result<Response<Self::WatchScoresStream>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn watch_top_leads(
        &self,
        _: Request<pb::TopLeadsRequest>,
    ) -> Result<Response<Self::WatchTopLeadsStream>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn score_history(
        &self,
        _: Request<pb::ScoreHistoryRequest>,
    ) -> Result<Response<pb::ScoreHistoryResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn top_accounts(
        &self,
        _: Request<pb::TopAccountsRequest>,
    ) -> Result<Response<Self::TopAccountsStream>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn score_distribution(
        &self,
        _: Request<pb::ScoreDistributionRequest>,
    ) -> Result<Response<pb::ScoreDistributionResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
}

#[tonic::async_trait]
impl LeadService for Echo {
    async fn upsert_leads(
        &self,
        request: Request<pb::UpsertLeadsRequest>,
    ) -> Result<Response<pb::UpsertLeadsResponse>, Status> {
        let created = request.get_ref().leads.len() as u32;
        Ok(Response::new(pb::UpsertLeadsResponse { created, updated: 0 }))
    }
    async fn get_lead(&self, request: Request<pb::GetLeadRequest>) -> Result<Response<pb::GetLeadResponse>, Status> {
        kept(&self.get, &request.get_ref().id)
    }
    /// Every event counted as recorded: the peer of `write-load`'s acknowledged writes.
    async fn record_events(
        &self,
        request: Request<pb::RecordEventsRequest>,
    ) -> Result<Response<pb::RecordEventsResponse>, Status> {
        let recorded = request.get_ref().events.len() as u32;
        Ok(Response::new(pb::RecordEventsResponse { recorded, duplicates: 0 }))
    }
    async fn import_leads(
        &self,
        _: Request<Streaming<pb::ImportLeadsRequest>>,
    ) -> Result<Response<pb::ImportLeadsResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
    async fn erase_lead(&self, _: Request<pb::EraseLeadRequest>) -> Result<Response<pb::EraseLeadResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
}

async fn load(
    target: &str,
    rpc: Rpc,
    concurrency: usize,
    connections: usize,
    length: Duration,
    compression: Compression,
    bearer: &Bearer,
) -> anyhow::Result<()> {
    let channels = connect_many(target, connections).await?;
    let bytes_before = loopback_bytes();
    let deadline = Instant::now() + length;
    let health = probe_health(target, deadline).await?;
    let shed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let channel = channels[worker % channels.len()].clone();
            let (mut scoring, mut leads) = (
                ScoringServiceClient::with_interceptor(channel.clone(), bearer.clone()),
                LeadServiceClient::with_interceptor(channel, bearer.clone()),
            );
            if let Some(encoding) = compression.encoding() {
                scoring = scoring.send_compressed(encoding).accept_compressed(encoding);
                leads = leads.send_compressed(encoding).accept_compressed(encoding);
            }
            let shed = shed.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let i = worker * 7919 + latencies.len();
                    // Requests are built before the clock starts: the client's work is not the server's.
                    let started;
                    match rpc {
                        Rpc::Score => {
                            let request = score_request(i);
                            started = Instant::now();
                            // Refused by a limit: counted apart, and offered again at once.
                            match scoring.score(request).await {
                                Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                                    shed.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                scored => drop(scored?),
                            }
                        }
                        Rpc::Batch => {
                            let request = batch_request(i);
                            started = Instant::now();
                            scoring.score_batch(request).await?;
                        }
                        Rpc::Explain => {
                            let request = explain_request(i);
                            started = Instant::now();
                            scoring.explain(request).await?;
                        }
                        Rpc::Get => {
                            let request = get_request(i);
                            started = Instant::now();
                            leads.get_lead(request).await?;
                        }
                        Rpc::Top => {
                            let request = pb::TopLeadsRequest { limit: 100, ..Default::default() };
                            started = Instant::now();
                            let mut ranked = scoring.top_leads(request).await?.into_inner();
                            while ranked.message().await?.is_some() {}
                        }
                    }
                    latencies.push(started.elapsed().as_secs_f64() * 1e6);
                }
                Ok::<_, Status>((latencies, 0))
            })
        })
        .collect();
    let (latencies, _) = gather(workers).await?;
    let health = health.await??;
    // The health probe's few calls a second are counted too: small beside the load's.
    let per_call = match (bytes_before, loopback_bytes()) {
        (Some(before), Some(after)) => {
            format!("; {} loopback bytes a call", (after - before) / latencies.len().max(1) as u64)
        }
        _ => String::new(),
    };
    println!(
        "{rpc:?} {compression:?} concurrency {concurrency}, {} connection(s): {} ({} shed){per_call}; {}",
        channels.len(),
        rate_and_percentiles(&latencies, length),
        shed.load(Ordering::Relaxed),
        health_summary(&health),
    );
    Ok(())
}
