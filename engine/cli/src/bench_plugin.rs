//! `leadscore bench-plugin`: how fast any scorer library scores, in nanoseconds per lead at
//! several batch sizes, over generated leads shaped like real ones. It loads the library the
//! way the server does (header checks, smoke test), so a plugin author sees the real cost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use leadscore_plugin_api::{BatchBuf, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use leadscore_plugin_loader::Plugin;

#[derive(Debug, clap::Args)]
pub struct BenchPluginArgs {
    /// The scorer library (a `.so` file).
    pub path: PathBuf,
    /// The plugin's configuration, as JSON.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// Distinct generated leads the batches cycle through.
    #[arg(long, default_value_t = 65_536)]
    pub leads: usize,
    /// Batch sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 256, 1024, 4096])]
    pub batch_sizes: Vec<usize>,
    /// How long each measurement runs; each batch size is measured five times.
    #[arg(long, default_value_t = 400)]
    pub millis: u64,
}

/// One batch size's result.
#[derive(Clone, Debug)]
pub struct Measurement {
    pub batch_size: usize,
    /// The median of the runs.
    pub ns_per_lead: f64,
}

const RUNS: usize = 5;
const DAY_MS: i64 = 86_400_000;

/// Loads the library and measures it; prints a table as it goes.
pub fn run(args: &BenchPluginArgs) -> anyhow::Result<Vec<Measurement>> {
    anyhow::ensure!(args.leads > 0, "--leads must be at least 1");
    anyhow::ensure!(args.batch_sizes.iter().all(|b| *b > 0), "--batch-sizes must all be at least 1");
    let now_ms = chrono::Utc::now().timestamp_millis();
    let scratch = std::env::temp_dir().join(format!("leadscore-bench-plugin-{}", std::process::id()));
    let plugin = Plugin::load(&args.path, &scratch, |_| args.config.clone(), u64::MAX, now_ms)
        .with_context(|| format!("loading {}", args.path.display()))?;
    println!("{} {} ({}), {} generated leads", plugin.name, plugin.version, args.path.display(), args.leads);
    println!("{:>10} {:>12} {:>14}", "batch", "ns/lead", "leads/s");
    let mut results = Vec::new();
    for &batch_size in &args.batch_sizes {
        let batches = generate(args.leads, batch_size, now_ms);
        let (mut scores, mut points) = (vec![0.0; batch_size], vec![0.0; batch_size]);
        let mut runs: Vec<f64> = (0..RUNS)
            .map(|_| {
                let (started, mut leads) = (Instant::now(), 0usize);
                while started.elapsed() < Duration::from_millis(args.millis) {
                    for batch in &batches {
                        let n = batch.len();
                        plugin.score(batch, &mut scores[..n], &mut points[..n]).map_err(anyhow::Error::from)?;
                        leads += batch.len();
                    }
                }
                Ok(started.elapsed().as_nanos() as f64 / leads as f64)
            })
            .collect::<anyhow::Result<_>>()?;
        runs.sort_by(f64::total_cmp);
        let ns_per_lead = runs[RUNS / 2];
        println!("{batch_size:>10} {ns_per_lead:>12.1} {:>14.0}", 1e9 / ns_per_lead);
        results.push(Measurement { batch_size, ns_per_lead });
    }
    Ok(results)
}

/// `leads` generated leads in batches of `batch_size`: ten attributes and up to forty events
/// over the last ninety days each.
pub fn generate(leads: usize, batch_size: usize, now_ms: i64) -> Vec<BatchBuf> {
    const ROLES: &[&str] = &["CEO", "CTO", "Director", "Project Manager", "Assistant", "Analyst", "Student"];
    const DEPARTMENTS: &[&str] = &["IT", "Finance", "Marketing", "Sales", "Operations"];
    const COUNTRIES: &[&str] = &["India", "Germany", "United States", "Brazil", "Japan"];
    const NAMES: &[&str] = &[
        "role",
        "department",
        "employees",
        "country",
        "industry",
        "lead_source",
        "budget",
        "visits",
        "newsletter",
        "city",
    ];
    const KINDS: &[&str] = &[
        "email_open",
        "email_click",
        "page_view:/pricing",
        "page_view:/blog",
        "content_download",
        "webinar_attended",
        "demo_request",
        "unsubscribe",
        "page_view:/careers",
        "support_ticket",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    let mut batches = Vec::new();
    for start in (0..leads).step_by(batch_size) {
        let mut batch = BatchBuf::new(now_ms);
        NAMES.iter().for_each(|name| _ = batch.push_name(name));
        KINDS.iter().for_each(|kind| _ = batch.push_kind(kind));
        for i in start..(start + batch_size).min(leads) {
            batch.begin_lead(&format!("lead-{i:08}"), now_ms - 200 * DAY_MS);
            let pick = |rng: &mut StdRng, options: &[&'static str]| options[rng.random_range(0..options.len())];
            batch.attribute(0, Value::Text(pick(&mut rng, ROLES)));
            batch.attribute(1, Value::Text(pick(&mut rng, DEPARTMENTS)));
            batch.attribute(2, Value::Number(rng.random_range(1..5000) as f64));
            batch.attribute(3, Value::Text(pick(&mut rng, COUNTRIES)));
            batch.attribute(4, Value::Text("Software"));
            batch.attribute(5, Value::Text("Organic Search"));
            batch.attribute(6, Value::Number(rng.random_range(0..100) as f64 * 1000.0));
            batch.attribute(7, Value::Number(rng.random_range(0..30) as f64));
            batch.attribute(8, Value::Flag(rng.random_bool(0.5)));
            batch.attribute(9, Value::Text("Berlin"));
            let events = rng.random_range(0..=40);
            let mut times: Vec<i64> = (0..events).map(|_| now_ms - rng.random_range(0..90 * DAY_MS)).collect();
            times.sort_unstable();
            for at in times {
                batch.event(rng.random_range(0..KINDS.len() as u32), at, 0.0);
            }
        }
        batches.push(batch);
    }
    batches
}
