//! The Leadscore gRPC contract (`leadscore.v1`), generated from `proto/leadscore/v1`.
//!
//! This crate generates code, with the codec it uses (`codec`); it re-exports `tonic`, `prost`
//! and `prost-types` so that every crate in the workspace uses one version of each.

#![forbid(unsafe_code)]

pub use prost;
pub use prost_types;
pub use tonic;

pub mod codec;

/// Generated messages, clients and servers of package `leadscore.v1`.
pub mod v1 {
    #![allow(clippy::all, unreachable_pub, missing_docs)]
    tonic::include_proto!("leadscore.v1");
}

/// The encoded `FileDescriptorSet` of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/leadscore_descriptor.bin"));
