//! Circular-aperture photometry with exact pixel/circle overlap and an annulus background.

use crate::detect::{FLAG_APERTURE_TRUNCATED, FLAG_EDGE, FLAG_MASKED};
use ndarray::ArrayView2;

/// Parameters of [`aperture_photometry`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApertureParams {
    /// Aperture radius in pixels. Default 5.
    pub radius: f64,
    /// Optional annulus `(inner, outer)` radii in pixels for a local background: the
    /// 3-sigma-clipped mean of the good pixels whose centres lie in the annulus is subtracted
    /// per pixel. Default `None` (the image is assumed background-subtracted).
    pub annulus: Option<(f64, f64)>,
}

impl Default for ApertureParams {
    fn default() -> Self {
        Self {
            radius: 5.0,
            annulus: None,
        }
    }
}

/// Result of [`aperture_photometry`] at one position.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Photometry {
    /// Aperture centre x (0-based pixel coordinate).
    pub x: f64,
    /// Aperture centre y (0-based pixel coordinate).
    pub y: f64,
    /// Background-subtracted flux in ADU (NaN when the aperture holds no good pixel).
    pub flux: f64,
    /// 1-sigma flux error in ADU from the noise map (and the annulus background's error).
    pub flux_err: f64,
    /// Local background per pixel (ADU) subtracted from the aperture; 0 without annulus.
    pub background: f64,
    /// `FLAG_*` bits: [`FLAG_MASKED`] (a masked or non-finite pixel in the aperture),
    /// [`FLAG_APERTURE_TRUNCATED`] | [`FLAG_EDGE`] (the aperture leaves the image).
    pub flags: u32,
}

/// Area of the intersection of pixel `(px, py)` (a unit square centred there) with the circle
/// of radius `r` centred at `(cx, cy)`. Exact (analytic), as SEP's `circoverlap`.
pub fn circle_pixel_overlap(cx: f64, cy: f64, r: f64, px: f64, py: f64) -> f64 {
    let (d2min, d2max) = pixel_distance2_range(cx, cy, px, py);
    // Quick accept / reject.
    if d2min >= r * r {
        return 0.0;
    }
    if d2max <= r * r {
        return 1.0;
    }
    #[cfg(test)]
    EXACT_OVERLAPS.with(|c| c.set(c.get() + 1));
    let (x0, x1) = (px - 0.5 - cx, px + 0.5 - cx);
    let (y0, y1) = (py - 0.5 - cy, py + 0.5 - cy);
    let a = quadrant_area(x1, y1, r) - quadrant_area(x0, y1, r) - quadrant_area(x1, y0, r)
        + quadrant_area(x0, y0, r);
    a.clamp(0.0, 1.0)
}

#[cfg(test)]
thread_local! {
    /// Number of analytic (non-trivial) overlap evaluations on this thread, for tests.
    pub(crate) static EXACT_OVERLAPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Exact circle/pixel overlaps of the pixels a circle cuts, from the quadrant areas at the
/// pixel corners, each computed once and shared by the (up to) four pixels that meet there.
/// [`CornerAreas::cut_overlap`] is bitwise [`circle_pixel_overlap`] for a pixel whose nearest
/// point lies inside the circle and farthest point outside (a corner's offset from the centre
/// is the same number whichever of its pixels it is computed for: `(p + 1) - 0.5` and
/// `p + 0.5` are the same exact value). The terms of [`quadrant_area`] that depend on one
/// coordinate only (the clamped offset, its square roots) are kept per corner column and
/// per corner row.
pub(crate) struct CornerAreas {
    cx: f64,
    cy: f64,
    r: f64,
    /// Pixel whose lower-left corner is corner `(0, 0)`.
    x0: i64,
    y0: i64,
    /// Corners per row.
    w: usize,
    q: Vec<f64>,
    /// `stamp[k] == generation`: `q[k]` holds corner `k`'s area for the current circle.
    stamp: Vec<u32>,
    cols: Vec<(AxisTerms, u32)>,
    rows: Vec<(AxisTerms, u32)>,
    generation: u32,
}

/// The terms of [`quadrant_area`] of one corner coordinate `t` (an x or a y offset).
#[derive(Debug, Clone, Copy, Default)]
struct AxisTerms {
    /// `t.signum()`.
    sign: f64,
    /// `|t|` clamped to `r`.
    a: f64,
    /// `a * a`.
    a2: f64,
    /// `sqrt(max(r^2 - a^2, 0))` (`sx` for an x offset, `xc` for a y offset).
    s: f64,
    /// `sqrt(max(r^2 - s^2, 0))` (`sxc`, used for y offsets only).
    ss: f64,
}

impl AxisTerms {
    fn new(t: f64, r: f64) -> Self {
        let a = t.abs().min(r);
        let r2 = r * r;
        let s = (r2 - a * a).max(0.0).sqrt();
        Self {
            sign: t.signum(),
            a,
            a2: a * a,
            s,
            ss: (r2 - s * s).max(0.0).sqrt(),
        }
    }
}

impl CornerAreas {
    pub(crate) fn new() -> Self {
        Self {
            cx: 0.0,
            cy: 0.0,
            r: 0.0,
            x0: 0,
            y0: 0,
            w: 0,
            q: Vec::new(),
            stamp: Vec::new(),
            cols: Vec::new(),
            rows: Vec::new(),
            generation: 0,
        }
    }

    /// Starts the circle of radius `r` centred at `(cx, cy)`, for pixels `x0..=x1`,
    /// `y0..=y1` (an empty range holds no pixel).
    pub(crate) fn start(
        &mut self,
        cx: f64,
        cy: f64,
        r: f64,
        (x0, x1): (i64, i64),
        (y0, y1): (i64, i64),
    ) {
        let w = x1.saturating_sub(x0).saturating_add(2).max(0) as usize;
        let h = y1.saturating_sub(y0).saturating_add(2).max(0) as usize;
        let n = w * h;
        if self.q.len() < n {
            self.q.resize(n, 0.0);
            self.stamp.resize(n, 0);
        }
        if self.cols.len() < w {
            self.cols.resize(w, Default::default());
        }
        if self.rows.len() < h {
            self.rows.resize(h, Default::default());
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.fill(0);
            self.cols.iter_mut().for_each(|c| c.1 = 0);
            self.rows.iter_mut().for_each(|c| c.1 = 0);
            self.generation = 1;
        }
        (self.cx, self.cy, self.r, self.x0, self.y0, self.w) = (cx, cy, r, x0, y0, w);
    }

    /// Terms of corner column `i` (x offset of the left edge of pixel `x0 + i`).
    #[inline]
    fn col(&mut self, i: usize) -> AxisTerms {
        let (t, g) = self.cols[i];
        if g == self.generation {
            return t;
        }
        let t = AxisTerms::new((self.x0 + i as i64) as f64 - 0.5 - self.cx, self.r);
        self.cols[i] = (t, self.generation);
        t
    }

    /// Terms of corner row `j` (y offset of the lower edge of pixel row `y0 + j`).
    #[inline]
    fn row(&mut self, j: usize) -> AxisTerms {
        let (t, g) = self.rows[j];
        if g == self.generation {
            return t;
        }
        let t = AxisTerms::new((self.y0 + j as i64) as f64 - 0.5 - self.cy, self.r);
        self.rows[j] = (t, self.generation);
        t
    }

    /// Quadrant area at corner `(i, j)` (the lower-left corner of pixel `(x0 + i, y0 + j)`):
    /// [`quadrant_area`] from the column and row terms.
    #[inline]
    fn corner(&mut self, i: usize, j: usize) -> f64 {
        let k = j * self.w + i;
        if self.stamp[k] == self.generation {
            return self.q[k];
        }
        let (xt, yt) = (self.col(i), self.row(j));
        let r = self.r;
        let s = xt.sign * yt.sign;
        let (x, y) = (xt.a, yt.a);
        let a = if s == 0.0 {
            0.0
        } else if xt.a2 + yt.a2 <= r * r {
            s * x * y
        } else {
            let r2 = r * r;
            let (xc, sx, sxc) = (yt.s, xt.s, yt.ss);
            let dang = ((x * sxc - xc * sx) / r2).clamp(-1.0, 1.0).asin();
            s * (y * xc + 0.5 * (x * sx - xc * sxc + r2 * dang))
        };
        self.q[k] = a;
        self.stamp[k] = self.generation;
        a
    }

    /// [`circle_pixel_overlap`] of pixel `(px, py)`, which the circle cuts (`d2min < r^2 <
    /// d2max` in [`pixel_distance2_range`]).
    #[inline]
    pub(crate) fn cut_overlap(&mut self, px: i64, py: i64) -> f64 {
        #[cfg(test)]
        EXACT_OVERLAPS.with(|c| c.set(c.get() + 1));
        let (i, j) = ((px - self.x0) as usize, (py - self.y0) as usize);
        let a = self.corner(i + 1, j + 1) - self.corner(i, j + 1) - self.corner(i + 1, j)
            + self.corner(i, j);
        a.clamp(0.0, 1.0)
    }
}

/// Squared distances from `(cx, cy)` to the nearest and to the farthest point of pixel
/// `(px, py)`. [`circle_pixel_overlap`] is exactly 0 when `r^2 <= d2min`, exactly 1 when
/// `r^2 >= d2max` (and `r^2 > d2min`), and needs the analytic formula only in between; the
/// classification uses these very numbers, so callers can skip pixels safely.
#[inline]
pub(crate) fn pixel_distance2_range(cx: f64, cy: f64, px: f64, py: f64) -> (f64, f64) {
    let (nx2, fx2) = axis_distance2(cx, px);
    let (ny2, fy2) = axis_distance2(cy, py);
    (nx2 + ny2, fx2 + fy2)
}

/// One axis of [`pixel_distance2_range`]: the squared distances from `c` to the nearest and
/// to the farthest point of the pixel `[p - 0.5, p + 0.5]` (the range is the sum of the two
/// axes' terms, so callers can compute them once per row and per column).
#[inline]
pub(crate) fn axis_distance2(c: f64, p: f64) -> (f64, f64) {
    let (a0, a1) = (p - 0.5 - c, p + 0.5 - c);
    let n = if a0 > 0.0 {
        a0
    } else if a1 < 0.0 {
        -a1
    } else {
        0.0
    };
    let f = a0.abs().max(a1.abs());
    (n * n, f * f)
}

/// Signed area of `{0 <= X <= x, 0 <= Y <= y} ∩ disc(r)` (odd in `x` and in `y`).
fn quadrant_area(x: f64, y: f64, r: f64) -> f64 {
    let s = x.signum() * y.signum();
    let (x, y) = (x.abs().min(r), y.abs().min(r));
    if s == 0.0 {
        return 0.0;
    }
    if x * x + y * y <= r * r {
        return s * x * y;
    }
    // Below height y up to xc, then under the arc from xc to x: with
    // P(t) = (t sqrt(r^2 - t^2) + r^2 asin(t / r)) / 2 the area is y xc + P(x) - P(xc), and
    // asin(x / r) - asin(xc / r) = asin((x sqrt(r^2 - xc^2) - xc sqrt(r^2 - x^2)) / r^2)
    // for 0 <= xc <= x <= r (one asin instead of two).
    let r2 = r * r;
    let xc = (r2 - y * y).max(0.0).sqrt();
    let sx = (r2 - x * x).max(0.0).sqrt();
    let sxc = (r2 - xc * xc).max(0.0).sqrt();
    let dang = ((x * sxc - xc * sx) / r2).clamp(-1.0, 1.0).asin();
    s * (y * xc + 0.5 * (x * sx - xc * sxc + r2 * dang))
}

/// Local annulus background: (clipped mean, its standard error, n pixels) or `None`.
pub(crate) fn annulus_background(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    x: f64,
    y: f64,
    rin: f64,
    rout: f64,
) -> Option<(f64, f64)> {
    let (ny, nx) = image.dim();
    let y0 = ((y - rout).floor().max(0.0)) as usize;
    let y1 = ((y + rout).ceil().min(ny as f64 - 1.0)).max(0.0) as usize;
    let x0 = ((x - rout).floor().max(0.0)) as usize;
    let x1 = ((x + rout).ceil().min(nx as f64 - 1.0)).max(0.0) as usize;
    let (y1, x1) = (y1.min(ny - 1), x1.min(nx - 1));
    let (rin2, rout2) = (rin * rin, rout * rout);
    let mut vals = Vec::with_capacity((y1 + 1).saturating_sub(y0) * (x1 + 1).saturating_sub(x0));
    for yy in y0..=y1 {
        let dy2 = (yy as f64 - y).powi(2);
        let row = image.row(yy);
        let mrow = mask.map(|m| m.row(yy));
        for xx in x0..=x1 {
            let d2 = (xx as f64 - x).powi(2) + dy2;
            if d2 >= rin2 && d2 < rout2 {
                let v = row[xx];
                if v.is_finite() && !mrow.as_ref().is_some_and(|m| m[xx]) {
                    vals.push(v as f64);
                }
            }
        }
    }
    let s = diffim_core::stats::sigma_clip(&mut vals, 3.0, 5)?;
    Some((s.mean, s.std / (s.n as f64).sqrt()))
}

/// Most pixel corners [`aperture_sum`] keeps in a [`CornerAreas`] grid.
const MAX_SHARED_CORNERS: u128 = 1 << 20;

/// Raw aperture sums: (sum w (I - b), sum w noise^2, good area, flags).
pub(crate) fn aperture_sum(
    image: &ArrayView2<f32>,
    noise: Option<&ArrayView2<f32>>,
    is_bad: &dyn Fn(usize, usize) -> bool,
    (x, y): (f64, f64),
    r: f64,
    bkg: f64,
    corners: &mut CornerAreas,
) -> (f64, f64, f64, u32) {
    let (ny, nx) = image.dim();
    let mut flags = 0;
    let ylo = (y - r - 0.5).floor() as i64;
    let yhi = (y + r + 0.5).ceil() as i64;
    let xlo = (x - r - 0.5).floor() as i64;
    let xhi = (x + r + 0.5).ceil() as i64;
    let r2 = r * r;
    // The corner grid spans the aperture's box; past a million corners (radius > ~500 px)
    // the overlaps come from circle_pixel_overlap directly (the same numbers) instead.
    let box_corners = (xhi.saturating_sub(xlo) as u128 + 2) * (yhi.saturating_sub(ylo) as u128 + 2);
    let shared = box_corners <= MAX_SHARED_CORNERS;
    if shared {
        corners.start(x, y, r, (xlo, xhi), (ylo, yhi));
    }
    let (mut flux, mut var, mut area) = (0.0, 0.0, 0.0);
    for yy in ylo..=yhi {
        for xx in xlo..=xhi {
            // circle_pixel_overlap, with the exact formula only for the pixels the circle cuts.
            let (d2min, d2max) = pixel_distance2_range(x, y, xx as f64, yy as f64);
            if d2min >= r2 {
                continue;
            }
            let w = if d2max <= r2 {
                1.0
            } else if shared {
                corners.cut_overlap(xx, yy)
            } else {
                circle_pixel_overlap(x, y, r, xx as f64, yy as f64)
            };
            if w <= 0.0 {
                continue;
            }
            if yy < 0 || xx < 0 || yy >= ny as i64 || xx >= nx as i64 {
                flags |= FLAG_APERTURE_TRUNCATED | FLAG_EDGE;
                continue;
            }
            let (yu, xu) = (yy as usize, xx as usize);
            let v = image[[yu, xu]];
            if !v.is_finite() || is_bad(yu, xu) {
                flags |= FLAG_MASKED;
                continue;
            }
            flux += w * (v as f64 - bkg);
            if let Some(n) = noise {
                let s = n[[yu, xu]] as f64;
                var += w * s * s;
            }
            area += w;
        }
    }
    (flux, var, area, flags)
}

/// Circular-aperture photometry at `positions` (`(x, y)`, 0-based) on `image` with errors
/// from the RMS map `noise` (e.g. from [`noise_model`](crate::noise_model)).
///
/// Without an annulus the image must already be background-subtracted. Masked and non-finite
/// pixels are left out of the sum (flagged [`FLAG_MASKED`]); pixels outside the image too
/// (flagged [`FLAG_APERTURE_TRUNCATED`] | [`FLAG_EDGE`]). A position with a non-finite
/// coordinate, or whose aperture holds no good pixel, gets `flux = NaN` and both flags.
/// Error: `flux_err^2 = sum_i w_i noise_i^2 + area^2 sigma_bkg^2` where `w_i` is the exact
/// pixel/circle overlap and `sigma_bkg` the standard error of the annulus mean.
///
/// # Panics
/// If `noise` or `mask` does not have the image's shape (a caller bug).
pub fn aperture_photometry(
    image: &ArrayView2<f32>,
    noise: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    positions: &[(f64, f64)],
    params: &ApertureParams,
) -> Vec<Photometry> {
    assert_eq!(noise.dim(), image.dim(), "noise map shape != image shape");
    if let Some(m) = mask {
        assert_eq!(m.dim(), image.dim(), "mask shape != image shape");
    }
    let mut corners = CornerAreas::new();
    positions
        .iter()
        .map(|&(x, y)| {
            let bad = Photometry {
                x,
                y,
                flux: f64::NAN,
                flux_err: f64::NAN,
                background: f64::NAN,
                flags: FLAG_APERTURE_TRUNCATED | FLAG_EDGE,
            };
            if !(x.is_finite() && y.is_finite() && params.radius > 0.0) {
                return bad;
            }
            let (bkg, bkg_err) = match params.annulus {
                Some((rin, rout)) => {
                    annulus_background(image, mask, x, y, rin, rout).unwrap_or((f64::NAN, f64::NAN))
                }
                None => (0.0, 0.0),
            };
            let is_bad = |y: usize, x: usize| mask.is_some_and(|m| m[[y, x]]);
            let (flux, var, area, flags) = aperture_sum(
                image,
                Some(noise),
                &is_bad,
                (x, y),
                params.radius,
                if bkg.is_finite() { bkg } else { 0.0 },
                &mut corners,
            );
            if area <= 0.0 {
                return Photometry {
                    flags: bad.flags | flags,
                    ..bad
                };
            }
            let (flux, background) = if bkg.is_finite() {
                (flux, bkg)
            } else {
                (f64::NAN, f64::NAN)
            };
            let var = var + area * area * bkg_err * bkg_err;
            Photometry {
                x,
                y,
                flux,
                flux_err: var.sqrt(),
                background,
                flags,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sub-sampled reference for the overlap area.
    fn overlap_ref(cx: f64, cy: f64, r: f64, px: f64, py: f64) -> f64 {
        let n = 400;
        let mut c = 0usize;
        for i in 0..n {
            for j in 0..n {
                let x = px - 0.5 + (i as f64 + 0.5) / n as f64;
                let y = py - 0.5 + (j as f64 + 0.5) / n as f64;
                if (x - cx).powi(2) + (y - cy).powi(2) < r * r {
                    c += 1;
                }
            }
        }
        c as f64 / (n * n) as f64
    }

    /// The original quadrant area (two arcsines), for comparison.
    fn quadrant_area_ref(x: f64, y: f64, r: f64) -> f64 {
        let s = x.signum() * y.signum();
        let (x, y) = (x.abs().min(r), y.abs().min(r));
        if x * x + y * y <= r * r {
            return s * x * y;
        }
        let xc = (r * r - y * y).max(0.0).sqrt();
        let prim = |t: f64| 0.5 * (t * (r * r - t * t).max(0.0).sqrt() + r * r * (t / r).asin());
        s * (y * xc + prim(x) - prim(xc))
    }

    #[test]
    fn one_arcsine_quadrant_area_matches_two_arcsine_form() {
        let mut max_d = 0.0f64;
        let mut state = 3u64;
        let mut u = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..200_000 {
            let r = 0.05 + 80.0 * u() * u();
            let x = (u() * 2.0 - 1.0) * 1.2 * r;
            let y = (u() * 2.0 - 1.0) * 1.2 * r;
            let d = (quadrant_area(x, y, r) - quadrant_area_ref(x, y, r)).abs();
            max_d = max_d.max(d / (r * r).max(1.0));
        }
        // Both forms lose ~1e-11 r^2 where x is within rounding of r (asin is ill-conditioned
        // at 1); elsewhere they agree to rounding.
        assert!(max_d < 1e-10, "{max_d}");
    }

    /// Shared-corner overlaps against `circle_pixel_overlap`, bit for bit, for every pixel a
    /// circle cuts (random centres, radii from 0.1 to 40 px, negative pixel coordinates), with
    /// one cache reused across circles as `detect` and `aperture_photometry` do.
    #[test]
    fn corner_areas_are_bitwise_circle_pixel_overlap() {
        let mut state = 17u64;
        let mut u = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut corners = CornerAreas::new();
        let mut cut = 0;
        for _ in 0..400 {
            let r = 0.1 + 40.0 * u() * u();
            let (cx, cy) = (200.0 * u() - 100.0, 200.0 * u() - 100.0);
            let (xlo, xhi) = ((cx - r - 0.5).floor() as i64, (cx + r + 0.5).ceil() as i64);
            let (ylo, yhi) = ((cy - r - 0.5).floor() as i64, (cy + r + 0.5).ceil() as i64);
            corners.start(cx, cy, r, (xlo, xhi), (ylo, yhi));
            for py in ylo..=yhi {
                for px in xlo..=xhi {
                    let (d2min, d2max) = pixel_distance2_range(cx, cy, px as f64, py as f64);
                    if d2min < r * r && d2max > r * r {
                        let a = corners.cut_overlap(px, py);
                        let b = circle_pixel_overlap(cx, cy, r, px as f64, py as f64);
                        assert_eq!(a.to_bits(), b.to_bits(), "{cx} {cy} {r} at {px},{py}");
                        cut += 1;
                    }
                }
            }
        }
        assert!(cut > 10_000, "{cut}");
    }

    /// The original aperture sum (`circle_pixel_overlap` for every pixel of the box).
    fn aperture_sum_ref(
        image: &ArrayView2<f32>,
        noise: &ArrayView2<f32>,
        is_bad: &dyn Fn(usize, usize) -> bool,
        x: f64,
        y: f64,
        r: f64,
        bkg: f64,
    ) -> (f64, f64, f64, u32) {
        let (ny, nx) = image.dim();
        let mut flags = 0;
        let (mut flux, mut var, mut area) = (0.0, 0.0, 0.0);
        for yy in (y - r - 0.5).floor() as i64..=(y + r + 0.5).ceil() as i64 {
            for xx in (x - r - 0.5).floor() as i64..=(x + r + 0.5).ceil() as i64 {
                let w = circle_pixel_overlap(x, y, r, xx as f64, yy as f64);
                if w <= 0.0 {
                    continue;
                }
                if yy < 0 || xx < 0 || yy >= ny as i64 || xx >= nx as i64 {
                    flags |= FLAG_APERTURE_TRUNCATED | FLAG_EDGE;
                    continue;
                }
                let (yu, xu) = (yy as usize, xx as usize);
                let v = image[[yu, xu]];
                if !v.is_finite() || is_bad(yu, xu) {
                    flags |= FLAG_MASKED;
                    continue;
                }
                flux += w * (v as f64 - bkg);
                let s = noise[[yu, xu]] as f64;
                var += w * s * s;
                area += w;
            }
        }
        (flux, var, area, flags)
    }

    #[test]
    fn aperture_sum_is_bitwise_the_per_pixel_sum() {
        let (ny, nx) = (60, 70);
        let image = ndarray::Array2::from_shape_fn((ny, nx), |(y, x)| {
            if (x * 3 + y * 7) % 41 == 0 {
                f32::NAN
            } else {
                ((x * 31 + y * 17) % 23) as f32 * 1.37 - 9.0
            }
        });
        let noise = image.mapv(|v| 1.0 + v.abs().sqrt() * 0.1);
        let bad = |y: usize, x: usize| (x + 2 * y) % 37 == 0;
        let mut corners = CornerAreas::new();
        for k in 0..302 {
            let f = k as f64;
            let (x, y) = ((f * 7.31) % 80.0 - 5.0, (f * 3.77) % 70.0 - 5.0);
            // The last two: apertures too large for the corner grid.
            let r = if k < 300 {
                0.2 + (f * 0.613) % 14.0
            } else {
                520.0 + f
            };
            let a = aperture_sum(
                &image.view(),
                Some(&noise.view()),
                &bad,
                (x, y),
                r,
                0.7,
                &mut corners,
            );
            let b = aperture_sum_ref(&image.view(), &noise.view(), &bad, x, y, r, 0.7);
            assert_eq!(
                (a.0.to_bits(), a.1.to_bits(), a.2.to_bits(), a.3),
                (b.0.to_bits(), b.1.to_bits(), b.2.to_bits(), b.3),
                "{x} {y} {r}"
            );
        }
    }

    #[test]
    fn overlap_matches_subsampling_and_sums_to_pi_r2() {
        for &(cx, cy, r) in &[(0.3, -0.2, 0.7), (10.1, 5.6, 3.3), (0.0, 0.0, 0.4)] {
            let mut tot = 0.0;
            for py in -20..=30 {
                for px in -20..=30 {
                    let a = circle_pixel_overlap(cx, cy, r, px as f64, py as f64);
                    tot += a;
                    if a > 0.0 && a < 1.0 && (px + py) % 3 == 0 {
                        let b = overlap_ref(cx, cy, r, px as f64, py as f64);
                        assert!((a - b).abs() < 3e-3, "{a} vs {b} at {px},{py}");
                    }
                }
            }
            assert!((tot - std::f64::consts::PI * r * r).abs() < 1e-9, "{tot}");
        }
    }
}
