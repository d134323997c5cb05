//! Limits through gRPC: a token over its rate is refused with RESOURCE_EXHAUSTED and a
//! `retry-after`, then served again once its bucket refills, while other tokens and health go
//! on; a message over its service family's bound is refused while other families keep theirs.

use leadscore::auth;
use leadscore::config::TokenConfig;
use leadscore_proto::tonic::metadata::MetadataValue;
use leadscore_proto::tonic::{Code, Request, Status};
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, lead, text};

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
        let sha256 = auth::hex(&auth::digest(name));
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
    let refused =
        server.leads().await.upsert_leads(pb::UpsertLeadsRequest { leads: vec![big.clone()] }).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("too large"), "{}", refused.message());
    let request = pb::ScoreRequest { lead: Some(big), ..Default::default() };
    server.scoring().await.score(request).await.expect("the scoring family keeps the default bound");
    server.stop().await;
}
