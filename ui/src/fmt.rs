//! Number, time and sparkline formatting shared by the views.

use chrono::{DateTime, Utc};

pub use ecom_model::units::bytes;

/// "42s", "5m", "3h", "2d".
pub fn span_secs(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=99 => format!("{s}s"),
        100..=5999 => format!("{}m", s / 60),
        6000..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Age of `t` at `now` ("-" when never).
pub fn age(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => format!("{} ago", span_secs((now - t).num_seconds())),
        None => "-".into(),
    }
}

pub fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%H:%M:%S").to_string())
}

pub fn time_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map_or_else(|| "-".into(), |t| t.format("%m-%d %H:%M:%S").to_string())
}

pub fn cents(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    let c = c.unsigned_abs();
    format!("{sign}${}.{:02}", count(c / 100), c % 100)
}

/// 1234567 as "1,234,567".
pub fn count(n: u64) -> String {
    ecom_model::units::thousands(n)
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` samples as block characters, scaled from zero to the largest (rates).
pub fn sparkline(samples: &[i64], width: usize) -> String {
    let tail = &samples[samples.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0).max(1);
    tail.iter()
        .map(|&v| BARS[((v.max(0) * 7 + max / 2) / max).clamp(0, 7) as usize])
        .collect()
}

/// The last `width` samples scaled from their smallest to their largest (trends, where the
/// change matters more than the level).
pub fn trendline(samples: &[i64], width: usize) -> String {
    let tail = &samples[samples.len().saturating_sub(width)..];
    let min = tail.iter().copied().min().unwrap_or(0);
    let span = (tail.iter().copied().max().unwrap_or(0) - min).max(1);
    tail.iter()
        .map(|&v| BARS[(((v - min) * 7 + span / 2) / span).clamp(0, 7) as usize])
        .collect()
}

/// The change over a series, as an arrow and a percentage.
pub fn trend(samples: &[i64]) -> String {
    match (samples.first(), samples.last()) {
        (Some(&a), Some(&b)) if samples.len() > 1 && a != 0 => {
            let pct = (b - a) as f64 / a.abs() as f64 * 100.0;
            let arrow = if pct > 0.05 {
                "↑"
            } else if pct < -0.05 {
                "↓"
            } else {
                "→"
            };
            format!("{arrow} {pct:+.1}%")
        }
        (Some(_), Some(_)) if samples.len() > 1 => "→".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(cents(12_345_678), "$123,456.78");
        assert_eq!(cents(-5), "-$0.05");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(span_secs(7200), "2h");
        assert_eq!(sparkline(&[0i64, 5, 10], 10), "▁▅█");
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(trendline(&[100, 101, 102], 10), "▁▅█");
        assert_eq!(trend(&[100, 110]), "↑ +10.0%");
    }
}
