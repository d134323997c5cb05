//! The shards a node serves, each a whole engine (store, scoring, router, dialer) over its
//! shard's stream: the host that membership opens and closes shards on.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::info;

use crate::api::Context;
use crate::server::services_over;
use leadscore_cluster::{Lease, ShardHost, ShardId, ShardStores};
use leadscore_config::Config;
use leadscore_store::clock::Clock;

pub struct Engines {
    stores: ShardStores,
    config: Config,
    clock: Arc<dyn Clock>,
    started_at_ms: i64,
    closing: watch::Receiver<bool>,
    open: Mutex<BTreeMap<ShardId, Context>>,
}

impl Engines {
    pub fn new(
        stores: ShardStores,
        config: Config,
        clock: Arc<dyn Clock>,
        started_at_ms: i64,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self { stores, config, clock, started_at_ms, closing, open: Mutex::new(BTreeMap::new()) }
    }

    /// The engine of `shard`, if this node serves it.
    pub fn get(&self, shard: ShardId) -> Option<Context> {
        self.lock().get(&shard).cloned()
    }

    /// Any engine this node serves: inline scoring needs one but no particular shard.
    pub fn any(&self) -> Option<Context> {
        self.lock().values().next().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ShardId, Context>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ShardHost for Engines {
    fn open(&self, lease: &Lease) -> io::Result<()> {
        self.stores.open(lease)?;
        let store = self.stores.get(lease.shard).ok_or_else(|| io::Error::other("the shard's store closed at once"))?;
        let (config, clock) = (self.config.clone(), Arc::clone(&self.clock));
        let context = services_over(store, config, clock, self.started_at_ms, self.closing.clone())
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        context.dialer.prepare();
        info!(shard = lease.shard, leads = context.scoring.scored(), "shard serving");
        self.lock().insert(lease.shard, context);
        Ok(())
    }

    fn close(&self, shard: ShardId) {
        let closed = self.lock().remove(&shard);
        drop(closed);
        self.stores.close(shard);
    }

    fn stopped(&self, shard: ShardId) -> bool {
        self.stores.stopped(shard)
    }
}
