//! The dashboard's fixture (ui/src/fixture.rs) carries a cost report as data, since the UI
//! depends on the contract crate alone. This test prices the fixture's usage with the core's
//! `cost::estimate` and checks the file still says what the core says:
//! `ECOMOPS_UPDATE_FIXTURE=1 cargo test -p ecom-pipeline --test ui_fixture` rewrites it.

use chrono::{Duration, TimeZone, Utc};
use ecom_pipeline::config::CostConfig;
use ecom_pipeline::cost::{self, CostReport, Saving, Setup, Usage};
use ecom_pipeline::zones::Zone;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ui/src/fixture/cost.json");

fn priced() -> CostReport {
    // The fixture's clock and zone sizes (ui/src/fixture.rs).
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let zone_bytes = [
        (Zone::Raw, 98_765_432),
        (Zone::Staging, 45_678_901),
        (Zone::Curated, 0),
        (Zone::Quarantine, 20_480),
        (Zone::Late, 8_192),
    ];
    let mut usage = Usage::new(now - Duration::days(23));
    usage.observe(now - Duration::days(23), (0, 0, 0), &[], 4, 0, 0);
    usage.observe(
        now,
        (120_000, 400_000, 7_200_000_000),
        &zone_bytes,
        4,
        250_500,
        36_000_000,
    );
    let setup = Setup {
        shards: 4,
        cloudwatch_metrics: 0,
        cloudwatch_alarms: 0,
        on_aws: [("s3".to_string(), false), ("kinesis".to_string(), false)].into(),
    };
    cost::estimate(
        &CostConfig::default(),
        &usage,
        &zone_bytes,
        &setup,
        Saving {
            expirable_bytes: 0,
            ia_bytes: 40_000_000,
            glacier_bytes: 0,
            usd_month: 0.0004,
        },
        now,
    )
}

#[test]
fn the_fixture_cost_report_is_what_the_core_prices() {
    let mut json = serde_json::to_string_pretty(&priced()).unwrap();
    json.push('\n');
    if std::env::var_os("ECOMOPS_UPDATE_FIXTURE").is_some() {
        std::fs::write(FILE, &json).unwrap();
    }
    // As text: the usage's meter readings are per process and not serialised, and floats
    // compare exactly as printed.
    assert!(
        std::fs::read_to_string(FILE).unwrap() == json,
        "ui/src/fixture/cost.json is stale: rerun with ECOMOPS_UPDATE_FIXTURE=1"
    );
}
