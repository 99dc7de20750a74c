//! Star finding (when no object list is given), FWHM estimates and the fit-pixel selection.

use diffim_core::stats::{mad_std, median_in_place};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// Box size of the coarse median background used to find peaks.
const BG_BOX: usize = 64;

/// Coarse background: the median of each `BG_BOX` box of good pixels (nearest-box lookup).
fn box_medians(img: &ArrayView2<f32>, bad: &ArrayView2<bool>) -> (Array2<f32>, usize) {
    let (ny, nx) = img.dim();
    let (by, bx) = (ny.div_ceil(BG_BOX), nx.div_ceil(BG_BOX));
    let vals: Vec<f32> = (0..by * bx)
        .into_par_iter()
        .map_init(Vec::new, |buf, k| {
            let (j, i) = (k / bx, k % bx);
            buf.clear();
            for y in j * BG_BOX..((j + 1) * BG_BOX).min(ny) {
                for x in i * BG_BOX..((i + 1) * BG_BOX).min(nx) {
                    if !bad[[y, x]] {
                        buf.push(img[[y, x]] as f64);
                    }
                }
            }
            median_in_place(buf).unwrap_or(0.0) as f32
        })
        .collect();
    let out = Array2::from_shape_vec((by, bx), vals).unwrap_or_else(|_| Array2::zeros((by, bx)));
    (out, BG_BOX)
}

/// Robust constant noise estimate from horizontal pixel differences (insensitive to smooth
/// gradients): `mad_std(I[y, x+1] - I[y, x]) / sqrt(2)`.
pub fn difference_noise(img: &ArrayView2<f32>, bad: &ArrayView2<bool>) -> Option<f64> {
    let (ny, nx) = img.dim();
    let step = ((ny * nx) / 2_000_000).max(1);
    let mut v = Vec::new();
    let mut k = 0usize;
    for y in 0..ny {
        for x in 0..nx.saturating_sub(1) {
            k += 1;
            if k % step != 0 || bad[[y, x]] || bad[[y, x + 1]] {
                continue;
            }
            v.push((img[[y, x + 1]] - img[[y, x]]) as f64);
        }
    }
    mad_std(v).map(|s| s / std::f64::consts::SQRT_2)
}

/// Local maxima with peak significance above `thresh`, brightest first: `(x, y, snr)`.
pub fn find_peaks(
    img: &ArrayView2<f32>,
    bad: &ArrayView2<bool>,
    sigma: &ArrayView2<f32>,
    thresh: f64,
) -> Vec<(f64, f64, f64)> {
    let (ny, nx) = img.dim();
    let (bg, b) = box_medians(img, bad);
    let mut out: Vec<(f64, f64, f64)> = (2..ny.saturating_sub(2))
        .into_par_iter()
        .flat_map_iter(|y| {
            let mut row = Vec::new();
            for x in 2..nx.saturating_sub(2) {
                if bad[[y, x]] {
                    continue;
                }
                let v = img[[y, x]];
                let s = sigma[[y, x]] as f64;
                let snr = (v - bg[[y / b, x / b]]) as f64 / s;
                if snr.is_nan() || snr <= thresh {
                    continue;
                }
                let mut is_max = true;
                'n: for j in y - 1..=y + 1 {
                    for i in x - 1..=x + 1 {
                        if (j, i) == (y, x) {
                            continue;
                        }
                        if bad[[j, i]] {
                            is_max = false;
                            break 'n;
                        }
                        let w = img[[j, i]];
                        // Strict on one side so that a flat pair yields one peak.
                        if w > v || (w == v && (j, i) < (y, x)) {
                            is_max = false;
                            break 'n;
                        }
                    }
                }
                if is_max {
                    row.push((x as f64, y as f64, snr));
                }
            }
            row
        })
        .collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    out
}

/// Picks at most `max` non-overlapping positions (closer than `min_dist` rejected), spread over
/// an 8x8 grid of cells, brightest first within each cell (round robin).
pub fn spread_select(
    cands: &[(f64, f64, f64)],
    ny: usize,
    nx: usize,
    max: usize,
    min_dist: f64,
) -> Vec<(f64, f64)> {
    const G: usize = 8;
    let mut cells: Vec<Vec<(f64, f64)>> = vec![Vec::new(); G * G];
    for &(x, y, _) in cands {
        let cy = ((y / ny as f64) * G as f64) as usize;
        let cx = ((x / nx as f64) * G as f64) as usize;
        cells[cy.min(G - 1) * G + cx.min(G - 1)].push((x, y));
    }
    let mut idx = vec![0usize; G * G];
    let mut sel: Vec<(f64, f64)> = Vec::new();
    let d2 = min_dist * min_dist;
    loop {
        let mut progressed = false;
        for c in 0..G * G {
            while idx[c] < cells[c].len() {
                let (x, y) = cells[c][idx[c]];
                idx[c] += 1;
                if sel
                    .iter()
                    .all(|&(sx, sy)| (sx - x).powi(2) + (sy - y).powi(2) >= d2)
                {
                    sel.push((x, y));
                    progressed = true;
                    break;
                }
            }
            if sel.len() >= max {
                return sel;
            }
        }
        if !progressed {
            return sel;
        }
    }
}

/// FWHM (pixels) of the star at `(x, y)` from its half-maximum area, `2 sqrt(A / pi)`, with
/// the local background the median of the border of a 21x21 window; `None` when the window
/// leaves the image or holds bad pixels.
fn fwhm_half_area(img: &ArrayView2<f32>, bad: &ArrayView2<bool>, x: f64, y: f64) -> Option<f64> {
    const H: isize = 10;
    let (ny, nx) = img.dim();
    let (cx, cy) = (x.round() as isize, y.round() as isize);
    if cx < H || cy < H || cx + H >= nx as isize || cy + H >= ny as isize {
        return None;
    }
    let mut border = Vec::new();
    for j in -H..=H {
        for i in -H..=H {
            let (yy, xx) = ((cy + j) as usize, (cx + i) as usize);
            if bad[[yy, xx]] {
                return None;
            }
            if j.abs() == H || i.abs() == H {
                border.push(img[[yy, xx]] as f64);
            }
        }
    }
    let bg = median_in_place(&mut border)?;
    let mut peak = f64::MIN;
    for j in -1..=1 {
        for i in -1..=1 {
            peak = peak.max(img[[(cy + j) as usize, (cx + i) as usize]] as f64 - bg);
        }
    }
    if peak <= 0.0 {
        return None;
    }
    let mut n = 0usize;
    for j in -H..=H {
        for i in -H..=H {
            if img[[(cy + j) as usize, (cx + i) as usize]] as f64 - bg > 0.5 * peak {
                n += 1;
            }
        }
    }
    Some(2.0 * (n as f64 / std::f64::consts::PI).sqrt())
}

/// Median half-area FWHM over (at most 60 of) the given positions.
pub fn estimate_fwhm(
    img: &ArrayView2<f32>,
    bad: &ArrayView2<bool>,
    pos: &[(f64, f64)],
) -> Option<f64> {
    let mut v: Vec<f64> = pos
        .iter()
        .take(60)
        .filter_map(|&(x, y)| fwhm_half_area(img, bad, x, y))
        .collect();
    if v.len() < 3 {
        return None;
    }
    median_in_place(&mut v)
}

/// Marks the fit pixels: squares of side `size` around `pos` and, when `bg_grid > 0`, a
/// `bg_grid x bg_grid` grid of 9x9 background patches.
pub fn stamp_map(
    ny: usize,
    nx: usize,
    pos: &[(f64, f64)],
    size: usize,
    bg_grid: usize,
) -> Array2<bool> {
    let mut m = Array2::from_elem((ny, nx), false);
    let mut mark = |x: f64, y: f64, side: usize| {
        let h = (side / 2) as isize;
        let (cx, cy) = (x.round() as isize, y.round() as isize);
        for j in (cy - h).max(0)..=(cy + h).min(ny as isize - 1) {
            for i in (cx - h).max(0)..=(cx + h).min(nx as isize - 1) {
                m[[j as usize, i as usize]] = true;
            }
        }
    };
    for &(x, y) in pos {
        if x.is_finite() && y.is_finite() {
            mark(x, y, size);
        }
    }
    for j in 0..bg_grid {
        for i in 0..bg_grid {
            let y = (j as f64 + 0.5) * ny as f64 / bg_grid as f64;
            let x = (i as f64 + 0.5) * nx as f64 / bg_grid as f64;
            mark(x, y, 9);
        }
    }
    m
}
