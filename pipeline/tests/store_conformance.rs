//! One conformance suite, run against every object store backend: the local directory always,
//! S3 on the moto server that `scripts/test.sh` starts (ECOMOPS_TEST_MOTO_ENDPOINT).

mod support {
    pub mod moto;
}

use support::moto::moto_endpoint;

use std::sync::Arc;

use bytes::Bytes;
use ecom_pipeline::store::{sha256_hex, LocalStore, ObjectStore, PutOutcome, S3Store};
use ecom_pipeline::Error;

async fn suite(store: Arc<dyn ObjectStore>) {
    roundtrip(store.as_ref()).await;
    absent(store.as_ref()).await;
    overwrite(store.as_ref()).await;
    immutable(store.as_ref()).await;
    immutable_hashed(store.as_ref()).await;
    listing(store.as_ref()).await;
    deletion(store.as_ref()).await;
    bad_keys(store.as_ref()).await;
    empty_and_large(store.as_ref()).await;
    racing_creators(store).await;
}

async fn roundtrip(s: &dyn ObjectStore) {
    let data = Bytes::from_static(b"{\"id\":1}\n");
    let meta = s.put("raw/t/a.json", data.clone()).await.unwrap();
    assert_eq!(meta.key, "raw/t/a.json");
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.sha256, sha256_hex(&data));
    assert_eq!(s.get("raw/t/a.json").await.unwrap(), data);
    let head = s
        .head("raw/t/a.json")
        .await
        .unwrap()
        .expect("head of a written key");
    assert_eq!(head.sha256, meta.sha256);
    assert_eq!(head.size, meta.size);
    assert!(head.last_modified.is_some());
}

async fn absent(s: &dyn ObjectStore) {
    assert_eq!(s.head("raw/none/x.json").await.unwrap(), None);
    match s.get("raw/none/x.json").await {
        Err(Error::NotFound(k)) => assert_eq!(k, "raw/none/x.json"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

async fn overwrite(s: &dyn ObjectStore) {
    s.put("staging/t/o.ndjson", Bytes::from_static(b"one"))
        .await
        .unwrap();
    let m = s
        .put("staging/t/o.ndjson", Bytes::from_static(b"two!"))
        .await
        .unwrap();
    assert_eq!(
        s.get("staging/t/o.ndjson").await.unwrap(),
        Bytes::from_static(b"two!")
    );
    assert_eq!(
        s.head("staging/t/o.ndjson").await.unwrap().unwrap().sha256,
        m.sha256
    );
    assert_eq!(m.size, 4);
}

async fn immutable(s: &dyn ObjectStore) {
    let first = s
        .put_if_absent("raw/t/i.json", Bytes::from_static(b"v1"))
        .await
        .unwrap();
    assert_eq!(first.outcome, PutOutcome::Written);
    let again = s
        .put_if_absent("raw/t/i.json", Bytes::from_static(b"v1"))
        .await
        .unwrap();
    assert_eq!(again.outcome, PutOutcome::AlreadyPresent);
    assert_eq!(again.meta.sha256, first.meta.sha256);
    match s
        .put_if_absent("raw/t/i.json", Bytes::from_static(b"v2"))
        .await
    {
        Err(Error::ImmutableConflict { key, existing, new }) => {
            assert_eq!(key, "raw/t/i.json");
            assert_eq!(existing, sha256_hex(b"v1"));
            assert_eq!(new, sha256_hex(b"v2"));
        }
        other => panic!("expected ImmutableConflict, got {other:?}"),
    }
    assert_eq!(
        s.get("raw/t/i.json").await.unwrap(),
        Bytes::from_static(b"v1")
    );
}

/// `put_if_absent` with the caller's hash: the same object and the same answers, the hash
/// recorded as given (it is the bytes' own), and a later read checks the bytes against it.
async fn immutable_hashed(s: &dyn ObjectStore) {
    let data = Bytes::from_static(b"{\"id\":7}\n");
    let sha = sha256_hex(&data);
    let first = s
        .put_if_absent_hashed("raw/t/h.json", data.clone(), &sha)
        .await
        .unwrap();
    assert_eq!(
        (first.outcome, first.meta.sha256.as_str()),
        (PutOutcome::Written, sha.as_str())
    );
    let head = s.head("raw/t/h.json").await.unwrap().unwrap();
    assert_eq!(
        (head.sha256.as_str(), head.size),
        (sha.as_str(), data.len() as u64)
    );
    assert_eq!(s.get("raw/t/h.json").await.unwrap(), data);
    let again = s
        .put_if_absent_hashed("raw/t/h.json", data.clone(), &sha)
        .await
        .unwrap();
    assert_eq!(again.outcome, PutOutcome::AlreadyPresent);
    let other = Bytes::from_static(b"{\"id\":8}\n");
    let err = s
        .put_if_absent_hashed("raw/t/h.json", other.clone(), &sha256_hex(&other))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImmutableConflict { .. }), "{err:?}");
}

async fn listing(s: &dyn ObjectStore) {
    for k in [
        "lst/a/1.json",
        "lst/a/2.json",
        "lst/ab/3.json",
        "lst/b/4.json",
    ] {
        s.put(k, Bytes::from(k.as_bytes().to_vec())).await.unwrap();
    }
    let keys =
        |v: Vec<ecom_pipeline::store::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list("lst/a/").await.unwrap()),
        ["lst/a/1.json", "lst/a/2.json"]
    );
    // A prefix is a string prefix, as on S3: it may end mid-segment.
    assert_eq!(
        keys(s.list("lst/a").await.unwrap()),
        ["lst/a/1.json", "lst/a/2.json", "lst/ab/3.json"]
    );
    assert_eq!(s.list("lst/").await.unwrap().len(), 4);
    assert!(s.list("nothing/").await.unwrap().is_empty());
    let all = s.list("lst/b/").await.unwrap();
    assert_eq!(all[0].sha256, sha256_hex(b"lst/b/4.json"));
    assert_eq!(all[0].size, 12);
    // The listing alone says the same of every object, checksums aside.
    let metas = s.list("lst/").await.unwrap();
    let stats = s.list_stat("lst/").await.unwrap();
    assert_eq!(stats.len(), metas.len());
    for (st, m) in stats.iter().zip(&metas) {
        assert_eq!((&st.key, st.size), (&m.key, m.size));
        let (a, b) = (st.last_modified.unwrap(), m.last_modified.unwrap());
        assert!((a - b).num_seconds().abs() <= 1, "{a} vs {b}");
    }
    assert!(s.list_stat("nothing/").await.unwrap().is_empty());
}

async fn deletion(s: &dyn ObjectStore) {
    s.put("del/x.json", Bytes::from_static(b"x")).await.unwrap();
    s.delete("del/x.json").await.unwrap();
    assert_eq!(s.head("del/x.json").await.unwrap(), None);
    assert!(s.list("del/").await.unwrap().is_empty());
    s.delete("del/x.json").await.unwrap();
}

async fn bad_keys(s: &dyn ObjectStore) {
    for k in ["", "/abs", "a/../b", "a//b", ".meta/x", "sp ace"] {
        assert!(
            matches!(s.put(k, Bytes::new()).await, Err(Error::InvalidKey { .. })),
            "{k:?} accepted"
        );
        assert!(
            matches!(s.get(k).await, Err(Error::InvalidKey { .. })),
            "{k:?}"
        );
    }
}

async fn empty_and_large(s: &dyn ObjectStore) {
    let m = s.put("big/empty", Bytes::new()).await.unwrap();
    assert_eq!(m.size, 0);
    assert_eq!(s.get("big/empty").await.unwrap().len(), 0);
    // Above the S3 multipart threshold the tests configure (5 MiB): three parts.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let m = s
        .put("big/blob.bin", Bytes::from(big.clone()))
        .await
        .unwrap();
    assert_eq!(m.sha256, sha256_hex(&big));
    assert_eq!(
        s.head("big/blob.bin").await.unwrap().unwrap().sha256,
        sha256_hex(&big)
    );
    assert_eq!(s.get("big/blob.bin").await.unwrap().as_ref(), &big[..]);
}

async fn racing_creators(s: Arc<dyn ObjectStore>) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.put_if_absent("raw/race/r.json", Bytes::from_static(b"same"))
                .await
        }));
    }
    let mut written = 0;
    for t in tasks {
        match t.await.unwrap().unwrap().outcome {
            PutOutcome::Written => written += 1,
            PutOutcome::AlreadyPresent => {}
        }
    }
    assert!(written >= 1, "someone must have written");
    assert_eq!(
        s.get("raw/race/r.json").await.unwrap(),
        Bytes::from_static(b"same")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_put_if_absent_has_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.put_if_absent("raw/one/w.json", Bytes::from_static(b"w"))
                .await
        }));
    }
    let mut written = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().outcome == PutOutcome::Written {
            written += 1;
        }
    }
    assert_eq!(written, 1);
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A bucket of this run's own: moto (in us-east-1) accepts creating a bucket that exists, so a
/// fixed name met the objects of an earlier run on the same server.
async fn fresh_bucket(client: &aws_sdk_s3::Client, name: &str) -> String {
    let name = format!("{name}-{}", std::process::id());
    client.create_bucket().bucket(&name).send().await.unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_conforms_on_moto() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let client = s3_client(&endpoint);
    let bucket = fresh_bucket(&client, "conformance-root").await;
    let store = S3Store::from_client(
        client,
        bucket,
        String::new(),
        5 * 1024 * 1024,
        5 * 1024 * 1024,
    );
    suite(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_with_prefix_conforms_on_moto() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let client = s3_client(&endpoint);
    let bucket = fresh_bucket(&client, "conformance-prefixed").await;
    let store = S3Store::from_client(
        client.clone(),
        bucket.clone(),
        "team/ecomops".into(),
        5 * 1024 * 1024,
        5 * 1024 * 1024,
    );
    suite(Arc::new(store)).await;
    // Everything stayed under the prefix.
    let out = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    for o in out.contents() {
        assert!(
            o.key().unwrap_or_default().starts_with("team/ecomops/"),
            "{:?}",
            o.key()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_list_paginates_on_moto() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let client = s3_client(&endpoint);
    let bucket = fresh_bucket(&client, "conformance-pages").await;
    let store = S3Store::from_client(
        client,
        bucket,
        String::new(),
        5 * 1024 * 1024,
        5 * 1024 * 1024,
    );
    // ListObjectsV2 returns at most 1000 keys a page.
    let mut tasks = Vec::new();
    let store = Arc::new(store);
    for i in 0..1100u32 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.put(&format!("p/{i:05}.json"), Bytes::from(i.to_string()))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let listed = store.list("p/").await.unwrap();
    assert_eq!(listed.len(), 1100);
    assert_eq!(listed[0].key, "p/00000.json");
    assert_eq!(listed[1099].key, "p/01099.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_get_detects_bytes_that_do_not_match_their_hash() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    let client = s3_client(&endpoint);
    let bucket = fresh_bucket(&client, "conformance-corrupt").await;
    // An object whose recorded hash is not of its bytes: what a partial write looks like.
    client
        .put_object()
        .bucket(&bucket)
        .key("raw/x.json")
        .metadata("sha256", sha256_hex(b"the original"))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"the origi",
        ))
        .send()
        .await
        .unwrap();
    let store = S3Store::from_client(client, bucket, String::new(), 5 << 20, 5 << 20);
    match store.get("raw/x.json").await {
        Err(Error::ChecksumMismatch { key, expected, .. }) => {
            assert_eq!(key, "raw/x.json");
            assert_eq!(expected, sha256_hex(b"the original"));
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
}
