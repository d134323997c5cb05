//! The in-memory shape of a lead and its events, laid out to keep a lead with ten attributes
//! and twenty events under a kibibyte.

use chrono_tz::Tz;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::dial::Dial;
use super::history::ScoreChange;
use super::intern::Sym;

/// A lead's id, the key of the index. Ids of up to 24 bytes are stored inline.
pub type LeadId = CompactString;

/// Maps keyed by lead id. foldhash's seeded "quality" hasher: several times faster than the
/// standard SipHash on short ids, and still randomly keyed per process, since ids come from
/// clients.
pub type LeadMap<V> = dashmap::DashMap<LeadId, V, foldhash::quality::RandomState>;

/// An attribute or event-property value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Text(CompactString),
    Number(f64),
    Flag(bool),
}

/// A value as a person reads it: 919 rather than 919.0, a flag as true or false.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(text) => f.write_str(text),
            Value::Number(n) => write!(f, "{n}"),
            Value::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// Attribute name (interned) and value pairs, sorted by name symbol so lookups can bisect.
pub type Attributes = Box<[(Sym, Value)]>;

/// What the lead has agreed to, or refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub do_not_call: bool,
    pub email_opt_out: bool,
    pub phone_consent: bool,
    pub objected: bool,
}

/// A stored lead. The rarely set or bulky parts live behind `profile` so the common lead
/// stays small.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lead {
    /// The sequence number of the last log record applied to this lead; replay skips records
    /// at or below it, which makes replay after a fuzzy snapshot exact.
    pub lsn: u64,
    /// The sequence number of the record that last set its attributes: a score from a scorer
    /// that reads attributes alone, computed at or after it, still holds. Not in snapshots: a
    /// lead read from one counts its attributes as set by its last record.
    #[serde(skip)]
    pub attributes_lsn: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub attributes: Attributes,
    /// Sorted by time, oldest first; ties keep arrival order.
    pub events: Vec<Event>,
    pub time_zone: Option<Tz>,
    pub consent: Consent,
    pub profile: Option<Box<Profile>>,
    /// Its score changes, oldest first (see `history::push`): beside the lead, so recording
    /// one is one lookup and an erasure takes it along. Snapshots write it as an item of its
    /// own, after the lead.
    #[serde(skip)]
    pub history: Vec<ScoreChange>,
    /// The dialer's memory of it, once claimed: beside the lead, so a claim or an outcome
    /// finds both in one lookup and an erasure takes it along. Boxed: some 180 bytes that most
    /// leads never need. Snapshots write it as an item of its own, after the lead.
    #[serde(skip)]
    pub dial: Option<Box<Dial>>,
}

/// Contact details, memberships, and the optional parts of events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub phone: CompactString,
    pub email: CompactString,
    pub owner: CompactString,
    pub campaigns: Vec<CompactString>,
    /// Values and properties of the events that have them, by event fingerprint.
    pub event_extras: Vec<EventExtra>,
}

/// The optional value and properties of one event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventExtra {
    pub fingerprint: u64,
    pub value: f64,
    pub properties: Attributes,
}

/// One behavioural event in 16 bytes: the fingerprint of its id, then its time, kind and
/// flags packed into one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub fingerprint: u64,
    packed: u64,
}

const AT_BITS: u32 = 44;
const AT_MASK: u64 = (1 << AT_BITS) - 1;
const KIND_SHIFT: u32 = AT_BITS;
const HAS_EXTRA: u64 = 1 << 63;

impl Event {
    /// `at_ms` must lie in `0..2^44` (until year 2527), which validation guarantees.
    pub fn new(fingerprint: u64, at_ms: i64, kind: Sym, has_extra: bool) -> Self {
        debug_assert!((0..=AT_MASK as i64).contains(&at_ms));
        debug_assert!(kind.index() <= u16::MAX as usize);
        let mut packed = (at_ms as u64 & AT_MASK) | ((kind.index() as u64) << KIND_SHIFT);
        if has_extra {
            packed |= HAS_EXTRA;
        }
        Self { fingerprint, packed }
    }

    pub fn at_ms(&self) -> i64 {
        (self.packed & AT_MASK) as i64
    }

    pub fn kind(&self) -> Sym {
        Sym::from_index(((self.packed >> KIND_SHIFT) & 0xFFFF) as usize)
    }

    pub fn has_extra(&self) -> bool {
        self.packed & HAS_EXTRA != 0
    }
}

impl Lead {
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_deref()
    }

    /// A copy without the history and the dialer state, which snapshots write as items of
    /// their own.
    pub fn alone(&self) -> Lead {
        Lead {
            lsn: self.lsn,
            attributes_lsn: self.attributes_lsn,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            attributes: self.attributes.clone(),
            events: self.events.clone(),
            time_zone: self.time_zone,
            consent: self.consent,
            profile: self.profile.clone(),
            history: Vec::new(),
            dial: None,
        }
    }

    /// Inserts an event in time order; returns false if its fingerprint was seen before.
    pub fn insert_event(&mut self, event: Event) -> bool {
        if self.events.iter().any(|e| e.fingerprint == event.fingerprint) {
            return false;
        }
        // Grow by a quarter rather than doubling: most leads hold tens of events, and
        // doubling would leave a third of that memory unused.
        if self.events.len() == self.events.capacity() {
            self.events.reserve_exact((self.events.len() / 4).max(4));
        }
        let at = event.at_ms();
        let position = self.events.partition_point(|e| e.at_ms() <= at);
        self.events.insert(position, event);
        true
    }

    pub fn event_extra(&self, fingerprint: u64) -> Option<&EventExtra> {
        self.profile()?.event_extras.iter().find(|x| x.fingerprint == fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_packs_time_kind_and_flag() {
        let at = 4_102_444_799_999; // 2099-12-31T23:59:59.999Z
        let event = Event::new(7, at, Sym::from_index(65_535), true);
        assert_eq!(event.at_ms(), at);
        assert_eq!(event.kind().index(), 65_535);
        assert!(event.has_extra());
        let plain = Event::new(8, 0, Sym::from_index(3), false);
        assert_eq!((plain.at_ms(), plain.kind().index(), plain.has_extra()), (0, 3, false));
    }

    #[test]
    fn sizes_stay_small() {
        assert_eq!(std::mem::size_of::<Event>(), 16);
        assert_eq!(std::mem::size_of::<(Sym, Value)>(), 32);
    }

    #[test]
    fn events_keep_time_order_and_refuse_seen_fingerprints() {
        let mut lead = Lead {
            lsn: 0,
            attributes_lsn: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
            attributes: Box::new([]),
            events: Vec::new(),
            time_zone: None,
            consent: Consent::default(),
            profile: None,
            history: Vec::new(),
            dial: None,
        };
        let kind = Sym::from_index(0);
        assert!(lead.insert_event(Event::new(1, 300, kind, false)));
        assert!(lead.insert_event(Event::new(2, 100, kind, false)));
        assert!(lead.insert_event(Event::new(3, 200, kind, false)));
        assert!(!lead.insert_event(Event::new(2, 999, kind, false)));
        let order: Vec<u64> = lead.events.iter().map(|e| e.fingerprint).collect();
        assert_eq!(order, [2, 3, 1]);
    }
}
