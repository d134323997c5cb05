//! The dialer: the best lead an agent may call now, claimed exclusively; the calls' outcomes;
//! leases handed back. Every rule is checked at the moment of the claim, against the store,
//! under its writer lock: a lead that turned do-not-call, was erased or lost its consent a
//! moment ago is never offered, however it was queued.
//!
//! Queues follow scores: whoever changes a lead or rescores it calls `requeue` afterwards, with
//! no lock held, and the queue reads the lead's score from the index under its own lock.

mod claim;
pub mod contact_rates;
pub mod eligibility;
pub mod floor;
mod ordering;
mod queue;
mod queues;
pub mod revocations;
pub mod standing;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use chrono_tz::Tz;
use compact_str::CompactString;

use crate::generation::{CampaignSeries, Generations};
use crate::routing::Router;
use crate::scoring::pipeline::Band;
use crate::scoring::{ScoreError, Scoring, Trigger};
use contact_rates::ContactRates;
use eligibility::Verdict;
use floor::Floor;
use leadscore_store::clock::Clock;
use leadscore_store::dial::{Attempt, CallResult, Lease};
use leadscore_store::lead::LeadId;
use leadscore_store::sync::{Mutex, Rank, RwLock};
use leadscore_store::{Store, StoreError};
use queue::Queue;
pub use queue::{Dry, Pick, ZoneFigures};
use revocations::{Revocations, Revoked, Why};

/// Leads requeued under one hold of a queue's lock, so that a sweep's requeue of a million
/// leads lets claims in between.
pub(super) const REQUEUE_CHUNK: usize = 256;
/// Placements a queue build makes between two beats of its gate.
pub(super) const BUILD_BEAT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error("{field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    /// The agent may not take a lead now (offline, or at capacity).
    #[error("agent_id: {0}")]
    AgentUnavailable(String),
    /// The lease was revoked: its lead must not be called.
    #[error(
        "{field}: lease {lease} was revoked ({}): the lead must not be called; nothing was recorded",
        why.name()
    )]
    Revoked { field: &'static str, lease: u64, why: Why },
}

/// A lead leased to an agent.
#[derive(Debug)]
pub struct Claimed {
    pub lease: Lease,
    pub lead_id: LeadId,
    pub pick: Pick,
    /// The score and band the lead was ranked by.
    pub score: f64,
    pub band: Band,
    /// What dialling needs of the lead, as it was at the claim.
    pub phone: CompactString,
    pub time_zone: Option<Tz>,
    /// Calls made to the lead before this one.
    pub attempts: u32,
    /// The lead's local time at the claim, ISO 8601 with offset.
    pub local_time: String,
    /// The call must be placed before this instant: its calling window closes then.
    pub dial_by_ms: i64,
    /// The same instant in the lead's local time, ISO 8601 with offset.
    pub dial_by_local: String,
}

#[derive(Debug)]
pub enum Next {
    Claimed(Claimed),
    Dry(Dry),
}

impl Next {
    /// The one claim of a pass of one, or why there was none.
    pub fn of_one((mut claimed, dry): (Vec<Claimed>, Option<Dry>)) -> Self {
        match (claimed.pop(), dry) {
            (Some(claimed), _) => Next::Claimed(claimed),
            (None, Some(dry)) => Next::Dry(dry),
            (None, None) => unreachable!("a pass that claims nothing says why"),
        }
    }
}

/// A call's disposition, as a dialer reports it.
#[derive(Clone, Debug)]
pub struct Report {
    pub lease_id: String,
    pub result: CallResult,
    pub at_ms: i64,
    /// For a callback: when, and whether only the same agent may take it.
    pub callback: Option<(i64, bool)>,
    pub talk_ms: u64,
    pub note: String,
}

/// What an outcome left the lead with.
#[derive(Debug)]
pub struct Recorded {
    /// When the lead may next be called in the lease's campaign; `None` if never.
    pub recycle_at_ms: Option<i64>,
    pub attempts: u32,
}

#[derive(Debug)]
pub struct Dialer {
    store: Arc<Store>,
    scoring: Arc<Scoring>,
    /// The current configuration: campaigns, their contact rules, and routing's policy.
    generations: Arc<Generations>,
    router: Arc<Router>,
    clock: Arc<dyn Clock>,
    /// Built on a campaign's first claim, then kept in step by `requeue`.
    queues: RwLock<HashMap<Arc<str>, Arc<Mutex<Queue>>>>,
    /// The configuration version each queue was last built for, readable while a build runs.
    built: Mutex<HashMap<Arc<str>, u64>>,
    /// Builds under way: while one holds its queue, changes to that queue's leads wait.
    building: AtomicUsize,
    /// Woken whenever a lead becomes callable, so hopper streams waiting for one try again.
    ready: tokio::sync::Notify,
    /// Claims and outcomes per minute, for the wallboard.
    floor: Floor,
    /// Open leases, and the hoppers to tell when one must end.
    revocations: Revocations,
    /// When people answer, learned from the outcomes.
    contact_rates: ContactRates,
}

impl Dialer {
    pub fn start(
        store: Arc<Store>,
        scoring: Arc<Scoring>,
        generations: Arc<Generations>,
        router: Arc<Router>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            scoring,
            generations,
            router,
            clock,
            queues: RwLock::new(Rank::QueueMap, HashMap::new()),
            built: Mutex::new(Rank::QueueBuilt, HashMap::new()),
            building: AtomicUsize::new(0),
            ready: Default::default(),
            floor: Floor::default(),
            revocations: Revocations::default(),
            contact_rates: ContactRates::default(),
        })
    }

    /// Records a call's disposition and ends its lease.
    pub fn report(&self, report: Report) -> Result<Recorded, DialError> {
        let (lease, lead_id) = parse_lease_id("outcome.lease_id", &report.lease_id)?;
        let attempt = Attempt {
            lease,
            agent: CompactString::default(),
            campaign: CompactString::default(),
            at_ms: report.at_ms,
            result: report.result,
            talk_ms: report.talk_ms,
            note: report.note,
            segment: CompactString::default(),
            arm: None,
        };
        // The call counts for routing in the lead's segment as it is now, and for the A/B arm
        // of the decision that sent the lead to this agent. Both are read before the store's
        // writer lock is taken: a lease's agent and campaign never change, and the store checks
        // the lease again under its lock.
        let held = self.store.open_lease(&lead_id, lease);
        let label = held.as_ref().map_or_else(Default::default, |lease| {
            let band = self.scoring.score_of(&lead_id, &lease.campaign).map_or(Band::Unqualified, |(_, band)| band);
            (CompactString::from(band.name()), self.router.arm_of_call(&lead_id, &lease.agent))
        });
        let result = attempt.result;
        let reported = self
            .store
            .report_outcome(&lead_id, attempt, report.callback, label)
            .map_err(|err| self.revoked_answer("outcome.lease_id", lease, err))?;
        self.revocations.ended(&lead_id, lease);
        let ids = std::slice::from_ref(&lead_id);
        let now = self.clock.now_ms();
        if !reported.duplicate {
            self.series(&reported.campaign, |series| series.outcome(result).increment(1));
            self.floor.reported(&reported.campaign, result, report.talk_ms, now);
            self.count_call(&lead_id, &reported.campaign, reported.attempts, (result, report.at_ms));
            if let Some(lease) = &held {
                self.router.called(&lead_id, &lease.agent);
            }
            // The lead changed (its calls, and the event the scorers weigh).
            self.scoring.rescore(ids, Trigger::Events);
        }
        if result == CallResult::DoNotCall && !reported.duplicate {
            // Its number is on the internal list now: other leads with it must not be dialled.
            self.recheck_leases();
        }
        self.requeue(ids);
        let recycle_at_ms = self.callable_at(&reported.campaign, &lead_id, now);
        Ok(Recorded { recycle_at_ms, attempts: reported.attempts })
    }

    /// When a lead may next be called in a campaign: as its queue placed it, or judged at `now`.
    fn callable_at(&self, campaign: &str, id: &LeadId, now: i64) -> Option<i64> {
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign(campaign)?];
        let queue = self.queues.read().get(&campaign.name).cloned();
        if let Some(known) = queue.and_then(|queue| queue.lock().callable_at(id, now)) {
            return known;
        }
        let score = self.scoring.score_of(id, &campaign.name).map_or(0.0, |(score, _)| score);
        match self.assess(&generation.routing, campaign, id, score, now)?.1 {
            Verdict::Ready(_) => Some(now),
            Verdict::Wait { until_ms, .. } => Some(until_ms),
            Verdict::Never(_) => None,
        }
    }

    /// Counts in a campaign's metrics; a campaign the configuration no longer has gets its
    /// series resolved for the once.
    fn series(&self, campaign: &str, count: impl FnOnce(&CampaignSeries)) {
        let generation = self.generations.current();
        match generation.campaign(campaign) {
            Some(known) => count(&generation.campaigns[known].series),
            None => count(&CampaignSeries::of(campaign)),
        }
    }

    /// Hands a leased lead back unused.
    pub fn release(&self, lease_id: &str) -> Result<(), DialError> {
        let (lease, lead_id) = parse_lease_id("lease_id", lease_id)?;
        let campaign =
            self.store.release(&lead_id, lease).map_err(|err| self.revoked_answer("lease_id", lease, err))?;
        self.revocations.ended(&lead_id, lease);
        self.series(&campaign, |series| series.releases.increment(1));
        self.requeue(std::slice::from_ref(&lead_id));
        Ok(())
    }

    /// The answer to an outcome or release the store refused: that the lease was revoked, if
    /// it was (and the store only knows it as ended), else the store's own answer.
    fn revoked_answer(&self, field: &'static str, lease: u64, err: StoreError) -> DialError {
        match (&err, self.revocations.of_lease(lease)) {
            (StoreError::UnknownLease { .. }, Some(revoked)) => DialError::Revoked { field, lease, why: revoked.why },
            _ => err.into(),
        }
    }

    /// The book of open leases and revocations, which hoppers listen to.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Counts a lease a hopper held past its calling window's close, which ended it.
    pub fn window_closed(&self, campaign: &str) {
        self.floor.revoked(campaign, Why::WindowClosed, self.clock.now_ms());
        self.revocations.count(Why::WindowClosed);
    }

    /// After a change to these leads: revokes the open leases of those that must no longer be
    /// called, before the change is acknowledged (see `revocations`).
    pub fn revoke_unfit(&self, ids: &[LeadId]) {
        self.revoke_where_unfit(self.revocations.held_of(ids));
    }

    /// The same for every open lease: after a change that can touch any lead (a number put on
    /// the internal do-not-call list, the campaigns' rules).
    pub fn recheck_leases(&self) {
        self.revoke_where_unfit(self.revocations.all_held(self.clock.now_ms()));
    }

    /// Judges each open lease's lead under its campaign's rules as they are now, and ends the
    /// leases of those that must not be called: logged like a release, then told to the
    /// agent's hoppers. No lock is held while judging, logging or telling.
    fn revoke_where_unfit(&self, held: Vec<(LeadId, Lease)>) {
        if held.is_empty() {
            return;
        }
        let generation = self.generations.current();
        let listed = |phone: &str| self.store.on_do_not_call_list(phone);
        for (id, lease) in held {
            let Some(campaign) = generation.campaign(&lease.campaign).map(|c| &generation.campaigns[c]) else {
                continue;
            };
            let judged = self.store.read_lead(&id, |lead| {
                lead.dial.as_deref().map(|dial| {
                    let open = dial.open_lease(lease.id).is_some();
                    (open, eligibility::must_not_call(&campaign.rules, lead, Some(dial), &listed))
                })
            });
            let why = match judged {
                // Erased: the erasure ended the lease with the rest of the lead.
                None => Why::Erased,
                Some(Some((true, Some(why)))) => match self.store.release(&id, lease.id) {
                    Ok(_) => why,
                    // Reported or released meanwhile.
                    Err(_) => {
                        self.revocations.ended(&id, lease.id);
                        continue;
                    }
                },
                Some(Some((false, _))) | Some(None) => {
                    self.revocations.ended(&id, lease.id);
                    continue;
                }
                Some(Some((true, None))) => continue,
            };
            let now = self.clock.now_ms();
            tracing::info!(lease = lease.id, agent = %lease.agent, campaign = %lease.campaign, reason = why.name(), "lease revoked");
            self.floor.revoked(&lease.campaign, why, now);
            self.revocations.revoked(Revoked {
                lease: lease.id,
                lead_id: id,
                agent: lease.agent,
                campaign: lease.campaign,
                why,
                at_ms: now,
            });
        }
    }
}

/// A campaign queue's figures for metrics.
#[derive(Debug)]
pub struct QueueFigures {
    pub campaign: Arc<str>,
    /// Leads the queue holds, callable or waiting.
    pub leads: usize,
    pub ineligible: [(&'static str, u64); eligibility::Reason::COUNT],
}

/// The text that names a lease: its claim's sequence number, then the lead's id.
pub fn lease_id(lease: u64, lead_id: &str) -> String {
    let mut digits = itoa::Buffer::new();
    let lease = digits.format(lease);
    let mut id = String::with_capacity(lease.len() + 1 + lead_id.len());
    id.extend([lease, "-", lead_id]);
    id
}

pub(super) fn parse_lease_id(field: &'static str, text: &str) -> Result<(u64, LeadId), DialError> {
    text.split_once('-')
        .and_then(|(lsn, lead)| Some((lsn.parse().ok()?, LeadId::from(lead))))
        .filter(|(_, lead)| !lead.is_empty())
        .ok_or_else(|| DialError::Invalid { field, rule: format!("not a lease id: {text:?}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::contact::Rules;
    use crate::testing::{Fixture, NOON_MS, fixture};

    fn claim(f: &Fixture, agent: &str) -> Option<Claimed> {
        match f.dialer.next_lead("", agent).unwrap() {
            Next::Claimed(claimed) => Some(claimed),
            Next::Dry(_) => None,
        }
    }

    fn report(f: &Fixture, claimed: &Claimed, result: CallResult) -> Result<Recorded, DialError> {
        let lease_id = lease_id(claimed.lease.id, &claimed.lead_id);
        let at_ms = f.clock.now_ms();
        f.dialer.report(Report { lease_id, result, at_ms, callback: None, talk_ms: 0, note: String::new() })
    }

    #[test]
    fn two_agents_never_get_the_same_lead() {
        let f = fixture(&[("a", "+15550000001"), ("b", "+15550000002")]);
        let (ann, bob) = (claim(&f, "ann").unwrap(), claim(&f, "bob").unwrap());
        assert_ne!(ann.lead_id, bob.lead_id);
        assert!(claim(&f, "cid").is_none(), "both leads are leased");
        let Next::Dry(dry) = f.dialer.next_lead("", "cid").unwrap() else { unreachable!() };
        assert_eq!(dry.counts[eligibility::Reason::Leased.index()], 2);
        // Released, a lead is offered again at once.
        f.dialer.release(&lease_id(ann.lease.id, &ann.lead_id)).unwrap();
        assert_eq!(claim(&f, "cid").unwrap().lead_id, ann.lead_id);
    }

    #[test]
    fn a_number_that_asked_not_to_be_called_is_never_offered_again_though_it_was_queued() {
        // Two leads share a number; both are queued before the first call.
        let f = fixture(&[("a", "+15550000001"), ("b", "+15550000001"), ("c", "+15550000003")]);
        let first = claim(&f, "ann").unwrap();
        assert_eq!(report(&f, &first, CallResult::DoNotCall).unwrap().recycle_at_ms, None);
        assert!(f.store.on_do_not_call_list("+15550000001"));
        let offered: Vec<LeadId> = std::iter::from_fn(|| claim(&f, "ann").map(|c| c.lead_id)).collect();
        assert_eq!(offered, [LeadId::from("c")], "the lead sharing the number is skipped at the claim");
    }

    #[test]
    fn an_unanswered_lead_rests_and_comes_back_when_its_rest_is_over() {
        let f = fixture(&[("a", "+15550000001")]);
        let first = claim(&f, "ann").unwrap();
        let rest = Rules::compile("c", &Default::default(), &Default::default()).unwrap().recycle_ms.no_answer;
        let recorded = report(&f, &first, CallResult::NoAnswer).unwrap();
        assert_eq!((recorded.recycle_at_ms, recorded.attempts), (Some(NOON_MS + rest), 1));
        let Next::Dry(dry) = f.dialer.next_lead("", "ann").unwrap() else { panic!("the lead rests") };
        assert_eq!(dry.next_at_ms, Some(NOON_MS + rest));
        f.clock.set_ms(NOON_MS + rest);
        let again = claim(&f, "ann").unwrap();
        assert_eq!((again.lead_id.as_str(), again.attempts), ("a", 1));
        // A second report of the first lease changes nothing.
        assert!(report(&f, &first, CallResult::Converted).is_err());
    }

    #[test]
    fn claims_stop_when_the_calling_window_shuts_and_a_lease_ends_with_it() {
        let f = fixture(&[("a", "+15550000001")]);
        let claimed = claim(&f, "ann").unwrap();
        // The lease may outlast the window, but the call must be placed before it shuts.
        let closes = NOON_MS + 9 * 3_600_000;
        assert!(claimed.dial_by_ms <= closes, "{} > {closes}", claimed.dial_by_ms);
        f.dialer.release(&lease_id(claimed.lease.id, &claimed.lead_id)).unwrap();
        f.clock.set_ms(closes);
        let Next::Dry(dry) = f.dialer.next_lead("", "ann").unwrap() else { panic!("the window is shut") };
        assert_eq!(dry.counts[eligibility::Reason::OutsideWindow.index()], 1);
        assert_eq!(dry.next_at_ms, Some(NOON_MS + 20 * 3_600_000), "08:00 the next morning");
    }
}
