//! Legacy Survey cutouts: the viewer's `fits-cutout` endpoint.

use wcs_grid::{Grid, ReprojectParams, reproject};

use crate::Template;
use crate::error::FetchError;
use crate::hips2fits::{finish, grid_header};
use crate::ps1::grid_diameter;
use crate::transport::{FetchOptions, Fetcher};

/// Native pixel scale of the Legacy Survey coadds, arcsec.
pub const LEGACY_PIXEL_SCALE: f64 = 0.262;
/// Largest cutout side requested, pixels. The viewer refuses much larger cutouts (about 3000
/// px is the documented-by-use limit); fields wider than `3000 x 0.262"` (13 arcmin) are
/// requested at a coarser pixel scale so that the cutout still covers them.
pub const LEGACY_MAX_SIZE: usize = 3000;

/// Size (pixels) and pixel scale (arcsec) of the square cutout covering a field of
/// `diameter_arcsec`: the native 0.262"/px when it fits in [`LEGACY_MAX_SIZE`], coarser
/// otherwise.
///
/// ```
/// let (n, s) = survey_fetch::legacy_cutout_size(100.0);
/// assert_eq!(s, 0.262);
/// assert!(n as f64 * s >= 100.0);
/// let (n, s) = survey_fetch::legacy_cutout_size(3600.0);
/// assert_eq!(n, 3000);
/// assert!(s > 0.262 && n as f64 * s >= 3600.0);
/// ```
pub fn legacy_cutout_size(diameter_arcsec: f64) -> (usize, f64) {
    let margin = 4usize;
    let n = (diameter_arcsec / LEGACY_PIXEL_SCALE).ceil() as usize + margin;
    if n <= LEGACY_MAX_SIZE {
        (n, LEGACY_PIXEL_SCALE)
    } else {
        let s = diameter_arcsec / (LEGACY_MAX_SIZE - margin) as f64;
        (LEGACY_MAX_SIZE, (s * 1e4).ceil() / 1e4)
    }
}

/// Fetches a Legacy Survey template (layer e.g. `ls-dr10`, band `griz`) on `grid`.
///
/// One request: `fits-cutout?ra=&dec=&layer=&pixscale=&bands=&size=&invvar` centred on the
/// grid. Assumption (documented, checked against the local emulator only): with the `invvar`
/// flag the viewer appends the inverse-variance image as a second HDU; where it is present,
/// pixels with `invvar <= 0` are masked. Without it only NaN pixels and pixels outside the
/// cutout are masked. A 3-D answer (several bands) uses its first plane. Pixel values are
/// nanomaggies (`MAGZERO = 22.5`).
///
/// # Errors
/// Transport errors, [`FetchError::Wcs`] when the cutout's WCS cannot be read.
pub fn legacy(
    layer: &str,
    band: char,
    grid: &Grid,
    opts: &FetchOptions,
) -> Result<Template, FetchError> {
    let fetcher = Fetcher::new(opts)?;
    legacy_with(&fetcher, layer, band, grid)
}

pub(crate) fn legacy_with(
    fetcher: &Fetcher,
    layer: &str,
    band: char,
    grid: &Grid,
) -> Result<Template, FetchError> {
    let (ra, dec) = grid.center()?;
    let (size, pixscale) = legacy_cutout_size(grid_diameter(grid)? * 3600.0);
    let base = format!(
        "{}/fits-cutout",
        fetcher.options().endpoints.legacy.trim_end_matches('/')
    );
    let url = reqwest::Url::parse_with_params(
        &base,
        &[
            ("ra", format!("{ra:.6}")),
            ("dec", format!("{dec:.6}")),
            ("layer", layer.to_string()),
            ("pixscale", format!("{pixscale}")),
            ("bands", band.to_string()),
            ("size", size.to_string()),
            ("invvar", String::new()),
        ],
    )
    .map_err(|e| FetchError::InvalidParameter {
        name: "legacy base URL",
        reason: format!("{base:?}: {e}"),
    })?
    .to_string();
    let mut hdus = fetcher.get_fits(&url)?;
    let img = hdus.remove(0);
    let mut bad = img.data.mapv(|v| !v.is_finite());
    if let Some(iv) = hdus.first()
        && iv.data.dim() == img.data.dim()
    {
        ndarray::Zip::from(&mut bad)
            .and(&iv.data)
            .for_each(|b, &w| *b |= !(w.is_finite() && w > 0.0));
    }
    let mut header = img.header.clone();
    // Cubes (several bands) carry a third axis: the WCS reader only needs the celestial ones.
    header.remove("NAXIS3");
    let src = Grid::new(
        wcs_grid::Wcs::from_header(&header)?,
        img.data.ncols(),
        img.data.nrows(),
    )?;
    let data32 = img.data.mapv(|v| v as f32);
    let rep = reproject(
        &data32.view(),
        Some(&bad.view()),
        &src,
        grid,
        &ReprojectParams::default(),
    )?;
    let data = ndarray::Zip::from(&rep.image)
        .and(&rep.mask)
        .map_collect(|&v, &m| if m { f64::NAN } else { v as f64 });
    let (image, mask) = finish(&data);
    let mut out = grid_header(grid, "legacy-survey");
    out.set_with_comment("LSLAYER", layer, "Legacy Survey viewer layer");
    out.set_with_comment("FILTER", band.to_string().as_str(), "Legacy Survey band");
    out.set_with_comment("MAGZERO", 22.5, "nanomaggies");
    out.set_with_comment("LSPIXSC", pixscale, "[arcsec] pixel scale requested");
    Ok(Template {
        image,
        mask,
        header: out,
    })
}
