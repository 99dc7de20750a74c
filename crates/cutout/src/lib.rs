//! Postage stamps of difference-imaging candidates: make them, save and load them as
//! multi-extension FITS, adjust-fit them to reject dipoles, and plot them as PNG.
//! STDPipe's `cutouts` module in Rust (ALGORITHMS.md section 7).
//!
//! ```
//! use cutout::{AdjustParams, Candidate, CutoutOptions, adjust_cutout, get_cutout};
//! use ndarray::Array2;
//!
//! // A template star and the same star shifted by 0.4 px in the science image: a dipole.
//! let star = |y: f64, x: f64, x0: f64| 1000.0 * (-((x - x0).powi(2) + (y - 32.0).powi(2)) / 4.5).exp();
//! let sci = Array2::from_shape_fn((64, 64), |(y, x)| 100.0 + star(y as f64, x as f64, 32.4) as f32);
//! let conv = Array2::from_shape_fn((64, 64), |(y, x)| 100.0 + star(y as f64, x as f64, 32.0) as f32);
//! let err = Array2::from_elem((64, 64), 1.0f32);
//! let diff = &sci - &conv;
//! let opts = CutoutOptions {
//!     planes: vec![("convolved", conv.view()), ("err", err.view()), ("diff", diff.view())],
//!     ..Default::default()
//! };
//! let mut c = get_cutout(&sci.view(), &Candidate::at(32.0, 32.0), 10.0, &opts)?;
//! assert_eq!(c.size(), 21);
//! let fit = adjust_cutout(&mut c, &AdjustParams::default())?;
//! assert!((fit.dx - 0.4).abs() < 0.01 && fit.chi2 < 0.01 * fit.chi2_0);
//! # Ok::<(), cutout::CutoutError>(())
//! ```
//!
//! Conventions: pixel coordinates are 0-based with pixel centres at integers (FITS p = ours
//! p-1); a cutout of radius `r` has side `2*ceil(r)+1` and the candidate's pixel at its centre.
//! Pixels outside the parent image are NaN and flagged in the mask (`true` = bad). Plots draw
//! row 0 at the bottom, as ds9 does.

mod adjust;
mod error;
mod gallery;
mod io;
mod meta;
mod plot;
mod stamp;

pub use adjust::{ADJUSTED, AdjustParams, AdjustResult, adjust_cutout, chi2_sf};
pub use error::CutoutError;
pub use gallery::{GalleryItem, write_gallery};
pub use io::{MAX_META, load_cutout, write_cutout};
pub use meta::{MetaValue, j2000_name};
pub use plot::{
    ColorMap, MARK_COLOR, MASK_BAD, MASK_GOOD, Mark, MarkPos, NAN_COLOR, PlotParams, Stretch,
    default_title, layout, plot_cutout, save_plot,
};
pub use stamp::{
    Candidate, Cutout, CutoutOptions, IMAGE, MASK, MAX_RADIUS, get_cutout, shift_header_wcs,
};
