//! The log's record payloads: every change to the store, as validated input. Replaying them in
//! order rebuilds the state. New kinds of change are added at the end of `Mutation`, so older
//! logs keep decoding.

use chrono_tz::Tz;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::agents::{AgentInput, Presence};
use super::audit::AuditEntry;
use super::dial::{AtClaim, Attempt, Callback, Lease};
use super::lead::{Consent, LeadId, Value};
use super::wal::Record;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mutation {
    /// Creates or replaces lead profiles; events and creation times are kept.
    UpsertLeads { at_ms: i64, leads: Vec<LeadInput> },
    /// New events only: duplicates were dropped before logging.
    RecordEvents { events: Vec<EventInput> },
    /// Removes a lead and remembers the hashed keys that refuse it later.
    EraseLead { id: LeadId, suppression_keys: Vec<[u8; 32]> },
    /// A configuration change made at run time: its version and its runtime sections (TOML).
    UpdateConfig { version: u64, toml: String },
    /// A dialer's claim of a lead; the lease's id is this record's sequence number.
    Claim { lead_id: LeadId, lease: Lease },
    /// A call's disposition.
    Outcome(Box<OutcomeRecord>),
    /// A lease handed back without a call.
    Release { lead_id: LeadId, lease: u64 },
    /// Creates agents or replaces their descriptions; presence is kept.
    UpsertAgents { at_ms: i64, agents: Vec<AgentInput> },
    /// An agent became available, busy or offline.
    SetPresence { agent: CompactString, presence: Presence, at_ms: i64 },
    /// A claim with what scoring said of the lead at the time; `Claim` is kept for older logs.
    ScoredClaim { lead_id: LeadId, lease: Lease, at_claim: AtClaim },
    /// An entry of the audit trail, logged in the same write as the change it records.
    Audit(AuditEntry),
    /// Marks every shard of a cluster keeps, whichever shard they came from: numbers on the
    /// internal do-not-call list, and the hashed keys of erased people.
    Marks { do_not_call: Vec<CompactString>, suppression_keys: Vec<[u8; 32]> },
}

/// A call's disposition, the callback it asks for, the event it becomes (unless the lead's
/// events are full) and the number it was made to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub lead_id: LeadId,
    pub attempt: Attempt,
    pub callback: Option<Callback>,
    pub event: Option<EventInput>,
    pub phone: CompactString,
}

/// A lead as accepted from a client, names not yet interned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeadInput {
    pub id: LeadId,
    pub attributes: Vec<(CompactString, Value)>,
    pub time_zone: Option<Tz>,
    pub consent: Consent,
    pub campaigns: Vec<CompactString>,
    pub owner: CompactString,
    pub phone: CompactString,
    pub email: CompactString,
}

/// An event as accepted from a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventInput {
    pub lead_id: LeadId,
    pub fingerprint: u64,
    pub kind: CompactString,
    pub at_ms: i64,
    pub value: f64,
    pub properties: Vec<(CompactString, Value)>,
}

impl Record for Mutation {
    fn write_payload(&self, out: &mut Vec<u8>) {
        postcard::to_io(self, out).expect("mutations always serialize");
    }
}

impl Mutation {
    /// The bytes a log keeps for this change.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_payload(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The 64-bit fingerprint of an event id, by which re-sent events are recognised. FNV-1a:
/// stable across versions and platforms, unlike the standard library's hasher.
pub fn fingerprint(id: &str) -> u64 {
    fingerprint_of(&[id])
}

/// The fingerprint of these parts written one after another, without joining them.
pub fn fingerprint_of(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_of_parts_is_that_of_the_parts_joined() {
        let lease = "leadscore:lease:1234567";
        assert_eq!(fingerprint_of(&["leadscore:lease:", "1234567"]), fingerprint(lease));
        assert_eq!(fingerprint(lease), 0x76f9_4b44_45fe_937d, "FNV-1a, as logged fingerprints were made");
    }

    #[test]
    fn mutations_round_trip() {
        let mutation = Mutation::UpsertLeads {
            at_ms: 1_700_000_000_000,
            leads: vec![LeadInput {
                id: "lead-1".into(),
                attributes: vec![
                    ("role".into(), Value::Text("CTO".into())),
                    ("employees".into(), Value::Number(640.0)),
                ],
                time_zone: Some(chrono_tz::Europe::Berlin),
                consent: Consent { phone_consent: true, ..Consent::default() },
                campaigns: vec!["spring".into()],
                owner: CompactString::default(),
                phone: "+4930123456".into(),
                email: CompactString::default(),
            }],
        };
        let mut payload = Vec::new();
        mutation.write_payload(&mut payload);
        assert_eq!(Mutation::decode(&payload).unwrap(), mutation);
    }

    #[test]
    fn fingerprints_are_stable() {
        // FNV-1a reference values.
        assert_eq!(fingerprint(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fingerprint("evt-1"), fingerprint("evt-2"));
    }
}
