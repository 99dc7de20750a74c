//! Convolution of an image with the spatially varying KL PSF.

use crate::{KlPsf, PsfModel};
use diffim_core::fft::{Fft2, fast_shape};
use diffim_core::psf::embed_psf;
use ndarray::{Array2, ArrayView2, Zip, s};
use num_complex::Complex;

/// A prepared varying-PSF convolution for one image shape: the FFT plan, the spectra of the
/// basis stamps and the normalised coefficient fields are computed once by
/// [`VaryingConvolver::new`], so that every [`VaryingConvolver::convolve`] costs exactly
/// `n_basis` forward real FFTs (of `image * c_i`) and ONE inverse FFT (of the summed
/// spectrum `sum_i FFT(image * c_i) FFT(PSF_i)`). Use it when several images of the same
/// shape are convolved with the same model; [`convolve_varying`] is the one-shot form.
#[derive(Debug)]
pub struct VaryingConvolver {
    shape: (usize, usize),
    fft: Fft2<f32>,
    kernels: Vec<Array2<Complex<f32>>>,
    maps: Vec<Array2<f32>>,
}

impl VaryingConvolver {
    /// Prepares the convolution of `(ny, nx)` images with `model` (positions are pixel
    /// coordinates of the image the model was fitted on). The FFTs are zero-padded to a fast
    /// size at least `image + stamp - 1` on each axis, so nothing wraps around.
    pub fn new(model: &KlPsf, ny: usize, nx: usize) -> Self {
        let size = model.stamp_size();
        let (py, px) = fast_shape(ny.max(1) + size - 1, nx.max(1) + size - 1);
        let fft = Fft2::<f32>::new(py, px);
        let kernels = model
            .basis()
            .iter()
            .map(|b| fft.forward(&embed_psf(&b.mapv(|v| v as f32).view(), py, px).view()))
            .collect();
        Self {
            shape: (ny, nx),
            fft,
            kernels,
            maps: model.coefficient_maps(ny, nx),
        }
    }

    /// Image shape `(ny, nx)` this convolver was prepared for.
    pub fn shape(&self) -> (usize, usize) {
        self.shape
    }

    /// Convolves `image` (see [`convolve_varying`] for the definition); `None` when its
    /// shape differs from [`Self::shape`].
    pub fn convolve(&self, image: &ArrayView2<f32>) -> Option<Array2<f32>> {
        if image.dim() != self.shape {
            return None;
        }
        let (ny, nx) = self.shape;
        let (py, px) = self.fft.shape();
        let mut padded = Array2::<f32>::zeros((py, px));
        let mut spec = Array2::<Complex<f32>>::zeros(self.fft.spectrum_shape());
        let mut acc = Array2::<Complex<f32>>::zeros(self.fft.spectrum_shape());
        for (i, (kspec, map)) in self.kernels.iter().zip(&self.maps).enumerate() {
            // Only the image region changes between elements; the padding stays zero.
            Zip::from(padded.slice_mut(s![..ny, ..nx]))
                .and(image)
                .and(map)
                .par_for_each(|o, &v, &a| *o = if v.is_finite() { v * a } else { 0.0 });
            if i == 0 {
                self.fft.forward_into(&padded.view(), &mut acc.view_mut());
                Zip::from(&mut acc).and(kspec).par_for_each(|a, k| *a *= *k);
            } else {
                self.fft.forward_into(&padded.view(), &mut spec.view_mut());
                Zip::from(&mut acc)
                    .and(&spec)
                    .and(kspec)
                    .par_for_each(|a, s, k| *a += s * k);
            }
        }
        drop(spec);
        let full = self.fft.inverse(acc);
        // The kernel is centred at (0, 0): output pixel q sits at index q (no shift); the
        // padding of `size - 1` >= 2h absorbs the spill on both sides.
        Some(full.slice(s![..ny, ..nx]).to_owned())
    }
}

/// Convolves `image` with the varying PSF of `model`: every pixel `p` of the input spreads
/// its value with the PSF evaluated at `p`,
/// `out(q) = sum_p image(p) PSF_p(q - p) = sum_i [(image * c_i) conv PSF_i](q)`,
/// with `c_i` the normalised coefficient fields ([`KlPsf::coefficients_at`]), so flux is
/// conserved. The FFTs (`diffim_core::fft`, f32) are zero-padded to a fast size at least
/// `image + stamp - 1` on each axis, so nothing wraps around; the result has the image's
/// shape ("same" mode, zero outside the image). Non-finite input pixels are treated as 0.
/// Positions are pixel coordinates of the image the model was fitted on.
///
/// Cost: `n_basis` forward FFTs of `image * c_i`, `n_basis` forward FFTs of the basis
/// stamps and one inverse FFT; [`VaryingConvolver`] keeps the stamp spectra for repeated use.
pub fn convolve_varying(image: &ArrayView2<f32>, model: &KlPsf) -> Array2<f32> {
    let (ny, nx) = image.dim();
    if ny == 0 || nx == 0 {
        return Array2::zeros((ny, nx));
    }
    VaryingConvolver::new(model, ny, nx)
        .convolve(image)
        .unwrap_or_else(|| Array2::zeros((ny, nx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KlParams, StarSet};
    use diffim_core::psf::gaussian_stamp;

    #[test]
    fn matches_direct_per_pixel_convolution() {
        // A model whose PSF FWHM varies from 2 to 4 px across a 40x48 image.
        let (ny, nx) = (40usize, 48usize);
        let mut stamps = Vec::new();
        let mut pos = Vec::new();
        for j in 0..8 {
            for i in 0..8 {
                let (x, y) = (i as f64 * 47.0 / 7.0, j as f64 * 39.0 / 7.0);
                stamps.push(gaussian_stamp(
                    11,
                    2.0 + 2.0 * x / 47.0 + 0.3 * y / 39.0,
                    0.0,
                    0.0,
                ));
                pos.push((x, y));
            }
        }
        let set = StarSet::from_stamps(stamps, &pos, (ny, nx));
        let model = KlPsf::fit(&set, &KlParams::default()).unwrap();
        assert!(model.n_basis() >= 2);
        let img = Array2::from_shape_fn((ny, nx), |(y, x)| {
            ((x * 7 + y * 13) % 17) as f32 + if (x, y) == (20, 20) { 100.0 } else { 0.0 }
        });
        let fast = convolve_varying(&img.view(), &model);
        let h = 5isize;
        let mut direct = Array2::<f64>::zeros((ny, nx));
        for ((y, x), &v) in img.indexed_iter() {
            let p = model.psf_at(x as f64, y as f64);
            for dy in -h..=h {
                for dx in -h..=h {
                    let (qy, qx) = (y as isize + dy, x as isize + dx);
                    if qy >= 0 && qx >= 0 && (qy as usize) < ny && (qx as usize) < nx {
                        direct[[qy as usize, qx as usize]] +=
                            v as f64 * p[[(dy + h) as usize, (dx + h) as usize]];
                    }
                }
            }
        }
        let max = direct.iter().cloned().fold(0.0, f64::max);
        let err = fast
            .iter()
            .zip(direct.iter())
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-4 * max, "max abs diff {err} (max {max})");
        // The prepared convolver gives the same result, is reusable, and checks the shape.
        let conv = VaryingConvolver::new(&model, ny, nx);
        let img2 = img.mapv(|v| 2.0 * v);
        let twice = conv.convolve(&img2.view()).unwrap();
        let again = conv.convolve(&img.view()).unwrap();
        for ((a, b), c) in again.iter().zip(fast.iter()).zip(twice.iter()) {
            assert!((a - b).abs() <= 1e-6 * max as f32);
            assert!((c - 2.0 * b).abs() <= 1e-5 * max as f32);
        }
        assert!(conv.convolve(&img.slice(s![1.., ..]).view()).is_none());
    }
}
