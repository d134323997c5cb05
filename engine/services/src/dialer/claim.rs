//! Claims: the best lead an agent may call now, checked again against the store and leased
//! under its writer lock.

use chrono::TimeZone;
use chrono_tz::Tz;
use compact_str::CompactString;

use super::eligibility::{self, Locale, Verdict};
use super::queue::{Pick, Queue, Rank};
use super::{Claimed, DialError, Dialer, Dry, Next};
use crate::generation::{CampaignRules, Generation};
use crate::policy::routing::{Access, LeadEnv};
use crate::scoring::pipeline::Band;
use leadscore_store::StoreError;
use leadscore_store::agents::{Presence, Skills};
use leadscore_store::lead::{Lead, LeadId};

impl Dialer {
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
        // How long after their creation new leads get their first call (speed to lead).
        let mut first_calls = Vec::new();
        let mut dry = None;
        // One reading of the clock for the whole call: its claims are microseconds apart.
        let now = self.clock.now_ms();
        while claimed.len() < room {
            let (picked, passed) = self.peek(&mut queue, &generation, campaign, agent, skills.as_ref(), now);
            let Some((id, rank, pick)) = picked else {
                let mut none = queue.dry(now, rules.callback_grace_ms, &mut |l| self.held_until(campaign, l, now));
                none.counts[eligibility::Reason::Reserved.index()] += passed;
                dry = Some(none);
                break;
            };
            let score = rank.score;
            let band = Band::of(score, &campaign.bands);
            let account_score = self.scoring.account_score(&id, &campaign.name);
            let at_claim = self.scoring.at_claim(&id, &campaign.name);
            let mut seen: Option<(Locale, u32, CompactString, Option<Tz>, i64)> = None;
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
                let attempts = dial.map_or(0, |d| d.attempts.len() as u32);
                seen = Some((locale.clone(), attempts, phone, lead.time_zone, lead.created_at_ms));
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
                    let (locale, attempts, phone, time_zone, created_at_ms) = seen.expect("the check ran");
                    if attempts == 0 {
                        first_calls.push(now - created_at_ms);
                    }
                    let wait = Verdict::Wait { until_ms: lease.expires_at_ms, reason: eligibility::Reason::Leased };
                    queue.place(rules, &id, rank, locale.clone(), wait);
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
                    queue.place(rules, &id, rank, locale, verdict);
                }
                Err(StoreError::NotFound(_)) => queue.remove(&id),
                Err(err) => return Err(self.unstage(&mut queue, &generation, campaign, claimed, err.into())),
            }
        }
        // Held before the log write: a change applied after it must find these leases.
        self.revocations.hold(claimed.iter().map(|c| (c.lead_id.clone(), c.lease.clone())), now);
        let logged = match claims.commit() {
            Ok(logged) => logged,
            Err(err) => return Err(self.unstage(&mut queue, &generation, campaign, claimed, err.into())),
        };
        // Other claims on this campaign need not wait for the sync.
        drop(queue);
        self.store.durable(logged)?;
        if !claimed.is_empty() {
            campaign.series.claims.increment(claimed.len() as u64);
            self.floor.claimed(&campaign.name, claimed.len() as u64, &first_calls, now);
        }
        Ok((claimed, dry))
    }

    /// What `agent` would be offered first in `campaign` now, claiming nothing: whether it
    /// comes before any ranked lead (a due callback, a new lead), and its value as the
    /// campaign ranks (its score, or its expected value now). A cluster node compares shards'
    /// heads and claims on the best. The claim checks again and may offer another lead of that
    /// shard.
    pub fn head(&self, campaign: &str, agent: &str) -> Result<Result<(f64, bool), Dry>, DialError> {
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign_or_error("campaign", campaign)?];
        let shared = self.queue(&campaign.name);
        let mut queue = shared.lock();
        if queue.built_for != Some(generation.version) {
            self.rebuild(&mut queue, shared.gate(), &generation, campaign);
        }
        let skills = self.routed_agent(agent)?.map(|(skills, _)| skills);
        let now = self.clock.now_ms();
        match self.peek(&mut queue, &generation, campaign, agent, skills.as_ref(), now) {
            (Some((id, rank, pick)), _) => {
                let weight = queue.locale_of(&id).and_then(|locale| self.contact_weight(campaign, locale, now));
                let weight = weight.unwrap_or(1.0);
                let first = pick != Pick::BestScore || rank.new_until.is_some();
                Ok(Ok((rank.key * weight, first)))
            }
            (None, passed) => {
                let mut none =
                    queue.dry(now, campaign.rules.callback_grace_ms, &mut |l| self.held_until(campaign, l, now));
                none.counts[eligibility::Reason::Reserved.index()] += passed;
                Ok(Err(none))
            }
        }
    }

    /// Brings due waits back into the queue, then picks what `agent` would be offered now
    /// (see `Queue::pick`), with the callable leads routing kept from it.
    fn peek(
        &self,
        queue: &mut Queue,
        generation: &Generation,
        campaign: &CampaignRules,
        agent: &str,
        skills: Option<&Skills>,
        now: i64,
    ) -> (Option<(LeadId, Rank, Pick)>, u64) {
        self.catch_up(queue, &generation.routing, campaign, now);
        let mut access = |chain: u64| match skills {
            None => Access::All,
            Some(skills) => generation.routing.access(chain, (agent, skills)),
        };
        let mut routable = |id: &LeadId, score: f64| match skills {
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
        let mut weight = |locale: &Locale| self.contact_weight(campaign, locale, now);
        let mut passed = 0;
        let picked = queue.pick(&campaign.rules, agent, now, &mut access, &mut routable, &mut weight, &mut passed);
        (picked, passed)
    }

    /// Claims that were not logged did not happen: their leads go back where they were judged
    /// to be before the claim.
    pub(super) fn unstage(
        &self,
        queue: &mut Queue,
        generation: &Generation,
        campaign: &CampaignRules,
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
    pub(super) fn routed_agent(&self, agent: &str) -> Result<Option<(Skills, u32)>, DialError> {
        self.store.roster(|roster| {
            if roster.rows.is_empty() {
                return Ok(None);
            }
            let now = self.clock.now_ms();
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
}
