//! Routing: which agent or queue takes a lead, and why. Rules (first that holds wins, with
//! escalation after a timeout) pick a queue; among the queue's agents that are available and
//! below capacity, the one with the best expected conversion for the lead's segment takes it,
//! unless too few are eligible or the A/B check routes this decision by longest idle.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use compact_str::CompactString;
use tokio::sync::broadcast;

use crate::generation::Generations;
use crate::policy::expr::Expr;
use crate::policy::routing::{LeadEnv, Policy, Rule};
use crate::scoring::card::{Card, card_of};
use crate::scoring::pipeline::Band;
use crate::scoring::{ScoreError, Scoring};
use leadscore_store::Store;
use leadscore_store::agents::{Arm, Presence, Roster, SEGMENTS, Tally};
use leadscore_store::clock::Clock;
use leadscore_store::lead::LeadId;
use leadscore_store::mutation::fingerprint;
use leadscore_store::sync::{Mutex, Rank};

/// Decisions a `WatchRouting` consumer may fall behind by before it is dropped.
pub const DECISION_BUFFER: usize = 4096;
/// Leads whose latest decision named an agent are remembered until the call's outcome, so it
/// counts for its A/B arm; at most this many at once.
const REMEMBERED_DECISIONS: usize = 1 << 20;

/// Where a decision sends the lead.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Agent(CompactString),
    Queue(CompactString),
}

#[derive(Clone, Debug)]
pub struct Decision {
    pub id: String,
    pub lead_id: LeadId,
    pub target: Target,
    /// The queue of the rule in force (also when an agent of it was chosen).
    pub queue: CompactString,
    pub priority: i32,
    pub rule: CompactString,
    pub band: Band,
    pub score: f64,
    /// Expected conversion of the chosen pairing and of the runner-up, when agents were
    /// compared.
    pub expected_conversion: Option<f64>,
    pub runner_up: Option<(CompactString, f64)>,
    pub arm: Option<Arm>,
    pub reasons: Vec<String>,
    pub at_ms: i64,
    /// Who the lead is.
    pub card: Option<Card>,
}

/// Conversion by A/B arm, from the outcomes of calls routing chose the agent for.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArmStats {
    pub decisions: u64,
    pub calls: Tally,
}

/// What a cluster's shards know of the agents, added up: each agent's leases held, latest
/// claim, latest lead routed to it and calls by segment, and the team's calls. A decision on
/// one shard weighs these instead of what its own shard saw.
#[derive(Clone, Debug, Default)]
pub struct Loads {
    pub agents: HashMap<CompactString, Load>,
    pub team: [Tally; SEGMENTS.len()],
}

/// One agent's part of `Loads`.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub held: u32,
    /// `i64::MIN` if it never claimed.
    pub last_claim_ms: i64,
    pub tallies: [Tally; SEGMENTS.len()],
    /// When a decision last sent it a lead; `i64::MIN` if none did.
    pub last_routed_ms: i64,
}

impl Default for Load {
    fn default() -> Self {
        Self { held: 0, last_claim_ms: i64::MIN, tallies: Default::default(), last_routed_ms: i64::MIN }
    }
}

impl Loads {
    /// Adds another shard's loads to these.
    pub fn add(&mut self, other: Loads) {
        let add = |sum: &mut [Tally; SEGMENTS.len()], part: [Tally; SEGMENTS.len()]| {
            for (s, p) in sum.iter_mut().zip(part) {
                s.decided = s.decided.saturating_add(p.decided);
                s.converted = s.converted.saturating_add(p.converted);
            }
        };
        add(&mut self.team, other.team);
        for (agent, load) in other.agents {
            let sum = self.agents.entry(agent).or_default();
            sum.held += load.held;
            sum.last_claim_ms = sum.last_claim_ms.max(load.last_claim_ms);
            sum.last_routed_ms = sum.last_routed_ms.max(load.last_routed_ms);
            add(&mut sum.tallies, load.tallies);
        }
    }
}

/// What a decision reads of each agent's load and record: its own shard's roster, or the
/// cluster's `Loads` (a generic, so that a single node's decision pays nothing for it).
trait Weigh {
    fn held(&self, roster: &Roster, row: usize, now_ms: i64) -> u32;
    fn tally(&self, roster: &Roster, row: usize, segment: usize) -> Tally;
    fn last_claim_ms(&self, roster: &Roster, row: usize) -> i64;
    /// When a decision on any shard last sent the agent a lead, besides the router's memory of
    /// its own shard's (`i64::MIN` for a single node: its memory is all).
    fn last_routed_ms(&self, roster: &Roster, row: usize) -> i64;
    fn team(&self, roster: &Roster, segment: usize) -> Tally;
}

/// This shard's roster, as a single node has it.
struct ThisShard;

impl Weigh for ThisShard {
    fn held(&self, roster: &Roster, row: usize, now_ms: i64) -> u32 {
        roster.held_at(row, now_ms)
    }

    fn tally(&self, roster: &Roster, row: usize, segment: usize) -> Tally {
        roster.standings[row].tallies[segment]
    }

    fn last_claim_ms(&self, roster: &Roster, row: usize) -> i64 {
        roster.standings[row].last_claim_ms
    }

    fn last_routed_ms(&self, _: &Roster, _: usize) -> i64 {
        i64::MIN
    }

    fn team(&self, roster: &Roster, segment: usize) -> Tally {
        roster.team[segment]
    }
}

impl Loads {
    fn of(&self, roster: &Roster, row: usize) -> Load {
        self.agents.get(&roster.rows[row].agent.input.id).copied().unwrap_or_default()
    }
}

impl Weigh for Loads {
    fn held(&self, roster: &Roster, row: usize, _: i64) -> u32 {
        self.of(roster, row).held
    }

    fn tally(&self, roster: &Roster, row: usize, segment: usize) -> Tally {
        self.of(roster, row).tallies[segment]
    }

    fn last_claim_ms(&self, roster: &Roster, row: usize) -> i64 {
        self.of(roster, row).last_claim_ms
    }

    fn last_routed_ms(&self, roster: &Roster, row: usize) -> i64 {
        self.of(roster, row).last_routed_ms
    }

    fn team(&self, _: &Roster, segment: usize) -> Tally {
        self.team[segment]
    }
}

#[derive(Debug)]
pub struct Router {
    store: Arc<Store>,
    scoring: Arc<Scoring>,
    /// The current routing policy and campaigns.
    generations: Arc<Generations>,
    clock: Arc<dyn Clock>,
    decisions: broadcast::Sender<Arc<Decision>>,
    next_decision: AtomicU64,
    memory: Mutex<Memory>,
    pools: Mutex<Pools>,
}

/// For one policy and one state of the roster, each rule's pool of agents, found once rather
/// than by evaluating every agent's skills at every decision. Rules whose skill expression
/// reads the lead have none: theirs depends on the lead.
#[derive(Debug, Default)]
struct Pools {
    policy: Option<Arc<Policy>>,
    generation: u64,
    by_rule: Vec<Option<Arc<Pool>>>,
}

/// The agents with a rule's skills: how many, and those available.
#[derive(Debug)]
struct Pool {
    skilled: usize,
    available: Vec<Seat>,
}

/// An available agent of a pool, with what a decision reads of it that changes only with the
/// roster's generation.
#[derive(Clone, Copy, Debug)]
struct Seat {
    row: u32,
    capacity: u32,
    /// When it became available.
    since_ms: i64,
}

impl Pool {
    fn of(skills: &Expr, lead: &LeadEnv, roster: &Roster) -> Self {
        let mut pool = Pool { skilled: 0, available: Vec::new() };
        for (i, row) in roster.rows.iter().enumerate() {
            let agent = &row.agent;
            if skills.holds(&lead.with_agent((&agent.input.id, &agent.input.skills))) {
                pool.skilled += 1;
                if agent.presence == Presence::Available {
                    let seat = Seat { row: i as u32, capacity: agent.input.capacity, since_ms: agent.since_ms };
                    pool.available.push(seat);
                }
            }
        }
        pool
    }
}

#[derive(Debug, Default)]
struct Memory {
    /// When each agent (by roster row) was last sent a lead: the idle clock restarts then.
    last_routed_ms: Vec<i64>,
    /// The agent and arm of each lead's latest decision that named an agent, by fingerprints
    /// of the ids: sixteen bytes a lead, since a million leads may be routed before a call.
    decided: HashMap<u64, (u64, Arm)>,
    decisions_by_arm: [u64; 2],
    waiting: Waiting,
}

/// Leads whose latest decision left them in a queue, by campaign and queue, until a call, a
/// later decision or their erasure takes them out; by fingerprints of the ids, as `decided`
/// keeps them. Kept in memory, as decisions are.
#[derive(Debug, Default)]
struct Waiting {
    /// Each lead's queue (its place in `queues`) and when it began to wait there.
    of: HashMap<u64, (usize, i64)>,
    /// Each campaign's queues that have held leads, with theirs, oldest first.
    queues: Vec<Queued>,
}

#[derive(Debug)]
struct Queued {
    campaign: CompactString,
    queue: CompactString,
    leads: BTreeSet<(i64, u64)>,
}

/// A routing queue's leads now.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueDepth {
    pub queue: CompactString,
    pub waiting: u64,
    /// When its longest-waiting lead began to wait.
    pub oldest_since_ms: Option<i64>,
}

impl Waiting {
    /// The lead waits in this queue, since `at_ms` unless it already waited there.
    fn enter(&mut self, lead: &str, campaign: &str, queue: &str, at_ms: i64) {
        let at = match self.queues.iter().position(|q| q.queue == queue && q.campaign == campaign) {
            Some(at) => at,
            None => {
                let leads = BTreeSet::new();
                self.queues.push(Queued { campaign: campaign.into(), queue: queue.into(), leads });
                self.queues.len() - 1
            }
        };
        let lead = fingerprint(lead);
        match self.of.get(&lead) {
            Some(&(known, _)) if known == at => return,
            Some(_) => self.leave_by(lead),
            None if self.of.len() >= REMEMBERED_DECISIONS => return,
            None => {}
        }
        self.of.insert(lead, (at, at_ms));
        self.queues[at].leads.insert((at_ms, lead));
    }

    fn leave(&mut self, lead: &str) {
        self.leave_by(fingerprint(lead));
    }

    fn leave_by(&mut self, lead: u64) {
        if let Some((at, at_ms)) = self.of.remove(&lead) {
            self.queues[at].leads.remove(&(at_ms, lead));
        }
    }

    /// The campaign's queues holding leads, by name.
    fn depths(&self, campaign: &str) -> Vec<QueueDepth> {
        let mut depths: Vec<QueueDepth> = (self.queues.iter())
            .filter(|q| q.campaign == campaign && !q.leads.is_empty())
            .map(|q| QueueDepth {
                queue: q.queue.clone(),
                waiting: q.leads.len() as u64,
                oldest_since_ms: q.leads.first().map(|(at, _)| *at),
            })
            .collect();
        depths.sort_by(|a, b| a.queue.cmp(&b.queue));
        depths
    }

    /// The campaign the lead waits in, if any.
    fn campaign_of(&self, lead: &str) -> Option<&str> {
        self.of.get(&fingerprint(lead)).map(|&(at, _)| self.queues[at].campaign.as_str())
    }
}

impl Router {
    pub fn new(store: Arc<Store>, scoring: Arc<Scoring>, generations: Arc<Generations>, clock: Arc<dyn Clock>) -> Self {
        let (decisions, _) = broadcast::channel(DECISION_BUFFER);
        Self {
            store,
            scoring,
            generations,
            clock,
            decisions,
            next_decision: AtomicU64::new(1),
            memory: Mutex::new(Rank::RouterMemory, Memory::default()),
            pools: Mutex::new(Rank::RouterPools, Pools::default()),
        }
    }

    /// Decisions as they are made.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Decision>> {
        self.decisions.subscribe()
    }

    /// Decides who takes a lead now, and says why.
    pub fn route(&self, lead_id: &str, campaign: &str) -> Result<Decision, ScoreError> {
        self.route_with(lead_id, campaign, None)
    }

    /// This shard's loads, to be added up with every other shard's (`Loads::add`).
    pub fn loads(&self) -> Loads {
        let now = self.clock.now_ms();
        self.store.roster(|roster| {
            let memory = self.memory.lock();
            Loads {
                agents: (roster.rows.iter().enumerate())
                    .map(|(row, r)| {
                        let standing = &roster.standings[row];
                        let load = Load {
                            held: roster.held_at(row, now),
                            last_claim_ms: standing.last_claim_ms,
                            tallies: standing.tallies,
                            last_routed_ms: memory.last_routed_ms.get(row).copied().unwrap_or(i64::MIN),
                        };
                        (r.agent.input.id.clone(), load)
                    })
                    .collect(),
                team: roster.team,
            }
        })
    }

    /// Routes a lead weighing `loads` (every shard's, on a cluster) rather than this shard's.
    pub fn route_with(&self, lead_id: &str, campaign: &str, loads: Option<&Loads>) -> Result<Decision, ScoreError> {
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign_or_error("campaign", campaign)?];
        let (score, band) = self
            .scoring
            .score_of(lead_id, &campaign.name)
            .ok_or_else(|| self.scoring.unscored(lead_id, &campaign.name))?;
        let policy = &generation.routing;
        let now = self.clock.now_ms();
        let sequence = self.next_decision.fetch_add(1, Ordering::Relaxed);
        let mut decision = Decision {
            id: format!("{now:x}-{sequence}"),
            lead_id: lead_id.into(),
            target: Target::Queue(CompactString::default()),
            queue: CompactString::default(),
            priority: 0,
            rule: CompactString::default(),
            band,
            score,
            expected_conversion: None,
            runner_up: None,
            arm: None,
            reasons: vec![format!("band {} (score {score:.1} in campaign {})", band.name(), campaign.name)],
            at_ms: now,
            card: None,
        };
        let display =
            generation.pipeline.campaign(&campaign.name).map(|c| generation.pipeline.campaigns[c].display.clone());
        let account_score = self.scoring.account_score(lead_id, &campaign.name);
        let chosen = self
            .store
            .read_lead(lead_id, |lead| {
                decision.card = display.map(|display| card_of(&self.store, &display, lead));
                let env = LeadEnv::new(&self.store, lead, band, score, account_score);
                self.store.roster(|roster| match loads {
                    None => self.decide(policy, &env, (roster, &ThisShard), &mut decision, sequence),
                    Some(loads) => self.decide(policy, &env, (roster, loads), &mut decision, sequence),
                })
            })
            .ok_or_else(|| ScoreError::NotFound(lead_id.into()))?;
        self.remember(&decision, &campaign.name, chosen);
        // Watchers get a copy; with none, nothing is copied. Nobody listening is not an error.
        if self.decisions.receiver_count() > 0 {
            let _ = self.decisions.send(Arc::new(decision.clone()));
        }
        Ok(decision)
    }

    /// Fills in the decision for a lead; returns the roster row of the agent chosen, if any.
    fn decide(
        &self,
        policy: &Arc<Policy>,
        lead: &LeadEnv,
        (roster, loads): (&Roster, &impl Weigh),
        decision: &mut Decision,
        sequence: u64,
    ) -> Option<usize> {
        let now = decision.at_ms;
        let reasons = &mut decision.reasons;
        let Some(step) = policy.step(lead, lead.waiting_since_ms(), now) else {
            reasons.push("no routing rule holds for this lead".into());
            return None;
        };
        let rule = step.rule;
        (decision.rule, decision.queue, decision.priority) = (rule.name.clone(), rule.queue.clone(), rule.priority);
        decision.target = Target::Queue(rule.queue.clone());
        for passed in &step.escalated_from {
            reasons.push(["escalated: rule ", &passed.name, " timed out with no agent taking the lead"].concat());
        }
        reasons.push(["rule ", &rule.name, ": queue ", &rule.queue].concat());
        let Some(skills) = &rule.agents else {
            reasons.push(["queue ", &rule.queue, " is not served by agents"].concat());
            return None;
        };
        // The segment's index: bands in order, as `SEGMENTS` lists them.
        let segment = lead.band as usize;
        let held = |row: usize| loads.held(roster, row, now);
        let tally = |row: usize| loads.tally(roster, row, segment);
        let last_claim_ms = |row: usize| loads.last_claim_ms(roster, row);
        let team = loads.team(roster, segment);
        // The team's rate, itself shrunk towards one half while it has few calls.
        let team_rate = (team.converted as f64 + 1.0) / (team.decided as f64 + 2.0);
        let pool = match skills.reads_lead() {
            true => Arc::new(Pool::of(skills, lead, roster)),
            false => self.pool(policy, rule, lead, roster),
        };
        let expected = |row: usize| {
            let calls = tally(row);
            (calls.converted as f64 + policy.prior_calls * team_rate) / (calls.decided as f64 + policy.prior_calls)
        };
        let free = |seat: &&Seat| held(seat.row as usize) < seat.capacity;
        // Which order decides depends on whether there are enough candidates to pair, which
        // the first few tell.
        let pairing = pool.available.iter().filter(free).take(policy.min_agents_for_pairing).count()
            >= policy.min_agents_for_pairing;
        let arm = match (pairing, unit(sequence) < policy.control_share) {
            (false, _) => None,
            (true, true) => Some(Arm::Control),
            (true, false) => Some(Arm::Pairing),
        };
        // The first two in the arm's order, smallest key first: the best expected conversion
        // when pairing (positive, so its bits order as it does), then the longest idle, then
        // the roster's order.
        let by_conversion = arm == Some(Arm::Pairing);
        let (mut top, mut candidates) = (TopTwo::default(), 0);
        let memory = self.memory.lock();
        for seat in pool.available.iter().filter(free) {
            let row = seat.row as usize;
            let conversion = if by_conversion { u64::MAX - expected(row).to_bits() } else { 0 };
            let last_routed_ms = memory.last_routed_ms.get(row).copied().unwrap_or(i64::MIN);
            let last_routed_ms = last_routed_ms.max(loads.last_routed_ms(roster, row));
            let idle_since_ms = seat.since_ms.max(last_claim_ms(row)).max(last_routed_ms);
            top.offer((conversion, idle_since_ms, row));
            candidates += 1;
        }
        drop(memory);
        reasons.push(format!(
            "agents where {}: {} skilled, {} available with capacity",
            rule.agents_text, pool.skilled, candidates
        ));
        let Some((_, _, chosen)) = top.first else {
            match step.escalates_at_ms {
                Some(at) => {
                    reasons.push(format!("no agent available: waits in queue {} until {}", rule.queue, iso(at)))
                }
                None => reasons.push(["no agent available: waits in queue ", &rule.queue].concat()),
            }
            return None;
        };
        reasons.push(match arm {
            None => format!(
                "fallback: fewer than {} agents to choose from, so the longest idle",
                policy.min_agents_for_pairing
            ),
            Some(Arm::Control) => "A/B control: the longest idle".into(),
            Some(Arm::Pairing) => {
                ["best expected conversion in segment ", SEGMENTS[segment], ", ties to the longest idle"].concat()
            }
        });
        let id = |row: usize| roster.rows[row].agent.input.id.clone();
        decision.target = Target::Agent(id(chosen));
        decision.expected_conversion = Some(expected(chosen));
        decision.runner_up = top.second.map(|(_, _, row)| (id(row), expected(row)));
        decision.arm = arm;
        Some(chosen)
    }

    /// The pool of a rule whose skills read only the agent, found again only when the policy
    /// or the roster changed.
    fn pool(&self, policy: &Arc<Policy>, rule: &Rule, lead: &LeadEnv, roster: &Roster) -> Arc<Pool> {
        let mut pools = self.pools.lock();
        let current =
            pools.policy.as_ref().is_some_and(|p| Arc::ptr_eq(p, policy)) && pools.generation == roster.generation;
        if !current {
            *pools = Pools {
                policy: Some(policy.clone()),
                generation: roster.generation,
                by_rule: vec![None; policy.rules.len()],
            };
        }
        let skills = rule.agents.as_ref().expect("only rules served by agents have pools");
        pools.by_rule[rule.index].get_or_insert_with(|| Arc::new(Pool::of(skills, lead, roster))).clone()
    }

    fn remember(&self, decision: &Decision, campaign: &str, chosen: Option<usize>) {
        let mut memory = self.memory.lock();
        let agent = match &decision.target {
            Target::Agent(agent) => agent,
            // No rule held: the lead waits nowhere.
            Target::Queue(queue) if queue.is_empty() => return memory.waiting.leave(&decision.lead_id),
            Target::Queue(queue) => return memory.waiting.enter(&decision.lead_id, campaign, queue, decision.at_ms),
        };
        memory.waiting.leave(&decision.lead_id);
        if let Some(row) = chosen {
            if memory.last_routed_ms.len() <= row {
                memory.last_routed_ms.resize(row + 1, i64::MIN);
            }
            memory.last_routed_ms[row] = decision.at_ms;
        }
        if let Some(arm) = decision.arm {
            memory.decisions_by_arm[arm as usize] += 1;
            let lead = fingerprint(&decision.lead_id);
            if memory.decided.len() < REMEMBERED_DECISIONS || memory.decided.contains_key(&lead) {
                memory.decided.insert(lead, (fingerprint(agent), arm));
            }
        }
    }

    /// The A/B arm a call belongs to: that of the lead's latest decision, if it named the
    /// agent who made the call.
    pub fn arm_of_call(&self, lead_id: &str, agent: &str) -> Option<Arm> {
        let memory = self.memory.lock();
        match memory.decided.get(&fingerprint(lead_id)) {
            Some(&(decided, arm)) if decided == fingerprint(agent) => Some(arm),
            _ => None,
        }
    }

    /// Forgets the lead's latest decision once the agent it named recorded a call: the next
    /// call belongs to no arm unless routing decides again. A call by anyone ends its wait in a
    /// queue.
    pub fn called(&self, lead_id: &str, agent: &str) {
        let mut memory = self.memory.lock();
        memory.waiting.leave(lead_id);
        let lead = fingerprint(lead_id);
        if memory.decided.get(&lead).is_some_and(|&(decided, _)| decided == fingerprint(agent)) {
            memory.decided.remove(&lead);
        }
    }

    /// The lead no longer waits for routing in the campaign (erased, or out of it).
    pub fn forget(&self, lead_id: &str, campaign: &str) {
        let mut memory = self.memory.lock();
        if memory.waiting.campaign_of(lead_id) == Some(campaign) {
            memory.waiting.leave(lead_id);
        }
    }

    /// Each routing queue holding leads of the campaign: how many wait, and since when the
    /// longest has.
    pub fn queue_depths(&self, campaign: &str) -> Vec<QueueDepth> {
        self.memory.lock().waiting.depths(campaign)
    }

    /// Decisions made since start-up, and calls (since the data directory began) by arm.
    pub fn arm_stats(&self) -> [(Arm, ArmStats); 2] {
        let decisions = self.memory.lock().decisions_by_arm;
        self.store.roster(|roster| {
            [Arm::Pairing, Arm::Control].map(|arm| {
                let calls = roster.by_arm.get(&arm).copied().unwrap_or_default();
                (arm, ArmStats { decisions: decisions[arm as usize], calls })
            })
        })
    }
}

/// The first two of a stream of items in some order, kept as they come: no list, no sort.
#[derive(Debug)]
struct TopTwo<T> {
    first: Option<T>,
    second: Option<T>,
}

impl<T> Default for TopTwo<T> {
    fn default() -> Self {
        Self { first: None, second: None }
    }
}

impl<T: Copy + Ord> TopTwo<T> {
    /// Keeps the item if it is among the two smallest so far; the earlier of equals first.
    fn offer(&mut self, item: T) {
        match self.first {
            Some(first) if item >= first => {
                if self.second.is_none_or(|second| item < second) {
                    self.second = Some(item);
                }
            }
            _ => {
                self.second = self.first;
                self.first = Some(item);
            }
        }
    }
}

/// A decision's sequence number mapped evenly onto [0, 1) (SplitMix64), for the A/B split.
fn unit(sequence: u64) -> f64 {
    let mut z = sequence.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_smallest_are_kept_as_items_come() {
        let top = |items: &[(i32, char)]| {
            let mut top = TopTwo::default();
            items.iter().for_each(|item| top.offer(*item));
            (top.first, top.second)
        };
        assert_eq!(top(&[(5, 'a'), (3, 'b'), (9, 'c'), (1, 'd'), (7, 'e')]), (Some((1, 'd')), Some((3, 'b'))));
        assert_eq!(top(&[(2, 'a'), (1, 'b'), (1, 'c'), (1, 'd')]), (Some((1, 'b')), Some((1, 'c'))));
        assert_eq!(top(&[(4, 'a')]), (Some((4, 'a')), None));
    }

    #[test]
    fn a_lead_waits_in_one_queue_from_its_first_decision_there_until_it_leaves() {
        let mut waiting = Waiting::default();
        waiting.enter("a", "default", "nurture", 10);
        waiting.enter("b", "default", "nurture", 20);
        // Routed there again: it has waited since its first decision.
        waiting.enter("a", "default", "nurture", 30);
        let depth =
            |queue: &str, waiting: u64, oldest| QueueDepth { queue: queue.into(), waiting, oldest_since_ms: oldest };
        assert_eq!(waiting.depths("default"), [depth("nurture", 2, Some(10))]);
        // Moved to another queue, it waits afresh there.
        waiting.enter("a", "default", "sales", 40);
        assert_eq!(waiting.depths("default"), [depth("nurture", 1, Some(20)), depth("sales", 1, Some(40))]);
        assert!(waiting.depths("other").is_empty());
        waiting.leave("b");
        waiting.leave("a");
        assert!(waiting.depths("default").is_empty());
        assert!(waiting.of.is_empty());
    }

    #[test]
    fn the_ab_draw_is_even() {
        let draws: Vec<f64> = (1..=100_000).map(unit).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let share = draws.iter().filter(|u| **u < 0.2).count() as f64 / draws.len() as f64;
        assert!((share - 0.2).abs() < 0.005, "{share}");
    }
}
