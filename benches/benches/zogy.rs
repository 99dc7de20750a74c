//! ZOGY benchmarks: the real properimage pair (1024x682) and a synthetic 4096^2 pair, each
//! with the yardstick of one `f32` 2-D FFT of the padded size.
//!
//! `cargo bench -p diffim-benches --bench zogy -- --quick`

use criterion::{Criterion, criterion_group, criterion_main};
use diffim::core::fft::Fft2;
use diffim::core::psf::gaussian_stamp;
use diffim::ndarray::Array2;
use diffim::subtract::SubtractInputs;
use diffim::subtract::zogy::{ZogyOptions, subtract_zogy};
use diffim::zogy::{BetaMode, ZogyInputs, ZogyParams, zogy};
use std::hint::black_box;
use std::path::PathBuf;

/// A real data file (`$DIFFIM_DATA`, else `data/real`), if present: benches skip what is
/// missing instead of failing.
fn data(sub: &str) -> Option<PathBuf> {
    let p = diffim::core::testdata::data_dir().join(sub);
    p.exists().then_some(p)
}

fn properimage(c: &mut Criterion) {
    let (Some(a), Some(b)) = (
        data("properimage/aligned_eso085-030-005.fit"),
        data("properimage/aligned_eso085-030-004.fit"),
    ) else {
        eprintln!("properimage data not found (set DIFFIM_DATA); skipping");
        return;
    };
    let hdu = diffim::fits::Hdu::Primary;
    let (Ok(n), Ok(r)) = (
        diffim::fits::read_image::<f32>(&a, &hdu),
        diffim::fits::read_image::<f32>(&b, &hdu),
    ) else {
        return;
    };
    let (n, r) = (n.data, r.data);
    let mut g = c.benchmark_group("zogy_properimage_1024x682");
    g.sample_size(10);
    let mut inputs = SubtractInputs::new(n.view(), r.view());
    inputs.science_saturation = Some(65_000.0);
    inputs.template_saturation = Some(65_000.0);
    inputs.science_gain = Some(1.35);
    inputs.template_gain = Some(1.52);
    let opts = ZogyOptions::default();
    if let Ok(res) = subtract_zogy(&inputs, &opts) {
        let pad = res.diagnostics["zogy"]["pad_shape"].clone();
        eprintln!("properimage: diagnostics {}", res.diagnostics);
        if let (Some(py), Some(px)) = (pad[0].as_u64(), pad[1].as_u64()) {
            let f = Fft2::<f32>::new(py as usize, px as usize);
            let a = Array2::<f32>::ones((py as usize, px as usize));
            g.bench_function(format!("fft_f32_{py}x{px}_yardstick"), |bch| {
                bch.iter(|| black_box(f.forward(&a.view())))
            });
        }
    }
    let f = Fft2::<f32>::new(1050, 700);
    let one = Array2::<f32>::ones((1050, 700));
    g.bench_function("fft_f32_1050x700_yardstick", |bch| {
        bch.iter(|| black_box(f.forward(&one.view())))
    });
    g.bench_function("subtract_zogy_with_psf_estimation", |bch| {
        bch.iter(|| black_box(subtract_zogy(&inputs, &opts).map(|s| s.diff.len())))
    });
    g.finish();
}

fn synthetic(c: &mut Criterion, n: usize) {
    let p = gaussian_stamp(25, 4.0, 0.0, 0.0);
    let q = gaussian_stamp(25, 3.0, 0.0, 0.0);
    let img = Array2::from_shape_fn((n, n), |(y, x)| {
        (((x * 7919 + y * 104_729) % 1009) as f32 / 1009.0 - 0.5) * 3.46
    });
    let noise = Array2::from_elem((n, n), 1.0f32);
    let mut g = c.benchmark_group(format!("zogy_synthetic_{n}"));
    g.sample_size(10);
    let params = ZogyParams {
        beta: BetaMode::Fixed(1.0),
        ..Default::default()
    };
    let plain = ZogyInputs {
        sigma_new: Some(1.0),
        sigma_ref: Some(1.0),
        ..ZogyInputs::new(img.view(), img.view(), &p, &q)
    };
    // The image-size FFT (the README's yardstick) and the padded tile's.
    let f = Fft2::<f32>::new(n, n);
    g.bench_function(format!("fft_f32_{n}x{n}_yardstick"), |bch| {
        bch.iter(|| black_box(f.forward(&img.view())))
    });
    if let Ok(r) = zogy(&plain, &params) {
        let (py, px) = r.diagnostics.pad_shape;
        let f = Fft2::<f32>::new(py, px);
        let a = Array2::<f32>::ones((py, px));
        g.bench_function(format!("fft_f32_{py}x{px}_yardstick"), |bch| {
            bch.iter(|| black_box(f.forward(&a.view())))
        });
    }
    g.bench_function("zogy_core_no_noise_maps_6_ffts", |bch| {
        bch.iter(|| black_box(zogy(&plain, &params).map(|r| r.beta)))
    });
    let full = ZogyInputs {
        new_noise: Some(noise.view()),
        ref_noise: Some(noise.view()),
        ..ZogyInputs::new(img.view(), img.view(), &p, &q)
    };
    g.bench_function("zogy_core_noise_maps_11_ffts", |bch| {
        bch.iter(|| black_box(zogy(&full, &params).map(|r| r.beta)))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    properimage(c);
    synthetic(c, 1024);
    synthetic(c, 4096);
}

criterion_group!(zogy_benches, benches);
criterion_main!(zogy_benches);
