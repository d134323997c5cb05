//! The seam between the store and where its changes are kept. The store appends each batch of
//! validated changes to a `Log` before applying it, replays the log after the newest snapshot
//! at start-up, and truncates it once a snapshot covers a prefix; it knows nothing else of it.
//! `FileLog` keeps the log in segment files in the data directory.
//!
//! A position names a place in the log that a snapshot starts from: `cut` makes one, and
//! `replay` and `truncate_before` take one. Sequence numbers (LSNs) are the store's own: every
//! record carries one, and the log keeps them in order.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::OpenError;
use super::mutation::Mutation;
use super::wal::{self, ScanError, Segment, SegmentEnd, Wal};

/// Makes everything appended before it was taken durable; called outside the writer lock, so
/// that writes never wait for the disk and writers waiting together share one sync.
pub trait Syncer: Send + Sync {
    fn sync(&self) -> io::Result<()>;
}

impl Syncer for Segment {
    fn sync(&self) -> io::Result<()> {
        Segment::sync(self)
    }
}

/// Where the store's changes are kept, in order.
pub trait Log: Send + fmt::Debug {
    /// Hands `apply` every record after sequence number `after` from `position` on, in order,
    /// and returns the last sequence number seen (`after` if none). Called once, before the
    /// first append; a damaged log stops start-up here with where the damage is.
    fn replay(
        &mut self,
        position: u64,
        after: u64,
        apply: &mut dyn FnMut(u64, Mutation),
    ) -> Result<(u64, u64), OpenError>;
    /// Appends records numbered from `first` on, all of them or, on failure, none. They are
    /// durable once a `syncer` taken after this returns from `sync`.
    fn append(&mut self, first: u64, batch: &[Mutation]) -> io::Result<()>;
    /// A handle that makes everything appended so far durable.
    fn syncer(&self) -> Arc<dyn Syncer>;
    /// `syncer`, if anything was appended since the last one taken here.
    fn take_dirty(&mut self) -> Option<Arc<dyn Syncer>>;
    /// Makes everything appended so far durable now.
    fn sync(&mut self) -> io::Result<()>;
    /// A new position, after everything appended so far (which is then durable): a snapshot
    /// written next covers what lies before it.
    fn cut(&mut self) -> io::Result<u64>;
    /// Drops what lies before `position` once the snapshot at `snapshot` covers it; returns the
    /// bytes freed. A log that others replay first keeps the snapshot where they find it.
    fn truncate_before(&mut self, position: u64, snapshot: &Path) -> io::Result<u64>;
    /// Bytes the log holds, to decide when a snapshot is due.
    fn bytes(&self) -> u64;
    /// Whether a failed sync stops the process (true, the default): memory is then ahead of
    /// the only log, and only a restart from it is sound. A log that others replay (a shard's
    /// stream) answers false: the store refuses the write, and its owner steps down.
    fn sync_failure_stops_process(&self) -> bool {
        true
    }
    /// Brings the newest snapshot kept elsewhere, if it is newer than `local`, to
    /// `path(position)`: a store opened on another machine then starts from it. Called before
    /// the snapshot is loaded; the local log keeps its snapshots beside it and has none.
    fn fetch_snapshot(&mut self, _local: Option<u64>, _path: &dyn Fn(u64) -> PathBuf) -> io::Result<()> {
        Ok(())
    }
    /// The salt the log's keys (of erased people) were made with, if the log keeps its own;
    /// otherwise the data directory's is used. Every store replaying one log needs the same.
    fn salt(&mut self) -> io::Result<Option<[u8; 32]>> {
        Ok(None)
    }
}

/// The log as numbered segment files of checksummed records in the data directory; a
/// position is a segment number.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    /// Records wait for the next sync to be written (fsync `always`).
    deferred: bool,
    /// The segment being appended to, open once `replay` has run.
    wal: Option<Wal>,
}

impl FileLog {
    pub fn new(dir: &Path, deferred: bool) -> Self {
        Self { dir: dir.to_owned(), deferred, wal: None }
    }

    fn wal(&mut self) -> &mut Wal {
        self.wal.as_mut().expect("the log is replayed before it is written")
    }
}

impl Log for FileLog {
    /// Scans the segments from `position` on; a torn last record (a crash mid-write) is cut
    /// off, damage with intact records after it is refused. Returns the last sequence number
    /// and the number of records replayed.
    fn replay(
        &mut self,
        position: u64,
        after: u64,
        apply: &mut dyn FnMut(u64, Mutation),
    ) -> Result<(u64, u64), OpenError> {
        let dir = self.dir.clone();
        let io_err = |source| OpenError::Io { path: dir.clone(), source };
        let segments: Vec<u64> =
            wal::list_segments(&dir).map_err(io_err)?.into_iter().filter(|s| *s >= position).collect();
        for pair in segments.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(OpenError::MissingSegment { dir, missing: pair[0] + 1, before: pair[0], after: pair[1] });
            }
        }
        let (mut last_lsn, mut records, mut bytes, mut tail) = (after, 0, 0, None);
        for &segment in &segments {
            let path = wal::segment_path(&dir, segment);
            let (end, lsn) = wal::scan_segment(&path, last_lsn, |frame| {
                apply(frame.lsn, Mutation::decode(&frame.payload).map_err(|e| e.to_string())?);
                records += 1;
                Ok(())
            })?;
            last_lsn = lsn;
            let len = match end {
                SegmentEnd::Clean { len } => len,
                SegmentEnd::Torn { valid_len, cause } if Some(&segment) == segments.last() => {
                    warn!(path = %path.display(), offset = valid_len, %cause, "torn record at the end of the log cut off");
                    valid_len
                }
                SegmentEnd::Torn { valid_len, cause } => {
                    return Err(ScanError::Corrupt { path, offset: valid_len, cause }.into());
                }
            };
            bytes += len;
            tail = Some((segment, len));
        }
        let wal = match tail {
            Some((segment, len)) => Wal::open(&dir, segment, Some(len), bytes, self.deferred),
            None => Wal::open(&dir, position, None, 0, self.deferred),
        };
        self.wal = Some(wal.map_err(io_err)?);
        Ok((last_lsn, records))
    }

    fn append(&mut self, first: u64, batch: &[Mutation]) -> io::Result<()> {
        self.wal().append_all(first, batch)
    }

    fn syncer(&self) -> Arc<dyn Syncer> {
        self.wal.as_ref().expect("the log is replayed before it is written").handle()
    }

    fn take_dirty(&mut self) -> Option<Arc<dyn Syncer>> {
        self.wal().take_dirty().map(|segment| segment as Arc<dyn Syncer>)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.wal().sync()
    }

    fn cut(&mut self) -> io::Result<u64> {
        self.wal().rotate()
    }

    fn truncate_before(&mut self, position: u64, _snapshot: &Path) -> io::Result<u64> {
        self.wal().remove_before(position)
    }

    fn bytes(&self) -> u64 {
        self.wal.as_ref().map_or(0, Wal::total_len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::Store;
    use crate::clock::ManualClock;
    use crate::testing::{NOW_MS, lead, options, revision};

    /// A log kept in memory, shared by the stores opened over it in turn: a second log on the
    /// seam, with nothing of the apply path changed.
    #[derive(Debug, Default, Clone)]
    struct MemoryLog(Arc<Mutex<Records>>, Arc<Gate>);

    /// Records as (position, sequence number, bytes), and the position appended to.
    #[derive(Debug, Default)]
    struct Records {
        position: u64,
        records: Vec<(u64, u64, Vec<u8>)>,
    }

    impl Log for MemoryLog {
        fn replay(
            &mut self,
            position: u64,
            after: u64,
            apply: &mut dyn FnMut(u64, Mutation),
        ) -> Result<(u64, u64), OpenError> {
            let mut log = self.0.lock().unwrap();
            log.position = log.position.max(position);
            let mut last = after;
            for (_, lsn, bytes) in log.records.iter().filter(|(at, lsn, _)| *at >= position && *lsn > after) {
                apply(*lsn, Mutation::decode(bytes).unwrap());
                last = *lsn;
            }
            Ok((last, last - after))
        }
        fn append(&mut self, first: u64, batch: &[Mutation]) -> io::Result<()> {
            let mut log = self.0.lock().unwrap();
            let position = log.position;
            log.records.extend((first..).zip(batch).map(|(lsn, m)| (position, lsn, m.encode())));
            Ok(())
        }
        fn syncer(&self) -> Arc<dyn Syncer> {
            self.1.clone()
        }
        fn take_dirty(&mut self) -> Option<Arc<dyn Syncer>> {
            None
        }
        fn sync(&mut self) -> io::Result<()> {
            self.1.sync()
        }
        fn cut(&mut self) -> io::Result<u64> {
            let mut log = self.0.lock().unwrap();
            log.position += 1;
            Ok(log.position)
        }
        fn truncate_before(&mut self, position: u64, _snapshot: &Path) -> io::Result<u64> {
            self.0.lock().unwrap().records.retain(|r| r.0 >= position);
            Ok(0)
        }
        fn bytes(&self) -> u64 {
            self.0.lock().unwrap().records.iter().map(|r| r.2.len() as u64).sum()
        }
    }

    #[test]
    fn a_store_over_another_log_recovers_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = MemoryLog::default();
        let open = || {
            Store::open_with_log(options(dir.path()), Arc::new(ManualClock::new(NOW_MS)), Box::new(log.clone()))
                .unwrap()
        };
        let store = open();
        store.upsert_leads(vec![lead("a", 1.0), lead("b", 1.0)]).unwrap();
        store.snapshot().unwrap();
        store.upsert_leads(vec![lead("a", 2.0)]).unwrap();
        let last_lsn = store.stats().last_lsn;
        drop(store);
        // The snapshot dropped what it covers; what came after it is replayed over it.
        assert_eq!(log.0.lock().unwrap().records.len(), 1);

        let store = open();
        assert_eq!((revision(&store, "a"), revision(&store, "b")), (Some(2.0), Some(1.0)));
        assert_eq!(store.stats().last_lsn, last_lsn);
    }

    /// The memory log's sync: at once, or, once gated, saying when it starts and returning
    /// only when released.
    #[derive(Debug, Default)]
    struct Gate(Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>);

    impl Syncer for Gate {
        fn sync(&self) -> io::Result<()> {
            if let Some((started, release)) = &*self.0.lock().unwrap() {
                started.send(()).unwrap();
                release.recv().unwrap();
            }
            Ok(())
        }
    }

    /// Under fsync `always`, the async writer that starts a sync is answered when it ends, and
    /// the same blocking thread syncs again at once for what was written meanwhile: here with
    /// the runtime's one thread blocked, so no waiter could have started that second sync.
    #[test]
    fn an_async_leader_syncs_again_at_once_for_records_written_while_it_synced() {
        use crate::testing::event;
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let log = MemoryLog::default();
        let gate = log.1.clone();
        let options = crate::StoreOptions { fsync: crate::FsyncPolicy::Always, ..options(dir.path()) };
        let log = Box::new(log);
        let store = Store::open_with_log(options, Arc::new(ManualClock::new(NOW_MS)), log).unwrap();
        store.upsert_leads(vec![lead("a", 1.0)]).unwrap();
        let (started, starts) = std::sync::mpsc::channel();
        let (releases, release) = std::sync::mpsc::channel();
        *gate.0.lock().unwrap() = Some((started, release));

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let (_, first) = store.log_events(vec![event("a", "e1")]).unwrap();
            let leader = tokio::spawn({
                let store = store.clone();
                async move { store.acknowledged(first).await }
            });
            tokio::task::yield_now().await; // the leader starts the first sync
            starts.recv_timeout(Duration::from_secs(5)).expect("the first sync started");
            let (_, second) = store.log_events(vec![event("a", "e2")]).unwrap();
            releases.send(()).unwrap();
            // The runtime's thread is held here: the second sync starts on the sync's own thread.
            starts.recv_timeout(Duration::from_secs(5)).expect("the second sync started at once");
            leader.await.unwrap().unwrap();
            releases.send(()).unwrap();
            store.acknowledged(second).await.unwrap();
        });
        // The second sync found nothing more to sync: no third one is waiting on the gate.
        assert!(starts.recv_timeout(Duration::from_millis(100)).is_err());
    }
}
