//! Load shedding: a bound on the calls served at once and a token bucket per caller. A call
//! over either is refused at once with RESOURCE_EXHAUSTED (with `retry-after`, in seconds, when
//! the bucket knows when it refills) instead of waiting in a queue that only grows. Health
//! checks pass through both, so an orchestrator sees a busy server as alive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadscore_proto::tonic::{Code, Status};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic_types::ErrorDetails;

use crate::api::status::detailed;
use crate::ops::auth::Caller;
use leadscore_config::LimitsConfig;
use leadscore_store::sync::{Mutex, Rank};

/// What the layer shares between connections.
#[derive(Debug)]
pub struct Limits {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    /// Calls per second and burst per caller; `None` without a rate.
    rate: Option<(f64, f64)>,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            max_in_flight: config.max_in_flight,
            rate: (config.rate_per_token > 0.0).then_some((config.rate_per_token, config.burst_per_token)),
            buckets: Mutex::new(Rank::RateLimits, HashMap::new()),
        }
    }

    /// Admits a call to `path` by `caller`, or says why not; the permit is held while the call
    /// is served.
    pub fn admit(&self, path: &str, caller: Option<&Caller>) -> Result<Option<OwnedSemaphorePermit>, Status> {
        if path.starts_with("/grpc.health.v1.Health/") {
            return Ok(None);
        }
        if let (Some((rate, burst)), Some(caller)) = (self.rate, caller) {
            self.take_token(&caller.name, rate, burst)?;
        }
        match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => {
                metrics::counter!("leadscore_shed_calls_total", "reason" => "in_flight").increment(1);
                let message = format!(
                    "the server is serving {} calls, its limit (limits.max_in_flight); retry shortly",
                    self.max_in_flight
                );
                let details = ErrorDetails::with_retry_info(Some(Duration::from_millis(100)));
                Err(detailed(Code::ResourceExhausted, message, "OVERLOADED", &[], details))
            }
        }
    }

    fn take_token(&self, caller: &Arc<str>, rate: f64, burst: f64) -> Result<(), Status> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(caller.clone()).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
        drop(buckets);
        metrics::counter!("leadscore_shed_calls_total", "reason" => "rate").increment(1);
        // The wait twice: exactly as google.rpc.RetryInfo, which gRPC client libraries read, and
        // in whole seconds, at least one, as HTTP's `retry-after`.
        let mut status = detailed(
            Code::ResourceExhausted,
            format!("token {caller:?} is over its rate of {rate} calls per second (limits.rate_per_token)"),
            "RATE_LIMITED",
            &[("token", caller.to_string())],
            ErrorDetails::with_retry_info(Some(wait)),
        );
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        status
            .metadata_mut()
            .insert("retry-after", seconds.to_string().parse().expect("digits are a valid header value"));
        Err(status)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use leadscore_proto::tonic::codegen::{BoxFuture, Context, Poll, Service, http};

    use super::*;
    use crate::ops::admission::AdmissionLayer;

    /// A service whose calls finish only when given a permit each.
    #[derive(Clone)]
    struct Held(Arc<Semaphore>);

    impl Service<http::Request<()>> for Held {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let release = self.0.clone();
            Box::pin(async move {
                release.acquire().await.expect("never closed").forget();
                Ok(http::Response::new("served".into()))
            })
        }
    }

    fn call(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    fn code(response: &http::Response<String>) -> Option<&str> {
        response.headers().get("grpc-status").map(|code| code.to_str().unwrap())
    }

    #[tokio::test]
    async fn calls_beyond_the_bound_are_refused_at_once_and_health_still_passes() {
        let config = LimitsConfig { max_in_flight: 2, ..LimitsConfig::default() };
        let release = Arc::new(Semaphore::new(0));
        let layer = AdmissionLayer { tokens: None, limits: Arc::new(Limits::new(&config)) };
        let mut service = tower_layer::Layer::layer(&layer, Held(release.clone()));
        let first = tokio::spawn(service.call(call("/leadscore.v1.ScoringService/Score")));
        let second = tokio::spawn(service.call(call("/leadscore.v1.ScoringService/Score")));
        let refused = service.call(call("/leadscore.v1.LeadService/GetLead")).await.unwrap();
        assert_eq!(code(&refused), Some("8"), "RESOURCE_EXHAUSTED");
        let health = tokio::spawn(service.call(call("/grpc.health.v1.Health/Check")));
        release.add_permits(3);
        for call in [first, second, health] {
            assert_eq!(call.await.unwrap().unwrap().body(), "served");
        }
        // The permits came back with the responses.
        let again = tokio::spawn(service.call(call("/leadscore.v1.ScoringService/Score")));
        release.add_permits(1);
        assert_eq!(again.await.unwrap().unwrap().body(), "served");
    }
}
