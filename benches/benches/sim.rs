//! sky-sim generation time against the FFT yardstick.
//!
//! Group `sim/<size>`: `simulate_default` (Gaussian PSFs), `simulate_varying_psf` (Moffat
//! science PSF, heavier wings) and `fft2_forward_f32` (one 2-D real forward FFT of the same
//! size) so results can be quoted as a multiple of an FFT.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use diffim::core::fft::Fft2;
use diffim::sim::{SimConfig, simulate};
use std::hint::black_box;
use std::time::Duration;

fn bench_sim(c: &mut Criterion) {
    for n in [1024usize, 4096] {
        let mut g = c.benchmark_group(format!("sim/{n}"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(if n > 2048 { 20 } else { 5 }));
        let default = SimConfig::default().with_size(n, n);
        let varying = SimConfig::varying_psf().with_size(n, n);
        g.bench_function(BenchmarkId::new("simulate_default", n), |b| {
            b.iter(|| simulate(black_box(&default)).unwrap())
        });
        g.bench_function(BenchmarkId::new("simulate_varying_psf", n), |b| {
            b.iter(|| simulate(black_box(&varying)).unwrap())
        });
        let img = simulate(&default.clone().with_size(n, n)).unwrap().science;
        let fft = Fft2::<f32>::new(n, n);
        g.bench_function(BenchmarkId::new("fft2_forward_f32", n), |b| {
            b.iter(|| fft.forward(black_box(&img.view())))
        });
        g.finish();
    }
}

criterion_group!(benches, bench_sim);
criterion_main!(benches);
