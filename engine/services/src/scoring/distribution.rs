//! How a campaign's stored leads score: a histogram of composites by band, and the leads in
//! each band and grade. Read from the score index, one shard at a time.

use std::sync::Arc;

use super::index::ScoreIndex;
use super::pipeline::{Band, grade_parts};
use leadscore_config::{BandsConfig, Composition};

pub const BANDS: [Band; 4] = [Band::Unqualified, Band::Warm, Band::SalesReady, Band::Hot];

#[derive(Clone, Debug, PartialEq)]
pub struct Bin {
    pub low: f64,
    pub high: f64,
    /// Leads by band, in `BANDS` order.
    pub by_band: [u64; 4],
}

#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    pub campaign: Arc<str>,
    pub leads: u64,
    pub bins: Vec<Bin>,
    pub by_band: [u64; 4],
    /// Grades held by at least one lead, best first ("A1" before "A2" before "B1").
    pub by_grade: Vec<(String, u64)>,
    /// The campaign's band thresholds, for drawing.
    pub thresholds: BandsConfig,
}

/// The campaign's scores in `bins` bins of equal width from 0 up to `top` if given (a higher
/// score joins the last bin); else up to 100 when the campaign takes a weighted mean, or up to
/// the best score, rounded up to a whole width.
pub fn of(
    index: &ScoreIndex,
    campaign: &Arc<str>,
    composition: Composition,
    bins: usize,
    top: Option<f64>,
) -> Distribution {
    let score_in = |entry: &super::index::Entry| {
        entry.campaigns.iter().find(|(c, ..)| c == campaign).map(|&(_, score, band)| (score, band))
    };
    let top = match (top, composition) {
        (Some(top), _) => top,
        (None, Composition::WeightedMean) => 100.0,
        (None, Composition::Points) => {
            let mut best = 0.0f64;
            index.each(|entry| {
                if let Some((score, _)) = score_in(entry) {
                    best = best.max(score);
                }
            });
            (best / bins as f64).ceil().max(1.0) * bins as f64
        }
    };
    let width = top / bins as f64;
    let mut out = Distribution {
        campaign: campaign.clone(),
        leads: 0,
        bins: (0..bins).map(|i| Bin { low: i as f64 * width, high: (i + 1) as f64 * width, by_band: [0; 4] }).collect(),
        by_band: [0; 4],
        by_grade: Vec::new(),
        thresholds: BandsConfig::default(),
    };
    // Letters A-D then '-', numbers 1-4 then '-': best first.
    let mut grades = [[0u64; 5]; 5];
    index.each(|entry| {
        let Some((score, band)) = score_in(entry) else { return };
        // A score that rose past the top since the first pass joins the last bin.
        let bin = ((score / width) as usize).min(bins - 1);
        out.bins[bin].by_band[band as usize] += 1;
        out.by_band[band as usize] += 1;
        out.leads += 1;
        let score_of = |wanted: &str| {
            let at = entry.scorer_names.iter().position(|n| &**n == wanted)?;
            Some(entry.scorers[at]).filter(|s| !s.is_nan())
        };
        let (letter, number) = grade_parts(score_of("fit"), score_of("engagement"));
        let place = |c: char, first: char| (c as usize).wrapping_sub(first as usize).min(4);
        grades[place(letter, 'A')][place(number, '1')] += 1;
    });
    for (l, letter) in "ABCD-".chars().enumerate() {
        for (n, number) in "1234-".chars().enumerate() {
            if grades[l][n] > 0 {
                out.by_grade.push((format!("{letter}{number}"), grades[l][n]));
            }
        }
    }
    out
}
