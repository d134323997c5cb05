//! `WatchTopLeads`: a client that rebuilds its list from the diffs holds the list `TopLeads`
//! answers, at every sequence number, through a random stream of upserts, events, erasures,
//! calls and configuration changes; one that falls far behind is sent the whole list again.

use std::time::Duration;

use leadscore_proto::tonic::Code;
use leadscore_proto::v1 as pb;
use leadscore_tests::watched::{Copy, settled, truth, watch};
use leadscore_tests::{TestServer, config, event, number, text};
use pb::next_lead_response::Result as Next;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_stream::StreamExt;

/// Monday 2026-11-02 15:00 UTC: 10:00 in New York, where every lead is.
const NOW_MS: i64 = 1_793_631_600_000;
const ROLES: [&str; 4] = ["CTO", "VP Sales", "Engineer", "Intern"];

fn lead(n: u32, rng: &mut StdRng) -> pb::Lead {
    pb::Lead {
        id: format!("lead-{n:03}"),
        attributes: [
            ("role".to_string(), text(ROLES[rng.random_range(0..ROLES.len())])),
            ("department".to_string(), text(if rng.random_bool(0.7) { "IT" } else { "HR" })),
            ("employees".to_string(), number(f64::from(rng.random_range(5..2000)))),
        ]
        .into(),
        time_zone: "America/New_York".into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: format!("+1212555{n:04}"),
        ..Default::default()
    }
}

/// Short lists: most changes fall below every list's floor and are never sent to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_rebuilt_from_the_diffs_is_top_leads_at_every_sequence_number() {
    let cto = pb::AttributeFilter {
        attribute: "role".into(),
        r#match: Some(pb::attribute_filter::Match::Equals(text("cto"))),
    };
    let requests = [
        pb::TopLeadsRequest { limit: 10, ..Default::default() },
        pb::TopLeadsRequest {
            limit: 5,
            bands: vec![pb::Band::Hot.into(), pb::Band::SalesReady.into()],
            ..Default::default()
        },
        pb::TopLeadsRequest { limit: 8, filters: vec![cto], ..Default::default() },
        pb::TopLeadsRequest { limit: 12, exclude_finished: true, ..Default::default() },
    ];
    random_stream(27, &requests).await;
}

/// A list as long as the ranking, full at times and not at others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_nearly_every_lead_follows_it_as_it_grows_and_shrinks() {
    random_stream(28, &[pb::TopLeadsRequest { limit: 140, ..Default::default() }]).await;
}

/// Watches `requests` through 200 random changes, checking each list after each.
async fn random_stream(seed: u64, requests: &[pb::TopLeadsRequest]) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // Each step waits for every list to say it caught up.
    config.scoring.watch_progress_ms = 20;
    let (server, _clock) = TestServer::start_at(config, NOW_MS).await;
    let mut rng = StdRng::seed_from_u64(seed);
    server.upsert((0..120).map(|n| lead(n, &mut rng)).collect()).await;
    let mut scoring = server.scoring().await;
    let mut leads = server.leads().await;
    let mut dialer = server.dialer().await;

    let mut copies = Vec::new();
    for request in requests {
        copies.push(watch(&mut scoring, request.clone()).await);
    }

    let (mut next_lead, mut event_id, mut changes) = (120, 0, [0usize; 5]);
    for step in 0..200 {
        let action = rng.random_range(0..100);
        match action {
            0..35 => {
                // A lead changes, or a new one comes.
                let n = if rng.random_bool(0.8) { rng.random_range(0..next_lead) } else { next_lead };
                next_lead = next_lead.max(n + 1);
                // An erased lead may not come back: refused, nothing changes.
                let _ = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead(n, &mut rng)] }).await;
                changes[0] += 1;
            }
            35..70 => {
                let events = (0..rng.random_range(1..4))
                    .map(|_| {
                        event_id += 1;
                        let id = format!("lead-{:03}", rng.random_range(0..next_lead));
                        event(
                            &id,
                            &format!("e{event_id}"),
                            ["page_view:/pricing", "demo_request", "email_open"][event_id % 3],
                        )
                    })
                    .collect();
                // Refused whole if one of them was erased: no matter.
                let _ = leads.record_events(pb::RecordEventsRequest { events }).await;
                changes[1] += 1;
            }
            70..78 => {
                let id = format!("lead-{:03}", rng.random_range(0..next_lead));
                let _ = leads.erase_lead(pb::EraseLeadRequest { id }).await;
                changes[2] += 1;
            }
            78..92 => {
                // A call: the best callable lead converts or is lost (finished), or not answered.
                let request = pb::NextLeadRequest { campaign: String::new(), agent_id: "agent".into() };
                if let Some(Next::Claim(claim)) = dialer.next_lead(request).await.unwrap().into_inner().result {
                    let result = [pb::CallResult::Converted, pb::CallResult::Lost, pb::CallResult::NoAnswer][step % 3];
                    let outcome = pb::Outcome {
                        lease_id: claim.lease.unwrap().lease_id,
                        result: result.into(),
                        ..Default::default()
                    };
                    dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap();
                }
                changes[3] += 1;
            }
            _ => {
                // New weights or bands: every lead is rescored.
                let (weight, hot) = (rng.random_range(0.5..2.0), rng.random_range(40.0..90.0));
                server
                    .reconfigure(|config| {
                        let campaign = config.campaigns.get_mut("default").unwrap();
                        campaign.weights.insert("engagement".into(), weight);
                        (campaign.bands.warm, campaign.bands.sales_ready, campaign.bands.hot) =
                            (hot / 4.0, hot / 2.0, hot);
                    })
                    .await;
                changes[4] += 1;
            }
        }
        for (request, copy) in requests.iter().zip(&copies) {
            let (expected, seq) = truth(&mut scoring, request).await;
            let (rebuilt, _) = settled(copy, seq).await;
            assert_eq!(rebuilt, expected, "step {step}, action {action}, watching {request:?} at {seq}");
        }
    }
    println!("changes by kind (upserts, events, erasures, calls, configurations): {changes:?}");
    assert!(changes.iter().all(|&n| n > 0), "{changes:?}");
    // Every list was sent whole once: nobody fell behind.
    assert!(copies.iter().all(|copy| copy.lock().unwrap().snapshots == 1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_gets_the_whole_list_again() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = TestServer::start_at(config(dir.path()), NOW_MS).await;
    let mut rng = StdRng::seed_from_u64(28);
    server.upsert((0..2000).map(|n| lead(n, &mut rng)).collect()).await;
    let mut scoring = server.scoring().await;
    let request = pb::TopLeadsRequest { limit: 1000, ..Default::default() };
    // A client that reads the first message and then nothing while 60,000 changes are made,
    // most of which move its list: more than the connection's window and the buffers hold.
    let mut stream = scoring.watch_top_leads(request.clone()).await.unwrap().into_inner();
    let mut copy = Copy::default();
    copy.apply(stream.next().await.unwrap().unwrap());
    for round in 0..30 {
        server
            .reconfigure(|config| {
                let weight = 1.0 + f64::from(round) / 20.0;
                config.campaigns.get_mut("default").unwrap().weights.insert("fit".into(), weight);
            })
            .await;
    }
    let (expected, seq) = truth(&mut scoring, &request).await;
    while copy.settled < seq {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        copy.apply(message);
    }
    assert_eq!(copy.list, expected);
    assert!(copy.snapshots >= 2, "a fresh snapshot after falling behind: {}", copy.snapshots);

    // What a watched list cannot do is refused, naming the field.
    for (field, refused) in [
        ("callable_now", pb::TopLeadsRequest { limit: 5, callable_now: true, ..Default::default() }),
        ("limit", pb::TopLeadsRequest { limit: 1001, ..Default::default() }),
        ("campaign", pb::TopLeadsRequest { limit: 5, campaign: "nope".into(), ..Default::default() }),
    ] {
        let Err(status) = scoring.watch_top_leads(refused).await else { panic!("{field}: refused") };
        assert!(matches!(status.code(), Code::InvalidArgument | Code::NotFound), "{status:?}");
        assert!(status.message().starts_with(field), "{field}: {status:?}");
    }
    server.stop().await;
}
