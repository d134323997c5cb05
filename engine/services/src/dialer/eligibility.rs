//! Whether a campaign may call a lead now, apart from its calling window (which depends only on
//! the lead's zone and region, so the queue checks it per group): a pure function of the lead,
//! what the dialer remembers of it, the campaign's rules and the time.

use chrono_tz::Tz;

use super::revocations::Why;
use crate::policy::contact::{self as rules, Rules, Shut};
use crate::scoring::pipeline::Band;
use leadscore_config::{ACCOUNT_SCORE, DEFAULT_CAMPAIGN};
use leadscore_store::dial::{CallResult, Dial};
use leadscore_store::lead::{Lead, Value};

/// Why a lead is not called now; the counts a dry dialer reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    OutsideWindow,
    Holiday,
    Recycling,
    MaxAttempts,
    DoNotCall,
    MissingConsent,
    Leased,
    /// The campaign's filter leaves it out (its band, attributes, or the campaign's list).
    FilteredOut,
    /// Calls ended with a final result (converted, lost, a wrong number).
    Finished,
    /// A due callback kept for another agent.
    Reserved,
    /// Its segment answers markedly better soon (`dialing.hold_for_better_hour`).
    BetterHour,
    /// No phone number to call.
    NoPhone,
}

impl Reason {
    pub const COUNT: usize = 12;
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::OutsideWindow,
        Reason::Holiday,
        Reason::Recycling,
        Reason::MaxAttempts,
        Reason::DoNotCall,
        Reason::MissingConsent,
        Reason::Leased,
        Reason::FilteredOut,
        Reason::Finished,
        Reason::Reserved,
        Reason::BetterHour,
        Reason::NoPhone,
    ];

    /// As metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Reason::OutsideWindow => "outside_calling_window",
            Reason::Holiday => "holiday",
            Reason::Recycling => "recycling",
            Reason::MaxAttempts => "max_attempts",
            Reason::DoNotCall => "do_not_call",
            Reason::MissingConsent => "missing_consent",
            Reason::Leased => "leased",
            Reason::FilteredOut => "filtered_out",
            Reason::Finished => "finished",
            Reason::Reserved => "reserved_for_another_agent",
            Reason::BetterHour => "held_for_better_hour",
            Reason::NoPhone => "no_phone",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<Shut> for Reason {
    fn from(shut: Shut) -> Self {
        match shut {
            Shut::OutsideWindow => Reason::OutsideWindow,
            Shut::Holiday => Reason::Holiday,
        }
    }
}

/// A due callback, which comes before any lead ranked by score.
#[derive(Clone, Debug, PartialEq)]
pub struct DueCallback {
    pub at_ms: i64,
    /// Only this agent may take it before `at_ms` plus the campaign's grace.
    pub agent: Option<compact_str::CompactString>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Callable whenever its window is open.
    Ready(Option<DueCallback>),
    /// Not before this instant.
    Wait { until_ms: i64, reason: Reason },
    /// Not until something about the lead or the rules changes.
    Never(Reason),
}

/// Where a lead's calling window comes from, and which routing rules hold for it: leads
/// that share both share a queue group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Locale {
    pub zone: Tz,
    /// The region override that applies, if any.
    pub region: Option<compact_str::CompactString>,
    /// The routing rules whose condition holds for the lead, one bit each (`Policy::chain`).
    pub chain: u64,
    /// Its contact-rate segment, where the campaign orders by expected value: leads that
    /// share one share a contact rate at every hour.
    pub segment: Option<compact_str::CompactString>,
}

/// What `judge` needs to know beyond the lead and its dialer state.
pub struct Situation<'a> {
    pub rules: &'a Rules,
    pub campaign: &'a str,
    pub band: Band,
    /// The score of the lead's account in the campaign, if it names one.
    pub account_score: Option<f64>,
    pub now_ms: i64,
    /// The lead's attribute by name.
    pub attribute: &'a dyn Fn(&Lead, &str) -> Option<Value>,
    /// Whether a number is on the internal do-not-call list.
    pub on_do_not_call_list: &'a dyn Fn(&str) -> bool,
}

/// The zone and region override of a lead under a campaign's rules.
pub fn locale(rules: &Rules, lead: &Lead, attribute: &dyn Fn(&Lead, &str) -> Option<Value>) -> Locale {
    let region = match attribute(lead, &rules.region_attribute) {
        Some(Value::Text(text)) if rules.regions.contains_key(text.trim()) => Some(text.trim().into()),
        _ => None,
    };
    Locale { zone: lead.time_zone.unwrap_or(rules.default_zone), region, chain: 0, segment: None }
}

/// Every rule but the calling window, strictest first: what can never change by waiting comes
/// before what time will cure.
pub fn judge(cx: &Situation<'_>, lead: &Lead, dial: Option<&Dial>) -> Verdict {
    let rules = cx.rules;
    let profile = lead.profile();
    let listed = profile.is_some_and(|p| p.campaigns.iter().any(|c| c == cx.campaign));
    let value = |name: &str| match name {
        ACCOUNT_SCORE => cx.account_score.map(Value::Number),
        _ => (cx.attribute)(lead, name),
    };
    if cx.campaign != DEFAULT_CAMPAIGN && !listed || !rules.admits(cx.band, value) {
        return Verdict::Never(Reason::FilteredOut);
    }
    let phone = profile.map_or("", |p| p.phone.as_str());
    let empty = Dial::default();
    let dial = dial.unwrap_or(&empty);
    let forbidden = must_not_call(rules, lead, Some(dial), cx.on_do_not_call_list);
    if matches!(forbidden, Some(Why::DoNotCall | Why::Objected)) {
        return Verdict::Never(Reason::DoNotCall);
    }
    if phone.is_empty() {
        return Verdict::Never(Reason::NoPhone);
    }
    if forbidden == Some(Why::ConsentWithdrawn) {
        return Verdict::Never(Reason::MissingConsent);
    }
    let finished = |result: CallResult| matches!(result, CallResult::Converted | CallResult::Lost);
    if dial.wrong_number.as_deref() == Some(phone)
        || dial.attempts.iter().any(|a| a.campaign == cx.campaign && finished(a.result))
    {
        return Verdict::Never(Reason::Finished);
    }
    let now = cx.now_ms;
    if let Some(lease) = dial.leased_at(now) {
        return Verdict::Wait { until_ms: lease.expires_at_ms, reason: Reason::Leased };
    }
    if dial.attempts.len() >= rules.max_attempts as usize {
        return Verdict::Never(Reason::MaxAttempts);
    }
    let callback = dial.callback.as_deref();
    if let Some(callback) = callback.filter(|c| c.at_ms > now) {
        return Verdict::Wait { until_ms: callback.at_ms, reason: Reason::Recycling };
    }
    if let Some(until_ms) = limit_lifts_at(rules, lead.time_zone.unwrap_or(rules.default_zone), dial, now) {
        return Verdict::Wait { until_ms, reason: Reason::MaxAttempts };
    }
    let due = callback.filter(|c| c.campaign == cx.campaign);
    if due.is_none()
        && let Some(last) = dial.attempts.last()
    {
        let until_ms = last.at_ms.saturating_add(rules.recycle_after(last.result).unwrap_or(0));
        if until_ms > now {
            return Verdict::Wait { until_ms, reason: Reason::Recycling };
        }
    }
    Verdict::Ready(due.map(|c| DueCallback { at_ms: c.at_ms, agent: c.agent.clone() }))
}

/// Why a campaign must not call the lead at all, whatever the time and however it was
/// claimed: what ends a lease already held (`revocations`). `judge` refuses these first.
pub fn must_not_call(
    rules: &Rules,
    lead: &Lead,
    dial: Option<&Dial>,
    on_do_not_call_list: &dyn Fn(&str) -> bool,
) -> Option<Why> {
    let phone = lead.profile().map_or("", |p| p.phone.as_str());
    if lead.consent.objected {
        Some(Why::Objected)
    } else if lead.consent.do_not_call
        || dial.is_some_and(|d| d.do_not_call)
        || on_do_not_call_list(phone)
        || rules.do_not_call.contains(phone)
    {
        Some(Why::DoNotCall)
    } else if rules.require_phone_consent && !lead.consent.phone_consent {
        Some(Why::ConsentWithdrawn)
    } else {
        None
    }
}

/// When the per-day and rolling 24-hour limits next allow a call, if they forbid one now.
fn limit_lifts_at(rules: &Rules, zone: Tz, dial: &Dial, now: i64) -> Option<i64> {
    const DAY_MS: i64 = 86_400_000;
    let recent: Vec<i64> = dial.attempts.iter().map(|a| a.at_ms).filter(|&at| at > now - DAY_MS).collect();
    let mut lifts = None;
    let limit = rules.max_attempts_per_24h as usize;
    if recent.len() >= limit {
        let mut sorted = recent.clone();
        sorted.sort_unstable();
        // Calls become possible again once all but `limit - 1` of these are a day old.
        lifts = Some(sorted[sorted.len() - limit] + DAY_MS);
    }
    // All calls, not only the last 24 hours': a day with a daylight-saving change lasts 25.
    let today = rules::local_day(zone, now);
    let calls_today = dial.attempts.iter().filter(|a| rules::local_day(zone, a.at_ms) == today).count();
    if calls_today >= rules.max_attempts_per_day as usize {
        let midnight = rules::next_local_midnight(zone, now);
        lifts = Some(lifts.map_or(midnight, |at: i64| at.max(midnight)));
    }
    lifts
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_config::{ContactConfig, FilterConfig};
    use leadscore_store::dial::{Attempt, Callback, Lease};
    use leadscore_store::lead::{Consent, Profile};

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_780_000_000_000;

    fn lead() -> Lead {
        Lead {
            lsn: 1,
            attributes_lsn: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            attributes: Box::new([]),
            events: Vec::new(),
            time_zone: Some(chrono_tz::UTC),
            consent: Consent::default(),
            profile: Some(Box::new(Profile { phone: "+15550100".into(), ..Profile::default() })),
            history: Vec::new(),
            dial: None,
        }
    }

    fn attempt(at_ms: i64, result: CallResult) -> Attempt {
        Attempt {
            lease: 1,
            agent: "a".into(),
            campaign: "default".into(),
            at_ms,
            result,
            talk_ms: 0,
            note: String::new(),
            segment: "hot".into(),
            arm: None,
        }
    }

    fn verdict(rules: &Rules, lead: &Lead, dial: &Dial, dnc: &[&str]) -> Verdict {
        let attribute = |_: &Lead, _: &str| None;
        let listed = |phone: &str| dnc.contains(&phone);
        let cx = Situation {
            account_score: None,
            rules,
            campaign: "default",
            band: Band::Hot,
            now_ms: NOW,
            attribute: &attribute,
            on_do_not_call_list: &listed,
        };
        judge(&cx, lead, Some(dial))
    }

    fn rules() -> Rules {
        Rules::compile("c", &FilterConfig::default(), &ContactConfig::default()).unwrap()
    }

    #[test]
    fn do_not_call_in_every_form_and_consent() {
        let rules = rules();
        let dial = Dial::default();
        assert_eq!(verdict(&rules, &lead(), &dial, &[]), Verdict::Ready(None));
        assert_eq!(verdict(&rules, &lead(), &dial, &["+15550100"]), Verdict::Never(Reason::DoNotCall));
        for consent in
            [Consent { do_not_call: true, ..Consent::default() }, Consent { objected: true, ..Consent::default() }]
        {
            let lead = Lead { consent, ..lead() };
            assert_eq!(verdict(&rules, &lead, &dial, &[]), Verdict::Never(Reason::DoNotCall));
        }
        let asked = Dial { do_not_call: true, ..Dial::default() };
        assert_eq!(verdict(&rules, &lead(), &asked, &[]), Verdict::Never(Reason::DoNotCall));
        let contact = ContactConfig { do_not_call: vec!["+1 555 0100".into()], ..ContactConfig::default() };
        let campaign_list = Rules::compile("c", &FilterConfig::default(), &contact).unwrap();
        assert_eq!(verdict(&campaign_list, &lead(), &dial, &[]), Verdict::Never(Reason::DoNotCall));
        let contact = ContactConfig { require_phone_consent: true, ..ContactConfig::default() };
        let strict = Rules::compile("c", &FilterConfig::default(), &contact).unwrap();
        assert_eq!(verdict(&strict, &lead(), &dial, &[]), Verdict::Never(Reason::MissingConsent));
        let consenting = Lead { consent: Consent { phone_consent: true, ..Consent::default() }, ..lead() };
        assert_eq!(verdict(&strict, &consenting, &dial, &[]), Verdict::Ready(None));
        let wrong = Dial { wrong_number: Some("+15550100".into()), ..Dial::default() };
        assert_eq!(verdict(&rules, &lead(), &wrong, &[]), Verdict::Never(Reason::Finished));
    }

    #[test]
    fn leases_recycling_and_limits_wait_for_their_time() {
        let rules = rules();
        let lease =
            Lease { id: 9, agent: "a".into(), campaign: "default".into(), claimed_at_ms: NOW, expires_at_ms: NOW + 5 };
        let leased = Dial { lease: Some(lease), ..Dial::default() };
        assert_eq!(verdict(&rules, &lead(), &leased, &[]), Verdict::Wait { until_ms: NOW + 5, reason: Reason::Leased });
        let busy = Dial { attempts: vec![attempt(NOW - 60_000, CallResult::Busy)], ..Dial::default() };
        let until_ms = NOW - 60_000 + 15 * 60_000;
        assert_eq!(verdict(&rules, &lead(), &busy, &[]), Verdict::Wait { until_ms, reason: Reason::Recycling });
        let old = Dial { attempts: vec![attempt(NOW - 5 * HOUR, CallResult::NoAnswer)], ..Dial::default() };
        assert_eq!(verdict(&rules, &lead(), &old, &[]), Verdict::Ready(None));
        // Three calls in the last day: the earliest must age out first; in UTC, the day also ends.
        let three = Dial {
            attempts: (1..=3).map(|h| attempt(NOW - 20 * HOUR + h * HOUR, CallResult::Busy)).collect(),
            ..Dial::default()
        };
        let Verdict::Wait { until_ms, reason: Reason::MaxAttempts } = verdict(&rules, &lead(), &three, &[]) else {
            panic!("limits must hold");
        };
        assert!(until_ms >= NOW - 19 * HOUR + 24 * HOUR);
        let six = Dial {
            attempts: (0..6).map(|d| attempt(NOW - d * 48 * HOUR - HOUR * 5, CallResult::NoAnswer)).collect(),
            ..Dial::default()
        };
        assert_eq!(verdict(&rules, &lead(), &six, &[]), Verdict::Never(Reason::MaxAttempts));
        let converted = Dial { attempts: vec![attempt(NOW - 100 * HOUR, CallResult::Converted)], ..Dial::default() };
        assert_eq!(verdict(&rules, &lead(), &converted, &[]), Verdict::Never(Reason::Finished));
    }

    #[test]
    fn a_callback_waits_for_its_time_then_skips_the_recycle_delay() {
        let rules = rules();
        let callback = Callback { at_ms: NOW + HOUR, campaign: "default".into(), agent: Some("a".into()) };
        let mut dial = Dial {
            attempts: vec![attempt(NOW - 60_000, CallResult::Callback)],
            callback: Some(Box::new(callback)),
            ..Dial::default()
        };
        assert_eq!(
            verdict(&rules, &lead(), &dial, &[]),
            Verdict::Wait { until_ms: NOW + HOUR, reason: Reason::Recycling }
        );
        dial.callback.as_mut().unwrap().at_ms = NOW - 1;
        assert_eq!(
            verdict(&rules, &lead(), &dial, &[]),
            Verdict::Ready(Some(DueCallback { at_ms: NOW - 1, agent: Some("a".into()) }))
        );
    }
}
