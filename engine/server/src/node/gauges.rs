//! A node's gauges at each scrape: every shard it serves, each labelled with its shard, beside
//! its log's position and size and its snapshot's age. A shard that moved away has its series
//! set to zero here, so a sum over every node's scrape counts each shard once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::engines::Engines;
use crate::ops::telemetry::{EngineGauges, Gauges, Series};
use leadscore_cluster::ShardId;
use leadscore_store::clock::Clock;

pub struct ShardGauges {
    pub engines: Arc<Engines>,
    pub clock: Arc<dyn Clock>,
    /// The series each shard set at the last scrape.
    pub published: Mutex<BTreeMap<ShardId, Vec<Series>>>,
}

impl Gauges for ShardGauges {
    fn refresh(&self) {
        let now_ms = self.clock.now_ms();
        let mut set = BTreeMap::new();
        for (shard, context) in self.engines.served() {
            let label = vec![("shard", shard.to_string())];
            let engine = EngineGauges {
                store: context.store.clone(),
                scoring: context.scoring.clone(),
                dialer: context.dialer.clone(),
            };
            let stats = context.store.stats();
            let version = context.generations.current().version as f64;
            let mut own: Vec<(Series, f64)> = vec![
                (("leadscore_shard_served", label.clone()), 1.0),
                (("leadscore_shard_log_position", label.clone()), stats.last_lsn as f64),
                (("leadscore_shard_log_bytes", label.clone()), stats.log_bytes as f64),
                (("leadscore_config_version", label.clone()), version),
            ];
            if let Some(at_ms) = stats.last_snapshot_at_ms {
                let age = (now_ms - at_ms).max(0) as f64 / 1000.0;
                own.push((("leadscore_shard_snapshot_age_seconds", label.clone()), age));
            }
            for ((name, labels), value) in &own {
                metrics::gauge!(*name, labels).set(*value);
            }
            let series = engine.publish(&label).into_iter().chain(own);
            set.insert(shard, series.into_iter().map(|(series, _)| series).collect::<Vec<_>>());
        }
        metrics::gauge!("leadscore_shards_served").set(set.len() as f64);
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        for (_, gone) in published.iter().filter(|(shard, _)| !set.contains_key(shard)) {
            for (name, labels) in gone {
                metrics::gauge!(*name, labels).set(0.0);
            }
        }
        *published = set;
    }
}
