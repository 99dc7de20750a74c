//! Templates from HiPS (hips2fits and raw tiles), Pan-STARRS and the Legacy Survey, on the
//! science image's grid. The only crate of diffim that touches the network.
//!
//! ```
//! use survey_fetch::{SurveySpec, asinh_to_linear, tile_path};
//!
//! // `--survey` strings.
//! let spec: SurveySpec = "hips:PanSTARRS/DR1/r".parse()?;
//! assert_eq!(spec, SurveySpec::Hips2Fits { hips_id: "PanSTARRS/DR1/r".into() });
//! assert_eq!("ps1:i".parse::<SurveySpec>()?, SurveySpec::Ps1 { band: 'i' });
//! assert!("ps1:q".parse::<SurveySpec>().is_err());
//!
//! // The Pan-STARRS HiPS is asinh-scaled: x = 0.4 ln(10) v, linear = e^x - e^-x.
//! assert!((asinh_to_linear(2.5) - 2.0 * (2.5 * 0.4 * std::f64::consts::LN_10).sinh()).abs() < 1e-9);
//!
//! // Raw HiPS tiles live at Norder{k}/Dir{10000 floor(n / 10000)}/Npix{n}.fits.
//! assert_eq!(tile_path(11, 5_432_101), "Norder11/Dir5430000/Npix5432101.fits");
//! # Ok::<(), survey_fetch::FetchError>(())
//! ```
//!
//! Fetching (blocking; no network in this example, so it is not run):
//!
//! ```no_run
//! use survey_fetch::{FetchOptions, SurveySpec, fetch_template};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sci = fits_io::read_image::<f32>("sci.fits".as_ref(), &fits_io::Hdu::Primary)?;
//! let opts = FetchOptions { cache_dir: Some("cache".into()), ..Default::default() };
//! let t = fetch_template(&"ps1:r".parse::<SurveySpec>()?, &sci.header, sci.data.dim(), &opts)?;
//! assert_eq!(t.image.dim(), sci.data.dim());
//! # Ok(()) }
//! ```
//!
//! # Conventions
//!
//! * Every template comes back **on the requested grid** (the science image's WCS and shape):
//!   `image[[y, x]]` (`f32`, pixel (0, 0) centred on coordinate (0, 0)), a `mask` of the same
//!   shape (true = bad: no data, NaN, survey mask bits), and a header carrying the grid's WCS
//!   (never a WCS returned by a service) plus provenance (`TMPLSRC`, `MAGZERO` when known).
//! * Values are in the survey's units: Pan-STARRS linear counts with
//!   `MAGZERO = 25 + 2.5 log10(EXPTIME)`, Legacy Survey nanomaggies (`MAGZERO = 22.5`), HiPS
//!   values as stored (the Pan-STARRS HiPS linearised). Resampling preserves surface
//!   brightness (no pixel-area rescaling).
//! * The public API is blocking: each call builds a tokio runtime and a reqwest client
//!   (rustls with the `ring` provider and Mozilla's roots from `webpki-root-certs`, so no
//!   system certificates are needed). Calling it from inside an async runtime gives
//!   [`FetchError::Client`] instead of a deadlock.
//!
//! # Transport
//!
//! [`FetchOptions`]: whole-request timeout; retries with exponential backoff on timeouts,
//! connection errors, truncated bodies (fewer bytes than `Content-Length`) and 5xx, never on
//! 4xx, HTML pages or unparsable FITS; at most `max_in_flight` requests at once (10 at most for
//! Pan-STARRS); an on-disk cache keyed by `sha256(URL)`, written atomically
//! ([`fits_io::write_atomic`]) only after the body has been parsed as FITS (so a broken or
//! HTML body is never cached, and a cache entry that stops parsing is dropped); an `offline`
//! mode ([`FetchError::CacheMiss`] on a miss); base URLs in [`Endpoints`] (environment
//! variables [`ENV_HIPS2FITS_URL`], [`ENV_PS1_URL`], [`ENV_LEGACY_URL`]); a progress callback
//! for multi-file downloads.
//!
//! # Services and standards
//!
//! * CDS hips2fits (Boch et al., <https://alasky.cds.unistra.fr/hips-image-services/hips2fits>):
//!   [`hips2fits`]; error bodies `{title, description}` become [`FetchError::Service`].
//! * IVOA HiPS 1.0 (Fernique et al. 2017, IVOA Recommendation, "HiPS - Hierarchical
//!   Progressive Survey"), HEALPix NESTED (Gorski et al. 2005, ApJ 622, 759) through
//!   `cdshealpix`: [`hips_tiles`] reads `properties` and raw FITS tiles from any HiPS server or
//!   local mirror (the tile pixel layout is described in [`hips_tiles`]'s module).
//! * Pan-STARRS image server (`ps1filenames.py`, `fitscut.cgi`; Flewelling et al. 2020,
//!   ApJS 251, 7): [`ps1()`].
//! * Legacy Surveys viewer `fits-cutout` (Dey et al. 2019, AJ 157, 168): [`legacy()`].

mod error;
mod hips;
mod hips2fits;
mod legacy;
mod mask;
mod ps1;
mod spec;
mod transport;

use fits_io::Header;
use ndarray::Array2;
use wcs_grid::{Grid, Wcs};

pub use error::FetchError;
pub use hips::{
    HipsFrame, HipsProperties, HipsTilesParams, MAX_TILES, choose_order, hips_tiles,
    icrs_to_galactic, parse_properties, subhash_of_tile_pixel, tile_path, tile_pixel_of_subhash,
    tile_pixel_scale,
};
pub use hips2fits::{
    Hips2FitsParams, asinh_to_linear, grid_from_fov, hips2fits, hips2fits_url, is_asinh_scaled,
    wcs_json,
};
pub use legacy::{LEGACY_MAX_SIZE, LEGACY_PIXEL_SCALE, legacy, legacy_cutout_size};
pub use mask::{CatalogStar, MaskParams, mask_template, read_catalog_csv};
pub use ps1::{
    PS1_IGNORED_MASK_BIT, PS1_MAX_CUTOUT, PS1_MAX_IN_FLIGHT, PS1_PIXEL_SCALE, Ps1File,
    parse_ps1_table, ps1, ps1_linearize, ps1_mask_is_bad, ps1_zero_point,
};
pub use spec::{DEFAULT_LEGACY_LAYER, SurveySpec};
pub use transport::{
    ENV_HIPS2FITS_URL, ENV_LEGACY_URL, ENV_PS1_URL, Endpoints, FetchOptions, ProgressEvent,
    ProgressFn, parse_fits_bytes,
};

/// A template on the requested grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Pixels `[y, x]` on the grid; NaN where there is no data.
    pub image: Array2<f32>,
    /// True = bad (no data, NaN, survey mask bits).
    pub mask: Array2<bool>,
    /// The grid's WCS and provenance cards (`TMPLSRC`, `MAGZERO`, ...).
    pub header: Header,
}

/// Fetches a template from `spec` on the grid given by `grid_header`'s WCS and `shape`
/// (`(ny, nx)`), with each source's default parameters.
///
/// # Errors
/// [`FetchError::Wcs`] for an unusable header; everything the source functions return.
pub fn fetch_template(
    spec: &SurveySpec,
    grid_header: &Header,
    shape: (usize, usize),
    opts: &FetchOptions,
) -> Result<Template, FetchError> {
    let grid = Grid::new(Wcs::from_header(grid_header)?, shape.1, shape.0)?;
    fetch_template_on(spec, &grid, opts)
}

/// [`fetch_template`] on a [`Grid`].
///
/// # Errors
/// As [`fetch_template`].
pub fn fetch_template_on(
    spec: &SurveySpec,
    grid: &Grid,
    opts: &FetchOptions,
) -> Result<Template, FetchError> {
    let fetcher = transport::Fetcher::new(opts)?;
    match spec {
        SurveySpec::Ps1 { band } => ps1::ps1_with(&fetcher, *band, grid),
        SurveySpec::Legacy { layer, band } => legacy::legacy_with(&fetcher, layer, *band, grid),
        SurveySpec::Hips2Fits { hips_id } => {
            hips2fits::hips2fits_with(&fetcher, hips_id, grid, &Hips2FitsParams::default())
        }
        SurveySpec::HipsTiles { base } => {
            hips::hips_tiles_with(&fetcher, base, grid, &HipsTilesParams::default())
        }
    }
}
