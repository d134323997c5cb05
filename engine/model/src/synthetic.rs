//! Data sets with a known generating model, for tests and benchmarks: each row comes with the
//! true probability of its outcome, so a fitted model can be held to the best AUC any model
//! could reach on the same rows.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::Table;
use crate::lr::sigmoid;

/// The shape that made the logistic regression's Newton steps diverge: a previous-campaign
/// outcome whose large majority (90%) is the text "unknown", beside rare "success" and "other"
/// that convert at about 65% where "unknown" converts at about 4.5%; an age with a mild effect;
/// and a balance with enormous tails, missing now and then, with none.
///
/// Returns the table (target 1/0) and each row's true probability.
pub fn unknown_majority(rows: usize, seed: u64) -> (Table, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut columns: Vec<Vec<Option<String>>> = (0..3).map(|_| Vec::with_capacity(rows)).collect();
    let (mut target, mut truth) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for _ in 0..rows {
        let outcome = pick(&mut rng, &[("unknown", 0.90, 0.0), ("success", 0.05, 3.7), ("other", 0.05, 3.7)]);
        let age = (41.0 + 10.6 * normal(&mut rng)).clamp(18.0, 95.0).round();
        let cauchy = (std::f64::consts::PI * (rng.random::<f64>() - 0.5)).tan();
        let balance = if rng.random_bool(0.3) { cauchy * 1e3 } else { cauchy };
        let p = sigmoid(-3.05 + outcome.2 + 0.02 * (age - 41.0));
        columns[0].push(Some(outcome.0.into()));
        columns[1].push(Some(age.to_string()));
        columns[2].push(rng.random_bool(0.95).then(|| format!("{balance:.2}")));
        target.push(rng.random_bool(p));
        truth.push(p);
    }
    let names = ["poutcome", "age", "balance"].map(String::from).to_vec();
    (Table { names, columns, target, positive: "1".into() }, truth)
}

/// Writes a table as CSV with its target column last (1 or 0), as `leadscore train` reads it.
pub fn write_csv(table: &Table, target: &str, path: &std::path::Path) -> std::io::Result<()> {
    let mut out = csv::Writer::from_path(path)?;
    out.write_record(table.names.iter().map(String::as_str).chain([target]))?;
    for row in 0..table.rows() {
        let cells = table.columns.iter().map(|column| column[row].as_deref().unwrap_or(""));
        let outcome = if table.target[row] { "1" } else { "0" };
        out.write_record(cells.chain([outcome]))?;
    }
    out.flush()
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// One of the choices (name, share, effect on the log-odds) by share.
fn pick<'a>(rng: &mut StdRng, choices: &[(&'a str, f64, f64)]) -> (&'a str, f64, f64) {
    let total: f64 = choices.iter().map(|c| c.1).sum();
    let mut at = rng.random::<f64>() * total;
    for choice in choices {
        if at < choice.1 {
            return *choice;
        }
        at -= choice.1;
    }
    *choices.last().expect("at least one choice")
}
