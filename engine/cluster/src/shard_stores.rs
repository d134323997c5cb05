//! The stores of the shards a node owns, each over its shard's stream: the `ShardHost` that
//! membership opens and closes.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use leadscore_store::clock::Clock;
use leadscore_store::{Store, StoreOptions};

use crate::bridge::Nats;
use crate::membership::ShardHost;
use crate::ownership::Lease;
use crate::shard::ShardId;
use crate::stream_log::{Stopped, StreamLog, StreamSettings};

/// A node's open shard stores.
pub struct ShardStores {
    nats: Nats,
    /// Each shard's store keeps its files in `data_dir/shard-N`.
    options: StoreOptions,
    settings: StreamSettings,
    clock: Arc<dyn Clock>,
    open: Mutex<BTreeMap<ShardId, (Arc<Store>, Stopped)>>,
}

impl ShardStores {
    pub fn new(nats: &Nats, options: StoreOptions, settings: StreamSettings, clock: Arc<dyn Clock>) -> Self {
        Self { nats: nats.clone(), options, settings, clock, open: Mutex::new(BTreeMap::new()) }
    }

    /// The store of `shard`, if this node serves it.
    pub fn get(&self, shard: ShardId) -> Option<Arc<Store>> {
        self.lock().get(&shard).map(|(store, _)| Arc::clone(store))
    }

    /// The shards served here.
    pub fn shards(&self) -> Vec<ShardId> {
        self.lock().keys().copied().collect()
    }

    fn dir(&self, shard: ShardId) -> PathBuf {
        self.options.data_dir.join(format!("shard-{shard}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ShardId, (Arc<Store>, Stopped)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ShardHost for ShardStores {
    /// Starts from the cluster's newest snapshot and the stream, never from what this disk
    /// kept of an earlier tenure: a snapshot written here may hold writes the stream refused.
    fn open(&self, lease: &Lease) -> io::Result<()> {
        let dir = self.dir(lease.shard);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let log = StreamLog::open(&self.nats, lease.shard, &lease.writer(), &self.settings)?;
        let stopped = log.stopped();
        let options = StoreOptions { data_dir: dir, ..self.options.clone() };
        let store = Store::open_with_log(options, Arc::clone(&self.clock), Box::new(log)).map_err(io::Error::other)?;
        self.lock().insert(lease.shard, (store, stopped));
        Ok(())
    }

    fn close(&self, shard: ShardId) {
        let closed = self.lock().remove(&shard);
        drop(closed);
    }

    fn stopped(&self, shard: ShardId) -> bool {
        self.lock().get(&shard).is_some_and(|(_, stopped)| stopped.cause().is_some())
    }
}
