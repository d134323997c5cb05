//! Leadscore: a real-time lead-scoring and lead-distribution engine.
//!
//! Calls go one way, down: `api` (tonic services) → `dialer` and `routing` → `scoring` (the
//! loaded scorers, composition and ranking) → `store` (the leads and their log). No module
//! calls one above it, and locks are taken in one order (`sync`); see `ARCHITECTURE.md` at
//! the repository root.

#![forbid(unsafe_code)]

pub mod api;
pub mod bench_plugin;
pub mod clock;
pub mod config;
pub mod dialer;
pub mod import;
mod maintenance;
pub mod outcomes;
/// Plugin loading lives in a crate of its own, the one with unsafe code.
pub use leadscore_plugin_loader as plugin;
pub mod routing;
pub mod scoring;
pub mod server;
pub mod store;
pub mod sync;
pub mod train;
mod watchdog;
