//! `AdminService`: scorer plugins, configuration, snapshots and statistics.

pub(crate) mod convert;

use leadscore_proto::tonic::{self, Request, Response, Status};
use leadscore_proto::v1 as pb;

use super::answer;
use pb::admin_service_server::AdminService;

use leadscore_plugin_api::ABI_MAJOR;
use pb::ScorerStatus;

use super::Context;
use super::fields::timestamp_from_ms;
use super::pool::blocking;
use super::status::status;
use crate::ops::auth;
use leadscore_config::Config;
use leadscore_services::generation::ConfigChangeError;
use leadscore_services::scoring::pipeline::Pipeline;
use leadscore_services::validation;
use leadscore_store::audit::AuditKind;
use leadscore_store::lead::LeadId;

impl Context {
    /// What a new configuration asks of the dialer at once: a campaign's do-not-call list or
    /// consent rule may now forbid a held lead, and the leads whose scores changed move in
    /// their queues. Blocks.
    pub(crate) fn follow_config(&self, changed: &[LeadId]) {
        self.dialer.recheck_leases();
        self.dialer.requeue(changed);
    }
}

#[tonic::async_trait]
impl AdminService for Context {
    async fn list_scorers(
        &self,
        _: Request<pb::ListScorersRequest>,
    ) -> Result<Response<pb::ListScorersResponse>, Status> {
        Ok(answer(pb::ListScorersResponse { scorers: scorer_infos(&self.scoring.pipeline()) }))
    }

    async fn reload_scorers(
        &self,
        request: Request<pb::ReloadScorersRequest>,
    ) -> Result<Response<pb::ReloadScorersResponse>, Status> {
        let actor = auth::actor(&request);
        let force = request.into_inner().force;
        let (generations, dialer, store) = (self.generations.clone(), self.dialer.clone(), self.store.clone());
        let generation = blocking(move || {
            let (generation, changed) = generations.reload(force).map_err(status)?;
            dialer.requeue(&changed);
            let pipeline = &generation.pipeline;
            let detail = format!("{} scorers loaded, {} refused", pipeline.plugins.len(), pipeline.refused.len());
            store.record_audit(&actor, AuditKind::PluginReload, detail).map_err(status)?;
            Ok::<_, Status>(generation)
        })
        .await?;
        Ok(answer(pb::ReloadScorersResponse { scorers: scorer_infos(&generation.pipeline) }))
    }

    async fn get_config(&self, _: Request<pb::GetConfigRequest>) -> Result<Response<pb::GetConfigResponse>, Status> {
        let generation = self.generations.current();
        Ok(answer(pb::GetConfigResponse { toml: generation.config.to_redacted_toml(), version: generation.version }))
    }

    async fn update_config(
        &self,
        request: Request<pb::UpdateConfigRequest>,
    ) -> Result<Response<pb::UpdateConfigResponse>, Status> {
        let actor = auth::actor(&request);
        let request = request.into_inner();
        let next = Config::parse_update(&request.toml, &self.generations.current().config).map_err(status)?;
        let context = self.clone();
        let generation = blocking(move || {
            let (generation, changed) = context.generations.update_config(next, request.expected_version, &actor)?;
            context.follow_config(&changed);
            Ok::<_, ConfigChangeError>(generation)
        })
        .await?;
        // The dialer's queues follow the new rules; rebuild them now rather than at a claim.
        let dialer = self.dialer.clone();
        tokio::task::spawn_blocking(move || dialer.prepare());
        Ok(answer(pb::UpdateConfigResponse { version: generation.version }))
    }

    async fn snapshot(&self, _: Request<pb::SnapshotRequest>) -> Result<Response<pb::SnapshotResponse>, Status> {
        let store = self.store.clone();
        let info = blocking(move || store.snapshot()).await?;
        Ok(answer(pb::SnapshotResponse {
            path: info.path.display().to_string(),
            leads: info.leads,
            bytes: info.bytes,
            log_bytes_truncated: info.log_bytes_truncated,
        }))
    }

    type AuditLogStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AuditEntry, Status>> + Send + 'static>>;

    async fn audit_log(&self, request: Request<pb::AuditLogRequest>) -> Result<Response<Self::AuditLogStream>, Status> {
        let (from, to, kinds) = convert::audit_query(&request.into_inner(), self.clock.now_ms())?;
        let entries = self.store.audit_trail(from, to, &kinds);
        let stream = tokio_stream::iter(entries.into_iter().map(|entry| Ok(convert::audit_out(entry))));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn validation_report(
        &self,
        request: Request<pb::ValidationReportRequest>,
    ) -> Result<Response<pb::ValidationReportResponse>, Status> {
        let request = request.into_inner();
        let pipeline = self.scoring.pipeline();
        let campaign =
            pipeline.campaigns[pipeline.campaign_or_error("campaign", &request.campaign).map_err(status)?].name.clone();
        let store = self.store.clone();
        let name = campaign.clone();
        let sections = blocking(move || Ok::<_, Status>(validation::report(&store, &name))).await?;
        let sections = sections.into_iter().map(convert::section_out).collect();
        Ok(answer(pb::ValidationReportResponse { campaign: campaign.to_string(), sections }))
    }

    async fn stats(&self, _: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        let stats = self.store.stats();
        Ok(answer(pb::StatsResponse {
            leads: stats.leads,
            events: stats.events,
            suppressed: stats.suppressed,
            last_lsn: stats.last_lsn,
            log_bytes: stats.log_bytes,
            last_snapshot_at: stats.last_snapshot_at_ms.map(timestamp_from_ms),
            started_at: Some(timestamp_from_ms(self.started_at_ms)),
            config_version: self.generations.current().version,
            watchdog_stalls: self.watchdog_stalls.load(std::sync::atomic::Ordering::Relaxed),
            revocations: Some(super::dialer::convert::revocation_counts(self.dialer.revocations().totals())),
            routing_arms: self
                .router
                .arm_stats()
                .into_iter()
                .map(|(arm, stats)| pb::ArmStats {
                    arm: super::routing::convert::arm_out(Some(arm)).into(),
                    decisions: stats.decisions,
                    decided_calls: stats.calls.decided.into(),
                    conversions: stats.calls.converted.into(),
                    conversion_rate: stats.calls.rate().unwrap_or(0.0),
                })
                .collect(),
        }))
    }
}

/// Every plugin of a pipeline, loaded or refused.
pub(crate) fn scorer_infos(pipeline: &Pipeline) -> Vec<pb::ScorerInfo> {
    let loaded = pipeline.plugins.iter().map(|plugin| {
        let stats = plugin.stats();
        let status = if stats.quarantine.is_some() { ScorerStatus::Quarantined } else { ScorerStatus::Active };
        pb::ScorerInfo {
            name: plugin.name.clone(),
            version: plugin.version.clone(),
            path: plugin.path.display().to_string(),
            abi_major: ABI_MAJOR,
            abi_minor: plugin.abi_minor,
            attributes_only: plugin.attributes_only,
            status: status.into(),
            status_reason: stats.quarantine.unwrap_or_default(),
            calls: stats.calls,
            ns_per_lead: stats.ns_per_lead,
            panics: stats.panics,
            faults: stats.faults,
            loaded_at: Some(timestamp_from_ms(plugin.loaded_at_ms)),
        }
    });
    let refused = pipeline.refused.iter().map(|refusal| pb::ScorerInfo {
        // Its library's name, as `plugins.load` lists it.
        name: leadscore_plugin_loader::library_name(&refusal.path),
        path: refusal.path.display().to_string(),
        status: ScorerStatus::Refused.into(),
        status_reason: refusal.reason.clone(),
        ..Default::default()
    });
    loaded.chain(refused).collect()
}
