//! Turns contract messages into validated store input and store data back into messages.
//! Every rule a request must meet lives here, and each failure names its field.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use compact_str::CompactString;
use leadscore_proto::prost_types::Timestamp;
use leadscore_proto::v1 as pb;

use leadscore_services::dialer::eligibility::Reason;
use leadscore_services::dialer::floor::Wallboard;
use leadscore_services::dialer::revocations::{Revoked, Why};
use leadscore_services::dialer::{Claimed, Dry, Pick, Report};
use leadscore_services::scoring::distribution::{BANDS, Distribution};
use leadscore_services::scoring::pipeline::Band;
use leadscore_services::scoring::{AccountScore, AttributeMatch, LeadScore, TopQuery};
use leadscore_services::validation;
use leadscore_store::Store;
use leadscore_store::Sym;
use leadscore_store::agents::Presence;
use leadscore_store::audit::{AuditEntry, AuditKind, Subject};
use leadscore_store::dial::CallResult;
use leadscore_store::history::{Cause, ScoreChange};
use leadscore_store::lead::{Attributes, Consent, Lead, LeadId, Profile, Value};
use leadscore_store::merge::Merge;
use leadscore_store::mutation::{self, EventInput, LeadInput};

/// Lead ids, event ids and event kinds: 1-128 bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Attribute and property names: 1-64 bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Attributes on one lead.
pub const MAX_ATTRIBUTES: usize = 64;
/// Properties on one event.
pub const MAX_PROPERTIES: usize = 16;
/// A text value.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Campaign memberships of one lead, and the length of each name.
pub const MAX_CAMPAIGNS: usize = 32;
/// E-mail addresses (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// A note kept with a call's outcome.
pub const MAX_NOTE_BYTES: usize = 4096;
/// How far ahead a callback may be scheduled.
pub const MAX_CALLBACK_AHEAD_MS: i64 = 366 * 24 * 3600 * 1000;
/// The earliest accepted timestamp: 2000-01-01T00:00:00Z.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
/// How far in the future an event may be, against clock skew.
pub const MAX_FUTURE_MS: i64 = 24 * 3600 * 1000;

/// One broken rule: which field, and what it must be.
#[derive(Debug)]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self { field: field.into(), rule: rule.into() }
    }
}

type Result<T> = std::result::Result<T, FieldError>;

/// A field inside another (`leads[3]`, then `.time_zone`), written out only when an error
/// names it: formatting every field's path up front cost more than the checks themselves.
struct At<'a, P: ?Sized, T>(&'a P, T);

fn at<P: fmt::Display + ?Sized, T: fmt::Display>(parent: &P, child: T) -> At<'_, P, T> {
    At(parent, child)
}

impl<P: fmt::Display + ?Sized, T: fmt::Display> fmt::Display for At<'_, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

/// `events[3]`: an element of a request's list, named only if an error needs it.
pub fn element(list: &str, i: usize) -> impl fmt::Display + '_ {
    at(list, Index(i))
}

/// `[3]`: an element of a list.
struct Index(usize);

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0)
    }
}

/// `["role"]`: an entry of a map.
struct Key<'a>(&'a str);

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}]", self.0)
    }
}

fn fail<T>(field: impl fmt::Display, rule: impl Into<String>) -> Result<T> {
    Err(FieldError { field: field.to_string(), rule: rule.into() })
}

/// A non-empty string of at most `max` bytes without control characters; `what` starts the
/// rule ("name must …") where the field alone does not say what the string is.
fn label(field: &(impl fmt::Display + ?Sized), value: &str, max: usize, what: &str) -> Result<CompactString> {
    let len = value.len();
    if len == 0 || len > max {
        return fail(field, format!("{what}must be 1-{max} bytes, got {len}"));
    }
    if value.chars().any(char::is_control) {
        return fail(field, format!("{what}must not contain control characters"));
    }
    Ok(value.into())
}

pub fn id(field: &(impl fmt::Display + ?Sized), value: &str) -> Result<LeadId> {
    label(field, value, MAX_ID_BYTES, "")
}

fn name(field: &(impl fmt::Display + ?Sized), value: &str) -> Result<CompactString> {
    label(field, value, MAX_NAME_BYTES, "name ")
}

fn value(field: &(impl fmt::Display + ?Sized), value: &pb::AttributeValue) -> Result<Value> {
    use pb::attribute_value::Kind;
    match &value.kind {
        None => fail(field, "must hold text, number or flag"),
        Some(Kind::Text(text)) if text.len() > MAX_TEXT_BYTES => {
            fail(field, format!("text must be at most {MAX_TEXT_BYTES} bytes, got {}", text.len()))
        }
        Some(Kind::Text(text)) => Ok(Value::Text(text.into())),
        Some(Kind::Number(n)) if !n.is_finite() => fail(field, format!("number must be finite, got {n}")),
        Some(Kind::Number(n)) => Ok(Value::Number(*n)),
        Some(Kind::Flag(b)) => Ok(Value::Flag(*b)),
    }
}

fn attributes(
    field: &(impl fmt::Display + ?Sized),
    map: &std::collections::HashMap<String, pb::AttributeValue>,
    max: usize,
) -> Result<Vec<(CompactString, Value)>> {
    if map.len() > max {
        return fail(field, format!("at most {max} allowed, got {}", map.len()));
    }
    let mut pairs: Vec<_> = map
        .iter()
        .map(|(key, v)| {
            let field = at(field, Key(key));
            Ok((name(&field, key)?, value(&field, v)?))
        })
        .collect::<Result<_>>()?;
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(pairs)
}

pub fn time_zone(field: &(impl fmt::Display + ?Sized), name: &str) -> Result<Option<Tz>> {
    if name.is_empty() {
        return Ok(None);
    }
    Tz::from_str(name).map(Some).or_else(|_| fail(field, format!("unknown IANA time zone {name:?}")))
}

fn phone(field: &(impl fmt::Display + ?Sized), number: &str) -> Result<CompactString> {
    if number.is_empty() {
        return Ok(number.into());
    }
    let digits = number.strip_prefix('+').filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    match digits {
        Some(d) if (6..=15).contains(&d.len()) && !d.starts_with('0') => Ok(number.into()),
        _ => fail(field, format!("must be E.164: '+' then 6-15 digits, got {number:?}")),
    }
}

fn email(field: &(impl fmt::Display + ?Sized), address: &str) -> Result<CompactString> {
    if address.is_empty() {
        return Ok(address.into());
    }
    if address.len() > MAX_EMAIL_BYTES {
        return fail(field, format!("must be at most {MAX_EMAIL_BYTES} bytes, got {}", address.len()));
    }
    match address.split_once('@') {
        Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@') => {
            Ok(address.into())
        }
        _ => fail(field, format!("must be an e-mail address, got {address:?}")),
    }
}

/// Milliseconds since the epoch of `at`, or `now_ms` when unset; within
/// [2000-01-01, now + 1 day].
pub fn timestamp(field: &(impl fmt::Display + ?Sized), at: Option<&Timestamp>, now_ms: i64) -> Result<i64> {
    let Some(at) = at else { return Ok(now_ms) };
    if !(0..1_000_000_000).contains(&at.nanos) {
        return fail(field, format!("nanos must be 0-999999999, got {}", at.nanos));
    }
    let ms = at.seconds.saturating_mul(1000).saturating_add(i64::from(at.nanos / 1_000_000));
    if ms < MIN_TIMESTAMP_MS || ms > now_ms + MAX_FUTURE_MS {
        return fail(field, "must lie between 2000-01-01T00:00:00Z and one day after now");
    }
    Ok(ms)
}

pub fn batch_len(field: &(impl fmt::Display + ?Sized), len: usize, max: usize) -> Result<()> {
    if len == 0 || len > max {
        return fail(field, format!("must hold 1-{max} items, got {len}"));
    }
    Ok(())
}

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

pub fn event_input(field: &(impl fmt::Display + ?Sized), event: &pb::Event, now_ms: i64) -> Result<EventInput> {
    if !event.value.is_finite() {
        return fail(at(field, ".value"), format!("must be finite, got {}", event.value));
    }
    let kind = &event.kind;
    if kind.is_empty() || kind.len() > MAX_ID_BYTES {
        return fail(at(field, ".kind"), format!("must be 1-{MAX_ID_BYTES} bytes, got {}", kind.len()));
    }
    Ok(EventInput {
        lead_id: id(&at(field, ".lead_id"), &event.lead_id)?,
        fingerprint: mutation::fingerprint(&id(&at(field, ".id"), &event.id)?),
        kind: kind.as_str().into(),
        at_ms: timestamp(&at(field, ".at"), event.at.as_ref(), now_ms)?,
        value: event.value,
        properties: attributes(&at(field, ".properties"), &event.properties, MAX_PROPERTIES)?,
    })
}

pub fn timestamp_from_ms(ms: i64) -> Timestamp {
    Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

fn attributes_out(store: &Store, attributes: &Attributes) -> std::collections::HashMap<String, pb::AttributeValue> {
    use pb::attribute_value::Kind;
    attributes
        .iter()
        .map(|(sym, v)| {
            let kind = match v {
                Value::Text(t) => Kind::Text(t.to_string()),
                Value::Number(n) => Kind::Number(*n),
                Value::Flag(b) => Kind::Flag(*b),
            };
            (store.attribute_name(*sym).to_string(), pb::AttributeValue { kind: Some(kind) })
        })
        .collect()
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
        campaigns: profile.campaigns.iter().map(|c| c.to_string()).collect(),
        owner: profile.owner.to_string(),
        phone: profile.phone.to_string(),
        email: profile.email.to_string(),
        created_at: Some(timestamp_from_ms(lead.created_at_ms)),
        updated_at: Some(timestamp_from_ms(lead.updated_at_ms)),
    };
    let events = if with_events {
        lead.events
            .iter()
            .map(|event| {
                let extra = event.has_extra().then(|| lead.event_extra(event.fingerprint)).flatten();
                pb::Event {
                    id: String::new(),
                    lead_id: id.to_owned(),
                    kind: store.event_kind(event.kind()).to_string(),
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

/// A lead given inline for scoring, with its events. `field` prefixes the field names (empty,
/// or `requests[3].` in a batch). An event's `lead_id` may be left empty; otherwise it must
/// name the lead.
pub fn inline_lead(
    field: &(impl fmt::Display + ?Sized),
    request: &pb::ScoreRequest,
    max_events: usize,
    now_ms: i64,
) -> Result<(LeadInput, Vec<EventInput>)> {
    let Some(lead) = &request.lead else { return fail(at(field, "lead"), "is required") };
    let input = lead_input(&at(field, "lead"), lead)?;
    if request.events.len() > max_events {
        return fail(at(field, "events"), format!("at most {max_events} allowed, got {}", request.events.len()));
    }
    let events = request
        .events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let events = at(field, "events");
            let field = at(&events, Index(i));
            if !event.lead_id.is_empty() && event.lead_id != lead.id {
                return fail(
                    at(&field, ".lead_id"),
                    format!("must be empty or {:?}, got {:?}", lead.id, event.lead_id),
                );
            }
            let event = pb::Event { lead_id: lead.id.clone(), ..event.clone() };
            event_input(&field, &event, now_ms)
        })
        .collect::<Result<_>>()?;
    Ok((input, events))
}

/// The most leads one `TopLeads` call streams.
pub const MAX_TOP_LEADS: u32 = 10_000;

/// A `TopAccounts` request: the campaign, how many accounts and how many leads of each.
pub fn top_accounts(request: &pb::TopAccountsRequest) -> Result<(String, usize, usize)> {
    if !(1..=MAX_TOP_LEADS).contains(&request.limit) {
        return fail("limit", format!("must be 1-{MAX_TOP_LEADS}, got {}", request.limit));
    }
    let leads = match request.leads_per_account {
        0 => DEFAULT_LEADS_PER_ACCOUNT,
        n @ 1..=100 => n as usize,
        n => return fail("leads_per_account", format!("must be 0-100, got {n}")),
    };
    Ok((request.campaign.clone(), request.limit as usize, leads))
}

/// The campaign and bin count of a `ScoreDistribution` request.
pub fn distribution(request: &pb::ScoreDistributionRequest) -> Result<(String, usize)> {
    let bins = match request.bins {
        0 => DEFAULT_BINS,
        n @ 1..=1000 => n as usize,
        n => return fail("bins", format!("must be 0-1000, got {n}")),
    };
    Ok((request.campaign.clone(), bins))
}

/// Histogram bins when a `ScoreDistribution` request does not say.
const DEFAULT_BINS: usize = 20;

pub fn distribution_out(d: Distribution) -> pb::ScoreDistributionResponse {
    let band_counts = |counts: [u64; 4]| counts.to_vec();
    pb::ScoreDistributionResponse {
        campaign: d.campaign.to_string(),
        leads: d.leads,
        bins: d
            .bins
            .into_iter()
            .map(|bin| pb::DistributionBin { low: bin.low, high: bin.high, by_band: band_counts(bin.by_band) })
            .collect(),
        bands: BANDS
            .iter()
            .zip(d.by_band)
            .map(|(&band, leads)| pb::BandCount { band: band_out(Some(band)).into(), leads })
            .collect(),
        grades: d.by_grade.into_iter().map(|(grade, leads)| pb::GradeCount { grade, leads }).collect(),
    }
}

/// Leads shown per account when a `TopAccounts` request does not say.
const DEFAULT_LEADS_PER_ACCOUNT: usize = 3;

pub fn top_query(request: &pb::TopLeadsRequest) -> Result<TopQuery> {
    if !(1..=MAX_TOP_LEADS).contains(&request.limit) {
        return fail("limit", format!("must be 1-{MAX_TOP_LEADS}, got {}", request.limit));
    }
    let bands = bands_in("bands", &request.bands)?;
    let filters = request
        .filters
        .iter()
        .enumerate()
        .map(|(i, filter)| {
            let field = format!("filters[{i}]");
            let attribute = name(&at(&field, ".attribute"), &filter.attribute)?;
            let matcher = match &filter.r#match {
                None => return fail(at(&field, ".match"), "must be equals or range"),
                Some(pb::attribute_filter::Match::Equals(v)) => {
                    AttributeMatch::Equals(value(&at(&field, ".equals"), v)?)
                }
                Some(pb::attribute_filter::Match::Range(range)) => {
                    let (min, max) = (range.min, range.max);
                    if min.is_some_and(|m| !m.is_finite()) || max.is_some_and(|m| !m.is_finite()) {
                        return fail(at(&field, ".range"), "bounds must be finite");
                    }
                    if let (Some(min), Some(max)) = (min, max)
                        && min > max
                    {
                        return fail(at(&field, ".range"), format!("min must not exceed max, got {min} > {max}"));
                    }
                    AttributeMatch::Range { min, max }
                }
            };
            Ok((attribute, matcher))
        })
        .collect::<Result<_>>()?;
    Ok(TopQuery {
        campaign: request.campaign.clone(),
        limit: request.limit as usize,
        bands,
        filters,
        explain: request.explain,
    })
}

pub fn bands_in(field: &(impl fmt::Display + ?Sized), bands: &[i32]) -> Result<Vec<Band>> {
    bands
        .iter()
        .enumerate()
        .map(|(i, band)| match pb::Band::try_from(*band) {
            Ok(pb::Band::Unqualified) => Ok(Band::Unqualified),
            Ok(pb::Band::Warm) => Ok(Band::Warm),
            Ok(pb::Band::SalesReady) => Ok(Band::SalesReady),
            Ok(pb::Band::Hot) => Ok(Band::Hot),
            _ => fail(at(field, Index(i)), format!("must be a band other than BAND_UNSPECIFIED, got {band}")),
        })
        .collect()
}

pub fn band_out(band: Option<Band>) -> pb::Band {
    match band {
        None => pb::Band::Unspecified,
        Some(Band::Unqualified) => pb::Band::Unqualified,
        Some(Band::Warm) => pb::Band::Warm,
        Some(Band::SalesReady) => pb::Band::SalesReady,
        Some(Band::Hot) => pb::Band::Hot,
    }
}

/// A history entry as the API shows it; `kind_name` names an event kind.
pub fn change_out(change: ScoreChange, kind_name: impl Fn(Sym) -> String) -> pb::ScoreChange {
    use pb::score_change::Cause as Out;
    let cause = match change.cause {
        Cause::Event { kind, fingerprint } => {
            Out::Event(pb::EventCause { kind: kind_name(kind), id_fingerprint: fingerprint })
        }
        Cause::Upsert => Out::Upsert(true),
        Cause::Config { version } => Out::ConfigVersion(version),
        Cause::Decay => Out::Decay(true),
        Cause::Reload => Out::ModelReload(true),
    };
    pb::ScoreChange {
        at: Some(timestamp_from_ms(change.at_ms)),
        campaign: change.campaign.to_string(),
        score: change.score,
        band: band_out(Band::from_rank(change.band)).into(),
        cause: Some(cause),
    }
}

pub fn score_out(score: LeadScore) -> pb::LeadScore {
    pb::LeadScore {
        lead_id: score.lead_id.to_string(),
        campaign: score.campaign.to_string(),
        score: score.score,
        band: band_out(Some(score.band)).into(),
        grade: score.grade,
        scorers: score
            .scorers
            .into_iter()
            .map(|s| pb::ScorerScore {
                scorer: s.scorer.to_string(),
                score: s.score,
                points: s.points,
                weight: s.weight,
                contribution: s.contribution,
                top_factors: s
                    .factors
                    .into_iter()
                    .map(|f| pb::Factor { feature: f.feature, contribution: f.contribution, detail: f.detail })
                    .collect(),
            })
            .collect(),
        config_version: score.config_version,
        scored_at: Some(timestamp_from_ms(score.scored_at_ms)),
        account: score.account.map(account_out),
    }
}

/// An `AuditLog` request: the time range (inclusive) and the kinds (all if empty).
pub fn audit_query(request: &pb::AuditLogRequest, now_ms: i64) -> Result<(i64, i64, Vec<AuditKind>)> {
    let from = request.from.as_ref().map(|at| timestamp("from", Some(at), now_ms)).transpose()?.unwrap_or(i64::MIN);
    let to = request.to.as_ref().map(|at| timestamp("to", Some(at), now_ms)).transpose()?.unwrap_or(i64::MAX);
    if from > to {
        return fail("to", "must not come before from");
    }
    let kinds = request
        .kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| match pb::AuditKind::try_from(*kind) {
            Ok(pb::AuditKind::ConfigChange) => Ok(AuditKind::ConfigChange),
            Ok(pb::AuditKind::PluginReload) => Ok(AuditKind::PluginReload),
            Ok(pb::AuditKind::Erasure) => Ok(AuditKind::Erasure),
            Ok(pb::AuditKind::Objection) => Ok(AuditKind::Objection),
            Ok(pb::AuditKind::AgentChange) => Ok(AuditKind::AgentChange),
            _ => fail(at("kinds", Index(i)), format!("must be a kind other than AUDIT_KIND_UNSPECIFIED, got {kind}")),
        })
        .collect::<Result<_>>()?;
    Ok((from, to, kinds))
}

pub fn audit_out(entry: AuditEntry) -> pb::AuditEntry {
    use pb::audit_entry::Subject as Out;
    let kind = match entry.kind {
        AuditKind::ConfigChange => pb::AuditKind::ConfigChange,
        AuditKind::PluginReload => pb::AuditKind::PluginReload,
        AuditKind::Erasure => pb::AuditKind::Erasure,
        AuditKind::Objection => pb::AuditKind::Objection,
        AuditKind::AgentChange => pb::AuditKind::AgentChange,
    };
    let subject = match entry.subject {
        Subject::Nothing => None,
        Subject::Lead(id) => Some(Out::LeadId(id.to_string())),
        Subject::ErasedLead(key) => Some(Out::ErasedLead(leadscore_config::tokens::hex(&key))),
        Subject::Agents(ids) => {
            Some(Out::Agents(pb::AgentIds { agent_ids: ids.iter().map(|id| id.to_string()).collect() }))
        }
    };
    pb::AuditEntry {
        at: Some(timestamp_from_ms(entry.at_ms)),
        actor: entry.actor.to_string(),
        kind: kind.into(),
        subject,
        detail: entry.detail,
    }
}

pub fn section_out(section: validation::Section) -> pb::ValidationSection {
    let bucket = |b: &validation::Bucket| pb::ScoreBucket {
        leads: b.leads,
        conversions: b.conversions,
        conversion_rate: b.rate(),
        min_score: b.min_score,
        max_score: b.max_score,
    };
    let bands = [Band::Unqualified, Band::Warm, Band::SalesReady, Band::Hot];
    pb::ValidationSection {
        config_version: section.config_version,
        shadow: section.scoring == validation::Scoring::Shadow,
        all: Some(bucket(&section.all)),
        bands: bands
            .iter()
            .zip(&section.bands)
            .map(|(band, b)| pb::BandBucket { band: band_out(Some(*band)).into(), bucket: Some(bucket(b)) })
            .collect(),
        deciles: section.deciles.iter().map(bucket).collect(),
        top_decile_lift: section.top_decile_lift,
        roc_auc: section.roc_auc,
        calibration: section
            .calibration
            .iter()
            .map(|c| pb::CalibrationBucket {
                leads: c.leads,
                mean_probability: c.mean_probability,
                conversion_rate: c.conversion_rate,
            })
            .collect(),
    }
}

pub fn account_out(account: AccountScore) -> pb::AccountScore {
    pb::AccountScore {
        account: account.account.to_string(),
        score: account.score,
        band: band_out(Some(account.band)).into(),
        leads: account.leads as u32,
        top_leads: account
            .top_leads
            .into_iter()
            .map(|(id, score, band)| pb::AccountLead {
                lead_id: id.to_string(),
                score,
                band: band_out(Some(band)).into(),
            })
            .collect(),
    }
}

/// An agent's id: 1-128 bytes.
pub fn agent_id(field: &(impl fmt::Display + ?Sized), value: &str) -> Result<CompactString> {
    label(field, value, MAX_ID_BYTES, "")
}

/// A call's disposition as a dialer reported it, checked.
pub fn outcome_in(field: &(impl fmt::Display + ?Sized), outcome: Option<&pb::Outcome>, now_ms: i64) -> Result<Report> {
    let Some(outcome) = outcome else { return fail(field, "required") };
    let at = |name: &str| format!("{field}.{name}");
    if outcome.lease_id.is_empty() {
        return fail(at("lease_id"), "required");
    }
    let result = match pb::CallResult::try_from(outcome.result) {
        Ok(pb::CallResult::Unspecified) | Err(_) => {
            return fail(at("result"), format!("must name a call result, got {}", outcome.result));
        }
        Ok(pb::CallResult::NoAnswer) => CallResult::NoAnswer,
        Ok(pb::CallResult::Busy) => CallResult::Busy,
        Ok(pb::CallResult::Voicemail) => CallResult::Voicemail,
        Ok(pb::CallResult::ConnectedNotInterested) => CallResult::ConnectedNotInterested,
        Ok(pb::CallResult::Callback) => CallResult::Callback,
        Ok(pb::CallResult::Converted) => CallResult::Converted,
        Ok(pb::CallResult::Lost) => CallResult::Lost,
        Ok(pb::CallResult::WrongNumber) => CallResult::WrongNumber,
        Ok(pb::CallResult::DoNotCall) => CallResult::DoNotCall,
    };
    let callback = match (result, outcome.callback_at.as_ref()) {
        (CallResult::Callback, None) => return fail(at("callback_at"), "required for CALL_RESULT_CALLBACK"),
        (CallResult::Callback, Some(when)) => {
            let ms = when
                .seconds
                .saturating_mul(1000)
                .saturating_add(i64::from(when.nanos.clamp(0, 999_999_999) / 1_000_000));
            if !(now_ms..=now_ms + MAX_CALLBACK_AHEAD_MS).contains(&ms) {
                return fail(at("callback_at"), "must lie between now and a year from now");
            }
            Some((ms, outcome.agent_only_callback))
        }
        (_, Some(_)) => return fail(at("callback_at"), "only allowed with CALL_RESULT_CALLBACK"),
        (_, None) => None,
    };
    let talk_ms = match outcome.talk_time {
        None => 0,
        Some(d) if d.seconds >= 0 && (0..1_000_000_000).contains(&d.nanos) => {
            (d.seconds as u64).saturating_mul(1000) + d.nanos as u64 / 1_000_000
        }
        Some(_) => return fail(at("talk_time"), "must not be negative"),
    };
    if outcome.note.len() > MAX_NOTE_BYTES {
        return fail(at("note"), format!("must be at most {MAX_NOTE_BYTES} bytes, got {}", outcome.note.len()));
    }
    Ok(Report {
        lease_id: outcome.lease_id.clone(),
        result,
        at_ms: timestamp(&at("at"), outcome.at.as_ref(), now_ms)?,
        callback,
        talk_ms,
        note: outcome.note.clone(),
    })
}

/// A claim as the dialer receives it: the lease, the lead, its score and why it was chosen.
pub fn claim_out(claimed: &Claimed, lead: Option<pb::Lead>, score: Option<pb::LeadScore>) -> pb::Claim {
    let lease = &claimed.lease;
    pb::Claim {
        lease: Some(pb::Lease {
            lease_id: leadscore_services::dialer::lease_id(lease.id, &claimed.lead_id),
            lead_id: claimed.lead_id.to_string(),
            agent_id: lease.agent.to_string(),
            campaign: lease.campaign.to_string(),
            expires_at: Some(timestamp_from_ms(lease.expires_at_ms)),
        }),
        lead,
        score,
        reason: match claimed.pick {
            Pick::BestScore => pb::ClaimReason::BestScore,
            Pick::AgentCallback => pb::ClaimReason::AgentCallback,
            Pick::Callback => pb::ClaimReason::Callback,
        }
        .into(),
        attempts: claimed.attempts,
        local_time: claimed.local_time.clone(),
        dial_by: Some(timestamp_from_ms(claimed.dial_by_ms)),
        dial_by_local: claimed.dial_by_local.clone(),
    }
}

/// Revocations by reason, in `Why::ALL` order.
pub fn revocation_counts(counts: [u64; Why::ALL.len()]) -> pb::RevocationCounts {
    let [do_not_call, consent_withdrawn, objected, erased, window_closed] = counts;
    pb::RevocationCounts { do_not_call, consent_withdrawn, objected, erased, window_closed }
}

pub fn revoked_out(revoked: &Revoked) -> pb::Revoked {
    pb::Revoked {
        lease_id: leadscore_services::dialer::lease_id(revoked.lease, &revoked.lead_id),
        lead_id: revoked.lead_id.to_string(),
        reason: match revoked.why {
            Why::DoNotCall => pb::RevokeReason::DoNotCall,
            Why::ConsentWithdrawn => pb::RevokeReason::ConsentWithdrawn,
            Why::Objected => pb::RevokeReason::Objected,
            Why::Erased => pb::RevokeReason::Erased,
            Why::WindowClosed => pb::RevokeReason::WindowClosed,
        }
        .into(),
        at: Some(timestamp_from_ms(revoked.at_ms)),
    }
}

/// Why nothing could be claimed, as counts by reason.
pub fn wallboard_out(board: Wallboard) -> pb::WallboardResponse {
    let state = |presence| match presence {
        Presence::Available => pb::AgentState::Available,
        Presence::Busy => pb::AgentState::Busy,
        Presence::Offline => pb::AgentState::Offline,
    };
    pb::WallboardResponse {
        campaign: board.campaign.to_string(),
        queued: board.queued,
        callable: board.callable,
        ineligible: Some(dry_out(&board.ineligible)),
        zones: board
            .zones
            .into_iter()
            .map(|z| pb::ZoneQueue {
                time_zone: z.zone.name().into(),
                region: z.region.map(String::from).unwrap_or_default(),
                callable: z.callable,
                open: z.open,
                changes_at: (z.changes_at_ms != i64::MAX).then(|| timestamp_from_ms(z.changes_at_ms)),
            })
            .collect(),
        minutes: board
            .minutes
            .into_iter()
            .map(|m| pb::MinuteCounts {
                start: Some(timestamp_from_ms(m.start_ms)),
                claims: m.claims,
                outcomes: m.outcomes.to_vec(),
                revoked: Some(revocation_counts(m.revoked)),
            })
            .collect(),
        agents: board
            .agents
            .into_iter()
            .map(|a| pb::AgentBoard {
                agent_id: a.id.into(),
                name: a.name.into(),
                state: state(a.presence).into(),
                leases: a.leases,
                decided: a.decided,
                converted: a.converted,
            })
            .collect(),
    }
}

pub fn dry_out(dry: &Dry) -> pb::IneligibleCounts {
    let count = |reason: Reason| dry.counts[reason.index()];
    pb::IneligibleCounts {
        outside_calling_window: count(Reason::OutsideWindow),
        recycling: count(Reason::Recycling),
        max_attempts: count(Reason::MaxAttempts),
        do_not_call: count(Reason::DoNotCall),
        missing_consent: count(Reason::MissingConsent),
        leased: count(Reason::Leased),
        filtered_out: count(Reason::FilteredOut),
        holiday: count(Reason::Holiday),
        not_routable_to_agent: count(Reason::Reserved),
        finished: count(Reason::Finished),
    }
}
