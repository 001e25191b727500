//! The AWS SDK configuration every AWS backend starts from: the standard credential chain
//! (never the config file), with the section's `region` and `endpoint_url` when set.

/// Load the SDK config for one config section.
pub async fn sdk_config(region: Option<&str>, endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    if let Some(u) = endpoint_url {
        loader = loader.endpoint_url(u);
    }
    loader.load().await
}
