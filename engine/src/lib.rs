//! Leadscore: a real-time lead-scoring and lead-distribution engine.
//!
//! Data flows one way: `store` (the leads and their log) → `scoring` (the loaded scorers,
//! composition and ranking) → `generation` (one compiled configuration, and its swap) →
//! `dialer` and `routing` → `api` (tonic services); `config` is plain data below them all.
//! Calls go the other way: no module calls one above it, and locks are taken in one order
//! (`sync`). See `ARCHITECTURE.md` at the repository root.

#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod auth;
pub mod bench_plugin;
pub mod clock;
pub mod config;
pub mod console;
pub mod dialer;
pub mod generation;
pub mod import;
pub mod limits;
mod maintenance;
pub mod outcomes;
/// Plugin loading lives in a crate of its own, the one with unsafe code.
pub use leadscore_plugin_loader as plugin;
pub mod remote;
pub mod report;
pub mod routing;
pub mod scoring;
pub mod server;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod terminal;
pub mod tls;
pub mod train;
pub mod validation;
mod watchdog;
