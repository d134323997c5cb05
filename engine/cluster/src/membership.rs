//! A node's share of the shards: a loop that says the node is alive, renews the leases it
//! holds, takes free shards up to its fair share, and gives back shards beyond it, so that a
//! dead node's shards are owned again within the lease's time to live, and a node that comes
//! back takes a fair share back.
//!
//! The loop is the only thing that changes what the node holds. It calls the host (which
//! replays or drops a shard's store) without holding any lock, and publishes what it holds
//! after each round.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::ownership::{Lease, Owners};
use crate::shard::ShardId;

/// What a node does with the shards it gains and loses.
pub trait ShardHost: Send + Sync + 'static {
    /// Starts serving the shard: replays its log and claims it under `lease.writer()`. An error
    /// gives the shard back.
    fn open(&self, lease: &Lease) -> io::Result<()>;
    /// Stops serving the shard, which another node may own already.
    fn close(&self, shard: ShardId);
    /// Whether the shard's log has stopped (another owner wrote to it): the node steps down.
    fn stopped(&self, shard: ShardId) -> bool;
}

/// How often the loop runs and how many shards there are.
#[derive(Clone, Debug)]
pub struct MembershipSettings {
    pub node: String,
    /// Where the other nodes reach this node's gRPC port.
    pub address: String,
    pub shards: u32,
    /// A round every this long; a third of the lease's time to live leaves two rounds to spare.
    pub round: Duration,
}

/// A node's membership, running until `leave` or `halt`.
#[derive(Debug)]
pub struct Membership {
    held: Arc<Mutex<Vec<ShardId>>>,
    stop: Arc<AtomicBool>,
    /// Whether stopping gives the shards back (a clean leave) or just stops (a halt).
    release: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Membership {
    /// Joins the cluster; refused if the node's name cannot be a key, or if the cluster was
    /// created with another number of shards.
    pub fn start(owners: Owners, host: Arc<dyn ShardHost>, settings: MembershipSettings) -> io::Result<Self> {
        check_node_name(&settings.node)?;
        let (nats, replicas) = owners.nats();
        crate::identity::cluster_shards(nats, replicas, settings.shards)?;
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(true));
        let mut node = Node {
            owners,
            host,
            settings,
            leases: BTreeMap::new(),
            published: Arc::clone(&held),
            renewed: Instant::now(),
        };
        let (stopping, releasing) = (Arc::clone(&stop), Arc::clone(&release));
        let thread = std::thread::Builder::new().name("leadscore-membership".into()).spawn(move || {
            // The first round only says the node is alive, so that nodes started together see
            // each other before they take shards, rather than take all and hand most back.
            let mut looked = false;
            while !stopping.load(Ordering::Relaxed) {
                let started = Instant::now();
                match std::mem::replace(&mut looked, true) {
                    true => node.round(),
                    false => node.say_alive(),
                }
                std::thread::sleep(node.settings.round.saturating_sub(started.elapsed()));
            }
            if releasing.load(Ordering::Relaxed) {
                node.leave();
            }
        })?;
        Ok(Self { held, stop, release, thread: Some(thread) })
    }

    /// The shards this node serves now.
    pub fn held(&self) -> Vec<ShardId> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Gives every shard back and says the node has gone, so others take over at once.
    pub fn leave(mut self) {
        self.stop_with(true);
    }

    /// Stops renewing without giving anything back, as a node that died would: its leases
    /// lapse after their time to live. The host's shards are left as they are.
    pub fn halt(mut self) {
        self.stop_with(false);
    }

    fn stop_with(&mut self, release: bool) {
        self.release.store(release, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_with(true);
    }
}

/// A node's name is part of keys (`node.<name>`) and message ids: letters, digits, `-`, `_`.
fn check_node_name(node: &str) -> io::Result<()> {
    let valid = !node.is_empty()
        && node.len() <= 64
        && node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        return Ok(());
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("node name {node:?}: 1 to 64 letters, digits, '-' or '_'")))
}

/// A lease and when it was last renewed.
struct Held {
    lease: Lease,
    renewed: Instant,
}

struct Node {
    owners: Owners,
    host: Arc<dyn ShardHost>,
    settings: MembershipSettings,
    leases: BTreeMap<ShardId, Held>,
    published: Arc<Mutex<Vec<ShardId>>>,
    /// When the leases were last renewed, all together.
    renewed: Instant,
}

impl Node {
    fn round(&mut self) {
        self.say_alive();
        self.renew();
        if let Err(e) = self.balance() {
            warn!(node = %self.settings.node, cause = %e, "cannot read the shards' owners");
        }
        let held: Vec<ShardId> = self.leases.keys().copied().collect();
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = held;
    }

    fn say_alive(&self) {
        if let Err(e) = self.owners.heartbeat(&self.settings.node, &self.settings.address) {
            warn!(node = %self.settings.node, cause = %e, "cannot reach NATS to say this node is alive");
        }
    }

    /// Keeps each lease, or stops serving its shard: lost to another node, its log stopped,
    /// or not renewed for a whole time to live (NATS out of reach), after which another node
    /// may own it already.
    fn renew(&mut self) {
        self.renewed = Instant::now();
        let ttl = self.owners.ttl();
        let mut lost = Vec::new();
        for (shard, held) in &mut self.leases {
            if self.host.stopped(*shard) {
                lost.push((*shard, "its log stopped: another owner wrote to it", true));
                continue;
            }
            match self.owners.renew(&mut held.lease) {
                Ok(true) => held.renewed = Instant::now(),
                Ok(false) => lost.push((*shard, "its lease was taken", false)),
                Err(e) if held.renewed.elapsed() >= ttl => {
                    warn!(shard, cause = %e, "lease not renewed");
                    lost.push((*shard, "its lease could not be renewed in time", false));
                }
                Err(e) => warn!(shard, cause = %e, "lease renewal failed; trying again next round"),
            }
        }
        for (shard, why, release) in lost {
            let held = self.leases.remove(&shard).expect("listed from the leases");
            self.host.close(shard);
            warn!(shard, node = %self.settings.node, why, "stepped down");
            if release {
                let _ = self.owners.release(held.lease);
            }
        }
    }

    /// Takes free shards up to the fair share and gives back those beyond it.
    fn balance(&mut self) -> io::Result<()> {
        let roll = self.owners.roll()?;
        let nodes = roll.nodes.len().max(1) as u32;
        let fair = self.settings.shards.div_ceil(nodes) as usize;
        let mut surplus = self.leases.len().saturating_sub(fair);
        while surplus > 0 {
            let (&shard, _) = self.leases.iter().next_back().expect("more held than the fair share");
            self.give_back(shard);
            surplus -= 1;
        }
        // Nodes start looking at different shards, so they rarely race for the same one.
        let free: Vec<ShardId> = (0..self.settings.shards).filter(|s| roll.held.binary_search(s).is_err()).collect();
        let start = crate::shard::shard_of(&self.settings.node, free.len().max(1) as u32) as usize;
        for &shard in free.iter().cycle().skip(start).take(free.len()) {
            if self.leases.len() >= fair {
                break;
            }
            // Replays take time: the leases held meanwhile are renewed on schedule.
            if self.renewed.elapsed() >= self.settings.round {
                self.renew();
            }
            let Some(lease) = self.owners.acquire(shard, &self.settings.node)? else { continue };
            let started = Instant::now();
            match self.host.open(&lease) {
                Ok(()) => {
                    info!(shard, node = %self.settings.node, epoch = lease.epoch, replay_ms = started.elapsed().as_millis() as u64, "shard owned");
                    self.leases.insert(shard, Held { lease, renewed: Instant::now() });
                }
                Err(e) => {
                    warn!(shard, node = %self.settings.node, cause = %e, "could not open the shard; giving it back");
                    self.host.close(shard);
                    let _ = self.owners.release(lease);
                }
            }
        }
        Ok(())
    }

    fn give_back(&mut self, shard: ShardId) {
        if let Some(held) = self.leases.remove(&shard) {
            self.host.close(shard);
            if let Err(e) = self.owners.release(held.lease) {
                warn!(shard, cause = %e, "could not release the lease; it lapses instead");
            }
            info!(shard, node = %self.settings.node, "shard given back");
        }
    }

    fn leave(&mut self) {
        let shards: Vec<ShardId> = self.leases.keys().copied().collect();
        for shard in shards {
            self.give_back(shard);
        }
        let _ = self.owners.leave(&self.settings.node);
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_name_is_a_valid_key() {
        for good in ["node-a", "node_2", "N"] {
            assert!(check_node_name(good).is_ok(), "{good}");
        }
        for bad in ["", "node a", "node.a", "nodé", &"n".repeat(65)] {
            let refused = check_node_name(bad).unwrap_err();
            assert!(refused.to_string().contains("letters, digits"), "{bad}: {refused}");
        }
    }
}
