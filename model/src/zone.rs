//! The zones and what status shows of each.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The three zones, plus quarantine for records refused on the way to STAGING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    Raw,
    Staging,
    Curated,
    Quarantine,
    /// Late events waiting for a backfill.
    Late,
}

impl Zone {
    pub const ALL: [Zone; 5] = [
        Zone::Raw,
        Zone::Staging,
        Zone::Curated,
        Zone::Quarantine,
        Zone::Late,
    ];

    /// The key prefix of the zone, with its trailing '/'.
    pub fn prefix(self) -> &'static str {
        match self {
            Zone::Raw => "raw/",
            Zone::Staging => "staging/",
            Zone::Curated => "curated/",
            Zone::Quarantine => "quarantine/",
            Zone::Late => "late/",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Zone::Raw => "RAW",
            Zone::Staging => "STAGING",
            Zone::Curated => "CURATED",
            Zone::Quarantine => "QUARANTINE",
            Zone::Late => "LATE",
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Object count, bytes and last write of one zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneStats {
    pub zone: Option<Zone>,
    pub objects: u64,
    pub bytes: u64,
    pub last_write: Option<DateTime<Utc>>,
}
