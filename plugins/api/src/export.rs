//! The exported side of the boundary: generic `extern "C"` functions that turn C calls into
//! [`Scorer`] calls. Every body runs inside `catch_unwind`, so no panic crosses into the host.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use crate::raw::{
    Code, ErrorBuf, FLAG_ATTRIBUTES_ONLY, FactorBuf, Header, Instance, RawBatch, RawFactor, RawStr, Span, Table,
};
use crate::view::Batch;
use crate::{ABI_MAJOR, ABI_MINOR, Factor, MAGIC, Scorer};

/// The header a plugin's entry symbol returns; built by [`crate::export_scorer!`].
pub const fn header<T: Scorer>() -> Header {
    Header {
        magic: MAGIC,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        header_size: size_of::<Header>() as u32,
        table_size: size_of::<Table>() as u32,
        flags: if T::ATTRIBUTES_ONLY { FLAG_ATTRIBUTES_ONLY } else { 0 },
        name: RawStr::new(T::NAME),
        version: RawStr::new(T::VERSION),
        table: Table {
            create: create::<T>,
            score: score::<T>,
            explain: explain::<T, false>,
            destroy: destroy::<T>,
            score_points: score_points::<T>,
            explain_points: explain::<T, true>,
        },
    }
}

/// # Safety
/// `config` must describe live bytes, `instance` and `error` must be valid for writes.
unsafe extern "C" fn create<T: Scorer>(config: RawStr, instance: *mut Instance, error: *mut ErrorBuf) -> Code {
    guard(error, || {
        // SAFETY: the host passes the configuration's bytes, alive for this call.
        let config = std::str::from_utf8(unsafe { config.as_bytes() }).map_err(|_| "config is not UTF-8")?;
        let scorer = Box::new(T::create(config)?);
        // SAFETY: the host passes a place for the instance pointer.
        unsafe { instance.write(Box::into_raw(scorer).cast()) };
        Ok(())
    })
}

/// # Safety
/// `instance` must come from `create::<T>`; `batch` must be valid as `Batch::from_raw` requires;
/// `scores` must have room for `lead_count` values.
unsafe extern "C" fn score<T: Scorer>(
    instance: Instance,
    batch: *const RawBatch,
    scores: *mut f64,
    error: *mut ErrorBuf,
) -> Code {
    guard(error, || {
        // SAFETY: as the caller guarantees.
        let (scorer, view, count) = unsafe { open::<T>(instance, batch) };
        // SAFETY: the host allocated one score per lead.
        scorer.score(&view, unsafe { slots(scores, count) })
    })
}

/// # Safety
/// As for `score`; `points` must have room for `lead_count` values too.
unsafe extern "C" fn score_points<T: Scorer>(
    instance: Instance,
    batch: *const RawBatch,
    scores: *mut f64,
    points: *mut f64,
    error: *mut ErrorBuf,
) -> Code {
    guard(error, || {
        // SAFETY: as the caller guarantees.
        let (scorer, view, count) = unsafe { open::<T>(instance, batch) };
        // SAFETY: the host allocated one score and one point total per lead, apart.
        let (scores, points) = unsafe { (slots(scores, count), slots(points, count)) };
        scorer.score_points(&view, scores, points)
    })
}

/// The instance and the batch of a call, and the batch's length.
///
/// # Safety
/// `instance` must come from `create::<T>` and not yet be destroyed; `batch` must be live, its
/// arrays alive for the call and its text UTF-8.
unsafe fn open<'a, T: Scorer>(instance: Instance, batch: *const RawBatch) -> (&'a T, Batch<'a>, usize) {
    // SAFETY: as the caller guarantees.
    unsafe {
        let raw = &*batch;
        (&*instance.cast::<T>(), Batch::from_raw(raw), raw.lead_count)
    }
}

/// One host-owned slot per lead.
///
/// # Safety
/// `ptr` must have room for `count` values, borrowed by no one else for the call.
unsafe fn slots<'a>(ptr: *mut f64, count: usize) -> &'a mut [f64] {
    if count == 0 {
        return &mut [];
    }
    // SAFETY: as the caller guarantees.
    unsafe { std::slice::from_raw_parts_mut(ptr, count) }
}

/// Explains a lead's score, or with `POINTS` its points.
///
/// # Safety
/// As for `score`; `factors` must describe host-owned arrays of the capacities it states.
unsafe extern "C" fn explain<T: Scorer, const POINTS: bool>(
    instance: Instance,
    batch: *const RawBatch,
    lead: usize,
    factors: *mut FactorBuf,
    error: *mut ErrorBuf,
) -> Code {
    guard(error, || {
        // SAFETY: as the caller guarantees.
        let (scorer, view, count) = unsafe { open::<T>(instance, batch) };
        if lead >= count {
            return Err(format!("lead index {lead} is out of range for a batch of {count}"));
        }
        let mut found = if POINTS { scorer.explain_points(&view, lead)? } else { scorer.explain(&view, lead)? };
        found.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        // SAFETY: the host passes live arrays of the stated capacities.
        unsafe { write_factors(&mut *factors, &found) };
        Ok(())
    })
}

/// # Safety
/// `instance` must come from `create::<T>` and not be used again.
unsafe extern "C" fn destroy<T: Scorer>(instance: Instance) {
    // A panic in a destructor is dropped here: there is no one left to tell.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host destroys each instance once, after its last call.
        drop(unsafe { Box::from_raw(instance.cast::<T>()) });
    }));
}

thread_local! {
    /// Whether this thread is inside `guard`, whose panics the host reports.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// Where the last guarded panic of this thread happened.
    static PANICKED_AT: Cell<Option<String>> = const { Cell::new(None) };
}

/// A panic inside `guard` prints nothing: the host logs it once, structured, with the place it
/// happened. Every other panic goes to the hook that was there before.
fn quiet_guarded_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match GUARDED.get() {
            true => PANICKED_AT.set(info.location().map(|at| format!("{}:{}", at.file(), at.line()))),
            false => previous(info),
        }));
    });
}

/// Runs `body`, turning an error or a panic into a code and a message in `error`.
fn guard(error: *mut ErrorBuf, body: impl FnOnce() -> Result<(), String>) -> Code {
    quiet_guarded_panics();
    GUARDED.set(true);
    let outcome = catch_unwind(AssertUnwindSafe(body));
    GUARDED.set(false);
    let (code, message) = match outcome {
        Ok(Ok(())) => return Code::OK,
        Ok(Err(message)) => (Code::ERROR, message),
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            match PANICKED_AT.take() {
                Some(at) => (Code::PANIC, format!("{message} (at {at})")),
                None => (Code::PANIC, message),
            }
        }
    };
    if !error.is_null() {
        // SAFETY: a non-null `error` is a host-owned buffer of `cap` bytes.
        unsafe { write_error(&mut *error, &message) };
    }
    code
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".into())
}

/// # Safety
/// `buf.ptr` must have room for `buf.cap` bytes.
unsafe fn write_error(buf: &mut ErrorBuf, message: &str) {
    let text = truncate(message, buf.cap);
    // SAFETY: `text` fits in `cap` bytes, and the host's buffer does not overlap our message.
    unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf.ptr, text.len()) };
    buf.len = text.len();
}

/// Writes as many factors as fit, biggest first, truncating their text to what is left.
///
/// # Safety
/// `buf`'s arrays must have room for the capacities it states.
unsafe fn write_factors(buf: &mut FactorBuf, factors: &[Factor]) {
    buf.len = 0;
    buf.text_len = 0;
    for factor in factors.iter().take(buf.cap) {
        let mut text = |s: &str| {
            let s = truncate(s, buf.text_cap - buf.text_len);
            // SAFETY: `s` fits in what is left of the host's text buffer.
            unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), buf.text.add(buf.text_len), s.len()) };
            let span = Span { start: buf.text_len as u32, len: s.len() as u32 };
            buf.text_len += s.len();
            span
        };
        let raw = RawFactor {
            contribution: factor.contribution,
            feature: text(&factor.feature),
            detail: text(&factor.detail),
        };
        // SAFETY: `len < cap`, since we take at most `cap` factors.
        unsafe { buf.factors.add(buf.len).write(raw) };
        buf.len += 1;
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuf, Value};

    /// Scores a lead by its `points` attribute and panics on a lead named "boom".
    struct Points;

    impl Scorer for Points {
        const NAME: &'static str = "points";
        const VERSION: &'static str = "1.0.0";

        fn create(config: &str) -> Result<Self, String> {
            if config == "{}" { Ok(Points) } else { Err(format!("unexpected config {config}")) }
        }

        fn score(&self, batch: &Batch<'_>, scores: &mut [f64]) -> Result<(), String> {
            for (lead, score) in batch.leads().zip(scores) {
                if lead.id() == "boom" {
                    panic!("lead boom exploded");
                }
                *score = lead
                    .attributes()
                    .find_map(|a| match a.value() {
                        Value::Number(n) => Some(n),
                        _ => None,
                    })
                    .unwrap_or(0.0);
            }
            Ok(())
        }

        fn explain(&self, _: &Batch<'_>, _: usize) -> Result<Vec<Factor>, String> {
            let factor =
                |feature: &str, contribution| Factor {
                    feature: feature.into(), contribution, detail: "détail".into()
                };
            Ok(vec![factor("small", 1.0), factor("big", -9.0), factor("medium", 4.0)])
        }
    }

    fn call_score(batch: &BatchBuf, error: &mut [u8]) -> (Code, Vec<f64>, String) {
        let header = header::<Points>();
        let mut instance: Instance = std::ptr::null_mut();
        let mut err = ErrorBuf::over(error);
        // SAFETY: every pointer is to live local memory of the stated size.
        unsafe {
            assert_eq!((header.table.create)(RawStr::new("{}"), &mut instance, &mut err), Code::OK);
            let mut scores = vec![-1.0; batch.len()];
            let raw = batch.raw();
            let code = (header.table.score)(instance, &raw, scores.as_mut_ptr(), &mut err);
            (header.table.destroy)(instance);
            (code, scores, String::from_utf8(error[..err.len].to_vec()).unwrap())
        }
    }

    fn batch(ids: &[&str]) -> BatchBuf {
        let mut buf = BatchBuf::new(0);
        let points = buf.push_name("points");
        for (i, id) in ids.iter().enumerate() {
            buf.begin_lead(id, 0);
            buf.attribute(points, Value::Number(i as f64 * 10.0));
        }
        buf
    }

    #[test]
    fn scores_cross_the_boundary() {
        let (code, scores, _) = call_score(&batch(&["a", "b", "c"]), &mut [0; 64]);
        assert_eq!(code, Code::OK);
        assert_eq!(scores, [0.0, 10.0, 20.0]);
    }

    #[test]
    fn a_panic_becomes_a_code_and_a_truncated_message() {
        let (code, _, message) = call_score(&batch(&["a", "boom"]), &mut [0; 64]);
        assert_eq!(code, Code::PANIC);
        assert!(message.starts_with("lead boom exploded"), "{message}");
        let (code, _, message) = call_score(&batch(&["boom"]), &mut [0; 9]);
        assert_eq!((code, message.as_str()), (Code::PANIC, "lead boom"));
    }

    #[test]
    fn create_errors_carry_the_plugins_message() {
        let header = header::<Points>();
        let mut instance: Instance = std::ptr::null_mut();
        let mut error = [0u8; 64];
        let mut err = ErrorBuf::over(&mut error);
        // SAFETY: every pointer is to live local memory of the stated size.
        let code = unsafe { (header.table.create)(RawStr::new("[1]"), &mut instance, &mut err) };
        assert_eq!(code, Code::ERROR);
        assert_eq!(&error[..err.len], b"unexpected config [1]");
        assert!(instance.is_null());
    }

    #[test]
    fn factors_are_written_biggest_first_within_capacity() {
        let header = header::<Points>();
        let mut instance: Instance = std::ptr::null_mut();
        let mut err = ErrorBuf::over(&mut []);
        let mut factors = [RawFactor::default(); 2];
        let mut text = [0u8; 10];
        let mut buf = FactorBuf::over(&mut factors, &mut text);
        let lead = batch(&["a"]);
        // SAFETY: every pointer is to live local memory of the stated size.
        unsafe {
            assert_eq!((header.table.create)(RawStr::new("{}"), &mut instance, &mut err), Code::OK);
            let code = (header.table.explain)(instance, &lead.raw(), 0, &mut buf, &mut err);
            (header.table.destroy)(instance);
            assert_eq!(code, Code::OK);
        }
        assert_eq!(buf.len, 2);
        assert_eq!([factors[0].contribution, factors[1].contribution], [-9.0, 4.0]);
        // "big" + "détail" (7 bytes) fill 10 bytes; "medium" gets nothing, and "é" is never split.
        let text = |span: Span| std::str::from_utf8(&text[span.range()]).unwrap().to_string();
        assert_eq!([text(factors[0].feature), text(factors[0].detail)], ["big", "détail"]);
        assert_eq!(text(factors[1].feature), "");
    }
}
