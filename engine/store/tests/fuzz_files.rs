//! The log and snapshot readers against damaged files: a data directory written by the store,
//! then bytes of its log segment or snapshot flipped, or the file cut short. Opening it must
//! never panic: it starts (a torn tail is dropped) or refuses, naming the file, and the byte
//! where a damaged record lies. `LEADSCORE_FUZZ_CASES` sets the number of cases (default 64).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use leadscore_store::clock::ManualClock;
use leadscore_store::mutation::{EventInput, LeadInput, fingerprint};
use leadscore_store::{FsyncPolicy, Store, StoreOptions};
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("LEADSCORE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        data_dir: dir.to_owned(),
        fsync: FsyncPolicy::Never,
        fsync_interval: Duration::from_secs(1),
        snapshot_log_bytes: u64::MAX,
        max_events_per_lead: 100,
    }
}

fn lead(n: u32) -> LeadInput {
    LeadInput {
        id: format!("lead-{n}").into(),
        attributes: vec![("role".into(), leadscore_store::lead::Value::Text("CTO".into()))],
        time_zone: None,
        consent: Default::default(),
        campaigns: vec![],
        owner: Default::default(),
        phone: format!("+1555{n:07}").into(),
        email: Default::default(),
    }
}

/// A data directory with a snapshot and a log after it, written once: (its path, the
/// snapshot, the log segment).
fn template() -> &'static (PathBuf, PathBuf, PathBuf) {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (dir, snapshot, segment) = TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(options(dir.path()), Arc::new(ManualClock::new(1_793_631_600_000))).unwrap();
            store.upsert_leads((0..20).map(lead).collect()).unwrap();
            store.snapshot().unwrap();
            store.upsert_leads((20..30).map(lead).collect()).unwrap();
            let events = (0..30)
                .map(|n| EventInput {
                    lead_id: format!("lead-{n}").into(),
                    fingerprint: fingerprint(&format!("e{n}")),
                    kind: "page_view:/pricing".into(),
                    at_ms: 1_793_631_000_000,
                    value: 0.0,
                    properties: vec![],
                })
                .collect();
            store.record_events(events).unwrap();
            store.erase_lead("lead-3", "").unwrap();
        }
        let file = |prefix: &str| {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
                .collect();
            found.sort();
            found.pop().unwrap()
        };
        let (snapshot, segment) = (file("snapshot-"), file("wal-"));
        (dir, snapshot, segment)
    });
    // A `'static` view of the parts the cases need.
    static PATHS: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    PATHS.get_or_init(|| (dir.path().to_owned(), snapshot.clone(), segment.clone()))
}

/// A copy of the template with `damage` done to one of its files; what opening it says.
fn open_damaged(snapshot: bool, damage: impl FnOnce(&mut Vec<u8>)) -> Result<usize, String> {
    let (source, snapshot_path, segment_path) = template();
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.file_name().unwrap().to_string_lossy().contains("lock") {
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let target = copy.path().join(if snapshot { snapshot_path } else { segment_path }.file_name().unwrap());
    let mut bytes = std::fs::read(&target).unwrap();
    damage(&mut bytes);
    std::fs::write(&target, bytes).unwrap();
    let opened = Store::open(options(copy.path()), Arc::new(ManualClock::new(1_793_631_600_000)));
    opened.map(|store| store.stats().leads as usize).map_err(|err| err.to_string())
}

/// A refusal names the damaged file, and where in it when a record is damaged.
fn check_refusal(message: &str, snapshot: bool) {
    let file = if snapshot { "snapshot-" } else { "wal-" };
    assert!(message.contains(file), "the refusal does not name the {file} file: {message}");
    if message.contains("damaged") || message.contains("corrupt") {
        assert!(message.contains("byte "), "the refusal does not say where: {message}");
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn flipped_bytes_never_panic(snapshot: bool, flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..8)) {
        let opened = open_damaged(snapshot, |bytes| {
            for (at, mask) in &flips {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
        });
        if let Err(message) = opened {
            check_refusal(&message, snapshot);
        }
    }

    #[test]
    fn files_cut_short_never_panic(snapshot: bool, keep in any::<prop::sample::Index>()) {
        match open_damaged(snapshot, |bytes| bytes.truncate(keep.index(bytes.len()))) {
            // A torn tail loses the newest records (the erasure among them), never more.
            Ok(leads) => prop_assert!((20..=30).contains(&leads), "{leads} leads"),
            Err(message) => check_refusal(&message, snapshot),
        }
    }
}

#[test]
fn the_undamaged_template_opens_whole() {
    assert_eq!(open_damaged(false, |_| ()), Ok(29));
}
