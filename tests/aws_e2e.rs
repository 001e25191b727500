//! The AWS path end to end: the crash harness's deterministic workload run with the S3 store and
//! the Kinesis stream (three shards) on the moto server `scripts/test.sh` starts, DuckDB as the
//! warehouse; `verify` passes and the metrics and table counts equal those of the same workload
//! on the embedded backends.

mod support {
    #[path = "../../pipeline/tests/support/moto.rs"]
    pub mod moto;
    pub mod workload;
}

use support::moto::moto_endpoint;
use support::workload::{events, Rng, Workload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_and_kinesis_on_moto_match_the_embedded_run() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut data = Rng(0x51f1_5eed_0dd1_ce55);
    let files = [root.join("events-1.ndjson"), root.join("events-2.ndjson")];
    std::fs::write(&files[0], events(&mut data, 1, 2000)).unwrap();
    std::fs::write(&files[1], events(&mut data, 1500, 2000)).unwrap();

    let base = "[stream.generator]\nenabled = false\n";
    let embedded_cfg = root.join("embedded.toml");
    std::fs::write(&embedded_cfg, base).unwrap();
    let id = std::process::id();
    let (bucket, stream) = (format!("e2e-{id}"), format!("e2e-{id}"));
    let aws_cfg = root.join("aws.toml");
    std::fs::write(
        &aws_cfg,
        format!(
            "{base}\n[store]\nbackend = \"s3\"\n\n[store.s3]\nbucket = \"{bucket}\"\nprefix = \"ecomops/\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nforce_path_style = true\n\n\
             [stream]\nbackend = \"kinesis\"\n\n[stream.kinesis]\nstream_name = \"{stream}\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n"
        ),
    )
    .unwrap();
    let config = ecom_pipeline::config::Config::load(Some(&aws_cfg)).unwrap();
    ecom_pipeline::store::s3_client(&config.store.s3)
        .await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    ecom_pipeline::stream::kinesis::client(&config.stream.kinesis)
        .await
        .create_stream()
        .stream_name(&stream)
        .shard_count(3)
        .send()
        .await
        .unwrap();

    let run = |name: &str, cfg: &std::path::Path| {
        let w = Workload::new(root, name, &files, cfg);
        for step in w.steps() {
            w.run_to_completion(&step);
        }
        if name == "aws" {
            // A replay re-reads a Kinesis shard (AT_TIMESTAMP) into byte-identical RAW.
            let s = w
                .cmd(&[
                    "replay",
                    "--shard",
                    "shardId-000000000001",
                    "--from-seq",
                    "1",
                ])
                .stdout(std::process::Stdio::piped())
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&s.stdout).into_owned();
            assert!(s.status.success(), "replay failed: {out}");
            assert!(out.contains("0 rewritten"), "{out}");
        }
        w.outcome()
    };
    // The commands block; this runtime only set the AWS resources up.
    let (embedded, aws) =
        tokio::task::block_in_place(|| (run("embedded", &embedded_cfg), run("aws", &aws_cfg)));
    assert_eq!(aws.1, embedded.1, "table counts differ");
    assert_eq!(aws.0, embedded.0, "metrics differ");
    assert!(
        aws.1
            .iter()
            .any(|(t, n)| t == "staging.events" && *n > 3000),
        "{:?}",
        aws.1
    );
}
