//! The one place domain errors become gRPC statuses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use leadscore_proto::tonic::Status;

use super::convert::FieldError;
use crate::config::ConfigError;
use crate::dialer::DialError;
use crate::generation::ConfigChangeError;
use crate::plugin::CallError;
use crate::scoring::ScoreError;
use crate::store::StoreError;

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        Status::invalid_argument(format!("{}: {}", e.field, e.rule))
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::UnknownLead { .. } | StoreError::NotFound(_) => Status::not_found(message),
            StoreError::Suppressed { .. }
            | StoreError::ConsentLoosened { .. }
            | StoreError::ErasedDuringLease { .. }
            | StoreError::LeaseEnded { .. }
            | StoreError::UnknownAgent { .. } => Status::failed_precondition(message),
            StoreError::UnknownLease { .. } => Status::not_found(message),
            StoreError::ObjectionLocked { .. } => Status::permission_denied(message),
            StoreError::Limit { .. } => Status::resource_exhausted(message),
            // Nothing was applied, so the client may retry.
            StoreError::Log(_) => {
                tracing::error!(cause = %message, "log write failed");
                Status::unavailable(message)
            }
            StoreError::Snapshot(_) => {
                tracing::error!(cause = %message, "snapshot failed");
                Status::internal(message)
            }
        }
    }
}

/// Runs work of a few microseconds (one lead's score, a claim) on the calling thread, where a
/// hop to the blocking pool would cost more than the work, and anything longer on the pool.
pub async fn run<T, E>(short: bool, work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: Send + 'static,
    Status: From<E>,
{
    if short { work().map_err(Status::from) } else { blocking(work).await }
}

/// Runs work that waits on the disk or scores whole batches off the async threads.
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: Send + 'static,
    Status: From<E>,
{
    pooled(move |_| work()).await
}

/// Runs work on the blocking pool unless its caller stopped waiting before it started; long
/// work checks the `Abandoned` it is given between steps and stops early.
pub async fn pooled<T, E>(work: impl FnOnce(&Abandoned) -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: Send + 'static,
    Status: From<E>,
{
    let abandoned = Abandoned::default();
    // Dropped with this future: when the call's deadline passes (tonic drops the call), when
    // the client goes away, or harmlessly once the work is done.
    let _waiting = SetOnDrop(abandoned.0.clone());
    let done = tokio::task::spawn_blocking(move || {
        if abandoned.is_set() {
            metrics::counter!("leadscore_abandoned_work_total", "stage" => "queued").increment(1);
            return Err(Status::cancelled("the caller stopped waiting before the work began"));
        }
        work(&abandoned).map_err(Status::from)
    });
    done.await.map_err(|e| Status::internal(format!("background task failed: {e}")))?
}

/// Set once nobody waits for a call's answer any more.
#[derive(Clone, Debug, Default)]
pub struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Fails once the caller stopped waiting, so that work nobody will read ends here.
    pub fn check(&self) -> Result<(), Status> {
        if !self.is_set() {
            return Ok(());
        }
        metrics::counter!("leadscore_abandoned_work_total", "stage" => "running").increment(1);
        Err(Status::cancelled("the caller stopped waiting"))
    }
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl From<ScoreError> for Status {
    fn from(e: ScoreError) -> Self {
        let message = e.to_string();
        match e {
            ScoreError::UnknownCampaign { .. } => Status::invalid_argument(message),
            ScoreError::NotFound(_) => Status::not_found(message),
            ScoreError::NoScorer(_) => Status::failed_precondition(message),
            ScoreError::Plugin(CallError::Quarantined { .. }) => Status::unavailable(message),
            ScoreError::Plugin(_) => Status::internal(message),
        }
    }
}

impl From<DialError> for Status {
    fn from(e: DialError) -> Self {
        match e {
            DialError::Store(e) => e.into(),
            DialError::Score(e) => e.into(),
            DialError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            DialError::AgentUnavailable(_) | DialError::Revoked { .. } => Status::failed_precondition(e.to_string()),
        }
    }
}

/// A configuration document that does not load: every problem, each naming its key.
impl From<ConfigError> for Status {
    fn from(e: ConfigError) -> Self {
        Status::invalid_argument(e.problems.join("; "))
    }
}

impl From<ConfigChangeError> for Status {
    fn from(e: ConfigChangeError) -> Self {
        match e {
            ConfigChangeError::VersionMismatch { .. } => Status::aborted(e.to_string()),
            ConfigChangeError::Invalid(_) => Status::invalid_argument(e.to_string()),
            ConfigChangeError::ReloadRefused(_) => Status::failed_precondition(e.to_string()),
            ConfigChangeError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A runtime with one blocking thread, so that work can be made to queue.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().max_blocking_threads(1).build().unwrap()
    }

    #[test]
    fn work_whose_caller_stopped_waiting_while_it_queued_never_begins() {
        let runtime = runtime();
        let (release, held) = mpsc::channel::<()>();
        let occupying = runtime.spawn_blocking(move || held.recv());
        let began = Arc::new(AtomicBool::new(false));
        let marker = began.clone();
        let call = pooled(move |_| {
            marker.store(true, Ordering::SeqCst);
            Ok::<_, Status>(())
        });
        let waited = runtime.block_on(async { tokio::time::timeout(Duration::from_millis(50), call).await });
        assert!(waited.is_err(), "the work queued behind the occupied thread");
        release.send(()).unwrap();
        runtime.block_on(occupying).unwrap().unwrap();
        // The queued task has now had the thread; a later task runs after it.
        runtime.block_on(runtime.spawn_blocking(|| ())).unwrap();
        assert!(!began.load(Ordering::SeqCst), "the abandoned work began");
    }

    #[test]
    fn long_work_ends_at_its_next_step_once_its_caller_stopped_waiting() {
        let runtime = runtime();
        let steps = Arc::new(AtomicUsize::new(0));
        let (ended_tx, ended) = mpsc::channel();
        let counted = steps.clone();
        let call = pooled(move |abandoned| {
            let result = (0..1_000).try_for_each(|_| {
                abandoned.check()?;
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                Ok::<_, Status>(())
            });
            ended_tx.send(result.clone().map_err(|s| s.code())).unwrap();
            result
        });
        let waited = runtime.block_on(async { tokio::time::timeout(Duration::from_millis(100), call).await });
        assert!(waited.is_err(), "a 5 s job outlived its 100 ms wait");
        let ended = ended.recv_timeout(Duration::from_secs(2)).expect("the work ended soon after");
        assert_eq!(ended, Err(leadscore_proto::tonic::Code::Cancelled));
        let done = steps.load(Ordering::SeqCst);
        assert!((10..=40).contains(&done), "{done} steps of 5 ms ran for a 100 ms wait");
    }

    #[test]
    fn work_that_finishes_in_time_answers() {
        let runtime = runtime();
        let answer = runtime.block_on(pooled(|abandoned| abandoned.check().map(|()| 7)));
        assert_eq!(answer.unwrap(), 7);
    }
}
