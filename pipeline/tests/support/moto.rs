//! The moto server `scripts/test.sh` starts, shared by the AWS tests.

/// The moto endpoint, or None when moto is not running (plain `cargo test`). Under
/// `scripts/test.sh` ECOMOPS_REQUIRE_MOTO is set, so a missing server fails instead.
pub fn moto_endpoint() -> Option<String> {
    match std::env::var("ECOMOPS_TEST_MOTO_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var_os("ECOMOPS_REQUIRE_MOTO").is_none(),
                "ECOMOPS_REQUIRE_MOTO is set but ECOMOPS_TEST_MOTO_ENDPOINT is not"
            );
            eprintln!("SKIPPED: no moto server; run scripts/test.sh to include the S3 suite");
            None
        }
    }
}
