//! A fleet's locks inside the warehouse, for Redshift, which has no advisory locks: the shared
//! writes of every fleet transaction are serialised by `LOCK` of one table, and the CURATED
//! publication (reads, store writes, then a commit: several calls) by a named hold with an
//! expiry in that table's rows.
//!
//! `LOCK` takes an ACCESS EXCLUSIVE lock until the transaction ends and waits for any other
//! holder (<https://docs.aws.amazon.com/redshift/latest/dg/r_LOCK.html>). As the first statement
//! of each fleet transaction it also avoids Redshift's serializable isolation errors ("force
//! serialization by having each session lock all tables",
//! <https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation.html>): the transaction's
//! snapshot is taken after the wait, so it sees the last holder's commit.
//!
//! A hold is a row: its holder (the instance and a fresh nonce per take) and an expiry, as long
//! as a shard lease (`stream.kinesis.leases.lease_secs`: a killed member's hold is taken over
//! as soon as its shards are). Taken only when free or expired, renewed in the background by its
//! holder every third of it, and checked in the holder's commits: an instance whose hold expired
//! (paused past it) cannot commit under it, and stops writing files a third of it before (its
//! own clocks). The expiry is written from the holder's clock and read against the others':
//! hosts are assumed within a third of a hold of each other (NTP keeps them within
//! milliseconds).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::schema::{self, literal};
use super::Cell;

/// The table every fleet transaction locks first, whose rows are the named holds.
pub const TABLE: &str = "ops.fleet_locks";

/// What a statement refused for a lapsed hold says first.
pub const HOLD_LOST: &str = "hold lost";

/// The hold the CURATED publication takes.
pub const CURATED: &str = "curated";

/// The longest a hold can be (the longest lease): an operator's command waits this long at
/// most for another member's.
pub const LONGEST: Duration = Duration::from_secs(3600);

/// A holder renews every `renew_every(hold)`, and stops its work (abandoned, done again next
/// time) once less than that is left since its last renewal.
pub fn renew_every(hold: Duration) -> Duration {
    hold / 3
}

/// The table (created before anything else of a fleet's, so its lock can come first).
pub fn ddl() -> Vec<String> {
    vec![
        "CREATE SCHEMA IF NOT EXISTS ops".to_string(),
        format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (name VARCHAR(64) NOT NULL PRIMARY KEY, \
             holder VARCHAR(512), expires_at TIMESTAMP)"
        ),
    ]
}

/// The first statement of each fleet transaction.
pub fn serialise() -> String {
    format!("LOCK {TABLE}")
}

fn text(s: &str) -> String {
    literal(&Cell::Text(s.to_string()))
}

fn until(now: DateTime<Utc>, hold: Duration) -> String {
    let hold = chrono::Duration::from_std(hold).unwrap_or(chrono::Duration::MAX);
    literal(&Cell::Time(now + hold))
}

/// Take `name` for `holder` when it is free or expired (one transaction; whether it was taken
/// is read afterwards with `holder_sql`).
pub fn take_sql(name: &str, holder: &str, now: DateTime<Utc>, hold: Duration) -> Vec<String> {
    let (n, h) = (text(name), text(holder));
    vec![
        serialise(),
        format!(
            "INSERT INTO {TABLE} (name, holder, expires_at) SELECT {n}, NULL, NULL \
             WHERE NOT EXISTS (SELECT 1 FROM {TABLE} WHERE name = {n})"
        ),
        format!(
            "UPDATE {TABLE} SET holder = {h}, expires_at = {} WHERE name = {n} \
             AND (holder IS NULL OR expires_at < {})",
            until(now, hold),
            literal(&Cell::Time(now))
        ),
    ]
}

/// Who holds `name`, and until when.
pub fn holder_sql(name: &str) -> String {
    format!(
        "SELECT holder, CAST(expires_at AS VARCHAR) FROM {TABLE} WHERE name = {}",
        text(name)
    )
}

/// A statement that fails its transaction unless `holder` still holds `name` at `now`.
pub fn held_sql(name: &str, holder: &str, now: DateTime<Utc>) -> String {
    schema::assert_sql_as(
        HOLD_LOST,
        &format!(
            "EXISTS (SELECT 1 FROM {TABLE} WHERE name = {} AND holder = {} AND expires_at > {})",
            text(name),
            text(holder),
            literal(&Cell::Time(now))
        ),
        &format!("the {name} hold of {holder} expired and may be another instance's"),
    )
}

/// Extend `holder`'s hold of `name` (the transaction fails if it was lost meanwhile).
pub fn renew_sql(name: &str, holder: &str, now: DateTime<Utc>, hold: Duration) -> Vec<String> {
    vec![
        serialise(),
        held_sql(name, holder, now),
        format!(
            "UPDATE {TABLE} SET expires_at = {} WHERE name = {} AND holder = {}",
            until(now, hold),
            text(name),
            text(holder)
        ),
    ]
}

/// Let `name` go, if `holder` still holds it.
pub fn release_sql(name: &str, holder: &str) -> Vec<String> {
    vec![
        serialise(),
        format!(
            "UPDATE {TABLE} SET holder = NULL, expires_at = NULL WHERE name = {} AND holder = {}",
            text(name),
            text(holder)
        ),
    ]
}
