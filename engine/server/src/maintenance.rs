//! Background upkeep: a snapshot when the log has grown enough, one soon after an erasure so
//! the erased lead leaves the disk too, and the scoring sweep that lets time decay show.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tracing::warn;

use leadscore_config::Config;
use leadscore_services::dialer::Dialer;
use leadscore_services::scoring::{Scoring, Trigger};
use leadscore_store::Store;

pub async fn run(store: Arc<Store>, config: Arc<Config>, erased: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let check_every = Duration::from_secs(config.store.snapshot_check_secs);
    let after_erase = Duration::from_secs(config.store.erase_snapshot_secs);
    loop {
        let due = tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(check_every) => store.snapshot_due(),
            () = erased.notified() => tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(after_erase) => true,
            },
        };
        if due {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.snapshot()).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => warn!(cause = %err, "background snapshot failed"),
                Err(err) => warn!(cause = %err, "background snapshot task failed"),
            }
        }
    }
}

/// Rescores every lead once per `scoring.sweep_interval_ms` (read anew each round, since it can
/// change at run time), on the blocking pool so RPCs are never held up, then requeues those
/// whose scores decayed.
pub async fn sweep(scoring: Arc<Scoring>, dialer: Arc<Dialer>, mut stop: watch::Receiver<bool>) {
    loop {
        let interval = Duration::from_millis(scoring.pipeline().config.scoring.sweep_interval_ms);
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let (scoring, dialer) = (scoring.clone(), dialer.clone());
        if let Err(err) = tokio::task::spawn_blocking(move || {
            let changed =
                crate::ops::telemetry::timed("leadscore_sweep_seconds", || scoring.rescore_all(Trigger::Decay));
            dialer.requeue(&changed);
            dialer.refresh_contact_rates();
        })
        .await
        {
            warn!(cause = %err, "scoring sweep failed");
        }
    }
}
