//! The dialer through gRPC: exclusive claims, calling windows, every rule checked at claim time,
//! outcomes, callbacks, and all of it surviving a restart. Time is a manual clock.

use std::collections::HashSet;
use std::sync::Arc;

use leadscore::clock::ManualClock;
use leadscore::config::Config;
use leadscore_proto::tonic::Code;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, number, text, timestamp};
use pb::dialer_service_client::DialerServiceClient;
use pb::next_lead_response::Result as Next;
use tokio_stream::StreamExt;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
/// Monday 2026-11-02 15:00 UTC: 10:00 in New York, 16:00 in Berlin, midnight in Tokyo.
const NOW_MS: i64 = 1_793_631_600_000;

/// A callable lead: a phone number derived from `n`, consent given, `employees` varying the
/// fit score so that leads rank apart.
fn lead(id: &str, n: u32, zone: &str) -> pb::Lead {
    pb::Lead {
        id: id.into(),
        attributes: [
            ("role".to_string(), text(if n.is_multiple_of(2) { "CTO" } else { "Engineer" })),
            ("department".to_string(), text("IT")),
            ("employees".to_string(), number(f64::from(10 + n * 37 % 900))),
        ]
        .into(),
        time_zone: zone.into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: format!("+1212{:07}", n),
        ..Default::default()
    }
}

/// `count` callable leads in New York, `lead-0` onwards.
fn new_york(count: u32) -> Vec<pb::Lead> {
    (0..count).map(|n| lead(&format!("lead-{n}"), n, "America/New_York")).collect()
}

async fn start(config: Config) -> (TestServer, Arc<ManualClock>) {
    TestServer::start_at(config, NOW_MS).await
}

async fn next(dialer: &mut DialerServiceClient<Channel>, agent: &str) -> pb::NextLeadResponse {
    let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.into() };
    dialer.next_lead(request).await.unwrap().into_inner()
}

async fn claim(dialer: &mut DialerServiceClient<Channel>, agent: &str) -> Option<pb::Claim> {
    match next(dialer, agent).await.result {
        Some(Next::Claim(claim)) => Some(claim),
        _ => None,
    }
}

fn lead_of(claim: &pb::Claim) -> &str {
    &claim.lease.as_ref().unwrap().lead_id
}

fn lease_of(claim: &pb::Claim) -> String {
    claim.lease.as_ref().unwrap().lease_id.clone()
}

async fn report(
    dialer: &mut DialerServiceClient<Channel>,
    claim: &pb::Claim,
    result: pb::CallResult,
    callback_at_ms: Option<i64>,
    agent_only: bool,
) -> pb::ReportOutcomeResponse {
    let outcome = pb::Outcome {
        lease_id: lease_of(claim),
        result: result.into(),
        callback_at: callback_at_ms.map(|ms| timestamp(ms / 1000)),
        agent_only_callback: agent_only,
        ..Default::default()
    };
    dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap().into_inner()
}

/// The campaign's ranking, best first.
async fn ranking(server: &TestServer) -> Vec<String> {
    let request = pb::TopLeadsRequest { limit: 10_000, ..Default::default() };
    let stream = server.scoring().await.top_leads(request).await.unwrap().into_inner();
    stream.map(|r| r.unwrap().score.unwrap().lead_id).collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_agents_never_share_a_lead_and_expired_leases_return() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(config(dir.path())).await;
    let leads: Vec<pb::Lead> = new_york(400);
    server.upsert(leads).await;
    let channel = server.channel().await;

    let drain = || async {
        let agents = (0..64).map(|a| {
            let mut dialer = DialerServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(claim) = claim(&mut dialer, &format!("agent-{a}")).await {
                    assert_eq!(claim.lease.as_ref().unwrap().agent_id, format!("agent-{a}"));
                    claimed.push(lead_of(&claim).to_string());
                }
                claimed
            })
        });
        let mut all = Vec::new();
        for agent in agents.collect::<Vec<_>>() {
            all.extend(agent.await.unwrap());
        }
        all
    };
    let first = drain().await;
    let unique: HashSet<&String> = first.iter().collect();
    assert_eq!((first.len(), unique.len()), (400, 400), "a lead went to two agents");

    let dry = next(&mut server.dialer().await, "late").await;
    let Some(Next::NoneEligible(counts)) = dry.result else { panic!("every lead is leased") };
    assert_eq!(counts.leased, 400);
    assert_eq!(dry.next_eligible_at, Some(timestamp((NOW_MS + 5 * MINUTE_MS) / 1000)));

    // Nobody reported: once the leases lapse, every lead is back, and again to one agent each.
    clock.advance_ms(5 * MINUTE_MS);
    let second = drain().await;
    let unique: HashSet<&String> = second.iter().collect();
    assert_eq!((second.len(), unique.len()), (400, 400));
    server.stop().await;
}

#[tokio::test]
async fn claims_follow_the_ranking_inside_each_leads_calling_window() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(config(dir.path())).await;
    let zones = ["America/New_York", "Europe/Berlin", "Asia/Tokyo"];
    let leads = (0..30).map(|n| lead(&format!("lead-{n}"), n, zones[n as usize % 3])).collect();
    server.upsert(leads).await;
    let zone_of = |id: &str| zones[id.trim_start_matches("lead-").parse::<usize>().unwrap() % 3];
    let ranking = ranking(&server).await;
    let mut dialer = server.dialer().await;

    // 10:00 in New York, 16:00 in Berlin, 00:00 in Tokyo.
    let mut claimed = Vec::new();
    while let Some(claim) = claim(&mut dialer, "a").await {
        assert_eq!(claim.reason(), pb::ClaimReason::BestScore);
        assert!(claim.score.as_ref().unwrap().score > 0.0);
        claimed.push(lead_of(&claim).to_string());
    }
    let open: Vec<String> = ranking.iter().filter(|id| zone_of(id) != "Asia/Tokyo").cloned().collect();
    assert_eq!(claimed, open);
    let dry = next(&mut dialer, "a").await;
    let Some(Next::NoneEligible(counts)) = &dry.result else { panic!("{dry:?}") };
    assert_eq!((counts.leased, counts.outside_calling_window), (20, 10));

    // 23:00 UTC: 18:00 in New York, midnight in Berlin, 08:00 in Tokyo; the leases have lapsed.
    clock.set_ms(NOW_MS + 8 * HOUR_MS);
    let mut claimed = Vec::new();
    while let Some(claim) = claim(&mut dialer, "a").await {
        claimed.push(lead_of(&claim).to_string());
        if claimed.len() == 1 {
            assert_eq!(claim.local_time, "2026-11-03T08:00:00+09:00", "{claim:?}");
        }
    }
    let open: Vec<String> = ranking.iter().filter(|id| zone_of(id) != "Europe/Berlin").cloned().collect();
    assert_eq!(claimed, open);
    server.stop().await;
}

#[tokio::test]
async fn do_not_call_erasure_and_revoked_consent_take_effect_for_the_very_next_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.campaigns.get_mut("default").unwrap().contact.require_phone_consent = true;
    let (server, _clock) = start(config).await;
    let leads: Vec<pb::Lead> = new_york(8);
    server.upsert(leads.clone()).await;
    let mut dialer = server.dialer().await;
    let mut lead_service = server.leads().await;
    let by_id = |id: &str| leads.iter().find(|l| l.id == id).unwrap().clone();

    // Each round: the best lead is claimed and handed back, queued at the top again; then a
    // rule changes under it, and the next claim must pass it over.
    let mut blocked = Vec::new();
    for round in 0..4 {
        let top = claim(&mut dialer, "a").await.unwrap();
        let id = lead_of(&top).to_string();
        assert!(!blocked.contains(&id));
        dialer.release_lead(pb::ReleaseLeadRequest { lease_id: lease_of(&top) }).await.unwrap();
        let mut changed = by_id(&id);
        let consent = changed.consent.as_mut().unwrap();
        match round {
            0 => consent.do_not_call = true,
            1 => consent.objected = true,
            2 => consent.phone_consent = false,
            _ => {
                lead_service.erase_lead(pb::EraseLeadRequest { id: id.clone() }).await.unwrap();
            }
        }
        if round < 3 {
            server.upsert(vec![changed]).await;
        }
        blocked.push(id);
        let next = claim(&mut dialer, "a").await.unwrap();
        assert!(!blocked.contains(&lead_of(&next).to_string()), "round {round} offered {:?}", lead_of(&next));
        dialer.release_lead(pb::ReleaseLeadRequest { lease_id: lease_of(&next) }).await.unwrap();
    }

    // A call ends with "do not call": the number joins the internal list, so another record
    // with the same number is never offered either.
    let called = claim(&mut dialer, "a").await.unwrap();
    let twin = pb::Lead { id: "twin".into(), ..by_id(lead_of(&called)) };
    server.upsert(vec![twin]).await;
    let ack = report(&mut dialer, &called, pb::CallResult::DoNotCall, None, false).await;
    assert_eq!((ack.recycle_at, ack.attempts), (None, 1));
    blocked.extend([lead_of(&called).to_string(), "twin".to_string()]);
    while let Some(claim) = claim(&mut dialer, "a").await {
        assert!(!blocked.contains(&lead_of(&claim).to_string()), "{claim:?}");
    }
    let dry = next(&mut dialer, "a").await;
    let Some(Next::NoneEligible(counts)) = dry.result else { panic!() };
    // The called lead and its twin, the flagged and the objecting lead; the revoked consent;
    // the erased lead is gone altogether.
    assert_eq!((counts.do_not_call, counts.missing_consent), (4, 1), "{counts:?}");
    server.stop().await;
}

#[tokio::test]
async fn outcomes_recycle_count_attempts_and_callbacks_come_first() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(config(dir.path())).await;
    let leads = new_york(4);
    server.upsert(leads).await;
    let ranking = ranking(&server).await;
    let mut dialer = server.dialer().await;

    // No answer: the lead rests four hours; the next claim is the runner-up.
    let first = claim(&mut dialer, "a").await.unwrap();
    assert_eq!(lead_of(&first), ranking[0]);
    assert_eq!(first.attempts, 0);
    let ack = report(&mut dialer, &first, pb::CallResult::NoAnswer, None, false).await;
    assert_eq!((ack.recycle_at, ack.attempts), (Some(timestamp((NOW_MS + 4 * HOUR_MS) / 1000)), 1));
    // Reporting the same outcome again is harmless; a different one is refused.
    let again = report(&mut dialer, &first, pb::CallResult::NoAnswer, None, false).await;
    assert_eq!(again.attempts, 1);
    let outcome =
        pb::Outcome { lease_id: lease_of(&first), result: pb::CallResult::Converted.into(), ..Default::default() };
    let status = dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // The runner-up asks to be called back by the same agent in an hour.
    let second = claim(&mut dialer, "a").await.unwrap();
    assert_eq!(lead_of(&second), ranking[1]);
    let callback_at = NOW_MS + HOUR_MS;
    let ack = report(&mut dialer, &second, pb::CallResult::Callback, Some(callback_at), true).await;
    assert_eq!(ack.recycle_at, Some(timestamp(callback_at / 1000)));

    // An hour on, another agent gets the best remaining lead, not the callback; its agent gets
    // the callback first, though two leads outrank it.
    clock.set_ms(callback_at);
    let other = claim(&mut dialer, "b").await.unwrap();
    assert_eq!((lead_of(&other), other.reason()), (ranking[2].as_str(), pb::ClaimReason::BestScore));
    let last = claim(&mut dialer, "b").await.unwrap();
    assert_eq!(lead_of(&last), ranking[3]);
    let dry = next(&mut dialer, "b").await;
    let Some(Next::NoneEligible(counts)) = &dry.result else { panic!("{dry:?}") };
    assert_eq!((counts.recycling, counts.leased, counts.not_routable_to_agent), (1, 2, 1), "{counts:?}");
    let own = claim(&mut dialer, "a").await.unwrap();
    assert_eq!((lead_of(&own), own.reason()), (ranking[1].as_str(), pb::ClaimReason::AgentCallback));
    assert_eq!(own.attempts, 1);
    // Not answered this time either: a new agent-only callback; after the grace anyone may take it.
    report(&mut dialer, &own, pb::CallResult::Callback, Some(callback_at + HOUR_MS), true).await;
    clock.set_ms(callback_at + HOUR_MS + 15 * MINUTE_MS);
    let taken = claim(&mut dialer, "b").await.unwrap();
    assert_eq!((lead_of(&taken), taken.reason()), (ranking[1].as_str(), pb::ClaimReason::Callback));
    let ack = report(&mut dialer, &taken, pb::CallResult::Converted, None, false).await;
    assert_eq!((ack.recycle_at, ack.attempts), (None, 3));

    // Four hours after the first call, the first lead is back.
    clock.set_ms(NOW_MS + 4 * HOUR_MS);
    let back = claim(&mut dialer, "c").await.unwrap();
    assert_eq!((lead_of(&back), back.attempts), (ranking[0].as_str(), 1));
    // The outcome became an event the scorers see.
    let stored = server
        .leads()
        .await
        .get_lead(pb::GetLeadRequest { id: ranking[0].clone(), include_events: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["call:no_answer"]);
    server.stop().await;
}

#[tokio::test]
async fn attempt_limits_hold_per_day_and_for_life() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let contact = &mut config.campaigns.get_mut("default").unwrap().contact;
    contact.max_attempts = 3;
    contact.max_attempts_per_day = 2;
    contact.recycle.no_answer = "1m".into();
    let (server, clock) = start(config).await;
    server.upsert(vec![lead("only", 1, "America/New_York")]).await;
    let mut dialer = server.dialer().await;
    for _ in 0..2 {
        let claim = claim(&mut dialer, "a").await.unwrap();
        report(&mut dialer, &claim, pb::CallResult::NoAnswer, None, false).await;
        clock.advance_ms(MINUTE_MS);
    }
    // Two calls today: the lead waits for local midnight (05:00 UTC), then the window (08:00).
    let dry = next(&mut dialer, "a").await;
    let Some(Next::NoneEligible(counts)) = &dry.result else { panic!("{dry:?}") };
    assert_eq!(counts.max_attempts, 1);
    assert_eq!(dry.next_eligible_at, Some(timestamp(1_793_682_000))); // 2026-11-03T05:00Z
    clock.set_ms(1_793_682_000_000);
    let dry = next(&mut dialer, "a").await;
    let Some(Next::NoneEligible(counts)) = &dry.result else { panic!("{dry:?}") };
    assert_eq!(counts.outside_calling_window, 1);
    assert_eq!(dry.next_eligible_at, Some(timestamp(1_793_682_000 + 8 * 3600)));
    clock.set_ms(1_793_710_800_000);
    let third = claim(&mut dialer, "a").await.unwrap();
    report(&mut dialer, &third, pb::CallResult::NoAnswer, None, false).await;
    clock.advance_ms(HOUR_MS);
    let dry = next(&mut dialer, "a").await;
    let Some(Next::NoneEligible(counts)) = &dry.result else { panic!("{dry:?}") };
    assert_eq!((counts.max_attempts, dry.next_eligible_at), (1, None));
    server.stop().await;
}

#[tokio::test]
async fn leases_attempts_and_callbacks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(config(dir.path())).await;
    let leads = new_york(3);
    server.upsert(leads).await;
    let ranking = ranking(&server).await;
    let mut dialer = server.dialer().await;
    let first = claim(&mut dialer, "a").await.unwrap();
    report(&mut dialer, &first, pb::CallResult::Callback, Some(NOW_MS + HOUR_MS), true).await;
    let held = claim(&mut dialer, "b").await.unwrap();
    assert_eq!(lead_of(&held), ranking[1]);
    server.stop().await;

    for snapshot in [false, true] {
        let server = TestServer::try_start(config(dir.path()), clock.clone()).await.unwrap();
        let mut dialer = server.dialer().await;
        // The lease still holds and the callback still waits: only the third lead is free.
        let free = claim(&mut dialer, "c").await.unwrap();
        assert_eq!(lead_of(&free), ranking[2]);
        dialer.release_lead(pb::ReleaseLeadRequest { lease_id: lease_of(&free) }).await.unwrap();
        if snapshot {
            server.admin().await.snapshot(pb::SnapshotRequest {}).await.unwrap();
        }
        server.stop().await;
    }

    let server = TestServer::try_start(config(dir.path()), clock.clone()).await.unwrap();
    let mut dialer = server.dialer().await;
    clock.set_ms(NOW_MS + HOUR_MS);
    let callback = claim(&mut dialer, "a").await.unwrap();
    assert_eq!(
        (lead_of(&callback), callback.reason(), callback.attempts),
        (ranking[0].as_str(), pb::ClaimReason::AgentCallback, 1)
    );
    // The old lease is still open to its outcome after the restarts.
    let ack = report(&mut dialer, &held, pb::CallResult::Busy, None, false).await;
    assert_eq!(ack.attempts, 1);
    server.stop().await;
}

#[tokio::test]
async fn bad_dialer_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(config(dir.path())).await;
    server.upsert(vec![lead("only", 1, "America/New_York")]).await;
    let mut dialer = server.dialer().await;
    let mut admin = server.admin().await;
    let lsn = admin.stats(pb::StatsRequest {}).await.unwrap().into_inner().last_lsn;

    let next = |campaign: &str, agent: &str| pb::NextLeadRequest { campaign: campaign.into(), agent_id: agent.into() };
    let status = dialer.next_lead(next("", "")).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "agent_id: must be 1-128 bytes, got 0"));
    let status = dialer.next_lead(next("autumn", "a")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("campaign:"), "{status:?}");

    let outcome = |lease_id: &str, result: pb::CallResult, callback_at: Option<i64>| pb::ReportOutcomeRequest {
        outcome: Some(pb::Outcome {
            lease_id: lease_id.into(),
            result: result.into(),
            callback_at: callback_at.map(timestamp),
            ..Default::default()
        }),
    };
    let cases = [
        (pb::ReportOutcomeRequest { outcome: None }, Code::InvalidArgument, "outcome: required"),
        (outcome("", pb::CallResult::Busy, None), Code::InvalidArgument, "outcome.lease_id: required"),
        (
            outcome("1-only", pb::CallResult::Unspecified, None),
            Code::InvalidArgument,
            "outcome.result: must name a call result, got 0",
        ),
        (
            outcome("1-only", pb::CallResult::Callback, None),
            Code::InvalidArgument,
            "outcome.callback_at: required for CALL_RESULT_CALLBACK",
        ),
        (
            outcome("1-only", pb::CallResult::Busy, Some(NOW_MS / 1000 + 60)),
            Code::InvalidArgument,
            "outcome.callback_at: only allowed with CALL_RESULT_CALLBACK",
        ),
        (
            outcome("nonsense", pb::CallResult::Busy, None),
            Code::InvalidArgument,
            "outcome.lease_id: not a lease id: \"nonsense\"",
        ),
        (
            outcome("999-only", pb::CallResult::Busy, None),
            Code::NotFound,
            "outcome.lease_id: no open lease 999 on lead \"only\"",
        ),
        (outcome("1-nobody", pb::CallResult::Busy, None), Code::NotFound, "lead \"nobody\" does not exist"),
    ];
    for (request, code, message) in cases {
        let status = dialer.report_outcome(request).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (code, message));
    }
    let status = dialer.release_lead(pb::ReleaseLeadRequest { lease_id: "7-only".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(admin.stats(pb::StatsRequest {}).await.unwrap().into_inner().last_lsn, lsn);

    // A campaign with broken contact rules is refused whole, naming the key.
    let mut broken = config(dir.path());
    broken.campaigns.get_mut("default").unwrap().contact.calling_window = "9-5".into();
    let update = pb::UpdateConfigRequest { toml: broken.to_toml(), expected_version: 0 };
    let status = admin.update_config(update).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("campaigns.default.contact.calling_window"), "{status:?}");
    assert!(claim(&mut dialer, "a").await.is_some(), "the dialer works on");
    server.stop().await;
}

/// Sends on a hopper session and reads what it pushes.
pub(crate) struct Session {
    tx: tokio::sync::mpsc::Sender<pb::DialerRequest>,
    rx: leadscore_proto::tonic::Streaming<pb::DialerResponse>,
}

impl Session {
    pub(crate) async fn open(server: &TestServer, agent: &str) -> Self {
        Self::open_with(server, pb::DialerHello { campaign: String::new(), agent_id: agent.into(), brief: false }).await
    }

    pub(crate) async fn open_with(server: &TestServer, hello: pb::DialerHello) -> Self {
        let (tx, requests) = tokio::sync::mpsc::channel(16);
        let hello = pb::dialer_request::Message::Hello(hello);
        tx.send(pb::DialerRequest { message: Some(hello) }).await.unwrap();
        let stream = tokio_stream::wrappers::ReceiverStream::new(requests);
        let rx = server.dialer().await.dialer_session(stream).await.unwrap().into_inner();
        Self { tx, rx }
    }

    pub(crate) async fn send(&self, message: pb::dialer_request::Message) {
        self.tx.send(pb::DialerRequest { message: Some(message) }).await.unwrap();
    }

    pub(crate) async fn credits(&self, n: u32) {
        self.send(pb::dialer_request::Message::Credits(n)).await;
    }

    pub(crate) async fn recv(&mut self) -> pb::dialer_response::Message {
        self.rx.message().await.unwrap().expect("the session is open").message.unwrap()
    }

    pub(crate) async fn claim(&mut self) -> pb::Claim {
        match self.recv().await {
            pb::dialer_response::Message::Claim(claim) => claim,
            other => panic!("expected a claim, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_hopper_session_pushes_no_more_than_its_credits_and_releases_on_disconnect() {
    use pb::dialer_response::Message as Push;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.dialer.session_poll_ms = 20;
    let (server, clock) = start(config).await;
    let zones = ["America/New_York", "America/New_York", "America/New_York", "Asia/Tokyo", "Asia/Tokyo"];
    let leads = zones.iter().enumerate().map(|(n, zone)| lead(&format!("lead-{n}"), n as u32, zone)).collect();
    server.upsert(leads).await;
    let mut session = Session::open(&server, "hopper").await;

    session.credits(2).await;
    let first = session.claim().await;
    let second = session.claim().await;
    assert_ne!(lead_of(&first), lead_of(&second));
    // Credits are spent: what comes next is the outcome's acknowledgement, not a claim.
    let outcome =
        pb::Outcome { lease_id: lease_of(&first), result: pb::CallResult::NoAnswer.into(), ..Default::default() };
    session.send(pb::dialer_request::Message::Outcome(outcome)).await;
    let Push::OutcomeAck(ack) = session.recv().await else { panic!("expected the acknowledgement") };
    assert_eq!(ack.attempts, 1);
    // A bad message is refused without ending the session.
    session.send(pb::dialer_request::Message::ReleaseLeaseId("nonsense".into())).await;
    let Push::Rejected(rejection) = session.recv().await else { panic!("expected a rejection") };
    assert_eq!((rejection.lease_id.as_str(), rejection.code), ("nonsense", Code::InvalidArgument as i32));

    // Five more credits: the last New York lead, then a dry spell, said once.
    session.credits(5).await;
    let third = session.claim().await;
    assert_eq!(third.lease.as_ref().unwrap().agent_id, "hopper");
    let Push::Starved(counts) = session.recv().await else { panic!("expected starved") };
    assert_eq!((counts.leased, counts.recycling, counts.outside_calling_window), (2, 1, 2), "{counts:?}");

    // A new lead is pushed as soon as it is stored, and the credits left make a new dry spell.
    server.upsert(vec![lead("fresh", 7, "America/New_York")]).await;
    assert_eq!(lead_of(&session.claim().await), "fresh");
    let Push::Starved(counts) = session.recv().await else { panic!("expected starved") };
    assert_eq!(counts.leased, 3);

    // Tokyo's window opens (08:00 there, 18:00 in New York; every lease lapsed): the three
    // credits left are spent, and no more.
    clock.set_ms(NOW_MS + 8 * HOUR_MS);
    let pushed = [session.claim().await, session.claim().await, session.claim().await];
    let outcome =
        pb::Outcome { lease_id: lease_of(&pushed[0]), result: pb::CallResult::Busy.into(), ..Default::default() };
    session.send(pb::dialer_request::Message::Outcome(outcome)).await;
    assert!(matches!(session.recv().await, Push::OutcomeAck(_)));

    // The dialer goes away: the two leases it still held are handed back.
    let held: HashSet<String> = pushed[1..].iter().map(|c| lead_of(c).to_string()).collect();
    drop(session);
    let mut dialer = server.dialer().await;
    let mut seen = HashSet::new();
    for _ in 0..500 {
        match claim(&mut dialer, "x").await {
            Some(claim) => {
                seen.insert(lead_of(&claim).to_string());
            }
            None if held.is_subset(&seen) => break,
            None => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    assert!(held.is_subset(&seen), "released {held:?}, claimed {seen:?}");
    server.stop().await;
}

/// A brief session's claims carry what dialling needs and no more; a full one the whole lead
/// and the score's breakdown.
#[tokio::test]
async fn a_brief_session_claims_with_the_number_and_the_score_only() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(config(dir.path())).await;
    server.upsert(new_york(2)).await;
    let hello = |brief| pb::DialerHello { campaign: String::new(), agent_id: "hopper".into(), brief };
    let mut brief = Session::open_with(&server, hello(true)).await;
    brief.credits(1).await;
    let claim = brief.claim().await;
    let (lead, score) = (claim.lead.unwrap(), claim.score.unwrap());
    let request = pb::GetLeadRequest { id: lead.id.clone(), include_events: false };
    let stored = server.leads().await.get_lead(request).await.unwrap().into_inner().lead.unwrap();
    assert_eq!((&lead.phone, &lead.time_zone), (&stored.phone, &stored.time_zone));
    assert!(lead.attributes.is_empty() && score.scorers.is_empty(), "{lead:?} {score:?}");
    let request = pb::TopLeadsRequest { limit: 1, ..Default::default() };
    let mut ranked = server.scoring().await.top_leads(request).await.unwrap().into_inner();
    let best = ranked.next().await.unwrap().unwrap().score.unwrap();
    assert_eq!((score.lead_id.as_str(), score.score, score.band), (best.lead_id.as_str(), best.score, best.band));

    let mut full = Session::open_with(&server, hello(false)).await;
    full.credits(1).await;
    let claim = full.claim().await;
    assert!(!claim.lead.unwrap().attributes.is_empty() && !claim.score.unwrap().scorers.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn decided_calls_export_as_training_data_that_train_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(config(dir.path())).await;
    let leads = new_york(40);
    server.upsert(leads).await;
    let mut dialer = server.dialer().await;
    let mut expected = std::collections::BTreeMap::new();
    for n in 0..40 {
        let claim = claim(&mut dialer, "a").await.unwrap();
        // Converted, lost or not interested decide; an unanswered call does not.
        let result = [
            pb::CallResult::Converted,
            pb::CallResult::Lost,
            pb::CallResult::ConnectedNotInterested,
            pb::CallResult::NoAnswer,
        ][n % 4];
        report(&mut dialer, &claim, result, None, false).await;
        if result != pb::CallResult::NoAnswer {
            expected.insert(lead_of(&claim).to_string(), if result == pb::CallResult::Converted { "1" } else { "0" });
        }
    }
    server.stop().await;

    let out = dir.path().join("outcomes.csv");
    let run = |args: &[&str]| std::process::Command::new(leadscore_tests::binary()).args(args).output().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let exported = run(&["export-outcomes", "--data-dir", data_dir, "--out", out.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    assert!(String::from_utf8_lossy(&exported.stdout).contains("10 converted, 20 not converted"));
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["lead_id", "department", "employees", "role", "Converted"]);
    let rows: std::collections::BTreeMap<String, String> =
        reader.records().map(|r| r.unwrap()).map(|r| (r[0].to_string(), r[4].to_string())).collect();
    assert_eq!(rows, expected.into_iter().map(|(k, v)| (k, v.to_string())).collect());

    // Thirty rows are too few to hold some out; the same rows serve as the report's.
    let model = dir.path().join("model.json");
    let trained = run(&[
        "train",
        "--csv",
        out.to_str().unwrap(),
        "--target",
        "Converted",
        "--drop",
        "lead_id",
        "--model",
        "lr",
        "--test-csv",
        out.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    assert!(model.exists());
}

#[tokio::test]
async fn queues_of_campaigns_dialled_before_are_built_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(config(dir.path())).await;
    server.upsert(vec![lead("only", 1, "America/New_York")]).await;
    // Whatever the hour, claiming builds the queue and marks the campaign as dialled.
    let _ = next(&mut server.dialer().await, "a").await;
    server.stop().await;

    let data_dir = dir.path().to_str().unwrap().to_owned();
    let cwd = dir.path().to_owned();
    let log = tokio::task::spawn_blocking(move || {
        let child =
            leadscore_tests::ChildServer::start(&cwd, &["--listen", "127.0.0.1:0", "--data-dir", &data_dir]).unwrap();
        // The build runs beside serving; wait for its line, not for a time.
        for _ in 0..3000 {
            if child.log_text().contains("dialer queue built") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.terminate().1
    })
    .await
    .unwrap();
    assert!(log.contains("dialer queue built campaign=default leads=1"), "{log}");
}

#[tokio::test]
async fn the_wallboard_counts_calls_by_minute_and_shows_each_windows_queue() {
    let dir = tempfile::tempdir().unwrap();
    // One routing rule: the one agent may take any lead.
    let mut config = config(dir.path());
    config.routing.rules = vec![leadscore::config::RoutingRuleConfig {
        name: "all".into(),
        when: "true".into(),
        queue: "floor".into(),
        agents: "tier >= 0".into(),
        ..Default::default()
    }];
    let (server, clock) = start(config).await;
    let zones = ["America/New_York", "Europe/Berlin", "Asia/Tokyo"];
    server.upsert((0..9).map(|n| lead(&format!("lead-{n}"), n, zones[n as usize % 3])).collect()).await;
    // A lead with no number is counted as such, not as filtered out by the campaign.
    server.upsert(vec![pb::Lead { phone: String::new(), ..lead("no-phone", 9, zones[0]) }]).await;
    let mut routing = server.routing().await;
    let agent = pb::Agent { id: "a".into(), name: "Ada".into(), capacity: 5, ..Default::default() };
    routing.upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent] }).await.unwrap();
    let available = pb::SetAgentStateRequest { agent_id: "a".into(), state: pb::AgentState::Available.into() };
    routing.set_agent_state(available).await.unwrap();
    let mut dialer = server.dialer().await;

    // Two calls in the minute of NOW_MS; in the next, one call and a lead still held.
    let (first, second) = (claim(&mut dialer, "a").await.unwrap(), claim(&mut dialer, "a").await.unwrap());
    report(&mut dialer, &first, pb::CallResult::Converted, None, false).await;
    report(&mut dialer, &second, pb::CallResult::NoAnswer, None, false).await;
    clock.set_ms(NOW_MS + 90_000);
    let third = claim(&mut dialer, "a").await.unwrap();
    report(&mut dialer, &third, pb::CallResult::Busy, None, false).await;
    claim(&mut dialer, "a").await.unwrap();

    let board = dialer.wallboard(pb::WallboardRequest { campaign: String::new(), minutes: 3 }).await.unwrap();
    let board = board.into_inner();
    let starts: Vec<i64> = board.minutes.iter().map(|m| m.start.as_ref().unwrap().seconds * 1000).collect();
    assert_eq!(starts, [NOW_MS - MINUTE_MS, NOW_MS, NOW_MS + MINUTE_MS]);
    assert_eq!(board.minutes.iter().map(|m| m.claims).collect::<Vec<_>>(), [0, 2, 2]);
    // By result in `CallResult` order: no answer, busy, ... converted sixth.
    assert_eq!(board.minutes[0].outcomes, [0; 10]);
    assert_eq!(board.minutes[1].outcomes, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(board.minutes[2].outcomes, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);

    // 10:00 in New York and 16:00 in Berlin (open until 21:00), midnight in Tokyo (opens 08:00).
    let zone = |name: &str| board.zones.iter().find(|z| z.time_zone == name).unwrap_or_else(|| panic!("{board:?}"));
    let window = |name: &str| {
        let z = zone(name);
        (z.open, z.changes_at.as_ref().unwrap().seconds * 1000)
    };
    assert_eq!(board.zones.len(), 3);
    assert_eq!(window("America/New_York"), (true, NOW_MS + 11 * HOUR_MS));
    assert_eq!(window("Europe/Berlin"), (true, NOW_MS + 5 * HOUR_MS));
    assert_eq!(window("Asia/Tokyo"), (false, NOW_MS + 8 * HOUR_MS));
    assert_eq!(zone("Asia/Tokyo").callable, 3);
    // Of the six leads in open windows, three were called (one finished, two recycling) and
    // one is held.
    assert_eq!((board.queued, board.callable), (10, 2));
    let ineligible = board.ineligible.unwrap();
    let counts = (ineligible.finished, ineligible.recycling, ineligible.leased, ineligible.outside_calling_window);
    assert_eq!(counts, (1, 2, 1, 3));
    assert_eq!((ineligible.no_phone, ineligible.filtered_out), (1, 0));
    // Only the conversion was decided: unanswered calls say nothing of the agent.
    let [a] = &board.agents[..] else { panic!("one agent: {:?}", board.agents) };
    assert_eq!((a.agent_id.as_str(), a.name.as_str(), a.state(), a.leases), ("a", "Ada", pb::AgentState::Available, 1));
    assert_eq!((a.decided, a.converted), (1, 1));

    for (request, field) in [
        (pb::WallboardRequest { campaign: String::new(), minutes: 1441 }, "minutes"),
        (pb::WallboardRequest { campaign: "nope".into(), minutes: 0 }, "campaign"),
    ] {
        let refused = dialer.wallboard(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().starts_with(field), "{}", refused.message());
    }
    server.stop().await;
}

/// The campaign's ranking as `TopLeads` answers it with these options.
async fn top_with(server: &TestServer, callable_now: bool, exclude_finished: bool) -> Vec<pb::RankedLead> {
    let request = pb::TopLeadsRequest { limit: 100, callable_now, exclude_finished, ..Default::default() };
    let stream = server.scoring().await.top_leads(request).await.unwrap().into_inner();
    stream.map(|r| r.unwrap()).collect().await
}

#[tokio::test]
async fn top_leads_answers_who_to_call_first_with_each_leads_dialling_state() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(config(dir.path())).await;
    let mut leads = new_york(6);
    leads.push(lead("tokyo", 7, "Asia/Tokyo"));
    let mut flagged = lead("flagged", 8, "America/New_York");
    flagged.consent.as_mut().unwrap().do_not_call = true;
    leads.push(flagged);
    server.upsert(leads).await;
    let mut dialer = server.dialer().await;

    // The best lead converts, the next is not answered, the third is held by an agent now.
    let converted = claim(&mut dialer, "a").await.unwrap();
    report(&mut dialer, &converted, pb::CallResult::Converted, None, false).await;
    let unanswered = claim(&mut dialer, "a").await.unwrap();
    report(&mut dialer, &unanswered, pb::CallResult::NoAnswer, None, false).await;
    let held = claim(&mut dialer, "b").await.unwrap();
    clock.set_ms(NOW_MS + MINUTE_MS);

    let all = top_with(&server, false, false).await;
    assert_eq!(all.len(), 8, "every scored lead is ranked by default");
    let state =
        |id: &str| all.iter().find(|r| r.score.as_ref().unwrap().lead_id == id).unwrap().dialing.clone().unwrap();
    let won = state(lead_of(&converted));
    assert_eq!((won.attempts, won.last_outcome.as_str(), won.finished), (1, "converted", true));
    assert_eq!((won.callable_now, won.next_callable_at, won.reason.as_str()), (false, None, "finished"));
    assert_eq!(won.last_called_at.map(|t| t.seconds), Some(NOW_MS / 1000));
    let resting = state(lead_of(&unanswered));
    assert_eq!((resting.last_outcome.as_str(), resting.reason.as_str()), ("no_answer", "recycling"));
    assert_eq!(resting.next_callable_at, Some(timestamp((NOW_MS + 4 * HOUR_MS) / 1000)));
    assert_eq!(state(lead_of(&held)).reason, "leased");
    // Midnight in Tokyo: its window opens at 08:00 local, eight hours after NOW.
    let tokyo = state("tokyo");
    assert_eq!((tokyo.callable_now, tokyo.reason.as_str()), (false, "outside_calling_window"));
    assert_eq!(tokyo.next_callable_at, Some(timestamp((NOW_MS + 8 * HOUR_MS) / 1000)));
    assert_eq!((tokyo.time_zone.as_str(), &tokyo.local_time[..19]), ("Asia/Tokyo", "2026-11-03T00:01:00"));
    assert_eq!((state("flagged").reason.as_str(), state("flagged").next_callable_at), ("do_not_call", None));

    // Callable now: the three New York leads nobody called, in rank order, each "now".
    let callable = top_with(&server, true, false).await;
    let ids: Vec<&str> = callable.iter().map(|r| r.score.as_ref().unwrap().lead_id.as_str()).collect();
    let expected: Vec<&str> = all
        .iter()
        .map(|r| r.score.as_ref().unwrap().lead_id.as_str())
        .filter(|id| {
            id.starts_with("lead-") && ![lead_of(&converted), lead_of(&unanswered), lead_of(&held)].contains(id)
        })
        .collect();
    assert_eq!((ids.len(), &ids), (3, &expected));
    assert_eq!(callable.iter().map(|r| r.rank).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(callable.iter().all(|r| r.dialing.as_ref().unwrap().callable_now));
    // The list's first lead is the one NextLead claims next.
    assert_eq!(lead_of(&claim(&mut dialer, "c").await.unwrap()), ids[0]);

    // Leaving out finished leads keeps everyone but the converted lead.
    let open = top_with(&server, false, true).await;
    assert_eq!(open.len(), 7);
    assert!(open.iter().all(|r| r.score.as_ref().unwrap().lead_id != lead_of(&converted)));
    server.stop().await;
}

async fn rates(dialer: &mut DialerServiceClient<Channel>, segment: &str) -> pb::ContactRatesResponse {
    let request = pb::ContactRatesRequest { campaign: String::new(), segment: segment.into() };
    dialer.contact_rates(request).await.unwrap().into_inner()
}

#[tokio::test]
async fn contact_rates_are_learned_from_outcomes_kept_across_restarts_and_explain_each_claim() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let dialing = &mut config.campaigns.get_mut("default").unwrap().dialing;
    dialing.order = leadscore::config::DialingOrder::ExpectedValue;
    dialing.segment = vec!["role".into()];
    let (server, clock) = start(config.clone()).await;
    server.upsert(new_york(8)).await;
    let mut dialer = server.dialer().await;

    // Monday 10:00 in New York: five calls, three reach the person; a wrong number says nothing
    // of when people answer and is not counted.
    let results = [
        pb::CallResult::ConnectedNotInterested,
        pb::CallResult::NoAnswer,
        pb::CallResult::Callback,
        pb::CallResult::Voicemail,
        pb::CallResult::Converted,
        pb::CallResult::WrongNumber,
    ];
    let mut called = Vec::new();
    for result in results {
        let claim = claim(&mut dialer, "a").await.unwrap();
        let callback = (result == pb::CallResult::Callback).then_some(NOW_MS + 48 * HOUR_MS);
        report(&mut dialer, &claim, result, callback, false).await;
        called.push(lead_of(&claim).to_string());
    }
    let monday_ten = 10;
    let all = rates(&mut dialer, "").await;
    assert_eq!(all.hours.len(), 168);
    let hour = &all.hours[monday_ten];
    assert_eq!((hour.label.as_str(), hour.all_calls, hour.all_contacts), ("Mon 10:00", 5, 3));
    assert_eq!((all.overall.as_ref().unwrap().calls, all.overall.as_ref().unwrap().contacts), (5, 3));
    // Thin data leans on the campaign's rate; other hours have none of their own.
    assert!(hour.low < hour.rate && hour.rate < hour.high, "{hour:?}");
    assert_eq!(all.hours[monday_ten + 1].all_calls, 0);
    // Segments: the zone and the role (even leads are CTOs).
    let segments: Vec<(&str, u32)> = all.segments.iter().map(|s| (s.segment.as_str(), s.calls)).collect();
    let ctos = called[..5].iter().filter(|id| id[5..].parse::<u32>().unwrap() % 2 == 0).count() as u32;
    let mut expected = vec![("America/New_York · role=cto", ctos), ("America/New_York · role=engineer", 5 - ctos)];
    expected.retain(|(_, calls)| *calls > 0);
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    assert_eq!(segments, expected);
    let cto = rates(&mut dialer, "America/New_York · role=cto").await;
    assert_eq!((cto.hours[monday_ten].calls, cto.hours[monday_ten].all_calls), (ctos, 5));

    // Explain shows a lead's curve: its segment's rates, lowered where it did not answer.
    let unanswered = called[1].clone();
    let explained = server
        .scoring()
        .await
        .explain(pb::ExplainRequest { contact_curve: true, lead_id: unanswered, campaign: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explained.contact_curve.len(), 168);
    let segment = rates(&mut dialer, &explained.contact_segment).await;
    assert!(explained.contact_segment.starts_with("America/New_York · role="), "{}", explained.contact_segment);
    let (own, its_segment) = (&explained.contact_curve[monday_ten], &segment.hours[monday_ten]);
    assert!(own.rate < its_segment.rate, "{own:?} against {its_segment:?}");
    assert_eq!(explained.contact_curve[monday_ten + 6].rate, segment.hours[monday_ten + 6].rate);

    // A claim says why, with the lead's chance of being reached now and its expected value.
    let next = claim(&mut dialer, "b").await.unwrap();
    assert!(
        next.why.starts_with(
            "best expected value, first of 2 callable; contact rate at Mon 10:00 local in America/New_York · role="
        ),
        "{}",
        next.why
    );
    let rate = next.contact_rate.as_ref().unwrap();
    assert_eq!((rate.label.as_str(), rate.hour_of_week), ("Mon 10:00", 10));
    assert!(next.expected_value > 0.0 && next.expected_value <= rate.rate, "{next:?}");
    dialer.release_lead(pb::ReleaseLeadRequest { lease_id: lease_of(&next) }).await.unwrap();
    server.stop().await;

    // Built again from the store at start-up: the same rates.
    let server = TestServer::try_start(config.clone(), clock.clone()).await.unwrap();
    let mut dialer = server.dialer().await;
    assert_eq!(rates(&mut dialer, "").await, all);
    // An erased lead's calls leave the rates with it.
    let erased = called[0].clone();
    server.leads().await.erase_lead(pb::EraseLeadRequest { id: erased }).await.unwrap();
    let after = rates(&mut dialer, "").await;
    assert_eq!((after.hours[monday_ten].all_calls, after.hours[monday_ten].all_contacts), (4, 2));

    let unknown = pb::ContactRatesRequest { campaign: "nope".into(), segment: String::new() };
    let status = dialer.contact_rates(unknown).await.unwrap_err();
    assert!(status.message().contains("campaign"), "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn new_leads_are_called_first_within_speed_to_lead_and_the_wallboard_reports_its_median() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.campaigns.get_mut("default").unwrap().dialing.speed_to_lead = "5m".into();
    let (server, clock) = start(config).await;
    clock.set_ms(NOW_MS - 2 * HOUR_MS);
    // Three CTOs.
    server.upsert(new_york(6).into_iter().step_by(2).collect()).await;
    let old = ranking(&server).await;
    clock.set_ms(NOW_MS);
    // Ranked below every older lead: an engineer at a small company.
    let mut fresh = lead("fresh", 1, "America/New_York");
    fresh.attributes.insert("employees".into(), number(3.0));
    fresh.attributes.insert("role".into(), text("Intern"));
    server.upsert(vec![fresh.clone()]).await;
    let ranked = ranking(&server).await;
    assert_eq!((ranked.len(), ranked.iter().position(|id| id == "fresh")), (4, Some(3)), "{ranked:?}");
    let mut dialer = server.dialer().await;

    clock.set_ms(NOW_MS + MINUTE_MS);
    let first = claim(&mut dialer, "a").await.unwrap();
    assert_eq!(lead_of(&first), "fresh", "a new lead comes first");
    let second = claim(&mut dialer, "a").await.unwrap();
    assert_eq!(lead_of(&second), old[0]);
    for called in [&first, &second] {
        report(&mut dialer, called, pb::CallResult::NoAnswer, None, false).await;
    }
    // Another new lead, claimed only after its five minutes: by score again, after the CTOs.
    clock.set_ms(NOW_MS + 10 * MINUTE_MS);
    server.upsert(vec![pb::Lead { id: "late".into(), phone: "+12125550199".into(), ..fresh }]).await;
    clock.set_ms(NOW_MS + 16 * MINUTE_MS);
    let third = claim(&mut dialer, "a").await.unwrap();
    assert!(old[1..].contains(&lead_of(&third).to_string()), "{third:?}");

    let board = dialer.wallboard(pb::WallboardRequest { campaign: String::new(), minutes: 60 }).await.unwrap();
    let board = board.into_inner();
    // First calls 60 s, 2 h 1 min and 2 h 16 min after creation: the median is the middle one.
    assert_eq!(board.first_calls, 3);
    assert_eq!(board.median_first_call.map(|d| d.seconds), Some(2 * 3600 + 60));
    server.stop().await;
}

#[tokio::test]
async fn a_lead_waits_for_a_better_hour_when_the_campaign_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let dialing = &mut config.campaigns.get_mut("default").unwrap().dialing;
    dialing.order = leadscore::config::DialingOrder::ExpectedValue;
    dialing.hold_for_better_hour = "3h".into();
    let (server, clock) = start(config).await;
    server.upsert(new_york(12)).await;
    let mut dialer = server.dialer().await;

    // Monday 10:00 in New York: nobody answers. Soon 10:00 answers markedly worse than the
    // hours after it (which lean on the campaign's rate), and the leads wait for 11:00.
    let mut unanswered = 0;
    let held = loop {
        let answer = next(&mut dialer, "a").await;
        match answer.result {
            Some(Next::Claim(claim)) => {
                report(&mut dialer, &claim, pb::CallResult::NoAnswer, None, false).await;
                unanswered += 1;
                assert!(unanswered < 10, "the leads never waited");
            }
            Some(Next::NoneEligible(counts)) => break (counts, answer.next_eligible_at),
            None => panic!("{answer:?}"),
        }
    };
    let (counts, next_at) = held;
    assert_eq!(counts.held_for_better_hour, 12 - unanswered, "{counts:?}");
    assert_eq!(next_at, Some(timestamp((NOW_MS + HOUR_MS) / 1000)));
    let board = dialer.wallboard(pb::WallboardRequest { campaign: String::new(), minutes: 60 }).await.unwrap();
    assert_eq!(board.into_inner().ineligible.unwrap().held_for_better_hour, 12 - unanswered);

    // At 11:00 the better hour has come: calls go on.
    clock.set_ms(NOW_MS + HOUR_MS);
    let claim = claim(&mut dialer, "a").await.expect("the better hour came");
    assert!(claim.why.contains("Mon 11:00"), "{}", claim.why);
    server.stop().await;
}

#[tokio::test]
async fn the_wallboard_shows_the_abandon_rate_of_answered_calls_over_30_days_against_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(config(dir.path())).await;
    server.upsert((0..40).map(|n| lead(&format!("lead-{n}"), n, "America/New_York")).collect()).await;
    let mut dialer = server.dialer().await;
    let abandonment = |dialer: &mut DialerServiceClient<Channel>| {
        let mut dialer = dialer.clone();
        async move {
            let board = dialer.wallboard(pb::WallboardRequest::default()).await.unwrap().into_inner();
            let a = board.abandonment.unwrap();
            (a.answered, a.abandoned, a.over_limit)
        }
    };
    // 40 calls: 10 unanswered (not counted), 29 answered by a person, and one abandoned.
    for n in 0..40 {
        let claimed = claim(&mut dialer, "a").await.unwrap();
        let result = match n {
            0..10 => pb::CallResult::NoAnswer,
            10 => pb::CallResult::Abandoned,
            _ => pb::CallResult::ConnectedNotInterested,
        };
        report(&mut dialer, &claimed, result, None, false).await;
    }
    // One in 30 is 3.3%: over the 3% limit.
    assert_eq!(abandonment(&mut dialer).await, (30, 1, true));
    let board = dialer.wallboard(pb::WallboardRequest::default()).await.unwrap().into_inner().abandonment.unwrap();
    assert!((board.rate - 1.0 / 30.0).abs() < 1e-9 && board.limit == 0.03, "{board:?}");

    // An abandoned lead rests as after no answer (4 h by default), then is called again.
    let rested = next(&mut dialer, "a").await;
    let Some(Next::NoneEligible(counts)) = &rested.result else { panic!("{rested:?}") };
    assert_eq!(counts.recycling, 40, "{counts:?}");
    clock.set_ms(NOW_MS + 4 * HOUR_MS + 60_000);
    let mut again = Vec::new();
    while let Some(claimed) = claim(&mut dialer, "a").await {
        again.push(lead_of(&claimed).to_string());
    }
    assert_eq!(again.len(), 11, "the ten unanswered and the abandoned: {again:?}");

    // Thirty days on, the calls have left the window.
    clock.set_ms(NOW_MS + 30 * 24 * HOUR_MS);
    assert_eq!(abandonment(&mut dialer).await, (0, 0, false));
    server.stop().await;
}

#[tokio::test]
async fn the_wallboard_tells_a_supervisor_who_is_doing_what_and_what_waits() {
    let dir = tempfile::tempdir().unwrap();
    // CTOs go to the floor's agents; everyone else to nurture, which no agent serves.
    let mut config = config(dir.path());
    let rule = |name: &str, when: &str, queue: &str, agents: &str| leadscore::config::RoutingRuleConfig {
        name: name.into(),
        when: when.into(),
        queue: queue.into(),
        agents: agents.into(),
        ..Default::default()
    };
    config.routing.rules =
        vec![rule("ctos", "lead.role == 'CTO'", "floor", "tier >= 0"), rule("rest", "true", "nurture", "")];
    let (server, clock) = start(config).await;
    // Four CTOs (the even leads) and four others, in New York at 10:00.
    server.upsert(new_york(8)).await;
    let mut routing = server.routing().await;
    let agent = pb::Agent { id: "a".into(), name: "Ada".into(), capacity: 5, ..Default::default() };
    routing.upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent] }).await.unwrap();
    let state = |state: pb::AgentState| pb::SetAgentStateRequest { agent_id: "a".into(), state: state.into() };
    routing.set_agent_state(state(pb::AgentState::Busy)).await.unwrap();
    let route = |lead: &str| pb::RouteRequest { lead_id: lead.into(), campaign: String::new() };

    // A lead routed to nurture waits there from its first decision; a CTO waits for the floor
    // while its one agent is busy.
    routing.route(route("lead-1")).await.unwrap();
    clock.set_ms(NOW_MS + 5 * MINUTE_MS);
    routing.route(route("lead-3")).await.unwrap();
    routing.route(route("lead-1")).await.unwrap();
    for cto in ["lead-0", "lead-2", "lead-4", "lead-6"] {
        routing.route(route(cto)).await.unwrap();
    }
    let mut dialer = server.dialer().await;
    let board = dialer.wallboard(pb::WallboardRequest::default()).await.unwrap().into_inner();
    let queues: Vec<_> =
        board.routing_queues.iter().map(|q| (q.queue.as_str(), q.waiting, q.oldest_since.unwrap().seconds)).collect();
    assert_eq!(queues, [("floor", 4, (NOW_MS + 5 * MINUTE_MS) / 1000), ("nurture", 2, NOW_MS / 1000)]);

    // Available at 10:06, the agent calls three CTOs: two talk (90 s and 30 s), one rings out,
    // and one asks to be called back at 11:00.
    clock.set_ms(NOW_MS + 6 * MINUTE_MS);
    routing.set_agent_state(state(pb::AgentState::Available)).await.unwrap();
    let calls = [
        (pb::CallResult::Converted, 90, None),
        (pb::CallResult::Callback, 30, Some(NOW_MS + HOUR_MS)),
        (pb::CallResult::NoAnswer, 0, None),
    ];
    let mut called = Vec::new();
    for (result, talk_seconds, callback_at) in calls {
        let claimed = claim(&mut dialer, "a").await.unwrap();
        called.push(lead_of(&claimed).to_string());
        let outcome = pb::Outcome {
            lease_id: lease_of(&claimed),
            result: result.into(),
            callback_at: callback_at.map(|ms| timestamp(ms / 1000)),
            talk_time: Some(leadscore_proto::prost_types::Duration { seconds: talk_seconds, nanos: 0 }),
            ..Default::default()
        };
        dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap();
    }
    assert!(called.iter().all(|id| ["lead-0", "lead-2", "lead-4", "lead-6"].contains(&id.as_str())), "{called:?}");

    // At 11:01 the callback is due and not yet made.
    clock.set_ms(NOW_MS + HOUR_MS + MINUTE_MS);
    let request = pb::WallboardRequest { campaign: String::new(), minutes: 120 };
    let board = dialer.wallboard(request).await.unwrap().into_inner();
    assert_eq!((board.callbacks_due, board.oldest_callback_due), (1, Some(timestamp((NOW_MS + HOUR_MS) / 1000))));
    // The talk time of the calls that reported one, for the average.
    let talk: (u64, u32) = board.minutes.iter().fold((0, 0), |(ms, n), m| (ms + m.talk_ms, n + m.talked));
    assert_eq!(talk, (120_000, 2));
    // One CTO is left to call; the four others are callable only by a dialer outside the
    // roster, since routing sends them to no agent.
    assert_eq!((board.callable, board.to_no_agent), (5, 4));
    let new_york = board.zones.iter().find(|z| z.time_zone == "America/New_York").unwrap();
    assert_eq!((new_york.callable, new_york.to_no_agent), (5, 4));
    // The agent has been available since 10:06.
    let [a] = &board.agents[..] else { panic!("{:?}", board.agents) };
    assert_eq!((a.state(), a.since), (pb::AgentState::Available, Some(timestamp((NOW_MS + 6 * MINUTE_MS) / 1000))));
    // A call ends a lead's wait: the CTO not called still waits for the floor.
    let waiting: Vec<_> = board.routing_queues.iter().map(|q| (q.queue.as_str(), q.waiting)).collect();
    assert_eq!(waiting, [("floor", 1), ("nurture", 2)]);
    server.stop().await;
}
