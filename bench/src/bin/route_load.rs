//! Routing's load generator, and the bare peer it is measured against.
//!
//! - `agents ADDR COUNT`: registers COUNT agents (tiers 1-3, one to three languages) with a
//!   running server and makes them available.
//! - `echo ADDR`: a bare tonic server answering `RoutingService` at once with no work; with
//!   `--canned` it answers every Route with a stored decision the size of a real one.
//! - `unary ADDR --leads N`: Route for random leads among the first N `dial-load fill` stored,
//!   at each concurrency, over one connection or `--connections N`; prints throughput and
//!   latency percentiles.
//! - `inproc LEADS AGENTS`: decisions in process with no gRPC, each timed: the engine's cost.
//!
//! `bench/route_bench.sh` runs them all against `leadscore serve`.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use leadscore_bench::{
    agent, connect, connect_many, dial_lead, gather, incoming_like_leadscore, lead, open_store, rate_and_percentiles,
    runtime,
};
use leadscore_proto::tonic::transport::Server;
use leadscore_proto::tonic::{self, Request, Response, Status};
use leadscore_proto::v1 as pb;
use pb::routing_service_client::RoutingServiceClient;
use pb::routing_service_server::{RoutingService, RoutingServiceServer};
use rand::{Rng, SeedableRng};

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
}

#[derive(Subcommand)]
enum Command {
    Agents {
        target: String,
        count: u64,
    },
    Echo {
        listen: String,
        #[arg(long)]
        canned: bool,
    },
    Unary {
        target: String,
        #[arg(long)]
        leads: u64,
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        /// Connections the loops share in turn (1: every loop multiplexed over one).
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
    Inproc {
        leads: u64,
        agents: u64,
        #[arg(long, default_value_t = 200_000)]
        decisions: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Inproc { leads, agents, decisions } = cli.command {
        return inproc(leads, agents, decisions);
    }
    runtime(cli.worker_threads)?.block_on(async {
        match cli.command {
            Command::Inproc { .. } => unreachable!("handled above"),
            Command::Agents { target, count } => register(&target, count).await,
            Command::Echo { listen, canned } => echo(&listen, canned).await,
            Command::Unary { target, leads, concurrency, connections, seconds } => {
                for c in concurrency {
                    unary(&target, leads, c, connections, Duration::from_secs(seconds)).await?;
                }
                Ok(())
            }
        }
    })
}

fn agent_out(i: u64) -> pb::Agent {
    let input = agent(i);
    let strings = |values: &[_]| values.iter().map(ToString::to_string).collect();
    pb::Agent {
        id: input.id.to_string(),
        name: input.name.to_string(),
        skills: Some(pb::AgentSkills {
            languages: strings(&input.skills.languages),
            regions: strings(&input.skills.regions),
            products: strings(&input.skills.products),
            tier: input.skills.tier,
        }),
        capacity: input.capacity,
        state: 0,
    }
}

async fn register(target: &str, count: u64) -> anyhow::Result<()> {
    let mut client = RoutingServiceClient::new(connect(target).await?);
    client.upsert_agents(pb::UpsertAgentsRequest { agents: (0..count).map(agent_out).collect() }).await?;
    for i in 0..count {
        let request =
            pb::SetAgentStateRequest { agent_id: agent(i).id.to_string(), state: pb::AgentState::Available.into() };
        client.set_agent_state(request).await?;
    }
    println!("{count} agents registered and available");
    Ok(())
}

/// Answers every call at once: Route with a minimal decision naming the lead, or a canned one.
struct Echo {
    canned: Option<pb::RouteResponse>,
}

#[tonic::async_trait]
impl RoutingService for Echo {
    type WatchRoutingStream = tokio_stream::Empty<Result<pb::RoutingDecision, Status>>;

    async fn upsert_agents(
        &self,
        _: Request<pb::UpsertAgentsRequest>,
    ) -> Result<Response<pb::UpsertAgentsResponse>, Status> {
        Ok(Response::new(pb::UpsertAgentsResponse::default()))
    }

    async fn set_agent_state(
        &self,
        _: Request<pb::SetAgentStateRequest>,
    ) -> Result<Response<pb::SetAgentStateResponse>, Status> {
        Ok(Response::new(pb::SetAgentStateResponse {}))
    }

    async fn route(&self, request: Request<pb::RouteRequest>) -> Result<Response<pb::RouteResponse>, Status> {
        if let Some(canned) = &self.canned {
            return Ok(Response::new(canned.clone()));
        }
        let decision = pb::RoutingDecision { lead_id: request.into_inner().lead_id, ..Default::default() };
        Ok(Response::new(pb::RouteResponse { decision: Some(decision) }))
    }

    async fn watch_routing(
        &self,
        _: Request<pb::WatchRoutingRequest>,
    ) -> Result<Response<Self::WatchRoutingStream>, Status> {
        Err(Status::unimplemented("the echo peer has no stream"))
    }
}

async fn echo(listen: &str, canned: bool) -> anyhow::Result<()> {
    println!("echo peer listening on {listen}");
    let echo = Echo { canned: canned.then(canned_decision) };
    Server::builder()
        .add_service(RoutingServiceServer::new(echo))
        .serve_with_incoming(incoming_like_leadscore(listen).await?)
        .await?;
    Ok(())
}

/// A Route answer shaped like Leadscore's: an agent, the rule, the runner-up, five reasons.
fn canned_decision() -> pb::RouteResponse {
    let reasons = [
        "band hot (score 81.2 in campaign default)",
        "rule hot-to-senior-sales: queue senior-sales",
        "agents where tier >= 2: 667 skilled, 667 available with capacity",
        "best expected conversion in segment hot, ties to the longest idle",
    ];
    let decision = pb::RoutingDecision {
        decision_id: "19a4bc2f800-123456".into(),
        lead_id: lead(7).id.to_string(),
        target: Some(pb::RouteTarget { target: Some(pb::route_target::Target::AgentId("agent-0412".into())) }),
        priority: 30,
        rule: "hot-to-senior-sales".into(),
        band: pb::Band::Hot.into(),
        score: 81.2,
        expected_conversion: 0.31,
        runner_up_conversion: 0.29,
        runner_up_agent_id: "agent-0077".into(),
        arm: pb::RoutingArm::Pairing.into(),
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        decided_at: Some(leadscore_proto::prost_types::Timestamp { seconds: 1_800_000_000, nanos: 0 }),
        queue: "senior-sales".into(),
        // The bench's leads have no display attributes, phone or owner.
        card: Some(pb::LeadCard::default()),
    };
    pb::RouteResponse { decision: Some(decision) }
}

/// `concurrency` loops of Route for random leads, for `length`; prints calls/s and latency
/// percentiles.
async fn unary(
    target: &str,
    leads: u64,
    concurrency: usize,
    connections: usize,
    length: Duration,
) -> anyhow::Result<()> {
    let channels = connect_many(target, connections).await?;
    let deadline = Instant::now() + length;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let mut client = RoutingServiceClient::new(channels[worker % channels.len()].clone());
            tokio::spawn(async move {
                let (mut latencies, mut to_agents) = (Vec::new(), 0u64);
                let mut rng = rand::rngs::StdRng::from_os_rng();
                while Instant::now() < deadline {
                    let lead_id = lead(rng.random_range(0..leads)).id.to_string();
                    let started = Instant::now();
                    let decision = client.route(pb::RouteRequest { lead_id, campaign: String::new() }).await?;
                    latencies.push(started.elapsed().as_secs_f64() * 1e6);
                    let target = decision.into_inner().decision.and_then(|d| d.target).and_then(|t| t.target);
                    to_agents += u64::from(matches!(target, Some(pb::route_target::Target::AgentId(_))));
                }
                Ok::<_, Status>((latencies, to_agents))
            })
        })
        .collect();
    let (latencies, to_agents) = gather(workers).await?;
    println!(
        "unary concurrency {concurrency}, {} connection(s): Route {} ({} calls, {:.0}% to an agent)",
        channels.len(),
        rate_and_percentiles(&latencies, length),
        latencies.len(),
        100.0 * to_agents as f64 / latencies.len() as f64,
    );
    Ok(())
}

/// Decisions through the engine's own API on one thread, no gRPC, each timed.
fn inproc(leads: u64, agents: u64, decisions: usize) -> anyhow::Result<()> {
    use leadscore::clock::SystemClock;
    use leadscore::generation::Generations;
    use leadscore::routing::{Router, Target};
    use leadscore::store::agents::Presence;
    let dir = tempfile::tempdir()?;
    let store = open_store(dir.path());
    for start in (0..leads).step_by(1000) {
        store.upsert_leads((start..(start + 1000).min(leads)).map(dial_lead).collect())?;
    }
    store.upsert_agents((0..agents).map(agent).collect(), "route-load")?;
    for i in 0..agents {
        store.set_presence(&agent(i).id, Presence::Available)?;
    }
    let mut config = leadscore::config::Config::default();
    config.store.data_dir = dir.path().to_owned();
    let clock = Arc::new(SystemClock);
    let (scoring, generations) = Generations::start(store.clone(), clock.clone(), Arc::new(config), 0)
        .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    let router = Router::new(store, scoring, generations, clock);
    let mut rng = rand::rng();
    // Decisions that compared agents, and those that sent the lead to a queue, timed apart.
    let (mut to_agents, mut to_queues) = (Vec::with_capacity(decisions), Vec::with_capacity(decisions));
    let started = Instant::now();
    for _ in 0..decisions {
        let id = lead(rng.random_range(0..leads)).id;
        let started = Instant::now();
        let decision = router.route(&id, "")?;
        let micros = started.elapsed().as_secs_f64() * 1e6;
        match decision.target {
            Target::Agent(_) => to_agents.push(micros),
            Target::Queue(_) => to_queues.push(micros),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("in process, {leads} leads, {agents} agents: {:.0} decisions/s", decisions as f64 / elapsed);
    for (name, mut micros) in [("to an agent", to_agents), ("to a queue", to_queues)] {
        if micros.is_empty() {
            continue;
        }
        micros.sort_by(f64::total_cmp);
        println!(
            "  {name}: {} decisions, median {:.1} µs, p99 {:.1} µs",
            micros.len(),
            micros[micros.len() / 2],
            micros[micros.len() * 99 / 100]
        );
    }
    Ok(())
}
