//! The admin service on a node: what every shard shares (the scorers, the configuration) from
//! any engine, `Stats` added up over every shard, and configuration changes through the
//! cluster's configuration log (see `configuration`).

use futures_util::future::{try_join, try_join_all};
use leadscore_proto::tonic::{self, Request, Response, Status};
use leadscore_proto::v1 as pb;

use crate::api::answer;
use pb::admin_service_client::AdminServiceClient;
use pb::admin_service_server::AdminService;
use tokio_stream::StreamExt as _;

use super::front::{Front, Part, SHARDS, Streamed, forwarded, part_of, unreachable};
use crate::api::Context;
use crate::api::admin::{convert, scorer_infos};
use crate::api::fields::timestamp_from_ms;
use crate::api::pool::blocking;
use crate::api::status::status;
use crate::ops::auth;
use leadscore_cluster::ShardId;
use leadscore_services::validation;
use leadscore_store::audit::AuditKind;
use pb::cluster_service_client::ClusterServiceClient;

impl Front {
    fn admin_client(&self, channel: tonic::transport::Channel) -> AdminServiceClient<tonic::transport::Channel> {
        let max = self.0.max_message_bytes;
        AdminServiceClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max)
    }
}

impl Front {
    /// The called leads of `campaign` on the shards here, shard by shard.
    pub(super) async fn observations_here(
        here: Vec<(ShardId, Context)>,
        campaign: String,
    ) -> Result<Vec<validation::Observation>, Status> {
        blocking(move || {
            let each = here.iter().flat_map(|(_, context)| validation::observations(&context.store, &campaign));
            Ok::<_, Status>(each.collect())
        })
        .await
    }

    /// Waits until every node serving shards, this one too, has taken configuration `version`.
    async fn applied_everywhere<T>(&self, request: &Request<T>, version: u64) -> Result<(), Status> {
        let others = self.0.directory.owners().into_iter().filter(|owner| owner.node != self.0.node);
        let asking = others.map(|owner| {
            let part = part_of(request, pb::ConfigAppliedRequest { version });
            let channel = self.channel(&owner.address);
            async move {
                let mut client = ClusterServiceClient::new(channel?);
                client.config_applied(part).await.map_err(|e| {
                    let e = unreachable(e, &owner.address);
                    Status::unavailable(format!(
                        "configuration version {version} is stored, but node {} has not confirmed taking it: {}",
                        owner.node,
                        e.message()
                    ))
                })
            }
        });
        try_join(self.0.engines.applied(version), try_join_all(asking)).await.map(drop)
    }
}

#[tonic::async_trait]
impl AdminService for Front {
    type AuditLogStream = Streamed<pb::AuditEntry>;

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
        let stats = every_shard!(self, request, pb::StatsRequest {}, AdminService, admin_client, stats);
        Ok(answer(stats.fold(None, add_up).unwrap_or_default()))
    }

    /// Every shard reloads the plugin libraries of the node serving it, from that node's disk;
    /// each node records its reload once in its audit trail.
    async fn reload_scorers(
        &self,
        request: Request<pb::ReloadScorersRequest>,
    ) -> Result<Response<pb::ReloadScorersResponse>, Status> {
        let (actor, force) = (auth::actor(&request), request.get_ref().force);
        let (here, there) = self.parts(&request)?;
        let node = self.0.node.clone();
        let local = blocking(move || reload_here(here, force, &actor, &node));
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let part = forwarded(part_of(&request, pb::ReloadScorersRequest { force }), &shards);
            let mut client = self.admin_client(channel);
            async move {
                let answer = client.reload_scorers(part).await.map_err(|e| unreachable(e, &address))?;
                Ok::<_, Status>(answer.into_inner().scorers)
            }
        });
        let (local, remote) = try_join(local, try_join_all(remote)).await?;
        let scorers = local.or_else(|| remote.into_iter().next()).unwrap_or_default();
        Ok(answer(pb::ReloadScorersResponse { scorers }))
    }

    /// Appended to the cluster's configuration log, then answered once every node serving
    /// shards has taken it (see `configuration`).
    async fn update_config(
        &self,
        request: Request<pb::UpdateConfigRequest>,
    ) -> Result<Response<pb::UpdateConfigResponse>, Status> {
        let actor = auth::actor(&request);
        let pb::UpdateConfigRequest { toml, expected_version } = request.get_ref().clone();
        let (engines, now_ms) = (self.0.engines.clone(), self.0.clock.now_ms());
        let version = blocking(move || engines.change(&toml, expected_version, &actor, now_ms)).await?;
        self.applied_everywhere(&request, version).await?;
        Ok(answer(pb::UpdateConfigResponse { version }))
    }

    /// Every shard snapshots; each snapshot is kept in the cluster's snapshot bucket and its
    /// stream trimmed behind it.
    async fn snapshot(&self, request: Request<pb::SnapshotRequest>) -> Result<Response<pb::SnapshotResponse>, Status> {
        let shards = self.scope(&request)?.len();
        let mut total = pb::SnapshotResponse {
            path: format!("{shards} shard snapshots, kept in the cluster's snapshot bucket"),
            ..Default::default()
        };
        for part in every_shard!(self, request, pb::SnapshotRequest {}, AdminService, admin_client, snapshot) {
            total.leads += part.leads;
            total.bytes += part.bytes;
            total.log_bytes_truncated += part.log_bytes_truncated;
        }
        Ok(answer(total))
    }

    /// Measured over every shard's called leads at once: deciles, lift, AUC and calibration
    /// are the cluster's, not an average of the shards'.
    async fn validation_report(
        &self,
        request: Request<pb::ValidationReportRequest>,
    ) -> Result<Response<pb::ValidationReportResponse>, Status> {
        let engine = self.0.engines.any().ok_or_else(|| {
            Status::unavailable("this node serves no shard yet, so it cannot name the campaign; try another node")
        })?;
        let pipeline = engine.scoring.pipeline();
        let index = pipeline.campaign_or_error("campaign", &request.get_ref().campaign).map_err(status)?;
        let campaign = pipeline.campaigns[index].name.to_string();
        let (here, there) = self.parts(&request)?;
        let remote = there.into_iter().map(|(address, (channel, shards))| {
            let asked = pb::ObservationsRequest { campaign: campaign.clone(), shards: shards.clone() };
            let mut client = ClusterServiceClient::new(channel);
            let part = forwarded(part_of(&request, asked), &shards);
            async move {
                let answer = client.observations(part).await.map_err(|e| unreachable(e, &address))?;
                Ok::<_, Status>(answer.into_inner().observations.into_iter().map(convert::observation_in))
            }
        });
        let (local, remote) = try_join(Self::observations_here(here, campaign.clone()), try_join_all(remote)).await?;
        let observations = local.into_iter().chain(remote.into_iter().flatten()).collect();
        let sections = validation::measure_all(observations).into_iter().map(convert::section_out).collect();
        Ok(answer(pb::ValidationReportResponse { campaign, sections }))
    }

    /// Every shard's trail and the configuration log's versions, oldest first.
    async fn audit_log(&self, request: Request<pb::AuditLogRequest>) -> Result<Response<Self::AuditLogStream>, Status> {
        let (from, to, kinds) = convert::audit_query(request.get_ref(), self.0.clock.now_ms())?;
        let first = !request.metadata().contains_key(SHARDS);
        let asked = request.get_ref().clone();
        let trails = every_shard!(self, request, asked.clone(), AdminService, admin_client, audit_log, collect);
        let mut entries: Vec<pb::AuditEntry> = trails.flatten().collect();
        let changes_wanted = kinds.is_empty() || kinds.contains(&AuditKind::ConfigChange);
        if first && changes_wanted {
            let log = self.0.engines.log.clone();
            let unread = |e| Status::unavailable(format!("reading the configuration log: {e}"));
            let versions = blocking(move || log.history().map_err(unread)).await?;
            let in_range = versions.into_iter().filter(|v| (from..=to).contains(&v.config.at_ms));
            entries.extend(in_range.map(|v| pb::AuditEntry {
                at: Some(timestamp_from_ms(v.config.at_ms)),
                actor: v.config.actor.clone(),
                kind: pb::AuditKind::ConfigChange.into(),
                subject: None,
                detail: format!("version {}", v.config.version),
            }));
        }
        entries.sort_by_key(|entry| entry.at.map(|at| (at.seconds, at.nanos)));
        Ok(Response::new(Box::pin(tokio_stream::iter(entries.into_iter().map(Ok)))))
    }
}

/// Reloads the scorers of every shard here, one after another; the first refusal stops it
/// (the shards here load the same libraries, so the others would refuse too). The scorers
/// now loaded, if any shard is here. Blocks.
fn reload_here(
    here: Vec<(ShardId, Context)>,
    force: bool,
    actor: &str,
    node: &str,
) -> Result<Option<Vec<pb::ScorerInfo>>, Status> {
    let mut loaded = None;
    for (_, context) in &here {
        let (generation, changed) = context.generations.reload(force).map_err(status)?;
        context.dialer.requeue(&changed);
        loaded = Some(generation);
    }
    let (Some(generation), Some((_, first))) = (loaded, here.first()) else { return Ok(None) };
    let pipeline = &generation.pipeline;
    let detail = format!(
        "{} scorers loaded, {} refused, on the {} shards node {node} serves",
        pipeline.plugins.len(),
        pipeline.refused.len(),
        here.len()
    );
    first.store.record_audit(actor, AuditKind::PluginReload, detail).map_err(status)?;
    Ok(Some(scorer_infos(pipeline)))
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
