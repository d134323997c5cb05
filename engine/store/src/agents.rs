//! What the store knows of agents: who they are (skills, capacity), whether they are available,
//! the leases each holds, and how their calls went in each segment of leads, which routing
//! learns from. Agents and their states are logged; leases and call tallies are derived from the
//! dialer's records, so they follow the log exactly.

use std::collections::HashMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::dial::{Attempt, CallResult, Dial};

/// An agent's skills, as skill expressions read them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Skills {
    /// ISO 639-1 codes, e.g. "en", "es".
    pub languages: Vec<CompactString>,
    pub regions: Vec<CompactString>,
    pub products: Vec<CompactString>,
    /// Seniority, 1 (junior) and up.
    pub tier: u32,
}

/// An agent as a client describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInput {
    pub id: CompactString,
    pub name: CompactString,
    pub skills: Skills,
    /// Leads the agent may hold at once.
    pub capacity: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    Available,
    Busy,
    Offline,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub input: AgentInput,
    pub presence: Presence,
    /// When the presence last changed.
    pub since_ms: i64,
}

/// Which arm of the routing A/B check sent a lead to its agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arm {
    /// By expected conversion.
    Pairing,
    /// By longest idle, the control.
    Control,
}

/// Calls that reached a decision (a conversion, or a connected call that did not convert) and
/// how many of them converted. Four billion calls are decades of a large centre's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub decided: u32,
    pub converted: u32,
}

impl Tally {
    /// Counts a call if it was decided one way or the other; unanswered calls say nothing of
    /// the agent.
    fn count(&mut self, result: CallResult) {
        match result {
            CallResult::Converted => {
                self.decided = self.decided.saturating_add(1);
                self.converted = self.converted.saturating_add(1);
            }
            CallResult::Lost | CallResult::ConnectedNotInterested => self.decided = self.decided.saturating_add(1),
            _ => {}
        }
    }

    pub fn rate(&self) -> Option<f64> {
        (self.decided > 0).then(|| self.converted as f64 / self.decided as f64)
    }
}

/// Segments of leads whose calls are tallied apart: the lead's band when the call was
/// reported, in `Band` order (unqualified, warm, sales ready, hot).
pub const SEGMENTS: [&str; 4] = ["unqualified", "warm", "sales_ready", "hot"];

pub fn segment_index(segment: &str) -> Option<usize> {
    SEGMENTS.iter().position(|s| *s == segment)
}

/// What routing weighs of an agent at every decision: its leases and its calls. Kept apart
/// from the agent and packed into one cache line, so that comparing a thousand agents reads a
/// thousand lines and not four times that.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub struct Standing {
    pub tallies: [Tally; SEGMENTS.len()],
    /// Leases not yet ended, lapsed ones included, and the earliest deadline among them:
    /// until then, all of them are held.
    leases: u32,
    first_deadline_ms: i64,
    /// When the agent last claimed a lead; `i64::MIN` if never.
    pub last_claim_ms: i64,
}

impl Default for Standing {
    fn default() -> Self {
        Self { tallies: Default::default(), leases: 0, first_deadline_ms: i64::MAX, last_claim_ms: i64::MIN }
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub agent: Agent,
    /// (lease id, deadline) of each lease not yet ended.
    leases: Vec<(u64, i64)>,
}

/// Agents and their standings, changed only by the store's `apply`. Rows are only ever added, so
/// a row's index names its agent for the life of the process.
#[derive(Debug, Default)]
pub struct Roster {
    pub rows: Vec<Row>,
    /// Each row's standing, by row.
    pub standings: Vec<Standing>,
    index: HashMap<CompactString, usize>,
    /// Calls of agents not registered (yet): kept so that an agent registered later starts
    /// with its calls. Their leases are not tracked: only registered agents have a capacity.
    unregistered: HashMap<CompactString, [Tally; SEGMENTS.len()]>,
    /// The whole team's calls by segment, registered or not.
    pub team: [Tally; SEGMENTS.len()],
    pub by_arm: HashMap<Arm, Tally>,
    /// Bumped by every change to agents or their presence, so readers can cache.
    pub generation: u64,
    /// By row, the latest time its presence was set (to the same or another), from the log
    /// since start-up: what a cluster's out-of-order presence changes are checked against.
    set_ms: Vec<i64>,
}

impl Roster {
    /// The row of an agent.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The latest time the presence of a row's agent was set.
    pub fn presence_set_ms(&self, row: usize) -> i64 {
        self.set_ms[row]
    }

    /// Leases the agent of a row holds at a time: those not ended and not lapsed.
    pub fn held_at(&self, row: usize, now_ms: i64) -> u32 {
        let standing = &self.standings[row];
        if now_ms < standing.first_deadline_ms {
            return standing.leases;
        }
        self.rows[row].leases.iter().filter(|(_, deadline)| *deadline > now_ms).count() as u32
    }

    pub(super) fn upsert(&mut self, at_ms: i64, inputs: &[AgentInput]) {
        for input in inputs {
            match self.index.get(&input.id) {
                Some(&i) => self.rows[i].agent.input = input.clone(),
                None => {
                    let agent = Agent { input: input.clone(), presence: Presence::Offline, since_ms: at_ms };
                    self.add(agent);
                }
            }
        }
        self.generation += 1;
    }

    fn add(&mut self, agent: Agent) {
        let tallies = self.unregistered.remove(&agent.input.id).unwrap_or_default();
        self.index.insert(agent.input.id.clone(), self.rows.len());
        self.set_ms.push(agent.since_ms);
        self.rows.push(Row { agent, leases: Vec::new() });
        self.standings.push(Standing { tallies, ..Standing::default() });
    }

    pub(super) fn set_presence(&mut self, id: &str, presence: Presence, at_ms: i64) {
        if let Some(&i) = self.index.get(id) {
            self.set_ms[i] = self.set_ms[i].max(at_ms);
        }
        if let Some(&i) = self.index.get(id)
            && self.rows[i].agent.presence != presence
        {
            self.rows[i].agent.presence = presence;
            self.rows[i].agent.since_ms = at_ms;
            self.generation += 1;
        }
    }

    /// Changes the leases of a registered agent, keeping its standing in step.
    fn lease_change(&mut self, agent: &str, change: impl FnOnce(&mut Vec<(u64, i64)>, &mut Standing)) {
        let Some(&i) = self.index.get(agent) else { return };
        let (leases, standing) = (&mut self.rows[i].leases, &mut self.standings[i]);
        change(leases, standing);
        standing.leases = leases.len() as u32;
        standing.first_deadline_ms = leases.iter().map(|(_, deadline)| *deadline).min().unwrap_or(i64::MAX);
    }

    pub(super) fn claimed(&mut self, agent: &str, lease: u64, claimed_at_ms: i64, expires_at_ms: i64) {
        self.lease_change(agent, |leases, standing| {
            leases.retain(|(_, deadline)| *deadline > claimed_at_ms);
            leases.push((lease, expires_at_ms));
            standing.last_claim_ms = standing.last_claim_ms.max(claimed_at_ms);
        });
    }

    pub(super) fn ended(&mut self, agent: &str, lease: u64) {
        self.lease_change(agent, |leases, _| leases.retain(|(id, _)| *id != lease));
    }

    pub(super) fn called(&mut self, attempt: &Attempt) {
        self.ended(&attempt.agent, attempt.lease);
        if let Some(segment) = segment_index(&attempt.segment) {
            let tallies = match self.index.get(attempt.agent.as_str()) {
                Some(&i) => &mut self.standings[i].tallies,
                None => self.unregistered.entry(attempt.agent.clone()).or_default(),
            };
            tallies[segment].count(attempt.result);
            self.team[segment].count(attempt.result);
        }
        if let Some(arm) = attempt.arm {
            self.by_arm.entry(arm).or_default().count(attempt.result);
        }
    }

    pub(super) fn load_agents(&mut self, agents: Vec<Agent>) {
        for agent in agents {
            self.add(agent);
        }
        self.generation += 1;
    }

    /// Takes in a dialer state loaded from a snapshot (after its agents): its open lease and its
    /// calls.
    pub(super) fn load_dial(&mut self, dial: &Dial) {
        for attempt in &dial.attempts {
            self.called(attempt);
        }
        for lease in dial.open_leases() {
            self.claimed(&lease.agent, lease.id, lease.claimed_at_ms, lease.expires_at_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(id: &str) -> AgentInput {
        AgentInput { id: id.into(), name: id.into(), skills: Skills::default(), capacity: 3 }
    }

    #[test]
    fn leases_are_held_until_they_end_or_lapse() {
        let mut roster = Roster::default();
        roster.upsert(0, &[input("a")]);
        roster.claimed("a", 1, 0, 100);
        roster.claimed("a", 2, 10, 50);
        roster.claimed("nobody", 3, 10, 50);
        assert_eq!([20, 49, 50, 99, 100].map(|t| roster.held_at(0, t)), [2, 2, 1, 1, 0]);
        assert_eq!(roster.standings[0].last_claim_ms, 10);
        roster.ended("a", 2);
        assert_eq!([20, 99, 100].map(|t| roster.held_at(0, t)), [1, 1, 0]);
        // A claim clears the leases lapsed by then.
        roster.claimed("a", 4, 120, 200);
        assert_eq!(roster.rows[0].leases, [(4, 200)]);
        assert_eq!(roster.held_at(0, 150), 1);
    }
}
