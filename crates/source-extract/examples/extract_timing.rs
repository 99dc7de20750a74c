//! Times background + detection on a FITS image or a sky-sim frame, optionally writing the
//! catalogue as CSV (for before/after comparisons).
//!
//! ```text
//! cargo run --release -p source-extract --example extract_timing -- \
//!     /work/shared/data/properimage/aligned_eso085-030-005.fit [--reps 10] [--out cat.csv]
//! cargo run --release -p source-extract --example extract_timing -- --sim 4096 --reps 3
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use source_extract::{BackgroundParams, DetectParams, detect, estimate_background};
use std::io::Write;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut reps = 5usize;
    let mut out = None;
    let mut sim = None;
    let mut path = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--reps" => {
                reps = args[i + 1].parse().expect("--reps N");
                i += 1;
            }
            "--out" => {
                out = Some(args[i + 1].clone());
                i += 1;
            }
            "--sim" => {
                sim = Some(args[i + 1].parse::<usize>().expect("--sim N"));
                i += 1;
            }
            p => path = Some(p.to_string()),
        }
        i += 1;
    }
    let img = if let Some(n) = sim {
        sky_sim::simulate(&sky_sim::SimConfig::default().with_size(n, n).with_seed(1))
            .unwrap()
            .science
    } else {
        let p = path.expect("give a FITS path or --sim N");
        fits_io::read_image::<f32>(std::path::Path::new(&p), &fits_io::Hdu::Primary)
            .unwrap()
            .data
    };
    let bp = BackgroundParams::default();
    let dp = DetectParams::default();
    let (mut tb, mut tt) = (Vec::new(), Vec::new());
    let mut objs = Vec::new();
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let bg = estimate_background(&img.view(), None, &bp).unwrap();
        let t1 = Instant::now();
        objs = detect(&img.view(), &bg, None, &dp).unwrap();
        let t2 = Instant::now();
        tb.push((t1 - t0).as_secs_f64());
        tt.push((t2 - t0).as_secs_f64());
    }
    let stat = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (bmin, bmed) = stat(&mut tb);
    let (tmin, tmed) = stat(&mut tt);
    println!(
        "{}x{}: {} objects; background min {:.4} s median {:.4} s; background+detect min {:.4} s median {:.4} s ({} reps)",
        img.dim().1,
        img.dim().0,
        objs.len(),
        bmin,
        bmed,
        tmin,
        tmed,
        reps
    );
    if let Some(o) = out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(o).unwrap());
        writeln!(
            f,
            "x,y,flux,flux_err,background,peak,fwhm,a,b,theta,npix,flags"
        )
        .unwrap();
        for o in &objs {
            writeln!(
                f,
                "{:.9},{:.9},{:.9e},{:.9e},{:.9e},{:.9e},{:.9},{:.9},{:.9},{:.9},{},{}",
                o.x,
                o.y,
                o.flux,
                o.flux_err,
                o.background,
                o.peak,
                o.fwhm,
                o.a,
                o.b,
                o.theta,
                o.npix,
                o.flags
            )
            .unwrap();
        }
    }
}
