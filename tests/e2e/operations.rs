//! What operators rely on: health, reflection, the default command line, configuration
//! errors, graceful shutdown, and honest UNIMPLEMENTED answers.

use leadscore_proto::v1 as pb;
use leadscore_tests::{ChildServer, TestServer, binary};
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn health_serves_each_service_and_turns_not_serving_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = leadscore_tests::config(dir.path());
    // The watch below never ends by itself; shutdown cuts it off after the grace period.
    config.server.shutdown_grace_ms = 100;
    let mut server = TestServer::try_start(config, std::sync::Arc::new(leadscore::clock::SystemClock)).await.unwrap();
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "leadscore.v1.LeadService", "leadscore.v1.DialerService", "leadscore.v1.AdminService"] {
        let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service}");
    }
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::Serving);
    let stopped = server.request_stop();
    assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::NotServing);
    stopped.await.unwrap().unwrap();
}

#[tokio::test]
async fn reflection_lists_every_service_in_both_versions() {
    use tonic_reflection::pb::{v1, v1alpha};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let expected = [
        "grpc.health.v1.Health",
        "leadscore.v1.AdminService",
        "leadscore.v1.DialerService",
        "leadscore.v1.LeadService",
        "leadscore.v1.RoutingService",
        "leadscore.v1.ScoringService",
    ];

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
        ..Default::default()
    };
    let mut responses = client.server_reflection_info(tokio_stream::once(request)).await.unwrap().into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in expected {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }

    // grpcurl resolves a method's types through the file that defines a symbol.
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        message_request: Some(v1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "grpc.health.v1.Health".into(),
        )),
        ..Default::default()
    };
    let mut responses = client.server_reflection_info(tokio_stream::once(request)).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap().message_response.unwrap();
    assert!(
        matches!(response, v1::server_reflection_response::MessageResponse::FileDescriptorResponse(_)),
        "{response:?}"
    );
    server.stop().await;
}

/// The README's run command: `leadscore serve` with no arguments keeps its data in
/// ./leadscore-data and finds its plugins; SIGTERM stops it cleanly. Only the port is moved
/// (by environment), so that the test never collides with a server on the default one.
#[tokio::test]
async fn serve_with_no_arguments_uses_the_built_in_defaults_and_stops_on_sigterm() {
    assert_eq!(leadscore::config::Config::default().server.listen, "127.0.0.1:50051");
    let dir = tempfile::tempdir().unwrap();
    let child = ChildServer::start_with_env(dir.path(), &[], &[("LEADSCORE_LISTEN", "127.0.0.1:0")]).unwrap();
    assert!(child.address.starts_with("http://127.0.0.1:"), "{}", child.address);
    assert!(dir.path().join("leadscore-data").is_dir());
    let mut leads = pb::lead_service_client::LeadServiceClient::connect(child.address.clone()).await.unwrap();
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![leadscore_tests::lead("a")] }).await.unwrap();
    // The scorer plugins built beside the binary are found with no configuration.
    let mut admin = pb::admin_service_client::AdminServiceClient::connect(child.address.clone()).await.unwrap();
    let scorers = admin.list_scorers(pb::ListScorersRequest {}).await.unwrap().into_inner().scorers;
    let active: Vec<&str> =
        scorers.iter().filter(|s| s.status() == pb::ScorerStatus::Active).map(|s| s.name.as_str()).collect();
    assert_eq!(active, ["fit", "engagement"], "{scorers:?}");
    drop((leads, admin));
    let (status, log) = tokio::task::spawn_blocking(move || child.terminate()).await.unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("NOT_SERVING") && log.contains("log synced"), "{log}");
}

#[test]
fn a_bad_configuration_is_refused_with_every_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = \"here\"\nport = 1\n[store]\nfsync_interval_ms = 0\nfsink = \"x\"\n")
        .unwrap();
    let output = std::process::Command::new(binary())
        .args(["serve", "--config", file.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for problem in [
        "unknown key `server.port`",
        "unknown key `store.fsink`",
        "server.listen: must be an address",
        "store.fsync_interval_ms: must be 10-60000, got 0",
    ] {
        assert!(stderr.contains(problem), "{problem:?} missing from {stderr}");
    }
    assert!(!dir.path().join("leadscore-data").exists(), "nothing was created");
}

/// The README's configuration example is a working configuration: it parses, and both
/// scorers accept their settings from it.
#[tokio::test]
async fn the_readme_configuration_loads() {
    let readme = std::fs::read_to_string(leadscore_tests::workspace_root().join("README.md")).unwrap();
    let section = readme.split("## Configuration").nth(1).unwrap();
    let example = section.split("```toml\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap();
    let mut config = leadscore::config::Config::parse(example).unwrap();
    let dir = tempfile::tempdir().unwrap();
    config.store.data_dir = dir.path().to_owned();
    config.plugins.dir = leadscore_tests::profile_dir();
    let server = TestServer::try_start(config, std::sync::Arc::new(leadscore::clock::SystemClock)).await.unwrap();
    let scorers = server.admin().await.list_scorers(pb::ListScorersRequest {}).await.unwrap().into_inner().scorers;
    let active: Vec<(&str, pb::ScorerStatus)> = scorers.iter().map(|s| (s.name.as_str(), s.status())).collect();
    assert_eq!(active, [("fit", pb::ScorerStatus::Active), ("engagement", pb::ScorerStatus::Active)], "{scorers:?}");
    server.stop().await;
}
