//! Finding, running and reading back HOTPANTS: the crate's one boundary to the process.

use crate::diagnostics::{Diagnostics, is_hotpants_keyword};
use crate::options::{
    DerivedOptions, HotpantsInputs, HotpantsParams, ImageInput, derive_options, files,
};
use crate::{HotpantsError, STDERR_TAIL_BYTES};
use fits_io::{Hdu, Header, WriteOptions};
use ndarray::{Array2, Zip};
use serde::Serialize;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Bit HOTPANTS sets in its output mask (`-omi`) for unusable pixels (`FLAG_OUTPUT_ISBAD`).
pub const FLAG_OUTPUT_ISBAD: u16 = 0x8000;
/// How much of each output stream is kept in memory (the end of it).
const STREAM_KEEP_BYTES: usize = 256 * 1024;

/// The results of one HOTPANTS run, read back from its output files.
///
/// Masked pixels (`mask == true`) hold 0 in `diff`, `noise` and `scaled`.
#[derive(Debug, Clone, Serialize)]
pub struct HotpantsResult {
    /// Difference image (`-outim`), in the system of [`HotpantsParams::normalize`].
    #[serde(skip)]
    pub diff: Array2<f32>,
    /// The convolved image (`-oci`): the template or the science image, per region (see
    /// [`RegionDiagnostics::convolved`](crate::RegionDiagnostics::convolved)).
    #[serde(skip)]
    pub convolved: Array2<f32>,
    /// Noise RMS of the difference (`-oni`).
    #[serde(skip)]
    pub noise: Array2<f32>,
    /// `diff / noise`.
    #[serde(skip)]
    pub scaled: Array2<f32>,
    /// Bad pixels: HOTPANTS's `FLAG_OUTPUT_ISBAD`, its fill value, non-finite or
    /// non-positive noise, and the input masks.
    #[serde(skip)]
    pub mask: Array2<bool>,
    /// HOTPANTS's raw output bit mask (`-omi`, `FLAG_*` bits of its `defaults.h`).
    #[serde(skip)]
    pub mask_flags: Array2<u16>,
    /// The difference image's header: the science header (WCS included) plus HOTPANTS's
    /// keywords.
    #[serde(skip)]
    pub header: Header,
    /// The header diagnostics.
    pub diagnostics: Diagnostics,
    /// The options the command line was built from.
    pub options: DerivedOptions,
    /// The executable that ran.
    pub executable: PathBuf,
    /// The arguments passed (file names relative to the working directory).
    pub argv: Vec<String>,
    /// The working directory when kept ([`HotpantsParams::keep_dir`]); `None` once removed.
    pub work_dir: Option<PathBuf>,
    /// Wall-clock time of the HOTPANTS process.
    pub elapsed: Duration,
    /// The end of HOTPANTS's stderr (its log), up to 256 kB.
    #[serde(skip)]
    pub stderr: String,
    /// The end of its stdout, up to 256 kB.
    #[serde(skip)]
    pub stdout: String,
}

/// Finds the executable: `explicit`, else `$HOTPANTS`, else `hotpants` on `PATH`.
///
/// # Errors
/// [`HotpantsError::NotFound`].
pub fn find_executable(explicit: Option<&Path>) -> Result<PathBuf, HotpantsError> {
    resolve_executable(
        explicit,
        std::env::var_os("HOTPANTS"),
        std::env::var_os("PATH"),
    )
}

/// [`find_executable`] with the environment passed in (`hotpants_env` = `$HOTPANTS`,
/// `path_env` = `$PATH`). A bare name (no `/`) is looked up on `PATH`; a path must be an
/// executable file. A set `$HOTPANTS` that does not resolve is an error, not a fall-through.
///
/// # Errors
/// [`HotpantsError::NotFound`].
pub fn resolve_executable(
    explicit: Option<&Path>,
    hotpants_env: Option<OsString>,
    path_env: Option<OsString>,
) -> Result<PathBuf, HotpantsError> {
    let lookup = |p: &Path, what: &str| -> Result<PathBuf, HotpantsError> {
        let bare = p.components().count() == 1 && !p.is_absolute() && !p.starts_with(".");
        if let Some(found) = bare
            .then(|| search_path(p.as_os_str(), path_env.as_ref()))
            .flatten()
        {
            return Ok(found);
        }
        if is_executable_file(p) {
            return Ok(p.to_path_buf());
        }
        Err(HotpantsError::NotFound {
            searched: format!("{what} {p:?} is not an executable file (nor found on PATH)"),
        })
    };
    if let Some(p) = explicit {
        return lookup(p, "explicit path");
    }
    if let Some(env) = hotpants_env.filter(|e| !e.is_empty()) {
        return lookup(Path::new(&env), "$HOTPANTS");
    }
    search_path("hotpants".as_ref(), path_env.as_ref()).ok_or_else(|| HotpantsError::NotFound {
        searched: format!(
            "no explicit path, $HOTPANTS unset, and no `hotpants` in PATH ({})",
            path_env
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    })
}

fn search_path(name: &std::ffi::OsStr, path_env: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path_env?)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|c| is_executable_file(c))
}

fn is_executable_file(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Keeps the last `cap` bytes written.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    cap: usize,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }
}

struct Reader {
    tail: Arc<Mutex<Tail>>,
    done: mpsc::Receiver<()>,
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> Reader {
    let tail = Arc::new(Mutex::new(Tail {
        buf: Vec::new(),
        cap: STREAM_KEEP_BYTES,
    }));
    let (tx, done) = mpsc::channel();
    let t = Arc::clone(&tail);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut g) = t.lock() {
                        g.push(&chunk[..n]);
                    }
                }
            }
        }
        let _ = tx.send(());
    });
    Reader { tail, done }
}

impl Reader {
    /// Waits (boundedly: a grandchild could hold the pipe open) for the stream to close and
    /// returns what was kept.
    fn finish(self) -> String {
        let _ = self.done.recv_timeout(Duration::from_secs(2));
        let bytes = self.tail.lock().map(|g| g.buf.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The last [`STDERR_TAIL_BYTES`] of `s`, cut at a character boundary.
fn tail_of(s: &str) -> String {
    if s.len() <= STDERR_TAIL_BYTES {
        return s.to_string();
    }
    let mut start = s.len() - STDERR_TAIL_BYTES;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

enum Outcome {
    Exited(ExitStatus),
    TimedOut,
}

/// Runs the command, polling for completion until `timeout`; kills it past the limit.
fn run_process(
    exe: &Path,
    args: &[String],
    dir: &Path,
    timeout: Option<Duration>,
    env: &[(String, String)],
) -> Result<(Outcome, String, String, Duration), HotpantsError> {
    let t0 = Instant::now();
    let mut child = Command::new(exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound && !exe.is_file() {
                HotpantsError::NotFound {
                    searched: format!("{exe:?} vanished before it started"),
                }
            } else {
                HotpantsError::Spawn {
                    path: exe.to_path_buf(),
                    source,
                }
            }
        })?;
    let out = child.stdout.take().map(spawn_reader);
    let err = child.stderr.take().map(spawn_reader);
    let mut pause = Duration::from_millis(2);
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Outcome::Exited(status),
            Ok(None) => {}
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HotpantsError::Spawn {
                    path: exe.to_path_buf(),
                    source,
                });
            }
        }
        if timeout.is_some_and(|t| t0.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            break Outcome::TimedOut;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let elapsed = t0.elapsed();
    let stdout = out.map(Reader::finish).unwrap_or_default();
    let stderr = err.map(Reader::finish).unwrap_or_default();
    Ok((outcome, stdout, stderr, elapsed))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HotpantsError + '_ {
    move |source| HotpantsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes one image, its mask and (if any) its noise map; returns the mask that was written.
fn write_side(
    dir: &Path,
    img: &ImageInput,
    fill: f64,
    header: &Header,
    names: (&str, &str, &str),
) -> Result<Array2<bool>, HotpantsError> {
    let write_err = |file: &str| {
        let file = file.to_string();
        move |source| HotpantsError::WriteInput { file, source }
    };
    let mut mask = img.data.mapv(|v| !v.is_finite());
    if let Some(m) = &img.mask {
        Zip::from(&mut mask).and(m).for_each(|a, &b| *a |= b);
    }
    let data = img
        .data
        .mapv(|v| if v.is_finite() { v } else { fill as f32 });
    if let Some(noise) = &img.noise {
        Zip::from(&mut mask)
            .and(noise)
            .for_each(|a, &n| *a |= !(n.is_finite() && n > 0.0));
        // Unusable noise values become the median good noise (the pixels are masked).
        let good: Vec<f64> = noise
            .iter()
            .filter(|n| n.is_finite() && **n > 0.0)
            .map(|&n| n as f64)
            .collect();
        let typical = diffim_core::stats::median(good).unwrap_or(1.0) as f32;
        let clean = noise.mapv(|n| if n.is_finite() && n > 0.0 { n } else { typical });
        fits_io::write_image(
            &dir.join(names.2),
            &clean.view(),
            &Header::new(),
            WriteOptions::overwrite(),
        )
        .map_err(write_err(names.2))?;
    }
    fits_io::write_image(
        &dir.join(names.0),
        &data.view(),
        header,
        WriteOptions::overwrite(),
    )
    .map_err(write_err(names.0))?;
    fits_io::write_mask(
        &dir.join(names.1),
        &mask.view(),
        &Header::new(),
        WriteOptions::overwrite(),
    )
    .map_err(write_err(names.1))?;
    Ok(mask)
}

/// A header to write with an input image: the caller's, minus stale HOTPANTS keywords.
fn input_header(h: Option<&Header>) -> Header {
    let mut out = Header::new();
    if let Some(h) = h {
        for c in h.cards() {
            if c.is_commentary() || !is_hotpants_keyword(&c.key) {
                out.push(c.clone());
            }
        }
    }
    out
}

/// Runs HOTPANTS on the inputs in a private temporary directory and reads its results back.
///
/// Steps: [`derive_options`]; [`find_executable`]; write the images (non-finite pixels
/// replaced by the median and masked), masks (1 = bad), noise maps and the stamp file; run
/// with the working directory as current directory, capturing stdout/stderr, killing it after
/// [`HotpantsParams::timeout`]; read the difference, convolved, noise and mask images and
/// the header diagnostics. The directory is removed unless [`HotpantsParams::keep_dir`].
///
/// # Errors
/// Everything [`derive_options`] and [`find_executable`] return; [`HotpantsError::Io`] and
/// [`HotpantsError::WriteInput`] for the working directory; [`HotpantsError::Spawn`],
/// [`HotpantsError::ExitStatus`], [`HotpantsError::Crashed`], [`HotpantsError::Timeout`],
/// [`HotpantsError::MissingOutput`] and [`HotpantsError::BadOutput`] for the process.
pub fn run_hotpants(
    inputs: &HotpantsInputs,
    params: &HotpantsParams,
) -> Result<HotpantsResult, HotpantsError> {
    let options = derive_options(inputs, params)?;
    let exe = find_executable(params.executable.as_deref())?;
    let parent = params
        .work_dir_parent
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("diffim-hotpants-")
        .tempdir_in(&parent)
        .map_err(io_err(&parent))?;
    let dir = tmp.path().to_path_buf();
    // Keep the directory from here on if asked: errors below then point at it.
    let (kept, _guard) = if params.keep_dir {
        (Some(tmp.keep()), None)
    } else {
        (None, Some(tmp))
    };

    let sci_header = input_header(inputs.science.header);
    let tmpl_header = input_header(inputs.template.header);
    let sci_mask = write_side(
        &dir,
        &inputs.science,
        options.science.fill,
        &sci_header,
        (files::SCIENCE, files::SCIENCE_MASK, files::SCIENCE_NOISE),
    )?;
    let tmpl_mask = write_side(
        &dir,
        &inputs.template,
        options.template.fill,
        &tmpl_header,
        (files::TEMPLATE, files::TEMPLATE_MASK, files::TEMPLATE_NOISE),
    )?;
    if !options.stamps.is_empty() {
        let p = dir.join(files::STAMPS);
        std::fs::write(&p, options.stamp_file_text()).map_err(io_err(&p))?;
    }
    let argv = options.to_args();
    let (outcome, stdout, stderr, elapsed) =
        run_process(&exe, &argv, &dir, params.timeout, &params.env)?;
    if kept.is_some() {
        let _ = std::fs::write(dir.join("stderr.txt"), &stderr);
        let _ = std::fs::write(dir.join("stdout.txt"), &stdout);
        let _ = std::fs::write(
            dir.join("command.txt"),
            format!("{exe:?} {}\n", argv.join(" ")),
        );
    }
    let stderr_tail = tail_of(&stderr);
    let work_dir = kept.clone();
    match outcome {
        Outcome::TimedOut => {
            return Err(HotpantsError::Timeout {
                seconds: params.timeout.map_or(0.0, |t| t.as_secs_f64()),
                stderr_tail,
                work_dir,
            });
        }
        Outcome::Exited(status) if !status.success() => {
            if let Some(code) = status.code() {
                return Err(HotpantsError::ExitStatus {
                    code,
                    stderr_tail,
                    work_dir,
                });
            }
            #[cfg(unix)]
            let signal = std::os::unix::process::ExitStatusExt::signal(&status);
            #[cfg(not(unix))]
            let signal = None;
            return Err(HotpantsError::Crashed {
                signal,
                stderr_tail,
                work_dir,
            });
        }
        Outcome::Exited(_) => {}
    }

    let dim = inputs.science.data.dim();
    let read = |file: &str| -> Result<fits_io::Image<f32>, HotpantsError> {
        let p = dir.join(file);
        if !p.is_file() {
            return Err(HotpantsError::MissingOutput {
                file: file.to_string(),
                stderr_tail: stderr_tail.clone(),
                work_dir: work_dir.clone(),
            });
        }
        let bad = |reason: String| HotpantsError::BadOutput {
            file: file.to_string(),
            reason,
            stderr_tail: stderr_tail.clone(),
            work_dir: work_dir.clone(),
        };
        let img = fits_io::read_image::<f32>(&p, &Hdu::Primary).map_err(|e| bad(e.to_string()))?;
        if img.data.dim() != dim {
            return Err(bad(format!("shape {:?}, expected {dim:?}", img.data.dim())));
        }
        Ok(img)
    };
    let diff_img = read(files::DIFF)?;
    let convolved_img = read(files::CONVOLVED)?;
    let noise_img = read(files::NOISE)?;
    let mask_img = read(files::MASK)?;

    let diagnostics = Diagnostics::from_header(&diff_img.header, &sci_header);
    let mask_flags = mask_img.data.mapv(|v| {
        if v.is_finite() && (0.0..=65535.0).contains(&v) {
            v as u16
        } else {
            FLAG_OUTPUT_ISBAD
        }
    });
    let header = diff_img.header;
    let mut diff = diff_img.data;
    let mut noise = noise_img.data;
    let mut convolved = convolved_img.data;
    convolved.mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
    let fill = diagnostics.mask_value.map(|v| v as f32);
    let mut mask = &sci_mask | &tmpl_mask;
    let mut scaled = Array2::<f32>::zeros(dim);
    Zip::from(&mut mask)
        .and(&mut diff)
        .and(&mut noise)
        .and(&mut scaled)
        .and(&mask_flags)
        .for_each(|m, d, n, s, &f| {
            let bad = *m
                || f & FLAG_OUTPUT_ISBAD != 0
                || !d.is_finite()
                || !(n.is_finite() && *n > 0.0)
                || fill.is_some_and(|fv| *d == fv);
            *m = bad;
            if bad {
                *d = 0.0;
                *n = 0.0;
                *s = 0.0;
            } else {
                *s = *d / *n;
            }
        });
    Ok(HotpantsResult {
        diff,
        convolved,
        noise,
        scaled,
        mask,
        mask_flags,
        header,
        diagnostics,
        options,
        executable: exe,
        argv,
        work_dir,
        elapsed,
        stderr,
        stdout,
    })
}
