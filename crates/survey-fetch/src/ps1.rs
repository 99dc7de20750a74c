//! Pan-STARRS DR2 stacks: `ps1filenames.py` lists the skycell files, `fitscut.cgi` cuts them.

use std::f64::consts::LN_10;

use fits_io::{Header, Image};
use ndarray::Array2;
use wcs_grid::{Grid, ReprojectParams, reproject};

use crate::Template;
use crate::error::FetchError;
use crate::hips2fits::{finish, grid_header};
use crate::transport::{Expect, FetchOptions, Fetcher};

/// Requests in flight at most against the Pan-STARRS server (its operators' request).
pub const PS1_MAX_IN_FLIGHT: usize = 10;
/// Pixel scale of the stacks, arcsec.
pub const PS1_PIXEL_SCALE: f64 = 0.25;
/// Largest cutout requested, pixels (a skycell is 6000 px on a side at most).
pub const PS1_MAX_CUTOUT: usize = 6400;
/// Undocumented mask bit cleared before the mask is used.
pub const PS1_IGNORED_MASK_BIT: u32 = 0x8000;

/// Linearises an asinh-compressed full stack pixel:
/// `L = BOFFSET + BSOFTEN (e^(C/a) - e^(-C/a))`, `a = 2.5 / ln 10 = 1.0857362`.
///
/// ```
/// use survey_fetch::ps1_linearize;
/// assert_eq!(ps1_linearize(0.0, 3.0, 2.0), 3.0);
/// let a = 2.5 / std::f64::consts::LN_10;
/// assert!((ps1_linearize(a, 0.0, 1.0) - (1f64.exp() - (-1f64).exp())).abs() < 1e-12);
/// ```
pub fn ps1_linearize(c: f64, boffset: f64, bsoften: f64) -> f64 {
    let a = 2.5 / LN_10;
    boffset + bsoften * ((c / a).exp() - (-c / a).exp())
}

/// True when a PS1 mask value marks a bad pixel: any bit set except 0x8000.
pub fn ps1_mask_is_bad(bits: u32) -> bool {
    bits & !PS1_IGNORED_MASK_BIT != 0
}

/// Zero point of a PS1 stack: `25 + 2.5 log10(EXPTIME)`.
pub fn ps1_zero_point(exptime: f64) -> f64 {
    25.0 + 2.5 * exptime.log10()
}

/// One row of the `ps1filenames.py` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ps1File {
    /// `type` column (`stack`, `stack.mask`, ...; empty when the table has none).
    pub kind: String,
    /// `filename` column (the server path given to `fitscut.cgi`).
    pub filename: String,
}

/// Parses the whitespace-separated `ps1filenames.py` table (a header line naming the columns,
/// one of them `filename`).
///
/// # Errors
/// [`FetchError::Malformed`] without a `filename` column or with a row of the wrong length.
pub fn parse_ps1_table(text: &str, url: &str) -> Result<Vec<Ps1File>, FetchError> {
    let bad = |reason: String| FetchError::Malformed {
        url: url.to_string(),
        reason,
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(head) = lines.next() else {
        return Ok(Vec::new());
    };
    let cols: Vec<&str> = head.split_whitespace().collect();
    let fi = cols
        .iter()
        .position(|c| *c == "filename")
        .ok_or_else(|| bad(format!("no `filename` column in {head:?}")))?;
    let ti = cols.iter().position(|c| *c == "type");
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != cols.len() {
            return Err(bad(format!(
                "row has {} fields, header has {}: {line:?}",
                f.len(),
                cols.len()
            )));
        }
        out.push(Ps1File {
            kind: ti.map(|i| f[i].to_string()).unwrap_or_default(),
            filename: f[fi].to_string(),
        });
    }
    Ok(out)
}

fn is_mask(f: &Ps1File) -> bool {
    f.kind == "stack.mask" || f.filename.ends_with(".mask.fits")
}

fn is_image(f: &Ps1File) -> bool {
    (f.kind.is_empty() || f.kind == "stack")
        && !f.filename.ends_with(".mask.fits")
        && !f.filename.ends_with(".wt.fits")
        && !f.filename.ends_with(".num.fits")
        && !f.filename.ends_with(".exp.fits")
}

/// Sky points at which the file table is queried: an n x n lattice over the grid (n from 2 to
/// 8, about one point per 0.2 deg, finer than a 0.4 deg skycell) plus the centre.
pub(crate) fn sample_points(grid: &Grid) -> Result<Vec<(f64, f64)>, FetchError> {
    let scale = grid.pixel_scale()? / 3600.0;
    let extent = grid.nx().max(grid.ny()) as f64 * scale;
    let n = ((extent / 0.2).ceil() as usize + 1).clamp(2, 8);
    let mut pts = vec![grid.center()?];
    for a in 0..n {
        for b in 0..n {
            let x = -0.5 + grid.nx() as f64 * a as f64 / (n - 1) as f64;
            let y = -0.5 + grid.ny() as f64 * b as f64 / (n - 1) as f64;
            if let Some(p) = grid.wcs().pixel_to_world(x, y) {
                pts.push(p);
            }
        }
    }
    Ok(pts)
}

/// Angular distance in degrees.
pub(crate) fn separation(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (ra1, d1) = (a.0.to_radians(), a.1.to_radians());
    let (ra2, d2) = (b.0.to_radians(), b.1.to_radians());
    let h =
        ((d2 - d1) / 2.0).sin().powi(2) + d1.cos() * d2.cos() * ((ra2 - ra1) / 2.0).sin().powi(2);
    (2.0 * h.sqrt().min(1.0).asin()).to_degrees()
}

/// Diameter in degrees of the circle centred on the grid centre that holds the whole grid.
pub(crate) fn grid_diameter(grid: &Grid) -> Result<f64, FetchError> {
    let c = grid.center()?;
    let r = grid
        .corners()?
        .iter()
        .map(|&p| separation(c, p))
        .fold(0.0, f64::max);
    Ok(2.0 * r)
}

fn build_url(base: &str, script: &str, params: &[(&str, String)]) -> Result<String, FetchError> {
    let b = format!("{}/{script}", base.trim_end_matches('/'));
    reqwest::Url::parse_with_params(&b, params)
        .map(String::from)
        .map_err(|e| FetchError::InvalidParameter {
            name: "base URL",
            reason: format!("{b:?}: {e}"),
        })
}

/// Makes a downloaded cutout usable: linearises full stacks (BOFFSET/BSOFTEN present) and adds
/// `RADESYS = 'FK5'` when missing. Returns the zero point when EXPTIME is present.
pub(crate) fn prepare_stack(img: &mut Image<f64>) -> Option<f64> {
    let h = &img.header;
    if let (Ok(Some(boff)), Ok(Some(bsoft))) = (h.get_f64_opt("BOFFSET"), h.get_f64_opt("BSOFTEN"))
    {
        img.data.mapv_inplace(|c| ps1_linearize(c, boff, bsoft));
        img.header
            .add_history("asinh compression undone with BOFFSET/BSOFTEN");
    }
    if !img.header.contains("RADESYS") {
        img.header
            .set_with_comment("RADESYS", "FK5", "added: missing in PS1 stacks");
    }
    img.header
        .get_f64_opt("EXPTIME")
        .ok()
        .flatten()
        .filter(|e| *e > 0.0)
        .map(ps1_zero_point)
}

/// Fetches a Pan-STARRS stack template in `band` on `grid`: every skycell overlapping the
/// grid, linearised, reprojected (Lanczos-3) and averaged where they overlap, each scaled to
/// the zero point of the first (`MAGZERO` in the header). Masked: pixels no skycell covers,
/// NaN pixels, and mask bits other than 0x8000.
///
/// # Errors
/// Transport errors; [`FetchError::EmptyResult`] when no stack covers the field.
pub fn ps1(band: char, grid: &Grid, opts: &FetchOptions) -> Result<Template, FetchError> {
    let fetcher = Fetcher::new(opts)?;
    ps1_with(&fetcher, band, grid)
}

pub(crate) fn ps1_with(fetcher: &Fetcher, band: char, grid: &Grid) -> Result<Template, FetchError> {
    let base = &fetcher.options().endpoints.ps1;
    let mut files: Vec<Ps1File> = Vec::new();
    for (ra, dec) in sample_points(grid)? {
        let url = build_url(
            base,
            "ps1filenames.py",
            &[
                ("ra", format!("{ra:.6}")),
                ("dec", format!("{dec:.6}")),
                ("filters", band.to_string()),
                ("type", "stack,stack.mask".into()),
            ],
        )?;
        let text = fetcher.get_text(&url)?;
        for f in parse_ps1_table(&text, &url)? {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    let images: Vec<&Ps1File> = files.iter().filter(|f| is_image(f)).collect();
    if images.is_empty() {
        return Err(FetchError::EmptyResult {
            what: format!("Pan-STARRS {band}-band stack images"),
        });
    }
    let (ra, dec) = grid.center()?;
    let size =
        ((grid_diameter(grid)? * 3600.0 / PS1_PIXEL_SCALE).ceil() as usize + 8).min(PS1_MAX_CUTOUT);
    let cut = |filename: &str| {
        build_url(
            base,
            "fitscut.cgi",
            &[
                ("red", filename.to_string()),
                ("format", "fits".into()),
                ("size", size.to_string()),
                ("ra", format!("{ra:.6}")),
                ("dec", format!("{dec:.6}")),
            ],
        )
    };
    // Image URLs first, then the masks that pair with them (image name with .mask.fits).
    let mut urls = Vec::new();
    let mut mask_slot = Vec::new();
    for f in &images {
        urls.push(cut(&f.filename)?);
    }
    for f in &images {
        let mname = f.filename.trim_end_matches(".fits").to_string() + ".mask.fits";
        if files.iter().any(|m| is_mask(m) && m.filename == mname) {
            mask_slot.push(Some(urls.len()));
            urls.push(cut(&mname)?);
        } else {
            mask_slot.push(None);
        }
    }
    let limit = fetcher.options().max_in_flight.min(PS1_MAX_IN_FLIGHT);
    let mut results: Vec<Option<Result<Vec<Image<f64>>, FetchError>>> = fetcher
        .get_many(&urls, Expect::Fits, limit, "Pan-STARRS cutouts")
        .into_iter()
        .map(Some)
        .collect();

    let (ny, nx) = grid.shape();
    let mut sum = Array2::<f64>::zeros((ny, nx));
    let mut count = Array2::<u32>::zeros((ny, nx));
    let mut zp_ref: Option<f64> = None;
    let mut exptime: Option<f64> = None;
    for (k, slot) in mask_slot.iter().enumerate() {
        let mut img = take_first(results[k].take())?;
        let zp = prepare_stack(&mut img);
        if zp_ref.is_none() {
            zp_ref = zp;
            exptime = img.header.get_f64_opt("EXPTIME").ok().flatten();
        }
        let scale = match (zp_ref, zp) {
            (Some(r), Some(z)) => 10f64.powf(0.4 * (r - z)),
            _ => 1.0,
        };
        let mut bad = img.data.mapv(|v| !v.is_finite());
        if let Some(mi) = slot {
            let m = take_first(results[*mi].take())?;
            if m.data.dim() != img.data.dim() {
                return Err(FetchError::Malformed {
                    url: urls[*mi].clone(),
                    reason: format!(
                        "mask shape {:?} differs from the image's {:?}",
                        m.data.dim(),
                        img.data.dim()
                    ),
                });
            }
            ndarray::Zip::from(&mut bad).and(&m.data).for_each(|b, &v| {
                let bits = if v.is_finite() {
                    (v as i64 & 0xFFFF) as u32
                } else {
                    0xFFFF
                };
                *b |= ps1_mask_is_bad(bits);
            });
        }
        let src = Grid::from_header(&img.header)?;
        let data32 = img.data.mapv(|v| (v * scale) as f32);
        let rep = reproject(
            &data32.view(),
            Some(&bad.view()),
            &src,
            grid,
            &ReprojectParams::default(),
        )?;
        ndarray::Zip::from(&mut sum)
            .and(&mut count)
            .and(&rep.image)
            .and(&rep.mask)
            .for_each(|s, c, &v, &m| {
                if !m && v.is_finite() {
                    *s += v as f64;
                    *c += 1;
                }
            });
    }
    let data = ndarray::Zip::from(&sum)
        .and(&count)
        .map_collect(|&s, &c| if c > 0 { s / c as f64 } else { f64::NAN });
    let (image, mask) = finish(&data);
    let mut header: Header = grid_header(grid, "ps1");
    header.set_with_comment("FILTER", band.to_string().as_str(), "Pan-STARRS filter");
    if let Some(zp) = zp_ref {
        header.set_with_comment("MAGZERO", zp, "25 + 2.5 log10(EXPTIME)");
    }
    if let Some(e) = exptime {
        header.set_with_comment("EXPTIME", e, "[s] stack exposure time (first skycell)");
    }
    header.set_with_comment("NSKYCELL", images.len() as i64, "skycells combined");
    Ok(Template {
        image,
        mask,
        header,
    })
}

fn take_first(r: Option<Result<Vec<Image<f64>>, FetchError>>) -> Result<Image<f64>, FetchError> {
    match r {
        Some(Ok(mut v)) => Ok(v.swap_remove(0)),
        Some(Err(e)) => Err(e),
        None => Err(FetchError::Client("download result used twice".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parsing() {
        let t = "projcell subcell ra dec filter mjd type filename shortname badflag\n\
                 1336 051 150.0 2.0 r 0 stack /a/x.stk.r.unconv.fits x.fits 0\n\
                 1336 051 150.0 2.0 r 0 stack.mask /a/x.stk.r.unconv.mask.fits x.mask.fits 0\n";
        let f = parse_ps1_table(t, "u").unwrap();
        assert_eq!(f.len(), 2);
        assert!(is_image(&f[0]) && !is_image(&f[1]) && is_mask(&f[1]));
        assert!(parse_ps1_table("a b\n1 2\n", "u").is_err());
        assert!(parse_ps1_table("filename x\n1\n", "u").is_err());
        assert!(parse_ps1_table("", "u").unwrap().is_empty());
    }

    #[test]
    fn mask_bits_and_zero_point() {
        assert!(!ps1_mask_is_bad(0x8000));
        assert!(ps1_mask_is_bad(0x8001));
        assert!(ps1_mask_is_bad(0x0020));
        assert!(!ps1_mask_is_bad(0));
        assert!((ps1_zero_point(100.0) - 30.0).abs() < 1e-12);
    }
}
