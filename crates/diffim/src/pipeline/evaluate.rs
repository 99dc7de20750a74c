//! Scoring candidates against injected truth (the demo and the end-to-end tests).

use serde::Serialize;

use super::candidates::CandidateRow;

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
}
