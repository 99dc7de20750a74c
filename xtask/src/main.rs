//! Maintainer tasks for the diffim workspace, run as `cargo xtask <task>`.
//!
//! * `fetch-data [--from DIR] [--dest DIR]`: copies the real test datasets listed in
//!   `data/real-manifest.txt` into `data/real/` from a local mirror, or downloads them from
//!   their public homes (with `curl`), and verifies every file's SHA-256.
//! * `bench [--quick] [-- CRITERION ARGS]`: runs the criterion benches of `diffim-benches` and
//!   prints one table (markdown, plus JSON in `target/bench-report.json`): per benchmark group,
//!   function and size, seconds, peak memory where measured, and the ratio to the 2-D FFT
//!   yardstick of the same size measured in the same run.

use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Parser)]
#[command(name = "xtask", about = "diffim maintainer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Copy or download the real datasets into data/real/ and verify their SHA-256.
    FetchData {
        /// Local mirror with the same layout (e.g. ../shared/data); otherwise download.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Destination folder (default: data/real under the workspace root).
        #[arg(long)]
        dest: Option<PathBuf>,
        /// Rewrite the manifest's hashes and sizes from the files in --from (maintainers).
        #[arg(long, requires = "from")]
        write_manifest: bool,
    },
    /// Run the criterion benches and print the speed table.
    Bench {
        /// Short measurement (criterion --quick): for a quick look, not for reporting.
        #[arg(long)]
        quick: bool,
        /// Only benches whose file name contains this (e.g. zogy, sfft).
        #[arg(long)]
        only: Option<String>,
        /// Only rebuild the table from the results already in target/criterion.
        #[arg(long)]
        report_only: bool,
        /// Extra arguments passed to criterion.
        #[arg(last = true)]
        criterion_args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.task {
        Task::FetchData {
            from,
            dest,
            write_manifest,
        } => fetch_data(from.as_deref(), dest, write_manifest),
        Task::Bench {
            quick,
            only,
            report_only,
            criterion_args,
        } => bench(quick, only, report_only, &criterion_args),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

struct Entry {
    sha256: String,
    bytes: u64,
    path: String,
    url: String,
}

fn read_manifest(path: &Path) -> Result<Vec<Entry>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 {
            return Err(format!("{}:{}: expected 4 fields", path.display(), n + 1));
        }
        let bytes = f[1]
            .parse()
            .map_err(|_| format!("{}:{}: bad size", path.display(), n + 1))?;
        out.push(Entry {
            sha256: f[0].to_string(),
            bytes,
            path: f[2].to_string(),
            url: f[3].to_string(),
        });
    }
    Ok(out)
}

fn sha256_file(path: &Path) -> Result<(String, u64), String> {
    let mut f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, n))
}

/// Copies `src` to `dst` through a temporary file in the same folder, then renames it.
fn atomic_copy(src: &Path, dst: &Path) -> Result<(), String> {
    let tmp = dst.with_extension("part");
    fs::copy(src, &tmp).map_err(|e| format!("copy {} -> {}: {e}", src.display(), tmp.display()))?;
    fs::rename(&tmp, dst).map_err(|e| format!("rename {}: {e}", dst.display()))
}

fn download(url: &str, dst: &Path) -> Result<(), String> {
    let tmp = dst.with_extension("part");
    let status = Command::new("curl")
        .args([
            "--fail",
            "--location",
            "--silent",
            "--show-error",
            "--retry",
            "3",
        ])
        .args(["--max-time", "300", "--output"])
        .arg(&tmp)
        .arg(url)
        .status()
        .map_err(|e| format!("cannot run curl (needed to download {url}): {e}"))?;
    if !status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(format!("download failed ({status}): {url}"));
    }
    fs::rename(&tmp, dst).map_err(|e| format!("rename {}: {e}", dst.display()))
}

fn fetch_data(
    from: Option<&Path>,
    dest: Option<PathBuf>,
    write_manifest: bool,
) -> Result<(), String> {
    let root = workspace_root();
    let manifest_path = root.join("data/real-manifest.txt");
    let entries = read_manifest(&manifest_path)?;
    let dest = dest.unwrap_or_else(|| root.join("data/real"));
    if write_manifest {
        let from = from.ok_or("--write-manifest needs --from")?;
        let mut text = String::from(
            "# Real datasets used by the tests: sha256, bytes, path under data/real/, public source URL.\n\
             # Regenerate with `cargo xtask fetch-data --write-manifest --from DIR` (maintainers only).\n\
             # sha256 bytes path url\n",
        );
        for e in &entries {
            let (sha, n) = sha256_file(&from.join(&e.path))?;
            text.push_str(&format!("{sha} {n} {} {}\n", e.path, e.url));
        }
        fs::write(&manifest_path, text).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        println!("rewrote {}", manifest_path.display());
        return Ok(());
    }
    let (mut copied, mut present, mut failed) = (0, 0, Vec::new());
    for e in &entries {
        let dst = dest.join(&e.path);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(|err| format!("{}: {err}", parent.display()))?;
        }
        if dst.exists() && sha256_file(&dst)?.0 == e.sha256 {
            present += 1;
            continue;
        }
        let got = match from {
            Some(dir) => atomic_copy(&dir.join(&e.path), &dst),
            None => download(&e.url, &dst),
        };
        if let Err(err) = got {
            failed.push(err);
            continue;
        }
        let (sha, n) = sha256_file(&dst)?;
        if sha != e.sha256 || n != e.bytes {
            let _ = fs::remove_file(&dst);
            failed.push(format!(
                "{}: checksum mismatch (got {sha}, {n} bytes; expected {}, {} bytes)",
                e.path, e.sha256, e.bytes
            ));
            continue;
        }
        copied += 1;
    }
    println!(
        "fetch-data: {copied} fetched, {present} already present, {} failed, into {}",
        failed.len(),
        dest.display()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

/// One measured benchmark from criterion's output folder.
#[derive(serde::Serialize)]
struct Row {
    group: String,
    function: String,
    size: String,
    seconds: f64,
    fft_seconds: Option<f64>,
    ratio_to_fft: Option<f64>,
    peak_mib: Option<f64>,
}

fn bench(
    quick: bool,
    only: Option<String>,
    report_only: bool,
    extra: &[String],
) -> Result<(), String> {
    let root = workspace_root();
    if !report_only {
        run_benches(&root, quick, only.as_deref(), extra)?;
    }
    let crit = root.join("target/criterion");
    let mut rows = collect_rows(&crit)?;
    attach_peak_memory(&root, &mut rows);
    let md = render_markdown(&rows);
    println!("{md}");
    let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
    fs::write(root.join("target/bench-report.json"), json).map_err(|e| e.to_string())?;
    fs::write(root.join("target/bench-report.md"), &md).map_err(|e| e.to_string())?;
    eprintln!("wrote target/bench-report.md and target/bench-report.json");
    Ok(())
}

fn run_benches(
    root: &Path,
    quick: bool,
    only: Option<&str>,
    extra: &[String],
) -> Result<(), String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root)
        .args(["bench", "-p", "diffim-benches"]);
    if let Some(o) = &only {
        let benches_dir = root.join("benches/benches");
        let mut any = false;
        for ent in fs::read_dir(&benches_dir)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let name = ent.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".rs")
                && stem.contains(o)
            {
                cmd.args(["--bench", stem]);
                any = true;
            }
        }
        if !any {
            return Err(format!("no bench file matches {o:?}"));
        }
    }
    cmd.arg("--");
    if quick {
        cmd.arg("--quick");
    }
    cmd.args(extra);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !status.success() {
        return Err(format!("cargo bench failed ({status})"));
    }
    // The peak-memory helper runs each `subtract` case once in a fresh process.
    let built = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "diffim-benches",
            "--bin",
            "peakmem",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !built {
        eprintln!("xtask: could not build peakmem; the table will have no memory column");
    }
    Ok(())
}

/// Reads `target/criterion/<group>/<function>/<size>/new/estimates.json` (mean point estimate).
fn collect_rows(crit: &Path) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let groups = fs::read_dir(crit).map_err(|e| format!("{}: {e}", crit.display()))?;
    for g in groups.flatten().filter(|g| g.path().is_dir()) {
        let group = g.file_name().to_string_lossy().to_string();
        if group == "report" {
            continue;
        }
        for f in fs::read_dir(g.path()).map_err(|e| e.to_string())?.flatten() {
            let function = f.file_name().to_string_lossy().to_string();
            if function == "report" || !f.path().is_dir() {
                continue;
            }
            let direct = f.path().join("new/estimates.json");
            let mut cases: Vec<(String, PathBuf)> = Vec::new();
            if direct.exists() {
                cases.push((String::new(), direct));
            } else {
                for s in fs::read_dir(f.path()).map_err(|e| e.to_string())?.flatten() {
                    let est = s.path().join("new/estimates.json");
                    if est.exists() {
                        cases.push((s.file_name().to_string_lossy().to_string(), est));
                    }
                }
            }
            for (size, est) in cases {
                // Benches that put the size in the function name (`subtract_2048`) get it split
                // off, so that the yardstick of the same size is found.
                let (function, size) = split_size(&function, size);
                let text = fs::read_to_string(&est).map_err(|e| e.to_string())?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| e.to_string())?;
                let Some(ns) = v["mean"]["point_estimate"].as_f64() else {
                    continue;
                };
                rows.push(Row {
                    group: group.clone(),
                    function,
                    size,
                    seconds: ns * 1e-9,
                    fft_seconds: None,
                    ratio_to_fft: None,
                    peak_mib: None,
                });
            }
        }
    }
    rows.sort_by(|a, b| {
        (a.group.as_str(), size_key(&a.size), a.function.as_str()).cmp(&(
            b.group.as_str(),
            size_key(&b.size),
            b.function.as_str(),
        ))
    });
    // Ratio to the FFT yardstick of the same group and size.
    let yard: Vec<(String, String, f64)> = rows
        .iter()
        .filter(|r| r.function.to_ascii_lowercase().contains("fft"))
        .map(|r| (r.group.clone(), r.size.clone(), r.seconds))
        .collect();
    for r in rows.iter_mut() {
        if let Some((_, _, t)) = yard.iter().find(|(g, s, _)| *g == r.group && *s == r.size) {
            r.fft_seconds = Some(*t);
            r.ratio_to_fft = Some(r.seconds / t);
        }
    }
    Ok(rows)
}

/// `("subtract_2048", "")` -> `("subtract", "2048")`; other names are kept.
fn split_size(function: &str, size: String) -> (String, String) {
    if size.is_empty()
        && let Some((head, tail)) = function.rsplit_once('_')
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        return (head.to_string(), tail.to_string());
    }
    (function.to_string(), size)
}

fn size_key(s: &str) -> (u64, String) {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    (digits.parse().unwrap_or(u64::MAX), s.to_string())
}

/// Peak memory per (function, size) from the `peakmem` helper binary of diffim-benches, which
/// runs one case in a fresh process and reports its high-water mark (VmHWM).
fn attach_peak_memory(root: &Path, rows: &mut [Row]) {
    let bin = root.join("target/release/peakmem");
    if !bin.exists() {
        return;
    }
    for r in rows.iter_mut() {
        let Ok(out) = Command::new(&bin)
            .args([&r.group, &r.function, &r.size])
            .output()
        else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        r.peak_mib = text.trim().parse().ok();
    }
}

fn render_markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| group | function | size | seconds | peak MiB | FFT seconds | ratio to FFT |\n\
         |---|---|---|---:|---:|---:|---:|\n",
    );
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {} | {} | {} |\n",
            r.group,
            r.function,
            if r.size.is_empty() { "-" } else { &r.size },
            r.seconds,
            opt(r.peak_mib, 0),
            opt(r.fft_seconds, 4),
            opt(r.ratio_to_fft, 1),
        ));
    }
    s
}
