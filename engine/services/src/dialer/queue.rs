//! One campaign's leads, arranged so that a claim never scans them all: callable leads sit in
//! score order, one ordered set per group of leads sharing a calling window (time zone and
//! region) and a chain of routing rules, so a shut window skips its whole group, and so does a
//! chain whose leads the agent may not take; leads waiting for a time (a lease, a recycle delay, a limit)
//! sit in a set ordered by that time; due callbacks in another; the rest are only counted.
//!
//! The queue is a cache of eligibility: every claim is checked again against the store before
//! it is made, and a lead found wanting is moved to where the check says it belongs.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use super::eligibility::{DueCallback, Locale, Reason, Verdict};
use crate::policy::contact::{Rules, Shut, Window};
use crate::policy::routing::Access;
use leadscore_store::lead::LeadId;

/// New leads first (speed to lead), then the best key, then by id.
type Ranked = (bool, Reverse<u64>, LeadId);

/// Where a lead ranks among the callable of its group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rank {
    /// The campaign score, which routing and the claim's answer read.
    pub score: f64,
    /// The group orders by this, best first, 0 or more: the score, or under `expected_value`
    /// P(conversion | contact) × worth, which the group's contact rate now multiplies.
    pub key: f64,
    /// Offered before any lead not new until then (speed to lead).
    pub new_until: Option<i64>,
}

impl From<f64> for Rank {
    fn from(score: f64) -> Self {
        Rank { score, key: score, new_until: None }
    }
}

#[derive(Debug)]
struct Group {
    locale: Locale,
    window: Window,
    ready: BTreeSet<Ranked>,
    /// The window's state, and the span of time it holds for, so most claims skip the zone
    /// arithmetic.
    known: Option<(Result<(), Shut>, i64, i64)>,
}

#[derive(Clone, Debug)]
struct Place {
    group: usize,
    rank: Rank,
    state: State,
}

impl Place {
    fn ready(&self) -> bool {
        matches!(self.state, State::Ready | State::Callback(_))
    }
}

#[derive(Clone, Debug)]
enum State {
    Ready,
    Callback(DueCallback),
    Waiting { until_ms: i64, reason: Reason },
    Never(Reason),
}

/// Why a claim was offered this lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    BestScore,
    AgentCallback,
    Callback,
}

/// What a dry queue reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dry {
    pub counts: [u64; Reason::COUNT],
    /// When something is next expected to become callable.
    pub next_at_ms: Option<i64>,
}

#[derive(Debug)]
pub struct Queue {
    /// The configuration version whose rules built this queue; `None` until built.
    pub built_for: Option<u64>,
    groups: Vec<Group>,
    group_of: HashMap<Locale, usize, foldhash::fast::RandomState>,
    places: HashMap<LeadId, Place, foldhash::fast::RandomState>,
    waiting: BTreeSet<(i64, LeadId)>,
    callbacks: BTreeSet<(i64, LeadId)>,
    /// Ready leads offered first until then, to be placed again after.
    new: BTreeSet<(i64, LeadId)>,
    /// Leads waiting or never callable, by reason.
    counts: [u64; Reason::COUNT],
    /// Routing's answer for each chain met in one pick; kept between picks for its room alone.
    access: Vec<(u64, Access)>,
}

impl Queue {
    pub fn new(built_for: Option<u64>) -> Self {
        Self {
            built_for,
            groups: Vec::new(),
            group_of: HashMap::default(),
            places: HashMap::default(),
            waiting: BTreeSet::new(),
            callbacks: BTreeSet::new(),
            new: BTreeSet::new(),
            counts: [0; Reason::COUNT],
            access: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Puts a lead where its verdict says, replacing wherever it was; true if it was not
    /// callable before and is now (apart from its window).
    pub fn place(
        &mut self,
        rules: &Rules,
        id: &LeadId,
        rank: impl Into<Rank>,
        locale: Locale,
        verdict: Verdict,
    ) -> bool {
        let rank = rank.into();
        let group = match self.group_of.get(&locale) {
            Some(&group) => group,
            None => {
                let window = rules.window_for(locale.region.as_deref()).clone();
                self.groups.push(Group { locale: locale.clone(), window, ready: BTreeSet::new(), known: None });
                self.group_of.insert(locale, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let state = match verdict {
            Verdict::Ready(None) => State::Ready,
            Verdict::Ready(Some(callback)) => State::Callback(callback),
            Verdict::Wait { until_ms, reason } => State::Waiting { until_ms, reason },
            Verdict::Never(reason) => State::Never(reason),
        };
        let place = Place { group, rank, state };
        // A placed lead's entry is rewritten where it is: one lookup, no new key.
        let was = match self.places.get_mut(id) {
            Some(entry) => Some(std::mem::replace(entry, place.clone())),
            None => {
                self.places.insert(id.clone(), place.clone());
                None
            }
        };
        let was_ready = was.as_ref().is_some_and(Place::ready);
        if let Some(was) = was {
            self.unlist(id, was);
        }
        self.list(id, &place);
        place.ready() && !was_ready
    }

    /// Forgets a lead (erased, or no longer scored in the campaign).
    pub fn remove(&mut self, id: &LeadId) {
        if let Some(place) = self.places.remove(id) {
            self.unlist(id, place);
        }
    }

    /// Enters a lead's place in the set and the count its state keeps.
    fn list(&mut self, id: &LeadId, place: &Place) {
        match &place.state {
            State::Ready => {
                self.groups[place.group].ready.insert(ranked(&place.rank, id));
                if let Some(until) = place.rank.new_until {
                    self.new.insert((until, id.clone()));
                }
            }
            State::Callback(callback) => {
                self.callbacks.insert((callback.at_ms, id.clone()));
            }
            State::Waiting { until_ms, reason } => {
                self.waiting.insert((*until_ms, id.clone()));
                self.counts[reason.index()] += 1;
            }
            State::Never(reason) => self.counts[reason.index()] += 1,
        }
    }

    /// Takes a lead's former place out of its set and count.
    fn unlist(&mut self, id: &LeadId, place: Place) {
        match place.state {
            State::Ready => {
                let ready = &mut self.groups[place.group].ready;
                // A claimed lead is its group's best: taken without building its key.
                if ready.first().is_some_and(|(_, _, first)| first == id) {
                    ready.pop_first();
                } else {
                    ready.remove(&ranked(&place.rank, id));
                }
                if let Some(until) = place.rank.new_until {
                    self.new.remove(&(until, id.clone()));
                }
            }
            State::Callback(callback) => {
                self.callbacks.remove(&(callback.at_ms, id.clone()));
            }
            State::Waiting { until_ms, reason } => {
                self.waiting.remove(&(until_ms, id.clone()));
                self.counts[reason.index()] -= 1;
            }
            State::Never(reason) => self.counts[reason.index()] -= 1,
        }
    }

    /// When a placed lead may next be called, as far as this queue knows: `Some(None)` for
    /// never, `None` if the lead is not here.
    pub fn callable_at(&self, id: &str, now_ms: i64) -> Option<Option<i64>> {
        Some(match &self.places.get(id)?.state {
            State::Ready => Some(now_ms),
            State::Callback(callback) => Some(callback.at_ms.max(now_ms)),
            State::Waiting { until_ms, .. } => Some(*until_ms),
            State::Never(_) => None,
        })
    }

    /// The queue group of a placed lead.
    pub fn locale_of(&self, id: &str) -> Option<&Locale> {
        self.places.get(id).map(|place| &self.groups[place.group].locale)
    }

    /// Takes out the leads whose wait is over, or who are no longer new, to be judged again.
    pub fn due(&mut self, now_ms: i64) -> Vec<(LeadId, f64)> {
        let mut due = Vec::new();
        while let Some((until, _)) = self.new.first()
            && *until <= now_ms
        {
            let (_, id) = self.new.first().cloned().expect("just seen");
            let score = self.places[&id].rank.score;
            self.remove(&id);
            due.push((id, score));
        }
        while let Some((until, _)) = self.waiting.first()
            && *until <= now_ms
        {
            let (_, id) = self.waiting.pop_first().expect("just seen");
            let place = self.places.remove(&id).expect("every waiting lead has a place");
            if let State::Waiting { reason, .. } = place.state {
                self.counts[reason.index()] -= 1;
            }
            due.push((id, place.rank.score));
        }
        due
    }

    /// The lead to offer `agent` now: a due callback it may take (its own first), else the
    /// best lead whose window is open, among those routing lets it take: `access` tells for a
    /// group's chain of rules, and where it depends on the lead, `routable` (given the lead
    /// and its score) for each. Groups compare their best by key times `weight` (the group's
    /// contact rate now, or 1; `None` while the group waits for a better hour), new leads
    /// first. `None` when there is nothing to offer; `passed` then counts the callable leads
    /// routing kept from this agent.
    pub fn pick(
        &mut self,
        rules: &Rules,
        agent: &str,
        now_ms: i64,
        access: &mut dyn FnMut(u64) -> Access,
        routable: &mut dyn FnMut(&LeadId, f64) -> bool,
        weight: &mut dyn FnMut(&Locale) -> Option<f64>,
        passed: &mut u64,
    ) -> Option<(LeadId, Rank, Pick)> {
        if let Some(found) = self.pick_callback(rules, agent, now_ms, routable, passed) {
            return Some(found);
        }
        let known = &mut self.access;
        known.clear();
        // Not new (false first), then the weighted key, best first.
        let mut best: Option<(bool, f64, &LeadId)> = None;
        for group in &mut self.groups {
            if group.ready.is_empty() || group.window_state(now_ms).is_err() {
                continue;
            }
            let chain = group.locale.chain;
            let allowed = match known.iter().find(|(c, _)| *c == chain) {
                Some(&(_, allowed)) => allowed,
                None => {
                    let allowed = access(chain);
                    known.push((chain, allowed));
                    allowed
                }
            };
            let top = match allowed {
                Access::All => group.ready.first(),
                Access::None => {
                    *passed += group.ready.len() as u64;
                    None
                }
                // The top leads may wait for other agents: the group's best for this one.
                Access::Some => group.ready.iter().find(|(_, _, id)| {
                    let ok = routable(id, self.places[id].rank.score);
                    *passed += u64::from(!ok);
                    ok
                }),
            };
            if let Some((not_new, key, id)) = top
                && let Some(weight) = weight(&group.locale)
            {
                let value = f64::from_bits(key.0) * weight;
                let better = |b: &(bool, f64, &LeadId)| {
                    (*not_new, -value, id).partial_cmp(&(b.0, -b.1, b.2)) == Some(std::cmp::Ordering::Less)
                };
                if best.as_ref().is_none_or(better) {
                    best = Some((*not_new, value, id));
                }
            }
        }
        best.map(|(_, _, id)| (id.clone(), self.places[id].rank, Pick::BestScore))
    }

    fn pick_callback(
        &mut self,
        rules: &Rules,
        agent: &str,
        now_ms: i64,
        routable: &mut dyn FnMut(&LeadId, f64) -> bool,
        passed: &mut u64,
    ) -> Option<(LeadId, Rank, Pick)> {
        let mut open_to_all = None;
        for (at, id) in self.callbacks.iter().take_while(|(at, _)| *at <= now_ms) {
            let place = &self.places[id];
            let State::Callback(callback) = &place.state else { unreachable!("callbacks hold callback places") };
            if self.groups[place.group].window_state(now_ms).is_err() {
                continue;
            }
            match callback.agent.as_deref() {
                Some(owner) if owner == agent => return Some((id.clone(), place.rank, Pick::AgentCallback)),
                Some(_) if now_ms < at + rules.callback_grace_ms => {}
                _ if open_to_all.is_some() => {}
                _ if !routable(id, place.rank.score) => *passed += 1,
                _ => open_to_all = Some((id.clone(), place.rank)),
            }
        }
        open_to_all.map(|(id, rank)| (id, rank, Pick::Callback))
    }

    /// Why nothing can be offered now, and when that may change; `held` says until when an
    /// open group waits for a better hour, if it does.
    pub fn dry(&mut self, now_ms: i64, grace_ms: i64, held: &mut dyn FnMut(&Locale) -> Option<i64>) -> Dry {
        let mut dry = Dry { counts: self.counts, next_at_ms: self.waiting.first().map(|(at, _)| *at) };
        let mut sooner = |at: i64| {
            if at != i64::MAX {
                dry.next_at_ms = Some(dry.next_at_ms.map_or(at, |next: i64| next.min(at)));
            }
        };
        for group in &mut self.groups {
            match group.window_state_and_until(now_ms) {
                (Err(shut), until) => {
                    dry.counts[Reason::from(shut).index()] += group.ready.len() as u64;
                    if !group.ready.is_empty() {
                        sooner(until);
                    }
                }
                (Ok(()), _) if !group.ready.is_empty() => {
                    if let Some(until) = held(&group.locale) {
                        dry.counts[Reason::BetterHour.index()] += group.ready.len() as u64;
                        sooner(until);
                    }
                }
                _ => {}
            }
        }
        for (at, id) in &self.callbacks {
            let group = &mut self.groups[self.places[id].group];
            match group.window_state_and_until(now_ms) {
                // Callable, yet not offered: it waits for another agent until its grace ends.
                (Ok(()), _) => {
                    dry.counts[Reason::Reserved.index()] += 1;
                    sooner(at + grace_ms);
                }
                (Err(shut), opens) => {
                    dry.counts[Reason::from(shut).index()] += 1;
                    sooner(opens);
                }
            }
        }
        dry
    }
}

/// The ready leads of one calling window.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneFigures {
    pub zone: chrono_tz::Tz,
    pub region: Option<compact_str::CompactString>,
    pub callable: u64,
    /// Of those, leads routing sends to no agent (a queue nobody calls, such as nurture).
    pub to_no_agent: u64,
    pub open: bool,
    /// When an open window next shuts (its close; claims stop `min_window_left` before), or a
    /// shut one opens (`i64::MAX`: not within a year).
    pub changes_at_ms: i64,
}

impl Queue {
    /// Ready leads by calling window (zone and region; routing's groups merged), by name;
    /// `staffed` says whether an agent could take a chain of routing rules' leads.
    pub fn zones(&mut self, now_ms: i64, staffed: &dyn Fn(u64) -> bool) -> Vec<ZoneFigures> {
        let mut zones: Vec<ZoneFigures> = Vec::new();
        for group in &mut self.groups {
            let (state, until) = group.window_state_and_until(now_ms);
            let changes_at_ms = if state.is_ok() { until + group.window.min_left_ms } else { until };
            let callable = group.ready.len() as u64;
            let to_no_agent = if staffed(group.locale.chain) { 0 } else { callable };
            let (zone, region) = (group.locale.zone, &group.locale.region);
            match zones.iter_mut().find(|z| z.zone == zone && z.region == *region) {
                Some(known) => {
                    known.callable += callable;
                    known.to_no_agent += to_no_agent;
                }
                None => zones.push(ZoneFigures {
                    zone,
                    region: region.clone(),
                    callable,
                    to_no_agent,
                    open: state.is_ok(),
                    changes_at_ms,
                }),
            }
        }
        zones.sort_by(|a, b| (a.zone.name(), &a.region).cmp(&(b.zone.name(), &b.region)));
        zones
    }
}

impl Queue {
    /// The leads callable now: those ready in groups whose windows are open. Told with every
    /// claim, so counted in place rather than through `zones`.
    pub fn callable(&mut self, now_ms: i64) -> u64 {
        let open =
            self.groups.iter_mut().filter_map(|group| group.window_state(now_ms).is_ok().then_some(&group.ready));
        open.map(|ready| ready.len() as u64).sum()
    }

    /// Callbacks whose time has come and that no one has made yet, and when the oldest was due.
    pub fn callbacks_due(&self) -> (u64, Option<i64>) {
        (self.callbacks.len() as u64, self.callbacks.first().map(|(at, _)| *at))
    }
}

impl Group {
    fn window_state(&mut self, now_ms: i64) -> Result<(), Shut> {
        self.window_state_and_until(now_ms).0
    }

    /// The window's state at `now_ms`, and when it next changes.
    fn window_state_and_until(&mut self, now_ms: i64) -> (Result<(), Shut>, i64) {
        if let Some((state, from, until)) = self.known
            && (from..until).contains(&now_ms)
        {
            return (state, until);
        }
        let (state, until) = match self.window.check(self.locale.zone, now_ms) {
            Ok(_) => (Ok(()), self.window.claims_stop_after(self.locale.zone, now_ms)),
            Err((shut, opens)) => (Err(shut), opens),
        };
        self.known = Some((state, now_ms, until));
        (state, until)
    }
}

fn ranked(rank: &Rank, id: &LeadId) -> Ranked {
    (rank.new_until.is_none(), Reverse(rank.key.max(0.0).to_bits()), id.clone())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use chrono_tz::{America, Europe, Tz};
    use leadscore_config::{ContactConfig, FilterConfig};

    use super::*;

    /// 2026-03-02 (a Monday) at `h:min` in `zone`.
    fn at(zone: Tz, h: u32, min: u32) -> i64 {
        zone.with_ymd_and_hms(2026, 3, 2, h, min, 0).unwrap().timestamp_millis()
    }

    fn rules() -> Rules {
        let contact = ContactConfig { callback_grace: "10m".into(), ..ContactConfig::default() };
        Rules::compile("campaigns.test", &FilterConfig::default(), &contact).unwrap()
    }

    fn locale(zone: Tz) -> Locale {
        Locale { zone, region: None, chain: 0, segment: None }
    }

    fn id(text: &str) -> LeadId {
        text.into()
    }

    /// The lead offered to `agent`, with every chain open to it.
    fn pick(queue: &mut Queue, rules: &Rules, agent: &str, now_ms: i64) -> Option<(LeadId, Pick)> {
        let mut passed = 0;
        queue
            .pick(rules, agent, now_ms, &mut |_| Access::All, &mut |_, _| true, &mut |_| Some(1.0), &mut passed)
            .map(|(id, _, pick)| (id, pick))
    }

    #[test]
    fn the_best_score_among_open_windows_is_offered_and_a_shut_window_holds_its_leads() {
        let (rules, mut queue) = (rules(), Queue::new(Some(1)));
        let berlin_noon = at(Europe::Berlin, 12, 0);
        assert!(queue.place(&rules, &id("berlin"), 50.0, locale(Europe::Berlin), Verdict::Ready(None)));
        // 06:00 in New York: shut until 08:00 there, even with the better score.
        assert!(queue.place(&rules, &id("new-york"), 90.0, locale(America::New_York), Verdict::Ready(None)));
        assert!(queue.place(&rules, &id("berlin-best"), 70.0, locale(Europe::Berlin), Verdict::Ready(None)));
        assert_eq!(pick(&mut queue, &rules, "ann", berlin_noon), Some((id("berlin-best"), Pick::BestScore)));

        let dry = queue.dry(berlin_noon, 0, &mut |_| None);
        assert_eq!(dry.counts[Reason::OutsideWindow.index()], 1);
        assert_eq!(dry.next_at_ms, Some(at(America::New_York, 8, 0)));
        // The window opens: the better lead comes first.
        assert_eq!(
            pick(&mut queue, &rules, "ann", at(America::New_York, 8, 0)),
            Some((id("new-york"), Pick::BestScore))
        );
        // A lead routing sends to no agent is callable, and counted as such within its zone.
        let nurture = Locale { chain: 1, ..locale(Europe::Berlin) };
        assert!(queue.place(&rules, &id("berlin-nurture"), 10.0, nurture, Verdict::Ready(None)));
        let zones = queue.zones(berlin_noon, &|chain| chain != 1);
        assert_eq!(
            zones.iter().map(|z| (z.zone, z.callable, z.to_no_agent, z.open)).collect::<Vec<_>>(),
            [(America::New_York, 1, 0, false), (Europe::Berlin, 3, 1, true)]
        );
        // Callable now: the ready leads of open windows only, whoever may take them.
        assert_eq!(queue.callable(berlin_noon), 3);
        assert_eq!(queue.callable(at(America::New_York, 8, 0)), 4);
    }

    #[test]
    fn a_waiting_lead_comes_back_when_its_wait_is_over_and_is_counted_until_then() {
        let (rules, mut queue) = (rules(), Queue::new(Some(1)));
        let noon = at(Europe::Berlin, 12, 0);
        let until_ms = noon + 15 * 60_000;
        let wait = Verdict::Wait { until_ms, reason: Reason::Recycling };
        assert!(!queue.place(&rules, &id("a"), 80.0, locale(Europe::Berlin), wait));
        assert_eq!(pick(&mut queue, &rules, "ann", noon), None);
        let dry = queue.dry(noon, 0, &mut |_| None);
        assert_eq!((dry.counts[Reason::Recycling.index()], dry.next_at_ms), (1, Some(until_ms)));
        assert_eq!(queue.callable_at("a", noon), Some(Some(until_ms)));

        assert!(queue.due(until_ms - 1).is_empty());
        assert_eq!(queue.due(until_ms), [(id("a"), 80.0)]);
        assert_eq!((queue.len(), queue.dry(until_ms, 0, &mut |_| None).counts), (0, [0; Reason::COUNT]));
        // Judged again, it is ready.
        assert!(queue.place(&rules, &id("a"), 80.0, locale(Europe::Berlin), Verdict::Ready(None)));
        assert_eq!(pick(&mut queue, &rules, "ann", until_ms), Some((id("a"), Pick::BestScore)));
    }

    #[test]
    fn a_removed_or_replaced_lead_leaves_no_trace() {
        let (rules, mut queue) = (rules(), Queue::new(Some(1)));
        let noon = at(Europe::Berlin, 12, 0);
        queue.place(&rules, &id("a"), 80.0, locale(Europe::Berlin), Verdict::Ready(None));
        queue.place(&rules, &id("b"), 60.0, locale(Europe::Berlin), Verdict::Never(Reason::DoNotCall));
        // Placing again moves it: a lead is in one place only.
        assert!(!queue.place(&rules, &id("a"), 80.0, locale(Europe::Berlin), Verdict::Never(Reason::MaxAttempts)));
        assert_eq!(pick(&mut queue, &rules, "ann", noon), None);
        assert_eq!(queue.callable_at("a", noon), Some(None));
        queue.remove(&id("a"));
        queue.remove(&id("b"));
        queue.remove(&id("never-placed"));
        assert_eq!((queue.len(), queue.dry(noon, 0, &mut |_| None).counts), (0, [0; Reason::COUNT]));
        assert_eq!(queue.callable_at("a", noon), None);
    }

    #[test]
    fn a_due_callback_goes_to_its_agent_first_and_to_anyone_after_the_grace() {
        let (rules, mut queue) = (rules(), Queue::new(Some(1)));
        let due = at(Europe::Berlin, 12, 0);
        let callback = DueCallback { at_ms: due, agent: Some("ann".into()) };
        queue.place(&rules, &id("best"), 99.0, locale(Europe::Berlin), Verdict::Ready(None));
        queue.place(&rules, &id("cb"), 10.0, locale(Europe::Berlin), Verdict::Ready(Some(callback)));
        assert_eq!(pick(&mut queue, &rules, "ann", due - 1), Some((id("best"), Pick::BestScore)));
        assert_eq!(pick(&mut queue, &rules, "ann", due), Some((id("cb"), Pick::AgentCallback)));
        // Another agent waits out the grace, then takes it before any score.
        assert_eq!(pick(&mut queue, &rules, "bob", due + 5 * 60_000), Some((id("best"), Pick::BestScore)));
        assert_eq!(
            queue.dry(due + 5 * 60_000, rules.callback_grace_ms, &mut |_| None).counts[Reason::Reserved.index()],
            1
        );
        assert_eq!(pick(&mut queue, &rules, "bob", due + 10 * 60_000), Some((id("cb"), Pick::Callback)));
    }

    #[test]
    fn routing_keeps_a_chain_from_an_agent_and_counts_what_it_passed() {
        let (rules, mut queue) = (rules(), Queue::new(Some(1)));
        let noon = at(Europe::Berlin, 12, 0);
        let chain = |chain| Locale { chain, ..locale(Europe::Berlin) };
        queue.place(&rules, &id("vip"), 90.0, chain(1), Verdict::Ready(None));
        queue.place(&rules, &id("vip-2"), 85.0, chain(1), Verdict::Ready(None));
        queue.place(&rules, &id("mixed-a"), 80.0, chain(2), Verdict::Ready(None));
        queue.place(&rules, &id("mixed-b"), 70.0, chain(2), Verdict::Ready(None));
        let access = |chain| if chain == 1 { Access::None } else { Access::Some };
        let mut passed = 0;
        let routable = &mut |lead: &LeadId, _| lead.as_str() != "mixed-a";
        let found = queue.pick(&rules, "ann", noon, &mut { access }, routable, &mut |_| Some(1.0), &mut passed);
        assert_eq!(found.map(|(id, rank, _)| (id, rank.score)), Some((id("mixed-b"), 70.0)));
        assert_eq!(passed, 3, "two of the chain closed to the agent, one refused lead by lead");
    }
}
