//! Applying logged changes to the in-memory state: the one way it changes, in log order, at
//! start-up (replay) as at run time. Apply never fails: everything was checked before logging.

use std::sync::atomic::Ordering;

use compact_str::CompactString;

use super::audit;
use super::dial::{self, AtClaim, Dial, Lease};
use super::lead::{Attributes, Event, EventExtra, Lead, LeadId, Profile, Value};
use super::mutation::{EventInput, LeadInput, Mutation, OutcomeRecord};
use super::{State, Sym};

impl State {
    /// Applies a logged change. Never fails: everything was checked before logging. Records a
    /// lead already reflects (its `lsn` is not below the record's) are skipped, which makes
    /// replay over a snapshot taken while writes went on exact.
    pub(super) fn apply(&self, lsn: u64, mutation: &Mutation) {
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
                    if let Some(dial) = lead.dial {
                        let mut roster = self.agents.write();
                        for lease in dial.open_leases() {
                            roster.ended(&lease.agent, lease.id);
                        }
                    }
                }
                for key in suppression_keys {
                    self.suppressed.insert(*key);
                }
                // The id's key comes first (`Store::suppression_keys`).
                if let Some(&key) = suppression_keys.first() {
                    audit::forget_lead(&mut self.audit.lock(), id, key);
                }
            }
            Mutation::Audit(entry) => audit::append(&mut self.audit.lock(), lsn, entry),
            Mutation::Marks { do_not_call, suppression_keys } => {
                for phone in do_not_call {
                    self.do_not_call.insert(phone.clone());
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
            Mutation::Claim { lead_id, lease } => self.apply_claim(lsn, lead_id, lease, None),
            Mutation::ScoredClaim { lead_id, lease, at_claim } => {
                self.apply_claim(lsn, lead_id, lease, Some(*at_claim))
            }
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
                dial.release(*lease);
            }),
            Mutation::UpsertAgents { at_ms, agents } => self.agents.write().upsert(*at_ms, agents),
            Mutation::SetPresence { agent, presence, at_ms } => {
                self.agents.write().set_presence(agent, *presence, *at_ms);
            }
        }
    }

    fn apply_claim(&self, lsn: u64, id: &LeadId, lease: &Lease, at_claim: Option<AtClaim>) {
        self.apply_dial(lsn, id, |dial| {
            self.agents.write().claimed(&lease.agent, lease.id, lease.claimed_at_ms, lease.expires_at_ms);
            dial.claim(lease.clone(), at_claim);
        })
    }

    fn apply_dial(&self, lsn: u64, id: &LeadId, change: impl FnOnce(&mut Dial)) {
        // Only in replay can the lead be gone: erased later in the log, as the snapshot shows.
        let Some(mut lead) = self.leads.get_mut(id) else { return };
        let dial = lead.dial.get_or_insert_default();
        if dial.lsn < lsn {
            dial.lsn = lsn;
            change(dial);
        }
    }

    fn apply_upsert(&self, lsn: u64, at_ms: i64, input: &LeadInput) {
        let attributes = self.intern_attributes(&input.attributes);
        let mut entry = self.leads.get_or_insert_with(&input.id, || Lead {
            lsn: 0,
            attributes_lsn: 0,
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
            attributes: Box::new([]),
            events: Vec::new(),
            time_zone: None,
            consent: Default::default(),
            profile: None,
            history: Vec::new(),
            dial: None,
        });
        let lead: &mut Lead = &mut entry;
        if lead.lsn >= lsn {
            return;
        }
        lead.lsn = lsn;
        lead.updated_at_ms = at_ms;
        lead.attributes = attributes;
        lead.attributes_lsn = lsn;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::AgentInput;
    use crate::dial::Lease;
    use crate::testing::{event, lead, open, revision};

    #[test]
    fn a_record_a_lead_already_reflects_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let upsert = |revision| Mutation::UpsertLeads { at_ms: 0, leads: vec![lead("a", revision)] };
        store.state.apply(5, &upsert(2.0));
        // Replay over a snapshot taken after lsn 5 meets the older record again.
        store.state.apply(3, &upsert(1.0));
        assert_eq!(revision(&store, "a"), Some(2.0));
        store.state.apply(6, &upsert(3.0));
        assert_eq!(revision(&store, "a"), Some(3.0));
    }

    #[test]
    fn events_count_once_by_fingerprint_and_need_their_lead() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.state.apply(1, &Mutation::UpsertLeads { at_ms: 0, leads: vec![lead("a", 1.0)] });
        let events = Mutation::RecordEvents { events: vec![event("a", "e1"), event("gone", "e2")] };
        store.state.apply(2, &events);
        store.state.apply(3, &events);
        assert_eq!(store.read_lead("a", |lead| lead.events.len()), Some(1));
        assert_eq!(store.state.event_count.load(Ordering::Relaxed), 1);
        assert_eq!(store.read_lead("a", |lead| lead.lsn), Some(3));
    }

    #[test]
    fn an_erasure_takes_the_lead_its_dialer_state_and_its_agents_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let agent = AgentInput { id: "ann".into(), name: "Ann".into(), skills: Default::default(), capacity: 3 };
        store.state.apply(1, &Mutation::UpsertAgents { at_ms: 0, agents: vec![agent] });
        store.state.apply(2, &Mutation::UpsertLeads { at_ms: 0, leads: vec![lead("a", 1.0)] });
        let lease =
            Lease { id: 3, agent: "ann".into(), campaign: "default".into(), claimed_at_ms: 0, expires_at_ms: i64::MAX };
        store.state.apply(3, &Mutation::Claim { lead_id: "a".into(), lease });
        assert_eq!(store.roster(|roster| roster.held_at(0, 1)), 1);

        store.state.apply(4, &Mutation::EraseLead { id: "a".into(), suppression_keys: vec![[7; 32]] });
        assert!(store.read_lead("a", |_| ()).is_none());
        assert!(store.read_dial("a", |_| ()).is_none());
        assert_eq!(store.roster(|roster| roster.held_at(0, 1)), 0);
        assert!(store.state.suppressed.contains(&[7; 32]));
        // A claim replayed after the erasure (the snapshot already lacks the lead) is dropped.
        let lease =
            Lease { id: 5, agent: "ann".into(), campaign: "default".into(), claimed_at_ms: 0, expires_at_ms: i64::MAX };
        store.state.apply(5, &Mutation::Claim { lead_id: "a".into(), lease });
        assert!(store.read_dial("a", |_| ()).is_none());
    }
}
