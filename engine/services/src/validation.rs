//! Live validation: how well a campaign's scores foretold the dialer's outcomes, the measures
//! the playbooks tell operators to watch. Each lead called in the campaign counts once: its
//! score, band and predictive probability at its first recorded claim there, and whether any
//! call to it in the campaign converted. Leads are grouped by the configuration version their
//! score was computed with; a campaign's shadow scoring is measured on the same leads beside
//! the live one.

use leadscore_model::metrics;

use crate::scoring::pipeline::Band;
use leadscore_store::Store;
use leadscore_store::dial::{AtClaim, CallResult, Dial};

/// Which scoring a section measures: the live one or the shadow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Live,
    /// The campaign's shadow configuration: scored at the same claims, never dialled by.
    Shadow,
}

/// Leads and conversions in one slice of the scores.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bucket {
    pub leads: u64,
    pub conversions: u64,
    /// The lowest and highest score in the slice.
    pub min_score: f64,
    pub max_score: f64,
}

impl Bucket {
    pub fn rate(&self) -> f64 {
        if self.leads == 0 { 0.0 } else { self.conversions as f64 / self.leads as f64 }
    }
}

/// Predicted against observed conversion in one decile of the predictive probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub leads: u64,
    pub mean_probability: f64,
    pub conversion_rate: f64,
}

/// One scoring's measures under one configuration version.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub config_version: u64,
    pub variant: Variant,
    pub all: Bucket,
    /// Unqualified, warm, sales-ready, hot.
    pub bands: [Bucket; 4],
    /// Best scores first: the first holds the top tenth of the leads.
    pub deciles: Vec<Bucket>,
    /// The top decile's conversion rate over the average; `None` without conversions.
    pub top_decile_lift: Option<f64>,
    /// The ROC AUC of the score against conversion; `None` unless both outcomes occurred.
    pub roc_auc: Option<f64>,
    /// By decile of the predictive probability, highest first; empty without predictions.
    pub calibration: Vec<Calibration>,
}

/// One lead's claim-time facts and outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The claim's lease id: equal scores fall into deciles in claim order, the same at
    /// every reading.
    pub lease: u64,
    pub at_claim: AtClaim,
    pub converted: bool,
}

/// Every measure of a campaign's leads called so far, live and shadow, per configuration
/// version (oldest first, live before shadow).
pub fn report(store: &Store, campaign: &str) -> Vec<Section> {
    measure_all(observations(store, campaign))
}

/// Each lead of the campaign called so far, as the report counts it.
pub fn observations(store: &Store, campaign: &str) -> Vec<Observation> {
    let mut observations = Vec::new();
    store.each_dial(|_, dial| observations.extend(observe(dial, campaign)));
    observations
}

/// The report's sections over `observations`, from one store or several (a cluster's shards,
/// whose lease ids are each their own: equal ids keep the order they were given in).
pub fn measure_all(mut observations: Vec<Observation>) -> Vec<Section> {
    observations.sort_by_key(|o| (o.at_claim.config_version, o.lease));
    let mut sections = Vec::new();
    for group in observations.chunk_by(|a, b| a.at_claim.config_version == b.at_claim.config_version) {
        let version = group[0].at_claim.config_version;
        // In claim order; sorts below are stable, so equal scores stay in it.
        let live: Vec<(f64, Band, bool)> =
            group.iter().map(|o| (o.at_claim.score, band(o.at_claim.band), o.converted)).collect();
        let mut section = measure(version, Variant::Live, live);
        section.calibration = calibration(group);
        sections.push(section);
        let shadow: Vec<(f64, Band, bool)> = group
            .iter()
            .filter_map(|o| o.at_claim.shadow.map(|(score, rank)| (score, band(rank), o.converted)))
            .collect();
        if !shadow.is_empty() {
            sections.push(measure(version, Variant::Shadow, shadow));
        }
    }
    sections
}

/// A lead's first scored claim in the campaign that was called, and whether a call converted.
fn observe(dial: &Dial, campaign: &str) -> Option<Observation> {
    let mut calls = dial.attempts.iter().filter(|a| a.campaign == campaign);
    let (lease, at_claim) = calls.clone().find_map(|a| dial.at_claim_of(a.lease).map(|at| (a.lease, *at)))?;
    Some(Observation { lease, at_claim, converted: calls.any(|a| a.result == CallResult::Converted) })
}

fn band(rank: u8) -> Band {
    Band::from_rank(rank).unwrap_or(Band::Unqualified)
}

/// The measures of one set of (score, band, converted).
fn measure(config_version: u64, variant: Variant, mut leads: Vec<(f64, Band, bool)>) -> Section {
    leads.sort_by(|a, b| b.0.total_cmp(&a.0));
    let all = bucket(&leads);
    let bands = [Band::Unqualified, Band::Warm, Band::SalesReady, Band::Hot].map(|wanted| {
        let members: Vec<_> = leads.iter().filter(|(_, band, _)| *band == wanted).copied().collect();
        bucket(&members)
    });
    let deciles: Vec<Bucket> = tenths(leads.len()).map(|range| bucket(&leads[range])).collect();
    let top_decile_lift = (all.conversions > 0).then(|| deciles.first().map_or(0.0, Bucket::rate) / all.rate());
    let scores: Vec<f64> = leads.iter().map(|l| l.0).collect();
    let converted: Vec<bool> = leads.iter().map(|l| l.2).collect();
    let both = all.conversions > 0 && all.conversions < all.leads;
    let roc_auc = both.then(|| metrics::auc(&scores, &converted));
    Section { config_version, variant, all, bands, deciles, top_decile_lift, roc_auc, calibration: Vec::new() }
}

fn bucket(leads: &[(f64, Band, bool)]) -> Bucket {
    let scores = leads.iter().map(|l| l.0);
    Bucket {
        leads: leads.len() as u64,
        conversions: leads.iter().filter(|l| l.2).count() as u64,
        min_score: scores.clone().reduce(f64::min).unwrap_or(0.0),
        max_score: scores.reduce(f64::max).unwrap_or(0.0),
    }
}

/// The predictive probability against the conversion rate, by decile of the probability.
fn calibration(group: &[Observation]) -> Vec<Calibration> {
    let mut predicted: Vec<(f64, bool)> =
        group.iter().filter_map(|o| o.at_claim.probability.map(|p| (p, o.converted))).collect();
    predicted.sort_by(|a, b| b.0.total_cmp(&a.0));
    tenths(predicted.len())
        .map(|range| {
            let slice = &predicted[range];
            let n = slice.len() as f64;
            Calibration {
                leads: slice.len() as u64,
                mean_probability: slice.iter().map(|p| p.0).sum::<f64>() / n,
                conversion_rate: slice.iter().filter(|p| p.1).count() as f64 / n,
            }
        })
        .collect()
}

/// Ten slices of `n` sorted items, as even as whole items allow; fewer when `n` < 10.
fn tenths(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..10).map(move |d| d * n / 10..(d + 1) * n / 10).filter(|range| !range.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_deciles_lift_and_auc_of_a_known_set() {
        // 100 leads scored 0-99; the best 20 all converted, the rest did not.
        let leads: Vec<(f64, Band, bool)> = (0..100)
            .map(|i| {
                let score = f64::from(i);
                (score, Band::of(score, &Default::default()), i >= 80)
            })
            .collect();
        let section = measure(3, Variant::Live, leads);
        assert_eq!((section.all.leads, section.all.conversions), (100, 20));
        assert_eq!(section.bands[Band::Hot as usize].leads, 25);
        assert_eq!(section.bands[Band::Hot as usize].conversions, 20);
        assert_eq!(section.deciles.len(), 10);
        assert_eq!((section.deciles[0].min_score, section.deciles[0].max_score), (90.0, 99.0));
        assert_eq!(section.deciles[0].rate(), 1.0);
        assert_eq!(section.top_decile_lift, Some(1.0 / 0.2));
        assert_eq!(section.roc_auc, Some(1.0));
    }

    #[test]
    fn calibration_sets_predicted_beside_observed_by_decile() {
        // Probabilities 0.00-0.99; a lead converts when its probability is at least 0.5.
        let group: Vec<Observation> = (0..100)
            .map(|i| Observation {
                lease: i,
                at_claim: AtClaim {
                    config_version: 1,
                    score: 0.0,
                    band: 0,
                    probability: Some(i as f64 / 100.0),
                    shadow: None,
                },
                converted: i >= 50,
            })
            .collect();
        let deciles = calibration(&group);
        assert_eq!(deciles.len(), 10);
        assert!((deciles[0].mean_probability - 0.945).abs() < 1e-9);
        assert_eq!((deciles[0].conversion_rate, deciles[9].conversion_rate), (1.0, 0.0));
        assert!(deciles.iter().all(|d| d.leads == 10));
    }

    #[test]
    fn slices_cover_every_item_once() {
        for n in [0, 1, 7, 10, 11, 99, 1001] {
            let covered: usize = tenths(n).map(|r| r.len()).sum();
            assert_eq!(covered, n);
        }
        assert_eq!(tenths(3).count(), 3);
    }
}
