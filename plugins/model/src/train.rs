//! Training end to end: infer the schema, encode, fit the chosen model (with early stopping and
//! calibration on a validation slice for trees), and measure it on held-out rows.

use crate::data::{Table, stratified};
use crate::gbdt::{Gbdt, Params};
use crate::lr::LogisticRegression;
use crate::metrics::Report;
use crate::model::{Calibration, FORMAT, Model, ModelFile, VERSION};
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
        Self {
            algorithm: Algorithm::Gbdt,
            lambda: 1.0,
            gbdt: Params::default(),
            validation_fraction: 0.15,
            seed: 42,
        }
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
    file.holdout = Some(Report::new(&probabilities, &test.target));
    file
}
