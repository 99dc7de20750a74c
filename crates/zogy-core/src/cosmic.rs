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
//! Only pixels above `sigclip` sigma (either sign; found by one pass over the image) are
//! candidates; `S` is computed where first needed, and only candidates with `S > sigclip`
//! (few) and their neighbours get the median filters (on integer keys of the values: the 5x5
//! median by a pruned sorting network, the 3x3 medians from sorted column triples). Later
//! iterations revisit only the pixels within 4 px of those just replaced. The results are
//! those of whole-image filters, bit for bit (checked against such a version in the tests).

use diffim_core::mem::filled;
use ndarray::{Array2, ArrayView2};
use std::borrow::Cow;

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

/// A row-major image as a flat slice: pixel `(y, x)` is `v[y * nx + x]`.
#[derive(Clone, Copy)]
struct Plane<'a, T> {
    v: &'a [T],
    ny: usize,
    nx: usize,
}

impl<'a, T: Copy> Plane<'a, T> {
    fn new(v: &'a [T], ny: usize, nx: usize) -> Self {
        assert_eq!(v.len(), ny * nx, "plane size");
        Self { v, ny, nx }
    }

    fn at(&self, y: usize, x: usize) -> T {
        self.v[y * self.nx + x]
    }

    fn row(&self, y: usize) -> &'a [T] {
        &self.v[y * self.nx..(y + 1) * self.nx]
    }
}

/// The row-major values of `a`: borrowed when `a` is in standard layout, else copied.
pub(crate) fn row_major<'a, T: Copy>(a: &ArrayView2<'a, T>) -> Cow<'a, [T]> {
    match a.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
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
    let (ny, nx) = dim;
    let mut iterations = 0;
    let out = if ny < 3 || nx < 3 {
        vec![false; ny * nx]
    } else {
        let noise = row_major(noise);
        let mask = mask.map(row_major);
        let run = Run {
            ny,
            nx,
            noise: Plane::new(&noise, ny, nx),
            mask: mask.as_deref().map(|m| Plane::new(m, ny, nx)),
            psf,
            contrast,
            p,
        };
        match image.as_slice_mut() {
            Some(img) => run.clean(img, &mut iterations),
            None => {
                let mut img: Vec<f32> = image.iter().copied().collect();
                let out = run.clean(&mut img, &mut iterations);
                image.iter_mut().zip(img).for_each(|(a, b)| *a = b);
                out
            }
        }
    };
    CosmicRays {
        mask: Array2::from_shape_vec(dim, out).expect("one flag per pixel"),
        contrast,
        psf_contrast,
        iterations,
    }
}

/// The fixed inputs of one [`cosmic_rays`] call on row-major planes.
struct Run<'a> {
    ny: usize,
    nx: usize,
    noise: Plane<'a, f32>,
    mask: Option<Plane<'a, bool>>,
    psf: &'a Array2<f64>,
    contrast: f64,
    p: &'a CosmicParams,
}

impl Run<'_> {
    /// The iterations on the row-major `img` (at least 3x3): the cosmic-ray flags.
    fn clean(&self, img: &mut [f32], iterations: &mut usize) -> Vec<bool> {
        let (ny, nx) = (self.ny, self.nx);
        let n = ny * nx;
        // S of the image and of its negative (holes), computed where first needed and
        // forgotten around the replaced pixels (S is 3x3-local).
        let mut memo = SMemo::new(n);
        // Flags read before they are set: allocated by writing (diffim_core::mem).
        let mut out = filled(n, false);
        // Pixels found in the current iteration; all false between iterations, when they
        // serve as scratch flags for collecting the next iteration's pixels.
        let mut pend = filled(n, false);
        let signs: &[f32] = if self.p.negative {
            &[1.0, -1.0]
        } else {
            &[1.0]
        };
        // The core candidates, one list per sign in raster order: pixels whose value passes
        // the significance test (`sign I > sigclip sigma`); in iteration 1 all of them, later
        // only those within 4 px of the pixels just replaced (the reach of the fine structure;
        // S' reaches 3 px, S 1 px), as nothing changed for the others since they failed.
        let mut near = significant(
            Plane::new(img, ny, nx),
            self.noise,
            self.p.sigclip,
            signs.len(),
        );
        for _ in 0..self.p.max_iter.max(1) {
            *iterations += 1;
            let mut fresh: Vec<usize> = Vec::new();
            for (s, &sign) in signs.iter().enumerate() {
                let look = Look {
                    img: Plane::new(img, ny, nx),
                    sign,
                    noise: self.noise,
                    mask: self.mask,
                    contrast: self.contrast,
                    p: self.p,
                };
                look.detect(&mut memo, &out, &near[s], &mut pend, &mut fresh);
            }
            if fresh.is_empty() {
                break;
            }
            for &k in &fresh {
                out[k] = true;
                pend[k] = false;
            }
            let vals: Vec<f32> = {
                let im = Plane::new(&*img, ny, nx);
                fresh
                    .iter()
                    .map(|&k| {
                        let sig = self.noise.v[k] as f64;
                        replacement(im, &out, self.mask, self.psf, sig, k / nx, k % nx)
                    })
                    .collect()
            };
            for (&k, v) in fresh.iter().zip(vals) {
                img[k] = v;
            }
            let mut region = Vec::new();
            for &k in &fresh {
                let (y, x) = (k / nx, k % nx);
                for j in y.saturating_sub(1)..(y + 2).min(ny) {
                    for i in x.saturating_sub(1)..(x + 2).min(nx) {
                        memo.forget(j * nx + i);
                    }
                }
                for j in y.saturating_sub(4)..(y + 5).min(ny) {
                    let row = j * nx;
                    for i in x.saturating_sub(4)..(x + 5).min(nx) {
                        if !pend[row + i] {
                            pend[row + i] = true;
                            region.push(row + i);
                        }
                    }
                }
            }
            for &k in &region {
                pend[k] = false;
            }
            let im = Plane::new(&*img, ny, nx);
            for list in near.iter_mut() {
                list.clear();
            }
            for &k in &region {
                passes(im, self.noise, self.p.sigclip, k, &mut near);
            }
            for list in near.iter_mut() {
                list.sort_unstable();
            }
        }
        out
    }
}

/// `!(v <= lim)`: `v` above `lim`, or either NaN (as the tests this stands for treat them).
fn above(v: f64, lim: f64) -> bool {
    v > lim || v.is_nan() || lim.is_nan()
}

/// Appends pixel `k` to the list of each sign (`+` first) whose significance test of a core
/// it passes: `sign I > clip sigma` ([`above`]).
#[inline(always)]
fn passes(img: Plane<f32>, noise: Plane<f32>, clip: f64, k: usize, lists: &mut [Vec<usize>]) {
    let (a, lim) = (img.v[k], clip * noise.v[k] as f64);
    for (s, list) in lists.iter_mut().enumerate() {
        let sign = if s == 0 { 1.0f32 } else { -1.0 };
        if above((sign * a) as f64, lim) {
            list.push(k);
        }
    }
}

/// The pixels of the image that pass the significance test of a core ([`passes`]), one list
/// per sign, in raster order. Blocks of pixels are first tested at once with a looser
/// single-precision bound that no passing pixel can fail.
fn significant(img: Plane<f32>, noise: Plane<f32>, clip: f64, n_signs: usize) -> Vec<Vec<usize>> {
    const BLOCK: usize = 32;
    // `|a| > t n` in f32 with `t = 0.999 clip` holds whenever `a > clip n` (or `-a > clip n`)
    // in f64, as long as `t n` stays well above the f32 subnormals (hence `clip >= 1e-3`,
    // `n > 1e-30`): its rounding errors are < 1e-6 relative (an f32 overflow to infinity
    // needs `clip n` beyond any finite f32). Other pixels (tiny, negative, non-finite noise;
    // non-finite values) always go to the exact test.
    let loose = (1e-3..f64::INFINITY).contains(&clip);
    let t = 0.999 * clip as f32;
    // The loose test of one pixel (branch-free, so that a block's fold vectorises).
    let may_pass = |a: f32, n: f32| (a.abs() > t * n) | !a.is_finite() | n.is_nan() | (n <= 1e-30);
    let mut lists = vec![Vec::new(); n_signs];
    for (b, (blk, nb)) in img.v.chunks(BLOCK).zip(noise.v.chunks(BLOCK)).enumerate() {
        let maybe = !loose
            || blk
                .iter()
                .zip(nb)
                .fold(false, |acc, (&a, &n)| acc | may_pass(a, n));
        if maybe {
            // The exact test only for the pixels that pass the loose one.
            for (k, (&a, &n)) in (b * BLOCK..).zip(blk.iter().zip(nb)) {
                if !loose || may_pass(a, n) {
                    passes(img, noise, clip, k, &mut lists);
                }
            }
        }
    }
    lists
}

/// `(S+, S-)` per pixel, computed on first use: bit patterns XOR [`SMemo::EMPTY`], so that
/// the zeroed allocation reads as "not computed" (a value equal to `EMPTY`, a NaN, is only
/// computed again).
struct SMemo {
    v: Vec<[u32; 2]>,
    /// Blocks of [`Self::BLOCK`] entries whose pages were already mapped by a write. The memo
    /// is looked up before it is set: a page of zeroed memory first read maps the shared zero
    /// page, and the first write then costs a second fault and a TLB shootdown
    /// (diffim_core::mem). A write into each page of a block before its first lookup maps
    /// each page once, and only where candidates are.
    cleared: Vec<bool>,
}

impl SMemo {
    const EMPTY: u32 = 0x7fc0_0000;
    /// Entries per block (one 4 KiB page).
    const BLOCK: usize = 512;

    fn new(n: usize) -> Self {
        Self {
            // Zeroed and untouched: pages are mapped by `entry` where needed.
            v: vec![[0u32; 2]; n],
            cleared: vec![false; n.div_ceil(Self::BLOCK)],
        }
    }

    /// Entry `k`, its block's pages mapped by a write first. The block (4 KiB) lies on at
    /// most two pages, its first and last entries one on each: writing their value (zero:
    /// the allocation is zeroed and the block not yet used) maps them without a `memset` of
    /// the whole block.
    #[inline]
    fn entry(&mut self, k: usize) -> &mut [u32; 2] {
        let b = k / Self::BLOCK;
        if !self.cleared[b] {
            let end = ((b + 1) * Self::BLOCK).min(self.v.len());
            self.v[b * Self::BLOCK] = [0, 0];
            self.v[end - 1] = [0, 0];
            self.cleared[b] = true;
        }
        &mut self.v[k]
    }

    /// `(S+, S-)` at `(y, x)` of the current `img`.
    fn get(&mut self, img: Plane<f32>, noise: Plane<f32>, y: usize, x: usize) -> (f32, f32) {
        let k = y * img.nx + x;
        let [a, b] = *self.entry(k);
        if a != 0 {
            return (
                f32::from_bits(a ^ Self::EMPTY),
                f32::from_bits(b ^ Self::EMPTY),
            );
        }
        let (sp, sn) = laplacian_at(img, noise, y, x);
        self.v[k] = [sp.to_bits() ^ Self::EMPTY, sn.to_bits() ^ Self::EMPTY];
        (sp, sn)
    }

    /// Marks pixel `k` as changed.
    fn forget(&mut self, k: usize) {
        *self.entry(k) = [0, 0];
    }
}

/// One detection pass over `sign * image`.
struct Look<'a> {
    img: Plane<'a, f32>,
    sign: f32,
    noise: Plane<'a, f32>,
    mask: Option<Plane<'a, bool>>,
    contrast: f64,
    p: &'a CosmicParams,
}

impl Look<'_> {
    fn value(&self, k: usize) -> f64 {
        (self.sign * self.img.v[k]) as f64
    }

    /// `S` of `sign * image` at `(y, x)`.
    fn s(&self, memo: &mut SMemo, y: usize, x: usize) -> f32 {
        let (sp, sn) = memo.get(self.img, self.noise, y, x);
        if self.sign > 0.0 { sp } else { sn }
    }

    /// `S' = S - M5(S)`, the median of the finite values of `S` in the (clipped) 5x5 box on
    /// integer [`key`]s: [`median25`] for a whole finite box, else [`median_keys`].
    fn s_prime(&self, memo: &mut SMemo, y: usize, x: usize) -> f64 {
        let (ny, nx) = (self.img.ny, self.img.nx);
        let mut k = [0i32; 25];
        let mut n = 0;
        for j in y.saturating_sub(2)..(y + 3).min(ny) {
            for i in x.saturating_sub(2)..(x + 3).min(nx) {
                let v = self.s(memo, j, i);
                if v.is_finite() {
                    k[n] = key(v);
                    n += 1;
                }
            }
        }
        let m5 = if n == 25 {
            unkey(median25(k)) as f64
        } else {
            median_keys(&mut k[..n])
        };
        self.s(memo, y, x) as f64 - m5
    }

    /// Significant (`value > clip sigma`: a pixel beside a star or a hole can have a large
    /// Laplacian and a negative fine structure without being an outlier) and sharp
    /// (`S' / F > contrast`), given `S' = spv`.
    fn sharp(&self, y: usize, x: usize, spv: f64, clip: f64) -> bool {
        let k = y * self.img.nx + x;
        let sig = self.noise.v[k] as f64;
        if sig.is_nan() || sig <= 0.0 || self.value(k) <= clip * sig {
            return false;
        }
        // The medians commute with the sign: F(-I) = -F(I).
        let f = (self.sign as f64 * fine_structure(self.img, y, x) / sig).max(0.01);
        spv / f > self.contrast
    }

    fn blocked(&self, k: usize, out: &[bool], pend: &[bool]) -> bool {
        out[k] || pend[k] || self.mask.is_some_and(|m| m.v[k])
    }

    /// Cores (`S' > sigclip`, sharp; among `cand`, pixels that pass [`passes`] for this sign,
    /// in its order) and their two rings of sharp neighbours, not already in `out` or `pend`
    /// nor masked: appended to `found` (flat indices) and set in `pend`.
    fn detect(
        &self,
        memo: &mut SMemo,
        out: &[bool],
        cand: &[usize],
        pend: &mut [bool],
        found: &mut Vec<usize>,
    ) {
        let (ny, nx) = (self.img.ny, self.img.nx);
        let p = self.p;
        let start = found.len();
        for &k in cand {
            if self.blocked(k, out, pend) {
                continue;
            }
            let (y, x) = (k / nx, k % nx);
            if !above(self.s(memo, y, x) as f64, p.sigclip) {
                continue;
            }
            let spv = self.s_prime(memo, y, x);
            if spv > p.sigclip && self.sharp(y, x, spv, p.sigclip) {
                pend[k] = true;
                found.push(k);
            }
        }
        // Ring 1: neighbours of the cores at `sigclip`; ring 2: neighbours of both at
        // `neighbour_clip`.
        let n_core = found.len();
        for (clip, upto) in [(p.sigclip, n_core), (p.neighbour_clip, usize::MAX)] {
            let end = found.len().min(upto);
            for f in start..end {
                let (y, x) = (found[f] / nx, found[f] % nx);
                for j in y.saturating_sub(1)..(y + 2).min(ny) {
                    for i in x.saturating_sub(1)..(x + 2).min(nx) {
                        let k = j * nx + i;
                        if self.blocked(k, out, pend) {
                            continue;
                        }
                        let spv = self.s_prime(memo, j, i);
                        if spv > clip && self.sharp(j, i, spv, clip) {
                            pend[k] = true;
                            found.push(k);
                        }
                    }
                }
            }
        }
    }
}

/// `(S+, S-)` of a pixel `c` with neighbours up, down, left, right and RMS `sig`: `L+ / (2
/// sigma)` of the image and of its negative. Non-finite pixels count as 0.
#[inline(always)]
fn laplacian_px(c: f32, up: f32, dn: f32, lf: f32, rt: f32, sig: f32) -> (f32, f32) {
    let v = |a: f32| if a.is_finite() { a } else { 0.0 };
    let c = 2.0 * v(c);
    let (up, dn, lf, rt) = (v(up), v(dn), v(lf), v(rt));
    let (mut lp, mut ln) = (0.0f32, 0.0f32);
    for d in [c - up - lf, c - up - rt, c - dn - lf, c - dn - rt] {
        lp += d.max(0.0);
        ln += (-d).max(0.0);
    }
    let k = 0.25 / (2.0 * sig);
    // Selected rather than returned early, so that rows of pixels vectorise.
    if sig > 0.0 && sig.is_finite() {
        (lp * k, ln * k)
    } else {
        (0.0, 0.0)
    }
}

/// `(S+, S-)` at one pixel: `L+ / (2 sigma)` of the image and of its negative.
fn laplacian_at(img: Plane<f32>, noise: Plane<f32>, y: usize, x: usize) -> (f32, f32) {
    let (ny, nx) = (img.ny, img.nx);
    let c = img.at(y, x);
    // Out-of-image neighbours mirror the pixel itself (no edge response).
    let up = if y > 0 { img.at(y - 1, x) } else { c };
    let dn = if y + 1 < ny { img.at(y + 1, x) } else { c };
    let lf = if x > 0 { img.at(y, x - 1) } else { c };
    let rt = if x + 1 < nx { img.at(y, x + 1) } else { c };
    laplacian_px(c, up, dn, lf, rt, noise.at(y, x))
}

/// Key of `v` whose integer order is [`f32::total_cmp`]'s order of the values (an
/// involution: [`unkey`] undoes it).
#[inline(always)]
fn key(v: f32) -> i32 {
    let b = v.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// The value of a [`key`].
#[inline(always)]
fn unkey(k: i32) -> f32 {
    f32::from_bits((k ^ (((k >> 31) as u32) >> 1) as i32) as u32)
}

/// Median of the values whose [`key`]s are `k` (reordered), as
/// [`diffim_core::stats::median_in_place`] gives it for those values: the middle one, or the
/// mean of the two middle ones (in `f64`); 0 when empty. The keys order the values as
/// [`f32::total_cmp`] does, so the same elements are picked.
fn median_keys(k: &mut [i32]) -> f64 {
    let n = k.len();
    if n == 0 {
        return 0.0;
    }
    let (lower, m, _) = k.select_nth_unstable(n / 2);
    let hi = unkey(*m) as f64;
    if n % 2 == 1 {
        return hi;
    }
    lower
        .iter()
        .copied()
        .max()
        .map_or(hi, |lo| 0.5 * (unkey(lo) as f64 + hi))
}

/// Median of the finite values of `a` in the `(2r+1)^2` box around `(y, x)` (clipped at the
/// edges; `r <= 3`), by [`median_keys`]; 0 when none. Bit for bit the median of those values
/// by `diffim_core::stats::median_in_place` (the reference in the tests).
fn median_box(a: Plane<f32>, y: usize, x: usize, r: usize) -> f64 {
    let mut k = [0i32; 49];
    let mut n = 0;
    for j in y.saturating_sub(r)..(y + r + 1).min(a.ny) {
        for i in x.saturating_sub(r)..(x + r + 1).min(a.nx) {
            let v = a.at(j, i);
            if v.is_finite() && n < k.len() {
                k[n] = key(v);
                n += 1;
            }
        }
    }
    median_keys(&mut k[..n])
}

#[inline(always)]
fn sort2(a: i32, b: i32) -> (i32, i32) {
    (a.min(b), a.max(b))
}

/// `(min, median, max)` of three keys.
#[inline(always)]
fn sort3(a: i32, b: i32, c: i32) -> (i32, i32, i32) {
    let (a, b) = sort2(a, b);
    let (b, c) = sort2(b, c);
    let (a, b) = sort2(a, b);
    (a, b, c)
}

/// Sorts the five keys at `idx` of `v` (a 9-comparator network).
#[inline(always)]
fn sort5(v: &mut [i32; 25], idx: [usize; 5]) {
    let [a, b, c, d, e] = idx;
    for (p, q) in [
        (a, b),
        (d, e),
        (c, e),
        (c, d),
        (b, e),
        (a, d),
        (a, c),
        (b, d),
        (b, c),
    ] {
        (v[p], v[q]) = sort2(v[p], v[q]);
    }
}

/// Median (13th smallest) of 25 keys. After sorting the columns and then the rows of the 5x5
/// array (which keeps the columns sorted), the entry in row `i`, column `j` (from 0) has at
/// least `(i+1)(j+1) - 1` entries below it and `(5-i)(5-j) - 1` above it, so only the 13
/// entries with both counts below 13 can be the median; 6 of the others lie below it and 6
/// above, so it is the median of those 13. (The tests check all 2^25 inputs of 0s and 1s,
/// which proves it for any input.)
fn median25(mut v: [i32; 25]) -> i32 {
    for c in 0..5 {
        sort5(&mut v, [c, 5 + c, 10 + c, 15 + c, 20 + c]);
    }
    for r in 0..5 {
        sort5(&mut v, [5 * r, 5 * r + 1, 5 * r + 2, 5 * r + 3, 5 * r + 4]);
    }
    let mut cand = [
        v[3], v[4], v[7], v[8], v[9], v[11], v[12], v[13], v[15], v[16], v[17], v[20], v[21],
    ];
    *cand.select_nth_unstable(6).1
}

/// Fine structure `M3(I) - M7(M3(I))` at `(y, x)`, from the 7x7 box of 3x3 medians (bit for
/// bit the plain computation, the reference in the tests). When the 9x9 box is inside the
/// image and finite, every 3x3 median is the middle of 9 values, taken from the sorted column
/// triples (the median of 9 is the median of the largest column minimum, the median of the
/// column medians and the smallest column maximum), and the 7x7 median the middle of 49, all
/// on integer [`key`]s (so the same elements as the reference's). Elsewhere the plain steps
/// with [`median_box`].
fn fine_structure(img: Plane<f32>, y: usize, x: usize) -> f64 {
    let (ny, nx) = (img.ny, img.nx);
    if y >= 4 && x >= 4 && y + 4 < ny && x + 4 < nx {
        let mut k = [[0i32; 9]; 9];
        let mut finite = true;
        for (r, j) in (y - 4..=y + 4).enumerate() {
            let row = &img.row(j)[x - 4..=x + 4];
            for (o, &v) in k[r].iter_mut().zip(row) {
                finite &= v.is_finite();
                *o = key(v);
            }
        }
        if finite {
            let mut m3 = [0i32; 49];
            for t in 0..7 {
                let (mut lo, mut mid, mut hi) = ([0i32; 9], [0i32; 9], [0i32; 9]);
                for c in 0..9 {
                    (lo[c], mid[c], hi[c]) = sort3(k[t][c], k[t + 1][c], k[t + 2][c]);
                }
                for c in 0..7 {
                    let a = lo[c].max(lo[c + 1]).max(lo[c + 2]);
                    let b = sort3(mid[c], mid[c + 1], mid[c + 2]).1;
                    let d = hi[c].min(hi[c + 1]).min(hi[c + 2]);
                    m3[7 * t + c] = sort3(a, b, d).1;
                }
            }
            let centre = unkey(m3[24]) as f64;
            let m7 = unkey(*m3.select_nth_unstable(24).1) as f64;
            return centre - m7;
        }
    }
    let mut buf = [0.0f64; 49];
    let mut n = 0;
    for j in y.saturating_sub(3)..(y + 4).min(ny) {
        for i in x.saturating_sub(3)..(x + 4).min(nx) {
            buf[n] = median_box(img, j, i, 1);
            n += 1;
        }
    }
    let m7 = diffim_core::stats::median_in_place(&mut buf[..n]).unwrap_or(0.0);
    median_box(img, y, x, 1) - m7
}

/// The value replacing the cosmic-ray pixel `(y, x)`, from the good (finite, unmasked, not
/// cosmic) pixels of the 7x7 box around it: the best fit of a scaled PSF plus a constant,
/// with the PSF centred on the pixel or one of its 8 neighbours, when that fit beats a constant
/// by `Delta chi^2 > 25` (a cosmic ray on a star: the star's profile is restored, not flattened);
/// otherwise their median. Boxes grow when they hold fewer than 6 good pixels.
fn replacement(
    img: Plane<f32>,
    cr: &[bool],
    mask: Option<Plane<bool>>,
    psf: &Array2<f64>,
    sigma: f64,
    y: usize,
    x: usize,
) -> f32 {
    let (ny, nx) = (img.ny, img.nx);
    let (ph, pw) = psf.dim();
    let good = |k: usize| img.v[k].is_finite() && !cr[k] && !mask.is_some_and(|m| m.v[k]);
    let mut r = 3;
    let mut pix: Vec<(usize, usize, f64)> = Vec::with_capacity(49);
    while r <= 24 {
        pix.clear();
        for j in y.saturating_sub(r)..(y + r + 1).min(ny) {
            for i in x.saturating_sub(r)..(x + r + 1).min(nx) {
                if good(j * nx + i) {
                    pix.push((j, i, img.at(j, i) as f64));
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
    let mut pvs: Vec<f64> = Vec::with_capacity(pix.len());
    for dy in -1..=1isize {
        for dx in -1..=1isize {
            let (yc, xc) = (y as isize + dy, x as isize + dx);
            pvs.clear();
            pvs.extend(pix.iter().map(|&(j, i, _)| at(yc, xc, j, i)));
            let (mut sp, mut spp, mut sd, mut spd) = (0.0, 0.0, 0.0, 0.0);
            for (&(_, _, d), &pv) in pix.iter().zip(&pvs) {
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
                .zip(&pvs)
                .map(|(&(_, _, d), &pv)| (d - a * pv - b).powi(2))
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
///
/// # Panics
/// When `noise` does not have the shape of `image` (a caller bug).
pub fn star_contrast(
    image: &ArrayView2<f32>,
    noise: &ArrayView2<f32>,
    stars: &[(f64, f64)],
    quantile: f64,
) -> Option<f64> {
    let (ny, nx) = image.dim();
    assert_eq!(noise.dim(), (ny, nx), "noise shape");
    let (img, nse) = (row_major(image), row_major(noise));
    let (img, nse) = (Plane::new(&img, ny, nx), Plane::new(&nse, ny, nx));
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
                if img.at(j, i) > img.at(py, px) {
                    (py, px) = (j, i);
                }
            }
        }
        // S in the 5x5 box (for S' = S - M5(S)), then S'/F at the peak.
        let mut s5 = [0.0f32; 25];
        for (k, o) in s5.iter_mut().enumerate() {
            *o = laplacian_at(img, nse, py + k / 5 - 2, px + k % 5 - 2).0;
        }
        let spv = s5[12] as f64 - median_box(Plane::new(&s5, 5, 5), 2, 2, 2);
        let sig = nse.at(py, px) as f64;
        let f = fine_structure(img, py, px) / sig;
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
    let mut img = vec![0.0f32; ny * nx];
    for ((j, i), &v) in psf.indexed_iter() {
        img[(j + pad) * nx + i + pad] = (v / peak) as f32;
    }
    let img = Plane::new(&img, ny, nx);
    let noise = vec![1.0f32; ny * nx];
    let noise = Plane::new(&noise, ny, nx);
    let s: Vec<f32> = (0..ny * nx)
        .map(|k| laplacian_at(img, noise, k / nx, k % nx).0)
        .collect();
    let s = Plane::new(&s, ny, nx);
    let (cy, cx) = (h / 2 + pad, w / 2 + pad);
    let mut best = 0.0f64;
    for (dy, dx) in [(0i32, 0i32), (-1, 0), (1, 0), (0, -1), (0, 1)] {
        let (y, x) = ((cy as i32 + dy) as usize, (cx as i32 + dx) as usize);
        let spv = s.at(y, x) as f64 - median_box(s, y, x, 2);
        let f = fine_structure(img, y, x).max(0.01);
        best = best.max(spv / f);
    }
    best
}

#[cfg(test)]
mod reference {
    //! L.A.Cosmic with whole-image median filters, recomputed from scratch in every iteration
    //! and scanned over the whole image: the slow, obviously correct version that the fast
    //! path (lazy `S`, candidates only, small-box medians on keys, 4 px neighbourhoods in
    //! later iterations) must match bit for bit.
    use super::*;

    /// Median of the finite values in the clipped `(2r+1)^2` box of every pixel; 0 where none.
    fn median_filter(a: &Array2<f64>, r: usize) -> Array2<f64> {
        let (ny, nx) = a.dim();
        Array2::from_shape_fn((ny, nx), |(y, x)| {
            let mut v = Vec::new();
            for j in y.saturating_sub(r)..(y + r + 1).min(ny) {
                for i in x.saturating_sub(r)..(x + r + 1).min(nx) {
                    v.push(a[[j, i]]);
                }
            }
            diffim_core::stats::median_in_place(&mut v).unwrap_or(0.0)
        })
    }

    /// The flags of [`super::cosmic_rays`]; `image` is cleaned in place.
    pub fn cosmic_rays(
        image: &mut Array2<f32>,
        noise: &Array2<f32>,
        mask: Option<&Array2<bool>>,
        psf: &Array2<f64>,
        p: &CosmicParams,
    ) -> Array2<bool> {
        let (ny, nx) = image.dim();
        let contrast = p
            .contrast
            .unwrap_or((p.psf_contrast_factor * psf_contrast(psf)).max(0.5));
        let mut out = Array2::from_elem((ny, nx), false);
        let signs: &[f32] = if p.negative { &[1.0, -1.0] } else { &[1.0] };
        let noise_v: Vec<f32> = noise.iter().copied().collect();
        let mask_v: Option<Vec<bool>> = mask.map(|m| m.iter().copied().collect());
        for _ in 0..p.max_iter.max(1) {
            let img_v: Vec<f32> = image.iter().copied().collect();
            let (im, nm) = (Plane::new(&img_v, ny, nx), Plane::new(&noise_v, ny, nx));
            let s = [0, 1].map(|k| {
                Array2::from_shape_fn((ny, nx), |(y, x)| {
                    let (a, b) = laplacian_at(im, nm, y, x);
                    (if k == 0 { a } else { b }) as f64
                })
            });
            let sp = [
                &s[0] - &median_filter(&s[0], 2),
                &s[1] - &median_filter(&s[1], 2),
            ];
            let m3 = median_filter(&image.mapv(|v| v as f64), 1);
            let fine = &m3 - &median_filter(&m3, 3);
            let mut pend = Array2::from_elem((ny, nx), false);
            let mut fresh: Vec<(usize, usize)> = Vec::new();
            for (si, &sign) in signs.iter().enumerate() {
                let value = |y: usize, x: usize| (sign * image[[y, x]]) as f64;
                let sharp = |y: usize, x: usize, clip: f64| {
                    let sig = noise[[y, x]] as f64;
                    if sig.is_nan() || sig <= 0.0 || value(y, x) <= clip * sig {
                        return false;
                    }
                    let f = (sign as f64 * fine[[y, x]] / sig).max(0.01);
                    sp[si][[y, x]] / f > contrast
                };
                let blocked = |y: usize, x: usize, pend: &Array2<bool>| {
                    out[[y, x]] || pend[[y, x]] || mask.is_some_and(|m| m[[y, x]])
                };
                let start = fresh.len();
                for y in 0..ny {
                    for x in 0..nx {
                        if s[si][[y, x]] <= p.sigclip
                            || blocked(y, x, &pend)
                            || value(y, x) <= p.sigclip * noise[[y, x]] as f64
                        {
                            continue;
                        }
                        if sp[si][[y, x]] > p.sigclip && sharp(y, x, p.sigclip) {
                            pend[[y, x]] = true;
                            fresh.push((y, x));
                        }
                    }
                }
                let n_core = fresh.len();
                for (clip, upto) in [(p.sigclip, n_core), (p.neighbour_clip, usize::MAX)] {
                    let end = fresh.len().min(upto);
                    for f in start..end {
                        let (y, x) = fresh[f];
                        for j in y.saturating_sub(1)..(y + 2).min(ny) {
                            for i in x.saturating_sub(1)..(x + 2).min(nx) {
                                if !blocked(j, i, &pend)
                                    && sp[si][[j, i]] > clip
                                    && sharp(j, i, clip)
                                {
                                    pend[[j, i]] = true;
                                    fresh.push((j, i));
                                }
                            }
                        }
                    }
                }
            }
            if fresh.is_empty() {
                break;
            }
            for &(y, x) in &fresh {
                out[[y, x]] = true;
            }
            let out_v: Vec<bool> = out.iter().copied().collect();
            let mk = mask_v.as_deref().map(|m| Plane::new(m, ny, nx));
            let vals: Vec<f32> = fresh
                .iter()
                .map(|&(y, x)| {
                    let sig = noise[[y, x]] as f64;
                    replacement(im, &out_v, mk, psf, sig, y, x)
                })
                .collect();
            for (&(y, x), v) in fresh.iter().zip(vals) {
                image[[y, x]] = v;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Median of the finite values of `a` in the `(2r+1)^2` box around `(y, x)` (clipped at the
    /// edges); 0 when none. The reference for [`median_box`].
    fn median_box_ref(a: Plane<f32>, y: usize, x: usize, r: usize) -> f64 {
        let (ny, nx) = (a.ny, a.nx);
        let mut buf = [0.0f64; 49];
        let mut n = 0;
        for j in y.saturating_sub(r)..(y + r + 1).min(ny) {
            for i in x.saturating_sub(r)..(x + r + 1).min(nx) {
                let v = a.at(j, i);
                if v.is_finite() && n < buf.len() {
                    buf[n] = v as f64;
                    n += 1;
                }
            }
        }
        diffim_core::stats::median_in_place(&mut buf[..n]).unwrap_or(0.0)
    }

    /// Fine structure `M3(I) - M7(M3(I))` at `(y, x)`, from the 7x7 box of 3x3 medians. The
    /// reference for [`fine_structure`].
    fn fine_structure_ref(img: Plane<f32>, y: usize, x: usize) -> f64 {
        let (ny, nx) = (img.ny, img.nx);
        let m3 = |j: usize, i: usize| median_box_ref(img, j, i, 1);
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
    use diffim_core::psf::gaussian_stamp;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// The test scene of [`scene`].
    struct Scene {
        /// The image with its hits.
        img: Array2<f32>,
        /// The image without them.
        clean: Array2<f32>,
        /// Star centres `(y, x)`.
        stars: Vec<(usize, usize)>,
        psf: Array2<f64>,
    }

    /// A 120x120 sky of noise 10 with 5 stars of FWHM 2.8 px (peaks 20-2000 sigma), a
    /// 2-pixel hit on the 4th, an isolated hit, a resampled 2x2 blob, a 3-pixel track and a
    /// resampled hole.
    fn scene() -> Scene {
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
        Scene {
            img,
            clean,
            stars,
            psf,
        }
    }

    /// Stars of FWHM 2.8 px (peaks 20-2000 sigma) are untouched; single-pixel hits, a 2x2
    /// resampled blob, a 3-pixel track, a resampled hole and a 2-pixel hit on a star are
    /// found and replaced (the star's profile restored).
    #[test]
    fn finds_cosmic_rays_not_stars() {
        let Scene {
            mut img,
            clean,
            stars,
            psf,
        } = scene();
        let (ny, nx) = img.dim();
        let (sy, sx) = stars[3];
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

    /// Bit patterns of `a`, so that NaNs and signed zeros compare exactly.
    fn bits(a: &Array2<f32>) -> Vec<u32> {
        a.iter().map(|v| v.to_bits()).collect()
    }

    /// A test image with what the fast paths special-case: ties (values on a coarse grid),
    /// signed zeros, NaN and infinities, and edges.
    fn awkward(ny: usize, nx: usize, seed: u64) -> Array2<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let g = Normal::new(0.0f64, 1.0).unwrap_or_else(|_| unreachable!());
        let mut a = Array2::from_shape_fn((ny, nx), |_| (3.0 * g.sample(&mut rng)).round() as f32);
        for (k, v) in a.iter_mut().enumerate() {
            match k % 37 {
                0 => *v = -0.0,
                5 => *v = 0.0,
                _ => {}
            }
        }
        a[[3, 4]] = f32::NAN;
        a[[ny - 1, 0]] = f32::INFINITY;
        a[[10, nx - 2]] = f32::NEG_INFINITY;
        a[[ny / 2, nx / 2]] = f32::NAN;
        a
    }

    /// The key-based medians give the reference's bits at every pixel (edges, NaN, ties,
    /// signed zeros), and the median of 25 is the 13th smallest.
    #[test]
    fn fast_medians_match_reference() {
        for seed in 0..4 {
            let a = awkward(23, 29, seed);
            let v: Vec<f32> = a.iter().copied().collect();
            let pl = Plane::new(&v, 23, 29);
            for y in 0..23 {
                for x in 0..29 {
                    for r in 1..=3 {
                        let (f, s) = (median_box(pl, y, x, r), median_box_ref(pl, y, x, r));
                        assert_eq!(f.to_bits(), s.to_bits(), "r={r} ({y},{x}): {f} vs {s}");
                    }
                    let (f, s) = (fine_structure(pl, y, x), fine_structure_ref(pl, y, x));
                    assert_eq!(f.to_bits(), s.to_bits(), "fine ({y},{x}): {f} vs {s}");
                }
            }
        }
        // The column-triple path on a finite image with many ties and signed zeros.
        let mut a = awkward(40, 40, 9);
        a.mapv_inplace(|v| if v.is_finite() { v } else { 1.0 });
        let v: Vec<f32> = a.iter().copied().collect();
        let pl = Plane::new(&v, 40, 40);
        for y in 0..40 {
            for x in 0..40 {
                let (f, s) = (fine_structure(pl, y, x), fine_structure_ref(pl, y, x));
                assert_eq!(f.to_bits(), s.to_bits(), "fine ({y},{x}): {f} vs {s}");
            }
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for range in [3i32, 30, 100_000] {
            for _ in 0..2000 {
                let k: [i32; 25] =
                    std::array::from_fn(|_| rand::Rng::random_range(&mut rng, -range..range));
                let mut s = k;
                s.sort_unstable();
                assert_eq!(median25(k), s[12], "{k:?}");
            }
        }
    }

    /// [`median25`] on every input of 0s and 1s (by the 0-1 principle, then right on every
    /// input). About 2 s.
    #[test]
    fn median25_zero_one_exhaustive() {
        for m in 0u32..(1 << 25) {
            let k: [i32; 25] = std::array::from_fn(|b| ((m >> b) & 1) as i32);
            assert_eq!(median25(k), (m.count_ones() >= 13) as i32, "{m:025b}");
        }
    }

    /// Bit-equal masks and cleaned images from the fast path and the whole-image reference:
    /// on the scene of `finds_cosmic_rays_not_stars`, and on a sky with many hits and holes
    /// (also at the edges and corners), NaN pixels, bad noise values, a mask and a plateau,
    /// with and without negative features.
    #[test]
    fn matches_whole_image_reference() {
        let Scene {
            img: scene_img,
            psf,
            ..
        } = scene();
        let mut cases = vec![(scene_img, Array2::from_elem((120, 120), 10.0f32), None)];
        let (ny, nx) = (90, 110);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let g = Normal::new(0.0f64, 1.0).unwrap_or_else(|_| unreachable!());
        let mut img = Array2::from_shape_fn((ny, nx), |_| (10.0 * g.sample(&mut rng)) as f32);
        let pk = psf[[7, 7]];
        for (yc, xc, amp) in [(20, 30, 3000.0), (60, 80, 800.0), (8, 100, 20000.0)] {
            for ((j, i), &v) in psf.indexed_iter() {
                let (y, x) = (yc + j as isize - 7, xc + i as isize - 7);
                if (0..ny as isize).contains(&y) && (0..nx as isize).contains(&x) {
                    img[[y as usize, x as usize]] += (amp * v / pk) as f32;
                }
            }
        }
        let edge = [
            (0, 0),
            (0, 57),
            (ny - 1, nx - 1),
            (44, 0),
            (13, nx - 1),
            (ny - 1, 3),
        ];
        for (k, &(y, x)) in edge.iter().enumerate() {
            img[[y, x]] += if k % 2 == 0 { 400.0 } else { -400.0 };
        }
        for k in 0..60 {
            let (y, x) = ((k * 37 + 5) % ny, (k * 53 + 11) % nx);
            let a = 80.0 + 40.0 * (k % 7) as f32;
            img[[y, x]] += if k % 4 == 3 { -a } else { a };
            if k % 3 == 0 && x + 1 < nx {
                img[[y, x + 1]] += 0.5 * a;
            }
        }
        img[[20, 30]] += 900.0; // a hit on a star's peak
        img[[50, 50]] = f32::NAN;
        img[[51, 52]] = f32::INFINITY;
        for x in 60..70 {
            img[[75, x]] = 250.0; // a plateau
        }
        let mut noise = Array2::from_shape_fn((ny, nx), |(y, _)| 9.0 + (y % 5) as f32);
        noise[[30, 40]] = 0.0;
        noise[[31, 40]] = f32::NAN;
        let mut mask = Array2::from_elem((ny, nx), false);
        mask[[51, 52]] = true;
        for x in 20..40 {
            mask[[85, x]] = true;
        }
        cases.push((img.clone(), noise.clone(), Some(mask)));
        cases.push((img, noise, None));
        // A simulated frame (sky subtracted, true noise, its own PSF) with 200 hits and holes
        // of 1-2 pixels, a filled border and a saturated trail, masked as the glue does:
        // later iterations find pixels 2 px from those replaced before.
        let cfg = sky_sim::SimConfig::default()
            .with_seed(1)
            .with_size(300, 400);
        let sim = sky_sim::simulate(&cfg).unwrap_or_else(|e| panic!("{e}"));
        let mut raw = sim.science.clone();
        let (ny, nx) = raw.dim();
        let mut s = 7919u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..200 {
            let (y, x) = ((rnd() % ny as u64) as usize, (rnd() % nx as u64) as usize);
            let a = (rnd() % 5000) as f32 - 1500.0;
            raw[[y, x]] += a;
            if rnd() % 3 == 0 && x + 1 < nx {
                raw[[y, x + 1]] += 0.5 * a;
            }
        }
        for _ in 0..5 {
            let (y, x) = ((rnd() % ny as u64) as usize, (rnd() % nx as u64) as usize);
            raw[[y, x]] = f32::NAN;
        }
        raw.slice_mut(ndarray::s![.., ..6]).fill(0.0);
        raw.slice_mut(ndarray::s![50, 100..140]).fill(60000.0);
        let mut mask = diffim_core::mask::finite_mask(&raw.view(), None);
        mask.zip_mut_with(
            &crate::masks::saturation_mask(&raw.view(), Some(60000.0), 5),
            |a, &b| *a |= b,
        );
        mask.zip_mut_with(&crate::masks::flat_run_mask(&raw.view(), 8, 2), |a, &b| {
            *a |= b
        });
        let img = Array2::from_shape_fn((ny, nx), |(y, x)| {
            raw[[y, x]] - cfg.science.sky.eval(x as f64, y as f64, ny, nx) as f32
        });
        let sim_psf = sim.science_psf_at(200.0, 150.0, 15);
        let mut cases: Vec<_> = cases
            .into_iter()
            .map(|(i, n, m)| (i, n, m, psf.clone()))
            .collect();
        cases.push((img, sim.science_noise.clone(), Some(mask), sim_psf));
        for (img, noise, mask, psf) in &cases {
            for (negative, contrast) in [(true, None), (false, None), (true, Some(0.5))] {
                let p = CosmicParams {
                    negative,
                    contrast,
                    ..Default::default()
                };
                let (mut a, mut b) = (img.clone(), img.clone());
                let fast = cosmic_rays(
                    &mut a,
                    &noise.view(),
                    mask.as_ref().map(|m| m.view()).as_ref(),
                    psf,
                    &p,
                );
                let slow = reference::cosmic_rays(&mut b, noise, mask.as_ref(), psf, &p);
                assert!(fast.iterations >= 2, "{} iterations", fast.iterations);
                assert!(slow.iter().filter(|&&v| v).count() >= 5);
                assert_eq!(fast.mask, slow, "flags (negative {negative})");
                assert_eq!(bits(&a), bits(&b), "cleaned image (negative {negative})");
            }
        }
    }

    /// Inputs in column-major layout give the same result as in row-major layout.
    #[test]
    fn column_major_inputs() {
        use ndarray::ShapeBuilder;
        let Scene { img, psf, .. } = scene();
        let noise = Array2::from_shape_fn(img.dim(), |(y, x)| 9.0 + ((x + y) % 3) as f32);
        let mask = Array2::from_shape_fn(img.dim(), |(y, x)| y == 61 && x == 100);
        let f = |a: &Array2<f32>| {
            let mut t = Array2::<f32>::zeros(a.dim().f());
            t.assign(a);
            t
        };
        let mut mf = Array2::from_elem(mask.dim().f(), false);
        mf.assign(&mask);
        let (mut a, mut b) = (img.clone(), f(&img));
        let nf = f(&noise);
        let p = CosmicParams::default();
        let r1 = cosmic_rays(&mut a, &noise.view(), Some(&mask.view()), &psf, &p);
        let r2 = cosmic_rays(&mut b, &nf.view(), Some(&mf.view()), &psf, &p);
        assert!(r1.mask.iter().any(|&v| v));
        assert_eq!(r1.mask, r2.mask);
        assert_eq!(bits(&a), bits(&b.as_standard_layout().to_owned()));
    }
}
