//! Shard snapshots in a JetStream object store, where the next owner of a shard finds them.
//! Each is named by its shard and the stream position it starts from, so a late upload by a
//! deposed owner can never hide a newer snapshot: the newest position wins.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use tokio_stream::StreamExt as _;

use crate::bridge::Nats;
use crate::shard::ShardId;

const BUCKET: &str = "leadscore_snapshots";
const CREATED_AT_MS: &str = "created_at_ms";

/// A snapshot kept in the bucket.
#[derive(Clone, Copy, Debug)]
pub struct Kept {
    pub shard: ShardId,
    pub position: u64,
    /// When the snapshot was written (Unix milliseconds), if it says.
    pub created_at_ms: Option<i64>,
}

/// The snapshot bucket.
#[derive(Clone)]
pub struct Snapshots {
    nats: Nats,
    bucket: ObjectStore,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshots")
    }
}

fn name(shard: ShardId, position: u64) -> String {
    format!("shard-{shard}/{position:020}")
}

impl Snapshots {
    /// Opens the bucket, creating it with `replicas` replicas if it does not exist.
    pub fn open(nats: &Nats, replicas: usize) -> io::Result<Self> {
        let config = object_store::Config {
            bucket: BUCKET.into(),
            description: Some("Leadscore: each shard's snapshots, named by the position they start from".into()),
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let bucket = nats.retrying("the snapshot bucket", || {
            let (js, config) = (nats.jetstream().clone(), config.clone());
            async move {
                match js.get_object_store(BUCKET).await {
                    Ok(bucket) => Ok(bucket),
                    Err(_) => js.create_object_store(config).await.map_err(io::Error::other),
                }
            }
        })?;
        Ok(Self { nats: nats.clone(), bucket })
    }

    /// The bucket if it exists: for readers, which must not create it with their own settings.
    pub fn existing(nats: &Nats) -> Option<Self> {
        let js = nats.jetstream().clone();
        let bucket = nats.run(async move { js.get_object_store(BUCKET).await.ok() });
        bucket.map(|bucket| Self { nats: nats.clone(), bucket })
    }

    /// The positions of `shard`'s snapshots, oldest first.
    pub fn list(&self, shard: ShardId) -> io::Result<Vec<u64>> {
        let mut positions: Vec<u64> =
            self.objects()?.into_iter().filter(|kept| kept.shard == shard).map(|kept| kept.position).collect();
        positions.sort_unstable();
        Ok(positions)
    }

    /// Each shard's newest snapshot.
    pub fn newest(&self) -> io::Result<BTreeMap<ShardId, Kept>> {
        let mut newest = BTreeMap::new();
        for kept in self.objects()? {
            let entry = newest.entry(kept.shard).or_insert(kept);
            if kept.position > entry.position {
                *entry = kept;
            }
        }
        Ok(newest)
    }

    fn objects(&self) -> io::Result<Vec<Kept>> {
        self.nats.retrying("listing snapshots", || {
            let bucket = self.bucket.clone();
            async move {
                let mut objects = bucket.list().await.map_err(io::Error::other)?;
                let mut kept = Vec::new();
                while let Some(object) = objects.next().await {
                    let object = object.map_err(io::Error::other)?;
                    let Some((shard, position)) = object.name.strip_prefix("shard-").and_then(|n| n.split_once('/'))
                    else {
                        continue;
                    };
                    if let (Ok(shard), Ok(position), false) = (shard.parse(), position.parse(), object.deleted) {
                        let created_at_ms = object.metadata.get(CREATED_AT_MS).and_then(|ms| ms.parse().ok());
                        kept.push(Kept { shard, position, created_at_ms });
                    }
                }
                Ok::<_, io::Error>(kept)
            }
        })
    }

    /// Keeps the snapshot file at `path` as `shard`'s snapshot from `position`; returns once
    /// JetStream has stored all of it. Sent whole again while JetStream does not take it: a
    /// bucket just created may have no leader for a moment ("no stream found"), and a put of
    /// the same name replaces what an earlier try left.
    pub fn put(&self, shard: ShardId, position: u64, path: &Path, created_at_ms: i64) -> io::Result<()> {
        let meta = ObjectMetadata {
            name: name(shard, position),
            metadata: [(CREATED_AT_MS.to_owned(), created_at_ms.to_string())].into(),
            ..Default::default()
        };
        self.nats.retrying("storing a snapshot", || {
            let (bucket, path, meta) = (self.bucket.clone(), path.to_owned(), meta.clone());
            async move {
                let mut file = tokio::fs::File::open(&path).await?;
                bucket.put(meta, &mut file).await.map_err(io::Error::other)?;
                Ok::<_, io::Error>(())
            }
        })
    }

    /// Writes `shard`'s snapshot from `position` to `path`, whole or not at all.
    pub fn fetch(&self, shard: ShardId, position: u64, path: &Path) -> io::Result<()> {
        let (bucket, path) = (self.bucket.clone(), path.to_owned());
        self.nats.run(async move {
            let partial = PathBuf::from(format!("{}.partial", path.display()));
            let mut object = bucket.get(name(shard, position)).await.map_err(io::Error::other)?;
            let mut file = tokio::fs::File::create(&partial).await?;
            // The object's reader checks its digest at the end.
            tokio::io::copy(&mut object, &mut file).await?;
            file.sync_all().await?;
            tokio::fs::rename(&partial, &path).await
        })
    }

    /// Removes `shard`'s snapshots older than `position`.
    pub fn remove_before(&self, shard: ShardId, position: u64) -> io::Result<()> {
        for old in self.list(shard)?.into_iter().filter(|p| *p < position) {
            let bucket = self.bucket.clone();
            self.nats.run(async move { bucket.delete(name(shard, old)).await }).map_err(io::Error::other)?;
        }
        Ok(())
    }
}
