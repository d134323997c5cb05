//! Leadscore: a real-time lead-scoring and lead-distribution engine.
//!
//! Data flows one way: `api` (tonic services) → `store` (the lead index and its log) →
//! `scoring` (the loaded scorers, composition and ranking). See `ARCHITECTURE.md` at the
//! repository root.

// Denied rather than forbidden so that `plugin`, the one module that loads libraries, can allow it.
#![deny(unsafe_code)]

pub mod api;
pub mod bench_plugin;
pub mod clock;
pub mod config;
pub mod dialer;
pub mod import;
mod maintenance;
pub mod outcomes;
pub mod plugin;
pub mod routing;
pub mod scoring;
pub mod server;
pub mod store;
pub mod sync;
pub mod train;
mod watchdog;
