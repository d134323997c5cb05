//! The shards a node serves, each a whole engine (store, scoring, router, dialer) over its
//! shard's stream: the host that membership opens and closes shards on. Every shard serves the
//! newest configuration version in the cluster's log (see `configuration`).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::info;

use crate::api::Context;
use crate::maintenance;
use crate::server::services_over;
use leadscore_cluster::{ConfigLog, ConfigVersion, Lease, ShardHost, ShardId, ShardStores};
use leadscore_config::Config;
use leadscore_store::clock::Clock;

pub struct Engines {
    stores: ShardStores,
    /// The configuration file's: the log's versions replace its runtime sections.
    pub(super) config: Config,
    pub(super) log: ConfigLog,
    /// The newest version every shard here has taken.
    pub(super) applied: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
    started_at_ms: i64,
    closing: watch::Receiver<bool>,
    /// Where each shard's upkeep runs: the server's runtime.
    runtime: tokio::runtime::Handle,
    serving: Mutex<Serving>,
}

#[derive(Default)]
pub(super) struct Serving {
    /// Each shard's engine, and what stops its upkeep.
    pub(super) shards: BTreeMap<ShardId, (Context, watch::Sender<bool>)>,
    /// The newest configuration version seen in the log. A shard joins `shards` only at it,
    /// and a newer one is recorded here before it is applied to `shards`: so no shard is left
    /// behind by a version that arrives while it opens.
    pub(super) newest: Option<Arc<ConfigVersion>>,
}

impl Engines {
    pub fn new(
        stores: ShardStores,
        (config, log): (Config, ConfigLog),
        clock: Arc<dyn Clock>,
        started_at_ms: i64,
        closing: watch::Receiver<bool>,
    ) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let serving = Mutex::new(Serving::default());
        let applied = watch::Sender::new(0);
        Self { stores, config, log, applied, clock, started_at_ms, closing, runtime, serving }
    }

    /// The engine of `shard`, if this node serves it. Not once its log has stopped (another
    /// owner wrote): its memory may hold a write the stream refused, so it answers nothing
    /// until membership closes it.
    pub fn get(&self, shard: ShardId) -> Option<Context> {
        let context = self.lock().shards.get(&shard).map(|(context, _)| context.clone())?;
        (!self.stores.stopped(shard)).then_some(context)
    }

    /// Turns true when this node stops serving `shard`: a watch of it ends then.
    pub fn closed(&self, shard: ShardId) -> Option<watch::Receiver<bool>> {
        self.lock().shards.get(&shard).map(|(_, stop)| stop.subscribe())
    }

    /// Turns true when the node shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.clone()
    }

    /// Every shard this node serves now, with its engine.
    pub fn served(&self) -> Vec<(ShardId, Context)> {
        let serving = self.lock();
        serving.shards.iter().map(|(shard, (context, _))| (*shard, context.clone())).collect()
    }

    /// Any engine this node serves: inline scoring needs one but no particular shard.
    pub fn any(&self) -> Option<Context> {
        self.lock().shards.values().next().map(|(context, _)| context.clone())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Serving> {
        self.serving.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ShardHost for Engines {
    fn open(&self, lease: &Lease) -> io::Result<()> {
        self.stores.open(lease)?;
        let store = self.stores.get(lease.shard).ok_or_else(|| io::Error::other("the shard's store closed at once"))?;
        let newest = self.newest_logged().map_err(io::Error::other)?;
        let config = self.config_at(newest.as_deref()).map_err(io::Error::other)?;
        let clock = Arc::clone(&self.clock);
        let context = services_over(store, config, clock, self.started_at_ms, self.closing.clone())
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        context.dialer.prepare();
        // Its own upkeep, as a single node's: snapshots (which trim the stream) and the sweep.
        let (stop, stopped) = watch::channel(false);
        loop {
            let mut serving = self.lock();
            let newer = serving.newest.clone().filter(|v| v.version > context.generations.current().version);
            let Some(newer) = newer else {
                serving.shards.insert(lease.shard, (context.clone(), stop));
                break;
            };
            drop(serving);
            self.adopt_on(&context, &newer).map_err(io::Error::other)?;
        }
        info!(shard = lease.shard, leads = context.scoring.scored(), "shard serving");
        let upkeep =
            maintenance::run(context.store.clone(), context.config.clone(), context.erased.clone(), stopped.clone());
        self.runtime.spawn(upkeep);
        self.runtime.spawn(maintenance::sweep(context.scoring.clone(), context.dialer.clone(), stopped));
        Ok(())
    }

    fn close(&self, shard: ShardId) {
        let closed = self.lock().shards.remove(&shard);
        if let Some((_, stop)) = closed {
            let _ = stop.send(true);
        }
        self.stores.close(shard);
    }

    fn stopped(&self, shard: ShardId) -> bool {
        self.stores.stopped(shard)
    }
}
