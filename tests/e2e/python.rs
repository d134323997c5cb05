//! The Python examples (`examples/python`) against the real binary, with stubs generated from
//! `proto/` by their own script: the hopper dials and reports through `DialerSession`, and the
//! form scorer prints what `Score` answers.

use std::process::Command;

use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::v1 as pb;
use leadscore_tests::{ChildServer, number, python_env, python_stubs, text, workspace_root, zone_at_noon};

fn run_example(name: &str, args: &[&str]) -> std::process::Output {
    let script = workspace_root().join("examples").join("python").join(name);
    Command::new(python_env().join("bin").join("python"))
        .arg(&script)
        .args(args)
        .env("PYTHONPATH", python_stubs())
        .output()
        .expect("python runs")
}

/// What the example printed, having succeeded.
fn example(name: &str, args: &[&str]) -> String {
    let output = run_example(name, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{name} failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// What the example said on stderr, having been refused.
fn refused(name: &str, args: &[&str]) -> String {
    let output = run_example(name, args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{name} should have been refused:\n{stderr}");
    stderr
}

#[test]
fn the_hopper_dials_and_reports_and_the_form_scorer_prints_the_score() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child =
        ChildServer::start(dir.path(), &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap();
    let server = child.address.trim_start_matches("http://").to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let channel = runtime.block_on(async {
        let channel = Channel::from_shared(child.address.clone()).unwrap().connect().await.unwrap();
        let leads = (0..30)
            .map(|n| pb::Lead {
                id: format!("lead-{n:02}"),
                attributes: [("role".to_string(), text("CTO")), ("employees".to_string(), number(40.0 * n as f64))]
                    .into(),
                time_zone: zone_at_noon(),
                consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
                phone: format!("+1646555{n:04}"),
                ..Default::default()
            })
            .collect();
        let mut client = pb::lead_service_client::LeadServiceClient::new(channel.clone());
        client.upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();
        channel
    });

    let said = example("dialer.py", &["--server", &server, "--calls", "12", "--lines", "3"]);
    assert!(said.contains("12 calls, 12 outcomes acknowledged, 0 refused"), "{said}");
    let board = runtime.block_on(async {
        let mut dialer = pb::dialer_service_client::DialerServiceClient::new(channel.clone());
        dialer.wallboard(pb::WallboardRequest::default()).await.unwrap().into_inner()
    });
    let outcomes: u64 = board.minutes.iter().flat_map(|m| &m.outcomes).sum();
    assert_eq!(outcomes, 12, "the server counted the hopper's outcomes: {board:?}");

    let said = example(
        "score_form.py",
        &["--server", &server, "--attr", "role=CTO", "--attr", "employees=640", "--event", "page_view:/pricing"],
    );
    let first = said.lines().next().unwrap();
    let expected = runtime.block_on(async {
        let mut scoring = pb::scoring_service_client::ScoringServiceClient::new(channel);
        let lead = pb::Lead {
            id: "form".into(),
            attributes: [("role".to_string(), text("CTO")), ("employees".to_string(), number(640.0))].into(),
            ..Default::default()
        };
        let events = vec![pb::Event {
            id: "e0".into(),
            lead_id: "form".into(),
            kind: "page_view:/pricing".into(),
            ..Default::default()
        }];
        let request = pb::ScoreRequest { lead: Some(lead), events, campaign: String::new(), explain: true };
        scoring.score(request).await.unwrap().into_inner().score.unwrap()
    });
    let band = pb::Band::try_from(expected.band).unwrap().as_str_name();
    assert_eq!(first, format!("score {:.1}  band {band}  grade {}", expected.score, expected.grade), "{said}");
    assert!(said.lines().count() > 2, "the explanation follows: {said}");

    // Refusals, read from the standard error details rather than the text.
    let said = refused("score_form.py", &["--server", &server, "--campaign", "nosuch", "--attr", "role=CTO"]);
    assert!(said.contains("refused: INVALID_ARGUMENT campaign: unknown campaign \"nosuch\""), "{said}");
    assert!(said.contains("  reason UNKNOWN_CAMPAIGN (leadscore.v1) {'field': 'campaign'}"), "{said}");
    assert!(said.contains("  field campaign: unknown campaign \"nosuch\""), "{said}");
    let said = refused("dialer.py", &["--server", &server, "--agent", "", "--calls", "1"]);
    assert!(said.contains("refused: INVALID_ARGUMENT hello.agent_id: "), "{said}");
    assert!(said.contains("  reason INVALID_FIELD (leadscore.v1) {'field': 'hello.agent_id'}"), "{said}");
    assert!(said.contains("  field hello.agent_id: "), "{said}");
}
