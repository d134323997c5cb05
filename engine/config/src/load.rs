//! Loading: the file's text, then the environment, then the command line, each checked;
//! and the configuration written back as TOML, whole, redacted or by its runtime sections.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use leadscore_store::StoreOptions;

use crate::*;

/// Values given on the command line; they win over the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// Tables whose keys are names the user chooses (scorers, campaigns) rather than settings.
const OPEN_TABLES: &[&str] = &["scorers", "campaigns", "limits.message_bytes"];

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
        // An optional section's keys are known too.
        let every_section = Self { cluster: Some(ClusterConfig::default()), ..Self::default() };
        let known = toml::Table::try_from(every_section).expect("the default serializes");
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
