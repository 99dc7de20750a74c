//! What the adjust fit of ZOGY candidates needs: ZOGY's inputs in its cross-convolution frame.
//!
//! ZOGY makes no "template convolved to the science PSF" plane. Its frame has one instead:
//! the science convolved with the template PSF, `N (x) P_r`, and the flux-scaled template
//! convolved with the science PSF, `beta R (x) P_n`, share the PSF `P_n (x) P_r`, so their
//! difference is a difference image (the numerator of ZOGY's eq. 13) whose per-pixel variance
//! is `V_n (x) P_r^2 + beta^2 V_r (x) P_n^2`. [`CrossConvolution`] keeps what is needed to
//! compute these planes *locally*, around a candidate (see
//! [`crate::pipeline::cross_window`]), instead of as full-image planes (a spatially varying
//! PSF makes full-image convolutions costly).

use std::sync::Arc;

use ndarray::Array2;
use psf_kl::PsfModel;

/// ZOGY's inputs as it subtracted them, for local cross-convolution (set by
/// [`super::zogy::subtract_zogy`]; `None` for the other methods).
///
/// Units: the images are the inputs in their own ADU with the glue's background model
/// subtracted and cosmic-ray / hot pixels replaced (what ZOGY subtracted); the noise maps are
/// the per-pixel RMS (ADU) ZOGY used, source noise included. All planes have the image shape.
#[derive(Clone)]
pub struct CrossConvolution {
    /// Science PSF `P_n` as ZOGY used it (pedestal removed; constant when ZOGY treated it so).
    pub science_psf: Arc<dyn PsfModel>,
    /// Template PSF `P_r` as ZOGY used it.
    pub template_psf: Arc<dyn PsfModel>,
    /// Flux ratio `beta = F_n / F_r` (science flux / template flux).
    pub beta: f64,
    /// Shift `(dx, dy)` ZOGY applied to the template (position in N minus position in R).
    pub shift: (f64, f64),
    /// Science image `N` (background subtracted), science ADU.
    pub science: Arc<Array2<f32>>,
    /// Template image `R` (background subtracted), template ADU.
    pub template: Arc<Array2<f32>>,
    /// Science noise RMS map, science ADU.
    pub science_noise: Arc<Array2<f32>>,
    /// Template noise RMS map, template ADU.
    pub template_noise: Arc<Array2<f32>>,
}

impl std::fmt::Debug for CrossConvolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossConvolution")
            .field("science_psf_size", &self.science_psf.stamp_size())
            .field("template_psf_size", &self.template_psf.stamp_size())
            .field("beta", &self.beta)
            .field("shift", &self.shift)
            .field("shape", &self.science.dim())
            .finish_non_exhaustive()
    }
}

/// A psf-kl model as ZOGY's glue used it: the pedestal removed from every stamp
/// ([`zogy_core::remove_pedestal`]), or one constant stamp when the glue treated the model as
/// constant.
pub(crate) struct ZogyPsf {
    model: psf_kl::KlPsf,
    constant: Option<Array2<f64>>,
}

impl ZogyPsf {
    /// Wraps `model`; `constant` is the stamp ZOGY used everywhere, if it used one.
    pub(crate) fn shared(model: psf_kl::KlPsf, constant: Option<Array2<f64>>) -> Arc<dyn PsfModel> {
        Arc::new(Self { model, constant })
    }
}

impl PsfModel for ZogyPsf {
    fn psf_at(&self, x: f64, y: f64) -> Array2<f64> {
        match &self.constant {
            Some(c) => c.clone(),
            None => zogy_core::remove_pedestal(&self.model.psf_at(x, y)),
        }
    }
    fn stamp_size(&self) -> usize {
        self.constant
            .as_ref()
            .map_or_else(|| self.model.stamp_size(), |c| c.nrows())
    }
    fn fwhm_at(&self, x: f64, y: f64) -> f64 {
        self.model.fwhm_at(x, y)
    }
}
