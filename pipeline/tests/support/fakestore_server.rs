//! A FakeStore-compatible HTTP server for tests, on loopback, that injects faults: 5xx bursts,
//! 429 with Retry-After, hangs past the client's timeout, slow bodies, bodies cut short,
//! malformed JSON, invalid records and a total outage. Bodies come from the synthetic source,
//! so they are FakeStore-shaped and deterministic. Shared by the pipeline's and the binary's
//! integration tests (`#[path]`-included).
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use ecom_pipeline::batch::synthetic::SyntheticSource;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to do with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Ok,
    Status(u16),
    /// 429 with `Retry-After: secs`.
    TooMany(u64),
    /// Answer only after this long (longer than the client's timeout, for a timeout).
    Hang(Duration),
    /// Send the body in pieces, this long apart.
    SlowBody(Duration),
    /// Send half the body, then drop the connection.
    Truncate,
    /// 200 with a body that is not JSON.
    Malformed,
}

#[derive(Debug, Default)]
pub struct Faults {
    /// Per-endpoint scripted faults, used first, in order.
    pub script: HashMap<String, VecDeque<Fault>>,
    /// Then random: this share of 503s and of hangs (percent).
    pub error_pct: u32,
    pub timeout_pct: u32,
    pub hang: Duration,
}

pub struct ServerState {
    pub source: SyntheticSource,
    pub down: AtomicBool,
    /// Add one product with a negative price to /products.
    pub invalid_records: AtomicBool,
    /// Every product's price raised by 1.00 (the catalogue changed).
    pub reprice: AtomicBool,
    pub faults: Mutex<Faults>,
    rng: Mutex<ChaCha8Rng>,
    /// (endpoint, query, when) of every request.
    pub log: Mutex<Vec<(String, String, Instant)>>,
}

pub struct FakeStoreServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStoreServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeStoreServer {
    pub async fn start(source: SyntheticSource) -> FakeStoreServer {
        let state = Arc::new(ServerState {
            source,
            down: AtomicBool::new(false),
            invalid_records: AtomicBool::new(false),
            reprice: AtomicBool::new(false),
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(7)),
            log: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/{endpoint}", get(serve))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStoreServer { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn script(&self, endpoint: &str, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .faults
            .lock()
            .unwrap()
            .script
            .entry(endpoint.to_string())
            .or_default()
            .extend(faults);
    }

    pub fn set_random(&self, error_pct: u32, timeout_pct: u32, hang: Duration) {
        let mut f = self.state.faults.lock().unwrap();
        f.error_pct = error_pct;
        f.timeout_pct = timeout_pct;
        f.hang = hang;
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Times of the requests to one endpoint.
    pub fn requests(&self, endpoint: &str) -> Vec<Instant> {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _, _)| e == endpoint)
            .map(|(_, _, t)| *t)
            .collect()
    }

    /// The query strings of the requests to `endpoint`, in order.
    pub fn requests_with_query(&self, endpoint: &str) -> Vec<String> {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _, _)| e == endpoint)
            .map(|(_, q, _)| q.clone())
            .collect()
    }

    pub fn total_requests(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }
}

fn body_for(state: &ServerState, endpoint: &str) -> Option<Vec<u8>> {
    match endpoint {
        "products" => {
            let body = state.source.products();
            let reprice = state.reprice.load(Ordering::SeqCst);
            if !state.invalid_records.load(Ordering::SeqCst) && !reprice {
                return Some(body);
            }
            let mut items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            if reprice {
                for p in &mut items {
                    p["price"] = serde_json::json!(p["price"].as_f64().unwrap() + 1.0);
                }
                return Some(serde_json::to_vec(&items).unwrap());
            }
            items.push(
                serde_json::json!({"id": 9999, "title": "bad", "price": -5.0,
                "description": "", "category": "electronics", "image": "",
                "rating": {"rate": 1.0, "count": 1}}),
            );
            Some(serde_json::to_vec(&items).unwrap())
        }
        "users" => Some(state.source.users()),
        "carts" => Some(state.source.carts(None, None)),
        _ => None,
    }
}

async fn serve(
    State(state): State<Arc<ServerState>>,
    Path(endpoint): Path<String>,
    uri: axum::http::Uri,
) -> Response<Body> {
    state.log.lock().unwrap().push((
        endpoint.clone(),
        uri.query().unwrap_or("").to_string(),
        Instant::now(),
    ));
    let fault = if state.down.load(Ordering::SeqCst) {
        Fault::Status(503)
    } else {
        let mut f = state.faults.lock().unwrap();
        match f.script.get_mut(&endpoint).and_then(|q| q.pop_front()) {
            Some(fault) => fault,
            None => {
                let roll = state.rng.lock().unwrap().random_range(0..100u32);
                if roll < f.error_pct {
                    Fault::Status(503)
                } else if roll < f.error_pct + f.timeout_pct {
                    Fault::Hang(f.hang)
                } else {
                    Fault::Ok
                }
            }
        }
    };
    let Some(body) = body_for(&state, &endpoint) else {
        return status(404);
    };
    let json = |body: Body| {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap()
    };
    match fault {
        Fault::Ok => json(Body::from(body)),
        Fault::Status(code) => status(code),
        Fault::TooMany(secs) => Response::builder()
            .status(429)
            .header(header::RETRY_AFTER, secs.to_string())
            .body(Body::from("slow down"))
            .unwrap(),
        Fault::Hang(d) => {
            tokio::time::sleep(d).await;
            json(Body::from(body))
        }
        Fault::SlowBody(gap) => {
            let chunks: Vec<Bytes> = body
                .chunks(body.len().div_ceil(4).max(1))
                .map(Bytes::copy_from_slice)
                .collect();
            let stream = futures::stream::unfold(chunks.into_iter(), move |mut it| async move {
                let next = it.next()?;
                tokio::time::sleep(gap).await;
                Some((Ok::<_, std::io::Error>(next), it))
            });
            json(Body::from_stream(stream))
        }
        Fault::Truncate => {
            let half = Bytes::copy_from_slice(&body[..body.len() / 2]);
            let stream = futures::stream::iter(vec![
                Ok(half),
                Err(std::io::Error::other("connection dropped")),
            ]);
            json(Body::from_stream(stream))
        }
        Fault::Malformed => json(Body::from("[{\"id\": 1, \"title\": ")),
    }
}

fn status(code: u16) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .body(Body::from(format!("status {code}")))
        .unwrap()
}
