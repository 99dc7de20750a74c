//! Template masks: non-finite pixels and saturated catalogue stars.

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use wcs_grid::Grid;

use crate::error::FetchError;

/// A catalogue star: position (degrees) and magnitude (`None` = unknown).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatalogStar {
    /// Right ascension, degrees.
    pub ra: f64,
    /// Declination, degrees.
    pub dec: f64,
    /// Magnitude in the template's band; `None` (or NaN in a file) when missing.
    pub mag: Option<f64>,
}

/// Options of [`mask_template`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskParams {
    /// Stars brighter (smaller magnitude) than this are masked (default `Some(13.0)`; `None`
    /// masks no star by magnitude).
    pub saturation_mag: Option<f64>,
    /// Also mask stars without a magnitude (default true: an unmeasured catalogue star is
    /// often a saturated one).
    pub mask_missing_mag: bool,
    /// Half-width in pixels of the square grown around each masked star (default 5).
    pub dilate: usize,
}

impl Default for MaskParams {
    fn default() -> Self {
        Self {
            saturation_mag: Some(13.0),
            mask_missing_mag: true,
            dilate: 5,
        }
    }
}

/// The mask of a template on `grid`: the input mask (if any), non-finite pixels, and every
/// catalogue star brighter than [`MaskParams::saturation_mag`] (or without a magnitude) grown
/// by [`MaskParams::dilate`] pixels. Stars off the grid are ignored.
///
/// # Errors
/// [`FetchError::InvalidParameter`] if the image (or mask) does not have the grid's shape.
pub fn mask_template(
    image: &ArrayView2<f32>,
    mask: Option<&ArrayView2<bool>>,
    grid: &Grid,
    catalog: &[CatalogStar],
    params: &MaskParams,
) -> Result<Array2<bool>, FetchError> {
    if image.dim() != grid.shape() || mask.is_some_and(|m| m.dim() != grid.shape()) {
        return Err(FetchError::InvalidParameter {
            name: "image",
            reason: format!(
                "shape {:?} differs from the grid's {:?}",
                image.dim(),
                grid.shape()
            ),
        });
    }
    let mut out = diffim_core::mask::finite_mask(image, mask);
    let mut stars = Array2::from_elem(grid.shape(), false);
    let (ny, nx) = grid.shape();
    for s in catalog {
        let bright = match s.mag.filter(|m| m.is_finite()) {
            Some(m) => params.saturation_mag.is_some_and(|lim| m < lim),
            None => params.mask_missing_mag,
        };
        if !bright {
            continue;
        }
        let Some((x, y)) = grid.wcs().world_to_pixel(s.ra, s.dec) else {
            continue;
        };
        let (xi, yi) = (x.round(), y.round());
        if xi >= 0.0 && yi >= 0.0 && (xi as usize) < nx && (yi as usize) < ny {
            stars[[yi as usize, xi as usize]] = true;
        }
    }
    let grown = diffim_core::mask::dilate(&stars.view(), params.dilate);
    out.zip_mut_with(&grown, |o, &g| *o |= g);
    Ok(out)
}

/// Reads a catalogue from CSV with columns `ra`, `dec` and optionally `mag` (empty, `nan` or
/// absent = missing magnitude).
///
/// # Errors
/// [`FetchError::Io`] / [`FetchError::Malformed`] for an unreadable file, missing columns or
/// unparsable numbers.
pub fn read_catalog_csv(path: &Path) -> Result<Vec<CatalogStar>, FetchError> {
    let url = path.display().to_string();
    let bad = |reason: String| FetchError::Malformed {
        url: url.clone(),
        reason,
    };
    let mut rdr = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let headers = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(ri), Some(di)) = (col("ra"), col("dec")) else {
        return Err(bad("needs `ra` and `dec` columns".into()));
    };
    let mi = col("mag");
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let num = |i: usize| -> Result<f64, FetchError> {
            let t = rec.get(i).unwrap_or("").trim();
            t.parse::<f64>()
                .map_err(|_| bad(format!("bad number {t:?}")))
        };
        let mag = match mi.map(|i| rec.get(i).unwrap_or("").trim()) {
            None | Some("") => None,
            Some(t) => {
                let v = t
                    .parse::<f64>()
                    .map_err(|_| bad(format!("bad magnitude {t:?}")))?;
                v.is_finite().then_some(v)
            }
        };
        out.push(CatalogStar {
            ra: num(ri)?,
            dec: num(di)?,
            mag,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_nan_bright_and_missing() {
        let grid = Grid::from_center(150.0, 2.0, 64, 64, 1.0, 0.0).unwrap();
        let mut img = Array2::from_elem((64, 64), 1.0f32);
        img[[3, 4]] = f32::NAN;
        let at = |x: f64, y: f64| grid.wcs().pixel_to_world(x, y).unwrap();
        let cat = [
            CatalogStar {
                ra: at(20.0, 20.0).0,
                dec: at(20.0, 20.0).1,
                mag: Some(10.0),
            },
            CatalogStar {
                ra: at(40.0, 40.0).0,
                dec: at(40.0, 40.0).1,
                mag: Some(18.0),
            },
            CatalogStar {
                ra: at(50.0, 10.0).0,
                dec: at(50.0, 10.0).1,
                mag: None,
            },
        ];
        let p = MaskParams {
            saturation_mag: Some(12.0),
            mask_missing_mag: true,
            dilate: 2,
        };
        let m = mask_template(&img.view(), None, &grid, &cat, &p).unwrap();
        assert!(m[[3, 4]]);
        assert!(m[[20, 20]] && m[[22, 18]] && !m[[23, 20]]);
        assert!(!m[[40, 40]]);
        assert!(m[[10, 50]]);
        let p2 = MaskParams {
            mask_missing_mag: false,
            ..p
        };
        let m2 = mask_template(&img.view(), None, &grid, &cat, &p2).unwrap();
        assert!(!m2[[10, 50]]);
        assert_eq!(m.iter().filter(|&&b| b).count(), 1 + 25 + 25);
    }
}
