//! When people answer: a simulated floor whose leads pick up by a known pattern of local hour
//! and time zone. The contact rates the dialer learns must recover the pattern within their
//! error bars, and ordering by expected value must reach more people per 1,000 dials than
//! ordering by score, on the same floor. The real store, scorers and dialer run in process on
//! a manual clock, as in `dialer_simulation`; `dialer` tests the same through gRPC.

use std::sync::Arc;

use chrono::{TimeZone, Timelike};
use leadscore::clock::{Clock, ManualClock};
use leadscore::config::DialingOrder;
use leadscore::dialer::{Dialer, Next, Report};
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
/// Monday 2026-11-02 00:00 UTC, after the autumn clock changes.
const START_MS: i64 = 1_793_577_600_000;
const ZONES: [&str; 3] = ["America/New_York", "Europe/Berlin", "Asia/Tokyo"];
const LEADS_PER_ZONE: usize = 600;
/// One agent dials every two minutes, day and night (the windows keep it lawful).
const STEP: i64 = 2 * MINUTE;
const DAYS: i64 = 10;

/// The chance a lead picks up: the late afternoon is best, late morning worst, and each zone
/// answers less than the one before it.
fn truth(zone: usize, local_hour: u32) -> f64 {
    let hour = match local_hour {
        16..=18 => 0.55,
        11..=12 => 0.06,
        _ => 0.22,
    };
    hour * [1.0, 0.8, 0.6][zone]
}

struct Floor {
    dialer: Arc<Dialer>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn floor(order: DialingOrder) -> Floor {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut config = leadscore_tests::config(dir.path());
    let campaign = config.campaigns.get_mut("default").unwrap();
    campaign.dialing.order = order;
    campaign.contact.max_attempts = 30;
    campaign.contact.max_attempts_per_day = 3;
    campaign.contact.max_attempts_per_24h = 3;
    campaign.contact.recycle.no_answer = "3h".into();
    campaign.contact.recycle.connected_not_interested = "1d".into();
    let store = Store::open(config.store_options(), clock.clone()).unwrap();
    let (scoring, generations) = Generations::start(store.clone(), clock.clone(), Arc::new(config), 0).unwrap();
    let router =
        Arc::new(leadscore::routing::Router::new(store.clone(), scoring.clone(), generations.clone(), clock.clone()));
    let dialer = Dialer::start(store.clone(), scoring.clone(), generations, router, clock.clone());
    // The same leads on every floor: scores vary by company size, independent of the zone.
    let mut rng = StdRng::seed_from_u64(7);
    let leads: Vec<LeadInput> = (0..ZONES.len() * LEADS_PER_ZONE)
        .map(|n| LeadInput {
            id: format!("lead-{n}").into(),
            attributes: vec![
                ("role".into(), Value::Text(["CTO", "Engineer", "VP Sales"][rng.random_range(0..3)].into())),
                ("department".into(), Value::Text("IT".into())),
                ("employees".into(), Value::Number(f64::from(rng.random_range(5..2000)))),
            ],
            time_zone: Some(ZONES[n % ZONES.len()].parse().unwrap()),
            consent: Consent { phone_consent: true, ..Consent::default() },
            campaigns: Vec::new(),
            owner: Default::default(),
            phone: format!("+1555{n:07}").into(),
            email: Default::default(),
        })
        .collect();
    let ids: Vec<_> = leads.iter().map(|l| l.id.clone()).collect();
    store.upsert_leads(leads).unwrap();
    dialer.requeue(&scoring.rescore(&ids, Trigger::Upsert));
    Floor { dialer, clock, _dir: dir }
}

/// Dials for `DAYS` days; the person picks up as `truth` says. Returns dials and contacts.
fn dial(floor: &Floor, seed: u64) -> (u32, u32) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut dials, mut contacts) = (0, 0);
    while floor.clock.now_ms() < START_MS + DAYS * DAY {
        let now = floor.clock.now_ms();
        if let Next::Claimed(claimed) = floor.dialer.next_lead("", "agent").unwrap() {
            let zone_name = claimed.time_zone.unwrap().name();
            let zone = ZONES.iter().position(|z| *z == zone_name).unwrap();
            let local_hour = claimed.time_zone.unwrap().timestamp_millis_opt(now).unwrap().hour();
            let reached = rng.random_bool(truth(zone, local_hour));
            let result = if reached { CallResult::ConnectedNotInterested } else { CallResult::NoAnswer };
            let lease_id = leadscore::dialer::lease_id(claimed.lease.id, &claimed.lead_id);
            let report = Report { lease_id, result, at_ms: now, callback: None, talk_ms: 0, note: String::new() };
            floor.dialer.report(report).unwrap();
            dials += 1;
            contacts += u32::from(reached);
        }
        floor.clock.advance_ms(STEP);
    }
    (dials, contacts)
}

#[test]
fn learned_contact_rates_recover_the_pattern_and_expected_value_reaches_more_people() {
    let by_score = floor(DialingOrder::Score);
    let (dials, contacts) = dial(&by_score, 11);
    assert!(dials > 3000, "{dials} dials");

    // The grid, zone by zone, hour by hour, wherever it rests on 30 calls or more.
    let (mut checked, mut inside, mut error) = (0, 0, 0.0);
    for (zone, name) in ZONES.iter().enumerate() {
        let rates = by_score.dialer.contact_rates("", name).unwrap();
        for hour in 0..168 {
            let estimate = rates.estimate(hour);
            if estimate.calls < 30 {
                continue;
            }
            let expected = truth(zone, (hour % 24) as u32);
            checked += 1;
            inside += u32::from((estimate.low..=estimate.high).contains(&expected));
            error += (estimate.rate - expected).abs();
        }
    }
    let mean_error = error / f64::from(checked);
    println!(
        "learned grid: {checked} zone-hours with 30+ calls, {inside} within their 90% interval, mean error {mean_error:.3}"
    );
    assert!(checked >= 60, "{checked} zone-hours with enough calls");
    assert!(f64::from(inside) >= 0.75 * f64::from(checked), "{inside} of {checked} within their interval");
    assert!(mean_error < 0.06, "mean absolute error {mean_error:.3}");
    // The shape: 16:00-18:00 beats 11:00-12:00 in every zone.
    for name in ZONES {
        let rates = by_score.dialer.contact_rates("", name).unwrap();
        let mean = |hours: &[usize]| {
            let days = 0..7;
            let all: Vec<f64> =
                days.flat_map(|d| hours.iter().map(move |h| d * 24 + h)).map(|h| rates.estimate(h).rate).collect();
            all.iter().sum::<f64>() / all.len() as f64
        };
        assert!(mean(&[16, 17, 18]) > 2.0 * mean(&[11, 12]), "{name}");
    }

    // The same floor, ordered by expected value, from no knowledge at all.
    let by_value = floor(DialingOrder::ExpectedValue);
    let (value_dials, value_contacts) = dial(&by_value, 11);
    let per_thousand = |contacts: u32, dials: u32| 1000.0 * f64::from(contacts) / f64::from(dials);
    let (score_rate, value_rate) = (per_thousand(contacts, dials), per_thousand(value_contacts, value_dials));
    println!(
        "contacts per 1,000 dials over {DAYS} days: by score {score_rate:.0} ({contacts} of {dials}), \
         by expected value {value_rate:.0} ({value_contacts} of {value_dials})"
    );
    assert!(value_rate > 1.1 * score_rate, "expected value {value_rate:.0} against score {score_rate:.0}");
}
