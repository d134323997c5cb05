//! Liveness: the engine never freezes. Agents claim and report while leads change and the
//! sweep rescores, against the real binary, and every call must answer within a watchdog's
//! limit.

use std::time::Duration;

use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::v1 as pb;
use leadscore_tests::{ChildServer, number, text};
use pb::dialer_service_client::DialerServiceClient;
use pb::lead_service_client::LeadServiceClient;
use pb::next_lead_response::Result as Next;

/// A call that takes longer than this is a freeze.
const CALL_LIMIT: Duration = Duration::from_secs(5);

/// Runs a call under the watchdog's limit; a call that does not answer in time fails the test
/// with what it was.
pub async fn within<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_LIMIT, call).await {
        Ok(answer) => answer,
        Err(_) => panic!("{what} did not answer within {CALL_LIMIT:?}: the server froze"),
    }
}

/// A lead callable around the clock: two zones half a day apart, one window of 23:59 each.
fn callable(n: usize) -> pb::Lead {
    pb::Lead {
        id: format!("lead-{n}"),
        attributes: [
            ("role".to_string(), text(if n.is_multiple_of(3) { "CTO" } else { "Engineer" })),
            ("department".to_string(), text("IT")),
            ("employees".to_string(), number((10 + n * 37 % 900) as f64)),
        ]
        .into(),
        time_zone: if n.is_multiple_of(2) { "UTC" } else { "Pacific/Auckland" }.into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: format!("+1212{n:07}"),
        ..Default::default()
    }
}

/// A configuration in which every lead is callable again at once, the sweep runs every 50 ms
/// and every write is synced before it is acknowledged.
pub fn busy_floor_config(data_dir: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
fsync = "always"
data_dir = "{data_dir}"
[scoring]
sweep_interval_ms = 50
[campaigns.default.contact]
calling_window = "00:00-23:59"
max_attempts = 1000000
max_attempts_per_day = 1000000
max_attempts_per_24h = 1000000
[campaigns.default.contact.recycle]
no_answer = "0s"
busy = "0s"
voicemail = "0s"
connected_not_interested = "0s"
"#
    )
}

/// The cycle that froze the server: a rescore held a lead's index entry and waited for a
/// campaign queue (the dialer's watcher); a claim held the queue and waited for the store's
/// writer; an outcome held the writer and waited for the lead's index entry. Agents claiming
/// and reporting, writers recording events and the sweep reach it within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_outcomes_events_and_the_sweep_never_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leadscore.toml");
    std::fs::write(&config, busy_floor_config("data")).unwrap();
    let cwd = dir.path().to_owned();
    let child =
        tokio::task::spawn_blocking(move || ChildServer::start(&cwd, &["--config", config.to_str().unwrap()]).unwrap())
            .await
            .unwrap();
    let channel = Channel::from_shared(child.address.clone()).unwrap().connect().await.unwrap();
    const LEADS: usize = 400;
    let leads: Vec<pb::Lead> = (0..LEADS).map(callable).collect();
    LeadServiceClient::new(channel.clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();

    let mut tasks = Vec::new();
    for agent in 0..16 {
        let mut dialer = DialerServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut calls = 0;
            for _ in 0..150 {
                let request = pb::NextLeadRequest { campaign: String::new(), agent_id: format!("agent-{agent}") };
                let next = within("NextLead", dialer.next_lead(request)).await.unwrap().into_inner();
                let Some(Next::Claim(claim)) = next.result else { continue };
                let outcome = pb::Outcome {
                    lease_id: claim.lease.unwrap().lease_id,
                    result: pb::CallResult::NoAnswer.into(),
                    ..Default::default()
                };
                let request = pb::ReportOutcomeRequest { outcome: Some(outcome) };
                within("ReportOutcome", dialer.report_outcome(request)).await.unwrap();
                calls += 1;
            }
            calls
        }));
    }
    for writer in 0..4 {
        let mut leads = LeadServiceClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                let lead_id = format!("lead-{}", (writer * 7919 + i * 104_729) % LEADS);
                let kind = ["email_open", "page_view:/pricing", "webinar_attended"][i % 3];
                let event =
                    pb::Event { id: format!("w{writer}-{i}"), lead_id, kind: kind.into(), ..Default::default() };
                let request = pb::RecordEventsRequest { events: vec![event] };
                within("RecordEvents", leads.record_events(request)).await.unwrap();
            }
            0
        }));
    }
    let mut calls = 0;
    for task in tasks {
        calls += task.await.unwrap();
    }
    assert!(calls > 1000, "only {calls} calls were made: leads were not callable again at once");
    let (status, log) = tokio::task::spawn_blocking(move || child.terminate()).await.unwrap();
    assert!(status.success(), "{log}");
}
