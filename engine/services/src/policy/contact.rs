//! A campaign's contact rules: which leads it dials (filter, consent, do-not-call lists), when
//! (calling windows in the lead's local time, holidays), how often (attempt limits, recycle
//! delays) and how long a claim holds, compiled from the configuration's `[campaigns.*]`
//! sections into the form the dialer checks against.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use compact_str::CompactString;

use crate::scoring::pipeline::Band;
use leadscore_config::{ConditionConfig, ContactConfig, FilterConfig};
use leadscore_store::dial::CallResult;
use leadscore_store::lead::Value;

/// A campaign's rules, validated and ready to check.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Bands a lead must be in; empty means any.
    pub bands: Vec<Band>,
    pub conditions: Vec<(CompactString, Condition)>,
    pub default_zone: Tz,
    pub window: Window,
    pub region_attribute: CompactString,
    pub regions: HashMap<CompactString, Window>,
    pub require_phone_consent: bool,
    pub max_attempts: u32,
    pub max_attempts_per_day: u32,
    pub max_attempts_per_24h: u32,
    pub recycle_ms: RecycleMs,
    pub lease_ms: i64,
    pub callback_grace_ms: i64,
    /// Normalised numbers (see `normalize_phone`).
    pub do_not_call: HashSet<CompactString>,
}

#[derive(Clone, Copy, Debug)]
pub struct RecycleMs {
    pub no_answer: i64,
    pub busy: i64,
    pub voicemail: i64,
    pub connected_not_interested: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    OneOf(Vec<CompactString>),
    Flag(bool),
    Range { min: Option<f64>, max: Option<f64> },
}

/// The local times of day calls may be made, and the local dates they may not.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Minutes after local midnight: calls from `start` up to, not including, `end`.
    pub start: u32,
    pub end: u32,
    pub holidays: BTreeSet<NaiveDate>,
    /// Leads are claimed only while at least this long is left before the window closes
    /// (`contact.min_window_left`).
    pub min_left_ms: i64,
}

/// Why a window is shut at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shut {
    OutsideWindow,
    Holiday,
}

/// Windows are searched this many local days ahead for their next opening.
const OPENING_SEARCH_DAYS: i64 = 366;
const DAY_MS: i64 = 86_400_000;

impl Rules {
    /// Checks a campaign's filter and contact rules; every problem is reported, each naming
    /// its key under `path`.
    pub fn compile(path: &str, filter: &FilterConfig, contact: &ContactConfig) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let bands = filter
            .bands
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let band = Band::from_name(name);
                if band.is_none() {
                    problems.push(format!(
                        "{path}.filter.bands[{i}]: must be unqualified, warm, sales_ready or hot, got {name:?}"
                    ));
                }
                band
            })
            .collect();
        let conditions = filter
            .attributes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match Condition::compile(c) {
                Ok(condition) => Some((CompactString::from(c.name.as_str()), condition)),
                Err(problem) => {
                    problems.push(format!("{path}.filter.attributes[{i}]: {problem}"));
                    None
                }
            })
            .collect();
        let contact_path = format!("{path}.contact");
        let default_zone = Tz::from_str(&contact.time_zone)
            .map_err(|_| {
                problems.push(format!("{contact_path}.time_zone: not an IANA time zone: {:?}", contact.time_zone))
            })
            .unwrap_or(Tz::UTC);
        let holidays = dates(&format!("{contact_path}.holidays"), &contact.holidays, &mut problems);
        let min_left_ms = match humantime::parse_duration(&contact.min_window_left) {
            Ok(d) if d <= Duration::from_secs(4 * 3600) => d.as_millis() as i64,
            _ => {
                problems.push(format!(
                    "{contact_path}.min_window_left: must be a duration such as 1m or 90s, at most 4h, got {:?}",
                    contact.min_window_left
                ));
                0
            }
        };
        let window = Window::parse(&format!("{contact_path}.calling_window"), &contact.calling_window, &mut problems)
            .map(|(start, end)| Window { start, end, holidays: holidays.clone(), min_left_ms });
        let mut regions = HashMap::new();
        for (name, region) in &contact.regions {
            let region_path = format!("{contact_path}.regions.{name}");
            let (start, end) = match &region.calling_window {
                Some(text) => Window::parse(&format!("{region_path}.calling_window"), text, &mut problems),
                None => window.as_ref().map(|w| (w.start, w.end)),
            }
            .unwrap_or_default();
            let mut all = holidays.clone();
            all.extend(dates(&format!("{region_path}.holidays"), &region.holidays, &mut problems));
            regions.insert(CompactString::from(name.as_str()), Window { start, end, holidays: all, min_left_ms });
        }
        let mut duration = |key: &str, text: &str| -> i64 {
            match humantime::parse_duration(text) {
                Ok(d) if d <= Duration::from_secs(366 * 86_400) => d.as_millis() as i64,
                _ => {
                    problems.push(format!(
                        "{contact_path}.{key}: must be a duration such as 15m, 4h or 1d, at most a year, got {text:?}"
                    ));
                    0
                }
            }
        };
        let recycle_ms = RecycleMs {
            no_answer: duration("recycle.no_answer", &contact.recycle.no_answer),
            busy: duration("recycle.busy", &contact.recycle.busy),
            voicemail: duration("recycle.voicemail", &contact.recycle.voicemail),
            connected_not_interested: duration(
                "recycle.connected_not_interested",
                &contact.recycle.connected_not_interested,
            ),
        };
        let lease_ms = duration("lease", &contact.lease);
        let callback_grace_ms = duration("callback_grace", &contact.callback_grace);
        if !(1_000..=DAY_MS).contains(&lease_ms) {
            problems.push(format!("{contact_path}.lease: must be 1s-1d, got {:?}", contact.lease));
        }
        for (key, value) in [
            ("max_attempts", contact.max_attempts),
            ("max_attempts_per_day", contact.max_attempts_per_day),
            ("max_attempts_per_24h", contact.max_attempts_per_24h),
        ] {
            if value == 0 {
                problems.push(format!("{contact_path}.{key}: must be at least 1"));
            }
        }
        if contact.region_attribute.is_empty() {
            problems.push(format!("{contact_path}.region_attribute: must not be empty"));
        }
        let mut do_not_call = HashSet::new();
        for (i, number) in contact.do_not_call.iter().enumerate() {
            match normalize_phone(number) {
                Some(n) => {
                    do_not_call.insert(n);
                }
                None => problems.push(format!(
                    "{contact_path}.do_not_call[{i}]: must be a phone number such as +4930123456, got {number:?}"
                )),
            }
        }
        match window {
            Some(window) if problems.is_empty() => Ok(Self {
                bands,
                conditions,
                default_zone,
                window,
                region_attribute: contact.region_attribute.as_str().into(),
                regions,
                require_phone_consent: contact.require_phone_consent,
                max_attempts: contact.max_attempts,
                max_attempts_per_day: contact.max_attempts_per_day,
                max_attempts_per_24h: contact.max_attempts_per_24h,
                recycle_ms,
                lease_ms,
                callback_grace_ms,
                do_not_call,
            }),
            _ => Err(problems),
        }
    }

    /// How long a lead rests after a call with this result; `None` when calls end with it.
    /// A callback rests until its time, which the outcome carries.
    pub fn recycle_after(&self, result: CallResult) -> Option<i64> {
        match result {
            // Nobody spoke to the person: they rest as if they had not answered.
            CallResult::NoAnswer | CallResult::Abandoned => Some(self.recycle_ms.no_answer),
            CallResult::Busy => Some(self.recycle_ms.busy),
            CallResult::Voicemail => Some(self.recycle_ms.voicemail),
            CallResult::ConnectedNotInterested => Some(self.recycle_ms.connected_not_interested),
            CallResult::Callback => Some(0),
            CallResult::Converted | CallResult::Lost | CallResult::WrongNumber | CallResult::DoNotCall => None,
        }
    }

    /// The window that applies to a lead of this region.
    pub fn window_for(&self, region: Option<&str>) -> &Window {
        region.and_then(|r| self.regions.get(r)).unwrap_or(&self.window)
    }

    /// Whether the filter admits a lead with these attributes in this band.
    pub fn admits(&self, band: Band, attribute: impl Fn(&str) -> Option<Value>) -> bool {
        (self.bands.is_empty() || self.bands.contains(&band))
            && self.conditions.iter().all(|(name, condition)| attribute(name).is_some_and(|v| condition.holds(&v)))
    }
}

impl Condition {
    fn compile(config: &ConditionConfig) -> Result<Self, String> {
        if config.name.is_empty() {
            return Err("name: must not be empty".into());
        }
        let range = config.min.is_some() || config.max.is_some();
        match (!config.one_of.is_empty(), config.flag, range) {
            (true, None, false) => Ok(Condition::OneOf(config.one_of.iter().map(|s| s.trim().into()).collect())),
            (false, Some(flag), false) => Ok(Condition::Flag(flag)),
            (false, None, true) => match (config.min, config.max) {
                (Some(min), Some(max)) if min > max => Err(format!("min {min} is above max {max}")),
                (min, max) if min.is_some_and(f64::is_nan) || max.is_some_and(f64::is_nan) => {
                    Err("min and max must be numbers".into())
                }
                (min, max) => Ok(Condition::Range { min, max }),
            },
            _ => Err("needs exactly one of one_of, flag, or min/max".into()),
        }
    }
}

impl Condition {
    pub fn holds(&self, value: &Value) -> bool {
        match (self, value) {
            (Condition::OneOf(wanted), Value::Text(text)) => wanted.iter().any(|w| w.eq_ignore_ascii_case(text.trim())),
            (Condition::Flag(wanted), Value::Flag(flag)) => wanted == flag,
            (Condition::Range { min, max }, Value::Number(n)) => {
                min.is_none_or(|min| *n >= min) && max.is_none_or(|max| *n <= max)
            }
            _ => false,
        }
    }
}

impl Window {
    /// Parses `HH:MM-HH:MM` into minutes after midnight; the window may not wrap midnight.
    fn parse(path: &str, text: &str, problems: &mut Vec<String>) -> Option<(u32, u32)> {
        let minutes = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").ok().map(|t| t.hour() * 60 + t.minute());
        let parsed = text.split_once('-').and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)));
        match parsed {
            Some((start, end)) if start < end => Some((start, end)),
            _ => {
                problems.push(format!(
                    "{path}: must be HH:MM-HH:MM with the start before the end, such as 08:00-21:00, got {text:?}"
                ));
                None
            }
        }
    }

    /// `Ok` with the instant the window closes if a lead may be claimed at `now_ms` in `zone`
    /// (the window is open, and at least `min_left_ms` of it is left); otherwise why not and
    /// the next instant it may (`i64::MAX` if the window never opens within a year).
    pub fn check(&self, zone: Tz, now_ms: i64) -> Result<i64, (Shut, i64)> {
        let local = zone.timestamp_millis_opt(now_ms).single().expect("every instant has one local time");
        let (date, minute) = (local.date_naive(), local.hour() * 60 + local.minute());
        let holiday = self.holidays.contains(&date);
        if !holiday && (self.start..self.end).contains(&minute) {
            let closes = self.close_on(zone, date, now_ms);
            if closes - now_ms >= self.min_left_ms {
                return Ok(closes);
            }
        }
        let shut = if holiday { Shut::Holiday } else { Shut::OutsideWindow };
        Err((shut, self.next_opening(zone, now_ms, date)))
    }

    /// When claims stop, from an instant at which they may be made: `min_left_ms` before the
    /// window shuts. A window never wraps midnight, so it shuts before any holiday begins.
    pub fn claims_stop_after(&self, zone: Tz, now_ms: i64) -> i64 {
        let local = zone.timestamp_millis_opt(now_ms).single().expect("every instant has one local time");
        (self.close_on(zone, local.date_naive(), now_ms) - self.min_left_ms).max(now_ms + 1)
    }

    /// The instant the window of a local date shuts, from an instant within it.
    fn close_on(&self, zone: Tz, date: NaiveDate, now_ms: i64) -> i64 {
        local_instant(zone, date, self.end).unwrap_or(now_ms + 60_000).max(now_ms + 1)
    }

    fn next_opening(&self, zone: Tz, now_ms: i64, today: NaiveDate) -> i64 {
        (0..OPENING_SEARCH_DAYS)
            .filter_map(|d| today.checked_add_days(chrono::Days::new(d as u64)))
            .filter(|date| !self.holidays.contains(date))
            .filter_map(|date| local_instant(zone, date, self.start))
            .find(|&at| at > now_ms)
            .unwrap_or(i64::MAX)
    }
}

/// The first instant at a local date and minute; if a DST gap skips that minute, the first
/// instant after the gap.
fn local_instant(zone: Tz, date: NaiveDate, minute: u32) -> Option<i64> {
    let mut at = date.and_hms_opt(minute / 60, minute % 60, 0)?;
    // Gaps last at most a few hours; step over one in quarter hours.
    for _ in 0..16 {
        if let Some(instant) = zone.from_local_datetime(&at).earliest() {
            return Some(instant.timestamp_millis());
        }
        at += chrono::Duration::minutes(15);
    }
    None
}

/// The start of the local day after the one `now_ms` falls in: when a per-day count resets.
pub fn next_local_midnight(zone: Tz, now_ms: i64) -> i64 {
    let local = zone.timestamp_millis_opt(now_ms).single().expect("every instant has one local time");
    let tomorrow = local.date_naive().succ_opt().expect("dates this far out are not stored");
    local_instant(zone, tomorrow, 0).unwrap_or(now_ms + DAY_MS)
}

/// The local calendar day an instant falls on, as a day number.
pub fn local_day(zone: Tz, at_ms: i64) -> i32 {
    zone.timestamp_millis_opt(at_ms).single().expect("every instant has one local time").date_naive().num_days_from_ce()
}

/// A phone number in E.164 form with its formatting (spaces, dashes, dots, parentheses)
/// removed, so that it compares equal to a lead's number; `None` if it is not one.
pub fn normalize_phone(text: &str) -> Option<CompactString> {
    let mut out = CompactString::from("+");
    for c in text.trim().strip_prefix('+')?.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let digits = &out[1..];
    ((6..=15).contains(&digits.len()) && !digits.starts_with('0')).then_some(out)
}

fn dates(path: &str, texts: &[String], problems: &mut Vec<String>) -> BTreeSet<NaiveDate> {
    let mut out = BTreeSet::new();
    for (i, text) in texts.iter().enumerate() {
        match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
            Ok(date) => {
                out.insert(date);
            }
            Err(_) => problems.push(format!("{path}[{i}]: must be a date such as 2026-12-25, got {text:?}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Europe};
    use leadscore_config::RegionConfig;

    fn ms(zone: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        zone.with_ymd_and_hms(y, m, d, h, min, 0).earliest().unwrap().timestamp_millis()
    }

    fn rules(contact: ContactConfig) -> Result<Rules, Vec<String>> {
        Rules::compile("campaigns.test", &FilterConfig::default(), &contact)
    }

    #[test]
    fn the_default_window_is_eight_to_nine_local() {
        let rules = rules(ContactConfig::default()).unwrap();
        let berlin = Europe::Berlin;
        assert_eq!(
            rules.window.check(berlin, ms(berlin, 2026, 3, 2, 7, 59)).unwrap_err().1,
            ms(berlin, 2026, 3, 2, 8, 0)
        );
        assert!(rules.window.check(berlin, ms(berlin, 2026, 3, 2, 8, 0)).is_ok());
        assert!(rules.window.check(berlin, ms(berlin, 2026, 3, 2, 20, 59)).is_ok());
        let (shut, next) = rules.window.check(berlin, ms(berlin, 2026, 3, 2, 21, 0)).unwrap_err();
        assert_eq!((shut, next), (Shut::OutsideWindow, ms(berlin, 2026, 3, 3, 8, 0)));
        // The same instant is open in New York's afternoon... and shut in Berlin's night.
        let at = ms(America::New_York, 2026, 3, 2, 17, 0);
        assert!(rules.window.check(America::New_York, at).is_ok());
        assert!(rules.window.check(berlin, at).is_err());
    }

    #[test]
    fn claims_stop_when_less_than_the_minimum_of_the_window_is_left() {
        let contact = ContactConfig { min_window_left: "5m".into(), ..ContactConfig::default() };
        let rules = rules(contact).unwrap();
        let berlin = Europe::Berlin;
        let closes = ms(berlin, 2026, 3, 2, 21, 0);
        assert_eq!(rules.window.check(berlin, closes - 5 * 60_000), Ok(closes));
        assert_eq!(rules.window.claims_stop_after(berlin, closes - 10 * 60_000), closes - 5 * 60_000);
        let (shut, next) = rules.window.check(berlin, closes - 5 * 60_000 + 1).unwrap_err();
        assert_eq!((shut, next), (Shut::OutsideWindow, ms(berlin, 2026, 3, 3, 8, 0)));
        let bad = ContactConfig { min_window_left: "5h".into(), ..ContactConfig::default() };
        assert!(
            Rules::compile("c", &FilterConfig::default(), &bad)
                .unwrap_err()
                .iter()
                .any(|p| p.contains("min_window_left"))
        );
    }

    #[test]
    fn windows_follow_daylight_saving_changes() {
        let rules = rules(ContactConfig::default()).unwrap();
        let ny = America::New_York;
        // 2026-03-08: clocks jump from 02:00 to 03:00; 08:00 local is 12:00 UTC, not 13:00.
        let opening = rules.window.check(ny, ms(ny, 2026, 3, 8, 7, 0)).unwrap_err().1;
        assert_eq!(opening, chrono::Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).unwrap().timestamp_millis());
        // 2026-11-01: clocks fall back; 20:59 local is 01:59 UTC the next day.
        let late = chrono::Utc.with_ymd_and_hms(2026, 11, 2, 1, 59, 0).unwrap().timestamp_millis();
        assert!(rules.window.check(ny, late).is_ok());
        assert!(rules.window.check(ny, late + 60_000).is_err());
    }

    #[test]
    fn holidays_and_regions_shut_whole_days_and_narrow_windows() {
        let mut contact = ContactConfig { holidays: vec!["2026-12-25".into()], ..ContactConfig::default() };
        contact.regions.insert(
            "FL".into(),
            RegionConfig { calling_window: Some("08:00-20:00".into()), holidays: vec!["2026-12-24".into()] },
        );
        let rules = rules(contact).unwrap();
        let ny = America::New_York;
        let (shut, next) = rules.window.check(ny, ms(ny, 2026, 12, 25, 12, 0)).unwrap_err();
        assert_eq!((shut, next), (Shut::Holiday, ms(ny, 2026, 12, 26, 8, 0)));
        let florida = rules.window_for(Some("FL"));
        assert!(rules.window_for(Some("NY")).check(ny, ms(ny, 2026, 12, 1, 20, 30)).is_ok());
        assert_eq!(florida.check(ny, ms(ny, 2026, 12, 1, 20, 30)).unwrap_err().0, Shut::OutsideWindow);
        assert_eq!(
            florida.check(ny, ms(ny, 2026, 12, 24, 12, 0)).unwrap_err(),
            (Shut::Holiday, ms(ny, 2026, 12, 26, 8, 0))
        );
        assert_eq!(florida.check(ny, ms(ny, 2026, 12, 1, 12, 0)), Ok(ms(ny, 2026, 12, 1, 20, 0)));
    }

    #[test]
    fn every_bad_rule_is_reported_with_its_key() {
        let contact = ContactConfig {
            calling_window: "21:00-08:00".into(),
            time_zone: "Mars/Olympus".into(),
            holidays: vec!["25.12.2026".into()],
            max_attempts: 0,
            lease: "forever".into(),
            do_not_call: vec!["call me".into()],
            ..ContactConfig::default()
        };
        let filter = FilterConfig {
            bands: vec!["lukewarm".into()],
            attributes: vec![ConditionConfig {
                name: "employees".into(),
                min: Some(10.0),
                max: Some(5.0),
                ..Default::default()
            }],
        };
        let mut problems = Rules::compile("campaigns.x", &filter, &contact).unwrap_err();
        problems.sort();
        assert_eq!(
            problems,
            [
                "campaigns.x.contact.calling_window: must be HH:MM-HH:MM with the start before the end, such as 08:00-21:00, got \"21:00-08:00\"",
                "campaigns.x.contact.do_not_call[0]: must be a phone number such as +4930123456, got \"call me\"",
                "campaigns.x.contact.holidays[0]: must be a date such as 2026-12-25, got \"25.12.2026\"",
                "campaigns.x.contact.lease: must be 1s-1d, got \"forever\"",
                "campaigns.x.contact.lease: must be a duration such as 15m, 4h or 1d, at most a year, got \"forever\"",
                "campaigns.x.contact.max_attempts: must be at least 1",
                "campaigns.x.contact.time_zone: not an IANA time zone: \"Mars/Olympus\"",
                "campaigns.x.filter.attributes[0]: min 10 is above max 5",
                "campaigns.x.filter.bands[0]: must be unqualified, warm, sales_ready or hot, got \"lukewarm\"",
            ]
        );
    }

    #[test]
    fn filters_and_phone_numbers() {
        let filter = FilterConfig {
            bands: vec!["hot".into(), "sales_ready".into()],
            attributes: vec![ConditionConfig {
                name: "country".into(),
                one_of: vec!["US".into()],
                ..Default::default()
            }],
        };
        let rules = Rules::compile("c", &filter, &ContactConfig::default()).unwrap();
        let us = |name: &str| (name == "country").then(|| Value::Text(" us".into()));
        assert!(rules.admits(Band::Hot, us));
        assert!(!rules.admits(Band::Warm, us));
        assert!(!rules.admits(Band::Hot, |_| None));
        assert_eq!(normalize_phone("+1 (555) 010-2030").unwrap(), "+15550102030");
        assert!(normalize_phone("030 1234").is_none());
        assert!(normalize_phone("+12").is_none());
        assert!(normalize_phone("+49 30 x").is_none());
    }

    #[test]
    fn local_days_and_midnights_follow_the_zone() {
        let ny = America::New_York;
        let evening = ms(ny, 2026, 6, 1, 23, 30);
        assert_eq!(local_day(ny, evening) + 1, local_day(ny, evening + 3_600_000));
        assert_eq!(next_local_midnight(ny, evening), ms(ny, 2026, 6, 2, 0, 0));
        assert_ne!(local_day(Europe::Berlin, evening), local_day(ny, evening));
    }
}
