//! A randomized month of dialling over many time zones, two daylight-saving changes, regions
//! with their own windows and holidays, and rules changing under queued leads. Every claim is
//! checked against an oracle written here from the rules alone: it must be allowed (safety),
//! and "nothing eligible" must be true (liveness). The real store, scorers and dialer run in
//! process on a manual clock; the gRPC layer over them is tested in `dialer`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;
use leadscore::clock::{Clock, ManualClock};
use leadscore::config::RegionConfig;
use leadscore::dialer::{Dialer, Pick, Report};
use leadscore::generation::Generations;
use leadscore::scoring::Trigger;
use leadscore::store::Store;
use leadscore::store::dial::CallResult;
use leadscore::store::lead::{Consent, Value};
use leadscore::store::mutation::LeadInput;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 2026-10-20T00:00Z: Europe leaves summer time on the 25th, North America on 1 November.
const START_MS: i64 = 1_792_454_400_000;
const ZONES: [&str; 12] = [
    "America/New_York",
    "America/Los_Angeles",
    "America/Phoenix",
    "America/St_Johns",
    "Europe/London",
    "Europe/Berlin",
    "Africa/Casablanca",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Chatham",
];
const AGENTS: usize = 8;
const MAX_ATTEMPTS: usize = 5;
const PER_DAY: usize = 2;
const PER_24H: usize = 3;
const GRACE: i64 = 15 * MINUTE;
const LEASE: i64 = 5 * MINUTE;
/// `contact.min_window_left`, the default.
const MIN_WINDOW_LEFT: i64 = MINUTE;

/// What the test knows of a lead, kept from what it did, never read from the engine.
#[derive(Clone, Debug)]
struct Known {
    zone: Tz,
    region: Option<&'static str>,
    phone: String,
    consent: Consent,
    attempts: Vec<(i64, CallResult)>,
    /// At, and the agent it is reserved for.
    callback: Option<(i64, Option<String>)>,
    asked_not_to_be_called: bool,
    wrong_number: bool,
    /// Leases the engine still takes outcomes for: the latest and the one it displaced.
    leases: Vec<(String, String, i64)>,
}

struct Oracle {
    leads: HashMap<String, Known>,
    internal_do_not_call: HashSet<String>,
    /// Numbers of erased leads: the same person's other records are not called either.
    erased_numbers: HashSet<String>,
    holidays: HashSet<NaiveDate>,
}

fn recycle(result: CallResult) -> i64 {
    match result {
        // Nobody spoke to the person: an abandoned call rests like no answer.
        CallResult::NoAnswer | CallResult::Abandoned => 2 * HOUR,
        CallResult::Busy => 10 * MINUTE,
        CallResult::Voicemail => 6 * HOUR,
        CallResult::ConnectedNotInterested => 2 * DAY,
        _ => 0,
    }
}

impl Oracle {
    /// The window a lead's region allows, in minutes of its local day, and its holidays.
    fn window(&self, region: Option<&str>) -> (u32, u32, Vec<NaiveDate>) {
        match region {
            Some("FL") => (8 * 60, 20 * 60, vec![NaiveDate::from_ymd_opt(2026, 10, 30).unwrap()]),
            Some("QC") => (9 * 60, 17 * 60, vec![]),
            _ => (8 * 60, 21 * 60, vec![]),
        }
    }

    /// When the window of the lead's local day at `now` closes (windows never wrap midnight).
    fn closes(&self, id: &str, now: i64) -> i64 {
        let lead = &self.leads[id];
        let (_, end, _) = self.window(lead.region);
        let date = lead.zone.timestamp_millis_opt(now).unwrap().date_naive();
        let close = date.and_hms_opt(end / 60, end % 60, 0).unwrap();
        lead.zone.from_local_datetime(&close).earliest().unwrap().timestamp_millis()
    }

    /// Why `agent` may not call `id` at `now`, or `None` if it may.
    fn refusal(&self, id: &str, agent: &str, now: i64) -> Option<String> {
        let Some(lead) = self.leads.get(id) else { return Some("erased".into()) };
        let local = lead.zone.timestamp_millis_opt(now).unwrap();
        let minute = local.hour() * 60 + local.minute();
        let (start, end, region_holidays) = self.window(lead.region);
        let date = local.date_naive();
        if !(start..end).contains(&minute) || self.holidays.contains(&date) || region_holidays.contains(&date) {
            return Some(format!("outside its window at {local}"));
        }
        if self.closes(id, now) - now < MIN_WINDOW_LEFT {
            return Some(format!("less than a minute of its window left at {local}"));
        }
        if lead.consent.do_not_call || lead.consent.objected || lead.asked_not_to_be_called {
            return Some("do not call".into());
        }
        if self.internal_do_not_call.contains(&lead.phone) || self.erased_numbers.contains(&lead.phone) {
            return Some("number on the internal list".into());
        }
        if !lead.consent.phone_consent {
            return Some("no consent".into());
        }
        let finished = |r: &CallResult| matches!(r, CallResult::Converted | CallResult::Lost);
        if lead.wrong_number || lead.attempts.iter().any(|(_, r)| finished(r)) {
            return Some("finished".into());
        }
        if lead.leases.iter().any(|(_, _, expires)| *expires > now) {
            return Some("leased".into());
        }
        if lead.attempts.len() >= MAX_ATTEMPTS {
            return Some("lifetime attempts".into());
        }
        if let Some((at, _)) = &lead.callback
            && *at > now
        {
            return Some("callback not due".into());
        }
        if lead.attempts.iter().filter(|(at, _)| *at > now - DAY).count() >= PER_24H {
            return Some("24-hour attempts".into());
        }
        let day = |at: i64| lead.zone.timestamp_millis_opt(at).unwrap().date_naive().num_days_from_ce();
        if lead.attempts.iter().filter(|(at, _)| day(*at) == day(now)).count() >= PER_DAY {
            return Some("attempts today".into());
        }
        match &lead.callback {
            Some((at, Some(owner))) if owner != agent && now < at + GRACE => Some("another agent's callback".into()),
            Some(_) => None,
            None => match lead.attempts.last() {
                Some((at, result)) if at + recycle(*result) > now => Some("recycling".into()),
                _ => None,
            },
        }
    }

    fn own_callback_due(&self, agent: &str, now: i64) -> bool {
        self.leads.iter().any(|(id, lead)| {
            matches!(&lead.callback, Some((_, Some(owner))) if owner == agent) && self.refusal(id, agent, now).is_none()
        })
    }
}

fn input(id: &str, lead: &Known) -> LeadInput {
    let mut attributes = vec![("role".into(), Value::Text("CTO".into()))];
    if let Some(region) = lead.region {
        attributes.push(("region".into(), Value::Text(region.into())));
    }
    LeadInput {
        id: id.into(),
        attributes,
        time_zone: Some(lead.zone),
        consent: lead.consent,
        campaigns: Vec::new(),
        owner: Default::default(),
        phone: lead.phone.as_str().into(),
        email: Default::default(),
    }
}

#[test]
fn a_randomized_month_never_breaks_a_rule_and_never_starves() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut config = leadscore_tests::config(dir.path());
    let contact = &mut config.campaigns.get_mut("default").unwrap().contact;
    contact.holidays = vec!["2026-11-11".into()];
    contact.regions.insert(
        "FL".into(),
        RegionConfig { calling_window: Some("08:00-20:00".into()), holidays: vec!["2026-10-30".into()] },
    );
    contact.regions.insert("QC".into(), RegionConfig { calling_window: Some("09:00-17:00".into()), holidays: vec![] });
    contact.require_phone_consent = true;
    contact.max_attempts = MAX_ATTEMPTS as u32;
    contact.max_attempts_per_day = PER_DAY as u32;
    contact.max_attempts_per_24h = PER_24H as u32;
    contact.recycle.no_answer = "2h".into();
    contact.recycle.busy = "10m".into();
    contact.recycle.voicemail = "6h".into();
    contact.recycle.connected_not_interested = "2d".into();
    let store = Store::open(config.store_options(), clock.clone()).unwrap();
    let (scoring, generations) = Generations::start(store.clone(), clock.clone(), Arc::new(config), 0).unwrap();
    let router =
        Arc::new(leadscore::routing::Router::new(store.clone(), scoring.clone(), generations.clone(), clock.clone()));
    let dialer = Dialer::start(store.clone(), scoring.clone(), generations, router, clock.clone());

    let mut rng = StdRng::seed_from_u64(20261020);
    let mut oracle = Oracle {
        leads: HashMap::new(),
        internal_do_not_call: HashSet::new(),
        erased_numbers: HashSet::new(),
        holidays: [NaiveDate::from_ymd_opt(2026, 11, 11).unwrap()].into(),
    };
    let mut next_lead = 0;
    let mut add_lead = |oracle: &mut Oracle, rng: &mut StdRng| {
        let n = next_lead;
        next_lead += 1;
        // Every tenth number is shared with the lead before it, unless that person was erased:
        // then the store rightly refuses the number.
        let number = |n| format!("+1555{n:07}");
        let phone = match n % 10 == 9 && !oracle.erased_numbers.contains(&number(n - 1)) {
            true => number(n - 1),
            false => number(n),
        };
        let lead = Known {
            zone: ZONES[rng.random_range(0..ZONES.len())].parse().unwrap(),
            region: [None, None, Some("FL"), Some("QC")][rng.random_range(0..4)],
            phone,
            consent: Consent {
                phone_consent: rng.random_bool(0.9),
                do_not_call: rng.random_bool(0.05),
                objected: rng.random_bool(0.03),
                email_opt_out: false,
            },
            attempts: Vec::new(),
            callback: None,
            asked_not_to_be_called: false,
            wrong_number: false,
            leases: Vec::new(),
        };
        let id = format!("lead-{n}");
        store.upsert_leads(vec![input(&id, &lead)]).unwrap();
        dialer.requeue(&scoring.rescore(&[id.as_str().into()], Trigger::Upsert));
        oracle.leads.insert(id, lead);
    };
    for _ in 0..300 {
        add_lead(&mut oracle, &mut rng);
    }

    let (mut claims, mut dry_spells, mut outcomes) = (0, 0, 0);
    for step in 0..4000 {
        let now = clock.now_ms();
        let agent = format!("agent-{}", rng.random_range(0..AGENTS));
        let action = rng.random_range(0..100);
        if action < 55 {
            // One claim, or several in one pass as a hopper session makes them.
            let max = rng.random_range(1..=3);
            let (claimed, dry) = dialer.next_leads("", &agent, max).unwrap();
            assert!(claimed.len() <= max && (claimed.len() == max || dry.is_some()), "step {step}");
            for claimed in claimed {
                claims += 1;
                let id = claimed.lead_id.to_string();
                if let Some(why) = oracle.refusal(&id, &agent, now) {
                    panic!("step {step}: {agent} was given {id} at {now}, which breaks a rule: {why}");
                }
                let own_due = oracle.own_callback_due(&agent, now);
                assert_eq!(claimed.pick == Pick::AgentCallback, own_due, "step {step}: own callbacks come first");
                let lease = leadscore::dialer::lease_id(claimed.lease.id, &id);
                // The lease ends with the window, if that comes first.
                let close = oracle.closes(&id, now);
                assert_eq!(claimed.dial_by_ms, close, "step {step}: {id}");
                assert_eq!(claimed.lease.expires_at_ms, (now + LEASE).min(close), "step {step}: {id}");
                let known = oracle.leads.get_mut(&id).unwrap();
                known.leases.push((lease, agent.clone(), (now + LEASE).min(close)));
                if known.leases.len() > 2 {
                    known.leases.remove(0);
                }
            }
            if dry.is_some() {
                dry_spells += 1;
                let eligible: Vec<&String> =
                    oracle.leads.keys().filter(|id| oracle.refusal(id, &agent, now).is_none()).collect();
                assert!(
                    eligible.is_empty(),
                    "step {step}: nothing more offered to {agent}, yet {eligible:?} may be called"
                );
            }
        } else if action < 85 {
            // Report a call on some lease the engine still knows.
            let open: Vec<(String, String)> = oracle
                .leads
                .iter()
                .flat_map(|(id, lead)| lead.leases.iter().map(move |(lease, ..)| (id.clone(), lease.clone())))
                .collect();
            if open.is_empty() {
                continue;
            }
            let (id, lease) = open[rng.random_range(0..open.len())].clone();
            let result = CallResult::ALL[rng.random_range(0..CallResult::ALL.len())];
            let callback = (result == CallResult::Callback)
                .then(|| (now + rng.random_range(10..600) * MINUTE, rng.random_bool(0.5)));
            let report =
                Report { lease_id: lease.clone(), result, at_ms: now, callback, talk_ms: 0, note: String::new() };
            dialer.report(report).unwrap();
            outcomes += 1;
            let known = oracle.leads.get_mut(&id).unwrap();
            let agent = known.leases.iter().find(|(l, ..)| *l == lease).unwrap().1.clone();
            known.leases.retain(|(l, ..)| *l != lease);
            known.attempts.push((now, result));
            known.callback = callback.map(|(at, agent_only)| (at, agent_only.then_some(agent)));
            match result {
                CallResult::DoNotCall => {
                    known.asked_not_to_be_called = true;
                    let phone = known.phone.clone();
                    oracle.internal_do_not_call.insert(phone.clone());
                    // The engine revokes the held (latest, unlapsed) leases of the number's
                    // other leads at once: no outcome is taken for them after.
                    for other in oracle.leads.values_mut().filter(|lead| lead.phone == phone) {
                        if other.leases.last().is_some_and(|(_, _, expires)| *expires > now) {
                            other.leases.pop();
                        }
                    }
                }
                CallResult::WrongNumber => known.wrong_number = true,
                _ => {}
            }
        } else if action < 90 {
            let leased: Vec<(String, String)> = oracle
                .leads
                .iter()
                .filter_map(|(id, lead)| lead.leases.last().map(|(lease, ..)| (id.clone(), lease.clone())))
                .collect();
            if let Some((id, lease)) = leased.get(rng.random_range(0..leased.len().max(1))).cloned() {
                dialer.release(&lease).unwrap();
                oracle.leads.get_mut(&id).unwrap().leases.retain(|(l, ..)| *l != lease);
            }
        } else if action < 96 {
            // A rule changes under a queued lead.
            // (A lead sharing an erased lead's number may not be stored again.)
            let ids: Vec<String> = oracle
                .leads
                .iter()
                .filter(|(_, lead)| !oracle.erased_numbers.contains(&lead.phone))
                .map(|(id, _)| id.clone())
                .collect();
            let id = &ids[rng.random_range(0..ids.len())];
            let known = oracle.leads.get_mut(id).unwrap();
            match rng.random_range(0..3) {
                0 => known.consent.do_not_call = !known.consent.do_not_call,
                1 => known.consent.phone_consent = !known.consent.phone_consent,
                _ => known.consent.objected = !known.consent.objected,
            }
            store.upsert_leads(vec![input(id, known)]).unwrap();
            dialer.requeue(&scoring.rescore(&[id.as_str().into()], Trigger::Upsert));
        } else if action < 98 {
            let ids: Vec<String> = oracle.leads.keys().cloned().collect();
            let id = &ids[rng.random_range(0..ids.len())];
            store.erase_lead(id, "").unwrap();
            scoring.forget(id);
            dialer.requeue(&[id.as_str().into()]);
            let erased = oracle.leads.remove(id).unwrap();
            oracle.erased_numbers.insert(erased.phone);
        } else {
            add_lead(&mut oracle, &mut rng);
        }
        clock.advance_ms(rng.random_range(1..=16) * MINUTE);
    }
    let days = (clock.now_ms() - START_MS) / DAY;
    assert!(days >= 16, "the run must cross both daylight-saving changes, covered {days} days");
    assert!(
        claims > 500 && dry_spells > 50 && outcomes > 500,
        "claims {claims}, dry {dry_spells}, outcomes {outcomes}"
    );
}

/// Claims made together are logged in order, each numbered by its own record, and survive a
/// restart; claims staged and never committed leave no trace.
#[test]
fn claims_made_together_are_logged_together_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let options = leadscore_tests::config(dir.path()).store_options();
    let open = || Store::open(options.clone(), clock.clone()).unwrap();
    let lead = |n: u64| LeadInput {
        id: format!("lead-{n}").into(),
        attributes: Vec::new(),
        time_zone: Some(chrono_tz::America::New_York),
        consent: Consent { phone_consent: true, ..Consent::default() },
        campaigns: Vec::new(),
        owner: Default::default(),
        phone: format!("+1555000{n:04}").into(),
        email: Default::default(),
    };
    let store = open();
    store.upsert_leads((0..4).map(lead).collect()).unwrap();

    let mut claims = store.claims();
    let leases: Vec<_> = (0..3)
        .map(|n| {
            claims
                .claim(&format!("lead-{n}"), "a", "default", LEASE, None, |_, _| Ok::<_, ()>(i64::MAX))
                .unwrap()
                .unwrap()
        })
        .collect();
    // Nothing holds until committed.
    assert_eq!(store.read_dial("lead-0", |dial| dial.lease.clone()), None);
    store.durable(claims.commit().unwrap()).unwrap();
    let ids: Vec<u64> = leases.iter().map(|lease| lease.id).collect();
    assert_eq!(ids, [ids[0], ids[0] + 1, ids[0] + 2]);
    let refused = store.claims().claim("lead-0", "b", "default", LEASE, None, |_, dial| {
        match dial.and_then(|d| d.lease.as_ref()) {
            Some(_) => Err("leased"),
            None => Ok(i64::MAX),
        }
    });
    assert_eq!(refused.unwrap(), Err("leased"));

    // Staged, then dropped: never happened.
    let mut dropped = store.claims();
    dropped.claim("lead-3", "a", "default", LEASE, None, |_, _| Ok::<_, ()>(i64::MAX)).unwrap().unwrap();
    drop(dropped);
    drop(store);

    let store = open();
    for (n, lease) in leases.iter().enumerate() {
        assert_eq!(store.read_dial(&format!("lead-{n}"), |dial| dial.lease.clone()), Some(Some(lease.clone())));
    }
    assert_eq!(store.read_dial("lead-3", |dial| dial.lease.clone()), None);
    let mut claims = store.claims();
    let next = claims.claim("lead-3", "a", "default", LEASE, None, |_, _| Ok::<_, ()>(i64::MAX)).unwrap().unwrap();
    store.durable(claims.commit().unwrap()).unwrap();
    assert_eq!(next.id, ids[2] + 1);
}
