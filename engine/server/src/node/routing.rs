//! Routing on a cluster node. Agents and their presence are kept on every shard: a change made
//! through any node is logged on each shard before it is acknowledged, so every shard's dialer
//! checks an agent as any other does, and a shard replayed anywhere has the roster. Presence
//! changes carry the time they were made (`leadscore-at-ms`), and a shard keeps the latest
//! whatever order changes made at once reach it in. Decisions stream in from every shard.
//!
//! `Route` is decided by the lead's owner, on the lead's shard, weighing every agent's load and
//! record added up over every shard (`ClusterService.AgentLoads`): each shard's router sees
//! only its own shard's leases and calls.

use futures_util::future::{try_join, try_join_all};
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::tonic::{self, Request, Response, Status};
use leadscore_proto::v1 as pb;
use pb::cluster_service_client::ClusterServiceClient;
use pb::routing_service_client::RoutingServiceClient;
use pb::routing_service_server::RoutingService;

use super::front::{Front, Part, Streamed, fan_in, forwarded, part_of, unreachable};
use crate::api::pool::blocking;
use crate::api::routing::convert::{agents_in, decision_out, presence_in};
use crate::api::status::status;
use crate::api::{Context, answer, fields};
use leadscore_cluster::ShardId;
use leadscore_services::routing::{Load, Loads};
use leadscore_store::agents::{SEGMENTS, Tally};

/// When a presence change was made, in Unix milliseconds, as the node that took it says.
const AT_MS: &str = "leadscore-at-ms";

impl Front {
    /// Every shard's agent loads, added up: here and through the other nodes.
    async fn loads<T>(&self, request: &Request<T>) -> Result<Loads, Status> {
        let (here, there) = self.spread(0..self.0.shards, true)?;
        let mut loads = Self::loads_here(&here);
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let asking = forwarded(part_of(request, pb::AgentLoadsRequest { shards: shards.clone() }), &shards);
            let mut client = ClusterServiceClient::new(channel).max_decoding_message_size(self.0.max_message_bytes);
            async move { client.agent_loads(asking).await.map_err(|e| unreachable(e, &address)) }
        });
        for answer in try_join_all(remote).await? {
            loads.add(loads_in(answer.into_inner()));
        }
        Ok(loads)
    }

    /// The loads of the shards here, added up: a look at each roster.
    pub(super) fn loads_here(here: &[(ShardId, Context)]) -> Loads {
        let mut loads = Loads::default();
        for (_, context) in here {
            loads.add(context.router.loads());
        }
        loads
    }

    fn routing_client(&self, channel: Channel) -> RoutingServiceClient<Channel> {
        let max = self.0.max_message_bytes;
        RoutingServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }
}

#[tonic::async_trait]
impl RoutingService for Front {
    type WatchRoutingStream = Streamed<pb::RoutingDecision>;

    /// On every shard, audited once (on shard 0); an agent new on any shard counts as new.
    async fn upsert_agents(
        &self,
        request: Request<pb::UpsertAgentsRequest>,
    ) -> Result<Response<pb::UpsertAgentsResponse>, Status> {
        let agents = agents_in(&request.get_ref().agents)?;
        let total = agents.len() as u32;
        let actor = crate::ops::auth::actor(&request);
        let (here, there) = self.parts(&request)?;
        let local = here.into_iter().map(|(shard, context): (_, Context)| {
            let (agents, actor) = (agents.clone(), actor.clone());
            blocking(move || context.store.upsert_agents_audited(agents, &actor, shard == 0))
        });
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let part = forwarded(part_of(&request, request.get_ref().clone()), &shards);
            let mut client = self.routing_client(channel);
            async move {
                let answer = client.upsert_agents(part).await.map_err(|e| unreachable(e, &address))?;
                Ok::<_, Status>(answer.into_inner().created)
            }
        });
        let (local, remote) = try_join(try_join_all(local), try_join_all(remote)).await?;
        let created = local.into_iter().chain(remote).max().unwrap_or(0);
        Ok(answer(pb::UpsertAgentsResponse { created, updated: total - created }))
    }

    /// On every shard, each keeping the latest change made.
    async fn set_agent_state(
        &self,
        request: Request<pb::SetAgentStateRequest>,
    ) -> Result<Response<pb::SetAgentStateResponse>, Status> {
        let agent = fields::agent_id("agent_id", &request.get_ref().agent_id)?;
        let presence = presence_in(request.get_ref().state)?;
        let at_ms = match request.metadata().get(AT_MS) {
            Some(at) => at
                .to_str()
                .ok()
                .and_then(|at| at.parse().ok())
                .ok_or_else(|| Status::invalid_argument(format!("{AT_MS}: not a number of milliseconds")))?,
            None => self.0.clock.now_ms(),
        };
        let (here, there) = self.parts(&request)?;
        let local = here.into_iter().map(|(_, context): (_, Context)| {
            let agent = agent.clone();
            blocking(move || context.store.set_presence_at(&agent, presence, at_ms, true))
        });
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let mut part = forwarded(part_of(&request, request.get_ref().clone()), &shards);
            part.metadata_mut().insert(AT_MS, at_ms.into());
            let mut client = self.routing_client(channel);
            async move { client.set_agent_state(part).await.map(drop).map_err(|e| unreachable(e, &address)) }
        });
        try_join(try_join_all(local), try_join_all(remote)).await?;
        Ok(answer(pb::SetAgentStateResponse {}))
    }

    /// Decided on the lead's shard, weighing every shard's agent loads.
    async fn route(&self, request: Request<pb::RouteRequest>) -> Result<Response<pb::RouteResponse>, Status> {
        let id = fields::id("lead_id", &request.get_ref().lead_id)?;
        let shard = self.shard(&id);
        match self.part(shard, &request)? {
            Part::Here(context) => {
                let loads = self.loads(&request).await?;
                let decision = context.router.route_with(&id, &request.get_ref().campaign, Some(&loads));
                Ok(answer(pb::RouteResponse { decision: Some(decision_out(decision.map_err(status)?)) }))
            }
            Part::There { channel, address } => self
                .routing_client(channel)
                .route(forwarded(request, &[shard]))
                .await
                .map_err(|e| unreachable(e, &address)),
        }
    }

    /// Every shard's decisions, ending when a shard moves.
    async fn watch_routing(
        &self,
        request: Request<pb::WatchRoutingRequest>,
    ) -> Result<Response<Self::WatchRoutingStream>, Status> {
        let parts = self
            .watches(
                &request,
                |context, part| async move {
                    Ok(<Context as RoutingService>::watch_routing(&context, part).await?.into_inner())
                },
                |channel, part| async move { self.routing_client(channel).watch_routing(part).await },
            )
            .await?;
        Ok(Response::new(Box::pin(fan_in(parts))))
    }
}

pub(super) fn loads_out(loads: Loads) -> pb::AgentLoadsResponse {
    let tallies = |tallies: [Tally; SEGMENTS.len()]| {
        tallies.iter().map(|t| pb::SegmentTally { decided: t.decided, converted: t.converted }).collect()
    };
    pb::AgentLoadsResponse {
        agents: (loads.agents.into_iter())
            .map(|(agent, load)| pb::AgentLoad {
                agent_id: agent.to_string(),
                held: load.held,
                last_claim_ms: (load.last_claim_ms != i64::MIN).then_some(load.last_claim_ms),
                tallies: tallies(load.tallies),
                last_routed_ms: (load.last_routed_ms != i64::MIN).then_some(load.last_routed_ms),
            })
            .collect(),
        team: tallies(loads.team),
    }
}

fn loads_in(answer: pb::AgentLoadsResponse) -> Loads {
    let tallies = |sent: Vec<pb::SegmentTally>| {
        let mut tallies = [Tally::default(); SEGMENTS.len()];
        for (tally, sent) in tallies.iter_mut().zip(sent) {
            (tally.decided, tally.converted) = (sent.decided, sent.converted);
        }
        tallies
    };
    Loads {
        agents: (answer.agents.into_iter())
            .map(|agent| {
                let load = Load {
                    held: agent.held,
                    last_claim_ms: agent.last_claim_ms.unwrap_or(i64::MIN),
                    tallies: tallies(agent.tallies),
                    last_routed_ms: agent.last_routed_ms.unwrap_or(i64::MIN),
                };
                (agent.agent_id.into(), load)
            })
            .collect(),
        team: tallies(answer.team),
    }
}
