//! A constant empirical PSF: the per-pixel robust mean of the star stamps.

use crate::{PsfError, PsfModel, StarSet, profile::measure_fwhm};
use ndarray::Array2;

/// How the stamps are combined pixel by pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Combine {
    /// Per-pixel median.
    Median,
    /// Per-pixel mean after 3-sigma clipping about the median (MAD scale).
    #[default]
    ClippedMean,
}

/// A spatially constant PSF built directly from the stamps.
#[derive(Debug, Clone, PartialEq)]
pub struct EmpiricalPsf {
    /// The PSF stamp (unit sum, centred).
    pub stamp: Array2<f64>,
    /// Its FWHM (pixels, see [`measure_fwhm`]); NaN when the fit failed.
    pub fwhm: f64,
    /// Number of stars combined.
    pub n_stars: usize,
}

impl EmpiricalPsf {
    /// Combines the stamps of `stars`.
    pub fn fit(stars: &StarSet, combine: Combine) -> Result<Self, PsfError> {
        let n = stars.len();
        if n == 0 {
            return Err(PsfError::NoUsableStars {
                rejections: stars.rejections,
            });
        }
        let size = stars.stamp_size;
        let mut buf = vec![0.0; n];
        let mut stamp = Array2::from_shape_fn((size, size), |(j, i)| {
            for (b, s) in buf.iter_mut().zip(&stars.stars) {
                *b = s.stamp[[j, i]];
            }
            let med = diffim_core::stats::median(buf.iter().copied()).unwrap_or(0.0);
            match combine {
                Combine::Median => med,
                Combine::ClippedMean => {
                    let sd = diffim_core::stats::mad_std(buf.iter().copied()).unwrap_or(0.0);
                    let (mut s, mut k) = (0.0, 0usize);
                    for &v in &buf {
                        if sd == 0.0 || (v - med).abs() <= 3.0 * sd {
                            s += v;
                            k += 1;
                        }
                    }
                    if k > 0 { s / k as f64 } else { med }
                }
            }
        });
        if diffim_core::psf::normalize_unit_sum(&mut stamp).is_none() {
            return Err(PsfError::NoUsableStars {
                rejections: stars.rejections,
            });
        }
        let fwhm = measure_fwhm(&stamp.view()).unwrap_or(f64::NAN);
        Ok(Self {
            stamp,
            fwhm,
            n_stars: n,
        })
    }
}

impl PsfModel for EmpiricalPsf {
    fn psf_at(&self, _x: f64, _y: f64) -> Array2<f64> {
        self.stamp.clone()
    }
    fn stamp_size(&self) -> usize {
        self.stamp.nrows()
    }
    fn fwhm_at(&self, _x: f64, _y: f64) -> f64 {
        self.fwhm
    }
}
