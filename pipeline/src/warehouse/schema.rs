//! Table definitions and the SQL generated from them, for DuckDB and for Redshift (whose SQL
//! is tested on PostgreSQL 15 where the two agree).
//!
//! One spec per STAGING entity: columns, the natural key, and the JSON field each column is read
//! from. Loads go through a scratch table and one portable two-clause MERGE whose source is
//! first deduplicated on the natural key (last row of the file wins): DuckDB applies duplicate
//! source keys silently, Redshift and PostgreSQL reject them.

use std::fmt::Write as _;

/// The SQL dialect to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DuckDb,
    /// Redshift; the same text is run on PostgreSQL 15 by the tests.
    Redshift,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    BigInt,
    Double,
    Text,
    Timestamp,
    Date,
    Bool,
}

impl Ty {
    pub fn sql(self, d: Dialect) -> &'static str {
        match (self, d) {
            (Ty::BigInt, _) => "BIGINT",
            (Ty::Double, Dialect::DuckDb) => "DOUBLE",
            (Ty::Double, Dialect::Redshift) => "DOUBLE PRECISION",
            (Ty::Text, Dialect::DuckDb) => "VARCHAR",
            // Redshift's TEXT is VARCHAR(256): too short for descriptions.
            (Ty::Text, Dialect::Redshift) => "VARCHAR(65535)",
            (Ty::Timestamp, _) => "TIMESTAMP",
            (Ty::Date, _) => "DATE",
            (Ty::Bool, _) => "BOOLEAN",
        }
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// This field of the STAGING JSON line (absent or null: NULL when the column is nullable,
    /// else the line is refused as corrupt).
    Field(&'static str),
    /// Computed at the MERGE from the row's own columns, the same SQL on every dialect; `{s}`
    /// stands for the source row's qualifier.
    Derived(&'static str),
    /// The load's time when the row is first inserted, never updated ("first seen").
    FirstLoaded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub fill: Fill,
    pub ty: Ty,
    pub nullable: bool,
}

impl Column {
    /// The STAGING JSON field it is read from, for a `Fill::Field` column.
    pub fn field(&self) -> Option<&'static str> {
        match self.fill {
            Fill::Field(f) => Some(f),
            _ => None,
        }
    }
}

const fn col(name: &'static str, ty: Ty) -> Column {
    Column {
        name,
        fill: Fill::Field(name),
        ty,
        nullable: false,
    }
}

/// A column added after the first schema: nullable, since `ALTER TABLE ... ADD COLUMN` adds it
/// to tables that already hold rows (see `migrate`).
const fn added(name: &'static str, fill: Fill, ty: Ty) -> Column {
    Column {
        name,
        fill,
        ty,
        nullable: true,
    }
}

/// A STAGING entity's warehouse table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// The STAGING zone entity, e.g. "orders".
    pub entity: &'static str,
    pub columns: &'static [Column],
    pub key: &'static [&'static str],
}

impl TableSpec {
    /// The columns read from the STAGING file: the scratch table's, in order.
    pub fn fields(&self) -> impl Iterator<Item = &'static Column> {
        self.columns.iter().filter(|c| c.field().is_some())
    }

    /// `staging.<entity>`.
    pub fn table(&self) -> String {
        format!("staging.{}", self.entity)
    }

    /// The scratch table a load fills before its MERGE, temporary on both: on Redshift it lives
    /// in the load's own session (one Data API batch), so two loaders never share one; on
    /// DuckDB it stays in memory, out of the write-ahead log and the file.
    pub fn scratch(&self, d: Dialect) -> String {
        match d {
            Dialect::DuckDb => format!("temp.main.load_{}", self.entity),
            Dialect::Redshift => format!("load_{}", self.entity),
        }
    }
}

pub const PRODUCTS: TableSpec = TableSpec {
    entity: "products",
    columns: &[
        col("product_id", Ty::BigInt),
        col("title", Ty::Text),
        col("price_cents", Ty::BigInt),
        col("description", Ty::Text),
        col("category", Ty::Text),
        col("image", Ty::Text),
        col("rating_rate", Ty::Double),
        col("rating_count", Ty::BigInt),
        // The model's name for FakeStore's `title` (kept beside it).
        added("name", Fill::Derived("{s}title"), Ty::Text),
        // True when the latest full catalogue pull lists the product (see `soft_delete`).
        added("is_active", Fill::Derived("TRUE"), Ty::Bool),
        // FakeStore has no creation time: when the warehouse first loaded the product.
        added("created_at", Fill::FirstLoaded, Ty::Timestamp),
    ],
    key: &["product_id"],
};

pub const USERS: TableSpec = TableSpec {
    entity: "users",
    columns: &[
        col("user_id", Ty::BigInt),
        col("email", Ty::Text),
        col("username", Ty::Text),
        col("first_name", Ty::Text),
        col("last_name", Ty::Text),
        col("city", Ty::Text),
        col("street", Ty::Text),
        col("street_number", Ty::BigInt),
        col("zipcode", Ty::Text),
        Column {
            name: "latitude",
            fill: Fill::Field("lat"),
            ty: Ty::Double,
            nullable: true,
        },
        Column {
            name: "longitude",
            fill: Fill::Field("long"),
            ty: Ty::Double,
            nullable: true,
        },
        col("phone", Ty::Text),
        // The synthetic source fills it; FakeStore's users have no country: NULL.
        added("country", Fill::Field("country"), Ty::Text),
        // FakeStore has no creation time: when the warehouse first loaded the user.
        added("created_at", Fill::FirstLoaded, Ty::Timestamp),
    ],
    key: &["user_id"],
};

pub const ORDERS: TableSpec = TableSpec {
    entity: "orders",
    columns: &[
        col("order_id", Ty::BigInt),
        col("user_id", Ty::BigInt),
        col("order_time", Ty::Timestamp),
        col("order_status", Ty::Text),
        col("order_total_cents", Ty::BigInt),
        col("item_count", Ty::BigInt),
        // The model's name for the order's time (FakeStore's cart `date`), beside `order_time`.
        added("created_at", Fill::Derived("{s}order_time"), Ty::Timestamp),
    ],
    key: &["order_id"],
};

pub const ORDER_ITEMS: TableSpec = TableSpec {
    entity: "order_items",
    columns: &[
        col("order_id", Ty::BigInt),
        col("line_no", Ty::BigInt),
        col("product_id", Ty::BigInt),
        col("quantity", Ty::BigInt),
        col("unit_price_cents", Ty::BigInt),
        col("line_total_cents", Ty::BigInt),
        // Deterministic from the order and line (`domain::OrderItem::id`), stable across reruns.
        added(
            "order_item_id",
            Fill::Derived("{s}order_id * 1000 + {s}line_no"),
            Ty::BigInt,
        ),
    ],
    key: &["order_id", "line_no"],
};

pub const EVENTS: TableSpec = TableSpec {
    entity: "events",
    columns: &[
        col("event_id", Ty::Text),
        col("user_id", Ty::BigInt),
        col("product_id", Ty::BigInt),
        col("event_type", Ty::Text),
        col("event_time", Ty::Timestamp),
        col("ingestion_time", Ty::Timestamp),
        col("session_id", Ty::Text),
        // A producer's own `ingestion_time`, if it sent one (`ingestion_time` is the arrival).
        added("producer_time", Fill::Field("producer_time"), Ty::Timestamp),
    ],
    key: &["event_id"],
};

/// Every loadable entity, in load order (products before the lines that name them).
pub const TABLES: [TableSpec; 5] = [PRODUCTS, USERS, ORDERS, ORDER_ITEMS, EVENTS];

pub fn spec(entity: &str) -> Option<TableSpec> {
    TABLES.into_iter().find(|t| t.entity == entity)
}

/// Extra column on every STAGING table: the STAGING object the row came from.
pub const SOURCE_KEY: &str = "source_key";
/// Scratch-table column giving the row's position in its file (the last duplicate wins).
pub const ORDINAL: &str = "load_ordinal";

/// The spec's columns and the source key (with a default when given), for CREATE TABLE.
fn column_defs(d: Dialect, spec: &TableSpec) -> String {
    column_defs_of(d, spec.columns.iter(), None)
}

/// The scratch table's columns: those read from the file.
fn scratch_defs(d: Dialect, spec: &TableSpec, source_key_default: Option<&str>) -> String {
    column_defs_of(d, spec.fields(), source_key_default)
}

fn column_defs_of<'a>(
    d: Dialect,
    columns: impl Iterator<Item = &'a Column>,
    source_key_default: Option<&str>,
) -> String {
    let mut out = String::new();
    for c in columns {
        let _ = write!(
            out,
            "{} {}{}, ",
            c.name,
            c.ty.sql(d),
            if c.nullable { "" } else { " NOT NULL" }
        );
    }
    let _ = write!(out, "{SOURCE_KEY} {} NOT NULL", Ty::Text.sql(d));
    if let Some(key) = source_key_default {
        let _ = write!(
            out,
            " DEFAULT {}",
            literal(&super::Cell::Text(key.to_string()))
        );
    }
    out
}

/// Schemas and tables, idempotent.
pub fn ddl(d: Dialect) -> Vec<String> {
    let text = Ty::Text.sql(d);
    let mut out = vec![
        "CREATE SCHEMA IF NOT EXISTS staging".to_string(),
        "CREATE SCHEMA IF NOT EXISTS curated".to_string(),
        "CREATE SCHEMA IF NOT EXISTS ops".to_string(),
    ];
    for spec in TABLES {
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            spec.table(),
            column_defs(d, &spec),
            spec.key.join(", ")
        ));
    }
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.ledger (object_key {text} NOT NULL PRIMARY KEY, zone {text} NOT NULL, \
         entity {text} NOT NULL, sha256 {text} NOT NULL, bytes BIGINT NOT NULL, row_count BIGINT NOT NULL, \
         source {text} NOT NULL, status {text} NOT NULL, loaded_at TIMESTAMP NOT NULL)"
    ));
    out.push(
        "CREATE TABLE IF NOT EXISTS ops.dirty_partitions (day DATE NOT NULL PRIMARY KEY)".into(),
    );
    // The late buffer's index: a late object's event days, written with the segment's
    // checkpoint; `backfilled_at` once a backfill has loaded that day of it.
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.late_objects (object_key {text} NOT NULL, day DATE NOT NULL, \
         events BIGINT NOT NULL, buffered_at TIMESTAMP NOT NULL, backfilled_at TIMESTAMP)"
    ));
    // Refreshed days whose CURATED files are still to be written (`curated_files`).
    out.push("CREATE TABLE IF NOT EXISTS ops.curated_pending (day DATE NOT NULL)".into());
    // The schema this warehouse was last brought to (`migrate`).
    out.push(
        "CREATE TABLE IF NOT EXISTS ops.schema_version (version BIGINT NOT NULL, \
         applied_at TIMESTAMP NOT NULL)"
            .into(),
    );
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.checkpoints (shard {text} NOT NULL PRIMARY KEY, \
         sequence_number BIGINT NOT NULL, committed_at TIMESTAMP NOT NULL)"
    ));
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.audit (acted_at TIMESTAMP NOT NULL, user_name {text} NOT NULL, \
         ssh_connection {text}, via {text} NOT NULL, action {text} NOT NULL, arguments {text} NOT NULL, \
         outcome {text} NOT NULL, message {text} NOT NULL)"
    ));
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.runs (run_id {text} NOT NULL PRIMARY KEY, source {text} NOT NULL, \
         status {text} NOT NULL, started_at TIMESTAMP, ended_at TIMESTAMP, files BIGINT NOT NULL, \
         duplicates BIGINT NOT NULL, staged_rows BIGINT NOT NULL, quarantined BIGINT NOT NULL, \
         loaded_rows BIGINT NOT NULL)"
    ));
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.tasks (run_id {text} NOT NULL, task {text} NOT NULL, \
         status {text} NOT NULL, attempts BIGINT NOT NULL, started_at TIMESTAMP, ended_at TIMESTAMP, \
         error {text})"
    ));
    // One row per committed stream segment: its counts, which `verify` reconciles.
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.segments (raw_key {text} NOT NULL PRIMARY KEY, \
         shard {text} NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, \
         records BIGINT NOT NULL, staged BIGINT NOT NULL, duplicates BIGINT NOT NULL, \
         late BIGINT NOT NULL, quarantined BIGINT NOT NULL, committed_at TIMESTAMP NOT NULL)"
    ));
    // What retention deleted (`prune`): objects by key, and CURATED days before a day (zone
    // 'curated', key the first day kept), so `verify` reconciles what is kept.
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.pruned (object_key {text} NOT NULL, zone {text} NOT NULL, \
         pruned_at TIMESTAMP NOT NULL)"
    ));
    // The generation of the committed stream-state object (dedup window and watermarks).
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.stream_state (name {text} NOT NULL PRIMARY KEY, \
         generation BIGINT NOT NULL, committed_at TIMESTAMP NOT NULL)"
    ));
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.watermarks (shard {text} NOT NULL, watermark TIMESTAMP NOT NULL, \
         idle BIGINT NOT NULL, updated_at TIMESTAMP NOT NULL)"
    ));
    // Shard leases (`stream::leases`): per shard the instance that took it last and its
    // fencing token, and the state object its dedup window and watermark are in.
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.shard_owners (shard {text} NOT NULL PRIMARY KEY, \
         owner {text} NOT NULL, token BIGINT NOT NULL, state_key {text}, taken_at TIMESTAMP NOT NULL, \
         committed_at TIMESTAMP)"
    ));
    // Every take, in order: the proof that a shard had one owner at a time.
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS ops.lease_history (shard {text} NOT NULL, owner {text} NOT NULL, \
         token BIGINT NOT NULL, taken_at TIMESTAMP NOT NULL)"
    ));
    out.extend(super::models::ddl(d));
    out
}

/// (Re)create the scratch table of `spec`, empty.
pub fn scratch_ddl(d: Dialect, spec: &TableSpec) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {}", spec.scratch(d)),
        format!(
            "CREATE TEMP TABLE {} ({}, {ORDINAL} BIGINT NOT NULL)",
            spec.scratch(d),
            scratch_defs(d, spec, None)
        ),
    ]
}

/// The scratch table for a Redshift COPY: the file's columns come from the JSON, the source key
/// and ordinal from defaults (COPY cannot number lines: duplicate keys within one file are
/// then resolved arbitrarily, which only matters if their rows differ).
pub fn scratch_copy_ddl(spec: &TableSpec, key: &str) -> Vec<String> {
    vec![
        format!("DROP TABLE IF EXISTS {}", spec.scratch(Dialect::Redshift)),
        format!(
            "CREATE TEMP TABLE {} ({}, {ORDINAL} BIGINT NOT NULL DEFAULT 0)",
            spec.scratch(Dialect::Redshift),
            scratch_defs(Dialect::Redshift, spec, Some(key))
        ),
    ]
}

/// The JSONPaths file mapping a STAGING object's fields to the table's columns, in order.
pub fn jsonpaths(spec: &TableSpec) -> String {
    let paths: Vec<String> = spec
        .fields()
        .filter_map(Column::field)
        .map(|f| format!("\"$['{f}']\""))
        .collect();
    format!("{{\"jsonpaths\": [{}]}}", paths.join(", "))
}

/// COPY one STAGING object from S3 into the scratch table.
pub fn copy_sql(spec: &TableSpec, object_uri: &str, jsonpaths_uri: &str, iam_role: &str) -> String {
    let cols: Vec<&str> = spec.fields().map(|c| c.name).collect();
    let q = |s: &str| literal(&super::Cell::Text(s.to_string()));
    format!(
        "COPY {} ({}) FROM {} IAM_ROLE {} FORMAT AS JSON {} TIMEFORMAT 'auto'",
        spec.scratch(Dialect::Redshift),
        cols.join(", "),
        q(object_uri),
        q(iam_role),
        q(jsonpaths_uri)
    )
}

/// The scratch-table column list, in insert order.
pub fn scratch_columns(spec: &TableSpec) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = spec.fields().map(|c| c.name).collect();
    v.push(SOURCE_KEY);
    v.push(ORDINAL);
    v
}

/// A value as a SQL literal (standard quoting; the same text on DuckDB, Redshift, PostgreSQL).
pub fn literal(c: &super::Cell) -> String {
    use super::Cell;
    match c {
        Cell::Int(v) => v.to_string(),
        Cell::Float(v) if v.is_finite() => format!("{v:?}"),
        Cell::Float(_) | Cell::Null => "NULL".to_string(),
        Cell::Text(s) => text_literal(s),
        Cell::Time(t) => format!(
            "CAST('{}' AS TIMESTAMP)",
            t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")
        ),
    }
}

/// A string literal every dialect reads back as `s`: quotes doubled, and no backslash inside
/// the quotes, since Redshift (and PostgreSQL with `standard_conforming_strings = off`) read
/// one as an escape (<https://docs.aws.amazon.com/redshift/latest/dg/r_QUOTE_LITERAL.html>
/// doubles them) while DuckDB does not: each backslash is `CHR(92)`, concatenated.
fn text_literal(s: &str) -> String {
    if !s.contains('\\') {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let parts: Vec<String> = s
        .split('\\')
        .map(|p| format!("'{}'", p.replace('\'', "''")))
        .collect();
    format!("({})", parts.join(" || CHR(92) || "))
}

/// The Data API's limit on one statement's text: "The maximum query statement size is 100 KB"
/// (<https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html>).
pub const MAX_STATEMENT_BYTES: usize = 100 * 1024;
/// What one fill statement may take, with room to spare under `MAX_STATEMENT_BYTES`.
const FILL_BYTES: usize = 90 * 1024;

/// Multi-row INSERTs filling the scratch table, at most `per_statement` rows and
/// `FILL_BYTES` of text each (the Redshift Data API path, and the tests' way to feed
/// PostgreSQL). A row whose literals alone are larger (long text, or text of many
/// backslashes, each written as `CHR(92)`) is inserted with those texts empty and then
/// completed by UPDATEs appending one piece each, so no statement passes the limit.
pub fn scratch_inserts(
    spec: &TableSpec,
    rows: &[Vec<super::Cell>],
    per_statement: usize,
) -> Vec<String> {
    let scratch = spec.scratch(Dialect::Redshift);
    let columns = scratch_columns(spec);
    let head = format!("INSERT INTO {scratch} ({}) VALUES ", columns.join(", "));
    let mut out = Vec::new();
    let (mut sql, mut n) = (String::new(), 0usize);
    let flush = |sql: &mut String, n: &mut usize, out: &mut Vec<String>| {
        if *n > 0 {
            out.push(std::mem::take(sql));
            *n = 0;
        }
    };
    for row in rows {
        let vals: Vec<String> = row.iter().map(literal).collect();
        let tuple = format!("({})", vals.join(", "));
        if head.len() + tuple.len() > FILL_BYTES {
            flush(&mut sql, &mut n, &mut out);
            out.extend(oversized_row(&scratch, &head, &columns, row, vals));
            continue;
        }
        if n == per_statement.max(1) || sql.len() + 2 + tuple.len() > FILL_BYTES {
            flush(&mut sql, &mut n, &mut out);
        }
        if n == 0 {
            sql.push_str(&head);
        } else {
            sql.push_str(", ");
        }
        sql.push_str(&tuple);
        n += 1;
    }
    flush(&mut sql, &mut n, &mut out);
    out
}

/// One row too large for a statement: its long texts inserted empty, then appended piece by
/// piece (`WHERE` the row's ordinal, unique within a load).
fn oversized_row(
    scratch: &str,
    head: &str,
    columns: &[&str],
    row: &[super::Cell],
    mut vals: Vec<String>,
) -> Vec<String> {
    use super::Cell;
    // Every text over a kilobyte moves to UPDATEs, so the INSERT left is small whatever the
    // number of long columns; each UPDATE appends at most a piece.
    const MOVED: usize = 1024;
    const PIECE: usize = 32 * 1024;
    let ordinal = vals.last().cloned().unwrap_or_default();
    let mut updates = Vec::new();
    for (i, cell) in row.iter().enumerate() {
        let Cell::Text(s) = cell else { continue };
        if vals[i].len() <= MOVED {
            continue;
        }
        vals[i] = "''".into();
        let mut rest = s.as_str();
        while !rest.is_empty() {
            // The longest prefix whose literal fits a piece (a backslash is `' || CHR(92) || '`).
            let (mut end, mut cost) = (0, 0);
            for (at, c) in rest.char_indices() {
                cost += match c {
                    '\\' => 16,
                    '\'' => 2,
                    c => c.len_utf8(),
                };
                if cost > PIECE {
                    break;
                }
                end = at + c.len_utf8();
            }
            let first = rest.chars().next().map_or(0, char::len_utf8);
            let (piece, tail) = rest.split_at(end.max(first));
            updates.push(format!(
                "UPDATE {scratch} SET {col} = {col} || {} WHERE {ORDINAL} = {ordinal}",
                text_literal(piece),
                col = columns[i]
            ));
            rest = tail;
        }
    }
    let mut out = vec![format!("{head}({})", vals.join(", "))];
    out.extend(updates);
    out
}

/// What the ledger records of a loaded file.
#[derive(Debug, Clone)]
pub struct LedgerEntry<'a> {
    pub key: &'a str,
    pub entity: &'a str,
    pub sha256: &'a str,
    pub bytes: u64,
    pub rows: u64,
    pub source: &'a str,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    /// A stream checkpoint (with the segment's counts and state) committed with the load.
    pub checkpoint: Option<&'a crate::ledger::StreamCommit>,
}

/// What a stream segment commits with its load: the checkpoint, the segment's counts, the
/// stream-state generation and its late days (delete + insert each: portable, no upsert
/// needed). A group of one.
pub fn stream_commit_sql(c: &crate::ledger::StreamCommit) -> Vec<String> {
    group_commit_sql(&[], &[c])
}

/// Point `ops.stream_state` at generation `g` of the stream-state object.
pub fn stream_state_sql(g: u64) -> Vec<String> {
    let now = literal(&super::Cell::Time(chrono::Utc::now()));
    vec![
        format!("DELETE FROM ops.stream_state WHERE name = '{STREAM_STATE}'"),
        format!(
            "INSERT INTO ops.stream_state (name, generation, committed_at) VALUES \
             ('{STREAM_STATE}', {g}, {now})"
        ),
    ]
}

/// What a statement that must stop its transaction says: the error text carries it (a cast of
/// this text to a number fails in DuckDB, PostgreSQL and Redshift alike).
const FENCED: &str = "lease lost";

/// A statement that fails, aborting its transaction, unless `condition` holds.
fn assert_sql(condition: &str, why: &str) -> String {
    assert_sql_as(FENCED, condition, why)
}

/// `assert_sql` whose failure says `what` first.
pub(crate) fn assert_sql_as(what: &str, condition: &str, why: &str) -> String {
    let why = literal(&super::Cell::Text(format!("{what}: {why}")));
    format!("SELECT CAST(CASE WHEN {condition} THEN '0' ELSE {why} END AS BIGINT)")
}

/// Register `owner`'s take of `shard` at `token`: the shard's row moves to the newer token
/// (its state key kept), the take is recorded, and the transaction fails if a token as new or
/// newer is already registered (a stale take). Loads under an older token fail from here on.
pub fn fence_take_sql(shard: &str, owner: &str, token: u64) -> Vec<String> {
    use super::Cell;
    let text = |s: &str| literal(&Cell::Text(s.to_string()));
    let (sh, ow) = (text(shard), text(owner));
    let now = literal(&Cell::Time(chrono::Utc::now()));
    vec![
        format!(
            "UPDATE ops.shard_owners SET owner = {ow}, token = {token}, taken_at = {now} \
             WHERE shard = {sh} AND token < {token}"
        ),
        format!(
            "INSERT INTO ops.shard_owners (shard, owner, token, state_key, taken_at, committed_at) \
             SELECT {sh}, {ow}, {token}, NULL, {now}, NULL \
             WHERE NOT EXISTS (SELECT 1 FROM ops.shard_owners WHERE shard = {sh})"
        ),
        assert_sql(
            &format!(
                "EXISTS (SELECT 1 FROM ops.shard_owners WHERE shard = {sh} AND token = {token} \
                 AND owner = {ow})"
            ),
            &format!("shard {shard} is registered under a newer lease than {token}"),
        ),
        format!(
            "INSERT INTO ops.lease_history (shard, owner, token, taken_at) VALUES ({sh}, {ow}, {token}, {now})"
        ),
    ]
}

/// A leased commit's fence: every owned shard's row still under its token moves to the new
/// state object, and the transaction fails unless the row of every shard it commits segments
/// of did (another instance took one: its token is newer). The UPDATE locks the rows, so a take
/// waits for this commit or this commit sees the take. A shard taken meanwhile whose segments
/// are not in this load keeps naming the previous object (its state there is unchanged).
pub fn fence_commit_sql(
    f: &crate::ledger::FenceCommit,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    use super::Cell;
    let text = |s: &str| literal(&Cell::Text(s.to_string()));
    if f.tokens.is_empty() {
        return Vec::new();
    }
    let owned = f
        .tokens
        .iter()
        .map(|(s, t)| format!("(shard = {} AND token = {t})", text(s)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let key = text(&f.state_key);
    let shards = f.committing.iter().cloned().collect::<Vec<_>>().join(", ");
    let committing = f
        .committing
        .iter()
        .map(|s| text(s))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = vec![format!(
        "UPDATE ops.shard_owners SET state_key = {key}, committed_at = {} \
         WHERE owner = {} AND ({owned})",
        literal(&Cell::Time(now)),
        text(&f.owner)
    )];
    if !f.committing.is_empty() {
        out.push(assert_sql(
            &format!(
                "(SELECT COUNT(*) FROM ops.shard_owners WHERE state_key = {key} \
                 AND shard IN ({committing})) = {}",
                f.committing.len()
            ),
            &format!(
                "another instance took one of shards {shards} from {}: this load is refused",
                f.owner
            ),
        ));
    }
    out
}

/// The one row of `ops.stream_state`.
pub const STREAM_STATE: &str = "stream";

/// Record an operator action in the audit table.
pub fn audit_sql(r: &ecom_model::audit::Record) -> Vec<String> {
    use super::Cell;
    let text = |s: &str| literal(&Cell::Text(s.to_string()));
    let ssh = match &r.ssh_connection {
        Some(s) => text(s),
        None => literal(&Cell::Null),
    };
    vec![format!(
        "INSERT INTO ops.audit (acted_at, user_name, ssh_connection, via, action, arguments, outcome, message) \
         VALUES ({}, {}, {ssh}, {}, {}, {}, {}, {})",
        literal(&Cell::Time(r.at)),
        text(&r.user),
        text(&r.via),
        text(&r.action),
        text(&r.arguments),
        text(&r.outcome),
        text(&r.message)
    )]
}

/// Is this content already loaded? (`SELECT COUNT(*)`; > 0 means skip the file.)
pub fn ledger_check(sha256: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM ops.ledger WHERE sha256 = {}",
        literal(&super::Cell::Text(sha256.to_string()))
    )
}

/// A load, as statements to run in one transaction around filling the scratch table:
/// `(before, after)`. Before: a fresh scratch table. After: the MERGE, the dirty days, the
/// scratch table dropped, and the ledger row.
pub fn load_sql(d: Dialect, spec: &TableSpec, e: &LedgerEntry<'_>) -> (Vec<String>, Vec<String>) {
    let (before, mut after) = rows_sql(d, spec, e.loaded_at, Keys::MayRepeat);
    // A group of one: its ledger row, and its stream commit when it has one.
    let commits: Vec<&crate::ledger::StreamCommit> = e.checkpoint.into_iter().collect();
    after.extend(group_commit_sql(std::slice::from_ref(e), &commits));
    (before, after)
}

/// The statements that move a load's rows, around filling the scratch table: `(before,
/// after)`. Before: a fresh scratch table. After: the MERGE, the dirty days, the scratch table
/// dropped (no ledger row: `load_sql` or `group_commit_sql` adds it).
/// `keys`: what the load knows of the scratch rows' keys (DuckDB only; see `Keys`).
pub fn rows_sql(
    d: Dialect,
    spec: &TableSpec,
    loaded_at: chrono::DateTime<chrono::Utc>,
    keys: Keys,
) -> (Vec<String>, Vec<String>) {
    let before = scratch_ddl(d, spec);
    // The days a row moves away from, read before the MERGE moves it.
    let mut after: Vec<String> = mark_dirty_moved(d, spec).into_iter().collect();
    after.extend(merge_from(d, spec, loaded_at, keys));
    after.extend(soft_delete(d, spec));
    after.extend(mark_dirty(d, spec));
    after.push(format!("DROP TABLE {}", spec.scratch(d)));
    (before, after)
}

/// The ledger row of a load, as a VALUES tuple of `ops.ledger`'s columns in `LEDGER_COLUMNS`.
fn ledger_values(e: &LedgerEntry<'_>) -> String {
    use super::Cell;
    format!(
        "({}, 'staging', {}, {}, {}, {}, {}, 'loaded', {})",
        literal(&Cell::Text(e.key.to_string())),
        literal(&Cell::Text(e.entity.to_string())),
        literal(&Cell::Text(e.sha256.to_string())),
        e.bytes,
        e.rows,
        literal(&Cell::Text(e.source.to_string())),
        literal(&Cell::Time(e.loaded_at)),
    )
}

const LEDGER_COLUMNS: &str =
    "object_key, zone, entity, sha256, bytes, row_count, source, status, loaded_at";

/// What a group of loads commits besides the rows (DuckDB, several stream segments in one
/// transaction): the ledger rows of the files `loaded`, and of every segment in `commits` (in
/// stream order) its counts, its late days, per shard the last checkpoint, and the stream
/// state of the last segment that names one. Multi-row statements: a group costs rows, not
/// statements per segment.
pub fn group_commit_sql(
    loaded: &[LedgerEntry<'_>],
    commits: &[&crate::ledger::StreamCommit],
) -> Vec<String> {
    use super::Cell;
    let text = |s: &str| literal(&Cell::Text(s.to_string()));
    let list = |keys: &mut dyn Iterator<Item = String>| keys.collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    if !loaded.is_empty() {
        out.push(format!(
            "DELETE FROM ops.ledger WHERE object_key IN ({})",
            list(&mut loaded.iter().map(|e| text(e.key)))
        ));
        out.push(format!(
            "INSERT INTO ops.ledger ({LEDGER_COLUMNS}) VALUES {}",
            list(&mut loaded.iter().map(ledger_values))
        ));
    }
    if commits.is_empty() {
        return out;
    }
    let now = chrono::Utc::now();
    let at = &literal(&Cell::Time(now));
    // The last segment of a shard in the group carries its checkpoint.
    let last: std::collections::BTreeMap<&str, u64> = commits
        .iter()
        .map(|c| (c.shard.as_str(), c.last_seq))
        .collect();
    out.push(format!(
        "DELETE FROM ops.checkpoints WHERE shard IN ({})",
        list(&mut last.keys().map(|s| text(s)))
    ));
    out.push(format!(
        "INSERT INTO ops.checkpoints (shard, sequence_number, committed_at) VALUES {}",
        list(
            &mut last
                .iter()
                .map(|(s, seq)| format!("({}, {seq}, {at})", text(s)))
        )
    ));
    out.push(format!(
        "DELETE FROM ops.segments WHERE raw_key IN ({})",
        list(&mut commits.iter().map(|c| text(&c.raw_key)))
    ));
    out.push(format!(
        "INSERT INTO ops.segments (raw_key, shard, first_seq, last_seq, records, staged, duplicates, \
         late, quarantined, committed_at) VALUES {}",
        list(&mut commits.iter().map(|c| {
            let n = &c.counts;
            format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {at})",
                text(&c.raw_key),
                text(&c.shard),
                c.first_seq,
                c.last_seq,
                n.records,
                n.staged,
                n.duplicates,
                n.late,
                n.quarantined
            )
        }))
    ));
    if let Some(g) = commits.iter().rev().find_map(|c| c.state_generation) {
        out.extend(stream_state_sql(g));
    }
    if let Some(f) = commits.iter().rev().find_map(|c| c.fence.as_ref()) {
        out.extend(fence_commit_sql(f, now));
    }
    // Late segments are rare: a pair of statements each.
    for c in commits {
        if let Some(late_key) = crate::zones::late_key_for(&c.raw_key) {
            out.extend(super::late_index::index_sql(&late_key, &c.late_days, now));
        }
    }
    out
}

/// A column's value from the source row `s` of a load at `loaded_at` (`prefix` qualifies the
/// source's columns, e.g. "s.").
fn source_value(c: &Column, prefix: &str, loaded_at: chrono::DateTime<chrono::Utc>) -> String {
    match c.fill {
        Fill::Field(_) => format!("{prefix}{}", c.name),
        Fill::Derived(expr) => expr.replace("{s}", prefix),
        Fill::FirstLoaded => literal(&super::Cell::Time(loaded_at)),
    }
}

/// MERGE the scratch table into the STAGING table: deduplicated on the natural key (the last
/// copy in the file wins), then the two-clause form. Redshift's documented grammar is
/// `MERGE INTO target_table USING source_table [AS alias] ON ...`: no alias on the target, and
/// the source a table, not a subquery
/// (<https://docs.aws.amazon.com/redshift/latest/dg/r_MERGE.html>); so there the deduplicated
/// rows go to a temporary table first. DuckDB takes the subquery directly. `FirstLoaded`
/// columns are set by the insert only.
pub fn merge(
    d: Dialect,
    spec: &TableSpec,
    loaded_at: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    merge_from(d, spec, loaded_at, Keys::MayRepeat)
}

/// What a DuckDB load knows of its scratch rows' keys: the cheapest statement that is still
/// exact. Redshift and PostgreSQL always take `MayRepeat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// A key may repeat within the load: a window keeps one copy (the first by ordinal; DuckDB's
    /// loader keeps those first copies itself when it appends events directly).
    MayRepeat,
    /// Distinct within the load (the scratch table is the source as it is); some may be in
    /// the table already.
    Distinct,
    /// Distinct, and taken to be new: DuckDB's loader appends events straight into their table,
    /// the primary key the only check (one index probe per row, no scratch table). If one is in
    /// the table after all, the key refuses the group and the loader runs it again as
    /// `Distinct` (`is_key_violation`). The statements here read it as `Distinct`.
    DistinctNew,
}

/// Did a DuckDB statement fail on a primary key? (A `Keys::DistinctNew` load that met a key
/// already in the table; it is run again as `Keys::Distinct`.) DuckDB's C API hands the Rust
/// crate the message only, so this reads it; `duck::tests` pins the message, so a DuckDB upgrade
/// that changes it fails a test instead of a load.
pub fn is_key_violation(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("duplicate key") && m.contains("constraint")
}

/// `merge`, knowing `keys` (DuckDB only: any other dialect reads `MayRepeat`).
fn merge_from(
    d: Dialect,
    spec: &TableSpec,
    loaded_at: chrono::DateTime<chrono::Utc>,
    keys: Keys,
) -> Vec<String> {
    let keys = if d == Dialect::DuckDb {
        keys
    } else {
        Keys::MayRepeat
    };
    let distinct = keys != Keys::MayRepeat;
    let mut fields: Vec<&str> = spec.fields().map(|c| c.name).collect();
    fields.push(SOURCE_KEY);
    let fields = fields.join(", ");
    let mut cols: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
    cols.push(SOURCE_KEY);
    let list = cols.join(", ");
    let value = |c: &str, prefix: &str| match spec.columns.iter().find(|x| x.name == c) {
        Some(col) => source_value(col, prefix, loaded_at),
        None => format!("{prefix}{c}"),
    };
    let on = spec
        .key
        .iter()
        .map(|k| format!("t.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let set = cols
        .iter()
        .filter(|c| !spec.key.contains(c))
        .filter(|c| {
            !spec
                .columns
                .iter()
                .any(|x| x.name == **c && x.fill == Fill::FirstLoaded)
        })
        .map(|c| format!("{c} = {}", value(c, "s.")))
        .collect::<Vec<_>>()
        .join(", ");
    let values = cols
        .iter()
        .map(|c| value(c, "s."))
        .collect::<Vec<_>>()
        .join(", ");
    if spec.entity == "events" {
        // An event is a fact: the first copy of an event_id that reaches STAGING is kept, a
        // later resend (outside the dedup window, or replayed) never replaces it. So an insert
        // of the ids not there yet: DuckDB probes the key's index per row (an anti-join would
        // scan the whole growing table every load); Redshift has no ON CONFLICT.
        let key = spec.key.join(", ");
        let absent = match d {
            Dialect::DuckDb => " ON CONFLICT DO NOTHING".to_string(),
            Dialect::Redshift => format!(
                " AND NOT EXISTS (SELECT 1 FROM {} AS t WHERE {})",
                spec.table(),
                spec.key
                    .iter()
                    .map(|k| format!("t.{k} = d.{k}"))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            ),
        };
        let (rest, conflict) = match d {
            Dialect::DuckDb => (String::new(), absent),
            Dialect::Redshift => (absent, String::new()),
        };
        let select = cols
            .iter()
            .map(|c| value(c, "d."))
            .collect::<Vec<_>>()
            .join(", ");
        if distinct {
            return vec![format!(
                "INSERT INTO {table} ({list}) SELECT {select} FROM {scratch} AS d{conflict}",
                table = spec.table(),
                scratch = spec.scratch(d),
            )];
        }
        return vec![format!(
            "INSERT INTO {table} ({list}) SELECT {select} FROM (SELECT {fields}, ROW_NUMBER() \
             OVER (PARTITION BY {key} ORDER BY {ORDINAL}) AS rn FROM {scratch}) AS d WHERE rn = 1\
             {rest}{conflict}",
            table = spec.table(),
            scratch = spec.scratch(d),
        )];
    }
    let dedup = if distinct {
        format!("SELECT {fields} FROM {}", spec.scratch(d))
    } else {
        format!(
            "SELECT {fields} FROM (SELECT {fields}, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY \
             {ORDINAL} DESC) AS rn FROM {scratch}) AS d WHERE rn = 1",
            key = spec.key.join(", "),
            scratch = spec.scratch(d),
        )
    };
    match d {
        Dialect::DuckDb => vec![format!(
            "MERGE INTO {table} AS t USING ({dedup}) AS s ON {on} WHEN MATCHED THEN UPDATE SET \
             {set} WHEN NOT MATCHED THEN INSERT ({list}) VALUES ({values})",
            table = spec.table(),
        )],
        Dialect::Redshift => {
            // The target is named by its table name in the condition (it has no alias).
            let on = on.replace("t.", &format!("{}.", spec.entity));
            let temp = format!("load_dedup_{}", spec.entity);
            vec![
                format!("CREATE TEMP TABLE {temp} AS {dedup}"),
                format!(
                    "MERGE INTO {table} USING {temp} AS s ON {on} WHEN MATCHED THEN UPDATE SET \
                     {set} WHEN NOT MATCHED THEN INSERT ({list}) VALUES ({values})",
                    table = spec.table(),
                ),
                format!("DROP TABLE {temp}"),
            ]
        }
    }
}

/// A products load is a full catalogue pull: a product it no longer lists is marked inactive
/// (a soft delete: its history stays), and one listed again is active again (the MERGE sets
/// `is_active`). A product the pull lists but refuses (quarantined) counts as not listed.
pub fn soft_delete(d: Dialect, spec: &TableSpec) -> Option<String> {
    (spec.entity == "products").then(|| {
        format!(
            "UPDATE {table} SET is_active = FALSE WHERE (is_active IS NULL OR is_active = TRUE) \
             AND product_id NOT IN (SELECT product_id FROM {scratch})",
            table = spec.table(),
            scratch = spec.scratch(d)
        )
    })
}

/// Mark dirty the days that rows of the scratch table move away from: an order whose
/// `order_time` changes leaves its old day's figures stale. Events never move: the first copy
/// of an event_id stays (see `merge`).
pub fn mark_dirty_moved(d: Dialect, spec: &TableSpec) -> Option<String> {
    if spec.entity != "orders" {
        return None;
    }
    Some(format!(
        "INSERT INTO ops.dirty_partitions (day) SELECT DISTINCT x.day FROM (SELECT \
         CAST(t.order_time AS DATE) AS day FROM {table} AS t JOIN {scratch} AS s ON \
         t.order_id = s.order_id WHERE CAST(t.order_time AS DATE) <> CAST(s.order_time AS DATE)) \
         AS x WHERE NOT EXISTS (SELECT 1 FROM ops.dirty_partitions AS p WHERE p.day = x.day)",
        table = spec.table(),
        scratch = spec.scratch(d)
    ))
}

/// Mark `days` dirty (the days of events a load appended straight into `staging.events`: what
/// `mark_dirty` reads from the scratch table otherwise). Only days not already marked.
pub fn mark_days_dirty(days: &std::collections::BTreeSet<chrono::NaiveDate>) -> Option<String> {
    if days.is_empty() {
        return None;
    }
    let values: Vec<String> = days
        .iter()
        .map(|d| format!("(CAST('{}' AS DATE))", d.format("%Y-%m-%d")))
        .collect();
    Some(format!(
        "INSERT INTO ops.dirty_partitions (day) SELECT x.day FROM (VALUES {}) AS x(day) WHERE NOT \
         EXISTS (SELECT 1 FROM ops.dirty_partitions AS p WHERE p.day = x.day)",
        values.join(", ")
    ))
}

/// Mark the days a load touches dirty (orders by order day; order items by their order's day;
/// products and users by every day that has orders, since a price or category change moves
/// every day's figures). Only days not already marked are inserted: no upsert needed.
pub fn mark_dirty(d: Dialect, spec: &TableSpec) -> Option<String> {
    let days = match spec.entity {
        "orders" => format!("SELECT DISTINCT CAST(order_time AS DATE) AS day FROM {}", spec.scratch(d)),
        "order_items" => format!(
            "SELECT DISTINCT CAST(o.order_time AS DATE) AS day FROM {} AS i JOIN staging.orders AS o \
             ON o.order_id = i.order_id",
            spec.scratch(d)
        ),
        "events" => format!(
            "SELECT DISTINCT CAST(event_time AS DATE) AS day FROM {}",
            spec.scratch(d)
        ),
        "products" | "users" => {
            "SELECT DISTINCT CAST(order_time AS DATE) AS day FROM staging.orders".to_string()
        }
        _ => return None,
    };
    Some(format!(
        "INSERT INTO ops.dirty_partitions (day) SELECT x.day FROM ({days}) AS x WHERE NOT EXISTS \
         (SELECT 1 FROM ops.dirty_partitions AS p WHERE p.day = x.day)"
    ))
}

/// Record what retention deletes, before it is deleted (a crash in between leaves an object
/// marked pruned that still exists, which `verify` accepts; the other order could leave a
/// deletion `verify` would call a loss).
pub fn pruned_sql(zone: &str, keys: &[String], at: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    use super::Cell;
    keys.chunks(200)
        .map(|chunk| {
            let values: Vec<String> = chunk
                .iter()
                .map(|k| {
                    format!(
                        "({}, {}, {})",
                        literal(&Cell::Text(k.clone())),
                        literal(&Cell::Text(zone.to_string())),
                        literal(&Cell::Time(at))
                    )
                })
                .collect();
            format!(
                "INSERT INTO ops.pruned (object_key, zone, pruned_at) VALUES {}",
                values.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_dedups_the_source_and_uses_the_two_clause_form() {
        let sql = merge(Dialect::Redshift, &ORDER_ITEMS, chrono::Utc::now());
        assert!(sql[0].starts_with("CREATE TEMP TABLE load_dedup_order_items AS SELECT"));
        assert!(sql[0].contains("PARTITION BY order_id, line_no ORDER BY load_ordinal DESC"));
        let m = &sql[1];
        assert!(
            m.starts_with("MERGE INTO staging.order_items USING load_dedup_order_items AS s ON"),
            "{m}"
        );
        assert!(
            m.contains("ON order_items.order_id = s.order_id AND order_items.line_no = s.line_no")
        );
        assert!(m.contains("WHEN MATCHED THEN UPDATE SET product_id = s.product_id"));
        assert!(!m.contains("SET order_id"), "keys are never updated");
        assert!(
            m.ends_with("s.line_total_cents, s.order_id * 1000 + s.line_no, s.source_key)"),
            "{m}"
        );
        assert_eq!(sql[2], "DROP TABLE load_dedup_order_items");
    }

    #[test]
    fn copy_reads_the_staging_object_with_jsonpaths() {
        let sql = copy_sql(
            &USERS,
            "s3://b/p/staging/users/x.ndjson",
            "s3://b/p/ops/jsonpaths/users.json",
            "arn:aws:iam::1:role/r",
        );
        assert_eq!(
            sql,
            "COPY load_users (user_id, email, username, first_name, last_name, city, street, \
             street_number, zipcode, latitude, longitude, phone, country) FROM \
             's3://b/p/staging/users/x.ndjson' IAM_ROLE 'arn:aws:iam::1:role/r' FORMAT AS JSON \
             's3://b/p/ops/jsonpaths/users.json' TIMEFORMAT 'auto'"
        );
        let paths = jsonpaths(&USERS);
        assert!(paths.contains("\"$['lat']\", \"$['long']\""), "{paths}");
        let v: serde_json::Value = serde_json::from_str(&paths).unwrap();
        assert_eq!(
            v["jsonpaths"].as_array().unwrap().len(),
            USERS.fields().count()
        );
    }

    #[test]
    fn redshift_text_is_wide_enough() {
        assert!(ddl(Dialect::Redshift)
            .iter()
            .any(|s| s.contains("description VARCHAR(65535) NOT NULL")));
    }
}
