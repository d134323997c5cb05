//! What the services' unit tests share: a store of their own and the services over it, scoring
//! with the shipped fit and engagement plugins, which cargo builds beside the test binaries as
//! this crate's dev-dependencies.

use std::sync::Arc;
use std::time::Duration;

use leadscore_config::Config;
use leadscore_store::clock::{Clock, ManualClock};
use leadscore_store::lead::Consent;
use leadscore_store::mutation::{EventInput, LeadInput, fingerprint};
use leadscore_store::{FsyncPolicy, Store, StoreOptions};

use crate::dialer::Dialer;
use crate::generation::Generations;
use crate::routing::Router;
use crate::scoring::Scoring;

/// 2026-03-02 (a Monday), noon UTC: the default calling window (08:00-21:00) is open.
pub const NOON_MS: i64 = 1_772_452_800_000;

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub scoring: Arc<Scoring>,
    pub dialer: Arc<Dialer>,
    pub clock: Arc<ManualClock>,
}

/// The services over a store holding `leads` (id, phone) in UTC, with no attributes or
/// events: they score alike, so claims go by id.
pub fn fixture(leads: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOON_MS));
    let options = StoreOptions {
        data_dir: dir.path().to_owned(),
        fsync: FsyncPolicy::Never,
        fsync_interval: Duration::from_secs(1),
        snapshot_log_bytes: u64::MAX,
        max_events_per_lead: 100,
    };
    let store = Store::open(options, clock.clone()).unwrap();
    store.upsert_leads(leads.iter().map(|(id, phone)| lead(id, phone)).collect()).unwrap();
    let mut config = Config::default();
    config.plugins.dir = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    let (scoring, generations) = Generations::start(store.clone(), clock.clone(), Arc::new(config), 0).unwrap();
    let router = Arc::new(Router::new(store.clone(), scoring.clone(), generations.clone(), clock.clone()));
    let dialer = Dialer::start(store.clone(), scoring.clone(), generations, router, clock.clone());
    Fixture { _dir: dir, store, scoring, dialer, clock }
}

/// A lead with a phone number in UTC, and nothing else.
pub fn lead(id: &str, phone: &str) -> LeadInput {
    LeadInput {
        id: id.into(),
        attributes: Vec::new(),
        time_zone: Some(chrono_tz::UTC),
        consent: Consent::default(),
        campaigns: Vec::new(),
        owner: Default::default(),
        phone: phone.into(),
        email: Default::default(),
    }
}

/// An event of `kind` on a lead, now.
pub fn event(f: &Fixture, lead_id: &str, id: &str, kind: &str) -> EventInput {
    EventInput {
        lead_id: lead_id.into(),
        fingerprint: fingerprint(id),
        kind: kind.into(),
        at_ms: f.clock.now_ms(),
        value: 0.0,
        properties: Vec::new(),
    }
}
