//! When people answer: each campaign's chance that a call reaches the person, by segment (the
//! lead's time zone or region, plus the attributes the campaign names) and local hour of the
//! week, learned from the calls' outcomes.
//!
//! Estimates are Beta-Binomial, each level shrunk towards the coarser one by `prior_calls`
//! calls' worth of trust: the segment at that hour leans on all leads at that hour, which lean
//! on the campaign's rate, which leans on an even chance. Thin data so falls back gracefully,
//! and a lead's own calls at that time of day adjust its estimate last.
//!
//! The rates are a function of the store (its leads' calls, zones and attributes) and the
//! configuration: built from it when the dialer starts or the configuration changes, then kept
//! up by each outcome as it is reported, and built again after an erasure (before the next
//! answer that reads them, or by the sweep). A rebuild racing an outcome counts it once: each
//! lead's counted calls are remembered.
//!
//! The same book counts, by day, the calls a person answered and those the dialer abandoned
//! (`Grid::abandonment`): the campaign's abandon rate, which regulators cap.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;
use compact_str::CompactString;

use super::{DialError, Dialer, eligibility};
use crate::generation::{CampaignRules, Generation};
use crate::policy::contact::Rules;
use crate::policy::order::Order;
use leadscore_config::DialingOrder;
use leadscore_store::dial::{Attempt, CallResult};
use leadscore_store::lead::{Lead, LeadId, Value};
use leadscore_store::sync::{Mutex, Rank};

/// A lead's segment and zone in a campaign, its worth, and its own calls there (when, and
/// whether they reached it).
type SegmentAndCalls = (CompactString, Tz, f64, Vec<(i64, bool)>);

pub const HOURS: usize = 168;
const DAY_MS: i64 = 86_400_000;
/// A lead's own calls weigh against its segment's rate as if that rate had this many calls.
const LEAD_PRIOR_CALLS: f64 = 3.0;

/// Whether a call reached the person; `None` for a wrong number, which says nothing of when
/// the lead answers.
pub fn reached(result: CallResult) -> Option<bool> {
    match result {
        CallResult::NoAnswer | CallResult::Busy | CallResult::Voicemail => Some(false),
        CallResult::ConnectedNotInterested
        | CallResult::Callback
        | CallResult::Converted
        | CallResult::Lost
        | CallResult::DoNotCall
        | CallResult::Abandoned => Some(true),
        CallResult::WrongNumber => None,
    }
}

/// The local hour of the week of an instant, Monday 00:00-00:59 being 0.
pub fn hour_of_week(zone: Tz, at_ms: i64) -> usize {
    let local = zone.timestamp_millis_opt(at_ms).single().expect("every instant has one local time");
    local.weekday().num_days_from_monday() as usize * 24 + local.hour() as usize
}

/// "Thu 16:00".
pub fn hour_name(hour: usize) -> String {
    let (day, hour) = hour_parts(hour);
    format!("{day} {hour:02}:00")
}

/// An hour of the week as its day's name and the hour of that day.
fn hour_parts(hour: usize) -> (&'static str, usize) {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    (DAYS[hour / 24 % 7], hour % 24)
}

/// The segment a lead's calls count in under a campaign: its region if the campaign has one
/// for it, else its zone, then each named attribute's value; and the zone its hours are in.
pub fn segment_of(
    rules: &Rules,
    order: &Order,
    lead: &Lead,
    attribute: &dyn Fn(&Lead, &str) -> Option<Value>,
) -> (CompactString, Tz) {
    let locale = eligibility::locale(rules, lead, attribute);
    let mut segment = match &locale.region {
        Some(region) => region.clone(),
        None => CompactString::from(locale.zone.name()),
    };
    for name in &order.segment {
        let value = match attribute(lead, name) {
            Some(Value::Text(text)) => text.trim().to_lowercase(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Flag(b)) => b.to_string(),
            _ => "-".into(),
        };
        segment.push_str(&format!(" · {name}={value}"));
    }
    (segment, locale.zone)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub calls: u32,
    pub contacts: u32,
}

impl Tally {
    fn add(&mut self, contact: bool) {
        self.calls += 1;
        self.contacts += u32::from(contact);
    }

    pub fn plus(self, other: Tally) -> Tally {
        Tally { calls: self.calls + other.calls, contacts: self.contacts + other.contacts }
    }

    /// The posterior mean with `prior` calls' worth of `mean`.
    fn shrunk(self, mean: f64, prior: f64) -> f64 {
        (f64::from(self.contacts) + prior * mean) / (f64::from(self.calls) + prior)
    }
}

/// A contact rate's estimate at one hour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub rate: f64,
    /// The calls and contacts of the most specific level (the segment at that hour).
    pub calls: u32,
    pub contacts: u32,
    /// A 90% interval around `rate` from its Beta posterior (normal approximation).
    pub low: f64,
    pub high: f64,
}

impl Estimate {
    fn of(rate: f64, tally: Tally, prior: f64) -> Self {
        let spread = 1.645 * (rate * (1.0 - rate) / (f64::from(tally.calls) + prior + 1.0)).sqrt();
        Self {
            rate,
            calls: tally.calls,
            contacts: tally.contacts,
            low: (rate - spread).max(0.0),
            high: (rate + spread).min(1.0),
        }
    }
}

/// One campaign's calls by hour of the week: all of them, and by segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub overall: Tally,
    pub hours: Box<[Tally; HOURS]>,
    pub segments: HashMap<CompactString, Box<[Tally; HOURS]>>,
    /// By day (days since the epoch, UTC): calls a person answered, and those abandoned among
    /// them; the last `ABANDON_DAYS` and a few more are kept.
    answered: BTreeMap<i64, (u64, u64)>,
}

impl Default for Grid {
    fn default() -> Self {
        Self {
            overall: Tally::default(),
            hours: Box::new([Tally::default(); HOURS]),
            segments: HashMap::new(),
            answered: BTreeMap::new(),
        }
    }
}

/// The days over which a campaign's abandon rate is counted.
pub const ABANDON_DAYS: i64 = 30;
/// The most abandoned calls allowed, as a share of answered ones (TCPA safe harbour, Ofcom).
pub const ABANDON_LIMIT: f64 = 0.03;

impl Grid {
    fn add(&mut self, call: &Counted) {
        self.overall.add(call.contact);
        self.hours[call.hour].add(call.contact);
        let tallies = match self.segments.get_mut(call.segment.as_str()) {
            Some(tallies) => tallies,
            None => self.segments.entry(call.segment.clone()).or_insert_with(|| Box::new([Tally::default(); HOURS])),
        };
        tallies[call.hour].add(call.contact);
        if call.contact {
            let (answered, abandoned) = self.answered.entry(call.day).or_default();
            *answered += 1;
            *abandoned += u64::from(call.abandoned);
            // Days long past the window go; an older call counted late prunes only older days.
            while self.answered.first_key_value().is_some_and(|(&day, _)| day < call.day - 2 * ABANDON_DAYS) {
                self.answered.pop_first();
            }
        }
    }

    /// Calls a person answered, and those abandoned, in the `ABANDON_DAYS` UTC days up to the
    /// one of `now_ms`.
    pub fn abandonment(&self, now_ms: i64) -> (u64, u64) {
        let today = now_ms.div_euclid(DAY_MS);
        self.answered
            .range(today - ABANDON_DAYS + 1..=today)
            .fold((0, 0), |(answered, abandoned), (_, (a, b))| (answered + a, abandoned + b))
    }

    pub fn overall(&self, prior: f64) -> Estimate {
        overall(self.overall, prior)
    }

    /// The rate of all leads at an hour, or of a segment's if `segment` is given.
    pub fn estimate(&self, segment: Option<&str>, hour: usize, prior: f64) -> Estimate {
        let tally = segment.map(|s| self.segments.get(s).map_or_else(Tally::default, |t| t[hour]));
        estimate(self.overall, self.hours[hour], tally, prior)
    }
}

/// A campaign's rate over all its calls, shrunk towards an even chance.
pub fn overall(calls: Tally, prior: f64) -> Estimate {
    Estimate::of(calls.shrunk(0.5, prior.max(2.0)), calls, prior)
}

/// The rate at an hour from the campaign's calls, every lead's at that hour and, if asked, a
/// segment's: each level shrunk towards the one above.
pub fn estimate(campaign: Tally, all: Tally, segment: Option<Tally>, prior: f64) -> Estimate {
    let all_rate = all.shrunk(overall(campaign, prior).rate, prior);
    match segment {
        None => Estimate::of(all_rate, all, prior),
        Some(tally) => Estimate::of(tally.shrunk(all_rate, prior), tally, prior),
    }
}

/// A lead's estimate adjusted by its own calls at the same time of day (any weekday, the hour
/// either side too): a lead that never answers mornings is less likely to this morning.
pub fn for_lead(segment: Estimate, own: &[(usize, bool)], hour: usize) -> Estimate {
    let near = |h: usize| (h % 24).abs_diff(hour % 24).min(24 - (h % 24).abs_diff(hour % 24)) <= 1;
    let mut tally = Tally::default();
    for &(_, contact) in own.iter().filter(|(h, _)| near(*h)) {
        tally.add(contact);
    }
    if tally.calls == 0 {
        return segment;
    }
    let rate = tally.shrunk(segment.rate, LEAD_PRIOR_CALLS);
    Estimate { rate, ..segment }
}

/// What a conversion of the lead is worth under a campaign's order: its `value` attribute if
/// that is a number of 0 or more, else 1.
pub fn worth(order: &Order, value: &Option<Value>) -> f64 {
    match value {
        Some(Value::Number(n)) if order.value.is_some() && n.is_finite() && *n >= 0.0 => *n,
        _ => 1.0,
    }
}

/// One call as the rates count it.
#[derive(Clone, Debug)]
pub struct Counted {
    pub campaign: CompactString,
    pub segment: CompactString,
    pub hour: usize,
    pub contact: bool,
    /// The day of the call (days since the epoch, UTC), and whether it was abandoned.
    pub day: i64,
    pub abandoned: bool,
}

impl Counted {
    /// A call as the rates count it, in a segment whose hours are in `zone`; `None` for a
    /// call that says nothing of when the lead answers (a wrong number).
    fn of(
        campaign: CompactString,
        (segment, zone): (CompactString, Tz),
        result: CallResult,
        at_ms: i64,
    ) -> Option<Self> {
        Some(Counted {
            campaign,
            segment,
            hour: hour_of_week(zone, at_ms),
            contact: reached(result)?,
            day: at_ms.div_euclid(DAY_MS),
            abandoned: result == CallResult::Abandoned,
        })
    }
}

/// The calls of one lead as the rates count them, under each campaign's rules.
pub fn count_calls(
    attempts: &[Attempt],
    lead: &Lead,
    generation: &Generation,
    attribute: &dyn Fn(&Lead, &str) -> Option<Value>,
) -> Vec<Counted> {
    let mut counted = Vec::new();
    for attempt in attempts {
        let campaign = generation.campaign(&attempt.campaign).map(|c| &generation.campaigns[c]);
        let Some(campaign) = campaign else { continue };
        let segment = segment_of(&campaign.rules, &campaign.order, lead, attribute);
        counted.extend(Counted::of(attempt.campaign.clone(), segment, attempt.result, attempt.at_ms));
    }
    counted
}

#[derive(Debug, Default)]
struct Book {
    grids: HashMap<CompactString, Grid>,
    /// Calls per lead that the last rebuild's scan counted: an outcome the scan saw is not
    /// counted again when it is reported after. Live outcomes are not added: each is counted
    /// once (the store refuses a repeated report), and the map does not grow on every call.
    counted: HashMap<LeadId, u32, foldhash::fast::RandomState>,
    /// Outcomes counted while a rebuild runs, for the rebuilt book to take too.
    pending: Option<Vec<(LeadId, u32, Counted)>>,
}

impl Book {
    fn count(&mut self, id: &LeadId, calls: u32, call: &Counted) {
        if self.counted.get(id).is_some_and(|&scanned| scanned >= calls) {
            return;
        }
        match self.grids.get_mut(call.campaign.as_str()) {
            Some(grid) => grid.add(call),
            None => self.grids.entry(call.campaign.clone()).or_default().add(call),
        }
    }
}

#[derive(Debug)]
pub struct ContactRates {
    book: Mutex<Book>,
    /// Held while a rebuild scans the store: one at a time.
    rebuilding: Mutex<()>,
    /// Calls left the store since the last rebuild (or none was made yet).
    stale: AtomicBool,
}

impl Default for ContactRates {
    fn default() -> Self {
        Self {
            book: Mutex::new(Rank::ContactRates, Book::default()),
            rebuilding: Mutex::new(Rank::ContactRatesBuild, ()),
            stale: AtomicBool::new(true),
        }
    }
}

impl ContactRates {
    /// Counts a reported outcome: the lead's `calls`-th call.
    pub fn reported(&self, id: &LeadId, calls: u32, call: Counted) {
        let mut book = self.book.lock();
        if let Some(pending) = &mut book.pending {
            pending.push((id.clone(), calls, call.clone()));
        }
        book.count(id, calls, &call);
    }

    /// Calls left the store (a lead was erased): the rates are built again before they are
    /// next read for an answer (`refresh`).
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// Builds the rates anew if calls left the store since they were built, or they never were.
    pub fn refresh(&self, scan: impl FnOnce() -> Vec<(LeadId, u32, Vec<Counted>)>) {
        let _one = self.rebuilding.lock();
        if self.stale.load(Ordering::SeqCst) {
            self.build(scan);
        }
    }

    /// Builds the rates anew from every stored lead's calls, which `scan` gives as (lead, its
    /// calls so far, those calls counted). Only the book's own lock is taken, briefly, at the
    /// start and the end; outcomes reported meanwhile are counted into the new book unless the
    /// scan saw them.
    pub fn rebuild(&self, scan: impl FnOnce() -> Vec<(LeadId, u32, Vec<Counted>)>) {
        let _one = self.rebuilding.lock();
        self.build(scan);
    }

    fn build(&self, scan: impl FnOnce() -> Vec<(LeadId, u32, Vec<Counted>)>) {
        self.stale.store(false, Ordering::SeqCst);
        self.book.lock().pending = Some(Vec::new());
        let mut fresh = Book::default();
        for (id, calls, counted) in scan() {
            for call in &counted {
                fresh.grids.entry(call.campaign.clone()).or_default().add(call);
            }
            fresh.counted.insert(id, calls);
        }
        let mut book = self.book.lock();
        for (id, calls, call) in book.pending.take().unwrap_or_default() {
            fresh.count(&id, calls, &call);
        }
        *book = fresh;
    }

    /// Reads a campaign's grid (an empty one if it has no calls yet).
    pub fn read<R>(&self, campaign: &str, read: impl FnOnce(&Grid) -> R) -> R {
        let book = self.book.lock();
        match book.grids.get(campaign) {
            Some(grid) => read(grid),
            None => read(&Grid::default()),
        }
    }
}

/// A campaign's calls as `ContactRates` answers: all of them, each hour's (every lead's, and
/// the segment's asked if any), and each segment's; estimates are made from these counts, so
/// the parts of a cluster add up exactly.
#[derive(Clone, Debug)]
pub struct Rates {
    pub campaign: Arc<str>,
    pub prior: f64,
    pub overall: Tally,
    pub hours: Vec<(Tally, Option<Tally>)>,
    /// Each segment's calls and contacts, most called first.
    pub segments: Vec<(CompactString, Tally)>,
}

impl Rates {
    pub fn estimate(&self, hour: usize) -> Estimate {
        let (all, segment) = self.hours[hour];
        estimate(self.overall, all, segment, self.prior)
    }
}

/// A lead's chance of being reached, as a claim explains it.
#[derive(Clone, Debug)]
pub struct Outlook {
    pub segment: CompactString,
    pub hour: usize,
    /// Its segment's rate at this local hour, adjusted by its own calls at this time of day.
    pub estimate: Estimate,
    /// P(contact now) × P(conversion | contact) × worth.
    pub expected_value: f64,
    pub order: DialingOrder,
}

impl Outlook {
    /// "contact rate at Thu 16:00 local in America/Chicago: 0.31 (from 412 calls), expected
    /// value 0.12".
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(96);
        let (day, hour) = hour_parts(self.hour);
        let _ =
            write!(out, "contact rate at {day} {hour:02}:00 local in {}: {:.2} (", self.segment, self.estimate.rate);
        let _ = match self.estimate.calls {
            0 => write!(out, "no calls yet in this segment at this hour"),
            1 => write!(out, "from 1 call"),
            n => write!(out, "from {n} calls"),
        };
        let _ = write!(out, "), expected value {:.3}", self.expected_value);
        out
    }
}

impl Dialer {
    /// A stored lead's chance of being reached at `at_ms` in a campaign, and its expected value.
    pub fn outlook(&self, campaign: &str, id: &LeadId, score: f64, at_ms: i64) -> Option<Outlook> {
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign(campaign)?];
        let (segment, zone, worth, own) = self.segment_and_calls(campaign, id)?;
        let hour = hour_of_week(zone, at_ms);
        let prior = campaign.order.prior_calls;
        let segment_rate = self.contact_rates.read(&campaign.name, |grid| grid.estimate(Some(&segment), hour, prior));
        let own: Vec<(usize, bool)> = own.iter().map(|&(at, contact)| (hour_of_week(zone, at), contact)).collect();
        let estimate = for_lead(segment_rate, &own, hour);
        let expected_value = estimate.rate * self.conversion(campaign, id, score) * worth;
        Some(Outlook { segment, hour, estimate, expected_value, order: campaign.order.by })
    }

    /// A stored lead's contact rate at each local hour of the week in a campaign, adjusted by
    /// its own calls; with its segment.
    pub fn contact_curve(&self, campaign: &str, id: &LeadId) -> Option<(CompactString, Vec<Estimate>)> {
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign(campaign)?];
        let (segment, zone, _, own) = self.segment_and_calls(campaign, id)?;
        let own: Vec<(usize, bool)> = own.iter().map(|&(at, contact)| (hour_of_week(zone, at), contact)).collect();
        let prior = campaign.order.prior_calls;
        let curve = self.contact_rates.read(&campaign.name, |grid| {
            (0..HOURS).map(|hour| for_lead(grid.estimate(Some(&segment), hour, prior), &own, hour)).collect()
        });
        Some((segment, curve))
    }

    /// A lead's segment and zone in a campaign, its worth, and its own calls there.
    fn segment_and_calls(&self, campaign: &CampaignRules, id: &LeadId) -> Option<SegmentAndCalls> {
        let attribute = |lead: &Lead, name: &str| self.store.attribute(lead, name);
        let (segment, zone, worth) = self.store.read_lead(id, |lead| {
            let (segment, zone) = segment_of(&campaign.rules, &campaign.order, lead, &attribute);
            let value = campaign.order.value.as_deref().and_then(|name| attribute(lead, name));
            (segment, zone, worth(&campaign.order, &value))
        })?;
        let own = self
            .store
            .read_dial(id, |dial| {
                let calls = dial.attempts.iter().filter(|a| *a.campaign == *campaign.name);
                calls.filter_map(|a| Some((a.at_ms, reached(a.result)?))).collect()
            })
            .unwrap_or_default();
        Some((segment, zone, worth, own))
    }

    /// Counts a reported call (the lead's `calls`-th) in the rates, in the lead's segment as
    /// it is now.
    pub(super) fn count_call(&self, id: &LeadId, campaign: &str, calls: u32, (result, at_ms): (CallResult, i64)) {
        let generation = self.generations.current();
        let Some(campaign) = generation.campaign(campaign).map(|c| &generation.campaigns[c]) else { return };
        let attribute = |lead: &Lead, name: &str| self.store.attribute(lead, name);
        let Some(segment) =
            self.store.read_lead(id, |lead| segment_of(&campaign.rules, &campaign.order, lead, &attribute))
        else {
            return;
        };
        if let Some(call) = Counted::of((*campaign.name).into(), segment, result, at_ms) {
            self.contact_rates.reported(id, calls, call);
        }
    }

    /// Builds the contact rates anew from every stored call, under the current configuration.
    pub fn rebuild_contact_rates(&self) {
        self.contact_rates.rebuild(|| self.scan_calls());
    }

    /// Builds the rates again if calls were erased since they were built, or they never were.
    pub fn refresh_contact_rates(&self) {
        self.contact_rates.refresh(|| self.scan_calls());
    }

    /// Every stored call as the rates count it, under the current configuration.
    fn scan_calls(&self) -> Vec<(LeadId, u32, Vec<Counted>)> {
        let generation = self.generations.current();
        let attribute = |lead: &Lead, name: &str| self.store.attribute(lead, name);
        {
            // Copied out first: each lead is read again below with no shard locked.
            let mut called = Vec::new();
            self.store.each_dial(|id, dial| {
                if !dial.attempts.is_empty() {
                    called.push((id.clone(), dial.attempts.clone()));
                }
            });
            called
                .into_iter()
                .filter_map(|(id, attempts)| {
                    let counted =
                        self.store.read_lead(&id, |lead| count_calls(&attempts, lead, &generation, &attribute))?;
                    Some((id, attempts.len() as u32, counted))
                })
                .collect()
        }
    }

    /// A lead's calls left the store: the rates are built again before they are next read
    /// for an answer, and by the sweep.
    pub fn calls_erased(&self) {
        self.contact_rates.mark_stale();
    }

    /// A campaign's contact rates by local hour of the week, of one segment or of all leads.
    pub fn contact_rates(&self, campaign: &str, segment: &str) -> Result<Rates, DialError> {
        self.refresh_contact_rates();
        let generation = self.generations.current();
        let campaign = &generation.campaigns[generation.campaign_or_error("campaign", campaign)?];
        let prior = campaign.order.prior_calls;
        Ok(self.contact_rates.read(&campaign.name, |grid| {
            let segment = (!segment.is_empty()).then_some(segment);
            let mut segments: Vec<(CompactString, Tally)> = grid
                .segments
                .iter()
                .map(|(name, hours)| (name.clone(), hours.iter().fold(Tally::default(), |sum, h| sum.plus(*h))))
                .collect();
            segments.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then_with(|| a.0.cmp(&b.0)));
            let of_segment = segment.map(|s| grid.segments.get(s));
            Rates {
                campaign: campaign.name.clone(),
                prior,
                overall: grid.overall,
                hours: (0..HOURS)
                    .map(|hour| (grid.hours[hour], of_segment.map(|t| t.map_or_else(Tally::default, |t| t[hour]))))
                    .collect(),
                segments,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(segment: &str, hour: usize, contact: bool) -> Counted {
        Counted { campaign: "c".into(), segment: segment.into(), hour, contact, day: 0, abandoned: false }
    }

    #[test]
    fn thin_data_leans_on_the_coarser_level_and_plenty_stands_on_its_own() {
        let mut grid = Grid::default();
        // The campaign answers 30% of the time; Thursday 16:00 in Chicago, 60% over 500 calls.
        for i in 0..1000 {
            grid.add(&call("America/New_York", 10, i % 10 < 3));
        }
        for i in 0..500 {
            grid.add(&call("America/Chicago", 88, i % 10 < 6));
        }
        let prior = 20.0;
        let thursday = grid.estimate(Some("America/Chicago"), 88, prior);
        assert!((thursday.rate - 0.6).abs() < 0.02, "{thursday:?}");
        assert!(thursday.low < thursday.rate && thursday.rate < thursday.high && thursday.high - thursday.low < 0.1);
        // An hour nobody called: the campaign's rate, with a wide interval.
        let campaign = grid.overall(prior).rate;
        let empty = grid.estimate(Some("Europe/Berlin"), 3, prior);
        assert!((empty.rate - campaign).abs() < 1e-9 && empty.calls == 0, "{empty:?} {campaign}");
        assert!(empty.high - empty.low > 2.0 * (thursday.high - thursday.low));
        // Two calls, both answered, move it only part of the way.
        grid.add(&call("Europe/Berlin", 3, true));
        grid.add(&call("Europe/Berlin", 3, true));
        let two = grid.estimate(Some("Europe/Berlin"), 3, prior);
        assert!(two.rate > empty.rate && two.rate < 0.6, "{two:?}");
    }

    #[test]
    fn a_leads_own_calls_at_that_time_of_day_adjust_its_estimate() {
        let segment = Estimate { rate: 0.4, calls: 300, contacts: 120, low: 0.35, high: 0.45 };
        // Five unanswered morning calls (Monday to Friday, 9:00-10:00).
        let mornings: Vec<(usize, bool)> = (0..5).map(|day| (day * 24 + 9 + day % 2, false)).collect();
        let tuesday_nine = for_lead(segment, &mornings, 24 + 9);
        assert!(tuesday_nine.rate < 0.2, "{tuesday_nine:?}");
        // The afternoon is untouched.
        assert_eq!(for_lead(segment, &mornings, 24 + 16), segment);
    }

    #[test]
    fn hours_of_the_week_are_local() {
        // 2026-11-05 is a Thursday; 22:00 UTC is 16:00 in Chicago.
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 5, 22, 0, 0).unwrap().timestamp_millis();
        let hour = hour_of_week(chrono_tz::America::Chicago, at);
        assert_eq!((hour, hour_name(hour)), (3 * 24 + 16, "Thu 16:00".to_string()));
        assert_eq!(hour_name(hour_of_week(chrono_tz::Asia::Tokyo, at)), "Fri 07:00");
    }

    #[test]
    fn an_outlook_says_where_when_and_from_how_many_calls() {
        let estimate = |calls| Estimate { rate: 0.314, calls, contacts: 1, low: 0.2, high: 0.4 };
        let outlook = |calls| Outlook {
            segment: "America/Chicago".into(),
            hour: 3 * 24 + 16,
            estimate: estimate(calls),
            expected_value: 0.1234,
            order: DialingOrder::ExpectedValue,
        };
        assert_eq!(
            outlook(412).describe(),
            "contact rate at Thu 16:00 local in America/Chicago: 0.31 (from 412 calls), expected value 0.123"
        );
        assert!(outlook(1).describe().contains("(from 1 call)"));
        assert!(outlook(0).describe().contains("(no calls yet in this segment at this hour)"));
    }

    #[test]
    fn an_outcome_a_rebuild_already_counted_is_not_counted_again() {
        let rates = ContactRates::default();
        rates.rebuild(Vec::new);
        let call = |contact| call("UTC", 5, contact);
        let id = LeadId::from("a");
        rates.reported(&id, 1, call(true));
        // The rebuild's scan sees the lead's two calls; the second is reported during the scan.
        rates.rebuild(|| {
            rates.reported(&id, 2, call(false));
            vec![(id.clone(), 2, vec![call(true), call(false)])]
        });
        assert_eq!(rates.read("c", |g| g.overall), Tally { calls: 2, contacts: 1 });
        // A third call the scan did not see is taken into the new book.
        rates.rebuild(|| {
            rates.reported(&id, 3, call(true));
            vec![(id.clone(), 2, vec![call(true), call(false)])]
        });
        assert_eq!(rates.read("c", |g| g.overall), Tally { calls: 3, contacts: 2 });
    }

    #[test]
    fn the_abandon_rate_counts_answered_calls_of_the_last_30_days() {
        let mut grid = Grid::default();
        let on = |day: i64, contact: bool, abandoned: bool| Counted { day, abandoned, ..call("UTC", 0, contact) };
        // Day 100: 40 answered, 2 of them abandoned; unanswered calls do not count.
        for i in 0..40 {
            grid.add(&on(100, true, i < 2));
            grid.add(&on(100, false, false));
        }
        // Day 60 is outside the 30 days up to day 100; day 71 is the first inside.
        grid.add(&on(60, true, true));
        grid.add(&on(71, true, true));
        assert_eq!(grid.abandonment(100 * DAY_MS), (41, 3));
        assert_eq!(grid.abandonment(129 * DAY_MS), (40, 2));
        assert_eq!(grid.abandonment(130 * DAY_MS), (0, 0));
    }
}
