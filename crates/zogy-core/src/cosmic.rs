//! Cosmic rays by Laplacian edge detection (L.A.Cosmic, van Dokkum 2001, PASP 113, 1420),
//! with the star/cosmic-ray contrast limit derived from the image's own PSF.
//!
//! Per iteration, with `I` the background-subtracted image and `sigma` its per-pixel RMS:
//! - `L+`: the Laplacian of `I` subsampled 2x2 (kernel `[[0,-1,0],[-1,4,-1],[0,-1,0]]`),
//!   negative values set to zero, averaged back over each 2x2 block (the paper's eq. 4-6);
//!   on the original grid each sub-pixel value is `2 I - I_a - I_b` with `a`, `b` the two
//!   neighbours facing that sub-pixel's corner;
//! - `S = L+ / (2 sigma)` (an isolated pixel of amplitude `A` has `S = A / sigma`) and
//!   `S' = S - M5(S)` (extended structure removed; `M5` a 5x5 median);
//! - fine structure `F = M3(I) - M7(M3(I))` (`M3`, `M7` medians), in units of `sigma`,
//!   floored at 0.01;
//! - a cosmic ray is `S' > sigclip`, `I > sigclip sigma` and `S' / F > contrast`; its 8 neighbours join when
//!   `S' > sigclip`, theirs when `S' > neighbour_clip` (the paper's `sigfrac sigclip`), both
//!   also with `S' / F > contrast` (unlike the paper, so that a hit on a star does not take
//!   the star's core with it);
//! - the new pixels are replaced by the median of the good pixels in their 5x5 box, and the
//!   next iteration runs on the cleaned image, until none is found.
//!
//! The paper's `f_lim` ("contrast") depends on the sampling (its fig. 4: ~2 for critical
//! sampling, 4-5 for HST). Here it is `psf_contrast_factor` times the contrast `S'/F` of the
//! PSF itself at its peak, so a star is never flagged whatever the seeing, while a cosmic ray
//! that an alignment resampled into a ~1.5 px blob (much sharper than a 2.8 px star, but not
//! a single pixel) still is.
//!
//! Only pixels where `S > sigclip` (few) get the median filters, so the cost is one pass over
//! the image per iteration plus a small amount per candidate.

use ndarray::{Array2, ArrayView2, Zip};

/// Parameters of [`cosmic_rays`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CosmicParams {
    /// Detection limit on `S'` (sigmas). Default 4.5 (the paper's `sigclip`).
    pub sigclip: f64,
    /// Limit on `S'` for the second ring of neighbours. Default 1.35 (`0.3 sigclip`).
    pub neighbour_clip: f64,
    /// Contrast limit `S'/F` between a cosmic ray and the fine structure. `None` (default):
    /// `psf_contrast_factor` times the PSF's own contrast (at least 0.5).
    pub contrast: Option<f64>,
    /// Multiple of the PSF's contrast used as the limit when `contrast` is `None`. Default 2.
    pub psf_contrast_factor: f64,
    /// Maximum iterations. Default 4.
    pub max_iter: usize,
    /// Also flag *negative* features sharper than the PSF (holes left by an over-subtracted
    /// dark or hot pixel and then resampled, as in the ProperImage reference frame): no sky
    /// source is negative, so they are artefacts. Default `true`.
    pub negative: bool,
}

impl Default for CosmicParams {
    fn default() -> Self {
        Self {
            sigclip: 4.5,
            neighbour_clip: 1.35,
            contrast: None,
            psf_contrast_factor: 2.0,
            max_iter: 4,
            negative: true,
        }
    }
}

/// Result of [`cosmic_rays`].
#[derive(Debug, Clone)]
pub struct CosmicRays {
    /// Cosmic-ray pixels (`true`), already replaced in the image.
    pub mask: Array2<bool>,
    /// The contrast limit used.
    pub contrast: f64,
    /// The PSF's own contrast `S'/F` at its peak.
    pub psf_contrast: f64,
    /// Iterations run.
    pub iterations: usize,
}

/// Finds cosmic rays (and hot pixels) in the background-subtracted `image` and replaces them
/// in place from the good pixels around them (see the module docs).
///
/// `noise` is the per-pixel RMS (with source noise), `psf` the image's PSF stamp (odd, centred),
/// `mask` pixels that must not be flagged nor used for the replacement (saturation, fill).
/// Non-finite pixels count as 0 and are never flagged.
///
/// # Panics
/// When `noise` or `mask` does not have the shape of `image` (a caller bug).
pub fn cosmic_rays(
    image: &mut Array2<f32>,
    noise: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    psf: &Array2<f64>,
    p: &CosmicParams,
) -> CosmicRays {
    let dim = image.dim();
    assert_eq!(noise.dim(), dim, "noise shape");
    if let Some(m) = mask {
        assert_eq!(m.dim(), dim, "mask shape");
    }
    let psf_contrast = psf_contrast(psf);
    let contrast = p
        .contrast
        .unwrap_or((p.psf_contrast_factor * psf_contrast).max(0.5));
    let mut out = Array2::from_elem(dim, false);
    let (ny, nx) = dim;
    let mut iterations = 0;
    if ny < 3 || nx < 3 {
        return CosmicRays {
            mask: out,
            contrast,
            psf_contrast,
            iterations,
        };
    }
    // S of the image and of its negative (holes), computed in full once and then only
    // around the replaced pixels (S is 3x3-local).
    let mut s_pos = Array2::<f32>::zeros(dim);
    let mut s_neg = Array2::<f32>::zeros(dim);
    laplacian_snr(&image.view(), noise, &mut s_pos, &mut s_neg);
    let mut pend = Array2::from_elem(dim, false);
    let signs: &[f32] = if p.negative { &[1.0, -1.0] } else { &[1.0] };
    // Iteration 1 looks everywhere; later ones only within 5 px of the pixels just replaced
    // (the Laplacian, its 5x5 median and the fine structure reach no further).
    let mut near: Option<Vec<(usize, usize)>> = None;
    for _ in 0..p.max_iter.max(1) {
        iterations += 1;
        let mut fresh: Vec<(usize, usize)> = Vec::new();
        for &sign in signs {
            let look = Look {
                img: image.view(),
                sign,
                s: if sign > 0.0 { &s_pos } else { &s_neg },
                noise,
                mask,
                contrast,
                p,
            };
            look.detect(&out, near.as_deref(), &mut pend, &mut fresh);
        }
        if fresh.is_empty() {
            break;
        }
        for &(y, x) in &fresh {
            out[[y, x]] = true;
            pend[[y, x]] = false;
        }
        let vals: Vec<f32> = fresh
            .iter()
            .map(|&(y, x)| {
                let sig = noise[[y, x]] as f64;
                replacement(&image.view(), &out.view(), mask, psf, sig, y, x)
            })
            .collect();
        for (&(y, x), v) in fresh.iter().zip(vals) {
            image[[y, x]] = v;
        }
        let mut region = Vec::new();
        for &(y, x) in &fresh {
            for j in y.saturating_sub(5)..(y + 6).min(ny) {
                for i in x.saturating_sub(5)..(x + 6).min(nx) {
                    if j.abs_diff(y) <= 1 && i.abs_diff(x) <= 1 {
                        let (a, b) = laplacian_at(&image.view(), noise, j, i);
                        s_pos[[j, i]] = a;
                        s_neg[[j, i]] = b;
                    }
                    region.push((j, i));
                }
            }
        }
        region.sort_unstable();
        region.dedup();
        near = Some(region);
    }
    CosmicRays {
        mask: out,
        contrast,
        psf_contrast,
        iterations,
    }
}

/// One detection pass over `sign * image`.
struct Look<'a> {
    img: ArrayView2<'a, f32>,
    sign: f32,
    s: &'a Array2<f32>,
    noise: &'a ArrayView2<'a, f32>,
    mask: Option<&'a ArrayView2<'a, bool>>,
    contrast: f64,
    p: &'a CosmicParams,
}

impl Look<'_> {
    fn value(&self, y: usize, x: usize) -> f64 {
        (self.sign * self.img[[y, x]]) as f64
    }

    /// `S' = S - M5(S)`.
    fn s_prime(&self, y: usize, x: usize) -> f64 {
        self.s[[y, x]] as f64 - median_box(&self.s.view(), y, x, 2)
    }

    /// Significant (`value > clip sigma`: a pixel beside a star or a hole can have a large
    /// Laplacian and a negative fine structure without being an outlier) and sharp
    /// (`S' / F > contrast`), given `S' = spv`.
    fn sharp(&self, y: usize, x: usize, spv: f64, clip: f64) -> bool {
        let sig = self.noise[[y, x]] as f64;
        if sig.is_nan() || sig <= 0.0 || self.value(y, x) <= clip * sig {
            return false;
        }
        // The medians commute with the sign: F(-I) = -F(I).
        let f = (self.sign as f64 * fine_structure(&self.img, y, x) / sig).max(0.01);
        spv / f > self.contrast
    }

    fn blocked(&self, y: usize, x: usize, out: &Array2<bool>, pend: &Array2<bool>) -> bool {
        out[[y, x]] || pend[[y, x]] || self.mask.is_some_and(|m| m[[y, x]])
    }

    /// Cores (`S' > sigclip`, sharp; only at `near` when given) and their two rings of sharp
    /// neighbours, not already in `out` or `pend` nor masked: appended to `found` and set in
    /// `pend`.
    fn detect(
        &self,
        out: &Array2<bool>,
        near: Option<&[(usize, usize)]>,
        pend: &mut Array2<bool>,
        found: &mut Vec<(usize, usize)>,
    ) {
        let (ny, nx) = self.img.dim();
        let p = self.p;
        let start = found.len();
        let mut core = |y: usize, x: usize, pend: &mut Array2<bool>| {
            if (self.s[[y, x]] as f64) <= p.sigclip
                || self.blocked(y, x, out, pend)
                || self.value(y, x) <= p.sigclip * self.noise[[y, x]] as f64
            {
                return;
            }
            let spv = self.s_prime(y, x);
            if spv > p.sigclip && self.sharp(y, x, spv, p.sigclip) {
                pend[[y, x]] = true;
                found.push((y, x));
            }
        };
        match near {
            Some(px) => px.iter().for_each(|&(y, x)| core(y, x, pend)),
            None => {
                for y in 0..ny {
                    for x in 0..nx {
                        core(y, x, pend);
                    }
                }
            }
        }
        // Ring 1: neighbours of the cores at `sigclip`; ring 2: neighbours of both at
        // `neighbour_clip`.
        let n_core = found.len();
        for (clip, upto) in [(p.sigclip, n_core), (p.neighbour_clip, usize::MAX)] {
            let end = found.len().min(upto);
            for k in start..end {
                let (y, x) = found[k];
                for j in y.saturating_sub(1)..(y + 2).min(ny) {
                    for i in x.saturating_sub(1)..(x + 2).min(nx) {
                        if self.blocked(j, i, out, pend) {
                            continue;
                        }
                        let spv = self.s_prime(j, i);
                        if spv > clip && self.sharp(j, i, spv, clip) {
                            pend[[j, i]] = true;
                            found.push((j, i));
                        }
                    }
                }
            }
        }
    }
}

/// `(S+, S-)` at one pixel: `L+ / (2 sigma)` of the image and of its negative.
fn laplacian_at(img: &ArrayView2<f32>, noise: &ArrayView2<f32>, y: usize, x: usize) -> (f32, f32) {
    let (ny, nx) = img.dim();
    let v = |y: usize, x: usize| {
        let a = img[[y, x]];
        if a.is_finite() { a } else { 0.0 }
    };
    let sig = noise[[y, x]];
    if !(sig > 0.0 && sig.is_finite()) {
        return (0.0, 0.0);
    }
    let c = 2.0 * v(y, x);
    // Out-of-image neighbours mirror the pixel itself (no edge response).
    let up = if y > 0 { v(y - 1, x) } else { v(y, x) };
    let dn = if y + 1 < ny { v(y + 1, x) } else { v(y, x) };
    let lf = if x > 0 { v(y, x - 1) } else { v(y, x) };
    let rt = if x + 1 < nx { v(y, x + 1) } else { v(y, x) };
    let (mut lp, mut ln) = (0.0f32, 0.0f32);
    for d in [c - up - lf, c - up - rt, c - dn - lf, c - dn - rt] {
        lp += d.max(0.0);
        ln += (-d).max(0.0);
    }
    let k = 0.25 / (2.0 * sig);
    (lp * k, ln * k)
}

/// `S = L+ / (2 sigma)` of the 2x2-subsampled Laplacian (see the module docs) of the image
/// into `s_pos` and of its negative into `s_neg`.
fn laplacian_snr(
    img: &ArrayView2<f32>,
    noise: &ArrayView2<f32>,
    s_pos: &mut Array2<f32>,
    s_neg: &mut Array2<f32>,
) {
    Zip::indexed(s_pos)
        .and(s_neg)
        .par_for_each(|(y, x), a, b| (*a, *b) = laplacian_at(img, noise, y, x));
}

/// Median of the finite values of `a` in the `(2r+1)^2` box around `(y, x)` (clipped at the
/// edges); 0 when none.
fn median_box(a: &ArrayView2<f32>, y: usize, x: usize, r: usize) -> f64 {
    let (ny, nx) = a.dim();
    let mut buf = [0.0f64; 49];
    let mut n = 0;
    for j in y.saturating_sub(r)..(y + r + 1).min(ny) {
        for i in x.saturating_sub(r)..(x + r + 1).min(nx) {
            let v = a[[j, i]];
            if v.is_finite() && n < buf.len() {
                buf[n] = v as f64;
                n += 1;
            }
        }
    }
    diffim_core::stats::median_in_place(&mut buf[..n]).unwrap_or(0.0)
}

/// Fine structure `M3(I) - M7(M3(I))` at `(y, x)`, from the 7x7 box of 3x3 medians.
fn fine_structure(img: &ArrayView2<f32>, y: usize, x: usize) -> f64 {
    let (ny, nx) = img.dim();
    let m3 = |j: usize, i: usize| median_box(img, j, i, 1);
    let mut buf = [0.0f64; 49];
    let mut n = 0;
    for j in y.saturating_sub(3)..(y + 4).min(ny) {
        for i in x.saturating_sub(3)..(x + 4).min(nx) {
            buf[n] = m3(j, i);
            n += 1;
        }
    }
    let m7 = diffim_core::stats::median_in_place(&mut buf[..n]).unwrap_or(0.0);
    m3(y, x) - m7
}

/// The value replacing the cosmic-ray pixel `(y, x)`, from the good (finite, unmasked, not
/// cosmic) pixels of the 7x7 box around it: the best fit of a scaled PSF plus a constant,
/// with the PSF centred on the pixel or one of its 8 neighbours, when that fit beats a constant
/// by `Delta chi^2 > 25` (a cosmic ray on a star: the star's profile is restored, not flattened);
/// otherwise their median. Boxes grow when they hold fewer than 6 good pixels.
fn replacement(
    img: &ArrayView2<f32>,
    cr: &ArrayView2<bool>,
    mask: Option<&ArrayView2<bool>>,
    psf: &Array2<f64>,
    sigma: f64,
    y: usize,
    x: usize,
) -> f32 {
    let (ny, nx) = img.dim();
    let (ph, pw) = psf.dim();
    let good = |j: usize, i: usize| {
        img[[j, i]].is_finite() && !cr[[j, i]] && !mask.is_some_and(|m| m[[j, i]])
    };
    let mut r = 3;
    let mut pix: Vec<(usize, usize, f64)> = Vec::with_capacity(49);
    while r <= 24 {
        pix.clear();
        for j in y.saturating_sub(r)..(y + r + 1).min(ny) {
            for i in x.saturating_sub(r)..(x + r + 1).min(nx) {
                if good(j, i) {
                    pix.push((j, i, img[[j, i]] as f64));
                }
            }
        }
        if pix.len() >= 6 {
            break;
        }
        r *= 2;
    }
    if pix.is_empty() {
        return 0.0;
    }
    let n = pix.len() as f64;
    let mean = pix.iter().map(|p| p.2).sum::<f64>() / n;
    let chi0: f64 = pix.iter().map(|p| (p.2 - mean).powi(2)).sum();
    let at = |yc: isize, xc: isize, j: usize, i: usize| {
        let (u, v) = (
            j as isize - yc + (ph / 2) as isize,
            i as isize - xc + (pw / 2) as isize,
        );
        if u >= 0 && v >= 0 && (u as usize) < ph && (v as usize) < pw {
            psf[[u as usize, v as usize]]
        } else {
            0.0
        }
    };
    let mut best: Option<(f64, f64)> = None; // (chi2, value at (y, x))
    for dy in -1..=1isize {
        for dx in -1..=1isize {
            let (yc, xc) = (y as isize + dy, x as isize + dx);
            let (mut sp, mut spp, mut sd, mut spd) = (0.0, 0.0, 0.0, 0.0);
            for &(j, i, d) in &pix {
                let pv = at(yc, xc, j, i);
                sp += pv;
                spp += pv * pv;
                sd += d;
                spd += pv * d;
            }
            let det = n * spp - sp * sp;
            if det <= 1e-12 * n * spp.max(1e-300) {
                continue;
            }
            let a = (n * spd - sp * sd) / det;
            let b = (sd - a * sp) / n;
            if a.is_nan() || a <= 0.0 {
                continue;
            }
            let chi: f64 = pix
                .iter()
                .map(|&(j, i, d)| (d - a * at(yc, xc, j, i) - b).powi(2))
                .sum();
            if best.is_none_or(|(c, _)| chi < c) {
                best = Some((chi, a * at(yc, xc, y, x) + b));
            }
        }
    }
    let s2 = (sigma * sigma).max(1e-300);
    match best {
        Some((chi, v)) if (chi0 - chi) / s2 > 25.0 => v as f32,
        _ => {
            let mut v: Vec<f64> = pix
                .iter()
                .filter(|p| p.0.abs_diff(y) <= 2 && p.1.abs_diff(x) <= 2)
                .map(|p| p.2)
                .collect();
            if v.is_empty() {
                v = pix.iter().map(|p| p.2).collect();
            }
            diffim_core::stats::median_in_place(&mut v).unwrap_or(0.0) as f32
        }
    }
}

/// The contrast `S'/F` measured on real stars: at the brightest pixel within 1 px of each
/// position in `stars` (`(x, y)`; bright, unsaturated, isolated stars), the `quantile` (e.g.
/// 0.9) of the values. `None` with fewer than 5 usable stars. An empirical alternative to
/// [`psf_contrast`] when no PSF model is at hand (a Gaussian of the measured FWHM
/// underestimates how sharp real cores are).
pub fn star_contrast(
    image: &ArrayView2<f32>,
    noise: &ArrayView2<f32>,
    stars: &[(f64, f64)],
    quantile: f64,
) -> Option<f64> {
    let (ny, nx) = image.dim();
    let mut v: Vec<f64> = Vec::new();
    for &(x, y) in stars {
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        let (xi, yi) = (x.round() as isize, y.round() as isize);
        if xi < 8 || yi < 8 || xi + 8 >= nx as isize || yi + 8 >= ny as isize {
            continue;
        }
        let (mut py, mut px) = (yi as usize, xi as usize);
        for j in py - 1..=py + 1 {
            for i in px - 1..=px + 1 {
                if image[[j, i]] > image[[py, px]] {
                    (py, px) = (j, i);
                }
            }
        }
        // S in the 5x5 box (for S' = S - M5(S)), then S'/F at the peak.
        let mut s5 = Array2::<f32>::zeros((5, 5));
        for ((j, i), o) in s5.indexed_iter_mut() {
            *o = laplacian_at(image, noise, py + j - 2, px + i - 2).0;
        }
        let spv = s5[[2, 2]] as f64 - median_box(&s5.view(), 2, 2, 2);
        let sig = noise[[py, px]] as f64;
        let f = fine_structure(image, py, px) / sig;
        if sig > 0.0 && f > 1.0 && spv.is_finite() {
            v.push(spv / f);
        }
    }
    if v.len() < 5 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let k = ((v.len() - 1) as f64 * quantile.clamp(0.0, 1.0)).round() as usize;
    Some(v[k])
}

/// The contrast `S'/F` of a noiseless star shaped like `psf` at its peak pixel (the largest
/// over the peak and its 4 neighbours), in the same units as the detection.
pub fn psf_contrast(psf: &Array2<f64>) -> f64 {
    let (h, w) = psf.dim();
    if h < 3 || w < 3 {
        return 0.0;
    }
    let pad = 6;
    let (ny, nx) = (h + 2 * pad, w + 2 * pad);
    let peak = psf.iter().fold(0.0f64, |m, &v| m.max(v));
    if peak.is_nan() || peak <= 0.0 {
        return 0.0;
    }
    let mut img = Array2::<f32>::zeros((ny, nx));
    for ((j, i), &v) in psf.indexed_iter() {
        img[[j + pad, i + pad]] = (v / peak) as f32;
    }
    let noise = Array2::from_elem((ny, nx), 1.0f32);
    let mut s = Array2::<f32>::zeros((ny, nx));
    let mut s_neg = Array2::<f32>::zeros((ny, nx));
    laplacian_snr(&img.view(), &noise.view(), &mut s, &mut s_neg);
    let (cy, cx) = (h / 2 + pad, w / 2 + pad);
    let mut best = 0.0f64;
    for (dy, dx) in [(0i32, 0i32), (-1, 0), (1, 0), (0, -1), (0, 1)] {
        let (y, x) = ((cy as i32 + dy) as usize, (cx as i32 + dx) as usize);
        let spv = s[[y, x]] as f64 - median_box(&s.view(), y, x, 2);
        let f = fine_structure(&img.view(), y, x).max(0.01);
        best = best.max(spv / f);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffim_core::psf::gaussian_stamp;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// Stars of FWHM 2.8 px (peaks 20-2000 sigma) are untouched; single-pixel hits, a 2x2
    /// resampled blob, a 3-pixel track, a resampled hole and a 2-pixel hit on a star are
    /// found and replaced (the star's profile restored).
    #[test]
    fn finds_cosmic_rays_not_stars() {
        let (ny, nx) = (120, 120);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let g = Normal::new(0.0f64, 1.0).unwrap_or_else(|_| unreachable!());
        let mut img = Array2::from_shape_fn((ny, nx), |_| (10.0 * g.sample(&mut rng)) as f32);
        let psf = gaussian_stamp(15, 2.8, 0.0, 0.0);
        let pk = psf[[7, 7]];
        let mut stars = Vec::new();
        for (k, amp) in [200.0, 2000.0, 20000.0, 600.0, 6000.0].iter().enumerate() {
            let (yc, xc) = (15 + 20 * k, 20 + 18 * k);
            for ((j, i), &v) in psf.indexed_iter() {
                img[[yc + j - 7, xc + i - 7]] += (amp * v / pk) as f32;
            }
            stars.push((yc, xc));
        }
        let clean = img.clone();
        // A 2-pixel hit on the 600-peak star (index 3).
        let (sy, sx) = stars[3];
        img[[sy, sx]] += 700.0;
        img[[sy, sx - 1]] += 400.0;
        // Isolated hits.
        img[[100, 20]] += 120.0;
        // A resampled blob (2x2 core, some spill).
        for (dy, dx, v) in [(0, 0, 900.0), (0, 1, 1000.0), (1, 0, 450.0), (1, 1, 500.0)] {
            img[[60 + dy, 100 + dx]] += v;
        }
        img[[59, 100]] += 250.0;
        img[[59, 101]] += 300.0;
        // A track.
        for k in 0..3 {
            img[[30, 90 + k]] += 400.0;
        }
        // A resampled hole (over-subtracted hot pixel).
        for (dy, dx, v) in [(0, 0, -900.0), (0, 1, -400.0), (1, 0, -450.0)] {
            img[[100 + dy, 100 + dx]] += v;
        }
        let noise = Array2::from_elem((ny, nx), 10.0f32);
        let r = cosmic_rays(
            &mut img,
            &noise.view(),
            None,
            &psf,
            &CosmicParams::default(),
        );
        assert!(
            (0.3..0.8).contains(&r.psf_contrast),
            "psf contrast {}",
            r.psf_contrast
        );
        for (k, &(yc, xc)) in stars.iter().enumerate() {
            let hit = r
                .mask
                .indexed_iter()
                .filter(|((y, x), b)| **b && y.abs_diff(yc) <= 4 && x.abs_diff(xc) <= 4)
                .count();
            if k == 3 {
                assert!(r.mask[[sy, sx]] && r.mask[[sy, sx - 1]], "hit on star");
                // The star itself is restored to within the noise at the hit.
                let d = (img[[sy, sx]] - clean[[sy, sx]]).abs();
                assert!(d < 50.0, "star pixel after cleaning off by {d}");
            } else {
                assert_eq!(hit, 0, "star {k} flagged");
            }
        }
        assert!(r.mask[[100, 20]]);
        assert!(r.mask[[60, 100]] && r.mask[[60, 101]] && r.mask[[61, 101]]);
        assert!((0..3).all(|k| r.mask[[30, 90 + k]]));
        assert!(r.mask[[100, 100]] && r.mask[[100, 101]] && r.mask[[101, 100]]);
        let n = r.mask.iter().filter(|&&b| b).count();
        let flagged: Vec<_> = r
            .mask
            .indexed_iter()
            .filter(|(_, b)| **b)
            .map(|(i, _)| i)
            .collect();
        assert!(n <= 20, "{n} pixels flagged: {flagged:?}");
        // Blank sky of the cleaned image is back to noise.
        for (y, x) in [(100, 20), (60, 100), (100, 100)] {
            assert!(img[[y, x]].abs() < 40.0, "({y},{x}) = {}", img[[y, x]]);
        }
    }

    /// The contrast measured on stars matches the PSF's own (noiseless) contrast.
    #[test]
    fn star_contrast_matches_psf_contrast() {
        let (ny, nx) = (200, 200);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let g = Normal::new(0.0f64, 1.0).unwrap_or_else(|_| unreachable!());
        let mut img = Array2::from_shape_fn((ny, nx), |_| (10.0 * g.sample(&mut rng)) as f32);
        let psf = gaussian_stamp(15, 3.0, 0.0, 0.0);
        let mut stars = Vec::new();
        for k in 0..16 {
            let (yc, xc) = (20 + 45 * (k / 4), 20 + 45 * (k % 4));
            for ((j, i), &v) in psf.indexed_iter() {
                img[[yc + j - 7, xc + i - 7]] += (3.0e5 * v) as f32;
            }
            stars.push((xc as f64, yc as f64));
        }
        let noise = Array2::from_elem((ny, nx), 10.0f32);
        let m = star_contrast(&img.view(), &noise.view(), &stars, 0.5).unwrap_or(f64::NAN);
        let p = psf_contrast(&psf);
        assert!((m / p - 1.0).abs() < 0.1, "stars {m} vs psf {p}");
        assert!(star_contrast(&img.view(), &noise.view(), &stars[..3], 0.5).is_none());
    }
}
