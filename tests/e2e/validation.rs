//! Live validation on a simulated floor: leads in each band convert at known rates; agents
//! claim every lead through NextLead and report the outcome drawn for it. ValidationReport must
//! find the rates, the lift and the ROC AUC within sampling error, per configuration version,
//! with a shadow configuration measured beside the live one and never dialled by; and it must
//! hold across a restart (claims in the snapshot and in the log).

use leadscore::config::{Config, ShadowConfig};
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, event, number, text, timestamp};
use pb::next_lead_response::Result as Next;
use rand::{Rng, SeedableRng};

/// Monday 2026-11-02 15:00 UTC: 10:00 in New York, inside the calling window.
const NOW_MS: i64 = 1_793_631_600_000;
const PER_BAND: u32 = 400;
/// Each band's true conversion rate: unqualified, warm, sales-ready, hot.
const RATES: [f64; 4] = [0.05, 0.15, 0.30, 0.50];

/// Lead `n` of band `b`: a sales director (10 points, unqualified) or a CTO in IT at 640 people
/// (45, warm), with a pricing view (60, sales-ready) and a webinar (80, hot).
fn lead(b: usize, n: u32) -> (pb::Lead, Vec<pb::Event>) {
    let id = format!("b{b}-{n:04}");
    let mut attributes = std::collections::BTreeMap::from([("role".to_string(), text("Sales Director"))]);
    if b > 0 {
        attributes.insert("role".into(), text("CTO"));
        attributes.insert("department".into(), text("IT"));
        attributes.insert("employees".into(), number(640.0));
    }
    let kinds: &[&str] = [&[][..], &[], &["page_view:/pricing"], &["page_view:/pricing", "webinar_attended"]][b];
    let events = kinds
        .iter()
        .map(|kind| pb::Event { at: Some(timestamp(NOW_MS / 1000)), ..event(&id, &format!("{id}-{kind}"), kind) })
        .collect();
    let lead = pb::Lead {
        id,
        attributes,
        time_zone: "America/New_York".into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: format!("+1646{:07}", b as u32 * 10_000 + n),
        ..Default::default()
    };
    (lead, events)
}

async fn report(server: &TestServer) -> pb::ValidationReportResponse {
    let request = pb::ValidationReportRequest { campaign: String::new() };
    server.admin().await.validation_report(request).await.unwrap().into_inner()
}

/// Claims up to `count` leads, reporting each as converted with its band's true rate; returns
/// each claim's lead id, live score and whether it converted.
async fn work(server: &TestServer, count: usize, rng: &mut rand::rngs::StdRng) -> Vec<(String, f64, bool)> {
    let mut dialer = server.dialer().await;
    let mut done = Vec::new();
    while done.len() < count {
        let request = pb::NextLeadRequest { campaign: String::new(), agent_id: "agent-1".into() };
        let Some(Next::Claim(claim)) = dialer.next_lead(request).await.unwrap().into_inner().result else { break };
        let lease = claim.lease.unwrap();
        let band = lease.lead_id[1..2].parse::<usize>().unwrap();
        let converted = rng.random_bool(RATES[band]);
        let result = if converted { pb::CallResult::Converted } else { pb::CallResult::Lost };
        let outcome = pb::Outcome { lease_id: lease.lease_id, result: result.into(), ..Default::default() };
        dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.unwrap();
        done.push((lease.lead_id, claim.score.unwrap().score, converted));
    }
    done
}

/// The ROC AUC of scores against outcomes, ties counting half, by counting pairs.
fn auc(observed: &[(f64, bool)]) -> f64 {
    let (mut above, mut pairs) = (0.0, 0.0);
    for (p, _) in observed.iter().filter(|o| o.1) {
        for (n, _) in observed.iter().filter(|o| !o.1) {
            pairs += 1.0;
            above += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    above / pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_finds_each_bands_rate_the_lift_and_the_auc_beside_a_shadow_that_dials_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    // The shadow weighs fit alone: it cannot tell warm, sales-ready and hot leads apart.
    let shadow = ShadowConfig { weights: [("fit".to_string(), 1.0)].into(), ..Default::default() };
    config.campaigns.get_mut("default").unwrap().shadow = Some(shadow);
    let (server, _clock) = TestServer::start_at(config.clone(), NOW_MS).await;
    let (leads, events): (Vec<_>, Vec<_>) = (0..4).flat_map(|b| (0..PER_BAND).map(move |n| lead(b, n))).unzip();
    server.upsert(leads).await;
    let events = events.into_iter().flatten().collect();
    server.leads().await.record_events(pb::RecordEventsRequest { events }).await.unwrap();

    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let total = 4 * PER_BAND as usize;
    let mut claims = work(&server, total / 2, &mut rng).await;
    // A configuration version in the middle: the later claims are measured apart.
    let mut admin = server.admin().await;
    let current = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
    let mut next = Config::parse(&current.toml).unwrap();
    next.campaigns.get_mut("default").unwrap().bands.hot = 79.0;
    let request = pb::UpdateConfigRequest { toml: next.to_toml(), expected_version: current.version };
    admin.update_config(request).await.unwrap();
    admin.snapshot(pb::SnapshotRequest {}).await.unwrap();
    claims.extend(work(&server, total, &mut rng).await);
    assert_eq!(claims.len(), total, "every lead was claimed once");

    // The shadow changed no claim: leads came best live score first, which the shadow's
    // ranking (CTOs alike, by id) is not.
    assert!(claims.windows(2).all(|w| w[0].1 >= w[1].1), "claims follow the live ranking");

    let before = report(&server).await;
    let versions: Vec<(u64, bool)> = before.sections.iter().map(|s| (s.config_version, s.shadow)).collect();
    let (v1, v2) = (versions[0].0, versions[2].0);
    assert_eq!(versions, [(v1, false), (v1, true), (v2, false), (v2, true)]);
    let leads_in = |i: usize| before.sections[i].all.as_ref().unwrap().leads as usize;
    assert_eq!(leads_in(0) + leads_in(2), total);
    assert_eq!((leads_in(1), leads_in(3)), (leads_in(0), leads_in(2)), "the shadow scores the same leads");

    // Rates per band over both versions, within four standard errors of the truth.
    let live: Vec<&pb::ValidationSection> = before.sections.iter().filter(|s| !s.shadow).collect();
    for (b, rate) in RATES.iter().enumerate() {
        let (leads, conversions) = live.iter().fold((0, 0), |(l, c), s| {
            let bucket = s.bands[b].bucket.as_ref().unwrap();
            (l + bucket.leads, c + bucket.conversions)
        });
        assert_eq!(leads, u64::from(PER_BAND), "band {b}");
        let observed = conversions as f64 / leads as f64;
        let error = (rate * (1.0 - rate) / leads as f64).sqrt();
        assert!((observed - rate).abs() < 4.0 * error, "band {b}: {observed} against {rate}");
    }

    // The first version's claims were the best half: hot and sales-ready leads. Its AUC is the
    // one the reported outcomes give, and near what the true rates imply.
    let first = live[0];
    let observed: Vec<(f64, bool)> = claims[..leads_in(0)].iter().map(|(_, score, c)| (*score, *c)).collect();
    let exact = auc(&observed);
    assert!((first.roc_auc.unwrap() - exact).abs() < 1e-9, "{:?} against {exact}", first.roc_auc);
    let (p, q) = (RATES[3] * 400.0, RATES[2] * 400.0);
    let truth = (p * (400.0 - q) + 0.5 * (p * (400.0 - p) + q * (400.0 - q))) / ((p + q) * (800.0 - p - q));
    assert!((exact - truth).abs() < 0.05, "AUC {exact} against {truth}");
    // The top decile is hot leads: lift is their rate over the average.
    let all = first.all.as_ref().unwrap();
    let lift = first.top_decile_lift.unwrap();
    assert!((first.deciles[0].conversion_rate / all.conversion_rate - lift).abs() < 1e-9);
    assert!((lift - RATES[3] / ((RATES[2] + RATES[3]) / 2.0)).abs() < 0.4, "lift {lift}");
    // The fit-only shadow ranks the same leads worse.
    assert!(before.sections[1].roc_auc.unwrap() < first.roc_auc.unwrap());
    assert_eq!(before.sections[1].bands[1].bucket.as_ref().unwrap().leads, all.leads, "the shadow finds them warm");

    // The same report after a restart, from the snapshot and the log after it.
    server.stop().await;
    let (server, _clock) = TestServer::start_at(config, NOW_MS).await;
    assert_eq!(report(&server).await, before);
    let request = pb::ValidationReportRequest { campaign: "nope".into() };
    let refused = server.admin().await.validation_report(request).await.unwrap_err();
    assert_eq!(refused.code(), leadscore_proto::tonic::Code::InvalidArgument);
    assert!(refused.message().starts_with("campaign"), "{}", refused.message());
    let rendered = leadscore::report::render(&before);
    assert!(rendered.contains("(shadow)") && rendered.contains("ROC AUC"), "{rendered}");
    server.stop().await;
}
