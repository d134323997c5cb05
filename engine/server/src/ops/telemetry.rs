//! Prometheus metrics, every name prefixed `leadscore_`: the process-wide recorder, the scrape
//! endpoint (`[metrics] listen`, path `/metrics`), a layer that counts and times every RPC by
//! method and status code, and gauges refreshed from the engine's state. The modules that do
//! the work count their own events (`metrics::counter!` and friends), which cost an atomic add
//! when nothing scrapes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper_util::rt::TokioIo;
use leadscore_proto::tonic::codegen::{Service, http};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use leadscore_services::dialer::Dialer;
use leadscore_services::scoring::Scoring;
use leadscore_store::Store;
use leadscore_store::buckets::{self, Buckets, Family};

/// Seconds, from 100 µs to 10 s.
const SECONDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Records written together.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The process's recorder: installed by the first server, shared by any later one (tests run
/// several servers in one process).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = |builder: PrometheusBuilder, suffix: &str, buckets: &[f64]| {
                builder.set_buckets_for_metric(Matcher::Suffix(suffix.into()), buckets).expect("buckets are not empty")
            };
            let builder = buckets(PrometheusBuilder::new(), "_seconds", SECONDS);
            let builder = buckets(builder, "_batch_records", BATCH);
            let handle = builder.install_recorder().expect("no other metrics recorder is installed");
            buckets::record_from_now();
            describe();
            handle
        })
        .clone()
}

/// The help text of every metric.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("leadscore_rpc_requests_total", "gRPC calls by method and status code");
    describe_counter!("leadscore_dialer_claims_total", "Leads claimed by agents, by campaign");
    describe_counter!("leadscore_dialer_outcomes_total", "Call outcomes reported, by campaign and result");
    describe_counter!("leadscore_dialer_releases_total", "Leases handed back without a call, by campaign");
    describe_gauge!("leadscore_dialer_queue_leads", "Leads a campaign's dialer queue holds, callable or waiting");
    describe_gauge!("leadscore_dialer_ineligible_leads", "Leads a campaign may not call now, by reason");
    describe_counter!("leadscore_scorer_calls_total", "Batches a scorer plugin was called with");
    describe_counter!("leadscore_scorer_faults_total", "Scorer calls that panicked or returned out-of-range values");
    describe_counter!("leadscore_scorer_quarantines_total", "Times a scorer was quarantined after too many faults");
    describe_histogram!("leadscore_wal_append_seconds", "Time to append one write to the log");
    describe_histogram!("leadscore_wal_fsync_seconds", "Time to sync the log to disk");
    describe_counter!("leadscore_wal_bytes_total", "Bytes appended to the log");
    describe_histogram!("leadscore_wal_write_batch_records", "Records appended to the log in one write");
    describe_histogram!("leadscore_wal_group_commit_batch_records", "Records one shared fsync made durable");
    describe_histogram!("leadscore_snapshot_seconds", "Time to write a snapshot");
    describe_histogram!("leadscore_sweep_seconds", "Time to rescore every lead in a sweep");
    describe_counter!(
        "leadscore_abandoned_work_total",
        "Work dropped because its caller stopped waiting (deadline passed, client gone), by stage"
    );
    describe_counter!("leadscore_shed_calls_total", "Calls refused at once by a limit, by reason (in_flight, rate)");
    describe_counter!("leadscore_watchdog_stalls_total", "Times the watchdog found the log or a dialer queue stuck");
    describe_gauge!("leadscore_leads", "Leads stored");
    describe_gauge!("leadscore_shards_served", "Shards this cluster node serves");
    describe_gauge!("leadscore_shard_served", "1 while this cluster node serves the shard, 0 once it moved away");
    describe_gauge!("leadscore_shard_log_position", "The shard's stream sequence this node has applied");
    describe_gauge!("leadscore_shard_log_bytes", "Bytes of the shard's stream since its snapshot");
    describe_gauge!("leadscore_shard_snapshot_age_seconds", "Seconds since the shard's newest snapshot");
    describe_gauge!("leadscore_config_version", "The configuration version the shard serves");
    describe_gauge!("leadscore_events", "Behavioural events stored");
    describe_gauge!("leadscore_accounts", "Accounts with at least one lead, by campaign");
}

/// Serves `GET /metrics` until `closing` turns true, refreshing the gauges on each scrape.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    gauges: Arc<dyn Gauges>,
    mut closing: watch::Receiver<bool>,
) {
    let mut upkeep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    warn!(error = %err, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Histograms drain their samples at upkeep; gauges are read at each scrape.
            _ = upkeep.tick() => {
                handle.run_upkeep();
                continue;
            }
            changed = closing.changed() => if changed.is_err() || *closing.borrow() {
                return;
            } else {
                continue;
            },
        };
        let (handle, gauges) = (handle.clone(), gauges.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let (handle, gauges) = (handle.clone(), gauges.clone());
                async move { Ok::<_, Infallible>(scrape(request, handle, gauges).await) }
            });
            if let Err(err) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                debug!(error = %err, "metrics connection ended");
            }
        });
    }
}

async fn scrape(
    request: http::Request<Incoming>,
    handle: PrometheusHandle,
    gauges: Arc<dyn Gauges>,
) -> http::Response<Full<Bytes>> {
    let response = |status: http::StatusCode, body: String| {
        let mut response = http::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        for (name, value) in crate::console::SECURITY_HEADERS {
            response.headers_mut().insert(name, http::HeaderValue::from_static(value));
        }
        response
    };
    if request.uri().path() != "/metrics" {
        return response(http::StatusCode::NOT_FOUND, "metrics are at /metrics\n".into());
    }
    if request.method() != http::Method::GET {
        return response(http::StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    let text = tokio::task::spawn_blocking(move || {
        gauges.refresh();
        handle.run_upkeep();
        let mut text = handle.render();
        buckets::render(&mut text);
        text
    })
    .await
    .unwrap_or_default();
    let mut ok = response(http::StatusCode::OK, text);
    ok.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4"));
    ok
}

/// Figures read from state at each scrape rather than counted as they happen.
pub trait Gauges: Send + Sync + 'static {
    fn refresh(&self);
}

/// One engine's gauges: a single node's, or a cluster node's per shard.
pub struct EngineGauges {
    pub store: Arc<Store>,
    pub scoring: Arc<Scoring>,
    pub dialer: Arc<Dialer>,
}

/// A gauge's name and labels, as set.
pub type Series = (&'static str, Vec<(&'static str, String)>);

impl EngineGauges {
    /// Sets the engine's gauges, each also labelled with `extra` (a cluster node's shard);
    /// returns the series it set.
    pub fn publish(&self, extra: &[(&'static str, String)]) -> Vec<(Series, f64)> {
        let with = |labels: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
            labels.iter().chain(extra).cloned().collect()
        };
        let stats = self.store.stats();
        let mut set = vec![
            (("leadscore_leads", with(&[])), stats.leads as f64),
            (("leadscore_events", with(&[])), stats.events as f64),
        ];
        for (campaign, accounts) in self.scoring.account_counts() {
            set.push((("leadscore_accounts", with(&[("campaign", campaign.to_string())])), accounts as f64));
        }
        for queue in self.dialer.queue_figures() {
            let campaign = queue.campaign.to_string();
            set.push((("leadscore_dialer_queue_leads", with(&[("campaign", campaign.clone())])), queue.leads as f64));
            for (reason, count) in queue.ineligible {
                let labels = with(&[("campaign", campaign.clone()), ("reason", reason.to_string())]);
                set.push((("leadscore_dialer_ineligible_leads", labels), count as f64));
            }
        }
        for ((name, labels), value) in &set {
            metrics::gauge!(*name, labels).set(*value);
        }
        set
    }
}

impl Gauges for EngineGauges {
    fn refresh(&self) {
        self.publish(&[]);
    }
}

/// Counts and times every RPC by method and status code, and answers a message over its size
/// limit as gRPC does (`oversize`): this layer reads every status already. Each server has its
/// own table, whose handles come from the recorder installed at their first use: a server's
/// metrics port installs it before the first call (`Background::start`).
#[derive(Clone, Debug, Default)]
pub struct RpcMetricsLayer {
    series: Arc<RpcSeries>,
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Measured { inner, series: self.series.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct Measured<S> {
    inner: S,
    series: Arc<RpcSeries>,
}

/// The gRPC status codes, and one slot for a code that is none of them.
const CODES: usize = 18;

/// Every method's series, by the method's index (`Method::index`), each registered at its first
/// use: a call costs an index and an atomic add, not labels built and hashed, and /metrics
/// shows only the codes a method answered.
#[derive(Debug)]
struct RpcSeries(Vec<MethodSeries>);

#[derive(Debug, Default)]
struct MethodSeries {
    requests: [OnceLock<metrics::Counter>; CODES],
    duration: OnceLock<Arc<Buckets>>,
}

static RPC_SECONDS: Family = Family {
    name: "leadscore_rpc_duration_seconds",
    help: "gRPC call durations by method, to the end of a stream",
    bounds: SECONDS,
};

impl Default for RpcSeries {
    fn default() -> Self {
        Self((0..methods().labels.len()).map(|_| MethodSeries::default()).collect())
    }
}

impl RpcSeries {
    fn record(&self, method: Method, code: &[u8], seconds: f64) {
        let series = &self.0[method.index];
        let code = std::str::from_utf8(code).ok().and_then(|c| c.parse::<usize>().ok()).filter(|c| *c < CODES - 1);
        let (slot, name) = code.map_or((CODES - 1, "unknown"), |c| (c, code_name(c as i32)));
        let label = method.label;
        series.requests[slot]
            .get_or_init(|| metrics::counter!("leadscore_rpc_requests_total", "method" => label, "code" => name))
            .increment(1);
        series
            .duration
            .get_or_init(|| buckets::series(&RPC_SECONDS, vec![("method", label.to_owned())]))
            .record(seconds);
    }
}

impl<S, Req, Res> Service<http::Request<Req>> for Measured<S>
where
    S: Service<http::Request<Req>, Response = http::Response<Res>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    Res: Body + Send + 'static,
{
    type Response = http::Response<Timed<Res>>;
    type Error = S::Error;
    type Future = MeasuredCall<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Req>) -> Self::Future {
        let method = method(request.uri().path());
        if method.streams_answers {
            // A stream's answers go plain: tonic compresses message by message, and each of
            // ours (a ranked lead, a crossing, a claim) is small enough that gzip makes it
            // larger, at several times the CPU (bench/compression_bench.sh). tonic takes no
            // per-stream choice, so the stream is not told the client would take gzip.
            request.headers_mut().remove("grpc-accept-encoding");
        }
        let timing = Timing { method, series: self.series.clone(), started: Instant::now(), recorded: false };
        MeasuredCall { call: self.inner.call(request), timing: Some(timing) }
    }
}

pin_project_lite::pin_project! {
    /// A call being served, its timing handed to the answer's body once the answer starts.
    pub struct MeasuredCall<F> {
        #[pin]
        call: F,
        timing: Option<Timing>,
    }
}

impl<F, Res, E> Future for MeasuredCall<F>
where
    F: Future<Output = Result<http::Response<Res>, E>>,
{
    type Output = Result<http::Response<Timed<Res>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // On an error the timing is dropped with this future, and records the call CANCELLED.
        let mut response = ready!(this.call.poll(cx))?;
        let mut timing = this.timing.take().expect("a call is answered once");
        // An error before any message comes as headers only; otherwise the status is in the
        // trailers at the end of the body.
        super::oversize::rewrite(response.headers_mut(), timing.method.label);
        if let Some(code) = response.headers().get(super::oversize::GRPC_STATUS) {
            timing.record(code.as_bytes());
        }
        Poll::Ready(Ok(response.map(|body| Timed { inner: body, timing })))
    }
}

/// One call, recorded once: with its status code, or as CANCELLED when dropped unanswered
/// (the client went away, or the deadline passed: tonic answers that CANCELLED too).
#[derive(Debug)]
struct Timing {
    method: Method,
    series: Arc<RpcSeries>,
    started: Instant,
    recorded: bool,
}

impl Timing {
    fn record(&mut self, code: &[u8]) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        self.series.record(self.method, code, self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        self.record(b"1");
    }
}

/// A method the server serves, as the per-RPC layer needs it.
#[derive(Clone, Copy, Debug)]
pub struct Method {
    /// Its path (`package.Service/Method`) when the server serves that method, else `unknown`.
    /// Labels come from this closed set, so no caller can add series (and memory) by calling
    /// made-up paths.
    pub label: &'static str,
    /// Whether it answers with a stream of messages.
    pub streams_answers: bool,
    /// Its place among the methods (`unknown` has the last).
    index: usize,
}

/// The method a call's path names.
pub fn method(path: &str) -> Method {
    let methods = methods();
    match methods.by_path.get(path.trim_start_matches('/')) {
        Some(&(index, streams_answers)) => Method { label: methods.labels[index], streams_answers, index },
        None => Method { label: "unknown", streams_answers: false, index: methods.labels.len() - 1 },
    }
}

/// Every method of the contract, the health and reflection services, and `unknown` last.
struct Methods {
    /// Keyed by the fast hasher: a made-up path only finds `unknown`, and adds nothing.
    by_path: HashMap<&'static str, (usize, bool), foldhash::fast::RandomState>,
    labels: Vec<&'static str>,
}

fn methods() -> &'static Methods {
    static METHODS: OnceLock<Methods> = OnceLock::new();
    METHODS.get_or_init(|| {
        let contracts = [
            leadscore_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let (mut by_path, mut labels) = (HashMap::default(), Vec::new());
        for contract in contracts {
            let pool = prost_reflect::DescriptorPool::decode(contract).expect("a built-in descriptor set decodes");
            for service in pool.services() {
                for method in service.methods() {
                    // Once per method of the contract, for the life of the process.
                    let path = &*Box::leak(format!("{}/{}", service.full_name(), method.name()).into_boxed_str());
                    by_path.insert(path, (labels.len(), method.is_server_streaming()));
                    labels.push(path);
                }
            }
        }
        labels.push("unknown");
        Methods { by_path, labels }
    })
}

/// The canonical names of gRPC status codes.
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|c| NAMES.get(c)).copied().unwrap_or("unknown")
}

pin_project_lite::pin_project! {
    /// A response body that records its call once the trailers (or the end) go by.
    pub struct Timed<B> {
        #[pin]
        inner: B,
        timing: Timing,
    }
}

impl<B: Body> Body for Timed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut frame = ready!(this.inner.poll_frame(cx));
        match &mut frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_mut() {
                    super::oversize::rewrite(trailers, this.timing.method.label);
                    if let Some(code) = trailers.get(super::oversize::GRPC_STATUS) {
                        this.timing.record(code.as_bytes());
                    }
                }
            }
            Some(Err(_)) => this.timing.record(b"2"),
            None => this.timing.record(b"0"),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Times `work` into a histogram of seconds.
pub fn timed<T>(histogram: &'static str, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = work();
    metrics::histogram!(histogram).record(started.elapsed().as_secs_f64());
    result
}
