//! Shared generators for the benches: leads and events shaped like real ones.

use leadscore::store::lead::{Consent, Value};
use leadscore::store::mutation::{EventInput, LeadInput, fingerprint};

const ROLES: &[&str] = &["CEO", "CTO", "Director", "Project Manager", "Assistant", "Analyst"];
const DEPARTMENTS: &[&str] = &["IT", "Finance", "Marketing", "Sales", "Operations"];
const KINDS: &[&str] = &["email_open", "email_click", "page_view:/pricing", "webinar_attended", "content_download"];

/// A lead with ten attributes (six text, three numbers, one flag), as a CRM would send it.
pub fn lead(i: u64) -> LeadInput {
    let text = |s: &str| Value::Text(s.into());
    LeadInput {
        id: format!("{:08x}-5132-4136-86fa-dcc88c88f482", i).into(),
        attributes: vec![
            ("role".into(), text(ROLES[i as usize % ROLES.len()])),
            ("department".into(), text(DEPARTMENTS[i as usize % DEPARTMENTS.len()])),
            ("country".into(), text("Germany")),
            ("industry".into(), text("Software")),
            ("lead_source".into(), text("Organic Search")),
            ("city".into(), text("Berlin")),
            ("employees".into(), Value::Number((i % 5000) as f64)),
            ("budget".into(), Value::Number((i % 100) as f64 * 1000.0)),
            ("total_visits".into(), Value::Number((i % 30) as f64)),
            ("newsletter".into(), Value::Flag(i.is_multiple_of(2))),
        ],
        time_zone: Some(chrono_tz::Europe::Berlin),
        consent: Consent::default(),
        campaigns: Vec::new(),
        owner: Default::default(),
        phone: Default::default(),
        email: Default::default(),
    }
}

/// Event `n` of lead `i`: a UUID-sized id, a kind, a time; no value or properties.
pub fn event(i: u64, n: u64) -> EventInput {
    EventInput {
        lead_id: lead(i).id,
        fingerprint: fingerprint(&format!("{i:08x}-{n:04x}-4136-86fa-dcc88c88f482")),
        kind: KINDS[(i + n) as usize % KINDS.len()].into(),
        at_ms: 1_700_000_000_000 + (n as i64) * 3_600_000,
        value: 0.0,
        properties: Vec::new(),
    }
}
