//! Leadscore: a real-time lead-scoring and lead-distribution engine.
//!
//! Data flows one way: `api` (tonic services) → `store` (the lead index and its log). See
//! `ARCHITECTURE.md` at the repository root.

#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod config;
pub mod import;
mod maintenance;
pub mod server;
pub mod store;
