//! The whole subtraction per method and image size (sky-sim pairs; background, noise, PSF and
//! star estimation included), with the yardstick of one `f32` 2-D FFT of the same size.
//!
//! `cargo xtask bench --only subtract` (sizes: `DIFFIM_BENCH_SIZES=1024,2048,4096`).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use diffim::core::fft::Fft2;
use diffim::subtract::Method;
use std::hint::black_box;

fn subtract(c: &mut Criterion) {
    let mut g = c.benchmark_group("subtract");
    g.sample_size(10);
    for size in diffim_benches::sizes() {
        let Ok(pair) = diffim_benches::pair(size) else {
            eprintln!("cannot simulate a {size}^2 pair; skipping");
            continue;
        };
        let fft = Fft2::<f32>::new(size, size);
        g.bench_with_input(BenchmarkId::new("fft2_yardstick", size), &size, |b, _| {
            b.iter(|| black_box(fft.forward(&pair.science.view())))
        });
        for method in [Method::Zogy, Method::Sfft] {
            if diffim_benches::run(method, &pair).is_err() {
                eprintln!("{method} fails at {size}^2; skipping");
                continue;
            }
            g.bench_with_input(BenchmarkId::new(method.to_string(), size), &size, |b, _| {
                b.iter(|| black_box(diffim_benches::run(method, &pair).map(|s| s.diff.len())))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, subtract);
criterion_main!(benches);
