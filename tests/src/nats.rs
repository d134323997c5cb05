//! Real NATS servers for the cluster tests: three `nats-server` processes on loopback, routed
//! into one JetStream cluster with `sync_interval: always`, each with its own store directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_ports, http_get, python_env};

/// The pinned `nats-server` (see `examples/cluster/nats-server.txt`).
pub fn nats_server_binary() -> PathBuf {
    python_env().join("bin").join("nats-server")
}

/// One server of the cluster, stopped when dropped.
pub struct NatsServer {
    pub name: String,
    pub url: String,
    monitor: String,
    config: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster of NATS servers under one temporary directory.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` servers and waits until JetStream answers on every one.
    pub fn start(size: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = free_ports(3 * size).chunks(3).map(|p| (p[0], p[1], p[2])).collect();
        let routes: Vec<String> = ports.iter().map(|(_, route, _)| format!("nats-route://127.0.0.1:{route}")).collect();
        let servers = ports
            .iter()
            .enumerate()
            .map(|(i, &(client, route, monitor))| {
                let name = format!("nats-{}", i + 1);
                let store = dir.path().join(&name);
                let config = dir.path().join(format!("{name}.conf"));
                std::fs::write(&config, server_config(&name, client, route, monitor, &store, &routes)).unwrap();
                NatsServer {
                    name,
                    url: format!("nats://127.0.0.1:{client}"),
                    monitor: format!("127.0.0.1:{monitor}"),
                    config,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self { servers, _dir: dir };
        for server in &mut cluster.servers {
            server.start();
        }
        for server in &cluster.servers {
            server.wait_ready();
        }
        cluster.wait_for_meta_leader();
        cluster
    }

    /// Waits until every server knows the JetStream meta leader, which creates streams.
    fn wait_for_meta_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for server in &self.servers {
            while !http_get(&server.monitor, "/jsz", &[]).body.contains("\"leader\":") {
                assert!(Instant::now() < deadline, "{} knows no JetStream meta leader within 30 s", server.name);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url.clone()).collect()
    }

    /// The index of the server leading `stream`'s replicas.
    pub fn stream_leader(&self, stream: &str) -> usize {
        let nats = leadscore_cluster::Nats::connect(&self.urls(), "observer").unwrap();
        let (js, name) = (nats.jetstream().clone(), stream.to_owned());
        let info = nats.run(async move { js.get_stream(name).await.map(|s| s.cached_info().clone()) }).unwrap();
        let leader = info.cluster.and_then(|c| c.leader).expect("the stream has a leader");
        self.servers.iter().position(|s| s.name == leader).unwrap()
    }
}

/// A server's configuration: JetStream on file storage synced on every write (acknowledged
/// writes survive a machine's loss only so), routes to every server, and payloads up to 8 MiB
/// (an import's batch is one message).
fn server_config(name: &str, client: u16, route: u16, monitor: u16, store: &Path, routes: &[String]) -> String {
    let routes = routes.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "server_name: {name}\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{monitor}\"\nmax_payload: 8MB\n\
         jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n\
         cluster {{\n  name: leadscore\n  listen: \"127.0.0.1:{route}\"\n  routes: [{routes}]\n}}\n",
        store.display()
    )
}

impl NatsServer {
    /// Starts (or restarts) the process, its output in a log file beside its configuration.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::File::create(self.config.with_extension("log")).unwrap();
        let child = Command::new(nats_server_binary())
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
    }

    /// Waits until the server's JetStream is current with the cluster (`/healthz`).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let healthy = std::net::TcpStream::connect(&self.monitor).is_ok()
                && http_get(&self.monitor, "/healthz", &[]).code == 200;
            if healthy {
                return;
            }
            assert!(Instant::now() < deadline, "{} not healthy within 30 s: {}", self.name, self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the process at once (SIGKILL), as a machine's loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the server wrote, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
