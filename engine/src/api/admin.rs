//! `AdminService`: configuration, snapshots and statistics. Scorer management arrives with
//! the scorer plugins.

use leadscore_proto::tonic::{self, Request, Response, Status};
use leadscore_proto::v1 as pb;
use pb::admin_service_server::AdminService;

use super::Context;
use super::convert::timestamp_from_ms;
use super::status::blocking;

#[tonic::async_trait]
impl AdminService for Context {
    async fn list_scorers(
        &self,
        _: Request<pb::ListScorersRequest>,
    ) -> Result<Response<pb::ListScorersResponse>, Status> {
        Err(super::not_yet("ListScorers", "scorer plugins"))
    }

    async fn reload_scorers(
        &self,
        _: Request<pb::ReloadScorersRequest>,
    ) -> Result<Response<pb::ReloadScorersResponse>, Status> {
        Err(super::not_yet("ReloadScorers", "scorer plugins"))
    }

    async fn get_config(&self, _: Request<pb::GetConfigRequest>) -> Result<Response<pb::GetConfigResponse>, Status> {
        Ok(Response::new(pb::GetConfigResponse { toml: self.config.to_toml(), version: 0 }))
    }

    async fn update_config(
        &self,
        _: Request<pb::UpdateConfigRequest>,
    ) -> Result<Response<pb::UpdateConfigResponse>, Status> {
        Err(super::not_yet("UpdateConfig", "scoring configuration"))
    }

    async fn snapshot(&self, _: Request<pb::SnapshotRequest>) -> Result<Response<pb::SnapshotResponse>, Status> {
        let store = self.store.clone();
        let info = blocking(move || store.snapshot()).await?;
        Ok(Response::new(pb::SnapshotResponse {
            path: info.path.display().to_string(),
            leads: info.leads,
            bytes: info.bytes,
            log_bytes_truncated: info.log_bytes_truncated,
        }))
    }

    async fn stats(&self, _: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        let stats = self.store.stats();
        Ok(Response::new(pb::StatsResponse {
            leads: stats.leads,
            events: stats.events,
            suppressed: stats.suppressed,
            last_lsn: stats.last_lsn,
            log_bytes: stats.log_bytes,
            last_snapshot_at: stats.last_snapshot_at_ms.map(timestamp_from_ms),
            started_at: Some(timestamp_from_ms(self.started_at_ms)),
            config_version: 0,
        }))
    }
}
