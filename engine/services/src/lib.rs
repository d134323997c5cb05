//! The engine's services over the store, each using only those before it: `scoring` (the
//! loaded scorers, composition and ranking), `policy` (the compiled contact rules and routing
//! policy, data only), `generation` (one compiled configuration, and its swap), `routing` and
//! the `dialer`; beside them `validation` (how scores predicted outcomes). Nothing here serves
//! a network or reads a request: the server's handlers call in, and these call only the store
//! below.

#![forbid(unsafe_code)]

pub mod dialer;
pub mod generation;
pub mod policy;
pub mod routing;
pub mod scoring;
pub mod validation;

#[cfg(test)]
mod testing;
