//! A pipeline engine for tests, opened as `--once` opens one (no schedule), and the operator
//! origin the tests dispatch commands as.
// Not every test file that includes this module uses all of it.
#![allow(dead_code)]

use ecom_pipeline::command::Origin;
use ecom_pipeline::config::Config;
use ecom_pipeline::orchestrator::{LogBuffer, Pipeline, PipelineOptions};
use ecom_pipeline::snapshot::RunMode;

/// A writable operator at the keyboard.
pub fn origin() -> Origin {
    Origin {
        user: "test".into(),
        ssh_connection: None,
        via: "test".into(),
        read_only: false,
    }
}

/// The engine over `config`, writable, not scheduling cycles.
pub async fn open(config: Config) -> Pipeline {
    let options = PipelineOptions {
        mode: RunMode::Oneshot,
        read_only: false,
        schedule: false,
        log: LogBuffer::default(),
    };
    Pipeline::open(config, options).await.unwrap()
}
