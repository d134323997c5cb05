//! Scoring through gRPC with the real fit and engagement plugins: inline scores, explanations,
//! ranking and band-crossing alerts.

use std::sync::Arc;
use std::time::Duration;

use leadscore::clock::ManualClock;
use leadscore::config::Config;
use leadscore_proto::tonic::{Code, Status};
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, event, number, text, timestamp};
use tokio_stream::StreamExt;

const DAY_MS: i64 = 86_400_000;
/// 2026-11-01T00:00:00Z.
const NOW_MS: i64 = 1_793_491_200_000;

/// A lead with the fit attributes given; `None` leaves one out.
fn lead(id: &str, role: Option<&str>, department: Option<&str>, employees: Option<f64>) -> pb::Lead {
    let mut attributes = std::collections::BTreeMap::new();
    if let Some(role) = role {
        attributes.insert("role".to_string(), text(role));
    }
    if let Some(department) = department {
        attributes.insert("department".to_string(), text(department));
    }
    if let Some(employees) = employees {
        attributes.insert("employees".to_string(), number(employees));
    }
    pb::Lead { id: id.into(), attributes, ..Default::default() }
}

fn at(lead_id: &str, id: &str, kind: &str, at_ms: i64) -> pb::Event {
    pb::Event { at: Some(timestamp(at_ms / 1000)), ..event(lead_id, id, kind) }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn scorer<'a>(score: &'a pb::LeadScore, name: &str) -> &'a pb::ScorerScore {
    score.scorers.iter().find(|s| s.scorer == name).unwrap_or_else(|| panic!("no {name} in {score:?}"))
}

/// A server on a manual clock at `NOW_MS`.
async fn start(dir: &std::path::Path) -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let mut config = config(dir);
    config.scoring.sweep_interval_ms = 20;
    let server = TestServer::try_start(config, clock.clone()).await.unwrap();
    (server, clock)
}

#[tokio::test]
async fn an_inline_lead_is_scored_explained_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(dir.path()).await;
    let mut scoring = server.scoring().await;
    let request = pb::ScoreRequest {
        lead: Some(lead("web-form-1", Some("CTO"), Some("IT"), Some(640.0))),
        events: vec![at("", "e1", "demo_request", NOW_MS)],
        campaign: String::new(),
        explain: true,
    };
    let score = scoring.score(request).await.unwrap().into_inner().score.unwrap();
    // Fit 45 points (100 on its scale: every rule at its best), engagement 25 points (one
    // fresh demo request): 70 points.
    let (fit, engagement) = (scorer(&score, "fit"), scorer(&score, "engagement"));
    assert!(close(fit.score, 100.0) && close(fit.points, 45.0), "{score:?}");
    assert!(close(engagement.score, 25.0) && close(engagement.points, 25.0), "{score:?}");
    assert!(close(score.score, 70.0), "{score:?}");
    assert_eq!((score.band(), score.grade.as_str(), score.campaign.as_str()), (pb::Band::SalesReady, "A3", "default"));
    let parts: f64 = score.scorers.iter().map(|s| s.contribution).sum();
    assert!(close(parts, score.score), "{score:?}");
    for part in &score.scorers {
        let factors: f64 = part.top_factors.iter().map(|f| f.contribution).sum();
        assert!(close(factors, part.points), "{part:?}");
    }
    let fit = scorer(&score, "fit");
    assert_eq!(fit.top_factors.len(), 3);
    assert!(fit.top_factors.iter().any(|f| f.detail == "CTO (C-level)"), "{fit:?}");

    let mut leads = server.leads().await;
    let status = leads.get_lead(pb::GetLeadRequest { id: "web-form-1".into(), ..Default::default() }).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn bad_scoring_requests_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(dir.path()).await;
    let mut scoring = server.scoring().await;
    let cases = [
        (pb::ScoreRequest::default(), "lead: is required"),
        (
            pb::ScoreRequest {
                lead: Some(lead("a", None, None, None)),
                campaign: "autumn".into(),
                ..Default::default()
            },
            "campaign: unknown campaign \"autumn\"",
        ),
        (
            pb::ScoreRequest {
                lead: Some(lead("a", None, None, None)),
                events: vec![at("b", "e1", "email_open", NOW_MS)],
                ..Default::default()
            },
            "events[0].lead_id: must be empty or \"a\"",
        ),
    ];
    for (request, message) in cases {
        let status = scoring.score(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(message), "{}", status.message());
    }
    let batch = pb::ScoreBatchRequest {
        requests: vec![
            pb::ScoreRequest { lead: Some(lead("a", None, None, None)), ..Default::default() },
            pb::ScoreRequest { lead: Some(lead("", None, None, None)), ..Default::default() },
        ],
    };
    let status = scoring.score_batch(batch).await.unwrap_err();
    assert!(status.message().starts_with("requests[1].lead.id: must be 1-128 bytes"), "{}", status.message());
    let batch = pb::ScoreBatchRequest {
        requests: vec![
            pb::ScoreRequest { lead: Some(lead("a", None, None, None)), ..Default::default() },
            pb::ScoreRequest {
                lead: Some(lead("b", None, None, None)),
                campaign: "autumn".into(),
                ..Default::default()
            },
        ],
    };
    let status = scoring.score_batch(batch).await.unwrap_err();
    assert!(status.message().starts_with("requests[1].campaign: unknown campaign \"autumn\""), "{status:?}");
    let watch = pb::WatchScoresRequest { campaign: "autumn".into(), ..Default::default() };
    assert_eq!(scoring.watch_scores(watch).await.unwrap_err().code(), Code::InvalidArgument);
    let watch = pb::WatchScoresRequest { bands: vec![0], ..Default::default() };
    let status = scoring.watch_scores(watch).await.unwrap_err();
    assert!(status.message().starts_with("bands[0]: must be a band other than BAND_UNSPECIFIED"), "{status:?}");
    let status = scoring.top_leads(pb::TopLeadsRequest::default()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "limit: must be 1-10000, got 0"));
    let status = scoring.explain(pb::ExplainRequest { lead_id: "ghost".into(), ..Default::default() }).await;
    assert_eq!(status.unwrap_err().code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_keeps_request_order_across_campaigns() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let mut config = config(dir.path());
    let fit_only =
        leadscore::config::CampaignConfig { weights: [("fit".to_string(), 1.0)].into(), ..Default::default() };
    config.campaigns.insert("fit-only".into(), fit_only);
    let server = TestServer::try_start(config, clock).await.unwrap();
    let request = |id: &str, campaign: &str, role| pb::ScoreRequest {
        lead: Some(lead(id, Some(role), None, None)),
        events: vec![at("", "e", "webinar_attended", NOW_MS)],
        campaign: campaign.into(),
        explain: false,
    };
    let requests = vec![
        request("a", "", "CTO"),
        request("b", "fit-only", "CTO"),
        request("c", "", "Project Manager"),
        request("d", "fit-only", "assistant"),
    ];
    let scores = server.scoring().await.score_batch(pb::ScoreBatchRequest { requests }).await.unwrap();
    let scores: Vec<(String, f64)> = scores.into_inner().scores.into_iter().map(|s| (s.lead_id, s.score)).collect();
    // Fit points plus the webinar's 20 in the default campaign; fit points alone in the other.
    let expected = [("a", 15.0 + 20.0), ("b", 15.0), ("c", 10.0 + 20.0), ("d", 0.0)];
    assert_eq!(scores.len(), 4);
    for ((id, score), (want_id, want)) in scores.iter().zip(expected) {
        assert_eq!(id, want_id);
        assert!(close(*score, want), "{id}: {score} != {want}");
    }
    server.stop().await;
}

#[tokio::test]
async fn stored_leads_are_ranked_filtered_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(dir.path()).await;
    let mut leads = server.leads().await;
    let roles = ["CTO", "Project Manager", "Director", "assistant", "intern"];
    let departments = ["IT", "finance", "marketing"];
    let batch: Vec<pb::Lead> = (0..60)
        .map(|i| {
            let employees = [12.0, 75.0, 250.0, 640.0, 5000.0][i % 5];
            lead(&format!("lead-{i:02}"), Some(roles[i / 12]), Some(departments[i % 3]), Some(employees))
        })
        .collect();
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: batch }).await.unwrap();
    let events: Vec<pb::Event> =
        (0..60).step_by(7).map(|i| at(&format!("lead-{i:02}"), &format!("e{i}"), "demo_request", NOW_MS)).collect();
    leads.record_events(pb::RecordEventsRequest { events }).await.unwrap();

    let mut scoring = server.scoring().await;
    let lister = scoring.clone();
    let top = |request: pb::TopLeadsRequest| {
        let mut scoring = lister.clone();
        async move {
            let stream = scoring.top_leads(request).await.unwrap().into_inner();
            stream.map(|ranked| ranked.unwrap()).collect::<Vec<_>>().await
        }
    };
    let ranked = top(pb::TopLeadsRequest { limit: 10, ..Default::default() }).await;
    assert_eq!(ranked.len(), 10);
    assert_eq!(ranked.iter().map(|r| r.rank).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    let scores: Vec<f64> = ranked.iter().map(|r| r.score.as_ref().unwrap().score).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // The best lead: a CTO in finance with 100-499 employees (35 fit points) and a demo request
    // (25 points); the CTO in IT with 500-999 employees has all 45 fit points but no event.
    let best = ranked[0].score.as_ref().unwrap();
    assert_eq!(best.lead_id, "lead-07");
    assert!(close(best.score, 35.0 + 25.0), "{best:?}");
    // A director in finance at 500-999 with a demo request ties; ties go by id. Then a CTO in
    // IT at 1-50 with a demo request (30 + 25).
    let next_ids: Vec<&str> = ranked[1..3].iter().map(|r| r.score.as_ref().unwrap().lead_id.as_str()).collect();
    assert_eq!(next_ids, ["lead-28", "lead-00"]);

    // Every lead is ranked; explaining any of them gives the score the ranking holds.
    let all = top(pb::TopLeadsRequest { limit: 10_000, ..Default::default() }).await;
    assert_eq!(all.len(), 60);
    for ranked in all.iter().step_by(9) {
        let held = ranked.score.as_ref().unwrap();
        let request =
            pb::ExplainRequest { contact_curve: false, lead_id: held.lead_id.clone(), campaign: String::new() };
        let explained = scoring.explain(request).await.unwrap().into_inner().score.unwrap();
        assert!(close(explained.score, held.score), "{explained:?} vs {held:?}");
        let parts: f64 = explained.scorers.iter().map(|s| s.contribution).sum();
        assert!(close(parts, explained.score));
        assert_eq!(explained.config_version, 0);
    }

    // Filters: a band, an attribute value and a numeric range all at once.
    let filtered = top(pb::TopLeadsRequest {
        limit: 100,
        bands: vec![pb::Band::Warm as i32],
        filters: vec![
            pb::AttributeFilter {
                attribute: "department".into(),
                r#match: Some(pb::attribute_filter::Match::Equals(text("it"))),
            },
            pb::AttributeFilter {
                attribute: "employees".into(),
                r#match: Some(pb::attribute_filter::Match::Range(pb::NumericRange { min: Some(100.0), max: None })),
            },
        ],
        ..Default::default()
    })
    .await;
    let expected: Vec<&pb::RankedLead> = all
        .iter()
        .filter(|r| {
            let score = r.score.as_ref().unwrap();
            let i: usize = score.lead_id[5..].parse().unwrap();
            score.band() == pb::Band::Warm && i.is_multiple_of(3) && i % 5 >= 2
        })
        .collect();
    assert!(!expected.is_empty());
    let ids = |ranked: &[&pb::RankedLead]| {
        ranked.iter().map(|r| r.score.as_ref().unwrap().lead_id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&filtered.iter().collect::<Vec<_>>()), ids(&expected));

    // An erased lead leaves the ranking.
    let first = ranked[0].score.as_ref().unwrap().lead_id.clone();
    leads.erase_lead(pb::EraseLeadRequest { id: first.clone() }).await.unwrap();
    let after = top(pb::TopLeadsRequest { limit: 10_000, ..Default::default() }).await;
    assert_eq!(after.len(), 59);
    assert!(after.iter().all(|r| r.score.as_ref().unwrap().lead_id != first));
    server.stop().await;
}

/// The next crossing of a watch: its lead, from and to.
async fn next(crossings: &mut leadscore_proto::tonic::Streaming<pb::BandCrossing>) -> (String, pb::Band, pb::Band) {
    let crossing = tokio::time::timeout(Duration::from_secs(10), crossings.next()).await.expect("a crossing in time");
    let crossing = crossing.unwrap().unwrap();
    (crossing.lead_id.clone(), crossing.from(), crossing.to())
}

#[tokio::test]
async fn band_crossings_are_announced_once_each_way() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(dir.path()).await;
    let mut scoring = server.scoring().await;
    let mut crossings = scoring.watch_scores(pb::WatchScoresRequest::default()).await.unwrap().into_inner();
    let mut leads = server.leads().await;

    // All 45 fit points alone: warm from the start.
    leads
        .upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("a", Some("CEO"), Some("IT"), Some(800.0))] })
        .await
        .unwrap();
    assert_eq!(next(&mut crossings).await, ("a".into(), pb::Band::Unspecified, pb::Band::Warm));

    // Two demo requests (50 points) make it hot; one more e-mail open keeps it hot.
    let record = |events: Vec<pb::Event>| {
        let mut leads = leads.clone();
        async move { leads.record_events(pb::RecordEventsRequest { events }).await.unwrap() }
    };
    record(vec![at("a", "d1", "demo_request", NOW_MS), at("a", "d2", "demo_request", NOW_MS)]).await;
    assert_eq!(next(&mut crossings).await, ("a".into(), pb::Band::Warm, pb::Band::Hot));
    record(vec![at("a", "o1", "email_open", NOW_MS)]).await;

    // Sixty days later the sweep sees the decay: 55 points are worth 13.75, less 10 for
    // silence, so the composite falls to 48.75 — warm again, announced once.
    clock.advance_ms(60 * DAY_MS);
    assert_eq!(next(&mut crossings).await, ("a".into(), pb::Band::Hot, pb::Band::Warm));

    // Rescoring "a" again (Explain records the fresh score) announces nothing: the next
    // crossing is a sentinel on another lead.
    let request = pb::ExplainRequest { contact_curve: false, lead_id: "a".into(), campaign: String::new() };
    let explained = scoring.explain(request).await.unwrap().into_inner().score.unwrap();
    assert!(close(explained.score, 45.0 + 55.0 / 4.0 - 10.0), "{explained:?}");
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("b", None, None, None)] }).await.unwrap();
    assert_eq!(next(&mut crossings).await, ("b".into(), pb::Band::Unspecified, pb::Band::Unqualified));

    // A watcher opened late (an alert list reloaded) first gets the latest crossings of its
    // bands, oldest first, then live ones, none twice.
    let late = pb::WatchScoresRequest { bands: vec![pb::Band::Hot.into()], recent: 5, ..Default::default() };
    let mut late = scoring.watch_scores(late).await.unwrap().into_inner();
    assert_eq!(next(&mut late).await, ("a".into(), pb::Band::Warm, pb::Band::Hot));
    assert_eq!(next(&mut late).await, ("a".into(), pb::Band::Hot, pb::Band::Warm));
    let now = NOW_MS + 60 * DAY_MS;
    let events = vec![at("a", "d3", "demo_request", now), at("a", "d4", "demo_request", now)];
    leads.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    assert_eq!(next(&mut late).await, ("a".into(), pb::Band::Warm, pb::Band::Hot));
    assert_eq!(next(&mut crossings).await, ("a".into(), pb::Band::Warm, pb::Band::Hot));
    // "a" is a new hot lead of today and of this week; "b" has no points at all.
    let distribution = |scoring: &pb::scoring_service_client::ScoringServiceClient<_>| {
        let mut scoring = scoring.clone();
        async move {
            let d = scoring.score_distribution(pb::ScoreDistributionRequest::default()).await.unwrap().into_inner();
            (d.without_points, d.new_hot_last_day, d.new_hot_last_week)
        }
    };
    assert_eq!(distribution(&scoring).await, (1, 1, 1));
    // Eight days on it is no longer new, whether it stayed hot or not.
    clock.advance_ms(8 * DAY_MS);
    assert_eq!(distribution(&scoring).await, (1, 0, 0));
    let too_many = pb::WatchScoresRequest { recent: 1001, ..Default::default() };
    let status = scoring.watch_scores(too_many).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("recent: at most 1000, got 1001"), "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_configuration_change_is_versioned_logged_and_rescores_every_lead() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(dir.path()).await;
    let mut leads = server.leads().await;
    let batch = vec![lead("a", Some("CTO"), Some("IT"), Some(640.0)), lead("b", Some("Director"), None, None)];
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: batch }).await.unwrap();
    let mut admin = server.admin().await;
    let current = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(current.version, 0);

    let scoring = server.scoring().await;
    let ranking = |scoring: &pb::scoring_service_client::ScoringServiceClient<_>| {
        let mut scoring = scoring.clone();
        async move {
            let ranked = scoring.top_leads(pb::TopLeadsRequest { limit: 10, ..Default::default() }).await.unwrap();
            let ranked: Vec<pb::LeadScore> = ranked.into_inner().map(|r| r.unwrap().score.unwrap()).collect().await;
            ranked.iter().map(|s| (s.lead_id.clone(), s.score, s.band(), s.config_version)).collect::<Vec<_>>()
        }
    };
    // Points: 45 for the CTO in IT at 640, 10 for the director.
    let points = [("a".into(), 45.0, pb::Band::Warm, 0), ("b".into(), 10.0, pb::Band::Unqualified, 0)];
    assert_eq!(ranking(&scoring).await, points);

    // The weighted mean of fit alone, and a stricter hot band.
    let mut next = Config::parse(&current.toml).unwrap();
    let default = next.campaigns.get_mut("default").unwrap();
    default.composition = leadscore::config::Composition::WeightedMean;
    default.weights = [("fit".to_string(), 1.0)].into();
    default.bands.hot = 90.0;
    let update = |toml: String, expected_version| pb::UpdateConfigRequest { toml, expected_version };
    let changed = admin.update_config(update(next.to_toml(), 0)).await.unwrap().into_inner();
    assert_eq!(changed.version, 1);

    // Every stored lead was rescored before the change was acknowledged.
    let mean = [("a".into(), 100.0, pb::Band::Hot, 1), ("b".into(), 100.0 * 10.0 / 45.0, pb::Band::Unqualified, 1)];
    assert_eq!(ranking(&scoring).await, mean);

    // Refused whole: a stale version, a section that needs a restart, a bad weight, and fit
    // settings the plugin rejects.
    let status = admin.update_config(update(next.to_toml(), 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let mut moved = next.clone();
    moved.server.listen = "127.0.0.1:1".into();
    let mut negative = next.clone();
    negative.campaigns.get_mut("default").unwrap().weights.insert("fit".into(), -1.0);
    let mut bad_rules = next.clone();
    let rules = "[[rules]]\nattribute = \"role\"\npoints = 5\n".parse::<toml::Table>().unwrap();
    bad_rules.scorers.insert("fit".into(), toml::Value::Table(rules));
    let cases = [
        (moved, "server: cannot change at run time; restart with the new value"),
        (negative, "campaigns.default.weights.fit: must be a finite number of at least 0, got -1"),
        (bad_rules, "scorer `fit` refused its configuration: rules[0]: give exactly one matcher"),
    ];
    for (config, message) in cases {
        let status = admin.update_config(update(config.to_toml(), 1)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(message), "{}", status.message());
    }
    let status = admin.update_config(update("[scoring]\nbatch_size = \"many\"".into(), 1)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner().version, 1);
    drop((leads, admin, scoring));
    server.stop().await;

    // The change survives a restart, from the log and then from a snapshot, over the file's
    // own runtime sections.
    for from_snapshot in [false, true] {
        let server = TestServer::try_start(config(dir.path()), clock.clone()).await.unwrap();
        let mut admin = server.admin().await;
        let got = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
        assert_eq!(got.version, 1);
        assert_eq!(Config::parse(&got.toml).unwrap().campaigns, next.campaigns);
        let stats = admin.stats(pb::StatsRequest {}).await.unwrap().into_inner();
        assert_eq!(stats.config_version, 1);
        let explained = server
            .scoring()
            .await
            .explain(pb::ExplainRequest { contact_curve: false, lead_id: "a".into(), campaign: String::new() })
            .await
            .unwrap()
            .into_inner()
            .score
            .unwrap();
        assert_eq!((explained.score, explained.config_version), (100.0, 1));
        if !from_snapshot {
            admin.snapshot(pb::SnapshotRequest {}).await.unwrap();
        }
        drop(admin);
        server.stop().await;
    }
}

#[tokio::test]
async fn the_distribution_counts_every_scored_lead_by_bin_band_and_grade() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start(dir.path()).await;
    let roles = [Some("CTO"), Some("VP Sales"), Some("Engineer"), None];
    let leads =
        (0..40).map(|n| lead(&format!("lead-{n}"), roles[n % 4], Some("IT"), Some(5.0 + 131.0 * n as f64))).collect();
    server.upsert(leads).await;
    let events =
        (0..40).filter(|n| n % 3 == 0).map(|n| at(&format!("lead-{n}"), "e", "demo_request", NOW_MS)).collect();
    server.leads().await.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    clock.advance_ms(1);
    let mut scoring = server.scoring().await;
    // The sweep rescores the leads a millisecond older, which may move one across a band's
    // threshold: the ranking read before the distribution and again after must agree.
    let reader = scoring.clone();
    let ranking = || {
        let mut scoring = reader.clone();
        async move {
            let stream = scoring.top_leads(pb::TopLeadsRequest { limit: 100, ..Default::default() }).await.unwrap();
            stream.into_inner().map(|r| r.unwrap().score.unwrap()).collect::<Vec<pb::LeadScore>>().await
        }
    };
    let (scored, d) = {
        let mut settled = None;
        for _ in 0..100 {
            let before = ranking().await;
            let d = scoring
                .score_distribution(pb::ScoreDistributionRequest { campaign: String::new(), bins: 10 })
                .await
                .unwrap()
                .into_inner();
            if ranking().await == before {
                settled = Some((before, d));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        settled.expect("the ranking held still for a distribution within 2 s")
    };
    assert_eq!(scored.len(), 40);

    assert_eq!((d.campaign.as_str(), d.leads, d.bins.len()), ("default", 40, 10));
    // Points have no ceiling: ten bins of a whole width up to the best score.
    let best = scored.iter().map(|s| s.score).fold(0.0, f64::max);
    let width = (best / 10.0).ceil();
    let mut expected = vec![[0u64; 4]; 10];
    for s in &scored {
        expected[((s.score / width) as usize).min(9)][s.band as usize - 1] += 1;
    }
    for (i, bin) in d.bins.iter().enumerate() {
        assert_eq!((bin.low, bin.high), (i as f64 * width, (i + 1) as f64 * width));
        assert_eq!(bin.by_band, expected[i], "bin {i}");
    }
    let by_band: Vec<u64> = (1..=4).map(|b| scored.iter().filter(|s| s.band == b).count() as u64).collect();
    assert_eq!(d.bands.iter().map(|b| (b.band, b.leads)).collect::<Vec<_>>(), (1..=4).zip(by_band).collect::<Vec<_>>());
    let mut grades: Vec<(String, u64)> = Vec::new();
    for s in &scored {
        match grades.iter_mut().find(|(g, _)| *g == s.grade) {
            Some((_, n)) => *n += 1,
            None => grades.push((s.grade.clone(), 1)),
        }
    }
    grades.sort();
    assert_eq!(d.grades.iter().map(|g| (g.grade.clone(), g.leads)).collect::<Vec<_>>(), grades);

    for (request, field) in [
        (pb::ScoreDistributionRequest { campaign: String::new(), bins: 1001 }, "bins"),
        (pb::ScoreDistributionRequest { campaign: "nope".into(), bins: 0 }, "campaign"),
    ] {
        let refused = scoring.score_distribution(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().starts_with(field), "{}", refused.message());
    }
    server.stop().await;
}

#[tokio::test]
async fn top_leads_explains_each_lead_when_asked_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start(dir.path()).await;
    let leads = (0..6).map(|n| lead(&format!("lead-{n}"), Some("CTO"), Some("IT"), Some(100.0 * n as f64))).collect();
    server.upsert(leads).await;
    let mut scoring = server.scoring().await;
    let mut top = async |explain| -> Vec<pb::LeadScore> {
        let request = pb::TopLeadsRequest { limit: 10, explain, ..Default::default() };
        let stream = scoring.top_leads(request).await.unwrap().into_inner();
        stream.map(|r| r.unwrap().score.unwrap()).collect().await
    };
    let (plain, explained) = (top(false).await, top(true).await);
    assert_eq!(plain.len(), 6);
    for (plain, explained) in plain.iter().zip(&explained) {
        assert_eq!((&plain.lead_id, plain.score, plain.band), (&explained.lead_id, explained.score, explained.band));
        assert!(plain.scorers.iter().all(|s| s.top_factors.is_empty()), "{plain:?}");
        let fit = scorer(explained, "fit");
        assert!(fit.top_factors.iter().any(|f| f.feature == "role"), "{explained:?}");
    }
    assert_eq!(top(false).await, plain, "explaining changed the ranking");
    server.stop().await;
}

#[tokio::test]
async fn each_listed_lead_says_who_it_is_by_the_campaigns_display_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let mut config = config(dir.path());
    let ordered = leadscore::config::CampaignConfig {
        display: vec!["company".into(), "name".into(), "employees".into()],
        ..Default::default()
    };
    config.campaigns.insert("ordered".into(), ordered);
    let server = TestServer::try_start(config, clock).await.unwrap();
    let mut named = pb::Lead {
        phone: "+16465550100".into(),
        owner: "team-east".into(),
        campaigns: vec!["default".into(), "ordered".into()],
        ..lead("ada", Some("CTO"), None, Some(919.0))
    };
    named.attributes.extend([("name".to_string(), text("Ada Lovelace")), ("company".to_string(), text("Acme"))]);
    let unnamed = pb::Lead { campaigns: vec!["default".into(), "ordered".into()], ..lead("plain", None, None, None) };
    server.leads().await.upsert_leads(pb::UpsertLeadsRequest { leads: vec![named, unnamed] }).await.unwrap();

    let scoring = server.scoring().await;
    let cards = |campaign: &str| {
        let request = pb::TopLeadsRequest { campaign: campaign.into(), limit: 10, ..Default::default() };
        let mut scoring = scoring.clone();
        async move {
            let ranked: Vec<pb::RankedLead> =
                scoring.top_leads(request).await.unwrap().into_inner().collect::<Result<_, _>>().await.unwrap();
            ranked.into_iter().map(|r| (r.score.unwrap().lead_id, r.card.unwrap())).collect::<Vec<_>>()
        }
    };
    let shown =
        |card: &pb::LeadCard| card.display.iter().map(|d| (d.name.clone(), d.value.clone())).collect::<Vec<_>>();
    let pairs = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
    // By default: name, company and title, those the lead has, in that order.
    let default = cards("").await;
    let (_, ada) = default.iter().find(|(id, _)| id == "ada").unwrap();
    assert_eq!(shown(ada), pairs(&[("name", "Ada Lovelace"), ("company", "Acme")]));
    assert_eq!((ada.phone.as_str(), ada.owner.as_str()), ("+16465550100", "team-east"));
    let (_, plain) = default.iter().find(|(id, _)| id == "plain").unwrap();
    assert!(plain.display.is_empty(), "{plain:?}");
    // A campaign's own list, in its order; a number reads as written.
    let ordered = cards("ordered").await;
    let (_, ada) = ordered.iter().find(|(id, _)| id == "ada").unwrap();
    assert_eq!(shown(ada), pairs(&[("company", "Acme"), ("name", "Ada Lovelace"), ("employees", "919")]));

    // A search finds a lead by its id or a display attribute of the campaign, ignoring case.
    let search = |campaign: &str, text: &str| {
        let request =
            pb::TopLeadsRequest { campaign: campaign.into(), limit: 10, search: text.into(), ..Default::default() };
        let mut scoring = scoring.clone();
        async move {
            let found = scoring.top_leads(request).await?.into_inner().collect::<Result<Vec<_>, _>>().await?;
            Ok::<_, Status>(found.into_iter().map(|r| r.score.unwrap().lead_id).collect::<Vec<_>>())
        }
    };
    assert_eq!(search("", "lovelace").await.unwrap(), ["ada"]);
    assert_eq!(search("", "ACME").await.unwrap(), ["ada"]);
    assert_eq!(search("", "PLA").await.unwrap(), ["plain"]);
    // "919" is a display attribute of the ordered campaign only.
    assert!(search("", "919").await.unwrap().is_empty());
    assert_eq!(search("ordered", "919").await.unwrap(), ["ada"]);
    let status = search("", &"x".repeat(101)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("search: must be at most 100 bytes"), "{status:?}");

    // A routing decision says who the lead is too.
    let mut routing = server.routing().await;
    let decision = routing.route(pb::RouteRequest { lead_id: "ada".into(), campaign: String::new() }).await.unwrap();
    let card = decision.into_inner().decision.unwrap().card.unwrap();
    assert_eq!(shown(&card), pairs(&[("name", "Ada Lovelace"), ("company", "Acme")]));

    // A display list that names an attribute twice is refused, naming the key.
    let mut admin = server.admin().await;
    let mut toml = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner().toml;
    toml.push_str("\n[campaigns.twice]\ndisplay = [\"name\", \"name\"]\n");
    let status = admin.update_config(pb::UpdateConfigRequest { toml, expected_version: 0 }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("campaigns.twice.display"), "{status:?}");
    server.stop().await;
}
