//! The services later work implements: every RPC answers `UNIMPLEMENTED`, naming what it
//! waits for, so clients can be written against the whole contract today.

use std::pin::Pin;

use leadscore_proto::tonic::{self, Request, Response, Status, codegen::tokio_stream::Stream};
use leadscore_proto::v1 as pb;

use super::{Context, not_yet};

type Pending<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::routing_service_server::RoutingService for Context {
    type WatchRoutingStream = Pending<pb::RoutingDecision>;

    async fn upsert_agents(
        &self,
        _: Request<pb::UpsertAgentsRequest>,
    ) -> Result<Response<pb::UpsertAgentsResponse>, Status> {
        Err(not_yet("UpsertAgents", "routing"))
    }
    async fn set_agent_state(
        &self,
        _: Request<pb::SetAgentStateRequest>,
    ) -> Result<Response<pb::SetAgentStateResponse>, Status> {
        Err(not_yet("SetAgentState", "routing"))
    }
    async fn route(&self, _: Request<pb::RouteRequest>) -> Result<Response<pb::RouteResponse>, Status> {
        Err(not_yet("Route", "routing"))
    }
    async fn watch_routing(
        &self,
        _: Request<pb::WatchRoutingRequest>,
    ) -> Result<Response<Self::WatchRoutingStream>, Status> {
        Err(not_yet("WatchRouting", "routing"))
    }
}
