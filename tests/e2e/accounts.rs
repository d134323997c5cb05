//! Account scores through gRPC: roll-ups of the leads that name an account, kept current under
//! upserts, events, account changes, configuration changes and erasure; `TopAccounts`; the
//! account in `Explain`; and `account.score` in a campaign filter and a routing condition.

use leadscore::config::{ConditionConfig, Rollup, RoutingRuleConfig};
use leadscore_proto::tonic::Code;
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, config, event, number, text};
use pb::next_lead_response::Result as Next;
use tokio_stream::StreamExt;

/// Monday 2026-11-02 15:00 UTC: 10:00 in New York, inside the calling window.
const NOW_MS: i64 = 1_793_631_600_000;

/// A callable New York lead of an account (none if empty): a CTO in IT at 640 people has 45 fit
/// points, a sales director 10.
fn lead(id: &str, n: u32, account: &str, cto: bool) -> pb::Lead {
    let mut attributes =
        std::collections::BTreeMap::from([("role".to_string(), text(if cto { "CTO" } else { "Sales Director" }))]);
    if cto {
        attributes.insert("department".into(), text("IT"));
        attributes.insert("employees".into(), number(640.0));
    }
    if !account.is_empty() {
        attributes.insert("account".into(), text(account));
    }
    pb::Lead {
        id: id.into(),
        attributes,
        time_zone: "America/New_York".into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        phone: format!("+1646{n:07}"),
        ..Default::default()
    }
}

async fn record(server: &TestServer, lead_id: &str, id: &str, kind: &str) {
    let events = vec![pb::Event { at: Some(leadscore_tests::timestamp(NOW_MS / 1000)), ..event(lead_id, id, kind) }];
    server.leads().await.record_events(pb::RecordEventsRequest { events }).await.unwrap();
}

/// An account as `TopAccounts` streams it: name, score, lead count and best leads.
type Ranked = (String, f64, u32, Vec<(String, f64)>);

/// The default campaign's accounts, best first.
async fn accounts(server: &TestServer) -> Vec<Ranked> {
    let request = pb::TopAccountsRequest { campaign: String::new(), limit: 100, leads_per_account: 5 };
    let stream = server.scoring().await.top_accounts(request).await.unwrap().into_inner();
    let ranked: Vec<pb::RankedAccount> = stream.map(|r| r.unwrap()).collect().await;
    for (i, ranked) in ranked.iter().enumerate() {
        assert_eq!(ranked.rank as usize, i + 1);
    }
    ranked
        .into_iter()
        .map(|r| r.account.unwrap())
        .map(|a| {
            let leads = a.top_leads.iter().map(|l| (l.lead_id.clone(), l.score)).collect();
            (a.account, a.score, a.leads, leads)
        })
        .collect()
}

fn scores(accounts: &[Ranked]) -> Vec<(&str, f64)> {
    accounts.iter().map(|(name, score, ..)| (name.as_str(), *score)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_scores_roll_up_their_leads_and_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = TestServer::start_at(config(dir.path()), NOW_MS).await;
    server
        .upsert(vec![
            lead("cto-acme", 1, " Acme.COM ", true),
            lead("director-acme", 2, "acme.com", false),
            lead("director-globex", 3, "globex.com", false),
            lead("loner", 4, "", true),
        ])
        .await;
    record(&server, "director-globex", "e1", "demo_request").await;

    // The default roll-up is the best lead's score; a lead naming no account is in none.
    let found = accounts(&server).await;
    assert_eq!(scores(&found), [("acme.com", 45.0), ("globex.com", 35.0)]);
    assert_eq!(found[0].2, 2);
    assert_eq!(found[0].3, [("cto-acme".to_string(), 45.0), ("director-acme".to_string(), 10.0)]);

    // Explain shows the lead's account.
    let request =
        pb::ExplainRequest { contact_curve: false, lead_id: "director-globex".into(), campaign: String::new() };
    let explained = server.scoring().await.explain(request).await.unwrap().into_inner().score.unwrap();
    let account = explained.account.expect("the lead's account");
    assert_eq!((account.account.as_str(), account.score, account.band()), ("globex.com", 35.0, pb::Band::Warm));
    let request = pb::ExplainRequest { contact_curve: false, lead_id: "loner".into(), campaign: String::new() };
    let explained = server.scoring().await.explain(request).await.unwrap().into_inner().score.unwrap();
    assert_eq!(explained.account, None);

    // A sum, through UpdateConfig.
    server.reconfigure(|c| c.campaigns.get_mut("default").unwrap().account.rollup = Rollup::Sum).await;
    assert_eq!(scores(&accounts(&server).await), [("acme.com", 55.0), ("globex.com", 35.0)]);
    // TopLeads filters on the account's score as on an attribute.
    let range = pb::NumericRange { min: Some(50.0), max: None };
    let filter = pb::AttributeFilter {
        attribute: "account.score".into(),
        r#match: Some(pb::attribute_filter::Match::Range(range)),
    };
    let request = pb::TopLeadsRequest { limit: 10, filters: vec![filter], ..Default::default() };
    let stream = server.scoring().await.top_leads(request).await.unwrap().into_inner();
    let ranked: Vec<String> = stream.map(|r| r.unwrap().score.unwrap().lead_id).collect().await;
    assert_eq!(ranked, ["cto-acme", "director-acme"]);

    // A lead changing accounts leaves one and joins the other; an event moves its new account.
    server.upsert(vec![lead("director-acme", 2, "globex.com", false)]).await;
    assert_eq!(scores(&accounts(&server).await), [("acme.com", 45.0), ("globex.com", 45.0)]);
    record(&server, "director-globex", "e2", "page_view:/pricing").await;
    assert_eq!(scores(&accounts(&server).await), [("globex.com", 60.0), ("acme.com", 45.0)]);

    // The mean of the best two plus half the best fit (10 fit points for a director).
    server
        .reconfigure(|c| {
            let account = &mut c.campaigns.get_mut("default").unwrap().account;
            (account.rollup, account.top, account.fit) = (Rollup::TopMean, 2, 0.5);
        })
        .await;
    assert_eq!(scores(&accounts(&server).await), [("acme.com", 45.0 + 22.5), ("globex.com", 30.0 + 5.0)]);

    // Erasing an account's last lead removes the account.
    let mut leads = server.leads().await;
    leads.erase_lead(pb::EraseLeadRequest { id: "cto-acme".into() }).await.unwrap();
    assert_eq!(scores(&accounts(&server).await), [("globex.com", 35.0)]);

    let mut scoring = server.scoring().await;
    for (request, field) in [
        (pb::TopAccountsRequest { limit: 0, ..Default::default() }, "limit"),
        (pb::TopAccountsRequest { limit: 5, leads_per_account: 101, ..Default::default() }, "leads_per_account"),
        (pb::TopAccountsRequest { limit: 5, campaign: "nope".into(), ..Default::default() }, "campaign"),
    ] {
        let Err(status) = scoring.top_accounts(request).await else { panic!("{field}: accepted") };
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_filters_and_routing_conditions_read_the_account_score() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let condition = ConditionConfig { name: "account.score".into(), min: Some(50.0), ..Default::default() };
    config.campaigns.get_mut("default").unwrap().filter.attributes.push(condition);
    let rule = |name: &str, when: &str| RoutingRuleConfig {
        name: name.into(),
        when: when.into(),
        queue: name.into(),
        agents: String::new(),
        priority: 1,
        timeout: String::new(),
    };
    config.routing.rules = vec![rule("enterprise", "account.score >= 50"), rule("general", "score >= 0")];
    let (server, _clock) = TestServer::start_at(config, NOW_MS).await;
    server
        .upsert(vec![
            lead("acme-cto", 1, "acme.com", true),
            lead("acme-director", 2, "acme.com", false),
            lead("globex-director", 3, "globex.com", false),
            lead("loner", 4, "", true),
        ])
        .await;
    let mut dialer = server.dialer().await;
    let mut next = async || {
        let request = pb::NextLeadRequest { campaign: String::new(), agent_id: "agent-1".into() };
        match dialer.next_lead(request).await.unwrap().into_inner().result {
            Some(Next::Claim(claim)) => Some(claim.lease.unwrap().lead_id),
            _ => None,
        }
    };
    // acme.com scores 45: no account reaches 50, so the filter admits nobody.
    assert_eq!(next().await, None);

    // A pricing view lifts acme.com to 60: both its leads become callable, the director too,
    // though its own score did not move.
    record(&server, "acme-cto", "e1", "page_view:/pricing").await;
    let mut claimed = vec![next().await.expect("a claim"), next().await.expect("a second claim")];
    claimed.sort();
    assert_eq!(claimed, ["acme-cto", "acme-director"]);
    assert_eq!(next().await, None);

    let mut routing = server.routing().await;
    for (lead, rule) in [("acme-director", "enterprise"), ("globex-director", "general"), ("loner", "general")] {
        let request = pb::RouteRequest { lead_id: lead.into(), campaign: String::new() };
        let decision = routing.route(request).await.unwrap().into_inner().decision.unwrap();
        assert_eq!(decision.rule, rule, "{lead}");
    }
    server.stop().await;
}
