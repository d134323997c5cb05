//! Writes the data set that made the logistic regression diverge
//! (`leadscore_model::synthetic::unknown_majority`, 45,000 rows) as `train.csv` and `test.csv`
//! (the stratified 80/20 split `leadscore train` makes) into a directory. `bench/peer_lr.py`
//! fits leadscore's and scikit-learn's logistic regressions on these very files.
//!
//! `cargo run --release -p leadscore-bench --bin lr-data -- DIR [SEED]`

#![forbid(unsafe_code)]

use std::path::PathBuf;

use leadscore_model::data::stratified;
use leadscore_model::metrics::auc;
use leadscore_model::synthetic::{unknown_majority, write_csv};

const ROWS: usize = 45_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!("usage: lr-data DIR [SEED]"))?);
    let seed: u64 = args.next().map_or(Ok(1), |n| n.parse())?;
    std::fs::create_dir_all(&dir)?;
    let (table, truth) = unknown_majority(ROWS, seed);
    let (train, test) = stratified(&table.target, 0.2, seed);
    write_csv(&table.select(&train), "y", &dir.join("train.csv"))?;
    write_csv(&table.select(&test), "y", &dir.join("test.csv"))?;
    let test_truth: Vec<f64> = test.iter().map(|&i| truth[i]).collect();
    let test_target: Vec<bool> = test.iter().map(|&i| table.target[i]).collect();
    let positives = table.target.iter().filter(|t| **t).count();
    println!(
        "{ROWS} rows, {:.1}% positive; {} train, {} test; the true probabilities reach a test AUC of {:.4}",
        100.0 * positives as f64 / ROWS as f64,
        train.len(),
        test.len(),
        auc(&test_truth, &test_target)
    );
    Ok(())
}
