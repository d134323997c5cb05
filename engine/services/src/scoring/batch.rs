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
    let (mut names, mut kinds) = (NameTable::default(), NameTable::default());
    for (lead, events) in leads {
        lead.attributes.iter().for_each(|(name, _)| names.add(name));
        events.iter().for_each(|event| kinds.add(&event.kind));
    }
    names.order.iter().for_each(|name| _ = buf.push_name(name));
    kinds.order.iter().for_each(|kind| _ = buf.push_kind(kind));
    for (lead, events) in leads {
        buf.begin_lead(&lead.id, now_ms);
        for (name, value) in &lead.attributes {
            buf.attribute(names.index[name.as_str()], plugin_value(value));
        }
        let mut events: Vec<&EventInput> = events.iter().collect();
        events.sort_by_key(|e| e.at_ms);
        for event in events {
            buf.event(kinds.index[event.kind.as_str()], event.at_ms, event.value);
        }
    }
}

/// Distinct names in first-seen order, and the index of each.
#[derive(Default)]
struct NameTable<'a> {
    index: HashMap<&'a str, u32>,
    order: Vec<&'a str>,
}

impl<'a> NameTable<'a> {
    fn add(&mut self, name: &'a str) {
        if !self.index.contains_key(name) {
            self.index.insert(name, self.order.len() as u32);
            self.order.push(name);
        }
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
