//! Assembles the server: opens the store, registers the services, health and reflection, runs
//! background maintenance, and shuts down in order (NOT_SERVING, drain, sync).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use leadscore_proto::tonic::server::NamedService;
use leadscore_proto::tonic::service::{Routes, RoutesBuilder};
use leadscore_proto::tonic::transport::Server;
use leadscore_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tracing::{error, info, warn};

use crate::api::Context;
use crate::ops::admission::AdmissionLayer;
use crate::ops::auth::Tokens;
use crate::ops::gathered::{self, Gathered};
use crate::ops::limits::Limits;
use crate::ops::telemetry::{self, EngineGauges, RpcMetricsLayer};
use crate::ops::tls::{Speaks, Tls};
use crate::ops::watchdog;
use crate::{console, maintenance};
use leadscore_config::{Config, ConfigError};
use leadscore_services::dialer::Dialer;
use leadscore_services::generation::{Generation, Generations};
use leadscore_services::routing::Router;
use leadscore_store::Store;
use leadscore_store::clock::Clock;

/// The names health reports on, "" being the whole server.
const SERVICES: &[&str] = &[
    "",
    <pb::lead_service_server::LeadServiceServer<Context> as NamedService>::NAME,
    <pb::scoring_service_server::ScoringServiceServer<Context> as NamedService>::NAME,
    <pb::dialer_service_server::DialerServiceServer<Context> as NamedService>::NAME,
    <pb::routing_service_server::RoutingServiceServer<Context> as NamedService>::NAME,
    <pb::admin_service_server::AdminServiceServer<Context> as NamedService>::NAME,
];

/// Serves on `listener` until `shutdown` resolves, then drains in-flight calls and syncs the
/// log. The listener is bound by the caller, so tests can pass `127.0.0.1:0`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started_at_ms = clock.now_ms();
    // A configuration whose rules do not compile is refused before anything is created.
    let problems = Generation::problems(&config);
    if !problems.is_empty() {
        return Err(ConfigError { problems }.into());
    }
    let ports = Ports::check(&config, listener.local_addr()?)?;
    if ports.metrics.is_some() {
        // Installed before the engine starts: the modules keep the handles they first resolve.
        telemetry::handle();
    }
    if let Some(cluster) = config.cluster.clone() {
        return crate::node::run(listener, config, cluster, clock, ports, shutdown).await;
    }
    // Streams that never end by themselves (score watches) end when this turns true.
    let (closing, closing_rx) = watch::channel(false);
    let context = open_services(config, clock, started_at_ms, closing_rx).await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICES {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    // One admission for both ports: a token's rate counts its console calls too.
    let limits = Arc::new(Limits::new(&context.config.limits));
    let admission = AdmissionLayer { tokens: ports.tokens.clone(), limits };
    let background = Background::start(&context, &ports, &health, &closing, &admission).await?;
    let stopping = async move {
        shutdown.await;
        info!("shutting down: health is NOT_SERVING, in-flight calls finish");
        for name in SERVICES {
            health.set_service_status(*name, ServingStatus::NotServing).await;
        }
        let _ = closing.send(true);
    };
    let store = context.store.clone();
    let config = context.config.clone();
    serve_grpc(&config, services(&context), listener, ports, admission, health_service, stopping).await?;
    background.stop().await?;
    tokio::task::spawn_blocking(move || store.sync()).await?.context("syncing the log at shutdown")?;
    info!("log synced, stopped");
    Ok(())
}

/// The ports to serve and what guards them, checked before anything is opened.
pub(crate) struct Ports {
    address: SocketAddr,
    pub(crate) console: Option<SocketAddr>,
    pub(crate) metrics: Option<SocketAddr>,
    pub(crate) tokens: Option<Arc<Tokens>>,
    pub(crate) tls: Option<Arc<Tls>>,
}

impl Ports {
    /// Loads the tokens and TLS files, and refuses a port reachable beyond this machine
    /// without them unless `server.insecure` says so on purpose.
    fn check(config: &Config, address: SocketAddr) -> anyhow::Result<Self> {
        let tokens = Tokens::new(&config.auth).map(Arc::new);
        let tls = match config.server.tls.enabled() {
            true => Some(Arc::new(
                Tls::load(&config.server.tls).map_err(|problem| ConfigError { problems: vec![problem] })?,
            )),
            false => None,
        };
        let listen = |key: &str, text: &str| match text {
            "" => Ok(None),
            listen => listen.parse::<SocketAddr>().map(Some).with_context(|| key.to_owned()),
        };
        let console = listen("console.listen", &config.console.listen)?;
        let metrics = listen("metrics.listen", &config.metrics.listen)?;
        // The console takes the same tokens and TLS as the gRPC port; the metrics port has
        // neither, so it stays on loopback unless told so.
        let lacks = missing(tokens.is_none(), tls.is_none());
        let ports = [
            ("server.listen", Some(address), lacks),
            ("console.listen", console, lacks),
            ("metrics.listen", metrics, Some("no token and no TLS on /metrics")),
        ];
        for (key, at, lacks) in ports {
            if let (Some(at), Some(lacks)) = (at, lacks)
                && !at.ip().is_loopback()
                && !config.server.insecure
            {
                anyhow::bail!(
                    "{key}: {} is reachable beyond this machine, and there is {lacks}; \
                     set server.insecure = true to serve there so on purpose",
                    at.ip(),
                );
            }
        }
        Ok(Self { address, console, metrics, tokens, tls })
    }
}

/// Opens the store, then the services over it: everything the handlers need.
async fn open_services(
    config: Config,
    clock: Arc<dyn Clock>,
    started_at_ms: i64,
    closing: watch::Receiver<bool>,
) -> anyhow::Result<Context> {
    tokio::task::spawn_blocking(move || {
        let store = Store::open(config.store_options(), clock.clone())?;
        let context = services_over(store, (config, 0), clock, started_at_ms, closing)?;
        let preparing = context.dialer.clone();
        tokio::task::spawn_blocking(move || preparing.prepare());
        Ok(context)
    })
    .await?
}

/// Takes `config` at `version` (0: the file's), or the configuration the store logged at run
/// time if newer, scores every lead and starts the router and the dialer over `store`. Blocks:
/// it scores every lead.
pub(crate) fn services_over(
    store: Arc<Store>,
    (config, version): (Config, u64),
    clock: Arc<dyn Clock>,
    started_at_ms: i64,
    closing: watch::Receiver<bool>,
) -> anyhow::Result<Context> {
    // A configuration changed at run time was logged, and wins over the file's runtime sections.
    let (config, config_version) = match store.logged_config() {
        Some((logged, runtime)) if logged > version => {
            let version = logged;
            let logged = config
                .with_runtime_sections(&runtime)
                .with_context(|| format!("the configuration logged at version {version} no longer loads"))?;
            if logged.runtime_toml() != config.runtime_toml() {
                warn!(version, "the runtime sections changed through UpdateConfig override the configuration file's");
            }
            (logged, version)
        }
        _ => (config, version),
    };
    let config = Arc::new(config);
    let (scoring, generations) = Generations::start(store.clone(), clock.clone(), config.clone(), config_version)
        .map_err(|problems| ConfigError { problems })
        .with_context(|| format!("the configuration at version {config_version} does not compile"))?;
    let scorers = generations.current().pipeline.plugins.len();
    info!(leads = scoring.scored(), scorers, "every lead scored");
    let router = Arc::new(Router::new(store.clone(), scoring.clone(), generations.clone(), clock.clone()));
    let dialer = Dialer::start(store.clone(), scoring.clone(), generations.clone(), router.clone(), clock.clone());
    Ok(Context {
        closing,
        store,
        scoring,
        generations,
        dialer,
        router,
        config,
        clock,
        erased: Arc::new(Notify::new()),
        started_at_ms,
        watchdog_stalls: Arc::default(),
    })
}

/// The work beside the gRPC port, stopped in order at shutdown.
struct Background {
    stop_maintenance: watch::Sender<bool>,
    maintenance: JoinHandle<()>,
    sweep: JoinHandle<()>,
    /// The TLS reload, the metrics port and the console, as configured.
    ports: Vec<JoinHandle<()>>,
    watchdog: std::thread::JoinHandle<()>,
}

impl Background {
    async fn start(
        context: &Context,
        ports: &Ports,
        health: &HealthReporter,
        closing: &watch::Sender<bool>,
        admission: &AdmissionLayer,
    ) -> anyhow::Result<Self> {
        let (store, dialer) = (context.store.clone(), context.dialer.clone());
        let gates = move || [store.writer_gate()].into_iter().chain(dialer.gates()).collect();
        let stall = Duration::from_millis(context.config.server.stall_ms);
        let stalls = context.watchdog_stalls.clone();
        let watchdog = watchdog::spawn(gates, stall, health.clone(), SERVICES, stalls, closing.subscribe());
        let (stop_maintenance, stopped) = watch::channel(false);
        let (store, config, erased) = (context.store.clone(), context.config.clone(), context.erased.clone());
        let maintenance = tokio::spawn(maintenance::run(store, config, erased, stopped.clone()));
        let sweep = tokio::spawn(maintenance::sweep(context.scoring.clone(), context.dialer.clone(), stopped));
        let mut tasks = Vec::new();
        if let Some(tls) = &ports.tls {
            tasks.push(tokio::spawn(reload_on_hangup(tls.clone(), closing.subscribe(), || Ok(()))));
        }
        if let Some(listen) = ports.metrics {
            let listener =
                TcpListener::bind(listen).await.with_context(|| format!("metrics.listen: binding {listen}"))?;
            info!(address = %listener.local_addr()?, "metrics at /metrics");
            let gauges = Arc::new(EngineGauges {
                store: context.store.clone(),
                scoring: context.scoring.clone(),
                dialer: context.dialer.clone(),
            });
            tasks.push(tokio::spawn(telemetry::serve(listener, telemetry::handle(), gauges, closing.subscribe())));
        }
        if let Some(listen) = ports.console {
            let listener =
                TcpListener::bind(listen).await.with_context(|| format!("console.listen: binding {listen}"))?;
            info!(address = %listener.local_addr()?, tls = ports.tls.is_some(), "web console");
            let serving =
                console::serve(listener, ports.tls.clone(), context.clone(), admission.clone(), closing.subscribe());
            tasks.push(tokio::spawn(async move {
                if let Err(err) = serving.await {
                    warn!(error = %err, "the web console stopped");
                }
            }));
        }
        Ok(Self { stop_maintenance, maintenance, sweep, ports: tasks, watchdog })
    }

    /// Once the gRPC port has drained: the ports close (they watch `closing`), maintenance
    /// finishes its round, and the watchdog stops.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop_maintenance.send(true);
        for task in self.ports {
            task.await?;
        }
        self.maintenance.await?;
        self.sweep.await?;
        let watchdog = self.watchdog;
        tokio::task::spawn_blocking(move || watchdog.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the watchdog panicked"))?;
        Ok(())
    }
}

/// Each service family takes and sends messages up to its own bound, takes gzip and zstd, and
/// answers compressed a client that accepts it (`server.compression`; small unary answers go
/// plain, see `api::answer`).
macro_rules! family {
    ($module:ident :: $server:ident, $handler:expr, $config:expr, $family:literal) => {{
        use leadscore_proto::tonic::codec::CompressionEncoding::{Gzip, Zstd};
        let max = $config.message_bytes($family);
        let server = pb::$module::$server::new($handler)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
            .accept_compressed(Gzip)
            .accept_compressed(Zstd);
        match $config.server.compression {
            true => server.send_compressed(Gzip).send_compressed(Zstd),
            false => server,
        }
    }};
}
pub(crate) use family;

/// The single-node services, all over one `Context`.
fn services(context: &Context) -> Routes {
    let config = &context.config;
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(family!(lead_service_server::LeadServiceServer, context.clone(), config, "leads"))
        .add_service(family!(scoring_service_server::ScoringServiceServer, context.clone(), config, "scoring"))
        .add_service(family!(dialer_service_server::DialerServiceServer, context.clone(), config, "dialer"))
        .add_service(family!(routing_service_server::RoutingServiceServer, context.clone(), config, "routing"))
        .add_service(family!(admin_service_server::AdminServiceServer, context.clone(), config, "admin"));
    routes.routes()
}

/// Serves the gRPC services, health and reflection until `stopping` resolves, then lets calls
/// in flight finish within the shutdown grace.
pub(crate) async fn serve_grpc(
    config: &Config,
    services: Routes,
    listener: TcpListener,
    ports: Ports,
    admission: AdmissionLayer,
    health_service: HealthServer<impl Health>,
    stopping: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Health's own descriptors are registered too: grpcurl needs them to call Health/Check.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(leadscore_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    use leadscore_proto::tonic::codec::CompressionEncoding::{Gzip, Zstd};
    let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
    let reflection_v1alpha = reflection().build_v1alpha().context("building reflection v1alpha")?;
    // Last, once everything else is up: tests and scripts wait for this line.
    let (address, tls) = (ports.address, ports.tls);
    info!(%address, auth = ports.tokens.is_some(), tls = tls.is_some(), data_dir = %config.store.data_dir.display(), "serving");
    // Layers added first see a call first: metrics count refusals too.
    let routes = Server::builder()
        .max_concurrent_streams(config.limits.max_streams_per_connection)
        .layer(RpcMetricsLayer::default())
        .layer(admission)
        .add_routes(services)
        .add_service(health_service.accept_compressed(Gzip).accept_compressed(Zstd))
        .add_service(reflection_v1.accept_compressed(Gzip).accept_compressed(Zstd))
        .add_service(reflection_v1alpha.accept_compressed(Gzip).accept_compressed(Zstd));
    let (draining, drain_started) = tokio::sync::oneshot::channel();
    let stopping = async move {
        stopping.await;
        let _ = draining.send(());
    };
    let serve: std::pin::Pin<Box<dyn Future<Output = Result<(), _>> + Send>> = match tls {
        Some(tls) => {
            let incoming = tls.incoming(listener, Speaks::Grpc).map(|tls| tls.map(Gathered));
            Box::pin(routes.serve_with_incoming_shutdown(incoming, stopping))
        }
        None => Box::pin(routes.serve_with_incoming_shutdown(gathered::accepted(listener), stopping)),
    };
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    tokio::select! {
        served = serve => served?,
        () = async {
            if drain_started.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending().await
            }
        } => warn!(grace_ms = grace.as_millis() as u64, "in-flight calls outlived the shutdown grace period and were cut off"),
    }
    Ok(())
}

/// Reads the TLS files again on each SIGHUP until the server closes, then does `then` (a node
/// renews how it calls the other nodes); a failed reload is logged and the certificate in use
/// stays.
pub(crate) async fn reload_on_hangup(
    tls: Arc<Tls>,
    mut closing: watch::Receiver<bool>,
    then: impl Fn() -> Result<(), String> + Clone + Send + 'static,
) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        warn!("SIGHUP cannot be watched: TLS files are not reloaded");
        return;
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {
                let (reloading, then) = (tls.clone(), then.clone());
                match tokio::task::spawn_blocking(move || reloading.reload().and_then(|()| then())).await {
                    Ok(Ok(())) => info!("SIGHUP: TLS certificate and key reloaded; new connections use them"),
                    Ok(Err(problem)) => {
                        error!(%problem, "SIGHUP: TLS files not reloaded; the certificate in use stays")
                    }
                    Err(panicked) => error!(%panicked, "SIGHUP: reloading the TLS files panicked"),
                }
            }
            changed = closing.changed() => if changed.is_err() || *closing.borrow() {
                return;
            },
        }
    }
}

/// What a port beyond loopback lacks, of tokens and TLS; `None` when it lacks neither.
fn missing(no_tokens: bool, no_tls: bool) -> Option<&'static str> {
    match (no_tokens, no_tls) {
        (true, true) => Some("no token ([[auth.tokens]]) and no TLS ([server.tls])"),
        (true, false) => Some("no token ([[auth.tokens]])"),
        (false, true) => Some("no TLS ([server.tls]): tokens would cross the network in clear text"),
        (false, false) => None,
    }
}

/// A future that resolves on SIGINT or SIGTERM.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed now, not when first awaited: a signal sent as soon as the server says it is
    // serving must stop it gracefully, not kill it.
    let (mut interrupt, mut terminate) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => info!(signal = "SIGINT", "stop requested"),
            _ = terminate.recv() => info!(signal = "SIGTERM", "stop requested"),
        }
    })
}
