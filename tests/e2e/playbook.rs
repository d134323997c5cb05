//! The lead-scoring playbook's examples through gRPC, with the default matrix: in `points`
//! composition (the default) the score is fit points plus behaviour points and the bands sit
//! on that sum; in `weighted_mean` the same leads give the mean of the 0-100 scores. Switching
//! modes through UpdateConfig rescores every lead.

use leadscore::config::{Composition, Config};
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, event, number, text, timestamp};
use tokio_stream::StreamExt;

const DAY_MS: i64 = 86_400_000;
/// 2026-11-01T00:00:00Z.
const NOW_MS: i64 = 1_793_491_200_000;

fn lead(id: &str, attributes: &[(&str, pb::AttributeValue)]) -> pb::Lead {
    let attributes = attributes.iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
    pb::Lead { id: id.into(), attributes, ..Default::default() }
}

fn director(id: &str) -> pb::Lead {
    lead(id, &[("role", text("Sales Director"))])
}

fn cto(id: &str) -> pb::Lead {
    lead(id, &[("role", text("CTO")), ("department", text("IT")), ("employees", number(640.0))])
}

fn at(lead_id: &str, id: &str, kind: &str, at_ms: i64) -> pb::Event {
    pb::Event { at: Some(timestamp(at_ms / 1000)), ..event(lead_id, id, kind) }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The playbook's leads, stored: each a profile and its events, all at `NOW_MS`.
fn playbook() -> Vec<(pb::Lead, Vec<pb::Event>)> {
    let now = |lead: &str, kinds: &[&str]| -> Vec<pb::Event> {
        kinds.iter().enumerate().map(|(i, kind)| at(lead, &format!("{lead}-{i}"), kind, NOW_MS)).collect()
    };
    vec![
        (director("director-demo"), now("director-demo", &["demo_request"])),
        (cto("cto"), vec![]),
        (cto("cto-pricing"), now("cto-pricing", &["page_view:/pricing"])),
        (cto("cto-webinar"), now("cto-webinar", &["page_view:/pricing", "webinar_attended"])),
        (cto("cto-unsubscribed"), now("cto-unsubscribed", &["page_view:/pricing", "webinar_attended", "unsubscribe"])),
        (director("director-old-demo"), vec![at("director-old-demo", "d", "demo_request", NOW_MS - 30 * DAY_MS)]),
    ]
}

async fn start(dir: &std::path::Path, composition: Composition) -> TestServer {
    let mut config = config(dir);
    config.campaigns.get_mut("default").unwrap().composition = composition;
    let (server, _clock) = TestServer::start_at(config, NOW_MS).await;
    let mut leads = server.leads().await;
    let (profiles, events): (Vec<pb::Lead>, Vec<Vec<pb::Event>>) = playbook().into_iter().unzip();
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: profiles }).await.unwrap();
    let events = events.into_iter().flatten().collect();
    leads.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    server
}

async fn explain(server: &TestServer, id: &str) -> pb::LeadScore {
    let request = pb::ExplainRequest { contact_curve: false, lead_id: id.into(), campaign: String::new() };
    server.scoring().await.explain(request).await.unwrap().into_inner().score.unwrap()
}

async fn ranking(server: &TestServer) -> Vec<(String, f64, pb::Band)> {
    let request = pb::TopLeadsRequest { limit: 100, ..Default::default() };
    let stream = server.scoring().await.top_leads(request).await.unwrap().into_inner();
    let ranked: Vec<pb::RankedLead> = stream.map(|r| r.unwrap()).collect().await;
    ranked.into_iter().map(|r| r.score.unwrap()).map(|s| (s.lead_id.clone(), s.score, s.band())).collect()
}

/// Each playbook lead's expected score and band, best first.
fn expected_points() -> Vec<(&'static str, f64, pb::Band)> {
    vec![
        ("cto-webinar", 45.0 + 15.0 + 20.0, pb::Band::Hot),
        ("cto-unsubscribed", 45.0 + 15.0 + 20.0 - 10.0, pb::Band::SalesReady),
        ("cto-pricing", 45.0 + 15.0, pb::Band::SalesReady),
        ("cto", 45.0, pb::Band::Warm),
        ("director-demo", 10.0 + 25.0, pb::Band::Warm),
        ("director-old-demo", 10.0 + 12.5, pb::Band::Unqualified),
    ]
}

fn assert_ranking(got: &[(String, f64, pb::Band)], want: &[(&str, f64, pb::Band)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((id, score, band), (want_id, want_score, want_band)) in got.iter().zip(want) {
        assert_eq!((id.as_str(), *band), (*want_id, *want_band), "{got:?}");
        assert!(close(*score, *want_score), "{id}: {score} != {want_score}");
    }
}

#[tokio::test]
async fn points_reproduce_the_playbook() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Composition::Points).await;
    assert_ranking(&ranking(&server).await, &expected_points());

    // Explanations are in points and add up: the scorers' contributions to the score, each
    // scorer's factors to its points.
    let webinar = explain(&server, "cto-webinar").await;
    let parts: f64 = webinar.scorers.iter().map(|s| s.contribution).sum();
    assert!(close(parts, 80.0), "{webinar:?}");
    for scorer in &webinar.scorers {
        let factors: f64 = scorer.top_factors.iter().map(|f| f.contribution).sum();
        assert!(close(factors, scorer.points), "{scorer:?}");
    }
    let factor = |score: &pb::LeadScore, feature: &str| {
        let factors = score.scorers.iter().flat_map(|s| s.top_factors.iter());
        factors.filter(|f| f.feature == feature).map(|f| f.contribution).sum::<f64>()
    };
    assert_eq!(factor(&webinar, "role"), 15.0);
    assert_eq!(factor(&webinar, "webinar_attended"), 20.0);
    assert_eq!(factor(&explain(&server, "cto-unsubscribed").await, "unsubscribe"), -10.0);
    // A demo request one half-life ago counts half its 25 points.
    assert!(close(factor(&explain(&server, "director-old-demo").await, "demo_request"), 12.5));
    // The grade still reads the 0-100 scores: fit 100 is an A, engagement 35 a 3.
    assert_eq!(webinar.grade, "A3");
    server.stop().await;
}

#[tokio::test]
async fn the_weighted_mean_is_kept_and_a_switch_rescores_every_lead() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Composition::WeightedMean).await;
    // The mean of fit's 0-100 score (points over the 45 attainable) and engagement's.
    let fit = |points: f64| 100.0 * points / 45.0;
    let mean = vec![
        ("cto-webinar", (100.0 + 35.0) / 2.0, pb::Band::SalesReady),
        ("cto-unsubscribed", (100.0 + 25.0) / 2.0, pb::Band::SalesReady),
        ("cto-pricing", (100.0 + 15.0) / 2.0, pb::Band::SalesReady),
        ("cto", 100.0 / 2.0, pb::Band::SalesReady),
        ("director-demo", (fit(10.0) + 25.0) / 2.0, pb::Band::Unqualified),
        ("director-old-demo", (fit(10.0) + 12.5) / 2.0, pb::Band::Unqualified),
    ];
    assert_ranking(&ranking(&server).await, &mean);
    let director = explain(&server, "director-demo").await;
    assert!(close(director.score, 23.61111111111111), "{director:?}");
    let factors: f64 = director.scorers.iter().flat_map(|s| s.top_factors.iter()).map(|f| f.contribution).sum();
    assert!(close(factors, fit(10.0) + 25.0), "factors are on the 0-100 scales: {director:?}");

    // Switched to points, every lead is rescored before the change is acknowledged, and the
    // director who asked for a demo crosses into warm.
    let mut scoring = server.scoring().await;
    let mut crossings = scoring.watch_scores(pb::WatchScoresRequest::default()).await.unwrap().into_inner();
    let mut admin = server.admin().await;
    let current = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
    let mut next = Config::parse(&current.toml).unwrap();
    next.campaigns.get_mut("default").unwrap().composition = Composition::Points;
    let request = pb::UpdateConfigRequest { toml: next.to_toml(), expected_version: current.version };
    admin.update_config(request).await.unwrap();
    assert_ranking(&ranking(&server).await, &expected_points());
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let crossing = tokio::time::timeout(std::time::Duration::from_secs(10), crossings.next()).await;
        let crossing = crossing.expect("a crossing in time").unwrap().unwrap();
        seen.push((crossing.lead_id.clone(), crossing.from(), crossing.to()));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("cto".into(), pb::Band::SalesReady, pb::Band::Warm),
            ("cto-webinar".into(), pb::Band::SalesReady, pb::Band::Hot),
            ("director-demo".into(), pb::Band::Unqualified, pb::Band::Warm),
        ]
    );
    server.stop().await;
}
