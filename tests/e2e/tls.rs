//! TLS and mTLS with certificates made in the test (rcgen): who gets through, and a SIGHUP
//! that swaps the certificate of the real binary without dropping an open connection.

use std::path::Path;

use leadscore::config::TlsConfig;
use leadscore_proto::tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use leadscore_tests::certs::Authority;
use leadscore_tests::{ChildServer, TestServer, config, python_env};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Writes the server's certificate and key (and a client CA) into `dir`.
fn server_files(dir: &Path, authority: &Authority, client_ca: Option<&Authority>) -> TlsConfig {
    let (cert, key) = authority.issue(&["localhost", "127.0.0.1"]);
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    let client_ca_file = client_ca.map_or_else(Default::default, |ca| {
        std::fs::write(dir.join("clients.pem"), ca.pem()).unwrap();
        dir.join("clients.pem")
    });
    TlsConfig { cert_file: dir.join("server.pem"), key_file: dir.join("server.key"), client_ca_file }
}

/// Whether a client trusting `trust` (and showing `identity`) gets a health answer.
async fn answers(address: &str, trust: &Authority, identity: Option<(String, String)>) -> bool {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(trust.pem())).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let https = address.replace("http://", "https://");
    let Ok(endpoint) = Channel::from_shared(https).unwrap().tls_config(tls) else { return false };
    match endpoint.connect().await {
        Ok(channel) => check(channel).await,
        Err(_) => false,
    }
}

async fn check(channel: Channel) -> bool {
    HealthClient::new(channel).check(HealthCheckRequest::default()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_admits_clients_that_trust_it_and_mtls_only_those_with_a_certificate_it_trusts() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (Authority::new("ours"), Authority::new("theirs"));

    let mut tls_only = config(&dir.path().join("a"));
    tls_only.server.tls = server_files(dir.path(), &ours, None);
    let server = TestServer::try_start_tls(tls_only, &ours.pem(), None).await;
    assert!(answers(&server.address, &ours, None).await, "a client trusting our CA");
    assert!(!answers(&server.address, &theirs, None).await, "a client trusting another CA");
    let plaintext = Channel::from_shared(server.address.clone()).unwrap().connect().await;
    assert!(plaintext.is_err() || !check(plaintext.unwrap()).await, "a plaintext client");
    server.stop().await;

    let mut mutual = config(&dir.path().join("b"));
    mutual.server.tls = server_files(dir.path(), &ours, Some(&ours));
    let client = ours.issue(&["floor-dialer"]);
    let server = TestServer::try_start_tls(mutual, &ours.pem(), Some(client.clone())).await;
    assert!(answers(&server.address, &ours, Some(client)).await, "our client certificate");
    assert!(!answers(&server.address, &ours, None).await, "no client certificate");
    assert!(!answers(&server.address, &ours, Some(theirs.issue(&["intruder"]))).await, "another CA's certificate");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_and_python_grpcio_connect_under_mtls_and_without_a_certificate_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Authority::new("ours");
    let mut mutual = config(&dir.path().join("data"));
    mutual.server.tls = server_files(dir.path(), &ours, Some(&ours));
    let client = ours.issue(&["floor-dialer"]);
    let server = TestServer::try_start_tls(mutual, &ours.pem(), Some(client.clone())).await;
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (ca, cert, key) = (file("ca.pem", &ours.pem()), file("client.pem", &client.0), file("client.key", &client.1));
    let address = server.address.trim_start_matches("http://").to_string();
    let python = python_env();
    let run = move |program: std::path::PathBuf, args: Vec<String>| {
        tokio::task::spawn_blocking(move || std::process::Command::new(program).args(args).output().unwrap())
    };

    let grpcurl = python.join("bin").join("grpcurl");
    let health = |with_cert: bool| {
        let mut args = vec!["-cacert".to_string(), ca.clone(), "-servername".into(), "localhost".into()];
        if with_cert {
            args.extend(["-cert".to_string(), cert.clone(), "-key".into(), key.clone()]);
        }
        args.extend([address.clone(), "grpc.health.v1.Health/Check".into()]);
        run(grpcurl.clone(), args)
    };
    let answered = health(true).await.unwrap();
    assert!(String::from_utf8_lossy(&answered.stdout).contains("SERVING"), "{answered:?}");
    assert!(!health(false).await.unwrap().status.success(), "grpcurl without a client certificate");

    // Health/Check with an empty request; SERVING encodes as 08 01.
    let script = |with_cert: bool| {
        let identity = if with_cert {
            format!("private_key=read({key:?}), certificate_chain=read({cert:?}),")
        } else {
            String::new()
        };
        format!(
            "import grpc\nread = lambda p: open(p, 'rb').read()\n\
             creds = grpc.ssl_channel_credentials(root_certificates=read({ca:?}), {identity})\n\
             channel = grpc.secure_channel({address:?}, creds, options=[('grpc.ssl_target_name_override', 'localhost')])\n\
             print(channel.unary_unary('/grpc.health.v1.Health/Check')(b'', timeout=10).hex())\n"
        )
    };
    let python3 = python.join("bin").join("python");
    let answered = run(python3.clone(), vec!["-c".into(), script(true)]).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&answered.stdout).trim(), "0801", "{answered:?}");
    let refused = run(python3, vec!["-c".into(), script(false)]).await.unwrap();
    assert!(!refused.status.success(), "grpcio without a client certificate");
    server.stop().await;
}

/// Also: with a token and TLS, the server may listen beyond loopback without `insecure`.
#[test]
fn sighup_swaps_the_certificate_for_new_connections_and_keeps_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Authority::new("old"), Authority::new("new"));
    let files = server_files(dir.path(), &old, None);
    let config_file = dir.path().join("leadscore.toml");
    let toml = format!(
        "[server]\nlisten = \"0.0.0.0:0\"\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n[store]\ndata_dir = {:?}\n\
         [[auth.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nroles = [\"admin\"]\n",
        files.cert_file,
        files.key_file,
        dir.path().join("data"),
        leadscore::config::tokens::hex(&leadscore::config::tokens::digest("a token")),
    );
    std::fs::write(&config_file, toml).unwrap();
    let child = ChildServer::start(dir.path(), &["--config", config_file.to_str().unwrap()]).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(old.pem())).domain_name("localhost");
        let https = child.address.replace("http://", "https://");
        let open = Channel::from_shared(https).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
        assert!(check(open.clone()).await);

        // A broken file is refused and the certificate in use stays.
        std::fs::write(&files.cert_file, "not a certificate").unwrap();
        hang_up(&child, "TLS files not reloaded");
        assert!(answers(&child.address, &old, None).await);

        server_files(dir.path(), &new, None);
        hang_up(&child, "TLS certificate and key reloaded");
        assert!(check(open).await, "the connection opened before the reload still serves");
        assert!(answers(&child.address, &new, None).await, "new connections get the new certificate");
        assert!(!answers(&child.address, &old, None).await, "and no longer the old one");
    });
    let (status, _) = child.terminate();
    assert!(status.success());
}

/// Sends SIGHUP and waits for the log line that says what came of it.
fn hang_up(child: &ChildServer, outcome: &str) {
    let seen = |text: &str| child.log_text().matches(text).count();
    let before = seen(outcome);
    std::process::Command::new("kill").args(["-HUP", &child.child.id().to_string()]).status().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen(outcome) == before {
        assert!(std::time::Instant::now() < deadline, "no {outcome:?} in the log:\n{}", child.log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `GET` of each path over HTTPS trusting `ca`, with `token` if any: the status and body of
/// each, or status 0 when no answer came (as from a plaintext request to a TLS port).
fn https_get(base: &str, ca: &Path, token: Option<&str>, paths: &[&str]) -> Vec<(u16, String)> {
    let script = r#"
import json, ssl, sys, urllib.error, urllib.request
base, ca, token, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
context = ssl.create_default_context(cafile=ca)
def get(path):
    headers = {"Authorization": "Bearer " + token} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), context=context, timeout=10) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]
    except Exception as e:
        return [0, repr(e)]
print(json.dumps([get(p) for p in paths]))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, base, ca.to_str().unwrap(), token.unwrap_or("")])
        .args(paths)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_speaks_tls_with_the_servers_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ours = Authority::new("ours");
    let mut config = config(&dir.path().join("data"));
    config.server.tls = server_files(dir.path(), &ours, None);
    let port = leadscore_tests::free_port();
    config.console.listen = format!("127.0.0.1:{port}");
    let sha256 = leadscore::config::tokens::hex(&leadscore::config::tokens::digest("ls_ops"));
    config.auth.tokens.push(leadscore::config::TokenConfig { name: "ops".into(), sha256, roles: vec!["admin".into()] });
    let server = TestServer::try_start_tls(config, &ours.pem(), None).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ours.pem()).unwrap();

    let https = format!("https://localhost:{port}");
    let answers = https_get(&https, &ca, Some("ls_ops"), &["/", "/api/stats"]);
    assert_eq!(answers[0].0, 200, "{answers:?}");
    assert!(answers[0].1.contains("Leadscore console"), "{answers:?}");
    assert_eq!(answers[1].0, 200, "{answers:?}");
    assert!(answers[1].1.contains("\"leads\""), "{answers:?}");
    assert_eq!(https_get(&https, &ca, None, &["/api/stats"])[0].0, 401);
    // Plain HTTP gets no answer from a TLS port.
    let plain = https_get(&format!("http://localhost:{port}"), &ca, Some("ls_ops"), &["/api/stats"]);
    assert_eq!(plain[0].0, 0, "{plain:?}");
    // Nor does a client that trusts another authority.
    let theirs = dir.path().join("theirs.pem");
    std::fs::write(&theirs, Authority::new("theirs").pem()).unwrap();
    let untrusted = https_get(&https, &theirs, Some("ls_ops"), &["/api/stats"]);
    assert!(untrusted[0].0 == 0 && untrusted[0].1.contains("CERTIFICATE_VERIFY_FAILED"), "{untrusted:?}");
    server.stop().await;
}
