//! Every request converter against mangled requests: valid requests encoded, their bytes
//! flipped, cut or spliced, and whatever still decodes converted. A converter never panics; it
//! converts or refuses naming a field and a rule. `LEADSCORE_FUZZ_CASES` sets the number of
//! cases (default 256).

use leadscore_proto::prost::Message;
use leadscore_proto::v1 as pb;
use proptest::prelude::*;

use super::fields::{self, FieldError};

const NOW_MS: i64 = 1_793_631_600_000;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("LEADSCORE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn text(value: &str) -> pb::AttributeValue {
    pb::AttributeValue { kind: Some(pb::attribute_value::Kind::Text(value.into())) }
}

fn lead() -> pb::Lead {
    pb::Lead {
        id: "lead-1".into(),
        attributes: [("role".to_string(), text("CTO")), ("account".to_string(), text("acme.com"))].into(),
        time_zone: "Europe/Berlin".into(),
        consent: Some(pb::Consent { phone_consent: true, ..Default::default() }),
        campaigns: vec!["spring".into()],
        phone: "+4930123456".into(),
        email: "a@example.com".into(),
        ..Default::default()
    }
}

fn event() -> pb::Event {
    pb::Event {
        id: "e1".into(),
        lead_id: "lead-1".into(),
        kind: "page_view:/pricing".into(),
        at: Some(fields::timestamp_from_ms(NOW_MS - 1000)),
        ..Default::default()
    }
}

/// Damage to an encoded message.
#[derive(Clone, Debug)]
enum Damage {
    Flip(prop::sample::Index, u8),
    Cut(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(at, mask)| Damage::Flip(at, mask)),
        any::<prop::sample::Index>().prop_map(Damage::Cut),
        (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Damage::Insert(at, b)),
    ];
    prop::collection::vec(one, 0..6)
}

/// `message` encoded, damaged, and decoded again if it still decodes.
fn mangle<M: Message + Default>(message: &M, damage: &[Damage]) -> Option<M> {
    let mut bytes = message.encode_to_vec();
    for d in damage {
        match d {
            Damage::Flip(at, mask) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            Damage::Cut(at) if !bytes.is_empty() => bytes.truncate(at.index(bytes.len())),
            Damage::Insert(at, inserted) => {
                let at = at.index(bytes.len() + 1);
                bytes.splice(at..at, inserted.iter().copied());
            }
            _ => {}
        }
    }
    M::decode(bytes.as_slice()).ok()
}

/// A refusal names a field and a rule.
fn refusal<T>(converted: Result<T, FieldError>) -> Result<(), TestCaseError> {
    if let Err(e) = converted {
        prop_assert!(!e.field.is_empty() && !e.rule.is_empty(), "{e:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn lead_writes(damage in damage(), id in any::<String>(), zone in any::<String>()) {
        let mut odd = lead();
        (odd.id, odd.time_zone) = (id, zone);
        let request = pb::UpsertLeadsRequest { leads: vec![lead(), odd] };
        if let Some(request) = mangle(&request, &damage) {
            refusal(super::lead::convert::upsert_batch(&request.leads, 10_000))?;
        }
        let request = pb::RecordEventsRequest { events: vec![event(), event()] };
        if let Some(request) = mangle(&request, &damage) {
            for (i, event) in request.events.iter().enumerate() {
                refusal(super::lead::convert::event_input(&fields::element("events", i), event, None, NOW_MS))?;
            }
        }
        if let Some(request) = mangle(&pb::GetLeadRequest { id: "lead-1".into(), include_events: true }, &damage) {
            refusal(fields::id("id", &request.id))?;
        }
    }

    #[test]
    fn scoring_requests(damage in damage(), campaign in any::<String>()) {
        let request = pb::ScoreRequest { lead: Some(lead()), events: vec![event()], campaign, explain: true };
        if let Some(request) = mangle(&request, &damage) {
            refusal(super::scoring::convert::inline_lead("", &request, 1000, NOW_MS))?;
        }
        let filter = pb::AttributeFilter {
            attribute: "account.score".into(),
            r#match: Some(pb::attribute_filter::Match::Range(pb::NumericRange { min: Some(50.0), max: None })),
        };
        let request = pb::TopLeadsRequest { limit: 10, bands: vec![4], filters: vec![filter], ..Default::default() };
        if let Some(request) = mangle(&request, &damage) {
            refusal(super::scoring::convert::top_query(&request))?;
        }
        if let Some(request) = mangle(&pb::TopAccountsRequest { limit: 10, leads_per_account: 3, ..Default::default() }, &damage) {
            refusal(super::scoring::convert::top_accounts(&request))?;
        }
        let request = pb::AuditLogRequest {
            from: Some(fields::timestamp_from_ms(NOW_MS - 10_000)),
            to: Some(fields::timestamp_from_ms(NOW_MS)),
            kinds: vec![1, 3],
        };
        if let Some(request) = mangle(&request, &damage) {
            refusal(super::admin::convert::audit_query(&request, NOW_MS))?;
        }
    }

    #[test]
    fn dialer_and_routing_requests(damage in damage(), agent in any::<String>()) {
        let outcome = pb::Outcome {
            lease_id: "42-lead-1".into(),
            result: 5,
            callback_at: Some(fields::timestamp_from_ms(NOW_MS + 3_600_000)),
            note: "asked for a demo".into(),
            ..Default::default()
        };
        if let Some(request) = mangle(&pb::ReportOutcomeRequest { outcome: Some(outcome) }, &damage) {
            refusal(super::dialer::convert::outcome_in("outcome", request.outcome.as_ref(), NOW_MS))?;
        }
        if let Some(request) = mangle(&pb::NextLeadRequest { campaign: String::new(), agent_id: agent.clone() }, &damage) {
            refusal(fields::agent_id("agent_id", &request.agent_id))?;
        }
        let skills = pb::AgentSkills { languages: vec!["en".into(), agent], tier: 2, ..Default::default() };
        let described = pb::Agent { id: "a-1".into(), name: "Ann".into(), skills: Some(skills), capacity: 2, state: 0 };
        if let Some(request) = mangle(&pb::UpsertAgentsRequest { agents: vec![described] }, &damage) {
            refusal(super::routing::convert::agents_in(&request.agents))?;
        }
    }
}
