//! Wall-clock time in one place (milliseconds since the epoch), so stream code reads one clock.

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
