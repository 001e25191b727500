//! Batch ingestion: FakeStore-shaped responses from the HTTP API or the synthetic source,
//! pulled by a small DAG of persisted runs, landed in RAW as received, typed into STAGING.

pub mod fakestore;
pub mod land;
pub mod redact;
pub mod retry;
pub mod run;
pub mod stage;
pub mod synthetic;
