//! End-to-end tests: each module one capability, each test a real server and real gRPC.

#![forbid(unsafe_code)]

mod accounts;
mod audit;
mod auth;
mod best_time;
mod console;
mod conventions;
mod dialer;
mod dialer_simulation;
mod durability;
mod hardening;
mod history;
mod import;
mod leads;
mod limits;
mod liveness;
mod metrics;
mod node;
mod operations;
mod playbook;
mod plugins;
mod predictive;
mod python;
mod readme;
mod revocation;
mod routing;
mod scoring;
mod shedding;
mod terminal;
mod tls;
mod torture;
mod validation;
mod watch_top;
