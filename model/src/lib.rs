//! `ecom-model`: what the ecomops core and its clients (the dashboard, `status --json`, the
//! control socket) agree on. Data types and pure functions only: no I/O, no async, no
//! backends, so a change to a view never rebuilds the pipeline (see docs/ARCHITECTURE.md).
//!
//! The derivation `observations -> failures -> metrics -> alerts -> health` lives in
//! [`derive`]: the core runs it on every publication, and test fixtures run the same code
//! instead of copying its order.

pub mod alerts;
pub mod audit;
pub mod batch;
pub mod command;
pub mod cost;
pub mod derive;
pub mod failures;
pub mod history;
pub mod metrics;
pub mod protocol;
pub mod report;
pub mod snapshot;
pub mod stream;
pub mod units;
pub mod warehouse;
pub mod zone;

/// The control protocol's version: a client refuses an instance that speaks another one
/// (the snapshot, the commands and their reports are this crate's types).
pub const PROTOCOL_VERSION: u32 = 2;
