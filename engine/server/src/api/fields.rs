//! The rules every request's fields share (ids, names, values, time stamps, list lengths),
//! each failure naming its field, and the small conversions all services use.

use chrono_tz::Tz;
use compact_str::CompactString;
use leadscore_proto::prost_types::Timestamp;
use leadscore_proto::v1 as pb;
use leadscore_services::scoring::pipeline::Band;
use leadscore_store::lead::{LeadId, Value};
use std::fmt;
use std::str::FromStr;

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

pub(crate) type Result<T> = std::result::Result<T, FieldError>;

/// A field inside another (`leads[3]`, then `.time_zone`), written out only when an error
/// names it: formatting every field's path up front cost more than the checks themselves.
pub(crate) struct At<'a, P: ?Sized, T>(&'a P, T);

pub(crate) fn at<P: fmt::Display + ?Sized, T: fmt::Display>(parent: &P, child: T) -> At<'_, P, T> {
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
pub(crate) struct Index(pub usize);

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0)
    }
}

/// `["role"]`: an entry of a map.
pub(crate) struct Key<'a>(pub &'a str);

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}]", self.0)
    }
}

pub(crate) fn fail<T>(field: impl fmt::Display, rule: impl Into<String>) -> Result<T> {
    Err(FieldError { field: field.to_string(), rule: rule.into() })
}

/// A non-empty string of at most `max` bytes without control characters; `what` starts the
/// rule ("name must …") where the field alone does not say what the string is.
pub(crate) fn label(
    field: &(impl fmt::Display + ?Sized),
    value: &str,
    max: usize,
    what: &str,
) -> Result<CompactString> {
    let len = value.len();
    if len == 0 || len > max {
        return fail(field, format!("{what}must be 1-{max} bytes, got {len}"));
    }
    // Most labels are ASCII, whose bytes are checked without decoding characters.
    let control = match value.is_ascii() {
        true => value.bytes().any(|b| b.is_ascii_control()),
        false => value.chars().any(char::is_control),
    };
    if control {
        return fail(field, format!("{what}must not contain control characters"));
    }
    Ok(value.into())
}

pub fn id(field: &(impl fmt::Display + ?Sized), value: &str) -> Result<LeadId> {
    label(field, value, MAX_ID_BYTES, "")
}

pub(crate) fn name(field: &(impl fmt::Display + ?Sized), value: &str) -> Result<CompactString> {
    label(field, value, MAX_NAME_BYTES, "name ")
}

pub(crate) fn value(field: &(impl fmt::Display + ?Sized), value: &pb::AttributeValue) -> Result<Value> {
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

pub(crate) fn attributes(
    field: &(impl fmt::Display + ?Sized),
    map: &std::collections::BTreeMap<String, pb::AttributeValue>,
    max: usize,
) -> Result<Vec<(CompactString, Value)>> {
    if map.len() > max {
        return fail(field, format!("at most {max} allowed, got {}", map.len()));
    }
    // A map's keys come in order, and so the pairs do.
    let mut pairs = Vec::with_capacity(map.len());
    for (key, v) in map {
        let field = at(field, Key(key));
        pairs.push((name(&field, key)?, value(&field, v)?));
    }
    Ok(pairs)
}

pub fn time_zone(field: &(impl fmt::Display + ?Sized), name: &str) -> Result<Option<Tz>> {
    if name.is_empty() {
        return Ok(None);
    }
    Tz::from_str(name).map(Some).or_else(|_| fail(field, format!("unknown IANA time zone {name:?}")))
}

pub(crate) fn phone(field: &(impl fmt::Display + ?Sized), number: &str) -> Result<CompactString> {
    if number.is_empty() {
        return Ok(number.into());
    }
    let digits = number.strip_prefix('+').filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    match digits {
        Some(d) if (6..=15).contains(&d.len()) && !d.starts_with('0') => Ok(number.into()),
        _ => fail(field, format!("must be E.164: '+' then 6-15 digits, got {number:?}")),
    }
}

pub(crate) fn email(field: &(impl fmt::Display + ?Sized), address: &str) -> Result<CompactString> {
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

pub fn timestamp_from_ms(ms: i64) -> Timestamp {
    Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// One of our own time stamps back in milliseconds (a client's is checked by `timestamp`).
pub fn timestamp_to_ms(at: &Timestamp) -> i64 {
    at.seconds.saturating_mul(1000).saturating_add(i64::from(at.nanos / 1_000_000))
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

/// An agent's id: 1-128 bytes.
pub fn agent_id(field: &(impl fmt::Display + ?Sized), value: &str) -> Result<CompactString> {
    label(field, value, MAX_ID_BYTES, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_refuse_control_characters_ascii_or_not() {
        for bad in ["a\nb", "\u{7f}", "caf\u{e9}\u{85}", "\u{9f}x"] {
            let err = id("id", bad).unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.rule.as_str()),
                ("id", "must not contain control characters"),
                "{bad:?}"
            );
        }
        for good in ["lead-1", "café", "리드", "a b"] {
            assert_eq!(id("id", good).unwrap().as_str(), good);
        }
    }
}
