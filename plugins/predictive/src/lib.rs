//! The predictive scorer: a model trained by `leadscore train` on past wins and losses, served
//! as the calibrated probability of conversion on the 0-100 scale; its points are that
//! probability times the configured `points` (100 unless set). A lead's attributes are read
//! by the names of the columns the model was trained on; missing attributes and unknown
//! categories are handled by the model (missing values learned in training, "other" for
//! categories), never an error. A new model is deployed by replacing the file and reloading.

use std::collections::HashMap;

use leadscore_model::model::ModelFile;
use leadscore_model::schema::{Kind, Value as ModelValue};
use leadscore_plugin_api::{Batch, Factor, Lead, Scorer, Value, export_scorer};
use serde::Deserialize;

/// `[scorers.predictive]`: where the model file is, and the points a certain conversion is
/// worth.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictiveConfig {
    model: Option<String>,
    points: Option<f64>,
}

#[derive(Debug)]
pub struct Predictive {
    model: ModelFile,
    /// Points per unit of probability.
    points: f64,
    /// Per feature, its categories as spelt in training and their encoded values: most lead
    /// text matches exactly, and a hash lookup beats scanning the category list.
    exact: Vec<HashMap<String, f64>>,
}

impl Predictive {
    /// Maps each attribute name of the batch to the model feature it feeds, once per batch.
    fn resolve(&self, batch: &Batch<'_>) -> Vec<Option<usize>> {
        batch.names().map(|name| self.model.schema.position(name)).collect()
    }

    /// The lead as the model's encoded row, in `row`.
    fn encode(&self, lead: &Lead<'_>, features: &[Option<usize>], row: &mut Vec<f64>) {
        row.clear();
        row.resize(self.model.schema.features.len(), f64::NAN);
        for attribute in lead.attributes() {
            if let Some(&Some(feature)) = features.get(attribute.name() as usize) {
                let value = match attribute.value() {
                    Value::Text(text) => match self.exact[feature].get(text) {
                        Some(encoded) => {
                            row[feature] = *encoded;
                            continue;
                        }
                        None => ModelValue::Text(text),
                    },
                    Value::Number(n) => ModelValue::Number(n),
                    Value::Flag(flag) => ModelValue::Flag(flag),
                };
                row[feature] = self.model.schema.features[feature].encode(value);
            }
        }
    }
    /// The model's explanation of a lead, each contribution times `scale`.
    fn factors(&self, batch: &Batch<'_>, lead: usize, scale: f64) -> Vec<Factor> {
        let features = self.resolve(batch);
        let mut row = Vec::new();
        self.encode(&batch.lead(lead), &features, &mut row);
        let (base, contributions) = self.model.explain(&row);
        let mut factors = vec![Factor {
            feature: "base rate".into(),
            contribution: scale * base,
            detail: "the model's probability before this lead's features".into(),
        }];
        factors.extend(contributions.into_iter().map(|c| {
            let feature = &self.model.schema.features[c.feature];
            Factor {
                feature: feature.name.clone(),
                contribution: scale * c.points,
                detail: format!("{} = {}", feature.name, feature.describe(row[c.feature])),
            }
        }));
        factors
    }
}

impl Scorer for Predictive {
    const NAME: &'static str = "predictive";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ATTRIBUTES_ONLY: bool = true;

    fn create(config: &str) -> Result<Self, String> {
        let config: PredictiveConfig = serde_json::from_str(config).map_err(|e| e.to_string())?;
        let points = config.points.unwrap_or(100.0);
        if !(points.is_finite() && points > 0.0) {
            return Err(format!("points must be a finite number above 0, got {points}"));
        }
        let path = config.model.ok_or("model: the path of a model file (from leadscore train) is required")?;
        let model = ModelFile::load(std::path::Path::new(&path)).map_err(|e| format!("model: {e}"))?;
        let exact = model
            .schema
            .features
            .iter()
            .map(|feature| match &feature.kind {
                Kind::Categorical { categories, .. } => {
                    categories.iter().enumerate().map(|(i, c)| (c.clone(), i as f64)).collect()
                }
                _ => HashMap::new(),
            })
            .collect();
        Ok(Self { model, points, exact })
    }

    fn score(&self, batch: &Batch<'_>, scores: &mut [f64]) -> Result<(), String> {
        let features = self.resolve(batch);
        let mut rows = vec![Vec::new(); batch.len()];
        for (lead, row) in batch.leads().zip(rows.iter_mut()) {
            self.encode(&lead, &features, row);
        }
        self.model.probabilities(&rows, scores);
        scores.iter_mut().for_each(|p| *p *= 100.0);
        Ok(())
    }

    fn score_points(&self, batch: &Batch<'_>, scores: &mut [f64], points: &mut [f64]) -> Result<(), String> {
        self.score(batch, scores)?;
        for (points, score) in points.iter_mut().zip(scores.iter()) {
            *points = score / 100.0 * self.points;
        }
        Ok(())
    }

    fn explain(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String> {
        Ok(self.factors(batch, lead, 1.0))
    }

    fn explain_points(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String> {
        Ok(self.factors(batch, lead, self.points / 100.0))
    }
}

export_scorer!(Predictive);
