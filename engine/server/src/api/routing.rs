//! `RoutingService`: agents, their presence, routing decisions and the stream of them.

pub(crate) mod convert;

use std::collections::HashSet;
use std::pin::Pin;

use leadscore_proto::tonic::{self, Request, Response, Status, codegen::tokio_stream::Stream};
use leadscore_proto::v1 as pb;

use super::answer;
use pb::routing_service_server::RoutingService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Context;
use super::fields;
use super::pool::blocking;
use super::status::status;
use convert::{agents_in, decision_out};
use leadscore_services::routing::{Decision, Target};

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
        Ok(answer(pb::UpsertAgentsResponse { created, updated: total - created }))
    }

    async fn set_agent_state(
        &self,
        request: Request<pb::SetAgentStateRequest>,
    ) -> Result<Response<pb::SetAgentStateResponse>, Status> {
        let request = request.into_inner();
        let agent = fields::agent_id("agent_id", &request.agent_id)?;
        let presence = convert::presence_in(request.state)?;
        let store = self.store.clone();
        blocking(move || store.set_presence(&agent, presence)).await?;
        Ok(answer(pb::SetAgentStateResponse {}))
    }

    async fn route(&self, request: Request<pb::RouteRequest>) -> Result<Response<pb::RouteResponse>, Status> {
        let request = request.into_inner();
        let lead_id = fields::id("lead_id", &request.lead_id)?;
        let decision = self.router.route(&lead_id, &request.campaign).map_err(status)?;
        Ok(answer(pb::RouteResponse { decision: Some(decision_out(decision)) }))
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
