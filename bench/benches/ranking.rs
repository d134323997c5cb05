//! Reading rankings in process: `TopAccounts`' top 100 over 100,000 accounts of three leads each,
//! read from the score index as the RPC reads it; and `ValidationReport` over 1M leads called
//! with their outcomes, read from a store as the RPC reads it.

use std::sync::Arc;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use leadscore::clock::SystemClock;
use leadscore::config::Composition;
use leadscore::scoring::index::{ScoreIndex, Update};
use leadscore::scoring::pipeline::{Band, Campaign};
use leadscore::store::dial::{AtClaim, Attempt, CallResult};
use leadscore::store::{FsyncPolicy, Store, StoreOptions};
use leadscore::validation;

const ACCOUNTS: u64 = 100_000;
const LEADS_PER_ACCOUNT: u64 = 3;

/// An index holding `ACCOUNTS` accounts, with scores spread over 0-150 points.
fn index() -> ScoreIndex {
    let campaign = Campaign::new("default", Composition::Points, vec![1.0]);
    let index = ScoreIndex::new(std::slice::from_ref(&campaign));
    let names: Arc<[Arc<str>]> = Arc::from(vec![Arc::from("fit")]);
    for n in 0..ACCOUNTS * LEADS_PER_ACCOUNT {
        let score = (n.wrapping_mul(2_654_435_761) % 15_000) as f64 / 100.0;
        let account = compact_str::format_compact!("account-{}.com", n % ACCOUNTS);
        let campaigns = [(campaign.name.clone(), score, Band::of(score, &campaign.bands))];
        let update = Update {
            version: 1,
            config_version: 1,
            lsn: 1,
            scored_at_ms: 0,
            scorer_names: &names,
            scorers: &[score],
            points: &[score],
            campaigns: &campaigns,
            account: Some(&account),
        };
        index.apply(&format!("lead-{n}").as_str().into(), update);
    }
    index
}

fn top_accounts(c: &mut Criterion) {
    let index = index();
    assert_eq!(index.top_accounts("default", usize::MAX, 0).unwrap().len(), ACCOUNTS as usize);
    c.bench_function("ranking/top 100 of 100k accounts, 3 leads each", |b| {
        b.iter(|| index.top_accounts("default", 100, 3).unwrap())
    });
}

const CALLED: u64 = 1_000_000;

/// A store (fsync `never`) with `CALLED` leads, each claimed with claim-time scores and given an
/// outcome; one in five converted, more often the higher the score.
fn called_store(dir: &std::path::Path) -> Arc<Store> {
    let options = StoreOptions {
        data_dir: dir.to_owned(),
        fsync: FsyncPolicy::Never,
        fsync_interval: Duration::from_secs(1),
        snapshot_log_bytes: u64::MAX,
        max_events_per_lead: 16,
    };
    let store = Store::open(options, Arc::new(SystemClock)).unwrap();
    for chunk in (0..CALLED).collect::<Vec<_>>().chunks(10_000) {
        let leads: Vec<_> = chunk.iter().map(|&n| leadscore_bench::lead(n)).collect();
        let ids: Vec<_> = leads.iter().map(|lead| lead.id.clone()).collect();
        store.upsert_leads(leads).unwrap();
        let mut claims = store.claims();
        let leases: Vec<_> = chunk
            .iter()
            .zip(ids)
            .map(|(&n, id)| {
                let score = (n.wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
                let at_claim =
                    AtClaim { config_version: 1, score, band: 0, probability: Some(score / 100.0), shadow: None };
                let lease = claims.claim(&id, "agent", "default", 60_000, Some(at_claim), |_, _| Ok::<_, ()>(i64::MAX));
                (id, score, lease.unwrap().unwrap())
            })
            .collect();
        let _logged = claims.commit().unwrap(); // fsync `never`: nothing to wait for
        for (id, score, lease) in leases {
            let converted = (score as u64 * 7 + lease.id) % 100 < score as u64 / 2;
            let result = if converted { CallResult::Converted } else { CallResult::Lost };
            let attempt = Attempt {
                lease: lease.id,
                agent: Default::default(),
                campaign: Default::default(),
                at_ms: lease.claimed_at_ms,
                result,
                talk_ms: 0,
                note: String::new(),
                segment: Default::default(),
                arm: None,
            };
            store.report_outcome(&id, attempt, None, (Default::default(), None)).unwrap();
        }
    }
    store
}

fn validation_report(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = called_store(dir.path());
    assert_eq!(validation::report(&store, "default")[0].all.leads, CALLED);
    let mut group = c.benchmark_group("validation");
    group.sample_size(10);
    group.bench_function("report over 1M called leads", |b| b.iter(|| validation::report(&store, "default")));
    group.finish();
}

criterion_group!(benches, top_accounts, validation_report);
criterion_main!(benches);
