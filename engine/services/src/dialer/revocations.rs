//! Compliance until the dial: a claim is a lease, and a dialer may dial at any moment while it
//! holds one, so a lead that must no longer be called loses its lease at once and the hoppers
//! of its agent are told. This module keeps the leases handed out (by lead, so a change to a
//! lead finds its lease), the hoppers listening, the revocations made (so a later outcome for
//! one gets an answer naming why) and their counts.
//!
//! The dialer judges and ends the leases; this module only keeps the books. Its locks are held
//! for map operations alone: nothing is judged, logged or sent under them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use compact_str::CompactString;
use tokio::sync::mpsc;

use leadscore_store::dial::Lease;
use leadscore_store::lead::LeadId;
use leadscore_store::sync::{Mutex, Rank};

/// Revocations remembered for the answer to a late outcome; older ones are forgotten.
const REMEMBERED: usize = 65_536;
/// Open leases kept before the lapsed are first looked for. A lease that lapses unreported
/// (its hopper gone) is forgotten once the book has doubled since it was last cleared.
const FIRST_PRUNE: usize = 4_096;

/// Why a lease was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Why {
    /// The lead's flag, a `DO_NOT_CALL` outcome on a lead with its number, or the campaign's
    /// list.
    DoNotCall,
    /// The campaign requires phone consent and the lead's was withdrawn.
    ConsentWithdrawn,
    /// The person objected to processing.
    Objected,
    /// The lead was erased (a privacy request).
    Erased,
    /// The lead's calling window closed with the lease still held.
    WindowClosed,
}

impl Why {
    pub const ALL: [Why; 5] = [Why::DoNotCall, Why::ConsentWithdrawn, Why::Objected, Why::Erased, Why::WindowClosed];

    pub fn name(self) -> &'static str {
        match self {
            Why::DoNotCall => "do_not_call",
            Why::ConsentWithdrawn => "consent_withdrawn",
            Why::Objected => "objected",
            Why::Erased => "erased",
            Why::WindowClosed => "window_closed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A lease the server ended because its lead must not be called.
#[derive(Clone, Debug, PartialEq)]
pub struct Revoked {
    pub lease: u64,
    pub lead_id: LeadId,
    pub agent: CompactString,
    pub campaign: CompactString,
    pub why: Why,
    pub at_ms: i64,
}

/// One hopper's end of the revocations of its agent's leases.
pub type Listener = mpsc::UnboundedReceiver<Revoked>;

#[derive(Debug)]
struct Held {
    leases: HashMap<LeadId, Lease, foldhash::fast::RandomState>,
    /// The book's size at which lapsed leases are next cleared.
    prune_at: usize,
}

impl Held {
    fn forget_lapsed(&mut self, now_ms: i64) {
        self.leases.retain(|_, h| h.expires_at_ms > now_ms);
        self.prune_at = (2 * self.leases.len()).max(FIRST_PRUNE);
    }
}

#[derive(Debug)]
pub struct Revocations {
    /// Open leases by lead: a lead holds at most one.
    held: Mutex<Held>,
    /// Hoppers by agent, each with an id so it can leave.
    listeners: Mutex<Vec<(u64, CompactString, mpsc::UnboundedSender<Revoked>)>>,
    next_listener: AtomicU64,
    /// The latest revocations by lease id, oldest first in `order`.
    recent: Mutex<(HashMap<u64, Revoked>, VecDeque<u64>)>,
    totals: [AtomicU64; Why::ALL.len()],
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            held: Mutex::new(Rank::Held, Held { leases: HashMap::default(), prune_at: FIRST_PRUNE }),
            listeners: Mutex::new(Rank::Listeners, Vec::new()),
            next_listener: AtomicU64::new(0),
            recent: Mutex::new(Rank::Revoked, (HashMap::new(), VecDeque::new())),
            totals: Default::default(),
        }
    }
}

impl Revocations {
    /// Leases about to be logged: held from before the log write, so that a change applied
    /// after it finds them.
    pub fn hold(&self, leases: impl IntoIterator<Item = (LeadId, Lease)>, now_ms: i64) {
        let mut held = self.held.lock();
        held.leases.extend(leases);
        if held.leases.len() >= held.prune_at {
            held.forget_lapsed(now_ms);
        }
    }

    /// A lease ended (reported, released, or its claim never logged).
    pub fn ended(&self, lead_id: &str, lease: u64) {
        let held = &mut self.held.lock().leases;
        if held.get(lead_id).is_some_and(|h| h.id == lease) {
            held.remove(lead_id);
        }
    }

    /// The open lease of each of these leads, if any.
    pub fn held_of<'a>(&self, ids: impl IntoIterator<Item = &'a LeadId>) -> Vec<(LeadId, Lease)> {
        let held = &self.held.lock().leases;
        ids.into_iter().filter_map(|id| held.get(id).map(|h| (id.clone(), h.clone()))).collect()
    }

    /// Every open lease; those lapsed by `now_ms` are forgotten (no one holds them any more).
    pub fn all_held(&self, now_ms: i64) -> Vec<(LeadId, Lease)> {
        let mut held = self.held.lock();
        held.forget_lapsed(now_ms);
        held.leases.iter().map(|(id, h)| (id.clone(), h.clone())).collect()
    }

    /// A hopper of `agent` starts listening; `leave` with the id when it ends.
    pub fn listen(&self, agent: &str) -> (u64, Listener) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed);
        self.listeners.lock().push((id, agent.into(), tx));
        (id, rx)
    }

    pub fn leave(&self, listener: u64) {
        self.listeners.lock().retain(|(id, _, _)| *id != listener);
    }

    /// Records a revocation and tells its agent's hoppers, at once: a hopper reads it before
    /// any claim pushed after the change that caused it is acknowledged.
    pub fn revoked(&self, revoked: Revoked) {
        self.ended(&revoked.lead_id, revoked.lease);
        self.count(revoked.why);
        let listeners: Vec<_> = {
            let listeners = self.listeners.lock();
            listeners.iter().filter(|(_, agent, _)| *agent == revoked.agent).map(|(_, _, tx)| tx.clone()).collect()
        };
        for tx in listeners {
            // A hopper that went away has released its leases already.
            let _ = tx.send(revoked.clone());
        }
        let mut recent = self.recent.lock();
        let (by_lease, order) = &mut *recent;
        order.push_back(revoked.lease);
        by_lease.insert(revoked.lease, revoked);
        while order.len() > REMEMBERED {
            if let Some(old) = order.pop_front() {
                by_lease.remove(&old);
            }
        }
    }

    /// Counts a revocation the dialer did not make through `revoked` (a window that closed on
    /// a hopper's lease).
    pub fn count(&self, why: Why) {
        self.totals[why.index()].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("leadscore_dialer_revocations_total", "reason" => why.name()).increment(1);
    }

    /// The revocation of this lease, if it is remembered.
    pub fn of_lease(&self, lease: u64) -> Option<Revoked> {
        self.recent.lock().0.get(&lease).cloned()
    }

    /// Revocations since the server started, by reason in `Why::ALL` order.
    pub fn totals(&self) -> [u64; Why::ALL.len()] {
        std::array::from_fn(|i| self.totals[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: u64, agent: &str) -> Lease {
        Lease { id, agent: agent.into(), campaign: "default".into(), claimed_at_ms: 0, expires_at_ms: 1_000 }
    }

    #[test]
    fn a_revocation_reaches_the_hoppers_of_its_agent_only_and_is_remembered() {
        let book = Revocations::default();
        book.hold([(LeadId::from("a"), held(7, "ann")), (LeadId::from("b"), held(8, "bob"))], 0);
        let (ann, mut to_ann) = book.listen("ann");
        let (_, mut to_bob) = book.listen("bob");
        let revoked = Revoked {
            lease: 7,
            lead_id: "a".into(),
            agent: "ann".into(),
            campaign: "default".into(),
            why: Why::DoNotCall,
            at_ms: 500,
        };
        book.revoked(revoked.clone());
        assert_eq!(to_ann.try_recv().unwrap(), revoked);
        assert!(to_bob.try_recv().is_err());
        assert_eq!(book.of_lease(7), Some(revoked));
        assert_eq!(book.totals()[Why::DoNotCall.index()], 1);
        assert_eq!(book.held_of([&LeadId::from("a"), &LeadId::from("b")]).len(), 1, "a's lease ended");
        book.leave(ann);
        assert_eq!(book.listeners.lock().len(), 1);
        assert!(book.all_held(1_000).is_empty(), "lapsed leases are forgotten");
    }

    #[test]
    fn leases_that_lapse_unreported_are_forgotten_as_the_book_grows() {
        let book = Revocations::default();
        let lease =
            |i: usize, expires_at_ms| (LeadId::from(format!("l{i}")), Lease { expires_at_ms, ..held(i as u64, "ann") });
        // A hopper that went away: its leases lapse at 1 000 and are never reported.
        book.hold((0..FIRST_PRUNE - 1).map(|i| lease(i, 1_000)), 500);
        assert_eq!(book.held.lock().leases.len(), FIRST_PRUNE - 1, "nothing has lapsed yet");
        book.hold([lease(FIRST_PRUNE, 5_000)], 2_000);
        let held = book.held_of([&LeadId::from("l0"), &LeadId::from(format!("l{FIRST_PRUNE}"))]);
        assert_eq!(held.iter().map(|(_, h)| h.id).collect::<Vec<_>>(), [FIRST_PRUNE as u64], "the open one stays");
        assert_eq!(book.held.lock().prune_at, FIRST_PRUNE);
    }
}
