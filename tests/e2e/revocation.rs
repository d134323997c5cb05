//! Compliance until the dial, through real gRPC on a manual clock: a lease never outlives its
//! lead's calling window, a lead with less than `min_window_left` of its window left is not
//! claimed, and a held lease whose lead must no longer be called is revoked on the hopper at
//! once (do-not-call in each of its forms, consent withdrawn, an objection, an erasure), before
//! any later claim, and never claimed again.

use std::time::{Duration, Instant};

use chrono::TimeZone;
use leadscore::config::Config;
use leadscore_proto::tonic::Code;
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, number, text};
use pb::dialer_response::Message as Push;
use pb::next_lead_response::Result as Next;

use crate::dialer::Session;

/// An instant on Monday 2026-12-07, UTC.
fn monday(hour: u32, minute: u32, second: u32) -> i64 {
    chrono::Utc.with_ymd_and_hms(2026, 12, 7, hour, minute, second).unwrap().timestamp_millis()
}

/// A callable lead in UTC; `fit` orders leads (a higher one is claimed first).
fn lead(id: &str, phone: &str, fit: f64) -> pb::Lead {
    pb::Lead {
        id: id.into(),
        attributes: [("role".to_string(), text("CTO")), ("employees".to_string(), number(fit))].into(),
        time_zone: "UTC".into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: phone.into(),
        ..Default::default()
    }
}

fn ms(timestamp: &Option<leadscore_proto::prost_types::Timestamp>) -> i64 {
    let t = timestamp.as_ref().expect("a timestamp");
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

async fn next(server: &TestServer, agent: &str) -> pb::NextLeadResponse {
    let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.into() };
    server.dialer().await.next_lead(request).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_ends_when_the_calling_window_closes_and_a_closing_window_is_not_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.dialer.session_poll_ms = 20;
    let (server, clock) = TestServer::start_at(config, monday(20, 58, 0)).await;
    server
        .upsert(
            (0..4).map(|n| lead(&format!("lead-{n}"), &format!("+4930100000{n}"), 100.0 * f64::from(n + 1))).collect(),
        )
        .await;

    // Two minutes before the 21:00 close: the 5-minute lease ends at the close, and the claim says so.
    let Some(Next::Claim(claim)) = next(&server, "desk").await.result else { panic!("nothing claimed at 20:58") };
    let lease = claim.lease.as_ref().unwrap();
    assert_eq!(ms(&lease.expires_at), monday(21, 0, 0), "the lease ends with the window, not 5 minutes on");
    assert_eq!(ms(&claim.dial_by), monday(21, 0, 0));
    assert_eq!(claim.dial_by_local, "2026-12-07T21:00:00+00:00");

    // A hopper's claim ends with the window too, and the hopper is told when it closes.
    let mut hopper = Session::open(&server, "hopper").await;
    hopper.credits(1).await;
    let held = hopper.claim().await;
    assert_eq!(ms(&held.dial_by), monday(21, 0, 0));

    // With less than a minute of the window left, nothing is claimed until it opens again.
    clock.set_ms(monday(20, 59, 0) + 500);
    let refused = next(&server, "desk").await;
    let Some(Next::NoneEligible(counts)) = refused.result else { panic!("claimed with 59.5 s of the window left") };
    assert_eq!(counts.outside_calling_window, 2, "{counts:?}");

    clock.set_ms(monday(21, 0, 0));
    let revoked = match tokio::time::timeout(Duration::from_secs(10), hopper.recv()).await.expect("told in time") {
        Push::Revoked(revoked) => revoked,
        other => panic!("expected the window's revocation, got {other:?}"),
    };
    assert_eq!(revoked.lease_id, held.lease.as_ref().unwrap().lease_id);
    assert_eq!(revoked.reason(), pb::RevokeReason::WindowClosed);
    let stats = server.admin().await.stats(pb::StatsRequest::default()).await.unwrap().into_inner();
    assert_eq!(stats.revocations.unwrap().window_closed, 1);
    server.stop().await;
}

/// Reads the hopper until a revocation comes; what came before it too.
async fn until_revoked(hopper: &mut Session) -> (pb::Revoked, Vec<Push>) {
    let mut before = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), hopper.recv()).await.expect("a revocation in time") {
            Push::Revoked(revoked) => return (revoked, before),
            other => before.push(other),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_leases_are_revoked_at_once_when_their_lead_must_not_be_called() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.campaigns.get_mut("default").unwrap().contact.require_phone_consent = true;
    let (server, _clock) = TestServer::start_at(config, monday(12, 0, 0)).await;
    let phone = |n: u32| format!("+49301{n:06}");
    let mut leads: Vec<pb::Lead> = (0..64).map(|n| lead(&format!("h-{n}"), &phone(n), 100.0 + f64::from(n))).collect();
    // Shares h-5's number; ranked last, so the hopper does not take it.
    leads.push(lead("twin", &phone(5), 1.0));
    server.upsert(leads).await;

    let mut hopper = Session::open(&server, "floor-1").await;
    hopper.credits(64).await;
    let mut leases = std::collections::HashMap::new();
    for _ in 0..64 {
        let claim = hopper.claim().await;
        let lease = claim.lease.unwrap();
        leases.insert(lease.lead_id, lease.lease_id);
    }
    assert!(!leases.contains_key("twin"), "the hopper took the twin");
    let lease_of = |id: &str| leases[id].clone();
    // Leads a later claim can take, once the hopper asks for more.
    server.upsert((0..3).map(|n| lead(&format!("extra-{n}"), &phone(900 + n), 50.0)).collect()).await;

    let mut leads_client = server.leads().await;
    let mut latencies = Vec::new();
    let mut expect = async |hopper: &mut Session, acknowledged: Instant, id: &str, reason: pb::RevokeReason| {
        let (revoked, before) = until_revoked(hopper).await;
        latencies.push((reason, acknowledged.elapsed()));
        assert_eq!((revoked.lead_id.as_str(), revoked.reason()), (id, reason));
        assert_eq!(revoked.lease_id, lease_of(id));
        before
    };
    let changed = |id: &str, change: fn(&mut pb::Consent)| {
        let n: u32 = id.trim_start_matches("h-").parse().unwrap();
        let mut lead = lead(id, &phone(n), 100.0 + f64::from(n));
        change(lead.consent.as_mut().unwrap());
        pb::UpsertLeadsRequest { leads: vec![lead] }
    };

    // The lead's own do-not-call flag; then credits: the revocation comes before any claim.
    leads_client.upsert_leads(changed("h-1", |c| c.do_not_call = true)).await.unwrap();
    let acknowledged = Instant::now();
    hopper.credits(3).await;
    let before = expect(&mut hopper, acknowledged, "h-1", pb::RevokeReason::DoNotCall).await;
    assert!(before.is_empty(), "pushed before the revocation: {before:?}");
    for _ in 0..3 {
        assert!(hopper.claim().await.lease.unwrap().lead_id.starts_with("extra-"));
    }

    leads_client.upsert_leads(changed("h-2", |c| c.phone_consent = false)).await.unwrap();
    expect(&mut hopper, Instant::now(), "h-2", pb::RevokeReason::ConsentWithdrawn).await;
    leads_client.upsert_leads(changed("h-3", |c| c.objected = true)).await.unwrap();
    expect(&mut hopper, Instant::now(), "h-3", pb::RevokeReason::Objected).await;
    leads_client.erase_lead(pb::EraseLeadRequest { id: "h-4".into() }).await.unwrap();
    expect(&mut hopper, Instant::now(), "h-4", pb::RevokeReason::Erased).await;

    // Someone on another line asks never to be called: every lead with the number is off.
    let mut desk = server.dialer().await;
    let Some(Next::Claim(twin)) = next(&server, "desk").await.result else { panic!("the twin was not claimable") };
    assert_eq!(twin.lease.as_ref().unwrap().lead_id, "twin");
    let outcome = |lease_id: String, result: pb::CallResult| pb::ReportOutcomeRequest {
        outcome: Some(pb::Outcome { lease_id, result: result.into(), ..Default::default() }),
    };
    desk.report_outcome(outcome(twin.lease.unwrap().lease_id, pb::CallResult::DoNotCall)).await.unwrap();
    expect(&mut hopper, Instant::now(), "h-5", pb::RevokeReason::DoNotCall).await;

    // The campaign's own list, changed at run time.
    let mut admin = server.admin().await;
    let current = admin.get_config(pb::GetConfigRequest::default()).await.unwrap().into_inner();
    let mut next_config = Config::parse(&current.toml).unwrap();
    next_config.campaigns.get_mut("default").unwrap().contact.do_not_call.push(phone(6));
    let update = pb::UpdateConfigRequest { toml: next_config.to_toml(), expected_version: current.version };
    admin.update_config(update).await.unwrap();
    expect(&mut hopper, Instant::now(), "h-6", pb::RevokeReason::DoNotCall).await;

    for (reason, latency) in &latencies {
        println!("revocation pushed {latency:?} after the acknowledgement ({reason:?})");
    }

    // A revoked lease's outcome is refused, naming why, unary or on the session.
    let refused = desk.report_outcome(outcome(lease_of("h-1"), pb::CallResult::NoAnswer)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("revoked (do_not_call)"), "{}", refused.message());
    let late = pb::Outcome { lease_id: lease_of("h-2"), result: pb::CallResult::Busy.into(), ..Default::default() };
    hopper.send(pb::dialer_request::Message::Outcome(late)).await;
    match hopper.recv().await {
        Push::Rejected(rejected) => {
            assert_eq!(rejected.code, Code::FailedPrecondition as i32);
            assert!(rejected.message.contains("revoked (consent_withdrawn)"), "{}", rejected.message);
        }
        other => panic!("expected the outcome refused, got {other:?}"),
    }

    // Counted by reason, in Stats and on the wallboard.
    let stats = admin.stats(pb::StatsRequest::default()).await.unwrap().into_inner().revocations.unwrap();
    let expected =
        pb::RevocationCounts { do_not_call: 3, consent_withdrawn: 1, objected: 1, erased: 1, window_closed: 0 };
    assert_eq!(stats, expected);
    let board = desk.wallboard(pb::WallboardRequest::default()).await.unwrap().into_inner();
    let on_board = board
        .minutes
        .iter()
        .filter_map(|m| m.revoked.as_ref())
        .fold(0, |sum, r| sum + r.do_not_call + r.consent_withdrawn + r.objected + r.erased + r.window_closed);
    assert_eq!(on_board, 6);

    // Once the hopper hangs up, its other leases return; no revoked lead is claimed again.
    drop(hopper);
    let mut claimed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match next(&server, "sweeper").await.result {
            Some(Next::Claim(claim)) => claimed.push(claim.lease.unwrap().lead_id),
            // The session's leases come back once the server sees it gone.
            _ if claimed.len() < 61 => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => break,
        }
    }
    let revoked = ["h-1", "h-2", "h-3", "h-4", "h-5", "h-6", "twin"];
    assert!(claimed.iter().all(|id| !revoked.contains(&id.as_str())), "a revoked lead was claimed: {claimed:?}");
    assert_eq!(claimed.len(), 58 + 3, "the hopper's other leases and the extras: {claimed:?}");
    server.stop().await;
}
