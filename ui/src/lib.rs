//! `ecom-ui`: the ecomops dashboard. It draws an immutable pipeline `Snapshot` and turns keys
//! into `Effect`s (commands for the pipeline's one dispatcher); it does no I/O of its own, so
//! every view is tested against a `TestBackend` from a fixture.

pub mod app;
pub mod detail;
pub mod draw;
pub mod fixture;
pub mod fmt;
pub mod popup;
pub mod theme;
pub mod views;

pub use app::{App, Effect, Tab};
pub use draw::draw;
