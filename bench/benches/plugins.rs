//! The cost of the plugin boundary: the fit scorer called through its C ABI (loaded from the
//! shared library, as the server does) against the same scorer called in-process, at several
//! batch sizes over the same generated leads; both give scores and points.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use leadscore::bench_plugin::generate;
use leadscore::plugin::Plugin;
use leadscore_bench::built_library;
use leadscore_plugin_api::Scorer;

const LEADS: usize = 16_384;
const NOW_MS: i64 = 1_793_491_200_000;

fn boundary(c: &mut Criterion) {
    let scratch = tempfile::tempdir().unwrap();
    let ffi = Plugin::load(&built_library("leadscore_fit"), scratch.path(), |_| "{}".into(), u64::MAX, NOW_MS).unwrap();
    let in_process = leadscore_fit::Fit::create("{}").unwrap();
    for batch_size in [1, 16, 256, 1024, 4096] {
        let batches = generate(LEADS.min(batch_size * 64), batch_size, NOW_MS);
        let leads: usize = batches.iter().map(|b| b.len()).sum();
        let (mut scores, mut points) = (vec![0.0; batch_size], vec![0.0; batch_size]);
        let mut group = c.benchmark_group(format!("plugin/fit/batch-{batch_size}"));
        group.throughput(Throughput::Elements(leads as u64));
        group.bench_function("ffi", |b| {
            b.iter(|| {
                for batch in &batches {
                    let n = batch.len();
                    ffi.score(batch, &mut scores[..n], &mut points[..n]).unwrap();
                }
            })
        });
        group.bench_function("in-process", |b| {
            b.iter(|| {
                for batch in &batches {
                    let n = batch.len();
                    in_process.score_points(&batch.view(), &mut scores[..n], &mut points[..n]).unwrap();
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, boundary);
criterion_main!(benches);
