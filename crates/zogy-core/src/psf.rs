//! PSF providers: a constant stamp or a position-dependent model.

use crate::ZogyError;
use ndarray::Array2;

/// Something that returns the PSF stamp at an image position (odd sides, centre at the middle
/// pixel; it is normalised to unit sum on use).
///
/// Implemented for a constant stamp (`Array2<f64>`) and for closures through [`FnPsf`].
/// psf-kl's `PsfModel` can be wrapped as `FnPsf(|x, y| model.psf_at(x, y))`.
pub trait PsfProvider: Sync {
    /// The PSF stamp at pixel coordinates `(x, y)` (0-based, pixel centres at integers).
    fn psf_at(&self, x: f64, y: f64) -> Array2<f64>;
    /// `true` when the PSF is the same everywhere: the image is then processed as one tile.
    fn is_constant(&self) -> bool {
        false
    }
}

impl PsfProvider for Array2<f64> {
    fn psf_at(&self, _x: f64, _y: f64) -> Array2<f64> {
        self.clone()
    }
    fn is_constant(&self) -> bool {
        true
    }
}

/// A spatially varying PSF given by a closure `Fn(x, y) -> stamp`.
pub struct FnPsf<F>(pub F);

impl<F: Fn(f64, f64) -> Array2<f64> + Sync> PsfProvider for FnPsf<F> {
    fn psf_at(&self, x: f64, y: f64) -> Array2<f64> {
        (self.0)(x, y)
    }
}

impl<F> std::fmt::Debug for FnPsf<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnPsf(..)")
    }
}

/// Asks `p` for its stamp at `(x, y)`, checks it (odd, finite, positive sum) and normalises
/// it to unit sum.
pub(crate) fn checked_stamp(
    p: &dyn PsfProvider,
    x: f64,
    y: f64,
    which: &str,
) -> Result<Array2<f64>, ZogyError> {
    let mut st = p.psf_at(x, y);
    let bad = |reason| ZogyError::BadPsf {
        which: which.to_string(),
        x,
        y,
        reason,
    };
    let (h, w) = st.dim();
    if h % 2 == 0 || w % 2 == 0 {
        return Err(bad("stamp sides must be odd"));
    }
    if st.iter().any(|v| !v.is_finite()) {
        return Err(bad("stamp has non-finite values"));
    }
    let s: f64 = st.sum();
    if s <= 0.0 || !s.is_finite() {
        return Err(bad("stamp sum must be positive"));
    }
    st.mapv_inplace(|v| v / s);
    Ok(st)
}

/// Removes a constant pedestal from a PSF stamp: subtracts the median of its outermost ring
/// of pixels and renormalises to unit sum. For empirical PSFs whose stamps were cut with an
/// imperfect background (a positive pedestal lowers the normalised core and biases PSF-fit
/// fluxes, hence beta, by the pedestal's share of the sum). Stamps smaller than 3x3, or with
/// a non-positive sum after the subtraction, are returned unchanged.
pub fn remove_pedestal(stamp: &Array2<f64>) -> Array2<f64> {
    let (h, w) = stamp.dim();
    if h < 3 || w < 3 {
        return stamp.clone();
    }
    let ring = (0..w)
        .flat_map(|i| [stamp[[0, i]], stamp[[h - 1, i]]])
        .chain((1..h - 1).flat_map(|j| [stamp[[j, 0]], stamp[[j, w - 1]]]));
    let Some(ped) = diffim_core::stats::median(ring) else {
        return stamp.clone();
    };
    let out = stamp.mapv(|v| v - ped);
    let s = out.sum();
    if s > 0.0 && s.is_finite() {
        out / s
    } else {
        stamp.clone()
    }
}
