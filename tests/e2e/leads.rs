//! LeadService: round trips, idempotent events, all-or-nothing batches, validation, erasure.

use leadscore_proto::tonic::Code;
use leadscore_proto::v1 as pb;
use leadscore_tests::{TestServer, event, lead, number, text, timestamp};

#[tokio::test]
async fn upserted_leads_read_back_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    let mut sent = lead("lead-1");
    sent.attributes.insert("paying".into(), pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Flag(true)) });
    sent.owner = "team-emea".into();
    let created =
        leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![sent.clone(), lead("lead-2")] }).await.unwrap();
    assert_eq!((created.get_ref().created, created.get_ref().updated), (2, 0));

    let got =
        leads.get_lead(pb::GetLeadRequest { id: "lead-1".into(), include_events: false }).await.unwrap().into_inner();
    let mut stored = got.lead.unwrap();
    assert!(stored.created_at.is_some() && stored.updated_at.is_some());
    stored.created_at = None;
    stored.updated_at = None;
    assert_eq!(stored, sent);
    assert_eq!(got.event_count, 0);

    let missing = leads.get_lead(pb::GetLeadRequest { id: "nobody".into(), include_events: false }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn an_upsert_replaces_the_profile_and_keeps_events_and_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("a")] }).await.unwrap();
    leads.record_events(pb::RecordEventsRequest { events: vec![event("a", "e1", "email_open")] }).await.unwrap();
    let before =
        leads.get_lead(pb::GetLeadRequest { id: "a".into(), include_events: false }).await.unwrap().into_inner();

    let mut changed = lead("a");
    changed.attributes = [("role".to_string(), text("Director"))].into();
    changed.phone.clear();
    let response = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![changed] }).await.unwrap().into_inner();
    assert_eq!((response.created, response.updated), (0, 1));

    let after =
        leads.get_lead(pb::GetLeadRequest { id: "a".into(), include_events: false }).await.unwrap().into_inner();
    let (before_lead, after_lead) = (before.lead.unwrap(), after.lead.unwrap());
    assert_eq!(after_lead.attributes, [("role".to_string(), text("Director"))].into());
    assert_eq!(after_lead.phone, "");
    assert_eq!(after_lead.created_at, before_lead.created_at);
    assert_eq!(after.event_count, 1);
    server.stop().await;
}

#[tokio::test]
async fn re_sent_events_are_recognised_and_never_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("a"), lead("b")] }).await.unwrap();

    let mut pricing = event("a", "e1", "page_view:/pricing");
    pricing.at = Some(timestamp(1_700_000_100));
    pricing.value = 42.5;
    pricing.properties = [("utm_source".to_string(), text("newsletter"))].into();
    let mut webinar = event("a", "e2", "webinar_attended");
    webinar.at = Some(timestamp(1_700_000_000));
    let first = pb::RecordEventsRequest { events: vec![pricing.clone(), webinar.clone(), pricing.clone()] };
    let response = leads.record_events(first).await.unwrap().into_inner();
    assert_eq!((response.recorded, response.duplicates), (2, 1));

    // The same event id for another lead is another event.
    let again = pb::RecordEventsRequest { events: vec![webinar, event("b", "e1", "email_open"), pricing] };
    let response = leads.record_events(again).await.unwrap().into_inner();
    assert_eq!((response.recorded, response.duplicates), (1, 2));

    let got = leads.get_lead(pb::GetLeadRequest { id: "a".into(), include_events: true }).await.unwrap().into_inner();
    assert_eq!(got.event_count, 2);
    let kinds: Vec<&str> = got.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["webinar_attended", "page_view:/pricing"], "oldest first");
    let stored = &got.events[1];
    assert_eq!(stored.at, Some(timestamp(1_700_000_100)));
    assert_eq!(stored.value, 42.5);
    assert_eq!(stored.properties, [("utm_source".to_string(), text("newsletter"))].into());
    assert_ne!(stored.id_fingerprint, got.events[0].id_fingerprint);

    let stats = server.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.events, 3);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_with_one_bad_item_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("known")] }).await.unwrap();

    let mut bad = lead("bad");
    bad.time_zone = "Nowhere/Atlantis".into();
    let status = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("good"), bad] }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("leads[1].time_zone:"), "{}", status.message());
    let status = leads.get_lead(pb::GetLeadRequest { id: "good".into(), include_events: false }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "the valid lead of the refused batch was not stored");

    let events = vec![event("known", "e1", "email_open"), event("unknown", "e2", "email_open")];
    let status = leads.record_events(pb::RecordEventsRequest { events }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("events[1].lead_id"), "{}", status.message());
    let got =
        leads.get_lead(pb::GetLeadRequest { id: "known".into(), include_events: false }).await.unwrap().into_inner();
    assert_eq!(got.event_count, 0, "the valid event of the refused batch was not recorded");
    server.stop().await;
}

#[tokio::test]
async fn every_validation_rule_answers_invalid_argument_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("a")] }).await.unwrap();
    let mut admin = server.admin().await;
    let before = admin.stats(pb::StatsRequest {}).await.unwrap().into_inner();

    let with = |change: fn(&mut pb::Lead)| {
        let mut l = lead("x");
        change(&mut l);
        vec![l]
    };
    let lead_cases: Vec<(Vec<pb::Lead>, &str)> = vec![
        (vec![], "leads: must hold 1-10000 items, got 0"),
        (with(|l| l.id.clear()), "leads[0].id: must be 1-128 bytes, got 0"),
        (with(|l| l.id = "x".repeat(129)), "leads[0].id: must be 1-128 bytes, got 129"),
        (with(|l| l.id = "a\nb".into()), "leads[0].id: must not contain control characters"),
        (with(|l| l.time_zone = "Mars/Olympus".into()), "leads[0].time_zone: unknown IANA time zone"),
        (with(|l| l.phone = "0301234".into()), "leads[0].phone: must be E.164"),
        (with(|l| l.email = "not-an-address".into()), "leads[0].email: must be an e-mail address"),
        (with(|l| l.owner = "o".repeat(200)), "leads[0].owner: must be at most 128 bytes"),
        (with(|l| l.campaigns = vec![String::new()]), "leads[0].campaigns[0]: name must be 1-64 bytes"),
        (with(|l| l.campaigns = vec!["c".into(); 33]), "leads[0].campaigns: at most 32 allowed"),
        (
            with(|l| l.attributes = (0..65).map(|i| (format!("a{i}"), number(1.0))).collect()),
            "leads[0].attributes: at most 64 allowed",
        ),
        (with(|l| l.attributes = [("n".repeat(65), number(1.0))].into()), "name must be 1-64 bytes, got 65"),
        (with(|l| l.attributes = [(String::new(), number(1.0))].into()), "name must be 1-64 bytes, got 0"),
        (with(|l| l.attributes = [("big".into(), text(&"t".repeat(1025)))].into()), "text must be at most 1024 bytes"),
        (with(|l| l.attributes = [("nan".into(), number(f64::NAN))].into()), "number must be finite"),
        (
            with(|l| l.attributes = [("empty".into(), pb::AttributeValue { kind: None })].into()),
            "must hold text, number or flag",
        ),
        (vec![lead("twice"), lead("twice")], "leads[1].id: \"twice\" appears twice in the batch"),
    ];
    for (batch, expected) in lead_cases {
        let status = leads.upsert_leads(pb::UpsertLeadsRequest { leads: batch }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}");
        assert!(status.message().contains(expected), "expected {expected:?} in {:?}", status.message());
    }

    let with_event = |change: fn(&mut pb::Event)| {
        let mut e = event("a", "e", "email_open");
        change(&mut e);
        vec![e]
    };
    let event_cases: Vec<(Vec<pb::Event>, &str)> = vec![
        (vec![], "events: must hold 1-10000 items, got 0"),
        (with_event(|e| e.id.clear()), "events[0].id: must be 1-128 bytes, got 0"),
        (with_event(|e| e.kind.clear()), "events[0].kind: must be 1-128 bytes, got 0"),
        (with_event(|e| e.lead_id.clear()), "events[0].lead_id: must be 1-128 bytes"),
        (with_event(|e| e.at = Some(timestamp(946_684_799))), "events[0].at: must lie between 2000-01-01"),
        (with_event(|e| e.at = Some(timestamp(4_102_444_800))), "events[0].at: must lie between 2000-01-01"),
        (
            with_event(|e| e.at = Some(leadscore_proto::prost_types::Timestamp { seconds: 1_700_000_000, nanos: -1 })),
            "events[0].at: nanos must be 0-999999999",
        ),
        (with_event(|e| e.value = f64::INFINITY), "events[0].value: must be finite"),
        (
            with_event(|e| e.properties = (0..17).map(|i| (format!("p{i}"), number(1.0))).collect()),
            "events[0].properties: at most 16 allowed",
        ),
    ];
    for (events, expected) in event_cases {
        let status = leads.record_events(pb::RecordEventsRequest { events }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}");
        assert!(status.message().contains(expected), "expected {expected:?} in {:?}", status.message());
    }

    for (id, expected) in
        [("", "id: must be 1-128 bytes, got 0"), (&*"y".repeat(129), "id: must be 1-128 bytes, got 129")]
    {
        let status = leads.get_lead(pb::GetLeadRequest { id: id.into(), include_events: false }).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, expected));
        let status = leads.erase_lead(pb::EraseLeadRequest { id: id.into() }).await.unwrap_err();
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, expected));
    }

    let after = admin.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (after.leads, after.events, after.last_lsn),
        (before.leads, before.events, before.last_lsn),
        "nothing was applied"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_erased_lead_is_gone_and_cannot_come_back_by_id_phone_or_email() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut leads = server.leads().await;
    leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("gone"), lead("kept")] }).await.unwrap();
    let events =
        vec![event("gone", "e1", "email_open"), event("gone", "e2", "email_click"), event("kept", "e1", "email_open")];
    leads.record_events(pb::RecordEventsRequest { events }).await.unwrap();

    let erased = leads.erase_lead(pb::EraseLeadRequest { id: "gone".into() }).await.unwrap().into_inner();
    assert_eq!(erased.events_erased, 2);
    let status = leads.get_lead(pb::GetLeadRequest { id: "gone".into(), include_events: false }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = leads.erase_lead(pb::EraseLeadRequest { id: "gone".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let status = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![lead("gone")] }).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "leads[0].id: this lead was erased and may not be stored again");

    // The same person under a new id: the phone number gives them away ...
    let mut same_phone = lead("new-id");
    same_phone.phone = lead("gone").phone;
    same_phone.email.clear();
    let status = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![same_phone] }).await.unwrap_err();
    assert_eq!(status.message(), "leads[0].phone: this lead was erased and may not be stored again");
    // ... and so does the e-mail address, whatever its case.
    let mut same_email = lead("new-id");
    same_email.phone.clear();
    same_email.email = "GONE@Example.com".into();
    let status = leads.upsert_leads(pb::UpsertLeadsRequest { leads: vec![same_email] }).await.unwrap_err();
    assert_eq!(status.message(), "leads[0].email: this lead was erased and may not be stored again");

    let status = leads
        .record_events(pb::RecordEventsRequest { events: vec![event("gone", "e3", "email_open")] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let stats = server.admin().await.stats(pb::StatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.leads, stats.events, stats.suppressed), (1, 1, 3));
    server.stop().await;
}
