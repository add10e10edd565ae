//! A replica on object storage: list, read (whole, ranged, single pages via the page
//! index), write and delete LTX objects, over opendal with its retry and timeout layers.
//! What differs between a local directory and an object store (create-only publishing,
//! creation times) is in [`super::backend`].

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::Operator;
use tokio::io::AsyncWriteExt;

use super::backend::{Backend, Put, TIMESTAMP_METADATA, TIMESTAMP_METADATA_AZURE};
use super::error::{ReplicaError, Result};
use super::key::{parse_file_name, LtxKey, MAX_LEVEL};
use super::layout::Layout;
use super::url::{ReplicaUrl, S3Url};
use crate::format::header::{Header, HEADER_SIZE};
use crate::format::index::{
    decode_index_entries, decode_index_from_tail, TailIndex, INDEX_LEN_FIELD,
};
use crate::format::page::{decode_frame, FrameError};
use crate::format::trailer::TRAILER_SIZE;
use crate::format::{LtxError, PageIndexEntry};

/// How much of a file's end is fetched in one read to find its page index.
const INDEX_TAIL: u64 = 32 * 1024;

/// Network behaviour of a replica client.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// Whole-operation timeout for non-streaming calls.
    pub timeout: Duration,
    /// Timeout for each chunk of a streaming read or write.
    pub io_timeout: Duration,
    /// Retries of a failed operation (with exponential backoff and jitter).
    pub retries: usize,
    /// Credentials given explicitly (the operator reads them from a Secret per database);
    /// when a field is `None` the standard environment variables apply, if `ambient`.
    pub credentials: Credentials,
    /// Whether this process's own credentials may be used when none are given: the
    /// environment, profiles and credential files, web identity, instance or VM metadata.
    /// True for the VFS and the hydrator (a pod's own identity); false for the operator,
    /// which must never lend its identity to a store a user named.
    pub ambient: bool,
}

/// Explicit object-store credentials. `Debug` never prints the secrets.
#[derive(Clone, Default)]
pub struct Credentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub azure_account_key: Option<String>,
    /// A Google service-account JSON key (the file's content).
    pub gcs_service_account_json: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Credentials")
            .field("access_key_id", &set(&self.access_key_id))
            .field("secret_access_key", &set(&self.secret_access_key))
            .field("session_token", &set(&self.session_token))
            .field("azure_account_key", &set(&self.azure_account_key))
            .field(
                "gcs_service_account_json",
                &set(&self.gcs_service_account_json),
            )
            .finish()
    }
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(20),
            retries: 4,
            credentials: Credentials::default(),
            ambient: true,
        }
    }
}

/// One LTX object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxFileInfo {
    pub key: LtxKey,
    pub size: u64,
    /// File mtime (file replicas) or `LastModified` (object stores). Litestream uses the
    /// same value for listings; [`Replica::creation_time`] refines it from metadata.
    pub created_at: SystemTime,
}

/// The header and page index of one LTX object, fetched with ranged reads.
#[derive(Debug, Clone)]
pub struct FileIndex {
    pub header: Header,
    pub pages: Vec<PageIndexEntry>,
}

#[derive(Clone)]
pub struct Replica {
    url: ReplicaUrl,
    pub(super) op: Operator,
    layout: Layout,
    pub(super) backend: Backend,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica({})", self.url)
    }
}

impl Replica {
    pub fn open(url: &str) -> Result<Replica> {
        Self::open_with(ReplicaUrl::parse(url)?, &ReplicaOptions::default())
    }

    pub fn open_with(url: ReplicaUrl, opts: &ReplicaOptions) -> Result<Replica> {
        let cfg_err = |e: opendal::Error| ReplicaError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        };
        let (op, layout, backend) = match &url {
            ReplicaUrl::File { path } => {
                let root = path.to_string_lossy().to_string();
                let op =
                    Operator::new(opendal::services::Fs::default().root(&root)).map_err(cfg_err)?;
                (
                    op,
                    Layout::LtxDecimal,
                    Backend::Files { root: path.clone() },
                )
            }
            ReplicaUrl::S3(s) => (
                Operator::new(s3_builder(&url, s, &opts.credentials, opts.ambient)?)
                    .map_err(cfg_err)?,
                Layout::Hex4,
                Backend::Objects {
                    timestamp_key: TIMESTAMP_METADATA,
                },
            ),
            ReplicaUrl::Gcs {
                bucket,
                path,
                endpoint,
            } => {
                let mut b = opendal::services::Gcs::default()
                    .bucket(bucket)
                    .root(&format!("/{path}"));
                if let Some(e) = endpoint {
                    b = b.endpoint(e);
                }
                let key_file = std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
                    .ok()
                    .filter(|p| !p.is_empty() && opts.ambient);
                if let Some(json) = &opts.credentials.gcs_service_account_json {
                    use base64::Engine as _;
                    b = b.credential(&base64::engine::general_purpose::STANDARD.encode(json));
                } else if let Some(p) = key_file {
                    b = b.credential_path(&p);
                } else if endpoint.is_some() {
                    // An emulator (or a private endpoint) reached without credentials, as
                    // Google's SDKs do under STORAGE_EMULATOR_HOST: no identity is lent.
                    b = b
                        .skip_signature()
                        .disable_vm_metadata()
                        .disable_config_load();
                } else if !opts.ambient {
                    return Err(no_ambient(&url, "a service-account key"));
                }
                if !opts.ambient {
                    b = b.disable_config_load().disable_vm_metadata();
                }
                (
                    Operator::new(b).map_err(cfg_err)?,
                    Layout::LtxDecimal,
                    Backend::Objects {
                        timestamp_key: TIMESTAMP_METADATA,
                    },
                )
            }
            ReplicaUrl::Azure {
                account,
                container,
                path,
                endpoint,
            } => {
                let mut b = opendal::services::Azblob::default()
                    .container(container)
                    .root(&format!("/{path}"));
                let account = account.clone().or_else(|| {
                    env_any(&["AZURE_STORAGE_ACCOUNT", "LITESTREAM_AZURE_ACCOUNT_NAME"])
                        .filter(|_| opts.ambient)
                });
                if let Some(a) = &account {
                    b = b.account_name(a);
                }
                match (endpoint, &account) {
                    (Some(e), _) => b = b.endpoint(e),
                    (None, Some(a)) => {
                        b = b.endpoint(&format!("https://{a}.blob.core.windows.net"))
                    }
                    (None, None) => {}
                }
                let key = opts.credentials.azure_account_key.clone().or_else(|| {
                    env_any(&["AZURE_STORAGE_KEY", "LITESTREAM_AZURE_ACCOUNT_KEY"])
                        .filter(|_| opts.ambient)
                });
                match key {
                    Some(k) => b = b.account_key(&k),
                    None if !opts.ambient => return Err(no_ambient(&url, "an account key")),
                    None => {}
                }
                (
                    Operator::new(b).map_err(cfg_err)?,
                    Layout::LtxDecimal,
                    Backend::Objects {
                        timestamp_key: TIMESTAMP_METADATA_AZURE,
                    },
                )
            }
        };
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(opts.timeout)
                    .with_io_timeout(opts.io_timeout),
            )
            .layer(RetryLayer::new().with_max_times(opts.retries).with_jitter());
        Ok(Replica {
            url,
            op,
            layout,
            backend,
        })
    }

    pub fn url(&self) -> &ReplicaUrl {
        &self.url
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The object path of a key, relative to the replica root.
    pub fn path_of(&self, key: &LtxKey) -> String {
        self.layout.key_path(key)
    }

    /// Fails with a clear error when the replica cannot be listed (bad credentials,
    /// unreachable endpoint, missing bucket). An empty replica is reachable.
    pub async fn check_reachable(&self) -> Result<()> {
        match self.op.list_with(&self.layout.level_dir(0)).limit(1).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ReplicaError::Store {
                path: self.url.to_string(),
                source: e,
            }),
        }
    }

    /// LTX objects of one level, sorted by (min, max). A missing level is empty.
    pub async fn list_level(&self, level: u8) -> Result<Vec<LtxFileInfo>> {
        let dir = self.layout.level_dir(level);
        let entries = match self.op.list(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ReplicaError::store(&dir, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let Some((min, max)) = parse_file_name(e.name()) else {
                continue;
            };
            let key = LtxKey::new(level, min, max);
            let meta =
                if !self.backend.listing_has_times() || e.metadata().last_modified().is_none() {
                    match self.op.stat(e.path()).await {
                        Ok(m) => m,
                        Err(err) if err.kind() == opendal::ErrorKind::NotFound => continue, // deleted meanwhile
                        Err(err) => return Err(ReplicaError::store(e.path(), err)),
                    }
                } else {
                    e.metadata().clone()
                };
            let created_at = meta
                .last_modified()
                .map(SystemTime::from)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(LtxFileInfo {
                key,
                size: meta.content_length(),
                created_at,
            });
        }
        out.sort_by_key(|f| (f.key.min_txid, f.key.max_txid));
        Ok(out)
    }

    /// Every LTX object on every level (0..=9).
    pub async fn list_all(&self) -> Result<Vec<LtxFileInfo>> {
        let levels =
            futures::future::try_join_all((0..=MAX_LEVEL).map(|l| self.list_level(l))).await?;
        Ok(levels.into_iter().flatten().collect())
    }

    /// The newest TXID any file of the replica covers (0 for an empty replica).
    pub async fn latest_txid(&self) -> Result<crate::format::Txid> {
        let files = self.list_all().await?;
        Ok(files.iter().map(|f| f.key.max_txid).max().unwrap_or(0))
    }

    /// The creation time Litestream would use for a point-in-time restore: the
    /// `litestream-timestamp` metadata (`litestreamtimestamp` on Azure) where the store
    /// has it, else the listed time.
    pub async fn creation_time(&self, info: &LtxFileInfo) -> Result<SystemTime> {
        let Some(key) = self.backend.timestamp_key() else {
            return Ok(info.created_at);
        };
        let path = self.path_of(&info.key);
        let meta = self
            .op
            .stat(&path)
            .await
            .map_err(|e| ReplicaError::store(&path, e))?;
        let from_meta = meta
            .user_metadata()
            .and_then(|m| m.get(key).map(str::to_string))
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(SystemTime::from);
        Ok(from_meta.unwrap_or(info.created_at))
    }

    pub async fn read(&self, key: &LtxKey) -> Result<Bytes> {
        let path = self.path_of(key);
        let buf = self
            .op
            .read(&path)
            .await
            .map_err(|e| ReplicaError::store(&path, e))?;
        Ok(buf.to_bytes())
    }

    pub async fn read_range(&self, key: &LtxKey, range: std::ops::Range<u64>) -> Result<Bytes> {
        let path = self.path_of(key);
        let buf = self
            .op
            .read_with(&path)
            .range(range)
            .await
            .map_err(|e| ReplicaError::store(&path, e))?;
        Ok(buf.to_bytes())
    }

    /// Streams an object into a local file with `concurrency` ranged reads in flight.
    /// Returns the bytes written. The file is not fsynced.
    pub async fn download_to(&self, key: &LtxKey, dest: &Path, concurrency: usize) -> Result<u64> {
        let mut stream = Box::pin(self.download_stream(key, concurrency).await?);
        let mut f = tokio::fs::File::create(dest)
            .await
            .map_err(|e| ReplicaError::io(dest, e))?;
        let mut n = 0u64;
        while let Some(chunk) = stream.try_next().await? {
            f.write_all(&chunk)
                .await
                .map_err(|e| ReplicaError::io(dest, e))?;
            n += chunk.len() as u64;
        }
        // No fsync: a download torn by a crash is caught by the LTX checksum when used.
        f.flush().await.map_err(|e| ReplicaError::io(dest, e))?;
        Ok(n)
    }

    /// An object's bytes in order, fetched as 8 MiB ranges `concurrency` at a time (so a
    /// consumer can decode the start while later ranges are still in flight).
    pub async fn download_stream(
        &self,
        key: &LtxKey,
        concurrency: usize,
    ) -> Result<impl futures::Stream<Item = Result<Bytes>> + Send + 'static> {
        let path = self.path_of(key);
        let reader = self
            .op
            .reader_with(&path)
            .chunk(8 * 1024 * 1024)
            .concurrent(concurrency.max(1))
            .await
            .map_err(|e| ReplicaError::store(&path, e))?;
        let stream = reader
            .into_bytes_stream(..)
            .await
            .map_err(|e| ReplicaError::store(&path, e))?;
        Ok(stream.map_err(move |e| ReplicaError::Io {
            path: path.clone(),
            source: e,
        }))
    }

    /// Header and page index of an object, with at most three ranged reads (two when
    /// the index fits in the last 32 KiB).
    pub async fn read_file_index(&self, info: &LtxFileInfo) -> Result<FileIndex> {
        let path = self.path_of(&info.key);
        let ltx_err = |e: LtxError| ReplicaError::ltx(&path, e);
        let min = (HEADER_SIZE + TRAILER_SIZE + INDEX_LEN_FIELD) as u64;
        if info.size < min {
            return Err(ltx_err(LtxError::Truncated {
                section: crate::format::Section::Header,
                offset: info.size,
            }));
        }
        let head_fut = self.read_range(&info.key, 0..HEADER_SIZE as u64);
        let tail_start = info.size.saturating_sub(INDEX_TAIL).max(HEADER_SIZE as u64);
        let tail_fut = self.read_range(&info.key, tail_start..info.size);
        let (head, tail) = futures::try_join!(head_fut, tail_fut)?;
        let header = Header::decode_prefix(&head).map_err(ltx_err)?;
        let pages = match decode_index_from_tail(&tail, info.size).map_err(ltx_err)? {
            TailIndex::Entries(p) => p,
            TailIndex::Beyond(r) => {
                let bytes = self.read_range(&info.key, r).await?;
                decode_index_entries(&bytes).map_err(ltx_err)?
            }
        };
        Ok(FileIndex { header, pages })
    }

    /// The header of one object, with one ranged read.
    pub async fn read_header(&self, key: &LtxKey) -> Result<Header> {
        let head = self.read_range(key, 0..HEADER_SIZE as u64).await?;
        Header::decode_prefix(&head).map_err(|e| ReplicaError::ltx(&self.path_of(key), e))
    }

    /// Fetches and decompresses one page with a single ranged read.
    pub async fn read_page(
        &self,
        key: &LtxKey,
        entry: &PageIndexEntry,
        page_size: u32,
    ) -> Result<Vec<u8>> {
        let frame = self
            .read_range(key, entry.offset..entry.offset + entry.size)
            .await?;
        let mut out = vec![0u8; page_size as usize];
        let path = self.path_of(key);
        match decode_frame(&frame, &mut out) {
            Ok(pgno) if pgno == entry.pgno => Ok(out),
            Ok(pgno) => Err(ReplicaError::ltx(
                &path,
                LtxError::InvalidIndex(format!(
                    "index points page {} at a frame holding page {pgno}",
                    entry.pgno
                )),
            )),
            Err(FrameError::Eof) => Err(ReplicaError::ltx(
                &path,
                LtxError::Truncated {
                    section: crate::format::Section::PageData,
                    offset: entry.offset,
                },
            )),
            Err(FrameError::Io(e)) => Err(ReplicaError::Io { path, source: e }),
            Err(FrameError::Invalid(reason)) => Err(ReplicaError::ltx(
                &path,
                LtxError::Decompress {
                    pgno: entry.pgno,
                    offset: entry.offset,
                    reason,
                },
            )),
        }
    }

    /// Publishes an LTX object held in memory. With `create_only`, an existing object of
    /// the same name is never replaced: the write fails with
    /// [`ReplicaError::AlreadyExists`] unless it already holds these exact bytes (a retry
    /// of our own earlier write).
    pub async fn write(
        &self,
        key: &LtxKey,
        data: Bytes,
        timestamp_ms: i64,
        create_only: bool,
    ) -> Result<()> {
        let path = self.path_of(key);
        match self
            .backend
            .put(
                &self.op,
                &path,
                data.clone(),
                Some(timestamp_ms),
                create_only,
            )
            .await?
        {
            Put::Created => Ok(()),
            Put::Taken => self.check_same(key, &path, &data).await,
        }
    }

    /// Publishes an LTX object from a local file (streamed; multipart on object stores).
    /// A taken name is [`ReplicaError::AlreadyExists`].
    pub async fn write_file(
        &self,
        key: &LtxKey,
        src: &Path,
        timestamp_ms: i64,
        create_only: bool,
    ) -> Result<()> {
        let path = self.path_of(key);
        match self
            .backend
            .put_file(&self.op, &path, src, timestamp_ms, create_only)
            .await?
        {
            Put::Created => Ok(()),
            Put::Taken => Err(ReplicaError::AlreadyExists { path }),
        }
    }

    async fn check_same(&self, key: &LtxKey, path: &str, data: &Bytes) -> Result<()> {
        match self.read(key).await {
            Ok(existing) if existing == *data => Ok(()),
            Ok(_) | Err(ReplicaError::NotFound { .. }) => Err(ReplicaError::AlreadyExists {
                path: path.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&self, key: &LtxKey) -> Result<()> {
        let path = self.path_of(key);
        self.op
            .delete(&path)
            .await
            .map_err(|e| ReplicaError::store(&path, e))
    }

    /// Deletes every LTX object of the replica (all levels); returns how many. Used when a
    /// database is deleted with `deletionPolicy: Delete`. Objects that are not LTX files
    /// (anything a user put beside them) are left alone.
    pub async fn delete_all(&self) -> Result<usize> {
        let files = self.list_all().await?;
        for f in &files {
            match self.delete(&f.key).await {
                Ok(()) | Err(ReplicaError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.delete_epochs().await?;
        Ok(files.len())
    }
}

/// The first of `names` set in the environment, trimmed: a Secret created from a file
/// (`kubectl create secret --from-file`) usually ends in a newline, which the operator
/// trims when it reads the Secret, so pods reading the same Secret as env must too.
fn env_any(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// No credentials were given and this process may not use its own.
fn no_ambient(url: &ReplicaUrl, what: &str) -> ReplicaError {
    ReplicaError::MissingCredentials {
        url: url.to_string(),
        hint: format!(
            "no credentials were given ({what} from a Secret) and ambient credentials \
             (environment, web identity, instance metadata) are not used here"
        ),
    }
}

fn s3_builder(
    url: &ReplicaUrl,
    s: &S3Url,
    creds: &Credentials,
    ambient: bool,
) -> Result<opendal::services::S3> {
    let mut b = opendal::services::S3::default()
        .bucket(&s.bucket)
        .root(&format!("/{}", s.path));
    if let Some(e) = &s.endpoint {
        b = b.endpoint(e);
    }
    if !s.force_path_style && s.endpoint.is_none() {
        b = b.enable_virtual_host_style();
    }
    let region = s
        .region
        .clone()
        .or_else(|| env_any(&["AWS_REGION", "AWS_DEFAULT_REGION", "LITESTREAM_REGION"]))
        .unwrap_or_else(|| "us-east-1".to_string());
    b = b.region(&region);
    let explicit = creds.access_key_id.is_some() || creds.secret_access_key.is_some();
    if !ambient {
        // Only what was given: no environment, profile, web identity or instance role.
        b = b.disable_config_load().disable_ec2_metadata();
        if !explicit {
            return Err(no_ambient(url, "an access key"));
        }
    }
    let (key, secret, token) = if explicit {
        (
            creds.access_key_id.clone(),
            creds.secret_access_key.clone(),
            creds.session_token.clone(),
        )
    } else {
        (
            env_any(&["AWS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID"]),
            env_any(&["AWS_SECRET_ACCESS_KEY", "LITESTREAM_SECRET_ACCESS_KEY"]),
            env_any(&["AWS_SESSION_TOKEN"]),
        )
    };
    match (key, secret) {
        (Some(k), Some(sec)) => {
            b = b.access_key_id(&k).secret_access_key(&sec);
            if let Some(t) = token {
                b = b.session_token(&t);
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(ReplicaError::MissingCredentials {
                url: url.to_string(),
                hint: "only one of AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY is set".into(),
            })
        }
        (None, None) => {
            // Other standard sources opendal understands (web identity, profiles).
            let other = env_any(&[
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ])
            .is_some()
                || std::env::var("HOME")
                    .is_ok_and(|h| Path::new(&h).join(".aws/credentials").exists());
            if !other {
                return Err(ReplicaError::MissingCredentials {
                    url: url.to_string(),
                    hint: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or LITESTREAM_ACCESS_KEY_ID / \
                           LITESTREAM_SECRET_ACCESS_KEY), or configure a web identity or profile"
                        .into(),
                });
            }
        }
    }
    Ok(b)
}
