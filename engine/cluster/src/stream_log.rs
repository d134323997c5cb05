//! One shard's log as a JetStream stream: a second `Log` on the store's seam, with the apply
//! path unchanged. A position is a stream sequence.
//!
//! Each batch the store appends is one message (so it is stored whole or not at all), carrying
//! the store's sequence number of its first record. Appends are pipelined: `append` queues the
//! message and returns (the writer lock never waits on the network), one task sends the
//! queue in order, another awaits each acknowledgement, and the store's sync waits for them. Every
//! message names the sequence it must follow, so once any append is refused (another owner
//! wrote in between) every later one is refused too, and the log stops for good: memory may
//! be ahead of the stream, so the owner must step down and whoever owns the shard next replays
//! it. An acknowledgement that timed out has an unknown outcome; the same message is sent
//! again under the same `Nats-Msg-Id`, which JetStream stores at most once.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use leadscore_store::OpenError;
use leadscore_store::log::{Log, Syncer};
use leadscore_store::mutation::Mutation;
use tokio_stream::StreamExt as _;
use tracing::{info, warn};

use crate::bridge::Nats;
use crate::identity::cluster_salt;
use crate::shard::{self, ShardId};
use crate::snapshots::Snapshots;

/// What a message holds: a batch of the store's records, or a new owner's claim on the stream.
const RECORD: &str = "Leadscore-Record";
const BATCH: &str = "batch";
const OWNER: &str = "owner";

/// How many times an unconfirmed append is sent again before the log stops.
const RESENDS: u32 = 5;
/// How long a sync waits for acknowledgements before it reports the log as stuck.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// How a shard's stream is kept. Three replicas and servers with `sync_interval: always`
/// are what make an acknowledged append survive the loss of a server (see the README).
#[derive(Clone, Debug)]
pub struct StreamSettings {
    pub replicas: usize,
    /// How long JetStream remembers a message id, within which a resend is stored only once.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self { replicas: 3, duplicate_window: Duration::from_secs(120) }
    }
}

/// A shard's log in its JetStream stream, written only by the node that owns the shard.
#[derive(Debug)]
pub struct StreamLog {
    nats: Nats,
    shard: ShardId,
    /// The owner's name and lease epoch: message ids are unique per owner.
    owner: String,
    /// The stream sequence of the last message appended or replayed; the next append names it.
    tail: u64,
    acks: Arc<Acks>,
    /// Messages for the sender task, in the order they must be stored.
    outbox: Outbox,
    /// Whether anything was appended since the last `take_dirty`.
    dirty: bool,
    bytes: u64,
    snapshots: Snapshots,
    salt: [u8; 32],
}

impl StreamLog {
    /// The log of `shard`, to be written by `owner` (its node name and lease epoch), creating
    /// the stream if it does not exist yet.
    pub fn open(nats: &Nats, shard: ShardId, owner: &str, settings: &StreamSettings) -> io::Result<Self> {
        let config = stream::Config {
            name: shard::stream_name(shard),
            subjects: vec![shard::subject(shard)],
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            // Only snapshots trim the log, through purge; nothing else removes a record.
            deny_delete: true,
            ..Default::default()
        };
        nats.retrying("the shard's stream", || {
            let (js, config) = (nats.jetstream().clone(), config.clone());
            async move { js.get_or_create_stream(config).await.map(drop) }
        })
        .map_err(io::Error::other)?;
        let snapshots = Snapshots::open(nats, settings.replicas)?;
        let acks = Arc::new(Acks::default());
        let salt = cluster_salt(nats, settings.replicas)?;
        Ok(Self {
            nats: nats.clone(),
            shard,
            owner: owner.to_owned(),
            tail: 0,
            outbox: sender(nats, shard, Arc::clone(&acks)),
            acks,
            dirty: false,
            bytes: 0,
            snapshots,
            salt,
        })
    }

    /// The stream sequence of the last message appended or replayed.
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// A handle that tells whether this log has stopped, and why.
    pub fn stopped(&self) -> Stopped {
        Stopped(Arc::clone(&self.acks))
    }

    /// Sends one message that must follow `self.tail`, and has a task await its acknowledgement.
    /// Queues one message that must follow `self.tail` for the sender task: the writer lock is
    /// held here, so nothing waits on the network.
    fn send(&mut self, headers: HeaderMap, payload: Bytes, id: String) -> io::Result<()> {
        if let Some(failure) = self.acks.failure() {
            return Err(io::Error::other(failure));
        }
        let expected = self.tail;
        let publish =
            PublishMessage::build().headers(headers).payload(payload).message_id(&id).expected_last_sequence(expected);
        self.outbox
            .send((publish, expected + 1))
            .map_err(|_| io::Error::other(format!("the sender of shard stream {} stopped", self.shard)))?;
        self.tail = expected + 1;
        self.dirty = true;
        Ok(())
    }

    fn waiter(&self) -> Arc<dyn Syncer> {
        Arc::new(Waiter { acks: Arc::clone(&self.acks), sequence: self.tail })
    }

    /// Claims the stream for this owner: an ownership record that must follow the tail it
    /// replayed, awaited. Refused if anyone wrote after the replay.
    fn claim(&mut self) -> io::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(RECORD, OWNER);
        let id = format!("{}-owner", self.owner);
        self.send(headers, Bytes::from(self.owner.clone()), id)?;
        self.waiter().sync()
    }
}

/// A message to send and the stream sequence it must be stored at.
type Outbox = tokio::sync::mpsc::UnboundedSender<(PublishMessage, u64)>;

/// Starts the task that sends a shard's messages one after another, in the order appended (each
/// names its predecessor, so order is everything), and has a task await each acknowledgement.
fn sender(nats: &Nats, shard: ShardId, acks: Arc<Acks>) -> Outbox {
    let (outbox, mut queued) = tokio::sync::mpsc::unbounded_channel::<(PublishMessage, u64)>();
    let (js, subject) = (nats.jetstream().clone(), shard::subject(shard));
    nats.spawn(async move {
        while let Some((publish, sequence)) = queued.recv().await {
            match js.send_publish(subject.clone(), publish.clone()).await {
                Ok(ack) => {
                    tokio::spawn(confirm(js.clone(), subject.clone(), publish, ack, sequence, Arc::clone(&acks)));
                }
                Err(e) => acks.record(sequence, Err(format!("sending to shard stream {shard}: {e}"))),
            }
        }
    });
    outbox
}

/// Awaits the acknowledgement of the message stored at `sequence`, sending it again (same id,
/// same expected predecessor) while acknowledgements time out, and records the outcome.
async fn confirm(
    js: jetstream::Context,
    subject: String,
    publish: PublishMessage,
    mut ack: PublishAckFuture,
    sequence: u64,
    acks: Arc<Acks>,
) {
    let mut resends = 0;
    let outcome = loop {
        match ack.await {
            Ok(done) if done.sequence == sequence => break Ok(()),
            Ok(done) => break Err(format!("stored at sequence {} where {sequence} was expected", done.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                break Err(format!(
                    "another owner wrote to the stream before sequence {sequence}; this owner stepped down"
                ));
            }
            // No acknowledgement in time: stored or not, the same id is stored at most once.
            // No stream answering (its leader is being elected): nothing was stored.
            Err(e)
                if matches!(e.kind(), PublishErrorKind::TimedOut | PublishErrorKind::StreamNotFound)
                    && resends < RESENDS =>
            {
                resends += 1;
                warn!(subject, sequence, resends, cause = %e, "append unconfirmed; sending the same message again");
                tokio::time::sleep(Duration::from_millis(200) * resends).await;
                match js.send_publish(subject.clone(), publish.clone()).await {
                    Ok(again) => ack = again,
                    Err(e) => break Err(format!("sending sequence {sequence} again: {e}")),
                }
            }
            Err(e) => break Err(format!("appending sequence {sequence}: {e}")),
        }
    };
    acks.record(sequence, outcome);
}

/// Whether a shard's log has stopped: an append was refused or never confirmed.
#[derive(Clone, Debug)]
pub struct Stopped(Arc<Acks>);

impl Stopped {
    pub fn cause(&self) -> Option<String> {
        self.0.failure()
    }
}

/// What has been acknowledged: every message up to `acked` is stored (a message is stored only
/// after its predecessor), and the first failure stops the log.
#[derive(Debug, Default)]
struct Acks {
    state: Mutex<AckState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct AckState {
    acked: u64,
    failed: Option<(u64, String)>,
}

impl Acks {
    fn record(&self, sequence: u64, outcome: Result<(), String>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => state.acked = state.acked.max(sequence),
            Err(cause) => {
                warn!(sequence, %cause, "the shard's log stopped");
                if state.failed.as_ref().is_none_or(|(first, _)| sequence < *first) {
                    state.failed = Some((sequence, cause));
                }
            }
        }
        self.changed.notify_all();
    }

    fn failure(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.failed.as_ref().map(|(_, cause)| cause.clone())
    }

    /// Waits until `sequence` is acknowledged, or fails if it or a message before it failed.
    fn wait(&self, sequence: u64) -> io::Result<()> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, timeout) = self
            .changed
            .wait_timeout_while(state, SYNC_TIMEOUT, |s| {
                s.acked < sequence && s.failed.as_ref().is_none_or(|(first, _)| *first > sequence)
            })
            .unwrap_or_else(|e| e.into_inner());
        if state.acked >= sequence {
            return Ok(());
        }
        match &state.failed {
            Some((_, cause)) => Err(io::Error::other(cause.clone())),
            None if timeout.timed_out() => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("sequence {sequence} unacknowledged after {SYNC_TIMEOUT:?}"),
            )),
            None => unreachable!("the wait ends on an acknowledgement, a failure or the timeout"),
        }
    }
}

/// A sync: waits for the acknowledgement of everything appended before it was taken.
struct Waiter {
    acks: Arc<Acks>,
    sequence: u64,
}

impl Syncer for Waiter {
    fn sync(&self) -> io::Result<()> {
        self.acks.wait(self.sequence)
    }
}

/// A batch's payload: the store's sequence number of its first record, then each record's
/// length and bytes.
fn encode(first: u64, batch: &[Mutation]) -> Bytes {
    let mut out = Vec::with_capacity(16 + batch.len() * 64);
    out.extend_from_slice(&first.to_le_bytes());
    for mutation in batch {
        let record = mutation.encode();
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(&record);
    }
    Bytes::from(out)
}

fn decode(payload: &[u8]) -> Result<(u64, Vec<Mutation>), String> {
    let (first, mut rest) = payload.split_first_chunk::<8>().ok_or("a batch shorter than its header")?;
    let mut records = Vec::new();
    while let Some((len, after)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let record = after.get(..len).ok_or("a record cut short")?;
        records.push(Mutation::decode(record).map_err(|e| e.to_string())?);
        rest = &after[len..];
    }
    if !rest.is_empty() {
        return Err("bytes after the last record".into());
    }
    Ok((u64::from_le_bytes(*first), records))
}

impl Log for StreamLog {
    /// Reads the stream from `position` to the tail it had when asked, then claims it.
    fn replay(
        &mut self,
        position: u64,
        after: u64,
        apply: &mut dyn FnMut(u64, Mutation),
    ) -> Result<(u64, u64), OpenError> {
        let name = shard::stream_name(self.shard);
        let unreadable = |source: io::Error| OpenError::Unreadable { log: name.clone(), source };
        let js = self.nats.jetstream().clone();
        let stream = self.nats.run({
            let name = name.clone();
            async move { js.get_stream(name).await }
        });
        let state = stream.map_err(|e| unreadable(io::Error::other(e)))?.cached_info().state.clone();
        let start = position.max(1);
        if state.messages > 0 && start < state.first_sequence {
            let cause =
                format!("records {start} to {} were trimmed, and no snapshot covers them", state.first_sequence - 1);
            return Err(unreadable(io::Error::other(cause)));
        }
        let (mut last_lsn, mut records) = (after, 0);
        if state.last_sequence >= start {
            // Read on the cluster's runtime, applied here as they come: a bounded queue between.
            let (sender, mut batches) = tokio::sync::mpsc::channel(64);
            let (js, shard, end) = (self.nats.jetstream().clone(), self.shard, state.last_sequence);
            self.nats.spawn(async move {
                if let Err(e) = read(js, shard, start, end, &sender).await {
                    let _ = sender.send(Err(e)).await;
                }
            });
            while let Some(batch) = batches.blocking_recv() {
                let (first, batch) = batch.map_err(unreadable)?;
                for (lsn, mutation) in (first..).zip(batch) {
                    if lsn > last_lsn {
                        apply(lsn, mutation);
                        (last_lsn, records) = (lsn, records + 1);
                    }
                }
            }
        }
        self.tail = state.last_sequence;
        self.bytes = state.bytes;
        self.acks.record(self.tail, Ok(()));
        self.claim().map_err(unreadable)?;
        info!(shard = self.shard, owner = %self.owner, tail = self.tail, records, "shard log replayed and claimed");
        Ok((last_lsn, records))
    }

    fn append(&mut self, first: u64, batch: &[Mutation]) -> io::Result<()> {
        let payload = encode(first, batch);
        self.bytes += payload.len() as u64;
        let mut headers = HeaderMap::new();
        headers.insert(RECORD, BATCH);
        let id = format!("{}-{first}", self.owner);
        self.send(headers, payload, id)
    }

    fn syncer(&self) -> Arc<dyn Syncer> {
        self.waiter()
    }

    fn take_dirty(&mut self) -> Option<Arc<dyn Syncer>> {
        std::mem::take(&mut self.dirty).then(|| self.waiter())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.waiter().sync()
    }

    fn cut(&mut self) -> io::Result<u64> {
        self.sync()?;
        Ok(self.tail + 1)
    }

    /// Keeps the snapshot in the cluster's object store first, so the next owner can start
    /// from it, then trims the stream behind it.
    fn truncate_before(&mut self, position: u64, snapshot: &Path) -> io::Result<u64> {
        // The snapshot may hold writes appended after the cut: kept only once all are stored,
        // never a write the stream refused.
        self.sync()?;
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.snapshots.put(self.shard, position, snapshot, now_ms)?;
        let (js, name) = (self.nats.jetstream().clone(), shard::stream_name(self.shard));
        let purged = self.nats.run(async move {
            let stream = js.get_stream(name).await.map_err(io::Error::other)?;
            // Purges up to, not including, `position`.
            stream.purge().sequence(position).await.map_err(io::Error::other)?;
            let info = stream.get_info().await.map_err(io::Error::other)?;
            Ok::<_, io::Error>(info.state.bytes)
        })?;
        let freed = self.bytes.saturating_sub(purged);
        self.bytes = purged;
        self.snapshots.remove_before(self.shard, position)?;
        info!(shard = self.shard, position, freed, "shard snapshot kept and stream trimmed");
        Ok(freed)
    }

    fn fetch_snapshot(&mut self, local: Option<u64>, path: &dyn Fn(u64) -> PathBuf) -> io::Result<()> {
        let Some(&newest) = self.snapshots.list(self.shard)?.last() else { return Ok(()) };
        if local.is_none_or(|local| newest > local) {
            self.snapshots.fetch(self.shard, newest, &path(newest))?;
            info!(shard = self.shard, position = newest, "shard snapshot fetched");
        }
        Ok(())
    }

    fn salt(&mut self) -> io::Result<Option<[u8; 32]>> {
        Ok(Some(self.salt))
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The write fails and the owner steps down; the next owner replays what was kept.
    fn sync_failure_stops_process(&self) -> bool {
        false
    }
}

/// Reads messages `start..=end` of the shard's stream in order and sends each batch on (an
/// ownership record has none); the queue ends when the reading does.
async fn read(
    js: jetstream::Context,
    shard: ShardId,
    start: u64,
    end: u64,
    batches: &tokio::sync::mpsc::Sender<io::Result<(u64, Vec<Mutation>)>>,
) -> io::Result<()> {
    let stream = js.get_stream(shard::stream_name(shard)).await.map_err(io::Error::other)?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start },
            ..Default::default()
        })
        .await
        .map_err(io::Error::other)?;
    let mut messages = consumer.messages().await.map_err(io::Error::other)?;
    let mut expected = start;
    while let Some(message) = messages.next().await {
        let message = message.map_err(io::Error::other)?;
        let sequence = message.info().map_err(io::Error::other)?.stream_sequence;
        // A stream's sequence has no gaps but those a trim makes: a trim while this reads
        // (another owner's snapshot) would otherwise skip records unseen.
        if sequence != expected {
            let cause = format!("records {expected} to {} were trimmed while being read", sequence - 1);
            return Err(io::Error::other(cause));
        }
        expected += 1;
        let invalid =
            |cause: String| io::Error::new(io::ErrorKind::InvalidData, format!("stream sequence {sequence}: {cause}"));
        let kind = message.headers.as_ref().and_then(|h| h.get(RECORD)).map(|v| v.as_str().to_owned());
        match kind.as_deref() {
            Some(BATCH) => {
                let batch = decode(&message.payload).map_err(invalid)?;
                if batches.send(Ok(batch)).await.is_err() {
                    return Ok(());
                }
            }
            Some(OWNER) => {}
            other => return Err(invalid(format!("unknown record kind {other:?}"))),
        }
        if sequence >= end {
            break;
        }
    }
    Ok(())
}
