//! Diagnostics of ZOGY on the real properimage pair with injected fakes (development tool).
//!
//! `DIFFIM_DATA=/work/shared/data cargo run -p zogy-core --example real_pair_diag`
//! Defaults as the facade runs ZOGY. Knobs (env): `ZD_AST` astrometric sigma (px), `ZD_GAIN`
//! gain scale, `ZD_DIL` saturation dilation (px, 5), `ZD_CONST` = 1 for constant PSFs (centre
//! of the KL model), `ZD_PSFERR` (0.02) / `ZD_WING` (0.04) / `ZD_WSIG` model-error terms,
//! `ZD_TILE` tile size (256), `ZD_CR` = 0 disables cosmic rays (`ZD_CRF` contrast factor,
//! `ZD_CRS` sigclip), `ZD_STAMP` PSF stamp in FWHM, `ZD_LIST` = 1 lists false positives.
#![allow(clippy::unwrap_used, missing_docs)]

use diffim_core::stats::{mad_std, median};
use ndarray::Array2;
use psf_kl::{PsfEstimateParams, PsfModel, estimate_psf};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use source_extract::{NoiseParams, noise_model};
use zogy_core::{FnPsf, ZogyInputs, ZogyParams, ZogyResult, zogy};

fn env(k: &str, d: f64) -> f64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    let dir = std::env::var("DIFFIM_DATA").unwrap_or("/work/shared/data".into());
    let hdu = fits_io::Hdu::Primary;
    let rd = |f: &str| {
        fits_io::read_image::<f32>(format!("{dir}/properimage/{f}").as_ref(), &hdu)
            .unwrap()
            .data
    };
    let reference = rd("aligned_eso085-030-004.fit");
    let clean = rd("aligned_eso085-030-005.fit");
    let (ny, nx) = clean.dim();
    let sat = 65_000.0;
    let dil = env("ZD_DIL", 5.0) as usize;
    let flat = env("ZD_FLAT", 1.0) > 0.5;
    let smask = |a: &Array2<f32>| {
        let mut m = zogy_core::masks::saturation_mask(&a.view(), None, dil);
        if flat {
            m.zip_mut_with(&zogy_core::masks::flat_run_mask(&a.view(), 8, 2), |p, q| {
                *p |= q
            });
        }
        m
    };
    let (rm, nm) = (smask(&reference), smask(&clean));
    let gs = env("ZD_GAIN", 1.0);
    let (gain_n, gain_r) = (1.35 * gs, 1.52 * gs);
    let est = |img: &Array2<f32>, m: &Array2<bool>, g: f64| {
        let mut p = PsfEstimateParams {
            saturation: Some(sat),
            gain: Some(g),
            ..Default::default()
        };
        p.select.stamp_fwhm_factor = env("ZD_STAMP", 5.0);
        estimate_psf(&img.view(), Some(&m.view()), &p).unwrap()
    };
    let e0 = est(&clean, &nm, 1.35);
    let sigma = e0.background.global_rms;
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
            .objects
            .iter()
            .all(|o| (o.x - x).hypot(o.y - y) > 15.0 + 2.0 * o.a.max(0.0))
            && fakes.iter().all(|f| (f.0 - x).hypot(f.1 - y) > 20.0)
            && !nm[[y.round() as usize, x.round() as usize]];
        if !empty {
            continue;
        }
        let (xi, yi) = (x.round() as usize, y.round() as usize);
        let p = e0.model.psf_at(x, y);
        let h = p.dim().0 / 2;
        let p2: f64 = p.iter().map(|v| v * v).sum();
        let snr = (3.0f64.ln() + rng.random::<f64>() * (50.0f64 / 3.0).ln()).exp();
        let flux = snr * sigma / p2.sqrt();
        for ((j, i), &pv) in p.indexed_iter() {
            let v = flux * pv;
            let noise = (v.max(0.0) / 1.35).sqrt() * g.sample(&mut rng);
            new[[yi + j - h, xi + i - h]] += (v + noise) as f32;
        }
        fakes.push((x, y, flux, snr));
    }
    let t0 = std::time::Instant::now();
    let se = est(&new, &nm, gain_n);
    let te = est(&reference, &rm, gain_r);
    eprintln!(
        "psf: n_basis new {} ref {}, degree {} {}, stamp {} {}, fwhm {:.3} {:.3}",
        se.model.n_basis(),
        te.model.n_basis(),
        se.model.degree(),
        te.model.degree(),
        se.model.stamp_size(),
        te.model.stamp_size(),
        se.fwhm,
        te.fwhm
    );
    let np = NoiseParams::default();
    let sn = noise_model(&new.view(), &se.background, Some(&nm.view()), gain_n, &np).unwrap();
    let tn = noise_model(
        &reference.view(),
        &te.background,
        Some(&rm.view()),
        gain_r,
        &np,
    )
    .unwrap();
    let mut n = &new - &se.background.background;
    let mut r = &reference - &te.background.background;
    let (nm, rm) = (nm.clone(), rm.clone());
    if env("ZD_CR", 1.0) > 0.5 {
        let (xc, yc) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
        let cp = zogy_core::masks::CosmicParams {
            psf_contrast_factor: env("ZD_CRF", 2.0),
            sigclip: env("ZD_CRS", 4.5),
            ..Default::default()
        };
        let pn0 = zogy_core::remove_pedestal(&se.model.psf_at(xc, yc));
        let pr0 = zogy_core::remove_pedestal(&te.model.psf_at(xc, yc));
        let tc = std::time::Instant::now();
        let a = zogy_core::masks::cosmic_rays(&mut n, &sn.view(), Some(&nm.view()), &pn0, &cp);
        let b = zogy_core::masks::cosmic_rays(&mut r, &tn.view(), Some(&rm.view()), &pr0, &cp);
        eprintln!(
            "cosmic {:.3} s pixels: new {} ref {} (contrast {:.3} / {:.3}, psf {:.3} / {:.3}, iters {} {})",
            tc.elapsed().as_secs_f64(),
            a.mask.iter().filter(|&&v| v).count(),
            b.mask.iter().filter(|&&v| v).count(),
            a.contrast,
            b.contrast,
            a.psf_contrast,
            b.psf_contrast,
            a.iterations,
            b.iterations
        );
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
    let constant = env("ZD_CONST", 0.0) > 0.5;
    let (xc, yc) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let (cn, cr) = (se.model.psf_at(xc, yc), te.model.psf_at(xc, yc));
    let ped = env("ZD_PED", 1.0) > 0.5;
    let strip = |p: Array2<f64>| {
        if ped {
            zogy_core::remove_pedestal(&p)
        } else {
            p
        }
    };
    let pn = FnPsf(|x, y| strip(se.model.psf_at(x, y)));
    let pr = FnPsf(|x, y| strip(te.model.psf_at(x, y)));
    let (pnd, prd): (&dyn zogy_core::PsfProvider, &dyn zogy_core::PsfProvider) =
        if constant { (&cn, &cr) } else { (&pn, &pr) };
    let ast = env("ZD_AST", 0.0);
    let params = ZogyParams {
        sigma_astrometric: (ast, ast),
        psf_error: env("ZD_PSFERR", 0.02),
        psf_wing_error: env("ZD_WING", 0.04),
        psf_wing_sigma: env("ZD_WSIG", 0.0),
        tile_size: env("ZD_TILE", 256.0) as usize,
        estimate_astrometric: env("ZD_AUTO", 1.0) > 0.5,
        ..Default::default()
    };
    let inputs = ZogyInputs {
        new_mask: Some(nm.view()),
        ref_mask: Some(rm.view()),
        new_noise: Some(sn.view()),
        ref_noise: Some(tn.view()),
        sigma_new: Some(se.background.global_rms),
        sigma_ref: Some(te.background.global_rms),
        stars: &stars,
        ..ZogyInputs::new(n.view(), r.view(), pnd, prd)
    };
    let res = zogy(&inputs, &params).unwrap();
    eprintln!(
        "time {:.3} s sig_ast {:?}",
        t0.elapsed().as_secs_f64(),
        res.diagnostics.sigma_astrometric
    );
    report(&res, &fakes, &se.objects, &new, &reference, sat);
}

fn report(
    res: &ZogyResult,
    fakes: &[(f64, f64, f64, f64)],
    objs: &[source_extract::Object],
    new: &Array2<f32>,
    reference: &Array2<f32>,
    sat: f64,
) {
    let (ny, nx) = res.scorr.dim();
    let a = &res.scorr;
    let mut fps = Vec::new();
    for y in 1..ny - 1 {
        for x in 1..nx - 1 {
            let v = a[[y, x]].abs();
            if v < 5.0 || res.mask[[y, x]] {
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
            if is_max
                && !fakes
                    .iter()
                    .any(|f| (f.0 - x as f64).hypot(f.1 - y as f64) <= 3.0)
            {
                fps.push((y, x, a[[y, x]]));
            }
        }
    }
    let bright: Vec<_> = fakes.iter().filter(|f| f.3 >= 10.0).collect();
    let maxnear = |x: f64, y: f64| {
        let mut m = f32::MIN;
        for j in (y - 2.0).floor() as usize..=(y + 2.0).ceil() as usize {
            for i in (x - 2.0).floor() as usize..=(x + 2.0).ceil() as usize {
                if (j as f64 - y).hypot(i as f64 - x) <= 2.0 {
                    m = m.max(a[[j, i]]);
                }
            }
        }
        m
    };
    let found = bright.iter().filter(|f| maxnear(f.0, f.1) >= 5.0).count();
    let fr = median(
        bright
            .iter()
            .filter_map(|f| res.flux_at(f.0, f.1).map(|v| v * res.beta / f.2)),
    )
    .unwrap();
    let sd = mad_std(
        res.scorr
            .iter()
            .zip(res.mask.iter())
            .filter(|(_, m)| !**m)
            .map(|(v, _)| *v as f64),
    )
    .unwrap();
    println!(
        "beta {:.4}±{:.4} shift ({:.3},{:.3}) tiles {} FP {} ({:.1}/Mpix) completeness {}/{} flux ratio {:.4} scorr std(all) {:.3} masked {:.4}",
        res.beta,
        res.beta_err,
        res.shift.0,
        res.shift.1,
        res.diagnostics.n_tiles,
        fps.len(),
        fps.len() as f64 / (ny * nx) as f64 * 1e6,
        found,
        bright.len(),
        fr,
        sd,
        res.mask.iter().filter(|&&m| m).count() as f64 / (ny * nx) as f64
    );
    if std::env::var("ZD_LIST").is_ok() {
        for (y, x, v) in &fps {
            let near = objs
                .iter()
                .min_by(|p, q| {
                    (p.x - *x as f64)
                        .hypot(p.y - *y as f64)
                        .total_cmp(&(q.x - *x as f64).hypot(q.y - *y as f64))
                })
                .unwrap();
            let d = (near.x - *x as f64).hypot(near.y - *y as f64);
            let pk = |im: &Array2<f32>| {
                let (cx, cy) = (near.x.round() as usize, near.y.round() as usize);
                let mut m = f32::MIN;
                for j in cy.saturating_sub(3)..(cy + 4).min(ny) {
                    for i in cx.saturating_sub(3)..(cx + 4).min(nx) {
                        m = m.max(im[[j, i]]);
                    }
                }
                m
            };
            println!(
                "  fp ({x},{y}) scorr {v:.1} flux_err/flux? d_obj {d:.1} obj flux {:.0} snr {:.0} flags {} peak new {:.0} ref {:.0} sat? {}",
                near.flux,
                near.snr,
                near.flags,
                pk(new),
                pk(reference),
                pk(new) as f64 >= sat || pk(reference) as f64 >= sat
            );
        }
    }
}
