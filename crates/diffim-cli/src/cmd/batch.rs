//! `diffim batch`: the pipeline on many pairs from a CSV manifest, in parallel, resumably.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use diffim::fits::{WriteOptions, write_atomic};
use diffim::pipeline::SUMMARY_FILE;
use rayon::prelude::*;
use serde::Serialize;

use crate::cmd::pipeline::run_pair;
use crate::common::{PairFiles, PairInputs, load_image, say};
use crate::{CliError, Context, Ctx};

/// Run the pipeline on every pair of a CSV manifest, several at a time, into `DIR/<name>/`.
///
/// Manifest columns (header row required): `science`, `template` (paths, relative to the
/// manifest's folder or absolute), and optionally `name` (output sub-folder; default the row
/// number), `mask`, `template_mask`, `gain`, `template_gain` (default: the GAIN keyword, else
/// estimated from the sky, as in `diffim subtract`). A pair whose folder already holds
/// summary.json (written last, atomically) is complete and skipped, so a killed batch resumes
/// where it stopped. DIR/batch_summary.csv and .json list every pair's status.
///
/// Survey scale: run one pair per scheduler task with `--index`, e.g. a Slurm array
/// (`#SBATCH --array=0-999` then `diffim batch m.csv --out runs --index $SLURM_ARRAY_TASK_ID`)
/// or a Kubernetes Indexed Job (`--index $JOB_COMPLETION_INDEX`), or split the manifest with
/// `--shard I/N`; afterwards `diffim batch m.csv --out runs --summarize` writes the summary.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  diffim batch pairs.csv --out runs --jobs 4 --method sfft\n  \
diffim batch pairs.csv --out runs --index $SLURM_ARRAY_TASK_ID\n  diffim batch pairs.csv --out runs --summarize"
)]
pub struct Args {
    /// CSV manifest with columns science, template [, name, mask, template_mask, gain, template_gain].
    pub manifest: PathBuf,
    /// Output folder (one sub-folder per pair).
    #[arg(long)]
    pub out: PathBuf,
    /// Pairs processed at the same time (default: 1; each pair uses every core).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Subtraction method: sfft, zogy or hotpants. SFFT is the default: on simulated pairs
    /// it has no false candidates at bright stars, where ZOGY still leaves some (issue 6).
    #[arg(long, default_value = "sfft")]
    pub method: String,
    /// Detection threshold on the significance image, sigma.
    #[arg(long, default_value_t = 5.0)]
    pub threshold: f64,
    /// Process only manifest row K (0-based, header excluded): one scheduler array task.
    #[arg(long, conflicts_with = "shard")]
    pub index: Option<usize>,
    /// Process only rows with row % N == I, given as I/N.
    #[arg(long)]
    pub shard: Option<String>,
    /// Redo pairs even when they are complete.
    #[arg(long)]
    pub force: bool,
    /// Do not run anything: only collect the pairs' summaries into batch_summary.csv/json.
    #[arg(long)]
    pub summarize: bool,
    /// Path of the hotpants executable.
    #[arg(long)]
    pub hotpants: Option<PathBuf>,
}

/// One manifest row.
#[derive(Debug, Clone)]
struct Row {
    index: usize,
    name: String,
    science: PathBuf,
    template: PathBuf,
    mask: Option<PathBuf>,
    template_mask: Option<PathBuf>,
    gain: Option<f64>,
    template_gain: Option<f64>,
}

/// The outcome of one pair, as listed in batch_summary.
#[derive(Debug, Clone, Serialize)]
struct Status {
    index: usize,
    name: String,
    science: String,
    template: String,
    status: String,
    candidates: Option<usize>,
    seconds: Option<f64>,
    error: Option<String>,
}

fn read_manifest(path: &Path) -> Result<Vec<Row>, CliError> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut rd = csv::Reader::from_path(path).context(path.display())?;
    let headers: Vec<String> = rd
        .headers()
        .context(path.display())?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(ci_s), Some(ci_t)) = (col("science"), col("template")) else {
        return Err(CliError::failure(format!(
            "{}: the manifest needs `science` and `template` columns (found {headers:?})",
            path.display()
        )));
    };
    let resolve = |s: &str| {
        let p = PathBuf::from(s.trim());
        if p.is_absolute() { p } else { base.join(p) }
    };
    let mut rows = Vec::new();
    for (index, rec) in rd.records().enumerate() {
        let rec = rec.context(path.display())?;
        let get = |c: Option<usize>| {
            c.and_then(|i| rec.get(i))
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let num = |c: Option<usize>, what: &str| -> Result<Option<f64>, CliError> {
            get(c)
                .map(|s| {
                    s.parse::<f64>().map_err(|_| {
                        CliError::failure(format!(
                            "{} row {}: bad {what} {s:?}",
                            path.display(),
                            index + 1
                        ))
                    })
                })
                .transpose()
        };
        let (Some(sci), Some(tmpl)) = (get(Some(ci_s)), get(Some(ci_t))) else {
            return Err(CliError::failure(format!(
                "{} row {}: science and template are required",
                path.display(),
                index + 1
            )));
        };
        let name = get(col("name")).map_or_else(|| format!("{index:05}"), str::to_string);
        if name.contains('/') || name.contains('\\') || name == ".." || name == "." {
            return Err(CliError::failure(format!(
                "{} row {}: bad name {name:?}",
                path.display(),
                index + 1
            )));
        }
        rows.push(Row {
            index,
            name,
            science: resolve(sci),
            template: resolve(tmpl),
            mask: get(col("mask")).map(resolve),
            template_mask: get(col("template_mask")).map(resolve),
            gain: num(col("gain"), "gain")?,
            template_gain: num(col("template_gain"), "template_gain")?,
        });
    }
    Ok(rows)
}

fn parse_shard(s: &str) -> Result<(usize, usize), CliError> {
    let bad = || CliError::usage(format!("--shard wants I/N with 0 <= I < N, got {s:?}"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

fn status_of(row: &Row, dir: &Path) -> Status {
    let mut st = Status {
        index: row.index,
        name: row.name.clone(),
        science: row.science.display().to_string(),
        template: row.template.display().to_string(),
        status: "pending".into(),
        candidates: None,
        seconds: None,
        error: None,
    };
    if let Ok(text) = std::fs::read_to_string(dir.join(SUMMARY_FILE))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
    {
        st.status = "done".into();
        st.candidates = v["n_candidates"].as_u64().map(|n| n as usize);
        st.seconds = v["timings_s"]["total"].as_f64();
    }
    st
}

fn run_row(
    row: &Row,
    dir: &Path,
    params: &diffim::pipeline::PipelineParams,
    ctx: &Ctx,
) -> Result<usize, CliError> {
    let files = PairFiles {
        mask: row.mask.as_deref(),
        template_mask: row.template_mask.as_deref(),
        gain: row.gain,
        template_gain: row.template_gain,
        ..Default::default()
    };
    let quiet = Ctx {
        quiet: true,
        json: false,
        progress: false,
    };
    let pair = PairInputs::load(
        load_image(&row.science)?,
        load_image(&row.template)?,
        &files,
        &quiet,
    )?;
    // Outputs of an interrupted earlier attempt are replaced.
    let params = diffim::pipeline::PipelineParams {
        overwrite: true,
        ..params.clone()
    };
    let _ = ctx;
    let res = run_pair(&pair, &params, dir, &quiet)?;
    Ok(res.candidates.len())
}

fn write_summary(out: &Path, statuses: &[Status]) -> Result<(), CliError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for s in statuses {
        w.serialize(s)
            .map_err(|e| CliError::failure(format!("batch_summary.csv: {e}")))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| CliError::failure(format!("batch_summary.csv: {e}")))?;
    write_atomic(
        &out.join("batch_summary.csv"),
        &bytes,
        WriteOptions::overwrite(),
    )?;
    let json =
        serde_json::to_string_pretty(statuses).map_err(|e| CliError::failure(e.to_string()))?;
    write_atomic(
        &out.join("batch_summary.json"),
        json.as_bytes(),
        WriteOptions::overwrite(),
    )?;
    Ok(())
}

/// Runs `diffim batch`.
pub fn run(args: &Args, ctx: &Ctx) -> Result<(), CliError> {
    let method: diffim::subtract::Method = args
        .method
        .parse()
        .map_err(|e: diffim::subtract::SubtractError| CliError::usage(e.to_string()))?;
    let mut params = diffim::pipeline::PipelineParams {
        method,
        ..Default::default()
    };
    params.candidates.threshold = args.threshold;
    params.hotpants = args.hotpants.clone();
    let rows = read_manifest(&args.manifest)?;
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    if let Some(k) = args.index
        && k >= rows.len()
    {
        return Err(CliError::usage(format!(
            "--index {k}: the manifest has {} rows",
            rows.len()
        )));
    }
    std::fs::create_dir_all(&args.out).context(args.out.display())?;
    let selected: Vec<&Row> = rows
        .iter()
        .filter(|r| args.index.is_none_or(|k| r.index == k))
        .filter(|r| shard.is_none_or(|(i, n)| r.index % n == i))
        .collect();
    let statuses: Mutex<Vec<Status>> = Mutex::new(Vec::new());
    if !args.summarize {
        let todo: Vec<&Row> = selected
            .iter()
            .copied()
            .filter(|r| args.force || status_of(r, &args.out.join(&r.name)).status != "done")
            .collect();
        say(
            ctx,
            format!(
                "{} pairs selected, {} to run, {} jobs",
                selected.len(),
                todo.len(),
                args.jobs.max(1)
            ),
        );
        let pb = if ctx.progress {
            indicatif::ProgressBar::new(todo.len() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(args.jobs.max(1))
            .build()
            .map_err(|e| CliError::failure(format!("thread pool: {e}")))?;
        pool.install(|| {
            todo.par_iter().for_each(|row| {
                let dir = args.out.join(&row.name);
                let t = Instant::now();
                let res = run_row(row, &dir, &params, ctx);
                let mut st = status_of(row, &dir);
                match res {
                    Ok(n) => {
                        st.status = "done".into();
                        st.candidates = Some(n);
                        st.seconds = Some(t.elapsed().as_secs_f64());
                    }
                    Err(e) => {
                        st.status = "failed".into();
                        st.error = Some(e.message.clone());
                        eprintln!("diffim: batch: {}: {e}", row.name);
                    }
                }
                if let Ok(mut v) = statuses.lock() {
                    v.push(st);
                }
                pb.inc(1);
            });
        });
        pb.finish_and_clear();
    }
    // The summary covers every row of the manifest: just-run rows with their outcome,
    // the others from what their folders hold.
    let ran = statuses.into_inner().unwrap_or_default();
    let all: Vec<Status> = rows
        .iter()
        .map(|r| {
            ran.iter()
                .find(|s| s.index == r.index)
                .cloned()
                .unwrap_or_else(|| status_of(r, &args.out.join(&r.name)))
        })
        .collect();
    write_summary(&args.out, &all)?;
    let count = |s: &str| all.iter().filter(|x| x.status == s).count();
    let (done, failed, pending) = (count("done"), count("failed"), count("pending"));
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"done": done, "failed": failed, "pending": pending, "out": args.out})
        );
    }
    say(
        ctx,
        format!(
            "batch: {done} done, {failed} failed, {pending} pending -> {}",
            args.out.join("batch_summary.csv").display()
        ),
    );
    if failed > 0 {
        return Err(CliError::failure(format!(
            "{failed} pair(s) failed (see batch_summary.csv)"
        )));
    }
    Ok(())
}
