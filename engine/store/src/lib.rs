//! The lead store: every lead in memory, every change through one path.
//!
//! A change is validated against the current state, appended to the write-ahead log, applied,
//! and only then acknowledged, all under one writer lock so that log order is apply order.
//! Readers never take that lock. Start-up loads the newest snapshot and replays the log after it.

#![forbid(unsafe_code)]

pub mod agents;
mod apply;
pub mod audit;
pub mod buckets;
mod claims;
pub mod clock;
pub mod dial;
mod digest;
mod frame;
mod group_commit;
pub mod history;
mod intern;
pub mod lead;
pub mod log;
mod measure;
pub mod merge;
pub mod mutation;
mod private;
mod recovery;
mod snapshot;
mod suppression;
pub mod sync;
pub mod wal;
mod writer;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use compact_str::CompactString;
use dashmap::DashSet;

use crate::clock::Clock;
use crate::sync::{Gate, Mutex, RwLock, Shards};
use agents::{AgentInput, Presence, Roster};
use audit::{AuditEntry, AuditKind, Subject};
pub use claims::{Claims, Reported};
use dial::Dial;
use group_commit::GroupCommit;
use history::ScoreChange;
use intern::Interner;
pub use intern::Sym;
use lead::{Lead, LeadId, Value};
use measure::StoreMetrics;
use merge::Merge;
use mutation::{EventInput, LeadInput, Mutation};
pub use wal::FsyncPolicy;
use wal::ScanError;
pub use writer::Logged;
use writer::Writer;

/// Distinct attribute (and event property) names the store accepts.
pub const MAX_ATTRIBUTE_NAMES: usize = 10_000;
/// Distinct event kinds; a kind is packed into 16 bits of an event.
pub const MAX_EVENT_KINDS: usize = 1 << 16;

/// How the store keeps its data.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// A snapshot is written once the log grows past this many bytes.
    pub snapshot_log_bytes: u64,
    /// Events one lead may hold.
    pub max_events_per_lead: usize,
}

/// Why a change was refused; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{field}: lead {id:?} does not exist")]
    UnknownLead { field: String, id: LeadId },
    #[error("lead {0:?} does not exist")]
    NotFound(LeadId),
    #[error("{field}: this lead was erased and may not be stored again")]
    Suppressed { field: String },
    #[error("{field}: {limit}")]
    Limit { field: String, limit: String },
    #[error("the log could not be written, nothing was changed: {0}")]
    Log(#[source] io::Error),
    /// Applied in memory but not confirmed by the log: it may or may not be kept.
    #[error("the log did not confirm the change, which may or may not be kept: {0}")]
    Unconfirmed(#[source] io::Error),
    #[error("snapshot failed: {0}")]
    Snapshot(#[source] io::Error),
    #[error("{field}: no open lease {lease} on lead {lead:?}")]
    UnknownLease { field: String, lease: u64, lead: LeadId },
    /// The lead of a lease was erased (a privacy request) while the lease was open: the
    /// erasure ended the lease, and nothing about the person may be recorded.
    #[error(
        "{field}: the lead of lease {lease} was erased (a privacy request) during the lease; the lease is ended and \
         nothing was recorded"
    )]
    ErasedDuringLease { field: String, lease: u64 },
    #[error("{field}: lease {lease} already ended with {result}")]
    LeaseEnded { field: String, lease: u64, result: &'static str },
    #[error("{field}: agent {id:?} is not registered; add it with UpsertAgents")]
    UnknownAgent { field: String, id: CompactString },
    /// An import would loosen a stored lead's consent, which it does only when allowed.
    #[error(
        "{field}: the stored lead says {stored}, the row {sent}; an import only tightens consent unless allowed \
         (leadscore import --allow-consent-changes)"
    )]
    ConsentLoosened { field: String, stored: bool, sent: bool },
    #[error("{field}: changing a lead's objection needs the `privacy` role")]
    ObjectionLocked { field: String },
}

/// Why the store could not open; start-up stops with it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("data directory {0} is in use by another process")]
    Locked(PathBuf),
    #[error(transparent)]
    Log(#[from] ScanError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::ReadError),
    #[error("the log {log}: {source}")]
    Unreadable { log: String, source: io::Error },
    #[error("log segment {missing} is missing between {before} and {after} in {dir}")]
    MissingSegment { dir: PathBuf, missing: u64, before: u64, after: u64 },
}

/// Counts for `Stats`.
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    pub leads: u64,
    pub events: u64,
    pub suppressed: u64,
    pub last_lsn: u64,
    pub log_bytes: u64,
    pub last_snapshot_at_ms: Option<i64>,
}

/// What `snapshot` wrote.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub leads: u64,
    pub bytes: u64,
    pub log_bytes_truncated: u64,
}

#[derive(Debug)]
pub struct UpsertSummary {
    pub created: u32,
    pub updated: u32,
}

#[derive(Debug)]
pub struct EventSummary {
    pub recorded: u32,
    pub duplicates: u32,
}

/// The in-memory state, changed only by `apply`.
#[derive(Debug)]
struct State {
    leads: Shards<Lead>,
    /// Hashed id, phone and e-mail of erased leads.
    suppressed: DashSet<[u8; 32]>,
    attribute_names: Interner,
    event_kinds: Interner,
    event_count: AtomicU64,
    /// The last configuration change made at run time: version and runtime sections (TOML).
    config: Mutex<Option<(u64, String)>>,
    /// The internal do-not-call list: numbers whose owners asked on a call never to be called.
    do_not_call: DashSet<CompactString>,
    agents: RwLock<Roster>,
    /// Oldest first; kept whole (changes it records are rare).
    audit: Mutex<Vec<AuditEntry>>,
}

#[derive(Debug)]
pub struct Store {
    state: State,
    /// Keys the suppression hashes so they cannot be reversed by hashing known numbers.
    salt: [u8; 32],
    options: StoreOptions,
    clock: Arc<dyn Clock>,
    writer: Mutex<Writer>,
    /// Syncs shared by the writes that wait for them, under fsync `always`.
    group_commit: GroupCommit,
    /// One snapshot at a time.
    snapshotting: Mutex<()>,
    last_snapshot_at_ms: AtomicI64,
    metrics: StoreMetrics,
    /// Held for the store's lifetime so two processes never share a data directory; last, so
    /// it is released only after everything else is dropped.
    _lock: File,
}

impl State {
    /// Calls `read` with every lead's dialer state, one shard locked at a time.
    fn each_dial(&self, mut read: impl FnMut(&LeadId, &Dial)) {
        self.leads.for_each(|id, lead| {
            if let Some(dial) = &lead.dial {
                read(id, dial);
            }
        });
    }
}

impl Store {
    /// Creates or replaces leads, all or nothing.
    pub fn upsert_leads(&self, leads: Vec<LeadInput>) -> Result<UpsertSummary, StoreError> {
        self.upsert_leads_as(leads, true, "")
    }

    /// `upsert_leads` by `actor`, who may change a lead's objection or not: checked under the
    /// writer lock, so no objection set meanwhile is undone. A changed objection enters the
    /// audit trail.
    pub fn upsert_leads_as(
        &self,
        leads: Vec<LeadInput>,
        may_object: bool,
        actor: &str,
    ) -> Result<UpsertSummary, StoreError> {
        let writer = self.writer.lock();
        let audits = self.check_upsert(&leads, may_object, actor, |i| format!("leads[{i}]"))?;
        let created = leads.iter().filter(|l| !self.state.leads.contains_key(&l.id)).count() as u32;
        let summary = UpsertSummary { created, updated: leads.len() as u32 - created };
        if !leads.is_empty() {
            let upsert = Mutation::UpsertLeads { at_ms: self.clock.now_ms(), leads };
            self.commit_all(writer, &[vec![upsert], audits].concat())?;
        }
        Ok(summary)
    }

    /// Stores each acceptable lead of a bulk load and returns why each other one was refused,
    /// by position. With `merge`, each lead meets the stored lead of its id as it says, `blanks`
    /// naming the fields each lead's row left blank (empty: none); without, it replaces it.
    pub fn import_leads(
        &self,
        leads: Vec<LeadInput>,
        merge: Option<&Merge>,
        blanks: &[Vec<CompactString>],
        may_object: bool,
        actor: &str,
    ) -> Result<Vec<(usize, StoreError)>, StoreError> {
        let writer = self.writer.lock();
        let mut accepted = Vec::with_capacity(leads.len());
        let (mut refused, mut audits) = (Vec::new(), Vec::new());
        for (index, lead) in leads.into_iter().enumerate() {
            let lead = match merge {
                None => lead,
                Some(merge) => {
                    let blank = blanks.get(index).map_or(&[][..], Vec::as_slice);
                    let merged = match self.state.leads.get(&lead.id) {
                        Some(stored) => merge.apply(lead, blank, &stored, &self.state.attribute_names, "lead"),
                        None => Ok(lead),
                    };
                    match merged {
                        Ok(lead) => lead,
                        Err(err) => {
                            refused.push((index, err));
                            continue;
                        }
                    }
                }
            };
            match self.check_upsert(std::slice::from_ref(&lead), may_object, actor, |_| "lead".into()) {
                Ok(objections) => {
                    accepted.push(lead);
                    audits.extend(objections);
                }
                Err(err) => refused.push((index, err)),
            }
        }
        if !accepted.is_empty() {
            let upsert = Mutation::UpsertLeads { at_ms: self.clock.now_ms(), leads: accepted };
            self.commit_all(writer, &[vec![upsert], audits].concat())?;
        }
        Ok(refused)
    }

    /// Records events for existing leads; events seen before are counted, not stored again.
    pub fn record_events(&self, events: Vec<EventInput>) -> Result<EventSummary, StoreError> {
        let (summary, logged) = self.log_events(events)?;
        self.durable(logged)?;
        Ok(summary)
    }

    /// `record_events`, acknowledged only once `durable` (or `acknowledged`) returns.
    pub fn log_events(&self, events: Vec<EventInput>) -> Result<(EventSummary, Logged), StoreError> {
        let writer = self.writer.lock();
        let fresh = self.fresh_events(&events)?;
        let kinds = fresh.iter().map(|&i| events[i].kind.as_str());
        self.state.event_kinds.room_for(kinds).map_err(|full| limit("events[].kind", full))?;
        let names = fresh.iter().flat_map(|&i| events[i].properties.iter().map(|(k, _)| k.as_str()));
        self.state.attribute_names.room_for(names).map_err(|full| limit("events[].properties", full))?;

        let summary = EventSummary { recorded: fresh.len() as u32, duplicates: (events.len() - fresh.len()) as u32 };
        if fresh.is_empty() {
            return Ok((summary, Logged(0)));
        }
        // The new events are moved into the record, not cloned.
        let mut kept = fresh.into_iter().peekable();
        let keep = |(i, _): &(usize, EventInput)| kept.next_if_eq(i).is_some();
        let events = events.into_iter().enumerate().filter(keep).map(|(_, event)| event).collect();
        Ok((summary, self.log_all(writer, &[Mutation::RecordEvents { events }])?))
    }

    /// The positions of the events neither stored nor earlier in the batch, in order; refuses
    /// an unknown lead, or a lead the batch would take past its events limit.
    fn fresh_events(&self, events: &[EventInput]) -> Result<Vec<usize>, StoreError> {
        let mut seen_in_batch: HashSet<(&str, u64)> = HashSet::new();
        let mut added_per_lead: HashMap<&str, usize> = HashMap::new();
        let mut fresh = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let Some(lead) = self.state.leads.get(&event.lead_id) else {
                return Err(StoreError::UnknownLead {
                    field: format!("events[{index}].lead_id"),
                    id: event.lead_id.clone(),
                });
            };
            let known = lead.events.iter().any(|e| e.fingerprint == event.fingerprint);
            if known || !seen_in_batch.insert((event.lead_id.as_str(), event.fingerprint)) {
                continue;
            }
            let added = added_per_lead.entry(event.lead_id.as_str()).or_default();
            *added += 1;
            if lead.events.len() + *added > self.options.max_events_per_lead {
                return Err(StoreError::Limit {
                    field: format!("events[{index}]"),
                    limit: format!("lead {:?} would exceed {} events", event.lead_id, self.options.max_events_per_lead),
                });
            }
            fresh.push(index);
        }
        Ok(fresh)
    }

    /// Removes a lead and its events, keeping hashed keys that refuse it from now on. The next
    /// snapshot removes it from disk too.
    pub fn erase_lead(&self, id: &str, actor: &str) -> Result<u32, StoreError> {
        let writer = self.writer.lock();
        let Some(lead) = self.state.leads.get(id) else {
            return Err(StoreError::NotFound(id.into()));
        };
        let events = lead.events.len() as u32;
        let profile = lead.profile().cloned().unwrap_or_default();
        drop(lead);
        let suppression_keys: Vec<[u8; 32]> =
            self.suppression_keys(id, &profile.phone, &profile.email).into_iter().map(|(_, k)| k).collect();
        let audit = self.audit(
            actor,
            AuditKind::Erasure,
            Subject::ErasedLead(suppression_keys[0]),
            format!("{events} events erased"),
        );
        self.commit_all(writer, &[Mutation::EraseLead { id: id.into(), suppression_keys }, audit])?;
        Ok(events)
    }

    /// Adds score changes to a stored lead's history (see `history::push`); changes for a lead
    /// that is gone are dropped, so an erased lead never regains a history.
    pub fn record_history(
        &self,
        id: &LeadId,
        changes: impl IntoIterator<Item = ScoreChange>,
        bound: usize,
        min_decay: f64,
    ) {
        if bound == 0 {
            return;
        }
        let Some(mut lead) = self.state.leads.get_mut(id) else { return };
        for change in changes {
            history::push(&mut lead.history, change, bound, min_decay);
        }
    }

    /// A stored lead's score changes, oldest first; `None` for a lead that is not stored.
    pub fn history(&self, id: &str) -> Option<Vec<ScoreChange>> {
        self.state.leads.get(id).map(|lead| lead.history.clone())
    }

    /// Logs a configuration change made at run time; `toml` holds its runtime sections.
    pub fn record_config(&self, version: u64, toml: String, actor: &str) -> Result<(), StoreError> {
        let writer = self.writer.lock();
        let audit = self.audit(actor, AuditKind::ConfigChange, Subject::Nothing, format!("version {version}"));
        self.commit_all(writer, &[Mutation::UpdateConfig { version, toml }, audit])
    }

    /// Logs an audit entry for a change that is not itself logged (a plugin reload).
    pub fn record_audit(&self, actor: &str, kind: AuditKind, detail: String) -> Result<(), StoreError> {
        let writer = self.writer.lock();
        self.commit(writer, &self.audit(actor, kind, Subject::Nothing, detail))
    }

    /// The audit trail from `from_ms` up to `to_ms` (inclusive), of these kinds (all if
    /// empty), oldest first.
    pub fn audit_trail(&self, from_ms: i64, to_ms: i64, kinds: &[AuditKind]) -> Vec<AuditEntry> {
        let trail = self.state.audit.lock();
        let wanted =
            |e: &&AuditEntry| (from_ms..=to_ms).contains(&e.at_ms) && (kinds.is_empty() || kinds.contains(&e.kind));
        trail.iter().filter(wanted).cloned().collect()
    }

    /// An audit entry made now, to be logged with the change it records.
    fn audit(&self, actor: &str, kind: AuditKind, subject: Subject, detail: String) -> Mutation {
        Mutation::Audit(AuditEntry { lsn: 0, at_ms: self.clock.now_ms(), actor: actor.into(), kind, subject, detail })
    }

    /// The last configuration change logged, if any: its version and runtime sections.
    pub fn logged_config(&self) -> Option<(u64, String)> {
        self.state.config.lock().clone()
    }

    /// Creates agents or replaces their descriptions (their presence is kept), all or nothing,
    /// with an audit entry; returns how many were new.
    pub fn upsert_agents(&self, agents: Vec<AgentInput>, actor: &str) -> Result<u32, StoreError> {
        self.upsert_agents_audited(agents, actor, true)
    }

    /// The same, with an audit entry only if `audited` (a cluster audits the change of every
    /// shard's roster once, on one shard).
    pub fn upsert_agents_audited(
        &self,
        agents: Vec<AgentInput>,
        actor: &str,
        audited: bool,
    ) -> Result<u32, StoreError> {
        let writer = self.writer.lock();
        let created = {
            let roster = self.state.agents.read();
            agents.iter().filter(|a| roster.find(&a.id).is_none()).count() as u32
        };
        let ids = agents.iter().map(|a| a.id.clone()).collect();
        let detail = format!("{} agents described, {created} new", agents.len());
        let audit = self.audit(actor, AuditKind::AgentChange, Subject::Agents(ids), detail);
        let upsert = Mutation::UpsertAgents { at_ms: self.clock.now_ms(), agents };
        match audited {
            true => self.commit_all(writer, &[upsert, audit])?,
            false => self.commit(writer, &upsert)?,
        };
        Ok(created)
    }

    /// Records an agent's presence.
    pub fn set_presence(&self, agent: &str, presence: Presence) -> Result<(), StoreError> {
        self.set_presence_at(agent, presence, self.clock.now_ms(), false)
    }

    /// Records an agent's presence as set at `at_ms`; with `newer_only`, not if the presence
    /// held was set later (a cluster's shards each take the change, made through any node,
    /// and all keep the latest whatever order they take them in).
    pub fn set_presence_at(
        &self,
        agent: &str,
        presence: Presence,
        at_ms: i64,
        newer_only: bool,
    ) -> Result<(), StoreError> {
        let writer = self.writer.lock();
        let set_ms = {
            let roster = self.state.agents.read();
            let row = roster
                .find(agent)
                .ok_or_else(|| StoreError::UnknownAgent { field: "agent_id".into(), id: agent.into() })?;
            roster.presence_set_ms(row)
        };
        if newer_only && set_ms > at_ms {
            return Ok(());
        }
        let mutation = Mutation::SetPresence { agent: agent.into(), presence, at_ms };
        self.commit(writer, &mutation)?;
        Ok(())
    }

    /// The watchdog's gate on the writer lock.
    pub fn writer_gate(&self) -> Arc<Gate> {
        self.writer.gate().expect("the writer is watched").clone()
    }

    /// Calls `read` with the agents and their records.
    pub fn roster<T>(&self, read: impl FnOnce(&Roster) -> T) -> T {
        read(&self.state.agents.read())
    }

    /// Calls `read` with the lead's dialer state, if it was ever claimed.
    pub fn read_dial<T>(&self, id: &str, read: impl FnOnce(&Dial) -> T) -> Option<T> {
        self.state.leads.get(id)?.dial.as_deref().map(read)
    }

    /// Calls `read` with every lead's dialer state, one shard locked at a time: `read` copies
    /// out what it needs and calls nothing.
    pub fn each_dial(&self, read: impl FnMut(&LeadId, &Dial)) {
        self.state.each_dial(read);
    }

    /// The campaigns the dialer ever claimed a lead in.
    pub fn dialled_campaigns(&self) -> BTreeSet<CompactString> {
        let mut campaigns = BTreeSet::new();
        self.each_dial(|_, dial| {
            campaigns.extend(dial.open_leases().map(|l| l.campaign.clone()));
            campaigns.extend(dial.attempts.iter().map(|a| a.campaign.clone()));
        });
        campaigns
    }

    /// A lead's attribute by name.
    pub fn attribute(&self, lead: &Lead, name: &str) -> Option<Value> {
        let sym = self.state.attribute_names.get(name)?;
        let at = lead.attributes.binary_search_by_key(&sym, |(s, _)| *s).ok()?;
        Some(lead.attributes[at].1.clone())
    }

    /// Whether a number is on the internal do-not-call list, or belonged to an erased lead
    /// (another record of the same person must not be called either).
    pub fn on_do_not_call_list(&self, phone: &str) -> bool {
        !phone.is_empty()
            && (self.state.do_not_call.contains(phone)
                || self.state.suppressed.contains(&self.suppression_key("phone", phone)))
    }

    /// Calls `read` with the lead, if it exists. `read` runs under the index's read lock: copy
    /// out what is needed and return.
    pub fn read_lead<T>(&self, id: &str, read: impl FnOnce(&Lead) -> T) -> Option<T> {
        self.state.leads.get(id).map(|lead| read(&lead))
    }

    pub fn attribute_name(&self, sym: Sym) -> Arc<str> {
        self.state.attribute_names.resolve(sym)
    }

    pub fn event_kind(&self, sym: Sym) -> Arc<str> {
        self.state.event_kinds.resolve(sym)
    }

    /// Calls `read` with the attribute names, indexed by `Sym::index`, under one turn of the
    /// table's lock (`read` must not call out): cheaper than resolving names one by one. Names
    /// are only ever added, so a table read after some leads covers every symbol they use.
    pub fn with_attribute_names<T>(&self, read: impl FnOnce(&[Arc<str>]) -> T) -> T {
        self.state.attribute_names.with_names(read)
    }

    /// Calls `read` with the event kinds, as `with_attribute_names`.
    pub fn with_event_kinds<T>(&self, read: impl FnOnce(&[Arc<str>]) -> T) -> T {
        self.state.event_kinds.with_names(read)
    }

    /// The symbol of an attribute name, if any lead ever had it.
    pub fn attribute_sym(&self, name: &str) -> Option<Sym> {
        self.state.attribute_names.get(name)
    }

    /// Every lead's id, copied out so no shard stays locked.
    pub fn lead_ids(&self) -> Vec<LeadId> {
        self.state.leads.keys()
    }

    pub fn stats(&self) -> StoreStats {
        let writer = self.writer.lock();
        let at = self.last_snapshot_at_ms.load(Ordering::Relaxed);
        StoreStats {
            leads: self.state.leads.len() as u64,
            events: self.state.event_count.load(Ordering::Relaxed),
            suppressed: self.state.suppressed.len() as u64,
            last_lsn: writer.last_lsn,
            log_bytes: writer.log.bytes(),
            last_snapshot_at_ms: (at != i64::MIN).then_some(at),
        }
    }
}

fn limit(field: &str, full: intern::Full) -> StoreError {
    StoreError::Limit { field: field.into(), limit: full.to_string() }
}

/// What the store's unit tests share: a store in a directory of its own, and inputs.
#[cfg(test)]
mod testing {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use super::mutation::{EventInput, LeadInput, fingerprint};
    use super::{FsyncPolicy, Store, StoreOptions};
    use crate::clock::ManualClock;

    pub const NOW_MS: i64 = 1_793_631_600_000;

    pub fn options(dir: &Path) -> StoreOptions {
        StoreOptions {
            data_dir: dir.to_owned(),
            fsync: FsyncPolicy::Never,
            fsync_interval: Duration::from_secs(1),
            snapshot_log_bytes: u64::MAX,
            max_events_per_lead: 100,
        }
    }

    pub fn open(dir: &Path) -> Arc<Store> {
        Store::open(options(dir), Arc::new(ManualClock::new(NOW_MS))).unwrap()
    }

    pub fn lead(id: &str, revision: f64) -> LeadInput {
        LeadInput {
            id: id.into(),
            attributes: vec![("revision".into(), super::Value::Number(revision))],
            time_zone: Some(chrono_tz::UTC),
            consent: Default::default(),
            campaigns: Vec::new(),
            owner: Default::default(),
            phone: format!("+1555{:07}", fingerprint(id) % 10_000_000).into(),
            email: Default::default(),
        }
    }

    pub fn event(lead_id: &str, id: &str) -> EventInput {
        EventInput {
            lead_id: lead_id.into(),
            fingerprint: fingerprint(id),
            kind: "email_open".into(),
            at_ms: NOW_MS,
            value: 0.0,
            properties: Vec::new(),
        }
    }

    /// A lead's `revision` attribute.
    pub fn revision(store: &Store, id: &str) -> Option<f64> {
        let read = |lead: &super::Lead| match store.attribute(lead, "revision") {
            Some(super::Value::Number(n)) => n,
            other => panic!("revision is {other:?}"),
        };
        store.read_lead(id, read)
    }
}

#[cfg(test)]
mod tests {
    use super::StoreError;
    use super::mutation::fingerprint;
    use super::testing::{event, lead, open};

    #[test]
    fn events_seen_before_or_repeated_in_the_batch_are_counted_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.upsert_leads(vec![lead("a", 1.0), lead("b", 1.0)]).unwrap();
        store.record_events(vec![event("a", "e1")]).unwrap();

        let batch = vec![event("a", "e1"), event("a", "e2"), event("b", "e2"), event("a", "e2"), event("b", "e3")];
        let summary = store.record_events(batch).unwrap();
        assert_eq!((summary.recorded, summary.duplicates), (3, 2));
        let stored = |id: &str| store.read_lead(id, |l| l.events.iter().map(|e| e.fingerprint).collect::<Vec<_>>());
        assert_eq!(stored("a"), Some(vec![fingerprint("e1"), fingerprint("e2")]));
        assert_eq!(stored("b"), Some(vec![fingerprint("e2"), fingerprint("e3")]));
        assert_eq!(store.stats().events, 4);
    }

    #[test]
    fn a_batch_that_would_take_a_lead_past_its_events_limit_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()); // 100 events a lead
        store.upsert_leads(vec![lead("a", 1.0)]).unwrap();
        store.record_events((0..99).map(|n| event("a", &format!("e{n}"))).collect()).unwrap();

        // Two new events (a repeat of one counts once) where one more fits.
        let batch = vec![event("a", "e0"), event("a", "x1"), event("a", "x1"), event("a", "x2")];
        let err = store.record_events(batch).unwrap_err();
        assert!(matches!(&err, StoreError::Limit { field, .. } if field == "events[3]"), "{err}");
        assert_eq!(store.stats().events, 99);
        let summary = store.record_events(vec![event("a", "x1"), event("a", "x1")]).unwrap();
        assert_eq!((summary.recorded, summary.duplicates), (1, 1));
    }
}
