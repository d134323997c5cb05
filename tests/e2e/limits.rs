//! Limits through gRPC: a token over its rate is refused with RESOURCE_EXHAUSTED and a
//! `retry-after`, then served again once its bucket refills, while other tokens and health go
//! on; a message over its service family's bound is refused while other families keep theirs;
//! work for a call whose deadline passed is dropped.

use std::time::{Duration, Instant};

use leadscore::config::TokenConfig;
use leadscore_proto::prost::Message;
use leadscore_proto::tonic::metadata::MetadataValue;
use leadscore_proto::tonic::{Code, Request, Status};
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, lead, plugin_library, text};
use tonic_types::StatusExt;

fn bearer(token: &'static str) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    move |mut request: Request<()>| {
        request.metadata_mut().insert("authorization", value.clone());
        Ok(request)
    }
}

fn score_request() -> pb::ScoreRequest {
    pb::ScoreRequest { lead: Some(lead("form-1")), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_waits_as_told_while_others_and_health_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    (config.limits.rate_per_token, config.limits.burst_per_token) = (2.0, 4.0);
    for name in ["busy", "calm"] {
        let sha256 = leadscore::config::tokens::hex(&leadscore::config::tokens::digest(name));
        config.auth.tokens.push(TokenConfig { name: name.into(), sha256, roles: vec!["scorer".into()] });
    }
    let (server, _clock) = TestServer::start_at(config, 1_793_631_600_000).await;
    let channel = server.channel().await;
    let mut busy = pb::scoring_service_client::ScoringServiceClient::with_interceptor(channel.clone(), bearer("busy"));
    let mut served = 0;
    let refusal = loop {
        match busy.score(score_request()).await {
            Ok(_) => served += 1,
            Err(status) => break status,
        }
        assert!(served < 10, "never limited");
    };
    assert!((4..=5).contains(&served), "the burst is 4 (and a refill of 2 a second), served {served}");
    assert_eq!(refusal.code(), Code::ResourceExhausted);
    assert!(refusal.message().contains("\"busy\""), "{}", refusal.message());
    let retry_after: u64 = refusal.metadata().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, 1);
    // The same wait as gRPC client libraries read it: google.rpc.RetryInfo, exactly, within
    // the second the header rounds up to.
    let delay = refusal.get_details_retry_info().and_then(|info| info.retry_delay).expect("a RetryInfo detail");
    assert!(delay > Duration::ZERO && delay <= Duration::from_secs(1), "{delay:?}");

    // Another token has its own bucket, and health is never limited.
    let mut calm = pb::scoring_service_client::ScoringServiceClient::with_interceptor(channel.clone(), bearer("calm"));
    calm.score(score_request()).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for _ in 0..10 {
        health.check(tonic_health::pb::HealthCheckRequest::default()).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    busy.score(score_request()).await.expect("served again after retry-after");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_family_takes_messages_up_to_its_own_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.limits.message_bytes.insert("leads".into(), 1024);
    let (server, _clock) = TestServer::start_at(config, 1_793_631_600_000).await;
    let mut big = lead("big");
    for n in 0..20 {
        big.attributes.insert(format!("note_{n}"), text(&"x".repeat(100)));
    }
    // Over the bound, a message is RESOURCE_EXHAUSTED, as gRPC's own servers answer, naming the
    // setting: a unary request, a message of a stream, and an answer too large to send.
    let names_the_setting = |refused: &Status, family: &str| {
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        let key = format!("limits.message_bytes.{family}");
        assert!(refused.message().contains(&key) && refused.message().contains("1024-byte"), "{}", refused.message());
    };
    let mut leads = server.leads().await;
    let refused = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![big.clone()] }).await.unwrap_err();
    names_the_setting(&refused, "leads");
    assert!(refused.message().starts_with("the request is "), "{}", refused.message());
    let chunks = [
        pb::ImportLeadsRequest { leads: vec![lead("small")], ..Default::default() },
        pb::ImportLeadsRequest { leads: vec![big.clone()], ..Default::default() },
    ];
    let refused = leads.import_leads(tokio_stream::iter(chunks)).await.unwrap_err();
    names_the_setting(&refused, "leads");
    let request = pb::ScoreRequest { lead: Some(big), ..Default::default() };
    server.scoring().await.score(request).await.expect("the scoring family keeps the default bound");
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let mut scoring_bound = leadscore_tests::config(dir.path());
    scoring_bound.limits.message_bytes.insert("scoring".into(), 1024);
    let (server, _clock) = TestServer::start_at(scoring_bound, 1_793_631_600_000).await;
    let explained =
        |i: usize| pb::ScoreRequest { lead: Some(lead(&format!("form-{i}"))), explain: true, ..Default::default() };
    let request = pb::ScoreBatchRequest { requests: (0..6).map(explained).collect() };
    assert!(request.encoded_len() < 1024, "the request itself fits");
    let refused = server.scoring().await.score_batch(request).await.unwrap_err();
    names_the_setting(&refused, "scoring");
    assert!(refused.message().starts_with("the answer is "), "{}", refused.message());
    server.stop().await;
}

/// Scorer calls the `good` fixture has answered.
async fn good_calls(server: &TestServer) -> u64 {
    let listed = server.admin().await.list_scorers(pb::ListScorersRequest {}).await.unwrap().into_inner();
    listed.scorers.iter().find(|s| s.name == "good").expect("the fixture is loaded").calls
}

fn batch(leads: usize) -> pb::ScoreBatchRequest {
    let requests =
        (0..leads).map(|i| pb::ScoreRequest { lead: Some(lead(&format!("form-{i}"))), ..Default::default() });
    pb::ScoreBatchRequest { requests: requests.collect() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_deadline_passed_stops_scoring() {
    // The only scorer takes a millisecond a lead: 8,000 leads would take 8 s.
    let plugins = tempfile::tempdir().unwrap();
    let library = plugin_library("fixture_good");
    std::fs::copy(&library, plugins.path().join(library.file_name().unwrap())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.plugins.dir = plugins.path().to_owned();
    config.plugins.load = Vec::new();
    config.campaigns.get_mut("default").unwrap().weights = [("good".to_string(), 1.0)].into();
    let settings = toml::toml! { score = 42.0
    sleep_us = 1000 };
    config.scorers.insert("good".into(), toml::Value::Table(settings));
    // This process's metrics recorder, which every server in it records to.
    let metrics = leadscore::telemetry::handle();
    let server = TestServer::try_start(config, std::sync::Arc::new(leadscore::clock::SystemClock)).await.unwrap();
    let mut scoring = server.scoring().await;

    // What 1,024 leads cost in scorer calls, served to the end.
    let before = good_calls(&server).await;
    let scored = scoring.score_batch(batch(1_024)).await.unwrap().into_inner().scores;
    assert_eq!(scored.len(), 1_024);
    let per_1024 = good_calls(&server).await - before;
    assert!(per_1024 > 0);

    let before = good_calls(&server).await;
    let mut request = Request::new(batch(8_000));
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let refused = scoring.score_batch(request).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "answered at its deadline, not after the work");
    assert!(matches!(refused.code(), Code::Cancelled | Code::DeadlineExceeded), "{refused:?}");

    // The work stops at its next step: no more than 1,024 of the 8,000 leads are scored.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let made = good_calls(&server).await - before;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(good_calls(&server).await - before, made, "the abandoned batch still runs");
    assert!(made <= per_1024, "{made} scorer calls for the abandoned batch; 1,024 leads take {per_1024}");
    let text = metrics.render();
    let cancelled =
        "leadscore_rpc_requests_total{method=\"leadscore.v1.ScoringService/ScoreBatch\",code=\"CANCELLED\"}";
    assert!(text.contains(cancelled), "{text}");
    assert!(text.contains("leadscore_abandoned_work_total{stage=\"running\"}"), "{text}");
    scoring.score(score_request()).await.expect("served as before");
    server.stop().await;
}
