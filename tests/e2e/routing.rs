//! Routing through gRPC: rules in order, skill expressions, escalation on a manual clock,
//! presence and capacity, the pairing learning from outcomes, the A/B arms, the decision stream,
//! and the dialer offering an agent only what routing lets it take.

use std::collections::HashMap;
use std::sync::Arc;

use leadscore::clock::ManualClock;
use leadscore::config::{Config, RoutingRuleConfig};
use leadscore_proto::tonic::Code;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, event, number, text, timestamp};
use pb::next_lead_response::Result as Next;
use pb::route_target::Target;
use pb::routing_service_client::RoutingServiceClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_stream::StreamExt;

const MINUTE_MS: i64 = 60_000;
/// Monday 2026-11-02 15:00 UTC: 10:00 in New York, inside the calling window.
const NOW_MS: i64 = 1_793_631_600_000;

fn rule(name: &str, when: &str, queue: &str, agents: &str, timeout: &str) -> RoutingRuleConfig {
    RoutingRuleConfig {
        name: name.into(),
        when: when.into(),
        queue: queue.into(),
        agents: agents.into(),
        priority: 10,
        timeout: timeout.into(),
    }
}

/// A callable New York lead with a segment and a language.
fn lead(id: &str, n: u32, segment: &str, language: &str) -> pb::Lead {
    pb::Lead {
        id: id.into(),
        attributes: [
            ("role".to_string(), text(if n.is_multiple_of(2) { "CTO" } else { "Engineer" })),
            ("department".to_string(), text("IT")),
            ("employees".to_string(), number(f64::from(10 + n * 37 % 900))),
            ("segment".to_string(), text(segment)),
            ("language".to_string(), text(language)),
        ]
        .into(),
        time_zone: "America/New_York".into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: format!("+1646{n:07}"),
        ..Default::default()
    }
}

fn agent(id: &str, languages: &[&str], tier: u32, capacity: u32) -> pb::Agent {
    pb::Agent {
        id: id.into(),
        name: id.to_uppercase(),
        skills: Some(pb::AgentSkills {
            languages: languages.iter().map(|l| l.to_string()).collect(),
            tier,
            ..Default::default()
        }),
        capacity,
        state: 0,
    }
}

async fn start(config: Config) -> (TestServer, Arc<ManualClock>) {
    TestServer::start_at(config, NOW_MS).await
}

async fn register(routing: &mut RoutingServiceClient<Channel>, agents: Vec<pb::Agent>) {
    let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    routing.upsert_agents(pb::UpsertAgentsRequest { agents }).await.unwrap();
    for id in ids {
        set_state(routing, &id, pb::AgentState::Available).await;
    }
}

async fn set_state(routing: &mut RoutingServiceClient<Channel>, agent: &str, state: pb::AgentState) {
    let request = pb::SetAgentStateRequest { agent_id: agent.into(), state: state.into() };
    routing.set_agent_state(request).await.unwrap();
}

async fn route(routing: &mut RoutingServiceClient<Channel>, lead: &str) -> pb::RoutingDecision {
    let request = pb::RouteRequest { lead_id: lead.into(), campaign: String::new() };
    routing.route(request).await.unwrap().into_inner().decision.unwrap()
}

fn target(decision: &pb::RoutingDecision) -> Target {
    decision.target.clone().unwrap().target.unwrap()
}

fn agent_of(decision: &pb::RoutingDecision) -> String {
    match target(decision) {
        Target::AgentId(agent) => agent,
        Target::Queue(queue) => panic!("routed to queue {queue}: {:?}", decision.reasons),
    }
}

/// Enterprise leads to Spanish- or English-speaking seniors by the lead's language, then after
/// ten minutes to any senior; small businesses to juniors; the rest to nurture.
fn tiered() -> Vec<RoutingRuleConfig> {
    vec![
        rule(
            "enterprise-native",
            "lead.segment == 'enterprise'",
            "enterprise",
            "tier >= 2 and languages has lead.language",
            "10m",
        ),
        rule("enterprise-any", "lead.segment == 'enterprise'", "enterprise-overflow", "tier >= 2", ""),
        rule("smb", "lead.segment in ['smb', 'startup']", "smb", "tier == 1", ""),
        rule("nurture", "true", "nurture", "", ""),
    ]
}

#[tokio::test]
async fn rules_match_in_order_skills_decide_and_leads_escalate_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.routing.rules = tiered();
    let spring = leadscore::config::CampaignConfig { weights: [("fit".to_string(), 1.0)].into(), ..Default::default() };
    config.campaigns.insert("spring".into(), spring);
    let (server, clock) = start(config).await;
    server
        .upsert(vec![
            lead("ent-es", 1, "enterprise", "es"),
            lead("ent-de", 2, "enterprise", "de"),
            lead("smb-1", 3, "smb", "en"),
            lead("other", 4, "consumer", "en"),
        ])
        .await;
    let mut routing = server.routing().await;
    register(&mut routing, vec![agent("maria", &["es", "en"], 3, 2), agent("sam", &["en"], 1, 2)]).await;
    register(&mut routing, vec![agent("john", &["en"], 2, 2)]).await;

    // The first rule whose condition holds, and an agent whose skills fit the lead.
    let decision = route(&mut routing, "ent-es").await;
    assert_eq!((agent_of(&decision), decision.rule.as_str()), ("maria".into(), "enterprise-native"));
    assert_eq!((decision.queue.as_str(), decision.priority), ("enterprise", 10));
    assert!(decision.reasons[0].starts_with("band "), "{:?}", decision.reasons);
    assert!(decision.reasons.iter().any(|r| r.contains("1 skilled, 1 available")), "{:?}", decision.reasons);
    assert!(decision.reasons.iter().any(|r| r.contains("fewer than 3 agents")), "{:?}", decision.reasons);
    let decision = route(&mut routing, "smb-1").await;
    assert_eq!((agent_of(&decision), decision.rule.as_str()), ("sam".into(), "smb"));
    let decision = route(&mut routing, "other").await;
    assert_eq!(target(&decision), Target::Queue("nurture".into()));
    assert!(decision.reasons.iter().any(|r| r.contains("not served by agents")), "{:?}", decision.reasons);

    // Nobody speaks German: the lead waits in its queue until the timeout, then escalates.
    let decision = route(&mut routing, "ent-de").await;
    assert_eq!(target(&decision), Target::Queue("enterprise".into()));
    let escalates = chrono::DateTime::from_timestamp_millis(NOW_MS + 10 * MINUTE_MS).unwrap().to_rfc3339();
    assert!(decision.reasons.iter().any(|r| r.ends_with(&escalates)), "{:?}", decision.reasons);
    clock.advance_ms(10 * MINUTE_MS - 1);
    assert_eq!(target(&route(&mut routing, "ent-de").await), Target::Queue("enterprise".into()));
    clock.advance_ms(1);
    let decision = route(&mut routing, "ent-de").await;
    assert_eq!(decision.rule, "enterprise-any");
    assert!(["maria", "john"].contains(&agent_of(&decision).as_str()));
    assert!(decision.reasons.iter().any(|r| r.contains("escalated: rule enterprise-native timed out")));

    // A new sign of life starts the lead over at the first rule.
    let visit =
        pb::Event { at: Some(timestamp((NOW_MS + 10 * MINUTE_MS) / 1000)), ..event("ent-de", "visit-1", "page_view") };
    server.leads().await.record_events(pb::RecordEventsRequest { events: vec![visit] }).await.unwrap();
    assert_eq!(route(&mut routing, "ent-de").await.rule, "enterprise-native");

    // Bad requests change nothing.
    let status =
        routing.route(pb::RouteRequest { lead_id: "nobody".into(), campaign: String::new() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // A stored lead its campaigns do not put in "spring" is not said not to exist.
    let request = pb::RouteRequest { lead_id: "ent-es".into(), campaign: "spring".into() };
    let status = routing.route(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("its campaigns do not name it"), "{status:?}");
    let request = pb::RouteRequest { lead_id: "ent-es".into(), campaign: "nope".into() };
    let status = routing.route(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn bad_rules_are_refused_with_the_position_of_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(config(dir.path())).await;
    let mut admin = server.admin().await;
    let cases = [
        (
            rule("a", "band == 'hot'", "q", "languages has 'es' and tiers >= 2", ""),
            "routing.rules[0].agents: at column 24: unknown name `tiers`",
        ),
        (rule("a", "band == 'hoot'", "q", "", ""), "routing.rules[0].when: at column 9: unknown band 'hoot'"),
        (rule("a", "tier >= 2", "q", "", ""), "routing.rules[0].when: at column 1: `tier` is an agent's skill"),
        (rule("a", "true", "q", "tier >= 'two'", ""), "routing.rules[0].agents: at column 6: cannot compare"),
        (rule("a", "true", "q", "", "soon"), "routing.rules[0].timeout: must be a duration"),
        (rule("a", "true", "", "", ""), "routing.rules[0].queue: must name the queue"),
    ];
    for (bad, message) in cases {
        let mut next = config(dir.path());
        next.routing.rules = vec![bad];
        let request = pb::UpdateConfigRequest { toml: next.to_toml(), expected_version: 0 };
        let status = admin.update_config(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(message), "{}", status.message());
    }
    let current = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(current.version, 0, "nothing was applied");

    // A good change applies at once, without a restart.
    let mut next = config(dir.path());
    next.routing.rules = vec![rule("everyone", "true", "all", "tier >= 1", "")];
    admin.update_config(pb::UpdateConfigRequest { toml: next.to_toml(), expected_version: 0 }).await.unwrap();
    server.upsert(vec![lead("l", 1, "smb", "en")]).await;
    let mut routing = server.routing().await;
    register(&mut routing, vec![agent("a", &["en"], 1, 1)]).await;
    assert_eq!(route(&mut routing, "l").await.rule, "everyone");
    server.stop().await;
}

#[tokio::test]
async fn presence_capacity_and_registration_decide_who_may_take_leads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.routing.rules = vec![rule("all", "true", "sales", "tier >= 1", "")];
    let (server, _clock) = start(config.clone()).await;
    server.upsert((0..4).map(|n| lead(&format!("l{n}"), n, "smb", "en")).collect()).await;
    let mut routing = server.routing().await;
    let mut dialer = server.dialer().await;

    // Bad agents are refused whole, naming the field.
    let status = routing
        .upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent("a", &["en"], 1, 1), agent("b", &["en"], 1, 0)] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("agents[1].capacity: must be 1-1000"), "{}", status.message());
    let dup = vec![agent("a", &["en"], 1, 1), agent("a", &["en"], 1, 1)];
    let status = routing.upsert_agents(pb::UpsertAgentsRequest { agents: dup }).await.unwrap_err();
    assert!(status.message().contains("agents[1].id: \"a\" appears twice"), "{}", status.message());
    let request = pb::SetAgentStateRequest { agent_id: "a".into(), state: pb::AgentState::Available.into() };
    let status = routing.set_agent_state(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "nothing was registered: {status:?}");

    // While no agent is registered the dialer serves anyone; once some are, only them.
    let next = |agent: &str| pb::NextLeadRequest { campaign: String::new(), agent_id: agent.into() };
    let claim = dialer.next_lead(next("anyone")).await.unwrap().into_inner();
    let Some(Next::Claim(claim)) = claim.result else { panic!("unrouted dialling works") };
    dialer.release_lead(pb::ReleaseLeadRequest { lease_id: claim.lease.unwrap().lease_id }).await.unwrap();
    let created = routing
        .upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent("a", &["en"], 1, 1), agent("b", &["en"], 1, 2)] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((created.created, created.updated), (2, 0));
    let status = dialer.next_lead(next("anyone")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("not registered"), "{}", status.message());

    // New agents are offline: neither routed to nor dialling.
    let decision = route(&mut routing, "l0").await;
    assert_eq!(target(&decision), Target::Queue("sales".into()));
    assert!(decision.reasons.iter().any(|r| r.contains("2 skilled, 0 available")), "{:?}", decision.reasons);
    let status = dialer.next_lead(next("a")).await.unwrap_err();
    assert!(status.message().contains("offline"), "{}", status.message());

    set_state(&mut routing, "a", pb::AgentState::Available).await;
    set_state(&mut routing, "b", pb::AgentState::Busy).await;
    assert_eq!(agent_of(&route(&mut routing, "l0").await), "a");

    // At capacity (one lease held), `a` is passed over and may not claim another.
    let held = dialer.next_lead(next("a")).await.unwrap().into_inner();
    assert!(matches!(held.result, Some(Next::Claim(_))));
    assert_eq!(target(&route(&mut routing, "l1").await), Target::Queue("sales".into()));
    let status = dialer.next_lead(next("a")).await.unwrap_err();
    assert!(status.message().contains("capacity"), "{}", status.message());
    set_state(&mut routing, "b", pb::AgentState::Available).await;
    assert_eq!(agent_of(&route(&mut routing, "l1").await), "b");

    // Agents, presence and held leases survive a restart, from the log and from a snapshot.
    server.stop().await;
    for snapshot in [false, true] {
        let clock = Arc::new(ManualClock::new(NOW_MS + 1000));
        let server = TestServer::try_start(config.clone(), clock).await.unwrap();
        let mut routing = server.routing().await;
        assert_eq!(agent_of(&route(&mut routing, "l2").await), "b", "after a restart (snapshot: {snapshot})");
        if !snapshot {
            server.admin().await.snapshot(pb::SnapshotRequest {}).await.unwrap();
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn the_dialer_offers_an_agent_only_what_routing_lets_it_take() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.routing.rules = tiered();
    let (server, _clock) = start(config).await;
    let mut leads = Vec::new();
    for n in 0..12 {
        let segment = ["enterprise", "smb", "consumer"][n as usize % 3];
        leads.push(lead(&format!("{segment}-{n}"), n, segment, "en"));
    }
    server.upsert(leads).await;
    let mut routing = server.routing().await;
    register(&mut routing, vec![agent("junior", &["en"], 1, 100), agent("senior", &["en"], 2, 100)]).await;
    let mut dialer = server.dialer().await;
    let mut claimed: HashMap<&str, Vec<String>> = HashMap::new();
    // What each agent is left with when it has called all it may: the junior sees the
    // enterprise and consumer leads kept from it, the senior then only the consumer ones, which
    // are nurtured and kept from every agent.
    for (agent, kept) in [("junior", 8), ("senior", 4)] {
        loop {
            let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.into() };
            match dialer.next_lead(request).await.unwrap().into_inner().result {
                Some(Next::Claim(claim)) => claimed.entry(agent).or_default().push(claim.lease.unwrap().lead_id),
                Some(Next::NoneEligible(counts)) => {
                    assert_eq!(counts.not_routable_to_agent, kept, "{agent}: {counts:?}");
                    break;
                }
                None => panic!("no answer"),
            }
        }
    }
    let all = |agent: &str, prefix: &str| claimed[agent].iter().all(|id| id.starts_with(prefix));
    assert!(all("junior", "smb-") && claimed["junior"].len() == 4, "{claimed:?}");
    assert!(all("senior", "enterprise-") && claimed["senior"].len() == 4, "{claimed:?}");
    server.stop().await;
}

/// Three agents convert at 60%, 30% and 15%. Routing starts them all at the team's rate, learns
/// from the outcomes the dialer records, and sends most pairing decisions to the best; a quarter
/// of the decisions go by longest idle as the control, and the pairing arm converts better.
#[tokio::test]
async fn pairing_learns_the_better_agent_and_the_ab_arms_show_the_lift() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.routing.rules = vec![rule("all", "true", "sales", "tier >= 1", "")];
    config.routing.control_share = 0.25;
    // One segment for every lead: all are "hot".
    let default = config.campaigns.get_mut("default").unwrap();
    default.bands.warm = 0.001;
    default.bands.sales_ready = 0.001;
    default.bands.hot = 0.001;
    let config_of_dir = config.clone();
    let (server, clock) = start(config).await;
    let count = 400;
    server.upsert((0..count).map(|n| lead(&format!("l{n}"), n, "smb", "en")).collect()).await;
    let mut routing = server.routing().await;
    let rates = HashMap::from([("best", 0.6), ("middle", 0.3), ("worst", 0.15)]);
    register(&mut routing, rates.keys().map(|id| agent(id, &["en"], 1, 5)).collect()).await;
    let ranking: Vec<String> = server
        .scoring()
        .await
        .top_leads(pb::TopLeadsRequest { limit: count, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap().score.unwrap().lead_id)
        .collect()
        .await;
    let mut dialer = server.dialer().await;
    let mut rng = StdRng::seed_from_u64(6);
    let mut arms = HashMap::<i32, u64>::new();
    let mut late_pairing = Vec::new();
    for (i, lead_id) in ranking.iter().enumerate() {
        // A call every few seconds, so that idle times differ.
        clock.advance_ms(3000);
        let decision = route(&mut routing, lead_id).await;
        let agent = agent_of(&decision);
        *arms.entry(decision.arm).or_default() += 1;
        if decision.arm == pb::RoutingArm::Pairing as i32 {
            assert!(decision.expected_conversion >= decision.runner_up_conversion, "{decision:?}");
            if i >= 300 {
                late_pairing.push(agent.clone());
            }
        } else {
            assert_eq!(decision.arm, pb::RoutingArm::Control as i32);
            assert!(decision.reasons.iter().any(|r| r.contains("A/B control")), "{:?}", decision.reasons);
        }
        // The agent dials the lead it was given: the best still open.
        let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.clone() };
        let Some(Next::Claim(claim)) = dialer.next_lead(request).await.unwrap().into_inner().result else {
            panic!("nothing to claim")
        };
        assert_eq!(&claim.lease.as_ref().unwrap().lead_id, lead_id);
        let converted = rng.random_bool(rates[agent.as_str()]);
        let result = if converted { pb::CallResult::Converted } else { pb::CallResult::Lost };
        let outcome =
            pb::Outcome { lease_id: claim.lease.unwrap().lease_id, result: result.into(), ..Default::default() };
        dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap();
    }
    let best = late_pairing.iter().filter(|a| *a == "best").count();
    assert!(best * 10 >= late_pairing.len() * 8, "late pairing decisions: {late_pairing:?}");

    let control_share = arms[&(pb::RoutingArm::Control as i32)] as f64 / f64::from(count);
    assert!((0.18..0.32).contains(&control_share), "{arms:?}");
    let stats = server.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    let arm = |a: pb::RoutingArm| *stats.routing_arms.iter().find(|s| s.arm == a as i32).unwrap();
    let (pairing, control) = (arm(pb::RoutingArm::Pairing), arm(pb::RoutingArm::Control));
    assert_eq!(pairing.decisions + control.decisions, u64::from(count));
    assert_eq!((pairing.decided_calls, control.decided_calls), (pairing.decisions, control.decisions));
    assert!(pairing.conversion_rate > control.conversion_rate + 0.1, "{pairing:?} against {control:?}");

    // The calls' arms and what they taught are in the store: a restart from a snapshot keeps
    // them (decisions not yet called are forgotten).
    server.admin().await.snapshot(pb::SnapshotRequest {}).await.unwrap();
    server.stop().await;
    let server = TestServer::try_start(config_of_dir, clock.clone()).await.unwrap();
    let stats = server.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    let calls = |a: pb::RoutingArm| {
        let arm = stats.routing_arms.iter().find(|s| s.arm == a as i32).unwrap();
        (arm.decided_calls, arm.conversions)
    };
    assert_eq!(calls(pb::RoutingArm::Pairing), (pairing.decided_calls, pairing.conversions));
    assert_eq!(calls(pb::RoutingArm::Control), (control.decided_calls, control.conversions));
    let decision = route(&mut server.routing().await, &ranking[0]).await;
    assert_eq!(decision.arm, pb::RoutingArm::Pairing as i32);
    assert_eq!(agent_of(&decision), "best", "the pairing remembers what it learned: {decision:?}");
    server.stop().await;
}

#[tokio::test]
async fn decisions_stream_once_each_and_a_slow_watcher_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.routing.rules = tiered();
    let (server, _clock) = start(config).await;
    server.upsert(vec![lead("ent", 1, "enterprise", "en"), lead("smb", 2, "smb", "en")]).await;
    let mut routing = server.routing().await;
    register(&mut routing, vec![agent("senior", &["en"], 2, 1), agent("junior", &["en"], 1, 1)]).await;

    let watch = |queues: Vec<&str>, agents: Vec<&str>| pb::WatchRoutingRequest {
        queues: queues.into_iter().map(String::from).collect(),
        agent_ids: agents.into_iter().map(String::from).collect(),
    };
    let mut all = routing.watch_routing(watch(vec![], vec![])).await.unwrap().into_inner();
    let mut junior = routing.watch_routing(watch(vec![], vec!["junior"])).await.unwrap().into_inner();
    let mut enterprise = routing.watch_routing(watch(vec!["enterprise"], vec![])).await.unwrap().into_inner();
    // A watcher that never reads, on a connection with a small flow-control window so that
    // the server soon has nowhere to put its decisions.
    let small = Channel::from_shared(server.address.clone()).unwrap().initial_stream_window_size(16 * 1024);
    let mut stalled = RoutingServiceClient::new(small.connect().await.unwrap())
        .watch_routing(watch(vec![], vec![]))
        .await
        .unwrap()
        .into_inner();

    let mut made = Vec::new();
    for i in 0..20 {
        made.push(route(&mut routing, if i % 2 == 0 { "ent" } else { "smb" }).await);
    }
    for decision in &made {
        assert_eq!(all.next().await.unwrap().unwrap().decision_id, decision.decision_id);
    }
    for decision in made.iter().filter(|d| agent_of(d) == "junior") {
        assert_eq!(junior.next().await.unwrap().unwrap().decision_id, decision.decision_id);
    }
    for decision in made.iter().filter(|d| d.queue == "enterprise") {
        assert_eq!(enterprise.next().await.unwrap().unwrap().decision_id, decision.decision_id);
    }

    // Routing goes on at full speed while a watcher stalls; the stalled one is dropped with a
    // clear status, and the others see every decision exactly once, in order.
    let mut reader = routing.watch_routing(watch(vec![], vec![])).await.unwrap().into_inner();
    let counted = tokio::spawn(async move {
        let mut ids = Vec::new();
        while let Some(Ok(decision)) = reader.next().await {
            ids.push(decision.decision_id);
            if ids.len() == 3000 {
                break;
            }
        }
        ids
    });
    let mut ids = Vec::new();
    for _ in 0..3000 {
        ids.push(route(&mut routing, "smb").await.decision_id);
    }
    assert_eq!(counted.await.unwrap(), ids);
    let status = loop {
        match stalled.next().await {
            Some(Ok(_)) => continue,
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a status"),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("fell behind"), "{}", status.message());
    server.stop().await;
}
