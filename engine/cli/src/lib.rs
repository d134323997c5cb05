//! The terminal commands: those that call a running server over gRPC (`import`, `report`,
//! `top`, `explain`, `status`, `score`) and those that work on files (`train`,
//! `export-outcomes`, `bench-plugin`, `token`), and `cluster status`, which reads NATS. None
//! of them serves anything.

#![forbid(unsafe_code)]

pub mod bench_plugin;
pub mod cluster;
pub mod import;
pub mod outcomes;
pub mod remote;
pub mod report;
pub mod terminal;
pub mod token;
pub mod train;
