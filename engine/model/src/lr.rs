//! L2-regularised logistic regression, fitted by Newton's method (iteratively reweighted least
//! squares) on a sparse design: numbers clipped to their central 99% and standardised, flags as
//! 0/1, one column per category but the most frequent (the reference the intercept carries),
//! and a column for "missing" wherever training saw it. (A log1p of non-negative counts was
//! tried and cost 0.011 of held-out AUC on the lead data.)
//!
//! Newton's method alone can diverge: once a step overshoots so far that most rows saturate,
//! their curvature vanishes and the next step is enormous, and the fit ends predicting 1 for
//! every row. So every step is damped until the penalised loss goes down (backtracking line
//! search), the Newton system is shifted towards the gradient when it is not positive definite
//! (Levenberg-Marquardt), and the loss is computed without overflow. The fit starts from the
//! base rate, so it can only end better than it on the training rows.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use crate::schema::{Kind, Schema};

/// Newton steps at most; the fit converges in about ten.
const MAX_ITERATIONS: usize = 100;
/// Converged when no weight moves more than this in a step.
const TOLERANCE: f64 = 1e-8;
/// Halvings of a step before the line search gives up (the fit is then as good as it gets).
const MAX_HALVINGS: usize = 40;
/// The least relative decrease of the loss a step must bring (Armijo's condition).
const SUFFICIENT_DECREASE: f64 = 1e-4;
/// Numbers are clipped to these quantiles of the training values before standardising, so a
/// few enormous values neither set the scale of everyone else nor get enormous leverage.
const CLIP_QUANTILES: (f64, f64) = (0.005, 0.995);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogisticRegression {
    pub columns: Vec<Column>,
    pub weights: Vec<f64>,
    pub intercept: f64,
}

/// One column of the design, read from one feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    /// `(clip(x) - mean) / std`; 0 when missing. Models written before clipping have none.
    Numeric {
        feature: usize,
        mean: f64,
        std: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clip: Option<(f64, f64)>,
    },
    /// 1 when the feature is missing.
    Missing { feature: usize },
    /// The flag as 0 or 1; 0 when missing.
    Flag { feature: usize },
    /// 1 when the feature is this category (the last index is "other").
    Category { feature: usize, index: usize },
}

impl Column {
    pub fn feature(&self) -> usize {
        match self {
            Column::Numeric { feature, .. }
            | Column::Missing { feature }
            | Column::Flag { feature }
            | Column::Category { feature, .. } => *feature,
        }
    }

    fn value(&self, row: &[f64]) -> f64 {
        let x = row[self.feature()];
        match self {
            Column::Missing { .. } => f64::from(u8::from(x.is_nan())),
            _ if x.is_nan() => 0.0,
            Column::Numeric { mean, std, clip, .. } => {
                let x = clip.map_or(x, |(low, high)| x.clamp(low, high));
                (x - mean) / std
            }
            Column::Flag { .. } => x,
            Column::Category { index, .. } => f64::from(u8::from(x as usize == *index)),
        }
    }
}

impl LogisticRegression {
    /// Fits on encoded rows with L2 penalty `lambda` on the weights (not the intercept).
    pub fn fit(schema: &Schema, rows: &[Vec<f64>], target: &[bool], lambda: f64) -> Self {
        let columns = design(schema, rows);
        let sparse: Vec<Vec<(usize, f64)>> = rows.iter().map(|row| sparse_row(&columns, row)).collect();
        let problem = Problem { rows: &sparse, target, lambda, d: columns.len() + 1 };
        let d = problem.d; // the intercept is the last coefficient
        let mut beta = vec![0.0; d];
        let positives = target.iter().filter(|t| **t).count() as f64;
        beta[d - 1] = (positives / (target.len() as f64 - positives)).ln();
        let mut loss = problem.loss(&beta);
        for _ in 0..MAX_ITERATIONS {
            let (gradient, hessian) = problem.gradient_and_hessian(&beta);
            let step = newton_step(hessian, &gradient, d);
            let slope: f64 = gradient.iter().zip(&step).map(|(g, s)| g * s).sum();
            // Halve the step until the loss falls enough; a step that cannot is the end.
            let mut t = 1.0;
            let mut next = vec![0.0; d];
            let accepted = (0..MAX_HALVINGS).find_map(|_| {
                for ((n, b), s) in next.iter_mut().zip(&beta).zip(&step) {
                    *n = b - t * s;
                }
                let next_loss = problem.loss(&next);
                if next_loss <= loss - SUFFICIENT_DECREASE * t * slope {
                    return Some(next_loss);
                }
                t /= 2.0;
                None
            });
            let Some(next_loss) = accepted else { break };
            let largest = step.iter().fold(0.0f64, |m, s| m.max((t * s).abs()));
            (beta, loss) = (next, next_loss);
            if largest < TOLERANCE {
                break;
            }
        }
        let intercept = beta.pop().expect("the intercept");
        Self { columns, weights: beta, intercept }
    }

    /// The log-odds of a row.
    pub fn logit(&self, row: &[f64]) -> f64 {
        self.intercept + self.columns.iter().zip(&self.weights).map(|(c, w)| w * c.value(row)).sum::<f64>()
    }

    /// Each feature's part of the log-odds (the intercept is the rest).
    pub fn contributions(&self, row: &[f64], features: usize) -> Vec<f64> {
        let mut parts = vec![0.0; features];
        for (column, weight) in self.columns.iter().zip(&self.weights) {
            parts[column.feature()] += weight * column.value(row);
        }
        parts
    }
}

/// The design columns a schema and its training rows call for.
fn design(schema: &Schema, rows: &[Vec<f64>]) -> Vec<Column> {
    let mut columns = Vec::new();
    for (feature, f) in schema.features.iter().enumerate() {
        let mut present: Vec<f64> = rows.iter().map(|r| r[feature]).filter(|x| !x.is_nan()).collect();
        let has_missing = present.len() < rows.len();
        match &f.kind {
            Kind::Numeric if !present.is_empty() => {
                present.sort_by(f64::total_cmp);
                let quantile = |q: f64| present[((present.len() - 1) as f64 * q).round() as usize];
                let (low, high) = (quantile(CLIP_QUANTILES.0), quantile(CLIP_QUANTILES.1));
                let clipped = present.iter().map(|x| x.clamp(low, high));
                let mean = clipped.clone().sum::<f64>() / present.len() as f64;
                let variance = clipped.map(|x| (x - mean).powi(2)).sum::<f64>() / present.len() as f64;
                // A column whose central values are all alike carries nothing once clipped.
                if variance > f64::EPSILON * mean.abs().max(1.0) {
                    columns.push(Column::Numeric { feature, mean, std: variance.sqrt(), clip: Some((low, high)) });
                }
            }
            Kind::Numeric => {}
            Kind::Flag => columns.push(Column::Flag { feature }),
            Kind::Categorical { categories, .. } => {
                let mut counts = vec![0usize; categories.len() + 1];
                for x in &present {
                    counts[(*x as usize).min(categories.len())] += 1;
                }
                // The most frequent category is the reference: its rows are carried by the
                // intercept, so the indicators and the intercept are not collinear.
                let reference = (0..counts.len()).max_by_key(|&i| (counts[i], Reverse(i)));
                for (index, count) in counts.iter().enumerate() {
                    if *count > 0 && Some(index) != reference {
                        columns.push(Column::Category { feature, index });
                    }
                }
            }
        }
        if has_missing {
            columns.push(Column::Missing { feature });
        }
    }
    columns
}

fn sparse_row(columns: &[Column], row: &[f64]) -> Vec<(usize, f64)> {
    columns.iter().enumerate().map(|(i, c)| (i, c.value(row))).filter(|(_, v)| *v != 0.0).collect()
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The penalised logistic loss over a sparse design, its gradient and its Hessian.
struct Problem<'a> {
    rows: &'a [Vec<(usize, f64)>],
    target: &'a [bool],
    lambda: f64,
    /// Coefficients: one per column, then the intercept.
    d: usize,
}

impl Problem<'_> {
    fn logit(&self, beta: &[f64], x: &[(usize, f64)]) -> f64 {
        beta[self.d - 1] + x.iter().map(|(c, v)| beta[*c] * v).sum::<f64>()
    }

    /// The summed log loss plus the penalty, finite for any coefficients.
    fn loss(&self, beta: &[f64]) -> f64 {
        let data: f64 = self
            .rows
            .iter()
            .zip(self.target)
            .map(|(x, y)| {
                let z = self.logit(beta, x);
                // log(1 + e^z) - y z, without overflow.
                z.max(0.0) + (-z.abs()).exp().ln_1p() - if *y { z } else { 0.0 }
            })
            .sum();
        data + self.lambda / 2.0 * beta[..self.d - 1].iter().map(|b| b * b).sum::<f64>()
    }

    /// The gradient, and the Hessian's lower triangle (row-major, `d × d`).
    fn gradient_and_hessian(&self, beta: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let d = self.d;
        let mut gradient = vec![0.0; d];
        let mut hessian = vec![0.0; d * d];
        for (x, y) in self.rows.iter().zip(self.target) {
            let p = sigmoid(self.logit(beta, x));
            let (g, w) = (p - f64::from(u8::from(*y)), (p * (1.0 - p)).max(1e-12));
            for &(i, vi) in x.iter().chain([(d - 1, 1.0)].iter()) {
                gradient[i] += g * vi;
                for &(j, vj) in x.iter().chain([(d - 1, 1.0)].iter()) {
                    if j <= i {
                        hessian[i * d + j] += w * vi * vj;
                    }
                }
            }
        }
        for i in 0..d - 1 {
            gradient[i] += self.lambda * beta[i];
            hessian[i * d + i] += self.lambda;
        }
        (gradient, hessian)
    }
}

/// The Newton step `H⁻¹ g`. When `H` is not numerically positive definite, its diagonal is
/// raised until it is (Levenberg-Marquardt), which turns the step towards the gradient.
fn newton_step(hessian: Vec<f64>, gradient: &[f64], d: usize) -> Vec<f64> {
    let largest = (0..d).map(|i| hessian[i * d + i]).fold(0.0f64, f64::max).max(1e-12);
    let mut shift = 0.0;
    loop {
        let mut a = hessian.clone();
        for i in 0..d {
            a[i * d + i] += shift;
        }
        if let Some(step) = solve_lower(&mut a, gradient, d) {
            return step;
        }
        shift = if shift == 0.0 { 1e-10 * largest } else { shift * 10.0 };
    }
}

/// Solves `A x = b` for a symmetric positive definite `A` of which only the lower triangle is
/// filled, by Cholesky factorisation in place; `None` when a pivot shows `A` is not (or not
/// numerically) positive definite.
fn solve_lower(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let scale = (0..n).map(|i| a[i * n + i].abs()).fold(0.0f64, f64::max);
    for j in 0..n {
        let mut diagonal = a[j * n + j];
        for k in 0..j {
            diagonal -= a[j * n + k] * a[j * n + k];
        }
        if diagonal.is_nan() || diagonal <= 1e-13 * scale {
            return None;
        }
        let diagonal = diagonal.sqrt();
        a[j * n + j] = diagonal;
        for i in j + 1..n {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = sum / diagonal;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let sum: f64 = (0..i).map(|k| a[i * n + k] * y[k]).sum();
        y[i] = (b[i] - sum) / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let sum: f64 = (i + 1..n).map(|k| a[k * n + i] * x[k]).sum();
        x[i] = (y[i] - sum) / a[i * n + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4, 2], [2, 3]] x = [2, 1] has x = [0.5, 0].
        let mut a = vec![4.0, 0.0, 2.0, 3.0];
        let x = solve_lower(&mut a, &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        // [[1, 2], [2, 1]] is indefinite: refused, not solved with a clamped pivot.
        assert_eq!(solve_lower(&mut [1.0, 0.0, 2.0, 1.0], &[1.0, 1.0], 2), None);
    }
}
