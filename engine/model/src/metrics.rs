//! How good probabilities are, on held-out rows: ranking (ROC AUC), fit (log loss, Brier
//! score) and calibration (predicted against observed, by decile).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub rows: usize,
    pub positives: usize,
    pub auc: f64,
    pub log_loss: f64,
    /// The log loss of predicting the training rows' positive share for every row: what a
    /// model must beat to know anything. (Absent from model files written before it.)
    #[serde(default)]
    pub base_rate_log_loss: f64,
    pub brier: f64,
    pub calibration: Vec<Decile>,
}

/// One tenth of the rows, ordered by predicted probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decile {
    pub rows: usize,
    pub mean_predicted: f64,
    pub observed: f64,
}

impl Report {
    /// Measures `probabilities` against `target`; `base_rate` is the training rows' positive
    /// share.
    pub fn new(probabilities: &[f64], target: &[bool], base_rate: f64) -> Self {
        Self {
            rows: target.len(),
            positives: target.iter().filter(|t| **t).count(),
            auc: auc(probabilities, target),
            log_loss: log_loss(probabilities, target),
            base_rate_log_loss: log_loss(&vec![base_rate; target.len()], target),
            brier: brier(probabilities, target),
            calibration: calibration(probabilities, target),
        }
    }
}

/// The probability that a random positive is ranked above a random negative, ties counting
/// half (the Mann-Whitney statistic over average ranks).
pub fn auc(scores: &[f64], target: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let rank = (i + j + 2) as f64 / 2.0;
        rank_sum += rank * order[i..=j].iter().filter(|&&k| target[k]).count() as f64;
        i = j + 1;
    }
    let positives = target.iter().filter(|t| **t).count() as f64;
    let negatives = target.len() as f64 - positives;
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

pub fn log_loss(probabilities: &[f64], target: &[bool]) -> f64 {
    let sum: f64 = probabilities
        .iter()
        .zip(target)
        .map(|(p, t)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if *t { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    sum / target.len() as f64
}

pub fn brier(probabilities: &[f64], target: &[bool]) -> f64 {
    let sum: f64 = probabilities.iter().zip(target).map(|(p, t)| (p - f64::from(u8::from(*t))).powi(2)).sum();
    sum / target.len() as f64
}

pub fn calibration(probabilities: &[f64], target: &[bool]) -> Vec<Decile> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let n = order.len();
    (0..10)
        .map(|d| &order[d * n / 10..(d + 1) * n / 10])
        .filter(|rows| !rows.is_empty())
        .map(|rows| Decile {
            rows: rows.len(),
            mean_predicted: rows.iter().map(|&i| probabilities[i]).sum::<f64>() / rows.len() as f64,
            observed: rows.iter().filter(|&&i| target[i]).count() as f64 / rows.len() as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_pairs_and_ties() {
        assert_eq!(auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), 0.75);
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), 0.5);
        assert_eq!(auc(&[0.9, 0.1], &[true, false]), 1.0);
    }

    #[test]
    fn losses_match_hand_computed_values() {
        let (p, t) = ([0.8, 0.3], [true, false]);
        assert!((log_loss(&p, &t) - (-(0.8f64.ln()) - 0.7f64.ln()) / 2.0).abs() < 1e-12);
        assert!((brier(&p, &t) - (0.04 + 0.09) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_has_ten_ordered_deciles() {
        let p: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let t: Vec<bool> = (0..100).map(|i| i >= 50).collect();
        let deciles = calibration(&p, &t);
        assert_eq!(deciles.len(), 10);
        assert_eq!((deciles[0].observed, deciles[9].observed), (0.0, 1.0));
        assert!((deciles[9].mean_predicted - 0.945).abs() < 1e-12);
    }
}
