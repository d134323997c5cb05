//! `LeadService`'s messages: leads and events checked into store input, stored leads out.
//!
//! Stored text leaves as `str::to_owned(&name)`: `to_string` on an `Arc<str>` or a
//! `CompactString` goes through `Display`, a formatter and a growing buffer (2% of a `GetLead`).

use crate::api::fields::*;
use leadscore_proto::v1 as pb;
use leadscore_store::Store;
use leadscore_store::lead::{Attributes, Consent, Lead, LeadId, Profile, Value};
use leadscore_store::merge::Merge;
use leadscore_store::mutation::{self, EventInput, LeadInput};
use std::collections::HashSet;
use std::fmt;

/// An import's merge rule, checked: at most 1024 fields, each a name of 1-64 bytes.
pub fn merge_in(merge: &pb::ImportMerge) -> Result<Merge> {
    if merge.fields.len() > 1024 {
        return fail("merge.fields", format!("must hold at most 1024 names, got {}", merge.fields.len()));
    }
    let mut fields = HashSet::new();
    for (i, name) in merge.fields.iter().enumerate() {
        fields.insert(self::name(&element("merge.fields", i), name)?);
    }
    Ok(Merge { fields, blank_clears: merge.blank_clears, allow_consent_changes: merge.allow_consent_changes })
}

/// A lead as a client sent it, checked.
pub fn lead_input(field: &(impl fmt::Display + ?Sized), lead: &pb::Lead) -> Result<LeadInput> {
    let consent = lead.consent.unwrap_or_default();
    if lead.campaigns.len() > MAX_CAMPAIGNS {
        return fail(at(field, ".campaigns"), format!("at most {MAX_CAMPAIGNS} allowed, got {}", lead.campaigns.len()));
    }
    let campaigns = lead
        .campaigns
        .iter()
        .enumerate()
        .map(|(i, c)| name(&at(&at(field, ".campaigns"), Index(i)), c))
        .collect::<Result<Vec<_>>>()?;
    if lead.owner.len() > MAX_ID_BYTES {
        return fail(at(field, ".owner"), format!("must be at most {MAX_ID_BYTES} bytes, got {}", lead.owner.len()));
    }
    Ok(LeadInput {
        id: id(&at(field, ".id"), &lead.id)?,
        attributes: attributes(&at(field, ".attributes"), &lead.attributes, MAX_ATTRIBUTES)?,
        time_zone: time_zone(&at(field, ".time_zone"), &lead.time_zone)?,
        consent: Consent {
            do_not_call: consent.do_not_call,
            email_opt_out: consent.email_opt_out,
            phone_consent: consent.phone_consent,
            objected: consent.objected,
        },
        campaigns,
        owner: lead.owner.as_str().into(),
        phone: phone(&at(field, ".phone"), &lead.phone)?,
        email: email(&at(field, ".email"), &lead.email)?,
    })
}

/// A batch of leads for `UpsertLeads`: every lead valid and no id twice.
pub fn upsert_batch(leads: &[pb::Lead], max: usize) -> Result<Vec<LeadInput>> {
    batch_len("leads", leads.len(), max)?;
    let mut seen = HashSet::new();
    leads
        .iter()
        .enumerate()
        .map(|(i, lead)| {
            let input = lead_input(&element("leads", i), lead)?;
            if !seen.insert(input.id.clone()) {
                return fail(format!("leads[{i}].id"), format!("{:?} appears twice in the batch", input.id));
            }
            Ok(input)
        })
        .collect()
}

/// An event as given; `of_lead` is the lead it belongs to when the request names that lead
/// elsewhere (an inline lead's events), else the event's own `lead_id` is checked.
pub fn event_input(
    field: &(impl fmt::Display + ?Sized),
    event: &pb::Event,
    of_lead: Option<&LeadId>,
    now_ms: i64,
) -> Result<EventInput> {
    if !event.value.is_finite() {
        return fail(at(field, ".value"), format!("must be finite, got {}", event.value));
    }
    let kind = &event.kind;
    if kind.is_empty() || kind.len() > MAX_ID_BYTES {
        return fail(at(field, ".kind"), format!("must be 1-{MAX_ID_BYTES} bytes, got {}", kind.len()));
    }
    Ok(EventInput {
        lead_id: match of_lead {
            Some(lead_id) => lead_id.clone(),
            None => id(&at(field, ".lead_id"), &event.lead_id)?,
        },
        fingerprint: mutation::fingerprint(&id(&at(field, ".id"), &event.id)?),
        kind: kind.as_str().into(),
        at_ms: timestamp(&at(field, ".at"), event.at.as_ref(), now_ms)?,
        value: event.value,
        properties: attributes(&at(field, ".properties"), &event.properties, MAX_PROPERTIES)?,
    })
}

fn attributes_out(store: &Store, attributes: &Attributes) -> std::collections::BTreeMap<String, pb::AttributeValue> {
    use pb::attribute_value::Kind;
    store.with_attribute_names(|names| {
        attributes
            .iter()
            .map(|(sym, v)| {
                let kind = match v {
                    Value::Text(t) => Kind::Text(str::to_owned(t)),
                    Value::Number(n) => Kind::Number(*n),
                    Value::Flag(b) => Kind::Flag(*b),
                };
                (str::to_owned(&names[sym.index()]), pb::AttributeValue { kind: Some(kind) })
            })
            .collect()
    })
}

/// A stored lead as a message, with its events if asked.
pub fn lead_out(store: &Store, id: &str, lead: &Lead, with_events: bool) -> pb::GetLeadResponse {
    let no_profile = Profile::default();
    let profile = lead.profile().unwrap_or(&no_profile);
    let out = pb::Lead {
        id: id.to_owned(),
        attributes: attributes_out(store, &lead.attributes),
        time_zone: lead.time_zone.map(|tz| tz.name().to_owned()).unwrap_or_default(),
        consent: Some(pb::Consent {
            do_not_call: lead.consent.do_not_call,
            email_opt_out: lead.consent.email_opt_out,
            phone_consent: lead.consent.phone_consent,
            objected: lead.consent.objected,
        }),
        campaigns: profile.campaigns.iter().map(|c| str::to_owned(c)).collect(),
        owner: str::to_owned(&profile.owner),
        phone: str::to_owned(&profile.phone),
        email: str::to_owned(&profile.email),
        created_at: Some(timestamp_from_ms(lead.created_at_ms)),
        updated_at: Some(timestamp_from_ms(lead.updated_at_ms)),
    };
    let events = if with_events {
        // Kinds resolved under one turn of the table's lock, before properties take another.
        let kinds: Vec<String> = store
            .with_event_kinds(|names| lead.events.iter().map(|e| str::to_owned(&names[e.kind().index()])).collect());
        lead.events
            .iter()
            .zip(kinds)
            .map(|(event, kind)| {
                let extra = event.has_extra().then(|| lead.event_extra(event.fingerprint)).flatten();
                pb::Event {
                    id: String::new(),
                    lead_id: id.to_owned(),
                    kind,
                    at: Some(timestamp_from_ms(event.at_ms())),
                    value: extra.map_or(0.0, |x| x.value),
                    properties: extra.map(|x| attributes_out(store, &x.properties)).unwrap_or_default(),
                    id_fingerprint: event.fingerprint,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    pb::GetLeadResponse { lead: Some(out), events, event_count: lead.events.len() as u32 }
}

/// An import chunk's shape: line numbers and blank fields, if given, one per lead.
pub(crate) fn import_chunk(chunk: &pb::ImportLeadsRequest) -> Result<()> {
    for (name, len) in [("line_numbers", chunk.line_numbers.len()), ("blanks", chunk.blanks.len())] {
        if len != 0 && len != chunk.leads.len() {
            return fail(name, format!("must be empty or one per lead, got {len} for {} leads", chunk.leads.len()));
        }
    }
    Ok(())
}
