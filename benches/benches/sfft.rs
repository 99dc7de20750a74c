//! SFFT subtraction (sfft-core) on sky-sim `sfft_issue` pairs, against the yardstick of one
//! 2-D forward FFT (`Fft2::<f32>::forward`) of the same size.
//!
//! Run: `cargo bench -p diffim-benches --bench sfft -- --quick` (sizes 1024,2048,4096; set
//! `SFFT_BENCH_SIZES=1024,2048` to choose). `subtract_N` uses `SfftParams::default()` (STDPipe's
//! fixed 7x7 kernel); `SFFT_BENCH_AUTO=1` adds `subtract_auto_N` with `auto_kernel = true`
//! (9x9 on these pairs, what the diffim facade uses). Set `RAYON_NUM_THREADS` to pin threads.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use diffim_core::fft::Fft2;
use sfft_core::{SfftInputs, SfftParams, subtract};
use std::hint::black_box;
use std::time::Duration;

fn sizes() -> Vec<usize> {
    std::env::var("SFFT_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1024, 2048, 4096])
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sfft");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for n in sizes() {
        let cfg = sky_sim::SimConfig::sfft_issue()
            .with_size(n, n)
            .with_seed(7);
        let pair = sky_sim::simulate(&cfg).unwrap();
        let inputs = SfftInputs {
            science_mask: Some(pair.science_mask.view()),
            template_mask: Some(pair.template_mask.view()),
            science_noise: Some(pair.science_noise.view()),
            template_noise: Some(pair.template_noise.view()),
            ..SfftInputs::new(pair.science.view(), pair.template.view())
        };
        let params = SfftParams::default();
        g.bench_function(format!("subtract_{n}"), |b| {
            b.iter(|| black_box(subtract(&inputs, &params).unwrap()))
        });
        if std::env::var("SFFT_BENCH_AUTO").is_ok() {
            let auto = SfftParams {
                auto_kernel: true,
                ..SfftParams::default()
            };
            g.bench_function(format!("subtract_auto_{n}"), |b| {
                b.iter(|| black_box(subtract(&inputs, &auto).unwrap()))
            });
        }
        let fft = Fft2::<f32>::new(n, n);
        g.bench_function(format!("fft2_forward_{n}"), |b| {
            b.iter(|| black_box(fft.forward(&pair.science.view())))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
