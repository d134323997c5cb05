//! The model file: versioned and self-describing (the feature schema and its encodings travel
//! with the model), and the predictions and explanations made from it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::gbdt::Gbdt;
use crate::lightgbm::{self, LightGbm};
use crate::lr::{LogisticRegression, sigmoid};
use crate::metrics::Report;
use crate::schema::Schema;

/// What the `format` field of every model file says.
pub const FORMAT: &str = "leadscore-model";
/// The file layout this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    /// The target column and the value that counted as positive.
    pub target: String,
    pub positive: String,
    pub schema: Schema,
    pub model: Model,
    /// Maps the model's log-odds to calibrated log-odds (`a * z + b`).
    pub calibration: Calibration,
    /// The held-out figures measured when the model was trained.
    pub holdout: Option<Report>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    LogisticRegression(LogisticRegression),
    Gbdt(Gbdt),
    /// Loaded from a LightGBM text model.
    LightGbm(LightGbm),
}

/// Platt scaling.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub a: f64,
    pub b: f64,
}

impl Calibration {
    pub const IDENTITY: Self = Self { a: 1.0, b: 0.0 };

    /// Fits `a` and `b` to minimise log loss of `sigmoid(a z + b)` (Newton's method, with
    /// Platt's smoothed targets so a small slice cannot make it overconfident).
    pub fn fit(logits: &[f64], target: &[bool]) -> Self {
        let positives = target.iter().filter(|t| **t).count() as f64;
        let negatives = target.len() as f64 - positives;
        let (high, low) = ((positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0));
        let (mut a, mut b) = (1.0, 0.0);
        for _ in 0..50 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-12, 0.0, 1e-12);
            for (z, t) in logits.iter().zip(target) {
                let p = sigmoid(a * z + b);
                let d = p - if *t { high } else { low };
                let w = p * (1.0 - p);
                (ga, gb) = (ga + d * z, gb + d);
                (haa, hab, hbb) = (haa + w * z * z, hab + w * z, hbb + w);
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-18 {
                break;
            }
            let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
            (a, b) = (a - da, b - db);
            if da.abs().max(db.abs()) < 1e-10 {
                break;
            }
        }
        Self { a, b }
    }
}

/// Why a model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a model file: {1}")]
    Parse(String, String),
    #[error("{path}: format {format:?} version {version}, this build reads {FORMAT:?} version {VERSION}")]
    Version { path: String, format: String, version: u32 },
}

/// One feature's part of a prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    pub feature: usize,
    /// Points of probability (0-100 scale); with the base they add up to the prediction.
    pub points: f64,
}

impl ModelFile {
    /// Reads a model file written by `leadscore train`, or a LightGBM text model.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io(shown.clone(), e))?;
        if text.starts_with("tree\n") || text.starts_with("tree\r\n") {
            let (schema, model) = lightgbm::parse(&text).map_err(|e| ModelError::Parse(shown, e))?;
            return Ok(Self {
                format: FORMAT.into(),
                version: VERSION,
                target: String::new(),
                positive: String::new(),
                schema,
                calibration: Calibration { a: model.sigmoid, b: 0.0 },
                model: Model::LightGbm(model),
                holdout: None,
            });
        }
        let probe: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Parse(shown.clone(), e.to_string()))?;
        let format = probe.get("format").and_then(|f| f.as_str()).unwrap_or_default().to_string();
        let version = probe.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if format != FORMAT || version != VERSION {
            return Err(ModelError::Version { path: shown, format, version });
        }
        serde_json::from_value(probe).map_err(|e| ModelError::Parse(shown, e.to_string()))
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }

    /// The uncalibrated log-odds of an encoded row.
    pub fn raw_logit(&self, row: &[f64]) -> f64 {
        match &self.model {
            Model::LogisticRegression(lr) => lr.logit(row),
            Model::Gbdt(gbdt) => gbdt.logit(row),
            Model::LightGbm(lightgbm) => lightgbm.logit(row),
        }
    }

    /// The calibrated probabilities of many encoded rows, into `out`.
    pub fn probabilities(&self, rows: &[Vec<f64>], out: &mut [f64]) {
        match &self.model {
            Model::LogisticRegression(lr) => rows.iter().zip(out.iter_mut()).for_each(|(r, z)| *z = lr.logit(r)),
            Model::Gbdt(gbdt) => gbdt.logits(rows, out),
            Model::LightGbm(lightgbm) => lightgbm.logits(rows, out),
        }
        for z in out.iter_mut() {
            *z = sigmoid(self.calibration.a * *z + self.calibration.b);
        }
    }

    /// The calibrated probability of an encoded row.
    pub fn probability(&self, row: &[f64]) -> f64 {
        sigmoid(self.calibration.a * self.raw_logit(row) + self.calibration.b)
    }

    /// The probability (0-100) split into a base and each feature's points. Contributions are
    /// made in log-odds (coefficient times value, or changes along tree paths) and scaled so
    /// that they share out exactly the distance from the base probability to this one.
    pub fn explain(&self, row: &[f64]) -> (f64, Vec<Contribution>) {
        let features = self.schema.features.len();
        let (bias, parts) = match &self.model {
            Model::LogisticRegression(lr) => (lr.intercept, lr.contributions(row, features)),
            Model::Gbdt(gbdt) => gbdt.contributions(row, features),
            Model::LightGbm(lightgbm) => lightgbm.contributions(row, features),
        };
        let calibrate = |z: f64| 100.0 * sigmoid(self.calibration.a * z + self.calibration.b);
        let base = calibrate(bias);
        let total = self.probability(row) * 100.0 - base;
        let sum: f64 = parts.iter().sum();
        let contributions = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| **p != 0.0)
            .map(|(feature, p)| Contribution { feature, points: if sum.abs() > 1e-12 { total * p / sum } else { 0.0 } })
            .collect();
        (base, contributions)
    }

    /// Features by importance: |coefficient| summed over a feature's columns, total split gain,
    /// or (for LightGBM models) split counts; largest first.
    pub fn importance(&self) -> Vec<(String, f64)> {
        let mut weights = vec![0.0; self.schema.features.len()];
        match &self.model {
            Model::LogisticRegression(lr) => {
                for (column, weight) in lr.columns.iter().zip(&lr.weights) {
                    weights[column.feature()] += weight.abs();
                }
            }
            Model::Gbdt(gbdt) => weights.clone_from(&gbdt.gain),
            Model::LightGbm(lightgbm) => weights = lightgbm.split_counts(weights.len()),
        }
        let total: f64 = weights.iter().sum::<f64>().max(1e-12);
        let mut ranked: Vec<(String, f64)> =
            self.schema.features.iter().zip(weights).map(|(f, w)| (f.name.clone(), w / total)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked
    }
}
