//! The server: the gRPC services (`api`), the console, the background upkeep, and the
//! operations layers every call passes (`ops`). `server::run` starts them over the services.

#![forbid(unsafe_code)]

pub mod api;
pub mod console;
mod maintenance;
pub mod node;
pub mod ops;
pub mod server;
