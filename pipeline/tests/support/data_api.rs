//! The Redshift Data API on loopback, run by the test PostgreSQL: the SDK's client and the
//! pipeline's `RedshiftWarehouse` talk to it over HTTP (the awsJson1.1 protocol) as they would
//! to AWS, and every statement runs on a real PostgreSQL 15 database, so a test of the Redshift
//! path exercises its calls, its polling, its sessions and its SQL together (aws-smithy-mocks
//! answers with canned outputs; moto mis-serialises this API).
//!
//! What it holds to, from <https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html> and
//! the API reference: a statement of at most 100 KB, at most 40 statements in a batch, which runs
//! as one transaction and is rolled back whole on the first failure; a result row of at most
//! 64 KB; a call without a session gets a connection of its own (its temporary tables end with
//! it); `SessionKeepAliveSeconds` starts a session whose connection later calls reuse by
//! `SessionId`, one statement at a time (a busy session refuses another); statements run
//! asynchronously (SUBMITTED, STARTED, then FINISHED, FAILED or ABORTED for DescribeStatement).
//! Transactions run SERIALIZABLE, the stricter of Redshift's two isolation levels (new clusters
//! and workgroups default to SNAPSHOT ISOLATION;
//! <https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation.html>), and string
//! literals read backslashes as Redshift does (`standard_conforming_strings = off`).
//!
//! Where it is still PostgreSQL, not Redshift: conflicts are found per row (Redshift: per
//! table), primary keys are enforced (Redshift: not), CancelStatement cancels nothing, sessions
//! never expire, and every member reads one clock. Redshift's per-table checks are coarser, so
//! a run without conflicts here does not prove one there: the fleet's `LOCK` first is what
//! rules them out on both.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ecom_pipeline::config::RedshiftConfig;
use ecom_pipeline::warehouse::redshift::RedshiftWarehouse;
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// "The maximum query statement size is 100 KB."
pub const MAX_STATEMENT_BYTES: usize = 100 * 1024;
/// "The maximum number of SQL statements in a batch is 40."
pub const MAX_BATCH: usize = 40;
/// "The maximum size of a row in a result is 64 KB."
pub const MAX_ROW_BYTES: usize = 64 * 1024;
/// Rows per GetStatementResult page (the service pages by size; any split exercises paging).
const PAGE_ROWS: usize = 500;

type Rows = Vec<Vec<Option<String>>>;

#[derive(Debug, Clone)]
struct Statement {
    status: &'static str,
    error: Option<String>,
    rows: Option<Rows>,
    created: f64,
    updated: f64,
    session: Option<String>,
}

struct Session {
    client: tokio::sync::Mutex<Client>,
    busy: AtomicBool,
}

struct Inner {
    dsn: String,
    next: AtomicU64,
    statements: Mutex<HashMap<String, Statement>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Every call: (operation, statements in it, session id).
    calls: Mutex<Vec<(String, usize, Option<String>)>>,
}

/// A running server; it stops with the test's runtime.
pub struct DataApi {
    pub endpoint: String,
    inner: Arc<Inner>,
}

impl DataApi {
    /// Serve the database `dsn` on a free loopback port.
    pub async fn start(dsn: &str) -> DataApi {
        assert!(dsn.contains("host=127.0.0.1"), "tests only use loopback");
        let inner = Arc::new(Inner {
            dsn: dsn.to_string(),
            next: AtomicU64::new(1),
            statements: Mutex::default(),
            sessions: Mutex::default(),
            calls: Mutex::default(),
        });
        let app = Router::new()
            .route("/", post(call))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        DataApi { endpoint, inner }
    }

    /// A Redshift warehouse on this server (tables created), as the pipeline opens one.
    pub async fn warehouse(&self) -> RedshiftWarehouse {
        let wh = RedshiftWarehouse::connect(&self.config()).await.unwrap();
        wh.create_tables().await.unwrap();
        wh
    }

    /// A fleet member's Redshift warehouse on this server, as `worker` (tables created), its
    /// holds as long as the default lease.
    pub async fn fleet_member(&self, worker: &str) -> RedshiftWarehouse {
        let lease = ecom_pipeline::config::LeaseConfig::default().lease_secs;
        let wh = RedshiftWarehouse::connect(&self.config())
            .await
            .unwrap()
            .in_fleet(worker, std::time::Duration::from_secs(lease));
        wh.create_tables().await.unwrap();
        wh
    }

    /// `warehouse.redshift` pointed here.
    pub fn config(&self) -> RedshiftConfig {
        RedshiftConfig {
            workgroup_name: Some("wg".into()),
            database: "dev".into(),
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            poll_max_ms: 50,
            ..RedshiftConfig::default()
        }
    }

    /// The calls so far: (operation, statements, session).
    pub fn calls(&self) -> Vec<(String, usize, Option<String>)> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// Statements that failed, with PostgreSQL's message.
    pub fn failures(&self) -> Vec<String> {
        self.inner
            .statements
            .lock()
            .unwrap()
            .values()
            .filter_map(|s| s.error.clone())
            .collect()
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn error(kind: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amzn-errortype", kind),
        ],
        json!({ "__type": kind, "Message": message }).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

async fn connect(dsn: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(dsn, NoTls)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    tokio::spawn(conn);
    client
        .batch_execute(
            "SET default_transaction_isolation = 'serializable'; \
             SET standard_conforming_strings = off",
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(client)
}

fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("ERROR: {}", d.message()),
        None => format!("ERROR: {e}"),
    }
}

/// A batch as one transaction, or one statement on its own (its rows when it has a result).
async fn run(client: &Client, sqls: &[String], batch: bool) -> Result<Option<Rows>, String> {
    if batch {
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| message(&e))?;
        for s in sqls {
            if let Err(e) = client.batch_execute(s).await {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(message(&e));
            }
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| message(&e))?;
        return Ok(None);
    }
    let sql = &sqls[0];
    let out = client.simple_query(sql).await.map_err(|e| message(&e))?;
    let head = sql.trim_start().to_ascii_uppercase();
    if !(head.starts_with("SELECT") || head.starts_with("WITH")) {
        return Ok(None);
    }
    Ok(Some(
        out.into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect(),
    ))
}

async fn call(State(st): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(op) = target.strip_prefix("RedshiftData.") else {
        return error("UnknownOperationException", &target);
    };
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return error("SerializationException", "the body is not JSON");
    };
    match op {
        "ExecuteStatement" | "BatchExecuteStatement" => execute(&st, op, &input).await,
        "DescribeStatement" => describe(&st, &input),
        "GetStatementResult" => result(&st, &input),
        "CancelStatement" => ok(json!({ "Status": true })),
        _ => error("UnknownOperationException", op),
    }
}

async fn execute(st: &Arc<Inner>, op: &str, input: &Value) -> Response {
    let batch = op == "BatchExecuteStatement";
    let sqls: Vec<String> = if batch {
        input["Sqls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        input["Sql"]
            .as_str()
            .map(String::from)
            .into_iter()
            .collect()
    };
    let session_id = input["SessionId"].as_str().map(String::from);
    st.calls
        .lock()
        .unwrap()
        .push((op.to_string(), sqls.len(), session_id.clone()));
    if sqls.is_empty() {
        return error("ValidationException", "no SQL");
    }
    if sqls.len() > MAX_BATCH {
        return error(
            "ValidationException",
            &format!("{} statements: at most {MAX_BATCH} in a batch", sqls.len()),
        );
    }
    if let Some(s) = sqls.iter().find(|s| s.len() > MAX_STATEMENT_BYTES) {
        return error(
            "ValidationException",
            &format!(
                "a statement of {} bytes: at most {MAX_STATEMENT_BYTES}",
                s.len()
            ),
        );
    }
    let session = match &session_id {
        Some(id) => {
            let Some(s) = st.sessions.lock().unwrap().get(id).cloned() else {
                return error("ValidationException", &format!("no session {id}"));
            };
            s
        }
        None => {
            let target = input["WorkgroupName"].is_string() as u8
                + input["ClusterIdentifier"].is_string() as u8;
            if !input["Database"].is_string() || target != 1 {
                return error(
                    "ValidationException",
                    "Database and one of WorkgroupName or ClusterIdentifier are required",
                );
            }
            let client = match connect(&st.dsn).await {
                Ok(c) => c,
                Err(e) => return error("DatabaseConnectionException", &e),
            };
            Arc::new(Session {
                client: tokio::sync::Mutex::new(client),
                busy: AtomicBool::new(false),
            })
        }
    };
    if session.busy.swap(true, Ordering::SeqCst) {
        return error(
            "ValidationException",
            "the session is busy running another statement",
        );
    }
    let new_session = match (&session_id, input["SessionKeepAliveSeconds"].as_i64()) {
        (None, Some(_)) => {
            let id = format!(
                "{:08x}-0000-4000-8000-{:012x}",
                std::process::id(),
                st.next.fetch_add(1, Ordering::SeqCst)
            );
            st.sessions
                .lock()
                .unwrap()
                .insert(id.clone(), session.clone());
            Some(id)
        }
        _ => None,
    };
    let id = format!(
        "{:08x}-0000-4000-9000-{:012x}",
        std::process::id(),
        st.next.fetch_add(1, Ordering::SeqCst)
    );
    let created = now();
    st.statements.lock().unwrap().insert(
        id.clone(),
        Statement {
            status: "STARTED",
            error: None,
            rows: None,
            created,
            updated: created,
            session: session_id.clone().or(new_session.clone()),
        },
    );
    let (state, sid) = (st.clone(), id.clone());
    tokio::spawn(async move {
        let outcome = {
            let client = session.client.lock().await;
            run(&client, &sqls, batch).await
        };
        session.busy.store(false, Ordering::SeqCst);
        let mut statements = state.statements.lock().unwrap();
        if let Some(s) = statements.get_mut(&sid) {
            s.updated = now();
            match outcome {
                Ok(rows) => {
                    s.status = "FINISHED";
                    s.rows = rows;
                }
                Err(e) => {
                    s.status = "FAILED";
                    s.error = Some(e);
                }
            }
        }
    });
    let mut out = json!({ "Id": id, "CreatedAt": created, "Database": input["Database"] });
    if let Some(s) = session_id.or(new_session) {
        out["SessionId"] = json!(s);
    }
    ok(out)
}

fn describe(st: &Inner, input: &Value) -> Response {
    let id = input["Id"].as_str().unwrap_or_default();
    let Some(s) = st.statements.lock().unwrap().get(id).cloned() else {
        return error("ResourceNotFoundException", &format!("no statement {id}"));
    };
    let mut out = json!({
        "Id": id,
        "Status": s.status,
        "HasResultSet": s.rows.is_some(),
        "CreatedAt": s.created,
        "UpdatedAt": s.updated,
    });
    if let Some(e) = &s.error {
        out["Error"] = json!(e);
    }
    if let Some(rows) = &s.rows {
        out["ResultRows"] = json!(rows.len());
    }
    if let Some(sess) = &s.session {
        out["SessionId"] = json!(sess);
    }
    ok(out)
}

fn result(st: &Inner, input: &Value) -> Response {
    let id = input["Id"].as_str().unwrap_or_default();
    let Some(s) = st.statements.lock().unwrap().get(id).cloned() else {
        return error("ResourceNotFoundException", &format!("no statement {id}"));
    };
    let Some(rows) = s.rows else {
        return error(
            "ValidationException",
            &format!("statement {id} is {} with no result set", s.status),
        );
    };
    let from: usize = input["NextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page = &rows[from.min(rows.len())..(from + PAGE_ROWS).min(rows.len())];
    let mut records = Vec::with_capacity(page.len());
    for row in page {
        let bytes: usize = row.iter().flatten().map(String::len).sum();
        if bytes > MAX_ROW_BYTES {
            return error(
                "ValidationException",
                &format!("a result row of {bytes} bytes: at most {MAX_ROW_BYTES}"),
            );
        }
        records.push(
            row.iter()
                .map(|c| match c {
                    Some(v) => json!({ "stringValue": v }),
                    None => json!({ "isNull": true }),
                })
                .collect::<Vec<_>>(),
        );
    }
    let mut out = json!({ "Records": records, "TotalNumRows": rows.len() });
    if from + PAGE_ROWS < rows.len() {
        out["NextToken"] = json!((from + PAGE_ROWS).to_string());
    }
    ok(out)
}
