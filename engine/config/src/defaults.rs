//! The built-in value of every field: what a server started with no file runs with.

use std::collections::BTreeMap;
use std::path::PathBuf;

use leadscore_store::FsyncPolicy;

use crate::*;

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

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats: Vec::new(),
            node: String::new(),
            advertise: String::new(),
            shards: 64,
            replicas: 3,
            lease_ms: 10_000,
            ca_file: PathBuf::new(),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8080".into() }
    }
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

impl Default for DialerConfig {
    fn default() -> Self {
        Self { session_poll_ms: 1000, max_session_credits: 10_000 }
    }
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
            cluster: None,
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
        Self {
            sweep_interval_ms: 60_000,
            batch_size: 1024,
            threads: 0,
            history: 32,
            history_min_decay: 1.0,
            watch_progress_ms: 1000,
        }
    }
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            composition: Composition::default(),
            weights: BTreeMap::from([("fit".into(), 1.0), ("engagement".into(), 1.0)]),
            bands: BandsConfig::default(),
            display: ["name", "company", "title"].map(String::from).to_vec(),
            filter: FilterConfig::default(),
            contact: ContactConfig::default(),
            dialing: DialingConfig::default(),
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
            compression: true,
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

impl Default for DialingConfig {
    fn default() -> Self {
        Self {
            order: DialingOrder::Score,
            segment: Vec::new(),
            value: String::new(),
            speed_to_lead: "0s".into(),
            hold_for_better_hour: "0s".into(),
            prior_calls: 20.0,
        }
    }
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
