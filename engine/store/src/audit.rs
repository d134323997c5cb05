//! The audit trail: who changed the configuration, reloaded plugins, erased a lead, changed a
//! lead's objection or described agents, and when. Each entry is logged in the same write as
//! the change it records, and kept in snapshots. An entry names a lead by its id only until the
//! lead is erased; from then on by its suppression key, so the trail holds no personal data of
//! an erased person.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::lead::LeadId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditKind {
    ConfigChange,
    PluginReload,
    Erasure,
    Objection,
    AgentChange,
}

impl AuditKind {
    pub const ALL: [AuditKind; 5] = [
        AuditKind::ConfigChange,
        AuditKind::PluginReload,
        AuditKind::Erasure,
        AuditKind::Objection,
        AuditKind::AgentChange,
    ];
}

/// What an entry is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Subject {
    Nothing,
    Lead(LeadId),
    /// An erased lead, by the salted hash of its id (its suppression key).
    ErasedLead([u8; 32]),
    Agents(Vec<CompactString>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The sequence number it was logged at (0 until then): replay after a snapshot skips
    /// entries the snapshot already holds.
    pub lsn: u64,
    pub at_ms: i64,
    /// The name of the token that made the change; empty on a server without tokens.
    pub actor: CompactString,
    pub kind: AuditKind,
    pub subject: Subject,
    /// What changed, without personal data: "version 4", "objected", "3 scorers loaded".
    pub detail: String,
}

/// Adds a logged entry unless the trail already holds it (a snapshot copied it).
pub fn append(trail: &mut Vec<AuditEntry>, lsn: u64, entry: &AuditEntry) {
    if trail.last().is_none_or(|last| last.lsn < lsn) {
        trail.push(AuditEntry { lsn, ..entry.clone() });
    }
}

/// Names an erased lead in the trail by its suppression key from now on.
pub fn forget_lead(trail: &mut [AuditEntry], id: &str, key: [u8; 32]) {
    for entry in trail.iter_mut().filter(|e| matches!(&e.subject, Subject::Lead(lead) if lead.as_str() == id)) {
        entry.subject = Subject::ErasedLead(key);
    }
}
