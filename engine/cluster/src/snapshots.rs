//! Shard snapshots in a JetStream object store, where the next owner of a shard finds them.
//! Each is named by its shard and the stream position it starts from, so a late upload by a
//! deposed owner can never hide a newer snapshot: the newest position wins.

use std::io;
use std::path::{Path, PathBuf};

use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use tokio_stream::StreamExt as _;

use crate::bridge::Nats;
use crate::shard::ShardId;

const BUCKET: &str = "leadscore_snapshots";

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

fn prefix(shard: ShardId) -> String {
    format!("shard-{shard}/")
}

fn name(shard: ShardId, position: u64) -> String {
    format!("{}{position:020}", prefix(shard))
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

    /// The positions of `shard`'s snapshots, oldest first.
    pub fn list(&self, shard: ShardId) -> io::Result<Vec<u64>> {
        let mut positions = self.nats.retrying("listing snapshots", || {
            let bucket = self.bucket.clone();
            async move {
                let mut objects = bucket.list().await.map_err(io::Error::other)?;
                let mut positions = Vec::new();
                while let Some(object) = objects.next().await {
                    let object = object.map_err(io::Error::other)?;
                    let position = object.name.strip_prefix(&prefix(shard)).and_then(|p| p.parse::<u64>().ok());
                    if let (Some(position), false) = (position, object.deleted) {
                        positions.push(position);
                    }
                }
                Ok::<_, io::Error>(positions)
            }
        })?;
        positions.sort_unstable();
        Ok(positions)
    }

    /// Keeps the snapshot file at `path` as `shard`'s snapshot from `position`; returns once
    /// JetStream has stored all of it.
    pub fn put(&self, shard: ShardId, position: u64, path: &Path) -> io::Result<()> {
        let (bucket, path) = (self.bucket.clone(), path.to_owned());
        self.nats.run(async move {
            let mut file = tokio::fs::File::open(&path).await?;
            bucket.put(name(shard, position).as_str(), &mut file).await.map_err(io::Error::other)?;
            Ok(())
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
