//! The web console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven by Selenium from PyPI, against the real binary. Each page's
//! figures are checked against the gRPC answers (by `tests/console/check_console.py`, with the
//! Python stubs of the contract), a live panel must show a lead crossing a band as it happens,
//! and every page is saved as a screenshot under `target/test-output/console`. Without a
//! browser: the console asks for the same tokens and roles as gRPC.

use std::path::Path;
use std::process::Command;

use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::v1 as pb;
use leadscore_tests::{
    ChildServer, event, free_port, http_get, number, python_env, python_stubs, text, workspace_root, zone_at_noon,
};
use pb::next_lead_response::Result as Next;

const ROLES: [&str; 5] = ["CTO", "VP Sales", "Manager", "Analyst", "Student"];
const EMPLOYEES: [f64; 4] = [5000.0, 640.0, 120.0, 12.0];
const NAMES: [&str; 6] = ["Ada", "Alan", "Barbara", "Edsger", "Frances", "Ken"];
const COMPANIES: [&str; 4] = ["Acme", "Globex", "Initech", "Umbrella"];

/// Runs the browser check in `mode` with `args`; fails the test with its output if it fails.
fn check(console: &str, grpc: &str, shots: &Path, mode: &str, args: &[&str]) {
    let script = workspace_root().join("tests").join("console").join("check_console.py");
    let output = Command::new(python_env().join("bin").join("python"))
        .arg(&script)
        .args([console, grpc, shots.to_str().unwrap(), mode])
        .args(args)
        .env("PYTHONPATH", python_stubs())
        .output()
        .expect("python runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser check ({mode}) failed:\n{said}");
    eprintln!("{said}");
}

/// Leads with varied fit, engagement and accounts, half where it is noon now (their window
/// open), agents, calls with outcomes, and routing decisions.
async fn seed(channel: Channel) {
    let noon = zone_at_noon();
    let mut leads = pb::lead_service_client::LeadServiceClient::new(channel.clone());
    let batch: Vec<pb::Lead> = (0..80)
        .map(|n| pb::Lead {
            id: format!("lead-{n:03}"),
            attributes: [
                ("role".to_string(), text(ROLES[n % ROLES.len()])),
                ("employees".to_string(), number(EMPLOYEES[n % EMPLOYEES.len()])),
                ("country".to_string(), text(if n % 3 == 0 { "India" } else { "United States" })),
                ("account".to_string(), text(&format!("acct-{}.com", n % 8))),
                // Who they are, as the console shows them (the default display attributes).
                ("name".to_string(), text(&format!("{} {n}", NAMES[n % NAMES.len()]))),
                ("company".to_string(), text(COMPANIES[n % COMPANIES.len()])),
                ("title".to_string(), text(ROLES[n % ROLES.len()])),
            ]
            .into(),
            time_zone: if n % 2 == 0 { noon.clone() } else { "Asia/Kolkata".to_string() },
            consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
            phone: format!("+1646555{n:04}"),
            ..Default::default()
        })
        .chain(std::iter::once(pb::Lead { id: "console-cross".into(), ..Default::default() }))
        .collect();
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: batch }).await.unwrap();
    let events = (0..80)
        .filter(|n| n % 3 != 2)
        .flat_map(|n| {
            let lead = format!("lead-{n:03}");
            (0..n % 5).map(move |e| {
                event(&lead, &format!("e{e}"), if e % 2 == 0 { "page_view:/pricing" } else { "email_open" })
            })
        })
        .collect();
    leads.record_events(pb::RecordEventsRequest { events }).await.unwrap();

    let mut routing = pb::routing_service_client::RoutingServiceClient::new(channel.clone());
    // The default routing sends warm and better leads to agents of tier 1 and up.
    let agents = [("agent-a", 2), ("agent-b", 1), ("agent-c", 1)].map(|(id, tier)| pb::Agent {
        id: id.into(),
        name: format!("Agent {}", id[6..].to_uppercase()),
        capacity: 3,
        skills: Some(pb::AgentSkills { tier, ..Default::default() }),
        ..Default::default()
    });
    routing.upsert_agents(pb::UpsertAgentsRequest { agents: agents.to_vec() }).await.unwrap();
    for id in ["agent-a", "agent-b", "agent-c"] {
        let state = pb::AgentState::Available.into();
        routing.set_agent_state(pb::SetAgentStateRequest { agent_id: id.into(), state }).await.unwrap();
    }
    let mut dialer = pb::dialer_service_client::DialerServiceClient::new(channel.clone());
    let results = [
        pb::CallResult::Converted,
        pb::CallResult::NoAnswer,
        pb::CallResult::ConnectedNotInterested,
        pb::CallResult::Abandoned,
    ];
    for call in 0..12 {
        // Tier 1: the warm leads' first queue.
        let agent = if call % 2 == 0 { "agent-b" } else { "agent-c" };
        let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.into() };
        let answer = dialer.next_lead(request).await.unwrap().into_inner().result;
        let Some(Next::Claim(claim)) = answer else {
            let mut scoring = pb::scoring_service_client::ScoringServiceClient::new(channel.clone());
            let d = scoring.score_distribution(pb::ScoreDistributionRequest::default()).await.unwrap().into_inner();
            panic!("call {call}: a lead in {noon} is callable at noon: {answer:?} {:?}", d.bands)
        };
        let result = results[call % results.len()];
        // Talk time, for the wallboard's average, from the calls a person answered.
        let talk_seconds = if result == pb::CallResult::NoAnswer { 0 } else { 40 + 10 * call as i64 };
        let outcome = pb::Outcome {
            lease_id: claim.lease.unwrap().lease_id,
            result: result.into(),
            talk_time: Some(leadscore_proto::prost_types::Duration { seconds: talk_seconds, nanos: 0 }),
            ..Default::default()
        };
        dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap();
    }
    for n in 40..56 {
        let request = pb::RouteRequest { lead_id: format!("lead-{n:03}"), campaign: String::new() };
        routing.route(request).await.unwrap();
    }
}

#[test]
fn every_page_shows_what_grpc_answers_and_a_live_panel_follows_a_band_crossing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Half the routing decisions go to the A/B check's control arm, so both arms fill; the
    // warm leads' first queue has two agents, enough to choose between.
    let config = dir.path().join("leadscore.toml");
    std::fs::write(&config, "[routing]\ncontrol_share = 0.5\nmin_agents_for_pairing = 2\n").unwrap();
    let args = ["--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    let child = ChildServer::start(dir.path(), &args).unwrap();
    let console = format!("http://{}", child.logged_address("web console"));
    let grpc = child.address.trim_start_matches("http://").to_string();
    let shots = workspace_root().join("target").join("test-output").join("console");

    // With no leads, the pages say what to do next.
    check(&console, &grpc, &shots, "empty", &[]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = Channel::from_shared(child.address.clone()).unwrap().connect().await.unwrap();
        seed(channel).await;
    });
    check(&console, &grpc, &shots, "full", &["lead-050", "console-cross"]);
    for page in ["scores", "top", "alerts", "wallboard", "routing", "scorers", "validation"] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
}

/// `GET path` with a bearer token, if any.
fn get_with_head(address: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let authorization: Vec<String> = token.map(|t| format!("Authorization: Bearer {t}")).into_iter().collect();
    let answer = http_get(address, path, &authorization);
    (answer.code, answer.head.to_lowercase(), answer.body)
}

/// The same: the status code and the body.
fn get(address: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (code, _, body) = get_with_head(address, path, token);
    (code, body)
}

#[test]
fn the_console_asks_for_the_tokens_and_roles_grpc_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("leadscore.toml");
    let token = |name: &str, roles: &str| {
        let sha256 = leadscore::config::tokens::hex(&leadscore::config::tokens::digest(name));
        format!("[[auth.tokens]]\nname = \"{name}\"\nsha256 = \"{sha256}\"\nroles = [{roles}]\n")
    };
    let tokens = [("ls_reader", "\"reader\""), ("ls_scorer", "\"scorer\""), ("ls_admin", "\"admin\"")];
    std::fs::write(&config, tokens.map(|(name, roles)| token(name, roles)).concat()).unwrap();
    let args = ["--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    let child = ChildServer::start(dir.path(), &args).unwrap();
    let console = child.logged_address("web console");

    // The pages themselves are open: they ask for a token when the API refuses.
    assert_eq!(get(&console, "/", None).0, 200);
    let (code, body) = get(&console, "/api/distribution", None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("UNAUTHENTICATED") && body.contains("authorization: Bearer"), "{body}");
    assert_eq!(get(&console, "/api/distribution", Some("ls_unknown")).0, 401);
    let (code, body) = get(&console, "/api/distribution", Some("ls_reader"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("PERMISSION_DENIED") && body.contains("`scorer`"), "{body}");
    let (code, body) = get(&console, "/api/distribution", Some("ls_scorer"));
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["leads"], 0, "{body}");
    // Each route needs its own method's role: the reader may read the scorers, not the floor.
    assert_eq!(get(&console, "/api/scorers", Some("ls_reader")).0, 200);
    assert_eq!(get(&console, "/api/wallboard", Some("ls_reader")).0, 403);
    // Bad input is refused with the field and the rule, as gRPC refuses it.
    let (code, body) = get(&console, "/api/distribution?bins=5000", Some("ls_scorer"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("INVALID_ARGUMENT") && body.contains("bins: must be 0-1000"), "{body}");

    // In the browser: the console asks for a token, and serves once given one.
    let grpc = child.address.trim_start_matches("http://").to_string();
    let shots = workspace_root().join("target").join("test-output").join("console");
    check(&format!("http://{console}"), &grpc, &shots, "token", &["ls_admin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_rate_counts_its_console_calls_with_its_grpc_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = leadscore_tests::config(dir.path());
    let port = free_port();
    config.console.listen = format!("127.0.0.1:{port}");
    (config.limits.rate_per_token, config.limits.burst_per_token) = (0.5, 2.0);
    let sha256 = leadscore::config::tokens::hex(&leadscore::config::tokens::digest("ls_ops"));
    config.auth.tokens.push(leadscore::config::TokenConfig { name: "ops".into(), sha256, roles: vec!["admin".into()] });
    let server = leadscore_tests::TestServer::try_start(config, std::sync::Arc::new(leadscore::clock::SystemClock))
        .await
        .unwrap();
    let console = format!("127.0.0.1:{port}");
    let answers = tokio::task::spawn_blocking(move || {
        (0..3).map(|_| get_with_head(&console, "/api/stats", Some("ls_ops"))).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(answers.iter().map(|a| a.0).collect::<Vec<_>>(), [200, 200, 429], "{answers:?}");
    let (_, head, body) = &answers[2];
    assert!(head.contains("retry-after: 2"), "{head}");
    assert!(body.contains("RESOURCE_EXHAUSTED") && body.contains("limits.rate_per_token"), "{body}");
    // The same bucket: the token's gRPC calls wait too.
    let value: leadscore_proto::tonic::metadata::MetadataValue<_> = "Bearer ls_ops".parse().unwrap();
    let mut request = leadscore_proto::tonic::Request::new(pb::StatsRequest {});
    request.metadata_mut().insert("authorization", value);
    let refused = server.admin().await.stats(request).await.unwrap_err();
    assert_eq!(refused.code(), leadscore_proto::tonic::Code::ResourceExhausted, "{refused:?}");
    server.stop().await;
}
