//! Integration tests of sky-sim against its own stated model.
#![allow(clippy::unwrap_used)]

use ndarray::{Array2, s};
use sky_sim::{PsfProfile, SimConfig, SimError, SimPair, Smooth, Truth, simulate};

/// A star (science coordinates) with no other source within `sep` pixels and `margin` from
/// the edges.
fn isolated_stars(pair: &SimPair, sep: f64, margin: f64) -> Vec<usize> {
    let c = &pair.config;
    let pos: Vec<(f64, f64)> = pair
        .truth
        .stars
        .iter()
        .map(|s| (s.x, s.y))
        .chain(pair.truth.transients.iter().map(|t| (t.x, t.y)))
        .collect();
    (0..pair.truth.stars.len())
        .filter(|&k| {
            let (x, y) = pos[k];
            x > margin
                && y > margin
                && x < c.nx as f64 - 1.0 - margin
                && y < c.ny as f64 - 1.0 - margin
                && !pair.truth.stars[k].saturated
                && pos
                    .iter()
                    .enumerate()
                    .all(|(m, &(a, b))| m == k || (a - x).powi(2) + (b - y).powi(2) > sep * sep)
        })
        .collect()
}

/// Sum of `img - bg` over a `(2h+1)^2` box centred on the nearest pixel of `(x, y)`.
fn box_sum(img: &Array2<f32>, bg: &Array2<f32>, x: f64, y: f64, h: usize) -> f64 {
    let (xc, yc) = (x.round() as usize, y.round() as usize);
    let sl = s![yc - h..=yc + h, xc - h..=xc + h];
    img.slice(sl)
        .iter()
        .zip(bg.slice(sl).iter())
        .map(|(&a, &b)| f64::from(a) - f64::from(b))
        .sum()
}

fn quiet(cfg: SimConfig) -> SimConfig {
    let mut c = cfg;
    c.n_stars = 0;
    c.n_transients = 0;
    c
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let cfg = SimConfig::varying_psf().with_size(256, 192).with_seed(11);
    let a = simulate(&cfg).unwrap();
    let b = simulate(&cfg).unwrap();
    assert_eq!(a.science, b.science);
    assert_eq!(a.template, b.template);
    assert_eq!(a.science_mask, b.science_mask);
    assert_eq!(a.science_noise, b.science_noise);
    assert_eq!(a.truth, b.truth);
    let c = simulate(&cfg.clone().with_seed(12)).unwrap();
    assert_ne!(a.science, c.science);
    assert_ne!(a.truth.stars[0].x, c.truth.stars[0].x);
}

#[test]
fn independent_of_thread_count() {
    let cfg = SimConfig::sfft_issue().with_size(256, 256).with_seed(3);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| simulate(&cfg).unwrap());
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap()
        .install(|| simulate(&cfg).unwrap());
    let global = simulate(&cfg).unwrap();
    for p in [&three, &global] {
        assert_eq!(one.science, p.science);
        assert_eq!(one.template, p.template);
        assert_eq!(one.template_noise, p.template_noise);
        assert_eq!(one.truth, p.truth);
    }
}

#[test]
fn noiseless_star_flux_is_conserved() {
    for base in [SimConfig::default(), SimConfig::varying_psf()] {
        let mut cfg = base.with_size(256, 256).noiseless().with_seed(5);
        cfg.n_stars = 8;
        cfg.n_transients = 0;
        cfg.science.saturation = 1e12;
        cfg.template.saturation = 1e12;
        let pair = simulate(&cfg).unwrap();
        let (sbg, tbg) = (pair.science_background(), pair.template_background());
        let iso = isolated_stars(&pair, 52.0, 27.0);
        assert!(!iso.is_empty(), "no isolated star");
        for k in iso {
            let st = pair.truth.stars[k];
            let rs = pair.science_psf_rendered(st.x, st.y);
            let h = rs.data.nrows() / 2;
            let fs = box_sum(&pair.science, &sbg, st.x, st.y, h + 1);
            assert!(
                (fs - st.flux_science).abs() < 1e-3 * st.flux_science,
                "science {fs} vs {}",
                st.flux_science
            );
            let ht = pair.template_psf_rendered(st.x, st.y).data.nrows() / 2;
            let ft = box_sum(&pair.template, &tbg, st.x, st.y, ht + 1);
            assert!(
                (ft - st.flux_template).abs() < 1e-3 * st.flux_template,
                "template {ft} vs {}",
                st.flux_template
            );
        }
    }
}

#[test]
fn rendered_star_matches_true_psf() {
    let mut cfg = SimConfig::varying_psf()
        .with_size(256, 320)
        .noiseless()
        .with_seed(9);
    cfg.n_stars = 8;
    cfg.n_transients = 0;
    cfg.science.saturation = 1e12;
    cfg.template.saturation = 1e12;
    let pair = simulate(&cfg).unwrap();
    let bg = pair.science_background();
    let iso = isolated_stars(&pair, 52.0, 27.0);
    assert!(!iso.is_empty());
    for k in iso {
        let st = pair.truth.stars[k];
        let psf = pair.science_psf_rendered(st.x, st.y);
        let n = psf.data.nrows();
        let (y0, x0) = (psf.y0 as usize, psf.x0 as usize);
        let cut = pair.science.slice(s![y0..y0 + n, x0..x0 + n]);
        let cut_bg = bg.slice(s![y0..y0 + n, x0..x0 + n]);
        let mut obs = Array2::from_shape_fn((n, n), |(j, i)| {
            f64::from(cut[[j, i]]) - f64::from(cut_bg[[j, i]])
        });
        let sum = obs.sum();
        obs /= sum;
        let num: f64 = (&obs - &psf.data).iter().map(|v| v * v).sum();
        let den: f64 = psf.data.iter().map(|v| v * v).sum();
        let rel = (num / den).sqrt();
        assert!(rel < 1e-3, "star {k}: rel L2 {rel}");
        // The centred truth at the nearest pixel differs from the rendered one only by the
        // sub-pixel phase: with a zero phase they coincide.
        let centred = pair.science_psf_at(st.x.round(), st.y.round(), n);
        let at_int = pair.science_psf_rendered(st.x.round(), st.y.round());
        let d: f64 = (&centred - &at_int.data).iter().map(|v| v.abs()).sum();
        assert!(d < 1e-12, "psf_at vs rendered at integer position: {d}");
    }
}

#[test]
fn psf_fwhm_varies_as_configured() {
    let pair = simulate(&quiet(SimConfig::varying_psf()).with_size(256, 256)).unwrap();
    // Second moments of the true PSF grow with the configured FWHM.
    let width = |x: f64, y: f64| {
        let p = pair.science_psf_at(x, y, 41);
        let mut m = 0.0;
        for ((j, i), v) in p.indexed_iter() {
            m += v * ((j as f64 - 20.0).powi(2) + (i as f64 - 20.0).powi(2));
        }
        m
    };
    assert!(width(255.0, 255.0) > 2.0 * width(0.0, 0.0));
    let p = pair.template_psf_at(100.0, 100.0, 15);
    assert_eq!(p.dim(), (15, 15));
    assert!((p.sum() - 1.0).abs() < 1e-12);
    assert_eq!(
        p.indexed_iter()
            .fold((0, 0.0), |a, ((j, i), &v)| if v > a.1 {
                (j * 15 + i, v)
            } else {
                a
            })
            .0,
        7 * 15 + 7
    );
    assert!(matches!(
        pair.config.science.psf.profile,
        PsfProfile::Moffat { .. }
    ));
}

#[test]
fn blank_sky_noise_matches_config() {
    let mut cfg = quiet(SimConfig::default()).with_size(256, 256).with_seed(2);
    cfg.science.sky = Smooth::constant(800.0);
    cfg.template.sky = Smooth::constant(150.0);
    cfg.template.gain = 3.0;
    cfg.template.read_noise = 12.0;
    let pair = simulate(&cfg).unwrap();
    for (img, noise, im) in [
        (&pair.science, &pair.science_noise, &cfg.science),
        (&pair.template, &pair.template_noise, &cfg.template),
    ] {
        let sky = im.sky.c;
        let expect = (sky / im.gain + (im.read_noise / im.gain).powi(2)).sqrt();
        let n = img.len() as f64;
        let mean = img.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let std = (img
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0))
            .sqrt();
        assert!((mean - sky).abs() < 0.05 * expect, "mean {mean} vs {sky}");
        assert!((std / expect - 1.0).abs() < 0.02, "std {std} vs {expect}");
        assert!(
            noise
                .iter()
                .all(|&v| (f64::from(v) / expect - 1.0).abs() < 1e-6)
        );
    }
    let bg_rms = pair.science_background_rms();
    assert!((f64::from(bg_rms[[10, 10]]) - f64::from(pair.science_noise[[10, 10]])).abs() < 1e-4);
}

#[test]
fn transient_snr_is_as_defined() {
    let cfg = SimConfig::sfft_issue().with_size(320, 256).with_seed(21);
    let pair = simulate(&cfg).unwrap();
    assert_eq!(pair.truth.transients.len(), cfg.n_transients);
    let rn = cfg.science.read_noise / cfg.science.gain;
    for t in &pair.truth.transients {
        assert!(t.snr >= 3.0 && t.snr <= 50.0);
        // Independent recomputation: sum P^2 / var over the rendered stamp.
        let p = pair.science_psf_rendered(t.x, t.y);
        let mut inv = 0.0;
        for ((j, i), &v) in p.data.indexed_iter() {
            let (yy, xx) = ((p.y0 + j as isize) as f64, (p.x0 + i as isize) as f64);
            let var = cfg.science.sky.eval(xx, yy, cfg.ny, cfg.nx) / cfg.science.gain + rn * rn;
            inv += v * v / var;
        }
        let snr = t.flux * inv.sqrt();
        assert!((snr / t.snr - 1.0).abs() < 1e-9, "{snr} vs {}", t.snr);
    }
}

#[test]
fn sigma_flux_matches_the_noise() {
    // Optimal PSF flux estimates on blank noisy sky scatter by sigma_flux.
    let cfg = quiet(SimConfig::varying_psf())
        .with_size(512, 512)
        .with_seed(4);
    let pair = simulate(&cfg).unwrap();
    let bg = pair.science_background();
    let rms = pair.science_background_rms();
    let mut z = Vec::new();
    for gy in 0..14 {
        for gx in 0..14 {
            let (x, y) = (30.0 + 35.0 * gx as f64 + 0.3, 30.0 + 35.0 * gy as f64 - 0.2);
            let p = pair.science_psf_rendered(x, y);
            let (mut num, mut den) = (0.0, 0.0);
            for ((j, i), &v) in p.data.indexed_iter() {
                let (yy, xx) = ((p.y0 + j as isize) as usize, (p.x0 + i as isize) as usize);
                let var = f64::from(rms[[yy, xx]]).powi(2);
                num += v * (f64::from(pair.science[[yy, xx]]) - f64::from(bg[[yy, xx]])) / var;
                den += v * v / var;
            }
            z.push(num / den / pair.science_sigma_flux(x, y));
        }
    }
    let n = z.len() as f64;
    let mean = z.iter().sum::<f64>() / n;
    let sd = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(mean.abs() < 0.3, "mean {mean}");
    assert!((sd - 1.0).abs() < 0.15, "sd {sd}");
}

#[test]
fn transients_inject_their_flux_and_avoid_bright_stars() {
    let mut cfg = SimConfig::default().with_size(256, 256).with_seed(8);
    cfg.noise = false;
    let pair = simulate(&cfg).unwrap();
    let m = cfg.transient_edge_margin;
    for t in &pair.truth.transients {
        assert!(t.x >= m && t.y >= m && t.x <= 255.0 - m && t.y <= 255.0 - m);
        for s in &pair.truth.stars {
            if s.flux_template >= cfg.transient_bright_flux {
                assert!(
                    ((s.x - t.x).powi(2) + (s.y - t.y).powi(2)).sqrt() >= cfg.transient_min_sep
                );
            }
        }
    }
    // Without stars, science - background is the transients alone.
    let mut c2 = cfg.clone();
    c2.n_stars = 0;
    let p2 = simulate(&c2).unwrap();
    let bg = p2.science_background();
    let total: f64 = p2
        .science
        .iter()
        .zip(bg.iter())
        .map(|(&a, &b)| f64::from(a) - f64::from(b))
        .sum();
    let flux: f64 = p2.truth.transients.iter().map(|t| t.flux).sum();
    assert!((total - flux).abs() < 1e-3 * flux, "{total} vs {flux}");
    // The template holds no transient.
    let tb = p2.template_background();
    let tmax = p2
        .template
        .iter()
        .zip(tb.iter())
        .map(|(&a, &b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(tmax < 1e-2, "{tmax}");
}

#[test]
fn saturation_is_clipped_and_masked() {
    let mut cfg = SimConfig::default().with_size(256, 256).with_seed(13);
    cfg.science.saturation = 1300.0;
    cfg.template.saturation = 700.0;
    let pair = simulate(&cfg).unwrap();
    for (img, mask, sat) in [
        (&pair.science, &pair.science_mask, 1300.0f32),
        (&pair.template, &pair.template_mask, 700.0f32),
    ] {
        assert!(img.iter().all(|&v| v <= sat));
        assert!(mask.iter().any(|&m| m));
        for (&v, &m) in img.iter().zip(mask.iter()) {
            assert_eq!(m, v == sat);
        }
    }
    let n_sat = pair.truth.stars.iter().filter(|s| s.saturated).count();
    assert!(n_sat > 0);
    // A star whose peak alone exceeds the level is flagged.
    for s in &pair.truth.stars {
        let (x, y) = (s.x.round(), s.y.round());
        if x < 2.0 || y < 2.0 || x > 253.0 || y > 253.0 {
            continue;
        }
        let peak = pair
            .science_psf_rendered(s.x, s.y)
            .data
            .fold(0.0f64, |a, &b| a.max(b));
        if peak * s.flux_science > 2.0 * 1300.0 {
            assert!(s.saturated, "bright star not flagged: {s:?}");
        }
    }
}

#[test]
fn flux_scale_truth_matches_images() {
    let mut cfg = SimConfig::sfft_issue()
        .with_size(256, 256)
        .noiseless()
        .with_seed(17);
    cfg.n_stars = 8;
    cfg.n_transients = 0;
    cfg.science.saturation = 1e12;
    cfg.template.saturation = 1e12;
    let pair = simulate(&cfg).unwrap();
    assert!((pair.flux_scale_at(0.0, 0.0) - 1.17).abs() < 1e-12);
    assert!((pair.flux_scale_at(255.0, 255.0) - 1.23).abs() < 1e-12);
    let (sbg, tbg) = (pair.science_background(), pair.template_background());
    let iso = isolated_stars(&pair, 32.0, 16.0);
    assert!(!iso.is_empty());
    for k in iso {
        let st = pair.truth.stars[k];
        let fs = box_sum(&pair.science, &sbg, st.x, st.y, 14);
        let ft = box_sum(&pair.template, &tbg, st.x, st.y, 14);
        let want = pair.flux_scale_at(st.x, st.y);
        assert!((fs / ft / want - 1.0).abs() < 1e-3, "{} vs {want}", fs / ft);
        assert!((st.flux_science / st.flux_template / want - 1.0).abs() < 1e-12);
    }
}

#[test]
fn offset_moves_the_science() {
    let mut cfg = SimConfig::default()
        .with_size(256, 256)
        .noiseless()
        .with_seed(23);
    cfg.n_stars = 20;
    cfg.n_transients = 0;
    cfg.offset = (0.4, -0.3);
    cfg.science.saturation = 1e12;
    cfg.template.saturation = 1e12;
    let pair = simulate(&cfg).unwrap();
    let centroid = |img: &Array2<f32>, bg: &Array2<f32>, x: f64, y: f64| {
        let (xc, yc) = (x.round() as usize, y.round() as usize);
        let (mut sx, mut sy, mut s) = (0.0, 0.0, 0.0);
        for j in yc - 12..=yc + 12 {
            for i in xc - 12..=xc + 12 {
                let v = f64::from(img[[j, i]]) - f64::from(bg[[j, i]]);
                sx += v * i as f64;
                sy += v * j as f64;
                s += v;
            }
        }
        (sx / s, sy / s)
    };
    let (sbg, tbg) = (pair.science_background(), pair.template_background());
    let iso = isolated_stars(&pair, 50.0, 20.0);
    assert!(!iso.is_empty());
    for k in iso {
        let st = pair.truth.stars[k];
        let (xs, ys) = centroid(&pair.science, &sbg, st.x, st.y);
        let (xt, yt) = centroid(&pair.template, &tbg, st.x - 0.4, st.y + 0.3);
        assert!((xs - st.x).abs() < 0.02 && (ys - st.y).abs() < 0.02);
        assert!((xs - xt - 0.4).abs() < 0.03 && (ys - yt + 0.3).abs() < 0.03);
    }
    let crpix_s = pair.science_header.get_f64("CRPIX1").unwrap();
    let crpix_t = pair.template_header.get_f64("CRPIX1").unwrap();
    assert!((crpix_s - crpix_t - 0.4).abs() < 1e-12);
}

#[test]
fn non_square_shapes() {
    for (ny, nx) in [(256, 384), (300, 200)] {
        let pair = simulate(&SimConfig::varying_psf().with_size(ny, nx)).unwrap();
        for a in [
            &pair.science,
            &pair.template,
            &pair.science_noise,
            &pair.template_noise,
            &pair.science_background(),
            &pair.template_background(),
        ] {
            assert_eq!(a.dim(), (ny, nx));
        }
        assert_eq!(pair.science_mask.dim(), (ny, nx));
        assert_eq!(pair.template_mask.dim(), (ny, nx));
        assert!(
            pair.truth
                .stars
                .iter()
                .all(|s| s.x < nx as f64 && s.y < ny as f64)
        );
        let h = &pair.template_header;
        assert_eq!(h.get_f64("CRPIX1").unwrap() - 1.0, (nx as f64 - 1.0) / 2.0);
        assert_eq!(h.get_f64("CRPIX2").unwrap() - 1.0, (ny as f64 - 1.0) / 2.0);
    }
    // Star density is kept by with_size.
    assert_eq!(SimConfig::default().with_size(1024, 512).n_stars, 600);
}

#[test]
fn wcs_and_exposure_cards() {
    let cfg = SimConfig::default().with_size(256, 300).with_seed(77);
    let pair = simulate(&cfg).unwrap();
    for (h, im) in [
        (&pair.science_header, &cfg.science),
        (&pair.template_header, &cfg.template),
    ] {
        assert_eq!(h.get_str("CTYPE1").unwrap(), "RA---TAN");
        assert_eq!(h.get_str("CTYPE2").unwrap(), "DEC--TAN");
        assert_eq!(h.get_str("RADESYS").unwrap(), "ICRS");
        assert_eq!(h.get_f64("EQUINOX").unwrap(), 2000.0);
        assert_eq!(h.get_f64("CRVAL1").unwrap(), cfg.ra);
        assert_eq!(h.get_f64("CRVAL2").unwrap(), cfg.dec);
        // Centre pixel (nx-1)/2 (0-based) is CRPIX - 1.
        assert_eq!(h.get_f64("CRPIX1").unwrap() - 1.0, 149.5);
        assert_eq!(h.get_f64("CRPIX2").unwrap() - 1.0, 127.5);
        let scale = cfg.pixel_scale / 3600.0;
        assert!((h.get_f64("CD1_1").unwrap() + scale).abs() < 1e-15);
        assert!((h.get_f64("CD2_2").unwrap() - scale).abs() < 1e-15);
        assert_eq!(h.get_f64("CD1_2").unwrap(), 0.0);
        assert_eq!(h.get_f64("CD2_1").unwrap(), 0.0);
        assert_eq!(h.get_f64("GAIN").unwrap(), im.gain);
        assert_eq!(h.get_f64("RDNOISE").unwrap(), im.read_noise);
        assert_eq!(h.get_f64("SATURATE").unwrap(), im.saturation);
        assert!((h.get_f64("FWHM").unwrap() - im.psf.fwhm.c).abs() < 1e-12);
        assert_eq!(h.get_f64("EXPTIME").unwrap(), im.exptime);
        assert_eq!(h.get_f64("MJD-OBS").unwrap(), im.mjd);
        assert!((h.get_f64("SKYLEVEL").unwrap() - im.sky.c).abs() < 1e-9);
        assert_eq!(h.get_i64("SIMSEED").unwrap(), 77);
    }
}

#[test]
fn truth_csv_round_trips_and_rejects_garbage() {
    let pair = simulate(&SimConfig::default().with_size(256, 256)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truth.csv");
    pair.truth.write_csv(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("kind,x,y,flux,snr"));
    let back = Truth::read_csv(&path).unwrap();
    assert_eq!(back, pair.truth);

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "kind,x,y,flux,snr,flux_template,saturated\ngalaxy,1,2,3,,,\n",
    )
    .unwrap();
    assert!(matches!(
        Truth::read_csv(&bad),
        Err(SimError::CsvRow { line: 2, .. })
    ));
    std::fs::write(
        &bad,
        "kind,x,y,flux,snr,flux_template,saturated\nstar,one,2,3,,4,\n",
    )
    .unwrap();
    assert!(matches!(Truth::read_csv(&bad), Err(SimError::Csv(_))));
    std::fs::write(
        &bad,
        "kind,x,y,flux,snr,flux_template,saturated\ntransient,1,2,3,,,\n",
    )
    .unwrap();
    assert!(matches!(
        Truth::read_csv(&bad),
        Err(SimError::CsvRow { .. })
    ));
    assert!(matches!(
        Truth::read_csv(&dir.path().join("missing.csv")),
        Err(SimError::Csv(_))
    ));
}

#[test]
fn invalid_configs_are_errors() {
    let ok = SimConfig::default();
    assert!(matches!(
        simulate(&ok.clone().with_size(8, 512)),
        Err(SimError::InvalidSize { ny: 8, nx: 512 })
    ));
    let mut c = ok.clone();
    c.science.gain = 0.0;
    assert!(matches!(
        simulate(&c),
        Err(SimError::InvalidParameter {
            name: "science.gain",
            ..
        })
    ));
    let mut c = ok.clone();
    c.subsample = 4;
    assert!(matches!(
        simulate(&c),
        Err(SimError::InvalidParameter {
            name: "subsample",
            ..
        })
    ));
    let mut c = ok.clone();
    c.science.psf.profile = PsfProfile::Moffat { beta: 1.0 };
    assert!(matches!(
        simulate(&c),
        Err(SimError::InvalidParameter {
            name: "science.psf.beta",
            ..
        })
    ));
    let mut c = ok.clone();
    c.template.psf.fwhm = Smooth::corner_to_corner(3.0, -1.0);
    assert!(simulate(&c).is_err());
    let mut c = ok.clone();
    c.star_flux_min = f64::NAN;
    assert!(simulate(&c).is_err());
    let mut c = ok.clone().with_size(64, 64);
    c.n_transients = 500;
    c.transient_min_sep = 20.0;
    assert!(matches!(
        simulate(&c),
        Err(SimError::TransientPlacement { .. })
    ));
}
