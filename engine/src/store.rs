//! The lead store: every lead in memory, every change through one path.
//!
//! A change is validated against the current state, appended to the write-ahead log, applied,
//! and only then acknowledged, all under one writer lock so that log order is apply order.
//! Readers never take that lock. Start-up loads the newest snapshot and replays the log after it.

pub mod agents;
pub mod dial;
mod frame;
mod group_commit;
mod intern;
pub mod lead;
pub mod mutation;
mod snapshot;
pub mod wal;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use dashmap::DashSet;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::sync::{Gate, Mutex, MutexGuard, Rank, RwLock, hold};
use agents::{AgentInput, Arm, Presence, Roster};
use dial::{Attempt, Callback, Dial, Lease};
use group_commit::GroupCommit;
use intern::Interner;
pub use intern::Sym;
use lead::{Attributes, Event, EventExtra, Lead, LeadId, LeadMap, Profile, Value};
use mutation::{EventInput, LeadInput, Mutation, OutcomeRecord, fingerprint};
pub use wal::FsyncPolicy;
use wal::{ScanError, SegmentEnd, Wal};

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
    #[error("snapshot failed: {0}")]
    Snapshot(#[source] io::Error),
    #[error("{field}: no open lease {lease} on lead {lead:?}")]
    UnknownLease { field: String, lease: u64, lead: LeadId },
    #[error("{field}: lease {lease} already ended with {result}")]
    LeaseEnded { field: String, lease: u64, result: &'static str },
    #[error("{field}: agent {id:?} is not registered; add it with UpsertAgents")]
    UnknownAgent { field: String, id: CompactString },
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

#[derive(Debug)]
struct Writer {
    wal: Wal,
    last_lsn: u64,
}

/// Claims staged under the writer lock, logged and applied by `commit`; dropped uncommitted,
/// none of them happened.
pub struct Claims<'s> {
    store: &'s Store,
    writer: MutexGuard<'s, Writer>,
    staged: Vec<Mutation>,
}

impl Claims<'_> {
    /// Stages a lease of a lead to an agent, unless `refuse` (which sees the lead and its
    /// dialer state as logged) gives a reason not to. A lead is staged at most once.
    pub fn claim<R>(
        &mut self,
        id: &str,
        agent: &str,
        campaign: &str,
        lease_ms: i64,
        refuse: impl FnOnce(&Lead, Option<&Dial>) -> Option<R>,
    ) -> Result<Result<Lease, R>, StoreError> {
        let state = &self.store.state;
        let refusal = {
            let _held = (hold(Rank::Lead), hold(Rank::Dial));
            let Some(lead) = state.leads.get(id) else {
                return Err(StoreError::NotFound(id.into()));
            };
            let dial = state.dials.get(id);
            refuse(&lead, dial.as_ref().map(|dial| dial.as_ref()))
        };
        if let Some(reason) = refusal {
            return Ok(Err(reason));
        }
        debug_assert!(!self.staged.iter().any(|m| matches!(m, Mutation::Claim { lead_id, .. } if lead_id == id)));
        let now = self.store.clock.now_ms();
        let lease = Lease {
            id: self.writer.last_lsn + 1 + self.staged.len() as u64,
            agent: agent.into(),
            campaign: campaign.into(),
            claimed_at_ms: now,
            expires_at_ms: now + lease_ms,
        };
        self.staged.push(Mutation::Claim { lead_id: id.into(), lease: lease.clone() });
        Ok(Ok(lease))
    }

    /// Logs the staged claims in one write, then applies them and releases the writer. On
    /// failure none holds. The claims are acknowledged once `Store::durable` says so, which the
    /// caller waits for after releasing its own locks.
    pub fn commit(self) -> Result<Logged, StoreError> {
        let Claims { store, writer, staged } = self;
        if staged.is_empty() {
            return Ok(Logged(0));
        }
        store.log_all(writer, &staged)
    }
}

/// Changes logged and applied up to this sequence number, not yet known to be on disk.
#[derive(Debug)]
#[must_use = "a change is acknowledged only once Store::durable returns"]
pub struct Logged(u64);

/// The in-memory state, changed only by `apply`.
#[derive(Debug)]
struct State {
    leads: LeadMap<Lead>,
    /// Hashed id, phone and e-mail of erased leads.
    suppressed: DashSet<[u8; 32]>,
    attribute_names: Interner,
    event_kinds: Interner,
    event_count: AtomicU64,
    /// The last configuration change made at run time: version and runtime sections (TOML).
    config: Mutex<Option<(u64, String)>>,
    /// The dialer's memory of the leads it has claimed. Boxed: a dial is some 260 bytes, and
    /// a table of pointers grows (doubling, moving every entry) far faster as claims reach new
    /// leads.
    dials: LeadMap<Box<Dial>>,
    /// The internal do-not-call list: numbers whose owners asked on a call never to be called.
    do_not_call: DashSet<CompactString>,
    agents: RwLock<Roster>,
}

/// What `report_outcome` recorded.
#[derive(Debug)]
pub struct Reported {
    /// The campaign the call was made in.
    pub campaign: CompactString,
    /// Calls made to the lead, this one included.
    pub attempts: u32,
    /// The same outcome had been reported before; nothing changed.
    pub duplicate: bool,
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
    /// Held for the store's lifetime so two processes never share a data directory; last, so
    /// it is released only after everything else is dropped.
    _lock: File,
}

impl Store {
    /// Opens (or creates) the store in `options.data_dir`: loads the newest snapshot, replays
    /// the log after it, cuts off a torn tail, and starts the background fsync.
    pub fn open(options: StoreOptions, clock: Arc<dyn Clock>) -> Result<Arc<Self>, OpenError> {
        let started = Instant::now();
        let dir = options.data_dir.clone();
        let io_err = |source| OpenError::Io { path: dir.clone(), source };
        fs::create_dir_all(&dir).map_err(io_err)?;
        let lock =
            OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK")).map_err(io_err)?;
        if lock.try_lock().is_err() {
            return Err(OpenError::Locked(dir));
        }
        let salt = load_salt(&dir).map_err(io_err)?;

        let state = State {
            leads: LeadMap::default(),
            suppressed: DashSet::new(),
            attribute_names: Interner::new(MAX_ATTRIBUTE_NAMES),
            event_kinds: Interner::new(MAX_EVENT_KINDS),
            event_count: AtomicU64::new(0),
            config: Mutex::new(Rank::LoggedConfig, None),
            dials: LeadMap::default(),
            do_not_call: DashSet::new(),
            agents: RwLock::new(Rank::Roster, Roster::default()),
        };
        let mut first_segment = 1;
        let mut last_snapshot_at_ms = i64::MIN;
        // Log records after the snapshot continue its numbering; whatever is applied next must
        // also number above every lead's and dialer state's own sequence number.
        let (mut last_lsn, mut max_item_lsn) = (0, 0);
        if let Some(&segment) = snapshot::list(&dir).map_err(io_err)?.last() {
            let path = snapshot::path(&dir, segment);
            let contents = snapshot::read(
                &path,
                |id, lead| {
                    state.event_count.fetch_add(lead.events.len() as u64, Ordering::Relaxed);
                    state.leads.insert(id, lead);
                },
                |id, dial| {
                    state.dials.insert(id, Box::new(dial));
                },
            )?;
            for name in &contents.attribute_names {
                state.attribute_names.intern(name);
            }
            for kind in &contents.event_kinds {
                state.event_kinds.intern(kind);
            }
            for key in contents.suppressed {
                state.suppressed.insert(key);
            }
            let mut roster = state.agents.write();
            roster.load_agents(contents.agents);
            for dial in state.dials.iter() {
                roster.load_dial(&dial);
            }
            drop(roster);
            for phone in contents.do_not_call {
                state.do_not_call.insert(phone);
            }
            *state.config.lock() = contents.config;
            first_segment = contents.segment;
            last_snapshot_at_ms = contents.created_at_ms;
            (last_lsn, max_item_lsn) = (contents.position, contents.max_item_lsn);
            info!(path = %path.display(), leads = contents.leads, "snapshot loaded");
        }

        let segments: Vec<u64> =
            wal::list_segments(&dir).map_err(io_err)?.into_iter().filter(|s| *s >= first_segment).collect();
        for pair in segments.windows(2) {
            if pair[1] != pair[0] + 1 {
                return Err(OpenError::MissingSegment { dir, missing: pair[0] + 1, before: pair[0], after: pair[1] });
            }
        }
        let mut records = 0u64;
        let mut log_bytes = 0;
        let mut tail = None;
        for &segment in &segments {
            let path = wal::segment_path(&dir, segment);
            let (end, lsn) = wal::scan_segment(&path, last_lsn, |frame| {
                let mutation = Mutation::decode(&frame.payload).map_err(|e| e.to_string())?;
                state.apply(frame.lsn, &mutation);
                records += 1;
                Ok(())
            })?;
            last_lsn = lsn;
            let len = match end {
                SegmentEnd::Clean { len } => len,
                SegmentEnd::Torn { valid_len, cause } if Some(&segment) == segments.last() => {
                    warn!(path = %path.display(), offset = valid_len, %cause, "torn record at the end of the log cut off");
                    valid_len
                }
                SegmentEnd::Torn { valid_len, cause } => {
                    return Err(ScanError::Corrupt { path, offset: valid_len, cause }.into());
                }
            };
            log_bytes += len;
            tail = Some((segment, len));
        }
        let last_lsn = last_lsn.max(max_item_lsn);
        let wal = match tail {
            Some((segment, len)) => Wal::open(&dir, segment, Some(len), log_bytes),
            None => Wal::open(&dir, first_segment, None, 0),
        }
        .map_err(io_err)?;
        info!(
            dir = %dir.display(),
            leads = state.leads.len(),
            events = state.event_count.load(Ordering::Relaxed),
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );

        let store = Arc::new(Self {
            state,
            salt,
            options,
            clock,
            writer: Mutex::watched(Rank::Writer, Writer { wal, last_lsn }, Gate::new("store writer")),
            group_commit: GroupCommit::new(last_lsn),
            snapshotting: Mutex::new(Rank::Snapshot, ()),
            last_snapshot_at_ms: AtomicI64::new(last_snapshot_at_ms),
            _lock: lock,
        });
        if store.options.fsync == FsyncPolicy::Interval {
            spawn_fsync(Arc::downgrade(&store), store.options.fsync_interval);
        }
        Ok(store)
    }

    /// Creates or replaces leads, all or nothing.
    pub fn upsert_leads(&self, leads: Vec<LeadInput>) -> Result<UpsertSummary, StoreError> {
        let writer = self.writer.lock();
        self.check_upsert(&leads, |i| format!("leads[{i}]"))?;
        let created = leads.iter().filter(|l| !self.state.leads.contains_key(&l.id)).count() as u32;
        let summary = UpsertSummary { created, updated: leads.len() as u32 - created };
        if !leads.is_empty() {
            let mutation = Mutation::UpsertLeads { at_ms: self.clock.now_ms(), leads };
            self.commit(writer, &mutation)?;
        }
        Ok(summary)
    }

    /// Stores each acceptable lead of a bulk load and returns why each other one was refused,
    /// by position.
    pub fn import_leads(&self, leads: Vec<LeadInput>) -> Result<Vec<(usize, StoreError)>, StoreError> {
        let writer = self.writer.lock();
        let mut accepted = Vec::with_capacity(leads.len());
        let mut refused = Vec::new();
        for (index, lead) in leads.into_iter().enumerate() {
            match self.check_upsert(std::slice::from_ref(&lead), |_| "lead".into()) {
                Ok(()) => accepted.push(lead),
                Err(err) => refused.push((index, err)),
            }
        }
        if !accepted.is_empty() {
            let mutation = Mutation::UpsertLeads { at_ms: self.clock.now_ms(), leads: accepted };
            self.commit(writer, &mutation)?;
        }
        Ok(refused)
    }

    /// Records events for existing leads; events seen before are counted, not stored again.
    pub fn record_events(&self, events: Vec<EventInput>) -> Result<EventSummary, StoreError> {
        let writer = self.writer.lock();
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
        let kinds = fresh.iter().map(|&i| events[i].kind.as_str());
        self.state.event_kinds.room_for(kinds).map_err(|full| limit("events[].kind", full))?;
        let names = fresh.iter().flat_map(|&i| events[i].properties.iter().map(|(k, _)| k.as_str()));
        self.state.attribute_names.room_for(names).map_err(|full| limit("events[].properties", full))?;

        let summary = EventSummary { recorded: fresh.len() as u32, duplicates: (events.len() - fresh.len()) as u32 };
        if !fresh.is_empty() {
            let fresh: Vec<EventInput> = fresh.into_iter().map(|i| events[i].clone()).collect();
            self.commit(writer, &Mutation::RecordEvents { events: fresh })?;
        }
        Ok(summary)
    }

    /// Removes a lead and its events, keeping hashed keys that refuse it from now on. The next
    /// snapshot removes it from disk too.
    pub fn erase_lead(&self, id: &str) -> Result<u32, StoreError> {
        let writer = self.writer.lock();
        let Some(lead) = self.state.leads.get(id) else {
            return Err(StoreError::NotFound(id.into()));
        };
        let events = lead.events.len() as u32;
        let profile = lead.profile().cloned().unwrap_or_default();
        drop(lead);
        let suppression_keys =
            self.suppression_keys(id, &profile.phone, &profile.email).into_iter().map(|(_, k)| k).collect();
        self.commit(writer, &Mutation::EraseLead { id: id.into(), suppression_keys })?;
        Ok(events)
    }

    /// Logs a configuration change made at run time; `toml` holds its runtime sections.
    pub fn record_config(&self, version: u64, toml: String) -> Result<(), StoreError> {
        let writer = self.writer.lock();
        self.commit(writer, &Mutation::UpdateConfig { version, toml })?;
        Ok(())
    }

    /// The last configuration change logged, if any: its version and runtime sections.
    pub fn logged_config(&self) -> Option<(u64, String)> {
        self.state.config.lock().clone()
    }

    /// Leases leads to agents: each checked under the writer lock, so nothing changes between
    /// the check and the claim, then all logged in one write and applied when committed. Until
    /// then no one else can write.
    pub fn claims(&self) -> Claims<'_> {
        Claims { store: self, writer: self.writer.lock(), staged: Vec::new() }
    }

    /// Records a call made under an open lease and ends the lease. The outcome becomes a
    /// `call:<result>` event of the lead, unless its events are full. A callback (time, and
    /// whether only the same agent may take it) is scheduled in the lease's campaign.
    /// Reporting the same result again changes nothing.
    /// `label` is the call's routing segment and A/B arm, found by the caller from the lease
    /// (`open_lease`) before the writer lock is taken: nothing is asked of other modules under it.
    pub fn report_outcome(
        &self,
        id: &str,
        mut attempt: Attempt,
        callback: Option<(i64, bool)>,
        label: (CompactString, Option<Arm>),
    ) -> Result<Reported, StoreError> {
        let writer = self.writer.lock();
        let ranks = (hold(Rank::Lead), hold(Rank::Dial));
        let Some(lead) = self.state.leads.get(id) else {
            return Err(StoreError::NotFound(id.into()));
        };
        let no_dial = Dial::default();
        // Read in place: the shard stays locked until `held` is dropped, before the commit.
        let held = self.state.dials.get(id);
        let dial = held.as_deref().map_or(&no_dial, |dial| dial);
        let attempts = dial.attempts.len() as u32;
        if let Some(done) = dial.attempt_of(attempt.lease) {
            if done.result == attempt.result {
                return Ok(Reported { campaign: done.campaign.clone(), attempts, duplicate: true });
            }
            let field = "outcome.lease_id".into();
            return Err(StoreError::LeaseEnded { field, lease: attempt.lease, result: done.result.name() });
        }
        let Some(lease) = dial.open_lease(attempt.lease) else {
            return Err(StoreError::UnknownLease {
                field: "outcome.lease_id".into(),
                lease: attempt.lease,
                lead: id.into(),
            });
        };
        (attempt.agent, attempt.campaign) = (lease.agent.clone(), lease.campaign.clone());
        (attempt.segment, attempt.arm) = label;
        let callback = callback.map(|(at_ms, agent_only)| Callback {
            at_ms,
            campaign: lease.campaign.clone(),
            agent: agent_only.then(|| lease.agent.clone()),
        });
        let kind = attempt.result.event_kind();
        let room = lead.events.len() < self.options.max_events_per_lead
            && self.state.event_kinds.room_for([kind.as_str()]).is_ok();
        let event = room.then(|| EventInput {
            lead_id: id.into(),
            fingerprint: fingerprint(&format!("leadscore:lease:{}", attempt.lease)),
            kind: kind.into(),
            at_ms: attempt.at_ms,
            value: attempt.talk_ms as f64 / 1000.0,
            properties: Vec::new(),
        });
        let phone = lead.profile().map(|p| p.phone.clone()).unwrap_or_default();
        let campaign = attempt.campaign.clone();
        drop((lead, held, ranks));
        let mutation =
            Mutation::Outcome(Box::new(OutcomeRecord { lead_id: id.into(), attempt, callback, event, phone }));
        self.commit(writer, &mutation)?;
        Ok(Reported { campaign, attempts: attempts + 1, duplicate: false })
    }

    /// Ends an open lease without a call.
    pub fn release(&self, id: &str, lease: u64) -> Result<(), StoreError> {
        let writer = self.writer.lock();
        let open = self.state.dials.get(id).is_some_and(|dial| dial.open_lease(lease).is_some());
        if !open {
            return Err(StoreError::UnknownLease { field: "lease_id".into(), lease, lead: id.into() });
        }
        self.commit(writer, &Mutation::Release { lead_id: id.into(), lease })?;
        Ok(())
    }

    /// Creates agents or replaces their descriptions (their presence is kept), all or nothing;
    /// returns how many were new.
    pub fn upsert_agents(&self, agents: Vec<AgentInput>) -> Result<u32, StoreError> {
        let writer = self.writer.lock();
        let created = {
            let roster = self.state.agents.read();
            agents.iter().filter(|a| roster.find(&a.id).is_none()).count() as u32
        };
        self.commit(writer, &Mutation::UpsertAgents { at_ms: self.clock.now_ms(), agents })?;
        Ok(created)
    }

    /// Records an agent's presence.
    pub fn set_presence(&self, agent: &str, presence: Presence) -> Result<(), StoreError> {
        let writer = self.writer.lock();
        if self.state.agents.read().find(agent).is_none() {
            return Err(StoreError::UnknownAgent { field: "agent_id".into(), id: agent.into() });
        }
        let mutation = Mutation::SetPresence { agent: agent.into(), presence, at_ms: self.clock.now_ms() };
        self.commit(writer, &mutation)?;
        Ok(())
    }

    /// The open lease with this id on a lead, if any: who holds it, in which campaign.
    pub fn open_lease(&self, id: &str, lease: u64) -> Option<Lease> {
        self.read_dial(id, |dial| dial.open_lease(lease).cloned()).flatten()
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
        let _held = hold(Rank::Dial);
        self.state.dials.get(id).map(|dial| read(&dial))
    }

    /// The campaigns the dialer ever claimed a lead in.
    pub fn dialled_campaigns(&self) -> BTreeSet<CompactString> {
        let mut campaigns = BTreeSet::new();
        for dial in self.state.dials.iter() {
            campaigns.extend(dial.lease.iter().chain(&dial.displaced).map(|l| l.campaign.clone()));
            campaigns.extend(dial.attempts.iter().map(|a| a.campaign.clone()));
        }
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
        let _held = hold(Rank::Lead);
        self.state.leads.get(id).map(|lead| read(&lead))
    }

    pub fn attribute_name(&self, sym: Sym) -> Arc<str> {
        self.state.attribute_names.resolve(sym)
    }

    pub fn event_kind(&self, sym: Sym) -> Arc<str> {
        self.state.event_kinds.resolve(sym)
    }

    /// Attribute names and event kinds in symbol order. Names are only ever added, so a table
    /// taken after reading some leads covers every symbol they use.
    pub fn names(&self) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
        (self.state.attribute_names.names(), self.state.event_kinds.names())
    }

    /// The symbol of an attribute name, if any lead ever had it.
    pub fn attribute_sym(&self, name: &str) -> Option<Sym> {
        self.state.attribute_names.get(name)
    }

    /// Every lead's id, copied out so no shard stays locked.
    pub fn lead_ids(&self) -> Vec<LeadId> {
        self.state.leads.iter().map(|entry| entry.key().clone()).collect()
    }

    pub fn stats(&self) -> StoreStats {
        let writer = self.writer.lock();
        let at = self.last_snapshot_at_ms.load(Ordering::Relaxed);
        StoreStats {
            leads: self.state.leads.len() as u64,
            events: self.state.event_count.load(Ordering::Relaxed),
            suppressed: self.state.suppressed.len() as u64,
            last_lsn: writer.last_lsn,
            log_bytes: writer.wal.total_len(),
            last_snapshot_at_ms: (at != i64::MIN).then_some(at),
        }
    }

    /// Forces everything written so far to disk (at shutdown).
    pub fn sync(&self) -> io::Result<()> {
        self.writer.lock().wal.sync()
    }

    /// Whether the log has grown enough since the last snapshot to write another.
    pub fn snapshot_due(&self) -> bool {
        self.writer.lock().wal.total_len() >= self.options.snapshot_log_bytes
    }

    /// Writes a snapshot and deletes the log segments and snapshots it replaces. Writes go on
    /// meanwhile: they land in the new segment, and replay skips what the snapshot already has.
    pub fn snapshot(&self) -> Result<SnapshotInfo, StoreError> {
        let _one_at_a_time = self.snapshotting.lock();
        let dir = &self.options.data_dir;
        let now = self.clock.now_ms();
        let (segment, last_lsn) = {
            let mut writer = self.writer.lock();
            (writer.wal.rotate().map_err(StoreError::Log)?, writer.last_lsn)
        };
        let write = || -> io::Result<(PathBuf, u64, u64)> {
            let mut out = snapshot::Writer::create(dir, segment, now)?;
            // Copy keys first so no shard stays locked while the file is written.
            let ids: Vec<LeadId> = self.state.leads.iter().map(|entry| entry.key().clone()).collect();
            for id in ids {
                let lead = self.state.leads.get(&id).map(|lead| lead.clone());
                if let Some(lead) = lead {
                    out.lead(id, lead)?;
                }
            }
            let ids: Vec<LeadId> = self.state.dials.iter().map(|entry| entry.key().clone()).collect();
            for id in ids {
                let dial = self.state.dials.get(&id).map(|dial| Dial::clone(&dial));
                if let Some(dial) = dial {
                    out.dial(id, dial)?;
                }
            }
            let do_not_call = self.state.do_not_call.iter().map(|phone| phone.clone()).collect();
            let suppressed = self.state.suppressed.iter().map(|key| *key).collect();
            let names = |interner: &Interner| interner.names().iter().map(|n| n.to_string()).collect();
            let config = self.logged_config();
            let agents = self.roster(|roster| roster.rows.iter().map(|row| row.agent.clone()).collect());
            let (attribute_names, event_kinds) = (names(&self.state.attribute_names), names(&self.state.event_kinds));
            out.finish(dir, segment, suppressed, attribute_names, event_kinds, config, do_not_call, agents, last_lsn)
        };
        let (path, leads, bytes) = write().map_err(StoreError::Snapshot)?;
        let truncated = self.writer.lock().wal.remove_before(segment).map_err(StoreError::Snapshot)?;
        for old in snapshot::list(dir).map_err(StoreError::Snapshot)?.into_iter().filter(|s| *s < segment) {
            fs::remove_file(snapshot::path(dir, old)).map_err(StoreError::Snapshot)?;
        }
        self.last_snapshot_at_ms.store(now, Ordering::Relaxed);
        info!(path = %path.display(), leads, bytes, log_bytes_truncated = truncated, "snapshot written");
        Ok(SnapshotInfo { path, leads, bytes, log_bytes_truncated: truncated })
    }

    /// Appends a validated change to the log and applies it, releases the writer, and returns
    /// once the change is as durable as `store.fsync` asks.
    fn commit(&self, writer: MutexGuard<'_, Writer>, mutation: &Mutation) -> Result<(), StoreError> {
        let logged = self.log_all(writer, std::slice::from_ref(mutation))?;
        self.durable(logged);
        Ok(())
    }

    /// Appends validated changes to the log in one write (all or none), applies them in order,
    /// and releases the writer.
    fn log_all(&self, mut writer: MutexGuard<'_, Writer>, mutations: &[Mutation]) -> Result<Logged, StoreError> {
        let first = writer.last_lsn + 1;
        writer.wal.append_all(first, mutations).map_err(StoreError::Log)?;
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
    /// Redis; it is acknowledged only after. A failed sync leaves memory ahead of the disk with
    /// no way to tell which writes reached it, so the process panics (and `serve` aborts) and
    /// restarts from what the log holds, as PostgreSQL does.
    pub fn durable(&self, Logged(lsn): Logged) {
        if self.options.fsync != FsyncPolicy::Always || lsn == 0 {
            return;
        }
        let sync = || {
            let (file, covered) = {
                let writer = self.writer.lock();
                (writer.wal.handle(), writer.last_lsn)
            };
            file.sync_data()?;
            Ok(covered)
        };
        if let Err(err) = self.group_commit.wait(lsn, sync) {
            tracing::error!(cause = %err, "the log could not be synced; stopping, a restart recovers from the log");
            panic!("the log could not be synced: {err}");
        }
    }

    /// The checks an upsert needs beyond the shape of its input: erased people stay erased,
    /// and the name tables have room.
    /// `path` names the lead at an index in errors.
    fn check_upsert(&self, leads: &[LeadInput], path: impl Fn(usize) -> String) -> Result<(), StoreError> {
        for (index, lead) in leads.iter().enumerate() {
            for (field, key) in self.suppression_keys(&lead.id, &lead.phone, &lead.email) {
                if self.state.suppressed.contains(&key) {
                    return Err(StoreError::Suppressed { field: format!("{}.{field}", path(index)) });
                }
            }
        }
        let names = leads.iter().flat_map(|l| l.attributes.iter().map(|(k, _)| k.as_str()));
        self.state.attribute_names.room_for(names).map_err(|full| limit("leads[].attributes", full))
    }

    /// Salted hashes of the things that identify a person: the id, the phone number and the
    /// e-mail address (case-folded), each with the field it came from.
    fn suppression_keys(&self, id: &str, phone: &str, email: &str) -> Vec<(&'static str, [u8; 32])> {
        let mut keys = vec![("id", self.suppression_key("id", id))];
        if !phone.is_empty() {
            keys.push(("phone", self.suppression_key("phone", phone)));
        }
        if !email.is_empty() {
            keys.push(("email", self.suppression_key("email", &email.to_lowercase())));
        }
        keys
    }

    fn suppression_key(&self, tag: &str, value: &str) -> [u8; 32] {
        Sha256::new().chain_update(self.salt).chain_update(tag).chain_update([0]).chain_update(value).finalize().into()
    }
}

impl State {
    /// Applies a logged change. Never fails: everything was checked before logging. Records a
    /// lead already reflects (its `lsn` is not below the record's) are skipped, which makes
    /// replay over a snapshot taken while writes went on exact.
    fn apply(&self, lsn: u64, mutation: &Mutation) {
        match mutation {
            Mutation::UpsertLeads { at_ms, leads } => {
                for input in leads {
                    self.apply_upsert(lsn, *at_ms, input);
                }
            }
            Mutation::RecordEvents { events } => {
                for input in events {
                    self.apply_event(lsn, input);
                }
            }
            Mutation::EraseLead { id, suppression_keys } => {
                if let Some((_, lead)) = self.leads.remove(id) {
                    self.event_count.fetch_sub(lead.events.len() as u64, Ordering::Relaxed);
                }
                if let Some((_, dial)) = self.dials.remove(id) {
                    let mut roster = self.agents.write();
                    for lease in [&dial.lease, &dial.displaced].into_iter().flatten() {
                        roster.ended(&lease.agent, lease.id);
                    }
                }
                for key in suppression_keys {
                    self.suppressed.insert(*key);
                }
            }
            Mutation::UpdateConfig { version, toml } => {
                let mut config = self.config.lock();
                // A snapshot taken while the change was logged may hold it already.
                if config.as_ref().is_none_or(|(current, _)| current < version) {
                    *config = Some((*version, toml.clone()));
                }
            }
            Mutation::Claim { lead_id, lease } => self.apply_dial(lsn, lead_id, |dial| {
                self.agents.write().claimed(&lease.agent, lease.id, lease.claimed_at_ms, lease.expires_at_ms);
                dial.claim(lease.clone());
            }),
            Mutation::Outcome(record) => {
                let OutcomeRecord { lead_id, attempt, callback, event, phone } = &**record;
                match event {
                    Some(event) => self.apply_event(lsn, event),
                    // The lead changed all the same (its calls), so it is rescored and requeued.
                    None => {
                        if let Some(mut lead) = self.leads.get_mut(lead_id) {
                            lead.lsn = lead.lsn.max(lsn);
                        }
                    }
                }
                if attempt.result == dial::CallResult::DoNotCall && !phone.is_empty() {
                    self.do_not_call.insert(phone.clone());
                }
                self.apply_dial(lsn, lead_id, |dial| {
                    self.agents.write().called(attempt);
                    dial.record(attempt.clone(), callback.clone(), phone);
                });
            }
            Mutation::Release { lead_id, lease } => self.apply_dial(lsn, lead_id, |dial| {
                if let Some(open) = dial.open_lease(*lease) {
                    self.agents.write().ended(&open.agent, open.id);
                }
                dial.end(*lease);
            }),
            Mutation::UpsertAgents { at_ms, agents } => self.agents.write().upsert(*at_ms, agents),
            Mutation::SetPresence { agent, presence, at_ms } => {
                self.agents.write().set_presence(agent, *presence, *at_ms);
            }
        }
    }

    fn apply_dial(&self, lsn: u64, id: &LeadId, change: impl FnOnce(&mut Dial)) {
        // Only in replay can the lead be gone: erased later in the log, as the snapshot shows.
        if !self.leads.contains_key(id) {
            return;
        }
        let _held = hold(Rank::Dial);
        let mut dial = self.dials.entry(id.clone()).or_default();
        if dial.lsn < lsn {
            dial.lsn = lsn;
            change(&mut dial);
        }
    }

    fn apply_upsert(&self, lsn: u64, at_ms: i64, input: &LeadInput) {
        let attributes = self.intern_attributes(&input.attributes);
        let _held = hold(Rank::Lead);
        let mut entry = self.leads.entry(input.id.clone()).or_insert_with(|| Lead {
            lsn: 0,
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
            attributes: Box::new([]),
            events: Vec::new(),
            time_zone: None,
            consent: Default::default(),
            profile: None,
        });
        let lead = entry.value_mut();
        if lead.lsn >= lsn {
            return;
        }
        lead.lsn = lsn;
        lead.updated_at_ms = at_ms;
        lead.attributes = attributes;
        lead.time_zone = input.time_zone;
        lead.consent = input.consent;
        let event_extras = lead.profile.take().map(|p| p.event_extras).unwrap_or_default();
        let profile = Profile {
            phone: input.phone.clone(),
            email: input.email.clone(),
            owner: input.owner.clone(),
            campaigns: input.campaigns.clone(),
            event_extras,
        };
        lead.profile = (profile != Profile::default()).then(|| Box::new(profile));
    }

    fn apply_event(&self, lsn: u64, input: &EventInput) {
        let _held = hold(Rank::Lead);
        let Some(mut lead) = self.leads.get_mut(&input.lead_id) else {
            // Only possible in replay: the lead was erased later in the log, and the snapshot
            // already reflects that.
            return;
        };
        lead.lsn = lead.lsn.max(lsn);
        let has_extra = input.value != 0.0 || !input.properties.is_empty();
        let kind = self.event_kinds.intern(&input.kind);
        // Events are idempotent by fingerprint, so they need no sequence check.
        if !lead.insert_event(Event::new(input.fingerprint, input.at_ms, kind, has_extra)) {
            return;
        }
        self.event_count.fetch_add(1, Ordering::Relaxed);
        if has_extra {
            let extra = EventExtra {
                fingerprint: input.fingerprint,
                value: input.value,
                properties: self.intern_attributes(&input.properties),
            };
            lead.profile.get_or_insert_with(Default::default).event_extras.push(extra);
        }
    }

    fn intern_attributes(&self, pairs: &[(CompactString, Value)]) -> Attributes {
        let mut interned: Vec<(Sym, Value)> =
            pairs.iter().map(|(name, value)| (self.attribute_names.intern(name), value.clone())).collect();
        interned.sort_by_key(|(sym, _)| *sym);
        interned.into_boxed_slice()
    }
}

fn limit(field: &str, full: intern::Full) -> StoreError {
    StoreError::Limit { field: field.into(), limit: full.to_string() }
}

/// Syncs the log once per interval while the store lives; the sync itself runs outside the
/// writer lock so writes never wait for the disk.
fn spawn_fsync(store: Weak<Store>, interval: Duration) {
    std::thread::Builder::new()
        .name("leadscore-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(store) = store.upgrade() else { return };
                let handle = store.writer.lock().wal.take_dirty();
                if let Err(err) = handle.and_then(|file| file.map_or(Ok(()), |f| f.sync_data())) {
                    warn!(cause = %err, "log fsync failed");
                }
            }
        })
        .expect("spawning the fsync thread");
}

fn load_salt(dir: &Path) -> io::Result<[u8; 32]> {
    let path = dir.join("salt");
    match fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes.try_into().unwrap()),
        Ok(_) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} must hold 32 bytes", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let salt: [u8; 32] = rand::random();
            let tmp = dir.join("salt.tmp");
            fs::write(&tmp, salt)?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &path)?;
            wal::sync_dir(dir)?;
            Ok(salt)
        }
        Err(e) => Err(e),
    }
}
