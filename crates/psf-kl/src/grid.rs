//! A grey-scale picture of a PSF model on a grid of positions (for quick looks; no I/O).

use crate::PsfModel;
use ndarray::Array2;

/// Renders the PSF at `n x n` positions evenly spread over an image of shape `(ny, nx)`
/// (pixel centres from `0` to `n - 1`), each stamp scaled to its own peak, square-root
/// stretched, on a dark background with a 1-pixel gap between stamps and each stamp pixel
/// magnified `zoom` times. Row 0 of the output is image row `y = 0` (flip it for a
/// north-up display). Returns 8-bit grey levels.
pub fn psf_grid_image(
    model: &dyn PsfModel,
    ny: usize,
    nx: usize,
    n: usize,
    zoom: usize,
) -> Array2<u8> {
    let n = n.max(1);
    let zoom = zoom.max(1);
    let s = model.stamp_size();
    let cell = s * zoom + 1;
    let side = n * cell + 1;
    let mut out = Array2::<u8>::zeros((side, side));
    let pos = |k: usize, len: usize| {
        if n == 1 {
            (len as f64 - 1.0) / 2.0
        } else {
            k as f64 * (len as f64 - 1.0) / (n - 1) as f64
        }
    };
    for gy in 0..n {
        for gx in 0..n {
            let p = model.psf_at(pos(gx, nx), pos(gy, ny));
            let peak = p.iter().cloned().fold(f64::MIN, f64::max);
            for ((j, i), &v) in p.indexed_iter() {
                let g = if peak > 0.0 {
                    ((v / peak).clamp(0.0, 1.0).sqrt() * 255.0).round() as u8
                } else {
                    0
                };
                for a in 0..zoom {
                    for b in 0..zoom {
                        out[[1 + gy * cell + j * zoom + a, 1 + gx * cell + i * zoom + b]] = g;
                    }
                }
            }
        }
    }
    out
}
