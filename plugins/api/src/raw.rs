//! The `#[repr(C)]` types that cross the boundary. Only plain data: numbers, and spans into one
//! shared text arena, so no Rust type layout is ever shared between two compilers.

use std::ffi::c_void;

/// Borrowed UTF-8 bytes. Used for the header's strings and the configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawStr {
    pub ptr: *const u8,
    pub len: usize,
}

impl RawStr {
    pub const fn new(text: &str) -> Self {
        Self { ptr: text.as_ptr(), len: text.len() }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive `'a`.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr` and `len` describe live memory.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A range of an array or of the text arena of a batch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// One lead of a batch: its id in the text arena, and its ranges of the attribute and event
/// arrays.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawLead {
    pub id: Span,
    pub attributes: Span,
    pub events: Span,
    pub created_at_ms: i64,
}

pub const TAG_TEXT: u32 = 0;
pub const TAG_NUMBER: u32 = 1;
pub const TAG_FLAG: u32 = 2;

/// One attribute: its name (an index into the batch's name table) and a tagged value. A flag
/// is carried in `number` as 0 or 1; text in `text`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawAttribute {
    pub name: u32,
    pub tag: u32,
    pub number: f64,
    pub text: Span,
}

/// One behavioural event: its kind (an index into the batch's kind table), when it happened
/// and its optional value. A lead's events come oldest first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Event {
    pub kind: u32,
    /// Zero; keeps `at_ms` aligned and leaves room for later use.
    pub reserved: u32,
    pub at_ms: i64,
    pub value: f64,
}

/// A batch of leads in flat arrays. Every span indexes the array it names; every text span
/// (ids, text values, names, kinds) indexes `text`, which must be UTF-8.
#[repr(C)]
#[derive(Debug)]
pub struct RawBatch {
    /// The time to score at, in Unix milliseconds; decay is computed against it.
    pub now_ms: i64,
    pub leads: *const RawLead,
    pub lead_count: usize,
    pub attributes: *const RawAttribute,
    pub attribute_count: usize,
    pub events: *const Event,
    pub event_count: usize,
    /// Attribute names, by the index attributes refer to.
    pub names: *const Span,
    pub name_count: usize,
    /// Event kinds, by the index events refer to.
    pub kinds: *const Span,
    pub kind_count: usize,
    pub text: *const u8,
    pub text_len: usize,
}

/// A host-owned buffer the plugin writes an error message into, truncated to `cap`.
#[repr(C)]
#[derive(Debug)]
pub struct ErrorBuf {
    pub ptr: *mut u8,
    pub cap: usize,
    pub len: usize,
}

impl ErrorBuf {
    /// An empty message over `bytes`, which must outlive every use of the buffer.
    pub fn over(bytes: &mut [u8]) -> Self {
        Self { ptr: bytes.as_mut_ptr(), cap: bytes.len(), len: 0 }
    }
}

/// One factor of an explanation; its strings are spans of the `FactorBuf`'s text.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawFactor {
    pub contribution: f64,
    pub feature: Span,
    pub detail: Span,
}

/// Host-owned arrays an explanation is written into; the plugin sets the two lengths.
#[repr(C)]
#[derive(Debug)]
pub struct FactorBuf {
    pub factors: *mut RawFactor,
    pub cap: usize,
    pub len: usize,
    pub text: *mut u8,
    pub text_cap: usize,
    pub text_len: usize,
}

impl FactorBuf {
    /// No factors yet, over `factors` and `text`, which must outlive every use of the buffer.
    pub fn over(factors: &mut [RawFactor], text: &mut [u8]) -> Self {
        Self {
            factors: factors.as_mut_ptr(),
            cap: factors.len(),
            len: 0,
            text: text.as_mut_ptr(),
            text_cap: text.len(),
            text_len: 0,
        }
    }
}

/// What an exported function returns.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code(pub u32);

impl Code {
    pub const OK: Self = Self(0);
    /// The plugin refused: bad configuration, or input it cannot score. The message says why.
    pub const ERROR: Self = Self(1);
    /// The plugin panicked; the panic was caught at the boundary.
    pub const PANIC: Self = Self(2);
}

/// An opaque plugin instance.
pub type Instance = *mut c_void;

pub type CreateFn = unsafe extern "C" fn(config: RawStr, instance: *mut Instance, error: *mut ErrorBuf) -> Code;
pub type ScoreFn =
    unsafe extern "C" fn(instance: Instance, batch: *const RawBatch, scores: *mut f64, error: *mut ErrorBuf) -> Code;
pub type ExplainFn = unsafe extern "C" fn(
    instance: Instance,
    batch: *const RawBatch,
    lead: usize,
    factors: *mut FactorBuf,
    error: *mut ErrorBuf,
) -> Code;
pub type DestroyFn = unsafe extern "C" fn(instance: Instance);
/// Minor 1: scores every lead into `scores` (0-100) and its points into `points` (any finite
/// number: the scorer's own tally, which composes additively).
pub type ScorePointsFn = unsafe extern "C" fn(
    instance: Instance,
    batch: *const RawBatch,
    scores: *mut f64,
    points: *mut f64,
    error: *mut ErrorBuf,
) -> Code;

/// The plugin's functions. Later minor versions only append fields.
#[repr(C)]
#[derive(Debug)]
pub struct Table {
    /// Builds an instance from the plugin's configuration (JSON).
    pub create: CreateFn,
    /// Scores every lead of a batch into `scores` (one per lead, 0-100). Called concurrently.
    pub score: ScoreFn,
    /// Explains one lead of a batch as per-factor contributions.
    pub explain: ExplainFn,
    /// Frees an instance made by `create`.
    pub destroy: DestroyFn,
    /// Minor 1: scores and points in one call. Without it, a lead's points are its score.
    pub score_points: ScorePointsFn,
    /// Minor 1: explains one lead's points, as `explain` explains its score.
    pub explain_points: ExplainFn,
}

/// Minor 2's flag: the scores depend on the lead's attributes alone, not on its events, its
/// creation time or the batch's time, so a change of events alone leaves them as they were.
pub const FLAG_ATTRIBUTES_ONLY: u64 = 1;

/// The size of minor 0's table (its first four functions): the least this major accepts.
pub const TABLE_SIZE_MINOR_0: usize = std::mem::offset_of!(Table, score_points);
/// The size of a header whose table is minor 0's.
pub const HEADER_SIZE_MINOR_0: usize = std::mem::offset_of!(Header, table) + TABLE_SIZE_MINOR_0;

/// What the entry symbol returns: checked field by field, in order, before anything is called.
#[repr(C)]
#[derive(Debug)]
pub struct Header {
    pub magic: [u8; 8],
    pub abi_major: u32,
    pub abi_minor: u32,
    /// `size_of::<Header>()` as the plugin was built.
    pub header_size: u32,
    /// `size_of::<Table>()` as the plugin was built.
    pub table_size: u32,
    /// Minor 2: what the scorer reads ([`FLAG_ATTRIBUTES_ONLY`]); zero before, and in the bits
    /// no minor has given a meaning yet.
    pub flags: u64,
    pub name: RawStr,
    pub version: RawStr,
    pub table: Table,
}

// SAFETY: a header is immutable static data: string pointers to `'static` text and function
// pointers.
unsafe impl Sync for Header {}
