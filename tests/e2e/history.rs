//! Score history through gRPC: each change of a lead's score or band with its cause (an
//! upsert, an event, a configuration version, decay), bounded, kept across a restart, and
//! erased with the lead.

use std::sync::Arc;
use std::time::Duration;

use leadscore::clock::ManualClock;
use leadscore::config::{Composition, Config};
use leadscore_proto::tonic::Code;
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, event, number, text, timestamp};

const DAY_MS: i64 = 86_400_000;
/// 2026-11-01T00:00:00Z.
const NOW_MS: i64 = 1_793_491_200_000;

type Cause = pb::score_change::Cause;

fn cto() -> pb::Lead {
    let attributes = [("role", text("CTO")), ("department", text("IT")), ("employees", number(640.0))];
    let attributes = attributes.into_iter().map(|(name, value)| (name.to_string(), value)).collect();
    pb::Lead { id: "cto".into(), attributes, ..Default::default() }
}

async fn history(server: &TestServer) -> Result<Vec<(f64, pb::Band, Cause)>, leadscore_proto::tonic::Status> {
    let request = pb::ScoreHistoryRequest { lead_id: "cto".into(), campaign: String::new() };
    let changes = server.scoring().await.score_history(request).await?.into_inner().changes;
    Ok(changes.into_iter().map(|c| (c.score, c.band(), c.cause.unwrap())).collect())
}

async fn start(dir: &std::path::Path, clock: Arc<ManualClock>, bound: usize) -> TestServer {
    let mut config = config(dir);
    config.scoring.history = bound;
    config.scoring.sweep_interval_ms = 20;
    TestServer::try_start(config, clock).await.unwrap()
}

#[tokio::test]
async fn each_change_is_kept_with_its_cause_across_a_restart_and_erased_with_the_lead() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let server = start(dir.path(), clock.clone(), 32).await;
    let mut leads = server.leads().await;
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![cto()] }).await.unwrap();
    let pricing = pb::Event { at: Some(timestamp(NOW_MS / 1000)), ..event("cto", "e1", "page_view:/pricing") };
    leads.record_events(pb::RecordEventsRequest { events: vec![pricing] }).await.unwrap();
    let got = leads.get_lead(pb::GetLeadRequest { id: "cto".into(), include_events: true }).await.unwrap();
    let fingerprint = got.into_inner().events[0].id_fingerprint;
    // The same event again changes nothing, so it is not a change.
    let again = pb::Event { at: Some(timestamp(NOW_MS / 1000)), ..event("cto", "e1", "page_view:/pricing") };
    leads.record_events(pb::RecordEventsRequest { events: vec![again] }).await.unwrap();

    // A configuration version: the weighted mean, (100 + 15) / 2.
    let mut admin = server.admin().await;
    let current = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
    let mut next = Config::parse(&current.toml).unwrap();
    next.campaigns.get_mut("default").unwrap().composition = Composition::WeightedMean;
    admin.update_config(pb::UpdateConfigRequest { toml: next.to_toml(), expected_version: 0 }).await.unwrap();

    // Sixty days on, the sweep finds the pricing view worth 3.75, less 10 for silence: the
    // engagement score is 0, the mean 50.
    clock.advance_ms(60 * DAY_MS);
    let event_cause = Cause::Event(pb::EventCause { kind: "page_view:/pricing".into(), id_fingerprint: fingerprint });
    let expected = vec![
        (45.0, pb::Band::Warm, Cause::Upsert(true)),
        (60.0, pb::Band::SalesReady, event_cause),
        (57.5, pb::Band::SalesReady, Cause::ConfigVersion(1)),
        (50.0, pb::Band::SalesReady, Cause::Decay(true)),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while history(&server).await.unwrap().len() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(history(&server).await.unwrap(), expected);

    // Kept across a restart (as of the snapshot), where the start-up rescore finds nothing new.
    admin.snapshot(pb::SnapshotRequest {}).await.unwrap();
    drop((leads, admin));
    server.stop().await;
    let server = start(dir.path(), clock.clone(), 32).await;
    assert_eq!(history(&server).await.unwrap(), expected);

    // Erased with the lead, and from the next snapshot too.
    let mut leads = server.leads().await;
    leads.erase_lead(pb::EraseLeadRequest { id: "cto".into() }).await.unwrap();
    assert_eq!(history(&server).await.unwrap_err().code(), Code::NotFound);
    server.admin().await.snapshot(pb::SnapshotRequest {}).await.unwrap();
    drop(leads);
    server.stop().await;
    let snapshot = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"));
    let bytes = std::fs::read(snapshot.expect("a snapshot")).unwrap();
    assert!(!bytes.windows(3).any(|w| w == b"cto"), "no lead or history item names the erased lead");
}

#[tokio::test]
async fn the_history_keeps_the_newest_changes_up_to_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Arc::new(ManualClock::new(NOW_MS)), 3).await;
    let mut leads = server.leads().await;
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![cto()] }).await.unwrap();
    for (i, kind) in ["email_open", "content_download", "webinar_attended", "demo_request"].iter().enumerate() {
        let event = pb::Event { at: Some(timestamp(NOW_MS / 1000)), ..event("cto", &format!("e{i}"), kind) };
        leads.record_events(pb::RecordEventsRequest { events: vec![event] }).await.unwrap();
    }
    let scores: Vec<f64> = history(&server).await.unwrap().into_iter().map(|(score, ..)| score).collect();
    // 45 fit points, then + 5, + 10, + 20, + 25: the last three changes.
    assert_eq!(scores, [60.0, 80.0, 105.0]);
    let status = server
        .scoring()
        .await
        .score_history(pb::ScoreHistoryRequest { lead_id: "cto".into(), campaign: "autumn".into() })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("campaign: unknown campaign \"autumn\""), "{status:?}");
    server.stop().await;
}
