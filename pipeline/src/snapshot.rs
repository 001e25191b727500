//! The snapshot types live in the contract crate; see `ecom_model::snapshot`.

pub use ecom_model::snapshot::*;
