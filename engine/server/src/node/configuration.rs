//! The runtime configuration on a node. A change made through any node is checked on one of its
//! shards, then appended to the cluster's configuration log under the version it was based on,
//! so two changes made at once cannot both follow the same version. Every node follows the log
//! and takes each version on every shard it serves, in the log's order; a shard opened later
//! starts at the newest. `UpdateConfig` answers once every node serving shards has taken the
//! version, so after the answer no shard anywhere serves an older one.

use std::sync::Arc;
use std::time::Duration;

use leadscore_cluster::ConfigVersion;
use leadscore_cluster::config_log::AppendError;
use leadscore_config::Config;
use leadscore_proto::tonic::Status;
use leadscore_services::generation::ConfigChangeError;
use tokio::sync::watch;
use tracing::{error, info};

use super::engines::Engines;
use crate::api::Context;
use crate::api::status::status;

/// How long a node waits for itself or another node to take a version it appended.
pub(super) const APPLY_WITHIN: Duration = Duration::from_secs(20);

impl Engines {
    /// The newest version in the log, as read now (also recorded as seen).
    pub(super) fn newest_logged(&self) -> Result<Option<Arc<ConfigVersion>>, String> {
        let latest = self.log.latest().map_err(|e| format!("reading the configuration log: {e}"))?;
        let mut serving = self.lock();
        if let Some(latest) = latest.filter(|l| serving.newest.as_ref().is_none_or(|n| n.version < l.config.version)) {
            serving.newest = Some(Arc::new(latest.config));
        }
        Ok(serving.newest.clone())
    }

    /// The configuration file with `version`'s runtime sections (the file's own if none).
    pub(super) fn config_at(&self, version: Option<&ConfigVersion>) -> Result<(Config, u64), String> {
        let Some(version) = version else { return Ok((self.config.clone(), 0)) };
        let config = self
            .config
            .with_runtime_sections(&version.toml)
            .map_err(|e| format!("configuration version {} does not load here: {e}", version.version))?;
        Ok((config, version.version))
    }

    /// Takes `version` on one shard's engine: its scorers and rules, then its dialer's leases
    /// and queues. Blocks: it rescores the shard.
    pub(super) fn adopt_on(&self, context: &Context, version: &ConfigVersion) -> Result<(), String> {
        let (config, number) = self.config_at(Some(version))?;
        let adopted = context.generations.adopt(Arc::new(config), number).map_err(|problems| {
            format!("configuration version {number} does not compile here: {}", problems.join("; "))
        })?;
        if let Some((_, changed)) = adopted {
            context.follow_config(&changed);
            context.dialer.prepare();
        }
        Ok(())
    }

    /// Takes `version` on every shard here, recording it first as the newest seen so that a
    /// shard opening meanwhile takes it too.
    fn adopt(&self, version: Arc<ConfigVersion>) -> Result<(), String> {
        let contexts: Vec<Context> = {
            let mut serving = self.lock();
            if serving.newest.as_ref().is_none_or(|n| n.version < version.version) {
                serving.newest = Some(version.clone());
            }
            serving.shards.values().map(|(context, _)| context.clone()).collect()
        };
        contexts.iter().try_for_each(|context| self.adopt_on(context, &version))
    }

    /// Follows the log until the node closes, taking each version on every shard here.
    pub(super) async fn follow(self: Arc<Self>) {
        let mut log = self.log.follow();
        let mut closing = self.closing();
        loop {
            let newest = log.borrow_and_update().clone();
            if let Some(newest) = newest {
                let (engines, version) = (self.clone(), Arc::new(newest.config));
                let number = version.version;
                match tokio::task::spawn_blocking(move || engines.adopt(version)).await {
                    Ok(Ok(())) => {
                        info!(version = number, "configuration version taken on every shard here");
                        self.applied.send_if_modified(|applied| std::mem::replace(applied, number) != number);
                    }
                    Ok(Err(problem)) => error!(version = number, %problem, "configuration version not taken"),
                    Err(e) => error!(version = number, cause = %e, "taking a configuration version failed"),
                }
            }
            tokio::select! {
                changed = log.changed() => if changed.is_err() { return },
                _ = closing.changed() => return,
            }
        }
    }

    /// Appends the change `toml` makes to the newest version, if that is `expected_version`
    /// and one of the shards here takes it; returns the version appended. Blocks.
    pub(super) fn change(&self, toml: &str, expected_version: u64, actor: &str, now_ms: i64) -> Result<u64, Status> {
        let latest =
            self.log.latest().map_err(|e| Status::unavailable(format!("reading the configuration log: {e}")))?;
        let current = latest.as_ref().map_or(0, |l| l.config.version);
        if expected_version != current {
            return Err(status(ConfigChangeError::VersionMismatch { expected: expected_version, current }));
        }
        let (running, _) = self.config_at(latest.as_ref().map(|l| &l.config)).map_err(Status::internal)?;
        let next = Config::parse_update(toml, &running).map_err(status)?;
        let context = self.any().ok_or_else(|| {
            Status::unavailable("this node serves no shard yet, so it cannot check the change; try another node")
        })?;
        let version = current + 1;
        context.generations.check(next.clone(), version).map_err(status)?;
        let next = ConfigVersion { version, toml: next.runtime_toml(), actor: actor.to_owned(), at_ms: now_ms };
        match self.log.append(latest.as_ref(), next) {
            Ok(_) => {
                info!(version, actor, "configuration changed");
                Ok(version)
            }
            Err(AppendError::Conflict) => {
                // Another change was appended after `current`, whatever a read served by a
                // replica that has not seen it yet says.
                let read = self.log.latest().ok().flatten().map_or(0, |l| l.config.version);
                let current = read.max(current + 1);
                Err(status(ConfigChangeError::VersionMismatch { expected: expected_version, current }))
            }
            Err(AppendError::Io(e)) => Err(Status::unavailable(format!(
                "appending to the configuration log: {e}; the change may or may not be stored: read the configuration again"
            ))),
        }
    }

    /// Waits until every shard here serves `version` or a later one.
    pub(super) async fn applied(&self, version: u64) -> Result<u64, Status> {
        let mut applied: watch::Receiver<u64> = self.applied.subscribe();
        let waited = tokio::time::timeout(APPLY_WITHIN, applied.wait_for(|&applied| applied >= version)).await;
        if let Ok(Ok(now)) = waited.map(|taken| taken.map(|now| *now)) {
            return Ok(now);
        }
        Err(Status::unavailable(format!(
            "configuration version {version} is stored but this node has not taken it within {}s \
             (it is at version {}; its log says why)",
            APPLY_WITHIN.as_secs(),
            *applied.borrow()
        )))
    }
}
