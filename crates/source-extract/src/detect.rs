//! Thresholding, connected components, deblending and per-object measurements.

use crate::aperture::{CornerAreas, annulus_background, aperture_sum, axis_distance2};
use crate::noise::{convolve_separable, gaussian_kernel_1d, good_mask};
use crate::{Background, ExtractError, check_shape};
use diffim_core::stats::sigma_clip;
use ndarray::{Array2, ArrayView2, Zip};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A pixel of the object reached the saturation level given in [`DetectParams::saturation`].
pub const FLAG_SATURATED: u32 = 1;
/// The object touches the image border, or its aperture leaves the image.
pub const FLAG_EDGE: u32 = 2;
/// The object touches a masked or non-finite pixel, or one lies in its aperture.
pub const FLAG_MASKED: u32 = 4;
/// The object was split from a blend by the deblender.
pub const FLAG_BLENDED: u32 = 8;
/// The photometry aperture extends beyond the image (always set together with [`FLAG_EDGE`]).
pub const FLAG_APERTURE_TRUNCATED: u32 = 16;

/// Parameters of [`detect`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectParams {
    /// Detection threshold in units of the per-pixel background RMS (of the *filtered* noise
    /// when `filter_fwhm` is set). Default 5.0.
    pub threshold: f64,
    /// Minimum number of connected pixels above threshold (also for deblended children).
    /// Default 5.
    pub min_area: usize,
    /// FWHM (pixels) of the Gaussian matched filter applied before thresholding; `None`
    /// (default) detects on the unfiltered image. The filtered noise is computed exactly,
    /// `sqrt(rms^2 conv k^2)`, so the threshold keeps its meaning.
    pub filter_fwhm: Option<f64>,
    /// Split blended objects (multi-threshold deblending). Default true.
    pub deblend: bool,
    /// Number of exponentially spaced deblending levels between the threshold and the peak.
    /// Default 32 (SExtractor `DEBLEND_NTHRESH`).
    pub deblend_nthresh: usize,
    /// Minimum flux fraction of a branch, relative to the whole blend, to be split off.
    /// Default 0.005 (SExtractor `DEBLEND_MINCONT`).
    pub deblend_contrast: f64,
    /// Radius (pixels) of the photometry aperture. Default 5.
    pub aperture_radius: f64,
    /// Annulus `(inner, outer)` radii (pixels) for a local background correction on top of the
    /// background map; `None` uses the map alone. Default `Some((8.0, 12.0))`.
    pub annulus: Option<(f64, f64)>,
    /// Saturation level in ADU of the raw image (e.g. the `SATURATE` card); `None` = no check.
    pub saturation: Option<f64>,
    /// Gain (e-/ADU) for the source Poisson term of `flux_err`; `None` = background noise only.
    pub gain: Option<f64>,
}

impl Default for DetectParams {
    fn default() -> Self {
        Self {
            threshold: 5.0,
            min_area: 5,
            filter_fwhm: None,
            deblend: true,
            deblend_nthresh: 32,
            deblend_contrast: 0.005,
            aperture_radius: 5.0,
            annulus: Some((8.0, 12.0)),
            saturation: None,
            gain: None,
        }
    }
}

/// One detected source. Coordinates are 0-based pixels; fluxes in ADU.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Object {
    /// Windowed centroid x (SExtractor `XWIN_IMAGE` - 1, SEP `winpos`).
    pub x: f64,
    /// Windowed centroid y.
    pub y: f64,
    /// Aperture flux (radius [`DetectParams::aperture_radius`]) above the local background.
    pub flux: f64,
    /// 1-sigma error of `flux`.
    pub flux_err: f64,
    /// Local background per pixel at the object (map + annulus correction), ADU.
    pub background: f64,
    /// Highest background-subtracted pixel value of the object.
    pub peak: f64,
    /// Gaussian-equivalent FWHM: twice the half-light radius (within 6 `a`, at least 3 px).
    pub fwhm: f64,
    /// Isophotal semi-major axis RMS (pixels), from second moments.
    pub a: f64,
    /// Isophotal semi-minor axis RMS (pixels).
    pub b: f64,
    /// Position angle of the major axis, radians counter-clockwise from +x, in (-pi/2, pi/2].
    pub theta: f64,
    /// `flux / flux_err`.
    pub snr: f64,
    /// Number of pixels of the object above threshold.
    pub npix: usize,
    /// `FLAG_*` bits.
    pub flags: u32,
}

/// Detects sources in `image` (not background-subtracted) above `threshold * rms` of the
/// background model, deblends them and measures each one (see the crate docs).
///
/// Objects are returned sorted by decreasing flux. A constant image or an image without
/// sources gives an empty list.
///
/// # Errors
/// Shape mismatches, [`ExtractError::InvalidParameter`] for a negative/non-finite threshold,
/// `min_area == 0`, a non-positive aperture or filter FWHM, an invalid annulus;
/// [`ExtractError::InvalidGain`] for a non-positive gain.
pub fn detect(
    image: &ArrayView2<f32>,
    background: &Background,
    mask: Option<&ArrayView2<bool>>,
    params: &DetectParams,
) -> Result<Vec<Object>, ExtractError> {
    let dim = image.dim();
    if dim.0 == 0 || dim.1 == 0 {
        return Err(ExtractError::EmptyImage {
            ny: dim.0,
            nx: dim.1,
        });
    }
    check_shape("mask", dim, mask)?;
    check_shape("background", dim, Some(&background.background.view()))?;
    check_shape("background rms", dim, Some(&background.rms.view()))?;
    validate(params)?;

    let good = good_mask(image, mask);
    // The background-subtracted image and (unfiltered detection) the pixels above threshold,
    // in one pass.
    let thr = params.threshold as f32;
    let unfiltered = params.filter_fwhm.is_none();
    let mut sub = Array2::<f32>::zeros(dim);
    let mut above = Array2::<bool>::from_elem(dim, false);
    Zip::from(&mut sub)
        .and(&mut above)
        .and(image)
        .and(&background.background)
        .and(&background.rms)
        .and(&good)
        .par_for_each(|s, a, &i, &b, &n, &g| {
            if g {
                let d = i - b;
                *s = d;
                *a = unfiltered && d > thr * n && d > 0.0;
            }
        });

    // Detection image and its noise (the unfiltered ones are borrowed, not copied).
    let filtered = params.filter_fwhm.map(|fwhm| {
        let k = gaussian_kernel_1d(fwhm / (8.0 * 2f64.ln()).sqrt());
        let k2: Vec<f32> = k.iter().map(|v| v * v).collect();
        let det = convolve_separable(&sub.view(), &k, &k);
        let mut var = background.rms.mapv(|r| r * r);
        Zip::from(&mut var).and(&good).par_for_each(|v, &g| {
            if !g {
                *v = 0.0;
            }
        });
        let mut nf = convolve_separable(&var.view(), &k2, &k2);
        nf.par_mapv_inplace(|v| v.max(0.0).sqrt());
        (det, nf)
    });
    let (det, det_noise) = match &filtered {
        Some((d, n)) => (d.view(), n.view()),
        None => (sub.view(), background.rms.view()),
    };
    if !unfiltered {
        Zip::from(&mut above)
            .and(&det)
            .and(&det_noise)
            .and(&good)
            .par_for_each(|a, &d, &n, &g| *a = g && d > thr * n && d > 0.0);
    }

    let components = connected_components(above, params.min_area);

    // Deblend and measure, in parallel over components.
    let ctx = MeasureCtx {
        image,
        sub: &sub.view(),
        good: &good.view(),
        bg: background,
        params,
    };
    let mut objects: Vec<Object> = components
        .par_iter()
        .flat_map_iter(|comp| {
            let children = if params.deblend && comp.len() >= 2 * params.min_area {
                deblend(comp, &det, &det_noise, params)
            } else {
                vec![comp.clone()]
            };
            let blended = children.len() > 1;
            children
                .into_iter()
                .filter_map(|c| ctx.measure(&c, blended))
                .collect::<Vec<_>>()
        })
        .collect();
    objects.sort_by(|a, b| b.flux.total_cmp(&a.flux));
    Ok(objects)
}

fn validate(p: &DetectParams) -> Result<(), ExtractError> {
    let bad = |name, value: f64, reason| {
        Err(ExtractError::InvalidParameter {
            name,
            value,
            reason,
        })
    };
    if !(p.threshold.is_finite() && p.threshold >= 0.0) {
        return bad("threshold", p.threshold, "must be finite and >= 0");
    }
    if p.min_area == 0 {
        return bad("min_area", 0.0, "must be at least 1");
    }
    if !(p.aperture_radius.is_finite() && p.aperture_radius > 0.0) {
        return bad(
            "aperture_radius",
            p.aperture_radius,
            "must be finite and > 0",
        );
    }
    if let Some(f) = p.filter_fwhm
        && !(f.is_finite() && f > 0.0)
    {
        return bad("filter_fwhm", f, "must be finite and > 0");
    }
    if let Some((rin, rout)) = p.annulus
        && !(rin.is_finite() && rout.is_finite() && rin >= 0.0 && rout > rin)
    {
        return bad("annulus", rout, "need 0 <= inner < outer, finite");
    }
    if let Some(g) = p.gain
        && (g.is_nan() || g <= 0.0)
    {
        return Err(ExtractError::InvalidGain { gain: g });
    }
    if !(p.deblend_contrast.is_finite() && p.deblend_contrast >= 0.0) {
        return bad(
            "deblend_contrast",
            p.deblend_contrast,
            "must be finite and >= 0",
        );
    }
    Ok(())
}

/// 8-connected components of `mask` with at least `min_area` pixels, as lists of `(y, x)`
/// (depth-first order from the first pixel in raster order). Consumes the mask: a pixel is
/// cleared when it joins a component (so no separate visited map), and the raster scan skips
/// runs of clear pixels a block at a time.
fn connected_components(mut mask: Array2<bool>, min_area: usize) -> Vec<Vec<(usize, usize)>> {
    const BLOCK: usize = 64;
    let (ny, nx) = mask.dim();
    let mut owned: Vec<bool>;
    let m: &mut [bool] = match mask.as_slice_mut() {
        Some(s) => s,
        None => {
            owned = mask.iter().copied().collect();
            &mut owned
        }
    };
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for b0 in (0..ny * nx).step_by(BLOCK) {
        let b1 = (b0 + BLOCK).min(ny * nx);
        if !m[b0..b1].iter().fold(false, |a, &v| a | v) {
            continue;
        }
        for start in b0..b1 {
            if !m[start] {
                continue;
            }
            let mut comp = Vec::new();
            m[start] = false;
            stack.push(start);
            while let Some(i) = stack.pop() {
                let (y, x) = (i / nx, i % nx);
                comp.push((y, x));
                for yy in y.saturating_sub(1)..=(y + 1).min(ny - 1) {
                    let base = yy * nx;
                    for xx in x.saturating_sub(1)..=(x + 1).min(nx - 1) {
                        let j = base + xx;
                        if m[j] {
                            m[j] = false;
                            stack.push(j);
                        }
                    }
                }
            }
            if comp.len() >= min_area {
                out.push(comp);
            }
        }
    }
    out
}

/// A component's pixels on a local grid, for repeated sub-labelling.
struct LocalGrid {
    y0: usize,
    x0: usize,
    w: usize,
    h: usize,
    /// Index into the component's pixel list, or `usize::MAX`.
    idx: Vec<usize>,
}

impl LocalGrid {
    fn new(comp: &[(usize, usize)]) -> Self {
        let y0 = comp.iter().map(|p| p.0).min().unwrap_or(0);
        let y1 = comp.iter().map(|p| p.0).max().unwrap_or(0);
        let x0 = comp.iter().map(|p| p.1).min().unwrap_or(0);
        let x1 = comp.iter().map(|p| p.1).max().unwrap_or(0);
        let (h, w) = (y1 - y0 + 1, x1 - x0 + 1);
        let mut idx = vec![usize::MAX; h * w];
        for (i, &(y, x)) in comp.iter().enumerate() {
            idx[(y - y0) * w + (x - x0)] = i;
        }
        Self { y0, x0, w, h, idx }
    }

    /// Calls `f` with the component index of each 8-neighbour of component pixel `p`.
    fn neighbours(&self, comp: &[(usize, usize)], p: usize, mut f: impl FnMut(usize)) {
        let (y, x) = (comp[p].0 - self.y0, comp[p].1 - self.x0);
        for yy in y.saturating_sub(1)..=(y + 1).min(self.h - 1) {
            for xx in x.saturating_sub(1)..=(x + 1).min(self.w - 1) {
                let q = self.idx[yy * self.w + xx];
                if q != usize::MAX && q != p {
                    f(q);
                }
            }
        }
    }
}

/// The 8-neighbours of every pixel of a component (indices into the component, in the order
/// of [`LocalGrid::neighbours`]), as one flat list.
struct Adjacency {
    /// Neighbours of pixel `p`: `list[start[p]..start[p + 1]]`.
    start: Vec<usize>,
    list: Vec<usize>,
}

impl Adjacency {
    fn new(grid: &LocalGrid, comp: &[(usize, usize)]) -> Self {
        let mut start = Vec::with_capacity(comp.len() + 1);
        let mut list = Vec::with_capacity(8 * comp.len());
        start.push(0);
        for p in 0..comp.len() {
            grid.neighbours(comp, p, |q| list.push(q));
            start.push(list.len());
        }
        Self { start, list }
    }

    #[inline]
    fn of(&self, p: usize) -> &[usize] {
        &self.list[self.start[p]..self.start[p + 1]]
    }
}

/// Connected subsets of a component, flat: subset `i` is `pix[ends[i - 1]..ends[i]]`.
#[derive(Default)]
struct Subsets {
    pix: Vec<usize>,
    ends: Vec<usize>,
}

impl Subsets {
    fn iter(&self) -> impl Iterator<Item = &[usize]> {
        let mut s = 0;
        self.ends.iter().map(move |&e| {
            let c = &self.pix[s..e];
            s = e;
            c
        })
    }
}

/// Connected subsets (8-connectivity) of the component pixels in `subset` with `keep(p)`,
/// into `out` (cleared): each subset from its first pixel in `subset` order, depth first.
fn sub_components(
    adj: &Adjacency,
    subset: &[usize],
    keep: impl Fn(usize) -> bool,
    mark: &mut [u32],
    stamp: u32,
    stack: &mut Vec<usize>,
    out: &mut Subsets,
) {
    out.pix.clear();
    out.ends.clear();
    // mark[p] == stamp: eligible; stamp + 1: visited.
    for &p in subset {
        if keep(p) {
            mark[p] = stamp;
        }
    }
    for &p in subset {
        if mark[p] != stamp {
            continue;
        }
        mark[p] = stamp + 1;
        stack.push(p);
        while let Some(q) = stack.pop() {
            out.pix.push(q);
            for &r in adj.of(q) {
                if mark[r] == stamp {
                    mark[r] = stamp + 1;
                    stack.push(r);
                }
            }
        }
        out.ends.push(out.pix.len());
    }
}

/// Multi-threshold deblending (SExtractor section 3.3): returns the child pixel lists (one
/// list = the component itself when it is not a blend).
fn deblend(
    comp: &[(usize, usize)],
    det: &ArrayView2<f32>,
    noise: &ArrayView2<f32>,
    params: &DetectParams,
) -> Vec<Vec<(usize, usize)>> {
    let n = comp.len();
    let v: Vec<f64> = comp.iter().map(|&(y, x)| det[[y, x]] as f64).collect();
    let base = comp
        .iter()
        .map(|&(y, x)| params.threshold * noise[[y, x]] as f64)
        .fold(f64::INFINITY, f64::min);
    let peak = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !(base > 0.0 && peak > base) || params.deblend_nthresh < 2 {
        return vec![comp.to_vec()];
    }
    let total: f64 = v.iter().sum();
    let nth = params.deblend_nthresh;
    let levels: Vec<f64> = (1..nth)
        .map(|i| base * (peak / base).powf(i as f64 / nth as f64))
        .collect();
    let adj = Adjacency::new(&LocalGrid::new(comp), comp);
    let mut mark = vec![0u32; n];
    let mut stamp = 1u32;
    let all: Vec<usize> = (0..n).collect();
    let min_flux = params.deblend_contrast * total;
    let (mut stack, mut subs, mut cur) = (Vec::new(), Subsets::default(), Vec::new());

    // Depth-first search of the branch tree.
    let mut leaves: Vec<Vec<usize>> = Vec::new();
    let mut todo: Vec<(Vec<usize>, usize)> = vec![(all, 0)];
    while let Some((set, start)) = todo.pop() {
        let mut split = None;
        // Pixels above the current level, in the order of `set`: the components above a
        // higher level lie inside them, and scanning them in the same order finds the same
        // components in the same order as scanning all of `set`.
        cur.clear();
        cur.extend_from_slice(&set);
        // Pixels above the last level labelled (which did not split).
        let mut labelled = None;
        for (k, &t) in levels.iter().enumerate().skip(start) {
            cur.retain(|&p| v[p] > t);
            // Two significant branches need `2 min_area` pixels, and the pixels above the
            // higher levels are fewer still: no split from here on.
            if cur.len() < 2 * params.min_area {
                break;
            }
            // The same pixels as at the last level labelled: the same subsets, no split.
            if labelled == Some(cur.len()) {
                continue;
            }
            labelled = Some(cur.len());
            stamp += 2;
            sub_components(
                &adj,
                &cur,
                |p| v[p] > t,
                &mut mark,
                stamp,
                &mut stack,
                &mut subs,
            );
            if subs.ends.is_empty() {
                break;
            }
            let significant = |s: &&[usize]| {
                s.len() >= params.min_area && s.iter().map(|&p| v[p]).sum::<f64>() >= min_flux
            };
            if subs.iter().filter(significant).nth(1).is_some() {
                let sig: Vec<Vec<usize>> = subs
                    .iter()
                    .filter(significant)
                    .map(<[usize]>::to_vec)
                    .collect();
                split = Some((sig, k + 1));
                break;
            }
        }
        match split {
            Some((sig, next)) => todo.extend(sig.into_iter().map(|s| (s, next))),
            None => leaves.push(set),
        }
    }
    if leaves.len() < 2 {
        return vec![comp.to_vec()];
    }
    // Watershed flooding from the leaf cores in decreasing pixel value.
    let mut label = vec![usize::MAX; n];
    #[derive(PartialEq)]
    struct Item(f64, usize);
    impl Eq for Item {}
    impl PartialOrd for Item {
        fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Item {
        fn cmp(&self, o: &Self) -> Ordering {
            self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
        }
    }
    let mut heap = BinaryHeap::new();
    for (l, leaf) in leaves.iter().enumerate() {
        for &p in leaf {
            label[p] = l;
            heap.push(Item(v[p], p));
        }
    }
    while let Some(Item(_, p)) = heap.pop() {
        let l = label[p];
        for &q in adj.of(p) {
            if label[q] == usize::MAX {
                label[q] = l;
                heap.push(Item(v[q], q));
            }
        }
    }
    let mut children = vec![Vec::new(); leaves.len()];
    for (p, &l) in label.iter().enumerate() {
        if l != usize::MAX {
            children[l].push(comp[p]);
        }
    }
    children.retain(|c| !c.is_empty());
    children
}

/// Row `y` of `a` as a slice (a copy when the row is not contiguous).
fn row_slice<'b>(a: &'b ArrayView2<'_, f32>, y: usize) -> std::borrow::Cow<'b, [f32]> {
    let row = a.row(y);
    match row.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(row.to_vec()),
    }
}

/// A set of pixels as a bitmap over their bounding box.
struct PixelSet {
    y0: usize,
    x0: usize,
    h: usize,
    w: usize,
    bits: Vec<bool>,
}

impl PixelSet {
    fn new(pix: &[(usize, usize)]) -> Self {
        let y0 = pix.iter().map(|p| p.0).min().unwrap_or(0);
        let y1 = pix.iter().map(|p| p.0).max().unwrap_or(0);
        let x0 = pix.iter().map(|p| p.1).min().unwrap_or(0);
        let x1 = pix.iter().map(|p| p.1).max().unwrap_or(0);
        let (h, w) = (y1 - y0 + 1, x1 - x0 + 1);
        let mut bits = vec![false; h * w];
        for &(y, x) in pix {
            bits[(y - y0) * w + (x - x0)] = true;
        }
        Self { y0, x0, h, w, bits }
    }

    #[inline]
    fn contains(&self, y: usize, x: usize) -> bool {
        let (dy, dx) = (y.wrapping_sub(self.y0), x.wrapping_sub(self.x0));
        dy < self.h && dx < self.w && self.bits[dy * self.w + dx]
    }
}

struct MeasureCtx<'a> {
    image: &'a ArrayView2<'a, f32>,
    sub: &'a ArrayView2<'a, f32>,
    good: &'a ArrayView2<'a, bool>,
    bg: &'a Background,
    params: &'a DetectParams,
}

impl MeasureCtx<'_> {
    fn measure(&self, pix: &[(usize, usize)], blended: bool) -> Option<Object> {
        let (ny, nx) = self.sub.dim();
        let p = self.params;
        let mut flags = if blended { FLAG_BLENDED } else { 0 };
        let (mut sw, mut sx, mut sy) = (0.0f64, 0.0f64, 0.0f64);
        let mut peak = f64::NEG_INFINITY;
        for &(y, x) in pix {
            let v = self.sub[[y, x]] as f64;
            peak = peak.max(v);
            let w = v.max(0.0);
            sw += w;
            sx += w * x as f64;
            sy += w * y as f64;
            if y == 0 || x == 0 || y == ny - 1 || x == nx - 1 {
                flags |= FLAG_EDGE;
            }
            if let Some(s) = p.saturation
                && self.image[[y, x]] as f64 >= s
            {
                flags |= FLAG_SATURATED;
            }
            if !flags & FLAG_MASKED != 0 {
                'n: for yy in y.saturating_sub(1)..=(y + 1).min(ny - 1) {
                    for xx in x.saturating_sub(1)..=(x + 1).min(nx - 1) {
                        if !self.good[[yy, xx]] {
                            flags |= FLAG_MASKED;
                            break 'n;
                        }
                    }
                }
            }
        }
        if sw <= 0.0 {
            return None;
        }
        let (xb, yb) = (sx / sw, sy / sw);
        let (mut x2, mut y2, mut xy) = (0.0, 0.0, 0.0);
        for &(y, x) in pix {
            let w = (self.sub[[y, x]] as f64).max(0.0);
            let (dx, dy) = (x as f64 - xb, y as f64 - yb);
            x2 += w * dx * dx;
            y2 += w * dy * dy;
            xy += w * dx * dy;
        }
        (x2, y2, xy) = (x2 / sw, y2 / sw, xy / sw);
        // Handle single-row/column objects as SExtractor: add the variance of a uniform pixel.
        if x2 * y2 - xy * xy < 1.0 / 144.0 {
            x2 += 1.0 / 12.0;
            y2 += 1.0 / 12.0;
        }
        let t1 = 0.5 * (x2 + y2);
        let t2 = (0.25 * (x2 - y2).powi(2) + xy * xy).sqrt();
        let a = (t1 + t2).max(0.0).sqrt();
        let b = (t1 - t2).max(0.0).sqrt();
        let theta = 0.5 * (2.0 * xy).atan2(x2 - y2);

        // A deblended child is measured on its own pixels only, so that its neighbour's
        // light does not pull its centroid and size.
        let own = if blended {
            Some(PixelSet::new(pix))
        } else {
            None
        };
        let usable = |y: usize, x: usize| -> bool {
            self.good[[y, x]] && own.as_ref().is_none_or(|o| o.contains(y, x))
        };
        let rmax = (6.0 * a).clamp(3.0, 60.0);
        let mut corners = CornerAreas::new();
        let r_half = half_light_radius(self.sub, &usable, xb, yb, rmax, &mut corners);
        let sig = r_half.map_or(a.max(0.5), |r| (2.0 / 2.35 * r).max(0.3));
        let (x, y) =
            windowed_centroid(self.sub, &usable, xb, yb, sig, &mut corners).unwrap_or((xb, yb));

        // Local background correction from the annulus (on the background-subtracted image).
        let (resid, resid_err) = match p.annulus {
            Some((rin, rout)) => {
                annulus_background(self.sub, None, x, y, rin, rout).unwrap_or((0.0, 0.0))
            }
            None => (0.0, 0.0),
        };
        let is_bad = |y: usize, x: usize| !self.good[[y, x]];
        let (flux, var, area, aflags) = aperture_sum(
            self.sub,
            Some(&self.bg.rms.view()),
            &is_bad,
            (x, y),
            p.aperture_radius,
            resid,
            &mut corners,
        );
        flags |= aflags;
        if area <= 0.0 {
            return None;
        }
        let mut var = var + area * area * resid_err * resid_err;
        if let Some(g) = p.gain {
            var += flux.max(0.0) / g;
        }
        let flux_err = var.sqrt();
        let (iy, ix) = (
            (y.round().max(0.0) as usize).min(ny - 1),
            (x.round().max(0.0) as usize).min(nx - 1),
        );
        let background = self.bg.background[[iy, ix]] as f64 + resid;
        Some(Object {
            x,
            y,
            flux,
            flux_err,
            background,
            peak,
            fwhm: r_half.map_or(f64::NAN, |r| 2.0 * r),
            a,
            b,
            theta,
            snr: if flux_err > 0.0 {
                flux / flux_err
            } else {
                f64::INFINITY
            },
            npix: pix.len(),
            flags,
        })
    }
}

/// A pixel of a radial profile: its value and its nearest / farthest squared distance from
/// the profile centre (see [`pixel_distance2_range`]).
#[derive(Debug, Clone, Copy)]
struct RingPixel {
    d2min: f64,
    d2max: f64,
    px: f64,
    py: f64,
    v: f64,
}

/// The pixels around a centre sorted by their farthest distance, with the cumulative sum of
/// their values: the flux in an exact-overlap circle of radius `r` is the cumulative sum of the
/// pixels entirely inside plus the exact overlaps of the few pixels the circle cuts.
struct RadialProfile<'c> {
    x: f64,
    y: f64,
    px: Vec<RingPixel>,
    /// `cum[k]` = sum of the values of `px[..k]`.
    cum: Vec<f64>,
    /// Pixel box `(x0, x1), (y0, y1)` of `px`, for the corner areas.
    bbox: ((i64, i64), (i64, i64)),
    corners: &'c mut CornerAreas,
}

/// Sorts `px` by `d2max` exactly as `px.sort_unstable_by(|a, b| a.d2max.total_cmp(&b.d2max))`
/// does, faster: a sort of integers made of the key's high bits and the pixel's index. That
/// order is the only sorted order when no two keys share their high bits; otherwise (ties
/// and near-ties) the original sort, whose order among equal keys is its own.
fn sort_by_d2max(px: &mut Vec<RingPixel>) {
    let n = px.len();
    let idx_bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    if n < 2 || idx_bits > 24 {
        px.sort_unstable_by(|a, b| a.d2max.total_cmp(&b.d2max));
        return;
    }
    // Order-preserving integer key of an f64 (the order of `total_cmp`), low bits replaced by
    // the index.
    let key = |v: f64| {
        let b = v.to_bits();
        if b >> 63 == 1 { !b } else { b | (1 << 63) }
    };
    let low = (1u64 << idx_bits) - 1;
    let mut keys: Vec<u64> = px
        .iter()
        .enumerate()
        .map(|(i, p)| (key(p.d2max) & !low) | i as u64)
        .collect();
    keys.sort_unstable();
    if keys
        .windows(2)
        .any(|w| w[0] >> idx_bits == w[1] >> idx_bits)
    {
        px.sort_unstable_by(|a, b| a.d2max.total_cmp(&b.d2max));
        return;
    }
    *px = keys.iter().map(|&k| px[(k & low) as usize]).collect();
}

/// Pixels cut by a circle of radius `r` have `d2max < (r + CUT_SLACK)^2` (a pixel's farthest
/// and nearest points are at most sqrt(2) apart).
const CUT_SLACK: f64 = 1.5;

impl<'c> RadialProfile<'c> {
    fn new(
        mut px: Vec<RingPixel>,
        x: f64,
        y: f64,
        bbox: ((i64, i64), (i64, i64)),
        corners: &'c mut CornerAreas,
    ) -> Self {
        sort_by_d2max(&mut px);
        let mut cum = Vec::with_capacity(px.len() + 1);
        let mut s = 0.0;
        cum.push(s);
        for p in &px {
            s += p.v;
            cum.push(s);
        }
        Self {
            x,
            y,
            px,
            cum,
            bbox,
            corners,
        }
    }

    /// Index of the first pixel not entirely inside radius `r` (`r2 = r * r`).
    fn inside(&self, r2: f64) -> usize {
        self.px.partition_point(|p| p.d2max <= r2)
    }

    /// The pixels that may be cut by a circle of radius `r` (a superset: check `d2min`).
    fn cut_candidates(&self, r: f64, k: usize) -> impl Iterator<Item = &RingPixel> {
        let lim = (r + CUT_SLACK) * (r + CUT_SLACK);
        self.px[k..].iter().take_while(move |p| p.d2max < lim)
    }

    /// Exact-overlap flux inside radius `r` (as the sum of
    /// [`circle_pixel_overlap`](crate::circle_pixel_overlap) times value over all pixels, up
    /// to the summation order).
    fn flux(&mut self, r: f64) -> f64 {
        let r2 = r * r;
        let k = self.inside(r2);
        let mut s = self.cum[k];
        self.corners
            .start(self.x, self.y, r, self.bbox.0, self.bbox.1);
        let lim = (r + CUT_SLACK) * (r + CUT_SLACK);
        for p in self.px[k..].iter().take_while(|p| p.d2max < lim) {
            if p.d2min < r2 {
                s += self.corners.cut_overlap(p.px as i64, p.py as i64) * p.v;
            }
        }
        s
    }

    /// Rigorous bounds on [`Self::flux`]`(r)` (for the same floating-point sums) without
    /// evaluating any overlap: each cut pixel contributes between `min(v, 0)` and `max(v, 0)`.
    fn flux_bounds(&self, r: f64) -> (f64, f64) {
        let r2 = r * r;
        let k = self.inside(r2);
        let (mut lo, mut hi) = (self.cum[k], self.cum[k]);
        for p in self.cut_candidates(r, k) {
            if p.d2min < r2 {
                lo += p.v.min(0.0);
                hi += p.v.max(0.0);
            }
        }
        (lo, hi)
    }

    /// `true` when the flux is strictly increasing on `[a, b]`: every pixel a circle of radius
    /// in that range can cut has a positive value.
    fn increasing_on(&self, a: f64, b: f64) -> bool {
        let (a2, b2) = (a * a, b * b);
        let k = self.px.partition_point(|p| p.d2max <= a2);
        self.cut_candidates(b, k)
            .all(|p| p.d2min >= b2 || p.v > 0.0)
    }
}

/// Radius containing half the flux inside `rmax` (exact-overlap apertures); `None` when that
/// flux is not positive.
///
/// Defined as the result of a 30-step bisection on `[0, rmax]` (`flux(m) < half` moves the
/// lower end), computed with far fewer overlap evaluations: pixels entirely inside or outside
/// a circle come from the sorted cumulative profile, bisection steps that the cut pixels
/// cannot change are decided from bounds, and once the flux is provably strictly increasing
/// on the bracket (so that the crossing is unique) the bracket is refined with the Illinois
/// method to 1e-10 px. Agrees with the plain bisection to ~1e-8 px (a test pins 1e-4).
fn half_light_radius<G: Fn(usize, usize) -> bool>(
    sub: &ArrayView2<f32>,
    good: &G,
    x: f64,
    y: f64,
    rmax: f64,
    corners: &mut CornerAreas,
) -> Option<f64> {
    let (ny, nx) = sub.dim();
    let y0 = (y - rmax - 1.0).floor().max(0.0) as usize;
    let y1 = ((y + rmax + 1.0).ceil().max(0.0) as usize).min(ny - 1);
    let x0 = (x - rmax - 1.0).floor().max(0.0) as usize;
    let x1 = ((x + rmax + 1.0).ceil().max(0.0) as usize).min(nx - 1);
    let r2max = rmax * rmax;
    let mut px = Vec::with_capacity((y1 + 1).saturating_sub(y0) * (x1 + 1).saturating_sub(x0));
    let cols: Vec<(f64, f64)> = (x0..=x1).map(|xx| axis_distance2(x, xx as f64)).collect();
    for yy in y0..=y1 {
        let row = row_slice(sub, yy);
        let (ny2, fy2) = axis_distance2(y, yy as f64);
        for (xx, &(nx2, fx2)) in (x0..=x1).zip(&cols) {
            if !good(yy, xx) {
                continue;
            }
            // pixel_distance2_range, from the row and column terms.
            let d2min = nx2 + ny2;
            // Pixels outside every circle of radius <= rmax never contribute.
            if d2min >= r2max {
                continue;
            }
            px.push(RingPixel {
                d2min,
                d2max: fx2 + fy2,
                px: xx as f64,
                py: yy as f64,
                v: row[xx] as f64,
            });
        }
    }
    let bbox = ((x0 as i64, x1 as i64), (y0 as i64, y1 as i64));
    let mut prof = RadialProfile::new(px, x, y, bbox, corners);
    let total = prof.flux(rmax);
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let target = 0.5 * total;
    // Invariant: flux(lo) < target <= flux(hi). f_lo / f_hi: the flux at the ends, or a
    // bound on it when a step was decided from bounds.
    let (mut lo, mut hi) = (0.0, rmax);
    let (mut f_lo, mut f_hi) = (0.0, total);
    for _ in 0..30 {
        let m = 0.5 * (lo + hi);
        let (bl, bh) = prof.flux_bounds(m);
        if bh < target {
            (lo, f_lo) = (m, bh);
            continue;
        }
        if bl >= target {
            (hi, f_hi) = (m, bl);
            continue;
        }
        let fm = prof.flux(m);
        if fm < target {
            (lo, f_lo) = (m, fm);
        } else {
            (hi, f_hi) = (m, fm);
        }
        if prof.increasing_on(lo, hi) {
            return Some(illinois(&mut prof, lo, hi, f_lo, f_hi, target));
        }
    }
    Some(0.5 * (lo + hi))
}

/// Root of `flux(r) = target` in `[a, b]` for a strictly increasing flux with
/// `flux(a) < target <= flux(b)`, to 1e-10 px: Illinois variant of regula falsi, with steps
/// of at least the tolerance (so that the far end closes in too) and a bisection whenever
/// three steps have not halved the bracket. `fa`, `fb` only steer the interpolation (they may
/// be bounds of the flux at the ends).
fn illinois(
    prof: &mut RadialProfile,
    mut a: f64,
    mut b: f64,
    fa: f64,
    fb: f64,
    target: f64,
) -> f64 {
    const TOL: f64 = 1e-10;
    let (mut fa, mut fb) = (fa - target, fb - target);
    let mut side = 0i8;
    let (mut steps, mut width0) = (0, b - a);
    for _ in 0..100 {
        if b - a <= 2.0 * TOL {
            break;
        }
        let mut c = if fa < 0.0 && fb > 0.0 {
            (a * fb - b * fa) / (fb - fa)
        } else {
            0.5 * (a + b)
        };
        if !c.is_finite() {
            c = 0.5 * (a + b);
        }
        c = c.clamp(a + TOL, b - TOL);
        let fc = prof.flux(c) - target;
        if fc < 0.0 {
            (a, fa) = (c, fc);
            if side == -1 {
                fb *= 0.5;
            }
            side = -1;
        } else {
            (b, fb) = (c, fc);
            if side == 1 {
                fa *= 0.5;
            }
            side = 1;
        }
        // Safeguard: bisect when three steps have not halved the bracket.
        steps += 1;
        if steps == 3 {
            if b - a > 0.5 * width0 {
                let m = 0.5 * (a + b);
                let fm = prof.flux(m) - target;
                if fm < 0.0 {
                    (a, fa) = (m, fm);
                } else {
                    (b, fb) = (m, fm);
                }
                side = 0;
            }
            (steps, width0) = (0, b - a);
        }
    }
    0.5 * (a + b)
}

/// Windowed centroid (SExtractor `XWIN`, SEP `winpos`): Gaussian window of `sig`, radius
/// `4 sig`, iterated until the shift is below 2e-4 px (at most 16 times). Pixel weights are
/// the exact circle overlap (only the pixels the circle cuts need the formula) times the
/// Gaussian, evaluated as a product of per-column and per-row factors.
fn windowed_centroid<G: Fn(usize, usize) -> bool>(
    sub: &ArrayView2<f32>,
    good: &G,
    x0: f64,
    y0: f64,
    sig: f64,
    corners: &mut CornerAreas,
) -> Option<(f64, f64)> {
    let (ny, nx) = sub.dim();
    let r = 4.0 * sig;
    let r2 = r * r;
    let inv2s2 = 1.0 / (2.0 * sig * sig);
    let (mut x, mut y) = (x0, y0);
    // Per column: the x terms of the pixel distance range, the window factor and dx.
    let mut cols: Vec<(f64, f64, f64, f64)> = Vec::new();
    for _ in 0..16 {
        let ylo = (y - r - 0.5).floor().max(0.0) as usize;
        let yhi = ((y + r + 0.5).ceil().max(0.0) as usize).min(ny - 1);
        let xlo = (x - r - 0.5).floor().max(0.0) as usize;
        let xhi = ((x + r + 0.5).ceil().max(0.0) as usize).min(nx - 1);
        corners.start(x, y, r, (xlo as i64, xhi as i64), (ylo as i64, yhi as i64));
        cols.clear();
        cols.extend((xlo..=xhi).map(|xx| {
            let (n2, f2) = axis_distance2(x, xx as f64);
            let dx = xx as f64 - x;
            (n2, f2, (-(dx * dx) * inv2s2).exp(), dx)
        }));
        let (mut tv, mut dxs, mut dys) = (0.0, 0.0, 0.0);
        for yy in ylo..=yhi {
            let (ny2, fy2) = axis_distance2(y, yy as f64);
            let dy = yy as f64 - y;
            let ey = (-(dy * dy) * inv2s2).exp();
            let row = row_slice(sub, yy);
            for (xx, &(nx2, fx2, exx, dx)) in (xlo..=xhi).zip(&cols) {
                // pixel_distance2_range, from the row and column terms.
                if nx2 + ny2 >= r2 || !good(yy, xx) {
                    continue;
                }
                let ov = if fx2 + fy2 <= r2 {
                    1.0
                } else {
                    corners.cut_overlap(xx as i64, yy as i64)
                };
                if ov <= 0.0 {
                    continue;
                }
                let w = ov * (exx * ey) * row[xx] as f64;
                tv += w;
                dxs += w * dx;
                dys += w * dy;
            }
        }
        if tv.is_nan() || tv <= 0.0 {
            return None;
        }
        let (sx, sy) = (2.0 * dxs / tv, 2.0 * dys / tv);
        x += sx;
        y += sy;
        if !(x.is_finite() && y.is_finite()) || (x - x0).hypot(y - y0) > 2.0 * r.max(2.0) {
            return None;
        }
        if sx * sx + sy * sy < 4e-8 {
            break;
        }
    }
    Some((x, y))
}

/// Parameters of [`estimate_fwhm_with`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FwhmParams {
    /// Minimum S/N of a star used. Default 20.
    pub min_snr: f64,
    /// A star is isolated when no other object lies within
    /// `max(isolation_radius, 3 * its fwhm)` pixels. Default 10.
    pub isolation_radius: f64,
}

impl Default for FwhmParams {
    fn default() -> Self {
        Self {
            min_snr: 20.0,
            isolation_radius: 10.0,
        }
    }
}

/// Image FWHM (pixels) with the default [`FwhmParams`]: the 3-sigma-clipped median of the
/// per-object FWHM of unflagged (unsaturated, not at an edge, unmasked, not blended),
/// isolated objects with S/N > 20.
///
/// # Errors
/// [`ExtractError::NoStarsForFwhm`] when no object qualifies.
pub fn estimate_fwhm(objects: &[Object]) -> Result<f64, ExtractError> {
    estimate_fwhm_with(objects, &FwhmParams::default())
}

/// [`estimate_fwhm`] with explicit selection parameters.
///
/// # Errors
/// [`ExtractError::NoStarsForFwhm`] when no object qualifies.
pub fn estimate_fwhm_with(objects: &[Object], params: &FwhmParams) -> Result<f64, ExtractError> {
    let err = ExtractError::NoStarsForFwhm {
        n_objects: objects.len(),
        min_snr: params.min_snr,
    };
    // Objects sorted by x for the isolation test.
    let mut by_x: Vec<(f64, f64)> = objects
        .iter()
        .filter(|o| o.x.is_finite() && o.y.is_finite())
        .map(|o| (o.x, o.y))
        .collect();
    by_x.sort_by(|a, b| a.0.total_cmp(&b.0));
    let isolated = |o: &Object| -> bool {
        let r = params.isolation_radius.max(3.0 * o.fwhm);
        let start = by_x.partition_point(|p| p.0 < o.x - r);
        by_x[start..]
            .iter()
            .take_while(|p| p.0 <= o.x + r)
            .filter(|p| (p.0 - o.x).hypot(p.1 - o.y) < r)
            .count()
            <= 1
    };
    let mut f: Vec<f64> = objects
        .iter()
        .filter(|o| o.flags == 0 && o.snr > params.min_snr && o.fwhm.is_finite() && o.fwhm > 0.0)
        .filter(|o| isolated(o))
        .map(|o| o.fwhm)
        .collect();
    if f.is_empty() {
        return Err(err);
    }
    let s = sigma_clip(&mut f, 3.0, 5).ok_or(err)?;
    Ok(s.median)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aperture::EXACT_OVERLAPS;
    use crate::circle_pixel_overlap;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The original implementation: 30-step bisection over every pixel's exact overlap.
    fn half_light_radius_ref(
        sub: &ArrayView2<f32>,
        good: &dyn Fn(usize, usize) -> bool,
        x: f64,
        y: f64,
        rmax: f64,
    ) -> Option<f64> {
        let (ny, nx) = sub.dim();
        let mut px = Vec::new();
        let y0 = (y - rmax - 1.0).floor().max(0.0) as usize;
        let y1 = ((y + rmax + 1.0).ceil().max(0.0) as usize).min(ny - 1);
        let x0 = (x - rmax - 1.0).floor().max(0.0) as usize;
        let x1 = ((x + rmax + 1.0).ceil().max(0.0) as usize).min(nx - 1);
        for yy in y0..=y1 {
            for xx in x0..=x1 {
                if good(yy, xx) {
                    px.push((xx as f64, yy as f64, sub[[yy, xx]] as f64));
                }
            }
        }
        let flux_in = |r: f64| -> f64 {
            px.iter()
                .map(|&(xx, yy, v)| circle_pixel_overlap(x, y, r, xx, yy) * v)
                .sum()
        };
        let total = flux_in(rmax);
        if total.is_nan() || total <= 0.0 {
            return None;
        }
        let target = 0.5 * total;
        let (mut lo, mut hi) = (0.0, rmax);
        for _ in 0..30 {
            let m = 0.5 * (lo + hi);
            if flux_in(m) < target {
                lo = m;
            } else {
                hi = m;
            }
        }
        Some(0.5 * (lo + hi))
    }

    /// The original windowed centroid: exact overlap times a Gaussian for every pixel.
    fn windowed_centroid_ref(
        sub: &ArrayView2<f32>,
        good: &dyn Fn(usize, usize) -> bool,
        x0: f64,
        y0: f64,
        sig: f64,
    ) -> Option<(f64, f64)> {
        let (ny, nx) = sub.dim();
        let r = 4.0 * sig;
        let inv2s2 = 1.0 / (2.0 * sig * sig);
        let (mut x, mut y) = (x0, y0);
        for _ in 0..16 {
            let ylo = (y - r - 0.5).floor().max(0.0) as usize;
            let yhi = ((y + r + 0.5).ceil().max(0.0) as usize).min(ny - 1);
            let xlo = (x - r - 0.5).floor().max(0.0) as usize;
            let xhi = ((x + r + 0.5).ceil().max(0.0) as usize).min(nx - 1);
            let (mut tv, mut dxs, mut dys) = (0.0, 0.0, 0.0);
            for yy in ylo..=yhi {
                for xx in xlo..=xhi {
                    if !good(yy, xx) {
                        continue;
                    }
                    let (dx, dy) = (xx as f64 - x, yy as f64 - y);
                    let ov = circle_pixel_overlap(x, y, r, xx as f64, yy as f64);
                    if ov <= 0.0 {
                        continue;
                    }
                    let w = ov * (-(dx * dx + dy * dy) * inv2s2).exp() * sub[[yy, xx]] as f64;
                    tv += w;
                    dxs += w * dx;
                    dys += w * dy;
                }
            }
            if tv.is_nan() || tv <= 0.0 {
                return None;
            }
            let (sx, sy) = (2.0 * dxs / tv, 2.0 * dys / tv);
            x += sx;
            y += sy;
            if !(x.is_finite() && y.is_finite()) || (x - x0).hypot(y - y0) > 2.0 * r.max(2.0) {
                return None;
            }
            if sx * sx + sy * sy < 4e-8 {
                break;
            }
        }
        Some((x, y))
    }

    /// The original subset labelling.
    fn sub_components_ref(
        grid: &LocalGrid,
        comp: &[(usize, usize)],
        subset: &[usize],
        keep: impl Fn(usize) -> bool,
        mark: &mut [u32],
        stamp: u32,
    ) -> Vec<Vec<usize>> {
        // mark[p] == stamp: eligible; stamp + 1: visited.
        for &p in subset {
            if keep(p) {
                mark[p] = stamp;
            }
        }
        let mut out = Vec::new();
        let mut stack = Vec::new();
        for &p in subset {
            if mark[p] != stamp {
                continue;
            }
            mark[p] = stamp + 1;
            stack.push(p);
            let mut c = Vec::new();
            while let Some(q) = stack.pop() {
                c.push(q);
                grid.neighbours(comp, q, |r| {
                    if mark[r] == stamp {
                        mark[r] = stamp + 1;
                        stack.push(r);
                    }
                });
            }
            out.push(c);
        }
        out
    }

    /// The original deblending (a fresh list per subset and level, neighbours from the grid, no
    /// early exit), for equality.
    fn deblend_ref(
        comp: &[(usize, usize)],
        det: &ArrayView2<f32>,
        noise: &ArrayView2<f32>,
        params: &DetectParams,
    ) -> Vec<Vec<(usize, usize)>> {
        let n = comp.len();
        let v: Vec<f64> = comp.iter().map(|&(y, x)| det[[y, x]] as f64).collect();
        let base = comp
            .iter()
            .map(|&(y, x)| params.threshold * noise[[y, x]] as f64)
            .fold(f64::INFINITY, f64::min);
        let peak = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if !(base > 0.0 && peak > base) || params.deblend_nthresh < 2 {
            return vec![comp.to_vec()];
        }
        let total: f64 = v.iter().sum();
        let nth = params.deblend_nthresh;
        let levels: Vec<f64> = (1..nth)
            .map(|i| base * (peak / base).powf(i as f64 / nth as f64))
            .collect();
        let grid = LocalGrid::new(comp);
        let mut mark = vec![0u32; n];
        let mut stamp = 1u32;
        let all: Vec<usize> = (0..n).collect();
        let min_flux = params.deblend_contrast * total;

        // Depth-first search of the branch tree.
        let mut leaves: Vec<Vec<usize>> = Vec::new();
        let mut todo: Vec<(Vec<usize>, usize)> = vec![(all, 0)];
        while let Some((set, start)) = todo.pop() {
            let mut split = None;
            // Pixels above the current level, in the order of `set`: the components above a
            // higher level lie inside them, and scanning them in the same order finds the same
            // components in the same order as scanning all of `set`.
            let mut cur = set.clone();
            for (k, &t) in levels.iter().enumerate().skip(start) {
                cur.retain(|&p| v[p] > t);
                stamp += 2;
                let subs = sub_components_ref(&grid, comp, &cur, |p| v[p] > t, &mut mark, stamp);
                if subs.is_empty() {
                    break;
                }
                let sig: Vec<Vec<usize>> = subs
                    .into_iter()
                    .filter(|s| {
                        s.len() >= params.min_area
                            && s.iter().map(|&p| v[p]).sum::<f64>() >= min_flux
                    })
                    .collect();
                if sig.len() >= 2 {
                    split = Some((sig, k + 1));
                    break;
                }
            }
            match split {
                Some((sig, next)) => todo.extend(sig.into_iter().map(|s| (s, next))),
                None => leaves.push(set),
            }
        }
        if leaves.len() < 2 {
            return vec![comp.to_vec()];
        }
        let mut label = vec![usize::MAX; n];
        #[derive(PartialEq)]
        struct Item(f64, usize);
        impl Eq for Item {}
        impl PartialOrd for Item {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Item {
            fn cmp(&self, o: &Self) -> Ordering {
                self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
            }
        }
        let mut heap = BinaryHeap::new();
        for (l, leaf) in leaves.iter().enumerate() {
            for &p in leaf {
                label[p] = l;
                heap.push(Item(v[p], p));
            }
        }
        while let Some(Item(_, p)) = heap.pop() {
            let l = label[p];
            grid.neighbours(comp, p, |q| {
                if label[q] == usize::MAX {
                    label[q] = l;
                    heap.push(Item(v[q], q));
                }
            });
        }
        let mut children = vec![Vec::new(); leaves.len()];
        for (p, &l) in label.iter().enumerate() {
            if l != usize::MAX {
                children[l].push(comp[p]);
            }
        }
        children.retain(|c| !c.is_empty());
        children
    }

    /// The original labelling (a separate visited map, a full raster scan).
    fn connected_components_ref(
        mask: &ArrayView2<bool>,
        min_area: usize,
    ) -> Vec<Vec<(usize, usize)>> {
        let (ny, nx) = mask.dim();
        let m: Vec<bool> = mask.iter().copied().collect();
        let mut seen = vec![false; ny * nx];
        let mut out = Vec::new();
        let mut stack = Vec::new();
        for start in 0..ny * nx {
            if !m[start] || seen[start] {
                continue;
            }
            let mut comp = Vec::new();
            seen[start] = true;
            stack.push(start);
            while let Some(i) = stack.pop() {
                let (y, x) = (i / nx, i % nx);
                comp.push((y, x));
                for yy in y.saturating_sub(1)..=(y + 1).min(ny - 1) {
                    let base = yy * nx;
                    for xx in x.saturating_sub(1)..=(x + 1).min(nx - 1) {
                        let j = base + xx;
                        if m[j] && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            if comp.len() >= min_area {
                out.push(comp);
            }
        }
        out
    }

    #[test]
    fn connected_components_match_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        for case in 0..100 {
            let (ny, nx) = (1 + case % 37, 1 + (case * 7) % 150);
            let p = [0.02, 0.2, 0.5, 0.9][case % 4];
            let mask = Array2::from_shape_fn((ny, nx), |_| rng.random::<f64>() < p);
            for min_area in [1, 3, 8] {
                let a = connected_components(mask.clone(), min_area);
                let b = connected_components_ref(&mask.view(), min_area);
                assert_eq!(a, b, "case {case}");
                // A mask with swapped axes (not standard layout) takes the copy.
                let mut t = mask.clone();
                t.swap_axes(0, 1);
                let tt = mask.t();
                let a = connected_components(t, min_area);
                assert_eq!(a, connected_components_ref(&tt, min_area), "case {case} t");
            }
        }
    }

    /// The integer-key sort gives the order of `sort_unstable_by(total_cmp)`, with and without
    /// ties (equal keys fall back to that very sort).
    #[test]
    fn d2max_sort_is_the_unstable_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for case in 0..200 {
            let n = [0, 1, 2, 19, 450, 1500][case % 6];
            let px: Vec<RingPixel> = (0..n)
                .map(|i| {
                    let d = if case % 3 == 0 {
                        // Mirror-symmetric offsets: many equal keys.
                        let (a, b) = (
                            rng.random_range(0..12) as f64,
                            rng.random_range(0..12) as f64,
                        );
                        (a + 0.3).powi(2) + (b + 0.3).powi(2)
                    } else {
                        rng.random_range(0.0..300.0)
                    };
                    RingPixel {
                        d2min: d * 0.5,
                        d2max: d,
                        px: i as f64,
                        py: -(i as f64),
                        v: rng.random_range(-1.0..1.0),
                    }
                })
                .collect();
            let mut a = px.clone();
            sort_by_d2max(&mut a);
            let mut b = px;
            b.sort_unstable_by(|p, q| p.d2max.total_cmp(&q.d2max));
            let bits = |v: &[RingPixel]| -> Vec<(u64, u64, u64)> {
                v.iter()
                    .map(|p| (p.d2max.to_bits(), p.px.to_bits(), p.v.to_bits()))
                    .collect()
            };
            assert_eq!(bits(&a), bits(&b), "case {case}");
        }
    }

    /// Deblending against the original on random blends of 2-4 Gaussian sources (with
    /// noise, plateaus of equal values and faint branches near the contrast limit): the same
    /// children, pixel for pixel and in the same order.
    #[test]
    fn deblend_matches_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut blends = 0;
        for case in 0..300 {
            let (ny, nx) = (40, 48);
            let k = rng.random_range(1..=4);
            let src: Vec<(f64, f64, f64, f64)> = (0..k)
                .map(|_| {
                    (
                        rng.random_range(12.0..36.0),
                        rng.random_range(12.0..28.0),
                        rng.random_range(1.0..3.0),
                        10f64.powf(rng.random_range(1.0..3.5)),
                    )
                })
                .collect();
            let noise = [0.0, 0.3, 1.0][case % 3];
            let img = Array2::from_shape_fn((ny, nx), |(y, x)| {
                let v: f64 = src
                    .iter()
                    .map(|&(cx, cy, s, a)| {
                        let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                        a * (-(dx * dx + dy * dy) / (2.0 * s * s)).exp()
                    })
                    .sum();
                let v = v + noise * rng.random_range(-1.0..1.0);
                // Every 4th case quantised: plateaus of equal values.
                (if case % 4 == 0 { v.round() } else { v }) as f32
            });
            let rms = Array2::from_elem((ny, nx), 1.0f32);
            let params = DetectParams {
                threshold: 2.0,
                min_area: [1, 3, 5][case % 3],
                deblend_contrast: [0.0, 0.005, 0.05][case % 3],
                deblend_nthresh: [2, 8, 32][(case / 3) % 3],
                ..Default::default()
            };
            let above = img.mapv(|v| v > 2.0);
            for comp in connected_components(above, params.min_area) {
                let a = deblend(&comp, &img.view(), &rms.view(), &params);
                let b = deblend_ref(&comp, &img.view(), &rms.view(), &params);
                assert_eq!(a, b, "case {case}");
                blends += usize::from(a.len() > 1);
            }
        }
        assert!(blends > 50, "only {blends} blends");
    }

    fn exact_count() -> u64 {
        EXACT_OVERLAPS.with(|c| c.get())
    }

    /// Fast half-light radius and windowed centroid against the original slow versions on
    /// random sub-pixel positions, Gaussian / Moffat / elliptical / noisy / masked / edge
    /// profiles; also checks that far fewer exact overlaps are evaluated.
    #[test]
    fn fast_radial_measures_match_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 48;
        let (mut max_dr, mut max_dc) = (0.0f64, 0.0f64);
        let (mut n_fast, mut n_ref) = (0u64, 0u64);
        let (mut w_fast, mut w_ref) = (0u64, 0u64);
        let (mut cases, mut compared) = (0, 0);
        // One corner cache across all calls, as each object measurement shares one.
        let mut corners = CornerAreas::new();
        // (kind, size parameter, noise rms relative to the peak)
        let profiles = [
            (0, 0.8, 0.0),
            (0, 1.3, 0.0),
            (0, 2.5, 0.01),
            (1, 2.0, 0.0),
            (2, 1.5, 0.02),
            (0, 1.2, 0.15),
            (3, 1.7, 0.03),
            (4, 1.4, 0.01),
        ];
        for &(kind, s, noise) in &profiles {
            for _ in 0..40 {
                cases += 1;
                // Near the centre, and for kind 4 close to the image edge.
                let (cx, cy) = if kind == 4 {
                    (rng.random_range(0.0..3.0), rng.random_range(20.0..28.0))
                } else {
                    (rng.random_range(20.0..28.0), rng.random_range(20.0..28.0))
                };
                let img = Array2::from_shape_fn((n, n), |(y, x)| {
                    let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                    let v = match kind {
                        1 => (1.0 + (dx * dx + dy * dy) / (s * s)).powf(-2.5),
                        2 => {
                            let (u, w) = (0.8 * dx + 0.6 * dy, -0.6 * dx + 0.8 * dy);
                            (-(u * u / (2.0 * s * s) + w * w / (2.0 * 0.6 * s * 0.6 * s))).exp()
                        }
                        _ => (-(dx * dx + dy * dy) / (2.0 * s * s)).exp(),
                    };
                    (1000.0 * v) as f32
                });
                let mut img = img;
                if noise > 0.0 {
                    for v in img.iter_mut() {
                        *v += (1000.0 * noise * (rng.random::<f64>() * 2.0 - 1.0) * 1.7) as f32;
                    }
                }
                // Kind 3: a few masked pixels near the core.
                let bad: Vec<(usize, usize)> = if kind == 3 {
                    (0..6)
                        .map(|_| {
                            (
                                (cy + rng.random_range(-3.0..3.0)).round() as usize,
                                (cx + rng.random_range(-3.0..3.0)).round() as usize,
                            )
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let good = |y: usize, x: usize| !bad.contains(&(y, x));
                let view = img.view();
                // Start from a slightly offset first-moment guess.
                let (xb, yb) = (
                    cx + rng.random_range(-0.3..0.3),
                    cy + rng.random_range(-0.3..0.3),
                );
                let rmax = rng.random_range(3.0..12.0);
                let c0 = exact_count();
                let fast = half_light_radius(&view, &good, xb, yb, rmax, &mut corners);
                let c1 = exact_count();
                let slow = half_light_radius_ref(&view, &good, xb, yb, rmax);
                let c2 = exact_count();
                n_fast += c1 - c0;
                n_ref += c2 - c1;
                assert_eq!(fast.is_some(), slow.is_some(), "{kind} {cx} {cy}");
                if let (Some(a), Some(b)) = (fast, slow) {
                    max_dr = max_dr.max((a - b).abs());
                    compared += 1;
                }
                let sig = slow.map_or(1.0, |r| (2.0 / 2.35 * r).max(0.3));
                let c0 = exact_count();
                let fast = windowed_centroid(&view, &good, xb, yb, sig, &mut corners);
                let c1 = exact_count();
                let slow = windowed_centroid_ref(&view, &good, xb, yb, sig);
                let c2 = exact_count();
                w_fast += c1 - c0;
                w_ref += c2 - c1;
                assert_eq!(fast.is_some(), slow.is_some(), "{kind} {cx} {cy}");
                if let (Some(a), Some(b)) = (fast, slow) {
                    max_dc = max_dc.max((a.0 - b.0).abs()).max((a.1 - b.1).abs());
                }
            }
        }
        eprintln!(
            "{cases} cases ({compared} radii): max |dr| = {max_dr:.3e} px, max |dcentroid| = \
             {max_dc:.3e} px; exact overlaps: radius {n_fast} vs reference {n_ref}, \
             centroid {w_fast} vs {w_ref}"
        );
        assert!(compared > cases * 9 / 10);
        assert!(max_dr < 1e-4, "half-light radius deviates by {max_dr}");
        assert!(max_dc < 1e-4, "windowed centroid deviates by {max_dc}");
        assert!(n_fast * 2 < n_ref, "{n_fast} vs {n_ref}");
    }
}
