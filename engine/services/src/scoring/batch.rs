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
            Member { index, lsn: lead.lsn, campaigns: member, newest_event, account }
        });
        members.extend(found);
    }
    // Taken after the leads were read, so it covers every symbol they use.
    store.with_attribute_names(|names| names.iter().for_each(|name| _ = buf.push_name(name)));
    store.with_event_kinds(|kinds| kinds.iter().for_each(|kind| _ = buf.push_kind(kind)));
    members
}

/// Fills `buf` with leads given inline, each with its events.
pub fn from_inputs(leads: &[(LeadInput, Vec<EventInput>)], now_ms: i64, buf: &mut BatchBuf) {
    buf.clear(now_ms);
    // Each name and kind is hashed once: the first pass numbers them in the order they come,
    // the second reads those numbers back in the same order. The tables are sized for the
    // first lead, since a batch's leads mostly share their names.
    let (attributes, events) = leads.first().map_or((0, 0), |(lead, events)| (lead.attributes.len(), events.len()));
    let (mut names, mut kinds) = (NameTable::with_capacity(attributes), NameTable::with_capacity(events));
    let mut numbers = Vec::with_capacity((attributes + events) * leads.len());
    for (lead, events) in leads {
        numbers.extend(lead.attributes.iter().map(|(name, _)| names.add(name)));
        numbers.extend(events.iter().map(|event| kinds.add(&event.kind)));
    }
    names.order.iter().for_each(|name| _ = buf.push_name(name));
    kinds.order.iter().for_each(|kind| _ = buf.push_kind(kind));
    let mut numbers = numbers.into_iter();
    let mut events_in_time = Vec::new();
    for (lead, events) in leads {
        buf.begin_lead(&lead.id, now_ms);
        for ((_, value), name) in lead.attributes.iter().zip(numbers.by_ref()) {
            buf.attribute(name, plugin_value(value));
        }
        events_in_time.clear();
        events_in_time.extend(events.iter().zip(numbers.by_ref()).map(|(e, kind)| (e.at_ms, kind, e.value)));
        events_in_time.sort_by_key(|&(at_ms, _, _)| at_ms);
        for &(at_ms, kind, value) in &events_in_time {
            buf.event(kind, at_ms, value);
        }
    }
}

/// Distinct names in first-seen order, and the number of each.
struct NameTable<'a> {
    index: HashMap<&'a str, u32, foldhash::fast::RandomState>,
    order: Vec<&'a str>,
}

impl<'a> NameTable<'a> {
    fn with_capacity(names: usize) -> Self {
        Self { index: HashMap::with_capacity_and_hasher(names, Default::default()), order: Vec::with_capacity(names) }
    }

    /// The name's number, a new one if it is new.
    fn add(&mut self, name: &'a str) -> u32 {
        let order = &mut self.order;
        *self.index.entry(name).or_insert_with(|| {
            order.push(name);
            order.len() as u32 - 1
        })
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
