//! The cluster: leads spread over a fixed number of shards, each shard's log one NATS JetStream
//! stream that only its owner writes, and ownership leases in a NATS key-value bucket.
//!
//! Correctness never rests on the lease. Every append names the stream sequence it expects to
//! follow (`Nats-Expected-Last-Sequence`), so a deposed owner's next write is refused and it
//! stops; a new owner replays to the tail and appends an ownership record under the same check
//! before it serves. JetStream's replication (three replicas, `sync_interval: always`) is the
//! consensus; none is written here.
//!
//! The store is synchronous, the NATS client asynchronous: `Nats` keeps a small runtime of its
//! own, and the store's writer threads wait on it (see `bridge`).

#![forbid(unsafe_code)]

mod bridge;
pub mod config_log;
pub mod directory;
pub mod identity;
pub mod membership;
pub mod ownership;
pub mod shard;
pub mod shard_stores;
pub mod snapshots;
pub mod status;
pub mod stream_log;

pub use bridge::Nats;
pub use config_log::{ConfigLog, ConfigVersion};
pub use directory::{Directory, Owner};
pub use identity::{cluster_salt, cluster_shards};
pub use membership::{Membership, MembershipSettings, ShardHost};
pub use ownership::{Lease, Owners};
pub use shard::{ShardId, shard_of};
pub use shard_stores::ShardStores;
pub use snapshots::Snapshots;
pub use status::ClusterStatus;
pub use stream_log::{StreamLog, StreamSettings};
