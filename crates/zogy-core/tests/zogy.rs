//! Integration tests of zogy-core: normalisation pins (flux, Scorr), sky-sim quality, seams,
//! proper coaddition, the real properimage pair, hostile input.
#![allow(clippy::unwrap_used)]

use diffim_core::psf::gaussian_stamp;
use diffim_core::stats::{mad_std, median};
use ndarray::{Array2, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use sky_sim::{SimConfig, SimPair, simulate};
use zogy_core::{
    BetaMode, CoaddImage, CoaddParams, FnPsf, ZogyError, ZogyInputs, ZogyParams, ZogyResult,
    proper_coadd, zogy,
};

fn add_noise(img: &mut Array2<f32>, noise: &Array2<f32>, rng: &mut ChaCha8Rng) {
    let g = Normal::new(0.0f64, 1.0).unwrap();
    img.zip_mut_with(noise, |v, &n| *v += (g.sample(rng) * n as f64) as f32);
}

fn add_star(img: &mut Array2<f32>, x: f64, y: f64, flux: f64, fwhm: f64) {
    let (xi, yi) = (x.round() as usize, y.round() as usize);
    let st = gaussian_stamp(31, fwhm, y - yi as f64, x - xi as f64);
    img.slice_mut(s![yi - 15..=yi + 15, xi - 15..=xi + 15])
        .zip_mut_with(&st, |a, &p| *a += (flux * p) as f32);
}

/// Local maxima of |a| >= thr (3x3), outside `mask`.
fn peaks(a: &Array2<f32>, mask: &Array2<bool>, thr: f32) -> Vec<(usize, usize, f32)> {
    let (ny, nx) = a.dim();
    let mut out = Vec::new();
    for y in 1..ny - 1 {
        for x in 1..nx - 1 {
            let v = a[[y, x]].abs();
            if v < thr || mask[[y, x]] {
                continue;
            }
            let mut is_max = true;
            for j in y - 1..=y + 1 {
                for i in x - 1..=x + 1 {
                    if (j, i) != (y, x) && a[[j, i]].abs() > v {
                        is_max = false;
                    }
                }
            }
            if is_max {
                out.push((y, x, a[[y, x]]));
            }
        }
    }
    out
}

fn max_near(a: &Array2<f32>, x: f64, y: f64, r: f64) -> f32 {
    let (ny, nx) = a.dim();
    let mut m = f32::MIN;
    for j in (y - r).floor().max(0.0) as usize..=((y + r).ceil() as usize).min(ny - 1) {
        for i in (x - r).floor().max(0.0) as usize..=((x + r).ceil() as usize).min(nx - 1) {
            if (j as f64 - y).hypot(i as f64 - x) <= r {
                m = m.max(a[[j, i]]);
            }
        }
    }
    m
}

/// Blank-sky normalisation: S/F_S returns the injected flux; Scorr is N(0,1) with source
/// noise from a bright static star included. Pins the "F_D missing", "wrong F_S" and
/// "no source noise" bugs.
#[test]
fn injected_source_flux_and_scorr_normalisation() {
    let (ny, nx) = (256, 256);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (fw_n, fw_r) = (4.0, 2.8);
    let (sig_n, sig_r, beta) = (10.0f64, 4.0f64, 1.3f64);
    let mut n = Array2::<f32>::zeros((ny, nx));
    let mut r = Array2::<f32>::zeros((ny, nx));
    // Bright static star (source-noise dominated) and a transient of known flux.
    add_star(&mut r, 60.0, 60.0, 2.0e5, fw_r);
    add_star(&mut n, 60.0, 60.0, 2.0e5 * beta, fw_n);
    let f_tr = 3000.0;
    add_star(&mut n, 180.3, 140.6, f_tr, fw_n);
    // Noise maps: background + Poisson of the sources (gain 1).
    let nn = n.mapv(|v| (sig_n * sig_n + v.max(0.0) as f64).sqrt() as f32);
    let nr = r.mapv(|v| (sig_r * sig_r + v.max(0.0) as f64).sqrt() as f32);
    add_noise(&mut n, &nn, &mut rng);
    add_noise(&mut r, &nr, &mut rng);
    let (pn, pr) = (
        gaussian_stamp(25, fw_n, 0.0, 0.0),
        gaussian_stamp(25, fw_r, 0.0, 0.0),
    );
    let stars = [(60.0, 60.0)];
    let inputs = ZogyInputs {
        new_noise: Some(nn.view()),
        ref_noise: Some(nr.view()),
        sigma_new: Some(sig_n),
        sigma_ref: Some(sig_r),
        stars: &stars,
        ..ZogyInputs::new(n.view(), r.view(), &pn, &pr)
    };
    let params = ZogyParams {
        beta: BetaMode::Fixed(beta),
        fit_shift: false,
        ..Default::default()
    };
    let res = zogy(&inputs, &params).unwrap();
    let flux = res.flux_at(180.3, 140.6).unwrap() * beta;
    assert!((flux / f_tr - 1.0).abs() < 0.02, "flux {flux} vs {f_tr}");
    // F_S consistency: the error of the flux matches 1/sqrt(F_S) on blank sky.
    let fe = res.flux_err[[200, 60]] as f64;
    assert!(
        (fe * res.f_s.sqrt() - 1.0).abs() < 0.05,
        "flux_err {fe}, F_S {}",
        res.f_s
    );
    // Scorr ~ N(0,1) on blank sky.
    let blank: Vec<f64> = res
        .scorr
        .indexed_iter()
        .filter(|((y, x), _)| {
            (*x as f64 - 60.0).hypot(*y as f64 - 60.0) > 25.0
                && (*x as f64 - 180.0).hypot(*y as f64 - 140.0) > 25.0
        })
        .map(|(_, &v)| v as f64)
        .collect();
    let sd = mad_std(blank.iter().copied()).unwrap();
    let mu = median(blank.iter().copied()).unwrap();
    assert!(
        (0.95..=1.05).contains(&sd) && mu.abs() < 0.05,
        "blank Scorr std {sd} median {mu}"
    );
    // Source noise: Scorr around the bright star stays within noise (std of a 15x15 box),
    // while S/sqrt(F_S) (background-only normalisation) is inflated there.
    let boxv =
        |a: &Array2<f32>| mad_std(a.slice(s![53..68, 53..68]).iter().map(|&v| v as f64)).unwrap();
    let naive = res.s.mapv(|v| v / res.f_s.sqrt() as f32);
    let (sc, nv) = (boxv(&res.scorr), boxv(&naive));
    assert!(
        sc < 1.5 && nv > 1.5 * sc,
        "Scorr std at star {sc}, naive {nv}"
    );
    assert_eq!(res.diagnostics.ffts_per_tile, 11);
}

/// Astrometric noise terms (eqs. 30-33) damp the dipole of a mis-registered bright star.
#[test]
fn astrometric_terms_damp_misregistration_dipoles() {
    let (ny, nx) = (128, 128);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut n = Array2::<f32>::zeros((ny, nx));
    let mut r = Array2::<f32>::zeros((ny, nx));
    add_star(&mut n, 64.15, 64.0, 1e5, 3.0);
    add_star(&mut r, 64.0, 64.0, 1e5, 3.0);
    let nm = Array2::from_elem((ny, nx), 5.0f32);
    add_noise(&mut n, &nm, &mut rng);
    add_noise(&mut r, &nm, &mut rng);
    let p = gaussian_stamp(21, 3.0, 0.0, 0.0);
    let mut params = ZogyParams {
        beta: BetaMode::Fixed(1.0),
        fit_shift: false,
        ..Default::default()
    };
    let inputs = ZogyInputs {
        sigma_new: Some(5.0),
        sigma_ref: Some(5.0),
        ..ZogyInputs::new(n.view(), r.view(), &p, &p)
    };
    let plain = zogy(&inputs, &params).unwrap();
    params.sigma_astrometric = (0.15, 0.15);
    let ast = zogy(&inputs, &params).unwrap();
    let peak = |r: &ZogyResult| {
        r.scorr
            .slice(s![54..75, 54..75])
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
    };
    let (a, b) = (peak(&plain), peak(&ast));
    assert!(
        a > 8.0 && b < 4.0,
        "dipole |Scorr| without {a}, with astrometric terms {b}"
    );
    assert_eq!(ast.diagnostics.ffts_per_tile, 7);
}

struct Quality {
    scorr_std: f64,
    fp_per_mpix: f64,
    completeness: f64,
    n_bright: usize,
    flux_ratio: f64,
}

fn star_list(pair: &SimPair) -> Vec<(f64, f64)> {
    pair.truth
        .stars
        .iter()
        .filter(|s| !s.saturated && s.flux_template > 3000.0 && s.flux_template < 1e5)
        .map(|s| (s.x, s.y))
        .collect()
}

fn quality(pair: &SimPair, res: &ZogyResult) -> Quality {
    let (ny, nx) = pair.science.dim();
    let mut near = res.mask.clone();
    let mut paint = |x: f64, y: f64, r: f64| {
        for j in (y - r).max(0.0) as usize..((y + r) as usize + 1).min(ny) {
            for i in (x - r).max(0.0) as usize..((x + r) as usize + 1).min(nx) {
                near[[j, i]] = true;
            }
        }
    };
    for st in &pair.truth.stars {
        paint(
            st.x,
            st.y,
            if st.flux_template > 1000.0 { 8.0 } else { 4.0 },
        );
    }
    for t in &pair.truth.transients {
        paint(t.x, t.y, 10.0);
    }
    let blank: Vec<f64> = res
        .scorr
        .iter()
        .zip(near.iter())
        .filter(|(_, m)| !**m)
        .map(|(v, _)| *v as f64)
        .collect();
    let scorr_std = mad_std(blank).unwrap();
    let fps = peaks(&res.scorr, &res.mask, 5.0)
        .into_iter()
        .filter(|&(y, x, _)| {
            !pair
                .truth
                .transients
                .iter()
                .any(|t| (t.x - x as f64).hypot(t.y - y as f64) <= 3.0)
        })
        .count();
    let fp_per_mpix = fps as f64 / (ny * nx) as f64 * 1e6;
    let bright: Vec<_> = pair
        .truth
        .transients
        .iter()
        .filter(|t| t.snr >= 10.0)
        .collect();
    let found = bright
        .iter()
        .filter(|t| max_near(&res.scorr, t.x, t.y, 2.0) >= 5.0)
        .count();
    let ratios: Vec<f64> = bright
        .iter()
        .filter_map(|t| res.flux_at(t.x, t.y).map(|f| f * res.beta / t.flux))
        .collect();
    Quality {
        scorr_std,
        fp_per_mpix,
        completeness: found as f64 / bright.len().max(1) as f64,
        n_bright: bright.len(),
        flux_ratio: median(ratios).unwrap_or(f64::NAN),
    }
}

fn sim(cfg: SimConfig) -> SimPair {
    simulate(&cfg).unwrap()
}

/// Background-subtracted copies with the true sky.
fn bgsub(pair: &SimPair) -> (Array2<f32>, Array2<f32>) {
    (
        &pair.science - &pair.science_background(),
        &pair.template - &pair.template_background(),
    )
}

#[test]
fn sky_sim_quality_with_true_psfs() {
    let mut cfg = SimConfig::default().with_size(1024, 1024).with_seed(7);
    cfg.n_transients = 400;
    let pair = sim(cfg);
    let (n, r) = bgsub(&pair);
    let pn = pair.science_psf_at(511.5, 511.5, 25);
    let pr = pair.template_psf_at(511.5, 511.5, 25);
    let stars = star_list(&pair);
    let inputs = ZogyInputs {
        new_mask: Some(pair.science_mask.view()),
        ref_mask: Some(pair.template_mask.view()),
        new_noise: Some(pair.science_noise.view()),
        ref_noise: Some(pair.template_noise.view()),
        stars: &stars,
        ..ZogyInputs::new(n.view(), r.view(), &pn, &pr)
    };
    let res = zogy(&inputs, &ZogyParams::default()).unwrap();
    let q = quality(&pair, &res);
    eprintln!(
        "true PSFs: beta {:.4} shift {:?} Scorr std {:.3} FP/Mpix {:.2} completeness {:.3} of {} flux ratio {:.4}",
        res.beta, res.shift, q.scorr_std, q.fp_per_mpix, q.completeness, q.n_bright, q.flux_ratio
    );
    assert!((res.beta - 1.2).abs() < 0.006, "beta {}", res.beta);
    assert!(
        res.shift.0.abs() < 0.02 && res.shift.1.abs() < 0.02,
        "shift {:?}",
        res.shift
    );
    assert!(
        (0.95..=1.05).contains(&q.scorr_std),
        "Scorr std {}",
        q.scorr_std
    );
    assert!(
        q.fp_per_mpix <= 1.0,
        "false positives per Mpix {}",
        q.fp_per_mpix
    );
    assert!(
        q.n_bright >= 150 && q.completeness >= 0.98,
        "completeness {} of {}",
        q.completeness,
        q.n_bright
    );
    assert!(
        (q.flux_ratio - 1.0).abs() < 0.03,
        "median flux ratio {}",
        q.flux_ratio
    );
}

/// Spatially varying PSF (3 -> 5 px Moffat): tiled ZOGY with the true local PSFs; Scorr has the
/// right width in every tile and on every seam.
#[test]
fn varying_psf_tiles_have_no_seams() {
    let mut cfg = SimConfig::varying_psf().with_size(768, 768).with_seed(3);
    cfg.n_transients = 100;
    let pair = sim(cfg);
    let (n, r) = bgsub(&pair);
    let pn = FnPsf(|x, y| pair.science_psf_at(x, y, 25));
    let pr = FnPsf(|x, y| pair.template_psf_at(x, y, 25));
    let stars = star_list(&pair);
    let inputs = ZogyInputs {
        new_mask: Some(pair.science_mask.view()),
        ref_mask: Some(pair.template_mask.view()),
        new_noise: Some(pair.science_noise.view()),
        ref_noise: Some(pair.template_noise.view()),
        stars: &stars,
        ..ZogyInputs::new(n.view(), r.view(), &pn, &pr)
    };
    let res = zogy(&inputs, &ZogyParams::default()).unwrap();
    assert_eq!(res.diagnostics.n_tiles, 9);
    let q = quality(&pair, &res);
    eprintln!(
        "varying PSF: beta {:.4} Scorr std {:.3} FP/Mpix {:.2} completeness {:.3} of {} flux {:.4}",
        res.beta, q.scorr_std, q.fp_per_mpix, q.completeness, q.n_bright, q.flux_ratio
    );
    // Per-tile and per-seam robust std of Scorr away from sources.
    let blankmask = {
        let mut m = res.mask.clone();
        for st in &pair.truth.stars {
            let r = if st.flux_template > 1000.0 { 8.0 } else { 4.0 };
            for j in (st.y - r).max(0.0) as usize..((st.y + r) as usize + 1).min(768) {
                for i in (st.x - r).max(0.0) as usize..((st.x + r) as usize + 1).min(768) {
                    m[[j, i]] = true;
                }
            }
        }
        for t in &pair.truth.transients {
            for j in (t.y - 10.0).max(0.0) as usize..((t.y + 10.0) as usize + 1).min(768) {
                for i in (t.x - 10.0).max(0.0) as usize..((t.x + 10.0) as usize + 1).min(768) {
                    m[[j, i]] = true;
                }
            }
        }
        m
    };
    let std_of = |ys: std::ops::Range<usize>, xs: std::ops::Range<usize>| {
        let v: Vec<f64> = res
            .scorr
            .slice(s![ys.clone(), xs.clone()])
            .iter()
            .zip(blankmask.slice(s![ys, xs]).iter())
            .filter(|(_, m)| !**m)
            .map(|(v, _)| *v as f64)
            .collect();
        mad_std(v).unwrap()
    };
    let mut worst: f64 = 0.0;
    let (rows, cols) = (&res.diagnostics.tile_rows, &res.diagnostics.tile_cols);
    assert_eq!((rows.len(), cols.len()), (3, 3));
    for (ty, &(y0, y1)) in rows.iter().enumerate() {
        for (tx, &(x0, x1)) in cols.iter().enumerate() {
            let sd = std_of(y0..y1, x0..x1);
            worst = worst.max((sd - 1.0).abs());
            assert!(
                (0.95..=1.05).contains(&sd),
                "tile ({ty},{tx}) Scorr std {sd}"
            );
        }
    }
    for k in 0..2 {
        for (name, sd) in [
            ("row", std_of(rows[k].1 - 12..rows[k].1 + 12, 0..768)),
            ("col", std_of(0..768, cols[k].1 - 12..cols[k].1 + 12)),
        ] {
            worst = worst.max((sd - 1.0).abs());
            assert!(
                (0.95..=1.05).contains(&sd),
                "{name} seam {k}: Scorr std {sd}"
            );
        }
    }
    eprintln!("varying PSF: worst |std - 1| over tiles and seams {worst:.3}");
    assert!(q.completeness >= 0.95, "completeness {}", q.completeness);
    assert!(
        (q.flux_ratio - 1.0).abs() < 0.03,
        "flux ratio {}",
        q.flux_ratio
    );
}

/// Optimal PSF photometry S/N of point sources: flux / its error, with the error from the
/// measured blank-sky RMS (both coadds have white noise).
fn psf_snr(img: &Array2<f32>, psf: &Array2<f64>, pts: &[(f64, f64)], blank_rms: f64) -> f64 {
    let h = psf.dim().0 / 2;
    let p2: f64 = psf.iter().map(|v| v * v).sum();
    let snrs: Vec<f64> = pts
        .iter()
        .map(|&(x, y)| {
            let (xi, yi) = (x.round() as usize, y.round() as usize);
            let win = img.slice(s![yi - h..=yi + h, xi - h..=xi + h]);
            let f: f64 = win
                .iter()
                .zip(psf.iter())
                .map(|(&a, &p)| a as f64 * p)
                .sum::<f64>()
                / p2;
            f / (blank_rms / p2.sqrt())
        })
        .collect();
    median(snrs).unwrap()
}

#[test]
fn proper_coadd_beats_weighted_mean() {
    // Two sky-sim exposures of the same field with very different seeing: the science (6 px)
    // and the template (2 px) of one pair, no transients.
    let mut cfg = SimConfig::default().with_seed(11);
    cfg.science.psf = sky_sim::PsfConfig::gaussian(6.0);
    cfg.template.psf = sky_sim::PsfConfig::gaussian(2.0);
    cfg.template.sky = cfg.science.sky;
    cfg.template.gain = cfg.science.gain;
    cfg.n_transients = 0;
    let pair = sim(cfg);
    let (m1, m2) = bgsub(&pair);
    let (p1, p2) = (
        pair.science_psf_at(255.5, 255.5, 31),
        pair.template_psf_at(255.5, 255.5, 31),
    );
    let f1 = 1.2;
    let imgs = [
        CoaddImage {
            image: m1.view(),
            mask: Some(pair.science_mask.view()),
            psf: &p1,
            sigma: None,
            zero_point: Some(f1),
        },
        CoaddImage {
            image: m2.view(),
            mask: Some(pair.template_mask.view()),
            psf: &p2,
            sigma: None,
            zero_point: Some(1.0),
        },
    ];
    let co = proper_coadd(&imgs, &CoaddParams::default()).unwrap();
    assert_eq!(co.n_fft, 5);
    assert!((co.psf_r.sum() - 1.0).abs() < 1e-9);
    let (s1, s2) = (co.sigmas[0], co.sigmas[1]);
    // Inverse-variance weighted mean in template flux units.
    let (w1, w2) = (f1 / (s1 * s1), 1.0 / (s2 * s2));
    let wsum = f1 * w1 + w2;
    let mean = ndarray::Zip::from(&m1)
        .and(&m2)
        .map_collect(|&a, &b| ((w1 * a as f64 + w2 * b as f64) / wsum) as f32);
    let mut pm = &p1 * (f1 * w1 / wsum) + &p2 * (w2 / wsum);
    pm /= pm.sum();
    // Faint-ish isolated stars (background limited) away from edges.
    let pts: Vec<(f64, f64)> = pair
        .truth
        .stars
        .iter()
        .filter(|s| {
            s.flux_template > 300.0
                && s.flux_template < 3000.0
                && s.x > 30.0
                && s.y > 30.0
                && s.x < 481.0
                && s.y < 481.0
        })
        .map(|s| (s.x, s.y))
        .collect();
    assert!(pts.len() >= 40, "{} stars", pts.len());
    let rms = |a: &Array2<f32>| mad_std(a.slice(s![..;3, ..;3]).iter().map(|&v| v as f64)).unwrap();
    let snr_co = psf_snr(&co.r, &co.psf_r, &pts, rms(&co.r));
    let snr_mean = psf_snr(&mean, &pm, &pts, rms(&mean));
    eprintln!(
        "coadd S/N {snr_co:.2} vs weighted mean {snr_mean:.2} (ratio {:.3}), F_R {:.4}",
        snr_co / snr_mean,
        co.f_r
    );
    assert!(
        snr_co > 1.03 * snr_mean,
        "coadd {snr_co} vs mean {snr_mean}"
    );
    // R has unit noise and F_R = sqrt(sum F^2 / sigma^2).
    assert!((rms(&co.r) - 1.0).abs() < 0.1, "R rms {}", rms(&co.r));
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let a = Array2::<f32>::zeros((64, 64));
    let b = Array2::<f32>::zeros((64, 63));
    let p = gaussian_stamp(11, 3.0, 0.0, 0.0);
    let e = zogy(
        &ZogyInputs::new(a.view(), b.view(), &p, &p),
        &ZogyParams::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ZogyError::ShapeMismatch { .. }), "{e}");
    let even = Array2::<f64>::ones((10, 10));
    let e = zogy(
        &ZogyInputs::new(a.view(), a.view(), &even, &p),
        &ZogyParams::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ZogyError::BadPsf { .. }), "{e}");
    let nan = Array2::from_elem((64, 64), f32::NAN);
    let e = zogy(
        &ZogyInputs::new(nan.view(), a.view(), &p, &p),
        &ZogyParams::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ZogyError::NoGoodPixels { .. }), "{e}");
    // Fitting beta without stars.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut c = a.clone();
    add_noise(&mut c, &Array2::from_elem((64, 64), 1.0), &mut rng);
    let e = zogy(
        &ZogyInputs::new(c.view(), c.view(), &p, &p),
        &ZogyParams::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ZogyError::TooFewStars { .. }), "{e}");
    // NaN pixels are inpainted and masked, never propagated.
    let mut d = c.clone();
    d[[30, 30]] = f32::NAN;
    let res = zogy(
        &ZogyInputs::new(d.view(), c.view(), &p, &p),
        &ZogyParams {
            beta: BetaMode::Fixed(1.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(res.scorr.iter().chain(res.d.iter()).all(|v| v.is_finite()));
    assert!(res.mask[[30, 30]] && res.mask[[34, 34]] && !res.mask[[40, 40]]);
    assert_eq!(res.diagnostics.n_inpainted, 1);
    assert_eq!(
        proper_coadd(&[], &CoaddParams::default()).unwrap_err(),
        ZogyError::NoImages
    );
}

/// What the facade does, with the member crates: background + PSF (psf-kl), noise model
/// (source-extract), common bright stars; then ZOGY.
struct Estimated {
    res: ZogyResult,
    psf_new: psf_kl::PsfEstimate,
}

fn run_estimated(
    new: &Array2<f32>,
    reference: &Array2<f32>,
    masks: (&Array2<bool>, &Array2<bool>),
    gains: (f64, f64),
    saturation: f64,
) -> Estimated {
    use psf_kl::{PsfEstimateParams, PsfModel, estimate_psf};
    use source_extract::{NoiseParams, noise_model};
    let est = |img: &Array2<f32>, m: &Array2<bool>, g: f64| {
        let p = PsfEstimateParams {
            saturation: Some(saturation),
            gain: Some(g),
            ..Default::default()
        };
        estimate_psf(&img.view(), Some(&m.view()), &p).unwrap()
    };
    let (se, te) = (est(new, masks.0, gains.0), est(reference, masks.1, gains.1));
    let sn = noise_model(
        &new.view(),
        &se.background,
        Some(&masks.0.view()),
        gains.0,
        &NoiseParams::default(),
    )
    .unwrap();
    let tn = noise_model(
        &reference.view(),
        &te.background,
        Some(&masks.1.view()),
        gains.1,
        &NoiseParams::default(),
    )
    .unwrap();
    let mut n = new - &se.background.background;
    let mut r = reference - &te.background.background;
    // Cosmic rays / hot pixels replaced (as the facade does).
    let (ny, nx) = n.dim();
    let (xc, yc) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let cp = zogy_core::masks::CosmicParams::default();
    for (img, noise, model, m) in [
        (&mut n, &sn, &se.model, masks.0),
        (&mut r, &tn, &te.model, masks.1),
    ] {
        let psf = zogy_core::remove_pedestal(&model.psf_at(xc, yc));
        zogy_core::masks::cosmic_rays(img, &noise.view(), Some(&m.view()), &psf, &cp);
    }
    let ok = |o: &&source_extract::Object| o.flags == 0 && o.snr >= 20.0;
    let tsel: Vec<_> = te.objects.iter().filter(ok).collect();
    let stars: Vec<(f64, f64)> = se
        .objects
        .iter()
        .filter(ok)
        .filter(|o| tsel.iter().any(|p| (p.x - o.x).hypot(p.y - o.y) < 1.5))
        .map(|o| (o.x, o.y))
        .collect();
    // psf-kl stamps carry a small positive background pedestal: remove it (beta bias).
    let pn = FnPsf(|x, y| zogy_core::remove_pedestal(&se.model.psf_at(x, y)));
    let pr = FnPsf(|x, y| zogy_core::remove_pedestal(&te.model.psf_at(x, y)));
    let inputs = ZogyInputs {
        new_mask: Some(masks.0.view()),
        ref_mask: Some(masks.1.view()),
        new_noise: Some(sn.view()),
        ref_noise: Some(tn.view()),
        sigma_new: Some(se.background.global_rms),
        sigma_ref: Some(te.background.global_rms),
        stars: &stars,
        ..ZogyInputs::new(n.view(), r.view(), &pn, &pr)
    };
    let params = ZogyParams {
        psf_error: 0.02,
        psf_wing_error: 0.04,
        ..Default::default()
    };
    let res = zogy(&inputs, &params).unwrap();
    Estimated { res, psf_new: se }
}

#[test]
fn sky_sim_quality_with_estimated_psfs_and_background() {
    let mut cfg = SimConfig::default().with_size(1024, 1024).with_seed(8);
    cfg.n_transients = 400;
    let pair = sim(cfg);
    let e = run_estimated(
        &pair.science,
        &pair.template,
        (&pair.science_mask, &pair.template_mask),
        (pair.config.science.gain, pair.config.template.gain),
        60_000.0,
    );
    let q = quality(&pair, &e.res);
    eprintln!(
        "estimated PSFs: beta {:.4} shift {:?} stars {} Scorr std {:.3} FP/Mpix {:.2} completeness {:.3} of {} flux ratio {:.4} (tiles {})",
        e.res.beta,
        e.res.shift,
        e.res.diagnostics.n_stars_used,
        q.scorr_std,
        q.fp_per_mpix,
        q.completeness,
        q.n_bright,
        q.flux_ratio,
        e.res.diagnostics.n_tiles
    );
    // psf-kl stamps carry a background pedestal (~3 % of the sum for the science PSF), which
    // biased beta to 1.230; with `remove_pedestal` it is 1.2102 (truth 1.2, true PSFs 1.2010).
    assert!((e.res.beta - 1.2).abs() < 0.015, "beta {}", e.res.beta);
    assert!(
        (0.95..=1.05).contains(&q.scorr_std),
        "Scorr std {}",
        q.scorr_std
    );
    assert!(
        q.fp_per_mpix <= 1.0,
        "false positives per Mpix {}",
        q.fp_per_mpix
    );
    assert!(
        q.completeness >= 0.98,
        "completeness {} of {}",
        q.completeness,
        q.n_bright
    );
    assert!(
        (q.flux_ratio - 1.0).abs() < 0.03,
        "median flux ratio {}",
        q.flux_ratio
    );
}

/// A real data file (see `diffim_core::testdata`: `$DIFFIM_DATA` or `data/real`; missing
/// files fail under `CI=true`).
fn data_path(sub: &str) -> Option<std::path::PathBuf> {
    diffim_core::testdata::real_data(sub)
}

#[test]
fn properimage_pair_with_injected_fakes() {
    use psf_kl::PsfModel;
    use rand::Rng;
    let (Some(p4), Some(p5)) = (
        data_path("properimage/aligned_eso085-030-004.fit"),
        data_path("properimage/aligned_eso085-030-005.fit"),
    ) else {
        return;
    };
    let hdu = fits_io::Hdu::Primary;
    let reference = fits_io::read_image::<f32>(&p4, &hdu).unwrap().data;
    let clean = fits_io::read_image::<f32>(&p5, &hdu).unwrap().data;
    let sat = 65_000.0;
    // Hard saturation (65535 plateau) grown by 5 px, and the constant fill of the aligned
    // frames' borders.
    let smask = |a: &Array2<f32>| {
        let mut m = zogy_core::masks::saturation_mask(&a.view(), None, 5);
        m.zip_mut_with(&zogy_core::masks::flat_run_mask(&a.view(), 8, 2), |p, q| {
            *p |= q
        });
        m
    };
    let (rm, nm) = (smask(&reference), smask(&clean));
    let (gain_n, gain_r) = (1.35, 1.52);
    // First pass on the clean pair: the image's own PSF and empty positions.
    let e0 = run_estimated(&clean, &reference, (&nm, &rm), (gain_n, gain_r), sat);
    let (ny, nx) = clean.dim();
    let sigma = e0.psf_new.background.global_rms;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let g = Normal::new(0.0f64, 1.0).unwrap();
    let mut new = clean.clone();
    let mut fakes: Vec<(f64, f64, f64, f64)> = Vec::new();
    let mut tries = 0;
    while fakes.len() < 150 && tries < 20_000 {
        tries += 1;
        let (x, y) = (
            rng.random_range(25.0..nx as f64 - 25.0),
            rng.random_range(25.0..ny as f64 - 25.0),
        );
        let empty = e0
            .psf_new
            .objects
            .iter()
            .all(|o| (o.x - x).hypot(o.y - y) > 15.0 + 2.0 * o.a.max(0.0))
            && fakes.iter().all(|f| (f.0 - x).hypot(f.1 - y) > 20.0)
            && !e0.res.mask[[y.round() as usize, x.round() as usize]];
        if !empty {
            continue;
        }
        let (xi, yi) = (x.round() as usize, y.round() as usize);
        let p = zogy_core::remove_pedestal(&e0.psf_new.model.psf_at(x, y));
        let p = zogy_shift(&p, y - yi as f64, x - xi as f64);
        let h = p.dim().0 / 2;
        let p2: f64 = p.iter().map(|v| v * v).sum();
        let snr = (3.0f64.ln() + rng.random::<f64>() * (50.0f64 / 3.0).ln()).exp();
        let flux = snr * sigma / p2.sqrt();
        for ((j, i), &pv) in p.indexed_iter() {
            let v = flux * pv;
            let noise = (v.max(0.0) / gain_n).sqrt() * g.sample(&mut rng);
            new[[yi + j - h, xi + i - h]] += (v + noise) as f32;
        }
        fakes.push((x, y, flux, snr));
    }
    assert!(fakes.len() >= 100, "{} fakes placed", fakes.len());
    let t0 = std::time::Instant::now();
    let e = run_estimated(&new, &reference, (&nm, &rm), (gain_n, gain_r), sat);
    eprintln!(
        "properimage: PSF estimation + noise + ZOGY took {:.3} s (dev profile, shared cores)",
        t0.elapsed().as_secs_f64()
    );
    let res = &e.res;
    // Scorr away from detected sources and fakes.
    let mut near = res.mask.clone();
    for (x, y, r) in e0
        .psf_new
        .objects
        .iter()
        .map(|o| (o.x, o.y, 8.0 + 2.0 * o.a.max(0.0)))
        .chain(fakes.iter().map(|f| (f.0, f.1, 10.0)))
    {
        for j in (y - r).max(0.0) as usize..((y + r) as usize + 1).min(ny) {
            for i in (x - r).max(0.0) as usize..((x + r) as usize + 1).min(nx) {
                near[[j, i]] = true;
            }
        }
    }
    let blank: Vec<f64> = res
        .scorr
        .iter()
        .zip(near.iter())
        .filter(|(_, m)| !**m)
        .map(|(v, _)| *v as f64)
        .collect();
    let sd = mad_std(blank).unwrap();
    let fps = peaks(&res.scorr, &res.mask, 5.0)
        .into_iter()
        .filter(|&(y, x, _)| {
            !fakes
                .iter()
                .any(|f| (f.0 - x as f64).hypot(f.1 - y as f64) <= 3.0)
        })
        .count();
    let fp_mpix = fps as f64 / (ny * nx) as f64 * 1e6;
    let bright: Vec<_> = fakes.iter().filter(|f| f.3 >= 10.0).collect();
    let found = bright
        .iter()
        .filter(|f| max_near(&res.scorr, f.0, f.1, 2.0) >= 5.0)
        .count();
    let completeness = found as f64 / bright.len() as f64;
    let ratios: Vec<f64> = bright
        .iter()
        .filter_map(|f| res.flux_at(f.0, f.1).map(|v| v * res.beta / f.2))
        .collect();
    let fr = median(ratios).unwrap();
    eprintln!(
        "properimage: beta {:.4} shift {:?} stars {} tiles {} Scorr std {sd:.3} FP {fps} ({fp_mpix:.2}/Mpix) completeness {completeness:.3} of {} flux ratio {fr:.4}",
        res.beta,
        res.shift,
        res.diagnostics.n_stars_used,
        res.diagnostics.n_tiles,
        bright.len()
    );
    assert!((0.95..=1.05).contains(&sd), "Scorr std {sd}");
    // The target, <= 1 per Mpix, means no false peak at all on this 0.7 Mpix pair. Measured:
    // 0 (Scorr std 0.972). Before L.A.Cosmic (alignment-resampled cosmic rays and dark holes
    // of the reference, a cosmic ray on a star of the new frame) and the PSF-wing term
    // (residuals 8-10 px from the brightest stars): 4 peaks; before the flat-border mask,
    // hot-pixel replacement, estimated astrometric noise, the PSF-error term and the pedestal
    // removal: 62/Mpix.
    assert!(fp_mpix <= 1.0, "false positives {fps} ({fp_mpix:.1}/Mpix)");
    assert!(completeness >= 0.98, "completeness {completeness}");
    assert!((fr - 1.0).abs() < 0.03, "flux ratio {fr}");
}

/// Sub-pixel shift of a stamp (Fourier), for placing fakes.
fn zogy_shift(p: &Array2<f64>, dy: f64, dx: f64) -> Array2<f64> {
    use diffim_core::fft::{Fft2, signed_freq};
    use diffim_core::psf::{embed_psf, extract_centered};
    let (h, w) = p.dim();
    let (ly, lx) = (
        zogy_core::odd_fast_len(2 * h),
        zogy_core::odd_fast_len(2 * w),
    );
    let f = Fft2::<f64>::new(ly, lx);
    let mut sp = f.forward(&embed_psf(&p.view(), ly, lx).view());
    for ((ky, kx), v) in sp.indexed_iter_mut() {
        let ph = -std::f64::consts::TAU
            * (signed_freq(ky, ly) as f64 * dy / ly as f64 + kx as f64 * dx / lx as f64);
        *v *= num_complex::Complex::from_polar(1.0, ph);
    }
    extract_centered(&f.inverse(sp).view(), h, w)
}

/// A constant PSF on a large image is cut into cores of `constant_tile_size` (run one per
/// thread): the result equals the single-tile one (the kernel margin covers the kernels).
#[test]
fn constant_psf_tiles_equal_one_tile() {
    let (ny, nx) = (900, 1100);
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let noise = Normal::new(0.0f32, 1.0).unwrap();
    let p = gaussian_stamp(25, 4.0, 0.0, 0.0);
    let q = gaussian_stamp(25, 3.0, 0.0, 0.0);
    let mut n = Array2::from_shape_fn((ny, nx), |_| noise.sample(&mut rng));
    let mut r = Array2::from_shape_fn((ny, nx), |_| noise.sample(&mut rng));
    // Stars in both, one transient in the new image only, some near tile edges.
    for &(y, x, f, both) in &[
        (450usize, 550usize, 3000.0, true),
        (440, 540, 800.0, true),
        (100, 1000, 2000.0, true),
        (600, 200, 500.0, false),
    ] {
        for (a, psf) in [(&mut n, &p), (&mut r, &q)] {
            if !both && std::ptr::eq(psf, &q) {
                continue;
            }
            a.slice_mut(s![y - 12..=y + 12, x - 12..=x + 12])
                .zip_mut_with(psf, |v, w| *v += (f * w) as f32);
        }
    }
    let inputs = ZogyInputs {
        sigma_new: Some(1.0),
        sigma_ref: Some(1.0),
        ..ZogyInputs::new(n.view(), r.view(), &p, &q)
    };
    let run = |t: usize| {
        let params = ZogyParams {
            beta: BetaMode::Fixed(1.0),
            fit_offset: false,
            constant_tile_size: t,
            ..Default::default()
        };
        zogy(&inputs, &params).unwrap()
    };
    let (one, tiled) = (run(0), run(512));
    assert_eq!(one.diagnostics.n_tiles, 1);
    assert_eq!(tiled.diagnostics.n_tiles, 4);
    let maxdiff = |a: &Array2<f32>, b: &Array2<f32>| {
        a.iter()
            .zip(b.iter())
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
    };
    let (ds, dd) = (maxdiff(&one.scorr, &tiled.scorr), maxdiff(&one.d, &tiled.d));
    // D's kernel (`P_r / sqrt(den)`) reaches further than S's: outside the margin it is
    // below 1 % of D's noise.
    let d_std = mad_std(one.d.iter().map(|&v| v as f64)).unwrap() as f32;
    eprintln!(
        "constant PSF, 4 tiles vs 1: max |dScorr| {ds:.2e}, max |dD| {dd:.2e} (D noise {d_std:.3})"
    );
    assert!(ds < 1e-3, "Scorr {ds}");
    assert!(dd < 0.01 * d_std, "D {dd} vs its noise {d_std}");
    // The transient is there in both.
    assert!(
        tiled.scorr[[600, 200]] > 10.0,
        "{}",
        tiled.scorr[[600, 200]]
    );
}

/// A thread's tile buffers and PSF transforms are reused (renewed in place) from tile to
/// tile: a call after another one on other data gives the same planes, bit for bit, as
/// before it (no state carried from call to call).
#[test]
fn repeated_calls_give_the_same_planes() {
    let mut cfg = SimConfig::varying_psf().with_size(512, 512).with_seed(5);
    cfg.n_transients = 20;
    let pair = sim(cfg);
    let (n, r) = bgsub(&pair);
    let pn = FnPsf(|x, y| pair.science_psf_at(x, y, 25));
    let pr = FnPsf(|x, y| pair.template_psf_at(x, y, 25));
    let stars = star_list(&pair);
    let with_noise = |n: &Array2<f32>, r: &Array2<f32>, noise: bool| {
        let inputs = ZogyInputs {
            new_mask: Some(pair.science_mask.view()),
            ref_mask: Some(pair.template_mask.view()),
            new_noise: noise.then(|| pair.science_noise.view()),
            ref_noise: noise.then(|| pair.template_noise.view()),
            sigma_new: Some(1.0),
            sigma_ref: Some(1.0),
            stars: &stars,
            ..ZogyInputs::new(n.view(), r.view(), &pn, &pr)
        };
        let params = ZogyParams {
            beta: BetaMode::Fixed(1.0),
            tile_size: 200,
            psf_error: 0.02,
            sigma_astrometric: (0.02, 0.03),
            ..Default::default()
        };
        zogy(&inputs, &params).unwrap()
    };
    let bits = |res: &ZogyResult| -> Vec<Vec<u32>> {
        [&res.d, &res.s, &res.scorr, &res.flux, &res.flux_err]
            .iter()
            .map(|a| a.iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    for noise in [true, false] {
        let first = with_noise(&n, &r, noise);
        assert!(
            first.diagnostics.n_tiles > 4,
            "{}",
            first.diagnostics.n_tiles
        );
        // Other data through the same buffers, then the first call again.
        let n2 = n.mapv(|v| -2.0 * v + 7.0);
        let _ = with_noise(&r, &n2, noise);
        let again = with_noise(&n, &r, noise);
        assert!(bits(&first) == bits(&again), "noise maps {noise}");
    }
}
