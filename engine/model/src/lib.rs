//! Predictive lead scoring: read a table of past leads with outcomes, infer its feature schema,
//! train logistic regression or gradient-boosted trees, measure them on held-out rows, and
//! save a self-describing model file the predictive plugin serves (which also reads LightGBM
//! text models).

#![forbid(unsafe_code)]

pub mod data;
pub mod gbdt;
pub mod lightgbm;
pub mod lr;
pub mod metrics;
pub mod model;
pub mod schema;
pub mod synthetic;
pub mod train;
