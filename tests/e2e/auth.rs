//! Tokens and roles through real gRPC: every method of the contract (read from its descriptor
//! set, so a method added later is covered) called with a token of each role, with an unknown
//! token and with none; the objection that only `privacy` may change; and the refusal to serve
//! beyond loopback without auth.

use leadscore::config::{Config, TokenConfig};
use leadscore_proto::prost::Message;
use leadscore_proto::tonic::codegen::http::uri::PathAndQuery;
use leadscore_proto::tonic::metadata::MetadataValue;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::tonic::{Code, Request, client::Grpc};
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, lead};
use tonic_types::StatusExt;

const ROLES: [&str; 6] = ["ingest", "reader", "scorer", "dialer", "privacy", "admin"];

/// The methods each role may call, as the operations issue lists them; `admin` may call all,
/// and a method listed for no role is `admin`'s alone.
fn allowed(role: &str, method: &str) -> bool {
    let (service, name) = method.split_once('/').unwrap();
    let listed: &[&str] = match role {
        "ingest" => &["LeadService/UpsertLeads", "LeadService/RecordEvents", "LeadService/ImportLeads"],
        "reader" => {
            &["LeadService/GetLead", "AdminService/Stats", "AdminService/ListScorers", "AdminService/GetConfig"]
        }
        "dialer" => &[
            "RoutingService/Route",
            "RoutingService/WatchRouting",
            "RoutingService/SetAgentState",
            "ClusterService/QueueHeads",
            "ClusterService/Mark",
            "ClusterService/Revocations",
            "ClusterService/AgentLoads",
        ],
        "privacy" => &["LeadService/EraseLead"],
        "scorer" => &[
            "ClusterService/Distributions",
            "ClusterService/AccountShares",
            "ClusterService/TopKeys",
            "ClusterService/Ranked",
        ],
        _ => &[],
    };
    role == "admin"
        || listed.contains(&method)
        || (role == "scorer" && service == "ScoringService")
        || (role == "dialer" && service == "DialerService")
        || name.is_empty()
}

/// Every method of the contract, as `Service/Method`.
fn methods() -> Vec<String> {
    let set = leadscore_proto::prost_types::FileDescriptorSet::decode(leadscore_proto::FILE_DESCRIPTOR_SET).unwrap();
    let services = set.file.iter().filter(|f| f.package() == "leadscore.v1").flat_map(|f| &f.service);
    services.flat_map(|s| s.method.iter().map(move |m| format!("{}/{}", s.name(), m.name()))).collect()
}

/// Calls a method with one empty request message, however it streams, and returns the status
/// code the call ended or started with.
async fn call(channel: &Channel, method: &str, token: Option<&str>) -> Code {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = Request::new(tokio_stream::iter([()]));
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    let path = PathAndQuery::try_from(format!("/leadscore.v1.{method}")).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.streaming(request, path, codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A configuration with one token per role; the tokens by role.
fn with_tokens(config: &mut Config) -> Vec<(&'static str, String)> {
    ROLES
        .iter()
        .map(|role| {
            let (token, _) = leadscore::config::tokens::new_token(role, &[]);
            config.auth.tokens.push(TokenConfig {
                name: format!("{role}-token"),
                sha256: leadscore::config::tokens::hex(&leadscore::config::tokens::digest(&token)),
                roles: vec![role.to_string()],
            });
            (*role, token)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_calls_what_it_may_and_is_denied_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let tokens = with_tokens(&mut config);
    let server = TestServer::start_at(config, 1_793_631_600_000).await.0;
    let channel = server.channel().await;
    let methods = methods();
    assert!(methods.len() >= 27, "{methods:?}");
    for method in &methods {
        assert_eq!(call(&channel, method, None).await, Code::Unauthenticated, "{method} without a token");
        assert_eq!(call(&channel, method, Some("ls_not-a-token")).await, Code::Unauthenticated, "{method}");
        for (role, token) in &tokens {
            let code = call(&channel, method, Some(token)).await;
            if allowed(role, method) {
                assert!(!matches!(code, Code::Unauthenticated | Code::PermissionDenied), "{role} → {method}: {code:?}");
            } else {
                assert_eq!(code, Code::PermissionDenied, "{role} → {method}");
            }
        }
    }

    // Health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.unwrap();

    // A denial names the role the call needs; allowed calls with real requests succeed.
    let token = |role: &str| tokens.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let bearer = |role: &str| {
        let value: MetadataValue<_> = format!("Bearer {}", token(role)).parse().unwrap();
        move |mut request: Request<()>| {
            request.metadata_mut().insert("authorization", value.clone());
            Ok(request)
        }
    };
    let mut leads = pb::lead_service_client::LeadServiceClient::with_interceptor(channel.clone(), bearer("ingest"));
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("lead-1")] }).await.unwrap();
    let denied = leads.erase_lead(pb::EraseLeadRequest { id: "lead-1".into() }).await.unwrap_err();
    assert!(denied.message().contains("`privacy`") && denied.message().contains("ingest-token"), "{denied:?}");
    let info = denied.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "ROLE_MISSING");
    assert_eq!(info.metadata.get("role").map(String::as_str), Some("privacy"));
    let mut scoring =
        pb::scoring_service_client::ScoringServiceClient::with_interceptor(channel.clone(), bearer("scorer"));
    let request = pb::ExplainRequest { contact_curve: false, lead_id: "lead-1".into(), campaign: String::new() };
    assert!(scoring.explain(request).await.unwrap().into_inner().score.is_some());

    // Changing an objection through UpsertLeads needs `privacy` beside `ingest` (admin holds
    // both): ingest alone can neither set nor clear one.
    let objecting =
        || pb::Lead { consent: Some(pb::Consent { objected: true, ..Default::default() }), ..lead("lead-1") };
    let refused = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![objecting()] }).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().starts_with("leads[0].consent.objected"), "{}", refused.message());
    assert_eq!(refused.get_details_error_info().unwrap().reason, "OBJECTION_LOCKED");
    let mut admin = pb::lead_service_client::LeadServiceClient::with_interceptor(channel.clone(), bearer("admin"));
    admin.upsert_leads(pb::UpsertLeadsRequest { leads: vec![objecting()] }).await.unwrap();
    // Ingest may restate it, not clear it.
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![objecting()] }).await.unwrap();
    let cleared = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("lead-1")] }).await.unwrap_err();
    assert_eq!(cleared.code(), Code::PermissionDenied);
    let mut privacy = pb::lead_service_client::LeadServiceClient::with_interceptor(channel.clone(), bearer("privacy"));
    privacy.erase_lead(pb::EraseLeadRequest { id: "lead-1".into() }).await.unwrap();

    // The client subcommands send the token given with --token (or LEADSCORE_TOKEN).
    let report = |token: Option<String>| {
        let mut command = std::process::Command::new(leadscore_tests::binary());
        command.args(["report", "--server", &server.address]).env_remove("LEADSCORE_TOKEN");
        if let Some(token) = token {
            command.env("LEADSCORE_TOKEN", token);
        }
        // Off the runtime's threads: the server under test answers on them.
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let refused = report(None).await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("authorization: Bearer"), "{refused:?}");
    let printed = report(Some(token("admin"))).await.unwrap();
    assert!(String::from_utf8_lossy(&printed.stdout).contains("no called lead has an outcome yet"), "{printed:?}");
    server.stop().await;
}

#[test]
fn serving_beyond_loopback_without_auth_and_tls_is_refused_unless_insecure_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let output = std::process::Command::new(leadscore_tests::binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir", data_dir])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("server.listen: 0.0.0.0 is reachable beyond this machine"), "{log}");
    assert!(log.contains("server.insecure = true"), "{log}");

    // The console too: it takes the same tokens over the same TLS.
    let output = std::process::Command::new(leadscore_tests::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir])
        .env_remove("RUST_LOG")
        .env("LEADSCORE_CONSOLE_LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("console.listen: 0.0.0.0 is reachable beyond this machine"), "{log}");
    assert!(log.contains("no token ([[auth.tokens]]) and no TLS ([server.tls])"), "{log}");

    let config_file = dir.path().join("insecure.toml");
    std::fs::write(&config_file, "[server]\nlisten = \"0.0.0.0:0\"\ninsecure = true\n").unwrap();
    let child = leadscore_tests::ChildServer::start(
        dir.path(),
        &["--config", config_file.to_str().unwrap(), "--data-dir", data_dir],
    )
    .unwrap();
    let (status, log) = child.terminate();
    assert!(status.success(), "{log}");
}
