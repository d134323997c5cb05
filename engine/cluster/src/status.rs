//! What `leadscore cluster status` shows, read from NATS alone: the nodes alive, each shard's
//! owner, its stream's tail, size and replicas, and its newest snapshot.

use std::io;

use crate::bridge::Nats;
use crate::identity::recorded_shards;
use crate::ownership::Owners;
use crate::shard::{self, ShardId};
use crate::snapshots::{Kept, Snapshots};

/// The cluster as NATS has it now.
#[derive(Debug)]
pub struct ClusterStatus {
    pub nodes: Vec<String>,
    pub shards: Vec<ShardStatus>,
}

#[derive(Debug)]
pub struct ShardStatus {
    pub shard: ShardId,
    pub owner: Option<String>,
    /// The stream's last sequence and bytes, if the stream exists.
    pub tail: Option<u64>,
    pub bytes: u64,
    /// The server leading the stream's replicas.
    pub leader: Option<String>,
    /// Replicas behind the leader or offline: name and how many operations behind.
    pub lagging: Vec<(String, u64)>,
    pub snapshot: Option<Kept>,
}

impl ClusterStatus {
    /// Reads the cluster's state; `None` if no node has joined yet (no shard count fixed).
    pub fn read(nats: &Nats, ttl: std::time::Duration) -> io::Result<Option<Self>> {
        let Some(count) = recorded_shards(nats)? else { return Ok(None) };
        let owners = Owners::open(nats, ttl, 1)?;
        let nodes = owners.roll()?.nodes;
        let snapshots = Snapshots::existing(nats).map(|s| s.newest()).transpose()?.unwrap_or_default();
        let mut shards = Vec::with_capacity(count as usize);
        for shard in 0..count {
            let (js, name) = (nats.jetstream().clone(), shard::stream_name(shard));
            let info = nats.run(async move { js.get_stream(name).await.map(|s| s.cached_info().clone()) }).ok();
            let cluster = info.as_ref().and_then(|i| i.cluster.clone());
            let lagging = cluster
                .iter()
                .flat_map(|c| c.replicas.iter())
                .filter(|r| !r.current || r.offline)
                .map(|r| (r.name.clone(), r.lag.unwrap_or(0)))
                .collect();
            shards.push(ShardStatus {
                shard,
                owner: owners.owner(shard)?,
                tail: info.as_ref().map(|i| i.state.last_sequence),
                bytes: info.as_ref().map_or(0, |i| i.state.bytes),
                leader: cluster.and_then(|c| c.leader),
                lagging,
                snapshot: snapshots.get(&shard).copied(),
            });
        }
        Ok(Some(Self { nodes, shards }))
    }
}
