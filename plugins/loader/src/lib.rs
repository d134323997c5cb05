//! Loading scorer plugins: the only unsafe code on the engine's side of the ABI, in a crate of
//! its own so that the engine and everything else can forbid unsafe code.
//!
//! A library is copied under a unique name before it is opened (the dynamic loader caches by
//! path, so a reload of a changed file would otherwise get the old code), its header is checked
//! field by field before anything in it is called, an instance is created from its
//! configuration, and a smoke batch must come back with finite scores within 0-100 and finite
//! points. Each refusal is a typed error naming the file. At run time a panic fails the call, is
//! counted, and enough of them take the plugin out of service.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::c_void;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use leadscore_plugin_api::{
    ABI_MAJOR, BatchBuf, Code, ENTRY_SYMBOL, ErrorBuf, FLAG_ATTRIBUTES_ONLY, Factor, FactorBuf, HEADER_SIZE_MINOR_0,
    Header, MAGIC, RawFactor, RawStr, TABLE_SIZE_MINOR_0, Table, Value, entry_symbol,
};
use tracing::{error, warn};

/// A leaf lock: nothing else is taken while it is held, and it is never held across a call.
use parking_lot::Mutex;

/// Bytes of the buffer a plugin's error message is written into.
const ERROR_BYTES: usize = 1024;
/// Factors an explanation keeps per scorer, biggest first.
pub const MAX_FACTORS: usize = 32;
/// Bytes of factor text (features and details) an explanation keeps per scorer.
const FACTOR_TEXT_BYTES: usize = 8 << 10;
/// Other ABI majors probed for when the entry symbol is missing, to tell "built for another
/// ABI" from "not a plugin".
const PROBED_MAJORS: std::ops::RangeInclusive<u32> = 0..=16;

/// Why a library was refused; the server runs on without it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot be loaded: {cause}")]
    Open { path: PathBuf, cause: String },
    #[error("{path}: no `leadscore_scorer_v{expected}` symbol: not a Leadscore scorer plugin")]
    MissingSymbol { path: PathBuf, expected: u32 },
    #[error(
        "{path}: built for plugin ABI major {found}, this engine speaks ABI major {expected}: rebuild it against \
         this engine's plugins/api (ABI {expected})"
    )]
    AbiMajor { path: PathBuf, found: u32, expected: u32 },
    #[error("{path}: bad header: {problem}")]
    Header { path: PathBuf, problem: String },
    #[error("{path}: scorer `{name}` refused its configuration: {message}")]
    Config { path: PathBuf, name: String, message: String },
    #[error("{path}: scorer `{name}` failed its smoke test: {problem}")]
    Smoke { path: PathBuf, name: String, problem: String },
}

/// Why a call into a loaded plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("scorer `{name}` failed: {message}")]
    Failed { name: String, message: String },
    #[error("scorer `{name}` panicked: {message}")]
    Panicked { name: String, message: String },
    #[error("scorer `{name}` returned {value} for lead {lead:?}; scores must be finite and within 0-100")]
    OutOfRange { name: String, lead: String, value: f64 },
    #[error("scorer `{name}` returned {value} points for lead {lead:?}; points must be finite")]
    NotFinite { name: String, lead: String, value: f64 },
    #[error("scorer `{name}` is quarantined: {reason}")]
    Quarantined { name: String, reason: String },
}

/// A loaded, checked plugin with one instance.
pub struct Plugin {
    pub name: String,
    pub version: String,
    /// The file it was loaded from (not the private copy).
    pub path: PathBuf,
    pub abi_minor: u32,
    /// Whether its scores depend on a lead's attributes alone (`FLAG_ATTRIBUTES_ONLY`): then a
    /// change of events alone keeps them.
    pub attributes_only: bool,
    pub loaded_at_ms: i64,
    calls: AtomicU64,
    /// Leads scored and the time their calls took, for the mean time per lead.
    leads: AtomicU64,
    nanos: AtomicU64,
    panics: AtomicU64,
    /// Panics and out-of-range results, which count towards quarantine.
    faults: AtomicU64,
    max_faults: u64,
    /// Why the plugin was quarantined; once set, never cleared.
    quarantine: Mutex<Option<String>>,
    /// Whether `quarantine` is set: read on every call without its lock.
    quarantined: AtomicBool,
    table: TableCopy,
    instance: *mut c_void,
    /// Last, so that it is unloaded only after `drop` has destroyed the instance.
    _library: libloading::Library,
}

/// The plugin's functions, copied out of its header; valid while the library is loaded.
#[derive(Clone, Copy)]
struct TableCopy {
    score: leadscore_plugin_api::raw::ScoreFn,
    explain: leadscore_plugin_api::raw::ExplainFn,
    destroy: leadscore_plugin_api::raw::DestroyFn,
    /// Minor 1's; `None` for a plugin built for minor 0, whose points are its scores.
    points: Option<PointsFns>,
}

#[derive(Clone, Copy)]
struct PointsFns {
    score: leadscore_plugin_api::raw::ScorePointsFn,
    explain: leadscore_plugin_api::raw::ExplainFn,
}

// SAFETY: the ABI requires instances to be usable from any thread at once (the `Scorer` trait
// is `Send + Sync`); everything else here is owned data and atomics.
unsafe impl Send for Plugin {}
// SAFETY: as above.
unsafe impl Sync for Plugin {}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("name", &self.name).field("path", &self.path).finish_non_exhaustive()
    }
}

/// Counters and state for `ListScorers`.
#[derive(Clone, Debug)]
pub struct PluginStats {
    pub calls: u64,
    /// Mean time per lead of its score calls that scored (faults and failures apart); 0 before
    /// any.
    pub ns_per_lead: f64,
    pub panics: u64,
    pub faults: u64,
    pub quarantine: Option<String>,
}

impl Plugin {
    /// Loads the library at `path`: copies it to a private name under `scratch`, checks its
    /// header, creates an instance with the configuration `config_of` gives for its name (JSON),
    /// and runs the smoke batch.
    pub fn load(
        path: &Path,
        scratch: &Path,
        config_of: impl FnOnce(&str) -> String,
        max_faults: u64,
        now_ms: i64,
    ) -> Result<Self, LoadError> {
        let open_error = |cause: String| LoadError::Open { path: path.to_owned(), cause };
        let copy = private_copy(path, scratch).map_err(|e| open_error(e.to_string()))?;
        // SAFETY: loading runs the library's initialisers. Plugins are trusted code installed by
        // the operator in the plugin directory; this is the trust boundary the design accepts.
        let library = unsafe { libloading::Library::new(&copy) };
        // The mapping stays after the file is gone; the copy only had to give the loader a
        // name it never saw before.
        let _ = fs::remove_file(&copy);
        let library = library.map_err(|e| open_error(e.to_string()))?;
        let header = read_header(path, &library)?;

        let name = header.name.clone();
        let config = config_of(&name);
        let mut instance: *mut c_void = std::ptr::null_mut();
        let (code, message) = with_error_buf(|error| {
            // SAFETY: `create` comes from a header whose version and sizes were checked; the
            // configuration and the error buffer are live for the call.
            unsafe { (header.create)(RawStr::new(&config), &mut instance, error) }
        });
        if code != Code::OK || instance.is_null() {
            let message = if code == Code::OK { "create returned no instance".into() } else { message };
            return Err(LoadError::Config { path: path.to_owned(), name, message });
        }
        let plugin = Self {
            name,
            version: header.version,
            path: path.to_owned(),
            abi_minor: header.abi_minor,
            attributes_only: header.attributes_only,
            loaded_at_ms: now_ms,
            calls: AtomicU64::new(0),
            leads: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            max_faults,
            quarantine: Mutex::new(None),
            quarantined: AtomicBool::new(false),
            table: header.table,
            instance,
            _library: library,
        };
        plugin.smoke_test(now_ms).map_err(|problem| LoadError::Smoke {
            path: path.to_owned(),
            name: plugin.name.clone(),
            problem,
        })?;
        for counter in [&plugin.calls, &plugin.leads, &plugin.nanos] {
            counter.store(0, Ordering::Relaxed);
        }
        Ok(plugin)
    }

    /// Scores every lead of `batch` into `scores` (0-100) and `points` (finite), one each per
    /// lead. A plugin built before points (minor 0) gets its scores as points.
    pub fn score(&self, batch: &BatchBuf, scores: &mut [f64], points: &mut [f64]) -> Result<(), CallError> {
        self.score_timed(batch, scores, points).map(drop)
    }

    /// As `score`, and how long the plugin took: callers that time it read this clock reading
    /// rather than their own.
    pub fn score_timed(
        &self,
        batch: &BatchBuf,
        scores: &mut [f64],
        points: &mut [f64],
    ) -> Result<std::time::Duration, CallError> {
        assert!(scores.len() == batch.len() && points.len() == batch.len(), "one score and one point total per lead");
        self.check_active()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let raw = batch.raw();
        let started = std::time::Instant::now();
        let (code, message) = with_error_buf(|error| match self.table.points {
            // SAFETY: `raw` points into `batch`, which is borrowed (so neither changed nor moved)
            // for the call; `scores` and `points` have one slot per lead; the instance lives as
            // long as `self`.
            Some(fns) => unsafe { (fns.score)(self.instance, &raw, scores.as_mut_ptr(), points.as_mut_ptr(), error) },
            // SAFETY: as above.
            None => unsafe { (self.table.score)(self.instance, &raw, scores.as_mut_ptr(), error) },
        });
        let took = started.elapsed();
        let nanos = took.as_nanos() as u64;
        self.outcome(code, message)?;
        if self.table.points.is_none() {
            points.copy_from_slice(scores);
        }
        let bad_score = scores.iter().position(|s| !(0.0..=100.0).contains(s));
        let bad_points = points.iter().position(|p| !p.is_finite());
        let err = match (bad_score, bad_points) {
            // Only calls that scored count towards the time per lead: a fault is counted apart.
            (None, None) => {
                self.nanos.fetch_add(nanos, Ordering::Relaxed);
                self.leads.fetch_add(batch.len() as u64, Ordering::Relaxed);
                return Ok(took);
            }
            (Some(index), _) => CallError::OutOfRange {
                name: self.name.clone(),
                lead: batch.view().lead(index).id().into(),
                value: scores[index],
            },
            (None, Some(index)) => CallError::NotFinite {
                name: self.name.clone(),
                lead: batch.view().lead(index).id().into(),
                value: points[index],
            },
        };
        self.fault(&err);
        Err(err)
    }

    /// Explains lead `lead` of `batch`, biggest factors first: its score, or its points when
    /// `points` is set (the same for a plugin built before points).
    pub fn explain(&self, batch: &BatchBuf, lead: usize, points: bool) -> Result<Vec<Factor>, CallError> {
        self.check_active()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let raw = batch.raw();
        let mut factors = [RawFactor::default(); MAX_FACTORS];
        FACTOR_TEXT.with_borrow_mut(|text| {
            let mut out = FactorBuf::over(&mut factors, &mut text[..]);
            let (code, message) = with_error_buf(|error| {
                // SAFETY: as in `score`; `out` describes two arrays alive for the call.
                let explain = match self.table.points {
                    Some(fns) if points => fns.explain,
                    _ => self.table.explain,
                };
                unsafe { explain(self.instance, &raw, lead, &mut out, error) }
            });
            self.outcome(code, message)?;
            // Only what this call wrote is read: the buffer holds earlier calls' text beyond.
            let text = &text[..out.text_len.min(FACTOR_TEXT_BYTES)];
            let string = |span: leadscore_plugin_api::Span| {
                text.get(span.range()).map(|bytes| String::from_utf8_lossy(bytes).into_owned()).unwrap_or_default()
            };
            Ok(factors[..out.len.min(MAX_FACTORS)]
                .iter()
                .filter(|f| f.contribution.is_finite())
                .map(|f| Factor { feature: string(f.feature), contribution: f.contribution, detail: string(f.detail) })
                .collect())
        })
    }

    pub fn is_active(&self) -> bool {
        !self.quarantined.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> PluginStats {
        PluginStats {
            calls: self.calls.load(Ordering::Relaxed),
            ns_per_lead: match self.leads.load(Ordering::Relaxed) {
                0 => 0.0,
                leads => self.nanos.load(Ordering::Relaxed) as f64 / leads as f64,
            },
            panics: self.panics.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            quarantine: self.quarantine.lock().clone(),
        }
    }

    fn check_active(&self) -> Result<(), CallError> {
        if self.is_active() {
            return Ok(());
        }
        match &*self.quarantine.lock() {
            None => Ok(()),
            Some(reason) => Err(CallError::Quarantined { name: self.name.clone(), reason: reason.clone() }),
        }
    }

    fn outcome(&self, code: Code, message: String) -> Result<(), CallError> {
        let name = self.name.clone();
        match code {
            Code::OK => Ok(()),
            Code::PANIC => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                let err = CallError::Panicked { name, message };
                self.fault(&err);
                Err(err)
            }
            Code::ERROR => Err(CallError::Failed { name, message }),
            Code(other) => Err(CallError::Failed { name, message: format!("unknown return code {other}") }),
        }
    }

    /// Counts a fault and quarantines the plugin when there have been too many.
    fn fault(&self, err: &CallError) {
        let faults = self.faults.fetch_add(1, Ordering::Relaxed) + 1;
        error!(plugin = %self.name, path = %self.path.display(), faults, cause = %err, "scorer call failed");
        if faults >= self.max_faults {
            let mut quarantine = self.quarantine.lock();
            if quarantine.is_none() {
                let reason = format!("{faults} faults (the limit is {}); the last: {err}", self.max_faults);
                error!(plugin = %self.name, %reason, "scorer quarantined");
                *quarantine = Some(reason);
                self.quarantined.store(true, Ordering::Release);
            }
        }
    }

    /// Scores the sample leads and explains the second, both ways; anything but finite
    /// scores within 0-100 and finite points refuses the plugin.
    fn smoke_test(&self, now_ms: i64) -> Result<(), String> {
        let batch = sample_batch(now_ms);
        let (mut scores, mut points) = (vec![0.0; batch.len()], vec![0.0; batch.len()]);
        self.score(&batch, &mut scores, &mut points).map_err(|e| e.to_string())?;
        self.explain(&batch, 1, false).map_err(|e| e.to_string())?;
        self.explain(&batch, 1, true).map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        // SAFETY: the instance came from this library's `create` and is destroyed once, here;
        // the library field is dropped (unloaded) only after this.
        unsafe { (self.table.destroy)(self.instance) };
    }
}

/// The checked contents of a header.
struct CheckedHeader {
    name: String,
    version: String,
    abi_minor: u32,
    attributes_only: bool,
    create: leadscore_plugin_api::raw::CreateFn,
    table: TableCopy,
}

fn read_header(path: &Path, library: &libloading::Library) -> Result<CheckedHeader, LoadError> {
    let header_error = |problem: String| LoadError::Header { path: path.to_owned(), problem };
    type Entry = extern "C" fn() -> *const Header;
    // SAFETY: the symbol, if present, is an `extern "C" fn() -> *const Header` by the ABI's
    // definition of it.
    let entry = match unsafe { library.get::<Entry>(ENTRY_SYMBOL) } {
        Ok(entry) => *entry,
        Err(_) => {
            let other = PROBED_MAJORS.filter(|m| *m != ABI_MAJOR).find(|major| {
                // SAFETY: only looked up, never called.
                unsafe { library.get::<Entry>(entry_symbol(*major).as_bytes()) }.is_ok()
            });
            return Err(match other {
                Some(found) => LoadError::AbiMajor { path: path.to_owned(), found, expected: ABI_MAJOR },
                None => LoadError::MissingSymbol { path: path.to_owned(), expected: ABI_MAJOR },
            });
        }
    };
    let header = entry();
    if header.is_null() {
        return Err(header_error("the entry function returned null".into()));
    }
    // SAFETY: the leading fields (magic to table_size) have the same layout in every ABI
    // version, so they can be read before the sizes are known; later fields are read only after
    // the sizes prove they are there.
    let (magic, major, minor, header_size, table_size) = unsafe {
        (
            (&raw const (*header).magic).read_unaligned(),
            (&raw const (*header).abi_major).read_unaligned(),
            (&raw const (*header).abi_minor).read_unaligned(),
            (&raw const (*header).header_size).read_unaligned(),
            (&raw const (*header).table_size).read_unaligned(),
        )
    };
    if magic != MAGIC {
        return Err(header_error(format!("magic is {magic:?}, expected {MAGIC:?}")));
    }
    if major != ABI_MAJOR {
        return Err(LoadError::AbiMajor { path: path.to_owned(), found: major, expected: ABI_MAJOR });
    }
    if (header_size as usize) < HEADER_SIZE_MINOR_0 || (table_size as usize) < TABLE_SIZE_MINOR_0 {
        return Err(header_error(format!(
            "header is {header_size} bytes and table {table_size}, this engine needs at least \
             {HEADER_SIZE_MINOR_0} and {TABLE_SIZE_MINOR_0}"
        )));
    }
    let has_points =
        minor >= 1 && header_size as usize >= size_of::<Header>() && table_size as usize >= size_of::<Table>();
    // SAFETY: the sizes show minor 0's header is there, in the library's static data, and minor
    // 1's functions when `has_points`. Fields are read through raw places, never a reference to
    // a whole `Header`, which an older plugin's shorter header is not.
    let (name, version, flags, create, table) = unsafe {
        let points = has_points.then(|| PointsFns {
            score: (&raw const (*header).table.score_points).read(),
            explain: (&raw const (*header).table.explain_points).read(),
        });
        let table = TableCopy {
            score: (&raw const (*header).table.score).read(),
            explain: (&raw const (*header).table.explain).read(),
            destroy: (&raw const (*header).table.destroy).read(),
            points,
        };
        let create = (&raw const (*header).table.create).read();
        let flags = (&raw const (*header).flags).read();
        ((&raw const (*header).name).read(), (&raw const (*header).version).read(), flags, create, table)
    };
    let text = |raw: RawStr, what: &str| -> Result<String, LoadError> {
        // SAFETY: the header's strings point to static text of the library.
        let bytes = unsafe { raw.as_bytes() };
        match std::str::from_utf8(bytes) {
            Ok(text) if !text.is_empty() && text.len() <= 64 => Ok(text.to_owned()),
            _ => Err(header_error(format!("{what} must be 1-64 bytes of UTF-8"))),
        }
    };
    // Flags mean something from minor 2; before, they were reserved.
    let attributes_only = minor >= 2 && flags & FLAG_ATTRIBUTES_ONLY != 0;
    let (name, version) = (text(name, "name")?, text(version, "version")?);
    Ok(CheckedHeader { name, version, abi_minor: minor, attributes_only, create, table })
}

/// Copies `path` into `scratch` under a name no earlier load used.
fn private_copy(path: &Path, scratch: &Path) -> std::io::Result<PathBuf> {
    static LOADS: AtomicU64 = AtomicU64::new(0);
    fs::create_dir_all(scratch)?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
    let extension = path.extension().and_then(|s| s.to_str()).unwrap_or("so");
    let n = LOADS.fetch_add(1, Ordering::Relaxed);
    let copy = scratch.join(format!("{stem}.{}.{n}.{extension}", std::process::id()));
    fs::copy(path, &copy)?;
    Ok(copy)
}

/// Leads a plugin must score without failing: none, typical, odd and busy ones.
fn sample_batch(now_ms: i64) -> BatchBuf {
    const DAY: i64 = 86_400_000;
    let mut batch = BatchBuf::new(now_ms);
    let names =
        ["role", "department", "employees", "country", "budget", "student", "lead_source"].map(|n| batch.push_name(n));
    let kinds = ["email_open", "page_view:/pricing", "demo_request", "unsubscribe", "webinar_attended"]
        .map(|k| batch.push_kind(k));
    batch.begin_lead("smoke-empty", now_ms);
    batch.begin_lead("smoke-typical", now_ms - 30 * DAY);
    batch.attribute(names[0], Value::Text("CTO"));
    batch.attribute(names[1], Value::Text("IT"));
    batch.attribute(names[2], Value::Number(640.0));
    batch.attribute(names[3], Value::Text("India"));
    batch.event(kinds[0], now_ms - 10 * DAY, 0.0);
    batch.event(kinds[1], now_ms - DAY, 0.0);
    batch.event(kinds[2], now_ms, 1.0);
    batch.begin_lead("smoke-odd", 0);
    batch.attribute(names[0], Value::Text(""));
    batch.attribute(names[2], Value::Number(-1.0));
    batch.attribute(names[4], Value::Number(1e300));
    batch.attribute(names[5], Value::Flag(true));
    batch.attribute(names[6], Value::Text("Ünïcödé ✓"));
    batch.event(kinds[3], now_ms + DAY, 0.0);
    batch.begin_lead("smoke-busy", now_ms - 400 * DAY);
    for i in 0..200 {
        batch.event(kinds[i % kinds.len()], now_ms - (200 - i as i64) * DAY, i as f64);
    }
    batch
}

/// Calls `call` with an error buffer and returns its code with the message it left there.
fn with_error_buf(call: impl FnOnce(*mut ErrorBuf) -> Code) -> (Code, String) {
    ERROR_TEXT.with_borrow_mut(|bytes| {
        let mut buf = ErrorBuf::over(&mut bytes[..]);
        let code = call(&mut buf);
        (code, String::from_utf8_lossy(&bytes[..buf.len.min(ERROR_BYTES)]).into_owned())
    })
}

thread_local! {
    /// What a plugin call writes its error and an explanation's text into: zeroed once per
    /// thread rather than on every call. Plugins never call back into the host, so no call
    /// finds them borrowed.
    static ERROR_TEXT: RefCell<Box<[u8; ERROR_BYTES]>> = RefCell::new(Box::new([0; ERROR_BYTES]));
    static FACTOR_TEXT: RefCell<Box<[u8; FACTOR_TEXT_BYTES]>> = RefCell::new(Box::new([0; FACTOR_TEXT_BYTES]));
}

/// Lists the plugin libraries in `dir`: the named ones (a name such as `leadscore_fit` is the
/// file `libleadscore_fit.so` here), or every library when `names` is empty.
/// The name `plugins.load` gives the library at `path` (`libleadscore_fit.so` is
/// `leadscore_fit`).
pub fn library_name(path: &Path) -> String {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let file = file.strip_suffix(suffix).unwrap_or(&file);
    file.strip_prefix(prefix).unwrap_or(file).to_owned()
}

/// The libraries to load from `dirs`: each of `names` from the first directory that holds it
/// (the first directory's path when none does, which then fails to load, naming it), or, with
/// no names, every library of every directory; or the directory that could not be listed.
pub fn libraries(dirs: &[PathBuf], names: &[String]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    if !names.is_empty() {
        let file = |name: &String| format!("{prefix}{name}{suffix}");
        let first = |name: &String| dirs.iter().map(|dir| dir.join(file(name))).find(|path| path.is_file());
        let fallback =
            |name: &String| dirs.first().map(|dir| dir.join(file(name))).unwrap_or_else(|| file(name).into());
        return Ok(names.iter().map(|name| first(name).unwrap_or_else(|| fallback(name))).collect());
    }
    let mut found = Vec::new();
    for dir in dirs {
        let mut here: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|err| (dir.clone(), err))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_file() && path.to_str().is_some_and(|p| p.ends_with(suffix)))
            .collect();
        here.sort();
        found.extend(here);
    }
    if found.is_empty() {
        warn!(dirs = ?dirs, "no scorer libraries found");
    }
    Ok(found)
}
