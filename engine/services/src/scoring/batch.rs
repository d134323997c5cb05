//! Filling plugin batches: from stored leads (names by symbol, so plugins resolve each name once
//! per batch) and from leads given inline with a request.

use std::cell::RefCell;
use std::collections::HashMap;

use compact_str::CompactString;
use leadscore_plugin_api::{BatchBuf, Value as PluginValue};

use super::accounts::{self, ACCOUNT_ATTRIBUTE};

use leadscore_store::Store;
use leadscore_store::Sym;
use leadscore_store::lead::{LeadId, Value};
use leadscore_store::mutation::{EventInput, LeadInput};

/// A batch grown past this is not kept for the thread's next call.
const KEPT_BATCH_BYTES: usize = 1 << 20;

thread_local! {
    /// Each thread's batch, reused: scoring one lead then allocates nothing for its batch.
    static BATCH: RefCell<BatchBuf> = RefCell::default();
}

/// Calls `fill_and_score` with this thread's batch (a fresh one if it is in use already).
pub fn with_batch<T>(fill_and_score: impl FnOnce(&mut BatchBuf) -> T) -> T {
    BATCH.with(|kept| match kept.try_borrow_mut() {
        Ok(mut buf) => {
            let out = fill_and_score(&mut buf);
            if buf.heap_bytes() > KEPT_BATCH_BYTES {
                *buf = BatchBuf::default();
            }
            out
        }
        Err(_) => fill_and_score(&mut BatchBuf::default()),
    })
}

/// What a batch needs to remember about each stored lead it holds.
#[derive(Clone, Debug)]
pub struct Member {
    /// The lead's position in the ids the batch was filled from.
    pub index: usize,
    /// The lead's sequence number when it was read, so an older score never replaces a newer.
    pub lsn: u64,
    /// The sequence number of the record that last set its attributes.
    pub attributes_lsn: u64,
    /// The campaigns (by pipeline index) that score this lead.
    pub campaigns: u64,
    /// The lead's newest event (its kind and fingerprint), the cause of a rescore after events.
    pub newest_event: Option<(Sym, u64)>,
    /// The account the lead names (its `account` attribute), normalised.
    pub account: Option<CompactString>,
}

/// Fills `buf` with the stored leads among `ids` (erased ones are skipped) and returns them in
/// batch order. `campaigns` are the pipeline's campaign names, the default first.
pub fn from_store(
    store: &Store,
    ids: &[LeadId],
    campaigns: &[std::sync::Arc<str>],
    now_ms: i64,
    buf: &mut BatchBuf,
) -> Vec<Member> {
    buf.clear(now_ms);
    let mut members = Vec::with_capacity(ids.len());
    let account_sym = store.attribute_sym(ACCOUNT_ATTRIBUTE);
    for (index, id) in ids.iter().enumerate() {
        let found = store.read_lead(id, |lead| {
            buf.begin_lead(id, lead.created_at_ms);
            for (name, value) in lead.attributes.iter() {
                buf.attribute(name.index() as u32, plugin_value(value));
            }
            for event in &lead.events {
                let value =
                    if event.has_extra() { lead.event_extra(event.fingerprint).map_or(0.0, |x| x.value) } else { 0.0 };
                buf.event(event.kind().index() as u32, event.at_ms(), value);
            }
            let listed = lead.profile().map_or(&[][..], |p| &p.campaigns[..]);
            let mut member = 1; // the default campaign
            for (index, name) in campaigns.iter().enumerate().skip(1) {
                if listed.iter().any(|c| c.as_str() == &**name) {
                    member |= 1 << index;
                }
            }
            let newest_event = lead.events.last().map(|event| (event.kind(), event.fingerprint));
            let account = account_sym
                .and_then(|sym| lead.attributes.binary_search_by_key(&sym, |(s, _)| *s).ok())
                .and_then(|i| match &lead.attributes[i].1 {
                    Value::Text(name) => accounts::normalize(name),
                    _ => None,
                });
            Member {
                index,
                lsn: lead.lsn,
                attributes_lsn: lead.attributes_lsn,
                campaigns: member,
                newest_event,
                account,
            }
        });
        members.extend(found);
    }
    // Taken after the leads were read, so it covers every symbol they use.
    store.with_attribute_names(|names| names.iter().for_each(|name| _ = buf.push_name(name)));
    store.with_event_kinds(|kinds| kinds.iter().for_each(|kind| _ = buf.push_kind(kind)));
    members
}

/// Fills `buf` with leads given inline, each with its events.
pub fn from_inputs(leads: &[&(LeadInput, Vec<EventInput>)], now_ms: i64, buf: &mut BatchBuf) {
    buf.clear(now_ms);
    // Sized for the first lead, since a batch's leads mostly share their names.
    let (attributes, events) = leads.first().map_or((0, 0), |(lead, events)| (lead.attributes.len(), events.len()));
    let (mut names, mut kinds) = (Numbering::with_capacity(attributes), Numbering::with_capacity(events));
    // A lead whose names are the previous lead's, in order, takes their numbers without a look.
    let mut previous: &[(CompactString, Value)] = &[];
    let mut numbers = Vec::with_capacity(attributes);
    let mut events_in_time = Vec::with_capacity(events);
    for (lead, events) in leads.iter().copied() {
        buf.begin_lead(&lead.id, now_ms);
        let same_names = previous.len() == lead.attributes.len()
            && previous.iter().zip(&lead.attributes).all(|((was, _), (name, _))| was == name);
        if !same_names {
            numbers.clear();
            // The batch's first names, when in order (as a request's map gives them), are
            // distinct: they are numbered without a look.
            let distinct = names.seen.is_empty() && lead.attributes.is_sorted_by(|(a, _), (b, _)| a < b);
            for (name, _) in &lead.attributes {
                numbers.push(match distinct {
                    true => names.add(name, buf.push_name(name)),
                    false => names.number(name, |name| buf.push_name(name)),
                });
            }
            previous = &lead.attributes;
        }
        for ((_, value), &name) in lead.attributes.iter().zip(&numbers) {
            buf.attribute(name, plugin_value(value));
        }
        events_in_time.clear();
        for event in events {
            let kind = kinds.number(&event.kind, |kind| buf.push_kind(kind));
            events_in_time.push((event.at_ms, kind, event.value));
        }
        events_in_time.sort_by_key(|&(at_ms, _, _)| at_ms);
        for &(at_ms, kind, value) in &events_in_time {
            buf.event(kind, at_ms, value);
        }
    }
}

/// Names seen so far and their numbers in the batch: found by a scan while they are few (a
/// single lead's), by a hash map once they are many.
struct Numbering<'a> {
    seen: Vec<&'a str>,
    index: HashMap<&'a str, u32, foldhash::fast::RandomState>,
}

/// Names a scan looks through before a hash map takes over.
const SCANNED_NAMES: usize = 16;

impl<'a> Numbering<'a> {
    fn with_capacity(names: usize) -> Self {
        Self { seen: Vec::with_capacity(names), index: HashMap::default() }
    }

    /// The name's number; a new name is given to `push`, which numbers it.
    fn number(&mut self, name: &'a str, push: impl FnOnce(&str) -> u32) -> u32 {
        if self.seen.len() <= SCANNED_NAMES {
            if let Some(number) = self.seen.iter().position(|&seen| seen == name) {
                return number as u32;
            }
        } else if let Some(&number) = self.index.get(name) {
            return number;
        }
        self.add(name, push(name))
    }

    /// A name not seen before, and the number it was given.
    fn add(&mut self, name: &'a str, number: u32) -> u32 {
        debug_assert_eq!(number as usize, self.seen.len(), "names are numbered in the order they come");
        self.seen.push(name);
        match self.seen.len() {
            n if n == SCANNED_NAMES + 1 => {
                self.index.extend(self.seen.iter().enumerate().map(|(number, &seen)| (seen, number as u32)))
            }
            n if n > SCANNED_NAMES => _ = self.index.insert(name, number),
            _ => {}
        }
        number
    }
}

fn plugin_value(value: &Value) -> PluginValue<'_> {
    match value {
        Value::Text(text) => PluginValue::Text(text),
        Value::Number(n) => PluginValue::Number(*n),
        Value::Flag(flag) => PluginValue::Flag(*flag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(id: &str, names: &[&str], kinds: &[&str]) -> (LeadInput, Vec<EventInput>) {
        let lead = LeadInput {
            id: id.into(),
            attributes: names.iter().map(|&n| (n.into(), Value::Text(format!("{id}:{n}").into()))).collect(),
            time_zone: None,
            consent: Default::default(),
            campaigns: Vec::new(),
            owner: "".into(),
            phone: "".into(),
            email: "".into(),
        };
        let events = kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| EventInput {
                lead_id: id.into(),
                fingerprint: i as u64,
                kind: kind.into(),
                at_ms: 100 - i as i64,
                value: i as f64,
                properties: Vec::new(),
            })
            .collect();
        (lead, events)
    }

    #[test]
    fn inline_leads_name_each_attribute_and_kind_once_and_rightly() {
        let many: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let mut many: Vec<&str> = many.iter().map(String::as_str).collect();
        many.sort_unstable();
        let leads = [
            inline("a", &many, &["open"]),
            inline("b", &["role", "size"], &["open", "click", "open"]),
            inline("c", &["role", "size"], &["click"]),
            inline("d", &["size", "team"], &[]),
            inline("e", &["n39", "role"], &["visit"]),
            inline("f", &["team", "n7"], &["open"]),
        ];
        let mut buf = BatchBuf::default();
        from_inputs(&leads.iter().collect::<Vec<_>>(), 1_000, &mut buf);
        let batch = buf.view();
        let mut names: Vec<_> = batch.names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), batch.names().count(), "no name is in the table twice");
        assert_eq!(names.len(), 43, "role, size, team and n0-n39");
        for (i, (lead, events)) in leads.iter().enumerate() {
            let read = batch.lead(i);
            let attributes: Vec<_> = read.attributes().map(|a| (batch.name(a.name()), a.value())).collect();
            let given: Vec<_> = lead.attributes.iter().map(|(n, v)| (n.as_str(), plugin_value(v))).collect();
            assert_eq!(attributes, given, "lead {}", lead.id);
            let kinds: Vec<_> = read.events().iter().map(|e| (e.at_ms, batch.kind(e.kind))).collect();
            let mut sent: Vec<_> = events.iter().map(|e| (e.at_ms, e.kind.as_str())).collect();
            sent.sort_unstable();
            assert_eq!(kinds, sent, "lead {}: events oldest first, each with its kind", lead.id);
        }
    }

    #[test]
    fn a_threads_batch_is_reused_and_a_nested_call_gets_its_own() {
        with_batch(|outer| {
            outer.clear(1);
            outer.push_name("role");
            // Scoring inside scoring (never done today) must not share or panic.
            with_batch(|inner| assert!(inner.is_empty() && inner.heap_bytes() == 0));
        });
        with_batch(|again| assert!(again.heap_bytes() > 0, "the first call's memory is kept"));
        with_batch(|big| {
            big.clear(1);
            big.push_name(&"x".repeat(KEPT_BATCH_BYTES + 1));
        });
        with_batch(|after| assert!(after.heap_bytes() <= KEPT_BATCH_BYTES, "an outsized batch is not kept"));
    }
}
