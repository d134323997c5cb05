//! Routing on a cluster node: not served yet. A decision needs every agent's load and learned
//! conversion across all shards, and each shard's router sees only its own; rather than route
//! on a part, every call says so plainly.

use leadscore_proto::tonic::{self, Request, Response, Status};
use leadscore_proto::v1 as pb;
use pb::routing_service_server::RoutingService;

use super::front::{Front, Streamed, not_yet};

#[tonic::async_trait]
impl RoutingService for Front {
    type WatchRoutingStream = Streamed<pb::RoutingDecision>;

    async fn upsert_agents(
        &self,
        _: Request<pb::UpsertAgentsRequest>,
    ) -> Result<Response<pb::UpsertAgentsResponse>, Status> {
        Err(not_yet("UpsertAgents"))
    }

    async fn set_agent_state(
        &self,
        _: Request<pb::SetAgentStateRequest>,
    ) -> Result<Response<pb::SetAgentStateResponse>, Status> {
        Err(not_yet("SetAgentState"))
    }

    async fn route(&self, _: Request<pb::RouteRequest>) -> Result<Response<pb::RouteResponse>, Status> {
        Err(not_yet("Route"))
    }

    async fn watch_routing(
        &self,
        _: Request<pb::WatchRoutingRequest>,
    ) -> Result<Response<Self::WatchRoutingStream>, Status> {
        Err(not_yet("WatchRouting"))
    }
}
