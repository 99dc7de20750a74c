//! World coordinate systems, pixel grids, cutout sub-grids and reprojection for diffim.
//!
//! ```
//! use wcs_grid::{Grid, Interpolation, ReprojectParams, reproject};
//! use ndarray::Array2;
//!
//! // A 0.5"/px north-up grid and a rotated, shifted 0.6"/px grid over the same field.
//! let src = Grid::from_center(150.0, 2.2, 128, 128, 0.5, 0.0)?;
//! let dst = Grid::from_center(150.0 + 2.0 / 3600.0, 2.2, 96, 96, 0.6, 25.0)?;
//!
//! // Pixels are 0-based, angles in degrees: the reference pixel is the grid centre.
//! let (ra, dec) = src.wcs().pixel_to_world(63.5, 63.5).unwrap();
//! assert!((ra - 150.0).abs() < 1e-12 && (dec - 2.2).abs() < 1e-12);
//! let (x, y) = src.wcs().world_to_pixel(ra, dec).unwrap();
//! assert!((x - 63.5).abs() < 1e-9 && (y - 63.5).abs() < 1e-9);
//!
//! // Reproject a flat image: the value is kept and nothing is masked inside the footprint.
//! let image = Array2::from_elem((128, 128), 7.0f32);
//! let params = ReprojectParams { interpolation: Interpolation::Lanczos3, ..Default::default() };
//! let out = reproject(&image.view(), None, &src, &dst, &params)?;
//! assert!((out.image[[48, 48]] - 7.0).abs() < 1e-5 && !out.mask[[48, 48]]);
//! # Ok::<(), wcs_grid::WcsError>(())
//! ```
//!
//! # Conventions
//!
//! * **Pixels are 0-based**: pixel `(0, 0)` is centred on coordinate `(0.0, 0.0)`; FITS pixel
//!   `p` is our `p - 1`, so `CRPIX` is stored minus one ([`WcsParams::crpix`]). Points are
//!   `(x, y)`; arrays are `[y, x]` with shape `(ny, nx)`.
//! * **World coordinates are degrees**, longitude in `[0, 360)`. ICRS and FK5 (J2000) are
//!   treated as the same frame (they differ by < 0.03"); FK4, other equinoxes and ecliptic
//!   systems are rejected ([`WcsError::UnsupportedFrame`]). Galactic GLON/GLAT axes are read
//!   with the same maths, without frame conversion.
//! * Points outside a projection's domain give `None` (NaN in the array versions); bad header
//!   data gives a [`WcsError`]; nothing panics on input data.
//!
//! # What is implemented, and where it comes from
//!
//! * Linear part: CD matrix, or PC x CDELT, or CDELT + legacy CROTA2 (Greisen & Calabretta
//!   2002, A&A 395, 1061, sect. 2.1-2.2 and 6.1). CD together with PC is rejected as
//!   contradictory.
//! * Projections TAN, SIN (no slant), ARC, ZEA, STG, CAR and the native -> celestial rotation
//!   with LONPOLE/LATPOLE defaults (Calabretta & Greisen 2002, A&A 395, 1077: eqs. 2 and 5,
//!   sect. 2.4 for the pole, sect. 5.1.3-5.1.8 and 5.2.3 for the projections). Written here
//!   rather than with `mapproj` to get the general pole solution, `None` outside the domain
//!   and full precision near the reference point.
//! * SIP distortion (Shupe et al. 2005, ASP Conf. Ser. 347, 491): forward A/B; the inverse
//!   starts from AP/BP when present and is always refined by Newton iterations to 1e-10 px.
//! * TPV (the FITS registry's TPV convention, <https://fits.gsfc.nasa.gov/registry/tpvwcs/tpv.html>):
//!   PV1_0..39 and PV2_0..39 polynomials in the intermediate world coordinates, radial terms
//!   included, inverted by Newton iterations.
//! * Pinned against astropy 8 / wcslib on 11 headers (real NIRCam and DECam TPV headers among
//!   them; `tests/golden/make_golden.py`): pixel -> world and world -> pixel agree to better
//!   than 1e-8 px.
//!
//! # Reprojection
//!
//! [`reproject`] maps target pixels to source pixels exactly on a coarse grid of nodes and
//! bilinearly in between (error measured and bounded, [`CoordMap`]), then resamples rows in
//! parallel with Lanczos-3 (default), bilinear or nearest interpolation, optionally conserving
//! flux; masks are reprojected conservatively. See the [`reproject()`] docs.

mod distortion;
mod error;
mod grid;
mod keywords;
mod proj;
mod reproject;
mod wcs;

pub use distortion::{MAX_SIP_ORDER, Sip, SipPolynomial, TPV_NCOEFF, TPV_TERMS, Tpv};
pub use error::WcsError;
pub use grid::{Grid, MAX_GRID_SIDE};
pub use keywords::{KeywordSink, KeywordSource};
pub use proj::Projection;
pub use reproject::{CoordMap, Interpolation, ReprojectParams, Reprojection, reproject};
pub use wcs::{Frame, Wcs, WcsParams};
