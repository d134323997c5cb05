//! Scoring at scale: N stored leads (ten attributes, twenty events each) rescored in full by the
//! fit and engagement plugins (a reload), against a plain in-process loop computing the same
//! points over the same stored leads; the decay sweep, which calls engagement alone; then the
//! top 1000 of a campaign, in-process and through gRPC.
//!
//! `cargo build --release && cargo run --release -p leadscore-bench --bin score-scale -- [LEADS]
//! [points|weighted_mean]` (the default campaign's composition; points by default)
//! (the plugins are loaded from beside the binary, where the release build puts them).

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use leadscore::clock::ManualClock;
use leadscore::config::Composition;
use leadscore::config::Config;
use leadscore::generation::Generations;
use leadscore::scoring::{TopQuery, Trigger};
use leadscore::store::Store;
use leadscore::store::lead::{Lead, Value};
use leadscore_bench::{FIRST_EVENT_MS, fill, median, median_seconds, open_store};
use leadscore_proto::v1 as pb;
use tokio_stream::StreamExt;

const RUNS: usize = 5;
const TOP_RUNS: usize = 21;
const DAY_MS: f64 = 86_400_000.0;
/// Scoring time: a day after the first generated event.
const NOW_MS: i64 = FIRST_EVENT_MS + 86_400_000;

fn main() {
    let leads: u64 = std::env::args().nth(1).map_or(1_000_000, |n| n.parse().expect("LEADS is a number"));
    let composition = match std::env::args().nth(2).as_deref() {
        None | Some("points") => Composition::Points,
        Some("weighted_mean") => Composition::WeightedMean,
        Some(other) => panic!("the composition is points or weighted_mean, not {other}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let started = Instant::now();
    fill(&store, leads);
    println!("loaded {leads} leads with 20 events each in {:.1} s", started.elapsed().as_secs_f64());

    let clock = Arc::new(ManualClock::new(NOW_MS));
    // One thread, to compare with the one-thread plain loop; all cores are measured after.
    let mut config = Config::default();
    config.store.data_dir = dir.path().to_owned();
    config.scoring.threads = 1;
    config.campaigns.get_mut("default").unwrap().composition = composition;
    let config = Arc::new(config);
    let (scoring, generations) = Generations::start(store.clone(), clock.clone(), config.clone(), 0).unwrap();
    let names: Vec<String> = scoring.pipeline().plugins.iter().map(|p| p.name.clone()).collect();
    assert_eq!(names, ["fit", "engagement"], "build the plugins first: cargo build --release");

    // A reload swaps in a new pipeline, which calls every scorer for every lead, as the plain
    // loop computes; the decay sweep keeps fit's scores (it reads attributes alone).
    let plugins = median_seconds(RUNS, || _ = generations.reload(false).unwrap());
    let sweep = median_seconds(RUNS, || _ = scoring.rescore_all(Trigger::Decay));
    let mut ids = Vec::new();
    let mut scores = vec![0.0; leads as usize];
    // Like a full rescore, the loop enumerates the stored leads and reads each one.
    let plain_loop = median_seconds(RUNS, || {
        ids = store.lead_ids();
        plain_rescore(&store, &ids, composition, &mut scores);
    });
    // The loop computes the very scores the plugins gave.
    for (id, plain) in ids.iter().zip(&scores).step_by(997) {
        let explained = scoring.explain(id, "").unwrap().score;
        assert!((explained - plain).abs() < 1e-9, "{id}: plugins {explained}, plain loop {plain}");
    }
    println!(
        "full rescore of {leads} leads: plugins {:.3} s ({:.0} leads/s), plain loop {:.3} s ({:.0} leads/s), ratio {:.2}",
        plugins,
        leads as f64 / plugins,
        plain_loop,
        leads as f64 / plain_loop,
        plugins / plain_loop
    );
    println!("decay sweep of {leads} leads, fit's scores kept: {sweep:.3} s ({:.0} leads/s)", leads as f64 / sweep);

    let all_cores = Config {
        scoring: leadscore::config::ScoringConfig { threads: 0, ..config.scoring.clone() },
        ..(*config).clone()
    };
    let (parallel, reloads) = Generations::start(store.clone(), clock, Arc::new(all_cores), 0).unwrap();
    let on_all_cores = median_seconds(RUNS, || _ = reloads.reload(false).unwrap());
    drop((parallel, reloads));
    println!("full rescore on all cores: {on_all_cores:.3} s ({:.0} leads/s)", leads as f64 / on_all_cores);

    let query = TopQuery { limit: 1000, ..TopQuery::default() };
    let top = 1e3 * median_seconds(TOP_RUNS, || assert_eq!(scoring.top(&query).unwrap().len(), 1000));
    println!("top 1000 of {leads}, in-process: {top:.2} ms");
    store.snapshot().unwrap();
    drop((scoring, generations, store));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let server = tokio::spawn(leadscore::server::run(listener, (*config).clone(), clock, async {
            let _ = stopped.await;
        }));
        let mut client = loop {
            assert!(!server.is_finished(), "the server stopped: {:?}", server.await);
            if let Ok(client) = pb::scoring_service_client::ScoringServiceClient::connect(address.clone()).await {
                break client.max_decoding_message_size(64 << 20);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let mut times = Vec::new();
        for _ in 0..TOP_RUNS {
            let started = Instant::now();
            let request = pb::TopLeadsRequest { limit: 1000, ..Default::default() };
            let stream = client.top_leads(request).await.unwrap().into_inner();
            let ranked: Vec<_> = stream.collect().await;
            assert_eq!(ranked.len(), 1000);
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        println!("top 1000 of {leads}, TopLeads through gRPC: {:.2} ms", median(times));
        drop(client);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    });
}

/// The fit and engagement defaults written out by hand, over the same stored leads: what the
/// plugins compute, without a plugin boundary, a batch, or a ranking to keep.
fn plain_rescore(store: &Store, ids: &[leadscore::store::lead::LeadId], composition: Composition, scores: &mut [f64]) {
    let sym = |name: &str| store.attribute_sym(name);
    let (role, department, employees) = (sym("role"), sym("department"), sym("employees"));
    let table: Vec<Option<(f64, f64)>> = store.with_event_kinds(|kinds| {
        kinds
            .iter()
            .map(|kind| match &**kind {
                "page_view:/pricing" => Some((15.0, 45.0)),
                "content_download" => Some((10.0, 30.0)),
                "webinar_attended" => Some((20.0, 40.0)),
                "demo_request" => Some((25.0, 50.0)),
                "email_open" => Some((5.0, 20.0)),
                "unsubscribe" => Some((-10.0, 10.0)),
                "page_view:/careers" => Some((-5.0, 15.0)),
                "support_ticket" => Some((-3.0, 9.0)),
                _ => None,
            })
            .collect()
    });
    let mut per_kind = vec![0.0; table.len()];
    for (id, score) in ids.iter().zip(scores.iter_mut()) {
        *score = store
            .read_lead(id, |lead| {
                let fit = fit_points(lead, role, department, employees);
                let engagement = engagement_points(lead, &table, &mut per_kind);
                match composition {
                    Composition::Points => (fit + engagement).max(0.0),
                    Composition::WeightedMean => {
                        (100.0 * fit / 45.0).clamp(0.0, 100.0) / 2.0 + engagement.clamp(0.0, 100.0) / 2.0
                    }
                }
            })
            .unwrap_or(0.0);
    }
}

fn fit_points(
    lead: &Lead,
    role: Option<leadscore::store::Sym>,
    department: Option<leadscore::store::Sym>,
    employees: Option<leadscore::store::Sym>,
) -> f64 {
    let mut points = 0.0;
    for (sym, value) in lead.attributes.iter() {
        let sym = Some(*sym);
        match value {
            Value::Text(text) if sym == role => {
                let role = text.trim().to_ascii_lowercase();
                let c_level = role == "c-level"
                    || (role.len() <= 4
                        && role.starts_with('c')
                        && role.ends_with('o')
                        && role.bytes().all(|b| b.is_ascii_lowercase()))
                    || role.starts_with("chief");
                points += if c_level {
                    15.0
                } else if role == "project manager" || role.contains("director") {
                    10.0
                } else {
                    0.0
                };
            }
            Value::Text(text) if sym == department => {
                let department = text.trim();
                points += if department.eq_ignore_ascii_case("it")
                    || department.eq_ignore_ascii_case("information technology")
                {
                    15.0
                } else if department.eq_ignore_ascii_case("finance") {
                    10.0
                } else {
                    0.0
                };
            }
            Value::Number(n) if sym == employees => {
                points += match *n {
                    n if (500.0..=999.0).contains(&n) => 15.0,
                    n if (100.0..=499.0).contains(&n) => 10.0,
                    n if n >= 1000.0 => 5.0,
                    n if (50.0..=99.0).contains(&n) => 5.0,
                    _ => 0.0,
                };
            }
            _ => {}
        }
    }
    points
}

fn engagement_points(lead: &Lead, table: &[Option<(f64, f64)>], per_kind: &mut [f64]) -> f64 {
    per_kind.fill(0.0);
    let half_life_ms = 30.0 * DAY_MS;
    for event in &lead.events {
        if let Some((points, _)) = table[event.kind().index()] {
            let age = (NOW_MS - event.at_ms()).max(0) as f64;
            per_kind[event.kind().index()] += points * (-age / half_life_ms).exp2();
        }
    }
    let mut total: f64 = per_kind.iter().zip(table).map(|(p, t)| t.map_or(0.0, |(_, cap)| p.clamp(-cap, cap))).sum();
    if lead.events.last().is_some_and(|last| (NOW_MS - last.at_ms()) as f64 > 30.0 * DAY_MS) {
        total -= 10.0;
    }
    total
}
