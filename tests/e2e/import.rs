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
    assert!(!ok, "rejected rows fail the import: {output}");
    assert!(output.contains("8 lines, 7 rows, 3 accepted, 4 rejected"), "{output}");
    for expected in [
        "line 4: c-3: row has 3 fields, the header has 7",
        "line 5: c-4: phone: \"12345\" has no country code",
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
    assert!(output.contains("9241 lines, 9240 rows, 9240 accepted, 0 rejected"), "{output}");

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

/// A stored lead by id.
async fn stored(server: &TestServer, id: &str) -> Option<pb::Lead> {
    let request = pb::GetLeadRequest { id: id.into(), include_events: false };
    server.leads().await.get_lead(request).await.ok().and_then(|got| got.into_inner().lead)
}

fn write(dir: &std::path::Path, name: &str, bytes: impl AsRef<[u8]>) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messy_exports_are_stored_as_they_mean_or_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;

    // Excel's BOM and CRLF, quoted commas, doubled quotes and a newline inside quotes, a blank
    // line, and a ragged row.
    let excel = write(
        dir.path(),
        "excel.csv",
        "\u{feff}id,Company,Note,Employees\r\nb-1,\"Acme, Inc\",\"said \"\"call me\"\"\",12\r\n\r\nb-2,Globex,\"two\r\nlines\",7\r\nb-3,Initech\r\n",
    );
    let (ok, output) = import(&server, &excel, &["--id-column", "id"]);
    assert!(!ok && output.contains("6 lines, 3 rows, 2 accepted, 1 rejected"), "{output}");
    assert!(output.contains("line 6: b-3: row has 2 fields, the header has 4"), "{output}");
    let b1 = stored(&server, "b-1").await.unwrap();
    assert_eq!(b1.attributes["Company"], text("Acme, Inc"));
    assert_eq!(b1.attributes["Note"], text("said \"call me\""));
    assert_eq!(b1.attributes["Employees"], number(12.0));
    assert_eq!(stored(&server, "b-2").await.unwrap().attributes["Note"], text("two\r\nlines"));

    // Windows-1252: refused with the fix, nothing stored; then read as what it is.
    let mut latin = b"id,Name\nw-1,M".to_vec();
    latin.extend([0xFC]); // ü
    latin.extend(b"ller\n");
    let latin = write(dir.path(), "latin.csv", latin);
    let (ok, output) = import(&server, &latin, &["--id-column", "id"]);
    assert!(!ok && output.contains("not UTF-8") && output.contains("--encoding windows-1252"), "{output}");
    assert!(stored(&server, "w-1").await.is_none());
    let (ok, output) = import(&server, &latin, &["--id-column", "id", "--encoding", "windows-1252"]);
    assert!(ok, "{output}");
    assert_eq!(stored(&server, "w-1").await.unwrap().attributes["Name"], text("Müller"));

    // A European export: thousands dots are never stored a thousand times too small.
    let euro = write(
        dir.path(),
        "euro.csv",
        "id;Employees;Revenue;Founded\ne-1;1.500;1.234,56;31.12.2025\ne-2;10.000;2,5;01.01.2000\n",
    );
    let (ok, output) = import(&server, &euro, &["--id-column", "id", "--delimiter", ";"]);
    assert!(!ok && output.contains("\"Employees\"") && output.contains("--decimal-comma"), "{output}");
    assert!(stored(&server, "e-1").await.is_none());
    let (ok, output) = import(&server, &euro, &["--id-column", "id", "--delimiter", ";", "--decimal-comma"]);
    assert!(ok, "{output}");
    let e1 = stored(&server, "e-1").await.unwrap();
    assert_eq!(
        (e1.attributes["Employees"].clone(), e1.attributes["Revenue"].clone()),
        (number(1500.0), number(1234.56))
    );
    assert_eq!(e1.attributes["Founded"], text("31.12.2025"));
    assert_eq!(stored(&server, "e-2").await.unwrap().attributes["Revenue"], number(2.5));
    // A header that reads as one column suggests its delimiter.
    let (ok, output) = import(&server, &euro, &["--id-column", "id"]);
    assert!(!ok && output.contains("--delimiter ';'"), "{output}");

    // Types come from the whole file: a zip with a leading zero on line 1003 keeps every zip text.
    let mut zips = String::from("id,Zip,Score,Code\n");
    for n in 0..1001 {
        zips += &format!("z-{n},{},{n},{}\n", 10_000 + n, if n == 1000 { "+49" } else { "7" });
    }
    zips += "z-1001,01067,1e3,8\n";
    let zips = write(dir.path(), "zips.csv", zips);
    let (ok, output) = import(&server, &zips, &["--id-column", "id"]);
    assert!(ok, "{output}");
    let last = stored(&server, "z-1001").await.unwrap();
    assert_eq!(last.attributes["Zip"], text("01067"));
    assert_eq!(last.attributes["Score"], text("1e3"));
    assert_eq!(stored(&server, "z-1000").await.unwrap().attributes["Code"], text("+49"));
    assert_eq!(stored(&server, "z-5").await.unwrap().attributes["Zip"], text("10005"));

    // Duplicate ids: the last line wins, and the import says so.
    let twice = write(dir.path(), "twice.csv", "id,Title\nd-1,Intern\nd-1,CTO\n");
    let (ok, output) = import(&server, &twice, &["--id-column", "id"]);
    assert!(ok && output.contains("on lines 2 and 3") && output.contains("the last line of each wins"), "{output}");
    assert_eq!(stored(&server, "d-1").await.unwrap().attributes["Title"], text("CTO"));

    // One unclosed quote: every physical line is counted, and the one where it opened is named.
    let quote = write(
        dir.path(),
        "quote.csv",
        "id,Item,Company\nq-1,desk,Acme\nq-2,chair,Acme\nq-3,27\" monitor,\"Acme, Inc\nq-4,desk,Globex\nq-5,desk,Globex\nq-6,a,b\nq-7,a,b\nq-8,a,b\nq-9,a,b\nq-10,a,b\n",
    );
    let errors = dir.path().join("errors.csv");
    let (ok, output) = import(&server, &quote, &["--id-column", "id", "--errors", errors.to_str().unwrap()]);
    assert!(!ok && output.contains("11 lines, 3 rows, 2 accepted, 1 rejected"), "{output}");
    assert!(output.contains("line 4: q-3: a quote opened on line 4 never closes"), "{output}");
    assert!(stored(&server, "q-4").await.is_none());
    let report = std::fs::read_to_string(&errors).unwrap();
    let mut rows = csv::Reader::from_path(&errors).unwrap();
    assert_eq!(rows.headers().unwrap(), vec!["id", "Item", "Company", "line", "reason"], "{report}");
    let row = rows.records().next().unwrap().unwrap();
    assert_eq!((&row[0], &row[1], &row[3]), ("q-3", "27\" monitor", "4"), "{report}");
    assert!(row[4].contains("never closes"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reimport_merges_and_never_loosens_consent_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let mapped = [
        "--id-column",
        "id",
        "--phone-column",
        "phone",
        "--time-zone-column",
        "zone",
        "--do-not-call-column",
        "dnc",
        "--email-opt-out-column",
        "no_email",
        "--phone-consent-column",
        "consent",
        "--default-country",
        "US",
    ];
    let full = write(
        dir.path(),
        "full.csv",
        "id,name,title,phone,zone,dnc,no_email,consent,source\nr-1,Ann,VP,(212) 555-0100,America/New_York,yes,1,Y,fair\n",
    );
    let (ok, output) = import(&server, &full, &mapped);
    assert!(ok, "{output}");
    let before = stored(&server, "r-1").await.unwrap();
    let consent = pb::Consent { do_not_call: true, email_opt_out: true, phone_consent: true, objected: false };
    assert_eq!(before.consent, Some(consent));
    assert_eq!((before.phone.as_str(), before.time_zone.as_str()), ("+12125550100", "America/New_York"));

    // A CRM re-sync with three columns: what it does not say is kept.
    let slim = write(dir.path(), "slim.csv", "id,name,title\nr-1,Ann,CTO\n");
    let (ok, output) = import(&server, &slim, &["--id-column", "id"]);
    assert!(ok, "{output}");
    let after = stored(&server, "r-1").await.unwrap();
    assert_eq!(after.consent, Some(consent), "consent kept");
    assert_eq!((after.phone.as_str(), after.time_zone.as_str()), ("+12125550100", "America/New_York"));
    assert_eq!((after.attributes["title"].clone(), after.attributes["source"].clone()), (text("CTO"), text("fair")));

    // Blank cells keep, unless told to clear.
    let blanks = write(dir.path(), "blanks.csv", "id,title,source,phone\nr-1,,,\n");
    let (ok, output) = import(&server, &blanks, &["--id-column", "id", "--phone-column", "phone"]);
    assert!(ok, "{output}");
    let kept = stored(&server, "r-1").await.unwrap();
    assert_eq!((kept.attributes["title"].clone(), kept.phone.as_str()), (text("CTO"), "+12125550100"));
    let (ok, output) = import(&server, &blanks, &["--id-column", "id", "--phone-column", "phone", "--blank", "clears"]);
    assert!(ok, "{output}");
    let cleared = stored(&server, "r-1").await.unwrap();
    assert!(!cleared.attributes.contains_key("title") && cleared.phone.is_empty(), "{cleared:?}");
    assert_eq!(cleared.attributes["name"], text("Ann"), "a column the file lacks is kept");

    // Withdrawing a do-not-call must be explicit.
    let withdraw = write(dir.path(), "withdraw.csv", "id,dnc\nr-1,no\n");
    let (ok, output) = import(&server, &withdraw, &["--id-column", "id", "--do-not-call-column", "dnc"]);
    assert!(!ok && output.contains("consent.do_not_call") && output.contains("--allow-consent-changes"), "{output}");
    assert!(stored(&server, "r-1").await.unwrap().consent.unwrap().do_not_call);
    let allowed = ["--id-column", "id", "--do-not-call-column", "dnc", "--allow-consent-changes"];
    let (ok, output) = import(&server, &withdraw, &allowed);
    assert!(ok, "{output}");
    assert!(!stored(&server, "r-1").await.unwrap().consent.unwrap().do_not_call);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_not_call_in_every_spelling_is_stored_and_never_dialled_and_phones_become_e164() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    let zone = leadscore_tests::zone_at_noon();
    let spellings = ["1", "Y", "y", "yes", "YES", "True", "x", "X", "true"];
    let callable = ["0", "N", "no", "false", ""];
    let mut file = String::from("id,phone,zone,dnc\n");
    for (n, value) in spellings.iter().chain(&callable).enumerate() {
        file += &format!("n-{n},+1 646 555 {:04},{zone},{value}\n", 100 + n);
    }
    file += &format!("n-maybe,+1 646 555 0199,{zone},maybe\n");
    let path = write(dir.path(), "dnc.csv", file);
    let args =
        ["--id-column", "id", "--phone-column", "phone", "--time-zone-column", "zone", "--do-not-call-column", "dnc"];
    let (ok, output) = import(&server, &path, &args);
    assert!(!ok, "{output}");
    assert!(
        output.contains(
            "line 16: n-maybe: consent.do_not_call: \"maybe\" in column \"dnc\" (field 4) is not a yes/no value"
        ),
        "{output}"
    );
    for n in 0..spellings.len() + callable.len() {
        let lead = stored(&server, &format!("n-{n}")).await.unwrap();
        assert_eq!(lead.consent.unwrap().do_not_call, n < spellings.len(), "n-{n}");
    }
    assert!(stored(&server, "n-maybe").await.is_none());

    // The dialer offers the callable five and none of the nine.
    let mut dialer = server.dialer().await;
    let mut claimed = Vec::new();
    loop {
        let request = pb::NextLeadRequest { campaign: String::new(), agent_id: "desk".into() };
        match dialer.next_lead(request).await.unwrap().into_inner().result {
            Some(pb::next_lead_response::Result::Claim(claim)) => claimed.push(claim.lease.unwrap().lead_id),
            _ => break,
        }
    }
    claimed.sort();
    let mut expected: Vec<String> =
        (spellings.len()..spellings.len() + callable.len()).map(|n| format!("n-{n}")).collect();
    expected.sort();
    assert_eq!(claimed, expected);

    // Phones as people write them, in E.164; what cannot be read is rejected by line.
    let phones = write(
        dir.path(),
        "phones.csv",
        "id,phone\np-1,+49 30 123456\np-2,(212) 555-0100\np-3,212.555.0100\np-4,0049301234567\np-5,212-555-0123\np-6,call me\n",
    );
    let (ok, output) =
        import(&server, &phones, &["--id-column", "id", "--phone-column", "phone", "--default-country", "US"]);
    assert!(!ok && output.contains("line 7: p-6: phone: \"call me\""), "{output}");
    for (id, e164) in
        [("p-1", "+4930123456"), ("p-2", "+12125550100"), ("p-3", "+12125550100"), ("p-5", "+12125550123")]
    {
        assert_eq!(stored(&server, id).await.unwrap().phone, e164, "{id}");
    }
    let german = write(dir.path(), "german.csv", "id,phone\np-4,0049301234567\np-7,030 1234567\n");
    let (ok, output) =
        import(&server, &german, &["--id-column", "id", "--phone-column", "phone", "--default-country", "de"]);
    assert!(ok, "{output}");
    assert_eq!(stored(&server, "p-4").await.unwrap().phone, "+49301234567");
    assert_eq!(stored(&server, "p-7").await.unwrap().phone, "+49301234567");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stores_the_batches_sent_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data")).await;
    const ROWS: usize = 200_000;
    let mut file = String::from("id,Role,Employees\n");
    for n in 0..ROWS {
        file += &format!("big-{n},CTO,{}\n", n % 900 + 1);
    }
    let csv = write(dir.path(), "big.csv", file);
    let child = Command::new(binary())
        .args(["import", "--csv", csv.to_str().unwrap(), "--server", &server.address, "--id-column", "id"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let admin = server.admin().await;
    let stored = || {
        let mut admin = admin.clone();
        async move { admin.stats(pb::StatsRequest {}).await.unwrap().into_inner().leads }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stored().await == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing was stored in 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{text}");
    let said: u64 = text
        .split("interrupted: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of stored rows in {text}"));
    assert!(text.contains("running the same import again is safe"), "{text}");
    let leads = stored().await;
    assert_eq!(leads, said, "{text}");
    assert!(leads > 0 && leads < ROWS as u64, "{leads} of {ROWS}");
    assert!(text.contains(&format!("{leads} rows, {leads} accepted, 0 rejected")), "every row read was sent: {text}");
    drop(admin);
    server.stop().await;
}
