//! serde_json against sonic-rs and simd-json on the stream judge's parse: each line of the
//! shared workload into the shape of `stream::consumer::Incoming` (an id as text or integer,
//! two integers, a type, RFC 3339 times, a session), through serde as the judge does. Three
//! rounds, one core, the ratio of serde_json's time to each.
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Instant;

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Incoming {
    #[serde(deserialize_with = "id_text")]
    event_id: String,
    user_id: i64,
    product_id: i64,
    event_type: String,
    event_time: DateTime<Utc>,
    session_id: String,
    #[serde(default, rename = "ingestion_time")]
    producer_time: Option<DateTime<Utc>>,
}

fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an integer")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

fn main() {
    let path = std::env::args().nth(1).expect("file");
    let data = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    for round in 0..3 {
        let t = Instant::now();
        let mut ok = 0u64;
        for l in &lines {
            if serde_json::from_slice::<Incoming>(l).is_ok() {
                ok += 1;
            }
        }
        let a = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut ok2 = 0u64;
        for l in &lines {
            if sonic_rs::from_slice::<Incoming>(l).is_ok() {
                ok2 += 1;
            }
        }
        let b = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut ok3 = 0u64;
        let mut buf = Vec::new();
        for l in &lines {
            buf.clear();
            buf.extend_from_slice(l);
            if simd_json::serde::from_slice::<Incoming>(&mut buf).is_ok() {
                ok3 += 1;
            }
        }
        let c = t.elapsed().as_secs_f64();
        println!("round {round}: {} lines; serde_json {a:.3} s ({ok} ok), sonic-rs {b:.3} s ({ok2} ok, {:.2}x), simd-json {c:.3} s ({ok3} ok, {:.2}x)", lines.len(), a / b, a / c);
    }
}
