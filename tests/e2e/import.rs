//! `leadscore import`: a CSV export streamed into a running server.

use std::process::Command;

use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, binary, number, text, workspace_root};

fn import(server: &TestServer, csv: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let output = Command::new(binary())
        .args(["import", "--csv", csv.to_str().unwrap(), "--server", &server.address])
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_csv_loads_with_typed_attributes_and_its_bad_rows_are_reported_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let csv = dir.path().join("crm.csv");
    std::fs::write(
        &csv,
        "id,Role,Employees,Newsletter,Phone,Zone,Zip\n\
         c-1,CTO,640,Yes,+4930123456,Europe/Berlin,01234\n\
         c-2,Director,120,no,,America/Chicago,60601\n\
         c-3,Intern,3\n\
         c-4,Analyst,50,yes,12345,Europe/Paris,75001\n\
         ,Nobody,1,no,,,\n\
         c-5,Buyer,7,no,,Mars/Base,1\n\
         c-6,\"Head, Sales\",1000,YES,,,\n",
    )
    .unwrap();
    let (ok, output) =
        import(&server, &csv, &["--id-column", "id", "--phone-column", "Phone", "--time-zone-column", "Zone"]);
    assert!(ok, "{output}");
    assert!(output.contains("7 rows, 3 accepted, 4 rejected"), "{output}");
    for expected in [
        "line 4: c-3: row has 3 fields, the header has 7",
        "line 5: c-4: lead.phone: must be E.164",
        "line 6: lead.id: must be 1-128 bytes, got 0",
        "line 7: c-5: lead.time_zone: unknown IANA time zone \"Mars/Base\"",
    ] {
        assert!(output.contains(expected), "{expected:?} missing from {output}");
    }

    let mut leads = server.leads().await;
    let got = leads.get_lead(pb::GetLeadRequest { id: "c-1".into(), include_events: false }).await.unwrap();
    let lead = got.into_inner().lead.unwrap();
    assert_eq!(lead.phone, "+4930123456");
    assert_eq!(lead.time_zone, "Europe/Berlin");
    let flag = pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Flag(true)) };
    let expected = [
        ("Role".to_string(), text("CTO")),
        ("Employees".to_string(), number(640.0)),
        ("Newsletter".to_string(), flag),
        ("Zip".to_string(), text("01234")),
    ];
    assert_eq!(lead.attributes, expected.into(), "columns typed by content, codes kept as text");
    let got = leads.get_lead(pb::GetLeadRequest { id: "c-6".into(), include_events: false }).await.unwrap();
    assert_eq!(got.into_inner().lead.unwrap().attributes["Role"], text("Head, Sales"));
    server.stop().await;
}

/// The real lead dataset beside the repository (`../shared/data/leads/Leads.csv`), which CI
/// provides; it may not be copied into the repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_leads_dataset_loads_completely() {
    let csv = workspace_root().join("../shared/data/leads/Leads.csv");
    assert!(csv.exists(), "{} is missing: the shared data must sit beside the repository", csv.display());
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let (ok, output) = import(&server, &csv, &["--id-column", "Prospect ID", "--do-not-call-column", "Do Not Call"]);
    assert!(ok, "{output}");
    assert!(output.contains("9240 rows, 9240 accepted, 0 rejected"), "{output}");

    let stats = server.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.leads, 9240);
    let mut leads = server.leads().await;
    let got =
        leads.get_lead(pb::GetLeadRequest { id: "2a272436-5132-4136-86fa-dcc88c88f482".into(), include_events: false });
    let lead = got.await.unwrap().into_inner().lead.unwrap();
    assert_eq!(lead.attributes["Lead Source"], text("Organic Search"));
    assert_eq!(lead.attributes["TotalVisits"], number(5.0));
    assert_eq!(lead.attributes["Total Time Spent on Website"], number(674.0));
    assert_eq!(lead.attributes["Converted"], number(0.0));
    assert_eq!(
        lead.attributes["Do Not Email"],
        pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Flag(false)) }
    );
    assert!(!lead.attributes.contains_key("Country") || lead.attributes["Country"] == text("India"));
    server.stop().await;
}
