//! Retry schedule and API health for the FakeStore client.
//!
//! The schedule is a plain iterator of delays, which is what backon drives: delay n (before
//! attempt n + 2) is `min(base * multiplier^n, max)`, and with jitter a uniform draw from
//! `[d/2, d]` of that capped value ("equal jitter"), so jitter spreads a fleet of clients apart
//! but never pushes one past the cap, and the schedule still grows.

use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::RetryConfig;

pub use ecom_model::batch::ApiState;

/// The retry policy of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub multiplier: f64,
    pub max: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub jitter: bool,
}

impl RetryPolicy {
    pub fn from_config(c: &RetryConfig) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(c.base_delay_ms),
            multiplier: f64::from(c.multiplier).max(1.0),
            max: Duration::from_millis(c.max_delay_ms),
            max_attempts: c.max_attempts.max(1),
            jitter: c.jitter,
        }
    }

    /// The delays before each retry; `seed` drives the jitter (a fresh one per request).
    pub fn delays(&self, seed: u64) -> Delays {
        Delays {
            policy: self.clone(),
            n: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The capped delay before retry `n` (0-based), without jitter.
    pub fn capped(&self, n: u32) -> Duration {
        let grown = self.base.as_secs_f64() * self.multiplier.powi(n.min(64) as i32);
        let cap = self.max.as_secs_f64();
        Duration::from_secs_f64(if grown.is_finite() {
            grown.min(cap)
        } else {
            cap
        })
    }
}

/// Iterator of retry delays: `max_attempts - 1` of them.
#[derive(Debug)]
pub struct Delays {
    policy: RetryPolicy,
    n: u32,
    rng: ChaCha8Rng,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.n + 1 >= self.policy.max_attempts {
            return None;
        }
        let d = self.policy.capped(self.n);
        self.n += 1;
        if !self.policy.jitter || d.is_zero() {
            return Some(d);
        }
        let half = d / 2;
        let spread = (d - half).as_nanos() as u64;
        Some(half + Duration::from_nanos(self.rng.random_range(0..=spread)))
    }
}

/// What the client has seen of the API: consecutive failures decide the "API down" scenario.
#[derive(Debug, Default)]
pub struct ApiHealth {
    down_after: u32,
    state: Mutex<ApiState>,
}

impl ApiHealth {
    pub fn new(down_after: u32) -> ApiHealth {
        ApiHealth {
            down_after: down_after.max(1),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ApiState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_failure(&self, url: &str, error: &str) {
        let mut s = self.lock();
        s.attempts += 1;
        s.failures += 1;
        s.consecutive_failures += 1;
        s.last_error = Some(error.to_string());
        if !s.down && s.consecutive_failures >= self.down_after {
            s.down = true;
            s.detections += 1;
            tracing::error!(
                url,
                consecutive_failures = s.consecutive_failures,
                "failure scenario detected: API down"
            );
        }
    }

    pub fn record_success(&self, url: &str) {
        let mut s = self.lock();
        s.attempts += 1;
        s.consecutive_failures = 0;
        if s.down {
            s.down = false;
            s.recoveries += 1;
            tracing::info!(url, "failure scenario recovered: API down");
        }
    }

    pub fn state(&self) -> ApiState {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: bool) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_millis(1000),
            max_attempts: 8,
            jitter,
        }
    }

    #[test]
    fn delays_grow_exponentially_to_the_cap() {
        let d: Vec<u64> = policy(false)
            .delays(1)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn jitter_never_exceeds_the_cap_and_keeps_growth() {
        for seed in 0..200 {
            let p = policy(true);
            let d: Vec<Duration> = p.delays(seed).collect();
            assert_eq!(d.len(), 7, "max_attempts - 1 retries");
            for (n, delay) in d.iter().enumerate() {
                let capped = p.capped(n as u32);
                assert!(*delay <= p.max, "seed {seed}: {delay:?} over the cap");
                assert!(
                    *delay <= capped && *delay >= capped / 2,
                    "seed {seed} n {n}"
                );
            }
            // Growth survives jitter: the 4th delay is at least the 1st's ceiling.
            assert!(d[3] >= d[0]);
        }
        // Jitter actually spreads: not every seed gives the same schedule.
        let a: Vec<Duration> = policy(true).delays(1).collect();
        let b: Vec<Duration> = policy(true).delays(2).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn api_down_is_detected_after_n_failures_and_recovers() {
        let h = ApiHealth::new(3);
        h.record_failure("u", "503");
        h.record_failure("u", "503");
        assert!(!h.state().down);
        h.record_failure("u", "503");
        assert!(h.state().down);
        h.record_success("u");
        let s = h.state();
        assert!(!s.down);
        assert_eq!((s.detections, s.recoveries, s.attempts), (1, 1, 4));
    }
}
