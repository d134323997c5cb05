//! Claims, outcomes and revocations per minute, per campaign, over the last day: what a wallboard draws.
//! Kept in memory only; a restart starts the counts afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::queue::ZoneFigures;
use super::revocations::Why;
use super::{DialError, Dialer, Dry};
use crate::routing::QueueDepth;
use leadscore_store::agents::Presence;
use leadscore_store::dial::CallResult;
use leadscore_store::sync::{Mutex, Rank};

const MINUTE_MS: i64 = 60_000;
/// Minutes kept per campaign.
pub const KEPT_MINUTES: usize = 24 * 60;

#[derive(Clone, Debug, PartialEq)]
pub struct Minute {
    pub start_ms: i64,
    pub claims: u64,
    /// By result, in `CallResult::ALL` order.
    pub outcomes: [u64; CallResult::ALL.len()],
    /// Leases revoked, by reason in `Why::ALL` order.
    pub revoked: [u64; Why::ALL.len()],
    /// Each first call's delay since its lead was created, in seconds (speed to lead).
    pub first_calls: Vec<u32>,
    /// Talk time the outcomes reported, and how many reported some (average handle time).
    pub talk_ms: u64,
    pub talked: u32,
}

impl Minute {
    fn starting(start_ms: i64) -> Self {
        Self {
            start_ms,
            claims: 0,
            outcomes: [0; CallResult::ALL.len()],
            revoked: [0; Why::ALL.len()],
            first_calls: Vec::new(),
            talk_ms: 0,
            talked: 0,
        }
    }
}

#[derive(Debug)]
pub struct Floor {
    /// Per campaign, minutes with calls, oldest first.
    minutes: Mutex<HashMap<Arc<str>, VecDeque<Minute>, foldhash::fast::RandomState>>,
}

impl Default for Floor {
    fn default() -> Self {
        Self { minutes: Mutex::new(Rank::Floor, HashMap::default()) }
    }
}

impl Floor {
    /// Leads claimed, and for those claimed for their first call, how long after its creation
    /// each was (speed to lead).
    pub fn claimed(&self, campaign: &str, leads: u64, first_calls_ms: &[i64], now_ms: i64) {
        let seconds = first_calls_ms.iter().map(|ms| (ms.max(&0) / 1000).min(i64::from(u32::MAX)) as u32);
        self.count(campaign, now_ms, |minute| {
            minute.claims += leads;
            minute.first_calls.extend(seconds);
        });
    }

    /// An outcome, with the talk time the dialer reported for it (0: none).
    pub fn reported(&self, campaign: &str, result: CallResult, talk_ms: u64, now_ms: i64) {
        let at = CallResult::ALL.iter().position(|r| *r == result).expect("every result is listed");
        self.count(campaign, now_ms, |minute| {
            minute.outcomes[at] += 1;
            if talk_ms > 0 {
                minute.talk_ms += talk_ms;
                minute.talked += 1;
            }
        });
    }

    pub fn revoked(&self, campaign: &str, why: Why, now_ms: i64) {
        self.count(campaign, now_ms, |minute| minute.revoked[why.index()] += 1);
    }

    fn count(&self, campaign: &str, now_ms: i64, add: impl FnOnce(&mut Minute)) {
        let start_ms = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let mut minutes = self.minutes.lock();
        if !minutes.contains_key(campaign) {
            minutes.insert(campaign.into(), VecDeque::new());
        }
        let kept = minutes.get_mut(campaign).expect("just added");
        // A clock set back counts into the newest minute rather than reorder the past.
        if kept.back().is_none_or(|last| last.start_ms < start_ms) {
            kept.push_back(Minute::starting(start_ms));
        }
        while kept.front().is_some_and(|first| first.start_ms <= start_ms - KEPT_MINUTES as i64 * MINUTE_MS) {
            kept.pop_front();
        }
        add(kept.back_mut().expect("just pushed"));
    }

    /// The last `count` minutes up to `now_ms`, oldest first, quiet ones included.
    pub fn last(&self, campaign: &str, count: usize, now_ms: i64) -> Vec<Minute> {
        let current = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let first = current - (count as i64 - 1) * MINUTE_MS;
        let mut out: Vec<Minute> = (0..count as i64).map(|i| Minute::starting(first + i * MINUTE_MS)).collect();
        let minutes = self.minutes.lock();
        for minute in minutes.get(campaign).into_iter().flatten() {
            if let Ok(i) = usize::try_from((minute.start_ms - first) / MINUTE_MS)
                && minute.start_ms >= first
                && i < count
            {
                out[i] = minute.clone();
            }
        }
        out
    }
}

/// What a call floor's wallboard shows of a campaign.
#[derive(Clone, Debug)]
pub struct Wallboard {
    pub campaign: Arc<str>,
    pub queued: u64,
    /// Ready leads in open windows, and those of them routing sends to no agent.
    pub callable: u64,
    pub to_no_agent: u64,
    pub ineligible: Dry,
    /// Due callbacks not yet made, and when the oldest was due.
    pub callbacks_due: (u64, Option<i64>),
    /// The routing queues holding the campaign's leads.
    pub routing_queues: Vec<QueueDepth>,
    pub zones: Vec<ZoneFigures>,
    pub minutes: Vec<Minute>,
    pub agents: Vec<AgentFigures>,
    /// Calls a person answered over the last 30 days, and those abandoned among them.
    pub abandonment: (u64, u64),
}

/// The median of some delays, and their count; the lower middle of an even count.
pub fn median(mut delays: Vec<u32>) -> Option<(u32, usize)> {
    if delays.is_empty() {
        return None;
    }
    let middle = (delays.len() - 1) / 2;
    let (_, median, _) = delays.select_nth_unstable(middle);
    Some((*median, delays.len()))
}

#[derive(Clone, Debug)]
pub struct AgentFigures {
    pub id: compact_str::CompactString,
    pub name: compact_str::CompactString,
    pub presence: Presence,
    /// When it entered that state.
    pub since_ms: i64,
    pub leases: u32,
    pub decided: u64,
    pub converted: u64,
}

impl Dialer {
    /// The campaign's queue (built first if it is not), its last `minutes` of calls, and
    /// every agent.
    pub fn wallboard(&self, campaign: &str, minutes: usize) -> Result<Wallboard, DialError> {
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign_or_error("campaign", campaign)?];
        let now = self.clock.now_ms();
        let shared = self.queue(&campaign.name);
        let (queued, ineligible, zones, callbacks_due) = {
            let mut queue = shared.lock();
            if queue.built_for != Some(generation.version) {
                self.rebuild(&mut queue, shared.gate(), &generation, campaign);
            }
            // Waits that are over count as what they are now, as a claim would find them.
            self.catch_up(&mut queue, &generation.routing, campaign, now);
            let held = &mut |l: &super::eligibility::Locale| self.held_until(campaign, l, now);
            let dry = queue.dry(now, campaign.rules.callback_grace_ms, held);
            let zones = queue.zones(now, &|chain| generation.routing.staffed(chain));
            (queue.len() as u64, dry, zones, queue.callbacks_due())
        };
        let agents = self.store.roster(|roster| {
            let mut agents: Vec<AgentFigures> = (roster.rows.iter().enumerate())
                .map(|(row, r)| {
                    let tallies = &roster.standings[row].tallies;
                    AgentFigures {
                        id: r.agent.input.id.clone(),
                        name: r.agent.input.name.clone(),
                        presence: r.agent.presence,
                        since_ms: r.agent.since_ms,
                        leases: roster.held_at(row, now),
                        decided: tallies.iter().map(|t| u64::from(t.decided)).sum(),
                        converted: tallies.iter().map(|t| u64::from(t.converted)).sum(),
                    }
                })
                .collect();
            agents.sort_by(|a, b| a.id.cmp(&b.id));
            agents
        });
        let open = || zones.iter().filter(|z| z.open);
        Ok(Wallboard {
            campaign: campaign.name.clone(),
            queued,
            callable: open().map(|z| z.callable).sum(),
            to_no_agent: open().map(|z| z.to_no_agent).sum(),
            ineligible,
            callbacks_due,
            routing_queues: self.router.queue_depths(&campaign.name),
            zones,
            minutes: self.floor.last(&campaign.name, minutes, now),
            agents,
            abandonment: self.contact_rates.read(&campaign.name, |grid| grid.abandonment(now)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_fall_into_their_minute_and_quiet_minutes_read_zero() {
        let floor = Floor::default();
        let t0 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS;
        // Two leads claimed for their first call, one 95 s after it was created; a creation
        // time ahead of the clock counts as no delay.
        floor.claimed("default", 2, &[95_000, -5], t0 + 5_000);
        floor.reported("default", CallResult::Converted, 90_000, t0 + 59_999);
        floor.reported("default", CallResult::NoAnswer, 0, t0 + 59_999);
        floor.claimed("default", 1, &[], t0 + 2 * MINUTE_MS);
        floor.claimed("other", 7, &[], t0);
        let last = floor.last("default", 4, t0 + 2 * MINUTE_MS + 1);
        assert_eq!(
            last.iter().map(|m| m.start_ms).collect::<Vec<_>>(),
            [t0 - MINUTE_MS, t0, t0 + MINUTE_MS, t0 + 2 * MINUTE_MS]
        );
        assert_eq!(last.iter().map(|m| m.claims).collect::<Vec<_>>(), [0, 2, 0, 1]);
        assert_eq!(last[1].first_calls, [95, 0]);
        assert!(last[3].first_calls.is_empty());
        let converted = CallResult::ALL.iter().position(|r| *r == CallResult::Converted).unwrap();
        assert_eq!(last[1].outcomes[converted], 1);
        assert_eq!(last[1].outcomes.iter().sum::<u64>(), 2);
        // A call without talk time does not pull the average down.
        assert_eq!((last[1].talk_ms, last[1].talked), (90_000, 1));
    }

    #[test]
    fn a_day_is_kept_and_no_more() {
        let floor = Floor::default();
        let t0 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS;
        for minute in 0..KEPT_MINUTES as i64 + 10 {
            floor.claimed("default", 1, &[], t0 + minute * MINUTE_MS);
        }
        assert_eq!(floor.minutes.lock()["default"].len(), KEPT_MINUTES);
        let now = t0 + (KEPT_MINUTES as i64 + 9) * MINUTE_MS;
        assert!(floor.last("default", KEPT_MINUTES, now).iter().all(|m| m.claims == 1));
    }
}
