//! What a cluster fixes when it is first used, kept in NATS for every node: its salt (the keys
//! of erased people are salted hashes, and every node replaying a shard must make the same
//! keys) and its number of shards (a lead's shard depends on it).

use std::io;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;

use crate::bridge::Nats;

const BUCKET: &str = "leadscore_cluster";

/// The cluster's salt, made by whichever node asks first.
pub fn cluster_salt(nats: &Nats, replicas: usize) -> io::Result<[u8; 32]> {
    let salt = settle(nats, replicas, "salt", Bytes::copy_from_slice(&rand::random::<[u8; 32]>()))?;
    salt.as_ref()
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the cluster's salt must be 32 bytes"))
}

/// The cluster's number of shards: `configured` if this is the first node, and an error if the
/// cluster was created with another.
pub fn cluster_shards(nats: &Nats, replicas: usize, configured: u32) -> io::Result<u32> {
    let settled = settle(nats, replicas, "shards", Bytes::from(configured.to_string()))?;
    let shards = String::from_utf8_lossy(&settled).parse::<u32>().map_err(io::Error::other)?;
    if shards != configured {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the cluster was created with {shards} shards, and this node is configured with {configured}; the count cannot change"
            ),
        ));
    }
    Ok(shards)
}

/// The cluster's number of shards, if a node has fixed it.
pub fn recorded_shards(nats: &Nats) -> io::Result<Option<u32>> {
    let js = nats.jetstream().clone();
    let value = nats.run(async move {
        let Ok(bucket) = js.get_key_value(BUCKET).await else { return Ok(None) };
        bucket.get("shards").await.map_err(io::Error::other)
    })?;
    value.map(|v| String::from_utf8_lossy(&v).parse::<u32>().map_err(io::Error::other)).transpose()
}

/// The value of `key`: `proposed` if no node set it before, else what the first one set.
fn settle(nats: &Nats, replicas: usize, key: &'static str, proposed: Bytes) -> io::Result<Bytes> {
    let config = kv::Config {
        bucket: BUCKET.into(),
        description: "Leadscore: what every node of the cluster shares".into(),
        history: 1,
        storage: StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let bucket = nats.key_value(config)?;
    nats.retrying(key, || {
        let (bucket, proposed) = (bucket.clone(), proposed.clone());
        async move {
            match bucket.create(key, proposed.clone()).await {
                Ok(_) => return Ok(proposed),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(io::Error::other(e)),
            }
            bucket.get(key).await.map_err(io::Error::other)?.ok_or_else(|| io::Error::other(format!("{key} vanished")))
        }
    })
}
