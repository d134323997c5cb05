//! A connection to NATS with a runtime of its own, so that the store's synchronous writer
//! threads (and the blocking pool that runs them) can wait for JetStream without being inside
//! an asynchronous runtime themselves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio_stream::StreamExt as _;

/// How long a JetStream request or a publish acknowledgement may take before it counts as
/// unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long idempotent requests are retried while JetStream is electing its leaders (it
/// answers "no responders" or times out meanwhile).
const PATIENCE: Duration = Duration::from_secs(20);

/// A NATS connection shared by a node's shard logs and its ownership leases.
#[derive(Clone, Debug)]
pub struct Nats {
    runtime: Arc<Runtime>,
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

#[derive(Debug)]
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    /// Shuts down without waiting: the last `Nats` may be dropped inside another runtime.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("starting the cluster's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("connecting to NATS at {urls}: {source}")]
    Nats { urls: String, source: async_nats::ConnectError },
}

impl Nats {
    /// Connects to any of `urls` as `node` (the name the NATS servers show for the connection).
    pub fn connect(urls: &[String], node: &str) -> Result<Self, ConnectError> {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("nats").enable_all().build()?;
        let options = async_nats::ConnectOptions::new()
            .name(node)
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT));
        let addresses = urls.to_vec();
        let client = runtime
            .block_on(options.connect(addresses))
            .map_err(|source| ConnectError::Nats { urls: urls.join(","), source })?;
        // The context spawns its acknowledgement task on the runtime it is built in.
        let jetstream = {
            let _inside = runtime.enter();
            jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client.clone())
        };
        Ok(Self { runtime: Arc::new(Runtime(Some(runtime))), client, jetstream })
    }

    /// Whether the connection to NATS is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Runs `future` on the connection's runtime and waits for its output. Never called from
    /// that runtime's own threads.
    pub fn run<F>(&self, future: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (done, output) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let _ = done.send(future.await);
        });
        output.recv().expect("the cluster's runtime runs while a Nats handle lives")
    }

    /// Runs the idempotent request that `request` makes (creating a stream or a bucket if
    /// missing, a read) until it succeeds or `PATIENCE` has passed; returns the last outcome.
    pub fn retrying<F, T, E>(&self, what: &str, request: impl Fn() -> F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let started = std::time::Instant::now();
        loop {
            match self.run(request()) {
                Err(e) if started.elapsed() < PATIENCE => {
                    tracing::warn!(what, cause = %e, "JetStream did not answer; trying again");
                    std::thread::sleep(Duration::from_millis(250));
                }
                outcome => return outcome,
            }
        }
    }

    /// The key-value bucket `config` names, created as it says if it does not exist yet, once
    /// it answers a read: a bucket just created may have no leader for a moment ("no
    /// responders"), and the first write must not meet that.
    pub fn key_value(&self, config: jetstream::kv::Config) -> std::io::Result<jetstream::kv::Store> {
        self.retrying(&config.bucket.clone(), || {
            let (js, config) = (self.jetstream.clone(), config.clone());
            async move {
                let bucket = match js.get_key_value(&config.bucket).await {
                    Ok(bucket) => bucket,
                    Err(_) => js.create_key_value(config).await.map_err(std::io::Error::other)?,
                };
                bucket.get("ready").await.map_err(std::io::Error::other)?;
                Ok(bucket)
            }
        })
    }

    /// Publishes `payload` on `subject` for whoever listens now (core NATS, not a stream): at
    /// most once, without waiting, for what is sent again every round.
    pub fn publish(&self, subject: &'static str, payload: bytes::Bytes) {
        let client = self.client.clone();
        self.spawn(async move {
            if let Err(e) = client.publish(subject, payload).await {
                tracing::debug!(subject, cause = %e, "a publish was not sent; the next round sends it again");
            }
        });
    }

    /// Hands `hear` every message published on `subject` from now on, on the connection's
    /// runtime (so `hear` must not block). The subscription outlives lost connections.
    pub fn listen(&self, subject: &'static str, mut hear: impl FnMut(bytes::Bytes) + Send + 'static) {
        let client = self.client.clone();
        self.spawn(async move {
            loop {
                match client.subscribe(subject).await {
                    Ok(mut messages) => {
                        while let Some(message) = messages.next().await {
                            hear(message.payload);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(subject, cause = %e, "subscribing failed; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    /// The largest message the servers take.
    pub fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    /// Runs `future` on the connection's runtime without waiting for it.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.runtime.0.as_ref().expect("the runtime lives until the last handle goes").spawn(future);
    }
}

/// Whether a key-value update was refused because the key had moved past the revision it
/// named. async-nats 0.51 knows that refusal by JetStream's error 10071, but NATS 2.11 and
/// later answer a key's wrong revision with 10164, which it reports as any other failure.
pub(crate) fn wrong_revision(error: &jetstream::kv::UpdateError) -> bool {
    use jetstream::ErrorCode;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<jetstream::Error>() {
            let code = refused.error_code();
            return code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                || code == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT;
        }
        cause = e.source();
    }
    error.kind() == jetstream::kv::UpdateErrorKind::WrongLastRevision
}
