//! Keeping each campaign's queue in step with the store and the scores: built on a campaign's
//! first claim (or ahead, at start-up), and every changed or rescored lead placed again.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::contact_rates::segment_of;
use super::eligibility::{self, Locale, Situation, Verdict};
use super::queue::Queue;
use super::{BUILD_BEAT, Dialer, QueueFigures, REQUEUE_CHUNK};
use crate::generation::{CampaignRules, Generation};
use crate::policy::routing::{LeadEnv, Policy};
use crate::scoring::pipeline::Band;
use leadscore_config::DialingOrder;
use leadscore_store::lead::{Lead, LeadId, Value};
use leadscore_store::sync::{Gate, Mutex, Rank};

impl Dialer {
    /// Builds, ahead of the first claim, the queues claims will need: those of campaigns
    /// dialled before (at start-up, from the store) and those already in use (after a
    /// configuration change). With millions of leads a build takes seconds, which the first
    /// agent of the day should not wait for.
    pub fn prepare(&self) {
        // The segments may have changed with the configuration.
        self.rebuild_contact_rates();
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
    pub(super) fn queue(&self, campaign: &Arc<str>) -> Arc<Mutex<Queue>> {
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
                let campaign = &generation.campaigns[generation.campaign(&name)?];
                let mut queue = queue.lock();
                let held = &mut |l: &Locale| self.held_until(campaign, l, now);
                let dry = queue.dry(now, campaign.rules.callback_grace_ms, held);
                let ineligible = eligibility::Reason::ALL.map(|reason| (reason.name(), dry.counts[reason.index()]));
                Some(QueueFigures { campaign: name, leads: queue.len(), ineligible })
            })
            .collect()
    }

    /// The leads of a campaign's queue callable now (their windows open); 0 before its first
    /// claim builds it.
    pub fn callable(&self, campaign: &str) -> u64 {
        let Some(queue) = self.queues.read().get(campaign).cloned() else { return 0 };
        let now = self.clock.now_ms();
        queue.lock().callable(now)
    }

    /// The watchdog's gates on the campaign queues made so far.
    pub fn gates(&self) -> Vec<Arc<Gate>> {
        self.queues.read().values().filter_map(|queue| queue.gate().cloned()).collect()
    }

    /// Places every lead the campaign scores anew, under the current rules, beating the queue's
    /// gate as it goes: a build of millions of leads is slow, not stuck.
    pub(super) fn rebuild(
        &self,
        queue: &mut Queue,
        gate: Option<&Arc<Gate>>,
        generation: &Generation,
        campaign: &CampaignRules,
    ) {
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
    pub(super) fn place(
        &self,
        queue: &mut Queue,
        policy: &Policy,
        campaign: &CampaignRules,
        id: &LeadId,
        score: f64,
        now: i64,
    ) {
        match self.assess(policy, campaign, id, score, now) {
            Some((locale, verdict)) => {
                let rank = self.rank_of(campaign, id, score, now);
                if queue.place(&campaign.rules, id, rank, locale, verdict) {
                    self.ready.notify_waiters();
                }
            }
            None => queue.remove(id),
        }
    }

    /// Brings the leads whose wait is over (a rest, a callback's time, speed to lead) back to
    /// be judged again, as a claim or a count must see them now.
    pub(super) fn catch_up(&self, queue: &mut Queue, policy: &Policy, campaign: &CampaignRules, now: i64) {
        for (id, score) in queue.due(now) {
            self.place(queue, policy, campaign, &id, score, now);
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
            let mut gone = Vec::new();
            for chunk in ids.chunks(REQUEUE_CHUNK) {
                let mut queue = queue.lock();
                let now = self.clock.now_ms();
                for id in chunk {
                    match self.scoring.score_of(id, &name) {
                        Some((score, _)) => self.place(&mut queue, &generation.routing, campaign, id, score, now),
                        None => {
                            queue.remove(id);
                            gone.push(id);
                        }
                    }
                }
            }
            // Nor do they wait for routing there; told once the queue's lock is released.
            gone.into_iter().for_each(|id| self.router.forget(id, &name));
        }
    }

    /// The lead's locale and verdict under a campaign's rules; `None` if it no longer exists.
    pub(super) fn assess(
        &self,
        policy: &Policy,
        campaign: &CampaignRules,
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
            let verdict = eligibility::judge(&cx, lead, lead.dial.as_deref());
            (self.locale(policy, campaign, lead, (score, account_score)), verdict)
        })
    }

    /// Where a lead's window comes from and which routing rules hold for it: its queue group.
    /// `scores` are the lead's and its account's in the campaign.
    pub(super) fn locale(
        &self,
        policy: &Policy,
        campaign: &CampaignRules,
        lead: &Lead,
        scores: (f64, Option<f64>),
    ) -> Locale {
        let (score, account_score) = scores;
        let attribute = |lead: &Lead, name: &str| self.store.attribute(lead, name);
        let mut locale = eligibility::locale(&campaign.rules, lead, &attribute);
        let band = Band::of(score, &campaign.bands);
        locale.chain = policy.chain(&LeadEnv::new(&self.store, lead, band, score, account_score));
        if campaign.order.by == DialingOrder::ExpectedValue {
            locale.segment = Some(segment_of(&campaign.rules, &campaign.order, lead, &attribute).0);
        }
        locale
    }

    /// The pair is the lead's band and its account's score in the campaign.
    pub(super) fn context<'a>(
        &self,
        campaign: &'a CampaignRules,
        (band, account_score): (Band, Option<f64>),
        now_ms: i64,
        attribute: &'a dyn Fn(&Lead, &str) -> Option<Value>,
        on_do_not_call_list: &'a dyn Fn(&str) -> bool,
    ) -> Situation<'a> {
        let rules = &campaign.rules;
        Situation { rules, campaign: &campaign.name, band, account_score, now_ms, attribute, on_do_not_call_list }
    }
}
