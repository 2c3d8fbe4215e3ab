//! The lake: where inputs are read from and outputs written to.
//!
//! A [`Location`] is a URL (`file://` or `s3://`) or a local path; [`Stores`]
//! turns locations into `object_store` clients (one per bucket, built once) and
//! offers the handful of operations the job needs: list a day's partitions, read
//! an object whole, write and delete objects. The day scan itself (the only
//! reader of request logs) lives in [`scan`]; the mapping from logged columns to
//! the normalized request schema in [`schema`].
//!
//! This module knows storage and the request-log contract (SPEC 1.1), nothing
//! about prices, metrics or reports. Credentials are held in [`Secret`]s that
//! never print.

pub mod lease;
pub mod scan;
pub mod schema;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::NaiveDate;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use crate::error::{Error, Result};

/// A place in storage: a directory-like prefix or an object.
///
/// Always held as an absolute URL: `file:///abs/path` or `s3://bucket/key`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    url: Url,
}

impl Location {
    /// Parse a URL (`s3://bucket/prefix`, `file:///dir`) or a local path. A
    /// relative path is taken relative to `base` when given (a lake root), else
    /// to the current directory.
    pub fn parse(text: &str, base: Option<&Location>) -> Result<Location, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("is empty".into());
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let shown = redact_userinfo(text);
            let url = Url::parse(text).map_err(|e| format!("`{shown}` is not a valid URL: {e}"))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(format!(
                    "`{shown}`: credentials in a URL are refused (they would reach logs and \
                     process lists); give them as [storage.s3] access_key_id_file and \
                     secret_access_key_file, or the AWS environment"
                ));
            }
            let text = shown.as_str();
            return match scheme {
                "s3" => {
                    if url.host_str().unwrap_or("").is_empty() {
                        Err(format!(
                            "`{text}` names no bucket (expected s3://bucket/prefix)"
                        ))
                    } else {
                        Ok(Location { url })
                    }
                }
                "file" => Ok(Location { url }),
                other => Err(format!(
                    "`{text}`: scheme `{other}` is not supported (use a local path, file:// or s3://)"
                )),
            };
        }
        let path = std::path::Path::new(text);
        if path.is_absolute() {
            return Self::from_local_path(path);
        }
        match base {
            Some(base) => Ok(base.join(text)),
            None => {
                let cwd = std::env::current_dir()
                    .map_err(|e| format!("cannot resolve relative path `{text}`: {e}"))?;
                Self::from_local_path(&cwd.join(path))
            }
        }
    }

    /// A location for an absolute local path.
    pub fn from_local_path(path: &std::path::Path) -> Result<Location, String> {
        let normalized = normalize_path(path);
        Url::from_file_path(&normalized)
            .map(|url| Location { url })
            .map_err(|()| format!("`{}` is not an absolute local path", path.display()))
    }

    /// The child `rel` (slash-separated, relative) of this location.
    pub fn join(&self, rel: &str) -> Location {
        let mut url = self.url.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .expect("file and s3 URLs always have a path");
            segs.pop_if_empty();
            for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
                segs.push(part);
            }
        }
        Location { url }
    }

    /// The enclosing location (`None` at the root).
    pub fn parent(&self) -> Option<Location> {
        let mut url = self.url.clone();
        {
            let mut segs = url.path_segments_mut().ok()?;
            segs.pop_if_empty().pop();
        }
        (url != self.url).then_some(Location { url })
    }

    /// The local filesystem path, for `file://` locations.
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        if self.url.scheme() == "file" {
            self.url.to_file_path().ok()
        } else {
            None
        }
    }

    pub fn is_s3(&self) -> bool {
        self.url.scheme() == "s3"
    }

    /// The object-store path of this location inside its store.
    pub fn path(&self) -> Path {
        // The URL path is percent-encoded; `from_url_path` decodes it.
        let raw = self.url.path().trim_start_matches('/');
        Path::from_url_path(raw).unwrap_or_else(|_| Path::from(raw))
    }

    /// The key that identifies this location's store (scheme and bucket).
    fn store_key(&self) -> String {
        match self.url.scheme() {
            "s3" => format!("s3://{}", self.url.host_str().unwrap_or_default()),
            other => format!("{other}://"),
        }
    }

    /// The location of an object found by listing in this location's store.
    pub fn with_path(&self, path: &Path) -> Location {
        let mut url = self.url.clone();
        url.set_path(&format!("/{}", path.as_ref()));
        Location { url }
    }

    /// The file name (last path segment).
    pub fn file_name(&self) -> &str {
        self.url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("")
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The text of this location relative to `base`, when it lies under it.
    pub fn relative_to(&self, base: &Location) -> Option<String> {
        let base = base.url.as_str().trim_end_matches('/');
        let me = self.url.as_str();
        me.strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| {
                percent_encoding::percent_decode_str(rest)
                    .decode_utf8_lossy()
                    .into_owned()
            })
    }
}

/// Lexically normalize `a/./b/../c` to `a/c` (no filesystem access).
fn normalize_path(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Show local paths as paths; everything else as its URL.
        match self.local_path() {
            Some(p) => write!(f, "{}", p.display()),
            None => f.write_str(self.url.as_str()),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({})", self.url)
    }
}

/// A secret value (credential) that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; call only where it is handed to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A content-digest algorithm, as the manifest writes digests
/// (`<name>:<lower-case hex>`): SHA-256 for tables read whole and outputs,
/// BLAKE3 for a local lake's request objects (manifest version 4 on; the
/// bulk of what a run hashes, at several times SHA-256's speed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgo {
    Sha256,
    Blake3,
}

impl DigestAlgo {
    /// The algorithm a recorded digest names by its prefix, if any.
    pub fn of(digest: &str) -> Option<DigestAlgo> {
        [DigestAlgo::Sha256, DigestAlgo::Blake3]
            .into_iter()
            .find(|a| digest.starts_with(a.prefix()))
    }

    /// `sha256:` or `blake3:`.
    pub fn prefix(self) -> &'static str {
        match self {
            DigestAlgo::Sha256 => "sha256:",
            DigestAlgo::Blake3 => "blake3:",
        }
    }

    /// The manifest field holding a digest of this kind.
    pub fn field(self) -> &'static str {
        match self {
            DigestAlgo::Sha256 => "sha256",
            DigestAlgo::Blake3 => "blake3",
        }
    }
}

/// The content digest (`sha256:<hex>` or `blake3:<hex>`) of a local file,
/// read in 1 MiB blocks on a blocking thread: a local lake's request objects
/// are recorded and replayed by content, since their etags follow inode and
/// mtime.
pub async fn file_digest(path: &std::path::Path, algo: DigestAlgo) -> Result<String> {
    use std::io::Read;
    let owned = path.to_path_buf();
    let io = |source: std::io::Error| Error::Io {
        what: format!("reading {} for its digest", path.display()),
        source,
    };
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned)?;
        let mut block = vec![0u8; 1 << 20];
        let mut read = |update: &mut dyn FnMut(&[u8])| -> std::io::Result<()> {
            loop {
                let n = file.read(&mut block)?;
                if n == 0 {
                    return Ok(());
                }
                update(&block[..n]);
            }
        };
        let hex = match algo {
            DigestAlgo::Sha256 => {
                use sha2::{Digest, Sha256};
                let mut hasher = Sha256::new();
                read(&mut |b| hasher.update(b))?;
                hex::encode(hasher.finalize())
            }
            DigestAlgo::Blake3 => {
                let mut hasher = blake3::Hasher::new();
                read(&mut |b| {
                    hasher.update(b);
                })?;
                hasher.finalize().to_hex().to_string()
            }
        };
        Ok(format!("{}{hex}", algo.prefix()))
    })
    .await
    .map_err(|e| Error::Internal(format!("digest task: {e}")))?
    .map_err(io)
}

/// The digest of a local file by the algorithm `recorded` names (a
/// manifest's digest; one without a known prefix is compared as SHA-256,
/// which then differs, never matches by accident).
pub async fn file_digest_like(path: &std::path::Path, recorded: &str) -> Result<String> {
    file_digest(path, DigestAlgo::of(recorded).unwrap_or(DigestAlgo::Sha256)).await
}

/// Static S3 credentials. Without them the standard AWS environment variables
/// and credential chain (web identity, instance metadata) are used.
#[derive(Clone, Debug)]
pub struct S3Credentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// How to reach S3-compatible storage (AWS S3, MinIO, Ceph, R2, ...).
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
    /// `bucket.host/key` instead of `host/bucket/key` (path style, the default).
    pub virtual_hosted_style: bool,
    pub credentials: Option<S3Credentials>,
    pub retry: RetryPolicy,
}

/// Bounds on every request to object storage. Failed requests (5xx such as
/// 503 SlowDown, 429, connection resets, timeouts) are retried with
/// exponential backoff until `max_retries` or `retry_timeout`; every write
/// replaces an object whole, so repeating one is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub timeout: std::time::Duration,
    pub connect_timeout: std::time::Duration,
    pub max_retries: u32,
    pub retry_timeout: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(5),
            max_retries: 10,
            retry_timeout: std::time::Duration::from_secs(120),
        }
    }
}

/// Metadata of an object read, as recorded in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub location: Location,
    pub size: u64,
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

/// Object-store clients by scheme and bucket, built on first use.
#[derive(Debug)]
pub struct Stores {
    s3: S3Options,
    cache: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    pub fn new(s3: S3Options) -> Self {
        Stores {
            s3,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The store holding `loc`.
    pub fn store(&self, loc: &Location) -> Result<Arc<dyn ObjectStore>> {
        let key = loc.store_key();
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Internal("store cache poisoned".into()))?;
        if let Some(store) = cache.get(&key) {
            return Ok(Arc::clone(store));
        }
        let store: Arc<dyn ObjectStore> = if loc.is_s3() {
            let bucket = loc.url.host_str().unwrap_or_default();
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let o = &self.s3;
            // Client options first: `with_allow_http` below amends them.
            b = b
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_timeout(o.retry.timeout)
                        .with_connect_timeout(o.retry.connect_timeout),
                )
                .with_retry(object_store::RetryConfig {
                    backoff: object_store::BackoffConfig {
                        init_backoff: std::time::Duration::from_millis(50),
                        max_backoff: std::time::Duration::from_secs(10),
                        base: 2.0,
                    },
                    max_retries: o.retry.max_retries as usize,
                    retry_timeout: o.retry.retry_timeout,
                });
            if let Some(endpoint) = &o.endpoint {
                b = b.with_endpoint(endpoint);
            }
            if let Some(region) = &o.region {
                b = b.with_region(region);
            }
            if o.allow_http {
                b = b.with_allow_http(true);
            }
            b = b.with_virtual_hosted_style_request(o.virtual_hosted_style);
            if let Some(c) = &o.credentials {
                b = b
                    .with_access_key_id(c.access_key_id.expose())
                    .with_secret_access_key(c.secret_access_key.expose());
                if let Some(t) = &c.session_token {
                    b = b.with_token(t.expose());
                }
            }
            Arc::new(b.build().map_err(|e| Error::storage(key.clone(), e))?)
        } else {
            Arc::new(LocalFileSystem::new())
        };
        cache.insert(key, Arc::clone(&store));
        Ok(store)
    }

    /// Every object under `prefix` (recursively), sorted by location.
    pub async fn list(&self, prefix: &Location) -> Result<Vec<ObjectInfo>> {
        let store = self.store(prefix)?;
        if let Some(dir) = prefix.local_path() {
            // The local store reports a missing directory as an error; an absent
            // partition is simply empty.
            if !dir.exists() {
                return Ok(Vec::new());
            }
        }
        let path = prefix.path();
        let metas: Vec<_> = self
            .retrying(prefix, || store.list(Some(&path)).try_collect::<Vec<_>>())
            .await
            .map_err(|e| Error::storage(prefix.to_string(), e))?;
        let mut out: Vec<ObjectInfo> = metas
            .into_iter()
            .map(|m| ObjectInfo {
                location: prefix.with_path(&m.location),
                size: m.size,
                e_tag: m.e_tag,
                version: m.version,
            })
            .collect();
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    /// Run an object-store operation, repeating it on transport and server
    /// failures that the client gave up on or does not repeat itself (it
    /// repeats only requests it knows are idempotent: a timed-out DELETE or
    /// COPY is not). Every operation here is idempotent: reads, whole-object
    /// writes, copies and deletes. Bounded by `storage.max_retries` and
    /// `storage.retry_timeout_secs`; S3 only (local I/O errors are final).
    async fn retrying<T, F, Fut>(
        &self,
        loc: &Location,
        mut op: F,
    ) -> std::result::Result<T, object_store::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, object_store::Error>>,
    {
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            match op().await {
                Err(e @ object_store::Error::Generic { .. })
                    if loc.is_s3()
                        && attempt < self.s3.retry.max_retries
                        && started.elapsed() < self.s3.retry.retry_timeout =>
                {
                    attempt += 1;
                    let pause = std::time::Duration::from_millis(50 << attempt.min(7));
                    tracing::debug!(object = %loc, error = %e, attempt, "storage request failed; retrying");
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    /// Read a whole (small) object: price tables, FX tables, configs.
    pub async fn get(&self, loc: &Location) -> Result<(ObjectInfo, Bytes)> {
        let store = self.store(loc)?;
        let path = loc.path();
        let (meta, bytes) = self
            .retrying(loc, || async {
                let res = store.get(&path).await?;
                let meta = res.meta.clone();
                Ok((meta, res.bytes().await?))
            })
            .await
            .map_err(|e| Error::storage(loc.to_string(), e))?;
        Ok((
            ObjectInfo {
                location: loc.clone(),
                size: meta.size,
                e_tag: meta.e_tag,
                version: meta.version,
            },
            bytes,
        ))
    }

    /// Read a whole (small) object, or `None` if there is none.
    pub async fn get_opt(&self, loc: &Location) -> Result<Option<Bytes>> {
        Ok(self.get_opt_info(loc).await?.map(|(_, bytes)| bytes))
    }

    /// The size, etag and version of an object, or `None` if there is none.
    pub async fn head(&self, loc: &Location) -> Result<Option<ObjectInfo>> {
        let store = self.store(loc)?;
        let path = loc.path();
        match self.retrying(loc, || store.head(&path)).await {
            Ok(m) => Ok(Some(ObjectInfo {
                location: loc.clone(),
                size: m.size,
                e_tag: m.e_tag,
                version: m.version,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage(loc.to_string(), e)),
        }
    }

    /// Whether an object of `size` bytes ends with the Parquet magic `PAR1`
    /// (one ranged read of its last four bytes).
    pub async fn has_parquet_magic(&self, loc: &Location, size: u64) -> Result<bool> {
        if size < 12 {
            return Ok(false);
        }
        let store = self.store(loc)?;
        let path = loc.path();
        let tail = self
            .retrying(loc, || store.get_range(&path, size - 4..size))
            .await
            .map_err(|e| Error::storage(loc.to_string(), e))?;
        Ok(tail.as_ref() == b"PAR1")
    }

    /// Read a whole (small) object with its size and etag, or `None` if there is none.
    pub async fn get_opt_info(&self, loc: &Location) -> Result<Option<(ObjectInfo, Bytes)>> {
        match self.get(loc).await {
            Ok(got) => Ok(Some(got)),
            Err(Error::Storage {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, loc: &Location) -> Result<bool> {
        Ok(self.head(loc).await?.is_some())
    }

    /// Write an object whole (replacing any previous version).
    pub async fn put(&self, loc: &Location, bytes: Bytes) -> Result<()> {
        let store = self.store(loc)?;
        let path = loc.path();
        self.retrying(loc, || {
            store.put(&path, PutPayload::from_bytes(bytes.clone()))
        })
        .await
        .map_err(|e| Error::storage(loc.to_string(), e))?;
        Ok(())
    }

    /// Create an object only if there is none (a conditional put: S3
    /// `If-None-Match: *`, a hard link locally). `false`: one exists.
    ///
    /// Repeated on transport failures like every request; a repeat that
    /// finds the object its own lost attempt created answers `false`, and
    /// the caller tells by the content (the lease holds the run id).
    pub async fn put_if_absent(&self, loc: &Location, bytes: Bytes) -> Result<bool> {
        let store = self.store(loc)?;
        let path = loc.path();
        let put = || {
            let opts = object_store::PutOptions {
                mode: object_store::PutMode::Create,
                ..Default::default()
            };
            store.put_opts(&path, PutPayload::from_bytes(bytes.clone()), opts)
        };
        match self.retrying(loc, put).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Error::storage(loc.to_string(), e)),
        }
    }

    /// Copy an object within its store (server-side on S3), replacing `to`.
    pub async fn copy(&self, from: &Location, to: &Location) -> Result<()> {
        let store = self.store(to)?;
        if from.store_key() != to.store_key() {
            let (_, bytes) = self.get(from).await?;
            return self.put(to, bytes).await;
        }
        let (src, dst) = (from.path(), to.path());
        self.retrying(to, || store.copy(&src, &dst))
            .await
            .map_err(|e| Error::storage(format!("{from} -> {to}"), e))
    }

    /// Remove the directory of a local location if it is empty (object
    /// stores have no directories; nothing to do there).
    pub fn remove_empty_dir(&self, loc: &Location) {
        if let Some(dir) = loc.local_path() {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Delete an object; an absent object is not an error.
    pub async fn delete(&self, loc: &Location) -> Result<()> {
        let store = self.store(loc)?;
        let path = loc.path();
        match self.retrying(loc, || store.delete(&path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(loc.to_string(), e)),
        }
    }
}

/// The Hive-style partition directory of a UTC date: `date=YYYY-MM-DD`.
pub fn partition_dir(date: NaiveDate) -> String {
    format!("date={}", date.format("%Y-%m-%d"))
}

/// `text` with the user information of every URL in it (`user:secret@`)
/// replaced by `***@`: for messages and logs that quote a URL.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or white space.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push_str("***@");
                out.push_str(&authority[i + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Why a listed object was not read.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// Hidden, marker or temporary (Hadoop/Spark/Hive conventions).
    Hidden,
    /// Under the invoice prefix, but no invoice source reads it.
    NoSource,
    /// In a request partition, but not Parquet (no `PAR1` magic).
    NotParquet,
}

impl SkipKind {
    /// The kind by its name in the manifest.
    pub fn parse(name: &str) -> Option<SkipKind> {
        match name {
            "hidden" => Some(SkipKind::Hidden),
            "no_source" => Some(SkipKind::NoSource),
            "not_parquet" => Some(SkipKind::NotParquet),
            _ => None,
        }
    }
}

/// Why an object listed under `base` is not data by the Hadoop, Spark and
/// Hive conventions, if it is not: a path segment below `base` (file *or*
/// folder) starting with `_` or `.` (markers such as `_SUCCESS`, the
/// `_temporary/` folders of uncommitted writes, `.crc` checksums,
/// `.spark-staging-*`, in-progress `.part-*` files), or an empty folder
/// marker (`name_$folder$`, a key ending in `/`).
pub fn hidden_reason(loc: &Location, base: &Location) -> Option<&'static str> {
    let rel = loc.relative_to(base)?;
    if rel.ends_with('/') || rel.ends_with("_$folder$") {
        return Some("folder marker");
    }
    let segments: Vec<&str> = rel.split('/').collect();
    let (file, folders) = segments.split_last()?;
    if folders
        .iter()
        .any(|s| s.starts_with('_') || s.starts_with('.'))
    {
        return Some("inside a hidden or temporary folder (name starts with `_` or `.`)");
    }
    if file.starts_with('_') || file.starts_with('.') {
        return Some("hidden or marker file (name starts with `_` or `.`)");
    }
    None
}

/// Whether a listed object is a data file of a partition (`*.parquet`, not a
/// hidden or marker file such as `_SUCCESS` or `.part-0.parquet.crc`).
pub fn is_data_file(loc: &Location) -> bool {
    let name = loc.file_name();
    !name.starts_with('_')
        && !name.starts_with('.')
        && name.to_ascii_lowercase().ends_with(".parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_credentials_are_refused_without_repeating_them() {
        let err = Location::parse("s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/x", None).unwrap_err();
        assert!(
            !err.contains("AKIAEXAMPLE") && !err.contains("wJalrXUtnFEMI"),
            "{err}"
        );
        assert!(
            err.starts_with("`s3://***@bucket/x`: credentials in a URL are refused"),
            "{err}"
        );
        let err = Location::parse("s3://token@bucket/x", None).unwrap_err();
        assert!(!err.contains("token@"), "{err}");
        let err = Location::parse("s3://k:s@/x", None).unwrap_err();
        assert!(!err.contains("k:s"), "{err}");
        assert_eq!(
            redact_userinfo("see s3://a:b@bkt/p and file:///x and https://u@h:9/q?x=@y"),
            "see s3://***@bkt/p and file:///x and https://***@h:9/q?x=@y"
        );
    }

    #[test]
    fn parses_urls_and_paths() {
        let s3 = Location::parse("s3://bucket/a/b", None).unwrap();
        assert_eq!(s3.as_str(), "s3://bucket/a/b");
        assert_eq!(s3.path().as_ref(), "a/b");
        assert_eq!(s3.join("requests").as_str(), "s3://bucket/a/b/requests");
        assert_eq!(
            s3.join("reports/date=2026-01-02/x.csv").path().as_ref(),
            "a/b/reports/date=2026-01-02/x.csv"
        );

        let local = Location::parse("/tmp/lake/./x/..", None).unwrap();
        assert_eq!(local.as_str(), "file:///tmp/lake");
        assert_eq!(
            local.join("prices.csv").local_path().unwrap(),
            std::path::PathBuf::from("/tmp/lake/prices.csv")
        );

        let rel = Location::parse("prices.csv", Some(&s3)).unwrap();
        assert_eq!(rel.as_str(), "s3://bucket/a/b/prices.csv");
        assert!(
            Location::parse("gs://bucket/x", None)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(Location::parse("s3:///x", None).is_err());
        assert!(Location::parse("", None).is_err());
    }

    #[test]
    fn relative_names_and_partitions() {
        let root = Location::parse("/lake", None).unwrap();
        let f = root.join("requests/date=2026-03-01/part-0.parquet");
        assert_eq!(
            f.relative_to(&root).unwrap(),
            "requests/date=2026-03-01/part-0.parquet"
        );
        assert_eq!(f.file_name(), "part-0.parquet");
        assert!(is_data_file(&f));
        assert!(!is_data_file(
            &root.join("requests/date=2026-03-01/_SUCCESS")
        ));
        assert!(!is_data_file(
            &root.join("requests/date=2026-03-01/.x.parquet")
        ));
        assert_eq!(
            partition_dir(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()),
            "date=2026-03-01"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let c = S3Credentials {
            access_key_id: Secret::new("AKIA"),
            secret_access_key: s,
            session_token: None,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
