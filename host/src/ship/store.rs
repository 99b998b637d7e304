//! The central store: which one (`s3://` or `file://`), how to reach it, and the one way
//! objects are written: create-only, then read back and compared.
//!
//! A PUT is conditional (`If-None-Match: *`, object_store's `PutMode::Create`), so no retry,
//! restart or restored gateway can replace an object. "Already exists" is not an error but a
//! reason to look: the object is read back and its SHA-256 compared with ours — equal is a
//! successful duplicate (the store wrote it, the answer was lost), different is an alarm and
//! the local copy stays. Every object is read back after it is written too, because a store
//! need not check upload checksums (the local test server does not); on S3 the SHA-256 also
//! travels as a checksum header (which S3 checks) and as object metadata
//! (`x-amz-meta-sha256`, compared on read-back).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientOptions, GetOptions, ObjectMeta, ObjectStore, PutMode, PutOptions,
    PutPayload, RetryConfig,
};
use tokio::sync::watch;

use super::retry::{classify, Backoff, FailureKind};
use super::status::ShipStatus;
use super::{sha256, Sha256};
use crate::config::ShipConfig;

/// The metadata key holding the object's SHA-256 (hex) on S3.
pub const SHA256_METADATA_KEY: &str = "sha256";
/// The metadata key naming what the object is (`segment`, `snapshot`, `manifest`).
pub const KIND_METADATA_KEY: &str = "gridlog-kind";

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `s3://BUCKET/PREFIX`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (may be empty).
        prefix: String,
    },
    /// `file:///PATH`.
    File {
        /// The directory.
        path: std::path::PathBuf,
    },
}

impl StoreUrl {
    /// Parses `s3://bucket/prefix` or `file:///absolute/path`.
    pub fn parse(url: &str) -> Result<StoreUrl, StoreUrlError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreUrlError::NoBucket(url.to_string()));
            }
            Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            })
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(StoreUrlError::RelativePath(url.to_string()));
            }
            Ok(StoreUrl::File { path: path.into() })
        } else {
            Err(StoreUrlError::Scheme(url.to_string()))
        }
    }

    /// The key prefix inside the store.
    pub fn prefix(&self) -> &str {
        match self {
            StoreUrl::S3 { prefix, .. } => prefix,
            StoreUrl::File { .. } => "",
        }
    }
}

/// Why a store URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// `s3://` without a bucket.
    #[error("{0:?} names no bucket (s3://BUCKET/PREFIX)")]
    NoBucket(String),
    /// `file://` with a relative path.
    #[error("{0:?} is not an absolute file URL (file:///PATH)")]
    RelativePath(String),
    /// Neither `s3://` nor `file://`.
    #[error("{0:?} is not a store URL: use s3://BUCKET/PREFIX or file:///PATH")]
    Scheme(String),
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::File { path } => write!(f, "file://{}", path.display()),
        }
    }
}

/// Why a store cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is wrong.
    #[error("store configuration: {0}")]
    Url(#[from] StoreUrlError),
    /// A file store's directory cannot be created.
    #[error("store configuration: cannot create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store answered with an error.
    #[error("store error: {0}")]
    Store(#[from] object_store::Error),
    /// An object is larger than it may be (a manifest over `MANIFEST_BYTES_MAX`).
    #[error("store error: {0}")]
    TooLarge(#[from] ObjectTooLarge),
    /// Stopped while waiting to retry.
    #[error("stopped")]
    Stopped,
}

/// An object larger than its manifest (or its kind) allows: refused before it fills memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object {key} is {bytes} bytes or more; at most {max_bytes} expected")]
pub struct ObjectTooLarge {
    /// The object.
    pub key: String,
    /// Its size as listed, or what had arrived when it passed the bound.
    pub bytes: u64,
    /// The bound.
    pub max_bytes: u64,
}

impl From<GetError> for StoreError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Store(e) => StoreError::Store(e),
            GetError::TooLarge(e) => StoreError::TooLarge(e),
        }
    }
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// The object is larger than it may be.
    #[error(transparent)]
    TooLarge(#[from] ObjectTooLarge),
}

/// How one verified upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// We wrote it and read it back equal.
    Written,
    /// It was there already, equal.
    Duplicate,
    /// It was there already with other bytes of the same content (for a segment: another
    /// archive of the same segment, such as one shipped when sealed and the archive file
    /// made later, which differ in their header's creation time). A manifest must name the
    /// store's bytes: their SHA-256 and size.
    Equivalent {
        /// SHA-256 of the stored bytes.
        sha256: Sha256,
        /// Their size.
        bytes: u64,
    },
    /// It is there and differs: an alarm, nothing is recorded as shipped.
    Conflict(String),
}

/// One object to upload.
pub struct Upload<'a> {
    /// Its key.
    pub key: Path,
    /// Its bytes.
    pub bytes: Bytes,
    /// Their SHA-256.
    pub sha256: Sha256,
    /// `segment`, `snapshot`, `manifest` (metadata and logs).
    pub kind: &'static str,
    /// The reconciliation listing saw the key: read it back before (instead of) a PUT.
    pub listed: bool,
    /// Accepts different bytes in the store as the same content (a segment archived twice
    /// has a different archive header but the same segment).
    pub same_content: &'a (dyn Fn(&[u8]) -> bool + Sync),
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("key", &self.key)
            .field("bytes", &self.bytes.len())
            .field("kind", &self.kind)
            .field("listed", &self.listed)
            .finish()
    }
}

/// The average-bandwidth cap: each upload reserves its bytes' share of time before it
/// starts. A single object still goes at link speed; the average over objects stays under
/// the cap.
#[derive(Debug)]
struct Throttle {
    bytes_per_s: u64,
    next_free: tokio::sync::Mutex<Instant>,
}

impl Throttle {
    async fn reserve(&self, bytes: usize) {
        if self.bytes_per_s == 0 {
            return;
        }
        let start = {
            let mut next = self.next_free.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_s as f64);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

/// A store and how to talk to it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Whether the store keeps object metadata (S3 does, a directory does not).
    attributes: bool,
    url: StoreUrl,
    retry_min: Duration,
    retry_max: Duration,
    throttle: Arc<Throttle>,
}

impl Store {
    /// Opens the store `config.store` names (with `config`'s endpoint, credentials, limits).
    pub fn open(config: &ShipConfig) -> Result<Store, StoreError> {
        Store::open_url(&config.store, config)
    }

    /// Opens `url` with `config`'s other settings.
    pub fn open_url(url: &str, config: &ShipConfig) -> Result<Store, StoreError> {
        let parsed = StoreUrl::parse(url)?;
        let (inner, attributes): (Arc<dyn ObjectStore>, bool) = match &parsed {
            StoreUrl::S3 { bucket, .. } => {
                let client = ClientOptions::new()
                    .with_timeout(Duration::from_millis(config.request_timeout_ms))
                    .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                    .with_allow_http(config.allow_http);
                let retry = RetryConfig {
                    max_retries: 0,
                    ..RetryConfig::default()
                };
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&config.region)
                    .with_client_options(client)
                    .with_retry(retry)
                    .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                    .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                    .with_allow_http(config.allow_http);
                if !config.endpoint.is_empty() {
                    builder = builder
                        .with_endpoint(&config.endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                let from_env = |name: &str| std::env::var(name).unwrap_or_default();
                let key_id = non_empty(&config.access_key_id, || from_env("AWS_ACCESS_KEY_ID"));
                let secret = non_empty(&config.secret_access_key, || {
                    from_env("AWS_SECRET_ACCESS_KEY")
                });
                if !key_id.is_empty() {
                    builder = builder.with_access_key_id(key_id);
                }
                if !secret.is_empty() {
                    builder = builder.with_secret_access_key(secret);
                }
                let token = from_env("AWS_SESSION_TOKEN");
                if !token.is_empty() {
                    builder = builder.with_token(token);
                }
                (Arc::new(builder.build()?), true)
            }
            StoreUrl::File { path } => {
                std::fs::create_dir_all(path).map_err(|source| StoreError::CreateDir {
                    path: path.clone(),
                    source,
                })?;
                // A confirmed upload must be durable, as S3's is: each file and its
                // directory entries are synced before the write returns (off by default).
                let local =
                    object_store::local::LocalFileSystem::new_with_prefix(path)?.with_fsync(true);
                (Arc::new(local), false)
            }
        };
        Ok(Store {
            inner,
            attributes,
            url: parsed,
            retry_min: Duration::from_millis(config.retry_min_ms),
            retry_max: Duration::from_millis(config.retry_max_ms),
            throttle: Arc::new(Throttle {
                bytes_per_s: config.bandwidth_bytes_per_s,
                next_free: tokio::sync::Mutex::new(Instant::now()),
            }),
        })
    }

    /// The key prefix inside the store.
    pub fn prefix(&self) -> &str {
        self.url.prefix()
    }

    /// The store's URL.
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// A fresh backoff with the configured bounds.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.retry_min, self.retry_max)
    }

    /// Reads a whole object of at most `max_bytes` (what its manifest says, or the bound of
    /// its kind); `None` if there is none. What comes from the store is untrusted: a larger
    /// object is refused on its size before its body is read, and a body that runs past its
    /// size is cut off at `max_bytes`, so memory never holds more ([`ObjectTooLarge`]).
    pub async fn get(&self, key: &Path, max_bytes: u64) -> Result<Option<Bytes>, GetError> {
        Ok(self
            .get_with_attributes(key, max_bytes)
            .await?
            .map(|(b, _)| b))
    }

    async fn get_with_attributes(
        &self,
        key: &Path,
        max_bytes: u64,
    ) -> Result<Option<(Bytes, Attributes)>, GetError> {
        let result = match self.inner.get_opts(key, GetOptions::default()).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let too_large = |bytes: u64| ObjectTooLarge {
            key: key.to_string(),
            bytes,
            max_bytes,
        };
        if result.meta.size > max_bytes {
            return Err(too_large(result.meta.size).into());
        }
        let attributes = result.attributes.clone();
        // The size said is at most max_bytes; reserve no more than that.
        let mut body = Vec::with_capacity(usize::try_from(result.meta.size).unwrap_or(0));
        let mut stream = result.into_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            let total = body.len() as u64 + piece.len() as u64;
            if total > max_bytes {
                return Err(too_large(total).into());
            }
            body.extend_from_slice(&piece);
        }
        Ok(Some((Bytes::from(body), attributes)))
    }

    /// Deletes an object (absent is fine).
    pub async fn delete(&self, key: &Path) -> Result<(), object_store::Error> {
        match object_store::ObjectStoreExt::delete(&self.inner, key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object under `prefix` (one listing, paged by the store).
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, object_store::Error> {
        let mut out = Vec::new();
        let mut stream = self.inner.list(Some(prefix));
        while let Some(meta) = stream.next().await {
            out.push(meta?);
        }
        Ok(out)
    }

    /// The folders directly under `prefix`.
    pub async fn list_folders(&self, prefix: &Path) -> Result<Vec<Path>, object_store::Error> {
        Ok(self
            .inner
            .list_with_delimiter(Some(prefix))
            .await?
            .common_prefixes)
    }

    /// Uploads create-only and verifies by reading back, retrying transient failures with
    /// backoff until it succeeds, finds a conflict, or `stop` turns true.
    pub async fn put_verified(
        &self,
        upload: Upload<'_>,
        status: &ShipStatus,
        stop: &watch::Receiver<bool>,
    ) -> Result<Stored, StoreError> {
        let mut backoff = self.backoff();
        let mut need_put = !upload.listed;
        let mut written = false;
        let sha_hex = upload.sha256.to_hex();
        let mut attributes = Attributes::new();
        if self.attributes {
            attributes.insert(
                Attribute::Metadata(SHA256_METADATA_KEY.into()),
                sha_hex.clone().into(),
            );
            attributes.insert(
                Attribute::Metadata(KIND_METADATA_KEY.into()),
                upload.kind.into(),
            );
        }
        loop {
            if *stop.borrow() {
                return Err(StoreError::Stopped);
            }
            if need_put {
                self.throttle.reserve(upload.bytes.len()).await;
                status.requests.fetch_add(1, Ordering::Relaxed);
                status
                    .bytes_sent
                    .fetch_add(upload.bytes.len() as u64, Ordering::Relaxed);
                let options = PutOptions {
                    mode: PutMode::Create,
                    attributes: attributes.clone(),
                    ..PutOptions::default()
                };
                let payload = PutPayload::from(upload.bytes.clone());
                match self.inner.put_opts(&upload.key, payload, options).await {
                    Ok(_) => written = true,
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. },
                    ) => {
                        tracing::debug!(key = %upload.key, "already in the store: verifying");
                    }
                    Err(e) => {
                        self.failed(&upload.key, "PUT", &e, &mut backoff, status, stop)
                            .await?;
                        continue;
                    }
                }
                need_put = false;
            }
            status.requests.fetch_add(1, Ordering::Relaxed);
            match self
                .get_with_attributes(&upload.key, read_back_bytes_max(&upload))
                .await
            {
                Ok(Some((bytes, attrs))) => {
                    status
                        .bytes_read
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    let meta_sha = attrs
                        .get(&Attribute::Metadata(SHA256_METADATA_KEY.into()))
                        .map(|v| v.as_ref().to_string());
                    return Ok(judge_read_back(&upload, &bytes, meta_sha, written));
                }
                Ok(None) => {
                    // Listed (or written) but not there: write it (again).
                    let e = object_store::Error::NotFound {
                        path: upload.key.to_string(),
                        source: "missing on read-back".into(),
                    };
                    need_put = true;
                    self.failed(&upload.key, "GET", &e, &mut backoff, status, stop)
                        .await?;
                }
                Err(GetError::TooLarge(e)) => {
                    return Ok(Stored::Conflict(format!(
                        "{e}: it already exists with other content"
                    )))
                }
                Err(GetError::Store(e)) => {
                    self.failed(&upload.key, "GET", &e, &mut backoff, status, stop)
                        .await?;
                }
            }
        }
    }
}

/// The most a read-back reads: an equivalent object (the same segment archived again, with
/// other compression) is about our size; one more than twice as large cannot be ours.
fn read_back_bytes_max(upload: &Upload<'_>) -> u64 {
    upload.bytes.len() as u64 * 2 + 1024 * 1024
}

/// What a read-back says about an upload (a pure decision): our bytes (with metadata that
/// agrees, if the store keeps metadata) are `Written` by us or a `Duplicate` already there;
/// other bytes of the same content are `Equivalent`; anything else is a `Conflict`.
fn judge_read_back(
    upload: &Upload<'_>,
    stored: &[u8],
    meta_sha: Option<String>,
    written: bool,
) -> Stored {
    let sha_hex = upload.sha256.to_hex();
    let stored_sha = sha256(stored);
    if stored_sha == upload.sha256 {
        if let Some(m) = meta_sha.filter(|m| *m != sha_hex) {
            return Stored::Conflict(format!(
                "{} holds our bytes but its metadata says sha256 {m}",
                upload.key
            ));
        }
        return if written {
            Stored::Written
        } else {
            Stored::Duplicate
        };
    }
    if (upload.same_content)(stored) {
        return Stored::Equivalent {
            sha256: stored_sha,
            bytes: stored.len() as u64,
        };
    }
    let why = if written {
        "the store holds different bytes than were just uploaded (corrupted on the way or at rest)"
    } else {
        "it already exists with different content"
    };
    Stored::Conflict(format!(
        "{} {}: {why}: the store has {} bytes with sha256 {}, ours are {} bytes with sha256 {sha_hex}",
        upload.kind,
        upload.key,
        stored.len(),
        stored_sha,
        upload.bytes.len(),
    ))
}

impl Store {
    async fn failed(
        &self,
        key: &Path,
        what: &str,
        error: &object_store::Error,
        backoff: &mut Backoff,
        status: &ShipStatus,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        status.retries.fetch_add(1, Ordering::Relaxed);
        let kind = classify(error);
        let delay = match kind {
            FailureKind::Transient => backoff.next_delay(),
            FailureKind::Persistent => {
                backoff.saturate();
                backoff.next_delay()
            }
        };
        let message = format!("{what} {key}: {error}");
        match kind {
            FailureKind::Transient => {
                tracing::warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "store request failed; retrying")
            }
            FailureKind::Persistent => {
                tracing::error!(error = %message, retry_in_ms = delay.as_millis() as u64, "store request refused; retrying")
            }
        }
        status.error(message);
        status.set_phase("retrying");
        if sleep_or_stop(delay, stop).await {
            return Err(StoreError::Stopped);
        }
        status.set_phase("shipping");
        Ok(())
    }
}

/// Sleeps for `delay`; true if `stop` turned true meanwhile.
pub async fn sleep_or_stop(delay: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return true;
    }
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    tokio::select! {
        () = &mut sleep => {}
        changed = async { stop.wait_for(|s| *s).await.is_ok() } => {
            if changed {
                return true;
            }
            // The sender is gone: nobody can ask to stop any more.
            sleep.await;
        }
    }
    let stopped = *stop.borrow();
    stopped
}

fn non_empty(value: &str, fallback: impl FnOnce() -> String) -> String {
    if value.is_empty() {
        fallback()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_back_is_ours_a_duplicate_equivalent_or_a_conflict() {
        let ours = Bytes::from_static(b"our bytes");
        let equivalent = |stored: &[u8]| stored == b"same content, other bytes";
        let upload = Upload {
            key: Path::from("a/b"),
            bytes: ours.clone(),
            sha256: sha256(&ours),
            kind: "segment",
            listed: false,
            same_content: &equivalent,
        };
        assert_eq!(judge_read_back(&upload, &ours, None, true), Stored::Written);
        assert_eq!(
            judge_read_back(&upload, &ours, None, false),
            Stored::Duplicate
        );
        let meta = Some(upload.sha256.to_hex());
        assert_eq!(judge_read_back(&upload, &ours, meta, true), Stored::Written);
        let wrong_meta = Some(sha256(b"other").to_hex());
        assert!(matches!(
            judge_read_back(&upload, &ours, wrong_meta, false),
            Stored::Conflict(m) if m.contains("metadata")
        ));
        let other = b"same content, other bytes";
        assert_eq!(
            judge_read_back(&upload, other, None, false),
            Stored::Equivalent {
                sha256: sha256(other),
                bytes: other.len() as u64
            }
        );
        assert!(matches!(
            judge_read_back(&upload, b"garbage", None, true),
            Stored::Conflict(m) if m.contains("just uploaded")
        ));
        assert!(matches!(
            judge_read_back(&upload, b"garbage", None, false),
            Stored::Conflict(m) if m.contains("already exists")
        ));
    }

    #[test]
    fn store_urls() {
        assert_eq!(
            StoreUrl::parse("s3://b/p/q/").unwrap(),
            StoreUrl::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(StoreUrl::parse("s3://b").unwrap().prefix(), "");
        assert!(StoreUrl::parse("s3:///p").is_err());
        assert!(StoreUrl::parse("file://relative").is_err());
        assert!(StoreUrl::parse("http://x").is_err());
        assert_eq!(
            StoreUrl::parse("file:///var/ship").unwrap(),
            StoreUrl::File {
                path: "/var/ship".into()
            }
        );
    }
}
