//! The S3 object store (aws-sdk-s3). PutObject carries a SHA-256 checksum that S3 verifies on
//! receipt; objects at or above the multipart threshold go up in parts, each with its own
//! checksum. The whole-object SHA-256 (hex) is kept in the `sha256` user metadata, because S3's
//! own checksum of a multipart object is a checksum of part checksums.

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::same_or_conflict;
use super::{
    sha256_hex, validate_key, validate_prefix, ObjectMeta, ObjectStat, ObjectStore, PutOutcome,
    PutResult,
};
use crate::config::S3Config;
use crate::error::{Error, Result};

const SHA_META: &str = "sha256";

/// A bucket (and optional key prefix) as an object store.
/// An S3 client for the section (also used for bucket lifecycle rules).
pub async fn client(cfg: &S3Config) -> aws_sdk_s3::Client {
    let sdk = crate::aws::sdk_config(cfg.region.as_deref(), cfg.endpoint_url.as_deref()).await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(cfg.force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Empty, or ends with '/'.
    prefix: String,
    multipart_threshold: u64,
    part_size: u64,
}

impl S3Store {
    /// Connect with the standard AWS credential chain; region and endpoint from the config.
    pub async fn connect(cfg: &S3Config) -> Result<S3Store> {
        Ok(S3Store::from_client(
            client(cfg).await,
            cfg.bucket.clone(),
            cfg.prefix.clone(),
            cfg.multipart_threshold_bytes,
            cfg.multipart_part_size_bytes,
        ))
    }

    pub fn from_client(
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
        multipart_threshold: u64,
        part_size: u64,
    ) -> S3Store {
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        };
        // We check every GET against the whole-object SHA-256 in our metadata; the SDK's own
        // response validation misreads composite (multipart) checksums on some S3 emulators.
        let conf = client
            .config()
            .to_builder()
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .build();
        S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket,
            prefix,
            multipart_threshold: multipart_threshold.max(1),
            part_size: part_size.max(5 * 1024 * 1024),
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn put_checked(&self, key: &str, data: Bytes, sha: &str, if_absent: bool) -> Result<()> {
        let full = self.full(key);
        if data.len() as u64 >= self.multipart_threshold {
            // No portable If-None-Match on multipart completion across S3 emulators: callers
            // that need put-if-absent have already checked with HEAD.
            return self.put_multipart(&full, data, sha).await;
        }
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            // The hash the caller computed, not a second pass over the bytes: S3 checks the
            // body against it, so a wrong one is refused there too.
            .checksum_sha256(b64_of_hex(sha)?)
            .metadata(SHA_META, sha)
            .body(ByteStream::from(data));
        if if_absent {
            req = req.if_none_match("*");
        }
        req.send().await.map_err(|e| {
            if status_of(&e) == Some(412) || status_of(&e) == Some(409) {
                Error::ImmutableConflict {
                    key: key.to_string(),
                    existing: String::new(),
                    new: sha.to_string(),
                }
            } else {
                aws_err("PutObject", &e)
            }
        })?;
        Ok(())
    }

    async fn put_multipart(&self, full: &str, data: Bytes, sha: &str) -> Result<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata(SHA_META, sha)
            .send()
            .await
            .map_err(|e| aws_err("CreateMultipartUpload", &e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = self.upload_parts(full, &upload_id, data).await;
        if result.is_err() {
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = abort {
                tracing::warn!(key = full, error = %DisplayErrorContext(&e), "could not abort multipart upload");
            }
        }
        result
    }

    async fn upload_parts(&self, full: &str, upload_id: &str, data: Bytes) -> Result<()> {
        let mut parts = Vec::new();
        for (i, start) in (0..data.len()).step_by(self.part_size as usize).enumerate() {
            let end = (start + self.part_size as usize).min(data.len());
            let chunk = data.slice(start..end);
            let number = i as i32 + 1;
            let checksum = b64_sha256(&chunk);
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(upload_id)
                .part_number(number)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&checksum)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| aws_err("UploadPart", &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .checksum_sha256(out.checksum_sha256().unwrap_or(&checksum))
                    .build(),
            );
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_err("CompleteMultipartUpload", &e))?;
        Ok(())
    }

    async fn head_inner(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key)?;
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(aws_err("HeadObject", &e)),
        };
        let sha = match out.metadata().and_then(|m| m.get(SHA_META)) {
            Some(s) => s.clone(),
            // Written by someone else: hash the bytes.
            None => sha256_hex(&self.get_inner(key).await?),
        };
        Ok(Some(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            sha256: sha,
            last_modified: out.last_modified().and_then(to_chrono),
        }))
    }

    async fn get_inner(&self, key: &str) -> Result<Bytes> {
        validate_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| {
                if status_of(&e) == Some(404) {
                    Error::NotFound(key.to_string())
                } else {
                    aws_err("GetObject", &e)
                }
            })?;
        let expected = out.metadata().and_then(|m| m.get(SHA_META)).cloned();
        let body = out.body.collect().await.map_err(|e| Error::Aws {
            service: "s3",
            operation: "GetObject",
            message: format!("reading body: {}", DisplayErrorContext(&e)),
        })?;
        let bytes = body.into_bytes();
        if let Some(expected) = expected {
            let actual = sha256_hex(&bytes);
            if actual != expected {
                return Err(Error::ChecksumMismatch {
                    key: key.to_string(),
                    expected,
                    actual,
                });
            }
        }
        Ok(bytes)
    }
}

impl ObjectStore for S3Store {
    fn backend(&self) -> &'static str {
        "s3"
    }

    fn put<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<ObjectMeta>> {
        Box::pin(async move {
            validate_key(key)?;
            let sha = sha256_hex(&data);
            let size = data.len() as u64;
            self.put_checked(key, data, &sha, false).await?;
            Ok(ObjectMeta {
                key: key.to_string(),
                size,
                sha256: sha,
                last_modified: Some(Utc::now()),
            })
        })
    }

    fn put_if_absent<'a>(&'a self, key: &'a str, data: Bytes) -> BoxFuture<'a, Result<PutResult>> {
        Box::pin(async move {
            let sha = sha256_hex(&data);
            self.put_new(key, data, sha).await
        })
    }

    fn put_if_absent_hashed<'a>(
        &'a self,
        key: &'a str,
        data: Bytes,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<PutResult>> {
        debug_assert_eq!(sha256, sha256_hex(&data), "a wrong hash for {key}");
        Box::pin(self.put_new(key, data, sha256.to_string()))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes>> {
        Box::pin(self.get_inner(key))
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>>> {
        Box::pin(self.head_inner(key))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>>> {
        Box::pin(async move {
            let stats = self.list_stat(prefix).await?;
            // The hash is in user metadata, which LIST does not return: one HEAD per object.
            let mut out = Vec::with_capacity(stats.len());
            for s in stats {
                if let Some(m) = self.head_inner(&s.key).await? {
                    out.push(m);
                }
            }
            Ok(out)
        })
    }

    fn list_stat<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectStat>>> {
        Box::pin(async move {
            validate_prefix(prefix)?;
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full(prefix))
                .into_paginator()
                .send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| aws_err("ListObjectsV2", &e))?;
                for obj in page.contents() {
                    if let Some(k) = obj.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                        out.push(ObjectStat {
                            key: k.to_string(),
                            size: obj.size().unwrap_or(0).max(0) as u64,
                            last_modified: obj
                                .last_modified()
                                .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            validate_key(key)?;
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .send()
                .await
                .map_err(|e| aws_err("DeleteObject", &e))?;
            Ok(())
        })
    }
}

fn status_of<E, R>(e: &SdkError<E, R>) -> Option<u16>
where
    R: HasStatus,
{
    e.raw_response().map(HasStatus::status_code)
}

/// The HTTP status of a raw SDK response.
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn aws_err<E, R>(operation: &'static str, e: &SdkError<E, R>) -> Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Error::Aws {
        service: "s3",
        operation,
        message: DisplayErrorContext(e).to_string(),
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

/// Base64 of the raw SHA-256, as S3's x-amz-checksum-sha256 wants it.
fn b64_sha256(data: &[u8]) -> String {
    base64(&Sha256::digest(data))
}

/// `b64_sha256` from the hash's hex form (`sha256_hex`).
fn b64_of_hex(sha: &str) -> Result<String> {
    let raw = hex::decode(sha)
        .map_err(|e| Error::Invalid(format!("not a SHA-256 in hex ({e}): {sha}")))?;
    Ok(base64(&raw))
}

/// Standard base64 with padding (no crate in the tree exposes an encoder).
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl S3Store {
    /// `put_if_absent` of `data`, whose hash is `sha`.
    async fn put_new(&self, key: &str, data: Bytes, sha: String) -> Result<PutResult> {
        validate_key(key)?;
        // HEAD first: some S3-compatible servers ignore If-None-Match.
        if let Some(existing) = self.head_inner(key).await? {
            return same_or_conflict(key, existing, sha);
        }
        let size = data.len() as u64;
        match self.put_checked(key, data, &sha, true).await {
            Ok(()) => Ok(PutResult {
                meta: ObjectMeta {
                    key: key.to_string(),
                    size,
                    sha256: sha,
                    last_modified: Some(Utc::now()),
                },
                outcome: PutOutcome::Written,
            }),
            // Lost a race with another writer: compare with what won.
            Err(Error::ImmutableConflict { .. }) => match self.head_inner(key).await? {
                Some(existing) => same_or_conflict(key, existing, sha),
                None => Err(Error::NotFound(key.to_string())),
            },
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_from_hex_is_the_checksum_of_the_bytes() {
        let data = b"{\"id\":1}\n";
        assert_eq!(
            b64_of_hex(&crate::store::sha256_hex(data)).unwrap(),
            b64_sha256(data)
        );
        assert!(b64_of_hex("zz").is_err());
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
