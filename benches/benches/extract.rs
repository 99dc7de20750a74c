//! source-extract speed against the FFT yardstick.
//!
//! Group `extract/<size>`: `background` (mesh background + RMS maps), `background_detect`
//! (background + RMS + detection + measurement, the whole catalogue), `noise_model`, and
//! `fft2_forward_f32` (one 2-D real forward FFT of the same image) so results can be quoted
//! as ms per megapixel and as a multiple of an FFT.
//!
//! Group `extract/real`: `background_detect` on the real 1024x682 ProperImage frame
//! `properimage/aligned_eso085-030-005.fit` (`$DIFFIM_DATA`, else `data/real`; skipped when
//! missing) with its own FFT yardstick.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use diffim::core::fft::Fft2;
use sky_sim::{SimConfig, simulate};
use source_extract::{
    BackgroundParams, DetectParams, NoiseParams, detect, estimate_background, noise_model,
};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

/// A real data file (`$DIFFIM_DATA`, else `data/real`), if present: benches skip what is
/// missing instead of failing.
fn data(sub: &str) -> Option<PathBuf> {
    let p = diffim::core::testdata::data_dir().join(sub);
    p.exists().then_some(p)
}

fn bench_extract_real(c: &mut Criterion) {
    let Some(path) = data("properimage/aligned_eso085-030-005.fit") else {
        eprintln!("properimage data not found (set DIFFIM_DATA); skipping extract/real");
        return;
    };
    let Ok(img) = diffim::fits::read_image::<f32>(&path, &diffim::fits::Hdu::Primary) else {
        return;
    };
    let img = img.data;
    let (ny, nx) = img.dim();
    let mut g = c.benchmark_group("extract/real");
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    let bp = BackgroundParams::default();
    let dp = DetectParams::default();
    g.bench_function(
        BenchmarkId::new("background_detect", "eso085-030-005"),
        |b| {
            b.iter(|| {
                let bg = estimate_background(black_box(&img.view()), None, &bp).unwrap();
                detect(&img.view(), &bg, None, &dp).unwrap()
            })
        },
    );
    let fft = Fft2::<f32>::new(ny, nx);
    g.bench_function(
        BenchmarkId::new("fft2_forward_f32", "eso085-030-005"),
        |b| b.iter(|| fft.forward(black_box(&img.view()))),
    );
    g.finish();
}

fn bench_extract(c: &mut Criterion) {
    for n in [1024usize, 4096] {
        let img = simulate(&SimConfig::default().with_size(n, n).with_seed(1))
            .unwrap()
            .science;
        let mut g = c.benchmark_group(format!("extract/{n}"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(if n > 2048 { 15 } else { 4 }));
        let bp = BackgroundParams::default();
        let dp = DetectParams::default();
        g.bench_function(BenchmarkId::new("background", n), |b| {
            b.iter(|| estimate_background(black_box(&img.view()), None, &bp).unwrap())
        });
        g.bench_function(BenchmarkId::new("background_detect", n), |b| {
            b.iter(|| {
                let bg = estimate_background(black_box(&img.view()), None, &bp).unwrap();
                detect(&img.view(), &bg, None, &dp).unwrap()
            })
        });
        let bg = estimate_background(&img.view(), None, &bp).unwrap();
        g.bench_function(BenchmarkId::new("noise_model", n), |b| {
            b.iter(|| {
                noise_model(
                    black_box(&img.view()),
                    &bg,
                    None,
                    2.0,
                    &NoiseParams::default(),
                )
                .unwrap()
            })
        });
        let fft = Fft2::<f32>::new(n, n);
        g.bench_function(BenchmarkId::new("fft2_forward_f32", n), |b| {
            b.iter(|| fft.forward(black_box(&img.view())))
        });
        g.finish();
    }
}

criterion_group!(benches, bench_extract, bench_extract_real);
criterion_main!(benches);
