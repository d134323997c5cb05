//! The dialer: the best lead an agent may call now, claimed exclusively; the calls' outcomes;
//! leases handed back. Every rule is checked at the moment of the claim, against the store,
//! under its writer lock: a lead that turned do-not-call, was erased or lost its consent a
//! moment ago is never offered, however it was queued.
//!
//! Queues follow scores: whoever changes a lead or rescores it calls `requeue` afterwards, with
//! no lock held, and the queue reads the lead's score from the index under its own lock.

pub mod eligibility;
pub mod floor;
mod queue;
pub mod revocations;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::TimeZone;
use chrono_tz::Tz;
use compact_str::CompactString;

use crate::generation::{Campaign, Generation, Generations};
use crate::policy::routing::{Access, LeadEnv, Policy};
use crate::routing::Router;
use crate::scoring::pipeline::Band;
use crate::scoring::{ScoreError, Scoring, Trigger};
use eligibility::{Context, Locale, Verdict};
use floor::Floor;
use leadscore_store::agents::{Presence, Skills};
use leadscore_store::clock::Clock;
use leadscore_store::dial::{Attempt, CallResult, Lease};
use leadscore_store::lead::{Lead, LeadId, Value};
use leadscore_store::sync::{Gate, Mutex, Rank, RwLock};
use leadscore_store::{Store, StoreError};
use queue::Queue;
pub use queue::{Dry, Pick, ZoneFigures};
use revocations::{Revocations, Revoked, Why};

/// Leads requeued under one hold of a queue's lock, so that a sweep's requeue of a million
/// leads lets claims in between.
const REQUEUE_CHUNK: usize = 256;
/// Placements a queue build makes between two beats of its gate.
const BUILD_BEAT: usize = 4096;

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
        })
    }

    /// Claims the best lead `agent` may call now in `campaign` and leases it, or says why
    /// there is none.
    pub fn next_lead(&self, campaign: &str, agent: &str) -> Result<Next, DialError> {
        self.next_leads(campaign, agent, 1).map(Next::of_one)
    }

    /// Claims the best leads `agent` may call now in `campaign`, up to `max` (and the agent's
    /// room below its capacity), best first, logged in one write; with fewer, also why there
    /// are no more.
    pub fn next_leads(
        &self,
        campaign: &str,
        agent: &str,
        max: usize,
    ) -> Result<(Vec<Claimed>, Option<Dry>), DialError> {
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign_or_error("campaign", campaign)?];
        let rules = &campaign.rules;
        let shared = self.queue(&campaign.name);
        let mut queue = shared.lock();
        if queue.built_for != Some(generation.version) {
            self.rebuild(&mut queue, shared.gate(), &generation, campaign);
        }
        let (skills, room) = match self.routed_agent(agent)? {
            Some((skills, room)) => (Some(skills), max.min(room as usize)),
            None => (None, max),
        };
        let mut claims = self.store.claims();
        let mut claimed = Vec::new();
        let mut dry = None;
        while claimed.len() < room {
            let now = self.clock.now_ms();
            for (id, score) in queue.due(now) {
                self.place(&mut queue, &generation.routing, campaign, &id, score, now);
            }
            let mut access = |chain: u64| match &skills {
                None => Access::All,
                Some(skills) => generation.routing.access(chain, (agent, skills)),
            };
            let mut routable = |id: &LeadId, score: f64| match &skills {
                None => true,
                Some(skills) => {
                    let account_score = self.scoring.account_score(id, &campaign.name);
                    self.store
                        .read_lead(id, |lead| {
                            let band = Band::of(score, &campaign.bands);
                            let lead = LeadEnv::new(&self.store, lead, band, score, account_score);
                            generation.routing.allows(&lead, (agent, skills), now)
                        })
                        .unwrap_or(false)
                }
            };
            let mut passed = 0;
            let Some((id, score, pick)) = queue.pick(rules, agent, now, &mut access, &mut routable, &mut passed) else {
                let mut none = queue.dry(now, rules.callback_grace_ms);
                none.counts[eligibility::Reason::Reserved.index()] += passed;
                dry = Some(none);
                break;
            };
            let band = Band::of(score, &campaign.bands);
            let account_score = self.scoring.account_score(&id, &campaign.name);
            let at_claim = self.scoring.at_claim(&id, &campaign.name);
            let mut seen: Option<(Locale, u32, CompactString, Option<Tz>)> = None;
            // The lease ends with the calling window: a call placed within it is legal.
            let mut dial_by_ms = i64::MAX;
            let staged = claims.claim(&id, agent, &campaign.name, rules.lease_ms, at_claim, |lead, dial| {
                let attribute = |lead: &Lead, name: &str| self.store.attribute(lead, name);
                let listed = |phone: &str| self.store.on_do_not_call_list(phone);
                let cx = self.context(campaign, (band, account_score), now, &attribute, &listed);
                let locale = self.locale(&generation.routing, campaign, lead, (score, account_score));
                let verdict = eligibility::judge(&cx, lead, dial);
                let window = rules.window_for(locale.region.as_deref()).check(locale.zone, now);
                let phone = lead.profile().map(|p| p.phone.clone()).unwrap_or_default();
                seen = Some((locale.clone(), dial.map_or(0, |d| d.attempts.len() as u32), phone, lead.time_zone));
                let taken_by_other = matches!(&verdict, Verdict::Ready(Some(c))
                    if c.agent.as_deref().is_some_and(|owner| owner != agent) && now < c.at_ms + rules.callback_grace_ms);
                match (&verdict, window) {
                    (Verdict::Ready(_), Ok(closes)) if !taken_by_other => {
                        dial_by_ms = closes;
                        Ok(closes)
                    }
                    _ => Err((locale, verdict)),
                }
            });
            match staged {
                Ok(Ok(lease)) => {
                    let (locale, attempts, phone, time_zone) = seen.expect("the check ran");
                    let wait = Verdict::Wait { until_ms: lease.expires_at_ms, reason: eligibility::Reason::Leased };
                    queue.place(rules, &id, score, locale.clone(), wait);
                    let local = |at: i64| locale.zone.timestamp_millis_opt(at).single().map(|t| t.to_rfc3339());
                    let (local_time, dial_by_local) = (local(now), local(dial_by_ms));
                    claimed.push(Claimed {
                        lease,
                        lead_id: id,
                        pick,
                        score,
                        band,
                        phone,
                        time_zone,
                        attempts,
                        local_time: local_time.unwrap_or_default(),
                        dial_by_ms,
                        dial_by_local: dial_by_local.unwrap_or_default(),
                    });
                }
                Ok(Err((locale, verdict))) => {
                    queue.place(rules, &id, score, locale, verdict);
                }
                Err(StoreError::NotFound(_)) => queue.remove(&id),
                Err(err) => return Err(self.unstage(&mut queue, &generation, campaign, claimed, err.into())),
            }
        }
        // Held before the log write: a change applied after it must find these leases.
        self.revocations.hold(claimed.iter().map(|c| (c.lead_id.clone(), c.lease.clone())));
        let logged = match claims.commit() {
            Ok(logged) => logged,
            Err(err) => return Err(self.unstage(&mut queue, &generation, campaign, claimed, err.into())),
        };
        // Other claims on this campaign need not wait for the sync.
        drop(queue);
        self.store.durable(logged);
        if !claimed.is_empty() {
            metrics::counter!("leadscore_dialer_claims_total", "campaign" => campaign.name.to_string())
                .increment(claimed.len() as u64);
            self.floor.claimed(&campaign.name, claimed.len() as u64, self.clock.now_ms());
        }
        Ok((claimed, dry))
    }

    /// Claims that were not logged did not happen: their leads go back where they were judged
    /// to be before the claim.
    fn unstage(
        &self,
        queue: &mut Queue,
        generation: &Generation,
        campaign: &Campaign,
        claimed: Vec<Claimed>,
        err: DialError,
    ) -> DialError {
        let now = self.clock.now_ms();
        for claimed in claimed {
            self.revocations.ended(&claimed.lead_id, claimed.lease.id);
            self.place(queue, &generation.routing, campaign, &claimed.lead_id, claimed.score, now);
        }
        err
    }

    /// The skills of an agent whose claims routing governs, and how many more leads it may
    /// hold: once agents are registered, every agent that claims must be, must not be offline,
    /// and must be below its capacity. `None` while no agent is registered: then the dialer
    /// offers any lead to anyone.
    fn routed_agent(&self, agent: &str) -> Result<Option<(Skills, u32)>, DialError> {
        let now = self.clock.now_ms();
        self.store.roster(|roster| {
            if roster.rows.is_empty() {
                return Ok(None);
            }
            let i = roster
                .find(agent)
                .ok_or_else(|| StoreError::UnknownAgent { field: "agent_id".into(), id: agent.into() })?;
            let row = &roster.rows[i];
            let (held, capacity) = (roster.held_at(i, now), row.agent.input.capacity);
            if row.agent.presence == Presence::Offline {
                return Err(DialError::AgentUnavailable(format!("agent {agent:?} is offline; set it available first")));
            }
            if held >= capacity {
                return Err(DialError::AgentUnavailable(format!(
                    "agent {agent:?} holds {held} leases, its capacity; report or release one first"
                )));
            }
            Ok(Some((row.agent.input.skills.clone(), capacity - held)))
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
        if !reported.duplicate {
            let labels = [("campaign", reported.campaign.to_string()), ("result", result.name().to_string())];
            metrics::counter!("leadscore_dialer_outcomes_total", &labels).increment(1);
            self.floor.reported(&reported.campaign, result, self.clock.now_ms());
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
        let recycle_at_ms = self.callable_at(&reported.campaign, &lead_id);
        Ok(Recorded { recycle_at_ms, attempts: reported.attempts })
    }

    /// When a lead may next be called in a campaign: as its queue placed it, or judged now.
    fn callable_at(&self, campaign: &str, id: &LeadId) -> Option<i64> {
        let now = self.clock.now_ms();
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

    /// Hands a leased lead back unused.
    pub fn release(&self, lease_id: &str) -> Result<(), DialError> {
        let (lease, lead_id) = parse_lease_id("lease_id", lease_id)?;
        let campaign =
            self.store.release(&lead_id, lease).map_err(|err| self.revoked_answer("lease_id", lease, err))?;
        self.revocations.ended(&lead_id, lease);
        metrics::counter!("leadscore_dialer_releases_total", "campaign" => campaign.to_string()).increment(1);
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
                self.store.read_dial(&id, |dial| {
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

    /// Builds, ahead of the first claim, the queues claims will need: those of campaigns
    /// dialled before (at start-up, from the store) and those already in use (after a
    /// configuration change). With millions of leads a build takes seconds, which the first
    /// agent of the day should not wait for.
    pub fn prepare(&self) {
        let generation = self.generations.current();
        let mut wanted: Vec<Arc<str>> = self.queues.read().keys().cloned().collect();
        for name in self.store.dialled_campaigns() {
            if let Some(index) = generation.campaign(&name) {
                wanted.push(generation.campaigns[index].name.clone());
            }
        }
        wanted.sort();
        wanted.dedup();
        for name in wanted {
            let Some(index) = generation.campaign(&name) else { continue };
            let shared = self.queue(&name);
            let mut queue = shared.lock();
            if queue.built_for != Some(generation.version) {
                self.rebuild(&mut queue, shared.gate(), &generation, &generation.campaigns[index]);
            }
        }
    }

    /// Whether a campaign's queue is built for the current configuration, so that a claim
    /// takes microseconds rather than the seconds a build of millions of leads takes.
    pub fn is_built(&self, campaign: &str) -> bool {
        let generation = self.generations.current();
        let Some(index) = generation.campaign(campaign) else { return true };
        self.built.lock().get(&generation.campaigns[index].name) == Some(&generation.version)
    }

    /// Whether a queue is being built: a claim, outcome or release may then wait for seconds.
    pub fn is_building(&self) -> bool {
        self.building.load(Ordering::SeqCst) > 0
    }

    /// The queue of a campaign, created empty (and built on first use) if new.
    fn queue(&self, campaign: &Arc<str>) -> Arc<Mutex<Queue>> {
        if let Some(queue) = self.queues.read().get(campaign) {
            return queue.clone();
        }
        let mut queues = self.queues.write();
        let new = || {
            let gate = Gate::new(format!("dialer queue of campaign {campaign}"));
            Arc::new(Mutex::watched(Rank::Queue, Queue::new(None), gate))
        };
        queues.entry(campaign.clone()).or_insert_with(new).clone()
    }

    /// Each campaign queue's size and its leads not callable now, by reason, for metrics.
    pub fn queue_figures(&self) -> Vec<QueueFigures> {
        let queues: Vec<(Arc<str>, Arc<Mutex<Queue>>)> =
            self.queues.read().iter().map(|(name, queue)| (name.clone(), queue.clone())).collect();
        let generation = self.generations.current();
        let now = self.clock.now_ms();
        queues
            .into_iter()
            .filter_map(|(name, queue)| {
                let rules = &generation.campaigns[generation.campaign(&name)?].rules;
                let mut queue = queue.lock();
                let dry = queue.dry(now, rules.callback_grace_ms);
                let ineligible = eligibility::Reason::ALL.map(|reason| (reason.name(), dry.counts[reason.index()]));
                Some(QueueFigures { campaign: name, leads: queue.len(), ineligible })
            })
            .collect()
    }

    /// The watchdog's gates on the campaign queues made so far.
    pub fn gates(&self) -> Vec<Arc<Gate>> {
        self.queues.read().values().filter_map(|queue| queue.gate().cloned()).collect()
    }

    /// Places every lead the campaign scores anew, under the current rules, beating the queue's
    /// gate as it goes: a build of millions of leads is slow, not stuck.
    fn rebuild(&self, queue: &mut Queue, gate: Option<&Arc<Gate>>, generation: &Generation, campaign: &Campaign) {
        let config_version = generation.version;
        let started = std::time::Instant::now();
        self.building.fetch_add(1, Ordering::SeqCst);
        *queue = Queue::new(Some(config_version));
        let now = self.clock.now_ms();
        for (placed, (id, score)) in self.scoring.ranked(&campaign.name).into_iter().enumerate() {
            self.place(queue, &generation.routing, campaign, &id, score, now);
            if placed % BUILD_BEAT == 0 {
                gate.inspect(|gate| gate.beat());
            }
        }
        self.built.lock().insert(campaign.name.clone(), config_version);
        self.building.fetch_sub(1, Ordering::SeqCst);
        tracing::info!(campaign = %campaign.name, leads = queue.len(), elapsed_ms = started.elapsed().as_millis() as u64, "dialer queue built");
    }

    /// Resolves when a lead next becomes callable in any campaign. Create it before looking,
    /// then await it after finding nothing, so that no change in between is missed.
    pub fn ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }

    /// Judges a lead anew and puts it where it belongs; forgets it if it is gone.
    fn place(&self, queue: &mut Queue, policy: &Policy, campaign: &Campaign, id: &LeadId, score: f64, now: i64) {
        match self.assess(policy, campaign, id, score, now) {
            Some((locale, verdict)) => {
                if queue.place(&campaign.rules, id, score, locale, verdict) {
                    self.ready.notify_waiters();
                }
            }
            None => queue.remove(id),
        }
    }

    /// Judges these leads anew in every queue, with the scores the index holds for them now; a
    /// lead no longer scored in a campaign (erased, or no longer in it) leaves its queue.
    /// Called after a change, with no lock held. The score is read under the queue's lock, so
    /// the last requeue of a lead places it with its latest score, in whatever order the
    /// changes finished.
    pub fn requeue(&self, ids: &[LeadId]) {
        if ids.is_empty() {
            return;
        }
        let queues: Vec<(Arc<str>, Arc<Mutex<Queue>>)> =
            self.queues.read().iter().map(|(name, queue)| (name.clone(), queue.clone())).collect();
        if queues.is_empty() {
            return;
        }
        let generation = self.generations.current();
        for (name, queue) in queues {
            let Some(campaign) = generation.campaign(&name).map(|c| &generation.campaigns[c]) else { continue };
            for chunk in ids.chunks(REQUEUE_CHUNK) {
                let mut queue = queue.lock();
                let now = self.clock.now_ms();
                for id in chunk {
                    match self.scoring.score_of(id, &name) {
                        Some((score, _)) => self.place(&mut queue, &generation.routing, campaign, id, score, now),
                        None => queue.remove(id),
                    }
                }
            }
        }
    }

    /// The lead's locale and verdict under a campaign's rules; `None` if it no longer exists.
    fn assess(
        &self,
        policy: &Policy,
        campaign: &Campaign,
        id: &str,
        score: f64,
        now: i64,
    ) -> Option<(Locale, Verdict)> {
        let band = Band::of(score, &campaign.bands);
        let account_score = self.scoring.account_score(id, &campaign.name);
        let attribute = |lead: &Lead, name: &str| self.store.attribute(lead, name);
        let listed = |phone: &str| self.store.on_do_not_call_list(phone);
        let cx = self.context(campaign, (band, account_score), now, &attribute, &listed);
        self.store.read_lead(id, |lead| {
            let verdict = match self.store.read_dial(id, |dial| eligibility::judge(&cx, lead, Some(dial))) {
                Some(verdict) => verdict,
                None => eligibility::judge(&cx, lead, None),
            };
            (self.locale(policy, campaign, lead, (score, account_score)), verdict)
        })
    }

    /// Where a lead's window comes from and which routing rules hold for it: its queue group.
    /// `scores` are the lead's and its account's in the campaign.
    fn locale(&self, policy: &Policy, campaign: &Campaign, lead: &Lead, scores: (f64, Option<f64>)) -> Locale {
        let (score, account_score) = scores;
        let attribute = |lead: &Lead, name: &str| self.store.attribute(lead, name);
        let mut locale = eligibility::locale(&campaign.rules, lead, &attribute);
        let band = Band::of(score, &campaign.bands);
        locale.chain = policy.chain(&LeadEnv::new(&self.store, lead, band, score, account_score));
        locale
    }

    /// The pair is the lead's band and its account's score in the campaign.
    fn context<'a>(
        &self,
        campaign: &'a Campaign,
        (band, account_score): (Band, Option<f64>),
        now_ms: i64,
        attribute: &'a dyn Fn(&Lead, &str) -> Option<Value>,
        on_do_not_call_list: &'a dyn Fn(&str) -> bool,
    ) -> Context<'a> {
        let rules = &campaign.rules;
        Context { rules, campaign: &campaign.name, band, account_score, now_ms, attribute, on_do_not_call_list }
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
    format!("{lease}-{lead_id}")
}

fn parse_lease_id(field: &'static str, text: &str) -> Result<(u64, LeadId), DialError> {
    text.split_once('-')
        .and_then(|(lsn, lead)| Some((lsn.parse().ok()?, LeadId::from(lead))))
        .filter(|(_, lead)| !lead.is_empty())
        .ok_or_else(|| DialError::Invalid { field, rule: format!("not a lease id: {text:?}") })
}
