//! The terminal commands against a real server: `leadscore top`, `explain`, `status` and
//! `score --csv` print what the gRPC answers say, and take a token where the server wants one.

use std::process::Command;

use leadscore::config::TokenConfig;
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, binary, config, event, number, text, workspace_root};
use tokio_stream::StreamExt;

fn leadscore(server: &TestServer, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary()).args(args).args(["--server", &server.address]).output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

async fn seeded(dir: &std::path::Path) -> TestServer {
    let server = TestServer::start(dir).await;
    let roles = ["CTO", "VP Sales", "Engineer", "Student"];
    let leads = (0..12)
        .map(|n| pb::Lead {
            id: format!("lead-{n:02}"),
            attributes: [("role".to_string(), text(roles[n % 4])), ("employees".to_string(), number(80.0 * n as f64))]
                .into(),
            ..Default::default()
        })
        .collect();
    server.upsert(leads).await;
    let events = (0..12).filter(|n| n % 2 == 0).map(|n| event(&format!("lead-{n:02}"), "e1", "demo_request")).collect();
    server.leads().await.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_explain_and_status_print_the_servers_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = seeded(dir.path()).await;
    let mut scoring = server.scoring().await;

    let (ok, printed) = leadscore(&server, &["top", "--limit", "5"]);
    assert!(ok, "{printed}");
    let request = pb::TopLeadsRequest { limit: 5, explain: true, ..Default::default() };
    let top: Vec<pb::RankedLead> =
        scoring.top_leads(request).await.unwrap().into_inner().map(|r| r.unwrap()).collect().await;
    let rows: Vec<&str> = printed.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{printed}");
    for (row, ranked) in rows.iter().zip(&top) {
        let score = ranked.score.as_ref().unwrap();
        let columns: Vec<&str> = row.split_whitespace().collect();
        let expected = [ranked.rank.to_string(), score.lead_id.clone(), format!("{:.1}", score.score)];
        assert_eq!(columns[..3], expected, "{printed}");
        let factors = score.scorers.iter().flat_map(|s| &s.top_factors);
        let factor = factors.max_by(|a, b| a.contribution.abs().total_cmp(&b.contribution.abs())).unwrap();
        assert!(row.ends_with(&format!("{} ({:+.1})", factor.detail, factor.contribution)), "{row} lacks {factor:?}");
    }

    let best = top[0].score.as_ref().unwrap();
    let (ok, printed) = leadscore(&server, &["explain", &best.lead_id]);
    assert!(ok, "{printed}");
    let explained = scoring.explain(pb::ExplainRequest {
        contact_curve: false,
        lead_id: best.lead_id.clone(),
        campaign: String::new(),
    });
    let explained = explained.await.unwrap().into_inner().score.unwrap();
    assert!(printed.starts_with(&format!("{} in default: score {:.1}", best.lead_id, explained.score)), "{printed}");
    for part in &explained.scorers {
        let line =
            printed.lines().find(|l| l.trim_start().starts_with(&part.scorer)).unwrap_or_else(|| panic!("{printed}"));
        assert!(line.contains(&format!("{:+.1}", part.contribution)), "{line}");
        assert_eq!(part.contribution > 0.0, line.contains('█'), "a bar for each part that adds: {line}");
    }
    let (ok, printed) = leadscore(&server, &["explain", "nobody"]);
    assert!(!ok && printed.contains("NotFound"), "{printed}");

    let (ok, printed) = leadscore(&server, &["status"]);
    assert!(ok, "{printed}");
    assert!(printed.starts_with("leads 12, events 6, erased 0"), "{printed}");
    for scorer in ["fit", "engagement"] {
        assert!(printed.lines().any(|l| l.starts_with(scorer) && l.contains("active")), "{printed}");
    }
    let board = server.dialer().await.wallboard(pb::WallboardRequest::default()).await.unwrap().into_inner();
    let queue = printed.lines().find(|l| l.starts_with("default")).unwrap();
    let figures: Vec<&str> = queue.split_whitespace().take(3).collect();
    assert_eq!(figures, ["default", &board.queued.to_string(), &board.callable.to_string()], "{printed}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_csv_writes_each_row_with_what_score_batch_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let csv = dir.path().join("form.csv");
    std::fs::write(&csv, "id,role,employees\nf-1,CTO,640\nf-2,Student,3\nf-3,\"VP, Sales\",120\n").unwrap();
    let out = dir.path().join("scored.csv");
    let (ok, printed) = leadscore(
        &server,
        &["score", "--csv", csv.to_str().unwrap(), "--out", out.to_str().unwrap(), "--id-column", "id"],
    );
    assert!(ok, "{printed}");
    let written = std::fs::read_to_string(&out).unwrap();
    let mut rows = csv::Reader::from_reader(written.as_bytes());
    assert_eq!(
        rows.headers().unwrap().iter().collect::<Vec<_>>(),
        ["id", "role", "employees", "score", "band", "grade"]
    );
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    let inputs = [("f-1", "CTO", 640.0), ("f-2", "Student", 3.0), ("f-3", "VP, Sales", 120.0)];
    let mut scoring = server.scoring().await;
    for (row, (id, role, employees)) in rows.iter().zip(inputs) {
        let lead = pb::Lead {
            id: id.into(),
            attributes: [("role".to_string(), text(role)), ("employees".to_string(), number(employees))].into(),
            ..Default::default()
        };
        let request = pb::ScoreRequest { lead: Some(lead), ..Default::default() };
        let score = scoring.score(request).await.unwrap().into_inner().score.unwrap();
        let band = pb::Band::try_from(score.band).unwrap().as_str_name().trim_start_matches("BAND_").to_lowercase();
        assert_eq!(
            row.iter().collect::<Vec<_>>(),
            [id, role, &employees.to_string(), &format!("{:.2}", score.score), &band, &score.grade]
        );
    }

    // The real export: every row scored, none stored.
    let leads = workspace_root().join("../shared/data/leads/Leads.csv");
    let (ok, printed) = leadscore(
        &server,
        &["score", "--csv", leads.to_str().unwrap(), "--out", out.to_str().unwrap(), "--id-column", "Prospect ID"],
    );
    assert!(ok, "{printed}");
    assert!(printed.contains("scored 9240 rows"), "{printed}");
    let scored = csv::Reader::from_path(&out).unwrap().records().count();
    assert_eq!(scored, 9240);
    let stats = server.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.leads, 0, "scoring a file stores nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_take_a_token_where_the_server_wants_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let sha256 = leadscore::config::tokens::hex(&leadscore::config::tokens::digest("ls_terminal"));
    config.auth.tokens.push(TokenConfig { name: "ops".into(), sha256, roles: vec!["admin".into()] });
    let server = TestServer::try_start(config, std::sync::Arc::new(leadscore::clock::SystemClock)).await.unwrap();
    let (ok, printed) = leadscore(&server, &["status"]);
    assert!(!ok && printed.contains("Unauthenticated"), "{printed}");
    let (ok, printed) = leadscore(&server, &["status", "--token", "ls_terminal"]);
    assert!(ok && printed.starts_with("leads 0"), "{printed}");
    server.stop().await;
}
