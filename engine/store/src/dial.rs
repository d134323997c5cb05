//! What the dialer remembers of a lead: its lease, every call made to it, a pending callback,
//! and what the calls taught (a wrong number, a request never to be called). A boxed field of
//! the lead (`Lead::dial`), set at its first claim, since most leads are never dialled.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::agents::Arm;

/// A call's disposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallResult {
    NoAnswer,
    Busy,
    Voicemail,
    ConnectedNotInterested,
    Callback,
    Converted,
    Lost,
    WrongNumber,
    DoNotCall,
    /// A person answered and no agent was free: the call was dropped or given a message.
    Abandoned,
}

/// Every result, its name and the kind of event it becomes (`call:` and the name), from one
/// list.
macro_rules! named_results {
    ($($result:ident => $name:literal),* $(,)?) => {
        impl CallResult {
            pub const ALL: [CallResult; [$($name),*].len()] = [$(CallResult::$result),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(CallResult::$result => $name,)*
                }
            }

            /// The kind of the behavioural event an outcome becomes, so scorers can weigh calls.
            pub fn event_kind(self) -> &'static str {
                match self {
                    $(CallResult::$result => concat!("call:", $name),)*
                }
            }
        }
    };
}

named_results! {
    NoAnswer => "no_answer",
    Busy => "busy",
    Voicemail => "voicemail",
    ConnectedNotInterested => "connected_not_interested",
    Callback => "callback",
    Converted => "converted",
    Lost => "lost",
    WrongNumber => "wrong_number",
    DoNotCall => "do_not_call",
    Abandoned => "abandoned",
}

/// An exclusive claim of a lead by one agent, until its deadline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The log sequence number of the claim: unique, so it names the lease.
    pub id: u64,
    pub agent: CompactString,
    pub campaign: CompactString,
    pub claimed_at_ms: i64,
    pub expires_at_ms: i64,
}

/// What scoring said of a lead when it was claimed, kept with the lease and its call for the
/// validation report: the campaign's score and band, the configuration version they were
/// computed with, the predictive probability and the campaign's shadow score, if any.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AtClaim {
    pub config_version: u64,
    pub score: f64,
    /// `Band as u8`.
    pub band: u8,
    pub probability: Option<f64>,
    /// The shadow score and `Band as u8`.
    pub shadow: Option<(f64, u8)>,
}

/// One call made to the lead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The lease the call was made under.
    pub lease: u64,
    pub agent: CompactString,
    pub campaign: CompactString,
    pub at_ms: i64,
    pub result: CallResult,
    pub talk_ms: u64,
    pub note: String,
    /// The lead's segment for routing (its band in the campaign) when the call was reported.
    pub segment: CompactString,
    /// The routing A/B arm that sent the lead to this agent, if routing chose the agent.
    pub arm: Option<Arm>,
}

/// A call the lead asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Callback {
    pub at_ms: i64,
    pub campaign: CompactString,
    /// Only this agent may take it until the campaign's grace has passed.
    pub agent: Option<CompactString>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dial {
    /// The sequence number of the last log record applied; replay skips records at or below.
    pub lsn: u64,
    /// The latest lease, until an outcome or a release ends it. Past its deadline it no longer
    /// holds the lead, but an outcome for it is still taken: the call may have happened.
    pub lease: Option<Lease>,
    /// The lease a newer claim displaced after it expired, kept so its late outcome is not lost.
    /// Boxed, as is `callback`: both are rare, and every dialled lead has a `Dial`. (A box
    /// encodes as what it holds, so logs and snapshots read the same.)
    pub displaced: Option<Box<Lease>>,
    /// Oldest first.
    pub attempts: Vec<Attempt>,
    pub callback: Option<Box<Callback>>,
    /// The number a call found wrong; the lead is not called again until its number changes.
    pub wrong_number: Option<CompactString>,
    /// The lead asked on a call never to be called again.
    pub do_not_call: bool,
    /// What scoring said at each claim that is open or was called, by lease id. Not in this
    /// struct's encoding, which older logs and snapshots wrote without it: claims and
    /// snapshots carry it beside the dial (`Mutation::ScoredClaim`, `Item::ScoredDial`).
    #[serde(skip)]
    pub at_claim: Vec<(u64, AtClaim)>,
}

/// Pushes onto a vector that grows 1, 2, 4, 8: most leads are called a few times, and a
/// `Vec`'s first push makes room for four, which a million called leads would mostly keep empty.
fn push_tight<T>(items: &mut Vec<T>, item: T) {
    if items.len() == items.capacity() {
        items.reserve_exact(items.len().max(1));
    }
    items.push(item);
}

impl Dial {
    /// Whether a lease holds the lead at this instant.
    pub fn leased_at(&self, now_ms: i64) -> Option<&Lease> {
        self.lease.as_ref().filter(|lease| lease.expires_at_ms > now_ms)
    }

    /// The leases still open: the current one and one it displaced, if any.
    pub fn open_leases(&self) -> impl Iterator<Item = &Lease> {
        self.lease.iter().chain(self.displaced.as_deref())
    }

    /// The open lease (current or displaced) with this id.
    pub fn open_lease(&self, id: u64) -> Option<&Lease> {
        self.open_leases().find(|lease| lease.id == id)
    }

    pub fn attempt_of(&self, lease: u64) -> Option<&Attempt> {
        self.attempts.iter().rev().find(|a| a.lease == lease)
    }

    pub(super) fn claim(&mut self, lease: Lease, at_claim: Option<AtClaim>) {
        if let Some(at_claim) = at_claim {
            push_tight(&mut self.at_claim, (lease.id, at_claim));
        }
        if let Some(expired) = self.lease.replace(lease) {
            self.displaced = Some(Box::new(expired));
        }
        self.forget_unused_claims();
    }

    /// Hands a lease back without a call.
    pub(super) fn release(&mut self, id: u64) {
        self.end(id);
        self.forget_unused_claims();
    }

    /// What scoring said at a claim that is no longer open and was never called is not needed.
    fn forget_unused_claims(&mut self) {
        let open = [self.lease.as_ref(), self.displaced.as_deref()].map(|lease| lease.map(|l| l.id));
        let attempts = &self.attempts;
        self.at_claim.retain(|(id, _)| open.contains(&Some(*id)) || attempts.iter().any(|a| a.lease == *id));
    }

    /// What scoring said when the lease was claimed, if it was recorded.
    pub fn at_claim_of(&self, lease: u64) -> Option<&AtClaim> {
        self.at_claim.iter().find(|(id, _)| *id == lease).map(|(_, at)| at)
    }

    /// Ends a lease (by outcome or release).
    pub(super) fn end(&mut self, id: u64) {
        if self.lease.as_ref().is_some_and(|l| l.id == id) {
            self.lease = None;
        }
        if self.displaced.as_ref().is_some_and(|l| l.id == id) {
            self.displaced = None;
        }
    }

    pub(super) fn record(&mut self, attempt: Attempt, callback: Option<Callback>, phone: &str) {
        self.end(attempt.lease);
        match attempt.result {
            CallResult::WrongNumber => self.wrong_number = Some(phone.into()),
            CallResult::DoNotCall => self.do_not_call = true,
            _ => {}
        }
        // A call settles the callback it answered; a callback result schedules the next.
        self.callback = callback.map(Box::new);
        push_tight(&mut self.attempts, attempt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dial_stays_small() {
        // Every dialled lead has one; the rare parts are boxed (288 bytes before).
        assert_eq!(std::mem::size_of::<Dial>(), 176);
    }

    #[test]
    fn an_outcomes_event_kind_is_call_and_its_name() {
        for result in CallResult::ALL {
            assert_eq!(result.event_kind(), format!("call:{}", result.name()));
        }
    }

    #[test]
    fn a_leads_calls_take_room_as_they_come() {
        let mut calls = Vec::new();
        let capacities: Vec<usize> = (0..5)
            .map(|i| {
                push_tight(&mut calls, i);
                calls.capacity()
            })
            .collect();
        assert_eq!(capacities, [1, 2, 4, 4, 8]);
        assert_eq!(calls, [0, 1, 2, 3, 4]);
    }
}
