//! Leadscore: a real-time lead-scoring and lead-distribution engine.
//!
//! The engine is five crates, each allowed to use only those below it (see `ARCHITECTURE.md`):
//! `leadscore-store` (the leads and their log, the clock, the ranked locks) →
//! `leadscore-config` → `leadscore-services` (scoring, dialer, routing, generations,
//! validation) → `leadscore-server` (gRPC, console, operations layers); the terminal commands
//! (`leadscore-cli`) use the store and the configuration and reach a server over gRPC. This
//! crate is the `leadscore` binary, and names each layer's modules in one place for the tests
//! and benches.

#![forbid(unsafe_code)]

pub use leadscore_cli::{bench_plugin, import, outcomes, remote, report, terminal, train};
pub use leadscore_config as config;
pub use leadscore_plugin_loader as plugin;
pub use leadscore_server::ops::{admission, auth, gathered, limits, telemetry, tls};
pub use leadscore_server::{api, console, server};
pub use leadscore_services::{dialer, generation, routing, scoring, validation};
pub use leadscore_store::{self as store, clock, sync};
