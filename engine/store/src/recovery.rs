//! Opening the store: the data directory's lock and salt, the newest snapshot, and the log
//! replayed after it, with a torn tail cut off and damage reported where it is.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashSet;
use tracing::{info, warn};

use super::agents::Roster;
use super::group_commit::GroupCommit;
use super::intern::Interner;
use super::log::{FileLog, Log};
use super::measure::{StoreMetrics, timed};
use super::wal::{self, FsyncPolicy};
use super::{MAX_ATTRIBUTE_NAMES, MAX_EVENT_KINDS, OpenError, State, Store, StoreOptions, Writer, private, snapshot};
use crate::clock::Clock;
use crate::sync::{Gate, Mutex, Rank, RwLock, Shards};

impl Store {
    /// Opens (or creates) the store in `options.data_dir`, its log in segment files there.
    pub fn open(options: StoreOptions, clock: Arc<dyn Clock>) -> Result<Arc<Self>, OpenError> {
        let log = FileLog::new(&options.data_dir, options.fsync == FsyncPolicy::Always);
        Self::open_with_log(options, clock, Box::new(log))
    }

    /// Opens (or creates) the store in `options.data_dir` over `log`: loads the newest
    /// snapshot, replays the log after it, and starts the background fsync.
    pub fn open_with_log(
        options: StoreOptions,
        clock: Arc<dyn Clock>,
        mut log: Box<dyn Log>,
    ) -> Result<Arc<Self>, OpenError> {
        let started = Instant::now();
        let dir = options.data_dir.clone();
        let io_err = |source| OpenError::Io { path: dir.clone(), source };
        private::create_dir(&dir).map_err(io_err)?;
        let lock =
            private::options().create(true).truncate(false).write(true).open(dir.join("LOCK")).map_err(io_err)?;
        if lock.try_lock().is_err() {
            return Err(OpenError::Locked(dir));
        }
        let salt = match log.salt().map_err(io_err)? {
            Some(salt) => salt,
            None => load_salt(&dir).map_err(io_err)?,
        };
        private::warn_if_open(&[&dir, &dir.join("salt")]);

        let state = State {
            leads: Shards::new(Rank::Lead),
            suppressed: DashSet::new(),
            attribute_names: Interner::new(MAX_ATTRIBUTE_NAMES),
            event_kinds: Interner::new(MAX_EVENT_KINDS),
            event_count: AtomicU64::new(0),
            config: Mutex::new(Rank::LoggedConfig, None),
            do_not_call: DashSet::new(),
            agents: RwLock::new(Rank::Roster, Roster::default()),
            audit: Mutex::new(Rank::Audit, Vec::new()),
        };
        let mut first_segment = 1;
        let mut last_snapshot_at_ms = i64::MIN;
        // Log records after the snapshot continue its numbering; whatever is applied next must
        // also number above every lead's and dialer state's own sequence number.
        let (mut last_lsn, mut max_item_lsn) = (0, 0);
        let local = snapshot::list(&dir).map_err(io_err)?.last().copied();
        log.fetch_snapshot(local, &|segment| snapshot::path(&dir, segment)).map_err(io_err)?;
        if let Some(&segment) = snapshot::list(&dir).map_err(io_err)?.last() {
            let path = snapshot::path(&dir, segment);
            let contents = snapshot::read(
                &path,
                |id, lead| {
                    state.event_count.fetch_add(lead.events.len() as u64, Ordering::Relaxed);
                    state.leads.insert(id, lead);
                },
                // A lead's dialer state and history come after it in the file (after all the
                // leads in older files). A lead created after the snapshot copied the leads is
                // replayed from the log: its claims and outcomes with it, its history lost.
                |id, dial| {
                    if let Some(mut lead) = state.leads.get_mut(&id) {
                        lead.dial = Some(Box::new(dial));
                    }
                },
                |id, changes| {
                    if let Some(mut lead) = state.leads.get_mut(&id) {
                        lead.history = changes;
                    }
                },
            )?;
            for name in &contents.attribute_names {
                state.attribute_names.intern(name);
            }
            for kind in &contents.event_kinds {
                state.event_kinds.intern(kind);
            }
            for key in contents.suppressed {
                state.suppressed.insert(key);
            }
            // Built apart and then swapped in: the roster ranks after the leads it reads.
            let mut roster = Roster::default();
            roster.load_agents(contents.agents);
            state.each_dial(|_, dial| roster.load_dial(dial));
            *state.agents.write() = roster;
            for phone in contents.do_not_call {
                state.do_not_call.insert(phone);
            }
            *state.config.lock() = contents.config;
            *state.audit.lock() = contents.audit;
            first_segment = contents.segment;
            last_snapshot_at_ms = contents.created_at_ms;
            (last_lsn, max_item_lsn) = (contents.position, contents.max_item_lsn);
            info!(path = %path.display(), leads = contents.leads, "snapshot loaded");
        }

        let (replayed_to, records) =
            log.replay(first_segment, last_lsn, &mut |lsn, mutation| state.apply(lsn, &mutation))?;
        let last_lsn = replayed_to.max(max_item_lsn);
        info!(
            dir = %dir.display(),
            leads = state.leads.len(),
            events = state.event_count.load(Ordering::Relaxed),
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );

        let store = Arc::new(Self {
            state,
            salt,
            options,
            clock,
            writer: Mutex::watched(Rank::Writer, Writer { log, last_lsn }, Gate::new("store writer")),
            group_commit: GroupCommit::new(last_lsn),
            snapshotting: Mutex::new(Rank::Snapshot, ()),
            last_snapshot_at_ms: AtomicI64::new(last_snapshot_at_ms),
            metrics: StoreMetrics::new(),
            _lock: lock,
        });
        if store.options.fsync == FsyncPolicy::Interval {
            spawn_fsync(Arc::downgrade(&store), store.options.fsync_interval);
        }
        Ok(store)
    }
}

/// Syncs the log once per interval while the store lives; the sync itself runs outside the
/// writer lock so writes never wait for the disk.
fn spawn_fsync(store: Weak<Store>, interval: Duration) {
    std::thread::Builder::new()
        .name("leadscore-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(store) = store.upgrade() else { return };
                let Some(syncer) = store.writer.lock().log.take_dirty() else { continue };
                if let Err(err) = timed(&store.metrics.fsync_seconds, || syncer.sync()) {
                    warn!(cause = %err, "log fsync failed");
                }
            }
        })
        .expect("spawning the fsync thread");
}

fn load_salt(dir: &Path) -> io::Result<[u8; 32]> {
    let path = dir.join("salt");
    match fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes.try_into().unwrap()),
        Ok(_) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} must hold 32 bytes", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let salt: [u8; 32] = rand::random();
            let tmp = dir.join("salt.tmp");
            private::write(&tmp, &salt)?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &path)?;
            wal::sync_dir(dir)?;
            Ok(salt)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{event, lead, open, options, revision};

    #[test]
    fn a_reopened_store_has_what_was_written_before_and_after_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.upsert_leads(vec![lead("a", 1.0), lead("b", 1.0)]).unwrap();
        store.record_events(vec![event("a", "e1"), event("b", "e2")]).unwrap();
        store.snapshot().unwrap();
        store.upsert_leads(vec![lead("a", 2.0)]).unwrap();
        store.record_events(vec![event("a", "e3")]).unwrap();
        store.erase_lead("b", "").unwrap();
        let mut claims = store.claims();
        let lease = claims.claim("a", "ann", "default", 60_000, None, |_, _| Ok::<_, ()>(i64::MAX)).unwrap().unwrap();
        store.durable(claims.commit().unwrap()).unwrap();
        let before = store.stats();
        let digest = store.digest();
        drop(store);

        let store = open(dir.path());
        assert_eq!(store.digest(), digest, "the replayed state is the state written");
        assert_eq!(revision(&store, "a"), Some(2.0));
        assert!(store.read_lead("b", |_| ()).is_none());
        assert_eq!(store.open_lease("a", lease.id), Some(lease.clone()));
        let after = store.stats();
        assert_eq!(
            (after.leads, after.events, after.suppressed, after.last_lsn),
            (1, 2, before.suppressed, before.last_lsn)
        );
        // Numbering goes on from where it stopped.
        store.upsert_leads(vec![lead("c", 1.0)]).unwrap();
        assert_eq!(store.stats().last_lsn, before.last_lsn + 1);
        assert_ne!(store.digest(), digest, "a change changes the digest");

        // A snapshot taken with the lease open holds the lead's dialer state after the lead,
        // and the log before it is gone: the reopened store has the lease from the snapshot.
        store.snapshot().unwrap();
        let digest = store.digest();
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.digest(), digest, "the state read from the snapshot is the state written");
        assert_eq!(store.open_lease("a", lease.id), Some(lease));
    }

    #[test]
    fn a_lead_knows_which_record_set_its_attributes_after_a_restart_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let lsns = |store: &Store, id: &str| store.read_lead(id, |lead| (lead.attributes_lsn, lead.lsn)).unwrap();
        store.upsert_leads(vec![lead("a", 1.0), lead("b", 1.0)]).unwrap();
        store.record_events(vec![event("a", "e1")]).unwrap();
        assert_eq!(lsns(&store, "a"), (1, 2), "an event leaves the attributes as they were set");
        store.snapshot().unwrap();
        store.upsert_leads(vec![lead("b", 2.0)]).unwrap();
        drop(store);

        let store = open(dir.path());
        // A snapshot keeps no such number: the lead's last record stands for it, which asks
        // for more scoring, never less.
        assert_eq!(lsns(&store, "a"), (2, 2));
        assert_eq!(lsns(&store, "b"), (3, 3), "replayed from the log");
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_damage_before_intact_records_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for n in 0..3 {
            store.upsert_leads(vec![lead(&format!("l{n}"), 1.0)]).unwrap();
        }
        drop(store);
        let segment = wal::segment_path(dir.path(), wal::list_segments(dir.path()).unwrap()[0]);
        let len = fs::metadata(&segment).unwrap().len();

        // Half of the last record: a write torn by a crash.
        fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 5).unwrap();
        let store = open(dir.path());
        assert!(store.read_lead("l2", |_| ()).is_none());
        assert_eq!(store.stats().leads, 2);
        drop(store);

        // A flipped byte in the first record, with intact records after it: damage.
        let mut bytes = fs::read(&segment).unwrap();
        bytes[20] ^= 0xFF;
        fs::write(&segment, bytes).unwrap();
        let err = Store::open(options(dir.path()), Arc::new(crate::clock::SystemClock)).unwrap_err();
        assert!(matches!(err, OpenError::Log(wal::ScanError::Corrupt { .. })), "{err}");
        assert!(err.to_string().contains(&segment.display().to_string()), "{err}");
    }

    #[test]
    fn one_process_per_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _store = open(dir.path());
        let err = Store::open(options(dir.path()), Arc::new(crate::clock::SystemClock)).unwrap_err();
        assert!(matches!(err, OpenError::Locked(_)), "{err}");
    }
}
