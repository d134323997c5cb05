//! The store survives restarts, crashes, torn writes and snapshots, and says clearly when its
//! log is damaged.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use leadscore::clock::SystemClock;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::v1 as pb;
use leadscore_tests::{ChildServer, TestServer, config, event, lead};
use pb::lead_service_client::LeadServiceClient;

/// Every lead, with events, as the server returns them, and the counts.
async fn state(server: &TestServer, ids: &[String]) -> (Vec<Option<pb::GetLeadResponse>>, (u64, u64, u64, u64)) {
    let mut leads = server.leads().await;
    let mut all = Vec::new();
    for id in ids {
        let got = leads.get_lead(pb::GetLeadRequest { id: id.clone(), include_events: true }).await;
        all.push(got.ok().map(|r| r.into_inner()));
    }
    let s = server.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    (all, (s.leads, s.events, s.suppressed, s.last_lsn))
}

async fn write_some(leads: &mut LeadServiceClient<Channel>, range: std::ops::Range<usize>) {
    let batch: Vec<pb::Lead> = range.clone().map(|i| lead(&format!("lead-{i}"))).collect();
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: batch }).await.unwrap();
    let events = range
        .flat_map(|i| {
            (0..3).map(move |e| {
                event(
                    &format!("lead-{i}"),
                    &format!("e{e}"),
                    ["email_open", "webinar_attended", "page_view:/pricing"][e],
                )
            })
        })
        .collect();
    leads.record_events(pb::RecordEventsRequest { events }).await.unwrap();
}

#[tokio::test]
async fn a_restart_restores_identical_state_across_snapshots_and_erasures() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..60).map(|i| format!("lead-{i}")).collect();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    write_some(&mut leads, 0..30).await;
    leads.erase_lead(pb::EraseLeadRequest { id: "lead-3".into() }).await.unwrap();
    let snapshot = server.admin().await.snapshot(pb::SnapshotRequest {}).await.unwrap().into_inner();
    assert_eq!(snapshot.leads, 29);
    write_some(&mut leads, 30..60).await;
    let mut changed = lead("lead-5");
    changed.time_zone = "Asia/Tokyo".into();
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![changed] }).await.unwrap();
    leads.erase_lead(pb::EraseLeadRequest { id: "lead-40".into() }).await.unwrap();
    let before = state(&server, &ids).await;
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let after = state(&server, &ids).await;
    assert_eq!(after, before);
    assert_eq!(after.1.0, 58);
    assert_eq!(after.0[5].as_ref().unwrap().lead.as_ref().unwrap().time_zone, "Asia/Tokyo");
    server.stop().await;
}

#[tokio::test]
async fn sequence_numbers_continue_after_a_restart_from_a_snapshot_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    write_some(&mut leads, 0..5).await;
    server.admin().await.snapshot(pb::SnapshotRequest {}).await.unwrap();
    let (_, (.., lsn)) = state(&server, &[]).await;
    server.stop().await;

    // Nothing was logged after the snapshot: numbering must still go on from it, or changes to
    // leads the snapshot holds would look old and be skipped.
    let server = TestServer::start(dir.path()).await;
    assert_eq!(state(&server, &[]).await.1.3, lsn);
    let mut changed = lead("lead-2");
    changed.time_zone = "Asia/Tokyo".into();
    server.leads().await.upsert_leads(pb::UpsertLeadsRequest { leads: vec![changed] }).await.unwrap();
    let ids = ["lead-2".to_string()];
    let before = state(&server, &ids).await;
    assert_eq!(before.1.3, lsn + 1);
    assert_eq!(before.0[0].as_ref().unwrap().lead.as_ref().unwrap().time_zone, "Asia/Tokyo");
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    assert_eq!(state(&server, &ids).await, before);
    server.stop().await;
}

#[tokio::test]
async fn a_snapshot_truncates_the_log_and_leaves_no_trace_of_erased_leads() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    let mut secret = lead("secret-lead-id");
    secret.email = "private.person@example.org".into();
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![secret, lead("other")] }).await.unwrap();
    leads.erase_lead(pb::EraseLeadRequest { id: "secret-lead-id".into() }).await.unwrap();
    let mut admin = server.admin().await;
    let before = admin.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    let snapshot = admin.snapshot(pb::SnapshotRequest {}).await.unwrap().into_inner();
    assert!(snapshot.log_bytes_truncated > 0);
    let after = admin.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert!(after.log_bytes < before.log_bytes, "{} < {}", after.log_bytes, before.log_bytes);
    assert!(after.last_snapshot_at.is_some());
    server.stop().await;

    for entry in fs::read_dir(dir.path()).unwrap() {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        let haystack = String::from_utf8_lossy(&bytes);
        assert!(!haystack.contains("secret-lead-id") && !haystack.contains("private.person"), "erased data on disk");
    }
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    assert!(leads.get_lead(pb::GetLeadRequest { id: "other".into(), include_events: false }).await.is_ok());
    let refused = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("secret-lead-id")] }).await.unwrap_err();
    assert!(refused.message().contains("erased"), "suppression survives the snapshot: {}", refused.message());
    server.stop().await;
}

fn segment(dir: &Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    segments.pop().expect("a log segment")
}

/// Writes five leads, one record each, stops the server, and returns the log segment.
async fn five_records_then_stop(dir: &Path) -> std::path::PathBuf {
    let server = TestServer::start(dir).await;
    let mut leads = server.leads().await;
    for i in 0..5 {
        leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead(&format!("lead-{i}"))] }).await.unwrap();
    }
    server.stop().await;
    segment(dir)
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = five_records_then_stop(dir.path()).await;
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();

    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    for i in 0..4 {
        leads.get_lead(pb::GetLeadRequest { id: format!("lead-{i}"), include_events: false }).await.unwrap();
    }
    let lost = leads.get_lead(pb::GetLeadRequest { id: "lead-4".into(), include_events: false }).await.unwrap_err();
    assert_eq!(lost.code(), leadscore_proto::tonic::Code::NotFound);
    // Writing goes on after the cut, and survives another restart.
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("after")] }).await.unwrap();
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let stats = server.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.leads, 5);
    server.stop().await;
}

#[tokio::test]
async fn corruption_in_the_middle_of_the_log_refuses_to_start_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = five_records_then_stop(dir.path()).await;
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5A;
    fs::write(&path, bytes).unwrap();

    let err = TestServer::try_start(config(dir.path()), Arc::new(SystemClock)).await.err().expect("refuses to start");
    let message = format!("{err:#}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("corrupt record at byte"), "{message}");
    assert!(message.contains("refusing to start"), "{message}");
}

#[tokio::test]
async fn two_servers_never_share_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let err = TestServer::try_start(config(dir.path()), Arc::new(SystemClock)).await.err().expect("second refuses");
    assert!(format!("{err:#}").contains("in use by another process"), "{err:#}");
    server.stop().await;
}

/// With fsync `always`, SIGKILL in the middle of a stream of writes loses nothing that was
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("leadscore.toml");
    fs::write(&config_file, "[store]\nfsync = \"always\"\ndata_dir = \"data\"\n[server]\nlisten = \"127.0.0.1:0\"\n")
        .unwrap();
    let mut child = ChildServer::start(dir.path(), &["--config", config_file.to_str().unwrap()]).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (acked, some_acked) = (Arc::new(AtomicUsize::new(0)), Arc::new(tokio::sync::Notify::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let address = child.address.clone();
        let (stop, acked, some_acked) = (stop.clone(), acked.clone(), some_acked.clone());
        writers.push(tokio::spawn(async move {
            let mut leads = LeadServiceClient::connect(address).await.unwrap();
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("w{writer}-{i}");
                let request = pb::UpsertLeadsRequest { leads: vec![lead(&id)] };
                match leads.upsert_leads(request).await {
                    Ok(_) => {
                        acknowledged.push(id);
                        acked.fetch_add(1, Ordering::Relaxed);
                        some_acked.notify_one();
                    }
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    // Let writes flow, then kill the server while they are still in flight.
    while acked.load(Ordering::Relaxed) < 200 {
        some_acked.notified().await;
    }
    child.child.kill().unwrap();
    child.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(acknowledged.len() > 20, "only {} writes were acknowledged before the kill", acknowledged.len());
    drop(child);

    let child = ChildServer::start(dir.path(), &["--config", config_file.to_str().unwrap()]).unwrap();
    let mut leads = LeadServiceClient::connect(child.address.clone()).await.unwrap();
    for id in &acknowledged {
        let got = leads.get_lead(pb::GetLeadRequest { id: id.clone(), include_events: false }).await;
        assert!(got.is_ok(), "acknowledged lead {id} was lost ({} acknowledged in all)", acknowledged.len());
    }
    drop(leads);
    let (status, _) = tokio::task::spawn_blocking(move || child.terminate()).await.unwrap();
    assert!(status.success());
}
