//! The configuration's sections and fields, as the TOML document spells them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use leadscore_store::FsyncPolicy;

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
    /// Absent: one process on its local log. Present: this process is a node of a cluster
    /// whose logs live in NATS JetStream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
}

/// A node of a cluster: leads spread over `shards` JetStream streams, each owned by one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS servers, as `nats://host:port`; JetStream with `sync_interval: always` and three
    /// replicas, or an acknowledged write may be lost with a machine.
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster: letters, digits, `-` and `_`.
    pub node: String,
    /// Where the other nodes reach this node's gRPC port; empty means `server.listen`.
    pub advertise: String,
    /// Fixed when the cluster is created: a node configured otherwise is refused.
    pub shards: u32,
    /// Replicas of each stream and bucket; 3 survives the loss of one NATS server.
    pub replicas: usize,
    /// A shard's lease lapses this long after its owner last renewed it; a dead node's shards
    /// are owned again within this time plus their replay.
    pub lease_ms: u64,
    /// With `server.tls`: the CA (PEM) that signed every node's certificate. Nodes call each
    /// other over TLS, trusting it, each showing its own certificate (for peers that ask, with
    /// `server.tls.client_ca_file`); a node's certificate must name the address it advertises.
    pub ca_file: PathBuf,
}

impl ClusterConfig {
    /// The address other nodes call this node at.
    pub fn advertised<'a>(&'a self, listen: &'a str) -> &'a str {
        if self.advertise.is_empty() { listen } else { &self.advertise }
    }
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Where the web console is served (HTTPS when `server.tls` is set); empty turns it off.
    pub listen: String,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialerConfig {
    /// A hopper stream with credits but nothing to claim looks again at least this often, so
    /// that leads whose wait ends (a window opens, a recycle delay passes) are pushed.
    pub session_poll_ms: u64,
    /// Credits a hopper stream may hold at once.
    pub max_session_credits: u32,
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
    /// How often a watched ranked list (`WatchTopLeads`) with nothing new says how far the
    /// ranking went (a caught-up message), while changes below its reach go on.
    pub watch_progress_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignConfig {
    /// How the scorers' parts make the lead's score.
    pub composition: Composition,
    /// Weight per scorer name.
    pub weights: BTreeMap<String, f64>,
    pub bands: BandsConfig,
    /// The attributes that say who a lead is, in the order people read them ("name",
    /// "company", "title"): shown with the lead wherever it is listed.
    pub display: Vec<String>,
    /// Which of its leads the dialer may offer.
    pub filter: FilterConfig,
    /// When and how often its leads may be called.
    pub contact: ContactConfig,
    /// In what order the callable leads are offered, and what the dialer learns of when people
    /// answer.
    pub dialing: DialingConfig,
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
    /// Answer in gzip or zstd a client that accepts it, when the answer is 1 KiB or more.
    /// Compressed requests are taken either way.
    pub compression: bool,
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

/// How a campaign's callable leads are ordered. The contact rules decide who may be called;
/// this only orders the callable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialingConfig {
    pub order: DialingOrder,
    /// Attributes that split the learned contact rates beyond the lead's time zone (or
    /// region), e.g. `["role"]`.
    pub segment: Vec<String>,
    /// A numeric attribute holding what a conversion is worth, for `expected_value`; each lead
    /// is worth 1 when empty (the default) or when the lead has no such number.
    pub value: String,
    /// Leads created this recently and never called are offered first (`5m`); `0s` (the
    /// default) gives new leads no precedence.
    pub speed_to_lead: String,
    /// Under `expected_value`, how far ahead a lead may wait for a better hour: a lead whose
    /// segment answers markedly better (a quarter more) at an hour before this has passed,
    /// and before its calling window closes that day, is not offered now. `0s` (the default)
    /// never waits. Due callbacks never wait.
    pub hold_for_better_hour: String,
    /// How many calls a contact rate's estimate trusts its coarser level as if it had seen:
    /// a segment's hour leans on all leads at that hour, which lean on the campaign's rate.
    pub prior_calls: f64,
}

/// The order in which the dialer offers a campaign's callable leads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DialingOrder {
    /// Best score first.
    #[default]
    Score,
    /// Highest P(contact now) × P(conversion | contact) × value first: P(contact) learned
    /// from the campaign's outcomes by segment and local hour of the week, P(conversion) the
    /// predictive scorer's probability (the score over 100 where the campaign has none).
    ExpectedValue,
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
