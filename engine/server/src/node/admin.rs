//! The admin service on a node: what every shard shares (the scorers, the configuration) from
//! any engine, and `Stats` added up over every shard. Changing the configuration or the
//! scorers at run time needs a cluster-wide order, which is not built yet.

use futures_util::future::{try_join, try_join_all};
use leadscore_proto::tonic::{self, Request, Response, Status};
use leadscore_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::admin_service_server::AdminService;
use tokio_stream::wrappers::ReceiverStream;

use super::front::{Front, Part, forwarded, not_yet, part_of, unreachable};
use crate::api::Context;

impl Front {
    fn admin_client(&self, channel: tonic::transport::Channel) -> AdminServiceClient<tonic::transport::Channel> {
        let max = self.0.max_message_bytes;
        AdminServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }
}

#[tonic::async_trait]
impl AdminService for Front {
    type AuditLogStream = ReceiverStream<Result<pb::AuditEntry, Status>>;

    async fn list_scorers(
        &self,
        request: Request<pb::ListScorersRequest>,
    ) -> Result<Response<pb::ListScorersResponse>, Status> {
        any_engine!(self, request, AdminService, admin_client, list_scorers)
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        any_engine!(self, request, AdminService, admin_client, get_config)
    }

    /// Every shard's figures added up: leads, events, log bytes, revocations, routing arms.
    /// Every shard keeps every erased person's keys, so `suppressed` is the most any shard
    /// holds; `last_lsn` is the furthest shard's, `last_snapshot_at` the stalest shard's.
    async fn stats(&self, request: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        let (here, there) = self.parts(&request)?;
        let local = here.into_iter().map(|(_, context)| {
            let part = part_of(&request, pb::StatsRequest {});
            async move { <Context as AdminService>::stats(&context, part).await.map(Response::into_inner) }
        });
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let part = forwarded(part_of(&request, pb::StatsRequest {}), &shards);
            let mut client = self.admin_client(channel);
            async move { client.stats(part).await.map(Response::into_inner).map_err(|e| unreachable(e, &address)) }
        });
        let (local, remote) = try_join(try_join_all(local), try_join_all(remote)).await?;
        Ok(Response::new(local.into_iter().chain(remote).fold(None, add_up).unwrap_or_default()))
    }

    async fn reload_scorers(
        &self,
        _: Request<pb::ReloadScorersRequest>,
    ) -> Result<Response<pb::ReloadScorersResponse>, Status> {
        Err(not_yet("ReloadScorers"))
    }

    async fn update_config(
        &self,
        _: Request<pb::UpdateConfigRequest>,
    ) -> Result<Response<pb::UpdateConfigResponse>, Status> {
        Err(not_yet("UpdateConfig"))
    }

    async fn snapshot(&self, _: Request<pb::SnapshotRequest>) -> Result<Response<pb::SnapshotResponse>, Status> {
        Err(not_yet("Snapshot"))
    }

    async fn validation_report(
        &self,
        _: Request<pb::ValidationReportRequest>,
    ) -> Result<Response<pb::ValidationReportResponse>, Status> {
        Err(not_yet("ValidationReport"))
    }

    async fn audit_log(&self, _: Request<pb::AuditLogRequest>) -> Result<Response<Self::AuditLogStream>, Status> {
        Err(not_yet("AuditLog"))
    }
}

/// Two shards' (or nodes') stats as one.
fn add_up(total: Option<pb::StatsResponse>, part: pb::StatsResponse) -> Option<pb::StatsResponse> {
    let Some(mut total) = total else { return Some(part) };
    total.leads += part.leads;
    total.events += part.events;
    total.suppressed = total.suppressed.max(part.suppressed);
    total.last_lsn = total.last_lsn.max(part.last_lsn);
    total.log_bytes += part.log_bytes;
    let time = |t: &Option<leadscore_proto::prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
    total.last_snapshot_at = match (time(&total.last_snapshot_at), time(&part.last_snapshot_at)) {
        (Some(a), Some(b)) if b < a => part.last_snapshot_at,
        (Some(_), Some(_)) => total.last_snapshot_at,
        _ => None,
    };
    if time(&part.started_at) < time(&total.started_at) {
        total.started_at = part.started_at;
    }
    total.config_version = total.config_version.max(part.config_version);
    total.watchdog_stalls += part.watchdog_stalls;
    if let (Some(sum), Some(more)) = (total.revocations.as_mut(), part.revocations) {
        super::dialing::add_revocations(sum, more);
    }
    for arm in part.routing_arms {
        match total.routing_arms.iter_mut().find(|a| a.arm == arm.arm) {
            Some(sum) => {
                sum.decisions += arm.decisions;
                sum.decided_calls += arm.decided_calls;
                sum.conversions += arm.conversions;
                sum.conversion_rate =
                    if sum.decided_calls == 0 { 0.0 } else { sum.conversions as f64 / sum.decided_calls as f64 };
            }
            None => total.routing_arms.push(arm),
        }
    }
    Some(total)
}
