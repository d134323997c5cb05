//! Configuration: one TOML document with a built-in default for every field. Loading is a pure
//! function of the file's text, the environment and the command-line overrides (in that order
//! of precedence, last wins), and reports every problem at once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use leadscore_store::{FsyncPolicy, StoreOptions};

pub mod tokens;

/// The configuration format this build reads.
pub const FORMAT_VERSION: u32 = 1;
/// The campaign every lead belongs to.
pub const DEFAULT_CAMPAIGN: &str = "default";
/// Routing rules a configuration may define (a lead's matching rules are a 64-bit set).
pub const MAX_ROUTING_RULES: usize = 64;
/// Campaigns a configuration may define.
pub const MAX_CAMPAIGNS: usize = 64;
/// Tables whose keys are names the user chooses (scorers, campaigns) rather than settings.
/// The roles a token may hold; see `auth::Role`.
pub const ROLES: &[&str] = &["ingest", "reader", "scorer", "dialer", "privacy", "admin"];

/// The name by which campaign filters and routing expressions read a lead's account's score.
pub const ACCOUNT_SCORE: &str = "account.score";
const OPEN_TABLES: &[&str] = &["scorers", "campaigns", "limits.message_bytes"];
/// What `GetConfig` shows in place of each token's hash.
pub const REDACTED: &str = "redacted";

/// The sections `UpdateConfig` may change at run time; the others need a restart.
pub const RUNTIME_SECTIONS: &[&str] = &["plugins", "scoring", "scorers", "campaigns", "routing"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The format version of this document, so later builds can migrate it.
    pub version: u32,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub plugins: PluginsConfig,
    pub scoring: ScoringConfig,
    /// Each scorer's own settings, by scorer name, handed to the plugin as JSON; the plugin
    /// validates them when it is loaded.
    pub scorers: BTreeMap<String, toml::Value>,
    /// Campaigns by name; `default` always exists and scores every lead, the others score
    /// the leads that list them.
    pub campaigns: BTreeMap<String, CampaignConfig>,
    pub dialer: DialerConfig,
    pub routing: RoutingConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    pub console: ConsoleConfig,
    pub limits: LimitsConfig,
}

/// Bounds that keep an overloaded server answering: excess calls are refused with
/// RESOURCE_EXHAUSTED at once rather than queued without end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Calls being served at once (health checks aside); beyond, a call is refused.
    pub max_in_flight: usize,
    /// Concurrent HTTP/2 streams one connection may open.
    pub max_streams_per_connection: u32,
    /// Calls per second each token may make (a token bucket); 0 means no limit.
    pub rate_per_token: f64,
    /// Calls a token may make at once after being idle.
    pub burst_per_token: f64,
    /// Largest message per service family (`leads`, `scoring`, `dialer`, `routing`, `admin`),
    /// in bytes; a family not listed takes `server.max_message_bytes`.
    pub message_bytes: BTreeMap<String, usize>,
}

/// The service families `limits.message_bytes` may name.
pub const FAMILIES: &[&str] = &["leads", "scoring", "dialer", "routing", "admin"];

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            max_streams_per_connection: 256,
            rate_per_token: 0.0,
            burst_per_token: 100.0,
            message_bytes: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The largest message a service family takes or sends.
    pub fn message_bytes(&self, family: &str) -> usize {
        self.limits.message_bytes.get(family).copied().unwrap_or(self.server.max_message_bytes)
    }
}

/// The Prometheus scrape endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served; empty turns metrics off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Where the web console is served (HTTPS when `server.tls` is set); empty turns it off.
    pub listen: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into() }
    }
}

/// Who may call: bearer tokens with roles. With none, the server serves only on loopback.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
}

/// One token, by the SHA-256 of its text (`leadscore token new` makes one): the token itself
/// is never stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it, as logs and the audit trail name the caller.
    pub name: String,
    /// Lower-case hex, 64 digits.
    pub sha256: String,
    /// `ingest`, `reader`, `scorer`, `dialer`, `privacy` or `admin`.
    pub roles: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Tried in order; the first whose condition holds takes the lead, and after its timeout
    /// the next that holds (escalation).
    pub rules: Vec<RoutingRuleConfig>,
    /// With fewer eligible agents available than this, the longest idle is chosen rather than
    /// the best expected conversion: too few to choose between.
    pub min_agents_for_pairing: u32,
    /// How many decided calls' worth of the team's conversion rate an agent's estimate starts
    /// from, so a new agent is neither starved nor trusted on two lucky calls.
    pub prior_calls: f64,
    /// The share of decisions made by longest idle instead, as the control arm of an A/B check.
    pub control_share: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingRuleConfig {
    pub name: String,
    /// A condition over the lead, e.g. `band == 'hot' and lead.country == 'ES'`.
    pub when: String,
    /// The queue the rule routes to: its agents' pool, or a queue nobody calls (nurture).
    pub queue: String,
    /// Which agents serve the queue, e.g. `languages has lead.language and tier >= 2`; empty
    /// means no agent takes these leads.
    pub agents: String,
    /// Higher is more urgent.
    pub priority: i32,
    /// How long a lead waits here for an agent before the next rule that holds is tried, e.g.
    /// "10m"; empty means for ever.
    pub timeout: String,
}

impl Default for RoutingRuleConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            when: "true".into(),
            queue: String::new(),
            agents: String::new(),
            priority: 0,
            timeout: String::new(),
        }
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        let rule = |name: &str, when: &str, queue: &str, agents: &str, priority, timeout: &str| RoutingRuleConfig {
            name: name.into(),
            when: when.into(),
            queue: queue.into(),
            agents: agents.into(),
            priority,
            timeout: timeout.into(),
        };
        let hot = "band in ['hot', 'sales_ready']";
        Self {
            rules: vec![
                rule("hot-to-senior-sales", hot, "senior-sales", "tier >= 2", 30, "10m"),
                rule("hot-to-sales", hot, "sales", "tier >= 1", 30, ""),
                rule("warm-to-sdr", "band == 'warm'", "sdr", "tier == 1", 20, "1h"),
                rule("warm-to-sales", "band == 'warm'", "sales", "tier >= 1", 20, ""),
                rule("cold-to-nurture", "true", "nurture", "", 0, ""),
            ],
            min_agents_for_pairing: 3,
            prior_calls: 20.0,
            control_share: 0.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialerConfig {
    /// A hopper stream with credits but nothing to claim looks again at least this often, so
    /// that leads whose wait ends (a window opens, a recycle delay passes) are pushed.
    pub session_poll_ms: u64,
    /// Credits a hopper stream may hold at once.
    pub max_session_credits: u32,
}

impl Default for DialerConfig {
    fn default() -> Self {
        Self { session_poll_ms: 1000, max_session_credits: 10_000 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Where scorer libraries are loaded from; empty means the directory of the `leadscore`
    /// binary, where cargo puts the plugins it builds.
    pub dir: PathBuf,
    /// More directories searched after `dir`, for your own plugins beside the built-in ones.
    pub extra_dirs: Vec<PathBuf>,
    /// Library names to load (`leadscore_fit` is `libleadscore_fit.so` on Linux), each from
    /// the first directory that holds it; empty means every library in every directory.
    pub load: Vec<String>,
    /// A plugin that panics (or returns scores outside 0-100) this many times is quarantined.
    pub max_faults: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Every lead is rescored this often, so that time decay shows in scores and ranks.
    pub sweep_interval_ms: u64,
    /// Leads per plugin call; large enough that the cost of crossing into a plugin vanishes.
    pub batch_size: usize,
    /// Threads a large rescore (a sweep, a reload) is spread over; 0 means one per core.
    pub threads: usize,
    /// Changes of score or band kept per lead for `ScoreHistory`; 0 keeps none.
    pub history: usize,
    /// Decay moves scores a little at every sweep: it enters the history only when it moved a
    /// score this many points since the last change kept, or changed its band.
    pub history_min_decay: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignConfig {
    /// How the scorers' parts make the lead's score.
    pub composition: Composition,
    /// Weight per scorer name.
    pub weights: BTreeMap<String, f64>,
    pub bands: BandsConfig,
    /// Which of its leads the dialer may offer.
    pub filter: FilterConfig,
    /// When and how often its leads may be called.
    pub contact: ContactConfig,
    /// How its leads' scores roll up into their accounts' scores.
    pub account: AccountConfig,
    /// Another way to score the campaign's leads, scored beside this one when a lead is claimed
    /// and reported beside it by `ValidationReport`; never used for dialling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowConfig>,
}

/// How an account's score is made from its leads' scores in a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    pub rollup: Rollup,
    /// How many of the best leads `top_mean` averages.
    pub top: usize,
    /// The weight of the account's fit, added to the roll-up: the best fit among its leads (fit
    /// points in `points` composition, the fit score in `weighted_mean`), since the company's
    /// facts are the same on each of them.
    pub fit: f64,
}

/// How an account's leads' scores combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollup {
    /// The best lead's score.
    #[default]
    Max,
    /// Every lead's score added up.
    Sum,
    /// The mean of the `top` best leads' scores.
    TopMean,
}

/// A shadow scoring of a campaign: its own composition, weights (of any loaded scorer) and
/// bands over the same scorers' outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowConfig {
    pub composition: Composition,
    pub weights: BTreeMap<String, f64>,
    pub bands: BandsConfig,
}

/// How a campaign composes its scorers into a lead's score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Composition {
    /// Each scorer's points times its weight, summed; negative points subtract, and the total
    /// is floored at 0. Fit points plus behaviour points, as the playbooks define the score.
    #[default]
    Points,
    /// The weighted mean of the scorers' 0-100 scores.
    WeightedMean,
}

/// Lower bounds of the bands; below `warm` a lead is unqualified.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BandsConfig {
    pub warm: f64,
    pub sales_ready: f64,
    pub hot: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the gRPC server listens on.
    pub listen: String,
    /// Tokio worker threads; 0 means one per core. On small machines 1 often serves best,
    /// since runtime threads otherwise fight over the cores.
    pub worker_threads: usize,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Most leads or events in one batch request.
    pub max_batch: usize,
    /// At shutdown, how long in-flight calls may run on before they are cut off; streams
    /// such as health watches never end by themselves.
    pub shutdown_grace_ms: u64,
    /// The watchdog calls the write path or a campaign queue stuck when calls have waited
    /// for it this long with no progress: health turns NOT_SERVING, so an orchestrator
    /// restarts the process.
    pub stall_ms: u64,
    /// Serve beyond loopback without tokens and TLS. Off, such a listen address is refused
    /// at start-up: anyone reaching the port could read, erase and claim leads.
    pub insecure: bool,
    pub tls: TlsConfig,
}

/// TLS for the gRPC port; off while `cert_file` is empty. The files are read again on SIGHUP:
/// new connections get the new certificate, open ones keep theirs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// With a CA here (PEM), every client must present a certificate it signed (mTLS).
    pub client_ca_file: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the log and snapshots live.
    pub data_dir: PathBuf,
    /// `always` (before every acknowledgement), `interval` (in the background), or `never`.
    pub fsync: FsyncPolicy,
    /// How often `interval` syncs.
    pub fsync_interval_ms: u64,
    /// A snapshot is written when the log grows past this many bytes.
    pub snapshot_log_bytes: u64,
    /// How often the log size is checked against `snapshot_log_bytes`.
    pub snapshot_check_secs: u64,
    /// After an erasure, a snapshot follows within this many seconds, so that the erased
    /// lead leaves the disk as well as memory.
    pub erase_snapshot_secs: u64,
    /// Events one lead may hold.
    pub max_events_per_lead: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `leadscore=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            plugins: PluginsConfig::default(),
            scoring: ScoringConfig::default(),
            scorers: BTreeMap::new(),
            campaigns: BTreeMap::from([(DEFAULT_CAMPAIGN.to_string(), CampaignConfig::default())]),
            dialer: DialerConfig::default(),
            routing: RoutingConfig::default(),
            auth: AuthConfig::default(),
            metrics: MetricsConfig::default(),
            console: ConsoleConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            extra_dirs: Vec::new(),
            load: vec!["leadscore_fit".into(), "leadscore_engagement".into()],
            max_faults: 3,
        }
    }
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self { sweep_interval_ms: 60_000, batch_size: 1024, threads: 0, history: 32, history_min_decay: 1.0 }
    }
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            composition: Composition::default(),
            weights: BTreeMap::from([("fit".into(), 1.0), ("engagement".into(), 1.0)]),
            bands: BandsConfig::default(),
            filter: FilterConfig::default(),
            contact: ContactConfig::default(),
            account: AccountConfig::default(),
            shadow: None,
        }
    }
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self { rollup: Rollup::Max, top: 3, fit: 0.0 }
    }
}

impl Default for ShadowConfig {
    fn default() -> Self {
        let live = CampaignConfig::default();
        Self { composition: live.composition, weights: live.weights, bands: live.bands }
    }
}

impl Default for BandsConfig {
    fn default() -> Self {
        Self { warm: 25.0, sales_ready: 50.0, hot: 75.0 }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            worker_threads: 0,
            max_message_bytes: 16 << 20,
            max_batch: 10_000,
            shutdown_grace_ms: 10_000,
            stall_ms: 5000,
            insecure: false,
            tls: TlsConfig::default(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: "./leadscore-data".into(),
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            snapshot_log_bytes: 256 << 20,
            snapshot_check_secs: 10,
            erase_snapshot_secs: 60,
            max_events_per_lead: 10_000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// Values given on the command line; they win over the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// Environment variables read, and the key each sets.
const ENV_KEYS: &[(&str, &str, &str)] = &[
    ("LEADSCORE_LISTEN", "server", "listen"),
    ("LEADSCORE_DATA_DIR", "store", "data_dir"),
    ("LEADSCORE_FSYNC", "store", "fsync"),
    ("LEADSCORE_LOG_LEVEL", "log", "level"),
    ("LEADSCORE_LOG_FORMAT", "log", "format"),
    ("LEADSCORE_METRICS_LISTEN", "metrics", "listen"),
    ("LEADSCORE_CONSOLE_LISTEN", "console", "listen"),
];

/// Everything wrong with a configuration, one problem per line.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Builds the configuration from the file's text (if any), then the environment, then
    /// the overrides, and validates it.
    pub fn load(file: Option<&str>, env: &HashMap<String, String>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut table = match file.map(|text| text.parse::<toml::Table>()) {
            None => toml::Table::new(),
            Some(Ok(table)) => table,
            Some(Err(err)) => return Err(ConfigError { problems: vec![err.to_string().trim().to_owned()] }),
        };
        for (var, section, key) in ENV_KEYS {
            if let Some(value) = env.get(*var) {
                set(&mut table, section, key, toml::Value::String(value.clone()));
            }
        }
        if let Some(listen) = &overrides.listen {
            set(&mut table, "server", "listen", toml::Value::String(listen.clone()));
        }
        if let Some(dir) = &overrides.data_dir {
            set(&mut table, "store", "data_dir", toml::Value::String(dir.display().to_string()));
        }
        Self::from_table(table, &mut problems).ok_or(ConfigError { problems })
    }

    /// Parses a complete TOML document.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::load(Some(text), &HashMap::new(), &Overrides::default())
    }

    /// Parses a document sent to `UpdateConfig` while `running` serves: a token's hash left
    /// as `GetConfig` showed it (`REDACTED`) keeps the running hash of the token of that name.
    pub fn parse_update(text: &str, running: &Config) -> Result<Self, ConfigError> {
        let invalid = |e: toml::de::Error| ConfigError { problems: vec![e.to_string()] };
        let mut table: toml::Table = text.parse().map_err(invalid)?;
        let tokens = table.get_mut("auth").and_then(|auth| auth.get_mut("tokens")).and_then(|t| t.as_array_mut());
        for token in tokens.into_iter().flatten().filter_map(|token| token.as_table_mut()) {
            if token.get("sha256").and_then(|hash| hash.as_str()) != Some(REDACTED) {
                continue;
            }
            let name = token.get("name").and_then(|name| name.as_str()).unwrap_or_default();
            if let Some(kept) = running.auth.tokens.iter().find(|t| t.name == name) {
                token.insert("sha256".into(), kept.sha256.clone().into());
            }
        }
        Self::parse(&toml::to_string(&table).expect("a parsed table serializes"))
    }

    fn from_table(mut table: toml::Table, problems: &mut Vec<String>) -> Option<Self> {
        // Every key the built-in default has is a known key; report all the others, drop
        // them, and let serde report type errors in what remains.
        let known = toml::Table::try_from(Self::default()).expect("the default serializes");
        remove_unknown(&mut table, &known, "", problems);
        match Self::deserialize(table) {
            Ok(config) => {
                config.validate(problems);
                problems.is_empty().then_some(config)
            }
            Err(err) => {
                problems.push(err.to_string().trim().replace('\n', " "));
                None
            }
        }
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        check(self.version == FORMAT_VERSION, format!("version: must be {FORMAT_VERSION}, got {}", self.version));
        check(
            self.server.listen.parse::<SocketAddr>().is_ok(),
            format!("server.listen: must be an address such as 127.0.0.1:50051, got {:?}", self.server.listen),
        );
        check(
            self.server.worker_threads <= 256,
            format!("server.worker_threads: must be 0-256, got {}", self.server.worker_threads),
        );
        check(
            (1 << 10..=256 << 20).contains(&self.server.max_message_bytes),
            format!("server.max_message_bytes: must be 1 KiB-256 MiB, got {}", self.server.max_message_bytes),
        );
        check(
            (1..=100_000).contains(&self.server.max_batch),
            format!("server.max_batch: must be 1-100000, got {}", self.server.max_batch),
        );
        check(
            self.server.shutdown_grace_ms <= 600_000,
            format!("server.shutdown_grace_ms: must be at most 600000, got {}", self.server.shutdown_grace_ms),
        );
        check(
            (100..=600_000).contains(&self.server.stall_ms),
            format!("server.stall_ms: must be 100-600000, got {}", self.server.stall_ms),
        );
        check(!self.store.data_dir.as_os_str().is_empty(), "store.data_dir: must not be empty".into());
        check(
            (10..=60_000).contains(&self.store.fsync_interval_ms),
            format!("store.fsync_interval_ms: must be 10-60000, got {}", self.store.fsync_interval_ms),
        );
        check(
            self.store.snapshot_log_bytes >= 1 << 20,
            format!("store.snapshot_log_bytes: must be at least 1 MiB, got {}", self.store.snapshot_log_bytes),
        );
        check(self.store.snapshot_check_secs >= 1, "store.snapshot_check_secs: must be at least 1".into());
        check(
            (1..=1_000_000).contains(&self.store.max_events_per_lead),
            format!("store.max_events_per_lead: must be 1-1000000, got {}", self.store.max_events_per_lead),
        );
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            format!("log.level: not a tracing filter: {:?}", self.log.level),
        );
        check(self.plugins.max_faults >= 1, "plugins.max_faults: must be at least 1".into());
        for (index, name) in self.plugins.load.iter().enumerate() {
            let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            check(plain, format!("plugins.load[{index}]: must be a library name such as leadscore_fit, got {name:?}"));
        }
        check(
            self.scoring.sweep_interval_ms >= 10,
            format!("scoring.sweep_interval_ms: must be at least 10, got {}", self.scoring.sweep_interval_ms),
        );
        check(self.scoring.threads <= 256, format!("scoring.threads: must be 0-256, got {}", self.scoring.threads));
        check(
            (1..=65_536).contains(&self.scoring.batch_size),
            format!("scoring.batch_size: must be 1-65536, got {}", self.scoring.batch_size),
        );
        check(self.scoring.history <= 1024, format!("scoring.history: must be 0-1024, got {}", self.scoring.history));
        check(
            self.scoring.history_min_decay.is_finite() && self.scoring.history_min_decay >= 0.0,
            format!(
                "scoring.history_min_decay: must be a finite number of at least 0, got {}",
                self.scoring.history_min_decay
            ),
        );
        check(
            (10..=60_000).contains(&self.dialer.session_poll_ms),
            format!("dialer.session_poll_ms: must be 10-60000, got {}", self.dialer.session_poll_ms),
        );
        check(
            (1..=1_000_000).contains(&self.dialer.max_session_credits),
            format!("dialer.max_session_credits: must be 1-1000000, got {}", self.dialer.max_session_credits),
        );
        for (key, listen, example) in [
            ("metrics.listen", &self.metrics.listen, "127.0.0.1:9464"),
            ("console.listen", &self.console.listen, "127.0.0.1:8080"),
        ] {
            check(
                listen.is_empty() || listen.parse::<SocketAddr>().is_ok(),
                format!("{key}: must be an address such as {example}, or empty for none, got {listen:?}"),
            );
        }
        let limits = &self.limits;
        check(
            (1..=1_000_000).contains(&limits.max_in_flight),
            format!("limits.max_in_flight: must be 1-1000000, got {}", limits.max_in_flight),
        );
        check(
            (1..=100_000).contains(&limits.max_streams_per_connection),
            format!("limits.max_streams_per_connection: must be 1-100000, got {}", limits.max_streams_per_connection),
        );
        check(
            limits.rate_per_token.is_finite() && limits.rate_per_token >= 0.0,
            format!("limits.rate_per_token: must be a finite number of at least 0, got {}", limits.rate_per_token),
        );
        check(
            limits.burst_per_token.is_finite() && limits.burst_per_token >= 1.0,
            format!("limits.burst_per_token: must be at least 1, got {}", limits.burst_per_token),
        );
        for (family, bytes) in &limits.message_bytes {
            check(
                FAMILIES.contains(&family.as_str()),
                format!("limits.message_bytes.{family}: not a service family; families are {}", FAMILIES.join(", ")),
            );
            check(
                (1 << 10..=256 << 20).contains(bytes),
                format!("limits.message_bytes.{family}: must be 1 KiB-256 MiB, got {bytes}"),
            );
        }
        let tls = &self.server.tls;
        let has_key = !tls.key_file.as_os_str().is_empty();
        check(tls.enabled() == has_key, "server.tls: cert_file and key_file go together".into());
        check(
            tls.enabled() || tls.client_ca_file.as_os_str().is_empty(),
            "server.tls.client_ca_file: client certificates need TLS: set cert_file and key_file".into(),
        );
        let mut names = std::collections::HashSet::new();
        for (i, token) in self.auth.tokens.iter().enumerate() {
            let path = format!("auth.tokens[{i}]");
            check(
                (1..=64).contains(&token.name.len()) && names.insert(token.name.as_str()),
                format!("{path}.name: must be 1-64 bytes and unique, got {:?}", token.name),
            );
            check(
                token.sha256.len() == 64
                    && token.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                match token.sha256 == REDACTED {
                    true => format!(
                        "{path}.sha256: {REDACTED:?} stands for the running hash of a token of the same name, \
                         and no running token is named {:?}",
                        token.name
                    ),
                    false => {
                        format!("{path}.sha256: must be 64 lower-case hex digits (`leadscore token new` prints it)")
                    }
                },
            );
            check(!token.roles.is_empty(), format!("{path}.roles: must name at least one role"));
            for (r, role) in token.roles.iter().enumerate() {
                check(
                    ROLES.contains(&role.as_str()),
                    format!("{path}.roles[{r}]: must be one of {}, got {role:?}", ROLES.join(", ")),
                );
            }
        }
        for (name, value) in &self.scorers {
            check(value.is_table(), format!("scorers.{name}: must be a table of that scorer's settings"));
        }
        check(
            self.campaigns.contains_key(DEFAULT_CAMPAIGN),
            format!("campaigns: the `{DEFAULT_CAMPAIGN}` campaign must be configured"),
        );
        check(
            self.campaigns.len() <= MAX_CAMPAIGNS,
            format!("campaigns: at most {MAX_CAMPAIGNS} are allowed, got {}", self.campaigns.len()),
        );
        for (name, campaign) in &self.campaigns {
            let path = format!("campaigns.{name}");
            check((1..=64).contains(&name.len()), format!("{path}: a campaign name must be 1-64 bytes"));
            check_scoring(&path, campaign.composition, &campaign.weights, &campaign.bands, &mut check);
            if let Some(shadow) = &campaign.shadow {
                check_scoring(
                    &format!("{path}.shadow"),
                    shadow.composition,
                    &shadow.weights,
                    &shadow.bands,
                    &mut check,
                );
            }
            let account = campaign.account;
            check(
                (1..=1000).contains(&account.top),
                format!("{path}.account.top: must be 1-1000, got {}", account.top),
            );
            check(
                account.fit.is_finite() && account.fit >= 0.0,
                format!("{path}.account.fit: must be a finite number of at least 0, got {}", account.fit),
            );
        }
    }

    /// Whether a campaign filter or a routing expression reads `account.score`: then a change of
    /// an account's score requeues its leads, whose eligibility or route may follow it.
    pub fn reads_account_score(&self) -> bool {
        let filters = self.campaigns.values().flat_map(|c| &c.filter.attributes).any(|c| c.name == ACCOUNT_SCORE);
        filters || self.routing.rules.iter().any(|r| r.when.contains(ACCOUNT_SCORE) || r.agents.contains(ACCOUNT_SCORE))
    }

    /// How many threads a large rescore uses.
    pub fn scoring_threads(&self) -> usize {
        match self.scoring.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The plugin directory, resolved: empty means beside the running binary.
    pub fn plugin_dir(&self) -> PathBuf {
        if !self.plugins.dir.as_os_str().is_empty() {
            return self.plugins.dir.clone();
        }
        std::env::current_exe().ok().and_then(|exe| exe.parent().map(PathBuf::from)).unwrap_or_default()
    }

    /// Every directory plugins are looked for in, `dir` first.
    pub fn plugin_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.plugin_dir()).chain(self.plugins.extra_dirs.iter().cloned()).collect()
    }

    /// Each problem with taking `next` at run time in place of `self`: a change outside the
    /// runtime sections needs a restart.
    pub fn runtime_change_problems(&self, next: &Config) -> Vec<String> {
        let (now, then) = (self.without_runtime_sections(), next.without_runtime_sections());
        let mut problems = Vec::new();
        for (section, value) in &then {
            if now.get(section) != Some(value) {
                problems.push(format!("{section}: cannot change at run time; restart with the new value"));
            }
        }
        problems
    }

    /// The runtime sections alone, as TOML: what a change at run time logs.
    pub fn runtime_toml(&self) -> String {
        let mut table = toml::Table::try_from(self).expect("the configuration serializes");
        table.retain(|key, _| RUNTIME_SECTIONS.contains(&key));
        toml::to_string(&table).expect("a table serializes")
    }

    /// This configuration with its runtime sections taken from `runtime` (as `runtime_toml`
    /// wrote them).
    pub fn with_runtime_sections(&self, runtime: &str) -> Result<Self, ConfigError> {
        let runtime: toml::Table =
            runtime.parse().map_err(|e: toml::de::Error| ConfigError { problems: vec![e.to_string()] })?;
        let mut table = self.without_runtime_sections();
        table.extend(runtime.into_iter().filter(|(key, _)| RUNTIME_SECTIONS.contains(&key.as_str())));
        let mut problems = Vec::new();
        Self::from_table(table, &mut problems).ok_or(ConfigError { problems })
    }

    fn without_runtime_sections(&self) -> toml::Table {
        let mut table = toml::Table::try_from(self).expect("the configuration serializes");
        table.retain(|key, _| !RUNTIME_SECTIONS.contains(&key));
        table
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().expect("validated at load")
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            data_dir: self.store.data_dir.clone(),
            fsync: self.store.fsync,
            fsync_interval: Duration::from_millis(self.store.fsync_interval_ms),
            snapshot_log_bytes: self.store.snapshot_log_bytes,
            max_events_per_lead: self.store.max_events_per_lead,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the configuration always serializes")
    }

    /// As `GetConfig` shows it to anyone: every token's hash redacted, for a hash lets its
    /// reader test guesses of the token offline.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for token in &mut shown.auth.tokens {
            token.sha256 = REDACTED.into();
        }
        shown.to_toml()
    }
}

/// Checks one way of scoring a campaign (live or shadow): weights and bands.
fn check_scoring(
    path: &str,
    composition: Composition,
    weights: &BTreeMap<String, f64>,
    b: &BandsConfig,
    check: &mut impl FnMut(bool, String),
) {
    for (scorer, weight) in weights {
        check(
            weight.is_finite() && *weight >= 0.0,
            format!("{path}.weights.{scorer}: must be a finite number of at least 0, got {weight}"),
        );
    }
    check(weights.values().any(|w| *w > 0.0), format!("{path}.weights: at least one scorer needs a weight above 0"));
    // A weighted mean stays within 0-100; a sum of points has no ceiling.
    let (ceiling, rule) = match composition {
        Composition::WeightedMean => (100.0, " <= 100 with composition = \"weighted_mean\""),
        Composition::Points => (f64::MAX, ""),
    };
    check(
        0.0 < b.warm && b.warm <= b.sales_ready && b.sales_ready <= b.hot && b.hot <= ceiling,
        format!(
            "{path}.bands: must satisfy 0 < warm <= sales_ready <= hot{rule}, got {} / {} / {}",
            b.warm, b.sales_ready, b.hot
        ),
    );
}

/// Removes (and reports) the keys of `table` that `known` does not have, recursively.
fn remove_unknown(table: &mut toml::Table, known: &toml::Table, prefix: &str, problems: &mut Vec<String>) {
    table.retain(|key, value| {
        let path = format!("{prefix}{key}");
        match (known.get(key), value) {
            (None, _) => {
                problems.push(format!("unknown key `{path}`"));
                false
            }
            (Some(_), _) if OPEN_TABLES.contains(&path.as_str()) => true,
            (Some(toml::Value::Table(known)), toml::Value::Table(inner)) => {
                remove_unknown(inner, known, &format!("{path}."), problems);
                true
            }
            _ => true,
        }
    });
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    let section = table.entry(section).or_insert_with(|| toml::Value::Table(Default::default()));
    if let toml::Value::Table(section) = section {
        section.insert(key.into(), value);
    }
}

/// The leads a campaign dials, among those it scores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Bands a lead must be in (`unqualified`, `warm`, `sales_ready`, `hot`); empty means any.
    pub bands: Vec<String>,
    /// Conditions on attributes; all must hold.
    pub attributes: Vec<ConditionConfig>,
}

/// One attribute condition: exactly one of `one_of`, `flag`, or a `min`/`max` range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConditionConfig {
    pub name: String,
    /// Text values, compared without regard to ASCII case.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<bool>,
    /// Inclusive bounds on a number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// When and how often a campaign's leads may be called.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContactConfig {
    /// Local time of day calls may be made, `HH:MM-HH:MM`, in the lead's time zone.
    pub calling_window: String,
    /// The zone of leads that have none (IANA name).
    pub time_zone: String,
    /// Local dates (`YYYY-MM-DD`) with no calls at all.
    pub holidays: Vec<String>,
    /// The lead attribute naming its region, for `regions`.
    pub region_attribute: String,
    /// Stricter windows and extra holidays by region (the value of `region_attribute`).
    pub regions: BTreeMap<String, RegionConfig>,
    /// Only leads that gave express consent to be called (`Consent.phone_consent`).
    pub require_phone_consent: bool,
    /// Calls ever made to a lead; then it is never dialled again.
    pub max_attempts: u32,
    /// Calls per local calendar day of the lead.
    pub max_attempts_per_day: u32,
    /// Calls in any 24 hours.
    pub max_attempts_per_24h: u32,
    /// How long after each result the lead rests before it may be called again.
    pub recycle: RecycleConfig,
    /// How long a claim is exclusive before the lead returns to the pool by itself; never
    /// past the end of the lead's calling window, which ends the lease.
    pub lease: String,
    /// A lead whose calling window closes sooner than this is not claimed: a call needs time
    /// to be placed before the window ends.
    pub min_window_left: String,
    /// How long an agent-only callback waits for its agent before anyone may take it.
    pub callback_grace: String,
    /// Phone numbers this campaign never calls, whatever the lead says.
    pub do_not_call: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionConfig {
    /// Replaces the campaign's window for leads of this region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calling_window: Option<String>,
    /// Added to the campaign's holidays for leads of this region.
    pub holidays: Vec<String>,
}

/// Rest after each result that may be retried (durations such as `15m`, `4h`, `1d`).
/// Converted, lost, wrong-number and do-not-call results end the lead's calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecycleConfig {
    pub no_answer: String,
    pub busy: String,
    pub voicemail: String,
    pub connected_not_interested: String,
}

impl Default for ContactConfig {
    fn default() -> Self {
        Self {
            calling_window: "08:00-21:00".into(),
            time_zone: "UTC".into(),
            holidays: Vec::new(),
            region_attribute: "region".into(),
            regions: BTreeMap::new(),
            require_phone_consent: false,
            max_attempts: 6,
            max_attempts_per_day: 3,
            max_attempts_per_24h: 3,
            recycle: RecycleConfig::default(),
            lease: "5m".into(),
            min_window_left: "1m".into(),
            callback_grace: "15m".into(),
            do_not_call: Vec::new(),
        }
    }
}

impl Default for RecycleConfig {
    fn default() -> Self {
        Self {
            no_answer: "4h".into(),
            busy: "15m".into(),
            voicemail: "1d".into(),
            connected_not_interested: "30d".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let mut problems = Config::parse(text).unwrap_err().problems;
        problems.sort();
        problems
    }

    #[test]
    fn no_file_gives_the_documented_defaults() {
        let config = Config::load(None, &HashMap::new(), &Overrides::default()).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen_addr().to_string(), "127.0.0.1:50051");
        assert_eq!(config.store.data_dir, PathBuf::from("./leadscore-data"));
        assert_eq!(config.store.fsync, FsyncPolicy::Interval);
    }

    #[test]
    fn bands_may_sit_above_100_on_points_but_not_on_a_mean() {
        let bands = "[campaigns.default.bands]\nwarm = 25\nsales_ready = 50\nhot = 120\n";
        assert_eq!(Config::parse(bands).unwrap().campaigns["default"].bands.hot, 120.0);
        let mean = format!("{bands}[campaigns.default]\ncomposition = \"weighted_mean\"\n");
        assert_eq!(
            problems(&mean),
            ["campaigns.default.bands: must satisfy 0 < warm <= sales_ready <= hot <= 100 with composition = \
              \"weighted_mean\", got 25 / 50 / 120"]
        );
        assert!(problems("[campaigns.default]\ncomposition = \"median\"\n")[0].contains("unknown variant `median`"));
    }

    #[test]
    fn the_default_round_trips_through_toml() {
        assert_eq!(Config::parse(&Config::default().to_toml()).unwrap(), Config::default());
    }

    #[test]
    fn every_unknown_key_and_bad_value_is_reported() {
        let found = problems(
            "colour = 1\n[server]\nlisten = \"nowhere\"\nmax_batch = 0\n[store]\nfsink = \"always\"\n[lgo]\nlevel = 1\n",
        );
        assert_eq!(
            found,
            [
                "server.listen: must be an address such as 127.0.0.1:50051, got \"nowhere\"",
                "server.max_batch: must be 1-100000, got 0",
                "unknown key `colour`",
                "unknown key `lgo`",
                "unknown key `store.fsink`",
            ]
        );
    }

    #[test]
    fn a_type_error_names_the_key() {
        let found = problems("[store]\nfsync = \"sometimes\"\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("sometimes") && found[0].contains("always"), "{found:?}");
    }

    #[test]
    fn environment_beats_file_and_flags_beat_environment() {
        let file = "[server]\nlisten = \"127.0.0.1:1\"\n[store]\nfsync = \"never\"\n";
        let env = HashMap::from([
            ("LEADSCORE_LISTEN".to_string(), "127.0.0.1:2".to_string()),
            ("LEADSCORE_FSYNC".to_string(), "always".to_string()),
        ]);
        let overrides = Overrides { listen: Some("127.0.0.1:3".into()), data_dir: None };
        let config = Config::load(Some(file), &env, &overrides).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:3");
        assert_eq!(config.store.fsync, FsyncPolicy::Always);
    }
}
