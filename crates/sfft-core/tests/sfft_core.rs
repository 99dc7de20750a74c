//! Integration tests of sfft-core: exact recovery, a dense weighted least-squares reference,
//! quality on sky-sim pairs, and the DECam / NIRCam data with SFFT's own outputs.
#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

use diffim_core::fft::convolve_same;
use diffim_core::psf::gaussian_stamp;
use diffim_core::stats::{mad_std, median};
use ndarray::{Array2, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use sfft_core::{
    ConvolveChoice, Convolved, FitRegion, FluxModel, SfftError, SfftInputs, SfftParams, subtract,
};
use std::path::PathBuf;

/// Noise-free star field.
fn star_field(ny: usize, nx: usize, n: usize, seed: u64) -> Array2<f32> {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut img = Array2::<f32>::from_elem((ny, nx), 100.0);
    for _ in 0..n {
        let (x0, y0): (f64, f64) = (
            rng.random_range(0.0..nx as f64),
            rng.random_range(0.0..ny as f64),
        );
        let f: f64 = 10f64.powf(rng.random_range(2.5..4.5));
        let s2 = 1.1f64 * 1.1;
        for y in (y0 as isize - 6).max(0)..(y0 as isize + 7).min(ny as isize) {
            for x in (x0 as isize - 6).max(0)..(x0 as isize + 7).min(nx as isize) {
                let r2 = (x as f64 - x0).powi(2) + (y as f64 - y0).powi(2);
                img[[y as usize, x as usize]] +=
                    (f * (-r2 / (2.0 * s2)).exp() / (2.0 * std::f64::consts::PI * s2)) as f32;
            }
        }
    }
    img
}

/// Slow reference: applies a kernel varying linearly in scaled coordinates,
/// `K = K0 + cx K1 + cy K2` (plain delta form, `[dy + h, dx + h]`), plus a background plane.
fn slow_apply(t: &Array2<f32>, k: &[Array2<f64>; 3], bg: [f64; 3]) -> Array2<f32> {
    let (ny, nx) = t.dim();
    let h = (k[0].nrows() / 2) as isize;
    Array2::from_shape_fn((ny, nx), |(y, x)| {
        let cx = 2.0 * x as f64 / (nx - 1) as f64 - 1.0;
        let cy = 2.0 * y as f64 / (ny - 1) as f64 - 1.0;
        let mut v = bg[0] + bg[1] * cx + bg[2] * cy;
        for dy in -h..=h {
            for dx in -h..=h {
                let (yy, xx) = (y as isize - dy, x as isize - dx);
                if yy < 0 || xx < 0 || yy >= ny as isize || xx >= nx as isize {
                    continue;
                }
                let (a, b) = ((dy + h) as usize, (dx + h) as usize);
                let kv = k[0][[a, b]] + cx * k[1][[a, b]] + cy * k[2][[a, b]];
                v += kv * t[[yy as usize, xx as usize]] as f64;
            }
        }
        v as f32
    })
}

fn true_kernels() -> [Array2<f64>; 3] {
    let k0 = gaussian_stamp(5, 2.0, 0.0, 0.0).mapv(|v| 1.2 * v);
    let mut k1 = Array2::<f64>::zeros((5, 5));
    k1[[2, 3]] = 0.03;
    k1[[2, 1]] = -0.01;
    k1[[2, 2]] = 0.02;
    let mut k2 = Array2::<f64>::zeros((5, 5));
    k2[[1, 2]] = 0.02;
    k2[[3, 2]] = 0.02;
    [k0, k1, k2]
}

#[test]
fn noiseless_varying_kernel_is_recovered_exactly() {
    let (ny, nx) = (96, 96);
    let t = star_field(ny, nx, 60, 1);
    let k = true_kernels();
    let sci = slow_apply(&t, &k, [7.0, 2.0, -3.0]);
    let params = SfftParams {
        kernel_shape: (5, 5),
        kernel_poly_order: 1,
        bg_poly_order: 1,
        flux: FluxModel::Polynomial {
            order: 1,
            penalty: 0.0,
        },
        ridge: 0.0,
        fit_region: FitRegion::FullFrame,
        convolve: ConvolveChoice::Template,
        ..SfftParams::default()
    };
    let r = subtract(&SfftInputs::new(sci.view(), t.view()), &params).unwrap();
    for &(x, y) in &[(10.0, 10.0), (48.0, 30.0), (90.0, 85.0)] {
        let cx = 2.0 * x / 95.0 - 1.0;
        let cy = 2.0 * y / 95.0 - 1.0;
        let truth = &k[0] + &(&k[1] * cx) + &(&k[2] * cy);
        let got = r.kernel_at(x, y);
        let err = (&got - &truth)
            .mapv(f64::abs)
            .fold(0.0f64, |a, &b| a.max(b));
        assert!(err < 1e-5, "kernel at ({x},{y}) off by {err}");
        let fs = truth.sum();
        assert!((r.flux_scale_at(x, y) - fs).abs() < 1e-5);
    }
    let maxd = r
        .diff
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |a, &b| a.max(b.abs()));
    assert!(maxd < 0.05, "max |diff| {maxd} on a noiseless exact model");
    // border of half-width 2 masked, interior not
    assert!(r.mask[[1, 50]] && !r.mask[[2, 50]]);
    assert!(r.diff[[0, 0]].is_nan());
    // A fit-only mask over the left half: fewer fit pixels, the same exact model, and the
    // left half still subtracted (not masked in the outputs).
    let fit_mask = Array2::from_shape_fn((ny, nx), |(_, x)| x < nx / 2);
    let inputs = SfftInputs {
        fit_mask: Some(fit_mask.view()),
        ..SfftInputs::new(sci.view(), t.view())
    };
    let r2 = subtract(&inputs, &params).unwrap();
    assert!(
        r2.n_good < r.n_good * 6 / 10,
        "{} vs {}",
        r2.n_good,
        r.n_good
    );
    assert!((r2.flux_scale_at(10.0, 10.0) - r.flux_scale_at(10.0, 10.0)).abs() < 1e-5);
    assert!(!r2.mask[[50, 10]] && r2.diff[[50, 10]].abs() < 0.05);
}

#[test]
fn auto_kernel_shape_follows_the_matching_kernel_width() {
    use sfft_core::auto_kernel_shape;
    // sigma_m = sqrt(4.07^2 - 2.76^2) / 2.3548 = 1.27 -> h = ceil(3.81) = 4.
    assert_eq!(auto_kernel_shape(4.07, 2.76), (9, 9));
    assert_eq!(auto_kernel_shape(2.76, 4.07), (9, 9));
    assert_eq!(auto_kernel_shape(3.0, 3.0), (7, 7));
    assert_eq!(auto_kernel_shape(12.0, 2.0), (21, 21));
    assert_eq!(auto_kernel_shape(f64::NAN, 2.0), (7, 7));
    assert_eq!(auto_kernel_shape(0.0, 2.0), (7, 7));
}

/// Gaussian elimination with partial pivoting (slow, obviously correct).
fn gauss_solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    x
}

#[test]
fn weighted_fit_matches_dense_least_squares_with_masks() {
    let (ny, nx) = (40, 44);
    let t = star_field(ny, nx, 25, 3);
    let k = true_kernels();
    let mut sci = slow_apply(&t, &k, [5.0, 1.0, 0.5]);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let noise = Array2::from_shape_fn((ny, nx), |(y, x)| 1.0 + 0.05 * ((x + 2 * y) % 7) as f32);
    let nrm = Normal::new(0.0, 1.0).unwrap();
    for (v, s) in sci.iter_mut().zip(noise.iter()) {
        *v += s * nrm.sample(&mut rng) as f32;
    }
    let mut mask = Array2::from_elem((ny, nx), false);
    mask[[20, 20]] = true;
    sci[[10, 30]] = f32::NAN;
    let tnoise = Array2::from_elem((ny, nx), 0.5f32);
    let params = SfftParams {
        kernel_shape: (3, 3),
        kernel_poly_order: 1,
        bg_poly_order: 1,
        flux: FluxModel::Polynomial {
            order: 1,
            penalty: 0.0,
        },
        ridge: 0.0,
        max_iter: 1,
        fit_region: FitRegion::FullFrame,
        convolve: ConvolveChoice::Template,
        fwhm_science: Some(3.0),
        fwhm_template: Some(2.0),
        ..SfftParams::default()
    };
    let inputs = SfftInputs {
        science_mask: Some(mask.view()),
        science_noise: Some(noise.view()),
        template_noise: Some(tnoise.view()),
        ..SfftInputs::new(sci.view(), t.view())
    };
    let r = subtract(&inputs, &params).unwrap();
    // Dense reference: rows = pixels whose 3x3 footprint is inside and good.
    let k2 = {
        let s2 = (9.0f64 - 4.0) / (8.0 * 2f64.ln());
        (1.0 / (4.0 * std::f64::consts::PI * s2)).clamp(1.0 / 9.0, 1.0)
    };
    let np = 9 * 3 + 3;
    let mut ata = vec![vec![0.0; np]; np];
    let mut atb = vec![0.0; np];
    let mut n_rows = 0;
    for y in 1..ny - 1 {
        for x in 1..nx - 1 {
            if mask[[y, x]] || !sci[[y, x]].is_finite() {
                continue;
            }
            let cx = 2.0 * x as f64 / (nx - 1) as f64 - 1.0;
            let cy = 2.0 * y as f64 / (ny - 1) as f64 - 1.0;
            let m = [1.0, cx, cy];
            let mut row = Vec::with_capacity(np);
            for mi in m {
                for dy in -1isize..=1 {
                    for dx in -1isize..=1 {
                        row.push(
                            mi * t[[(y as isize - dy) as usize, (x as isize - dx) as usize]] as f64,
                        );
                    }
                }
            }
            row.extend(m);
            let w = 1.0 / (noise[[y, x]] as f64).powi(2) + 0.0;
            let w = 1.0 / (1.0 / w + k2 * 0.25);
            for i in 0..np {
                atb[i] += w * row[i] * sci[[y, x]] as f64;
                for j in 0..np {
                    ata[i][j] += w * row[i] * row[j];
                }
            }
            n_rows += 1;
        }
    }
    assert_eq!(r.n_good, n_rows);
    let theta = gauss_solve(ata, atb);
    for (i, kk) in r.kernel_coefficients.outer_iter().enumerate() {
        for (j, v) in kk.iter().enumerate() {
            let want = theta[i * 9 + j];
            assert!(
                (v - want).abs() < 1e-6 * (1.0 + want.abs()),
                "term {i} shift {j}: {v} vs {want}"
            );
        }
    }
    for (j, v) in r.background_coefficients.iter().enumerate() {
        let want = theta[27 + j];
        assert!(
            (v - want).abs() < 1e-4 * (1.0 + want.abs()),
            "bg {j}: {v} vs {want}"
        );
    }
    assert!(r.condition.is_finite() && r.condition > 1.0);
}

#[test]
fn bad_input_gives_errors_not_panics() {
    let a = Array2::<f32>::zeros((32, 32));
    let b = Array2::<f32>::zeros((32, 30));
    assert!(matches!(
        subtract(&SfftInputs::new(a.view(), b.view()), &SfftParams::default()),
        Err(SfftError::ShapeMismatch { .. })
    ));
    let p = SfftParams {
        kernel_shape: (4, 5),
        ..SfftParams::default()
    };
    assert!(matches!(
        subtract(&SfftInputs::new(a.view(), a.view()), &p),
        Err(SfftError::InvalidParam { .. })
    ));
    let nan = Array2::<f32>::from_elem((32, 32), f32::NAN);
    assert!(matches!(
        subtract(
            &SfftInputs::new(nan.view(), a.view()),
            &SfftParams::default()
        ),
        Err(SfftError::TooFewPixels { .. })
    ));
    let tiny = Array2::<f32>::zeros((5, 5));
    assert!(matches!(
        subtract(
            &SfftInputs::new(tiny.view(), tiny.view()),
            &SfftParams::default()
        ),
        Err(SfftError::ImageTooSmall { .. })
    ));
}

/// Quality numbers of one sky-sim pair.
#[derive(Debug)]
struct Quality {
    scaled_std: f64,
    star_resid_median: f64,
    star_resid_p90: f64,
    n_bright: usize,
    false_per_mpix: f64,
    recovered: usize,
    n_bright_transients: usize,
    flux_scale_max_err: f64,
    npix: f64,
}

fn matched_filter(diff: &Array2<f32>, noise: &Array2<f32>, fwhm: f64) -> Array2<f64> {
    let p = gaussian_stamp(diffim_core::psf::odd_at_least(3.0 * fwhm), fwhm, 0.0, 0.0);
    let d = diff.mapv(|v| if v.is_finite() { v as f64 } else { 0.0 });
    let var = ndarray::Zip::from(noise).and(diff).map_collect(|&n, &v| {
        if v.is_finite() {
            (n as f64).powi(2)
        } else {
            0.0
        }
    });
    let num = convolve_same(&d.view(), &p.view());
    let p2 = p.mapv(|v| v * v);
    let den = convolve_same(&var.view(), &p2.view());
    ndarray::Zip::from(&num)
        .and(&den)
        .map_collect(|&a, &b| if b > 0.0 { a / b.sqrt() } else { 0.0 })
}

fn local_peaks(s: &Array2<f64>, mask: &Array2<bool>, thr: f64) -> Vec<(usize, usize, f64)> {
    let (ny, nx) = s.dim();
    let mut out = Vec::new();
    for y in 1..ny - 1 {
        for x in 1..nx - 1 {
            let v = s[[y, x]].abs();
            if v < thr || mask[[y, x]] {
                continue;
            }
            let mut is_max = true;
            for j in y - 1..=y + 1 {
                for i in x - 1..=x + 1 {
                    if (j, i) != (y, x) && s[[j, i]].abs() > v {
                        is_max = false;
                    }
                }
            }
            if is_max {
                out.push((y, x, s[[y, x]]));
            }
        }
    }
    out
}

fn quality(pair: &sky_sim::SimPair, r: &sfft_core::SfftResult) -> Quality {
    let (ny, nx) = pair.science.dim();
    let bg_rms = pair.science_background_rms();
    let bg = pair.science_background();
    // Pixels away from sources: noise within 3% of the background noise, unmasked.
    let mut away = Vec::new();
    for ((y, x), &sc) in r.scaled.indexed_iter() {
        if sc.is_finite() && pair.science_noise[[y, x]] < 1.03 * bg_rms[[y, x]] {
            away.push(sc as f64);
        }
    }
    let scaled_std = mad_std(away).unwrap();
    // Bright unsaturated stars: max |diff| in the 7x7 core / peak of the science star.
    let mut ratios = Vec::new();
    for st in &pair.truth.stars {
        let (x, y) = (st.x.round() as usize, st.y.round() as usize);
        if st.saturated || x < 8 || y < 8 || x + 8 >= nx || y + 8 >= ny {
            continue;
        }
        let win = s![y - 3..=y + 3, x - 3..=x + 3];
        let peak = pair
            .science
            .slice(win)
            .indexed_iter()
            .map(|((j, i), &v)| v - bg[[y - 3 + j, x - 3 + i]])
            .fold(f32::MIN, f32::max) as f64;
        if !(2000.0..=40000.0).contains(&peak) || r.mask.slice(win).iter().any(|&m| m) {
            continue;
        }
        let res = r
            .diff
            .slice(win)
            .iter()
            .fold(0.0f32, |a, &b| a.max(b.abs())) as f64;
        ratios.push(res / peak);
    }
    ratios.sort_by(f64::total_cmp);
    let n_bright = ratios.len();
    let star_resid_median = median(ratios.iter().copied()).unwrap_or(f64::NAN);
    let star_resid_p90 = ratios.get(n_bright * 9 / 10).copied().unwrap_or(f64::NAN);
    // Matched-filter detections.
    let fwhm = 4.0;
    let s = matched_filter(&r.diff, &r.noise, fwhm);
    let mask = diffim_core::mask::dilate(&r.mask.view(), 4);
    let peaks = local_peaks(&s, &mask, 5.0);
    let near_transient = |y: usize, x: usize, d: f64| {
        pair.truth
            .transients
            .iter()
            .any(|t| (t.x - x as f64).powi(2) + (t.y - y as f64).powi(2) < d * d)
    };
    let false_det = peaks
        .iter()
        .filter(|&&(y, x, _)| !near_transient(y, x, 5.0))
        .count();
    let npix = mask.iter().filter(|&&m| !m).count() as f64;
    let mut recovered = 0;
    let mut n_bright_transients = 0;
    for t in &pair.truth.transients {
        if t.snr < 10.0 || mask[[t.y.round() as usize, t.x.round() as usize]] {
            continue;
        }
        n_bright_transients += 1;
        if peaks
            .iter()
            .any(|&(y, x, v)| v > 0.0 && (t.x - x as f64).powi(2) + (t.y - y as f64).powi(2) < 9.0)
        {
            recovered += 1;
        }
    }
    let mut flux_scale_max_err = 0.0f64;
    for j in 0..9 {
        for i in 0..9 {
            let (x, y) = (
                i as f64 * (nx - 1) as f64 / 8.0,
                j as f64 * (ny - 1) as f64 / 8.0,
            );
            let e = (r.flux_scale_at(x, y) / pair.flux_scale_at(x, y) - 1.0).abs();
            flux_scale_max_err = flux_scale_max_err.max(e);
        }
    }
    Quality {
        scaled_std,
        star_resid_median,
        star_resid_p90,
        n_bright,
        false_per_mpix: false_det as f64 / (npix / 1e6),
        recovered,
        n_bright_transients,
        flux_scale_max_err,
        npix,
    }
}

#[test]
fn sky_sim_sfft_issue_quality() {
    let mut false_total = 0.0;
    let mut npix_total = 0.0;
    let (mut rec, mut nbt) = (0, 0);
    for seed in [1u64, 2] {
        let cfg = sky_sim::SimConfig::sfft_issue()
            .with_size(1024, 1024)
            .with_seed(seed);
        let pair = sky_sim::simulate(&cfg).unwrap();
        let inputs = SfftInputs {
            science_mask: Some(pair.science_mask.view()),
            template_mask: Some(pair.template_mask.view()),
            science_noise: Some(pair.science_noise.view()),
            template_noise: Some(pair.template_noise.view()),
            ..SfftInputs::new(pair.science.view(), pair.template.view())
        };
        let t0 = std::time::Instant::now();
        // Kernel size from the estimated FWHMs (what the diffim facade does): a fixed 7x7
        // truncates the matching kernel (sigma up to 1.8 px along the major axis) and biases
        // the kernel sum by ~1% where the science PSF is widest.
        let params = SfftParams {
            auto_kernel: true,
            ..SfftParams::default()
        };
        let r = subtract(&inputs, &params).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        let q = quality(&pair, &r);
        println!("seed {seed}: {:.2}s {:?}\n  {:?}", dt, r.summary(), q);
        assert_eq!(r.convolved_image, Convolved::Template);
        assert_eq!(r.summary().kernel_shape, (9, 9));
        assert!(
            (0.95..=1.10).contains(&q.scaled_std),
            "scaled std {}",
            q.scaled_std
        );
        assert!(
            q.flux_scale_max_err < 0.01,
            "flux scale error {}",
            q.flux_scale_max_err
        );
        false_total += q.false_per_mpix * q.npix / 1e6;
        npix_total += q.npix;
        rec += q.recovered;
        nbt += q.n_bright_transients;
    }
    let fpm = false_total / (npix_total / 1e6);
    println!("false 5-sigma per Mpix {fpm:.2}; transients S/N>=10 recovered {rec}/{nbt}");
    assert!(fpm <= 2.0, "false detections per Mpix {fpm}");
    assert!(rec as f64 >= 0.97 * nbt as f64, "recovered {rec}/{nbt}");
}

#[test]
fn sky_sim_bright_star_residuals_noiseless() {
    // Noiseless pair (noise maps still the true RMS for the weights): max |diff| in the 7x7
    // core of every unsaturated star with peak 2000-40000 ADU, relative to its peak.
    let cfg = sky_sim::SimConfig::sfft_issue()
        .with_size(768, 768)
        .with_seed(5)
        .noiseless();
    let pair = sky_sim::simulate(&cfg).unwrap();
    let inputs = SfftInputs {
        science_mask: Some(pair.science_mask.view()),
        template_mask: Some(pair.template_mask.view()),
        science_noise: Some(pair.science_noise.view()),
        template_noise: Some(pair.template_noise.view()),
        ..SfftInputs::new(pair.science.view(), pair.template.view())
    };
    for ks in [7usize, 9] {
        let params = SfftParams {
            kernel_shape: (ks, ks),
            ..SfftParams::default()
        };
        let r = subtract(&inputs, &params).unwrap();
        let q = quality(&pair, &r);
        println!(
            "noiseless {ks}x{ks}: {} stars, residual/peak median {:.4} p90 {:.4}, flux scale err {:.4}",
            q.n_bright, q.star_resid_median, q.star_resid_p90, q.flux_scale_max_err
        );
        assert!(q.n_bright >= 5);
        assert!(
            q.star_resid_p90 < 0.03,
            "{ks}: residual p90 {}",
            q.star_resid_p90
        );
    }
}

/// A real data file (see `diffim_core::testdata`: `$DIFFIM_DATA` or `data/real`; missing
/// files fail under `CI=true`).
fn data_file(sub: &str) -> Option<PathBuf> {
    diffim_core::testdata::real_data(sub)
}

fn read(p: &std::path::Path) -> Array2<f32> {
    fits_io::read_image::<f32>(p, &fits_io::Hdu::Primary)
        .unwrap()
        .data
}

fn pearson(a: &Array2<f32>, b: &Array2<f32>, ok: &Array2<bool>) -> f64 {
    let v: Vec<(f64, f64)> = a
        .iter()
        .zip(b.iter())
        .zip(ok.iter())
        .filter(|((x, y), o)| **o && x.is_finite() && y.is_finite())
        .map(|((x, y), _)| (*x as f64, *y as f64))
        .collect();
    let n = v.len() as f64;
    let (ma, mb) = (
        v.iter().map(|p| p.0).sum::<f64>() / n,
        v.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in v {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn decam_stacks_match_sfft_final_difference() {
    let base = "sfft-decam-decorr/4check/";
    let (Some(ps), Some(pr), Some(pd)) = (
        data_file(&format!("{base}Stack-DEC-OBS04.fits")),
        data_file(&format!("{base}Stack-DEC-OBS18.fits")),
        data_file(&format!("{base}FinalDifference.fits")),
    ) else {
        return;
    };
    let (sci, tmpl, theirs) = (read(&ps), read(&pr), read(&pd));
    // Their difference has a 10-px border affected by the 21x21 kernel: compare inside.
    let inner = |y: usize, x: usize| (12..244).contains(&y) && (12..244).contains(&x);
    let mut best = 0.0f64;
    for (kp, it, ks) in [(0usize, 1usize, 11usize), (1, 5, 11)] {
        let params = SfftParams {
            kernel_shape: (ks, ks),
            kernel_poly_order: kp,
            bg_poly_order: 1,
            max_iter: it,
            fit_region: FitRegion::FullFrame,
            ..SfftParams::default()
        };
        let r = subtract(&SfftInputs::new(sci.view(), tmpl.view()), &params).unwrap();
        let ok = Array2::from_shape_fn(sci.dim(), |(y, x)| !r.mask[[y, x]] && inner(y, x));
        let rr = pearson(&r.diff, &theirs, &ok);
        println!(
            "DECam order {kp} iter {it} kernel {ks}: {:?}; Pearson r = {rr:.4}",
            r.summary()
        );
        assert_eq!(r.convolved_image, Convolved::Template);
        best = best.max(rr);
    }
    // Why not ~1: FinalDifference is exactly `stack04 - FinalMatchKernel (x) stack18` (checked
    // in numpy to 1e-13, no background term; kernel sum 1.033), and that kernel is not a
    // least-squares fit to these stacks: over the inner 232^2 pixels its residual RMS is 17.1
    // against 12.4 for a plain unweighted numpy 11x11 least-squares fit (kernel sum 1.024), with
    // the same noise (MAD 9.2 vs 9.3). The two differences differ by star residuals of the
    // kernel mismatch (std 11.9 of the difference of the differences). The numpy fit itself
    // correlates with theirs at r = 0.72-0.77; we match that.
    assert!(best >= 0.75, "DECam Pearson r {best}");
}

fn read_mask_use(p: &std::path::Path) -> Array2<bool> {
    read(p).mapv(|v| v > 0.5)
}

/// `image` (NaN -> 0) convolved with the unit-sum `psf`, and its RMS `sqrt(var conv psf^2)`.
fn cross_convolve(
    image: &Array2<f32>,
    noise: &Array2<f32>,
    psf: &Array2<f32>,
) -> (Array2<f32>, Array2<f32>) {
    let p = psf.mapv(|v| v as f64);
    let p = &p / p.sum();
    let img = image.mapv(|v| if v.is_finite() { v as f64 } else { 0.0 });
    let var = noise.mapv(|v| {
        if v.is_finite() {
            (v as f64).powi(2)
        } else {
            0.0
        }
    });
    let c = convolve_same(&img.view(), &p.view());
    let v = convolve_same(&var.view(), &p.mapv(|x| x * x).view());
    (c.mapv(|x| x as f32), v.mapv(|x| x.max(0.0).sqrt() as f32))
}

#[test]
fn nircam_cross_convolved_matches_sfft_decorrelated_snr() {
    let base = "sfft-nircam/";
    let sci_id = "jw02561001002-02561-o001_t003_nircam_clear-f200w_i2d_stamp";
    let ref_id = "jw01324001001-01324-o001_t001_nircam_clear-f200w_i2d_stamp";
    let files = [
        format!("{base}input_data/{sci_id}.fits"),
        format!("{base}input_data/{ref_id}.fits"),
        format!("{base}auxiliary/{sci_id}.noise.fits"),
        format!("{base}auxiliary/{ref_id}.noise.fits"),
        format!("{base}auxiliary/{sci_id}.WebbPSF.fits"),
        format!("{base}auxiliary/{ref_id}.WebbPSF.fits"),
        format!("{base}auxiliary/{sci_id}.mask4sfft.fits"),
        format!("{base}4check/{sci_id}.crossConvd.sfftdiff.DeCorrelated.SNR.fits"),
    ];
    let mut paths = Vec::new();
    for f in &files {
        let Some(p) = data_file(f) else {
            return;
        };
        paths.push(p);
    }
    let (sci, tmpl) = (read(&paths[0]), read(&paths[1]));
    let (nsci, ntmpl) = (read(&paths[2]), read(&paths[3]));
    let (psf_sci, psf_ref) = (read(&paths[4]), read(&paths[5]));
    let use_fit = read_mask_use(&paths[6]);
    let theirs = read(&paths[7]);
    // Cross-convolution (the notebook's set-up): science with the reference PSF, reference
    // with the science PSF; both end with the same PSF, so the matching kernel is ~ a delta.
    let (sci_cc, nsci_cc) = cross_convolve(&sci, &nsci, &psf_ref);
    let (ref_cc, nref_cc) = cross_convolve(&tmpl, &ntmpl, &psf_sci);
    let bad_t = diffim_core::mask::dilate(&tmpl.mapv(|v| !v.is_finite()).view(), 5);
    let bad_s = diffim_core::mask::dilate(&sci.mapv(|v| !v.is_finite()).view(), 5);
    let fit_mask = use_fit.mapv(|u| !u);
    let inputs = SfftInputs {
        science_mask: Some(bad_s.view()),
        template_mask: Some(bad_t.view()),
        science_noise: Some(nsci_cc.view()),
        template_noise: Some(nref_cc.view()),
        fit_mask: Some(fit_mask.view()),
        ..SfftInputs::new(sci_cc.view(), ref_cc.view())
    };
    let params = SfftParams {
        fit_region: FitRegion::FullFrame,
        convolve: ConvolveChoice::Template,
        ..SfftParams::default()
    };
    let t0 = std::time::Instant::now();
    let r = subtract(&inputs, &params).unwrap();
    let ok = Array2::from_shape_fn(sci.dim(), |(y, x)| {
        !r.mask[[y, x]] && theirs[[y, x]] != 0.0 && theirs[[y, x]].is_finite()
    });
    let r_all = pearson(&r.scaled, &theirs, &ok);
    let ok_fit = &ok & &use_fit;
    let r_fit = pearson(&r.scaled, &theirs, &ok_fit);
    let ok_rest = &ok & &fit_mask;
    let r_rest = pearson(&r.scaled, &theirs, &ok_rest);
    // Their map is decorrelated (white noise), ours is not: the noise of our difference has
    // the power spectrum |P|^2 of the (nearly equal) PSFs, theirs ~1. Re-correlating theirs
    // with one PSF gives maps with the same noise texture.
    let psf_s = psf_sci.mapv(|v| v as f64);
    let psf_s = &psf_s / psf_s.sum();
    let theirs_recorr =
        convolve_same(&theirs.mapv(|v| v as f64).view(), &psf_s.view()).mapv(|v| v as f32);
    let r_recorr = pearson(&r.scaled, &theirs_recorr, &ok);
    let r_recorr_fit = pearson(&r.scaled, &theirs_recorr, &ok_fit);
    let ours_std = mad_std(
        r.scaled
            .iter()
            .zip(ok_fit.iter())
            .filter(|(_, o)| **o)
            .map(|(v, _)| *v as f64),
    )
    .unwrap();
    let theirs_std = mad_std(
        theirs
            .iter()
            .zip(ok_fit.iter())
            .filter(|(_, o)| **o)
            .map(|(v, _)| *v as f64),
    )
    .unwrap();
    println!(
        "NIRCam {:.2}s {:?}\n  flux scale {:.4}; Pearson r(ours scaled, their decorrelated SNR): \
         all {r_all:.4}, fit pixels {r_fit:.4}, other pixels {r_rest:.4}; robust std on fit \
         pixels ours {ours_std:.3} theirs {theirs_std:.3}; re-correlated theirs: all \
         {r_recorr:.4}, fit pixels {r_recorr_fit:.4}",
        t0.elapsed().as_secs_f64(),
        r.summary(),
        r.flux_scale_at(450.0, 450.0)
    );
    // Measured (this crate, 7x7 order-2 polynomial kernel vs their B-spline SFFT): raw 0.636,
    // re-correlated 0.844; thresholds slightly below.
    assert!(r_all > 0.60, "NIRCam Pearson r {r_all}");
    assert!(r_recorr > 0.80, "NIRCam re-correlated Pearson r {r_recorr}");
    assert!((r.flux_scale_at(450.0, 450.0) - 1.0).abs() < 0.02);
}
