//! Scoring's part of a configuration generation (see `generation`): the loaded plugins, the
//! campaigns' weights and bands, and how scorer scores compose into a lead's score. A pipeline
//! never changes; a reload or a configuration change builds a new one and swaps it in whole,
//! and calls already running finish on the old one, which unloads its libraries when the last
//! of them is done.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use leadscore_plugin_api::BatchBuf;
use tracing::{error, info, warn};

use crate::scoring::ScoreError;
use leadscore_config::{AccountConfig, BandsConfig, Composition, Config, DEFAULT_CAMPAIGN};
use leadscore_plugin_loader::{self as plugin, CallError, Plugin};
use leadscore_store::buckets::{self, Buckets, Family};

/// Where a score falls among a campaign's thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Band {
    Unqualified,
    Warm,
    SalesReady,
    Hot,
}

/// A library that was not loaded, and why.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug)]
pub struct Campaign {
    pub name: Arc<str>,
    pub composition: Composition,
    /// One weight per plugin, in plugin order; zero for scorers the campaign does not weigh.
    pub weights: Vec<f64>,
    pub bands: BandsConfig,
    pub account: AccountConfig,
    /// The attributes that say who a lead is, in order.
    pub display: Arc<[Arc<str>]>,
    /// Scored beside the campaign when a lead is claimed; never dialled by.
    pub shadow: Option<Shadow>,
}

/// A campaign's shadow scoring, over the same plugins.
#[derive(Debug)]
pub struct Shadow {
    pub composition: Composition,
    /// One weight per plugin, in plugin order.
    pub weights: Vec<f64>,
    pub bands: BandsConfig,
}

impl Campaign {
    /// A campaign scored by these weights, with the default bands and roll-up and no shadow.
    pub fn new(name: &str, composition: Composition, weights: Vec<f64>) -> Self {
        Self {
            name: Arc::from(name),
            composition,
            weights,
            bands: BandsConfig::default(),
            account: AccountConfig::default(),
            display: Arc::new([]),
            shadow: None,
        }
    }

    /// The shadow composite from a lead's scorer scores and points, and its band.
    pub fn shadow_score(&self, scores: &[f64], points: &[f64]) -> Option<(f64, Band)> {
        let shadow = self.shadow.as_ref()?;
        let parts = shadow.weights.iter().zip(scores).zip(points);
        let score =
            compose(shadow.composition, parts.map(|((&weight, &score), &points)| Part { weight, score, points }))?;
        Some((score, Band::of(score, &shadow.bands)))
    }
}

#[derive(Debug)]
pub struct Pipeline {
    /// The configuration this pipeline was built from, and its version.
    pub config: Arc<Config>,
    pub version: u64,
    pub plugins: Vec<Arc<Plugin>>,
    /// Each plugin's metrics, in plugin order.
    series: Vec<ScorerSeries>,
    /// The plugins' names, in plugin order; shared by every score this pipeline computes.
    pub names: Arc<[Arc<str>]>,
    pub refused: Vec<Refusal>,
    /// The default campaign first.
    pub campaigns: Vec<Campaign>,
    /// Whether a campaign filter or a routing expression reads `account.score`: only then do
    /// the dialer and routing look it up, and an account's move requeue its leads.
    pub reads_account_score: bool,
}

impl Pipeline {
    /// Each weight of a campaign (live or shadow) on a scorer that is not loaded, as
    /// `campaigns.<c>.weights.<scorer>`.
    pub fn unloaded_weights(&self) -> Vec<String> {
        let loaded = |scorer: &str| self.names.iter().any(|n| &**n == scorer);
        self.config
            .campaigns
            .iter()
            .flat_map(|(name, campaign)| {
                let shadow = campaign.shadow.iter().flat_map(|s| s.weights.keys().map(move |k| ("shadow.weights", k)));
                campaign.weights.keys().map(|k| ("weights", k)).chain(shadow).map(move |(table, k)| (name, table, k))
            })
            .filter(|(_, _, scorer)| !loaded(scorer))
            .map(|(name, table, scorer)| format!("campaigns.{name}.{table}.{scorer}"))
            .collect()
    }

    /// Says what this pipeline loaded, refused and weighs without having: once it is the one
    /// in use (a pipeline built for a change that is then refused says nothing of itself).
    pub fn log_loaded(&self) {
        for plugin in &self.plugins {
            info!(plugin = %plugin.name, version = %plugin.version, path = %plugin.path.display(), "scorer plugin loaded");
        }
        for refusal in &self.refused {
            error!(path = %refusal.path.display(), cause = %refusal.reason, "scorer plugin refused");
        }
        for weight in self.unloaded_weights() {
            warn!(%weight, "a campaign weighs a scorer that is not loaded; it counts for nothing");
        }
    }

    /// Loads the configured plugin libraries. A library that fails any check is refused and
    /// listed (`log_loaded` says so); the pipeline is built from the others.
    pub fn load(config: Arc<Config>, version: u64, scratch: &Path, now_ms: i64) -> Self {
        let mut plugins: Vec<Arc<Plugin>> = Vec::new();
        let mut refused = Vec::new();
        let mut refuse = |path: PathBuf, reason: String| refused.push(Refusal { path, reason });
        let paths = match plugin::libraries(&config.plugin_dirs(), &config.plugins.load) {
            Ok(paths) => paths,
            Err((dir, err)) => {
                refuse(dir, format!("cannot list the plugin directory: {err}"));
                Vec::new()
            }
        };
        for path in paths {
            let config_of = |name: &str| {
                config.scorers.get(name).map_or_else(
                    || "{}".into(),
                    |settings| serde_json::to_string(settings).expect("TOML values serialize as JSON"),
                )
            };
            match Plugin::load(&path, scratch, config_of, config.plugins.max_faults, now_ms) {
                Ok(loaded) => match plugins.iter().find(|p| p.name == loaded.name) {
                    Some(first) => {
                        let reason =
                            format!("a scorer named `{}` is already loaded from {}", loaded.name, first.path.display());
                        refuse(path, reason);
                    }
                    None => plugins.push(Arc::new(loaded)),
                },
                Err(err) => refuse(path, err.to_string()),
            }
        }
        let names: Arc<[Arc<str>]> = plugins.iter().map(|p| Arc::from(p.name.as_str())).collect();
        let mut campaigns: Vec<Campaign> = config
            .campaigns
            .iter()
            .map(|(name, campaign)| {
                let weights = |table: &std::collections::BTreeMap<String, f64>| {
                    names.iter().map(|n| table.get(&**n).copied().unwrap_or(0.0)).collect()
                };
                Campaign {
                    name: Arc::from(name.as_str()),
                    composition: campaign.composition,
                    weights: weights(&campaign.weights),
                    bands: campaign.bands,
                    account: campaign.account,
                    display: campaign.display.iter().map(|name| Arc::from(name.as_str())).collect(),
                    shadow: campaign.shadow.as_ref().map(|shadow| Shadow {
                        composition: shadow.composition,
                        weights: weights(&shadow.weights),
                        bands: shadow.bands,
                    }),
                }
            })
            .collect();
        campaigns.sort_by_key(|c| &*c.name != DEFAULT_CAMPAIGN);
        let reads_account_score = config.reads_account_score();
        let series = plugins.iter().map(|plugin| ScorerSeries::of(&plugin.name)).collect();
        Self { config, version, plugins, series, names, refused, campaigns, reads_account_score }
    }

    /// The index of a campaign; the empty name is the default campaign.
    pub fn campaign(&self, name: &str) -> Option<usize> {
        let name = if name.is_empty() { DEFAULT_CAMPAIGN } else { name };
        self.campaigns.iter().position(|c| &*c.name == name)
    }

    /// The index of a campaign, or an error naming `field` and the campaigns there are.
    pub fn campaign_or_error(&self, field: &str, name: &str) -> Result<usize, ScoreError> {
        self.campaign(name).ok_or_else(|| ScoreError::UnknownCampaign {
            field: field.into(),
            name: name.into(),
            known: self.campaigns.iter().map(|c| &*c.name).collect::<Vec<_>>().join(", "),
        })
    }

    pub fn campaign_names(&self) -> Vec<Arc<str>> {
        self.campaigns.iter().map(|c| c.name.clone()).collect()
    }

    /// Scores a batch with every plugin in service: one column per plugin, `NaN` where a plugin
    /// is quarantined or its call failed (it is then left out of the composite), and the first
    /// failed call's error, for callers who asked for a score now and should hear of it.
    ///
    /// For stored leads, `stored` is asked for each lead's scores and points (one per plugin)
    /// that this pipeline gave it from the attributes it has now, into the two vectors: a
    /// plugin that reads attributes alone is called only if a lead lacks them.
    pub fn score(
        &self,
        batch: &BatchBuf,
        (scores, points): (&mut Vec<f64>, &mut Vec<f64>),
        mut stored: impl FnMut(usize, &mut Vec<f64>, &mut Vec<f64>) -> bool,
    ) -> (Columns, Option<CallError>) {
        let keeps = |p: usize| self.plugins[p].attributes_only && self.plugins[p].is_active();
        let mut columns = Columns::new(self.plugins.len(), batch.len());
        let kept = (0..self.plugins.len()).any(keeps)
            && (0..batch.len()).all(|i| {
                // A score that failed is asked for again.
                let found = stored(i, scores, points) && (0..scores.len()).all(|p| !keeps(p) || !scores[p].is_nan());
                if found {
                    (0..scores.len()).filter(|&p| keeps(p)).for_each(|p| columns.set(p, i, scores[p], points[p]));
                }
                found
            });
        let mut failed = None;
        for (p, plugin) in self.plugins.iter().enumerate() {
            if (kept && keeps(p)) || !plugin.is_active() || batch.is_empty() {
                continue;
            }
            let (scores, points) = columns.column_mut(p);
            if let Err(err) = self.series[p].measured(plugin, batch, scores, points) {
                if matches!(err, CallError::Failed { .. }) {
                    warn!(plugin = %plugin.name, cause = %err, "scorer call failed");
                }
                scores.fill(f64::NAN);
                points.fill(f64::NAN);
                failed.get_or_insert(err);
            }
        }
        (columns, failed)
    }

    /// Scores leads given inline, failing if any plugin in service fails.
    pub fn score_strict(&self, batch: &BatchBuf) -> Result<Columns, CallError> {
        match self.score(batch, (&mut Vec::new(), &mut Vec::new()), |_, _, _| false) {
            (_, Some(err)) => Err(err),
            (columns, None) => Ok(columns),
        }
    }

    /// A lead's composite in a campaign from its scorers' scores and points (`NaN` =
    /// unavailable), or `None` when no weighted scorer is available.
    pub fn compose(&self, campaign: usize, scores: &[f64], points: &[f64]) -> Option<f64> {
        let campaign = &self.campaigns[campaign];
        let parts = campaign.weights.iter().zip(scores).zip(points);
        compose(campaign.composition, parts.map(|((&weight, &score), &points)| Part { weight, score, points }))
    }
}

/// Seconds a scorer spends per lead, from 50 ns to 50 µs.
static SECONDS_PER_LEAD: Family = Family {
    name: "leadscore_scorer_seconds_per_lead",
    help: "Time a scorer spent per lead of a batch",
    bounds: &[5e-8, 1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 5e-5],
};

/// A plugin's metrics, resolved once when its pipeline is built (the recorder is installed
/// before): a call costs atomic adds, not labels built and looked up.
#[derive(Debug)]
struct ScorerSeries {
    calls: metrics::Counter,
    seconds_per_lead: Arc<Buckets>,
    faults: metrics::Counter,
    quarantines: metrics::Counter,
}

impl ScorerSeries {
    fn of(scorer: &str) -> Self {
        let label = || [("scorer", scorer.to_owned())];
        Self {
            calls: metrics::counter!("leadscore_scorer_calls_total", &label()),
            seconds_per_lead: buckets::series(&SECONDS_PER_LEAD, label().into()),
            faults: metrics::counter!("leadscore_scorer_faults_total", &label()),
            quarantines: metrics::counter!("leadscore_scorer_quarantines_total", &label()),
        }
    }

    /// A plugin's call, counted and timed: calls, faults, a quarantine it caused, and the time
    /// per lead.
    fn measured(
        &self,
        plugin: &Plugin,
        batch: &BatchBuf,
        scores: &mut [f64],
        points: &mut [f64],
    ) -> Result<(), CallError> {
        let scored = plugin.score_timed(batch, scores, points);
        self.calls.increment(1);
        match scored {
            Ok(took) => {
                self.seconds_per_lead.record(took.as_secs_f64() / batch.len() as f64);
                Ok(())
            }
            // A failure the plugin reports is not a fault (see the loader): only these count.
            Err(err) => {
                if matches!(
                    err,
                    CallError::Panicked { .. } | CallError::OutOfRange { .. } | CallError::NotFinite { .. }
                ) {
                    self.faults.increment(1);
                    if !plugin.is_active() {
                        self.quarantines.increment(1);
                    }
                }
                Err(err)
            }
        }
    }
}

/// Every plugin's scores and points for one batch: a column per plugin, a row per lead.
#[derive(Debug)]
pub struct Columns {
    leads: usize,
    /// Plugin by plugin, a lead's score (or points) at `plugin * leads + lead`: two
    /// allocations a batch, however many plugins.
    scores: Vec<f64>,
    points: Vec<f64>,
}

impl Columns {
    fn new(plugins: usize, leads: usize) -> Self {
        Self { leads, scores: vec![f64::NAN; plugins * leads], points: vec![f64::NAN; plugins * leads] }
    }

    /// Plugin `p`'s scores and points, one per lead.
    fn column_mut(&mut self, p: usize) -> (&mut [f64], &mut [f64]) {
        let range = p * self.leads..(p + 1) * self.leads;
        (&mut self.scores[range.clone()], &mut self.points[range])
    }

    /// Plugin `p`'s score and points of lead `i`.
    fn set(&mut self, p: usize, i: usize, score: f64, points: f64) {
        self.scores[p * self.leads + i] = score;
        self.points[p * self.leads + i] = points;
    }

    /// Lead `i`'s scores and points, one per plugin, into the two vectors (a row exists only
    /// in a batch of leads, so the stride is never zero).
    pub fn row(&self, i: usize, scores: &mut Vec<f64>, points: &mut Vec<f64>) {
        scores.clear();
        scores.extend(self.scores.iter().skip(i).step_by(self.leads));
        points.clear();
        points.extend(self.points.iter().skip(i).step_by(self.leads));
    }
}

/// One scorer's inputs to a composite; `score` and `points` are `NaN` when it is unavailable.
#[derive(Clone, Copy, Debug)]
pub struct Part {
    pub weight: f64,
    pub score: f64,
    pub points: f64,
}

impl Part {
    /// Whether this scorer counts towards the composite.
    fn counts(&self) -> bool {
        self.weight > 0.0 && !self.score.is_nan()
    }
}

/// The composite of the parts that count, or `None` when none does: the sum of weighted points
/// floored at 0, or the weighted mean of the scores.
pub fn compose(composition: Composition, parts: impl IntoIterator<Item = Part>) -> Option<f64> {
    let (mut sum, mut weight) = (0.0, 0.0);
    for part in parts.into_iter().filter(Part::counts) {
        weight += part.weight;
        sum += part.weight
            * match composition {
                Composition::Points => part.points,
                Composition::WeightedMean => part.score,
            };
    }
    (weight > 0.0).then(|| match composition {
        Composition::Points => sum.max(0.0),
        Composition::WeightedMean => (sum / weight).clamp(0.0, 100.0),
    })
}

/// Each part's share of the composite, zero for those that do not count: its weighted points,
/// which add up to the composite before the floor at 0; or its weighted score over the total
/// weight, which add up to the mean.
pub fn shares(composition: Composition, parts: &[Part]) -> Vec<f64> {
    let weight: f64 = parts.iter().filter(|p| p.counts()).map(|p| p.weight).sum();
    parts
        .iter()
        .map(|part| match composition {
            _ if !part.counts() => 0.0,
            Composition::Points => part.weight * part.points,
            Composition::WeightedMean => part.weight * part.score / weight,
        })
        .collect()
}

impl Band {
    pub fn of(score: f64, bands: &BandsConfig) -> Self {
        if score >= bands.hot {
            Band::Hot
        } else if score >= bands.sales_ready {
            Band::SalesReady
        } else if score >= bands.warm {
            Band::Warm
        } else {
            Band::Unqualified
        }
    }

    /// The band of a rank as `Band as u8` gives it.
    pub fn from_rank(rank: u8) -> Option<Self> {
        [Band::Unqualified, Band::Warm, Band::SalesReady, Band::Hot].get(rank as usize).copied()
    }

    /// The band a configuration names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "unqualified" => Some(Band::Unqualified),
            "warm" => Some(Band::Warm),
            "sales_ready" => Some(Band::SalesReady),
            "hot" => Some(Band::Hot),
            _ => None,
        }
    }

    /// As configurations and expressions name it.
    pub fn name(self) -> &'static str {
        match self {
            Band::Unqualified => "unqualified",
            Band::Warm => "warm",
            Band::SalesReady => "sales_ready",
            Band::Hot => "hot",
        }
    }
}

/// The two-axis grade: a fit letter (A best) and an engagement number (1 best), each by
/// quarter of the 0-100 scale, e.g. "A1". A missing scorer shows as `-`.
pub fn grade(fit: Option<f64>, engagement: Option<f64>) -> String {
    let (letter, number) = grade_parts(fit, engagement);
    format!("{letter}{number}")
}

/// A grade's letter and number, `-` for a scorer not in service.
pub fn grade_parts(fit: Option<f64>, engagement: Option<f64>) -> (char, char) {
    let quarter = |score: f64| 3 - ((score / 25.0).floor() as usize).min(3);
    (
        fit.map_or('-', |s| ['A', 'B', 'C', 'D'][quarter(s)]),
        engagement.map_or('-', |s| ['1', '2', '3', '4'][quarter(s)]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_use_the_lower_bounds() {
        let bands = BandsConfig::default();
        let cases = [(0.0, Band::Unqualified), (24.99, Band::Unqualified), (25.0, Band::Warm), (49.9, Band::Warm)];
        let more = [(50.0, Band::SalesReady), (74.99, Band::SalesReady), (75.0, Band::Hot), (100.0, Band::Hot)];
        for (score, band) in cases.into_iter().chain(more) {
            assert_eq!(Band::of(score, &bands), band, "{score}");
        }
    }

    #[test]
    fn grades_read_fit_as_a_letter_and_engagement_as_a_number() {
        assert_eq!(grade(Some(100.0), Some(80.0)), "A1");
        assert_eq!(grade(Some(74.9), Some(50.0)), "B2");
        assert_eq!(grade(Some(25.0), Some(24.9)), "C4");
        assert_eq!(grade(Some(0.0), None), "D-");
    }

    fn parts(weights: &[f64], scores: &[f64], points: &[f64]) -> Vec<Part> {
        weights
            .iter()
            .zip(scores)
            .zip(points)
            .map(|((&weight, &score), &points)| Part { weight, score, points })
            .collect()
    }

    #[test]
    fn a_weighted_mean_is_over_the_scorers_available() {
        let mean = |scores: &[f64]| compose(Composition::WeightedMean, parts(&[3.0, 1.0, 0.0], scores, &[0.0; 3]));
        assert_eq!(mean(&[80.0, 40.0, 10.0]), Some(70.0));
        // A scorer out of service leaves the mean over the others.
        assert_eq!(mean(&[f64::NAN, 40.0, 10.0]), Some(40.0));
        assert_eq!(mean(&[f64::NAN, f64::NAN, 10.0]), None);
        let shares = shares(Composition::WeightedMean, &parts(&[3.0, 1.0, 0.0], &[80.0, 40.0, 10.0], &[0.0; 3]));
        assert_eq!(shares, [60.0, 10.0, 0.0]);
    }

    #[test]
    fn points_add_up_weighted_and_the_total_is_floored_at_zero() {
        let sum =
            |weights: &[f64], points: &[f64]| compose(Composition::Points, parts(weights, &[50.0, 50.0, 50.0], points));
        // Director (10 fit points) who requested a demo (25 behaviour points).
        assert_eq!(sum(&[1.0, 1.0, 0.0], &[10.0, 25.0, 99.0]), Some(35.0));
        assert_eq!(sum(&[2.0, 0.5, 0.0], &[10.0, 20.0, 99.0]), Some(30.0));
        assert_eq!(sum(&[1.0, 1.0, 0.0], &[5.0, -15.0, 0.0]), Some(0.0));
        // Above 100 is allowed: there is no ceiling on points.
        assert_eq!(sum(&[1.0, 1.0, 0.0], &[45.0, 95.0, 0.0]), Some(140.0));
        let shares = shares(Composition::Points, &parts(&[1.0, 2.0, 0.0], &[50.0, f64::NAN, 50.0], &[10.0, 5.0, 9.0]));
        assert_eq!(shares, [10.0, 0.0, 0.0]);
    }
}
