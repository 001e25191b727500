//! Plain-text renderings for headless output and `status`.

use std::fmt::Write as _;

use ecom_model::batch::BatchRun;
use ecom_model::protocol::CommandOutcome;
use ecom_model::report::Report;
use ecom_model::snapshot::{CycleReport, Snapshot};
use ecom_model::warehouse::Metrics;

/// A command's outcome as text: what its report says, then why it failed, if it did. All the
/// wording of command results lives here (the core returns data).
pub fn outcome_text(o: &CommandOutcome) -> String {
    let mut out = String::new();
    match &o.report {
        Some(Report::Cycle(c)) => {
            let _ = writeln!(out, "{}", cycle_line(&c.cycle));
            if !c.critical_alerts.is_empty() {
                let alerts: Vec<String> = c
                    .critical_alerts
                    .iter()
                    .map(|a| format!("{} ({})", a.name, a.condition))
                    .collect();
                let _ = writeln!(
                    out,
                    "cycle {} finished, but critical alert(s) fire: {}",
                    c.cycle.cycle,
                    alerts.join(", ")
                );
            }
            return out;
        }
        Some(Report::Run(run)) => out.push_str(&run_text(run)),
        Some(Report::Cost(c)) => out.push_str(&cost_text(c)),
        Some(Report::Metrics(m)) => out.push_str(&metrics_text(m)),
        Some(Report::Trends(days)) => out.push_str(&trends_text(days)),
        Some(Report::Quarantine(q)) => out.push_str(&quarantine_text(q)),
        Some(Report::Categories(c)) => out.push_str(&categories_text(c)),
        Some(Report::Verify(v)) => {
            for d in &v.differences {
                let _ = writeln!(out, "DIFF {}: {}", d.check, d.detail);
            }
            if let Some(q) = &v.quality {
                out.push_str(&quality_text(q));
            }
            let _ = writeln!(out, "{}", summary(o));
            return out;
        }
        Some(Report::Lifecycle(plan)) if !plan.diff.is_empty() => {
            let _ = writeln!(out, "{}", summary(o));
            for line in &plan.diff {
                let _ = writeln!(out, "{line}");
            }
            return out;
        }
        _ => {
            let _ = writeln!(out, "{}", summary(o));
            return out;
        }
    }
    if !o.ok {
        let _ = writeln!(out, "{}", o.message);
    }
    out
}

/// `ecomops quarantine`: counts per entity and field, then the newest records whole (the same
/// text the dashboard's records view shows).
pub fn quarantine_text(q: &ecom_model::report::QuarantineReport) -> String {
    ecom_ui::detail::quarantine_lines(q).join("\n") + "\n"
}

/// One line for a command's outcome (the dashboard's status line, `--output json`, the audit).
pub fn summary(o: &CommandOutcome) -> String {
    o.summary()
}

/// `ecomops cost`: one line per priced item, totals, budget and the lifecycle saving.
pub fn cost_text(c: &ecom_model::cost::CostReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cost estimate for {} (prices {}; {:.1} of {:.0} hours tracked)",
        c.month, c.prices_as_of, c.hours_tracked, c.hours_in_month
    );
    let _ = writeln!(
        out,
        "{:<11} {:<28} {:>14} {:<15} {:>11} {:>11}",
        "service", "item", "quantity", "unit", "to date", "projected"
    );
    for l in &c.lines {
        let _ = writeln!(
            out,
            "{:<11} {:<28} {:>14.4} {:<15} {:>11} {:>11}",
            l.service,
            l.item,
            l.quantity,
            l.unit,
            format!("${:.4}", l.month_to_date_usd),
            format!("${:.2}", l.projected_usd)
        );
    }
    let _ = writeln!(
        out,
        "total: ${:.4} month to date, ${:.2} projected (${:.2} of it held against the budget); budget ${:.2}{}",
        c.month_to_date_usd,
        c.projected_usd,
        c.projected_on_aws_usd,
        c.budget_usd,
        if c.over_budget {
            " — OVER BUDGET"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "lifecycle rules would save ${:.4}/month ({} to expire, {} to Standard-IA, {} to Glacier IR)",
        c.saving.usd_month,
        human_bytes(c.saving.expirable_bytes),
        human_bytes(c.saving.ia_bytes),
        human_bytes(c.saving.glacier_bytes)
    );
    let local: Vec<&str> = c
        .on_aws
        .iter()
        .filter(|(_, on)| !**on)
        .map(|(s, _)| s.as_str())
        .collect();
    if !local.is_empty() {
        let _ = writeln!(
            out,
            "not on AWS here (figures are the same volume priced on AWS): {}",
            local.join(", ")
        );
    }
    out
}

/// Cents as the dashboard writes them ("$13,580.05"); an average rounds to the cent.
fn money(cents: f64) -> String {
    ecom_ui::fmt::cents(cents.round() as i64)
}

/// `ecomops metrics --from --to`: one line per day, then the totals.
/// `metrics --by category`: a row per category, largest revenue first, and the total.
pub fn categories_text(c: &[ecom_model::warehouse::CategoryFigures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>7} {:>7} {:>14}",
        "category", "orders", "units", "revenue"
    );
    for r in c {
        let _ = writeln!(
            out,
            "{:<24} {:>7} {:>7} {:>14}",
            r.category,
            r.orders,
            r.units,
            money(r.revenue_cents as f64)
        );
    }
    let revenue: i64 = c.iter().map(|r| r.revenue_cents).sum();
    let _ = writeln!(
        out,
        "{:<24} {:>7} {:>7} {:>14}",
        "total",
        "",
        "",
        money(revenue as f64)
    );
    out
}

pub fn trends_text(days: &[ecom_model::warehouse::DayFigures]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>7} {:>14} {:>10} {:>9} {:>10}",
        "day", "orders", "revenue", "avg order", "sessions", "conversion"
    );
    for d in days {
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>14} {:>10} {:>9} {:>10}",
            d.day,
            d.orders,
            money(d.revenue_cents as f64),
            d.avg_order_value_cents.map_or_else(|| "-".into(), money),
            d.sessions,
            d.conversion_rate
                .map_or_else(|| "-".into(), |c| format!("{:.2}%", c * 100.0))
        );
    }
    let (orders, revenue): (i64, i64) = days
        .iter()
        .fold((0, 0), |(o, r), d| (o + d.orders, r + d.revenue_cents));
    let _ = writeln!(
        out,
        "{:<10} {:>7} {:>14}",
        "total",
        orders,
        money(revenue as f64)
    );
    out
}

pub fn metrics_text(m: &Metrics) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "revenue          {} ({} placed orders)",
        money(m.revenue_cents as f64),
        m.orders
    );
    let _ = writeln!(
        out,
        "avg_order_value  {}",
        m.avg_order_value_cents
            .map_or_else(|| "n/a (no orders)".into(), money)
    );
    let _ = writeln!(
        out,
        "conversion_rate  {}",
        m.conversion_rate.map_or_else(
            || "n/a (needs clickstream events)".into(),
            |c| format!("{:.2}%", c * 100.0)
        )
    );
    match &m.funnel_dropoff {
        Some(steps) => {
            for s in steps {
                let _ = writeln!(
                    out,
                    "funnel_dropoff   {} -> {}: {:.2}%",
                    s.from,
                    s.to,
                    s.dropoff * 100.0
                );
            }
        }
        None => {
            let _ = writeln!(out, "funnel_dropoff   n/a (needs clickstream events)");
        }
    }
    for c in &m.by_category {
        let _ = writeln!(
            out,
            "  {:<20} {:>14} {:>6} orders",
            c.category,
            money(c.revenue_cents as f64),
            c.orders
        );
    }
    out
}

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
    ecom_ui::fmt::bytes(n)
}

/// One line per observed change for `--no-ui --read-only`.
pub fn observed_line(s: &Snapshot) -> String {
    let who = match s.instance.mode {
        ecom_model::snapshot::RunMode::Oneshot | ecom_model::snapshot::RunMode::Headless
            if s.instance.read_only =>
        {
            // What this look read, so that a look that found more says so.
            let objects: u64 = s.zones.iter().map(|z| z.objects).sum();
            let loaded = s.warehouse.as_ref().map_or(0, |w| w.ledger_files);
            format!(
                "no writer running; read from the data dir ({objects} objects, {loaded} files \
                 loaded)"
            )
        }
        _ => format!("writer pid {}", s.instance.pid),
    };
    let cycle = s
        .last_cycle
        .as_ref()
        .map_or_else(|| "no cycle yet".to_string(), cycle_line);
    format!("{who}: health {}; {cycle}", s.health.label())
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
    // The same health the dashboard's Overview shows (derived by the core).
    let attention: Vec<String> = s
        .failures
        .iter()
        .filter(|f| !f.state.at_rest())
        .map(|f| {
            // What the configuration makes normal, or an operator snoozed, is shown, marked, as
            // the Overview does.
            let mark = if f.expected {
                " (expected)".to_string()
            } else {
                match f.snoozed_until.filter(|t| *t > s.generated_at) {
                    Some(t) => format!(" (snoozed until {})", t.format("%H:%M UTC")),
                    None => String::new(),
                }
            };
            format!("{} {}{mark}", f.scenario, f.state.label())
        })
        .collect();
    let _ = writeln!(
        out,
        "health: {}{}",
        s.health.label(),
        if attention.is_empty() {
            String::new()
        } else {
            format!(" ({})", attention.join(", "))
        }
    );
    if let Some(next) = &s.next_action {
        let _ = writeln!(out, "next action: {next}");
    }
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
    let api = &s.batch.api;
    let _ = writeln!(
        out,
        "batch source {}: API {} ({} attempts, {} failed{})",
        s.batch.source,
        if api.down { "DOWN" } else { "ok" },
        api.attempts,
        api.failures,
        api.last_error
            .as_deref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default()
    );
    for run in s.batch.runs.iter().take(3) {
        let _ = writeln!(out, "  {}", run.summary());
    }
    if let Some(w) = &s.warehouse {
        let _ = writeln!(
            out,
            "warehouse {}: {} file(s) in the ledger, {} day(s) awaiting a model refresh",
            w.backend, w.ledger_files, w.dirty_days
        );
        for (table, rows) in &w.tables {
            let _ = writeln!(out, "  {table:<30} {rows:>10} rows");
        }
        if let Some(m) = &w.metrics {
            let _ = writeln!(
                out,
                "  revenue {} from {} placed orders",
                money(m.revenue_cents as f64),
                m.orders
            );
        }
    }
    if let Some(st) = &s.stream {
        let t = &st.totals;
        let wm = st
            .watermarks
            .global_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(|| "-".into(), |w| w.format("%Y-%m-%d %H:%M:%S").to_string());
        let _ = writeln!(
            out,
            "stream {} (this process: {} read, {} staged, {} duplicates, {} late, {} quarantined); global watermark {wm}",
            st.backend, t.records, t.staged, t.duplicates, t.late, t.quarantined
        );
        for sh in &st.shards {
            let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "  {:<12} latest {:>10}  checkpoint {:>10}  lag {:>8}",
                sh.shard,
                opt(sh.latest_seq),
                opt(sh.checkpoint),
                sh.lag_records
            );
        }
        if let Some(f) = &st.fleet {
            out.push_str(&fleet_text(f));
        }
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

/// The fleet on one stream (`ecomops leases`, and status under leases): the instances with
/// the shards each holds, then one line per lease.
pub fn fleet_text(f: &ecom_model::stream::FleetStatus) -> String {
    let mut out = String::new();
    let instances = f.instances();
    let live = instances.iter().filter(|(_, s)| !s.is_empty()).count();
    let _ = writeln!(
        out,
        "fleet: lease table {}, {} shard leases, {live} instance{} holding leases{}",
        f.table,
        f.leases.len(),
        if live == 1 { "" } else { "s" },
        match &f.last_lost {
            Some(l) => format!(
                "; this instance lost {} lease{} (last {} at {})",
                f.lost,
                if f.lost == 1 { "" } else { "s" },
                l.shard,
                l.at.format("%H:%M:%S UTC")
            ),
            None => String::new(),
        }
    );
    for (worker, shards) in &instances {
        let me = if *worker == f.worker {
            " (this instance)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {worker}{me}: {}", shards.join(", "));
    }
    let _ = writeln!(
        out,
        "  {:<22} {:<28} {:>8} {:>8} {:>22}  state",
        "shard", "owner", "counter", "age", "checkpoint"
    );
    for l in &f.leases {
        let state = if l.finished {
            "finished"
        } else if l.owner.is_none() {
            "free"
        } else if l.expired {
            "EXPIRED (owner stopped renewing)"
        } else {
            "held"
        };
        let _ = writeln!(
            out,
            "  {:<22} {:<28} {:>8} {:>8} {:>22}  {state}",
            l.shard,
            l.owner.as_deref().unwrap_or("-"),
            l.counter,
            ecom_model::metrics::display("lease_age_ms", l.age_ms as f64, "Milliseconds"),
            l.checkpoint.map_or_else(|| "-".into(), |c| c.to_string()),
        );
    }
    out
}

/// A batch run: its summary, then one line per task.
pub fn run_text(run: &BatchRun) -> String {
    let mut out = format!("{}\n", run.summary());
    for t in &run.tasks {
        let status = t.status.name();
        let what = t.error.as_deref().or(t.detail.as_deref()).unwrap_or("");
        let _ = writeln!(
            out,
            "  {:<17} {:<15} attempts {:<2} {what}",
            t.name, status, t.attempts
        );
    }
    out
}

/// The data-quality findings under `verify`: orphans per relation, stale tables, the event
/// volume against the week before, ingestion delay of the newest day.
pub fn quality_text(q: &ecom_model::warehouse::Quality) -> String {
    let mut out = String::new();
    for (relation, n) in q.orphans.iter().filter(|(_, n)| *n > 0) {
        let _ = writeln!(
            out,
            "QUALITY orphans {relation}: {n} row(s) name a missing row"
        );
    }
    for f in q.freshness.iter().filter(|f| f.stale) {
        let last = f.last_at.map_or_else(
            || "never loaded".to_string(),
            |t| format!("last {}", t.format("%Y-%m-%d %H:%M:%SZ")),
        );
        let _ = writeln!(
            out,
            "QUALITY stale {}: {last}, SLA {}s",
            f.table, f.sla_secs
        );
    }
    if let Some(drop) = q.events_volume_drop.filter(|d| *d > 0.0) {
        let _ = writeln!(
            out,
            "QUALITY events volume: {} in the last 24 h, {:.0}/day the week before ({:.0}% lower)",
            q.events_last_24h,
            q.events_prior_daily_avg,
            drop * 100.0
        );
    }
    if let Some(d) = q.ingestion_delay.first() {
        let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}s"));
        let _ = writeln!(
            out,
            "ingestion delay {}: {} events, p50 {}, p95 {}, max {}",
            d.day,
            d.events,
            s(d.p50_secs),
            s(d.p95_secs),
            s(d.max_secs)
        );
    }
    if q.orphan_total() == 0 && q.stale_tables() == 0 {
        let _ = writeln!(
            out,
            "quality: no orphans, every table within its freshness SLA"
        );
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
