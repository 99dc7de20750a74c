//! FITS images, headers, masks and multi-extension files for diffim, through cfitsio (bundled).
//!
//! ```
//! use fits_io::{read_image, read_mef, write_image, write_mef, Hdu, Header, Plane, PlaneData,
//!               WriteOptions};
//! use ndarray::Array2;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("image.fits");
//!
//! // A 3 x 4 image: 3 rows (NAXIS2), 4 columns (NAXIS1); data[[y, x]].
//! let data = Array2::from_shape_fn((3, 4), |(y, x)| (10 * y + x) as f32);
//! let mut header = Header::new();
//! header.set_with_comment("GAIN", 1.5, "e-/ADU");
//! header.add_history("made by the fits-io doctest");
//! write_image(&path, &data.view(), &header, WriteOptions::default())?;
//!
//! let img = read_image::<f32>(&path, &Hdu::Primary)?;
//! assert_eq!(img.data, data);
//! assert_eq!(img.header.get_f64("GAIN")?, 1.5);
//! assert_eq!(img.header.get_i64("NAXIS1")?, 4); // FITS order: NAXIS1 = columns = x
//!
//! // Writing again without `overwrite` is refused and leaves the file alone.
//! assert!(write_image(&path, &data.view(), &header, WriteOptions::default()).is_err());
//!
//! // Multi-extension files: one named image extension per plane.
//! let mef = dir.path().join("planes.fits");
//! let planes = vec![
//!     Plane { name: "SCI".into(), data: PlaneData::F32(data.clone()), header: Header::new() },
//!     Plane { name: "MASK".into(), data: PlaneData::U8(Array2::zeros((3, 4))),
//!             header: Header::new() },
//! ];
//! write_mef(&mef, &Header::new(), &planes, WriteOptions::default())?;
//! let (_primary, back) = read_mef(&mef)?;
//! assert_eq!(back[1].name, "MASK");
//! let sci = read_image::<f64>(&mef, &Hdu::Name("SCI".into()))?;
//! assert_eq!(sci.data[[2, 3]], 23.0);
//! # Ok(())
//! # }
//! ```
//!
//! # Conventions
//!
//! * **Axis order.** Arrays are `ndarray::Array2` indexed `[y, x]` = `[row, column]`: the row
//!   axis is FITS `NAXIS2`, the column axis `NAXIS1` (which varies fastest in the file).
//!   Shapes in errors ([`FitsError::WrongDimensions`]) are given in FITS order (NAXIS1 first).
//! * **Origin.** FITS pixels are 1-based, arrays 0-based: FITS pixel `(i, j)` (and `CRPIX`) is
//!   array element `[j - 1, i - 1]`. This crate does no coordinate conversion itself.
//! * **Scaling.** Readers apply `BSCALE`/`BZERO` (so uint16 data stored as BITPIX 16 with
//!   `BZERO = 32768` reads as 0..65535); `BLANK` pixels of integer images read as NaN.
//!   Writers write unscaled data: `f32` -> BITPIX -32, `f64` -> -64, masks -> 8 (or 16).
//! * **Masks.** `Array2<bool>`, `true` = bad. Reading: non-zero or NaN = bad. Writing: 1 / 0.
//! * **Headers.** [`Header`] keeps every card in file order, COMMENT, HISTORY, HIERARCH and long
//!   strings (`CONTINUE` records are joined into one card; a `LONGSTRN` card is an ordinary card
//!   and is kept). The structural keywords (SIMPLE, XTENSION, BITPIX, NAXIS, NAXISn, EXTEND,
//!   PCOUNT, GCOUNT, BSCALE, BZERO, BLANK, CHECKSUM, DATASUM; see [`MANAGED_KEYWORDS`]) are kept
//!   on read but managed by the writers, never copied: read -> write -> read keeps every other
//!   card, in order, without duplicates.
//! * **Atomic writes.** Every writer builds the file in memory, writes it to a temporary file in
//!   the target directory and renames it over the target ([`write_atomic`]): a killed process
//!   never leaves a half-written file under the final name. An existing target is replaced only
//!   with [`WriteOptions::overwrite`]; otherwise [`FitsError::AlreadyExists`].
//! * **Hostile files.** Files are read into memory by Rust and handed to cfitsio's memory
//!   driver. The primary header is checked before cfitsio sees it, NAXISn products are checked
//!   against the file size and [`MAX_PIXELS`] before any allocation, and cfitsio status codes of
//!   malformed files map to structured [`FitsError`] variants. Nothing panics on bad input.
//! * **Threads.** Every call opens its own cfitsio handle (cfitsio is built re-entrant); the
//!   functions can be called from several threads at once.
//!
//! Standard: FITS 4.0 (Chen et al. 2016); long strings: the OGIP `CONTINUE` convention;
//! `HIERARCH`: the ESO convention.

// This crate is the one boundary to the cfitsio C library: every raw call is in `ffi.rs`,
// wrapped by safe functions that check cfitsio's status code. No other crate uses unsafe.
#![allow(unsafe_code)]

mod error;
mod ffi;
mod header;
mod io;

pub use error::{FitsError, HeaderError};
pub use ffi::CType;
pub use header::{Card, Header, MANAGED_KEYWORDS, Value, is_managed, parse_record};
pub use io::{
    FitsFloat, Hdu, Image, MAX_PIXELS, Plane, PlaneData, WriteOptions, hdu_count, read_header,
    read_image, read_image_plane, read_mask, read_mask_for, read_mef, write_atomic, write_image,
    write_mask, write_mef, write_plane_file,
};
/// The `ndarray` version of the public API.
pub use ndarray;
