//! Three `leadscore serve` nodes on three real NATS servers: every call answered through every
//! node, and gathered answers equal to a single node's on the same data.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leadscore::clock::{Clock, SystemClock};
use leadscore::config::{AccountConfig, Rollup};
use leadscore::store::{FsyncPolicy, Store, StoreOptions};
use leadscore_cluster::{ClusterStatus, Nats, StreamLog, StreamSettings, shard_of};
use leadscore_proto::tonic::Code;
use leadscore_proto::tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use leadscore_proto::v1 as pb;
use leadscore_tests::certs::Authority;
use leadscore_tests::nats::{NatsCluster, nats_server_binary};
use leadscore_tests::watched;
use leadscore_tests::{
    ChildServer, TestServer, binary, config, event, http_get, lead, number, profile_dir, text, timestamp,
    workspace_root, zone_at_noon,
};
use pb::admin_service_client::AdminServiceClient;
use pb::dialer_service_client::DialerServiceClient;
use pb::lead_service_client::LeadServiceClient;
use pb::scoring_service_client::ScoringServiceClient;

const SHARDS: u32 = 8;

/// One cluster at a time: six processes per test on two cores would slow each past its leases,
/// and tests picking free ports at once could pick the same.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Leases of 10 s: a node's shards are not taken from it when a loaded machine is slow to let
/// it renew. The kill and pause tests use 3 s, to see the takeover soon.
const LEASE_MS: u64 = 10_000;
const SHORT_LEASE_MS: u64 = 3_000;

/// A node's configuration file: its name, the NATS servers, 8 shards, a 3 s lease.
fn node_config(dir: &Path, name: &str, nats: &[String], lease_ms: u64) -> std::path::PathBuf {
    let urls = nats.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = {data:?}\n[plugins]\ndir = {plugins:?}\n\
         [metrics]\nlisten = \"\"\n[console]\nlisten = \"\"\n\
         [cluster]\nnats = [{urls}]\nnode = {name:?}\nshards = {SHARDS}\nlease_ms = {lease_ms}\n",
        data = dir.join(name).display().to_string(),
        plugins = profile_dir().display().to_string(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn start_node(dir: &Path, name: &str, nats: &[String], lease_ms: u64) -> ChildServer {
    let config = node_config(dir, name, nats, lease_ms);
    let env = [("LEADSCORE_METRICS_LISTEN", ""), ("LEADSCORE_CONSOLE_LISTEN", "")];
    ChildServer::start_with_env(dir, &["--config", config.to_str().unwrap()], &env).expect("the node starts")
}

/// Waits until the shards are settled over `nodes` nodes: every shard owned, each node holding
/// its fair share (ceil(shards / nodes) at most), and no owner changed for a round and more.
/// Until then shards move, and a call may meet one moving (`UNAVAILABLE`, retried by clients).
fn wait_spread(nats: &Nats, nodes: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fair = (SHARDS as usize).div_ceil(nodes);
    let mut settled: Option<(Vec<Option<String>>, Instant)> = None;
    loop {
        // A read NATS did not answer in time (a loaded machine, leaders being elected) is
        // read again, within the same deadline.
        let status = match ClusterStatus::read(nats, Duration::from_millis(LEASE_MS)) {
            Ok(status) => status,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reading the cluster's status: {e}; reading again");
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            Err(e) => panic!("the cluster's status could not be read within 60 s: {e}"),
        };
        let owners: Option<Vec<Option<String>>> =
            status.as_ref().map(|s| s.shards.iter().map(|s| s.owner.clone()).collect());
        let fair_now = owners.as_ref().is_some_and(|owners| {
            let mut held = std::collections::BTreeMap::<&str, usize>::new();
            for owner in owners {
                let Some(owner) = owner else { return false };
                *held.entry(owner).or_default() += 1;
            }
            held.len() == nodes && held.values().all(|&n| n <= fair)
        });
        match (&settled, fair_now) {
            (Some((seen, since)), true) if Some(seen) == owners.as_ref() => {
                if since.elapsed() >= Duration::from_millis(LEASE_MS / 3 + 1_000) {
                    return;
                }
            }
            (_, true) => settled = owners.map(|owners| (owners, Instant::now())),
            (_, false) => settled = None,
        }
        assert!(Instant::now() < deadline, "shards not settled over {nodes} nodes within 60 s: {status:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 120 leads of varied fit, a quarter with behaviour at fixed times.
fn leads() -> (Vec<pb::Lead>, Vec<pb::Event>) {
    let roles = ["CTO", "VP Sales", "Engineer", "Intern"];
    let leads = (0..120)
        .map(|i| {
            let mut lead = lead(&format!("lead-{i:03}"));
            lead.attributes.insert("role".into(), text(roles[i % roles.len()]));
            lead.attributes.insert("employees".into(), number([5.0, 60.0, 640.0, 5000.0][i / 4 % 4]));
            // Seven accounts, each with leads on most shards.
            lead.attributes.insert("account".into(), text(&format!("company-{}.com", i % 7)));
            lead
        })
        .collect();
    let an_hour_ago =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 3600;
    let events = (0..120)
        .step_by(4)
        .flat_map(|i| {
            let id = format!("lead-{i:03}");
            let mut demo = event(&id, &format!("demo-{i}"), "demo_request");
            demo.at = Some(timestamp(an_hour_ago));
            let mut pricing = event(&id, &format!("pricing-{i}"), "page_view:/pricing");
            pricing.at = Some(timestamp(an_hour_ago + i as i64));
            [demo, pricing]
        })
        .collect();
    (leads, events)
}

/// Waits until a ranking gathered through `channel` has every shard's part: every shard's
/// owner has replayed it and serves it.
async fn wait_serving(channel: Channel) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = pb::TopLeadsRequest { campaign: "default".into(), limit: 1, ..Default::default() };
        match ScoringServiceClient::new(channel.clone()).top_leads(request).await {
            Ok(_) => return,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the cluster does not serve every shard within 60 s: {e}"),
        }
    }
}

async fn top(channel: Channel, limit: u32) -> Vec<(String, f64, u32)> {
    let request = pb::TopLeadsRequest { campaign: "default".into(), limit, ..Default::default() };
    let mut stream = ScoringServiceClient::new(channel).top_leads(request).await.unwrap().into_inner();
    let mut ranked = Vec::new();
    while let Some(lead) = stream.message().await.unwrap() {
        let score = lead.score.unwrap();
        ranked.push((score.lead_id, score.score, lead.rank));
    }
    ranked
}

/// The same ranking, scores equal to a microsecond's decay.
/// TopLeads' answer whole, less what differs between two servers given the same data at two
/// moments (when each lead was scored, the local time now), and apart, its numbers: behaviour
/// points decay between the two moments.
async fn listing(channel: Channel, request: &pb::TopLeadsRequest) -> (Vec<pb::RankedLead>, Vec<f64>) {
    let mut stream = ScoringServiceClient::new(channel).top_leads(request.clone()).await.unwrap().into_inner();
    let (mut listed, mut numbers) = (Vec::new(), Vec::new());
    while let Some(mut lead) = stream.message().await.unwrap() {
        if let Some(score) = lead.score.as_mut() {
            score.scored_at = None;
            numbers.push(std::mem::take(&mut score.score));
            for scorer in &mut score.scorers {
                numbers.extend([&mut scorer.score, &mut scorer.contribution, &mut scorer.points].map(std::mem::take));
                numbers.extend(scorer.top_factors.iter_mut().map(|f| std::mem::take(&mut f.contribution)));
            }
        }
        if let Some(dialing) = lead.dialing.as_mut() {
            dialing.local_time.clear();
            // A lead callable now is next callable at the instant each node was asked.
            if dialing.callable_now {
                dialing.next_callable_at = None;
            }
        }
        listed.push(lead);
    }
    (listed, numbers)
}

fn assert_same_ranking(cluster: &[(String, f64, u32)], single: &[(String, f64, u32)], through: &str) {
    assert_eq!(cluster.len(), single.len(), "through {through}");
    for (c, s) in cluster.iter().zip(single) {
        assert_eq!((&c.0, c.2), (&s.0, s.2), "through {through}: {cluster:?}\nsingle node: {single:?}");
        assert!((c.1 - s.1).abs() < 1e-3, "through {through}: {} scores {} here, {} on one node", c.0, c.1, s.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_answers_for_every_lead_and_rankings_match_a_single_node() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _nats, nodes, channels) = three_nodes(dir.path(), LEASE_MS).await;
    let (leads, events) = leads();

    // Written through one node, read through another: each lead lands on its shard's owner.
    let upserted = LeadServiceClient::new(channels[0].clone())
        .upsert_leads(pb::UpsertLeadsRequest { leads: leads.clone() })
        .await
        .unwrap();
    assert_eq!(upserted.get_ref().created, 120);
    let recorded = LeadServiceClient::new(channels[1].clone())
        .record_events(pb::RecordEventsRequest { events: events.clone() })
        .await
        .unwrap();
    assert_eq!((recorded.get_ref().recorded, recorded.get_ref().duplicates), (60, 0));
    for i in [0, 4, 5, 119] {
        let id = format!("lead-{i:03}");
        let got = LeadServiceClient::new(channels[2].clone())
            .get_lead(pb::GetLeadRequest { id: id.clone(), include_events: true })
            .await
            .unwrap_or_else(|e| panic!("{id} through node-c: {e}"))
            .into_inner();
        assert_eq!(got.lead.unwrap().id, id);
        assert_eq!(got.events.len(), if i % 4 == 0 { 2 } else { 0 }, "{id}'s events");
    }
    // A client that compresses and accepts gzip, as grpcio, grpc-js and grpc-go do by default,
    // reads through a node too: a forwarded call does not carry its compression on.
    let gzip = leadscore_proto::tonic::codec::CompressionEncoding::Gzip;
    let mut compressing = LeadServiceClient::new(channels[2].clone()).send_compressed(gzip).accept_compressed(gzip);
    for i in 0..20 {
        let id = format!("lead-{i:03}");
        let got = compressing.get_lead(pb::GetLeadRequest { id: id.clone(), include_events: false }).await;
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{id} with gzip through node-c: {e}")).into_inner().lead.unwrap().id,
            id
        );
    }
    let top_gzip = ScoringServiceClient::new(channels[1].clone()).send_compressed(gzip).accept_compressed(gzip);
    let request = pb::TopLeadsRequest { campaign: "default".into(), limit: 10, ..Default::default() };
    let mut ranked = top_gzip.clone().top_leads(request).await.expect("TopLeads with gzip through node-b").into_inner();
    let mut listed = 0;
    while ranked.message().await.expect("TopLeads with gzip through node-b").is_some() {
        listed += 1;
    }
    assert_eq!(listed, 10);

    // A bad field fails the whole batch before any shard is written, naming the field.
    let mut bad = vec![lead("fresh-1"), lead("fresh-2")];
    bad[1].time_zone = "Mars/Olympus".into();
    let refused = LeadServiceClient::new(channels[2].clone())
        .upsert_leads(pb::UpsertLeadsRequest { leads: bad })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("leads[1].time_zone"), "{}", refused.message());
    let fresh = LeadServiceClient::new(channels[0].clone())
        .get_lead(pb::GetLeadRequest { id: "fresh-1".into(), include_events: false })
        .await
        .unwrap_err();
    assert_eq!(fresh.code(), Code::NotFound, "the valid lead of a refused batch was stored");

    // The same data on one node.
    let single_dir = tempfile::tempdir().unwrap();
    let single = TestServer::try_start(config(single_dir.path()), Arc::new(SystemClock)).await.unwrap();
    single.upsert(leads).await;
    single.leads().await.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    let expected = top(single.channel().await, 50).await;
    assert_eq!(expected.len(), 50);
    for (channel, name) in channels.iter().zip(["node-a", "node-b", "node-c"]) {
        assert_same_ranking(&top(channel.clone(), 50).await, &expected, name);
        let explained = ScoringServiceClient::new(channel.clone())
            .explain(pb::ExplainRequest {
                contact_curve: false,
                lead_id: expected[0].0.clone(),
                campaign: "default".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!((explained.score.unwrap().score - expected[0].1).abs() < 1e-3, "Explain through {name}");
    }
    // Whole entries too (factors, where each stands with the dialer, who it is), for queries
    // that judge where leads stand: a node lists only the leads it answers with.
    let ctos = pb::AttributeFilter {
        attribute: "role".into(),
        r#match: Some(pb::attribute_filter::Match::Equals(text("CTO"))),
    };
    for (callable_now, exclude_finished, filters) in
        [(false, true, vec![]), (true, false, vec![]), (false, false, vec![ctos])]
    {
        let filtered = !filters.is_empty();
        let request = pb::TopLeadsRequest {
            campaign: "default".into(),
            limit: 30,
            explain: true,
            callable_now,
            exclude_finished,
            filters,
            bands: if filtered { vec![pb::Band::SalesReady.into()] } else { vec![] },
            ..Default::default()
        };
        let (expected, numbers) = listing(single.channel().await, &request).await;
        assert!(callable_now || expected.len() >= 10, "{expected:?}");
        for (channel, name) in channels.iter().zip(["node-a", "node-b", "node-c"]) {
            let (listed, theirs) = listing(channel.clone(), &request).await;
            assert!(listed == expected, "TopLeads {request:?} through {name}:\n{listed:#?}\nagainst\n{expected:#?}");
            let close = theirs.len() == numbers.len() && theirs.iter().zip(&numbers).all(|(a, b)| (a - b).abs() < 0.01);
            assert!(close, "TopLeads {request:?} through {name}: {theirs:?} against {numbers:?}");
        }
    }
    // Stats add up every shard's; what the shards share comes from any of them.
    let single_stats = single.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    for channel in &channels {
        let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
        let stats = admin.stats(pb::StatsRequest {}).await.unwrap().into_inner();
        assert_eq!((stats.leads, stats.events), (single_stats.leads, single_stats.events));
        assert_eq!((stats.leads, stats.events), (120, 60));
        let scorers = admin.list_scorers(pb::ListScorersRequest {}).await.unwrap().into_inner().scorers;
        let mut names: Vec<String> = scorers.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names, ["engagement", "fit"]);
        let config = admin.get_config(pb::GetConfigRequest {}).await.unwrap().into_inner();
        assert!(config.toml.contains("[cluster]"), "{}", config.toml);
    }

    // The distribution of scores, histogram and grades, equals a single node's: bins over
    // shards whose best scores differ add up over one top.
    for bins in [0, 7] {
        let asked = pb::ScoreDistributionRequest { campaign: String::new(), bins };
        let single_distribution = ScoringServiceClient::new(single.channel().await)
            .score_distribution(asked.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(single_distribution.leads, 120);
        for (channel, name) in channels.iter().zip(["node-a", "node-b", "node-c"]) {
            let distribution = ScoringServiceClient::new(channel.clone())
                .score_distribution(asked.clone())
                .await
                .unwrap()
                .into_inner();
            assert_eq!(distribution, single_distribution, "ScoreDistribution with {bins} bins through {name}");
        }
    }

    // Accounts whose leads lie on every shard rank as on one node: by the default roll-up (the
    // best lead's score), then by the mean of the best three plus half the best fit.
    let asked = pb::TopAccountsRequest { campaign: "default".into(), limit: 5, leads_per_account: 4 };
    for rollup in ["max", "top_mean"] {
        if rollup == "top_mean" {
            let running = running(&channels[0]).await;
            let mut table: toml::Table = running.toml.parse().unwrap();
            let account: toml::Table = "rollup = \"top_mean\"\ntop = 3\nfit = 0.5".parse().unwrap();
            table["campaigns"]["default"].as_table_mut().unwrap().insert("account".into(), account.into());
            let change =
                pb::UpdateConfigRequest { toml: toml::to_string(&table).unwrap(), expected_version: running.version };
            AdminServiceClient::new(channels[0].clone()).update_config(change).await.unwrap();
            let rule = AccountConfig { rollup: Rollup::TopMean, top: 3, fit: 0.5 };
            single.reconfigure(|config| config.campaigns.get_mut("default").unwrap().account = rule).await;
        }
        let expected = accounts(single.channel().await, &asked).await;
        assert_eq!(expected.len(), 5);
        assert!(expected.iter().all(|a| a.leads > 10 && a.top_leads.len() == 4), "{expected:?}");
        // A lead's account in Explain is the whole account too.
        let explain = pb::ExplainRequest { lead_id: "lead-003".into(), ..Default::default() };
        let explained = |channel: Channel| {
            let explain = explain.clone();
            async move {
                let explained = ScoringServiceClient::new(channel).explain(explain).await.unwrap().into_inner();
                explained.score.unwrap().account.unwrap()
            }
        };
        let single_account = explained(single.channel().await).await;
        assert_eq!(single_account.account, "company-3.com");
        for (channel, name) in channels.iter().zip(["node-a", "node-b", "node-c"]) {
            let gathered = accounts(channel.clone(), &asked).await;
            assert_same_accounts(&gathered, &expected, &format!("{rollup} through {name}"));
            let account = explained(channel.clone()).await;
            let through = format!("Explain's account by {rollup} through {name}");
            assert_same_accounts(&[account], std::slice::from_ref(&single_account), &through);
        }
    }

    // A watched list through a node is the merge of every shard's, kept current by diffs: it
    // is TopLeads through the node at the seq it says, before and after its best lead is erased
    // and a new lead rises into it, on shards served by any node.
    let watching = pb::TopLeadsRequest { campaign: "default".into(), limit: 10, ..Default::default() };
    let mut watcher = ScoringServiceClient::new(channels[1].clone());
    let copy = watched::watch(&mut watcher, watching.clone()).await;
    let listed = watched_is_top(&copy, &mut watcher, &watching).await;
    assert_eq!(listed[0].0, expected[0].0);

    // Erased through one node: gone through every node.
    LeadServiceClient::new(channels[1].clone())
        .erase_lead(pb::EraseLeadRequest { id: expected[0].0.clone() })
        .await
        .unwrap();
    for channel in &channels {
        let gone = LeadServiceClient::new(channel.clone())
            .get_lead(pb::GetLeadRequest { id: expected[0].0.clone(), include_events: false })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
        assert_ne!(top(channel.clone(), 1).await[0].0, expected[0].0);
    }
    let mut rising = lead("rising");
    rising.attributes.insert("role".into(), text("CTO"));
    rising.attributes.insert("employees".into(), number(640.0));
    let events = ["demo_request", "page_view:/pricing"].map(|kind| event("rising", &format!("rising-{kind}"), kind));
    let mut writer = LeadServiceClient::new(channels[2].clone());
    writer.upsert_leads(pb::UpsertLeadsRequest { leads: vec![rising] }).await.unwrap();
    writer.record_events(pb::RecordEventsRequest { events: events.to_vec() }).await.unwrap();
    let listed = watched_is_top(&copy, &mut watcher, &watching).await;
    assert!(listed.iter().all(|(id, _)| *id != expected[0].0), "the erased lead is still watched: {listed:?}");
    assert!(listed.iter().any(|(id, _)| id == "rising"), "the new lead did not enter: {listed:?}");
    assert_eq!(copy.lock().unwrap().snapshots, 1, "sent whole again rather than changed");
    // `leadscore import` through a node: each shard's rows go to its owner, and every bad row
    // is reported by its line, as on one node.
    let csv = dir.path().join("crm.csv");
    std::fs::write(
        &csv,
        "id,Role,Employees,Phone,Zone\n\
         c-1,CTO,640,+4930123456,Europe/Berlin\n\
         c-2,Director,120,,America/Chicago\n\
         c-3,Intern\n\
         c-4,Analyst,50,12345,Europe/Paris\n\
         c-5,Buyer,7,,Mars/Base\n\
         c-6,Head of Sales,1000,,\n",
    )
    .unwrap();
    let output = std::process::Command::new(binary())
        .args(["import", "--csv", csv.to_str().unwrap(), "--server", &nodes[1].address, "--id-column", "id"])
        .args(["--phone-column", "Phone", "--time-zone-column", "Zone", "--batch", "2"])
        .output()
        .unwrap();
    let output = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.contains("7 lines, 6 rows, 3 accepted, 3 rejected"), "{output}");
    for expected in [
        "line 4: c-3: row has 2 fields, the header has 5",
        "line 5: c-4: phone: \"12345\" has no country code",
        "line 6: c-5: lead.time_zone: unknown IANA time zone \"Mars/Base\"",
    ] {
        assert!(output.contains(expected), "{expected:?} missing from {output}");
    }
    for id in ["c-1", "c-2", "c-6"] {
        let got = LeadServiceClient::new(channels[2].clone())
            .get_lead(pb::GetLeadRequest { id: id.into(), include_events: false })
            .await
            .unwrap_or_else(|e| panic!("{id} imported through node-b, read through node-c: {e}"));
        assert_eq!(got.into_inner().lead.unwrap().id, id);
    }

    single.stop().await;
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
}

async fn accounts(channel: Channel, request: &pb::TopAccountsRequest) -> Vec<pb::AccountScore> {
    let mut stream = ScoringServiceClient::new(channel).top_accounts(request.clone()).await.unwrap().into_inner();
    let mut accounts = Vec::new();
    while let Some(ranked) = stream.message().await.unwrap() {
        assert_eq!(ranked.rank as usize, accounts.len() + 1);
        accounts.push(ranked.account.unwrap());
    }
    accounts
}

/// The same accounts in the same order with the same leads, scores equal to a microsecond's
/// decay.
fn assert_same_accounts(cluster: &[pb::AccountScore], single: &[pb::AccountScore], through: &str) {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-3;
    assert_eq!(cluster.len(), single.len(), "{through}");
    for (c, s) in cluster.iter().zip(single) {
        let ids = |account: &pb::AccountScore| account.top_leads.iter().map(|l| l.lead_id.clone()).collect::<Vec<_>>();
        let same = c.account == s.account && c.leads == s.leads && c.band == s.band && ids(c) == ids(s);
        assert!(same && close(c.score, s.score), "{through}: {cluster:#?}\nsingle node: {single:#?}");
        assert!(c.top_leads.iter().zip(&s.top_leads).all(|(c, s)| close(c.score, s.score) && c.band == s.band));
    }
}

/// Waits until the watched copy is `TopLeads` through the same node at one seq; gives it.
async fn watched_is_top(
    copy: &std::sync::Mutex<watched::Copy>,
    scoring: &mut ScoringServiceClient<Channel>,
    request: &pb::TopLeadsRequest,
) -> Vec<(String, f64)> {
    for _ in 0..20 {
        let (expected, seq) = watched::truth(scoring, request).await;
        assert_eq!(expected.len(), request.limit as usize);
        let (list, at) = watched::settled(copy, seq).await;
        if at == seq {
            assert_eq!(list, expected, "the watched list at {seq}");
            return list;
        }
        // The ranking changed between the two reads (a sweep): read both again.
    }
    panic!("the ranking never held still for a read: {:?}", copy.lock().unwrap());
}

/// Three nodes up, every shard served: the NATS servers, the nodes and a channel to each.
async fn three_nodes(dir: &Path, lease_ms: u64) -> (NatsCluster, Nats, Vec<ChildServer>, Vec<Channel>) {
    let cluster = tokio::task::spawn_blocking(|| NatsCluster::start(3)).await.unwrap();
    let urls = cluster.urls();
    let nodes: Vec<ChildServer> =
        ["node-a", "node-b", "node-c"].iter().map(|n| start_node(dir, n, &urls, lease_ms)).collect();
    let nats = tokio::task::spawn_blocking(move || {
        let nats = Nats::connect(&urls, "test").unwrap();
        wait_spread(&nats, 3);
        nats
    })
    .await
    .unwrap();
    let mut channels = Vec::new();
    for node in &nodes {
        let channel = Channel::from_shared(node.address.clone()).unwrap().connect().await.unwrap();
        wait_serving(channel.clone()).await;
        channels.push(channel);
    }
    (cluster, nats, nodes, channels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_every_node_get_the_best_leads_across_shards_each_exactly_once() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _nats, nodes, channels) = three_nodes(dir.path(), LEASE_MS).await;
    let zone = zone_at_noon();
    let leads: Vec<pb::Lead> = (0..40)
        .map(|i| {
            let mut lead = lead(&format!("dial-{i:02}"));
            lead.time_zone = zone.clone();
            lead.phone = format!("+1212555{i:04}");
            lead.attributes.insert("employees".into(), number(f64::from(i * 100)));
            lead
        })
        .collect();
    if let Err(e) = LeadServiceClient::new(channels[0].clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await {
        let logs: Vec<String> = nodes.iter().map(ChildServer::log_text).collect();
        panic!("{e}; the nodes' logs:\n{}", logs.join("\n"));
    }
    // One lead asked for a demo: the best of all, on whichever shard it is.
    let demo = event("dial-17", "demo", "demo_request");
    LeadServiceClient::new(channels[0].clone())
        .record_events(pb::RecordEventsRequest { events: vec![demo] })
        .await
        .unwrap();
    let ranked = top(channels[1].clone(), 40).await;
    assert!(ranked[0].0 == "dial-17" && ranked[0].1 > ranked[1].1, "{ranked:?}");

    // The first claim anywhere is the best lead of all shards.
    let first = DialerServiceClient::new(channels[2].clone())
        .next_lead(pb::NextLeadRequest { campaign: String::new(), agent_id: "agent-0".into() })
        .await
        .unwrap()
        .into_inner();
    let Some(pb::next_lead_response::Result::Claim(first)) = first.result else { panic!("no claim: {first:?}") };
    let best = first.score.as_ref().unwrap();
    assert_eq!(best.lead_id, "dial-17", "the first claim is not the best lead of all shards");

    // Six agents, two on each node, claim until nothing is left: each lead exactly once.
    let claimers = (0..6).map(|agent| {
        let mut dialer = DialerServiceClient::new(channels[agent % 3].clone());
        async move {
            let mut claims = Vec::new();
            loop {
                let request = pb::NextLeadRequest { campaign: String::new(), agent_id: format!("agent-{}", agent + 1) };
                let answer = dialer.next_lead(request).await.unwrap().into_inner();
                match answer.result {
                    Some(pb::next_lead_response::Result::Claim(claim)) => claims.push(claim),
                    _ => return (claims, answer),
                }
            }
        }
    });
    let finished = futures_util::future::join_all(claimers).await;
    let mut claimed: Vec<pb::Claim> = finished.iter().flat_map(|(claims, _)| claims.clone()).collect();
    claimed.push(first);
    let mut ids: Vec<String> = claimed.iter().map(|c| c.lead.as_ref().unwrap().id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), claimed.len()), (40, 40), "every lead claimed exactly once");
    let (_, dry) = &finished[0];
    let Some(pb::next_lead_response::Result::NoneEligible(why)) = &dry.result else { panic!("{dry:?}") };
    assert_eq!(why.leased, 40, "every shard's leased leads counted: {why:?}");

    // Outcomes go to each lead's shard, whichever node they are reported through.
    for (i, claim) in claimed.iter().enumerate() {
        let outcome = pb::Outcome {
            lease_id: claim.lease.as_ref().unwrap().lease_id.clone(),
            result: pb::CallResult::Converted.into(),
            ..Default::default()
        };
        DialerServiceClient::new(channels[(i + 1) % 3].clone())
            .report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) })
            .await
            .unwrap_or_else(|e| panic!("the outcome of {}: {e}", claim.lead.as_ref().unwrap().id));
    }
    let after = DialerServiceClient::new(channels[1].clone())
        .next_lead(pb::NextLeadRequest { campaign: String::new(), agent_id: "agent-1".into() })
        .await
        .unwrap()
        .into_inner();
    let Some(pb::next_lead_response::Result::NoneEligible(why)) = after.result else { panic!("{after:?}") };
    assert_eq!((why.finished, why.leased), (40, 0), "{why:?}");

    // The wallboard through any node adds up every shard's floor.
    for channel in &channels {
        let board = DialerServiceClient::new(channel.clone())
            .wallboard(pb::WallboardRequest { campaign: String::new(), minutes: 5 })
            .await
            .unwrap()
            .into_inner();
        let claims: u64 = board.minutes.iter().map(|m| m.claims).sum();
        let converted: u64 = board
            .minutes
            .iter()
            .map(|m| m.outcomes.get(pb::CallResult::Converted as usize - 1).copied().unwrap_or(0))
            .sum();
        assert_eq!((board.queued, board.callable), (40, 0), "{board:?}");
        assert_eq!(board.ineligible.as_ref().map(|i| i.finished), Some(40));
        assert_eq!((board.minutes.len(), claims, converted), (5, 40, 40), "{:?}", board.minutes);
        assert_eq!(board.zones.iter().map(|z| z.callable).sum::<u64>(), 0, "{:?}", board.zones);
    }
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
}

/// A lead the dialer may call now: its number, in a zone where it is noon.
fn callable(id: &str, phone: &str, zone: &str) -> pb::Lead {
    let mut lead = lead(id);
    lead.time_zone = zone.into();
    lead.phone = phone.into();
    lead
}

/// A lead id like `stem-N` on another shard than `other`.
fn on_another_shard(stem: &str, other: &str) -> String {
    (0..).map(|n| format!("{stem}-{n}")).find(|id| shard_of(id, SHARDS) != shard_of(other, SHARDS)).unwrap()
}

async fn claim(channel: &Channel, agent: &str) -> Option<pb::Claim> {
    let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.into() };
    match DialerServiceClient::new(channel.clone()).next_lead(request).await.unwrap().into_inner().result {
        Some(pb::next_lead_response::Result::Claim(claim)) => Some(claim),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_not_call_and_erasure_made_on_one_shard_hold_on_every_node_at_once() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _nats, nodes, channels) = three_nodes(dir.path(), LEASE_MS).await;
    let zone = zone_at_noon();
    let callable = |id: &str, phone: &str| callable(id, phone, &zone);
    // Two records of one person, on two shards, and others.
    let twin = on_another_shard("twin-b", "twin-a");
    let mut leads = vec![callable("twin-a", "+12125550100"), callable(&twin, "+12125550100")];
    leads.extend((0..6).map(|i| callable(&format!("other-{i}"), &format!("+1212555020{i}"))));
    LeadServiceClient::new(channels[0].clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();
    let demo = event("twin-a", "demo", "demo_request");
    LeadServiceClient::new(channels[0].clone())
        .record_events(pb::RecordEventsRequest { events: vec![demo] })
        .await
        .unwrap();

    // The person asks not to be called again, on twin-a's call through node-b.
    let first = claim(&channels[2], "agent-1").await.unwrap();
    assert_eq!(first.lead.as_ref().unwrap().id, "twin-a");
    let outcome = pb::Outcome {
        lease_id: first.lease.unwrap().lease_id,
        result: pb::CallResult::DoNotCall.into(),
        ..Default::default()
    };
    DialerServiceClient::new(channels[1].clone())
        .report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) })
        .await
        .unwrap();
    // From then on no node offers the other record, whatever shard it is on.
    let mut offered = Vec::new();
    for (i, channel) in channels.iter().cycle().take(30).enumerate() {
        match claim(channel, &format!("agent-{}", i % 4 + 2)).await {
            Some(claim) => offered.push(claim.lead.unwrap().id),
            None => continue,
        }
    }
    offered.sort();
    assert_eq!(offered, (0..6).map(|i| format!("other-{i}")).collect::<Vec<_>>(), "{twin} must not be offered");

    // An erased person is not taken back on another shard, through another node.
    let erased = callable("erased-1", "+12125550300");
    LeadServiceClient::new(channels[0].clone())
        .upsert_leads(pb::UpsertLeadsRequest { leads: vec![erased] })
        .await
        .unwrap();
    LeadServiceClient::new(channels[1].clone())
        .erase_lead(pb::EraseLeadRequest { id: "erased-1".into() })
        .await
        .unwrap();
    let again = callable(&on_another_shard("erased-again", "erased-1"), "+12125550300");
    let refused = LeadServiceClient::new(channels[2].clone())
        .upsert_leads(pb::UpsertLeadsRequest { leads: vec![again] })
        .await
        .unwrap_err();
    assert!(refused.message().contains("leads[0].phone"), "{refused:?}");
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
}

/// Whether a claimed lead converts: those scoring 10 or more. Leads of equal score convert
/// alike, so a decile cut between them counts the same whichever comes first (one node
/// orders them by claim, a cluster by shard).
fn converts(claim: &pb::Claim) -> bool {
    claim.score.as_ref().unwrap().score >= 10.0
}

/// Converted or no answer, as `converts` says.
fn outcome_of(claim: &pb::Claim) -> pb::ReportOutcomeRequest {
    let converted = converts(claim);
    let result = if converted { pb::CallResult::Converted } else { pb::CallResult::NoAnswer };
    let lease_id = claim.lease.as_ref().unwrap().lease_id.clone();
    pb::ReportOutcomeRequest { outcome: Some(pb::Outcome { lease_id, result: result.into(), ..Default::default() }) }
}

async fn running(channel: &Channel) -> pb::GetConfigResponse {
    AdminServiceClient::new(channel.clone()).get_config(pb::GetConfigRequest {}).await.unwrap().into_inner()
}

/// The running configuration with `campaigns.default.contact.do_not_call` set to `numbers`.
fn with_do_not_call(running: &pb::GetConfigResponse, numbers: &[&str]) -> pb::UpdateConfigRequest {
    let mut table: toml::Table = running.toml.parse().unwrap();
    let campaign = table["campaigns"]["default"].as_table_mut();
    let contact = campaign.and_then(|c| c.get_mut("contact")).and_then(|c| c.as_table_mut()).unwrap();
    contact.insert("do_not_call".into(), toml::Value::Array(numbers.iter().map(|n| toml::Value::from(*n)).collect()));
    pb::UpdateConfigRequest { toml: toml::to_string(&table).unwrap(), expected_version: running.version }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_change_through_any_node_holds_on_every_shard_in_one_order_and_reports_gather_every_shard() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _nats, mut nodes, mut channels) = three_nodes(dir.path(), LEASE_MS).await;
    let zone = zone_at_noon();
    // People of every role and size, so that each scores its own.
    let leads: Vec<pb::Lead> = (0..16)
        .map(|i| {
            let mut lead = callable(&format!("person-{i:02}"), &format!("+1212555{:04}", 100 + i), &zone);
            lead.attributes.insert("role".into(), text(["CTO", "VP Sales", "Engineer", "Intern"][i % 4]));
            lead.attributes.insert("employees".into(), number([5.0, 60.0, 640.0, 5000.0][i / 4]));
            lead
        })
        .collect();
    let shards: std::collections::BTreeSet<u32> = leads.iter().map(|l| shard_of(&l.id, SHARDS)).collect();
    assert!(shards.len() >= 6, "the leads must spread over the shards: {shards:?}");
    LeadServiceClient::new(channels[0].clone())
        .upsert_leads(pb::UpsertLeadsRequest { leads: leads.clone() })
        .await
        .unwrap();

    // The campaign stops calling half of them, through node-a.
    let refused: Vec<String> = (0..16).step_by(2).map(|i| format!("+1212555{:04}", 100 + i)).collect();
    let numbers: Vec<&str> = refused.iter().map(String::as_str).collect();
    let change = with_do_not_call(&running(&channels[0]).await, &numbers);
    let answer = AdminServiceClient::new(channels[0].clone()).update_config(change).await.unwrap().into_inner();
    assert_eq!(answer.version, 1);
    // Once answered, every node serves it on every shard: none offers a refused number.
    for channel in &channels {
        assert_eq!(running(channel).await.version, 1);
        let stats = AdminServiceClient::new(channel.clone()).stats(pb::StatsRequest {}).await.unwrap().into_inner();
        assert_eq!(stats.config_version, 1);
    }
    let mut claims = Vec::new();
    for (i, channel) in channels.iter().cycle().take(30).enumerate() {
        claims.extend(claim(channel, &format!("agent-{}", i % 4)).await);
    }
    let mut offered: Vec<String> = claims.iter().map(|c| c.lead.as_ref().unwrap().id.clone()).collect();
    offered.sort();
    let callable: Vec<String> = (1..16).step_by(2).map(|i| format!("person-{i:02}")).collect();
    assert_eq!(offered, callable, "only the numbers the campaign still calls are offered, each once");

    // The validation report through any node measures every shard's calls together, as one
    // node measures the same calls.
    for (i, claim) in claims.iter().enumerate() {
        let mut dialer = DialerServiceClient::new(channels[i % 3].clone());
        dialer.report_outcome(outcome_of(claim)).await.unwrap();
    }
    let single_dir = tempfile::tempdir().unwrap();
    let mut single_config = config(single_dir.path());
    single_config.campaigns.entry("default".into()).or_default().contact.do_not_call = refused.clone();
    let single = TestServer::try_start(single_config, Arc::new(SystemClock)).await.unwrap();
    single.upsert(leads.clone()).await;
    let mut single_claims = Vec::new();
    while let Some(claim) = claim(&single.channel().await, &format!("agent-{}", single_claims.len() % 4)).await {
        single_claims.push(claim);
    }
    assert_eq!(single_claims.len(), 8);
    for claim in &single_claims {
        DialerServiceClient::new(single.channel().await).report_outcome(outcome_of(claim)).await.unwrap();
    }
    let report = |channel: Channel| async move {
        let asked = pb::ValidationReportRequest { campaign: String::new() };
        let mut sections =
            AdminServiceClient::new(channel).validation_report(asked).await.unwrap().into_inner().sections;
        // The single node started at version 0 with what the cluster took as version 1.
        sections.iter_mut().for_each(|section| section.config_version = 0);
        sections
    };
    let expected = report(single.channel().await).await;
    let converted = claims.iter().filter(|claim| converts(claim)).count() as u64;
    assert!((1..8).contains(&converted), "both outcomes occur: {converted} of 8 converted");
    assert_eq!(expected[0].all.as_ref().map(|all| (all.leads, all.conversions)), Some((8, converted)));
    assert!(expected[0].roc_auc.is_some());
    for channel in &channels {
        assert_eq!(report(channel.clone()).await, expected);
    }
    single.stop().await;

    // Two changes based on the same version, each through the node it was read from (a node's
    // restart-only sections are its own), at once: one follows it, the other is refused.
    let change = |channel: Channel, numbers: &'static [&'static str]| async move {
        let mut admin = AdminServiceClient::new(channel.clone());
        admin.update_config(with_do_not_call(&running(&channel).await, numbers)).await
    };
    let (one, other) = tokio::join!(
        change(channels[1].clone(), &["+12125550100"]),
        change(channels[2].clone(), &["+12125550100", "+12125550102"])
    );
    let (won, lost) = match (one, other) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won.into_inner(), lost),
        outcome => panic!("exactly one of two changes on version 1 must win: {outcome:?}"),
    };
    assert_eq!(won.version, 2);
    assert_eq!(lost.code(), Code::Aborted, "{lost:?}");
    assert!(lost.message().contains("version 2"), "{lost:?}");

    // A change that does not compile is refused whole, naming the key, through any node.
    let mut broken: toml::Table = running(&channels[2]).await.toml.parse().unwrap();
    broken["campaigns"]["default"]["contact"].as_table_mut().unwrap().insert("calling_window".into(), "9-5".into());
    let broken = pb::UpdateConfigRequest { toml: toml::to_string(&broken).unwrap(), expected_version: 2 };
    let status = AdminServiceClient::new(channels[2].clone()).update_config(broken).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("campaigns.default.contact.calling_window"), "{status:?}");

    // A node that comes back takes the newest version on every shard it serves.
    let (status, log) = nodes.pop().unwrap().terminate();
    assert!(status.success(), "node-c did not stop cleanly:\n{log}");
    // (With its metrics and its console on, this time.)
    let node_c = node_config(dir.path(), "node-c", &cluster.urls(), LEASE_MS);
    let env = [("LEADSCORE_METRICS_LISTEN", "127.0.0.1:0"), ("LEADSCORE_CONSOLE_LISTEN", "127.0.0.1:0")];
    nodes.push(ChildServer::start_with_env(dir.path(), &["--config", node_c.to_str().unwrap()], &env).unwrap());
    let urls = cluster.urls();
    let nats = tokio::task::spawn_blocking(move || {
        let nats = Nats::connect(&urls, "test").unwrap();
        wait_spread(&nats, 3);
        nats
    })
    .await
    .unwrap();
    channels[2] = Channel::from_shared(nodes[2].address.clone()).unwrap().connect().await.unwrap();
    wait_serving(channels[2].clone()).await;
    for channel in &channels {
        let stats = AdminServiceClient::new(channel.clone()).stats(pb::StatsRequest {}).await.unwrap().into_inner();
        assert_eq!(stats.config_version, 2, "every shard serves version 2");
    }

    // The audit trail through any node lists both versions once, in order; scorers reload
    // and every shard snapshots through any node.
    let request = pb::AuditLogRequest { kinds: vec![pb::AuditKind::ConfigChange.into()], ..Default::default() };
    let mut trail = AdminServiceClient::new(channels[2].clone()).audit_log(request).await.unwrap().into_inner();
    let mut versions = Vec::new();
    while let Some(entry) = trail.message().await.unwrap() {
        versions.push(entry.detail);
    }
    assert_eq!(versions, ["version 1", "version 2"]);
    let reloaded = AdminServiceClient::new(channels[1].clone())
        .reload_scorers(pb::ReloadScorersRequest { force: false })
        .await
        .unwrap()
        .into_inner();
    assert!(reloaded.scorers.iter().any(|s| s.name == "fit"), "{reloaded:?}");
    let snapshot =
        AdminServiceClient::new(channels[0].clone()).snapshot(pb::SnapshotRequest {}).await.unwrap().into_inner();
    assert_eq!(snapshot.leads, 16);

    // Node-c's console reads every shard, as a client through node-c does.
    let console = nodes[2].logged_address("web console");
    let get = |path: &'static str| {
        let console = console.clone();
        tokio::task::spawn_blocking(move || http_get(&console, path, &[]))
    };
    let page = |answer: leadscore_tests::HttpAnswer| -> serde_json::Value {
        assert_eq!(answer.code, 200, "{}", answer.body);
        serde_json::from_str(&answer.body).unwrap()
    };
    assert_eq!(page(get("/api/campaigns").await.unwrap())["campaigns"], serde_json::json!(["default"]));
    assert_eq!(page(get("/api/stats").await.unwrap())["leads"], 16);
    let listed = page(get("/api/top?limit=20").await.unwrap());
    let listed: Vec<&str> =
        listed["leads"].as_array().unwrap().iter().map(|l| l["score"]["leadId"].as_str().unwrap()).collect();
    let through_c: Vec<String> = top(channels[2].clone(), 20).await.into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(listed, through_c);
    assert_eq!(listed.len(), 16);

    // Node-c's metrics: its shards', each labelled, and none of the others'.
    let status = ClusterStatus::read(&nats, Duration::from_millis(LEASE_MS)).unwrap().unwrap();
    let mine: Vec<u32> =
        status.shards.iter().filter(|s| s.owner.as_deref() == Some("node-c")).map(|s| s.shard).collect();
    let log = nodes[2].log.lock().unwrap().join("\n");
    let line = log.lines().find(|line| line.contains("metrics at /metrics")).expect("the metrics line");
    let address = line.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let scraped = tokio::task::spawn_blocking(move || http_get(&address, "/metrics", &[])).await.unwrap();
    assert_eq!(scraped.code, 200);
    let value = |series: &str| -> Option<f64> {
        let line = scraped.body.lines().find(|line| line.split_whitespace().next() == Some(series))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    assert_eq!(value("leadscore_shards_served"), Some(mine.len() as f64));
    let mut leads_here = 0.0;
    for shard in 0..SHARDS {
        let served = value(&format!("leadscore_shard_served{{shard=\"{shard}\"}}"));
        assert_eq!(served, mine.contains(&shard).then_some(1.0), "shard {shard}");
        if mine.contains(&shard) {
            assert_eq!(value(&format!("leadscore_config_version{{shard=\"{shard}\"}}")), Some(2.0));
            assert!(value(&format!("leadscore_shard_snapshot_age_seconds{{shard=\"{shard}\"}}")).is_some());
            leads_here += value(&format!("leadscore_leads{{shard=\"{shard}\"}}")).unwrap();
        }
    }
    let expected = leads.iter().filter(|lead| mine.contains(&shard_of(&lead.id, SHARDS))).count();
    assert_eq!(leads_here, expected as f64);
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
}

/// The node serving the most shards now.
fn busiest(nats: &Nats) -> String {
    let status = ClusterStatus::read(nats, Duration::from_millis(LEASE_MS)).unwrap().unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for owner in status.shards.iter().filter_map(|s| s.owner.clone()) {
        *counts.entry(owner).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).unwrap().0
}

/// What a writer had acknowledged.
#[derive(Default)]
struct Written {
    /// Leads stored, each with one event.
    leads: Vec<String>,
    /// Leads erased after they were stored, and when the erasure was acknowledged.
    erased: Vec<(String, Instant)>,
}

/// Stores `w{writer}-N` leads through `channel` until `stop`, each with an event, and erases
/// every fifth once stored; a call that found its shard moving (`UNAVAILABLE`) leaves its lead
/// out of the count, since its outcome is unknown.
async fn write_until(channel: Channel, writer: usize, stop: Arc<std::sync::atomic::AtomicBool>) -> Written {
    let mut written = Written::default();
    let mut client = LeadServiceClient::new(channel);
    let unknown = |e: &leadscore_proto::tonic::Status, id: &str| match e.code() {
        Code::Unavailable => {}
        _ => panic!("{id}: {e}"),
    };
    for i in 0.. {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let id = format!("w{writer}-{i:05}");
        // A number of its own: an erased person's number refuses any lead that has it.
        let stored = pb::Lead { phone: format!("+1{}555{:04}", [313, 413, 513][writer], i % 10_000), ..lead(&id) };
        if let Err(e) = client.upsert_leads(pb::UpsertLeadsRequest { leads: vec![stored] }).await {
            unknown(&e, &id);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let visit = pb::RecordEventsRequest { events: vec![event(&id, &format!("visit-{i}"), "page_view:/pricing")] };
        if let Err(e) = client.record_events(visit).await {
            unknown(&e, &id);
            continue;
        }
        if i % 5 != 0 {
            written.leads.push(id);
            continue;
        }
        match client.erase_lead(pb::EraseLeadRequest { id: id.clone() }).await {
            Ok(_) => written.erased.push((id, Instant::now())),
            Err(e) => unknown(&e, &id),
        }
    }
    written
}

/// One lease as an agent's client saw it.
#[derive(Clone, Debug)]
struct Held {
    lead: String,
    agent: String,
    /// When the claim was asked for and when its answer came: the lease began in between.
    asked: Instant,
    granted: Instant,
    lease_id: String,
    /// When its end (an outcome or a release) was first sent.
    end_asked: Option<Instant>,
    /// Held at least until then: confirmed ended, by this try (its time) or by an earlier
    /// unanswered one (the first try's); `None` while unconfirmed, held to the end of the test.
    ended: Option<Instant>,
    /// Why the last try to end it failed.
    failed: Option<String>,
}

/// What the floor's agents saw: their leases, and when each do-not-call outcome was
/// acknowledged, with its number.
#[derive(Default)]
struct Floor {
    held: std::sync::Mutex<Vec<Held>>,
    do_not_call: std::sync::Mutex<Vec<(String, Instant)>>,
}

/// An agent until `stop`: claims, holds the lead a moment, and releases it, or, for a
/// `twin-*-a` lead, reports that the person asked not to be called again. It calls through
/// one node and, when that one fails, the next, as a dialer would. A lease's end is retried
/// until confirmed, so a lease is never counted as ended before it was: when this try ended
/// it, at this try; when an earlier unanswered try did (not found, already ended), at the first.
async fn dial_until(nodes: Vec<Channel>, agent: String, stop: Arc<std::sync::atomic::AtomicBool>, floor: Arc<Floor>) {
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    let mut node = 0;
    let mut dialer = DialerServiceClient::new(nodes[node].clone());
    let mut next_node = |dialer: &mut DialerServiceClient<Channel>| {
        node = (node + 1) % nodes.len();
        *dialer = DialerServiceClient::new(nodes[node].clone());
    };
    while !stopped() {
        let asked = Instant::now();
        let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.clone() };
        let answer = match dialer.next_lead(request).await {
            Ok(answer) => answer.into_inner(),
            Err(_) => {
                next_node(&mut dialer);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let granted = Instant::now();
        let Some(pb::next_lead_response::Result::Claim(claim)) = answer.result else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let lead = claim.lead.unwrap();
        let lease_id = claim.lease.unwrap().lease_id;
        let record = Held {
            lead: lead.id.clone(),
            agent: agent.clone(),
            asked,
            granted,
            lease_id: lease_id.clone(),
            end_asked: None,
            ended: None,
            failed: None,
        };
        // Its place, taken under the same lock as the push: other agents push too.
        let held = {
            let mut all = floor.held.lock().unwrap();
            all.push(record);
            all.len() - 1
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let first_try = Instant::now();
        floor.held.lock().unwrap()[held].end_asked = Some(first_try);
        let refuse = lead.id.starts_with("twin-") && lead.id.ends_with("-a");
        loop {
            let this_try = Instant::now();
            let done = if refuse {
                let outcome = pb::Outcome {
                    lease_id: lease_id.clone(),
                    result: pb::CallResult::DoNotCall.into(),
                    ..Default::default()
                };
                dialer.report_outcome(pb::ReportOutcomeRequest { outcome: Some(outcome) }).await.map(drop)
            } else {
                dialer.release_lead(pb::ReleaseLeadRequest { lease_id: lease_id.clone() }).await.map(drop)
            };
            let ended = match &done {
                Ok(()) => Some(this_try),
                Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => Some(first_try),
                Err(status) => {
                    floor.held.lock().unwrap()[held].failed = Some(format!("{status:?}"));
                    None
                }
            };
            if let Some(ended) = ended {
                if refuse {
                    floor.do_not_call.lock().unwrap().push((lead.phone.clone(), Instant::now()));
                }
                floor.held.lock().unwrap()[held].ended = Some(ended);
                break;
            }
            if stopped() {
                return;
            }
            next_node(&mut dialer);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floor_dialling_through_a_node_kill_and_a_stream_leader_kill_loses_no_write_and_breaks_no_rule() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (cluster, nats, nodes, mut channels) = three_nodes(dir.path(), SHORT_LEASE_MS).await;
    let urls = cluster.urls();
    let names = ["node-a", "node-b", "node-c"];
    let mut nodes: Vec<Option<ChildServer>> = nodes.into_iter().map(Some).collect();

    // Leads to call, and ten people with a record on each of two shards: the first record of
    // each asked for a demo and ranks first, and its call ends in do-not-call; from then on the
    // other must not be offered.
    let zone = zone_at_noon();
    let callable = |id: &str, phone: String| callable(id, &phone, &zone);
    let mut leads: Vec<pb::Lead> =
        (0..40).map(|i| callable(&format!("floor-{i:02}"), format!("+1212555{i:04}"))).collect();
    for i in 0..10 {
        let phone = format!("+1212556{i:04}");
        let twin = on_another_shard(&format!("twin-{i}-b"), &format!("twin-{i}-a"));
        leads.push(callable(&format!("twin-{i}-a"), phone.clone()));
        leads.push(callable(&twin, phone));
    }
    let phones: std::collections::HashMap<String, String> =
        leads.iter().map(|l| (l.id.clone(), l.phone.clone())).collect();
    let demos = leads.iter().filter(|l| l.id.ends_with("-a")).map(|l| event(&l.id, "demo", "demo_request"));
    let demos = pb::RecordEventsRequest { events: demos.collect() };
    LeadServiceClient::new(channels[0].clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();
    LeadServiceClient::new(channels[1].clone()).record_events(demos).await.unwrap();

    let victim = tokio::task::spawn_blocking({
        let nats = nats.clone();
        move || busiest(&nats)
    })
    .await
    .unwrap();
    let victim_index = names.iter().position(|n| *n == victim).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim_index).collect();

    // Writers through the two survivors, each forwarding to every shard's owner; two agents
    // on every node, the victim's too.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> =
        survivors.iter().map(|&i| tokio::spawn(write_until(channels[i].clone(), i, stop.clone()))).collect();
    let floor = Arc::new(Floor::default());
    let started = Instant::now();
    let agents: Vec<_> = (0..6)
        .map(|a| {
            // Each agent calls through its own node first.
            let mut nodes = channels.clone();
            nodes.rotate_left(a % 3);
            tokio::spawn(dial_until(nodes, format!("agent-{a}"), stop.clone(), floor.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The node serving the most shards dies.
    nodes[victim_index].as_mut().unwrap().child.kill().unwrap();
    let killed = Instant::now();
    wait_serving(channels[survivors[0]].clone()).await;
    let recovered = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Then the NATS server leading a busy shard's stream, for three seconds.
    let stream = format!("LEADSCORE_SHARD_{}", shard_of("floor-00", SHARDS));
    let leader = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        let leader = cluster.stream_leader(&stream);
        cluster.servers[leader].kill();
        std::thread::sleep(Duration::from_secs(3));
        cluster.servers[leader].start();
        cluster.servers[leader].wait_ready();
        (cluster, leader)
    });
    let (_cluster, leader) = leader.await.unwrap();

    // The killed node comes back and takes a share again.
    nodes[victim_index] = Some(start_node(dir.path(), &victim, &urls, SHORT_LEASE_MS));
    tokio::task::spawn_blocking({
        let nats = nats.clone();
        move || wait_spread(&nats, 3)
    })
    .await
    .unwrap();
    let back =
        Channel::from_shared(nodes[victim_index].as_ref().unwrap().address.clone()).unwrap().connect().await.unwrap();
    wait_serving(back.clone()).await;
    channels[victim_index] = back;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acknowledged, mut erased) = (Vec::new(), Vec::new());
    for writer in writers {
        let written = writer.await.unwrap();
        acknowledged.extend(written.leads);
        erased.extend(written.erased);
    }
    for agent in agents {
        agent.await.unwrap();
    }
    // The ends that never got an answer are asked again, now that every shard is served.
    let unconfirmed: Vec<usize> = {
        let held = floor.held.lock().unwrap();
        (0..held.len()).filter(|&i| held[i].end_asked.is_some() && held[i].ended.is_none()).collect()
    };
    for i in unconfirmed {
        let (lease_id, first_try) = {
            let held = floor.held.lock().unwrap();
            (held[i].lease_id.clone(), held[i].end_asked.unwrap())
        };
        let this_try = Instant::now();
        let answer = DialerServiceClient::new(channels[survivors[0]].clone())
            .release_lead(pb::ReleaseLeadRequest { lease_id })
            .await;
        floor.held.lock().unwrap()[i].ended = match answer {
            Ok(_) => Some(this_try),
            Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) => Some(first_try),
            Err(status) => panic!("a lease's end is still unanswered after the cluster settled: {status:?}"),
        };
    }
    let ended = Instant::now();
    // The lease (3 s) plus replays; the bound leaves room for a slow machine.
    assert!(recovered < Duration::from_secs(20), "shards served again only after {recovered:?}");
    let held = floor.held.lock().unwrap().clone();
    let refused = floor.do_not_call.lock().unwrap().clone();
    eprintln!(
        "every shard served again {recovered:?} after the SIGKILL; stream leader nats-{} killed for 3 s; \
         {} leads and events acknowledged, {} erasures; {} leases, {} do-not-call outcomes",
        leader + 1,
        acknowledged.len(),
        erased.len(),
        held.len(),
        refused.len()
    );
    assert!(
        held.len() > 50 && refused.len() >= 5,
        "the floor dialled: {} leases, {} refusals",
        held.len(),
        refused.len()
    );

    // No two leases of a lead overlapped: no claim was asked for and granted wholly within
    // another agent's lease of the same lead.
    for a in &held {
        let until = a.ended.unwrap_or(ended);
        for b in held.iter().filter(|b| b.lead == a.lead && b.asked >= a.granted && b.granted <= until) {
            if std::ptr::eq(a, b) {
                continue;
            }
            let at = |t: Instant| t.duration_since(started).as_millis();
            panic!(
                "{} was leased to {} and, during that lease, to {} (ms from the start: {:?} and {:?}, \
                 the node killed at {}); the first lease's end failed with {:?}",
                a.lead,
                a.agent,
                b.agent,
                (at(a.asked), at(a.granted), a.end_asked.map(at), a.ended.map(at)),
                (at(b.asked), at(b.granted), b.end_asked.map(at), b.ended.map(at)),
                at(killed),
                a.failed,
            );
        }
    }
    // No lead with a number on the do-not-call list was claimed once that was acknowledged,
    // whichever shard it is on.
    for (phone, at) in &refused {
        let late: Vec<&Held> = held.iter().filter(|h| phones.get(&h.lead) == Some(phone) && h.asked > *at).collect();
        assert!(late.is_empty(), "{phone} was offered after its do-not-call was acknowledged: {late:?}");
    }

    // No erased lead was offered once its erasure was acknowledged.
    for (id, at) in &erased {
        let late: Vec<&Held> = held.iter().filter(|h| &h.lead == id && h.asked > *at).collect();
        assert!(late.is_empty(), "{id} was offered after its erasure was acknowledged: {late:?}");
    }

    // Every acknowledged write is there, read through every node, and no erased lead.
    acknowledged.sort();
    for (channel, name) in channels.iter().zip(names) {
        let mut present: Vec<String> = top(channel.clone(), 10_000).await.into_iter().map(|(id, ..)| id).collect();
        present.sort();
        let lost: Vec<&String> = acknowledged.iter().filter(|id| present.binary_search(id).is_err()).collect();
        assert!(lost.is_empty(), "through {name}: {} acknowledged writes lost: {lost:?}", lost.len());
        let back: Vec<&String> =
            erased.iter().map(|(id, _)| id).filter(|id| present.binary_search(id).is_ok()).collect();
        assert!(back.is_empty(), "through {name}: erased leads are back: {back:?}");
    }
    assert!(!erased.is_empty(), "the writers erased leads");
    for id in &acknowledged {
        let request = pb::GetLeadRequest { id: id.clone(), include_events: true };
        let got = LeadServiceClient::new(channels[0].clone()).get_lead(request).await.unwrap().into_inner();
        assert_eq!(got.events.len(), 1, "{id}'s acknowledged event");
    }
    for node in nodes.into_iter().flatten() {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
    // And again offline, from the streams alone, now that no node writes to them.
    let claims = tokio::task::spawn_blocking(move || audit_streams(&urls)).await.unwrap();
    assert!(claims >= held.len(), "the logs hold {claims} claims, the clients were granted {}", held.len());
}

/// Replays every shard's stream offline: no claim in any log was made while another lease of
/// its lead was open and unexpired, and two replays of each stream into a store give the same
/// state. Returns the claims the logs hold (with leads claimed again, so the check bites).
fn audit_streams(urls: &[String]) -> usize {
    use leadscore::store::dial::Lease;
    use leadscore::store::log::Log as _;
    use leadscore::store::mutation::Mutation;
    let nats = Nats::connect(urls, "auditor").unwrap();
    let (mut claims, mut again) = (0, 0);
    for shard in 0..SHARDS {
        let settings = StreamSettings::default();
        let mut claimed = std::collections::HashSet::new();
        let mut log = StreamLog::open(&nats, shard, &format!("auditor.{shard}"), &settings).unwrap();
        let mut open: std::collections::HashMap<String, Lease> = Default::default();
        let mut overlaps = Vec::new();
        let ends = |open: &mut std::collections::HashMap<String, Lease>, lead: &str, lease: u64| {
            if open.get(lead).is_some_and(|held| held.id == lease) {
                open.remove(lead);
            }
        };
        log.replay(0, 0, &mut |lsn, mutation| match mutation {
            Mutation::Claim { lead_id, lease } | Mutation::ScoredClaim { lead_id, lease, .. } => {
                claims += 1;
                let lead = lead_id.to_string();
                again += usize::from(!claimed.insert(lead.clone()));
                if let Some(held) = open.get(&lead).filter(|held| held.expires_at_ms > lease.claimed_at_ms) {
                    overlaps.push(format!("record {lsn}: {lead} claimed by {} under {held:?}", lease.agent));
                }
                open.insert(lead, lease);
            }
            Mutation::Release { lead_id, lease } => ends(&mut open, &lead_id, lease),
            Mutation::Outcome(record) => ends(&mut open, &record.lead_id, record.attempt.lease),
            Mutation::EraseLead { id, .. } => _ = open.remove(id.as_str()),
            _ => {}
        })
        .unwrap_or_else(|e| panic!("shard {shard}'s stream does not replay: {e}"));
        assert!(overlaps.is_empty(), "shard {shard}: leases overlapped in the log: {overlaps:#?}");
        let digests: Vec<[u8; 32]> = (0..2)
            .map(|round| {
                let dir = tempfile::tempdir().unwrap();
                let options = StoreOptions {
                    data_dir: dir.path().to_owned(),
                    fsync: FsyncPolicy::Always,
                    fsync_interval: Duration::from_secs(1),
                    snapshot_log_bytes: u64::MAX,
                    max_events_per_lead: 100,
                };
                let log = StreamLog::open(&nats, shard, &format!("auditor.{shard}.{round}"), &settings).unwrap();
                Store::open_with_log(options, Arc::new(SystemClock), Box::new(log)).unwrap().digest()
            })
            .collect();
        assert_eq!(digests[0], digests[1], "shard {shard} replays into the same state twice");
    }
    assert!(again > 0, "no lead was claimed twice in {claims} claims: the overlap check saw nothing");
    claims
}

/// Sends `signal` (`-STOP`, `-CONT`) to a node's process.
fn signal(node: &ChildServer, signal: &str) {
    let sent = std::process::Command::new("kill").args([signal, &node.child.id().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// The employees a lead was stored with, read through `channel` within a second.
async fn employees(channel: &Channel, id: &str) -> Result<f64, leadscore_proto::tonic::Status> {
    let mut request = leadscore_proto::tonic::Request::new(pb::GetLeadRequest { id: id.into(), include_events: false });
    request.set_timeout(Duration::from_secs(1));
    let lead = LeadServiceClient::new(channel.clone()).get_lead(request).await?.into_inner().lead.unwrap();
    match lead.attributes["employees"].kind {
        Some(pb::attribute_value::Kind::Number(n)) => Ok(n),
        ref other => panic!("employees is {other:?}"),
    }
}

fn with_employees(id: &str, n: f64) -> pb::UpsertLeadsRequest {
    let mut lead = lead(id);
    lead.attributes.insert("employees".into(), number(n));
    pb::UpsertLeadsRequest { leads: vec![lead] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_when_it_wakes_and_steps_down() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, nats, nodes, channels) = three_nodes(dir.path(), SHORT_LEASE_MS).await;
    let status = tokio::task::spawn_blocking({
        let nats = nats.clone();
        move || ClusterStatus::read(&nats, Duration::from_millis(SHORT_LEASE_MS)).unwrap().unwrap()
    })
    .await
    .unwrap();
    // A lead whose shard node-a owns.
    let owned: Vec<u32> =
        status.shards.iter().filter(|s| s.owner.as_deref() == Some("node-a")).map(|s| s.shard).collect();
    let id = (0..).map(|n| format!("fenced-{n}")).find(|id| owned.contains(&shard_of(id, SHARDS))).unwrap();
    LeadServiceClient::new(channels[1].clone()).upsert_leads(with_employees(&id, 1.0)).await.unwrap();

    // node-a pauses past its lease; another node takes the shard and writes to it.
    signal(&nodes[0], "-STOP");
    let paused = Instant::now();
    loop {
        match LeadServiceClient::new(channels[1].clone()).upsert_leads(with_employees(&id, 2.0)).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::Unavailable && paused.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the shard was not taken over within 30 s: {e}"),
        }
    }
    // A write sent to the paused node waits in its socket, and is served as it wakes, while
    // it still believes it owns the shard.
    let late = tokio::spawn({
        let channel = channels[0].clone();
        let id = id.clone();
        async move { LeadServiceClient::new(channel).upsert_leads(with_employees(&id, 3.0)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&nodes[0], "-CONT");
    let late = late.await.unwrap();

    // Whatever it answered, every node agrees, and the answer was true.
    let expected = match &late {
        Ok(_) => 3.0,
        Err(e) => {
            assert_eq!(e.code(), Code::Unavailable, "{e}");
            2.0
        }
    };
    // The paused node itself never shows the write it could not log, even at once.
    match employees(&channels[0], &id).await {
        Ok(seen) => assert_eq!(seen, expected, "read through the node that was paused"),
        Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e}"),
    }
    for channel in &channels[1..] {
        assert_eq!(employees(channel, &id).await.unwrap(), expected, "after the paused node answered {late:?}");
    }
    // It stepped down rather than serving on: its log says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes[0].log_text().contains("stepped down") {
        assert!(Instant::now() < deadline, "node-a did not step down:\n{}", nodes[0].log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the paused node's late write answered {late:?}");
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_scripts_start_a_cluster_that_serves_and_stop_it() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("cluster");
    let script = move |name: &str| {
        let output = std::process::Command::new(workspace_root().join("examples/cluster").join(name))
            .arg(&folder)
            .env("LEADSCORE_BIN", binary())
            .env("NATS_SERVER", nats_server_binary())
            .env("SHARDS", SHARDS.to_string())
            .output()
            .unwrap();
        let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{name} failed:\n{out}\n{err}");
        out.into_owned()
    };
    // Stops the cluster even when an assertion below fails, so that no process outlives the test.
    struct Down(std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let down = workspace_root().join("examples/cluster/down.sh");
            let _ = std::process::Command::new(down).arg(&self.0).output();
        }
    }
    let _down = Down(dir.path().join("cluster"));
    let printed = tokio::task::spawn_blocking(move || script("up.sh")).await.unwrap();
    let addresses: Vec<String> = printed
        .lines()
        .filter(|line| line.starts_with("node-"))
        .map(|line| line.split_whitespace().nth(2).unwrap().to_owned())
        .collect();
    assert_eq!(addresses.len(), 3, "one line per node:\n{printed}");
    let consoles: Vec<String> = printed
        .lines()
        .filter(|line| line.starts_with("node-"))
        .map(|line| line.split_whitespace().nth(4).unwrap().trim_start_matches("http://").to_owned())
        .collect();
    let mut channels = Vec::new();
    for address in &addresses {
        let channel = Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
        wait_serving(channel.clone()).await;
        channels.push(channel);
    }
    LeadServiceClient::new(channels[0].clone()).upsert_leads(with_employees("scripted", 7.0)).await.unwrap();
    assert_eq!(employees(&channels[2], "scripted").await.unwrap(), 7.0);
    // The floor's status through any node: every shard's figures added up.
    let status = std::process::Command::new(binary()).args(["status", "--server", &addresses[1]]).output().unwrap();
    let printed = String::from_utf8_lossy(&status.stdout).into_owned() + &String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success() && printed.contains("leads 1,"), "{printed}");
    assert!(printed.lines().any(|line| line.starts_with("default ")), "{printed}");
    // Each node's console shows the whole floor.
    for console in consoles.clone() {
        let stats = tokio::task::spawn_blocking(move || http_get(&console, "/api/stats", &[])).await.unwrap();
        assert_eq!(stats.code, 200, "{}", stats.body);
        let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
        assert_eq!(stats["leads"], 1, "{stats}");
    }

    let folder = dir.path().join("cluster");
    let stopped = tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(workspace_root().join("examples/cluster/down.sh"))
            .arg(&folder)
            .output()
            .unwrap();
        assert!(output.status.success(), "down.sh failed: {}", String::from_utf8_lossy(&output.stderr));
    });
    stopped.await.unwrap();
    for address in &addresses {
        assert!(std::net::TcpStream::connect(address).is_err(), "{address} still answers after down.sh");
    }
}

/// The crossings `watch` yields until `count` came, or none came for `quiet`.
async fn crossings(
    watch: &mut leadscore_proto::tonic::Streaming<pb::BandCrossing>,
    count: usize,
    quiet: Duration,
) -> Vec<(String, i32, i32)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        match tokio::time::timeout(quiet, watch.message()).await {
            Ok(crossing) => {
                let c = crossing.unwrap().unwrap();
                seen.push((c.lead_id, c.from, c.to));
            }
            Err(_) => break,
        }
    }
    seen.sort();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_any_node_gets_every_shards_crossings_and_ends_when_a_shard_moves() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _nats, mut nodes, channels) = three_nodes(dir.path(), LEASE_MS).await;
    let single_dir = tempfile::tempdir().unwrap();
    let single = TestServer::try_start(config(single_dir.path()), Arc::new(SystemClock)).await.unwrap();
    let request = pb::WatchScoresRequest::default;
    let mut on_cluster =
        ScoringServiceClient::new(channels[2].clone()).watch_scores(request()).await.unwrap().into_inner();
    let mut on_single = single.scoring().await.watch_scores(request()).await.unwrap().into_inner();

    // The same leads and behaviour on both: every lead crosses into a band, on every shard.
    let (leads, events) = leads();
    LeadServiceClient::new(channels[0].clone())
        .upsert_leads(pb::UpsertLeadsRequest { leads: leads.clone() })
        .await
        .unwrap();
    LeadServiceClient::new(channels[1].clone())
        .record_events(pb::RecordEventsRequest { events: events.clone() })
        .await
        .unwrap();
    single.upsert(leads).await;
    single.leads().await.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    let expected = crossings(&mut on_single, usize::MAX, Duration::from_secs(2)).await;
    assert!(expected.len() >= 120, "every lead crosses at least once: {}", expected.len());
    let shards: std::collections::BTreeSet<u32> = expected.iter().map(|(id, ..)| shard_of(id, SHARDS)).collect();
    assert_eq!(shards.len(), SHARDS as usize, "crossings on every shard");
    let seen = crossings(&mut on_cluster, expected.len(), Duration::from_secs(10)).await;
    assert_eq!(seen, expected, "the cluster's watch against a single node's");

    // A node leaves: the watch ends at once, saying why, rather than miss its shards.
    let leaving = nodes.remove(0);
    let (status, log) = leaving.terminate();
    assert!(status.success(), "{log}");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match on_cluster.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the watch ended without saying why"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the watch went on after a node left");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    single.stop().await;
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
}

/// A hopper session through one node.
struct Hopper {
    tx: tokio::sync::mpsc::Sender<pb::DialerRequest>,
    rx: leadscore_proto::tonic::Streaming<pb::DialerResponse>,
}

impl Hopper {
    async fn open(channel: &Channel, agent: &str, brief: bool) -> Self {
        let (tx, requests) = tokio::sync::mpsc::channel(16);
        let hello = pb::DialerHello { campaign: String::new(), agent_id: agent.into(), brief };
        tx.send(pb::DialerRequest { message: Some(pb::dialer_request::Message::Hello(hello)) }).await.unwrap();
        let stream = tokio_stream::wrappers::ReceiverStream::new(requests);
        let rx = DialerServiceClient::new(channel.clone()).dialer_session(stream).await.unwrap().into_inner();
        Self { tx, rx }
    }

    async fn send(&self, message: pb::dialer_request::Message) {
        self.tx.send(pb::DialerRequest { message: Some(message) }).await.unwrap();
    }

    /// The next push, within 10 s.
    async fn recv(&mut self) -> pb::dialer_response::Message {
        let next = tokio::time::timeout(Duration::from_secs(10), self.rx.message()).await;
        next.expect("a push within 10 s").unwrap().expect("the session is open").message.unwrap()
    }

    /// `n` claims; a dry spell meanwhile (other hoppers took the heads it saw) is waited out.
    async fn claims(&mut self, n: usize) -> Vec<pb::Claim> {
        let mut claims = Vec::new();
        while claims.len() < n {
            match self.recv().await {
                pb::dialer_response::Message::Claim(claim) => claims.push(claim),
                pb::dialer_response::Message::Starved(_) => continue,
                other => panic!("expected a claim, got {other:?}"),
            }
        }
        claims
    }
}

fn lease_of(claims: &[pb::Claim], lead: &str) -> Option<String> {
    let claim = claims.iter().find(|c| c.lead.as_ref().unwrap().id == lead)?;
    Some(claim.lease.as_ref().unwrap().lease_id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoppers_on_every_node_share_every_shards_leads_and_hear_revocations_from_any_shard() {
    use pb::dialer_response::Message as Push;
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _nats, nodes, channels) = three_nodes(dir.path(), LEASE_MS).await;
    let zone = zone_at_noon();
    let callable = |id: &str, phone: &str| {
        let mut lead = callable(id, phone, &zone);
        lead.attributes.insert("employees".into(), number(500.0));
        lead
    };
    // Two records of one person on two shards, and others.
    let twin = on_another_shard("twin-b", "twin-a");
    let mut leads = vec![callable("twin-a", "+12125550100"), callable(&twin, "+12125550100")];
    leads.extend((0..28).map(|i| callable(&format!("hop-{i:02}"), &format!("+1212555{:04}", 2000 + i))));
    LeadServiceClient::new(channels[0].clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();

    // A hopper on each node, the last one brief, with a third of the leads' credits each.
    let mut hoppers = Vec::new();
    for (i, channel) in channels.iter().enumerate() {
        hoppers.push(Hopper::open(channel, &format!("hopper-{i}"), i == 2).await);
    }
    let mut held: Vec<Vec<pb::Claim>> = Vec::new();
    for hopper in &mut hoppers {
        hopper.send(pb::dialer_request::Message::Credits(10)).await;
    }
    for hopper in &mut hoppers {
        held.push(hopper.claims(10).await);
    }
    let mut ids: Vec<String> = held.iter().flatten().map(|c| c.lead.as_ref().unwrap().id.clone()).collect();
    ids.sort();
    let claimed = ids.len();
    ids.dedup();
    assert_eq!((ids.len(), claimed), (30, 30), "every lead of every shard claimed exactly once: {held:?}");
    assert!(held[0].iter().all(|c| !c.lead.as_ref().unwrap().attributes.is_empty()), "a full claim has the lead");
    assert!(held[2].iter().all(|c| c.lead.as_ref().unwrap().attributes.is_empty()), "a brief claim has not");
    assert!(held[2].iter().all(|c| !c.lead.as_ref().unwrap().phone.is_empty() && c.score.is_some()));

    // Do-not-call on twin-a, through its hopper: whichever hopper holds the twin on the other
    // shard is told at once, before the outcome is acknowledged to its caller.
    let holder = |lead: &str| held.iter().position(|claims| lease_of(claims, lead).is_some()).unwrap();
    let (a, b) = (holder("twin-a"), holder(&twin));
    let outcome = pb::Outcome {
        lease_id: lease_of(&held[a], "twin-a").unwrap(),
        result: pb::CallResult::DoNotCall.into(),
        ..Default::default()
    };
    hoppers[a].send(pb::dialer_request::Message::Outcome(outcome)).await;
    let mut acked = false;
    let mut revoked = None;
    while !acked || revoked.is_none() {
        let (hopper, push) = if !acked { (a, hoppers[a].recv().await) } else { (b, hoppers[b].recv().await) };
        match push {
            Push::OutcomeAck(_) if hopper == a => acked = true,
            Push::Revoked(r) if hopper == b => revoked = Some(r),
            other => panic!("hopper {hopper}: {other:?}"),
        }
    }
    let revoked = revoked.unwrap();
    assert_eq!((revoked.lead_id.as_str(), revoked.reason()), (twin.as_str(), pb::RevokeReason::DoNotCall));
    assert_eq!(Some(revoked.lease_id), lease_of(&held[b], &twin));

    // An erasure through another node revokes the lease its holder has.
    let erased = held[1].iter().map(|c| c.lead.as_ref().unwrap().id.clone()).find(|id| *id != twin && *id != "twin-a");
    let erased = erased.expect("hopper 1 holds a lead");
    LeadServiceClient::new(channels[0].clone()).erase_lead(pb::EraseLeadRequest { id: erased.clone() }).await.unwrap();
    match hoppers[1].recv().await {
        Push::Revoked(r) => assert_eq!((r.lead_id.as_str(), r.reason()), (erased.as_str(), pb::RevokeReason::Erased)),
        other => panic!("expected the erasure's revocation, got {other:?}"),
    }

    // Closing a hopper hands its leases back, on every shard: another agent gets them.
    let returned = held[2].len();
    drop(hoppers.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = Vec::new();
    while again.len() < returned && Instant::now() < deadline {
        match claim(&channels[0], "agent-after").await {
            Some(claim) => again.push(claim.lead.unwrap().id),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    again.sort();
    let mut expected: Vec<String> = held[2].iter().map(|c| c.lead.as_ref().unwrap().id.clone()).collect();
    expected.retain(|id| *id != twin && *id != "twin-a");
    expected.sort();
    assert_eq!(again, expected, "the closed hopper's leads, and only those, are offered again");
    drop(hoppers);
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
}

/// Nodes serving TLS with client certificates required (mTLS) call each other over it, each
/// showing its own certificate: writes through one node reach every shard's owner, and reads
/// and rankings through the others gather them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_serving_mutual_tls_forward_to_each_other_over_it() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new("the cluster's CA");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, authority.pem()).unwrap();
    let cluster = tokio::task::spawn_blocking(|| NatsCluster::start(3)).await.unwrap();
    let urls = cluster.urls();
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        // Each node's certificate names the address it advertises (127.0.0.1 here).
        let (cert, key) = authority.issue(&["localhost", "127.0.0.1"]);
        let (cert_file, key_file) = (dir.path().join(format!("{name}.pem")), dir.path().join(format!("{name}.key")));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        let config = node_config(dir.path(), name, &urls, LEASE_MS);
        // The file ends in [cluster]: its CA first, then the server's TLS.
        let tls = format!(
            "ca_file = {ca:?}\n[server.tls]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\nclient_ca_file = {ca:?}\n"
        );
        let text = std::fs::read_to_string(&config).unwrap() + &tls;
        std::fs::write(&config, text).unwrap();
        let env = [("LEADSCORE_METRICS_LISTEN", ""), ("LEADSCORE_CONSOLE_LISTEN", "")];
        nodes.push(ChildServer::start_with_env(dir.path(), &["--config", config.to_str().unwrap()], &env).unwrap());
    }
    let nats_urls = urls.clone();
    tokio::task::spawn_blocking(move || wait_spread(&Nats::connect(&nats_urls, "test").unwrap(), 3)).await.unwrap();
    let (cert, key) = authority.issue(&["a client"]);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(authority.pem()))
        .identity(Identity::from_pem(cert, key))
        .domain_name("localhost");
    let mut channels = Vec::new();
    for node in &nodes {
        let https = node.address.replace("http://", "https://");
        let channel = Channel::from_shared(https).unwrap().tls_config(tls.clone()).unwrap().connect().await.unwrap();
        wait_serving(channel.clone()).await;
        channels.push(channel);
    }

    let (leads, events) = leads();
    let upserted =
        LeadServiceClient::new(channels[0].clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();
    assert_eq!(upserted.get_ref().created, 120);
    LeadServiceClient::new(channels[1].clone()).record_events(pb::RecordEventsRequest { events }).await.unwrap();
    for i in [0, 7, 64, 119] {
        let id = format!("lead-{i:03}");
        let got = LeadServiceClient::new(channels[2].clone())
            .get_lead(pb::GetLeadRequest { id: id.clone(), include_events: false })
            .await
            .unwrap_or_else(|e| panic!("{id} through node-c: {e}"));
        assert_eq!(got.into_inner().lead.unwrap().id, id);
    }
    let through_a = top(channels[0].clone(), 30).await;
    assert_eq!(through_a.len(), 30);
    for channel in &channels[1..] {
        assert_eq!(top(channel.clone(), 30).await, through_a);
    }

    // The cluster moves to a new CA: every node's files are replaced, then SIGHUP. Each node
    // then serves its new certificate, takes only the new CA's, and shows its new one to the
    // others, so forwarded calls go on.
    let next = Authority::new("the cluster's next CA");
    std::fs::write(&ca, next.pem()).unwrap();
    for (name, node) in ["node-a", "node-b", "node-c"].iter().zip(&nodes) {
        let (cert, key) = next.issue(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join(format!("{name}.pem")), cert).unwrap();
        std::fs::write(dir.path().join(format!("{name}.key")), key).unwrap();
        signal(node, "-HUP");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes.iter().all(|node| node.log_text().contains("TLS certificate and key reloaded")) {
        assert!(Instant::now() < deadline, "a node did not reload its certificate on SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (cert, key) = next.issue(&["a client"]);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(next.pem()))
        .identity(Identity::from_pem(cert, key))
        .domain_name("localhost");
    for node in &nodes {
        let https = node.address.replace("http://", "https://");
        let channel = Channel::from_shared(https).unwrap().tls_config(tls.clone()).unwrap().connect().await.unwrap();
        assert_eq!(top(channel.clone(), 30).await, through_a, "through {} after the new CA", node.address);
        let got = LeadServiceClient::new(channel)
            .get_lead(pb::GetLeadRequest { id: "lead-064".into(), include_events: false })
            .await
            .unwrap_or_else(|e| panic!("lead-064 through {} after the new CA: {e}", node.address));
        assert_eq!(got.into_inner().lead.unwrap().id, "lead-064");
    }
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
        assert!(!log.contains("TLS to the node"), "{log}");
    }
}

/// Agents registered and set available through any node hold on every shard: an unknown or
/// offline agent is refused whichever shard has the best lead, and an agent's capacity counts
/// its leases on every shard, in claims and in routing decisions. Presence changes reaching a
/// shard out of order keep the latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_registered_through_any_node_hold_on_every_shard_and_claims_and_routing_count_every_shards_leases() {
    use pb::routing_service_client::RoutingServiceClient;
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _nats, nodes, channels) = three_nodes(dir.path(), LEASE_MS).await;
    let zone = zone_at_noon();
    // Leads that fit, on every shard.
    let second = on_another_shard("best", "best-first");
    let warm = |id: &str, phone: &str| {
        let mut lead = callable(id, phone, &zone);
        lead.attributes.insert("role".into(), text("CTO"));
        lead.attributes.insert("employees".into(), number(640.0));
        lead
    };
    let mut leads: Vec<pb::Lead> =
        (0..20).map(|i| warm(&format!("plain-{i:02}"), &format!("+1212555{:04}", 200 + i))).collect();
    leads.push(warm("best-first", "+12125550100"));
    leads.push(warm(&second, "+12125550101"));
    LeadServiceClient::new(channels[0].clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();
    // Every lead asked for a demo (hot, for senior agents); the two best saw the pricing too.
    let mut demos: Vec<pb::Event> =
        (0..20).map(|i| event(&format!("plain-{i:02}"), &format!("demo-{i}"), "demo_request")).collect();
    for id in ["best-first", second.as_str()] {
        demos.push(event(id, &format!("{id}-demo"), "demo_request"));
        demos.push(event(id, &format!("{id}-pricing"), "page_view:/pricing"));
    }
    LeadServiceClient::new(channels[1].clone()).record_events(pb::RecordEventsRequest { events: demos }).await.unwrap();

    // Senior enough for hot leads too.
    let agent = |id: &str, capacity| pb::Agent {
        id: id.into(),
        name: id.into(),
        capacity,
        skills: Some(pb::AgentSkills { tier: 2, ..Default::default() }),
        ..Default::default()
    };
    let upserted = RoutingServiceClient::new(channels[0].clone())
        .upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent("alice", 2), agent("bob", 1)] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((upserted.created, upserted.updated), (2, 0));
    let next = |channel: &Channel, agent: &str| {
        let request = pb::NextLeadRequest { campaign: String::new(), agent_id: agent.into() };
        let mut dialer = DialerServiceClient::new(channel.clone());
        async move { dialer.next_lead(request).await }
    };
    let reason = |status: &leadscore_proto::tonic::Status| {
        tonic_types::StatusExt::get_details_error_info(status).map(|info| info.reason).unwrap_or_default()
    };
    // An agent nobody registered, and a registered one still offline, are refused everywhere.
    let unknown = next(&channels[2], "mallory").await.unwrap_err();
    assert_eq!((unknown.code(), reason(&unknown).as_str()), (Code::FailedPrecondition, "AGENT_UNKNOWN"));
    let offline = next(&channels[1], "alice").await.unwrap_err();
    assert_eq!((offline.code(), reason(&offline).as_str()), (Code::FailedPrecondition, "AGENT_UNAVAILABLE"));

    let set = |channel: &Channel, agent: &str, state: pb::AgentState, at_ms: Option<i64>| {
        let mut request = leadscore_proto::tonic::Request::new(pb::SetAgentStateRequest {
            agent_id: agent.into(),
            state: state.into(),
        });
        if let Some(at_ms) = at_ms {
            request.metadata_mut().insert("leadscore-at-ms", at_ms.into());
        }
        let mut routing = RoutingServiceClient::new(channel.clone());
        async move { routing.set_agent_state(request).await }
    };
    set(&channels[2], "alice", pb::AgentState::Available, None).await.unwrap();
    // A change made a minute earlier that reaches the shards late changes nothing.
    let a_minute_ago = SystemClock.now_ms() - 60_000;
    set(&channels[0], "alice", pb::AgentState::Offline, Some(a_minute_ago)).await.unwrap();

    // Alice takes the two best leads, one on each of two shards; a third would pass her
    // capacity, though each shard alone holds one of her leases.
    let mut held = Vec::new();
    for channel in [&channels[1], &channels[0]] {
        let answer = next(channel, "alice").await.unwrap().into_inner();
        let Some(pb::next_lead_response::Result::Claim(claim)) = answer.result else { panic!("{answer:?}") };
        held.push(claim);
    }
    let mut best: Vec<String> = held.iter().map(|c| c.lead.as_ref().unwrap().id.clone()).collect();
    best.sort();
    let mut expected = vec!["best-first".to_string(), second.clone()];
    expected.sort();
    assert_eq!(best, expected);
    let full = next(&channels[2], "alice").await.unwrap_err();
    assert_eq!((full.code(), reason(&full).as_str()), (Code::FailedPrecondition, "AGENT_UNAVAILABLE"), "{full:?}");
    assert!(full.message().contains("over every shard"), "{full:?}");
    // Routing weighs her leases on every shard too: a hot lead waits in its queue rather than
    // go to her, though its own shard holds at most one of her leases. The decision streams to
    // a watch on another node.
    let mut decisions = RoutingServiceClient::new(channels[0].clone())
        .watch_routing(pb::WatchRoutingRequest::default())
        .await
        .unwrap()
        .into_inner();
    let route = |channel: &Channel| {
        let mut routing = RoutingServiceClient::new(channel.clone());
        async move {
            let request = pb::RouteRequest { lead_id: "plain-05".into(), campaign: String::new() };
            routing.route(request).await.unwrap().into_inner().decision.unwrap()
        }
    };
    let waits = route(&channels[1]).await;
    let target = waits.target.clone().and_then(|t| t.target);
    assert_eq!(target, Some(pb::route_target::Target::Queue("senior-sales".into())), "{waits:?}");
    assert!(waits.reasons.iter().any(|r| r.contains("0 available with capacity")), "{waits:?}");
    let streamed = tokio::time::timeout(Duration::from_secs(10), decisions.message()).await.unwrap().unwrap();
    assert_eq!(streamed.map(|d| d.decision_id), Some(waits.decision_id));
    // Once one call is reported, she may take another.
    let report = pb::Outcome {
        lease_id: held[0].lease.as_ref().unwrap().lease_id.clone(),
        result: pb::CallResult::NoAnswer.into(),
        ..Default::default()
    };
    DialerServiceClient::new(channels[2].clone())
        .report_outcome(pb::ReportOutcomeRequest { outcome: Some(report) })
        .await
        .unwrap();
    let goes = route(&channels[2]).await;
    let target = goes.target.clone().and_then(|t| t.target);
    assert_eq!(target, Some(pb::route_target::Target::AgentId("alice".into())), "{goes:?}");
    let again = next(&channels[2], "alice").await.unwrap().into_inner();
    assert!(matches!(again.result, Some(pb::next_lead_response::Result::Claim(_))), "{again:?}");

    // The wallboard through any node lists each agent once, with its leases on every shard.
    let board = DialerServiceClient::new(channels[1].clone())
        .wallboard(pb::WallboardRequest { campaign: String::new(), minutes: 5 })
        .await
        .unwrap()
        .into_inner();
    let agents: Vec<(&str, u32, i32)> = board.agents.iter().map(|a| (a.agent_id.as_str(), a.leases, a.state)).collect();
    let (available, offline) = (pb::AgentState::Available as i32, pb::AgentState::Offline as i32);
    assert_eq!(agents, [("alice", 2, available), ("bob", 0, offline)]);
    // The change of roster is audited once, not once per shard.
    let request = pb::AuditLogRequest { kinds: vec![pb::AuditKind::AgentChange.into()], ..Default::default() };
    let mut trail = AdminServiceClient::new(channels[2].clone()).audit_log(request).await.unwrap().into_inner();
    let mut changes = 0;
    while trail.message().await.unwrap().is_some() {
        changes += 1;
    }
    assert_eq!(changes, 1);
    // A hopper for Bob (capacity 1) asking for three leads is sent the one his capacity allows,
    // then ends AGENT_UNAVAILABLE, as on one node: the lead claimed is not left leased to nobody.
    set(&channels[0], "bob", pb::AgentState::Available, None).await.unwrap();
    let mut hopper = Hopper::open(&channels[1], "bob", false).await;
    hopper.send(pb::dialer_request::Message::Credits(3)).await;
    assert_eq!(hopper.claims(1).await.len(), 1);
    let ended = tokio::time::timeout(Duration::from_secs(10), hopper.rx.message()).await.unwrap().unwrap_err();
    assert_eq!(reason(&ended), "AGENT_UNAVAILABLE", "{ended:?}");
    // Carol (capacity 2) asks through every node at once, twice each: two claims, whichever
    // nodes they went through, and the others refused.
    RoutingServiceClient::new(channels[1].clone())
        .upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent("carol", 2)] })
        .await
        .unwrap();
    set(&channels[1], "carol", pb::AgentState::Available, None).await.unwrap();
    let asked = (0..6).map(|i| next(&channels[i % 3], "carol"));
    let answers = futures_util::future::join_all(asked).await;
    let claimed = answers.iter().filter(|a| a.is_ok()).count();
    let refused = answers.iter().filter_map(|a| a.as_ref().err()).map(reason).collect::<Vec<_>>();
    assert_eq!((claimed, refused.len()), (2, 4), "claims and refusals for an agent of capacity 2: {refused:?}");
    assert!(refused.iter().all(|r| r == "AGENT_UNAVAILABLE"), "{refused:?}");
    // Dave and then Erin become available, with room (Alice and Carol are full, Bob gone). A
    // lead routed on one shard goes to Dave, the longest idle; the next, on another shard, to
    // Erin: that shard knows Dave was just sent one.
    set(&channels[0], "bob", pb::AgentState::Offline, None).await.unwrap();
    RoutingServiceClient::new(channels[2].clone())
        .upsert_agents(pb::UpsertAgentsRequest { agents: vec![agent("dave", 3), agent("erin", 3)] })
        .await
        .unwrap();
    set(&channels[0], "dave", pb::AgentState::Available, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    set(&channels[1], "erin", pb::AgentState::Available, None).await.unwrap();
    let other =
        (10..20).map(|i| format!("plain-{i:02}")).find(|id| shard_of(id, SHARDS) != shard_of("plain-06", SHARDS));
    let mut sent = Vec::new();
    for (lead, channel) in [("plain-06", &channels[0]), (other.unwrap().as_str(), &channels[1])] {
        let request = pb::RouteRequest { lead_id: lead.into(), campaign: String::new() };
        let decision = RoutingServiceClient::new(channel.clone()).route(request).await.unwrap().into_inner();
        sent.push(decision.decision.unwrap().target.and_then(|t| t.target));
    }
    let to = |agent: &str| Some(pb::route_target::Target::AgentId(agent.into()));
    assert_eq!(sent, [to("dave"), to("erin")]);
    for node in nodes {
        let (status, log) = node.terminate();
        assert!(status.success(), "a node did not stop cleanly:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_score_in_a_filter_and_a_routing_rule_reads_the_whole_account_on_every_shard() {
    use pb::routing_service_client::RoutingServiceClient;
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _nats, _nodes, channels) = three_nodes(dir.path(), LEASE_MS).await;
    // Only leads of an account scoring 50 or more are called; such leads go to "enterprise".
    let running = running(&channels[0]).await;
    let mut table: toml::Table = running.toml.parse().unwrap();
    let campaign = table["campaigns"]["default"].as_table_mut().unwrap();
    let filter: toml::Table = "attributes = [{ name = \"account.score\", min = 50.0 }]".parse().unwrap();
    campaign.insert("filter".into(), filter.into());
    let routing: toml::Table = "rules = [\
        { name = \"enterprise\", when = \"account.score >= 50\", queue = \"enterprise\", priority = 1 },\
        { name = \"general\", when = \"score >= 0\", queue = \"general\", priority = 1 }]"
        .parse()
        .unwrap();
    table.insert("routing".into(), routing.into());
    let update = pb::UpdateConfigRequest { toml: toml::to_string(&table).unwrap(), expected_version: running.version };
    AdminServiceClient::new(channels[0].clone()).update_config(update).await.unwrap();

    // acme.com's two leads on two shards: a CTO in IT at 640 people (45 fit points) and a sales
    // director (10), and another company's director on a third lead.
    let director = on_another_shard("acme-director", "acme-cto");
    let zone = zone_at_noon();
    let of = |id: &str, phone: &str, account: &str, cto: bool| {
        let mut lead = callable(id, phone, &zone);
        lead.campaigns.clear();
        lead.attributes = [("role".to_string(), text(if cto { "CTO" } else { "Sales Director" }))].into();
        if cto {
            lead.attributes.insert("department".into(), text("IT"));
            lead.attributes.insert("employees".into(), number(640.0));
        }
        lead.attributes.insert("account".into(), text(account));
        lead
    };
    let leads = vec![
        of("acme-cto", "+12125550301", "acme.com", true),
        of(&director, "+12125550302", "acme.com", false),
        of("globex-director", "+12125550303", "globex.com", false),
    ];
    LeadServiceClient::new(channels[1].clone()).upsert_leads(pb::UpsertLeadsRequest { leads }).await.unwrap();
    // acme.com scores 45, whichever shard reads it: nobody may be called.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for channel in &channels {
        assert!(claim(channel, "agent-1").await.is_none(), "no account reaches 50 yet");
    }

    // A pricing view lifts acme.com to 60. Its director becomes callable on its own shard too,
    // though its own score did not move: the shard reads the whole account.
    let pricing = vec![event("acme-cto", "e1", "page_view:/pricing")];
    LeadServiceClient::new(channels[2].clone())
        .record_events(pb::RecordEventsRequest { events: pricing })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut claimed = Vec::new();
    while claimed.len() < 2 {
        assert!(Instant::now() < deadline, "the director's shard never read acme.com's whole score: {claimed:?}");
        match claim(&channels[1], "agent-1").await {
            Some(claim) => claimed.push(claim.lease.unwrap().lead_id),
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    claimed.sort();
    assert_eq!(claimed, ["acme-cto".to_string(), director.clone()]);
    assert!(claim(&channels[0], "agent-1").await.is_none(), "globex.com is still below 50");

    for (lead, rule) in [(director.as_str(), "enterprise"), ("acme-cto", "enterprise"), ("globex-director", "general")]
    {
        let request = pb::RouteRequest { lead_id: lead.into(), campaign: String::new() };
        let decision = RoutingServiceClient::new(channels[0].clone()).route(request).await.unwrap().into_inner();
        assert_eq!(decision.decision.unwrap().rule, rule, "{lead}");
    }
}
