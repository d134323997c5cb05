//! Reading rankings in process: `TopAccounts`' top 100 over 100,000 accounts of three leads each,
//! read from the score index as the RPC reads it.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use leadscore::config::Composition;
use leadscore::scoring::index::{ScoreIndex, Update};
use leadscore::scoring::pipeline::{Band, Campaign};

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

criterion_group!(benches, top_accounts);
criterion_main!(benches);
