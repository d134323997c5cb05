//! The edges a security review found, each tried from outside against the real binary (or a
//! real server in process): metric labels from a closed set, the data directory its owner's
//! alone, token hashes redacted, one `authorization` header, /metrics kept on loopback, the
//! browser's security headers, and the answer to an outcome whose lead was erased mid-lease.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use leadscore::config::{Config, REDACTED, TokenConfig};
use leadscore_proto::tonic::codegen::http::uri::PathAndQuery;
use leadscore_proto::tonic::metadata::MetadataValue;
use leadscore_proto::tonic::transport::Channel;
use leadscore_proto::tonic::{Code, Request, Status, client::Grpc};
use leadscore_proto::v1 as pb;
use leadscore_tests::{ChildServer, TestServer, config, http_get, lead, zone_at_noon};
use pb::next_lead_response::Result as Next;

/// The metric series `/metrics` shows: its lines that are not comments.
fn series(metrics: &str) -> Vec<String> {
    let body = http_get(metrics, "/metrics", &[]).body;
    body.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).map(str::to_owned).collect()
}

/// Calls `path` with an empty message, with a bearer token or none; the status it ends with.
async fn call_path(channel: &Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = Request::new(());
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(request, PathAndQuery::try_from(path).unwrap(), codec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A configuration file for the binary with one admin token; the token.
fn admin_config(dir: &Path, extra: &str) -> (String, String) {
    let (token, lines) = leadscore::config::tokens::new_token("ops", &["admin".into()]);
    let path = dir.join("leadscore.toml");
    std::fs::write(&path, format!("{extra}\n{lines}")).unwrap();
    (path.display().to_string(), token)
}

#[test]
fn calls_to_made_up_methods_add_no_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let (config, token) = admin_config(dir.path(), "");
    let data = dir.path().join("data");
    let child = ChildServer::start(dir.path(), &["--config", &config, "--data-dir", data.to_str().unwrap()]).unwrap();
    let metrics = child.logged_address("metrics at /metrics");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = Channel::from_shared(child.address.clone()).unwrap().connect().await.unwrap();
        // Every kind of answer once, so that each series the refusals can add exists.
        for token in [None, Some(token.as_str()), Some("ls_unknown")] {
            call_path(&channel, "/x.Y/first", token).await;
            call_path(&channel, "/leadscore.v1.AdminService/Stats", token).await;
        }
        let before = series(&metrics);
        for n in 0..1_000u32 {
            let path = format!("/x.Y/m{:08x}", rand::random::<u32>());
            let token = [None, Some(token.as_str())][n as usize % 2];
            let code = call_path(&channel, &path, token).await;
            assert!(matches!(code, Code::Unauthenticated | Code::Unimplemented), "{path}: {code:?}");
        }
        let after = series(&metrics);
        let count = |lines: &[String]| lines.len();
        assert_eq!(count(&after), count(&before), "series were added: {:?}", {
            let old: std::collections::HashSet<_> = before.iter().map(|l| l.rsplit_once(' ').unwrap().0).collect();
            after.iter().filter(|l| !old.contains(l.rsplit_once(' ').unwrap().0)).cloned().collect::<Vec<_>>()
        });
        assert!(after.iter().all(|line| !line.contains("x.Y")), "a made-up path became a label");
        assert!(
            after.iter().any(|line| line.starts_with("leadscore_rpc_requests_total{method=\"unknown\"")),
            "made-up paths are counted as method=\"unknown\""
        );
    });
    let (status, _) = child.terminate();
    assert!(status.success());
}

#[test]
fn the_data_directory_and_every_file_in_it_are_the_owners_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child =
        ChildServer::start(dir.path(), &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = Channel::from_shared(child.address.clone()).unwrap().connect().await.unwrap();
        let mut leads = pb::lead_service_client::LeadServiceClient::new(channel.clone());
        leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("a"), lead("b")] }).await.unwrap();
        leads.erase_lead(pb::EraseLeadRequest { id: "b".into() }).await.unwrap();
        // A snapshot, so that its file is among those checked.
        let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
        admin.snapshot(pb::SnapshotRequest::default()).await.unwrap();
    });
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    let files: Vec<_> = std::fs::read_dir(&data).unwrap().map(|entry| entry.unwrap().path()).collect();
    for kind in ["salt", "LOCK", "snapshot-", "wal-"] {
        assert!(
            files.iter().any(|f| f.file_name().unwrap().to_string_lossy().starts_with(kind)),
            "no {kind} in {files:?}"
        );
    }
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    let (status, log) = child.terminate();
    assert!(status.success());
    assert!(!log.contains("open to other local users"), "{log}");

    // A directory and salt left open by an older build are named at start-up, with the fix.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("salt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let child =
        ChildServer::start(dir.path(), &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap();
    let (status, log) = child.terminate();
    assert!(status.success());
    for (path, fix) in [(data.clone(), "chmod 700"), (data.join("salt"), "chmod 600")] {
        let warned = log.lines().any(|line| {
            line.contains("WARN")
                && line.contains(&format!("{} is open to other local users", path.display()))
                && line.contains(fix)
        });
        assert!(warned, "no warning about {} in:\n{log}", path.display());
    }
}

fn with_token(config: &mut Config, name: &str, role: &str) -> String {
    let (token, _) = leadscore::config::tokens::new_token(name, &[]);
    let sha256 = leadscore::config::tokens::hex(&leadscore::config::tokens::digest(&token));
    config.auth.tokens.push(TokenConfig { name: name.into(), sha256, roles: vec![role.into()] });
    token
}

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_hashes_are_redacted_and_sending_them_back_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let reader = with_token(&mut config, "reader", "reader");
    let admin = with_token(&mut config, "admin", "admin");
    let hashes: Vec<String> = config.auth.tokens.iter().map(|t| t.sha256.clone()).collect();
    let server = TestServer::try_start(config, std::sync::Arc::new(leadscore::clock::SystemClock)).await.unwrap();
    let mut client = server.admin().await;

    let shown = client.get_config(bearer(pb::GetConfigRequest::default(), &reader)).await.unwrap().into_inner();
    for hash in &hashes {
        assert!(!shown.toml.contains(hash), "a token's hash is shown:\n{}", shown.toml);
    }
    let parsed: toml::Table = shown.toml.parse().unwrap();
    let tokens = parsed["auth"]["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t["sha256"].as_str() == Some(REDACTED) && t["roles"].as_array().is_some()));

    // Sent back as shown, with a runtime change: taken, and the tokens work as before.
    let changed = shown.toml.replace("composition = \"points\"", "composition = \"weighted_mean\"");
    assert_ne!(changed, shown.toml, "the default configuration names its composition");
    let update = pb::UpdateConfigRequest { toml: changed.clone(), expected_version: shown.version };
    let version = client.update_config(bearer(update, &admin)).await.unwrap().into_inner().version;
    assert_eq!(version, shown.version + 1);
    let again = client.get_config(bearer(pb::GetConfigRequest::default(), &reader)).await.unwrap().into_inner();
    assert_eq!(again.version, version);
    assert!(again.toml.contains("weighted_mean"));

    // A redacted hash stands only for a running token of the same name.
    let renamed = changed.replace("name = \"reader\"", "name = \"stranger\"");
    let update = pb::UpdateConfigRequest { toml: renamed, expected_version: version };
    let refused = client.update_config(bearer(update, &admin)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("auth.tokens[") && refused.message().contains("\"stranger\""),
        "{}",
        refused.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused_and_surrounding_whitespace_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let reader = with_token(&mut config, "reader", "reader");
    let server = TestServer::try_start(config, std::sync::Arc::new(leadscore::clock::SystemClock)).await.unwrap();
    let mut client = server.admin().await;
    let stats = |values: &[&str]| {
        let mut request = Request::new(pb::StatsRequest::default());
        for value in values {
            let value: MetadataValue<_> = value.parse().unwrap();
            request.metadata_mut().append("authorization", value);
        }
        request
    };
    let good = format!("Bearer {reader}");
    let refused: Status = client.stats(stats(&[&good, &good])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("one `authorization` header"), "{}", refused.message());
    let refused = client.stats(stats(&[&good, "Bearer ls_someone_else"])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    client.stats(stats(&[&format!("Bearer {reader} ")])).await.expect("a trailing space is not part of the token");
    client.stats(stats(&[&good])).await.unwrap();
    server.stop().await;
}

#[test]
fn metrics_stay_on_loopback_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    let refused = ChildServer::start_with_env(dir.path(), &args, &[("LEADSCORE_METRICS_LISTEN", "0.0.0.0:0")]);
    let message = refused.err().expect("refused").to_string();
    assert!(
        message.contains("metrics.listen: 0.0.0.0 is reachable beyond this machine")
            && message.contains("server.insecure"),
        "{message}"
    );
    // On purpose, it serves there.
    let file = dir.path().join("insecure.toml");
    std::fs::write(&file, "[server]\ninsecure = true\n").unwrap();
    let mut args = args.to_vec();
    args.extend(["--config", file.to_str().unwrap()]);
    let child = ChildServer::start_with_env(dir.path(), &args, &[("LEADSCORE_METRICS_LISTEN", "0.0.0.0:0")]).unwrap();
    let port = child.logged_address("metrics at /metrics").rsplit_once(':').unwrap().1.to_string();
    assert_eq!(http_get(&format!("127.0.0.1:{port}"), "/metrics", &[]).code, 200);
    let (status, _) = child.terminate();
    assert!(status.success());
}

#[test]
fn the_console_and_metrics_tell_browsers_what_they_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child =
        ChildServer::start(dir.path(), &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap();
    let (console, metrics) = (child.logged_address("web console"), child.logged_address("metrics at /metrics"));
    for (address, path) in [
        (&console, "/"),
        (&console, "/app.js"),
        (&console, "/api/stats"),
        (&console, "/nowhere"),
        (&metrics, "/metrics"),
        (&metrics, "/nowhere"),
    ] {
        let head = http_get(address, path, &[]).head.to_lowercase();
        for header in [
            "x-content-type-options: nosniff",
            "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'",
            "frame-ancestors 'none'",
            "x-frame-options: deny",
        ] {
            assert!(head.contains(header), "{path} at {address} lacks {header:?}:\n{head}");
        }
    }
    let (status, _) = child.terminate();
    assert!(status.success());
}

#[test]
fn an_outcome_for_a_lead_erased_during_its_lease_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // One routing rule: the one agent may take any lead.
    let rules = "[[routing.rules]]\nname = \"all\"\nwhen = \"true\"\nqueue = \"floor\"\nagents = \"tier >= 0\"\n";
    let file = dir.path().join("leadscore.toml");
    std::fs::write(&file, rules).unwrap();
    let args = ["--config", file.to_str().unwrap(), "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    let child = ChildServer::start(dir.path(), &args).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = Channel::from_shared(child.address.clone()).unwrap().connect().await.unwrap();
        let mut leads = pb::lead_service_client::LeadServiceClient::new(channel.clone());
        let mut dialer = pb::dialer_service_client::DialerServiceClient::new(channel.clone());
        let zone = zone_at_noon();
        let batch = ["erased", "kept"].map(|id| pb::Lead { time_zone: zone.clone(), campaigns: vec![], ..lead(id) });
        leads.upsert_leads(pb::UpsertLeadsRequest { leads: batch.to_vec() }).await.unwrap();
        let mut routing = pb::routing_service_client::RoutingServiceClient::new(channel.clone());
        let agent = pb::Agent { id: "agent-1".into(), capacity: 2, ..Default::default() };
        routing.upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent] }).await.unwrap();
        let available =
            pb::SetAgentStateRequest { agent_id: "agent-1".into(), state: pb::AgentState::Available as i32 };
        routing.set_agent_state(available).await.unwrap();
        let claim = || {
            let mut dialer = dialer.clone();
            async move {
                let request = pb::NextLeadRequest { campaign: String::new(), agent_id: "agent-1".into() };
                match dialer.next_lead(request).await.unwrap().into_inner().result {
                    Some(Next::Claim(claim)) => claim,
                    other => panic!("no claim: {other:?}"),
                }
            }
        };
        let (first, second) = (claim().await, claim().await);
        let lease_of = |claim: &pb::Claim| claim.lease.as_ref().unwrap().lease_id.clone();
        let (erased, kept) = match first.lead.as_ref().unwrap().id.as_str() {
            "erased" => (lease_of(&first), lease_of(&second)),
            _ => (lease_of(&second), lease_of(&first)),
        };
        leads.erase_lead(pb::EraseLeadRequest { id: "erased".into() }).await.unwrap();

        let outcome = |lease_id: &str| pb::ReportOutcomeRequest {
            outcome: Some(pb::Outcome {
                lease_id: lease_id.into(),
                result: pb::CallResult::ConnectedNotInterested as i32,
                note: "spoke to them about their order".into(),
                ..Default::default()
            }),
        };
        let refused = dialer.report_outcome(outcome(&erased)).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(
            refused.message().contains("erased") && refused.message().contains("nothing was recorded"),
            "{}",
            refused.message()
        );
        let released = dialer.release_lead(pb::ReleaseLeadRequest { lease_id: erased.clone() }).await.unwrap_err();
        assert_eq!(released.code(), Code::FailedPrecondition, "{}", released.message());
        // A lease that never was on a lead that never was is still NOT_FOUND: the two differ.
        let made_up = erased.replace("erased", "never-stored");
        assert_eq!(dialer.report_outcome(outcome(&made_up)).await.unwrap_err().code(), Code::NotFound);

        // Nothing about the person was stored, and the erased lease no longer counts against
        // the agent: with the other reported, the agent holds none.
        assert_eq!(
            leads.get_lead(pb::GetLeadRequest { id: "erased".into(), include_events: true }).await.unwrap_err().code(),
            Code::NotFound
        );
        dialer.report_outcome(outcome(&kept)).await.unwrap();
        let board = dialer.wallboard(pb::WallboardRequest::default()).await.unwrap().into_inner();
        let agent = board.agents.iter().find(|a| a.agent_id == "agent-1").expect("the agent on the wallboard");
        assert_eq!(agent.leases, 0, "{agent:?}");
        assert_eq!(
            board.minutes.iter().flat_map(|m| &m.outcomes).sum::<u64>(),
            1,
            "only the kept lead's outcome counts"
        );
    });
    let (status, log) = child.terminate();
    assert!(status.success());
    assert!(!log.contains("spoke to them"), "the note was logged");
}
