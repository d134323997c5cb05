//! The plugin batch view against batches whose spans and indexes point anywhere: reading every
//! lead, attribute, event, name and kind never panics, and every text read is a piece of the
//! arena or empty (a span cutting a character in two reads as empty). A batch built by
//! `BatchBuf` reads back exactly as written. `LEADSCORE_FUZZ_CASES` sets the number of cases
//! (default 256).

// The test builds raw batches as a host would, through the ABI's one unsafe entry point.
#![allow(unsafe_code)]

use leadscore_plugin_api::raw::{Event, RawAttribute, RawBatch, RawLead, Span};
use leadscore_plugin_api::{Batch, BatchBuf, Value};
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("LEADSCORE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Spans mostly near the arena, sometimes anywhere.
fn span() -> impl Strategy<Value = Span> {
    prop_oneof![
        3 => (0..64u32, 0..16u32).prop_map(|(start, len)| Span { start, len }),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(start, len)| Span { start, len }),
    ]
}

fn index() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0..8u32, 1 => any::<u32>()]
}

fn raw_lead() -> impl Strategy<Value = RawLead> {
    (span(), (0..8u32, 0..8u32), (0..8u32, 0..8u32), any::<i64>()).prop_map(|(id, a, e, created_at_ms)| RawLead {
        id,
        attributes: Span { start: a.0, len: a.1 },
        events: Span { start: e.0, len: e.1 },
        created_at_ms,
    })
}

fn raw_attribute() -> impl Strategy<Value = RawAttribute> {
    (index(), 0..5u32, any::<f64>(), span()).prop_map(|(name, tag, number, text)| RawAttribute {
        name,
        tag,
        number,
        text,
    })
}

fn event() -> impl Strategy<Value = Event> {
    (index(), any::<i64>(), any::<f64>()).prop_map(|(kind, at_ms, value)| Event { kind, reserved: 0, at_ms, value })
}

/// Whether `piece` lies inside `arena` (or is empty).
fn inside(arena: &str, piece: &str) -> bool {
    let range = arena.as_ptr() as usize..=arena.as_ptr() as usize + arena.len();
    piece.is_empty()
        || (range.contains(&(piece.as_ptr() as usize)) && range.contains(&(piece.as_ptr() as usize + piece.len())))
}

/// Reads everything a scorer could read.
fn read_all(batch: &Batch<'_>, arena: &str, probes: &[u32]) -> Result<(), TestCaseError> {
    for name in batch.names().chain(batch.kinds()) {
        prop_assert!(inside(arena, name));
    }
    for &i in probes {
        prop_assert!(inside(arena, batch.name(i)) && inside(arena, batch.kind(i)));
    }
    for lead in batch.leads() {
        prop_assert!(inside(arena, lead.id()));
        let _ = lead.created_at_ms();
        for attribute in lead.attributes() {
            let _ = batch.name(attribute.name());
            if let Value::Text(text) = attribute.value() {
                prop_assert!(inside(arena, text));
            }
        }
        for event in lead.events() {
            let _ = batch.kind(event.kind);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_spans_read_as_pieces_of_the_arena_or_empty(
        arena in "\\PC{0,40}",
        leads in prop::collection::vec(raw_lead(), 0..6),
        attributes in prop::collection::vec(raw_attribute(), 0..12),
        events in prop::collection::vec(event(), 0..12),
        names in prop::collection::vec(span(), 0..6),
        kinds in prop::collection::vec(span(), 0..6),
        probes in prop::collection::vec(any::<u32>(), 0..4),
    ) {
        let raw = RawBatch {
            now_ms: 0,
            leads: leads.as_ptr(),
            lead_count: leads.len(),
            attributes: attributes.as_ptr(),
            attribute_count: attributes.len(),
            events: events.as_ptr(),
            event_count: events.len(),
            names: names.as_ptr(),
            name_count: names.len(),
            kinds: kinds.as_ptr(),
            kind_count: kinds.len(),
            text: arena.as_ptr(),
            text_len: arena.len(),
        };
        // SAFETY: every pointer and count pair describes a live vector above, unchanged while
        // the view lives, and the arena is a `String`, so UTF-8.
        let batch = unsafe { Batch::from_raw(&raw) };
        read_all(&batch, &arena, &probes)?;
    }

    #[test]
    fn a_built_batch_reads_back_as_written(
        leads in prop::collection::vec(
            ("\\PC{0,12}", prop::collection::vec(("\\PC{0,8}", "\\PC{0,8}"), 0..4), prop::collection::vec((0..3u32, any::<i64>()), 0..4)),
            0..5,
        ),
    ) {
        let mut buf = BatchBuf::new(7);
        let kinds = ["a", "b", "c"].map(|k| buf.push_kind(k));
        let mut written = Vec::new();
        for (id, attributes, events) in &leads {
            buf.begin_lead(id, 11);
            let mut names = Vec::new();
            for (name, value) in attributes {
                let index = buf.push_name(name);
                buf.attribute(index, Value::Text(value));
                names.push((index, value.as_str()));
            }
            for (kind, at_ms) in events {
                buf.event(kinds[*kind as usize], *at_ms, 1.0);
            }
            written.push((id.as_str(), names, events.clone()));
        }
        let raw = buf.raw();
        // SAFETY: `raw` describes `buf`, alive and unchanged while the view lives.
        let batch = unsafe { Batch::from_raw(&raw) };
        prop_assert_eq!(batch.len(), written.len());
        for (lead, (id, names, events)) in batch.leads().zip(&written) {
            prop_assert_eq!(lead.id(), *id);
            let read: Vec<(u32, Value<'_>)> = lead.attributes().map(|a| (a.name(), a.value())).collect();
            let expected: Vec<(u32, Value<'_>)> = names.iter().map(|(n, v)| (*n, Value::Text(v))).collect();
            prop_assert_eq!(read, expected);
            let read: Vec<(&str, i64)> = lead.events().iter().map(|e| (batch.kind(e.kind), e.at_ms)).collect();
            let expected: Vec<(&str, i64)> = events.iter().map(|(k, at)| (["a", "b", "c"][*k as usize], *at)).collect();
            prop_assert_eq!(read, expected);
        }
    }
}
