//! Store write throughput: upserts and event appends through the one logged path, with fsync
//! `interval` and `never`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use leadscore::clock::SystemClock;
use leadscore::store::{FsyncPolicy, Store, StoreOptions};
use leadscore_bench::{event, lead};

const BATCH: u64 = 100;

fn open(dir: &std::path::Path, fsync: FsyncPolicy) -> Arc<Store> {
    let options = StoreOptions {
        data_dir: dir.to_owned(),
        fsync,
        fsync_interval: Duration::from_secs(1),
        snapshot_log_bytes: u64::MAX,
        max_events_per_lead: 10_000,
    };
    Store::open(options, Arc::new(SystemClock)).unwrap()
}

fn writes(c: &mut Criterion) {
    for (name, fsync) in [("interval", FsyncPolicy::Interval), ("never", FsyncPolicy::Never)] {
        let mut group = c.benchmark_group(format!("store/fsync-{name}"));
        group.throughput(Throughput::Elements(BATCH));
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), fsync);
        let mut next = 0u64;
        group.bench_function("upsert batch of 100 leads", |b| {
            b.iter_batched(
                || {
                    next += BATCH;
                    (next - BATCH..next).map(lead).collect::<Vec<_>>()
                },
                |leads| store.upsert_leads(leads).unwrap(),
                BatchSize::SmallInput,
            )
        });
        let leads = next.max(BATCH);
        let mut n = 0u64;
        group.bench_function("record batch of 100 events", |b| {
            b.iter_batched(
                || {
                    n += 1;
                    (0..BATCH).map(|i| event((i * 7919 + n) % leads, n)).collect::<Vec<_>>()
                },
                |events| store.record_events(events).unwrap(),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, writes);
criterion_main!(benches);
