//! The FakeStore REST client: one GET per endpoint, retried with backoff and jitter.
//!
//! Retried: timeouts, connection errors, bodies cut short or not a JSON array, 429 (waiting at
//! least its Retry-After) and 5xx. Never retried: other 4xx (the request itself is wrong) and
//! bodies over `max_body_bytes` (the next attempt would be as large). Bodies are never logged:
//! the users endpoint carries passwords.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use chrono::NaiveDate;

use super::retry::{ApiHealth, RetryPolicy};
use crate::config::{FakeStoreConfig, RetryConfig};
use crate::error::{Error, Result};

/// The three collections the batch pulls (the contract crate's `Entity`).
pub use ecom_model::batch::Entity as Endpoint;

/// A response body and what it took to get it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// Why one attempt failed.
#[derive(Debug, Clone)]
enum AttemptError {
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    Permanent(String),
}

impl AttemptError {
    fn message(&self) -> &str {
        match self {
            AttemptError::Retryable { message, .. } | AttemptError::Permanent(message) => message,
        }
    }

    fn retryable(message: impl Into<String>) -> AttemptError {
        AttemptError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// A client of one FakeStore-compatible API.
#[derive(Debug, Clone)]
pub struct FakeStoreClient {
    http: reqwest::Client,
    base_url: String,
    max_body: u64,
    task_timeout: Duration,
    policy: RetryPolicy,
    health: Arc<ApiHealth>,
    /// Varies the jitter seed from request to request.
    requests: Arc<AtomicU64>,
}

impl FakeStoreClient {
    pub fn new(
        c: &FakeStoreConfig,
        retry: &RetryConfig,
        health: Arc<ApiHealth>,
    ) -> Result<FakeStoreClient> {
        let base_url = c.base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(Error::Config {
                path: "batch.fakestore.base_url".into(),
                message: format!("{base_url:?} is not an http(s) URL"),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(c.request_timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(c.request_timeout_ms.max(1)))
            .user_agent(concat!("ecomops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Http {
                url: base_url.clone(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(FakeStoreClient {
            http,
            base_url,
            max_body: c.max_body_bytes,
            task_timeout: Duration::from_secs(c.task_timeout_secs.max(1)),
            policy: RetryPolicy::from_config(retry),
            health,
            requests: Arc::default(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// GET one endpoint (carts optionally limited to a date window), with retries, within the
    /// task timeout.
    pub async fn fetch(
        &self,
        endpoint: Endpoint,
        window: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<Fetched> {
        let mut url = format!("{}/{}", self.base_url, endpoint.name());
        if let (Endpoint::Carts, Some((start, end))) = (endpoint, window) {
            url.push_str(&format!("?startdate={start}&enddate={end}"));
        }
        let attempts = AtomicU64::new(0);
        let seed = self.requests.fetch_add(1, Ordering::Relaxed) ^ std::process::id() as u64;
        let (url_ref, attempts_ref) = (url.as_str(), &attempts);
        let attempt = move || async move {
            let n = attempts_ref.fetch_add(1, Ordering::Relaxed) + 1;
            let result = self.attempt(url_ref).await;
            match &result {
                Ok(body) => {
                    self.health.record_success(url_ref);
                    tracing::info!(url = url_ref, attempt = n, bytes = body.len(), "fetched");
                }
                Err(e) => self.health.record_failure(url_ref, e.message()),
            }
            result
        };
        let retried = attempt
            .retry(self.policy.delays(seed))
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, AttemptError::Retryable { .. }))
            .adjust(|e, delay| match (e, delay) {
                // Retry-After is a floor under the backoff, never a way around max_attempts.
                (
                    AttemptError::Retryable {
                        retry_after: Some(after),
                        ..
                    },
                    Some(d),
                ) => Some(d.max(*after)),
                (_, d) => d,
            })
            .notify(|e, delay| {
                tracing::warn!(url = %url, error = e.message(), retry_in_ms = delay.as_millis() as u64, "attempt failed; retrying");
            });
        let outcome = tokio::time::timeout(self.task_timeout, retried).await;
        let tries = attempts.load(Ordering::Relaxed) as u32;
        match outcome {
            Ok(Ok(body)) => Ok(Fetched {
                url,
                body,
                attempts: tries,
            }),
            Ok(Err(e)) => {
                let why = match e {
                    AttemptError::Permanent(m) => format!("{m} (not retried)"),
                    AttemptError::Retryable { message, .. } => {
                        format!("{message} (gave up after {tries} attempts)")
                    }
                };
                tracing::error!(url = %url, attempts = tries, error = %why, "fetch failed");
                Err(Error::Http { url, message: why })
            }
            Err(_) => {
                let why = format!(
                    "task timeout of {}s reached after {tries} attempts",
                    self.task_timeout.as_secs()
                );
                self.health.record_failure(&url, &why);
                tracing::error!(url = %url, error = %why, "fetch failed");
                Err(Error::Http { url, message: why })
            }
        }
    }

    async fn attempt(&self, url: &str) -> std::result::Result<Vec<u8>, AttemptError> {
        let mut resp = self.http.get(url).send().await.map_err(|e| {
            AttemptError::retryable(if e.is_timeout() {
                "request timed out".to_string()
            } else if e.is_connect() {
                format!("cannot connect: {}", root_cause(&e))
            } else {
                format!("request failed: {}", root_cause(&e))
            })
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(AttemptError::Retryable {
                message: format!("HTTP {status}"),
                retry_after: retry_after(resp.headers()),
            });
        }
        if !status.is_success() {
            return Err(AttemptError::Permanent(format!("HTTP {status}")));
        }
        if let Some(len) = resp.content_length().filter(|l| *l > self.max_body) {
            return Err(AttemptError::Permanent(format!(
                "response of {len} bytes is over the {} byte limit (batch.fakestore.max_body_bytes)",
                self.max_body
            )));
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() as u64 + chunk.len() as u64 > self.max_body {
                        return Err(AttemptError::Permanent(format!(
                            "response body is over the {} byte limit (batch.fakestore.max_body_bytes)",
                            self.max_body
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(AttemptError::retryable("timed out reading the body"))
                }
                Err(e) => {
                    return Err(AttemptError::retryable(format!(
                        "body cut short after {} bytes: {}",
                        body.len(),
                        root_cause(&e)
                    )))
                }
            }
        }
        // A truncated or garbled body is a transport fault: fetch it again rather than land it.
        match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            Ok(_) if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') => Ok(body),
            Ok(_) => Err(AttemptError::retryable("response is JSON but not an array")),
            Err(e) => Err(AttemptError::retryable(format!(
                "response is not valid JSON ({e}); {} bytes",
                body.len()
            ))),
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Retry-After as delay-seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(reqwest::header::RETRY_AFTER, later.parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn base_url_must_be_http() {
        let c = FakeStoreConfig {
            base_url: "ftp://x".into(),
            ..FakeStoreConfig::default()
        };
        let err = FakeStoreClient::new(&c, &RetryConfig::default(), Arc::default()).unwrap_err();
        assert!(err.to_string().contains("not an http(s) URL"), "{err}");
    }
}
