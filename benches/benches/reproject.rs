//! wcs-grid reprojection speed against the FFT yardstick.
//!
//! Group `reproject/<n>`: reprojection of an n x n f32 image onto a rotated (17 deg), shifted
//! (about 40 px), slightly rescaled n x n TAN grid with `lanczos3`, `bilinear` and `nearest`,
//! `coord_map` (the exact-on-nodes coordinate map alone), and `fft2_forward_f32` (one 2-D real
//! forward FFT of the same size) so results can be quoted as a multiple of an FFT.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use diffim_core::fft::Fft2;
use ndarray::Array2;
use std::hint::black_box;
use std::time::Duration;
use wcs_grid::{CoordMap, Grid, Interpolation, ReprojectParams, reproject};

fn bench_reproject(c: &mut Criterion) {
    for n in [4096usize] {
        let src = Grid::from_center(150.0, 2.2, n, n, 0.25, 0.0).unwrap();
        let dst =
            Grid::from_center(150.0 + 10.0 / 3600.0, 2.2 - 6.0 / 3600.0, n, n, 0.26, 17.0).unwrap();
        let img = Array2::from_shape_fn((n, n), |(y, x)| {
            100.0 + 10.0 * ((x as f32) * 0.01).sin() * ((y as f32) * 0.013).cos()
        });
        let mut g = c.benchmark_group(format!("reproject/{n}"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(8));
        for (name, method) in [
            ("lanczos3", Interpolation::Lanczos3),
            ("bilinear", Interpolation::Bilinear),
            ("nearest", Interpolation::Nearest),
        ] {
            let p = ReprojectParams {
                interpolation: method,
                ..Default::default()
            };
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| reproject(black_box(&img.view()), None, &src, &dst, &p).unwrap())
            });
        }
        g.bench_function(BenchmarkId::new("coord_map", n), |b| {
            b.iter(|| CoordMap::new(black_box(&src), &dst, 16, 1e-4, false).unwrap())
        });
        let fft = Fft2::<f32>::new(n, n);
        g.bench_function(BenchmarkId::new("fft2_forward_f32", n), |b| {
            b.iter(|| fft.forward(black_box(&img.view())))
        });
        g.finish();
    }
}

criterion_group!(benches, bench_reproject);
criterion_main!(benches);
