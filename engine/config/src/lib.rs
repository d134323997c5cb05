//! Configuration: one TOML document with a built-in default for every field. Loading is a pure
//! function of the file's text, the environment and the command-line overrides (in that order
//! of precedence, last wins), and reports every problem at once.

#![forbid(unsafe_code)]

mod defaults;
mod load;
mod schema;
pub mod tokens;
mod validate;

pub use load::{ConfigError, Overrides};
pub use schema::*;

/// The configuration format this build reads.
pub const FORMAT_VERSION: u32 = 1;
/// The campaign every lead belongs to.
pub const DEFAULT_CAMPAIGN: &str = "default";
/// Routing rules a configuration may define (a lead's matching rules are a 64-bit set).
pub const MAX_ROUTING_RULES: usize = 64;
/// Campaigns a configuration may define.
pub const MAX_CAMPAIGNS: usize = 64;
/// The roles a token may hold; see `auth::Role`.
pub const ROLES: &[&str] = &["ingest", "reader", "scorer", "dialer", "privacy", "admin"];

/// The name by which campaign filters and routing expressions read a lead's account's score.
pub const ACCOUNT_SCORE: &str = "account.score";
/// What `GetConfig` shows in place of each token's hash.
pub const REDACTED: &str = "redacted";

/// The sections `UpdateConfig` may change at run time; the others need a restart.
pub const RUNTIME_SECTIONS: &[&str] = &["plugins", "scoring", "scorers", "campaigns", "routing"];

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use leadscore_store::FsyncPolicy;

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
    fn a_cluster_section_is_checked_whole_and_absent_by_default() {
        assert_eq!(Config::default().cluster, None);
        let found = problems(
            "[cluster]\nnats = [\"localhost:4222\"]\nnode = \"node a\"\nshards = 0\nlease_ms = 10\nmembers = 3\n",
        );
        assert_eq!(
            found,
            [
                "cluster.lease_ms: must be 1000-600000, got 10",
                "cluster.nats[0]: must be a URL such as nats://127.0.0.1:4222, got \"localhost:4222\"",
                "cluster.node: must be 1-64 letters, digits, '-' or '_', got \"node a\"",
                "cluster.shards: must be 1-1024, got 0",
                "unknown key `cluster.members`",
            ]
        );
        let config = Config::parse("[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\nnode = \"node-a\"\n").unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!((cluster.shards, cluster.replicas, cluster.lease_ms), (64, 3, 10_000));
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
