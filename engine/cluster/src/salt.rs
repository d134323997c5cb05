//! The cluster's salt: the keys of erased people are salted hashes, and every node replaying
//! a shard must make the same keys, so one salt is kept in NATS for the whole cluster.

use std::io;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;

use crate::bridge::Nats;

const BUCKET: &str = "leadscore_cluster";
const KEY: &str = "salt";

/// The cluster's salt, made by whichever node asks first.
pub fn cluster_salt(nats: &Nats, replicas: usize) -> io::Result<[u8; 32]> {
    let config = kv::Config {
        bucket: BUCKET.into(),
        description: "Leadscore: what every node of the cluster shares".into(),
        history: 1,
        storage: StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    let salt = nats.retrying("the cluster's salt", || {
        let (js, config) = (nats.jetstream().clone(), config.clone());
        async move {
            let bucket = match js.get_key_value(BUCKET).await {
                Ok(bucket) => bucket,
                Err(_) => js.create_key_value(config).await.map_err(io::Error::other)?,
            };
            let fresh: [u8; 32] = rand::random();
            match bucket.create(KEY, Bytes::copy_from_slice(&fresh)).await {
                Ok(_) => return Ok(Bytes::copy_from_slice(&fresh)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(io::Error::other(e)),
            }
            bucket.get(KEY).await.map_err(io::Error::other)?.ok_or_else(|| io::Error::other("the salt vanished"))
        }
    })?;
    salt.as_ref()
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the cluster's salt must be 32 bytes"))
}
