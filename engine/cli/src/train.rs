//! `leadscore train`: fits the predictive model on a CSV file of past leads with outcomes,
//! reports it on held-out rows, and writes the model file the predictive plugin serves.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use leadscore_model::data::{ReadOptions, read_csv, stratified};
use leadscore_model::metrics::Report;
use leadscore_model::train::{Algorithm, TrainOptions, train};
use serde::Serialize;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Past leads, one per row, with a header.
    #[arg(long)]
    pub csv: PathBuf,
    /// The outcome column (0/1, true/false and yes/no are understood).
    #[arg(long)]
    pub target: String,
    /// Columns to leave out, comma-separated (ids, and anything that leaks the outcome).
    #[arg(long, value_delimiter = ',')]
    pub drop: Vec<String>,
    #[arg(long, default_value = ",")]
    pub delimiter: char,
    /// The target value that counts as a win, when the values are not a familiar pair.
    #[arg(long)]
    pub positive: Option<String>,
    #[arg(long, value_enum, default_value = "gbdt")]
    pub model: ModelKind,
    /// Held-out rows from another file instead of a split of `--csv`.
    #[arg(long, conflicts_with = "test_fraction")]
    pub test_csv: Option<PathBuf>,
    /// The share of `--csv` held out (stratified) for the report.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to write the model file.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Fail, writing no model, when the held-out ROC AUC is below this (a CI gate).
    #[arg(long)]
    pub min_auc: Option<f64>,
    /// Write the held-out rows' positions in `--csv` (0 = the first data row) as JSON, so that
    /// other tools can be measured on the same split.
    #[arg(long)]
    pub write_split: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// L2-regularised logistic regression.
    Lr,
    /// Gradient-boosted decision trees.
    Gbdt,
}

/// Each class needs this many rows in the training part and in the held-out part, for a model
/// and a report worth the name.
const MIN_ROWS_PER_CLASS: usize = 5;

/// What `--report-json` holds.
#[derive(Debug, Serialize)]
pub struct TrainReport {
    pub model: &'static str,
    pub train_rows: usize,
    pub seconds: f64,
    pub holdout: Report,
    /// Features by importance, largest first, as shares of the total.
    pub importance: Vec<(String, f64)>,
}

/// Trains, prints the report and writes the files; returns the report.
pub fn run(args: &TrainArgs) -> anyhow::Result<TrainReport> {
    anyhow::ensure!(args.delimiter.is_ascii(), "--delimiter must be one ASCII character");
    anyhow::ensure!(
        args.test_csv.is_some() || (0.01..=0.9).contains(&args.test_fraction),
        "--test-fraction must be between 0.01 and 0.9, got {}",
        args.test_fraction
    );
    let options = ReadOptions {
        target: args.target.clone(),
        drop: args.drop.clone(),
        delimiter: args.delimiter as u8,
        positive: args.positive.clone(),
    };
    let table = read_csv(&args.csv, &options, None)?;
    let (train_table, test_table) = match &args.test_csv {
        Some(path) => {
            let test = read_csv(path, &options, Some(&table))?;
            (table, test)
        }
        None => {
            let (train_rows, test_rows) = stratified(&table.target, args.test_fraction, args.seed);
            if let Some(path) = &args.write_split {
                let json = serde_json::json!({ "test_rows": test_rows });
                std::fs::write(path, json.to_string()).with_context(|| format!("writing {}", path.display()))?;
            }
            (table.select(&train_rows), table.select(&test_rows))
        }
    };
    for (part, table) in [("training", &train_table), ("held-out", &test_table)] {
        let positives = table.target.iter().filter(|t| **t).count();
        let negatives = table.rows() - positives;
        anyhow::ensure!(
            positives.min(negatives) >= MIN_ROWS_PER_CLASS,
            "the {part} rows hold {positives} positive and {negatives} negative; at least {MIN_ROWS_PER_CLASS} of \
             each are needed"
        );
    }
    let algorithm = match args.model {
        ModelKind::Lr => Algorithm::LogisticRegression,
        ModelKind::Gbdt => Algorithm::Gbdt,
    };
    let options = TrainOptions { algorithm, seed: args.seed, ..TrainOptions::default() };
    eprintln!(
        "training {} on {} rows ({} held out), {} columns",
        name(args.model),
        train_table.rows(),
        test_table.rows(),
        train_table.names.len()
    );

    let bar = ProgressBar::new(options.gbdt.max_rounds as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} round {pos} (at most {len}), validation log loss {msg}")
            .expect("a valid template"),
    );
    if args.model == ModelKind::Lr {
        bar.finish_and_clear();
    }
    let started = Instant::now();
    let model = train(&args.target, &train_table, &test_table, &options, |round, loss| {
        bar.set_position(round as u64);
        bar.set_message(format!("{loss:.4}"));
    });
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let report = TrainReport {
        model: name(args.model),
        train_rows: train_table.rows(),
        seconds,
        holdout: model.holdout.clone().expect("training measures the holdout"),
        importance: model.importance(),
    };
    print_report(&report);
    let holdout = &report.holdout;
    anyhow::ensure!(
        holdout.log_loss <= holdout.base_rate_log_loss,
        "the {} model's held-out log loss {:.4} is worse than the base rate's {:.4}: it predicts worse than \
         knowing nothing but the share of wins; no model written",
        report.model,
        holdout.log_loss,
        holdout.base_rate_log_loss
    );
    if let Some(min) = args.min_auc {
        anyhow::ensure!(
            report.holdout.auc >= min,
            "held-out ROC AUC {:.4} is below --min-auc {min}; no model written",
            report.holdout.auc
        );
    }
    model.save(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(path) = &args.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("model written to {}", args.out.display());
    Ok(report)
}

fn name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Lr => "lr",
        ModelKind::Gbdt => "gbdt",
    }
}

fn print_report(report: &TrainReport) {
    let holdout = &report.holdout;
    println!("{} trained on {} rows in {:.2} s", report.model, report.train_rows, report.seconds);
    println!("held-out rows: {} ({} positive)", holdout.rows, holdout.positives);
    println!("ROC AUC   {:.4}", holdout.auc);
    println!("log loss  {:.4} (the base rate alone: {:.4})", holdout.log_loss, holdout.base_rate_log_loss);
    println!("Brier     {:.4}", holdout.brier);
    println!("calibration (deciles by predicted probability):");
    println!("  {:>6} {:>10} {:>10}", "rows", "predicted", "observed");
    for decile in &holdout.calibration {
        println!("  {:>6} {:>10.3} {:>10.3}", decile.rows, decile.mean_predicted, decile.observed);
    }
    println!("most important features:");
    for (feature, share) in report.importance.iter().take(10) {
        println!("  {:>5.1}%  {feature}", share * 100.0);
    }
}
