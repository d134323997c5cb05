//! What every call passes through on its way to a handler, and what keeps the server
//! observable: tokens and roles, admission and rate limits, TLS, metrics, and the watchdog.

pub mod admission;
pub mod auth;
pub mod gathered;
pub mod limits;
pub mod oversize;
pub mod telemetry;
pub mod tls;
pub(crate) mod watchdog;
