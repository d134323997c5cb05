//! Where a call's work runs: on the calling thread when it is a few microseconds, otherwise on
//! the blocking pool, and not at all once its caller stopped waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use leadscore_proto::tonic::Status;

use super::status::{ToStatus, status};

/// Runs work of a few microseconds (one lead's score, a claim) on the calling thread, where a
/// hop to the blocking pool would cost more than the work, and anything longer on the pool.
pub async fn run<T, E>(short: bool, work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: ToStatus + Send + 'static,
{
    if short { work().map_err(status) } else { blocking(work).await }
}

/// Runs work that waits on the disk or scores whole batches off the async threads.
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: ToStatus + Send + 'static,
{
    pooled(move |_| work()).await
}

/// Runs work on the blocking pool unless its caller stopped waiting before it started; long
/// work checks the `Abandoned` it is given between steps and stops early.
pub async fn pooled<T, E>(work: impl FnOnce(&Abandoned) -> Result<T, E> + Send + 'static) -> Result<T, Status>
where
    T: Send + 'static,
    E: ToStatus + Send + 'static,
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
        work(&abandoned).map_err(status)
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
