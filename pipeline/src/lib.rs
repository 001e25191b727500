//! `ecom-pipeline`: the whole ecomops core, with no terminal code. See `docs/ARCHITECTURE.md`
//! for the layout; each module is named for the one concern it handles.

pub mod alerts;
pub mod atomic_file;
pub mod audit;
pub mod aws;
pub mod batch;
pub mod clock;
pub mod cloudwatch;
mod codec;
pub mod command;
pub mod config;
pub mod control;
pub mod cost;
pub mod dedup;
pub mod domain;
pub mod error;
pub mod failures;
pub mod fuzzing;
pub mod generator;
pub mod history;
pub mod instance;
pub mod integrity;
pub mod ledger;
pub mod lifecycle;
pub mod metrics;
pub mod orchestrator;
pub mod quarantine;
pub mod snapshot;
pub mod store;
pub mod stream;
pub mod warehouse;
pub mod watermark;
pub mod zone_tally;
pub mod zones;

pub use error::{Error, Result};
