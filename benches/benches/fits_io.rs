//! fits-io speed against the FFT yardstick.
//!
//! Group `fits_io/<size>`: `write_f32` (build in memory, temp file, fsync, rename),
//! `read_f32` (whole image with scaling), `read_header`, and `fft2_forward_f32` (one 2-D real
//! forward FFT of the same image) so I/O can be quoted as a multiple of an FFT.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use diffim::core::fft::Fft2;
use diffim::fits::{Hdu, Header, WriteOptions, read_header, read_image, write_image};
use diffim::ndarray::Array2;
use std::hint::black_box;
use std::time::Duration;

fn bench_fits_io(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("diffim-bench-fits-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for n in [1024usize, 4096] {
        let img = Array2::from_shape_fn((n, n), |(y, x)| ((x * 7 + y * 13) % 1000) as f32 * 0.5);
        let mut header = Header::new();
        header.set("GAIN", 1.5);
        let path = dir.join(format!("bench_{n}.fits"));
        write_image(&path, &img.view(), &header, WriteOptions::overwrite()).unwrap();

        let mut g = c.benchmark_group(format!("fits_io/{n}"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(if n > 2048 { 10 } else { 3 }));
        g.bench_function(BenchmarkId::new("write_f32", n), |b| {
            b.iter(|| {
                write_image(
                    &path,
                    black_box(&img.view()),
                    &header,
                    WriteOptions::overwrite(),
                )
                .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("read_f32", n), |b| {
            b.iter(|| read_image::<f32>(black_box(&path), &Hdu::Primary).unwrap())
        });
        g.bench_function(BenchmarkId::new("read_header", n), |b| {
            b.iter(|| read_header(black_box(&path), &Hdu::Primary).unwrap())
        });
        let fft = Fft2::<f32>::new(n, n);
        g.bench_function(BenchmarkId::new("fft2_forward_f32", n), |b| {
            b.iter(|| fft.forward(black_box(&img.view())))
        });
        g.finish();
    }
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, bench_fits_io);
criterion_main!(benches);
