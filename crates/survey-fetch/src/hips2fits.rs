//! CDS hips2fits: any HiPS resampled by the service onto the requested WCS.

use std::f64::consts::LN_10;

use fits_io::{Header, Value};
use ndarray::Array2;
use wcs_grid::{Grid, Wcs};

use crate::Template;
use crate::error::FetchError;
use crate::transport::{FetchOptions, Fetcher};

/// Options of [`hips2fits`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Hips2FitsParams {
    /// Undo the asinh scaling of the Pan-STARRS HiPS: `Some(true)` always, `Some(false)` never,
    /// `None` (default) decide from the HiPS id with [`is_asinh_scaled`].
    pub asinh: Option<bool>,
    /// Rescale the result to median 100 and robust RMS 10 (for surveys in arbitrary units;
    /// default false). The mask is unchanged.
    pub normalize: bool,
    /// Request the image `upscale` times finer on each axis, then average `upscale x upscale`
    /// blocks back onto the grid (less aliasing from the service's nearest-pixel resampling).
    /// 0 and 1 mean no upscaling (default 0). Not possible with a SIP grid.
    pub upscale: usize,
}

/// Whether a HiPS id names an asinh-scaled Pan-STARRS HiPS: `PanSTARRS/DR1/<band>` with a band
/// other than `g` and not a colour composite (ALGORITHMS.md section 8).
///
/// ```
/// assert!(survey_fetch::is_asinh_scaled("PanSTARRS/DR1/r"));
/// assert!(!survey_fetch::is_asinh_scaled("PanSTARRS/DR1/g"));
/// assert!(!survey_fetch::is_asinh_scaled("CDS/P/DSS2/red"));
/// ```
pub fn is_asinh_scaled(hips_id: &str) -> bool {
    let id = hips_id.to_ascii_lowercase();
    if !id.contains("panstarrs") || id.contains("color") {
        return false;
    }
    let band = id.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    band != "g"
}

/// Undoes the asinh scaling of the Pan-STARRS HiPS: `x = 0.4 ln(10) v`,
/// linear `= e^x - e^-x` (= 2 sinh x).
///
/// ```
/// let lin = survey_fetch::asinh_to_linear(1.0);
/// let x = 0.4 * std::f64::consts::LN_10;
/// assert!((lin - (x.exp() - (-x).exp())).abs() < 1e-12);
/// assert_eq!(survey_fetch::asinh_to_linear(0.0), 0.0);
/// ```
pub fn asinh_to_linear(v: f64) -> f64 {
    let x = 0.4 * LN_10 * v;
    x.exp() - (-x).exp()
}

/// The WCS of `grid` with NAXIS1/NAXIS2, as the JSON object hips2fits takes in `wcs=`
/// (keys sorted, so the same grid always gives the same URL and cache key).
pub fn wcs_json(grid: &Grid) -> String {
    let mut h = Header::new();
    h.set("NAXIS", 2i64);
    h.set("NAXIS1", grid.nx() as i64);
    h.set("NAXIS2", grid.ny() as i64);
    grid.to_header(&mut h);
    let mut map = serde_json::Map::new();
    for card in h.cards() {
        let Some(v) = &card.value else { continue };
        let j = match v {
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => serde_json::Value::Number(n),
                None => continue,
            },
            Value::Str(s) => serde_json::Value::String(s.clone()),
        };
        map.insert(card.key.clone(), j);
    }
    serde_json::Value::Object(map).to_string()
}

/// The hips2fits URL for a HiPS on a grid.
///
/// # Errors
/// [`FetchError::InvalidParameter`] for a base URL that does not parse.
pub fn hips2fits_url(base: &str, hips_id: &str, grid: &Grid) -> Result<String, FetchError> {
    let wcs = wcs_json(grid);
    reqwest::Url::parse_with_params(
        base,
        &[("hips", hips_id), ("format", "fits"), ("wcs", wcs.as_str())],
    )
    .map(String::from)
    .map_err(|e| FetchError::InvalidParameter {
        name: "hips2fits base URL",
        reason: format!("{base:?}: {e}"),
    })
}

/// A TAN grid of `width` x `height` pixels centred on `(ra, dec)` (degrees) spanning `fov_deg`
/// along its larger side, north up: the hips2fits `ra/dec/fov/width/height` form.
///
/// # Errors
/// [`FetchError::Wcs`] for a non-positive field or an empty shape.
pub fn grid_from_fov(
    ra: f64,
    dec: f64,
    fov_deg: f64,
    width: usize,
    height: usize,
) -> Result<Grid, FetchError> {
    let scale = fov_deg * 3600.0 / width.max(height).max(1) as f64;
    Ok(Grid::from_center(ra, dec, width, height, scale, 0.0)?)
}

/// The grid `u` times finer on each axis covering the same area.
pub(crate) fn upscaled(grid: &Grid, u: usize) -> Result<Grid, FetchError> {
    let mut p = grid.wcs().params().clone();
    if p.sip.is_some() {
        return Err(FetchError::InvalidParameter {
            name: "upscale",
            reason: "upscaling a SIP grid is not supported".into(),
        });
    }
    let uf = u as f64;
    for c in p.crpix.iter_mut() {
        *c = (*c + 0.5) * uf - 0.5;
    }
    for row in p.cd.iter_mut() {
        for v in row.iter_mut() {
            *v /= uf;
        }
    }
    Ok(Grid::new(Wcs::new(p)?, grid.nx() * u, grid.ny() * u)?)
}

/// Mean of the finite values of each `u x u` block (NaN where none is finite).
pub(crate) fn rebin(data: &Array2<f64>, u: usize) -> Array2<f64> {
    let (ny, nx) = (data.nrows() / u, data.ncols() / u);
    Array2::from_shape_fn((ny, nx), |(y, x)| {
        let mut s = 0.0;
        let mut n = 0usize;
        for dy in 0..u {
            for dx in 0..u {
                let v = data[[y * u + dy, x * u + dx]];
                if v.is_finite() {
                    s += v;
                    n += 1;
                }
            }
        }
        if n == 0 { f64::NAN } else { s / n as f64 }
    })
}

/// Rescales the finite pixels to median 100 and robust RMS (MAD x 1.4826) 10.
pub(crate) fn normalize(data: &mut Array2<f64>) {
    let vals = || data.iter().copied().filter(|v| v.is_finite());
    let (Some(med), Some(sd)) = (
        diffim_core::stats::median(vals()),
        diffim_core::stats::mad_std(vals()),
    ) else {
        return;
    };
    if sd > 0.0 {
        data.mapv_inplace(|v| (v - med) / sd * 10.0 + 100.0);
    }
}

/// The output header: the grid's WCS (never the service's SIP) and provenance cards.
pub(crate) fn grid_header(grid: &Grid, source: &str) -> Header {
    let mut h = Header::new();
    grid.to_header(&mut h);
    h.set_with_comment("TMPLSRC", source, "template source (diffim survey-fetch)");
    h
}

/// Converts `f64` data to the public `f32` image and its mask (true where not finite).
pub(crate) fn finish(data: &Array2<f64>) -> (Array2<f32>, Array2<bool>) {
    let image = data.mapv(|v| v as f32);
    let mask = image.mapv(|v| !v.is_finite());
    (image, mask)
}

/// Fetches HiPS `hips_id` from hips2fits on `grid` (the grid's own WCS goes into the request
/// and into the returned header; the service's SIP is ignored).
///
/// # Errors
/// Transport errors ([`FetchError`]), [`FetchError::Service`] for the service's JSON errors
/// (e.g. an unknown HiPS id), [`FetchError::Malformed`] if the image has the wrong shape.
pub fn hips2fits(
    hips_id: &str,
    grid: &Grid,
    params: &Hips2FitsParams,
    opts: &FetchOptions,
) -> Result<Template, FetchError> {
    let fetcher = Fetcher::new(opts)?;
    hips2fits_with(&fetcher, hips_id, grid, params)
}

pub(crate) fn hips2fits_with(
    fetcher: &Fetcher,
    hips_id: &str,
    grid: &Grid,
    params: &Hips2FitsParams,
) -> Result<Template, FetchError> {
    let up = params.upscale.max(1);
    if up > 16 {
        return Err(FetchError::InvalidParameter {
            name: "upscale",
            reason: format!("{up} is above the limit of 16"),
        });
    }
    let req = if up > 1 {
        upscaled(grid, up)?
    } else {
        grid.clone()
    };
    let url = hips2fits_url(&fetcher.options().endpoints.hips2fits, hips_id, &req)?;
    let mut images = fetcher.get_fits(&url)?;
    let img = images.swap_remove(0);
    if img.data.dim() != req.shape() {
        return Err(FetchError::Malformed {
            url,
            reason: format!(
                "image has shape {:?}, the request asked for {:?}",
                img.data.dim(),
                req.shape()
            ),
        });
    }
    let mut data = img.data;
    let asinh = params.asinh.unwrap_or_else(|| is_asinh_scaled(hips_id));
    if asinh {
        data.mapv_inplace(asinh_to_linear);
    }
    if up > 1 {
        data = rebin(&data, up);
    }
    if params.normalize {
        normalize(&mut data);
    }
    let (image, mask) = finish(&data);
    let mut header = grid_header(grid, "hips2fits");
    header.set_with_comment("HIPSID", hips_id, "HiPS identifier");
    if asinh {
        header.add_history("asinh scaling of the Pan-STARRS HiPS undone: e^x - e^-x, x = 0.921 v");
    }
    if up > 1 {
        header.set_with_comment("UPSCALE", up as i64, "requested finer, then block-averaged");
    }
    Ok(Template {
        image,
        mask,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscaled_grid_covers_the_same_sky() {
        let g = Grid::from_center(150.0, 2.0, 20, 10, 1.0, 30.0).unwrap();
        let u = upscaled(&g, 4).unwrap();
        assert_eq!(u.shape(), (40, 80));
        // Corner of pixel (0,0) of the coarse grid = corner of pixel (0,0) of the fine one.
        let a = g.wcs().pixel_to_world(-0.5, -0.5).unwrap();
        let b = u.wcs().pixel_to_world(-0.5, -0.5).unwrap();
        assert!((a.0 - b.0).abs() < 1e-10 && (a.1 - b.1).abs() < 1e-10);
        let a = g.wcs().pixel_to_world(7.0, 3.0).unwrap();
        let b = u.wcs().pixel_to_world(29.5, 13.5).unwrap();
        assert!((a.0 - b.0).abs() < 1e-10 && (a.1 - b.1).abs() < 1e-10);
    }

    #[test]
    fn rebin_averages_finite_values() {
        let mut d = Array2::from_shape_fn((4, 4), |(y, x)| (y * 4 + x) as f64);
        d[[0, 0]] = f64::NAN;
        let r = rebin(&d, 2);
        assert_eq!(r.dim(), (2, 2));
        assert!((r[[0, 0]] - (1.0 + 4.0 + 5.0) / 3.0).abs() < 1e-12);
        assert!((r[[1, 1]] - (10.0 + 11.0 + 14.0 + 15.0) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn wcs_json_has_naxis_and_is_stable() {
        let g = Grid::from_center(10.0, -5.0, 64, 32, 0.5, 0.0).unwrap();
        let j = wcs_json(&g);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["NAXIS1"], 64);
        assert_eq!(v["NAXIS2"], 32);
        assert_eq!(v["CTYPE1"], "RA---TAN");
        assert_eq!(j, wcs_json(&g));
    }
}
