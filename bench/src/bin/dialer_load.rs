//! The dialer's load generator, and the bare peer it is measured against.
//!
//! - `fill DIR LEADS`: stores LEADS callable leads spread over 50 time zones in a data directory.
//! - `echo ADDR`: a bare tonic server answering `DialerService` at once with no work: the
//!   same generated code, codec and transport as Leadscore, so the difference is the dialer.
//!   With `--canned-claim` it answers every NextLead with a stored claim the size of a real
//!   one (a lead with ten attributes and its score), isolating the dialer's work from the
//!   cost of the larger message.
//! - `inproc LEADS`: the same loop as `unary`, in process with no gRPC: the engine's own cost,
//!   at the same minute of Monday 15:00 UTC however late it runs (`--at-hour`).
//! - `unary ADDR`: NextLead then ReportOutcome in a loop, at each concurrency, over one
//!   connection or `--connections N`; prints throughput and latency percentiles of the loops
//!   served, calls shed (RESOURCE_EXHAUSTED, offered again at once) and Health latency.
//! - `session ADDR [--brief]`: hopper streams kept topped up with credits; prints claims per
//!   second.
//!
//! `bench/dialer_bench.sh` runs them all against `leadscore serve` and Redis.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use leadscore::clock::{Clock, SystemClock};
use leadscore::remote::Bearer;
use leadscore_bench::{
    connect, connect_many, dial_lead, gather, health_summary, incoming_like_leadscore, open_store, open_store_on,
    probe_health, rate_and_percentiles, resident_bytes, runtime,
};
use leadscore_proto::tonic::transport::Server;
use leadscore_proto::tonic::{self, Request, Response, Status, Streaming};
use leadscore_proto::v1 as pb;
use pb::dialer_service_client::DialerServiceClient;
use pb::dialer_service_server::{DialerService, DialerServiceServer};
use tokio_stream::StreamExt;

/// The server's allocator, for the echo peers and the in-process loops alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Tokio worker threads of this process; 1 runs a single-threaded runtime.
    #[arg(long, global = true, default_value_t = 1)]
    worker_threads: usize,
    /// A bearer token for a server that requires one (unary loops).
    #[arg(long, global = true, env = "LEADSCORE_TOKEN")]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    Fill {
        dir: std::path::PathBuf,
        leads: u64,
    },
    /// The same leads stored through a running server (a cluster node, say) with UpsertLeads.
    Seed {
        target: String,
        leads: u64,
    },
    Echo {
        listen: String,
        #[arg(long)]
        canned_claim: bool,
    },
    Inproc {
        leads: u64,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        /// The hour of the week the loop runs at (0 is Monday 00:00 UTC), on a clock moved
        /// forward to it: the leads whose calling window is open depend on the hour, so that
        /// runs at any time of day compare.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(0..168))]
        at_hour: u32,
    },
    Unary {
        target: String,
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        /// Connections the loops share in turn (1: every loop multiplexed over one).
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
    Session {
        target: String,
        #[arg(long, default_value_t = 16)]
        sessions: usize,
        /// Brief claims: the lead's number and score only.
        #[arg(long)]
        brief: bool,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Fill { dir, leads } => return fill(dir, *leads),
        Command::Inproc { leads, seconds, at_hour } => {
            return inproc(*leads, Duration::from_secs(*seconds), *at_hour);
        }
        _ => {}
    }
    runtime(cli.worker_threads)?.block_on(async {
        match cli.command {
            Command::Fill { .. } | Command::Inproc { .. } => unreachable!("handled above"),
            Command::Seed { target, leads } => seed(&target, leads).await,
            Command::Echo { listen, canned_claim } => echo(&listen, canned_claim).await,
            Command::Unary { target, concurrency, connections, seconds } => {
                let bearer = Bearer::new(cli.token.as_deref())?;
                for c in concurrency {
                    unary(&target, c, connections, Duration::from_secs(seconds), &bearer).await?;
                }
                Ok(())
            }
            Command::Session { target, sessions, brief, seconds } => {
                session(&target, sessions, brief, Duration::from_secs(seconds)).await
            }
        }
    })
}

async fn seed(target: &str, leads: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut client = pb::lead_service_client::LeadServiceClient::new(connect(target).await?);
    for start in (0..leads).step_by(1000) {
        let batch: Vec<pb::Lead> = (start..(start + 1000).min(leads)).map(|i| wire_lead(dial_lead(i))).collect();
        // A cluster answers UNAVAILABLE while a shard moves: sent again, as clients must.
        let mut tries = 0;
        while let Err(status) = client.upsert_leads(pb::UpsertLeadsRequest { leads: batch.clone() }).await {
            tries += 1;
            if status.code() != tonic::Code::Unavailable || tries == 100 {
                return Err(status.into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("seeded {leads} callable leads in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A lead as a client sends it.
fn wire_lead(lead: leadscore::store::mutation::LeadInput) -> pb::Lead {
    use leadscore::store::lead::Value;
    use pb::attribute_value::Kind;
    let attributes = lead.attributes.into_iter().map(|(name, value)| {
        let kind = match value {
            Value::Text(text) => Kind::Text(text.into()),
            Value::Number(number) => Kind::Number(number),
            Value::Flag(flag) => Kind::Flag(flag),
        };
        (name.into(), pb::AttributeValue { kind: Some(kind) })
    });
    pb::Lead {
        id: lead.id.to_string(),
        attributes: attributes.collect(),
        time_zone: lead.time_zone.map(|zone| zone.name().to_owned()).unwrap_or_default(),
        phone: lead.phone.into(),
        consent: Some(pb::Consent { phone_consent: lead.consent.phone_consent, ..Default::default() }),
        ..Default::default()
    }
}

fn fill(dir: &std::path::Path, leads: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = open_store(dir);
    for start in (0..leads).step_by(1000) {
        store.upsert_leads((start..(start + 1000).min(leads)).map(dial_lead).collect())?;
    }
    // A server restarted on this many leads starts from a snapshot; without one, the first
    // thing it would do is write one, in the middle of the measurements.
    store.snapshot()?;
    println!("stored {leads} leads in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Answers every call at once, echoing what it can of the request, or with a canned claim.
struct Echo {
    canned: Option<pb::NextLeadResponse>,
}

#[tonic::async_trait]
impl DialerService for Echo {
    type DialerSessionStream = tokio_stream::Empty<Result<pb::DialerResponse, Status>>;

    async fn next_lead(&self, request: Request<pb::NextLeadRequest>) -> Result<Response<pb::NextLeadResponse>, Status> {
        if let Some(canned) = &self.canned {
            return Ok(Response::new(canned.clone()));
        }
        let request = request.into_inner();
        let lease = pb::Lease {
            lease_id: format!("1-{}", request.agent_id),
            lead_id: request.agent_id.clone(),
            agent_id: request.agent_id,
            campaign: request.campaign,
            expires_at: None,
        };
        let claim = pb::Claim { lease: Some(lease), ..Default::default() };
        Ok(Response::new(pb::NextLeadResponse {
            result: Some(pb::next_lead_response::Result::Claim(claim)),
            next_eligible_at: None,
        }))
    }

    async fn report_outcome(
        &self,
        _: Request<pb::ReportOutcomeRequest>,
    ) -> Result<Response<pb::ReportOutcomeResponse>, Status> {
        Ok(Response::new(pb::ReportOutcomeResponse { recycle_at: None, attempts: 1 }))
    }

    async fn release_lead(
        &self,
        _: Request<pb::ReleaseLeadRequest>,
    ) -> Result<Response<pb::ReleaseLeadResponse>, Status> {
        Ok(Response::new(pb::ReleaseLeadResponse {}))
    }

    async fn dialer_session(
        &self,
        _: Request<Streaming<pb::DialerRequest>>,
    ) -> Result<Response<Self::DialerSessionStream>, Status> {
        Err(Status::unimplemented("the echo peer has no sessions"))
    }

    async fn wallboard(&self, _: Request<pb::WallboardRequest>) -> Result<Response<pb::WallboardResponse>, Status> {
        Err(Status::unimplemented("the echo peer has no wallboard"))
    }

    async fn contact_rates(
        &self,
        _: Request<pb::ContactRatesRequest>,
    ) -> Result<Response<pb::ContactRatesResponse>, Status> {
        Err(Status::unimplemented("the echo peer learns no contact rates"))
    }
}

async fn echo(listen: &str, canned_claim: bool) -> anyhow::Result<()> {
    println!("echo peer listening on {listen}");
    let echo = Echo { canned: canned_claim.then(canned_claim_response) };
    // Connections and health as leadscore serves them: the load probes health beside the calls.
    Server::builder()
        .add_service(tonic_health::server::health_reporter().1)
        .add_service(DialerServiceServer::new(echo))
        .serve_with_incoming(incoming_like_leadscore(listen).await?)
        .await?;
    Ok(())
}

/// A NextLead answer shaped like Leadscore's: a lease, a lead with ten attributes, a score
/// with two scorers.
fn canned_claim_response() -> pb::NextLeadResponse {
    use pb::attribute_value::Kind;
    let input = dial_lead(7);
    let attributes = input
        .attributes
        .iter()
        .map(|(name, value)| {
            let kind = match value {
                leadscore::store::lead::Value::Text(t) => Kind::Text(t.to_string()),
                leadscore::store::lead::Value::Number(n) => Kind::Number(*n),
                leadscore::store::lead::Value::Flag(f) => Kind::Flag(*f),
            };
            (name.to_string(), pb::AttributeValue { kind: Some(kind) })
        })
        .collect();
    let now = Some(leadscore_proto::prost_types::Timestamp { seconds: 1_800_000_000, nanos: 0 });
    let lead = pb::Lead {
        id: input.id.to_string(),
        attributes,
        time_zone: "Europe/Berlin".into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: input.phone.to_string(),
        created_at: now,
        updated_at: now,
        ..Default::default()
    };
    let scorer = |name: &str| pb::ScorerScore {
        scorer: name.into(),
        score: 55.0,
        points: 27.5,
        weight: 1.0,
        contribution: 27.5,
        top_factors: Vec::new(),
    };
    let score = pb::LeadScore {
        lead_id: input.id.to_string(),
        campaign: "default".into(),
        score: 55.0,
        band: pb::Band::SalesReady.into(),
        grade: "B2".into(),
        scorers: vec![scorer("fit"), scorer("engagement")],
        config_version: 0,
        scored_at: now,
        account: None,
    };
    let lease = pb::Lease {
        lease_id: format!("123456-{}", input.id),
        lead_id: input.id.to_string(),
        agent_id: "agent-1".into(),
        campaign: "default".into(),
        expires_at: now,
    };
    let claim = pb::Claim {
        lease: Some(lease),
        lead: Some(lead),
        score: Some(score),
        reason: pb::ClaimReason::BestScore.into(),
        attempts: 0,
        local_time: "2027-01-15T10:00:00+01:00".into(),
        dial_by: now,
        dial_by_local: "2027-01-15T21:00:00+01:00".into(),
        // As leadscore explains a claim whose campaign has no calls yet.
        why: "best score 55.0, first of 1,000 callable; contact rate at Fri 10:00 local in Europe/Berlin: \
              0.50 (no calls yet in this segment at this hour), expected value 0.275"
            .into(),
        contact_rate: Some(pb::ContactRate {
            hour_of_week: 106,
            label: "Fri 10:00".into(),
            rate: 0.5,
            low: 0.31,
            high: 0.69,
            ..Default::default()
        }),
        expected_value: 0.275,
        callable: 1000,
    };
    pb::NextLeadResponse { result: Some(pb::next_lead_response::Result::Claim(claim)), next_eligible_at: None }
}

/// The system clock moved forward by whole hours.
#[derive(Debug)]
struct ShiftedClock(i64);

impl ShiftedClock {
    /// Shifted to the same minute of `hour_of_week` (0 is Monday 00:00 UTC), now or ahead.
    fn to_hour(hour_of_week: u32) -> Self {
        Self(shift_to_hour(SystemClock.now_ms(), hour_of_week))
    }
}

/// The whole hours from `now_ms` forward to the same minute of `hour_of_week` (in UTC, as the
/// contact rates count hours of the week).
fn shift_to_hour(now_ms: i64, hour_of_week: u32) -> i64 {
    const HOUR: i64 = 3_600_000;
    let current = leadscore::dialer::contact_rates::hour_of_week(chrono_tz::UTC, now_ms) as i64;
    (i64::from(hour_of_week) - current).rem_euclid(168) * HOUR
}

impl Clock for ShiftedClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.0
    }
}

/// NextLead + ReportOutcome through the engine's own API on one thread, no gRPC, at the same
/// minute of `at_hour` of the week.
fn inproc(leads: u64, length: Duration, at_hour: u32) -> anyhow::Result<()> {
    use leadscore::dialer::{Dialer, Next, Report};
    use leadscore::generation::Generations;
    use leadscore::store::dial::CallResult;
    let dir = tempfile::tempdir()?;
    let clock = std::sync::Arc::new(ShiftedClock::to_hour(at_hour));
    let store = open_store_on(dir.path(), clock.clone());
    for start in (0..leads).step_by(1000) {
        store.upsert_leads((start..(start + 1000).min(leads)).map(dial_lead).collect())?;
    }
    let mut config = leadscore::config::Config::default();
    config.store.data_dir = dir.path().to_owned();
    let (scoring, generations) = Generations::start(store.clone(), clock.clone(), std::sync::Arc::new(config), 0)
        .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    let router = leadscore::routing::Router::new(store.clone(), scoring.clone(), generations.clone(), clock.clone());
    let dialer = Dialer::start(store, scoring, generations, std::sync::Arc::new(router), clock);
    dialer.next_lead("", "warm-up")?;
    // Said before the loop, so that a profiler can be attached to the loop alone.
    eprintln!(
        "{leads} leads stored; looping for {} s at hour {at_hour} of the week (pid {})",
        length.as_secs(),
        std::process::id()
    );
    let (mut loops, mut dry) = (0u64, 0u64);
    let resident = resident_bytes();
    let started = Instant::now();
    while started.elapsed() < length {
        let Next::Claimed(claimed) = dialer.next_lead("", "agent")? else {
            // Every open lead is called: the rest of the time would measure dry answers.
            dry += 1;
            break;
        };
        {
            let lease_id = leadscore::dialer::lease_id(claimed.lease.id, &claimed.lead_id);
            let report = Report {
                lease_id,
                result: CallResult::NoAnswer,
                at_ms: claimed.lease.claimed_at_ms,
                callback: None,
                talk_ms: 0,
                note: String::new(),
            };
            dialer.report(report)?;
        }
        loops += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let grown = resident_bytes().saturating_sub(resident);
    println!(
        "in process, {leads} leads: {:.0} NextLead+ReportOutcome/s ({:.1} µs each, {loops} loops in {seconds:.1} s; memory grew {} bytes a loop{})",
        loops as f64 / seconds,
        seconds * 1e6 / loops as f64,
        grown / loops.max(1),
        if dry > 0 { "; stopped early: every lead in an open window was called" } else { "" }
    );
    Ok(())
}

/// `concurrency` loops of NextLead + ReportOutcome for `length`; prints loops/s and the
/// percentiles of one loop's latency.
async fn unary(
    target: &str,
    concurrency: usize,
    connections: usize,
    length: Duration,
    bearer: &Bearer,
) -> anyhow::Result<()> {
    let channels = connect_many(target, connections).await?;
    let deadline = Instant::now() + length;
    let shed = Arc::new(AtomicU64::new(0));
    let health = probe_health(target, deadline).await?;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let channel = channels[worker % channels.len()].clone();
            let mut client = DialerServiceClient::with_interceptor(channel, bearer.clone());
            let shed = shed.clone();
            tokio::spawn(async move {
                let (mut latencies, mut dry) = (Vec::new(), 0u64);
                let agent = format!("agent-{worker}");
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.clone() };
                    // Refused by a limit: counted apart, and offered again at once.
                    let next = match client.next_lead(request).await {
                        Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                            shed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        next => next?.into_inner(),
                    };
                    match next.result {
                        Some(pb::next_lead_response::Result::Claim(claim)) => {
                            let outcome = pb::Outcome {
                                lease_id: claim.lease.unwrap_or_default().lease_id,
                                result: pb::CallResult::NoAnswer.into(),
                                ..Default::default()
                            };
                            let request = pb::ReportOutcomeRequest { outcome: Some(outcome) };
                            // A shed report is offered again: the lease must end.
                            loop {
                                match client.report_outcome(request.clone()).await {
                                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                                        shed.fetch_add(1, Ordering::Relaxed);
                                    }
                                    reported => break reported.map(drop)?,
                                }
                            }
                        }
                        _ => dry += 1,
                    }
                    latencies.push(started.elapsed().as_secs_f64() * 1e6);
                }
                Ok::<_, Status>((latencies, dry))
            })
        })
        .collect();
    let (latencies, dry) = gather(workers).await?;
    let health = health.await??;
    println!(
        "unary concurrency {concurrency}, {} connection(s): NextLead+ReportOutcome {} ({} loops, {dry} found nothing, \
         {} shed); {}",
        channels.len(),
        rate_and_percentiles(&latencies, length),
        latencies.len(),
        shed.load(Ordering::Relaxed),
        health_summary(&health),
    );
    Ok(())
}

/// `sessions` hopper streams, each kept at least `LOW` credits ahead, for `length`; prints
/// claims per second over all of them.
async fn session(target: &str, sessions: usize, brief: bool, length: Duration) -> anyhow::Result<()> {
    const BATCH: u32 = 256;
    let channel = connect(target).await?;
    let started = Instant::now();
    let deadline = started + length;
    let workers: Vec<_> = (0..sessions)
        .map(|worker| {
            let mut client = DialerServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let (tx, requests) = tokio::sync::mpsc::channel(16);
                let send = |message| pb::DialerRequest { message: Some(message) };
                let hello = pb::DialerHello { campaign: String::new(), agent_id: format!("hopper-{worker}"), brief };
                tx.send(send(pb::dialer_request::Message::Hello(hello))).await.ok();
                tx.send(send(pb::dialer_request::Message::Credits(2 * BATCH))).await.ok();
                let mut pushed =
                    client.dialer_session(tokio_stream::wrappers::ReceiverStream::new(requests)).await?.into_inner();
                let (mut claims, mut outstanding) = (0u64, 2 * BATCH);
                while let Some(message) = tokio::time::timeout_at(deadline.into(), pushed.next()).await.ok().flatten() {
                    match message?.message {
                        Some(pb::dialer_response::Message::Claim(_)) => {
                            claims += 1;
                            outstanding -= 1;
                            if outstanding < BATCH {
                                tx.send(send(pb::dialer_request::Message::Credits(BATCH))).await.ok();
                                outstanding += BATCH;
                            }
                        }
                        Some(pb::dialer_response::Message::Starved(_)) => break,
                        _ => {}
                    }
                }
                Ok::<_, Status>(claims)
            })
        })
        .collect();
    let mut claims = 0;
    for worker in workers {
        claims += worker.await??;
    }
    let elapsed = started.elapsed().min(length).as_secs_f64();
    let kind = if brief { "brief" } else { "full" };
    println!(
        "session x{sessions}, {kind} claims: {:.0} claims/s ({claims} claims in {elapsed:.1} s)",
        claims as f64 / elapsed
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shift_to_hour;

    #[test]
    fn the_shifted_clock_moves_forward_to_the_hour_of_the_week_asked() {
        const HOUR: i64 = 3_600_000;
        // Monday 2026-12-07 21:30 UTC.
        let monday_evening = 1_796_679_000_000;
        assert_eq!(shift_to_hour(monday_evening, 21), 0, "already there");
        assert_eq!(shift_to_hour(monday_evening, 15), 162 * HOUR, "next Monday, 15:30");
        assert_eq!(shift_to_hour(monday_evening, 22), HOUR);
        // Sunday 23:00 is the week's last hour; the epoch, a Thursday at midnight, is hour 72.
        assert_eq!(shift_to_hour(monday_evening, 167), (167 - 21) * HOUR);
        assert_eq!(shift_to_hour(0, 72), 0);
        assert_eq!(shift_to_hour(0, 0), 96 * HOUR, "Thursday midnight to the next Monday's");
    }
}
