//! The write path: each batch of validated changes is appended to the log and applied under
//! the writer lock, then waits (unlocked) for its sync; snapshots cut the log and truncate
//! what they cover.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::info;

use crate::group_commit::Turn;
use crate::lead::LeadId;
use crate::log::Log;
use crate::measure::timed;
use crate::mutation::Mutation;
use crate::sync::MutexGuard;
use crate::{FsyncPolicy, SnapshotInfo, Store, StoreError, snapshot};

#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) log: Box<dyn Log>,
    pub(crate) last_lsn: u64,
}

/// Changes logged and applied up to this sequence number, not yet known to be on disk.
#[derive(Debug)]
#[must_use = "a change is acknowledged only once Store::durable returns"]
pub struct Logged(pub(crate) u64);

impl Store {
    /// Forces everything written so far to disk (at shutdown).
    pub fn sync(&self) -> io::Result<()> {
        self.writer.lock().log.sync()
    }

    /// Whether the log has grown enough since the last snapshot to write another.
    pub fn snapshot_due(&self) -> bool {
        self.writer.lock().log.bytes() >= self.options.snapshot_log_bytes
    }

    /// Writes a snapshot and deletes the log segments and snapshots it replaces. Writes go on
    /// meanwhile: they land in the new segment, and replay skips what the snapshot already has.
    pub fn snapshot(&self) -> Result<SnapshotInfo, StoreError> {
        timed(&self.metrics.snapshot_seconds, || self.snapshot_now())
    }

    fn snapshot_now(&self) -> Result<SnapshotInfo, StoreError> {
        let _one_at_a_time = self.snapshotting.lock();
        let dir = &self.options.data_dir;
        let now = self.clock.now_ms();
        let (segment, last_lsn) = {
            let mut writer = self.writer.lock();
            (writer.log.cut().map_err(StoreError::Log)?, writer.last_lsn)
        };
        let write = || -> io::Result<(PathBuf, u64, u64)> {
            let mut out = snapshot::Writer::create(dir, segment, now)?;
            // Copy keys first so no shard stays locked while the file is written. Each lead is
            // copied at one instant with its dialer state and history, written after it.
            let ids: Vec<LeadId> = self.state.leads.keys();
            for id in ids {
                let copied = self.state.leads.get(&id).map(|lead| {
                    let history = (!lead.history.is_empty()).then(|| lead.history.clone());
                    (lead.alone(), lead.dial.clone(), history)
                });
                let Some((lead, dial, history)) = copied else { continue };
                out.lead(id.clone(), lead)?;
                if let Some(dial) = dial {
                    out.dial(id.clone(), *dial)?;
                }
                if let Some(changes) = history {
                    out.history(id, changes)?;
                }
            }
            // Entries logged after this copy are in the log the snapshot leaves.
            let audit = self.state.audit.lock().clone();
            out.audit(audit)?;
            let do_not_call = self.state.do_not_call.iter().map(|phone| phone.clone()).collect();
            let suppressed = self.state.suppressed.iter().map(|key| *key).collect();
            let config = self.logged_config();
            let agents = self.roster(|roster| roster.rows.iter().map(|row| row.agent.clone()).collect());
            let (attribute_names, event_kinds) = (self.state.attribute_names.names(), self.state.event_kinds.names());
            out.finish(dir, segment, suppressed, attribute_names, event_kinds, config, do_not_call, agents, last_lsn)
        };
        let (path, leads, bytes) = write().map_err(StoreError::Snapshot)?;
        let truncated = self.writer.lock().log.truncate_before(segment, &path).map_err(StoreError::Snapshot)?;
        for old in snapshot::list(dir).map_err(StoreError::Snapshot)?.into_iter().filter(|s| *s < segment) {
            fs::remove_file(snapshot::path(dir, old)).map_err(StoreError::Snapshot)?;
        }
        self.last_snapshot_at_ms.store(now, Ordering::Relaxed);
        info!(path = %path.display(), leads, bytes, log_bytes_truncated = truncated, "snapshot written");
        Ok(SnapshotInfo { path, leads, bytes, log_bytes_truncated: truncated })
    }

    /// Appends a validated change to the log and applies it, releases the writer, and returns
    /// once the change is as durable as `store.fsync` asks.
    pub(crate) fn commit(&self, writer: MutexGuard<'_, Writer>, mutation: &Mutation) -> Result<(), StoreError> {
        self.commit_all(writer, std::slice::from_ref(mutation))
    }

    /// `commit` of changes that go together (a change and its audit entry): one write.
    pub(crate) fn commit_all(&self, writer: MutexGuard<'_, Writer>, mutations: &[Mutation]) -> Result<(), StoreError> {
        let logged = self.log_all(writer, mutations)?;
        self.durable(logged)
    }

    /// Appends validated changes to the log in one write (all or none), applies them in order,
    /// and releases the writer.
    pub(crate) fn log_all(
        &self,
        mut writer: MutexGuard<'_, Writer>,
        mutations: &[Mutation],
    ) -> Result<Logged, StoreError> {
        let first = writer.last_lsn + 1;
        let (started, before) = (std::time::Instant::now(), writer.log.bytes());
        writer.log.append(first, mutations).map_err(StoreError::Log)?;
        self.metrics.append_seconds.record(started.elapsed().as_secs_f64());
        self.metrics.bytes.increment(writer.log.bytes().saturating_sub(before));
        self.metrics.write_batch_records.record(mutations.len() as f64);
        for (lsn, mutation) in (first..).zip(mutations) {
            writer.last_lsn = lsn;
            self.state.apply(lsn, mutation);
        }
        Ok(Logged(writer.last_lsn))
    }

    /// Returns once logged changes are on disk, under fsync `always`: at once otherwise (a
    /// process crash loses nothing written to the OS). Writes waiting together share one sync.
    ///
    /// A change is visible to readers once applied, a moment before it is durable, as in
    /// Redis; it is acknowledged only after. A failed sync of the local log leaves memory ahead
    /// of the disk with no way to tell which writes reached it, so the process panics (and
    /// `serve` aborts) and restarts from what the log holds, as PostgreSQL does. A log that
    /// others replay fails the write instead (`Log::sync_failure_stops_process`).
    pub fn durable(&self, Logged(lsn): Logged) -> Result<(), StoreError> {
        if self.options.fsync != FsyncPolicy::Always || lsn == 0 {
            return Ok(());
        }
        self.group_commit.wait(lsn, || self.sync_written()).map_err(|err| self.sync_failed(err))
    }

    /// `durable` without holding a thread while others' syncs run: a writer awaiting this
    /// leaves its thread to other calls, and the one that finds no sync running starts one on
    /// the blocking pool, for everyone waiting, and is answered when it ends. That thread syncs
    /// again at once while records keep arriving, so under load the log is synced back to back
    /// rather than once per wake of a waiter. A sync ends (and a failed one stops the process)
    /// even if the writer that started it stops waiting.
    pub async fn acknowledged(self: &Arc<Self>, Logged(lsn): Logged) -> Result<(), StoreError> {
        if self.options.fsync != FsyncPolicy::Always || lsn == 0 {
            return Ok(());
        }
        loop {
            match self.group_commit.turn(lsn) {
                Turn::Durable => return Ok(()),
                Turn::Follow(mut ended) => {
                    // An error means the sender was dropped with the store: nothing more ends.
                    let _ = ended.changed().await;
                }
                Turn::Lead => {
                    let (leader, (first, synced)) = (Leader(Some(self.clone())), tokio::sync::oneshot::channel());
                    tokio::task::spawn_blocking(move || leader.sync(first));
                    match synced.await {
                        Ok(result) => result?,
                        Err(err) => return Err(StoreError::Unconfirmed(std::io::Error::other(err))),
                    }
                }
            }
        }
    }

    /// Whether records were written after `covered`, the last a sync covered.
    fn written_after(&self, covered: u64) -> bool {
        self.writer.lock().last_lsn > covered
    }

    /// Syncs everything written so far; returns the last sequence number that covers.
    fn sync_written(&self) -> io::Result<u64> {
        let (syncer, covered) = {
            let writer = self.writer.lock();
            (writer.log.syncer(), writer.last_lsn)
        };
        timed(&self.metrics.fsync_seconds, || syncer.sync())?;
        Ok(covered)
    }

    /// A failed sync of the local log stops the process; of a log others replay, fails the write.
    fn sync_failed(&self, err: io::Error) -> StoreError {
        if self.writer.lock().log.sync_failure_stops_process() {
            tracing::error!(cause = %err, "the log could not be synced; stopping, a restart recovers from the log");
            panic!("the log could not be synced: {err}");
        }
        StoreError::Unconfirmed(err)
    }
}

/// The store while one async writer's sync is due: ends it as failed if it is dropped unrun
/// (the runtime shutting down), so that no waiter waits for a sync that never comes.
struct Leader(Option<Arc<Store>>);

impl Leader {
    /// Syncs, sends the first sync's outcome to the writer that started it, and syncs again
    /// while records written meanwhile wait, until a sync finds none or fails.
    fn sync(mut self, first: tokio::sync::oneshot::Sender<Result<(), StoreError>>) {
        let store = self.0.take().expect("a leader syncs once");
        let mut first = Some(first);
        loop {
            let synced = store.sync_written();
            let again = synced.as_ref().is_ok_and(|&covered| store.written_after(covered));
            let outcome = store.group_commit.lead(synced, again).map_err(|err| store.sync_failed(err));
            let failed = outcome.is_err();
            if let Some(first) = first.take() {
                // The writer may have stopped waiting: the syncs go on regardless.
                let _ = first.send(outcome);
            }
            if failed || !again {
                return;
            }
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(store) = self.0.take() {
            let _ = store.group_commit.lead(Err(io::Error::other("the sync was dropped before it ran")), false);
        }
    }
}
