//! The audit trail through gRPC: who changed the configuration, reloaded plugins, described
//! agents, set an objection and erased a lead, filtered by kind and time; after an erasure it
//! names the lead only by its suppression key, and it is the same after a restart from a
//! snapshot and the log after it.

use leadscore::config::{Config, TokenConfig};
use leadscore_proto::tonic::metadata::MetadataValue;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::tonic::{Request, Status};
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, lead, timestamp};
use pb::audit_entry::Subject;
use tokio_stream::StreamExt;

const NOW_MS: i64 = 1_793_631_600_000;
const ADMIN: &str = "ls_audit-admin";
const PRIVACY: &str = "ls_audit-privacy-desk";

fn with_tokens(config: &mut Config) {
    for (name, token, roles) in [("ops", ADMIN, &["admin"][..]), ("privacy-desk", PRIVACY, &["ingest", "privacy"])] {
        config.auth.tokens.push(TokenConfig {
            name: name.into(),
            sha256: leadscore::config::tokens::hex(&leadscore::config::tokens::digest(token)),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        });
    }
}

fn bearer(token: &'static str) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    move |mut request: Request<()>| {
        request.metadata_mut().insert("authorization", value.clone());
        Ok(request)
    }
}

type Admin = pb::admin_service_client::AdminServiceClient<
    leadscore_proto::tonic::service::interceptor::InterceptedService<
        Channel,
        Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send>,
    >,
>;

fn admin(channel: &Channel) -> Admin {
    pb::admin_service_client::AdminServiceClient::with_interceptor(channel.clone(), Box::new(bearer(ADMIN)) as Box<_>)
}

/// The trail as (actor, kind, subject, detail), with `request`'s filters.
async fn trail(
    admin: &mut Admin,
    request: pb::AuditLogRequest,
) -> Vec<(String, pb::AuditKind, Option<Subject>, String)> {
    let stream = admin.audit_log(request).await.unwrap().into_inner();
    let entries: Vec<pb::AuditEntry> = stream.map(|e| e.unwrap()).collect().await;
    entries.into_iter().map(|e| (e.actor.clone(), e.kind(), e.subject, e.detail)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audited_change_is_recorded_with_its_token_and_survives_erasure_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    with_tokens(&mut config);
    let (server, clock) = TestServer::start_at(config.clone(), NOW_MS).await;
    let channel = server.channel().await;
    let mut desk = pb::lead_service_client::LeadServiceClient::with_interceptor(channel.clone(), bearer(PRIVACY));
    let mut admin = admin(&channel);

    let objecting = pb::Lead { consent: Some(pb::Consent { objected: true, ..Default::default() }), ..lead("lead-1") };
    desk.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("lead-2"), objecting] }).await.unwrap();
    clock.advance_ms(60_000);
    let current = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
    let request = pb::UpdateConfigRequest { toml: current.toml, expected_version: current.version };
    admin.update_config(request).await.unwrap();
    admin.snapshot(pb::SnapshotRequest {}).await.unwrap();
    clock.advance_ms(60_000);
    admin.reload_scorers(pb::ReloadScorersRequest::default()).await.unwrap();
    let agent = pb::Agent { id: "agent-7".into(), name: "Ann".into(), capacity: 1, ..Default::default() };
    let mut routing =
        pb::routing_service_client::RoutingServiceClient::with_interceptor(channel.clone(), bearer(ADMIN));
    routing.upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent] }).await.unwrap();
    clock.advance_ms(60_000);
    desk.erase_lead(pb::EraseLeadRequest { id: "lead-1".into() }).await.unwrap();

    let all = trail(&mut admin, pb::AuditLogRequest::default()).await;
    let kinds: Vec<(&str, pb::AuditKind)> = all.iter().map(|(actor, kind, ..)| (actor.as_str(), *kind)).collect();
    assert_eq!(
        kinds,
        [
            ("privacy-desk", pb::AuditKind::Objection),
            ("ops", pb::AuditKind::ConfigChange),
            ("ops", pb::AuditKind::PluginReload),
            ("ops", pb::AuditKind::AgentChange),
            ("privacy-desk", pb::AuditKind::Erasure),
        ]
    );
    assert_eq!(all[1].3, "version 1");
    assert_eq!(all[3].2, Some(Subject::Agents(pb::AgentIds { agent_ids: vec!["agent-7".into()] })));
    // The erased lead is named by its suppression key only, in its erasure and its objection.
    let Some(Subject::ErasedLead(key)) = &all[4].2 else { panic!("{:?}", all[4]) };
    assert_eq!(key.len(), 64);
    assert_eq!(all[0].2, Some(Subject::ErasedLead(key.clone())));
    assert!(!format!("{all:?}").contains("lead-1"), "{all:?}");

    // Filters by kind and by time.
    let erasures = pb::AuditLogRequest { kinds: vec![pb::AuditKind::Erasure.into()], ..Default::default() };
    assert_eq!(trail(&mut admin, erasures).await.len(), 1);
    let window = pb::AuditLogRequest {
        from: Some(timestamp((NOW_MS + 60_000) / 1000)),
        to: Some(timestamp((NOW_MS + 120_000) / 1000)),
        ..Default::default()
    };
    let in_window: Vec<pb::AuditKind> = trail(&mut admin, window).await.iter().map(|e| e.1).collect();
    assert_eq!(in_window, [pb::AuditKind::ConfigChange, pb::AuditKind::PluginReload, pb::AuditKind::AgentChange]);
    let backwards = pb::AuditLogRequest {
        from: Some(timestamp(NOW_MS / 1000)),
        to: Some(timestamp(NOW_MS / 1000 - 1)),
        ..Default::default()
    };
    let refused = admin.audit_log(backwards).await.err().unwrap();
    assert!(refused.message().starts_with("to: must not come before from"), "{refused:?}");

    // The same after a restart: part of it from the snapshot, the rest from the log.
    server.stop().await;
    let (server, _clock) = TestServer::start_at(config, NOW_MS + 600_000).await;
    let mut admin = self::admin(&server.channel().await);
    assert_eq!(trail(&mut admin, pb::AuditLogRequest::default()).await, all);
    server.stop().await;
}
