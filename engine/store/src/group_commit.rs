//! Group commit for fsync `always`: a change is logged and applied under the writer lock, and
//! written (`wal::Segment`) and synced after it is released. Writers that arrive while one sync runs wait for it to end,
//! then the first of them syncs for all (an async one keeps syncing while records arrive): one
//! sync covers everything written before it began. Each writer is acknowledged only once a
//! sync that began after its own write has ended.

use std::io;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

/// Which records are known to be on disk, and whether a sync is running. Its lock is a leaf:
/// nothing else is taken while it is held (the sync itself runs with it released).
#[derive(Debug)]
pub struct GroupCommit {
    progress: Mutex<Progress>,
    /// Wakes blocking waiters when a sync ends.
    synced: Condvar,
    /// The same, for async waiters: every end of a sync bumps it, failed or not.
    ended: watch::Sender<u64>,
    /// Records each sync shared, resolved once.
    batch_records: metrics::Histogram,
}

#[derive(Debug)]
struct Progress {
    /// Every record up to this sequence number is on disk.
    durable: u64,
    syncing: bool,
}

/// What a waiter does next.
pub enum Turn {
    Durable,
    /// Runs the next sync (`lead`): none is running.
    Lead,
    /// Waits for the running sync to end, then asks again.
    Follow(watch::Receiver<u64>),
}

impl GroupCommit {
    /// Counts records up to `lsn` as on disk already (those replayed at start-up).
    pub fn new(durable: u64) -> Self {
        let progress = Mutex::new(Progress { durable, syncing: false });
        let batch_records = metrics::histogram!("leadscore_wal_group_commit_batch_records");
        Self { progress, synced: Condvar::new(), ended: watch::Sender::new(durable), batch_records }
    }

    /// Returns once every record up to `lsn` is on disk. `sync` syncs the log and returns the
    /// last sequence number it covers (read before syncing); it runs on one waiter's thread at a
    /// time, with no lock held.
    pub fn wait(&self, lsn: u64, sync: impl Fn() -> io::Result<u64>) -> io::Result<()> {
        loop {
            let mut progress = self.progress.lock();
            if progress.durable >= lsn {
                return Ok(());
            }
            if progress.syncing {
                self.synced.wait(&mut progress);
                continue;
            }
            progress.syncing = true;
            drop(progress);
            self.lead(sync(), false)?;
        }
    }

    /// `wait` for a waiter that must not block its thread: on `Lead` it runs `lead` where it
    /// may block (every turn but `Follow` ends the wait or starts a sync).
    pub fn turn(&self, lsn: u64) -> Turn {
        let mut progress = self.progress.lock();
        if progress.durable >= lsn {
            Turn::Durable
        } else if progress.syncing {
            // Subscribed under the lock: the end of the running sync is seen as a change.
            Turn::Follow(self.ended.subscribe())
        } else {
            progress.syncing = true;
            Turn::Lead
        }
    }

    /// Ends the sync this waiter led (`turn` answered `Lead`) with its outcome (the last
    /// sequence number it covered), and wakes every waiter. With `again` (records were written
    /// while it ran) a successful leader stays the leader and syncs again at once, so that the
    /// next sync does not wait for a waiter to wake and start it.
    pub fn lead(&self, synced: io::Result<u64>, again: bool) -> io::Result<()> {
        let mut progress = self.progress.lock();
        progress.syncing = again && synced.is_ok();
        let shared = synced.as_ref().ok().map(|&covered| covered.saturating_sub(progress.durable));
        if let Ok(covered) = synced {
            progress.durable = progress.durable.max(covered);
        }
        let durable = progress.durable;
        drop(progress);
        self.synced.notify_all();
        self.ended.send_modify(|seen| *seen = (*seen).max(durable));
        if let Some(records) = shared {
            self.batch_records.record(records as f64);
        }
        synced.map(drop)
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
    fn async_waiters_share_syncs_with_blocking_ones_and_none_returns_early() {
        let group = Arc::new(GroupCommit::new(0));
        let (written, syncs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let sync = {
            let (written, syncs) = (written.clone(), syncs.clone());
            move || {
                let covered = written.load(Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                syncs.fetch_add(1, Ordering::SeqCst);
                Ok(covered)
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let blocking = {
            let (group, written, sync) = (group.clone(), written.clone(), sync.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    group.wait(written.fetch_add(1, Ordering::SeqCst) + 1, &sync).unwrap();
                }
            })
        };
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let (group, written, sync) = (group.clone(), written.clone(), sync.clone());
                runtime.spawn(async move {
                    for _ in 0..20 {
                        let lsn = written.fetch_add(1, Ordering::SeqCst) + 1;
                        loop {
                            match group.turn(lsn) {
                                Turn::Durable => break,
                                Turn::Follow(mut ended) => ended.changed().await.unwrap(),
                                Turn::Lead => {
                                    let (group, sync) = (group.clone(), sync.clone());
                                    tokio::task::spawn_blocking(move || group.lead(sync(), false))
                                        .await
                                        .unwrap()
                                        .unwrap();
                                }
                            }
                        }
                        assert!(group.progress.lock().durable >= lsn);
                    }
                })
            })
            .collect();
        runtime.block_on(async {
            for waiter in waiters {
                waiter.await.unwrap();
            }
        });
        blocking.join().unwrap();
        let syncs = syncs.load(Ordering::SeqCst);
        assert!(syncs < 340 / 2, "{syncs} syncs for 340 writes: writers did not share them");
        assert_eq!(group.progress.lock().durable, 340);
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
