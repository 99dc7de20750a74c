//! PSF stars: centred, background-subtracted, unit-sum stamps with their positions.

use crate::RejectionSummary;
use ndarray::Array2;

/// One PSF star.
#[derive(Debug, Clone, PartialEq)]
pub struct Star {
    /// Index of the object in the input catalogue.
    pub index: usize,
    /// Refined centre x (pixels, pixel (0,0) centre at 0.0).
    pub x: f64,
    /// Refined centre y (pixels).
    pub y: f64,
    /// Background-subtracted flux inside the stamp before normalisation (ADU).
    pub flux: f64,
    /// Signal-to-noise ratio from the catalogue.
    pub snr: f64,
    /// FWHM from the catalogue (pixels).
    pub fwhm: f64,
    /// Expected noise energy of the normalised stamp, `sum_pixels var / flux^2`
    /// (sky + read noise, plus the star's Poisson noise when a gain is known). Used to weight
    /// stars in the KL basis and the coefficient fits.
    pub noise_energy: f64,
    /// The part of `noise_energy` from the background RMS map (`sum_pixels rms^2 / flux^2`,
    /// spread over the whole stamp; the rest is the star's own Poisson noise in its core).
    pub sky_noise_energy: f64,
    /// Residual centre offset `(dy, dx)` measured on the re-centred stamp (pixels).
    pub residual_offset: (f64, f64),
    /// The stamp: odd side, unit sum, star centre at the middle pixel.
    pub stamp: Array2<f64>,
}

/// The output of the star selection: stamps, positions and what was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct StarSet {
    /// Accepted stars.
    pub stars: Vec<Star>,
    /// Stamp side (odd) shared by all stamps.
    pub stamp_size: usize,
    /// Median catalogue FWHM of the candidates used to size the stamps (pixels).
    pub fwhm: f64,
    /// Shape `(ny, nx)` of the image the stars come from (for coordinate scaling).
    pub image_shape: (usize, usize),
    /// Counts per rejection reason.
    pub rejections: RejectionSummary,
}

impl StarSet {
    /// Builds a star set from ready-made stamps (each odd, square, same size, centred) and
    /// positions; stamps are renormalised to unit sum. Useful for tests and for stamps that
    /// come from elsewhere. `noise_energy` may be 0 (all stars weighted equally).
    ///
    /// # Panics
    /// If the stamps differ in size, are not square with an odd side, or the lengths of
    /// `stamps` and `positions` differ (caller bugs).
    pub fn from_stamps(
        stamps: Vec<Array2<f64>>,
        positions: &[(f64, f64)],
        image_shape: (usize, usize),
    ) -> Self {
        assert_eq!(stamps.len(), positions.len(), "one position per stamp");
        let size = stamps.first().map_or(1, |s| s.nrows());
        let stars = stamps
            .into_iter()
            .zip(positions)
            .enumerate()
            .map(|(index, (mut stamp, &(x, y)))| {
                assert!(
                    stamp.dim() == (size, size) && size % 2 == 1,
                    "stamps must share one odd square size"
                );
                diffim_core::psf::normalize_unit_sum(&mut stamp);
                Star {
                    index,
                    x,
                    y,
                    flux: 1.0,
                    snr: f64::INFINITY,
                    fwhm: f64::NAN,
                    noise_energy: 0.0,
                    sky_noise_energy: 0.0,
                    residual_offset: (0.0, 0.0),
                    stamp,
                }
            })
            .collect::<Vec<_>>();
        let rejections = RejectionSummary {
            candidates: stars.len(),
            accepted: stars.len(),
            ..Default::default()
        };
        Self {
            stars,
            stamp_size: size,
            fwhm: f64::NAN,
            image_shape,
            rejections,
        }
    }

    /// Number of stars.
    pub fn len(&self) -> usize {
        self.stars.len()
    }

    /// True when there is no star.
    pub fn is_empty(&self) -> bool {
        self.stars.is_empty()
    }
}
