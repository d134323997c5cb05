//! The rules a configuration must meet beyond its types: every problem is reported at once,
//! each naming its key.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::*;

impl Config {
    pub(crate) fn validate(&self, problems: &mut Vec<String>) {
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
            (10..=60_000).contains(&self.scoring.watch_progress_ms),
            format!("scoring.watch_progress_ms: must be 10-60000, got {}", self.scoring.watch_progress_ms),
        );
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
        if let Some(cluster) = &self.cluster {
            check(!cluster.nats.is_empty(), "cluster.nats: must name at least one NATS server".into());
            for (index, url) in cluster.nats.iter().enumerate() {
                check(
                    url.starts_with("nats://") || url.starts_with("tls://"),
                    format!("cluster.nats[{index}]: must be a URL such as nats://127.0.0.1:4222, got {url:?}"),
                );
            }
            let named = !cluster.node.is_empty()
                && cluster.node.len() <= 64
                && cluster.node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            check(named, format!("cluster.node: must be 1-64 letters, digits, '-' or '_', got {:?}", cluster.node));
            check(
                cluster.advertise.is_empty() || cluster.advertise.parse::<SocketAddr>().is_ok(),
                format!(
                    "cluster.advertise: must be an address such as 10.0.0.5:50051, or empty for server.listen, got {:?}",
                    cluster.advertise
                ),
            );
            check(
                (1..=1024).contains(&cluster.shards),
                format!("cluster.shards: must be 1-1024, got {}", cluster.shards),
            );
            check(
                (1..=5).contains(&cluster.replicas),
                format!("cluster.replicas: must be 1-5, got {}", cluster.replicas),
            );
            check(
                (1_000..=600_000).contains(&cluster.lease_ms),
                format!("cluster.lease_ms: must be 1000-600000, got {}", cluster.lease_ms),
            );
            let (tls, ca) = (self.server.tls.enabled(), !cluster.ca_file.as_os_str().is_empty());
            check(
                tls == ca,
                match tls {
                    true => "cluster.ca_file: with server.tls nodes call each other over TLS: name the CA (PEM) \
                             that signed their certificates"
                        .into(),
                    false => "cluster.ca_file: only with server.tls (nodes call each other as clients do)".into(),
                },
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
            check(
                campaign.display.len() <= MAX_DISPLAY,
                format!("{path}.display: at most {MAX_DISPLAY} attributes, got {}", campaign.display.len()),
            );
            for (i, name) in campaign.display.iter().enumerate() {
                check(
                    (1..=64).contains(&name.len()) && !campaign.display[..i].contains(name),
                    format!("{path}.display: each must be an attribute name of 1-64 bytes, once; got {name:?}"),
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
}

/// The most display attributes a campaign shows with each lead.
const MAX_DISPLAY: usize = 8;

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
