//! The cluster's parts on three real NATS servers: a shard's store over its JetStream stream,
//! fencing of a deposed owner, and ownership leases.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use leadscore::clock::ManualClock;
use leadscore::store::lead::Value;
use leadscore::store::mutation::LeadInput;
use leadscore::store::{FsyncPolicy, Store, StoreError, StoreOptions};
use leadscore_cluster::{Nats, Owners, Snapshots, StreamLog, StreamSettings};
use leadscore_tests::nats::NatsCluster;

const NOW_MS: i64 = 1_793_631_600_000;

/// A shard's store on one node: its own data directory, acknowledged only once JetStream has
/// acknowledged (fsync `always` waits for the stream's acknowledgements).
fn open_shard(nats: &Nats, shard: u32, writer: &str, dir: &Path) -> Result<Arc<Store>, leadscore::store::OpenError> {
    let options = StoreOptions {
        data_dir: dir.to_owned(),
        fsync: FsyncPolicy::Always,
        fsync_interval: Duration::from_secs(1),
        snapshot_log_bytes: u64::MAX,
        max_events_per_lead: 100,
    };
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
    let cluster = NatsCluster::start(3);
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
    let cluster = NatsCluster::start(3);
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
    let cluster = NatsCluster::start(3);
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
    let cluster = NatsCluster::start(3);
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

    // Released, it is free at once.
    owners.release(taken).unwrap();
    assert!(owners.acquire(5, "node-c").unwrap().is_some());
}
