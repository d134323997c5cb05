//! Training end to end: infer the schema, encode, fit the chosen model (with early stopping and
//! calibration on a validation slice for trees), and measure it on held-out rows.

use crate::data::{Table, stratified};
use crate::gbdt::{Gbdt, Params};
use crate::lr::LogisticRegression;
use crate::metrics::Report;
use crate::model::{Calibration, FORMAT, Model, ModelFile, VERSION};
#[cfg(test)]
use crate::schema::Kind;
use crate::schema::Schema;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    LogisticRegression,
    Gbdt,
}

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub algorithm: Algorithm,
    /// The L2 penalty of logistic regression (scikit-learn's `1 / C`).
    pub lambda: f64,
    pub gbdt: Params,
    /// The share of the training rows trees hold back for early stopping and calibration.
    pub validation_fraction: f64,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { algorithm: Algorithm::Gbdt, lambda: 1.0, gbdt: Params::default(), validation_fraction: 0.15, seed: 42 }
    }
}

/// Trains on `train` and reports on `test`; `progress` hears each boosting round.
pub fn train(
    target: &str,
    train: &Table,
    test: &Table,
    options: &TrainOptions,
    progress: impl FnMut(usize, f64),
) -> ModelFile {
    let schema = Schema::infer(train);
    let rows = schema.encode_table(train);
    let (model, calibration) = match options.algorithm {
        Algorithm::LogisticRegression => {
            let lr = LogisticRegression::fit(&schema, &rows, &train.target, options.lambda);
            (Model::LogisticRegression(lr), Calibration::IDENTITY)
        }
        Algorithm::Gbdt => {
            let (fit, valid) = stratified(&train.target, options.validation_fraction, options.seed);
            let pick = |indices: &[usize]| -> (Vec<Vec<f64>>, Vec<bool>) {
                (indices.iter().map(|&i| rows[i].clone()).collect(), indices.iter().map(|&i| train.target[i]).collect())
            };
            let ((fit_rows, fit_target), (valid_rows, valid_target)) = (pick(&fit), pick(&valid));
            let gbdt =
                Gbdt::fit(&schema, &fit_rows, &fit_target, (&valid_rows, &valid_target), &options.gbdt, progress);
            let logits: Vec<f64> = valid_rows.iter().map(|r| gbdt.logit(r)).collect();
            (Model::Gbdt(gbdt), Calibration::fit(&logits, &valid_target))
        }
    };
    let mut file = ModelFile {
        format: FORMAT.into(),
        version: VERSION,
        target: target.into(),
        positive: train.positive.clone(),
        schema,
        model,
        calibration,
        holdout: None,
    };
    let test_rows = file.schema.encode_table(test);
    let probabilities: Vec<f64> = test_rows.iter().map(|r| file.probability(r)).collect();
    let base_rate = train.target.iter().filter(|t| **t).count() as f64 / train.rows() as f64;
    file.holdout = Some(Report::new(&probabilities, &test.target, base_rate));
    file
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::data::stratified;
    use crate::lr::{Column, sigmoid};
    use crate::metrics::auc;

    /// Rows from a known logistic model, with the true probability of each.
    fn synthetic(rows: usize, seed: u64) -> (Table, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = || {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        };
        let mut columns = vec![Vec::new(); 4];
        let (mut target, mut truth) = (Vec::new(), Vec::new());
        let mut rng = StdRng::seed_from_u64(seed + 1);
        for _ in 0..rows {
            let (x1, x2) = (normal(), 1.0 + 2.0 * normal());
            let flag = rng.random_bool(0.4);
            let category = ["a", "b", "c"][rng.random_range(0..3)];
            let effect = match category {
                "a" => 0.0,
                "b" => 0.5,
                _ => -1.0,
            };
            let p = sigmoid(-0.5 + 1.2 * x1 - 0.8 * x2 + if flag { 0.7 } else { 0.0 } + effect);
            columns[0].push(Some(format!("{x1}")));
            columns[1].push(Some(format!("{x2}")));
            columns[2].push(Some(if flag { "Yes" } else { "No" }.to_string()));
            columns[3].push(Some(category.to_string()));
            target.push(rng.random_bool(p));
            truth.push(p);
        }
        let names = ["x1", "x2", "flag", "category"].map(String::from).to_vec();
        (Table { names, columns, target, positive: "1".into() }, truth)
    }

    #[test]
    fn logistic_regression_recovers_the_generating_coefficients() {
        let (train_table, _) = synthetic(20_000, 1);
        let (test_table, truth) = synthetic(10_000, 2);
        let options = TrainOptions { algorithm: Algorithm::LogisticRegression, ..TrainOptions::default() };
        let file = train("y", &train_table, &test_table, &options, |_, _| {});
        let Model::LogisticRegression(lr) = &file.model else { panic!("an lr model") };
        let weight = |wanted: &dyn Fn(&Column) -> bool| {
            let i = lr.columns.iter().position(wanted).expect("the column exists");
            (lr.weights[i], &lr.columns[i])
        };
        let per_unit = |feature| match weight(&|c| matches!(c, Column::Numeric { feature: f, .. } if *f == feature)) {
            (w, Column::Numeric { std, .. }) => w / std,
            other => panic!("{other:?}"),
        };
        // The most frequent category is the reference, without a column of its own.
        let category = |index: usize| {
            let found =
                lr.columns.iter().position(|c| matches!(c, Column::Category { feature: 3, index: i } if *i == index));
            found.map_or(0.0, |i| lr.weights[i])
        };
        let (a, b, c) = (category(0), category(1), category(2));
        // Categories are ordered by frequency, so map them back by name.
        let Kind::Categorical { categories, .. } = &file.schema.features[3].kind else { panic!() };
        let effect = |name: &str| [a, b, c][categories.iter().position(|n| n == name).unwrap()];
        let found = [
            per_unit(0),
            per_unit(1),
            weight(&|c| matches!(c, Column::Flag { feature: 2 })).0,
            effect("b") - effect("a"),
            effect("c") - effect("a"),
        ];
        for (found, truth) in found.iter().zip([1.2, -0.8, 0.7, 0.5, -1.0]) {
            assert!((found - truth).abs() < 0.1, "learned {found:.3}, true {truth}: {found:?}");
        }
        let bayes = auc(&truth, &test_table.target);
        let holdout = file.holdout.as_ref().unwrap();
        assert!(bayes - holdout.auc < 0.005, "AUC {} against the Bayes optimum {bayes}", holdout.auc);
    }

    /// A majority "unknown" category beside rare ones that convert at about 65% made Newton's
    /// method diverge: the old fit predicted the wrong way round (AUC 0.23) or 1 for every row
    /// (AUC 0.5), with log losses of 2.4-3.8 on every seed. It must now reach what the true
    /// probabilities reach, and beat the base rate.
    #[test]
    fn logistic_regression_converges_beside_a_rare_category_that_converts() {
        for seed in [1, 11] {
            let (table, truth) = crate::synthetic::unknown_majority(45_000, seed);
            let (train_rows, test_rows) = stratified(&table.target, 0.2, seed);
            let (train_table, test_table) = (table.select(&train_rows), table.select(&test_rows));
            let options = TrainOptions { algorithm: Algorithm::LogisticRegression, ..TrainOptions::default() };
            let file = train("y", &train_table, &test_table, &options, |_, _| {});
            let holdout = file.holdout.as_ref().unwrap();
            let test_truth: Vec<f64> = test_rows.iter().map(|&i| truth[i]).collect();
            let bayes = auc(&test_truth, &test_table.target);
            assert!(bayes - holdout.auc < 0.005, "seed {seed}: AUC {} against the Bayes optimum {bayes}", holdout.auc);
            assert!(holdout.log_loss < holdout.base_rate_log_loss - 0.02, "seed {seed}: {holdout:?}");
            for decile in &holdout.calibration {
                assert!((decile.mean_predicted - decile.observed).abs() < 0.05, "seed {seed}: {decile:?}");
            }
        }
    }

    /// Newton's steps are damped until the loss falls, so no data set, however awkward, ends
    /// the fit worse than where it started (the base rate) on its own training rows.
    #[test]
    fn logistic_regression_never_ends_worse_than_the_base_rate() {
        let mut rng = StdRng::seed_from_u64(7);
        for case in 0..40 {
            let rows = rng.random_range(200..3000);
            let (table, _) = crate::synthetic::unknown_majority(rows, case);
            let schema = Schema::infer(&table);
            let encoded = schema.encode_table(&table);
            let lambda = [1e-3, 1.0, 100.0][case as usize % 3];
            let lr = crate::lr::LogisticRegression::fit(&schema, &encoded, &table.target, lambda);
            let probabilities: Vec<f64> = encoded.iter().map(|r| sigmoid(lr.logit(r))).collect();
            let share = table.target.iter().filter(|t| **t).count() as f64 / rows as f64;
            let base = crate::metrics::log_loss(&vec![share; rows], &table.target);
            let fitted = crate::metrics::log_loss(&probabilities, &table.target);
            assert!(fitted <= base + 1e-9, "case {case} ({rows} rows, lambda {lambda}): {fitted} > {base}");
        }
    }

    #[test]
    fn boosted_trees_come_close_to_the_bayes_optimum_and_stay_calibrated() {
        let (train_table, _) = synthetic(20_000, 3);
        let (test_table, truth) = synthetic(10_000, 4);
        let file = train("y", &train_table, &test_table, &TrainOptions::default(), |_, _| {});
        let holdout = file.holdout.as_ref().unwrap();
        let bayes = auc(&truth, &test_table.target);
        assert!(bayes - holdout.auc < 0.015, "AUC {} against the Bayes optimum {bayes}", holdout.auc);
        for decile in &holdout.calibration {
            assert!((decile.mean_predicted - decile.observed).abs() < 0.06, "{decile:?}");
        }
    }

    #[test]
    fn a_model_file_round_trips_and_explains_its_predictions() {
        let (train_table, _) = synthetic(4_000, 5);
        let (test_table, _) = synthetic(500, 6);
        for algorithm in [Algorithm::LogisticRegression, Algorithm::Gbdt] {
            let options = TrainOptions { algorithm, ..TrainOptions::default() };
            let file = train("y", &train_table, &test_table, &options, |_, _| {});
            let path = std::env::temp_dir().join(format!("leadscore-model-{}-{algorithm:?}.json", std::process::id()));
            file.save(&path).unwrap();
            let loaded = ModelFile::load(&path).unwrap();
            assert_eq!(loaded, file);
            for row in file.schema.encode_table(&test_table).iter().take(50) {
                let p = 100.0 * loaded.probability(row);
                let (base, parts) = loaded.explain(row);
                let sum = base + parts.iter().map(|c| c.points).sum::<f64>();
                assert!((sum - p).abs() < 1e-9, "{algorithm:?}: {sum} != {p}");
            }
            // Missing values and unknown categories are scored, not refused.
            let odd = vec![f64::NAN, 0.5, f64::NAN, 17.0];
            assert!((0.0..=1.0).contains(&loaded.probability(&odd)));
        }
    }
}
