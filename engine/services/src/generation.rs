//! One configuration generation: everything compiled from one version of the configuration —
//! the loaded scorers with each campaign's weights and bands (scoring's `Pipeline`), each
//! campaign's contact rules (the dialer's `Rules`) and the routing policy — and the one place
//! that builds the next one and swaps it in.
//!
//! A generation never changes. `ReloadScorers` and `UpdateConfig` build a new one beside the
//! current one (so plugins validate their settings and rules their expressions), hand its
//! pipeline to scoring, which rescores every lead, and then swap the pointer; calls in flight
//! finish on the generation they started with. The dialer and routing read the current
//! generation; they notice a new one by its version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use crate::policy::contact::Rules;
use crate::policy::order::Order;
use crate::policy::routing::Policy;
use crate::scoring::pipeline::Pipeline;
use crate::scoring::{ScoreError, Scoring, Trigger};
use leadscore_config::{BandsConfig, Config, DEFAULT_CAMPAIGN};
use leadscore_store::Store;
use leadscore_store::clock::Clock;
use leadscore_store::dial::CallResult;
use leadscore_store::lead::LeadId;
use leadscore_store::sync::{Mutex, Rank, RwLock};

/// What the dialer and routing read of a campaign.
#[derive(Debug)]
pub struct CampaignRules {
    pub name: Arc<str>,
    pub bands: BandsConfig,
    /// Whom the dialer calls, when and how often.
    pub rules: Arc<Rules>,
    /// In what order it offers the callable.
    pub order: Arc<Order>,
    pub series: CampaignSeries,
}

/// A campaign's dialer metrics, resolved once per generation (the recorder is installed
/// before): a claim or an outcome costs an atomic add, not labels built and looked up.
#[derive(Debug)]
pub struct CampaignSeries {
    pub claims: metrics::Counter,
    pub releases: metrics::Counter,
    /// By `CallResult` (its discriminant).
    pub outcomes: Vec<metrics::Counter>,
}

impl CampaignSeries {
    pub fn of(campaign: &str) -> Self {
        let label = || ("campaign", campaign.to_owned());
        Self {
            claims: metrics::counter!("leadscore_dialer_claims_total", &[label()]),
            releases: metrics::counter!("leadscore_dialer_releases_total", &[label()]),
            outcomes: CallResult::ALL
                .iter()
                .map(|result| {
                    metrics::counter!(
                        "leadscore_dialer_outcomes_total",
                        &[label(), ("result", result.name().to_owned())]
                    )
                })
                .collect(),
        }
    }

    pub fn outcome(&self, result: CallResult) -> &metrics::Counter {
        &self.outcomes[result as usize]
    }
}

#[derive(Debug)]
pub struct Generation {
    /// The configuration this generation was built from, and its version.
    pub config: Arc<Config>,
    pub version: u64,
    /// The scorers, and how their scores compose per campaign.
    pub pipeline: Arc<Pipeline>,
    /// In the pipeline's campaign order: the default campaign first.
    pub campaigns: Vec<CampaignRules>,
    /// Who takes which lead.
    pub routing: Arc<Policy>,
}

/// Why a configuration change was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigChangeError {
    #[error("the configuration is at version {current}, not {expected}: someone else changed it; read it again")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A reload would drop a working scorer: the running ones stay.
    #[error("reload refused, the running scorers stay (force takes what loads): {}", .0.join("; "))]
    ReloadRefused(Vec<String>),
    #[error(transparent)]
    Store(#[from] leadscore_store::StoreError),
}

/// The libraries `next` refuses that `current` did not, each as `plugins: <why>`.
fn new_refusals(current: &Generation, next: &Generation) -> Vec<String> {
    let before = &current.pipeline.refused;
    next.pipeline
        .refused
        .iter()
        .filter(|r| !before.iter().any(|old| old.path == r.path && old.reason == r.reason))
        .map(|r| format!("plugins: {}", r.reason))
        .collect()
}

impl Generation {
    /// Every problem compiling the configuration's contact rules and routing policy would meet,
    /// each naming its key; empty if it compiles.
    pub fn problems(config: &Config) -> Vec<String> {
        compile_rules(config).err().unwrap_or_default()
    }

    /// Compiles a configuration and loads its plugins (copied into `scratch` first). A plugin
    /// that fails a check is refused and listed; the generation is built from the others.
    pub fn compile(config: Arc<Config>, version: u64, scratch: &Path, now_ms: i64) -> Result<Self, Vec<String>> {
        let (rules, routing) = compile_rules(&config)?;
        let pipeline = Arc::new(Pipeline::load(config.clone(), version, scratch, now_ms));
        let campaigns = pipeline
            .campaigns
            .iter()
            .map(|campaign| CampaignRules {
                name: campaign.name.clone(),
                bands: campaign.bands,
                rules: rules[&*campaign.name].0.clone(),
                order: rules[&*campaign.name].1.clone(),
                series: CampaignSeries::of(&campaign.name),
            })
            .collect();
        debug_assert_eq!(pipeline.campaigns.first().map(|c| &*c.name), Some(DEFAULT_CAMPAIGN));
        Ok(Self { config, version, pipeline, campaigns, routing: Arc::new(routing) })
    }

    /// The index of a campaign; the empty name is the default campaign.
    pub fn campaign(&self, name: &str) -> Option<usize> {
        self.pipeline.campaign(name)
    }

    /// The index of a campaign, or an error naming `field` and the campaigns there are.
    pub fn campaign_or_error(&self, field: &str, name: &str) -> Result<usize, ScoreError> {
        self.pipeline.campaign_or_error(field, name)
    }
}

/// Each campaign's contact rules, by campaign name.
type ContactRules<'c> = HashMap<&'c str, (Arc<Rules>, Arc<Order>)>;

/// Each campaign's contact rules and the routing policy; or every problem, the campaigns'
/// first.
fn compile_rules(config: &Config) -> Result<(ContactRules<'_>, Policy), Vec<String>> {
    let (mut problems, mut rules) = (Vec::new(), HashMap::new());
    for (name, campaign) in &config.campaigns {
        let path = format!("campaigns.{name}");
        match (Rules::compile(&path, &campaign.filter, &campaign.contact), Order::compile(&path, &campaign.dialing)) {
            (Ok(compiled), Ok(order)) => _ = rules.insert(name.as_str(), (Arc::new(compiled), Arc::new(order))),
            (compiled, order) => problems.extend(compiled.err().into_iter().chain(order.err()).flatten()),
        }
    }
    match Policy::compile(&config.routing) {
        Ok(routing) if problems.is_empty() => Ok((rules, routing)),
        Ok(_) => Err(problems),
        Err(found) => Err(problems.into_iter().chain(found).collect()),
    }
}

/// The generation swapped in, and the leads whose scores it changed.
pub type Swapped = (Arc<Generation>, Vec<LeadId>);

/// The current generation, and the swap to the next.
#[derive(Debug)]
pub struct Generations {
    current: RwLock<Arc<Generation>>,
    /// One reload or configuration change at a time.
    changing: Mutex<()>,
    store: Arc<Store>,
    scoring: Arc<Scoring>,
    clock: Arc<dyn Clock>,
    /// Where private copies of plugin libraries are made before loading.
    scratch: PathBuf,
}

impl Generations {
    /// Compiles the configuration at `version` and loads its plugins, scores every stored lead
    /// with them, and returns scoring with the generations above it; or every problem the
    /// configuration has.
    pub fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        config: Arc<Config>,
        version: u64,
    ) -> Result<(Arc<Scoring>, Arc<Self>), Vec<String>> {
        let scratch = std::env::temp_dir().join(format!("leadscore-plugins-{}", std::process::id()));
        let first = Generation::compile(config, version, &scratch, clock.now_ms())?;
        first.pipeline.log_loaded();
        let scoring = Scoring::start(store.clone(), clock.clone(), first.pipeline.clone());
        let generations = Arc::new(Self {
            current: RwLock::new(Rank::Generation, Arc::new(first)),
            changing: Mutex::new(Rank::ConfigChange, ()),
            store,
            scoring: scoring.clone(),
            clock,
            scratch,
        });
        Ok((scoring, generations))
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current.read().clone()
    }

    /// Loads the plugin libraries anew beside the running ones and swaps them in; returns the
    /// new generation and the leads whose scores changed. Calls already running finish on the
    /// old libraries. A library refused now that was not refused before (a broken rebuild, a
    /// model that no longer loads) refuses the whole reload and the running scorers stay,
    /// unless `force` takes what loads.
    pub fn reload(&self, force: bool) -> Result<Swapped, ConfigChangeError> {
        let _one_at_a_time = self.changing.lock();
        let current = self.current();
        let next = Generation::compile(current.config.clone(), current.version, &self.scratch, self.clock.now_ms())
            .expect("the running configuration compiled before");
        let refused = new_refusals(&current, &next);
        if !refused.is_empty() && !force {
            warn!(problems = refused.join("; "), "plugin reload rejected; the running scorers stay");
            return Err(ConfigChangeError::ReloadRefused(refused));
        }
        Ok(self.swap(next, Trigger::Reload))
    }

    /// Takes a new configuration at run time: compiles it and loads its plugins (so plugins
    /// validate their settings), logs it as the next version, and swaps it in. Refused whole
    /// if it was based on another version, changes a section that needs a restart, does not
    /// compile, or makes a plugin refuse to load.
    pub fn update_config(
        &self,
        next: Config,
        expected_version: u64,
        actor: &str,
    ) -> Result<Swapped, ConfigChangeError> {
        let _one_at_a_time = self.changing.lock();
        let current = self.current();
        if expected_version != current.version {
            return Err(ConfigChangeError::VersionMismatch { expected: expected_version, current: current.version });
        }
        let version = current.version + 1;
        let next = self.prepare(&current, next, version)?;
        self.store.record_config(version, next.config.runtime_toml(), actor)?;
        info!(version, "configuration changed");
        Ok(self.swap(next, Trigger::Config(version)))
    }

    /// Whether `update_config` would take `next` as `version`, changing nothing: a cluster
    /// checks a change on one of its shards before it appends it to its configuration log.
    pub fn check(&self, next: Config, version: u64) -> Result<(), ConfigChangeError> {
        self.prepare(&self.current(), next, version).map(drop)
    }

    /// Swaps in `version` of the configuration, already checked and logged elsewhere (the
    /// cluster's configuration log); nothing if this generation is at that version or past
    /// it. The problems if it does not compile here (a plugin library missing on this node).
    pub fn adopt(&self, config: Arc<Config>, version: u64) -> Result<Option<Swapped>, Vec<String>> {
        let _one_at_a_time = self.changing.lock();
        if version <= self.current().version {
            return Ok(None);
        }
        let next = Generation::compile(config, version, &self.scratch, self.clock.now_ms())?;
        info!(version, "configuration version adopted");
        Ok(Some(self.swap(next, Trigger::Config(version))))
    }

    /// `next` compiled as `version`, if nothing refuses it.
    fn prepare(&self, current: &Generation, next: Config, version: u64) -> Result<Generation, ConfigChangeError> {
        let problems = current.config.runtime_change_problems(&next);
        if !problems.is_empty() {
            return Err(ConfigChangeError::Invalid(problems));
        }
        let next = Generation::compile(Arc::new(next), version, &self.scratch, self.clock.now_ms())
            .map_err(ConfigChangeError::Invalid)?;
        let mut refused = new_refusals(current, &next);
        // A weight on a scorer that is not loaded counts for nothing: a typo, or a library
        // left out of `plugins.load`.
        let before = current.pipeline.unloaded_weights();
        refused.extend(next.pipeline.unloaded_weights().into_iter().filter(|w| !before.contains(w)).map(|weight| {
            let loaded = next.pipeline.names.join(", ");
            format!("{weight}: no scorer of that name is loaded (loaded: {loaded}); load its library or weigh another")
        }));
        if !refused.is_empty() {
            warn!(problems = refused.join("; "), "configuration change rejected; the running configuration stays");
            return Err(ConfigChangeError::Invalid(refused));
        }
        Ok(next)
    }

    /// Scoring takes the new pipeline and rescores every lead, then the generation is swapped.
    fn swap(&self, next: Generation, trigger: Trigger) -> Swapped {
        next.pipeline.log_loaded();
        let next = Arc::new(next);
        let changed = self.scoring.install(next.pipeline.clone(), trigger);
        *self.current.write() = next.clone();
        info!(
            scorers = next.pipeline.plugins.len(),
            refused = next.pipeline.refused.len(),
            changed = changed.len(),
            "configuration generation swapped"
        );
        (next, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_config::CampaignConfig;

    #[test]
    fn every_problem_of_the_rules_and_the_policy_is_named_at_once() {
        let mut config = Config::default();
        let mut spring = CampaignConfig::default();
        spring.contact.calling_window = "21:00-08:00".into();
        config.campaigns.insert("spring".into(), spring);
        config.routing.rules[0].when = "band == 'hoot'".into();
        let problems = Generation::problems(&config);
        assert!(problems.iter().any(|p| p.starts_with("campaigns.spring.contact.calling_window: ")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("unknown band 'hoot'")), "{problems:?}");
        let dir = tempfile::tempdir().unwrap();
        let compiled = Generation::compile(Arc::new(config), 1, dir.path(), 0);
        assert_eq!(compiled.unwrap_err(), problems);
    }

    #[test]
    fn a_generation_holds_each_campaigns_rules_in_the_pipelines_order() {
        let mut config = Config::default();
        config.plugins.dir = "/nonexistent".into();
        let mut spring = CampaignConfig::default();
        spring.contact.lease = "1m".into();
        config.campaigns.insert("autumn".into(), CampaignConfig::default());
        config.campaigns.insert("spring".into(), spring);
        let dir = tempfile::tempdir().unwrap();
        let generation = Generation::compile(Arc::new(config), 3, dir.path(), 0).unwrap();
        let names: Vec<&str> = generation.campaigns.iter().map(|c| &*c.name).collect();
        let scored: Vec<&str> = generation.pipeline.campaigns.iter().map(|c| &*c.name).collect();
        assert_eq!(names, scored);
        assert_eq!(names[0], DEFAULT_CAMPAIGN);
        let spring = &generation.campaigns[generation.campaign("spring").unwrap()];
        assert_eq!(spring.rules.lease_ms, 60_000);
        assert_eq!(generation.version, 3);
        assert!(matches!(generation.campaign_or_error("c", "winter"), Err(ScoreError::UnknownCampaign { .. })));
    }
}
