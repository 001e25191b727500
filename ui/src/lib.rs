//! `ecom-ui`: the dashboard's ratatui views and key handling, drawn from a pipeline
//! `Snapshot`; no I/O of its own. The views arrive with the dashboard work; the crate exists now
//! so the workspace has the shape ARCHITECTURE.md describes.
