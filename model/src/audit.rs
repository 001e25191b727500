//! The audit trail's record of one operator action.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One audited action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub at: DateTime<Utc>,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_connection: Option<String>,
    pub via: String,
    pub action: String,
    /// The command as JSON.
    pub arguments: String,
    /// `ok`, `failed` or `refused`.
    pub outcome: String,
    pub message: String,
}
