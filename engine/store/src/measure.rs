//! The store's metric handles, resolved once when it opens (the recorder is installed before),
//! so that a write looks none up by name.

use std::time::Instant;

use metrics::{Counter, Histogram, counter, histogram};

#[derive(Debug)]
pub(crate) struct StoreMetrics {
    pub append_seconds: Histogram,
    pub fsync_seconds: Histogram,
    pub bytes: Counter,
    pub write_batch_records: Histogram,
    pub snapshot_seconds: Histogram,
}

impl StoreMetrics {
    pub fn new() -> Self {
        Self {
            append_seconds: histogram!("leadscore_wal_append_seconds"),
            fsync_seconds: histogram!("leadscore_wal_fsync_seconds"),
            bytes: counter!("leadscore_wal_bytes_total"),
            write_batch_records: histogram!("leadscore_wal_write_batch_records"),
            snapshot_seconds: histogram!("leadscore_snapshot_seconds"),
        }
    }
}

/// Runs `work` and records how long it took in `histogram`.
pub(crate) fn timed<T>(histogram: &Histogram, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = work();
    histogram.record(started.elapsed().as_secs_f64());
    result
}
