//! An owned batch under construction: the host fills one per call (and reuses its memory), and
//! plugin tests build theirs the same way.

use crate::raw::{Event, RawAttribute, RawBatch, RawLead, Span, TAG_FLAG, TAG_NUMBER, TAG_TEXT};
use crate::view::{Batch, Value};

#[derive(Clone, Debug, Default)]
pub struct BatchBuf {
    now_ms: i64,
    leads: Vec<RawLead>,
    attributes: Vec<RawAttribute>,
    events: Vec<Event>,
    names: Vec<Span>,
    kinds: Vec<Span>,
    text: String,
}

impl BatchBuf {
    pub fn new(now_ms: i64) -> Self {
        Self { now_ms, ..Self::default() }
    }

    /// Empties the batch for reuse, keeping its memory.
    pub fn clear(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        self.leads.clear();
        self.attributes.clear();
        self.events.clear();
        self.names.clear();
        self.kinds.clear();
        self.text.clear();
    }

    /// The memory the batch holds, used or not.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.leads.capacity() * size_of::<RawLead>()
            + self.attributes.capacity() * size_of::<RawAttribute>()
            + self.events.capacity() * size_of::<Event>()
            + (self.names.capacity() + self.kinds.capacity()) * size_of::<Span>()
            + self.text.capacity()
    }

    pub fn len(&self) -> usize {
        self.leads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leads.is_empty()
    }

    /// Adds an attribute name to the name table and returns its index.
    pub fn push_name(&mut self, name: &str) -> u32 {
        let span = self.push_text(name);
        self.names.push(span);
        self.names.len() as u32 - 1
    }

    /// Adds an event kind to the kind table and returns its index.
    pub fn push_kind(&mut self, kind: &str) -> u32 {
        let span = self.push_text(kind);
        self.kinds.push(span);
        self.kinds.len() as u32 - 1
    }

    /// Starts a lead; the attributes and events pushed next belong to it.
    pub fn begin_lead(&mut self, id: &str, created_at_ms: i64) {
        let id = self.push_text(id);
        let attributes = Span { start: self.attributes.len() as u32, len: 0 };
        let events = Span { start: self.events.len() as u32, len: 0 };
        self.leads.push(RawLead { id, attributes, events, created_at_ms });
    }

    /// Adds an attribute to the current lead; `name` is an index from `push_name`.
    pub fn attribute(&mut self, name: u32, value: Value<'_>) {
        let (tag, number, text) = match value {
            Value::Text(text) => (TAG_TEXT, 0.0, self.push_text(text)),
            Value::Number(number) => (TAG_NUMBER, number, Span::default()),
            Value::Flag(flag) => (TAG_FLAG, f64::from(u8::from(flag)), Span::default()),
        };
        self.attributes.push(RawAttribute { name, tag, number, text });
        self.current().attributes.len += 1;
    }

    /// Adds an event to the current lead; events must come oldest first.
    pub fn event(&mut self, kind: u32, at_ms: i64, value: f64) {
        self.events.push(Event { kind, reserved: 0, at_ms, value });
        self.current().events.len += 1;
    }

    /// The batch as the C boundary passes it; valid while `self` is neither changed nor moved.
    pub fn raw(&self) -> RawBatch {
        RawBatch {
            now_ms: self.now_ms,
            leads: self.leads.as_ptr(),
            lead_count: self.leads.len(),
            attributes: self.attributes.as_ptr(),
            attribute_count: self.attributes.len(),
            events: self.events.as_ptr(),
            event_count: self.events.len(),
            names: self.names.as_ptr(),
            name_count: self.names.len(),
            kinds: self.kinds.as_ptr(),
            kind_count: self.kinds.len(),
            text: self.text.as_ptr(),
            text_len: self.text.len(),
        }
    }

    /// The batch as plugin code reads it, for calls in the same process.
    pub fn view(&self) -> Batch<'_> {
        Batch {
            now_ms: self.now_ms,
            leads: &self.leads,
            attributes: &self.attributes,
            events: &self.events,
            names: &self.names,
            kinds: &self.kinds,
            text: &self.text,
        }
    }

    fn current(&mut self) -> &mut RawLead {
        self.leads.last_mut().expect("begin_lead comes before a lead's attributes and events")
    }

    fn push_text(&mut self, text: &str) -> Span {
        let span = Span { start: self.text.len() as u32, len: text.len() as u32 };
        self.text.push_str(text);
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_batch_reads_back_through_both_views() {
        let mut buf = BatchBuf::new(1_000);
        let role = buf.push_name("role");
        let employees = buf.push_name("employees");
        let open = buf.push_kind("email_open");
        buf.begin_lead("a", 5);
        buf.attribute(role, Value::Text("CTO"));
        buf.attribute(employees, Value::Number(640.0));
        buf.event(open, 900, 0.0);
        buf.begin_lead("b", 6);
        buf.attribute(role, Value::Flag(true));

        let raw = buf.raw();
        // SAFETY: `raw` points into `buf` (text built from `str`s), which outlives `through_raw`
        // and is not changed.
        let through_raw = unsafe { Batch::from_raw(&raw) };
        for batch in [buf.view(), through_raw] {
            assert_eq!(batch.now_ms(), 1_000);
            assert_eq!(batch.names().collect::<Vec<_>>(), ["role", "employees"]);
            assert_eq!(batch.kind(open), "email_open");
            let a = batch.lead(0);
            assert_eq!((a.id(), a.created_at_ms()), ("a", 5));
            let attributes: Vec<_> = a.attributes().map(|x| (batch.name(x.name()), x.value())).collect();
            assert_eq!(attributes, [("role", Value::Text("CTO")), ("employees", Value::Number(640.0))]);
            assert_eq!(a.events().len(), 1);
            assert_eq!(a.events()[0].at_ms, 900);
            let b = batch.lead(1);
            assert_eq!(b.attributes().next().unwrap().value(), Value::Flag(true));
            assert!(b.events().is_empty());
        }
    }
}
