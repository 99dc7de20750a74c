//! The transport: an async core (reqwest + tokio) behind a blocking facade, with retries,
//! a bound on requests in flight, an on-disk cache and an offline mode.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fits_io::{Hdu, Image, WriteOptions};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::error::FetchError;

/// Environment variable overriding the hips2fits URL.
pub const ENV_HIPS2FITS_URL: &str = "DIFFIM_HIPS2FITS_URL";
/// Environment variable overriding the Pan-STARRS `cgi-bin` base URL.
pub const ENV_PS1_URL: &str = "DIFFIM_PS1_URL";
/// Environment variable overriding the Legacy Survey viewer base URL.
pub const ENV_LEGACY_URL: &str = "DIFFIM_LEGACY_URL";

/// Base URLs of the services; point them at mirrors or at a local emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The hips2fits service (default
    /// `https://alasky.cds.unistra.fr/hips-image-services/hips2fits`).
    pub hips2fits: String,
    /// The Pan-STARRS image server's `cgi-bin` folder, holding `ps1filenames.py` and
    /// `fitscut.cgi` (default `https://ps1images.stsci.edu/cgi-bin`).
    pub ps1: String,
    /// The Legacy Survey viewer, holding `fits-cutout` (default
    /// `https://www.legacysurvey.org/viewer`).
    pub legacy: String,
}

impl Default for Endpoints {
    /// The public services.
    fn default() -> Self {
        Self {
            hips2fits: "https://alasky.cds.unistra.fr/hips-image-services/hips2fits".into(),
            ps1: "https://ps1images.stsci.edu/cgi-bin".into(),
            legacy: "https://www.legacysurvey.org/viewer".into(),
        }
    }
}

impl Endpoints {
    /// The defaults, each overridden by its environment variable when set and non-empty
    /// ([`ENV_HIPS2FITS_URL`], [`ENV_PS1_URL`], [`ENV_LEGACY_URL`]).
    pub fn from_env() -> Self {
        let mut e = Self::default();
        for (var, field) in [
            (ENV_HIPS2FITS_URL, &mut e.hips2fits),
            (ENV_PS1_URL, &mut e.ps1),
            (ENV_LEGACY_URL, &mut e.legacy),
        ] {
            if let Ok(v) = std::env::var(var)
                && !v.trim().is_empty()
            {
                *field = v.trim().to_string();
            }
        }
        e
    }

    /// All three services at one base URL (`{base}/hips2fits`, `{base}/ps1`, `{base}/legacy`):
    /// what `diffim template --base-url` and the test emulator use.
    pub fn all_at(base: &str) -> Self {
        let b = base.trim_end_matches('/');
        Self {
            hips2fits: format!("{b}/hips2fits"),
            ps1: format!("{b}/ps1"),
            legacy: format!("{b}/legacy"),
        }
    }
}

/// One step of a multi-file download, given to the progress callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// Files finished so far (successfully or not).
    pub done: usize,
    /// Files in this batch.
    pub total: usize,
    /// Size of the file just finished, bytes (0 on failure or when served from memory).
    pub bytes: u64,
    /// What is being downloaded (e.g. "HiPS tiles", "Pan-STARRS cutouts").
    pub label: String,
}

/// The progress callback: called from the download tasks after each file of a batch.
pub type ProgressFn = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;

/// How to talk to the services. `Default` reads the endpoints from the environment
/// ([`Endpoints::from_env`]).
#[derive(Clone)]
pub struct FetchOptions {
    /// Service base URLs.
    pub endpoints: Endpoints,
    /// Cache folder (created when missing); `None` = no cache.
    pub cache_dir: Option<PathBuf>,
    /// Use only the cache: a miss gives [`FetchError::CacheMiss`] (default false).
    pub offline: bool,
    /// Whole-request timeout (connection, headers and body; default 120 s).
    pub timeout: Duration,
    /// Connection timeout (default 20 s).
    pub connect_timeout: Duration,
    /// Retries after a transient fault (timeout, connection error, truncated body, 5xx;
    /// default 3). 4xx answers, HTML pages and unparsable FITS are not retried.
    pub retries: u32,
    /// Delay before the first retry, doubled at each further one (default 1 s).
    pub backoff: Duration,
    /// Requests in flight at most (default 4; Pan-STARRS is capped at 10 whatever this says).
    pub max_in_flight: usize,
    /// Largest body accepted, bytes (default 1 GiB).
    pub max_body_bytes: u64,
    /// Called after each file of a multi-file download.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchOptions")
            .field("endpoints", &self.endpoints)
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            endpoints: Endpoints::from_env(),
            cache_dir: None,
            offline: false,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(20),
            retries: 3,
            backoff: Duration::from_secs(1),
            max_in_flight: 4,
            max_body_bytes: 1 << 30,
            progress: None,
        }
    }
}

impl FetchOptions {
    /// The cache file of a request: `{cache_dir}/{sha256(url)}.{ext}`.
    pub fn cache_path(&self, url: &str, ext: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let digest = Sha256::digest(url.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{hex}.{ext}")))
    }
}

/// The JSON error body of hips2fits (and of other services that use the same shape).
#[derive(serde::Deserialize)]
struct ServiceErrorBody {
    title: String,
    #[serde(default)]
    description: String,
}

fn excerpt(bytes: &[u8], n: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(n * 4)])
        .chars()
        .take(n)
        .collect()
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
    let t = head.trim_start();
    t.starts_with("<!doctype html") || t.starts_with("<html") || t.contains("<body")
}

/// Parses a FITS file held in memory: every image HDU (2-D, or plane 0 of a cube), as `f64`
/// with BSCALE/BZERO applied. Empty primary HDUs and tables are skipped.
///
/// # Errors
/// [`FetchError::NotFits`] when the bytes are not FITS (an HTML page...), cannot be parsed, or
/// hold no image.
pub fn parse_fits_bytes(
    bytes: &[u8],
    url: &str,
    content_type: &str,
) -> Result<Vec<Image<f64>>, FetchError> {
    let not_fits = |reason: String| FetchError::NotFits {
        url: url.to_string(),
        content_type: content_type.to_string(),
        reason,
        excerpt: excerpt(bytes, 120),
    };
    if !bytes.starts_with(b"SIMPLE  =") {
        let reason = if looks_like_html(bytes) {
            "HTML page"
        } else if bytes.is_empty() {
            "empty body"
        } else {
            "does not start with SIMPLE"
        };
        return Err(not_fits(reason.into()));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".survey-fetch-")
        .suffix(".fits")
        .tempfile()
        .map_err(|e| FetchError::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.flush())
        .map_err(|e| FetchError::Io {
            path: tmp.path().to_owned(),
            source: e,
        })?;
    let path = tmp.path();
    let n = fits_io::hdu_count(path).map_err(|e| not_fits(e.to_string()))?;
    let mut out = Vec::new();
    for i in 0..n {
        match fits_io::read_image_plane::<f64>(path, &Hdu::Index(i), 0) {
            Ok(img) => out.push(img),
            Err(
                fits_io::FitsError::WrongDimensions { .. } | fits_io::FitsError::NotAnImage { .. },
            ) if i == 0 || !out.is_empty() => {}
            Err(e) => return Err(not_fits(e.to_string())),
        }
    }
    if out.is_empty() {
        return Err(not_fits("no image HDU".into()));
    }
    Ok(out)
}

fn validate_text(bytes: &[u8], url: &str, content_type: &str) -> Result<String, FetchError> {
    if looks_like_html(bytes) {
        return Err(FetchError::NotFits {
            url: url.to_string(),
            content_type: content_type.to_string(),
            reason: "HTML page where a text table was expected".into(),
            excerpt: excerpt(bytes, 120),
        });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| FetchError::Malformed {
        url: url.to_string(),
        reason: "not UTF-8 text".into(),
    })
}

/// Checks (and parses) a body: bytes and Content-Type in, value or typed error out.
type Validator<'a, T> = dyn Fn(&[u8], &str) -> Result<T, FetchError> + Sync + 'a;

struct Inner {
    client: reqwest::Client,
    opts: FetchOptions,
}

fn build_client(opts: &FetchOptions) -> Result<reqwest::Client, FetchError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(opts.timeout)
        .connect_timeout(opts.connect_timeout)
        .user_agent(concat!("diffim-survey-fetch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Client(error_chain(&e)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// A local source: `file://...` or a plain path (anything that is not http(s)).
fn local_path(url: &str) -> Option<PathBuf> {
    if url.starts_with("http://") || url.starts_with("https://") {
        None
    } else if let Some(p) = url.strip_prefix("file://") {
        Some(PathBuf::from(p))
    } else {
        Some(PathBuf::from(url))
    }
}

impl Inner {
    fn classify(&self, e: &reqwest::Error, url: &str) -> FetchError {
        if e.is_timeout() {
            FetchError::Timeout {
                url: url.to_string(),
                timeout_ms: self.opts.timeout.as_millis() as u64,
            }
        } else {
            FetchError::Network {
                url: url.to_string(),
                message: error_chain(e),
            }
        }
    }

    /// One attempt: status, body (bounded), Content-Length check, error bodies.
    async fn download(&self, url: &str) -> Result<(Vec<u8>, String), FetchError> {
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.classify(&e, url))?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let expected = resp.content_length();
        let limit = self.opts.max_body_bytes;
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            limit,
        };
        if expected.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut buf: Vec<u8> = Vec::with_capacity(expected.unwrap_or(0).min(1 << 26) as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if buf.len() as u64 + c.len() as u64 > limit {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(self.classify(&e, url)),
                Err(_) => {
                    return Err(FetchError::Truncated {
                        url: url.to_string(),
                        received: buf.len() as u64,
                        expected,
                    });
                }
            }
        }
        if let Some(n) = expected
            && (buf.len() as u64) < n
        {
            return Err(FetchError::Truncated {
                url: url.to_string(),
                received: buf.len() as u64,
                expected,
            });
        }
        if !status.is_success() {
            if let Ok(body) = serde_json::from_slice::<ServiceErrorBody>(&buf) {
                return Err(FetchError::Service {
                    url: url.to_string(),
                    status: status.as_u16(),
                    title: body.title,
                    description: body.description,
                });
            }
            return Err(FetchError::HttpStatus {
                url: url.to_string(),
                status: status.as_u16(),
                excerpt: excerpt(&buf, 200),
            });
        }
        Ok((buf, ctype))
    }

    /// Cache, offline mode, retries with backoff, validation, atomic cache write.
    async fn fetch<T>(
        &self,
        url: &str,
        ext: &str,
        sem: &Semaphore,
        validate: &Validator<'_, T>,
    ) -> Result<(T, u64), FetchError> {
        if let Some(path) = local_path(url) {
            let bytes = tokio::fs::read(&path).await.map_err(|e| FetchError::Io {
                path: path.clone(),
                source: e,
            })?;
            let n = bytes.len() as u64;
            return validate(&bytes, "").map(|v| (v, n));
        }
        let cache = self.opts.cache_path(url, ext);
        if let Some(p) = &cache
            && let Ok(bytes) = tokio::fs::read(p).await
        {
            match validate(&bytes, "") {
                Ok(v) => return Ok((v, bytes.len() as u64)),
                // A cache entry that no longer validates is dropped (never served).
                Err(_) => {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        if self.opts.offline {
            return Err(FetchError::CacheMiss {
                url: url.to_string(),
                cache_dir: self.opts.cache_dir.clone(),
            });
        }
        let mut attempt = 0u32;
        loop {
            let result = {
                let _permit = sem
                    .acquire()
                    .await
                    .map_err(|e| FetchError::Client(e.to_string()))?;
                self.download(url).await
            };
            let result = result.and_then(|(bytes, ctype)| {
                let v = validate(&bytes, &ctype)?;
                Ok((v, bytes))
            });
            match result {
                Ok((v, bytes)) => {
                    if let Some(p) = &cache {
                        store(p, &bytes)?;
                    }
                    return Ok((v, bytes.len() as u64));
                }
                Err(e) if e.is_transient() && attempt < self.opts.retries => {
                    let delay = self.opts.backoff.saturating_mul(1u32 << attempt.min(16));
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn store(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| FetchError::Io {
            path: dir.to_owned(),
            source: e,
        })?;
    }
    fits_io::write_atomic(path, bytes, WriteOptions::overwrite())?;
    Ok(())
}

/// The blocking facade: a tokio runtime and an HTTP client, built once per fetch.
pub(crate) struct Fetcher {
    rt: tokio::runtime::Runtime,
    inner: Arc<Inner>,
}

/// Which validator a request uses.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    Fits,
}

impl Fetcher {
    /// Builds the runtime and the client.
    pub(crate) fn new(opts: &FetchOptions) -> Result<Self, FetchError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(FetchError::Client(
                "the blocking survey-fetch API was called from inside an async runtime; \
                 call it from a plain thread (e.g. tokio::task::spawn_blocking)"
                    .into(),
            ));
        }
        if opts.max_in_flight == 0 {
            return Err(FetchError::InvalidParameter {
                name: "max_in_flight",
                reason: "must be at least 1".into(),
            });
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        let client = {
            let _guard = rt.enter();
            build_client(opts)?
        };
        Ok(Self {
            rt,
            inner: Arc::new(Inner {
                client,
                opts: opts.clone(),
            }),
        })
    }

    pub(crate) fn options(&self) -> &FetchOptions {
        &self.inner.opts
    }

    /// One text document (PS1 file table, HiPS properties).
    pub(crate) fn get_text(&self, url: &str) -> Result<String, FetchError> {
        let sem = Semaphore::new(1);
        let inner = &self.inner;
        self.rt
            .block_on(inner.fetch(url, "txt", &sem, &|b, ct| validate_text(b, url, ct)))
            .map(|(v, _)| v)
    }

    /// One FITS file, parsed.
    pub(crate) fn get_fits(&self, url: &str) -> Result<Vec<Image<f64>>, FetchError> {
        let sem = Semaphore::new(1);
        let inner = &self.inner;
        self.rt
            .block_on(inner.fetch(url, "fits", &sem, &|b, ct| parse_fits_bytes(b, url, ct)))
            .map(|(v, _)| v)
    }

    /// Many FITS files at once, at most `limit` in flight; results in the order of `urls`.
    pub(crate) fn get_many(
        &self,
        urls: &[String],
        _expect: Expect,
        limit: usize,
        label: &str,
    ) -> Vec<Result<Vec<Image<f64>>, FetchError>> {
        let sem = Arc::new(Semaphore::new(limit.max(1)));
        let done = Arc::new(AtomicUsize::new(0));
        let total = urls.len();
        let handles: Vec<_> = urls
            .iter()
            .map(|url| {
                let inner = Arc::clone(&self.inner);
                let sem = Arc::clone(&sem);
                let done = Arc::clone(&done);
                let url = url.clone();
                let label = label.to_string();
                self.rt.spawn(async move {
                    let r = inner
                        .fetch(&url, "fits", &sem, &|b, ct| parse_fits_bytes(b, &url, ct))
                        .await;
                    let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some(cb) = &inner.opts.progress {
                        cb(&ProgressEvent {
                            done: d,
                            total,
                            bytes: r.as_ref().map(|(_, n)| *n).unwrap_or(0),
                            label,
                        });
                    }
                    r.map(|(v, _)| v)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                self.rt
                    .block_on(h)
                    .unwrap_or_else(|e| Err(FetchError::Client(format!("download task: {e}"))))
            })
            .collect()
    }
}
