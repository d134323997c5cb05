//! `RoutingService`: agents, their presence, routing decisions and the stream of them.

use std::collections::HashSet;
use std::pin::Pin;

use leadscore_proto::tonic::{self, Request, Response, Status, codegen::tokio_stream::Stream};
use leadscore_proto::v1 as pb;
use pb::routing_service_server::RoutingService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Context;
use super::convert::{self, FieldError, band_out, timestamp_from_ms};
use super::pool::blocking;
use super::status::status;
use leadscore_services::routing::{Decision, Target};
use leadscore_store::agents::{AgentInput, Arm, Presence, Skills};

/// Agents one `UpsertAgents` may carry.
const MAX_AGENTS: usize = 10_000;
/// Skills of one kind an agent may list.
const MAX_SKILLS: usize = 64;
/// Decisions queued for one watcher between the router and the socket.
const STREAM_BUFFER: usize = 256;

type DecisionStream = Pin<Box<dyn Stream<Item = Result<pb::RoutingDecision, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RoutingService for Context {
    type WatchRoutingStream = DecisionStream;

    async fn upsert_agents(
        &self,
        request: Request<pb::UpsertAgentsRequest>,
    ) -> Result<Response<pb::UpsertAgentsResponse>, Status> {
        let actor = crate::ops::auth::actor(&request);
        let agents = agents_in(&request.into_inner().agents)?;
        let total = agents.len() as u32;
        let store = self.store.clone();
        let created = blocking(move || store.upsert_agents(agents, &actor)).await?;
        Ok(Response::new(pb::UpsertAgentsResponse { created, updated: total - created }))
    }

    async fn set_agent_state(
        &self,
        request: Request<pb::SetAgentStateRequest>,
    ) -> Result<Response<pb::SetAgentStateResponse>, Status> {
        let request = request.into_inner();
        let agent = convert::agent_id("agent_id", &request.agent_id)?;
        let presence = match pb::AgentState::try_from(request.state) {
            Ok(pb::AgentState::Available) => Presence::Available,
            Ok(pb::AgentState::Busy) => Presence::Busy,
            Ok(pb::AgentState::Offline) => Presence::Offline,
            _ => return Err(FieldError::new("state", "must be AVAILABLE, BUSY or OFFLINE").into()),
        };
        let store = self.store.clone();
        blocking(move || store.set_presence(&agent, presence)).await?;
        Ok(Response::new(pb::SetAgentStateResponse {}))
    }

    async fn route(&self, request: Request<pb::RouteRequest>) -> Result<Response<pb::RouteResponse>, Status> {
        let request = request.into_inner();
        let lead_id = convert::id("lead_id", &request.lead_id)?;
        let decision = self.router.route(&lead_id, &request.campaign).map_err(status)?;
        Ok(Response::new(pb::RouteResponse { decision: Some(decision_out(decision)) }))
    }

    async fn watch_routing(
        &self,
        request: Request<pb::WatchRoutingRequest>,
    ) -> Result<Response<Self::WatchRoutingStream>, Status> {
        let request = request.into_inner();
        let queues: HashSet<String> = request.queues.into_iter().collect();
        let agents: HashSet<String> = request.agent_ids.into_iter().collect();
        let wanted = move |d: &Decision| {
            let agent = match &d.target {
                Target::Agent(agent) => Some(agent.as_str()),
                Target::Queue(_) => None,
            };
            (queues.is_empty() && agents.is_empty())
                || queues.contains(d.queue.as_str())
                || agent.is_some_and(|a| agents.contains(a))
        };
        let mut decisions = self.router.subscribe();
        let mut closing = self.closing.clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    received = decisions.recv() => received,
                    _ = closing.wait_for(|closing| *closing) => return,
                };
                let message = match received {
                    Ok(decision) if !wanted(&decision) => continue,
                    Ok(decision) => Ok(decision_out(Decision::clone(&decision))),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Err(Status::resource_exhausted(format!(
                        "this watcher fell {missed} decisions behind and was dropped rather than slow routing; \
                         read faster or filter by queue or agent, then watch again"
                    ))),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let failed = message.is_err();
                // A full socket buffer counts as falling behind: routing never waits for it.
                match tx.try_send(message) {
                    Ok(()) if !failed => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let status = Status::resource_exhausted(
                            "this watcher fell behind and was dropped rather than slow routing; \
                             read faster or filter by queue or agent, then watch again",
                        );
                        // Said once the watcher reads again, unless the server stops first.
                        tokio::select! {
                            _ = tx.send(Err(status)) => {}
                            _ = closing.wait_for(|closing| *closing) => {}
                        }
                        return;
                    }
                    _ => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

pub(super) fn agents_in(agents: &[pb::Agent]) -> Result<Vec<AgentInput>, FieldError> {
    convert::batch_len("agents", agents.len(), MAX_AGENTS)?;
    let mut seen = HashSet::new();
    agents
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            let field = |name: &str| format!("agents[{i}].{name}");
            let id = convert::agent_id(&field("id"), &agent.id)?;
            if !seen.insert(id.clone()) {
                return Err(FieldError::new(field("id"), format!("{id:?} appears twice in the batch")));
            }
            if agent.capacity == 0 || agent.capacity > 1000 {
                return Err(FieldError::new(field("capacity"), format!("must be 1-1000, got {}", agent.capacity)));
            }
            let skills = agent.skills.clone().unwrap_or_default();
            let list = |name: &str, values: &[String]| -> Result<Vec<_>, FieldError> {
                if values.len() > MAX_SKILLS {
                    let rule = format!("at most {MAX_SKILLS} allowed, got {}", values.len());
                    return Err(FieldError::new(field(&format!("skills.{name}")), rule));
                }
                values
                    .iter()
                    .enumerate()
                    .map(|(j, v)| convert::agent_id(&field(&format!("skills.{name}[{j}]")), v))
                    .collect()
            };
            Ok(AgentInput {
                id,
                name: agent.name.as_str().into(),
                skills: Skills {
                    languages: list("languages", &skills.languages)?,
                    regions: list("regions", &skills.regions)?,
                    products: list("products", &skills.products)?,
                    tier: skills.tier,
                },
                capacity: agent.capacity,
            })
        })
        .collect()
}

pub fn arm_out(arm: Option<Arm>) -> pb::RoutingArm {
    match arm {
        None => pb::RoutingArm::Unspecified,
        Some(Arm::Pairing) => pb::RoutingArm::Pairing,
        Some(Arm::Control) => pb::RoutingArm::Control,
    }
}

fn decision_out(d: Decision) -> pb::RoutingDecision {
    use pb::route_target::Target as Out;
    let target = match d.target {
        Target::Agent(agent) => Out::AgentId(agent.into_string()),
        Target::Queue(queue) => Out::Queue(queue.into_string()),
    };
    let (runner_up_agent_id, runner_up_conversion) =
        d.runner_up.map_or((String::new(), 0.0), |(agent, p)| (agent.into_string(), p));
    pb::RoutingDecision {
        decision_id: d.id,
        lead_id: d.lead_id.into_string(),
        target: Some(pb::RouteTarget { target: Some(target) }),
        priority: d.priority,
        rule: d.rule.into_string(),
        band: band_out(Some(d.band)).into(),
        score: d.score,
        expected_conversion: d.expected_conversion.unwrap_or(0.0),
        runner_up_conversion,
        runner_up_agent_id,
        arm: arm_out(d.arm).into(),
        reasons: d.reasons,
        decided_at: Some(timestamp_from_ms(d.at_ms)),
        queue: d.queue.into_string(),
    }
}
