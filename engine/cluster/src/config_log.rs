//! The cluster's configuration log: every version of the runtime configuration, one after
//! another, in a NATS key-value bucket that every node follows. A change is appended under the
//! revision it was based on (compare-and-swap), so two changes made at once through two nodes
//! cannot both follow the same version: every node applies the same versions in the same order.

use std::io;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tracing::warn;

use crate::bridge::{Nats, wrong_revision};

const BUCKET: &str = "leadscore_config";
const KEY: &str = "runtime";
/// Versions kept for the record; a node needs only the newest.
const HISTORY: i64 = 64;

/// One version of the runtime configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub version: u64,
    /// The runtime sections, as TOML.
    pub toml: String,
    /// Who made the change, and when (Unix milliseconds).
    pub actor: String,
    pub at_ms: i64,
}

/// A version as the bucket holds it, with the revision a change based on it must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub config: ConfigVersion,
    revision: u64,
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("another change was appended first")]
    Conflict,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The configuration bucket.
#[derive(Clone)]
pub struct ConfigLog {
    nats: Nats,
    bucket: kv::Store,
}

impl std::fmt::Debug for ConfigLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigLog")
    }
}

impl ConfigLog {
    /// Opens the bucket, creating it with `replicas` replicas if it does not exist.
    pub fn open(nats: &Nats, replicas: usize) -> io::Result<Self> {
        let config = kv::Config {
            bucket: BUCKET.into(),
            description: "Leadscore: the runtime configuration's versions, in order".into(),
            history: HISTORY,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        Ok(Self { nats: nats.clone(), bucket: nats.key_value(config)? })
    }

    /// The newest version, if the configuration was ever changed at run time.
    pub fn latest(&self) -> io::Result<Option<Stored>> {
        let bucket = self.bucket.clone();
        let entry = self.nats.run(async move { bucket.entry(KEY).await }).map_err(io::Error::other)?;
        entry.filter(|e| e.operation == kv::Operation::Put).map(decode).transpose()
    }

    /// Every version kept, oldest first.
    pub fn history(&self) -> io::Result<Vec<Stored>> {
        let bucket = self.bucket.clone();
        self.nats.run(async move {
            let entries = bucket.history(KEY).await.map_err(io::Error::other)?;
            let entries: Vec<kv::Entry> = entries.collect::<Result<_, _>>().await.map_err(io::Error::other)?;
            entries.into_iter().filter(|e| e.operation == kv::Operation::Put).map(decode).collect()
        })
    }

    /// Appends `next` after `after` (none: the first change); refused if anything was appended
    /// since.
    pub fn append(&self, after: Option<&Stored>, next: ConfigVersion) -> Result<Stored, AppendError> {
        let value = Bytes::from(serde_json::to_vec(&next).map_err(io::Error::other)?);
        let (bucket, revision) = (self.bucket.clone(), after.map(|s| s.revision));
        let appended = self.nats.run(async move {
            match revision {
                None => bucket.create(KEY, value).await.map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => AppendError::Conflict,
                    _ => AppendError::Io(io::Error::other(e)),
                }),
                Some(revision) => bucket.update(KEY, value, revision).await.map_err(|e| match wrong_revision(&e) {
                    true => AppendError::Conflict,
                    false => AppendError::Io(io::Error::other(e)),
                }),
            }
        })?;
        Ok(Stored { config: next, revision: appended })
    }

    /// Follows the bucket: the receiver holds the newest version seen (the newest stored when
    /// following starts) and changes with every version appended after. Following starts again
    /// after a lost connection.
    pub fn follow(&self) -> watch::Receiver<Option<Stored>> {
        let (newest, receiver) = watch::channel(None);
        let bucket = self.bucket.clone();
        self.nats.spawn(async move {
            loop {
                match bucket.watch_with_history(KEY).await {
                    Ok(mut entries) => {
                        while let Some(entry) = entries.next().await {
                            if entry.as_ref().is_ok_and(|e| e.operation != kv::Operation::Put) {
                                continue;
                            }
                            let stored = entry.map_err(io::Error::other).and_then(decode);
                            match stored {
                                Ok(stored) => {
                                    newest.send_if_modified(|seen| newer(seen, stored));
                                }
                                Err(e) => {
                                    warn!(cause = %e, "following the configuration log failed; following again");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => warn!(cause = %e, "cannot follow the configuration log; trying again"),
                }
                if newest.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        receiver
    }
}

/// Keeps `stored` if it is newer than what was seen (a watch started again repeats the newest).
fn newer(seen: &mut Option<Stored>, stored: Stored) -> bool {
    let is_newer = seen.as_ref().is_none_or(|s| s.config.version < stored.config.version);
    if is_newer {
        *seen = Some(stored);
    }
    is_newer
}

fn decode(entry: kv::Entry) -> io::Result<Stored> {
    let config = serde_json::from_slice(&entry.value)
        .map_err(|e| io::Error::other(format!("configuration log revision {}: {e}", entry.revision)))?;
    Ok(Stored { config, revision: entry.revision })
}
