//! A safe, borrowed view of a batch, the form plugin code reads leads in. Out-of-range spans read
//! as empty rather than failing, so a malformed batch can give a wrong score but never undefined
//! behaviour.

use crate::raw::{Event, RawAttribute, RawBatch, RawLead, Span, TAG_FLAG, TAG_NUMBER};

/// The leads of one call, and the tables their names index.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub(crate) now_ms: i64,
    pub(crate) leads: &'a [RawLead],
    pub(crate) attributes: &'a [RawAttribute],
    pub(crate) events: &'a [Event],
    pub(crate) names: &'a [Span],
    pub(crate) kinds: &'a [Span],
    pub(crate) text: &'a str,
}

/// One lead of a batch.
#[derive(Clone, Copy, Debug)]
pub struct Lead<'a> {
    text: &'a str,
    raw: &'a RawLead,
    attributes: &'a [RawAttribute],
    events: &'a [Event],
}

/// One attribute of a lead. Its value is read only when asked for, so skipping the attributes
/// a scorer does not use costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct Attribute<'a> {
    text: &'a str,
    raw: &'a RawAttribute,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Text(&'a str),
    Number(f64),
    Flag(bool),
}

impl<'a> Batch<'a> {
    /// Views a batch the host passed.
    ///
    /// # Safety
    /// Every pointer of `raw` must point to as many readable elements as its count says, alive
    /// and unchanged for `'a`, and the text arena must be UTF-8 (the host builds it from `str`s;
    /// checking it here would cost as much as scoring a cheap batch).
    pub unsafe fn from_raw(raw: &'a RawBatch) -> Self {
        /// # Safety
        /// As for `from_raw`, for this one pointer and count.
        unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
            if len == 0 {
                return &[];
            }
            // SAFETY: the caller of `from_raw` guarantees `len` live elements at `ptr`.
            unsafe { std::slice::from_raw_parts(ptr, len) }
        }
        // SAFETY: each pointer and count pair comes from the same `raw`, which the caller vouches
        // for.
        let text = unsafe { slice(raw.text, raw.text_len) };
        Self {
            now_ms: raw.now_ms,
            leads: unsafe { slice(raw.leads, raw.lead_count) },
            attributes: unsafe { slice(raw.attributes, raw.attribute_count) },
            events: unsafe { slice(raw.events, raw.event_count) },
            names: unsafe { slice(raw.names, raw.name_count) },
            kinds: unsafe { slice(raw.kinds, raw.kind_count) },
            // SAFETY: the caller guarantees the arena is UTF-8.
            text: unsafe { std::str::from_utf8_unchecked(text) },
        }
    }

    /// The time to score at, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub fn len(&self) -> usize {
        self.leads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leads.is_empty()
    }

    /// The lead at `index`; panics when out of range, like slice indexing.
    pub fn lead(&self, index: usize) -> Lead<'a> {
        self.view_lead(&self.leads[index])
    }

    pub fn leads(&self) -> impl ExactSizeIterator<Item = Lead<'a>> + 'a {
        let batch = *self;
        self.leads.iter().map(move |raw| batch.view_lead(raw))
    }

    fn view_lead(&self, raw: &'a RawLead) -> Lead<'a> {
        Lead {
            text: self.text,
            raw,
            attributes: self.attributes.get(raw.attributes.range()).unwrap_or(&[]),
            events: self.events.get(raw.events.range()).unwrap_or(&[]),
        }
    }

    /// The attribute names, in the order attributes index them. Plugins resolve these once per
    /// batch rather than comparing names per lead.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let text = self.text;
        self.names.iter().map(move |span| text.get(span.range()).unwrap_or(""))
    }

    /// The event kinds, in the order events index them.
    pub fn kinds(&self) -> impl ExactSizeIterator<Item = &'a str> + 'a {
        let text = self.text;
        self.kinds.iter().map(move |span| text.get(span.range()).unwrap_or(""))
    }

    pub fn name(&self, index: u32) -> &'a str {
        self.names.get(index as usize).map_or("", |span| text(self.text, *span))
    }

    pub fn kind(&self, index: u32) -> &'a str {
        self.kinds.get(index as usize).map_or("", |span| text(self.text, *span))
    }
}

fn text(arena: &str, span: Span) -> &str {
    arena.get(span.range()).unwrap_or("")
}

impl<'a> Lead<'a> {
    pub fn id(&self) -> &'a str {
        text(self.text, self.raw.id)
    }

    pub fn created_at_ms(&self) -> i64 {
        self.raw.created_at_ms
    }

    pub fn attributes(&self) -> impl ExactSizeIterator<Item = Attribute<'a>> + 'a {
        let text = self.text;
        self.attributes.iter().map(move |raw| Attribute { text, raw })
    }

    /// Oldest first.
    pub fn events(&self) -> &'a [Event] {
        self.events
    }
}

impl<'a> Attribute<'a> {
    /// The attribute's name, an index into [`Batch::name`].
    pub fn name(&self) -> u32 {
        self.raw.name
    }

    pub fn value(&self) -> Value<'a> {
        match self.raw.tag {
            TAG_NUMBER => Value::Number(self.raw.number),
            TAG_FLAG => Value::Flag(self.raw.number != 0.0),
            _ => Value::Text(text(self.text, self.raw.text)),
        }
    }
}
