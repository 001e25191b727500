//! Batch ingestion: FakeStore-shaped responses from the synthetic source (or, to come, the
//! HTTP client), landed in RAW as received, then typed into STAGING.

pub mod land;
pub mod stage;
pub mod synthetic;
