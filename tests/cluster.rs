//! The cluster's parts on three real NATS servers: a shard's store over its JetStream stream,
//! fencing of a deposed owner, and ownership leases.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use leadscore::clock::ManualClock;
use leadscore::store::lead::Value;
use leadscore::store::mutation::LeadInput;
use leadscore::store::{FsyncPolicy, Store, StoreError, StoreOptions};
use leadscore_cluster::{
    Membership, MembershipSettings, Nats, Owners, ShardStores, Snapshots, StreamLog, StreamSettings, shard_of,
};
use leadscore_tests::nats::NatsCluster;

const NOW_MS: i64 = 1_793_631_600_000;

/// Each test starts three NATS servers on ports it picked free; one cluster at a time, so that
/// no two pick the same port and timings do not suffer from the others' load.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

fn start_cluster() -> (MutexGuard<'static, ()>, NatsCluster) {
    let turn = ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    (turn, NatsCluster::start(3))
}

/// Acknowledged only once JetStream has acknowledged (fsync `always` waits for the stream's
/// acknowledgements).
fn store_options(dir: &Path) -> StoreOptions {
    StoreOptions {
        data_dir: dir.to_owned(),
        fsync: FsyncPolicy::Always,
        fsync_interval: Duration::from_secs(1),
        snapshot_log_bytes: u64::MAX,
        max_events_per_lead: 100,
    }
}

/// A shard's store on one node, in its own data directory.
fn open_shard(nats: &Nats, shard: u32, writer: &str, dir: &Path) -> Result<Arc<Store>, leadscore::store::OpenError> {
    let options = store_options(dir);
    let log = StreamLog::open(nats, shard, writer, &StreamSettings::default()).unwrap();
    Store::open_with_log(options, Arc::new(ManualClock::new(NOW_MS)), Box::new(log))
}

fn lead(id: &str, revision: f64) -> LeadInput {
    LeadInput {
        id: id.into(),
        attributes: vec![("revision".into(), Value::Number(revision))],
        time_zone: Some(chrono_tz::UTC),
        consent: Default::default(),
        campaigns: Vec::new(),
        owner: Default::default(),
        phone: Default::default(),
        email: Default::default(),
    }
}

fn revision(store: &Store, id: &str) -> Option<f64> {
    store.read_lead(id, |lead| match store.attribute(lead, "revision") {
        Some(Value::Number(n)) => n,
        other => panic!("revision is {other:?}"),
    })
}

#[test]
fn a_shard_store_on_another_node_replays_the_stream_into_the_same_state() {
    let (_turn, cluster) = start_cluster();
    let nats = Nats::connect(&cluster.urls(), "node-1").unwrap();
    let first = tempfile::tempdir().unwrap();
    let store = open_shard(&nats, 7, "node-1.1", first.path()).unwrap();
    for round in 1..=3 {
        let leads = (0..200).map(|i| lead(&format!("lead-{i}"), f64::from(round))).collect();
        store.upsert_leads(leads).unwrap();
    }
    store.erase_lead("lead-5", "test").unwrap();
    let before = store.stats();
    let digest = store.digest();
    drop(store);

    // Another node, with nothing on its disk, connected to another server.
    let nats = Nats::connect(&cluster.urls()[2..], "node-2").unwrap();
    let second = tempfile::tempdir().unwrap();
    let store = open_shard(&nats, 7, "node-2.9", second.path()).unwrap();
    assert_eq!(store.digest(), digest);
    let after = store.stats();
    assert_eq!((after.leads, after.last_lsn, after.suppressed), (before.leads, before.last_lsn, before.suppressed));
    assert_eq!(revision(&store, "lead-0"), Some(3.0));
    assert_eq!(revision(&store, "lead-5"), None, "the erasure replays");
    // And it goes on writing after the first owner's records and its own claim.
    store.upsert_leads(vec![lead("lead-0", 4.0)]).unwrap();
    assert_eq!(store.stats().last_lsn, before.last_lsn + 1);
}

#[test]
fn a_snapshot_in_the_object_store_trims_the_stream_and_starts_the_next_owner() {
    let (_turn, cluster) = start_cluster();
    let nats = Nats::connect(&cluster.urls(), "node-1").unwrap();
    let first = tempfile::tempdir().unwrap();
    let store = open_shard(&nats, 11, "node-1.1", first.path()).unwrap();
    let leads = (0..300).map(|i| lead(&format!("lead-{i}"), 1.0)).collect();
    store.upsert_leads(leads).unwrap();
    let mut erased = lead("erased", 1.0);
    erased.phone = "+15555550199".into();
    store.upsert_leads(vec![erased.clone()]).unwrap();
    store.erase_lead("erased", "test").unwrap();
    let taken = store.snapshot().unwrap();
    assert!(taken.log_bytes_truncated > 0, "the stream is trimmed behind the snapshot");
    let snapshots = Snapshots::open(&nats, 3).unwrap();
    let kept = snapshots.list(11).unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // Written after the snapshot: replayed from the stream.
    store.upsert_leads(vec![lead("lead-0", 2.0)]).unwrap();
    let digest = store.digest();
    drop(store);

    // Another node, with an empty disk: the snapshot comes from the object store, the rest
    // from what the stream kept, into the same state.
    let nats = Nats::connect(&cluster.urls()[1..], "node-2").unwrap();
    let second = tempfile::tempdir().unwrap();
    let store = open_shard(&nats, 11, "node-2.5", second.path()).unwrap();
    assert_eq!(store.digest(), digest);
    assert_eq!(revision(&store, "lead-0"), Some(2.0));
    assert_eq!(revision(&store, "lead-299"), Some(1.0));
    // The cluster's salt makes the same keys here: the erased person stays erased.
    erased.id = "someone-else".into();
    let refused = store.upsert_leads(vec![erased]).unwrap_err();
    assert!(matches!(refused, StoreError::Suppressed { .. }), "{refused}");

    // A second snapshot replaces the first.
    store.snapshot().unwrap();
    let newer = snapshots.list(11).unwrap();
    assert!(newer.len() == 1 && newer[0] > kept[0], "{kept:?} then {newer:?}");
}

#[test]
fn a_deposed_owner_is_refused_at_its_next_write_and_stops() {
    let (_turn, cluster) = start_cluster();
    let nats = Nats::connect(&cluster.urls(), "nodes").unwrap();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_shard(&nats, 3, "node-a.1", a_dir.path()).unwrap();
    a.upsert_leads(vec![lead("x", 1.0)]).unwrap();

    // B takes the shard over while A still believes it owns it.
    let b = open_shard(&nats, 3, "node-b.2", b_dir.path()).unwrap();
    assert_eq!(revision(&b, "x"), Some(1.0));

    let refused = a.upsert_leads(vec![lead("x", 2.0)]).unwrap_err();
    assert!(matches!(refused, StoreError::Unconfirmed(_)), "{refused}");
    assert!(refused.to_string().contains("another owner"), "{refused}");
    // Stopped for good: the next write is refused before it is sent.
    let again = a.upsert_leads(vec![lead("y", 1.0)]).unwrap_err();
    assert!(matches!(again, StoreError::Log(_)), "{again}");

    // B's writes go on, and a third owner sees B's and never A's refused ones.
    b.upsert_leads(vec![lead("x", 3.0)]).unwrap();
    let c_dir = tempfile::tempdir().unwrap();
    let c = open_shard(&nats, 3, "node-c.3", c_dir.path()).unwrap();
    assert_eq!(revision(&c, "x"), Some(3.0));
    assert_eq!(revision(&c, "y"), None);
}

#[test]
fn a_shard_is_held_by_one_node_until_its_lease_lapses() {
    let (_turn, cluster) = start_cluster();
    let nats = Nats::connect(&cluster.urls(), "nodes").unwrap();
    let ttl = Duration::from_secs(2);
    let owners = Owners::open(&nats, ttl, 3).unwrap();

    let mut held = owners.acquire(5, "node-a").unwrap().expect("a free shard is taken");
    assert_eq!(owners.acquire(5, "node-b").unwrap(), None, "a held shard is not taken");
    assert_eq!(owners.owner(5).unwrap().as_deref(), Some("node-a"));
    // Renewed past its first expiry, it stays held.
    for _ in 0..3 {
        std::thread::sleep(ttl / 2);
        assert!(owners.renew(&mut held).unwrap());
    }
    assert_eq!(owners.acquire(5, "node-b").unwrap(), None);

    // Not renewed, it lapses; another node takes it under a new epoch, and the old holder's
    // renewal is refused.
    std::thread::sleep(ttl + Duration::from_millis(1500));
    let taken = owners.acquire(5, "node-b").unwrap().expect("a lapsed shard is taken");
    assert!(taken.epoch > held.epoch);
    assert!(!owners.renew(&mut held).unwrap());

    // Released, it is free well before its TTL would have lapsed. Not at the very instant: the
    // bucket's reads may come from a replica a moment behind its leader (JetStream's direct get).
    owners.release(taken).unwrap();
    let released = std::time::Instant::now();
    while owners.acquire(5, "node-c").unwrap().is_none() {
        assert!(released.elapsed() < ttl / 2, "a released shard is still held after {:?}", released.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SHARDS: u32 = 12;
const TTL: Duration = Duration::from_secs(3);

/// A node of the cluster without its gRPC front: its NATS connection, its shard stores and
/// its membership.
struct Node {
    name: String,
    stores: Arc<ShardStores>,
    membership: Membership,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(cluster: &NatsCluster, name: &str) -> Self {
        let nats = Nats::connect(&cluster.urls(), name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let stores = Arc::new(ShardStores::new(&nats, store_options(dir.path()), StreamSettings::default(), clock));
        let owners = Owners::open(&nats, TTL, 3).unwrap();
        let settings = MembershipSettings { node: name.into(), address: String::new(), shards: SHARDS, round: TTL / 3 };
        let membership = Membership::start(owners, stores.clone(), settings).unwrap();
        Self { name: name.into(), stores, membership, _dir: dir }
    }
}

/// Waits until every shard is served by exactly one of `nodes`, spread as evenly as `spread`
/// allows (most minus fewest); returns how long that took.
fn wait_owned(nodes: &[&Node], spread: usize, within: Duration) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let held: Vec<Vec<u32>> = nodes.iter().map(|n| n.stores.shards()).collect();
        let mut all: Vec<u32> = held.iter().flatten().copied().collect();
        all.sort_unstable();
        let counts: Vec<usize> = held.iter().map(Vec::len).collect();
        let (most, fewest) = (counts.iter().max().unwrap(), counts.iter().min().unwrap());
        if all == (0..SHARDS).collect::<Vec<_>>() && most - fewest <= spread {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "shards held {held:?} after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The store that serves `id`'s shard on any of `nodes`.
fn owner_of(nodes: &[&Node], id: &str) -> Arc<Store> {
    let shard = shard_of(id, SHARDS);
    nodes.iter().find_map(|n| n.stores.get(shard)).unwrap_or_else(|| panic!("no node serves shard {shard}"))
}

/// Stores `id` as a client would: a write its owner could not confirm (it had just lost the
/// shard) is sent again to whoever serves the shard next.
fn upsert(nodes: &[&Node], id: &str, revision: f64) {
    for _ in 0..50 {
        match owner_of(nodes, id).upsert_leads(vec![lead(id, revision)]) {
            Ok(_) => return,
            Err(StoreError::Unconfirmed(_) | StoreError::Log(_)) => std::thread::sleep(TTL / 10),
            Err(e) => panic!("{id}: {e}"),
        }
    }
    panic!("{id}: no owner confirmed the write");
}

#[test]
fn a_dead_nodes_shards_are_owned_again_within_the_lease_and_a_returning_node_takes_its_share() {
    let (_turn, cluster) = start_cluster();
    let (a, b, c) = (Node::start(&cluster, "node-a"), Node::start(&cluster, "node-b"), Node::start(&cluster, "node-c"));
    wait_owned(&[&a, &b, &c], 0, Duration::from_secs(20));
    for i in 0..120 {
        upsert(&[&a, &b, &c], &format!("lead-{i}"), 1.0);
    }
    let orphaned = a.membership.held();
    let stale = a.stores.get(orphaned[0]).unwrap();
    let digest = stale.digest();

    // Node A stops renewing, as a dead node would; B and C own its shards within the lease's
    // time to live, a few rounds, and the replay.
    let Node { stores: a_stores, membership, name: a_name, .. } = a;
    membership.halt();
    let took = wait_owned(&[&b, &c], 0, TTL * 6);
    eprintln!("shards of a halted node owned again after {took:?} (lease {TTL:?})");
    let successor = [&b, &c].iter().find_map(|n| n.stores.get(orphaned[0])).unwrap();
    assert_eq!(successor.digest(), digest, "the new owner replays the same state");
    for i in 0..120 {
        let id = format!("lead-{i}");
        assert_eq!(revision(&owner_of(&[&b, &c], &id), &id), Some(1.0), "{id}");
    }

    // A's store of a shard it lost is refused at its next write.
    let id = (0..).map(|i| format!("late-{i}")).find(|id| shard_of(id, SHARDS) == orphaned[0]).unwrap();
    let refused = stale.upsert_leads(vec![lead(&id, 1.0)]).unwrap_err();
    assert!(matches!(refused, StoreError::Unconfirmed(_)), "{refused}");
    assert_eq!(revision(&successor, &id), None);
    drop((stale, a_stores));

    // The operator's view while A is gone: two nodes, every shard owned by one of them.
    let status = cluster_status(&cluster);
    assert!(status.starts_with("cluster healthy: 2 nodes alive, 12 shards\n"), "{status}");

    // A comes back and takes a fair share back from B and C.
    let a = Node::start(&cluster, &a_name);
    wait_owned(&[&a, &b, &c], 0, TTL * 10);
    let status = cluster_status(&cluster);
    for node in ["node-a", "node-b", "node-c"] {
        assert!(status.contains(&format!("{node:<24} {:>6}", 4)), "{status}");
    }

    // The shard count is fixed when the cluster is created: a node configured otherwise is refused.
    let nats = Nats::connect(&cluster.urls(), "node-d").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stores = ShardStores::new(
        &nats,
        store_options(dir.path()),
        StreamSettings::default(),
        Arc::new(ManualClock::new(NOW_MS)),
    );
    let settings = MembershipSettings { node: "node-d".into(), address: String::new(), shards: 64, round: TTL / 3 };
    let refused = Membership::start(Owners::open(&nats, TTL, 3).unwrap(), Arc::new(stores), settings).unwrap_err();
    assert!(refused.to_string().contains("created with 12 shards"), "{refused}");
    for i in 0..120 {
        let id = format!("lead-{i}");
        assert_eq!(revision(&owner_of(&[&a, &b, &c], &id), &id), Some(1.0), "{id}");
    }
}

/// What `leadscore cluster status` prints.
fn cluster_status(cluster: &NatsCluster) -> String {
    let out = std::process::Command::new(leadscore_tests::binary())
        .args(["cluster", "status", "--nats", &cluster.urls().join(",")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Writes `writer`'s leads one after another until told to stop, through whichever of `live`
/// serves each; returns the ids whose write was acknowledged.
fn write_until(live: &RwLock<Vec<Arc<ShardStores>>>, writer: u32, stop: &AtomicBool) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let id = format!("w{writer}-{i}");
        let shard = shard_of(&id, SHARDS);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let store = live.read().unwrap().iter().find_map(|stores| stores.get(shard));
            match store.map(|store| store.upsert_leads(vec![lead(&id, 1.0)])) {
                Some(Ok(_)) => {
                    acknowledged.push(id);
                    break;
                }
                Some(Err(StoreError::Unconfirmed(_) | StoreError::Log(_))) | None => {}
                Some(Err(e)) => panic!("{id}: {e}"),
            }
            assert!(std::time::Instant::now() < deadline, "{id}: no owner of shard {shard} confirmed it in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    acknowledged
}

#[test]
fn nothing_acknowledged_is_lost_when_a_node_and_a_stream_leader_are_killed() {
    let (_turn, mut cluster) = start_cluster();
    let nodes: Vec<Node> = ["node-a", "node-b", "node-c"].iter().map(|name| Node::start(&cluster, name)).collect();
    wait_owned(&nodes.iter().collect::<Vec<_>>(), 0, Duration::from_secs(30));
    let live = Arc::new(RwLock::new(nodes.iter().map(|n| Arc::clone(&n.stores)).collect::<Vec<_>>()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|writer| {
            let (live, stop) = (Arc::clone(&live), Arc::clone(&stop));
            std::thread::spawn(move || write_until(&live, writer, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    // The node holding the most shards dies: its stores go with it.
    let mut nodes = nodes;
    let busiest = (0..nodes.len()).max_by_key(|&i| nodes[i].stores.shards().len()).unwrap();
    let dead = nodes.remove(busiest);
    live.write().unwrap().retain(|stores| !Arc::ptr_eq(stores, &dead.stores));
    let Node { name: dead_name, stores: dead_stores, membership, .. } = dead;
    membership.halt();
    drop(dead_stores);
    let took = wait_owned(&nodes.iter().collect::<Vec<_>>(), 0, TTL * 6);
    eprintln!("the dead node's shards were served again {took:?} after it stopped (lease {TTL:?})");

    // Then the server leading a busy shard's stream, while the writes go on.
    let stream = format!("LEADSCORE_SHARD_{}", shard_of("w0-0", SHARDS));
    let leader = cluster.stream_leader(&stream);
    cluster.servers[leader].kill();
    std::thread::sleep(Duration::from_secs(3));
    cluster.servers[leader].start();
    cluster.servers[leader].wait_ready();

    // Both come back; the node takes its share back.
    nodes.push(Node::start(&cluster, &dead_name));
    live.write().unwrap().push(Arc::clone(&nodes.last().unwrap().stores));
    wait_owned(&nodes.iter().collect::<Vec<_>>(), 0, TTL * 10);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    eprintln!("{} writes acknowledged", acknowledged.len());
    assert!(acknowledged.len() > 100, "the writers got through: {}", acknowledged.len());

    // Every acknowledged write is there, at whichever node serves it now.
    for id in &acknowledged {
        let shard = shard_of(id, SHARDS);
        let serving: Vec<&Node> = nodes.iter().filter(|n| n.stores.get(shard).is_some()).collect();
        let store = serving[0].stores.get(shard).unwrap();
        if revision(&store, id) != Some(1.0) {
            // Say which it is: a node serving a stale copy, or a write the stream lost.
            let nats = Nats::connect(&cluster.urls(), "auditor").unwrap();
            let dir = tempfile::tempdir().unwrap();
            let replayed = open_shard(&nats, shard, &format!("auditor.{shard}.missing"), dir.path()).unwrap();
            let names: Vec<&str> = serving.iter().map(|n| n.name.as_str()).collect();
            panic!(
                "{id} was acknowledged and is missing at {names:?} (shard {shard}); the stream replayed offline {}",
                if revision(&replayed, id).is_some() { "has it" } else { "lost it" }
            );
        }
    }
    // And again offline, from the streams alone: two replays of each give the same state.
    for node in nodes {
        node.membership.leave();
    }
    let nats = Nats::connect(&cluster.urls(), "auditor").unwrap();
    let mut replayed = 0;
    for shard in 0..SHARDS {
        let digests: Vec<_> = (0..2)
            .map(|round| {
                let dir = tempfile::tempdir().unwrap();
                let store = open_shard(&nats, shard, &format!("auditor.{shard}.{round}"), dir.path()).unwrap();
                if round == 0 {
                    replayed += acknowledged
                        .iter()
                        .filter(|id| shard_of(id, SHARDS) == shard && revision(&store, id).is_some())
                        .count();
                }
                store.digest()
            })
            .collect();
        assert_eq!(digests[0], digests[1], "shard {shard} replays the same way twice");
    }
    assert_eq!(replayed, acknowledged.len());
}
