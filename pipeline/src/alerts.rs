//! Alert rules from config, evaluated on every snapshot's metrics (`ecom_model::derive`): a
//! rule fires once its condition has held for `for_secs`, resolves when it stops holding. The
//! rules are checked with the rest of the config (`Config::validate`).

pub use ecom_model::alerts::AlertState;
pub use ecom_model::derive::Alerts;
