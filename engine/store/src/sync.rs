//! The engine's locks, each with its rank in the one lock order: `Rank` below is its one copy.
//!
//! A thread may only take a lock ranked after every lock it already holds. Debug builds (and so
//! every test) check this at each acquisition and panic naming both locks, so an order that
//! could deadlock fails the first test that takes it, not a production floor once in a while.
//! The store's maps of leads are `Shards`, whose every access takes its rank by construction;
//! other sections under a `dashmap` shard lock declare their rank with `hold`. The locks are parking_lot's: they are not poisoned, since a panic in the
//! server aborts the process (see `main.rs`) and the log restores its state on restart.
//!
//! Locks the watchdog looks after carry a `Gate` that counts waiters and progress.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::mapref::one::{Ref, RefMut};

use crate::lead::{LeadId, LeadMap};

/// Every lock's place in the order: a thread takes them only in this order (outer first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// `Generations::changing`: one configuration change or plugin reload at a time.
    ConfigChange,
    /// `Store::snapshotting`: one snapshot at a time.
    Snapshot,
    /// `Dialer::queues`, the map of campaign queues (only to find or add one).
    QueueMap,
    /// One campaign's dialer `Queue`; never two at once.
    Queue,
    /// `Dialer::built`: the version each queue was built for.
    QueueBuilt,
    /// One rebuild of the dialer's contact rates at a time (held while it reads the store).
    ContactRatesBuild,
    /// `Store::writer`: the log and everything it orders.
    Writer,
    /// A log segment's one write at a time (`wal::Segment`).
    LogWriting,
    /// A log segment's records waiting to be written.
    LogWaiting,
    /// A shard of the store's leads.
    Lead,
    /// The store's roster of agents.
    Roster,
    /// The store's record of the last configuration change.
    LoggedConfig,
    /// The store's name tables.
    Interner,
    /// The store's audit trail.
    Audit,
    /// The router's pools of agents.
    RouterPools,
    /// The router's memory of decisions.
    RouterMemory,
    /// `Generations::current`: the pointer to the current configuration generation.
    Generation,
    /// `Scoring::pipeline`: the pointer to the current pipeline.
    Pipeline,
    /// A shard of the score index's entries.
    ScoreEntry,
    /// The score index's map of campaign rankings.
    Rankings,
    /// One campaign's ranking.
    Ranking,
    /// One campaign's accounts.
    Accounts,
    /// One campaign's watched lists' floors (`WatchTopLeads`).
    WatchFloors,
    /// The TLS configuration new connections get.
    Tls,
    /// The token buckets of the rate limit.
    RateLimits,
    /// The dialer's claims and outcomes per minute.
    Floor,
    /// The dialer's open leases by lead (taken under the writer, while claims are logged).
    Held,
    /// The hoppers listening for revocations.
    Listeners,
    /// The revocations remembered for late outcomes.
    Revoked,
    /// The dialer's learned contact rates (read under a campaign queue while picking).
    ContactRates,
    /// The latest band crossings kept for watchers that ask for them (`scoring/recent.rs`).
    RecentCrossings,
    /// The registry of fixed-bucket histograms (`buckets.rs`), taken to add a series or render.
    Histograms,
}

#[cfg(debug_assertions)]
mod order {
    use std::cell::RefCell;

    use super::Rank;

    thread_local! {
        static HELD: RefCell<Vec<Rank>> = const { RefCell::new(Vec::new()) };
    }

    pub fn acquire(rank: Rank) {
        HELD.with_borrow_mut(|held| {
            if let Some(&last) = held.iter().max() {
                assert!(last < rank, "lock order violated: taking {rank:?} while holding {last:?} (held: {held:?})");
            }
            held.push(rank);
        });
    }

    pub fn release(rank: Rank) {
        // Guards may be dropped in any order.
        HELD.with_borrow_mut(|held| {
            if let Some(at) = held.iter().rposition(|r| *r == rank) {
                held.remove(at);
            }
        });
    }
}

#[cfg(not(debug_assertions))]
mod order {
    use super::Rank;

    #[inline(always)]
    pub fn acquire(_: Rank) {}

    #[inline(always)]
    pub fn release(_: Rank) {}
}

/// Declares that the caller now holds a lock of `rank` it cannot wrap (a `dashmap` shard),
/// until the returned value is dropped.
#[must_use = "the rank is held until this is dropped"]
pub fn hold(rank: Rank) -> Held {
    order::acquire(rank);
    Held(rank)
}

#[derive(Debug)]
pub struct Held(Rank);

impl Drop for Held {
    fn drop(&mut self) {
        order::release(self.0);
    }
}

/// A map of leads (`LeadMap`) whose every access holds `rank` for as long as it holds a shard
/// of the map, so no caller can forget to declare it.
#[derive(Debug)]
pub struct Shards<V> {
    map: LeadMap<V>,
    rank: Rank,
}

/// A guard of one entry of `Shards`, with its rank: the guard is dropped before the rank is
/// released.
pub struct Ranked<G> {
    guard: G,
    _held: Held,
}

impl<G: Deref> Deref for Ranked<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: DerefMut> DerefMut for Ranked<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

impl<V> Shards<V> {
    pub fn new(rank: Rank) -> Self {
        Self { map: LeadMap::default(), rank }
    }

    pub fn get(&self, key: &str) -> Option<Ranked<Ref<'_, LeadId, V>>> {
        let held = hold(self.rank);
        self.map.get(key).map(|guard| Ranked { guard, _held: held })
    }

    pub fn get_mut(&self, key: &str) -> Option<Ranked<RefMut<'_, LeadId, V>>> {
        let held = hold(self.rank);
        self.map.get_mut(key).map(|guard| Ranked { guard, _held: held })
    }

    pub fn get_or_insert_with(&self, key: &LeadId, new: impl FnOnce() -> V) -> Ranked<RefMut<'_, LeadId, V>> {
        let held = hold(self.rank);
        Ranked { guard: self.map.entry(key.clone()).or_insert_with(new), _held: held }
    }

    pub fn insert(&self, key: LeadId, value: V) -> Option<V> {
        let _held = hold(self.rank);
        self.map.insert(key, value)
    }

    pub fn remove(&self, key: &str) -> Option<(LeadId, V)> {
        let _held = hold(self.rank);
        self.map.remove(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        let _held = hold(self.rank);
        self.map.contains_key(key)
    }

    pub fn len(&self) -> usize {
        let _held = hold(self.rank);
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key, at one moment per shard.
    pub fn keys(&self) -> Vec<LeadId> {
        let _held = hold(self.rank);
        self.map.iter().map(|entry| entry.key().clone()).collect()
    }

    /// Visits every entry, one shard at a time, with that shard's lock held.
    pub fn for_each(&self, mut visit: impl FnMut(&LeadId, &V)) {
        let _held = hold(self.rank);
        for entry in self.map.iter() {
            visit(entry.key(), entry.value());
        }
    }
}

/// A lock the watchdog looks after: how many threads wait for it, and how often it was taken
/// (or its holder said it is still getting somewhere). Waiters with no progress for long are a
/// stall.
#[derive(Debug)]
pub struct Gate {
    pub name: String,
    waiting: AtomicU64,
    progress: AtomicU64,
}

impl Gate {
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(Self { name: name.into(), waiting: AtomicU64::new(0), progress: AtomicU64::new(0) })
    }

    /// Said by a holder doing long work under the lock (a queue build), so that it is not
    /// taken for a stall.
    pub fn beat(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Threads waiting now, and progress so far.
    pub fn reading(&self) -> (u64, u64) {
        (self.waiting.load(Ordering::Relaxed), self.progress.load(Ordering::Relaxed))
    }

    fn wait<G>(&self, take: impl FnOnce() -> G) -> G {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let guard = take();
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        self.progress.fetch_add(1, Ordering::Relaxed);
        guard
    }
}

/// A lock's guard that also holds the lock's rank until it is dropped.
pub struct Guard<G> {
    inner: G,
    _rank: Held,
}

impl<G: std::ops::Deref> std::ops::Deref for Guard<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.inner
    }
}

impl<G: std::ops::DerefMut> std::ops::DerefMut for Guard<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.inner
    }
}

pub type MutexGuard<'a, T> = Guard<parking_lot::MutexGuard<'a, T>>;
pub type ReadGuard<'a, T> = Guard<parking_lot::RwLockReadGuard<'a, T>>;
pub type WriteGuard<'a, T> = Guard<parking_lot::RwLockWriteGuard<'a, T>>;

/// A mutex with a rank, and a gate if the watchdog looks after it.
#[derive(Debug)]
pub struct Mutex<T> {
    rank: Rank,
    gate: Option<Arc<Gate>>,
    inner: parking_lot::Mutex<T>,
}

impl<T> Mutex<T> {
    pub const fn new(rank: Rank, value: T) -> Self {
        Self { rank, gate: None, inner: parking_lot::Mutex::new(value) }
    }

    pub fn watched(rank: Rank, value: T, gate: Arc<Gate>) -> Self {
        Self { rank, gate: Some(gate), inner: parking_lot::Mutex::new(value) }
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        let rank = hold(self.rank);
        let inner = match &self.gate {
            // Uncontended, there is nothing to count as waiting.
            Some(gate) => {
                self.inner.try_lock().inspect(|_| gate.beat()).unwrap_or_else(|| gate.wait(|| self.inner.lock()))
            }
            None => self.inner.lock(),
        };
        Guard { inner, _rank: rank }
    }

    pub fn gate(&self) -> Option<&Arc<Gate>> {
        self.gate.as_ref()
    }
}

/// A readers-writer lock with a rank.
#[derive(Debug)]
pub struct RwLock<T> {
    rank: Rank,
    inner: parking_lot::RwLock<T>,
}

impl<T> RwLock<T> {
    pub fn new(rank: Rank, value: T) -> Self {
        Self { rank, inner: parking_lot::RwLock::new(value) }
    }

    pub fn read(&self) -> ReadGuard<'_, T> {
        let rank = hold(self.rank);
        Guard { inner: self.inner.read(), _rank: rank }
    }

    pub fn write(&self) -> WriteGuard<'_, T> {
        let rank = hold(self.rank);
        Guard { inner: self.inner.write(), _rank: rank }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_taken_in_order_are_fine_and_released_in_any_order() {
        let (queue, writer) = (Mutex::new(Rank::Queue, ()), Mutex::new(Rank::Writer, ()));
        let q = queue.lock();
        let w = writer.lock();
        drop(q);
        let entry = hold(Rank::ScoreEntry);
        drop(w);
        drop(entry);
        // Nothing is held any more, so the outermost may be taken again.
        let _q = queue.lock();
    }

    #[test]
    #[cfg(debug_assertions)]
    fn taking_a_lock_out_of_order_panics_naming_both() {
        // The cycle that froze the server: a score entry held while a campaign queue is taken.
        let queue = Mutex::new(Rank::Queue, ());
        let result = std::thread::spawn(move || {
            let _entry = hold(Rank::ScoreEntry);
            let _queue = queue.lock();
        })
        .join();
        let message = result.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("taking Queue while holding ScoreEntry"), "{message}");
    }

    #[test]
    fn a_gate_counts_waiters_and_progress() {
        let gate = Gate::new("store writer");
        let lock = Arc::new(Mutex::watched(Rank::Writer, 0, gate.clone()));
        let held = lock.lock();
        assert_eq!(gate.reading(), (0, 1));
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || *lock.lock() += 1)
        };
        while gate.reading().0 == 0 {
            std::thread::yield_now();
        }
        assert_eq!(gate.reading(), (1, 1));
        drop(held);
        waiter.join().unwrap();
        assert_eq!(gate.reading(), (0, 2));
    }
}
