//! The shards a node serves, each a whole engine (store, scoring, router, dialer) over its
//! shard's stream: the host that membership opens and closes shards on.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::info;

use crate::api::Context;
use crate::maintenance;
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
    /// Where each shard's upkeep runs: the server's runtime.
    runtime: tokio::runtime::Handle,
    /// Each shard's engine, and what stops its upkeep.
    open: Mutex<BTreeMap<ShardId, (Context, watch::Sender<bool>)>>,
}

impl Engines {
    pub fn new(
        stores: ShardStores,
        config: Config,
        clock: Arc<dyn Clock>,
        started_at_ms: i64,
        closing: watch::Receiver<bool>,
    ) -> Self {
        let runtime = tokio::runtime::Handle::current();
        Self { stores, config, clock, started_at_ms, closing, runtime, open: Mutex::new(BTreeMap::new()) }
    }

    /// The engine of `shard`, if this node serves it. Not once its log has stopped (another
    /// owner wrote): its memory may hold a write the stream refused, so it answers nothing
    /// until membership closes it.
    pub fn get(&self, shard: ShardId) -> Option<Context> {
        let context = self.lock().get(&shard).map(|(context, _)| context.clone())?;
        (!self.stores.stopped(shard)).then_some(context)
    }

    /// Turns true when this node stops serving `shard`: a watch of it ends then.
    pub fn closed(&self, shard: ShardId) -> Option<watch::Receiver<bool>> {
        self.lock().get(&shard).map(|(_, stop)| stop.subscribe())
    }

    /// Turns true when the node shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.clone()
    }

    /// Any engine this node serves: inline scoring needs one but no particular shard.
    pub fn any(&self) -> Option<Context> {
        self.lock().values().next().map(|(context, _)| context.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ShardId, (Context, watch::Sender<bool>)>> {
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
        // Its own upkeep, as a single node's: snapshots (which trim the stream) and the sweep.
        let (stop, stopped) = watch::channel(false);
        let upkeep =
            maintenance::run(context.store.clone(), context.config.clone(), context.erased.clone(), stopped.clone());
        self.runtime.spawn(upkeep);
        self.runtime.spawn(maintenance::sweep(context.scoring.clone(), context.dialer.clone(), stopped));
        self.lock().insert(lease.shard, (context, stop));
        Ok(())
    }

    fn close(&self, shard: ShardId) {
        if let Some((_, stop)) = self.lock().remove(&shard) {
            let _ = stop.send(true);
        }
        self.stores.close(shard);
    }

    fn stopped(&self, shard: ShardId) -> bool {
        self.stores.stopped(shard)
    }
}
