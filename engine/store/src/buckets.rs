//! Histograms with fixed buckets for what is timed on every call (an RPC, a scorer's batch):
//! a value costs a search of the bounds, an atomic add and a compare-and-swap. The Prometheus
//! exporter's own histograms read the clock and pin an epoch for every value they keep: the
//! three on each `Score` call took 2% of the server's time (bench/README.md, 2026-12-07).
//! `/metrics` shows these after the exporter's series (`render`). Like the exporter's, they
//! record nothing until a server installs its metrics (`record_from_now`): a process without
//! them pays a load.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sync::{Mutex, Rank};

/// One series: counts per bucket (the last for values above every bound) and their sum.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    /// The sum of every value, as f64 bits.
    sum: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum: AtomicU64::new(0) }
    }

    pub fn record(&self, value: f64) {
        if !RECORDING.load(Ordering::Relaxed) {
            return;
        }
        // Prometheus buckets are inclusive: a value equal to a bound counts in that bound's.
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| Some((f64::from_bits(sum) + value).to_bits()));
    }
}

/// Whether values are kept: from the installation of the process's metrics on.
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Keeps every value recorded from now on (the metrics recorder is being installed).
pub fn record_from_now() {
    RECORDING.store(true, Ordering::Relaxed);
}

/// A histogram's name, help text and bucket bounds, as a `static`.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub bounds: &'static [f64],
}

/// A series as `/metrics` names it.
struct Series {
    family: &'static Family,
    labels: Vec<(&'static str, String)>,
    buckets: Arc<Buckets>,
}

/// Every series of the process, in the order they were first asked for.
static SERIES: Mutex<Vec<Series>> = Mutex::new(Rank::Histograms, Vec::new());

/// The series of `family` with these labels: the same one each time it is asked for (a
/// reloaded pipeline's scorer keeps its counts). Resolve it once, not per value.
pub fn series(family: &'static Family, labels: Vec<(&'static str, String)>) -> Arc<Buckets> {
    let mut all = SERIES.lock();
    if let Some(found) = all.iter().find(|s| std::ptr::eq(s.family, family) && s.labels == labels) {
        return found.buckets.clone();
    }
    let buckets = Arc::new(Buckets::new(family.bounds));
    all.push(Series { family, labels, buckets: buckets.clone() });
    buckets
}

/// Appends every series in the Prometheus text format, each family's series together.
pub fn render(out: &mut String) {
    let all = SERIES.lock();
    let mut families: Vec<&'static Family> = Vec::new();
    for series in all.iter() {
        if !families.iter().any(|f| std::ptr::eq(*f, series.family)) {
            families.push(series.family);
        }
    }
    for family in families {
        let name = family.name;
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} histogram", family.help);
        for series in all.iter().filter(|s| std::ptr::eq(s.family, family)) {
            let labels: String = series.labels.iter().map(|(k, v)| format!("{k}=\"{}\",", escape(v))).collect();
            let mut count = 0;
            let les = family.bounds.iter().map(|b| b.to_string()).chain(["+Inf".to_owned()]);
            for (le, bucket) in les.zip(series.buckets.counts.iter()) {
                count += bucket.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {count}");
            }
            let labels = match labels.trim_end_matches(',') {
                "" => String::new(),
                labels => format!("{{{labels}}}"),
            };
            let sum = f64::from_bits(series.buckets.sum.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_sum{labels} {sum}\n{name}_count{labels} {count}");
        }
    }
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets_sum_and_count() {
        static FAMILY: Family = Family { name: "test_seconds", help: "Test durations", bounds: &[0.1, 1.0] };
        record_from_now();
        let series = series(&FAMILY, vec![("method", "a\"b".into())]);
        for value in [0.05, 0.1, 0.5, 2.0] {
            series.record(value);
        }
        assert!(Arc::ptr_eq(&series, &super::series(&FAMILY, vec![("method", "a\"b".into())])));
        let mut text = String::new();
        render(&mut text);
        let expected = "# HELP test_seconds Test durations\n# TYPE test_seconds histogram\n\
            test_seconds_bucket{method=\"a\\\"b\",le=\"0.1\"} 2\n\
            test_seconds_bucket{method=\"a\\\"b\",le=\"1\"} 3\n\
            test_seconds_bucket{method=\"a\\\"b\",le=\"+Inf\"} 4\n\
            test_seconds_sum{method=\"a\\\"b\"} 2.65\n\
            test_seconds_count{method=\"a\\\"b\"} 4\n";
        assert!(text.contains(expected), "{text}");
    }
}
