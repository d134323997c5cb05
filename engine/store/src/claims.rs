//! The dialer's writes: claims staged under the writer lock and committed together, call
//! outcomes and releases, each checked against the lead's dialer state as logged.

use compact_str::CompactString;

use super::agents::Arm;
use super::dial::{AtClaim, Attempt, Callback, Dial, Lease};
use super::lead::Lead;
use super::mutation::{EventInput, Mutation, OutcomeRecord, fingerprint_of};
use super::{Logged, Store, StoreError, Writer};
use crate::sync::MutexGuard;

/// Claims staged under the writer lock, logged and applied by `commit`; dropped uncommitted,
/// none of them happened.
pub struct Claims<'s> {
    store: &'s Store,
    writer: MutexGuard<'s, Writer>,
    staged: Vec<Mutation>,
}

impl Claims<'_> {
    /// Stages a lease of a lead to an agent for `lease_ms`, unless `check` (which sees the lead
    /// and its dialer state as logged) gives a reason not to; otherwise `check` gives the
    /// instant the lease must end by (its calling window's close), if that comes sooner. A
    /// lead is staged at most once. What scoring said of the lead (`at_claim`) is logged with
    /// the claim.
    #[allow(clippy::too_many_arguments)]
    pub fn claim<R>(
        &mut self,
        id: &str,
        agent: &str,
        campaign: &str,
        lease_ms: i64,
        at_claim: Option<AtClaim>,
        check: impl FnOnce(&Lead, Option<&Dial>) -> Result<i64, R>,
    ) -> Result<Result<Lease, R>, StoreError> {
        let state = &self.store.state;
        let checked = {
            let Some(lead) = state.leads.get(id) else {
                return Err(StoreError::NotFound(id.into()));
            };
            check(&lead, lead.dial.as_deref())
        };
        let ends_by_ms = match checked {
            Ok(ends_by_ms) => ends_by_ms,
            Err(reason) => return Ok(Err(reason)),
        };
        debug_assert!(!self.staged.iter().any(|m| matches!(m,
            Mutation::Claim { lead_id, .. } | Mutation::ScoredClaim { lead_id, .. } if lead_id == id)));
        let now = self.store.clock.now_ms();
        let lease = Lease {
            id: self.writer.last_lsn + 1 + self.staged.len() as u64,
            agent: agent.into(),
            campaign: campaign.into(),
            claimed_at_ms: now,
            expires_at_ms: (now + lease_ms).min(ends_by_ms),
        };
        let (lead_id, claimed) = (id.into(), lease.clone());
        self.staged.push(match at_claim {
            Some(at_claim) => Mutation::ScoredClaim { lead_id, lease: claimed, at_claim },
            None => Mutation::Claim { lead_id, lease: claimed },
        });
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

impl Store {
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
        let Some(lead) = self.state.leads.get(id) else {
            return Err(match self.erased(id) {
                true => StoreError::ErasedDuringLease { field: "outcome.lease_id".into(), lease: attempt.lease },
                false => StoreError::NotFound(id.into()),
            });
        };
        let no_dial = Dial::default();
        // Read in place: the shard stays locked until `lead` is dropped, before the commit.
        let dial = lead.dial.as_deref().unwrap_or(&no_dial);
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
        let room =
            lead.events.len() < self.options.max_events_per_lead && self.state.event_kinds.room_for([kind]).is_ok();
        let event = room.then(|| EventInput {
            lead_id: id.into(),
            fingerprint: fingerprint_of(&["leadscore:lease:", itoa::Buffer::new().format(attempt.lease)]),
            kind: kind.into(),
            at_ms: attempt.at_ms,
            value: attempt.talk_ms as f64 / 1000.0,
            properties: Vec::new(),
        });
        let phone = lead.profile().map(|p| p.phone.clone()).unwrap_or_default();
        let campaign = attempt.campaign.clone();
        drop(lead);
        let mutation =
            Mutation::Outcome(Box::new(OutcomeRecord { lead_id: id.into(), attempt, callback, event, phone }));
        self.commit(writer, &mutation)?;
        Ok(Reported { campaign, attempts: attempts + 1, duplicate: false })
    }

    /// Ends an open lease without a call; returns its campaign.
    pub fn release(&self, id: &str, lease: u64) -> Result<CompactString, StoreError> {
        let writer = self.writer.lock();
        let open = self.read_dial(id, |dial| dial.open_lease(lease).map(|l| l.campaign.clone())).flatten();
        let Some(campaign) = open else {
            let field = "lease_id".into();
            return Err(match self.erased(id) {
                true => StoreError::ErasedDuringLease { field, lease },
                false => StoreError::UnknownLease { field, lease, lead: id.into() },
            });
        };
        self.commit(writer, &Mutation::Release { lead_id: id.into(), lease })?;
        Ok(campaign)
    }

    /// The open lease with this id on a lead, if any: who holds it, in which campaign.
    pub fn open_lease(&self, id: &str, lease: u64) -> Option<Lease> {
        self.read_dial(id, |dial| dial.open_lease(lease).cloned()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dial::CallResult;
    use crate::testing::{NOW_MS, lead, open};

    const LEASE_MS: i64 = 60_000;

    fn attempt(lease: u64, result: CallResult) -> Attempt {
        Attempt {
            lease,
            agent: Default::default(),
            campaign: Default::default(),
            at_ms: NOW_MS,
            result,
            talk_ms: 0,
            note: String::new(),
            segment: Default::default(),
            arm: None,
        }
    }

    fn claim(store: &Store, id: &str) -> Lease {
        let mut claims = store.claims();
        let lease = claims.claim(id, "ann", "default", LEASE_MS, None, |_, _| Ok::<_, ()>(i64::MAX)).unwrap().unwrap();
        store.durable(claims.commit().unwrap()).unwrap();
        lease
    }

    #[test]
    fn a_lease_ends_by_the_instant_its_check_gives_if_sooner() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.upsert_leads(vec![lead("a", 1.0), lead("b", 1.0)]).unwrap();
        let mut claims = store.claims();
        let soon = claims.claim("a", "ann", "default", LEASE_MS, None, |_, _| Ok::<_, ()>(NOW_MS + 1_000));
        let late = claims.claim("b", "ann", "default", LEASE_MS, None, |_, _| Ok::<_, ()>(NOW_MS + 2 * LEASE_MS));
        assert_eq!(soon.unwrap().unwrap().expires_at_ms, NOW_MS + 1_000);
        assert_eq!(late.unwrap().unwrap().expires_at_ms, NOW_MS + LEASE_MS);
    }

    #[test]
    fn staged_claims_hold_only_once_committed_and_number_as_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.upsert_leads(vec![lead("a", 1.0), lead("b", 1.0), lead("c", 1.0)]).unwrap();
        let before = store.stats().last_lsn;
        let mut claims = store.claims();
        let a = claims.claim("a", "ann", "default", LEASE_MS, None, |_, _| Ok::<_, ()>(i64::MAX)).unwrap().unwrap();
        let b = claims.claim("b", "ann", "default", LEASE_MS, None, |_, _| Ok::<_, ()>(i64::MAX)).unwrap().unwrap();
        // The refusal sees the lead and its dialer state as logged.
        let refused = claims.claim("c", "ann", "default", LEASE_MS, None, |lead, dial| {
            assert!(dial.is_none());
            if lead.lsn > 0 { Err("not today") } else { Ok(i64::MAX) }
        });
        assert_eq!(refused.unwrap(), Err("not today"));
        assert!(matches!(
            claims.claim("zz", "ann", "default", LEASE_MS, None, |_, _| Ok::<_, ()>(i64::MAX)),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!((a.id, b.id), (before + 1, before + 2));
        assert_eq!(a.expires_at_ms, NOW_MS + LEASE_MS);
        store.durable(claims.commit().unwrap()).unwrap();
        assert_eq!(store.open_lease("a", a.id), Some(a));
        assert_eq!(store.stats().last_lsn, before + 2);

        let mut dropped = store.claims();
        dropped.claim("c", "ann", "default", LEASE_MS, None, |_, _| Ok::<_, ()>(i64::MAX)).unwrap().unwrap();
        drop(dropped);
        assert!(store.read_dial("c", |_| ()).is_none());
        assert_eq!(store.stats().last_lsn, before + 2);
    }

    #[test]
    fn an_outcome_ends_its_lease_once_and_becomes_a_call_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.upsert_leads(vec![lead("a", 1.0)]).unwrap();
        let lease = claim(&store, "a");
        let label = || (CompactString::from("warm"), None);
        let reported = store.report_outcome("a", attempt(lease.id, CallResult::NoAnswer), None, label()).unwrap();
        assert!(!reported.duplicate);
        assert_eq!((reported.campaign.as_str(), reported.attempts), ("default", 1));
        assert_eq!(store.open_lease("a", lease.id), None);
        let kinds =
            store.read_lead("a", |lead| lead.events.iter().map(|e| store.event_kind(e.kind())).collect::<Vec<_>>());
        assert_eq!(kinds.unwrap(), [Arc::from("call:no_answer")]);
        let recorded = store.read_dial("a", |dial| dial.attempts[0].clone()).unwrap();
        assert_eq!((recorded.agent.as_str(), recorded.segment.as_str()), ("ann", "warm"));

        // The same report again changes nothing; another result for the same lease is refused.
        let again = store.report_outcome("a", attempt(lease.id, CallResult::NoAnswer), None, label()).unwrap();
        assert!(again.duplicate);
        let other = store.report_outcome("a", attempt(lease.id, CallResult::Busy), None, label());
        assert!(matches!(other, Err(StoreError::LeaseEnded { result: "no_answer", .. })), "{other:?}");
        let unknown = store.report_outcome("a", attempt(lease.id + 100, CallResult::Busy), None, label());
        assert!(matches!(unknown, Err(StoreError::UnknownLease { .. })), "{unknown:?}");
        assert_eq!(store.read_dial("a", |dial| dial.attempts.len()), Some(1));
    }

    #[test]
    fn a_release_ends_an_open_lease_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.upsert_leads(vec![lead("a", 1.0)]).unwrap();
        let lease = claim(&store, "a");
        store.release("a", lease.id).unwrap();
        assert_eq!(store.open_lease("a", lease.id), None);
        assert!(matches!(store.release("a", lease.id), Err(StoreError::UnknownLease { .. })));
        assert_eq!(store.read_dial("a", |dial| dial.attempts.len()), Some(0));
    }
}
