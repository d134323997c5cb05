//! The liveness watchdog: notices a lock that calls wait for while nothing gets done under it
//! (the store's writer, a campaign's dialer queue), says which in an error log line, counts it
//! in `Stats`, and turns health NOT_SERVING so that an orchestrator restarts the process.
//!
//! It runs on a thread of its own: a freeze that holds every runtime thread must not hold the
//! watchdog too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{error, info};

use leadscore_store::sync::Gate;

/// What changed at a look.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Calls have waited on the gate with no progress for at least `stalled`.
    Stuck { gate: String, waiting: u64, stalled: Duration },
    /// A stuck gate moved again.
    Moving { gate: String },
}

/// What the watchdog remembers of each gate between looks.
#[derive(Debug)]
pub struct Watch {
    stall: Duration,
    seen: HashMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    progress: u64,
    /// Since when calls have waited with no progress (or the gate was last fine).
    since: Instant,
    stuck: bool,
}

impl Watch {
    pub fn new(stall: Duration) -> Self {
        Self { stall, seen: HashMap::new() }
    }

    /// Reads every gate at `now`; returns the gates that became stuck or moved again.
    pub fn look(&mut self, now: Instant, gates: &[Arc<Gate>]) -> Vec<Change> {
        let mut changes = Vec::new();
        for gate in gates {
            let (waiting, progress) = gate.reading();
            let seen = self.seen.entry(gate.name.clone()).or_insert(Seen { progress, since: now, stuck: false });
            if waiting == 0 || progress != seen.progress {
                (seen.progress, seen.since) = (progress, now);
                if std::mem::take(&mut seen.stuck) {
                    changes.push(Change::Moving { gate: gate.name.clone() });
                }
            } else if !seen.stuck && now.duration_since(seen.since) >= self.stall {
                seen.stuck = true;
                changes.push(Change::Stuck { gate: gate.name.clone(), waiting, stalled: now - seen.since });
            }
        }
        changes
    }

    pub fn any_stuck(&self) -> bool {
        self.seen.values().any(|seen| seen.stuck)
    }
}

/// Watches `gates` (asked anew at each look, since queues come and go) until `closing` turns
/// true. `services` are the names health reports on.
pub fn spawn(
    gates: impl Fn() -> Vec<Arc<Gate>> + Send + 'static,
    stall: Duration,
    health: HealthReporter,
    services: &'static [&'static str],
    stalls: Arc<AtomicU64>,
    closing: watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    let every = (stall / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
    std::thread::Builder::new()
        .name("leadscore-watchdog".into())
        .spawn(move || {
            // Setting health only sends on a channel; a runtime of its own keeps this thread free
            // of the server's.
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime for the watchdog");
            let set = |status| {
                runtime.block_on(async {
                    for name in services {
                        health.set_service_status(*name, status).await;
                    }
                })
            };
            let mut watch = Watch::new(stall);
            while !*closing.borrow() {
                std::thread::sleep(every);
                let was_stuck = watch.any_stuck();
                for change in watch.look(Instant::now(), &gates()) {
                    match change {
                        Change::Stuck { gate, waiting, stalled } => {
                            stalls.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!("leadscore_watchdog_stalls_total").increment(1);
                            error!(%gate, waiting, stalled_ms = stalled.as_millis() as u64, "no progress while calls wait: health is NOT_SERVING");
                        }
                        Change::Moving { gate } => info!(%gate, "progress again"),
                    }
                }
                // Shutdown turns health NOT_SERVING itself; never turn it back.
                if *closing.borrow() {
                    break;
                }
                match (was_stuck, watch.any_stuck()) {
                    (false, true) => set(ServingStatus::NotServing),
                    (true, false) => set(ServingStatus::Serving),
                    _ => {}
                }
            }
        })
        .expect("spawning the watchdog thread")
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_store::sync::{Mutex, Rank};

    #[test]
    fn calls_waiting_with_no_progress_are_a_stall_named_once_until_it_moves() {
        let gate = Gate::new("store writer");
        let lock = Arc::new(Mutex::watched(Rank::Writer, (), gate.clone()));
        let gates = [gate.clone()];
        let mut watch = Watch::new(Duration::from_millis(5000));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);

        // Held with nobody waiting: a long hold alone is no stall.
        let held = lock.lock();
        assert!(watch.look(at(0), &gates).is_empty());
        assert!(watch.look(at(9000), &gates).is_empty());

        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || drop(lock.lock()))
        };
        while gate.reading().0 == 0 {
            std::thread::yield_now();
        }
        // The wait began after the look at 9 s, when all was well: it counts from there.
        assert!(watch.look(at(10_000), &gates).is_empty());
        assert!(watch.look(at(13_999), &gates).is_empty());
        let stuck = watch.look(at(14_000), &gates);
        assert_eq!(
            stuck,
            [Change::Stuck { gate: "store writer".into(), waiting: 1, stalled: Duration::from_millis(5000) }]
        );
        assert!(watch.any_stuck());
        assert!(watch.look(at(20_000), &gates).is_empty(), "a stall is told once");

        drop(held);
        waiter.join().unwrap();
        assert_eq!(watch.look(at(21_000), &gates), [Change::Moving { gate: "store writer".into() }]);
        assert!(!watch.any_stuck());
    }

    #[test]
    fn a_stall_turns_health_not_serving_and_counts_until_it_moves() {
        use leadscore_proto::tonic::Request;
        use tonic_health::pb::health_server::Health;
        use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus as Status};

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let health = HealthReporter::new();
        runtime.block_on(health.set_service_status("", ServingStatus::Serving));
        let service = tonic_health::server::HealthService::from_health_reporter(health.clone());
        let status = || {
            runtime.block_on(async {
                let request = Request::new(HealthCheckRequest { service: String::new() });
                service.check(request).await.unwrap().into_inner().status()
            })
        };
        let gate = Gate::new("store writer");
        let lock = Arc::new(Mutex::watched(Rank::Writer, (), gate.clone()));
        let (closing, closed) = watch::channel(false);
        let stalls = Arc::new(AtomicU64::new(0));
        let watched = gate.clone();
        let dog =
            spawn(move || vec![watched.clone()], Duration::from_millis(100), health, &[""], stalls.clone(), closed);

        let held = lock.lock();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || drop(lock.lock()))
        };
        while stalls.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Health is set right after the stall is counted.
        while status() != Status::NotServing {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(held);
        waiter.join().unwrap();
        while status() != Status::Serving {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(stalls.load(Ordering::Relaxed), 1);
        closing.send(true).unwrap();
        dog.join().unwrap();
    }

    #[test]
    fn a_holder_that_beats_is_slow_not_stuck() {
        let gate = Gate::new("dialer queue of campaign default");
        let lock = Arc::new(Mutex::watched(Rank::Queue, (), gate.clone()));
        let gates = [gate.clone()];
        let mut watch = Watch::new(Duration::from_millis(100));
        let start = Instant::now();
        let held = lock.lock();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || drop(lock.lock()))
        };
        while gate.reading().0 == 0 {
            std::thread::yield_now();
        }
        for step in 0..10 {
            gate.beat();
            assert!(watch.look(start + Duration::from_millis(step * 60), &gates).is_empty(), "step {step}");
        }
        drop(held);
        waiter.join().unwrap();
    }
}
