//! The engine's services over the store: `scoring` (the loaded scorers, composition and
//! ranking), `generation` (one compiled configuration, and its swap), the `dialer` and
//! `routing`, and `validation` (how scores predicted outcomes). Nothing here serves a network or
//! reads a request: the server's handlers call in, and these call only the store below.

#![forbid(unsafe_code)]

pub mod dialer;
pub mod generation;
pub mod policy;
pub mod routing;
pub mod scoring;
pub mod validation;

#[cfg(test)]
mod testing;
