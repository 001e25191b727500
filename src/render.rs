//! Plain-text renderings for headless output and `status`.

use std::fmt::Write as _;

use ecom_pipeline::snapshot::{CycleReport, Snapshot};

pub fn cycle_line(c: &CycleReport) -> String {
    let secs = (c.finished_at - c.started_at).num_milliseconds() as f64 / 1000.0;
    let state = if c.ok { "ok" } else { "FAILED" };
    let mut line = format!("cycle {} {state} in {secs:.2}s", c.cycle);
    if !c.steps.is_empty() {
        let _ = write!(line, ": {}", c.steps.join("; "));
    }
    if let Some(e) = &c.error {
        let _ = write!(line, " — {e}");
    }
    line
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn status_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let i = &s.instance;
    let _ = writeln!(
        out,
        "ecomops {} — pid {} ({:?}{}), data dir {}, up since {}",
        i.version,
        i.pid,
        i.mode,
        if i.read_only { ", read-only" } else { "" },
        i.data_dir.display(),
        i.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(
        out,
        "backends: store {}, stream {}, warehouse {}{}",
        s.backends.store,
        s.backends.stream,
        s.backends.warehouse,
        if s.paused { " — PAUSED" } else { "" }
    );
    let _ = writeln!(
        out,
        "{:<11} {:>8} {:>11}  last write",
        "zone", "objects", "bytes"
    );
    for z in &s.zones {
        let name = z.zone.map_or("?", |z| z.name());
        let last = z.last_write.map_or_else(
            || "-".to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        );
        let _ = writeln!(
            out,
            "{name:<11} {:>8} {:>11}  {last}",
            z.objects,
            human_bytes(z.bytes)
        );
    }
    match &s.last_cycle {
        Some(c) => {
            let _ = writeln!(out, "cycles: {}; last: {}", s.cycles, cycle_line(c));
        }
        None => {
            let _ = writeln!(out, "cycles: {}", s.cycles);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
