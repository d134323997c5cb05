//! How a campaign's stored leads score: a histogram of composites by band, and the leads in
//! each band and grade. Read from the score index, one shard at a time.

use std::sync::Arc;

use super::index::ScoreIndex;
use super::pipeline::{Band, grade_parts};
use leadscore_config::{BandsConfig, Composition};
use leadscore_store::history::ScoreChange;

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
    /// Leads scoring 0: no points at all (most of a freshly loaded list).
    pub without_points: u64,
    /// Leads hot now that turned hot within the last day, and the last seven.
    pub new_hot: [u64; 2],
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
        without_points: 0,
        new_hot: [0; 2],
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
        out.without_points += u64::from(score <= 0.0);
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

/// When a lead hot now in a campaign turned hot, by its score history (oldest first): the
/// first change of its latest run of hot ones. `None` when that run reaches back past the
/// history's start and the history is full (`bound` changes), so the turn was dropped.
pub fn turned_hot_at(history: &[ScoreChange], campaign: &str, bound: usize) -> Option<i64> {
    let mut turned = None;
    for change in history.iter().filter(|c| c.campaign == campaign).rev() {
        if change.band != Band::Hot as u8 {
            return turned;
        }
        turned = Some(change.at_ms);
    }
    turned.filter(|_| history.len() < bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_store::history::Cause;

    #[test]
    fn a_lead_turned_hot_at_the_start_of_its_latest_hot_run() {
        let change = |at_ms, campaign: &str, band: Band| ScoreChange {
            at_ms,
            campaign: campaign.into(),
            score: 0.0,
            band: band as u8,
            cause: Cause::Upsert,
        };
        let history = [
            change(1, "default", Band::Hot),
            change(2, "default", Band::Warm),
            change(3, "default", Band::Hot),
            change(4, "other", Band::Warm),
            change(5, "default", Band::Hot),
        ];
        assert_eq!(turned_hot_at(&history, "default", 100), Some(3));
        assert_eq!(turned_hot_at(&history, "other", 100), None);
        // Created hot: the first change.
        assert_eq!(turned_hot_at(&history[..1], "default", 100), Some(1));
        // Hot as far back as a full history goes: the turn is not known.
        assert_eq!(turned_hot_at(&history[2..], "default", 3), None);
        assert_eq!(turned_hot_at(&history[2..], "default", 4), Some(3));
    }
}
