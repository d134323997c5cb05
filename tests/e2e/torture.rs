//! The torture test: many clients issue every mutating RPC at once against the real binary
//! (fsync `always`, a sweep every 50 ms) while readers stream rankings, crossings and routing
//! decisions. A watchdog fails the run if any call takes over 5 s or health stops answering.
//! Afterwards no lead was ever leased to two agents at once, every acknowledged write survives
//! a SIGKILL and a restart, and `Stats` agrees with `GetLead`.
//!
//! It runs a fixed number of operations (about half a minute in CI); `LEADSCORE_TORTURE_SCALE=N`
//! multiplies them for a longer run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::tonic::{Code, Status};
use leadscore_proto::v1 as pb;
use leadscore_tests::{ChildServer, number, text};
use pb::admin_service_client::AdminServiceClient;
use pb::dialer_service_client::DialerServiceClient;
use pb::lead_service_client::LeadServiceClient;
use pb::routing_service_client::RoutingServiceClient;
use pb::scoring_service_client::ScoringServiceClient;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::liveness::{busy_floor_config, within};

/// Leads every dialer may claim; never erased.
const FLOOR: usize = 600;
const AGENTS: usize = 12;

fn scale() -> usize {
    std::env::var("LEADSCORE_TORTURE_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// A callable lead; `phone` must be unique, since an erased lead's number is refused after.
fn lead(id: &str, phone: usize, revision: usize) -> pb::Lead {
    pb::Lead {
        id: id.into(),
        attributes: [
            ("role".to_string(), text(if phone.is_multiple_of(3) { "CTO" } else { "Engineer" })),
            ("employees".to_string(), number((10 + phone * 37 % 900) as f64)),
            ("revision".to_string(), number(revision as f64)),
            // Few accounts, so that every change moves one shared by other leads.
            ("account".to_string(), text(&format!("account-{}.com", (phone + revision) % 7))),
        ]
        .into(),
        time_zone: if phone.is_multiple_of(2) { "UTC" } else { "Pacific/Auckland" }.into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: format!("+1213{phone:07}"),
        ..Default::default()
    }
}

/// What the clients were told, kept to check the server against afterwards.
#[derive(Default)]
struct Ledger {
    /// Each lead's last acknowledged revision, or `None` once its erasure was acknowledged.
    leads: HashMap<String, Option<usize>>,
    /// Acknowledged events (not calls) per lead.
    events: HashMap<String, usize>,
    /// Acknowledged call outcomes per lead.
    calls: HashMap<String, usize>,
    /// Every claim: lead, lease id, when its answer arrived.
    claims: Vec<(String, String, Instant)>,
    /// When each lease's end (outcome, release, or its session's close) was sent.
    ended: HashMap<String, Instant>,
}

type Shared = Arc<Mutex<Ledger>>;

/// Codes an RPC may answer with in this run, beside OK: the run's own races (a lead erased
/// under a claim, an agent set offline, two configuration changes at once).
fn expected(status: &Status, allowed: &[Code]) -> bool {
    allowed.contains(&status.code())
}

fn lease_lsn(lease_id: &str) -> u64 {
    lease_id.split_once('-').unwrap().0.parse().unwrap()
}

async fn writer(channel: Channel, ledger: Shared, k: usize, ops: usize) {
    let mut leads = LeadServiceClient::new(channel);
    for i in 0..ops {
        let own = format!("w{k}-{}", i % 40);
        match i % 4 {
            0 | 1 => {
                let (id, phone) = (own.clone(), 100_000 * (k + 1) + i);
                let request = pb::UpsertLeadsRequest { leads: vec![lead(&id, phone, i)] };
                match within("UpsertLeads", leads.upsert_leads(request)).await {
                    Ok(_) => _ = ledger.lock().unwrap().leads.insert(id, Some(i)),
                    Err(status) => assert!(expected(&status, &[Code::FailedPrecondition]), "UpsertLeads: {status}"),
                }
            }
            2 => {
                let lead_id = format!("floor-{}", (k * 7919 + i * 104_729) % FLOOR);
                let kind = ["email_open", "page_view:/pricing", "webinar_attended"][i % 3];
                let event = pb::Event {
                    id: format!("w{k}-e{i}"),
                    lead_id: lead_id.clone(),
                    kind: kind.into(),
                    ..Default::default()
                };
                within("RecordEvents", leads.record_events(pb::RecordEventsRequest { events: vec![event] }))
                    .await
                    .unwrap();
                *ledger.lock().unwrap().events.entry(lead_id).or_default() += 1;
            }
            _ => {
                let request = pb::EraseLeadRequest { id: own.clone() };
                match within("EraseLead", leads.erase_lead(request)).await {
                    Ok(_) => _ = ledger.lock().unwrap().leads.insert(own, None),
                    Err(status) => assert!(expected(&status, &[Code::NotFound]), "EraseLead: {status}"),
                }
            }
        }
    }
}

async fn importer(channel: Channel, ledger: Shared, ops: usize) {
    let mut leads = LeadServiceClient::new(channel);
    for round in 0..ops / 20 {
        let chunks: Vec<pb::ImportLeadsRequest> = (0..4)
            .map(|c| pb::ImportLeadsRequest {
                leads: (0..5)
                    .map(|n| lead(&format!("imp-{round}-{c}-{n}"), 900_000 + round * 20 + c * 5 + n, 0))
                    .collect(),
                ..Default::default()
            })
            .collect();
        let ids: Vec<String> = chunks.iter().flat_map(|c| c.leads.iter().map(|l| l.id.clone())).collect();
        let answer = within("ImportLeads", leads.import_leads(tokio_stream::iter(chunks))).await.unwrap().into_inner();
        assert_eq!(answer.rejected, 0, "{:?}", answer.rejections);
        ledger.lock().unwrap().leads.extend(ids.into_iter().map(|id| (id, Some(0))));
    }
}

/// Claims one lead at a time, then reports or releases it.
async fn caller(channel: Channel, ledger: Shared, agent: usize, ops: usize) {
    let mut dialer = DialerServiceClient::new(channel);
    for i in 0..ops {
        let request = pb::NextLeadRequest { campaign: String::new(), agent_id: format!("agent-{agent}") };
        let next = match within("NextLead", dialer.next_lead(request)).await {
            Ok(next) => next.into_inner(),
            Err(status) => {
                assert!(expected(&status, &[Code::FailedPrecondition]), "NextLead: {status}");
                continue;
            }
        };
        let Some(pb::next_lead_response::Result::Claim(claim)) = next.result else { continue };
        let lease = claim.lease.unwrap();
        ledger.lock().unwrap().claims.push((lease.lead_id.clone(), lease.lease_id.clone(), Instant::now()));
        ledger.lock().unwrap().ended.insert(lease.lease_id.clone(), Instant::now());
        let answer = if i % 5 == 4 {
            within("ReleaseLead", dialer.release_lead(pb::ReleaseLeadRequest { lease_id: lease.lease_id }))
                .await
                .map(drop)
        } else {
            let outcome = pb::Outcome {
                lease_id: lease.lease_id,
                result: [pb::CallResult::NoAnswer, pb::CallResult::Busy, pb::CallResult::Voicemail][i % 3].into(),
                ..Default::default()
            };
            let request = pb::ReportOutcomeRequest { outcome: Some(outcome) };
            let answer = within("ReportOutcome", dialer.report_outcome(request)).await;
            if answer.is_ok() {
                *ledger.lock().unwrap().calls.entry(lease.lead_id).or_default() += 1;
            }
            answer.map(drop)
        };
        // The lead may have been erased since the claim, which ended (revoked) the lease.
        if let Err(status) = answer {
            assert!(expected(&status, &[Code::FailedPrecondition]), "ending a lease: {status}");
            assert!(status.message().contains("erased"), "ending a lease: {status}");
        }
    }
}

/// A hopper: keeps a few credits out, reports most claims and releases some on the stream,
/// and closes with leases still held (the server releases them).
async fn hopper(channel: Channel, ledger: Shared, agent: usize, ops: usize) {
    let mut dialer = DialerServiceClient::new(channel);
    let (send, outbound) = tokio::sync::mpsc::channel(64);
    let say = |message| pb::DialerRequest { message: Some(message) };
    use pb::dialer_request::Message;
    let hello =
        pb::DialerHello { campaign: String::new(), agent_id: format!("agent-{agent}"), brief: agent.is_multiple_of(2) };
    send.send(say(Message::Hello(hello))).await.unwrap();
    send.send(say(Message::Credits(4))).await.unwrap();
    let mut inbound =
        within("DialerSession", dialer.dialer_session(tokio_stream::wrappers::ReceiverStream::new(outbound)))
            .await
            .unwrap()
            .into_inner();
    let (mut held, mut reported, mut claims) = (Vec::new(), HashMap::new(), 0);
    while claims < ops {
        let Some(message) = within("DialerSession message", inbound.next()).await else { break };
        match message.unwrap().message.unwrap() {
            pb::dialer_response::Message::Claim(claim) => {
                claims += 1;
                let lease = claim.lease.unwrap();
                ledger.lock().unwrap().claims.push((lease.lead_id.clone(), lease.lease_id.clone(), Instant::now()));
                held.push((lease.lead_id, lease.lease_id));
                if held.len() > 2 {
                    let (lead_id, lease_id) = held.remove(0);
                    ledger.lock().unwrap().ended.insert(lease_id.clone(), Instant::now());
                    let message = if claims % 4 == 0 {
                        Message::ReleaseLeaseId(lease_id)
                    } else {
                        reported.insert(lease_id.clone(), lead_id);
                        let result = pb::CallResult::NoAnswer.into();
                        Message::Outcome(pb::Outcome { lease_id, result, ..Default::default() })
                    };
                    send.send(say(message)).await.unwrap();
                    send.send(say(Message::Credits(1))).await.unwrap();
                }
            }
            pb::dialer_response::Message::Rejected(rejection) => {
                // The lead was erased under the lease; anything else is a bug.
                assert_eq!(Code::from(rejection.code), Code::FailedPrecondition, "{rejection:?}");
                reported.remove(&rejection.lease_id);
            }
            // The lead was erased under the lease, which ended it: not dialled, not reported.
            pb::dialer_response::Message::Revoked(revoked) => {
                assert_eq!(revoked.reason(), pb::RevokeReason::Erased, "{revoked:?}");
                held.retain(|(_, lease_id)| *lease_id != revoked.lease_id);
                ledger.lock().unwrap().ended.insert(revoked.lease_id, Instant::now());
            }
            pb::dialer_response::Message::OutcomeAck(_) | pb::dialer_response::Message::Starved(_) => {}
        }
    }
    // Closing releases what is still held; everything sent before is answered first.
    let closed = Instant::now();
    ledger.lock().unwrap().ended.extend(held.iter().map(|(_, lease)| (lease.clone(), closed)));
    drop(send);
    while let Some(message) = within("DialerSession drain", inbound.next()).await {
        match message {
            Ok(pb::DialerResponse { message: Some(pb::dialer_response::Message::Rejected(rejection)) }) => {
                assert_eq!(Code::from(rejection.code), Code::FailedPrecondition, "{rejection:?}");
                reported.remove(&rejection.lease_id);
            }
            Ok(_) => {}
            Err(status) => panic!("DialerSession ended with {status}"),
        }
    }
    let mut ledger = ledger.lock().unwrap();
    for lead_id in reported.into_values() {
        *ledger.calls.entry(lead_id).or_default() += 1;
    }
}

async fn agents(channel: Channel, ops: usize) {
    let mut routing = RoutingServiceClient::new(channel);
    for i in 0..ops {
        if i % 10 == 0 {
            let agent_id = format!("agent-{}", i % AGENTS);
            let agent = pb::Agent {
                id: agent_id,
                skills: Some(pb::AgentSkills { tier: 1 + (i % 2) as u32, ..Default::default() }),
                capacity: 1000,
                ..Default::default()
            };
            within("UpsertAgents", routing.upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent] }))
                .await
                .unwrap();
        } else {
            // Only agents that claim one lead at a time go offline (a hopper's session would end);
            // mostly they are available, so that claims go on.
            let state = match i % 8 {
                0 => pb::AgentState::Offline,
                4 => pb::AgentState::Busy,
                _ => pb::AgentState::Available,
            };
            let request = pb::SetAgentStateRequest { agent_id: format!("agent-{}", i % 8), state: state.into() };
            within("SetAgentState", routing.set_agent_state(request)).await.unwrap();
        }
        let request = pb::RouteRequest { lead_id: format!("floor-{}", i * 31 % FLOOR), campaign: String::new() };
        within("Route", routing.route(request)).await.unwrap();
    }
}

async fn operator(channel: Channel, ops: usize) {
    let mut admin = AdminServiceClient::new(channel);
    for i in 0..ops {
        match i % 3 {
            0 => {
                let current =
                    within("GetConfig", admin.get_config(pb::GetConfigRequest {})).await.unwrap().into_inner();
                let mut config: toml::Table = current.toml.parse().unwrap();
                let weights = config["campaigns"]["default"]["weights"].as_table().unwrap().clone();
                let engagement = if weights["engagement"].as_float() == Some(1.0) { 1.5 } else { 1.0 };
                config["campaigns"].as_table_mut().unwrap()["default"].as_table_mut().unwrap()["weights"]
                    .as_table_mut()
                    .unwrap()
                    .insert("engagement".into(), toml::Value::Float(engagement));
                let request = pb::UpdateConfigRequest { toml: config.to_string(), expected_version: current.version };
                if let Err(status) = within("UpdateConfig", admin.update_config(request)).await {
                    assert!(expected(&status, &[Code::Aborted]), "UpdateConfig: {status}");
                }
            }
            1 => _ = within("ReloadScorers", admin.reload_scorers(pb::ReloadScorersRequest::default())).await.unwrap(),
            _ => _ = within("Snapshot", admin.snapshot(pb::SnapshotRequest {})).await.unwrap(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads rankings and streams crossings and decisions until told to stop.
async fn readers(channel: Channel, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut scoring = ScoringServiceClient::new(channel.clone());
    let mut crossings = scoring.watch_scores(pb::WatchScoresRequest::default()).await.unwrap().into_inner();
    let mut admin = AdminServiceClient::new(channel.clone());
    let mut dialer = DialerServiceClient::new(channel.clone());
    let mut routing = RoutingServiceClient::new(channel);
    let mut decisions = routing.watch_routing(pb::WatchRoutingRequest::default()).await.unwrap().into_inner();
    let mut seen = 0;
    while !*stop.borrow() {
        tokio::select! {
            crossing = crossings.next() => match crossing {
                Some(Ok(_)) => seen += 1,
                // A watcher that falls behind is ended, not silently skipped: watch again.
                Some(Err(status)) if status.code() == Code::ResourceExhausted => {
                    crossings = scoring.watch_scores(pb::WatchScoresRequest::default()).await.unwrap().into_inner();
                }
                other => panic!("WatchScores ended: {other:?}"),
            },
            decision = decisions.next() => match decision {
                Some(Ok(_)) => seen += 1,
                Some(Err(status)) if status.code() == Code::ResourceExhausted => {
                    decisions = routing.watch_routing(pb::WatchRoutingRequest::default()).await.unwrap().into_inner();
                }
                other => panic!("WatchRouting ended: {other:?}"),
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let request = pb::TopLeadsRequest { limit: 50, ..Default::default() };
                let top = within("TopLeads", scoring.top_leads(request)).await.unwrap().into_inner();
                seen += within("TopLeads stream", top.collect::<Vec<_>>()).await.len();
                let request = pb::TopAccountsRequest { limit: 10, ..Default::default() };
                let top = within("TopAccounts", scoring.top_accounts(request)).await.unwrap().into_inner();
                seen += within("TopAccounts stream", top.collect::<Vec<_>>()).await.len();
                let request = pb::ValidationReportRequest::default();
                let report = within("ValidationReport", admin.validation_report(request)).await.unwrap();
                seen += report.into_inner().sections.len();
                let request = pb::ScoreDistributionRequest::default();
                let distribution = within("ScoreDistribution", scoring.score_distribution(request)).await.unwrap();
                seen += distribution.into_inner().bins.len();
                let board = within("Wallboard", dialer.wallboard(pb::WallboardRequest::default())).await.unwrap();
                seen += board.into_inner().minutes.len();
            }
        }
    }
    seen
}

/// Health must answer SERVING throughout.
async fn prober(channel: Channel, stop: tokio::sync::watch::Receiver<bool>) -> usize {
    let mut health = HealthClient::new(channel);
    let mut checks = 0;
    while !*stop.borrow() {
        let answer = within("Health/Check", health.check(HealthCheckRequest::default())).await.unwrap().into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving);
        checks += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    checks
}

fn start(dir: &std::path::Path) -> ChildServer {
    let config = dir.join("leadscore.toml");
    let text = busy_floor_config("data")
        + "[[routing.rules]]\nname = \"everyone\"\nwhen = \"true\"\nqueue = \"floor\"\nagents = \"tier >= 1\"\n";
    std::fs::write(&config, text).unwrap();
    ChildServer::start(dir, &["--config", config.to_str().unwrap()]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_at_once_never_freezes_never_double_leases_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_owned();
    let child = tokio::task::spawn_blocking(move || start(&cwd)).await.unwrap();
    let channel = Channel::from_shared(child.address.clone()).unwrap().connect().await.unwrap();
    let ledger = Shared::default();
    let floor: Vec<pb::Lead> = (0..FLOOR).map(|n| lead(&format!("floor-{n}"), n, 0)).collect();
    ledger.lock().unwrap().leads.extend(floor.iter().map(|l| (l.id.clone(), Some(0))));
    LeadServiceClient::new(channel.clone()).upsert_leads(pb::UpsertLeadsRequest { leads: floor }).await.unwrap();
    let team: Vec<pb::Agent> = (0..AGENTS)
        .map(|a| pb::Agent {
            id: format!("agent-{a}"),
            skills: Some(pb::AgentSkills { tier: 1, ..Default::default() }),
            capacity: 1000,
            ..Default::default()
        })
        .collect();
    let mut routing = RoutingServiceClient::new(channel.clone());
    routing.upsert_agents(pb::UpsertAgentsRequest { agents: team }).await.unwrap();
    for a in 0..AGENTS {
        let request =
            pb::SetAgentStateRequest { agent_id: format!("agent-{a}"), state: pb::AgentState::Available.into() };
        routing.set_agent_state(request).await.unwrap();
    }

    let ops = 300 * scale();
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watchers =
        [tokio::spawn(readers(channel.clone(), stopped.clone())), tokio::spawn(prober(channel.clone(), stopped))];
    let mut load = Vec::new();
    for k in 0..4 {
        load.push(tokio::spawn(writer(channel.clone(), ledger.clone(), k, ops)));
    }
    load.push(tokio::spawn(importer(channel.clone(), ledger.clone(), ops)));
    for agent in 0..8 {
        load.push(tokio::spawn(caller(channel.clone(), ledger.clone(), agent, ops)));
    }
    for agent in 8..AGENTS {
        load.push(tokio::spawn(hopper(channel.clone(), ledger.clone(), agent, ops)));
    }
    load.push(tokio::spawn(agents(channel.clone(), ops)));
    load.push(tokio::spawn(operator(channel.clone(), ops / 10)));
    for task in load {
        task.await.unwrap();
    }
    stop.send(true).unwrap();
    let [streamed, checks] = watchers;
    let (streamed, checks) = (streamed.await.unwrap(), checks.await.unwrap());
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(ledger.claims.len() > ops * 4, "only {} claims in {:?}", ledger.claims.len(), started.elapsed());
    assert!(streamed > 0 && checks > 0);
    println!(
        "{} claims, {} calls, {} events, {} leads touched; {streamed} streamed, {checks} health checks in {:?}",
        ledger.claims.len(),
        ledger.calls.values().sum::<usize>(),
        ledger.events.values().sum::<usize>(),
        ledger.leads.len(),
        started.elapsed()
    );

    // No lead was leased twice at once: each lease of a lead was ended before the next one
    // on it was granted.
    let mut by_lead: HashMap<&str, Vec<(u64, &str, Instant)>> = HashMap::new();
    for (lead_id, lease_id, at) in &ledger.claims {
        by_lead.entry(lead_id).or_default().push((lease_lsn(lease_id), lease_id, *at));
    }
    for (lead_id, mut leases) in by_lead {
        leases.sort();
        for pair in leases.windows(2) {
            let (_, earlier, _) = pair[0];
            let (_, later, granted) = pair[1];
            let ended = ledger.ended.get(earlier).copied();
            assert!(
                ended.is_some_and(|ended| ended < granted),
                "{lead_id}: lease {later} was granted while {earlier} was still held"
            );
        }
    }

    // SIGKILL: nothing gets a chance to sync at shutdown. With fsync `always`, every
    // acknowledged write is on disk.
    let before = state(&channel, &ledger).await;
    drop(channel);
    drop(child);
    let cwd = dir.path().to_owned();
    let child = tokio::task::spawn_blocking(move || start(&cwd)).await.unwrap();
    let channel = Channel::from_shared(child.address.clone()).unwrap().connect().await.unwrap();
    let after = state(&channel, &ledger).await;
    assert_eq!(after, before, "the state after a SIGKILL and a restart differs");
    let (status, log) = tokio::task::spawn_blocking(move || child.terminate()).await.unwrap();
    assert!(status.success(), "{log}");
}

/// Checks every lead the run touched against the ledger and `Stats` against `GetLead`; returns
/// the counts, to compare across the restart.
async fn state(channel: &Channel, ledger: &Ledger) -> (u64, u64) {
    let mut leads = LeadServiceClient::new(channel.clone());
    let (mut found, mut events) = (0, 0);
    for (id, revision) in &ledger.leads {
        let got = within("GetLead", leads.get_lead(pb::GetLeadRequest { id: id.clone(), include_events: true })).await;
        match (revision, got) {
            (None, Err(status)) => assert_eq!(status.code(), Code::NotFound, "{id}: {status}"),
            (None, Ok(_)) => panic!("{id}: its erasure was acknowledged, yet it is there"),
            (Some(_), Err(status)) => panic!("{id}: acknowledged, yet {status}"),
            (Some(revision), Ok(answer)) => {
                let answer = answer.into_inner();
                let lead = answer.lead.unwrap();
                let stored = lead.attributes["revision"].kind.clone();
                assert_eq!(stored, number(*revision as f64).kind, "{id}: not its last acknowledged revision");
                let calls = answer.events.iter().filter(|e| e.kind.starts_with("call:")).count();
                assert_eq!(calls, ledger.calls.get(id).copied().unwrap_or(0), "{id}: acknowledged outcomes");
                let others = answer.events.len() - calls;
                assert_eq!(others, ledger.events.get(id).copied().unwrap_or(0), "{id}: acknowledged events");
                found += 1;
                events += answer.event_count as u64;
            }
        }
    }
    let stats = within("Stats", AdminServiceClient::new(channel.clone()).stats(pb::StatsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.leads, stats.events), (found, events), "Stats against GetLead");
    (found, events)
}
