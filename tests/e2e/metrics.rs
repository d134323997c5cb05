//! Prometheus metrics of the real binary: the endpoint's text passes `promtool check metrics`,
//! and a real Prometheus server (Debian's `prometheus`, started here on loopback) scrapes it,
//! reports the target up and a claims counter equal to the claims made.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use leadscore_proto::v1 as pb;
use leadscore_tests::{ChildServer, free_port, http_get, number, text, zone_at_noon};
use pb::next_lead_response::Result as Next;

const CLAIMS: usize = 7;

/// `GET path`: the status line and the body.
fn get(address: &str, path: &str) -> (String, String) {
    let answer = http_get(address, path, &[]);
    (answer.head.lines().next().unwrap_or("").to_string(), answer.body)
}

fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen in {seconds} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn prometheus_scrapes_the_engine_and_counts_the_claims_made() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child =
        ChildServer::start(dir.path(), &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap();
    let metrics = child.logged_address("metrics at /metrics");

    // Claims made over gRPC, by the wall clock: the leads live where it is about noon now,
    // inside the default calling window.
    let zone = zone_at_noon();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = leadscore_proto::tonic::transport::Channel::from_shared(child.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut leads = pb::lead_service_client::LeadServiceClient::new(channel.clone());
        let batch = (0..20)
            .map(|n| pb::Lead {
                id: format!("lead-{n}"),
                attributes: [("role".to_string(), text("CTO")), ("employees".to_string(), number(640.0))].into(),
                time_zone: zone.clone(),
                consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
                phone: format!("+1646{n:07}"),
                ..Default::default()
            })
            .collect();
        leads.upsert_leads(pb::UpsertLeadsRequest { leads: batch }).await.unwrap();
        let mut dialer = pb::dialer_service_client::DialerServiceClient::new(channel);
        let mut leases = Vec::new();
        while leases.len() < CLAIMS {
            let request = pb::NextLeadRequest { campaign: String::new(), agent_id: format!("agent-{}", leases.len()) };
            match dialer.next_lead(request).await.unwrap().into_inner().result {
                Some(Next::Claim(claim)) => leases.push(claim.lease.unwrap().lease_id),
                other => panic!("no lead to claim in {zone}: {other:?}"),
            }
        }
        // One call made, one lead handed back.
        let outcome =
            pb::Outcome { lease_id: leases[0].clone(), result: pb::CallResult::NoAnswer.into(), ..Default::default() };
        dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap();
        dialer.release_lead(pb::ReleaseLeadRequest { lease_id: leases[1].clone() }).await.unwrap();
    });

    let (status, body) = get(&metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains(&format!("leadscore_dialer_claims_total{{campaign=\"default\"}} {CLAIMS}")), "{body}");
    assert!(body.contains("leadscore_dialer_outcomes_total{campaign=\"default\",result=\"no_answer\"} 1"), "{body}");
    assert!(body.contains("leadscore_dialer_outcomes_total{campaign=\"default\",result=\"busy\"} 0"), "{body}");
    assert!(body.contains("leadscore_dialer_releases_total{campaign=\"default\"} 1"), "{body}");
    // The upsert called both scorers and the outcome engagement (fit reads attributes alone),
    // counted under their names.
    let calls = |scorer: &str| {
        let prefix = format!("leadscore_scorer_calls_total{{scorer=\"{scorer}\"}} ");
        body.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|n| n.parse::<u64>().ok())
    };
    assert!(calls("fit").is_some_and(|n| n >= 1) && calls("engagement").is_some_and(|n| n >= 2), "{body}");
    assert!(
        body.contains("leadscore_rpc_requests_total{method=\"leadscore.v1.DialerService/NextLead\",code=\"OK\"}"),
        "{body}"
    );
    // Timed with fixed buckets: one duration per NextLead, a time per lead for each scorer.
    let next_leads =
        format!("leadscore_rpc_duration_seconds_count{{method=\"leadscore.v1.DialerService/NextLead\"}} {CLAIMS}");
    assert!(body.contains(&next_leads), "{body}");
    assert!(body.contains("leadscore_scorer_seconds_per_lead_bucket{scorer=\"fit\",le=\"+Inf\"}"), "{body}");
    assert!(body.contains("leadscore_leads 20"), "{body}");
    // The store's handles are resolved when it opens: they must reach the installed recorder.
    let log_bytes = body
        .lines()
        .find_map(|line| line.strip_prefix("leadscore_wal_bytes_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(log_bytes.is_some_and(|n| n > 0), "{body}");
    assert!(body.contains("leadscore_wal_append_seconds_count"), "{body}");
    assert!(
        body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).all(|l| l.starts_with("leadscore_")),
        "{body}"
    );
    assert!(get(&metrics, "/other").0.contains("404"));

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(checked.status.success(), "promtool: {}", String::from_utf8_lossy(&checked.stderr));

    // A real Prometheus scraping the engine every second.
    let web = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: leadscore\n    static_configs:\n      - targets: ['{metrics}']\n"),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's prometheus package) is installed");
    let query = |path: &str| -> Option<serde_json::Value> {
        let stream = TcpStream::connect(&web).ok()?;
        drop(stream);
        let (status, body) = get(&web, path);
        status.contains("200").then(|| serde_json::from_str(body.trim()).ok()).flatten()
    };
    eventually(60, "the target up", || {
        query("/api/v1/targets").is_some_and(|json| {
            json["data"]["activeTargets"].as_array().is_some_and(|targets| targets.iter().any(|t| t["health"] == "up"))
        })
    });
    eventually(30, "the claims counter in Prometheus", || {
        query("/api/v1/query?query=leadscore_dialer_claims_total").is_some_and(|json| {
            json["data"]["result"]
                .as_array()
                .is_some_and(|results| results.iter().any(|r| r["value"][1].as_str() == Some(&CLAIMS.to_string())))
        })
    });
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let (status, _) = child.terminate();
    assert!(status.success());
}
