//! Proper coaddition (Zackay & Ofek 2017, ApJ 836, 187).

use crate::prep::{background_sigma, inpaint};
use crate::psf::{PsfProvider, checked_stamp};
use crate::{ZogyError, odd_fast_len};
use diffim_core::fft::{Fft2, fast_shape};
use diffim_core::mask::{dilate, finite_mask};
use diffim_core::psf::embed_psf;
use ndarray::{Array2, ArrayView2, Zip, s};
use num_complex::Complex;

/// One input of [`proper_coadd`].
pub struct CoaddImage<'a> {
    /// Aligned, background-subtracted image `M_j`.
    pub image: ArrayView2<'a, f32>,
    /// Bad pixels (`true` = bad); NaN/Inf are always bad.
    pub mask: Option<ArrayView2<'a, bool>>,
    /// PSF; evaluated at the image centre (the coadd assumes a PSF constant over the field).
    pub psf: &'a dyn PsfProvider,
    /// Background RMS `sigma_j`; `None`: MAD standard deviation of the good pixels.
    pub sigma: Option<f64>,
    /// Flux zero point `F_j` (transparency x exposure); default 1 when `None`.
    pub zero_point: Option<f64>,
}

impl std::fmt::Debug for CoaddImage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoaddImage")
            .field("shape", &self.image.dim())
            .finish_non_exhaustive()
    }
}

/// Tuning of [`proper_coadd`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CoaddParams {
    /// Floor of the denominator relative to its zero-frequency value. Default 1e-10.
    pub den_floor: f64,
}

impl Default for CoaddParams {
    fn default() -> Self {
        Self { den_floor: 1e-10 }
    }
}

/// The proper coadd `R`, its PSF `P_R` and zero point `F_R`.
#[derive(Debug, Clone)]
pub struct CoaddResult {
    /// Coadd `R` (eq. 7 of Zackay & Ofek 2017): white noise of unit variance; a point source of
    /// true flux `f` has total `F_R f`.
    pub r: Array2<f32>,
    /// PSF of `R` (unit sum, odd side): `P_R-hat = sqrt(sum F_j^2/sigma_j^2 |P_j-hat|^2) / F_R`.
    pub psf_r: Array2<f64>,
    /// `F_R = sqrt(sum_j F_j^2 / sigma_j^2)`.
    pub f_r: f64,
    /// Pixels bad in any input, dilated by the PSF half-size.
    pub mask: Array2<bool>,
    /// Background RMS used per image.
    pub sigmas: Vec<f64>,
    /// FFT shape.
    pub pad_shape: (usize, usize),
    /// Full-size FFTs made: `2 J + 1` for `J` images.
    pub n_fft: usize,
}

/// Proper coaddition of `images` (all the same shape, aligned, background-subtracted):
/// `R-hat = sum_j (F_j/sigma_j^2) conj(P_j-hat) M_j-hat / sqrt(sum_j F_j^2/sigma_j^2 |P_j-hat|^2)`.
/// Bad pixels are inpainted by the local mean before the FFT and flagged in the mask.
///
/// # Errors
/// No image, mismatched shapes, invalid PSFs, sigmas or zero points, no good pixel.
pub fn proper_coadd(images: &[CoaddImage], params: &CoaddParams) -> Result<CoaddResult, ZogyError> {
    let first = images.first().ok_or(ZogyError::NoImages)?;
    let dim = first.image.dim();
    let (ny, nx) = dim;
    let (xc, yc) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let mut bad = Array2::from_elem(dim, false);
    let mut psfs = Vec::with_capacity(images.len());
    for (j, im) in images.iter().enumerate() {
        if im.image.dim() != dim {
            return Err(ZogyError::ShapeMismatch {
                what: "coadd image",
                expected: dim,
                got: im.image.dim(),
            });
        }
        if let Some(m) = &im.mask
            && m.dim() != dim
        {
            return Err(ZogyError::ShapeMismatch {
                what: "coadd mask",
                expected: dim,
                got: m.dim(),
            });
        }
        Zip::from(&mut bad)
            .and(&finite_mask(&im.image, im.mask.as_ref()))
            .for_each(|a, &b| *a |= b);
        psfs.push(checked_stamp(im.psf, xc, yc, &format!("image {j}"))?);
    }
    if bad.iter().all(|&b| b) {
        return Err(ZogyError::NoGoodPixels { which: "coadd" });
    }
    let side = psfs
        .iter()
        .map(|p| p.dim().0.max(p.dim().1))
        .max()
        .unwrap_or(1);
    if ny < side || nx < side {
        return Err(ZogyError::ImageTooSmall {
            shape: dim,
            stamp: side,
        });
    }
    let (py, px) = fast_shape(ny + side + side / 2, nx + side + side / 2);
    let fft = Fft2::<f32>::new(py, px);
    let spec_dim = fft.spectrum_shape();
    let mut num = Array2::<Complex<f64>>::zeros(spec_dim);
    let mut den = Array2::<f64>::zeros(spec_dim);
    let mut sigmas = Vec::new();
    let mut f_r2 = 0.0;
    let mut n_fft = 0;
    for (j, (im, p)) in images.iter().zip(&psfs).enumerate() {
        let mut img = im.image.to_owned();
        inpaint(&mut img, &bad.view());
        let sigma = background_sigma(im.sigma, &img.view(), None, &bad.view()).unwrap_or(f64::NAN);
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(ZogyError::BadSigma {
                which: "coadd image",
                value: sigma,
            });
        }
        let f = im.zero_point.unwrap_or(1.0);
        if !(f.is_finite() && f > 0.0) {
            return Err(ZogyError::BadParam {
                name: "zero_point",
                value: f,
                reason: "must be finite and > 0",
            });
        }
        let _ = j;
        sigmas.push(sigma);
        f_r2 += f * f / (sigma * sigma);
        let mut padded = Array2::<f32>::zeros((py, px));
        padded.slice_mut(s![..ny, ..nx]).assign(&img);
        let mh = fft.forward(&padded.view());
        let ph = fft.forward(&embed_psf(&p.mapv(|v| v as f32).view(), py, px).view());
        n_fft += 2;
        let wgt = f / (sigma * sigma);
        Zip::from(&mut num)
            .and(&mut den)
            .and(&mh)
            .and(&ph)
            .par_for_each(|a, d, &m, &q| {
                let q = Complex::new(q.re as f64, q.im as f64);
                *a += q.conj() * Complex::new(m.re as f64, m.im as f64) * wgt;
                *d += wgt * f * q.norm_sqr();
            });
    }
    let den0 = den[[0, 0]];
    let floor = params.den_floor * den0;
    let spec = Zip::from(&num).and(&den).par_map_collect(|&a, &d| {
        let v = a / d.max(floor).sqrt();
        Complex::new(v.re as f32, v.im as f32)
    });
    let full = fft.inverse(spec);
    n_fft += 1;
    let r = full.slice(s![..ny, ..nx]).to_owned();

    // P_R on a small grid in f64.
    let l = odd_fast_len(2 * side + 1);
    let sfft = Fft2::<f64>::new(l, l);
    let mut pd = Array2::<f64>::zeros(sfft.spectrum_shape());
    for (im, (p, &sigma)) in images.iter().zip(psfs.iter().zip(&sigmas)) {
        let f = im.zero_point.unwrap_or(1.0);
        let ph = sfft.forward(&embed_psf(&p.view(), l, l).view());
        Zip::from(&mut pd)
            .and(&ph)
            .for_each(|d, q| *d += f * f / (sigma * sigma) * q.norm_sqr());
    }
    let f_r = f_r2.sqrt();
    let prh = pd.mapv(|d| Complex::new(d.sqrt() / f_r, 0.0));
    let pfull = sfft.inverse(prh);
    let mut psf_r = diffim_core::psf::extract_centered(&pfull.view(), side, side);
    diffim_core::psf::normalize_unit_sum(&mut psf_r);
    Ok(CoaddResult {
        r,
        psf_r,
        f_r,
        mask: dilate(&bad.view(), side / 2),
        sigmas,
        pad_shape: (py, px),
        n_fft,
    })
}
