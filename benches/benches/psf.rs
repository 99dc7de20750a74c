//! psf-kl speed against the FFT yardstick.
//!
//! Group `psf/4096`: a 4096^2 varying-PSF sky-sim image with ~700 bright stars (about 500
//! pass the selection). `select_fit` = star selection + stamps + KL basis + coefficient
//! fields given the background and the catalogue; `estimate_psf` = the whole one-call
//! estimate (background, detection, selection, fit); `fft2_forward_f32` = one 2-D real
//! forward FFT of the same image (the yardstick). Group `psf/convolve_1024`: the varying-PSF
//! convolution of a 1024^2 image (`convolve_varying`: one shot, basis spectra included;
//! `convolver_prepared`: `VaryingConvolver::convolve` with the spectra and coefficient maps
//! prepared once = n_basis forward FFTs + 1 inverse of the padded size) against the FFT
//! yardstick of the same (unpadded) image. Group `psf/fwhm_19`: `measure_fwhm` (elliptical
//! Gaussian fit) of one noisy 19x19 star stamp (FWHM 3 px, peak S/N 1000, seeded noise)
//! against the FFT yardstick of a 128^2 image.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use diffim::core::fft::Fft2;
use diffim::psf::profile::measure_fwhm;
use diffim::psf::{KlParams, KlPsf, PsfEstimateParams, SelectParams, estimate_psf, select_stars};
use sky_sim::{SimConfig, simulate};
use source_extract::{BackgroundParams, DetectParams, detect, estimate_background};
use std::hint::black_box;
use std::time::Duration;

fn config(n: usize, n_stars: usize) -> SimConfig {
    let mut cfg = SimConfig::varying_psf().with_size(n, n).with_seed(3);
    cfg.n_stars = n_stars;
    cfg.star_flux_min = 60_000.0;
    cfg.star_flux_max = 400_000.0;
    cfg.n_transients = 0;
    cfg
}

/// A noisy 19x19 star stamp: peak 1000, FWHM 3 px, off-centre, unit Gaussian noise from a
/// seeded splitmix64 + Box-Muller stream.
fn noisy_stamp() -> ndarray::Array2<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut uniform = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut st = diffim_core::psf::gaussian_stamp(19, 3.0, 0.3, -0.2);
    let peak = st.iter().cloned().fold(0.0, f64::max);
    st.mapv_inplace(|v| v * 1000.0 / peak);
    for v in st.iter_mut() {
        let (u1, u2) = (uniform().max(1e-300), uniform());
        *v += (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    }
    st
}

fn bench_fwhm(c: &mut Criterion) {
    let st = noisy_stamp();
    eprintln!(
        "psf/fwhm_19: measured FWHM {:.4}",
        measure_fwhm(&st.view()).unwrap()
    );
    let mut g = c.benchmark_group("psf/fwhm_19");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("measure_fwhm", |b| {
        b.iter(|| measure_fwhm(black_box(&st.view())).unwrap())
    });
    let img = ndarray::Array2::from_shape_fn((128, 128), |(j, i)| ((i * 7 + j * 13) % 17) as f32);
    let fft = Fft2::<f32>::new(128, 128);
    g.bench_function("fft2_forward_f32_128", |b| {
        b.iter(|| fft.forward(black_box(&img.view())))
    });
    g.finish();
}

fn bench_psf(c: &mut Criterion) {
    let n = 4096;
    let pair = simulate(&config(n, 700)).unwrap();
    let img = pair.science;
    let bg = estimate_background(&img.view(), None, &BackgroundParams::default()).unwrap();
    let dp = DetectParams {
        saturation: Some(pair.config.science.saturation),
        ..Default::default()
    };
    let objects = detect(&img.view(), &bg, None, &dp).unwrap();
    let sp = SelectParams {
        saturation: Some(pair.config.science.saturation),
        gain: Some(pair.config.science.gain),
        ..Default::default()
    };
    let kp = KlParams::default();
    let stars = select_stars(&img.view(), &bg, None, &objects, &sp).unwrap();
    let model = KlPsf::fit(&stars, &kp).unwrap();
    eprintln!(
        "psf/{n}: {} objects, {} stars, {} basis elements, stamp {}",
        objects.len(),
        stars.len(),
        model.n_basis(),
        stars.stamp_size
    );
    let mut g = c.benchmark_group(format!("psf/{n}"));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function(BenchmarkId::new("select_fit", n), |b| {
        b.iter(|| {
            let s = select_stars(black_box(&img.view()), &bg, None, &objects, &sp).unwrap();
            KlPsf::fit(&s, &kp).unwrap()
        })
    });
    g.bench_function(BenchmarkId::new("fit_only", n), |b| {
        b.iter(|| KlPsf::fit(black_box(&stars), &kp).unwrap())
    });
    let ep = PsfEstimateParams {
        saturation: Some(pair.config.science.saturation),
        gain: Some(pair.config.science.gain),
        ..Default::default()
    };
    g.bench_function(BenchmarkId::new("estimate_psf", n), |b| {
        b.iter(|| estimate_psf(black_box(&img.view()), None, &ep).unwrap())
    });
    let fft = Fft2::<f32>::new(n, n);
    g.bench_function(BenchmarkId::new("fft2_forward_f32", n), |b| {
        b.iter(|| fft.forward(black_box(&img.view())))
    });
    g.finish();

    let m = 1024;
    let pair = simulate(&config(m, 150)).unwrap();
    let ep = PsfEstimateParams {
        saturation: Some(pair.config.science.saturation),
        gain: Some(pair.config.science.gain),
        ..Default::default()
    };
    let est = estimate_psf(&pair.science.view(), None, &ep).unwrap();
    let mut g = c.benchmark_group("psf/convolve_1024");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.bench_function(BenchmarkId::new("convolve_varying", m), |b| {
        b.iter(|| diffim::psf::convolve_varying(black_box(&pair.science.view()), &est.model))
    });
    let conv = diffim::psf::VaryingConvolver::new(&est.model, m, m);
    eprintln!("psf/convolve_{m}: {} basis elements", est.model.n_basis());
    g.bench_function(BenchmarkId::new("convolver_prepared", m), |b| {
        b.iter(|| conv.convolve(black_box(&pair.science.view())).unwrap())
    });
    let fft = Fft2::<f32>::new(m, m);
    g.bench_function(BenchmarkId::new("fft2_forward_f32", m), |b| {
        b.iter(|| fft.forward(black_box(&pair.science.view())))
    });
    g.finish();
}

criterion_group!(benches, bench_fwhm, bench_psf);
criterion_main!(benches);
