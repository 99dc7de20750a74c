//! Times the phases of `sfft_core::subtract` on a sky-sim `sfft_issue` pair and prints the
//! largest flux-scale error on a 9x9 grid of positions.
//!
//! `cargo run --release -p sfft-core --example sfft_profile -- SIZE [KERNEL_SIDE|0] [SEED] [REPEATS]`
//! (KERNEL_SIDE 0 = `auto_kernel`). Environment: `SFFT_ITER`, `SFFT_STAMPS`, `SFFT_CLIP`,
//! `SFFT_OBJ` override `max_iter`, `max_stamps`, `sigma_clip`, `obj_size`; `SFFT_SUBBG`
//! subtracts the true skies first; `SFFT_NOISELESS` simulates without noise; `SFFT_MAP` prints
//! a 5x5 map of the flux-scale error (%). `RAYON_NUM_THREADS=1` for single-thread timings.
#![allow(clippy::unwrap_used)]

use sfft_core::{SfftInputs, SfftParams, subtract};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let k: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(7);
    let seed: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(7);
    let reps: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(2);
    let mut cfg = sky_sim::SimConfig::sfft_issue()
        .with_size(n, n)
        .with_seed(seed);
    if std::env::var("SFFT_NOISELESS").is_ok() {
        cfg = cfg.noiseless();
    }
    let pair = sky_sim::simulate(&cfg).unwrap();
    let (mut sci, mut tmpl) = (pair.science.clone(), pair.template.clone());
    if std::env::var("SFFT_SUBBG").is_ok() {
        sci -= &pair.science_background();
        tmpl -= &pair.template_background();
    }
    let inputs = SfftInputs {
        science_mask: Some(pair.science_mask.view()),
        template_mask: Some(pair.template_mask.view()),
        science_noise: Some(pair.science_noise.view()),
        template_noise: Some(pair.template_noise.view()),
        ..SfftInputs::new(sci.view(), tmpl.view())
    };
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    let mut params = SfftParams {
        kernel_shape: (k.max(1) | 1, k.max(1) | 1),
        auto_kernel: k == 0,
        ..SfftParams::default()
    };
    if let Some(v) = env("SFFT_ITER") {
        params.max_iter = v as usize;
    }
    if let Some(v) = env("SFFT_STAMPS") {
        params.max_stamps = v as usize;
    }
    if let Some(v) = env("SFFT_CLIP") {
        params.sigma_clip = v;
    }
    if let Some(v) = env("SFFT_OBJ") {
        params.obj_size = Some(v as usize);
    }
    for _ in 0..reps {
        let t0 = std::time::Instant::now();
        let r = subtract(&inputs, &params).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        println!("{n}^2: {dt:.3} s; {:?}", r.summary());
        let mut err = 0.0f64;
        for j in 0..9 {
            for i in 0..9 {
                let (x, y) = (
                    i as f64 * (n - 1) as f64 / 8.0,
                    j as f64 * (n - 1) as f64 / 8.0,
                );
                err = err.max((r.flux_scale_at(x, y) / pair.flux_scale_at(x, y) - 1.0).abs());
            }
        }
        println!("  max flux-scale error {:.4}%", 100.0 * err);
        if std::env::var("SFFT_MAP").is_ok() {
            for j in (0..5).rev() {
                let row: Vec<String> = (0..5)
                    .map(|i| {
                        let (x, y) = (
                            i as f64 * (n - 1) as f64 / 4.0,
                            j as f64 * (n - 1) as f64 / 4.0,
                        );
                        format!(
                            "{:+.3}",
                            100.0 * (r.flux_scale_at(x, y) / pair.flux_scale_at(x, y) - 1.0)
                        )
                    })
                    .collect();
                println!("    {}", row.join(" "));
            }
        }
        for (name, t) in &r.timings {
            println!("  {name:18} {t:.3}");
        }
    }
}
