//! The predictive scorer's speed on the real lead data: one lead and batches of held-out rows
//! through the plugin's C ABI (as the server calls it), and training time for both models.
//! LightGBM's and scikit-learn's figures on the same rows come from `bench/peer_predictive.py`.
//!
//! Needs `cargo build --release` first (for the plugin library) and the lead data beside the
//! repository.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use leadscore::plugin::Plugin;
use leadscore_bench::built_library;
use leadscore_model::data::{ReadOptions, Table, read_csv, stratified};
use leadscore_model::train::{Algorithm, TrainOptions, train};
use leadscore_plugin_api::{BatchBuf, Value};

const DROP: &[&str] = &[
    "Prospect ID",
    "Lead Number",
    "Tags",
    "Lead Quality",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
];
const NOW_MS: i64 = 1_793_491_200_000;

fn leads() -> Table {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/leads/Leads.csv");
    let options = ReadOptions {
        target: "Converted".into(),
        drop: DROP.iter().map(|d| d.to_string()).collect(),
        delimiter: b',',
        positive: None,
    };
    read_csv(&csv, &options, None).expect("the lead data beside the repository")
}

/// Rows as `leadscore import` stores them (numbers, yes/no flags, text), in batches.
fn batches(table: &Table, batch_size: usize) -> Vec<BatchBuf> {
    let mut batches = Vec::new();
    for start in (0..table.rows()).step_by(batch_size) {
        let mut batch = BatchBuf::new(NOW_MS);
        table.names.iter().for_each(|name| _ = batch.push_name(name));
        for row in start..(start + batch_size).min(table.rows()) {
            batch.begin_lead(&format!("lead-{row}"), NOW_MS);
            for (c, column) in table.columns.iter().enumerate() {
                let Some(cell) = column[row].as_deref() else { continue };
                let value = match (cell.parse::<f64>(), cell.to_ascii_lowercase().as_str()) {
                    (Ok(n), _) => Value::Number(n),
                    (_, "yes") => Value::Flag(true),
                    (_, "no") => Value::Flag(false),
                    _ => Value::Text(cell),
                };
                batch.attribute(c as u32, value);
            }
        }
        batches.push(batch);
    }
    batches
}

fn predictive(c: &mut Criterion) {
    let table = leads();
    let (train_rows, test_rows) = stratified(&table.target, 0.2, 42);
    let (train_table, test_table) = (table.select(&train_rows), table.select(&test_rows));
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch");

    for (name, algorithm) in [("gbdt", Algorithm::Gbdt), ("lr", Algorithm::LogisticRegression)] {
        let options = TrainOptions { algorithm, ..TrainOptions::default() };
        let mut group = c.benchmark_group(format!("predictive/{name}"));
        group.sample_size(10);
        group
            .bench_function("train", |b| b.iter(|| train("Converted", &train_table, &test_table, &options, |_, _| {})));
        group.finish();

        let model = train("Converted", &train_table, &test_table, &options, |_, _| {});
        let path = dir.path().join(format!("{name}.json"));
        model.save(&path).unwrap();
        let config = format!("{{\"model\": {:?}}}", path.display().to_string());
        let plugin =
            Plugin::load(&built_library("leadscore_predictive"), &scratch, |_| config, u64::MAX, NOW_MS).unwrap();

        let mut group = c.benchmark_group(format!("predictive/{name}"));
        let one = batches(&test_table, 1);
        let (mut score, mut points) = ([0.0], [0.0]);
        group.throughput(Throughput::Elements(1));
        group.bench_function("one-lead", |b| {
            let mut i = 0;
            b.iter(|| {
                plugin.score(&one[i % one.len()], &mut score, &mut points).unwrap();
                i += 1;
            })
        });
        // The model alone on rows already encoded: what is left is the cost of reading leads.
        let encoded = model.schema.encode_table(&test_table);
        group.throughput(Throughput::Elements(encoded.len() as u64));
        let mut probabilities = vec![0.0; encoded.len()];
        group.bench_function("encoded-rows-in-process", |b| {
            b.iter(|| model.probabilities(&encoded, &mut probabilities))
        });
        // LightGBM's default predict uses every core; the same here, on the held-out rows and on
        // them fifty times over (as the peer script also passes them), split across cores.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let many: Vec<Vec<f64>> = (0..50).flat_map(|_| encoded.iter().cloned()).collect();
        let mut many_out = vec![0.0; many.len()];
        group.throughput(Throughput::Elements(many.len() as u64));
        group.bench_function("encoded-rows-x50-1-thread", |b| b.iter(|| model.probabilities(&many, &mut many_out)));
        let split = |rows: &[Vec<f64>], out: &mut [f64]| {
            let per_thread = rows.len().div_ceil(threads);
            std::thread::scope(|scope| {
                for (rows, out) in rows.chunks(per_thread).zip(out.chunks_mut(per_thread)) {
                    let model = &model;
                    scope.spawn(move || model.probabilities(rows, out));
                }
            })
        };
        group.bench_function(format!("encoded-rows-x50-{threads}-threads"), |b| b.iter(|| split(&many, &mut many_out)));
        group.throughput(Throughput::Elements(encoded.len() as u64));
        group.bench_function(format!("encoded-rows-{threads}-threads"), |b| {
            b.iter(|| split(&encoded, &mut probabilities))
        });
        let batched = batches(&test_table, 1024);
        let (mut scores, mut points) = (vec![0.0; 1024], vec![0.0; 1024]);
        group.throughput(Throughput::Elements(test_table.rows() as u64));
        group.bench_function("held-out-rows", |b| {
            b.iter(|| {
                for batch in &batched {
                    let n = batch.len();
                    plugin.score(batch, &mut scores[..n], &mut points[..n]).unwrap();
                }
            })
        });
        // As a sweep runs it: the batches split across the cores, one plugin call per batch.
        let per_thread = batched.len().div_ceil(threads);
        group.bench_function(format!("held-out-rows-{threads}-threads"), |b| {
            b.iter(|| {
                std::thread::scope(|scope| {
                    for part in batched.chunks(per_thread) {
                        let plugin = &plugin;
                        scope.spawn(move || {
                            let (mut scores, mut points) = (vec![0.0; 1024], vec![0.0; 1024]);
                            for batch in part {
                                let n = batch.len();
                                plugin.score(batch, &mut scores[..n], &mut points[..n]).unwrap();
                            }
                        });
                    }
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, predictive);
criterion_main!(benches);
