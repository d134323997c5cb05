//! A cluster node: the shards it owns, each a whole engine over its JetStream stream, and the
//! front that sends each call to the engines it concerns (see ARCHITECTURE.md, "The cluster").

mod engines;
mod gauges;
#[macro_use]
mod front;
mod account_feed;
mod accounts;
mod admin;
mod between;
mod configuration;
mod dialing;
mod import;
mod routing;
mod top;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use leadscore_proto::tonic::server::NamedService;
use leadscore_proto::tonic::service::RoutesBuilder;
use leadscore_proto::tonic::transport::{Certificate, ClientTlsConfig, Identity};
use leadscore_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

pub use engines::Engines;
pub use front::Front;
use gauges::ShardGauges;

use crate::console;
use crate::ops::admission::AdmissionLayer;
use crate::ops::limits::Limits;
use crate::ops::telemetry;
use crate::server::{self, Ports, family, serve_grpc};
use leadscore_cluster::{
    ConfigLog, Directory, Membership, MembershipSettings, Nats, Owners, ShardStores, StreamSettings,
};
use leadscore_config::{ClusterConfig, Config};
use leadscore_store::clock::Clock;
use leadscore_store::{FsyncPolicy, StoreOptions};

/// The services a node serves so far, "" being the whole node.
const SERVICES: &[&str] = &[
    "",
    <pb::lead_service_server::LeadServiceServer<Front> as NamedService>::NAME,
    <pb::scoring_service_server::ScoringServiceServer<Front> as NamedService>::NAME,
    <pb::dialer_service_server::DialerServiceServer<Front> as NamedService>::NAME,
    <pb::cluster_service_server::ClusterServiceServer<Front> as NamedService>::NAME,
    <pb::admin_service_server::AdminServiceServer<Front> as NamedService>::NAME,
];

/// How often the node looks at its NATS connection for health.
const NATS_CHECK: Duration = Duration::from_millis(250);

/// Joins the cluster `config.cluster` names and serves until `shutdown` resolves, then leaves
/// it: the node's shards are given back at once rather than after their leases lapse.
pub(crate) async fn run(
    listener: TcpListener,
    config: Config,
    cluster: ClusterConfig,
    clock: Arc<dyn Clock>,
    ports: Ports,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let peers = peer_tls(&config, &cluster)?;
    let started_at_ms = clock.now_ms();
    let address = match cluster.advertise.as_str() {
        "" => listener.local_addr()?.to_string(),
        advertised => advertised.to_owned(),
    };
    let lease = Duration::from_millis(cluster.lease_ms);
    let (nats, owners, log) = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || {
            let nats = Nats::connect(&cluster.nats, &cluster.node)?;
            let owners = Owners::open(&nats, lease, cluster.replicas)?;
            let log = ConfigLog::open(&nats, cluster.replicas)?;
            anyhow::Ok((nats, owners, log))
        })
        .await?
        .context("cluster: joining through NATS")?
    };
    let directory = Directory::watch(&owners);
    // Each answer waits for JetStream's acknowledgement, so an acknowledged write is stored.
    let options = StoreOptions { fsync: FsyncPolicy::Always, ..config.store_options() };
    let settings = StreamSettings { replicas: cluster.replicas, ..StreamSettings::default() };
    let stores = ShardStores::new(&nats, options, settings, clock.clone());
    let (closing, closing_rx) = watch::channel(false);
    let engines = Arc::new(Engines::new(stores, (config.clone(), log), clock.clone(), started_at_ms, closing_rx));
    let following = tokio::spawn(engines.clone().follow());
    let membership = {
        let (engines, node, shards) = (engines.clone(), cluster.node.clone(), cluster.shards);
        let settings = MembershipSettings { node, address: address.clone(), shards, round: lease / 3 };
        tokio::task::spawn_blocking(move || Membership::start(owners, engines, settings)).await?.context("cluster")?
    };
    let metrics = match ports.metrics {
        Some(listen) => {
            let listener =
                TcpListener::bind(listen).await.with_context(|| format!("metrics.listen: binding {listen}"))?;
            info!(address = %listener.local_addr()?, "metrics at /metrics, per shard");
            let gauges = ShardGauges { engines: engines.clone(), clock: clock.clone(), published: Default::default() };
            let serving = telemetry::serve(listener, telemetry::handle(), Arc::new(gauges), closing.subscribe());
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    let feeding =
        tokio::spawn(account_feed::run(engines.clone(), nats.clone(), cluster.node.clone(), closing.subscribe()));
    let front = Front::new(cluster.node.clone(), cluster.shards, engines, directory, &config, clock, peers);
    // SIGHUP reloads the certificate this node serves and shows the other nodes.
    let reloading = ports.tls.clone().map(|tls| {
        let (front, config, cluster) = (front.clone(), config.clone(), cluster.clone());
        let renew = move || {
            let tls = peer_tls(&config, &cluster).map_err(|e| format!("{e:#}"))?;
            front.renew_peer_tls(tls);
            Ok(())
        };
        tokio::spawn(server::reload_on_hangup(tls, closing.subscribe(), renew))
    });
    let limits = Arc::new(Limits::new(&config.limits));
    let admission = AdmissionLayer { tokens: ports.tokens.clone(), limits };
    // The console reads the front, as a client through this node would.
    let console = match ports.console {
        Some(listen) => {
            let listener =
                TcpListener::bind(listen).await.with_context(|| format!("console.listen: binding {listen}"))?;
            info!(address = %listener.local_addr()?, "web console, over every shard");
            let tls = ports.tls.clone();
            let serving = console::serve(listener, tls, front.clone(), admission.clone(), closing.subscribe());
            Some(tokio::spawn(async move {
                if let Err(err) = serving.await {
                    warn!(error = %err, "the web console stopped");
                }
            }))
        }
        None => None,
    };
    let mut services = RoutesBuilder::default();
    services
        .add_service(family!(lead_service_server::LeadServiceServer, front.clone(), config, "leads"))
        .add_service(family!(scoring_service_server::ScoringServiceServer, front.clone(), config, "scoring"))
        .add_service(family!(dialer_service_server::DialerServiceServer, front.clone(), config, "dialer"))
        .add_service(family!(admin_service_server::AdminServiceServer, front.clone(), config, "admin"))
        .add_service(family!(routing_service_server::RoutingServiceServer, front.clone(), config, "routing"))
        .add_service(family!(cluster_service_server::ClusterServiceServer, front, config, "dialer"));
    let (health, health_service) = tonic_health::server::health_reporter();
    let watching = tokio::spawn(watch_nats(nats.clone(), health.clone(), closing.subscribe()));
    info!(node = %cluster.node, %address, shards = cluster.shards, "cluster node joined");
    let stopping = async move {
        shutdown.await;
        info!("shutting down: health is NOT_SERVING, in-flight calls finish");
        let _ = closing.send(true);
        set_health(&health, ServingStatus::NotServing).await;
    };
    serve_grpc(&config, services.routes(), listener, ports, admission, health_service, stopping).await?;
    watching.await?;
    following.await?;
    feeding.await?;
    for port in [metrics, console, reloading].into_iter().flatten() {
        port.await?;
    }
    tokio::task::spawn_blocking(move || {
        membership.leave();
        drop(nats);
    })
    .await?;
    info!("left the cluster, stopped");
    Ok(())
}

/// How this node calls the others when they serve TLS: trusting `cluster.ca_file`, showing its
/// own certificate (read again on SIGHUP).
fn peer_tls(config: &Config, cluster: &ClusterConfig) -> anyhow::Result<Option<ClientTlsConfig>> {
    let tls = &config.server.tls;
    if !tls.enabled() {
        return Ok(None);
    }
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{field}: reading {}", path.display()))
    };
    let ca = read("cluster.ca_file", &cluster.ca_file)?;
    let identity =
        Identity::from_pem(read("server.tls.cert_file", &tls.cert_file)?, read("server.tls.key_file", &tls.key_file)?);
    Ok(Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).identity(identity)))
}

/// Health follows the NATS connection: a node that cannot reach NATS can neither write nor
/// know it still owns its shards, so it says NOT_SERVING until the connection is back.
async fn watch_nats(nats: Nats, health: HealthReporter, mut closing: watch::Receiver<bool>) {
    let mut serving = None;
    loop {
        let connected = nats.connected();
        if serving != Some(connected) {
            match connected {
                true => info!("NATS reachable: serving"),
                false => warn!("NATS unreachable: health is NOT_SERVING until it is back"),
            }
            let status = if connected { ServingStatus::Serving } else { ServingStatus::NotServing };
            set_health(&health, status).await;
            serving = Some(connected);
        }
        tokio::select! {
            () = tokio::time::sleep(NATS_CHECK) => {}
            _ = closing.changed() => return,
        }
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for name in SERVICES {
        health.set_service_status(*name, status).await;
    }
}
