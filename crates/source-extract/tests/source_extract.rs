//! Integration tests of source-extract: golden comparison with SEP, synthetic truth, bad input.
#![allow(clippy::unwrap_used)]

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use source_extract::*;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- helpers

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A real data file (see `diffim_core::testdata`: `$DIFFIM_DATA` or `data/real`; missing
/// files fail under `CI=true`).
fn real_data(sub: &str) -> Option<PathBuf> {
    diffim_core::testdata::real_data(sub)
}

/// Reads a FITS image with fits-io (BSCALE/BZERO applied).
fn read_fits(path: &Path) -> Array2<f32> {
    fits_io::read_image::<f32>(path, &fits_io::Hdu::Primary)
        .unwrap()
        .data
}

struct SepBkg {
    global: (f64, f64),
    points: Vec<(usize, usize, f64, f64)>,
}

fn read_sep_bkg(name: &str) -> SepBkg {
    let mut r = csv::Reader::from_path(golden_dir().join(format!("{name}_bkg.csv"))).unwrap();
    let mut points = Vec::new();
    let mut global = (0.0, 0.0);
    for rec in r.records() {
        let rec = rec.unwrap();
        let y: i64 = rec[0].parse().unwrap();
        let x: i64 = rec[1].parse().unwrap();
        let b: f64 = rec[2].parse().unwrap();
        let s: f64 = rec[3].parse().unwrap();
        if y < 0 {
            global = (b, s);
        } else {
            points.push((y as usize, x as usize, b, s));
        }
    }
    SepBkg { global, points }
}

#[derive(Debug, Clone, Copy)]
struct SepObj {
    xwin: f64,
    ywin: f64,
    flux: f64,
    flux_err: f64,
    flag: u32,
}

fn read_sep_cat(name: &str) -> Vec<SepObj> {
    let mut r = csv::Reader::from_path(golden_dir().join(format!("{name}_cat.csv"))).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            SepObj {
                xwin: rec[2].parse().unwrap(),
                ywin: rec[3].parse().unwrap(),
                flux: rec[4].parse().unwrap(),
                flux_err: rec[5].parse().unwrap(),
                flag: rec[12].parse().unwrap(),
            }
        })
        .collect()
}

/// Background comparison with SEP; returns (max relative difference of the background, max
/// relative difference of the rms).
fn compare_background(name: &str, image: &Array2<f32>, bg: &Background) -> (f64, f64) {
    let sep = read_sep_bkg(name);
    let (mut db, mut ds) = (0.0f64, 0.0f64);
    for &(y, x, b, s) in &sep.points {
        db = db.max(((bg.background[[y, x]] as f64 - b) / b).abs());
        ds = ds.max(((bg.rms[[y, x]] as f64 - s) / s).abs());
    }
    eprintln!(
        "{name}: {}x{} background vs SEP: max |rel diff| {:.3e} (bkg), {:.3e} (rms); global {:.3}/{:.3} vs SEP {:.3}/{:.3}",
        image.ncols(),
        image.nrows(),
        db,
        ds,
        bg.global_background,
        bg.global_rms,
        sep.global.0,
        sep.global.1
    );
    (db, ds)
}

struct CatComparison {
    n_bright: usize,
    max_dpos: f64,
    max_dflux: f64,
    frac_sep_found: f64,
    frac_ours_found: f64,
}

fn nearest(objs: &[Object], x: f64, y: f64) -> Option<(usize, f64)> {
    objs.iter()
        .enumerate()
        .map(|(i, o)| (i, (o.x - x).hypot(o.y - y)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn compare_catalogue(name: &str, ours: &[Object]) -> CatComparison {
    let sep = read_sep_cat(name);
    let (mut n_bright, mut max_dpos, mut max_dflux) = (0, 0.0f64, 0.0f64);
    for s in &sep {
        // Bright, clean, isolated stars: S/N > 50, no SEP flag (blend, truncation, ...).
        if s.flag != 0 || s.flux / s.flux_err < 50.0 {
            continue;
        }
        let crowded = sep.iter().any(|t| {
            t.flux > 0.02 * s.flux
                && (0.1..15.0).contains(&(t.xwin - s.xwin).hypot(t.ywin - s.ywin))
        });
        if crowded {
            continue;
        }
        let (i, d) = nearest(ours, s.xwin, s.ywin).unwrap();
        assert!(
            d < 1.0,
            "{name}: SEP star at ({}, {}) not found",
            s.xwin,
            s.ywin
        );
        n_bright += 1;
        max_dpos = max_dpos
            .max((ours[i].x - s.xwin).abs())
            .max((ours[i].y - s.ywin).abs());
        max_dflux = max_dflux.max((ours[i].flux / s.flux - 1.0).abs());
    }
    let sep10: Vec<&SepObj> = sep.iter().filter(|s| s.flux / s.flux_err > 10.0).collect();
    let found = sep10
        .iter()
        .filter(|s| nearest(ours, s.xwin, s.ywin).is_some_and(|(_, d)| d < 1.5))
        .count();
    let ours10: Vec<&Object> = ours.iter().filter(|o| o.snr > 10.0).collect();
    let found_o = ours10
        .iter()
        .filter(|o| sep.iter().any(|s| (s.xwin - o.x).hypot(s.ywin - o.y) < 1.5))
        .count();
    let c = CatComparison {
        n_bright,
        max_dpos,
        max_dflux,
        frac_sep_found: found as f64 / sep10.len().max(1) as f64,
        frac_ours_found: found_o as f64 / ours10.len().max(1) as f64,
    };
    eprintln!(
        "{name}: {} bright stars: max |d centroid| {:.4} px, max |d flux| {:.4e}; S/N>10: SEP {} found {:.3}, ours {} found {:.3}",
        c.n_bright,
        c.max_dpos,
        c.max_dflux,
        sep10.len(),
        c.frac_sep_found,
        ours10.len(),
        c.frac_ours_found
    );
    c
}

fn golden_detect_params() -> DetectParams {
    DetectParams {
        annulus: None,
        ..Default::default()
    }
}

fn gaussian_image(
    ny: usize,
    nx: usize,
    sky: f32,
    sigma_noise: f64,
    stars: &[(f64, f64, f64)],
    fwhm: f64,
    seed: u64,
) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = Normal::new(0.0, sigma_noise).unwrap();
    let s = fwhm / 2.354_820_045;
    Array2::from_shape_fn((ny, nx), |(y, x)| {
        let mut v = sky as f64 + n.sample(&mut rng);
        for &(sx, sy, f) in stars {
            let r2 = (x as f64 - sx).powi(2) + (y as f64 - sy).powi(2);
            v += f / (2.0 * std::f64::consts::PI * s * s) * (-r2 / (2.0 * s * s)).exp();
        }
        v as f32
    })
}

// ---------------------------------------------------------------- golden: SEP

#[test]
fn golden_sim_matches_sep() {
    let img = read_fits(&golden_dir().join("sim.fits"));
    let bg = estimate_background(&img.view(), None, &BackgroundParams::default()).unwrap();
    let (db, ds) = compare_background("sim", &img, &bg);
    assert!(db < 0.005, "background differs from SEP by {db}");
    assert!(ds < 0.05, "rms differs from SEP by {ds}");
    let objs = detect(&img.view(), &bg, None, &golden_detect_params()).unwrap();
    let c = compare_catalogue("sim", &objs);
    assert!(c.n_bright >= 20);
    assert!(c.max_dpos < 0.05, "centroids differ by {}", c.max_dpos);
    assert!(c.max_dflux < 0.01, "fluxes differ by {}", c.max_dflux);
    assert!(c.frac_sep_found > 0.97 && c.frac_ours_found > 0.97);
}

#[test]
fn golden_properimage_matches_sep() {
    let Some(path) = real_data("properimage/aligned_eso085-030-004.fit") else {
        return;
    };
    let img = read_fits(&path);
    assert_eq!(img.dim(), (682, 1024));
    let bg = estimate_background(&img.view(), None, &BackgroundParams::default()).unwrap();
    let (db, ds) = compare_background("properimage", &img, &bg);
    assert!(db < 0.005, "background differs from SEP by {db}");
    assert!(ds < 0.05, "rms differs from SEP by {ds}");
    let params = DetectParams {
        saturation: Some(65535.0),
        ..golden_detect_params()
    };
    let objs = detect(&img.view(), &bg, None, &params).unwrap();
    let c = compare_catalogue("properimage", &objs);
    assert!(c.n_bright >= 20);
    assert!(c.max_dpos < 0.05, "centroids differ by {}", c.max_dpos);
    assert!(c.max_dflux < 0.01, "fluxes differ by {}", c.max_dflux);
    assert!(c.frac_sep_found > 0.95 && c.frac_ours_found > 0.95);
    let fwhm = estimate_fwhm(&objs).unwrap();
    eprintln!("properimage FWHM {fwhm:.3} px");
    assert!((2.4..3.4).contains(&fwhm), "{fwhm}");
}

// ---------------------------------------------------------------- synthetic truth

#[test]
fn sim_truth_positions_fluxes_and_fwhm() {
    let img = read_fits(&golden_dir().join("sim.fits"));
    let mut truth = Vec::new();
    let mut r = csv::Reader::from_path(golden_dir().join("sim_truth.csv")).unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        let v: Vec<f64> = (0..3).map(|i| rec[i].parse().unwrap()).collect();
        truth.push((v[0], v[1], v[2]));
    }
    let bg = estimate_background(&img.view(), None, &BackgroundParams::default()).unwrap();
    let noise = noise_model(&img.view(), &bg, None, 1.0, &NoiseParams::default()).unwrap();
    // Forced photometry at the true positions, r = 5 px = 3.9 sigma: 0.99954 of the flux.
    let pos: Vec<(f64, f64)> = truth.iter().map(|t| (t.0, t.1)).collect();
    let sub = &img - &bg.background;
    let phot = aperture_photometry(
        &sub.view(),
        &noise.view(),
        None,
        &pos,
        &ApertureParams::default(),
    );
    let mut pulls = Vec::new();
    for (p, t) in phot.iter().zip(&truth) {
        let crowded = truth
            .iter()
            .any(|u| u.2 > 0.01 * t.2 && (0.01..12.0).contains(&(u.0 - t.0).hypot(u.1 - t.1)));
        if crowded || p.flags != 0 {
            continue;
        }
        pulls.push((p.flux - 0.99954 * t.2) / p.flux_err);
    }
    let n = pulls.len() as f64;
    let mean = pulls.iter().sum::<f64>() / n;
    let rms = (pulls.iter().map(|p| p * p).sum::<f64>() / n).sqrt();
    eprintln!("forced photometry pulls: n {n}, mean {mean:.3}, rms {rms:.3}");
    assert!(n > 50.0 && mean.abs() < 0.5 && (0.6..1.5).contains(&rms));

    let params = DetectParams {
        gain: Some(1.0),
        ..Default::default()
    };
    let objs = detect(&img.view(), &bg, None, &params).unwrap();
    let mut maxd: f64 = 0.0;
    let mut nb = 0;
    for t in &truth {
        let crowded = truth
            .iter()
            .any(|u| u.2 > 0.01 * t.2 && (0.01..12.0).contains(&(u.0 - t.0).hypot(u.1 - t.1)));
        if crowded || t.2 < 3e4 {
            continue;
        }
        let (i, d) = nearest(&objs, t.0, t.1).unwrap();
        if objs[i].flags != 0 {
            continue;
        }
        assert!(d < 0.1, "star at ({}, {}) found at distance {d}", t.0, t.1);
        maxd = maxd.max(d);
        nb += 1;
    }
    eprintln!("sim: {nb} bright isolated stars, max centroid error vs truth {maxd:.4} px");
    assert!(nb > 10);
    let fwhm = estimate_fwhm(&objs).unwrap();
    eprintln!("sim FWHM {fwhm:.3} (truth 3.0)");
    assert!((fwhm - 3.0).abs() < 0.15, "{fwhm}");
}

#[test]
fn noise_model_follows_poisson() {
    // Sky 400 ADU, gain 2 -> sky rms sqrt(400/2) = 14.1 ADU (+ read noise folded in).
    let (ny, nx) = (256, 256);
    let star = (128.0, 128.0, 2.0e5);
    let clean = gaussian_image(ny, nx, 400.0, 0.0, &[star], 4.0, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let gain = 2.0;
    let img = clean.mapv(|v| {
        let sd = (v as f64 / gain).sqrt();
        (v as f64 + Normal::new(0.0, sd).unwrap().sample(&mut rng)) as f32
    });
    let bg = estimate_background(&img.view(), None, &BackgroundParams::default()).unwrap();
    assert!(
        (bg.global_rms - 200f64.sqrt()).abs() < 0.5,
        "{}",
        bg.global_rms
    );
    let noise = noise_model(&img.view(), &bg, None, gain, &NoiseParams::default()).unwrap();
    assert!((noise[[20, 20]] as f64 - 200f64.sqrt()).abs() < 1.0);
    // At the star peak: without smoothing the truth is sqrt(clean / gain) (up to the noise of
    // the pixel itself); a Gaussian smoothing of sigma 1 lowers the peak excess of a star of
    // sigma s by s^2 / (s^2 + 1).
    let raw = noise_model(
        &img.view(),
        &bg,
        None,
        gain,
        &NoiseParams { smooth_sigma: 0.0 },
    )
    .unwrap();
    let truth = (clean[[128, 128]] as f64 / gain).sqrt();
    let got = raw[[128, 128]] as f64;
    assert!((got / truth - 1.0).abs() < 0.03, "{got} vs {truth}");
    let s2 = (4.0f64 / 2.354_820_045).powi(2);
    let excess = (clean[[128, 128]] - 400.0) as f64 * s2 / (s2 + 1.0);
    let truth = ((400.0 + excess) / gain).sqrt();
    let got = noise[[128, 128]] as f64;
    assert!((got / truth - 1.0).abs() < 0.03, "{got} vs {truth}");
    assert!(matches!(
        noise_model(&img.view(), &bg, None, 0.0, &NoiseParams::default()),
        Err(ExtractError::InvalidGain { .. })
    ));
    let inf = noise_model(
        &img.view(),
        &bg,
        None,
        f64::INFINITY,
        &NoiseParams::default(),
    )
    .unwrap();
    assert!((inf[[128, 128]] - bg.rms[[128, 128]]).abs() < 1e-3);
}

#[test]
fn deblends_close_pair_and_flags_it() {
    let stars = [(60.0, 64.0, 4.0e4), (67.0, 64.5, 2.0e4)];
    let img = gaussian_image(128, 128, 100.0, 5.0, &stars, 3.0, 3);
    let bg = estimate_background(&img.view(), None, &BackgroundParams::default()).unwrap();
    let objs = detect(&img.view(), &bg, None, &DetectParams::default()).unwrap();
    assert_eq!(objs.len(), 2, "{objs:?}");
    for (o, s) in objs.iter().zip(&stars) {
        assert!(o.flags & FLAG_BLENDED != 0);
        assert!((o.x - s.0).abs() < 0.3 && (o.y - s.1).abs() < 0.3, "{o:?}");
    }
    let nodeb = DetectParams {
        deblend: false,
        ..Default::default()
    };
    assert_eq!(detect(&img.view(), &bg, None, &nodeb).unwrap().len(), 1);
}

#[test]
fn matched_filter_threshold_is_in_filtered_noise_units() {
    // Pure noise: the fraction of filtered pixels above 3 sigma must be the Gaussian tail
    // 1.35e-3, i.e. the filtered noise is computed correctly (not the unfiltered rms).
    let img = gaussian_image(512, 512, 0.0, 10.0, &[], 3.0, 4);
    let bg = estimate_background(&img.view(), None, &BackgroundParams::default()).unwrap();
    let p = DetectParams {
        threshold: 3.0,
        min_area: 1,
        filter_fwhm: Some(3.0),
        deblend: false,
        ..Default::default()
    };
    let objs = detect(&img.view(), &bg, None, &p).unwrap();
    let npix: usize = objs.iter().map(|o| o.npix).sum();
    let frac = npix as f64 / (512.0 * 512.0);
    assert!((0.7e-3..2.2e-3).contains(&frac), "{frac}");
    // A faint star (peak S/N ~ 3.4 per pixel, matched-filter S/N ~ 7.7) is found with the filter but not without.
    let star = [(100.0, 100.0, 350.0)];
    let img = gaussian_image(256, 256, 50.0, 10.0, &star, 3.0, 5);
    let bg = estimate_background(&img.view(), None, &BackgroundParams::default()).unwrap();
    let with = DetectParams {
        filter_fwhm: Some(3.0),
        ..Default::default()
    };
    let found = detect(&img.view(), &bg, None, &with).unwrap();
    assert!(found.iter().any(|o| (o.x - 100.0).hypot(o.y - 100.0) < 1.0));
    let without = detect(&img.view(), &bg, None, &DetectParams::default()).unwrap();
    assert!(
        !without
            .iter()
            .any(|o| (o.x - 100.0).hypot(o.y - 100.0) < 1.0)
    );
}

#[test]
fn masked_and_saturated_flags() {
    let stars = [(40.0, 40.0, 5.0e4), (90.0, 90.0, 5.0e4), (2.0, 60.0, 5.0e4)];
    let img = gaussian_image(128, 128, 100.0, 5.0, &stars, 3.0, 6);
    let mut mask = Array2::from_elem((128, 128), false);
    mask[[90, 92]] = true;
    let bg = estimate_background(
        &img.view(),
        Some(&mask.view()),
        &BackgroundParams::default(),
    )
    .unwrap();
    let p = DetectParams {
        saturation: Some(2000.0),
        ..Default::default()
    };
    let objs = detect(&img.view(), &bg, Some(&mask.view()), &p).unwrap();
    assert_eq!(objs.len(), 3);
    let at = |x: f64, y: f64| {
        objs.iter()
            .find(|o| (o.x - x).hypot(o.y - y) < 1.0)
            .unwrap()
    };
    assert!(at(90.0, 90.0).flags & FLAG_MASKED != 0);
    assert!(at(40.0, 40.0).flags & FLAG_MASKED == 0);
    assert!(at(2.0, 60.0).flags & FLAG_EDGE != 0);
    assert!(objs.iter().all(|o| o.flags & FLAG_SATURATED != 0)); // peak ~ 5200 > 2000
}

#[test]
fn background_follows_gradient_and_ignores_masked_blob() {
    // Multiples of the box: SExtractor/SEP place the node of a partial last box at the centre of
    // a full box, so a gradient is extrapolated slightly wrong there (kept for SEP parity).
    let (ny, nx) = (320, 384);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = Normal::new(0.0, 3.0).unwrap();
    let truth = Array2::from_shape_fn((ny, nx), |(y, x)| 200.0 + 0.1 * x as f32 + 0.05 * y as f32);
    let mut img = truth.mapv(|v| v + n.sample(&mut rng) as f32);
    let mut mask = Array2::from_elem((ny, nx), false);
    for y in 100..180 {
        for x in 100..180 {
            img[[y, x]] = 5000.0; // a bright masked blob
            mask[[y, x]] = true;
        }
    }
    img[[5, 5]] = f32::NAN;
    let bg = estimate_background(
        &img.view(),
        Some(&mask.view()),
        &BackgroundParams::default(),
    )
    .unwrap();
    let diff = &bg.background - &truth;
    let (iw, worst) = diff
        .indexed_iter()
        .map(|(i, d)| (i, d.abs()))
        .fold(((0, 0), 0.0f32), |m, d| if d.1 > m.1 { d } else { m });
    // A partly masked box measures the sky at its good pixels' centroid, not its centre: on
    // this 0.11 ADU/px gradient that costs up to ~1 ADU (0.3 sigma) next to the blob.
    assert!(worst < 1.5, "{worst} at {iw:?}");
    assert!(bg.n_filled >= 1);
    // The box RMS includes the gradient across a box: (0.1*64)^2/12 + (0.05*64)^2/12 = 4.27.
    let expect = (9.0f64 + 4.27).sqrt();
    assert!((bg.global_rms - expect).abs() < 0.2, "{}", bg.global_rms);
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_input_is_an_error_or_empty_never_a_panic() {
    let p = BackgroundParams::default();
    let nan = Array2::from_elem((100, 100), f32::NAN);
    assert!(matches!(
        estimate_background(&nan.view(), None, &p),
        Err(ExtractError::NoGoodPixels { npix: 10000 })
    ));
    let ones = Array2::from_elem((100, 100), 1.0f32);
    let all = Array2::from_elem((100, 100), true);
    assert!(matches!(
        estimate_background(&ones.view(), Some(&all.view()), &p),
        Err(ExtractError::NoGoodPixels { .. })
    ));
    // Constant image: background = constant, rms 0, no detection.
    let c = Array2::from_elem((100, 100), 7.0f32);
    let bg = estimate_background(&c.view(), None, &p).unwrap();
    assert!(bg.background.iter().all(|&v| (v - 7.0).abs() < 1e-4));
    assert!(bg.rms.iter().all(|&v| v == 0.0));
    assert!(
        detect(&c.view(), &bg, None, &DetectParams::default())
            .unwrap()
            .is_empty()
    );
    // Smaller than one box: a single box.
    let small = gaussian_image(20, 30, 10.0, 1.0, &[], 3.0, 8);
    let bg = estimate_background(&small.view(), None, &p).unwrap();
    assert_eq!(bg.mesh_background.dim(), (1, 1));
    assert!((bg.global_background - 10.0).abs() < 0.3);
    // Zero stars: empty catalogue, FWHM a typed error.
    let blank = gaussian_image(128, 128, 10.0, 1.0, &[], 3.0, 9);
    let bg = estimate_background(&blank.view(), None, &p).unwrap();
    let objs = detect(&blank.view(), &bg, None, &DetectParams::default()).unwrap();
    assert!(objs.is_empty(), "{objs:?}");
    assert!(matches!(
        estimate_fwhm(&objs),
        Err(ExtractError::NoStarsForFwhm { .. })
    ));
    // Empty image, wrong mask shape, bad parameters.
    let empty = Array2::<f32>::zeros((0, 5));
    assert!(matches!(
        estimate_background(&empty.view(), None, &p),
        Err(ExtractError::EmptyImage { .. })
    ));
    let m = Array2::from_elem((5, 5), false);
    assert!(matches!(
        estimate_background(&blank.view(), Some(&m.view()), &p),
        Err(ExtractError::ShapeMismatch { .. })
    ));
    let zero_box = BackgroundParams {
        box_size: 0,
        ..Default::default()
    };
    assert!(estimate_background(&blank.view(), None, &zero_box).is_err());
    let neg = DetectParams {
        threshold: -1.0,
        ..Default::default()
    };
    assert!(detect(&blank.view(), &bg, None, &neg).is_err());
    // Aperture photometry off the image or at NaN positions: NaN flux, flagged.
    let phot = aperture_photometry(
        &blank.view(),
        &bg.rms.view(),
        None,
        &[(f64::NAN, 3.0), (-50.0, -50.0)],
        &ApertureParams::default(),
    );
    assert!(
        phot.iter()
            .all(|p| p.flux.is_nan() && p.flags & FLAG_EDGE != 0)
    );
}

// ---------------------------------------------------------------- gain estimate

/// What [`estimate_gain`] should measure on a sky-sim image: the sim adds read noise
/// (`rn` electrons = `rn / gain` ADU) to the Poisson noise of the sky and has no pedestal, so
/// the effective gain is `sky / (sky / gain + (rn / gain)^2)`, not the true gain.
fn expected_effective_gain(sky: f64, gain: f64, rn: f64) -> f64 {
    sky / (sky / gain + (rn / gain).powi(2))
}

#[test]
fn gain_estimate_on_sky_sim_matches_sky_over_variance() {
    // 256^2 default pair: science sky 1000 ADU (+-20 gradient), gain 1, read noise 5 e-;
    // template sky 300 ADU, gain 4, read noise 5 e-; ~75 stars.
    let cfg = sky_sim::SimConfig::default()
        .with_size(256, 256)
        .with_seed(7);
    let pair = sky_sim::simulate(&cfg).unwrap();
    for (img, mask, im) in [
        (&pair.science, &pair.science_mask, &cfg.science),
        (&pair.template, &pair.template_mask, &cfg.template),
    ] {
        let est = estimate_gain(&img.view(), Some(&mask.view())).unwrap();
        let sky = im.sky.c; // the plane's mean = its value at the centre
        let expect = expected_effective_gain(sky, im.gain, im.read_noise);
        eprintln!(
            "sim gain {} rn {}: estimate {:.4} (sky {:.1}, rms {:.3}, n {}), expected {expect:.4}",
            im.gain, im.read_noise, est.gain, est.sky, est.sky_rms, est.n_pixels
        );
        // Measured -1.0 % for both. Statistics: ~1e5 differences measure the RMS to 0.25 %
        // (gain 0.5 %); faint stars below the source mask add a little variance (< 1 %).
        // 3 % leaves room for both and still fails without the clipping correction (+3 %)
        // or without the source mask (-5 %).
        assert!(
            (est.gain / expect - 1.0).abs() < 0.03,
            "{} vs {expect}",
            est.gain
        );
        assert!((est.sky / sky - 1.0).abs() < 0.01, "{}", est.sky);
        assert!(est.n_pixels > 50_000);
    }

    // A background-subtracted image: the sky is ~0, refused.
    let sub = &pair.science - &pair.science_background();
    match estimate_gain(&sub.view(), Some(&pair.science_mask.view())) {
        Err(ExtractError::GainUnmeasurable { sky, sky_rms, .. }) => {
            assert!(sky.abs() < 5.0 * sky_rms, "{sky} {sky_rms}");
        }
        other => panic!("expected GainUnmeasurable, got {other:?}"),
    }
    // All masked, all NaN, too few pixels, wrong mask shape, empty: errors, no panic.
    let all = Array2::from_elem(pair.science.dim(), true);
    assert!(matches!(
        estimate_gain(&pair.science.view(), Some(&all.view())),
        Err(ExtractError::NoGoodPixels { .. })
    ));
    let nan = Array2::from_elem((64, 64), f32::NAN);
    assert!(matches!(
        estimate_gain(&nan.view(), None),
        Err(ExtractError::NoGoodPixels { npix: 4096 })
    ));
    let tiny = pair.science.slice(ndarray::s![..20, ..20]).to_owned();
    assert!(matches!(
        estimate_gain(&tiny.view(), None),
        Err(ExtractError::GainUnmeasurable { .. })
    ));
    let flat = Array2::from_elem((64, 64), 100.0f32);
    assert!(matches!(
        estimate_gain(&flat.view(), None),
        Err(ExtractError::GainUnmeasurable { .. })
    ));
    let m = Array2::from_elem((5, 5), false);
    assert!(matches!(
        estimate_gain(&pair.science.view(), Some(&m.view())),
        Err(ExtractError::ShapeMismatch { .. })
    ));
    let empty = Array2::<f32>::zeros((0, 5));
    assert!(matches!(
        estimate_gain(&empty.view(), None),
        Err(ExtractError::EmptyImage { .. })
    ));
}

#[test]
fn gain_estimate_on_properimage_pair() {
    // data/README.md: sky / SEP's background RMS (zero pedestal) gives 1.52 / 1.35 e-/ADU.
    // estimate_gain masks the sources (11-25 % of this crowded field) and measures 1.61 /
    // 1.43, 6 % higher: SEP's clipped mesh RMS keeps the faint sources' variance (the same
    // estimator without the source mask gives 1.49 / 1.34). Hence 8 %, not 5 %.
    for (name, readme) in [("004", 1.52), ("005", 1.35)] {
        let Some(path) = real_data(&format!("properimage/aligned_eso085-030-{name}.fit")) else {
            return;
        };
        let img = read_fits(&path);
        let est = estimate_gain(&img.view(), None).unwrap();
        eprintln!(
            "properimage {name}: gain {:.3} (sky {:.1}, rms {:.2}, n {}), README {readme}",
            est.gain, est.sky, est.sky_rms, est.n_pixels
        );
        assert!((est.gain / readme - 1.0).abs() < 0.08, "{}", est.gain);
        assert!((est.gain / readme - 1.0) > 0.0, "{}", est.gain);
    }
}
