//! Where each shard is served: a node's view of the ownership bucket, kept current by watching
//! it, so that routing a call costs a map lookup and not a NATS round trip.
//!
//! The view may lag a change of owner by a moment, and keeps a dead node's shards until
//! another node takes them (an expired key sends no notice). A call routed on a stale entry
//! reaches a node that no longer serves the shard, which refuses it: never a wrong answer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use tokio_stream::StreamExt as _;
use tracing::warn;

use crate::ownership::Owners;
use crate::shard::ShardId;

#[derive(Debug, Default)]
struct View {
    owners: HashMap<ShardId, String>,
    /// Each live node's gRPC address, from its heartbeat.
    addresses: HashMap<String, String>,
}

/// The shards' owners and the nodes' addresses, as last seen.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    view: Arc<RwLock<View>>,
}

/// A shard's owner and the address its gRPC port is reached at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub address: String,
}

impl Directory {
    /// Starts watching the bucket; the watch starts again after a lost connection.
    pub fn watch(owners: &Owners) -> Self {
        let directory = Self::default();
        let (bucket, view) = (owners.bucket().clone(), Arc::clone(&directory.view));
        owners.nats().0.spawn(async move {
            loop {
                match bucket.watch_with_history(">").await {
                    Ok(mut entries) => {
                        while let Some(entry) = entries.next().await {
                            match entry {
                                Ok(entry) => {
                                    let value = String::from_utf8_lossy(&entry.value).into_owned();
                                    let present = entry.operation == Operation::Put;
                                    apply(&view, &entry.key, present.then_some(value));
                                }
                                Err(e) => {
                                    warn!(cause = %e, "watching the shards' owners failed; watching again");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => warn!(cause = %e, "cannot watch the shards' owners; trying again"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        directory
    }

    /// The node serving `shard` and its address, if known.
    pub fn owner(&self, shard: ShardId) -> Option<Owner> {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        let node = view.owners.get(&shard)?;
        let address = view.addresses.get(node)?;
        Some(Owner { node: node.clone(), address: address.clone() })
    }

    /// The nodes serving shards now, each once, by name.
    pub fn owners(&self) -> Vec<Owner> {
        let view = self.view.read().unwrap_or_else(|e| e.into_inner());
        let nodes: std::collections::BTreeSet<&String> = view.owners.values().collect();
        let address =
            |node: &String| view.addresses.get(node).map(|a| Owner { node: node.clone(), address: a.clone() });
        nodes.into_iter().filter_map(address).collect()
    }
}

fn apply(view: &RwLock<View>, key: &str, value: Option<String>) {
    let mut view = view.write().unwrap_or_else(|e| e.into_inner());
    if let Some(node) = key.strip_prefix("node.") {
        match value {
            Some(address) => view.addresses.insert(node.to_owned(), address),
            None => view.addresses.remove(node),
        };
    } else if let Some(shard) = key.strip_prefix("shard.").and_then(|s| s.parse().ok()) {
        match value {
            Some(node) => view.owners.insert(shard, node),
            None => view.owners.remove(&shard),
        };
    }
}
