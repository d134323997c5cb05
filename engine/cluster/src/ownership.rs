//! Who owns which shard: one key per shard in a NATS key-value bucket whose entries expire
//! `ttl` after their last write. A node takes a free shard by creating its key, keeps it by
//! rewriting the key under the revision it last wrote (compare-and-swap), and loses it when a
//! rewrite is refused or the key expires. The lease only says who should write; the stream's
//! expected-sequence check is what stops a deposed owner (see `stream_log`).

use std::io;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use tokio_stream::StreamExt as _;

use crate::bridge::{Nats, wrong_revision};
use crate::shard::ShardId;

const BUCKET: &str = "leadscore_owners";

/// The ownership bucket.
#[derive(Debug)]
pub struct Owners {
    nats: Nats,
    bucket: kv::Store,
    ttl: Duration,
    replicas: usize,
}

/// A shard held by this node: the key's revision it last wrote, and the revision that first
/// took it (its epoch, which names this tenure in the stream's message ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub shard: ShardId,
    pub node: String,
    pub epoch: u64,
    revision: u64,
}

impl Lease {
    /// The name this tenure writes the shard's stream under.
    pub fn writer(&self) -> String {
        format!("{}.{}", self.node, self.epoch)
    }
}

fn key(shard: ShardId) -> String {
    format!("shard.{shard}")
}

fn node_key(node: &str) -> String {
    format!("node.{node}")
}

/// The keys in the bucket now: the nodes alive and the shards held.
#[derive(Debug, Default)]
pub struct Roll {
    pub nodes: Vec<String>,
    pub held: Vec<ShardId>,
}

impl Owners {
    /// Opens the bucket, creating it with `replicas` replicas if it does not exist.
    pub fn open(nats: &Nats, ttl: Duration, replicas: usize) -> io::Result<Self> {
        let config = kv::Config {
            bucket: BUCKET.into(),
            description: "Leadscore: which node owns which shard".into(),
            history: 1,
            max_age: ttl,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let bucket = nats.key_value(config)?;
        Ok(Self { nats: nats.clone(), bucket, ttl, replicas })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The connection and replica count the bucket was opened with.
    pub fn nats(&self) -> (&Nats, usize) {
        (&self.nats, self.replicas)
    }

    /// Takes `shard` for `node` if nobody holds it.
    pub fn acquire(&self, shard: ShardId, node: &str) -> io::Result<Option<Lease>> {
        let bucket = self.bucket.clone();
        let value = Bytes::from(node.to_owned());
        let created = self.nats.run(async move { bucket.create(key(shard), value).await });
        match created {
            Ok(revision) => Ok(Some(Lease { shard, node: node.to_owned(), epoch: revision, revision })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// Keeps `lease` for another `ttl`; false if it was lost (expired and taken, or released).
    pub fn renew(&self, lease: &mut Lease) -> io::Result<bool> {
        let bucket = self.bucket.clone();
        let (shard, value, revision) = (lease.shard, Bytes::from(lease.node.clone()), lease.revision);
        let updated = self.nats.run(async move { bucket.update(key(shard), value, revision).await });
        match updated {
            Ok(revision) => {
                lease.revision = revision;
                Ok(true)
            }
            Err(e) if wrong_revision(&e) => Ok(false),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// Gives `lease` up, so that another node may take the shard at once.
    pub fn release(&self, lease: Lease) -> io::Result<()> {
        let bucket = self.bucket.clone();
        self.nats
            .run(async move { bucket.delete_expect_revision(key(lease.shard), Some(lease.revision)).await })
            .map_err(io::Error::other)
    }

    /// The node holding `shard`, if any.
    pub fn owner(&self, shard: ShardId) -> io::Result<Option<String>> {
        let bucket = self.bucket.clone();
        let value = self.nats.run(async move { bucket.get(key(shard)).await }).map_err(io::Error::other)?;
        Ok(value.map(|node| String::from_utf8_lossy(&node).into_owned()))
    }

    /// Says `node` is alive for another `ttl`, and where the other nodes reach its gRPC port.
    pub fn heartbeat(&self, node: &str, address: &str) -> io::Result<()> {
        let (bucket, key, value) = (self.bucket.clone(), node_key(node), Bytes::from(address.to_owned()));
        self.nats.run(async move { bucket.put(key, value).await.map(drop) }).map_err(io::Error::other)
    }

    pub(crate) fn bucket(&self) -> &kv::Store {
        &self.bucket
    }

    /// Says `node` has gone, so the others count it out at once.
    pub fn leave(&self, node: &str) -> io::Result<()> {
        let (bucket, key) = (self.bucket.clone(), node_key(node));
        self.nats.run(async move { bucket.delete(key).await }).map_err(io::Error::other)
    }

    /// The nodes alive and the shards held, as the bucket has them now.
    pub fn roll(&self) -> io::Result<Roll> {
        let bucket = self.bucket.clone();
        let keys = self.nats.run(async move {
            let keys = bucket.keys().await.map_err(io::Error::other)?;
            keys.collect::<Result<Vec<String>, _>>().await.map_err(io::Error::other)
        })?;
        let mut roll = Roll::default();
        for key in keys {
            if let Some(node) = key.strip_prefix("node.") {
                roll.nodes.push(node.to_owned());
            } else if let Some(shard) = key.strip_prefix("shard.").and_then(|s| s.parse().ok()) {
                roll.held.push(shard);
            }
        }
        roll.nodes.sort_unstable();
        roll.held.sort_unstable();
        Ok(roll)
    }
}
