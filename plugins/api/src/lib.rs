//! The Leadscore scorer plugin ABI, shared by the engine and every plugin.
//!
//! A plugin is a `cdylib` that exports one function, [`ENTRY_SYMBOL`], returning a [`Header`]:
//! magic, ABI version, sizes, name, version and a table of functions (create an instance from
//! JSON configuration, score a batch, explain one lead, destroy; since minor 1, score and explain
//! points too). Leads cross as plain data
//! in flat arrays ([`RawBatch`]); no Rust type crosses the boundary, and no panic does either.
//!
//! Writing a plugin takes one [`Scorer`] implementation and one [`export_scorer!`]:
//!
//! ```
//! use leadscore_plugin_api::{Batch, Factor, Scorer};
//!
//! struct Constant(f64);
//!
//! impl Scorer for Constant {
//!     const NAME: &'static str = "constant";
//!     const VERSION: &'static str = "1.0.0";
//!
//!     fn create(config: &str) -> Result<Self, String> {
//!         config.trim().parse().map(Constant).map_err(|_| format!("expected a number, got {config}"))
//!     }
//!
//!     fn score(&self, _: &Batch<'_>, scores: &mut [f64]) -> Result<(), String> {
//!         scores.fill(self.0);
//!         Ok(())
//!     }
//!
//!     fn explain(&self, _: &Batch<'_>, _: usize) -> Result<Vec<Factor>, String> {
//!         Ok(vec![Factor { feature: "constant".into(), contribution: self.0, detail: String::new() }])
//!     }
//! }
//!
//! leadscore_plugin_api::export_scorer!(Constant);
//! ```

#![allow(unsafe_code)]

mod buf;
#[doc(hidden)]
pub mod export;
pub mod raw;
mod view;

pub use buf::BatchBuf;
pub use raw::{
    Code, ErrorBuf, Event, FLAG_ATTRIBUTES_ONLY, FactorBuf, HEADER_SIZE_MINOR_0, Header, RawBatch, RawFactor, RawStr,
    Span, TABLE_SIZE_MINOR_0, Table,
};
pub use view::{Attribute, Batch, Lead, Value};

/// Bumped on any change that breaks plugins built before it; it is part of the entry symbol's
/// name, so a library built for another major has no symbol this engine looks for.
pub const ABI_MAJOR: u32 = 1;
/// Bumped when the table grows at its end; older plugins keep working.
///
/// Minor 1 added points: a scorer's own tally beside its 0-100 score, which campaigns in
/// `points` composition add up. Minor 2 gave the header's `flags` a meaning: a scorer that
/// reads attributes alone says so ([`Scorer::ATTRIBUTES_ONLY`]).
pub const ABI_MINOR: u32 = 2;
pub const MAGIC: [u8; 8] = *b"LDSCORE\0";
/// The entry symbol of ABI major 1, NUL-terminated for the dynamic loader.
pub const ENTRY_SYMBOL: &[u8] = b"leadscore_scorer_v1\0";
/// The entry symbol's name for any major, so the engine can tell "another ABI" from "no plugin".
pub fn entry_symbol(major: u32) -> String {
    format!("leadscore_scorer_v{major}")
}

/// A scorer: built from its JSON configuration, then called concurrently with batches of leads.
pub trait Scorer: Sized + Send + Sync + 'static {
    /// The scorer's name: campaigns weight it and operators list it by this.
    const NAME: &'static str;
    const VERSION: &'static str;
    /// Whether the scores depend on the lead's attributes alone: not on its events, its
    /// creation time or the batch's time. Then the engine does not call the scorer again for
    /// a change of a lead's events alone (a recorded event, a call's outcome) or the decay
    /// sweep: the scores it gave still hold until the attributes change or a reload.
    const ATTRIBUTES_ONLY: bool = false;

    /// Builds a scorer from its configuration, a JSON document (`{}` when none is given).
    /// An error names the offending key and rule.
    fn create(config: &str) -> Result<Self, String>;

    /// Writes one score per lead, each finite and within 0-100, into `scores`
    /// (`scores.len() == batch.len()`).
    fn score(&self, batch: &Batch<'_>, scores: &mut [f64]) -> Result<(), String>;

    /// Explains one lead's score as factors whose contributions add up to it.
    fn explain(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String>;

    /// Writes each lead's score (0-100) and its points: the scorer's own tally, any finite
    /// number, negative for a lead that lost more than it won. Campaigns in `points`
    /// composition add points up; by default a lead's points are its score.
    fn score_points(&self, batch: &Batch<'_>, scores: &mut [f64], points: &mut [f64]) -> Result<(), String> {
        self.score(batch, scores)?;
        points.copy_from_slice(scores);
        Ok(())
    }

    /// Explains one lead's points as factors whose contributions add up to them; by default,
    /// the explanation of its score.
    fn explain_points(&self, batch: &Batch<'_>, lead: usize) -> Result<Vec<Factor>, String> {
        self.explain(batch, lead)
    }
}

/// One factor of an explanation.
#[derive(Clone, Debug, PartialEq)]
pub struct Factor {
    /// The attribute, event kind or model feature.
    pub feature: String,
    /// Points on the scorer's 0-100 scale, or in its own points when explaining points;
    /// negative for penalties.
    pub contribution: f64,
    /// What matched, in plain words: `CTO (C-level)`, `640 employees (500-999)`.
    pub detail: String,
}

/// Exports a [`Scorer`] as this library's plugin entry point.
#[macro_export]
macro_rules! export_scorer {
    ($scorer:ty) => {
        /// The plugin entry point the engine looks up.
        #[unsafe(no_mangle)]
        pub extern "C" fn leadscore_scorer_v1() -> *const $crate::Header {
            static HEADER: $crate::Header = $crate::export::header::<$scorer>();
            &HEADER
        }
    };
}
