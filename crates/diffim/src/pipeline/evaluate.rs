//! Injecting fake point sources, and scoring candidates against injected truth (the demo and
//! the end-to-end tests).

use ndarray::Array2;
use psf_kl::PsfModel;
use serde::Serialize;

use super::candidates::CandidateRow;

/// Where and how bright [`inject_fakes`] places its point sources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeParams {
    /// How many (fewer when the image has no more room). Default 60.
    pub n: usize,
    /// Seed of the positions and S/N. Default 12345.
    pub seed: u64,
    /// Distance from the image edges, pixels. Default 40.
    pub margin: f64,
    /// Minimum distance from the positions to avoid (detected objects), pixels. Default 15.
    pub clear_of_objects: f64,
    /// Minimum distance between fakes, pixels. Default 30.
    pub clear_of_fakes: f64,
    /// S/N range, drawn log-uniformly. Default (10, 40).
    pub snr: (f64, f64),
}

impl Default for FakeParams {
    fn default() -> Self {
        Self {
            n: 60,
            seed: 12345,
            margin: 40.0,
            clear_of_objects: 15.0,
            clear_of_fakes: 30.0,
            snr: (10.0, 40.0),
        }
    }
}

/// Adds up to `p.n` point sources shaped like `psf` (its model at each position, centred on a
/// pixel) to `image`, at seeded random positions away from the edges, from `avoid` and from
/// each other. A fake's S/N is that of PSF photometry on a background of RMS `sigma_bg`
/// (`flux = snr sigma_bg / sqrt(sum P^2)`; its own Poisson noise is not added). Returns the
/// truth as [`evaluate`] takes it: `(x, y, flux, snr)`.
pub fn inject_fakes(
    image: &mut Array2<f32>,
    psf: &dyn PsfModel,
    sigma_bg: f64,
    avoid: &[(f64, f64)],
    p: &FakeParams,
) -> Vec<(f64, f64, f64, f64)> {
    let (ny, nx) = image.dim();
    let mut state = p.seed;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut fakes: Vec<(f64, f64, f64, f64)> = Vec::new();
    let mut tries = 0;
    while fakes.len() < p.n && tries < 100_000 {
        tries += 1;
        let x = (p.margin + uniform() * (nx as f64 - 2.0 * p.margin)).round();
        let y = (p.margin + uniform() * (ny as f64 - 2.0 * p.margin)).round();
        let clear = avoid
            .iter()
            .all(|o| (o.0 - x).hypot(o.1 - y) > p.clear_of_objects)
            && fakes
                .iter()
                .all(|f| (f.0 - x).hypot(f.1 - y) > p.clear_of_fakes);
        if !clear {
            continue;
        }
        let snr = p.snr.0 * (p.snr.1 / p.snr.0).powf(uniform());
        let stamp = psf.psf_at(x, y);
        let h = stamp.nrows() / 2;
        let (xi, yi) = (x as usize, y as usize);
        if x < h as f64 || y < h as f64 || xi + h >= nx || yi + h >= ny {
            continue;
        }
        let norm = stamp.iter().map(|v| v * v).sum::<f64>().sqrt();
        let flux = snr * sigma_bg / norm;
        for ((j, i), v) in stamp.indexed_iter() {
            image[[yi + j - h, xi + i - h]] += (flux * v) as f32;
        }
        fakes.push((x, y, flux, snr));
    }
    fakes
}

/// One S/N bin of the completeness table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnrBin {
    /// Lower edge of the injected S/N (inclusive).
    pub snr_min: f64,
    /// Upper edge (exclusive; infinity for the last bin).
    pub snr_max: f64,
    /// Injected transients in the bin.
    pub injected: usize,
    /// Of those, recovered by a candidate within the match radius.
    pub recovered: usize,
}

impl SnrBin {
    /// recovered / injected (NaN for an empty bin).
    pub fn completeness(&self) -> f64 {
        self.recovered as f64 / self.injected as f64
    }
}

/// How candidates compare with the injected transients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Completeness per S/N bin.
    pub bins: Vec<SnrBin>,
    /// Injected transients with S/N >= 10.
    pub injected_snr10: usize,
    /// Of those, recovered.
    pub recovered_snr10: usize,
    /// Candidates matching no injected transient.
    pub false_candidates: usize,
    /// False candidates per megapixel of image area.
    pub false_per_mpix: f64,
    /// Median of measured / injected flux over recovered transients with S/N >= 10.
    pub median_flux_ratio: f64,
    /// Matches: (transient index, candidate index, distance in pixels).
    pub matches: Vec<(usize, usize, f64)>,
}

impl Evaluation {
    /// Completeness at injected S/N >= 10.
    pub fn completeness_snr10(&self) -> f64 {
        self.recovered_snr10 as f64 / self.injected_snr10 as f64
    }

    /// A plain-text table for terminals.
    pub fn table(&self) -> String {
        let mut s = String::from("injected S/N   injected  recovered  completeness\n");
        for b in &self.bins {
            let hi = if b.snr_max.is_finite() {
                format!("{:<4}", b.snr_max)
            } else {
                "inf ".into()
            };
            s.push_str(&format!(
                "{:>5} - {hi}  {:>8}  {:>9}  {:>11}\n",
                b.snr_min,
                b.injected,
                b.recovered,
                if b.injected > 0 {
                    format!("{:.1}%", 100.0 * b.completeness())
                } else {
                    "-".into()
                }
            ));
        }
        s.push_str(&format!(
            "S/N >= 10: {}/{} recovered; false candidates: {} ({:.2} per Mpix); median flux ratio (S/N >= 10): {:.3}\n",
            self.recovered_snr10,
            self.injected_snr10,
            self.false_candidates,
            self.false_per_mpix,
            self.median_flux_ratio
        ));
        s
    }
}

/// Matches candidates to injected transients (each transient to its nearest unused candidate
/// within `radius` pixels, brightest transients first) and tallies completeness by S/N, false
/// candidates per megapixel and the median flux ratio. `shape` is the image's (rows, columns).
pub fn evaluate(
    candidates: &[CandidateRow],
    transients: &[(f64, f64, f64, f64)],
    shape: (usize, usize),
    radius: f64,
) -> Evaluation {
    let edges = [3.0, 5.0, 10.0, 20.0, f64::INFINITY];
    let mut order: Vec<usize> = (0..transients.len()).collect();
    order.sort_by(|&a, &b| transients[b].3.total_cmp(&transients[a].3));
    let mut used = vec![false; candidates.len()];
    let mut matched = vec![None; transients.len()];
    let mut matches = Vec::new();
    for &t in &order {
        let (tx, ty, _, _) = transients[t];
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, c)| (i, ((c.x - tx).powi(2) + (c.y - ty).powi(2)).sqrt()))
            .filter(|(_, d)| *d <= radius)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, d)) = best {
            used[i] = true;
            matched[t] = Some(i);
            matches.push((t, i, d));
        }
    }
    let mut bins: Vec<SnrBin> = edges
        .windows(2)
        .map(|w| SnrBin {
            snr_min: w[0],
            snr_max: w[1],
            injected: 0,
            recovered: 0,
        })
        .collect();
    let (mut inj10, mut rec10) = (0, 0);
    let mut ratios = Vec::new();
    for (t, &(_, _, flux, snr)) in transients.iter().enumerate() {
        if let Some(b) = bins
            .iter_mut()
            .find(|b| snr >= b.snr_min && snr < b.snr_max)
        {
            b.injected += 1;
            b.recovered += usize::from(matched[t].is_some());
        }
        if snr >= 10.0 {
            inj10 += 1;
            if let Some(i) = matched[t] {
                rec10 += 1;
                ratios.push(candidates[i].flux / flux);
            }
        }
    }
    let false_candidates = used.iter().filter(|u| !**u).count();
    let mpix = (shape.0 * shape.1) as f64 / 1e6;
    Evaluation {
        bins,
        injected_snr10: inj10,
        recovered_snr10: rec10,
        false_candidates,
        false_per_mpix: false_candidates as f64 / mpix,
        median_flux_ratio: diffim_core::stats::median(ratios).unwrap_or(f64::NAN),
        matches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(x: f64, y: f64, flux: f64) -> CandidateRow {
        CandidateRow {
            id: 0,
            x,
            y,
            ra: None,
            dec: None,
            significance: 10.0,
            flux,
            flux_err: 1.0,
            snr: flux,
            mag: None,
            mag_err: None,
            npix: 5,
            flags: 0,
            adjust_pvalue: None,
            adjust_chi2_0: None,
            adjust_chi2: None,
            adjust_dx: None,
            adjust_dy: None,
            adjust_scale: None,
        }
    }

    #[test]
    fn matching_bins_and_false_candidates() {
        let truth = [
            (10.0, 10.0, 100.0, 12.0),
            (50.0, 50.0, 200.0, 4.0),
            (80.0, 20.0, 300.0, 30.0),
        ];
        let cands = [
            cand(10.5, 10.0, 110.0),
            cand(80.0, 21.5, 270.0),
            cand(5.0, 90.0, 50.0),
        ];
        let e = evaluate(&cands, &truth, (1000, 1000), 2.0);
        assert_eq!((e.injected_snr10, e.recovered_snr10), (2, 2));
        assert_eq!(e.false_candidates, 1);
        assert!((e.false_per_mpix - 1.0).abs() < 1e-12);
        assert!(
            (e.median_flux_ratio - 1.0).abs() < 1e-12,
            "median of 1.1 and 0.9"
        );
        let b = &e.bins[0];
        assert_eq!((b.snr_min, b.injected, b.recovered), (3.0, 1, 0));
        assert!(e.table().contains("S/N >= 10: 2/2"));
    }

    struct Gauss(Array2<f64>);
    impl PsfModel for Gauss {
        fn psf_at(&self, _x: f64, _y: f64) -> Array2<f64> {
            self.0.clone()
        }
        fn stamp_size(&self) -> usize {
            self.0.nrows()
        }
        fn fwhm_at(&self, _x: f64, _y: f64) -> f64 {
            3.0
        }
    }

    /// Fakes land where they are said to be, with the stated flux and PSF-photometry S/N,
    /// apart from each other and from the objects to avoid, and the same seed gives the same
    /// fakes.
    #[test]
    fn fakes_are_where_and_as_bright_as_reported() {
        let psf = diffim_core::psf::gaussian_stamp(15, 3.0, 0.0, 0.0);
        let p2: f64 = psf.iter().map(|v| v * v).sum();
        let model = Gauss(psf);
        let avoid = [(100.0, 100.0), (200.0, 150.0)];
        let p = FakeParams {
            n: 20,
            ..Default::default()
        };
        let mut img = Array2::<f32>::zeros((300, 400));
        let fakes = inject_fakes(&mut img, &model, 5.0, &avoid, &p);
        assert_eq!(fakes.len(), 20);
        for (k, &(x, y, flux, snr)) in fakes.iter().enumerate() {
            assert!((10.0..40.0).contains(&snr), "snr {snr}");
            assert!((flux * p2.sqrt() / 5.0 - snr).abs() < 1e-9 * snr);
            assert!((40.0..=360.0).contains(&x) && (40.0..=260.0).contains(&y));
            assert!(avoid.iter().all(|a| (a.0 - x).hypot(a.1 - y) > 15.0));
            assert!(fakes[..k].iter().all(|f| (f.0 - x).hypot(f.1 - y) > 30.0));
            let (xi, yi) = (x as usize, y as usize);
            let sum: f64 = img
                .slice(ndarray::s![yi - 7..=yi + 7, xi - 7..=xi + 7])
                .iter()
                .map(|&v| v as f64)
                .sum();
            assert!((sum / flux - 1.0).abs() < 1e-4, "{sum} vs {flux}");
        }
        let mut again = Array2::<f32>::zeros((300, 400));
        assert_eq!(inject_fakes(&mut again, &model, 5.0, &avoid, &p), fakes);
    }
}
