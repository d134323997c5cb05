//! Group commit for fsync `always`: a change is written and applied under the writer lock, and
//! synced after it is released. Writers that arrive while one sync runs wait for it to end,
//! then the first of them syncs for all: one sync covers everything written before it began.
//! Each writer is acknowledged only once a sync that began after its own write has ended.

use std::io;

use parking_lot::{Condvar, Mutex, MutexGuard};

/// Which records are known to be on disk, and whether a sync is running. Its lock is a leaf:
/// nothing else is taken while it is held (the sync itself runs with it released).
#[derive(Debug)]
pub struct GroupCommit {
    progress: Mutex<Progress>,
    synced: Condvar,
}

#[derive(Debug)]
struct Progress {
    /// Every record up to this sequence number is on disk.
    durable: u64,
    syncing: bool,
}

impl GroupCommit {
    /// Counts records up to `lsn` as on disk already (those replayed at start-up).
    pub fn new(durable: u64) -> Self {
        Self { progress: Mutex::new(Progress { durable, syncing: false }), synced: Condvar::new() }
    }

    /// Returns once every record up to `lsn` is on disk. `sync` syncs the log and returns the
    /// last sequence number it covers (read before syncing); it runs on one waiter's thread at a
    /// time, with no lock held.
    pub fn wait(&self, lsn: u64, sync: impl Fn() -> io::Result<u64>) -> io::Result<()> {
        let mut progress = self.progress.lock();
        // Records this waiter's sync covered, counted once no lock is held.
        let mut shared = None;
        loop {
            if progress.durable >= lsn {
                drop(progress);
                if let Some(records) = shared {
                    metrics::histogram!("leadscore_wal_group_commit_batch_records").record(records as f64);
                }
                return Ok(());
            }
            if progress.syncing {
                self.synced.wait(&mut progress);
                continue;
            }
            progress.syncing = true;
            let result = MutexGuard::unlocked(&mut progress, &sync);
            progress.syncing = false;
            self.synced.notify_all();
            let covered = result?;
            shared = Some(covered.saturating_sub(progress.durable));
            progress.durable = progress.durable.max(covered);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn writers_arriving_during_a_sync_share_the_next_one_and_none_returns_early() {
        let group = Arc::new(GroupCommit::new(0));
        // The log: the last sequence number written, and how many syncs ran.
        let (written, syncs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let (group, written, syncs) = (group.clone(), written.clone(), syncs.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let lsn = written.fetch_add(1, Ordering::SeqCst) + 1;
                        let sync = || {
                            let covered = written.load(Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            syncs.fetch_add(1, Ordering::SeqCst);
                            Ok(covered)
                        };
                        group.wait(lsn, sync).unwrap();
                        assert!(group.progress.lock().durable >= lsn);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let syncs = syncs.load(Ordering::SeqCst);
        assert!(syncs < 320 / 2, "{syncs} syncs for 320 writes: writers did not share them");
        assert_eq!(group.progress.lock().durable, 320);
    }

    #[test]
    fn a_failed_sync_fails_its_waiter_and_the_next_waiter_syncs_again() {
        let group = GroupCommit::new(0);
        let err = group.wait(1, || Err(io::Error::other("disk gone"))).unwrap_err();
        assert_eq!(err.to_string(), "disk gone");
        group.wait(1, || Ok(1)).unwrap();
        // Already durable: no sync.
        group.wait(1, || panic!("synced again")).unwrap();
    }
}
