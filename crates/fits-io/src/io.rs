//! Reading and writing images, masks and multi-extension files.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};

use crate::error::FitsError;
use crate::ffi::{CType, Fits, HduKind};
use crate::header::Header;

/// Largest image (number of pixels) the readers will allocate: 2^30 (e.g. 32768 x 32768).
/// Together with the check of NAXISn against the file size, a hostile header can never make
/// the reader allocate more than the file holds, nor more than this.
pub const MAX_PIXELS: u64 = 1 << 30;

/// Which header-data unit to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Hdu {
    /// The primary HDU (index 0).
    #[default]
    Primary,
    /// 0-based HDU index (0 = primary, 1 = first extension).
    Index(usize),
    /// The first HDU whose `EXTNAME` (or `HDUNAME`) matches, case-insensitively.
    Name(String),
}

impl Hdu {
    fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Options of every writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace an existing file (default false: an existing file gives
    /// [`FitsError::AlreadyExists`] and is left untouched).
    pub overwrite: bool,
}

impl WriteOptions {
    /// Options that replace an existing file.
    pub fn overwrite() -> Self {
        Self { overwrite: true }
    }
}

/// An image and its header.
#[derive(Debug, Clone, PartialEq)]
pub struct Image<T> {
    /// Pixels, indexed `[y, x]` (row = FITS NAXIS2 axis, column = NAXIS1 axis), 0-based.
    pub data: Array2<T>,
    /// Every card of the HDU's header, in order (structural cards included).
    pub header: Header,
}

/// Floating-point pixel types of [`read_image`] and [`write_image`]: `f32` and `f64` (sealed).
pub trait FitsFloat: CType + ndarray::NdFloat {
    /// The BITPIX written for this type (-32 or -64).
    const BITPIX: i32;
}
impl FitsFloat for f32 {
    const BITPIX: i32 = -32;
}
impl FitsFloat for f64 {
    const BITPIX: i32 = -64;
}

/// The pixels of one plane of a multi-extension file.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaneData {
    /// BITPIX -32.
    F32(Array2<f32>),
    /// BITPIX -64.
    F64(Array2<f64>),
    /// BITPIX 8 (masks, flags).
    U8(Array2<u8>),
    /// BITPIX 16 (masks, flags).
    I16(Array2<i16>),
}

impl PlaneData {
    /// Shape `[rows, cols]`.
    pub fn dim(&self) -> (usize, usize) {
        match self {
            PlaneData::F32(a) => a.dim(),
            PlaneData::F64(a) => a.dim(),
            PlaneData::U8(a) => a.dim(),
            PlaneData::I16(a) => a.dim(),
        }
    }

    /// Size of the pixel data in bytes.
    pub fn bytes(&self) -> usize {
        let (ny, nx) = self.dim();
        let b = match self {
            PlaneData::F32(_) => 4,
            PlaneData::F64(_) => 8,
            PlaneData::U8(_) => 1,
            PlaneData::I16(_) => 2,
        };
        ny * nx * b
    }

    /// The pixels as `f32` (a copy; integers convert exactly, f64 rounds).
    pub fn to_f32(&self) -> Array2<f32> {
        match self {
            PlaneData::F32(a) => a.clone(),
            PlaneData::F64(a) => a.mapv(|v| v as f32),
            PlaneData::U8(a) => a.mapv(f32::from),
            PlaneData::I16(a) => a.mapv(f32::from),
        }
    }

    /// The pixels as a mask: non-zero or NaN = true (bad).
    pub fn to_mask(&self) -> Array2<bool> {
        match self {
            PlaneData::F32(a) => a.mapv(|v| v != 0.0 || v.is_nan()),
            PlaneData::F64(a) => a.mapv(|v| v != 0.0 || v.is_nan()),
            PlaneData::U8(a) => a.mapv(|v| v != 0),
            PlaneData::I16(a) => a.mapv(|v| v != 0),
        }
    }
}

/// One extension of a multi-extension file: its `EXTNAME`, pixels and header.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// `EXTNAME` of the extension (empty when the file had none).
    pub name: String,
    /// The pixels.
    pub data: PlaneData,
    /// The extension's header (on read: every card, structural ones included).
    pub header: Header,
}

// ----------------------------------------------------------------------------------------------
// Opening and validating
// ----------------------------------------------------------------------------------------------

struct Opened {
    fits: Fits,
    path: PathBuf,
    len: u64,
    /// BITPIX of the primary header as parsed by us (for error messages), if any.
    primary_bitpix: Option<i64>,
}

fn io_err(path: &Path, e: std::io::Error) -> FitsError {
    if e.kind() == std::io::ErrorKind::NotFound {
        FitsError::NotFound {
            path: path.to_owned(),
        }
    } else {
        FitsError::Io {
            path: path.to_owned(),
            source: e,
        }
    }
}

/// Check the start of the file ourselves (cheap, precise errors), then hand it to cfitsio.
fn open(path: &Path) -> Result<Opened, FitsError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let len = bytes.len() as u64;
    let not_fits = |reason| FitsError::NotFits {
        path: path.to_owned(),
        reason,
    };
    if bytes.is_empty() {
        return Err(not_fits("empty file"));
    }
    if !bytes.starts_with(b"SIMPLE  =") {
        return Err(not_fits("does not start with SIMPLE  ="));
    }
    // Scan the primary header for END (records are ASCII; anything else is corrupt).
    let mut primary_bitpix = None;
    let mut found_end = false;
    for (k, rec) in bytes.chunks(80).enumerate() {
        let offset = k * 80;
        if rec.len() < 80 {
            break;
        }
        if rec.starts_with(b"BITPIX  =") {
            primary_bitpix = std::str::from_utf8(&rec[10..])
                .ok()
                .and_then(|s| s.split('/').next())
                .and_then(|s| s.trim().parse::<i64>().ok());
        }
        if rec.starts_with(b"END") && rec[3..].iter().all(|&b| b == b' ') {
            found_end = true;
            break;
        }
        if rec.iter().any(|&b| !(0x20..=0x7e).contains(&b)) {
            // Binary bytes in the first block: not a FITS header; after a whole block of
            // valid records: the header ran into data without an END card.
            if offset < 2880 {
                return Err(not_fits("header contains non-ASCII bytes before END"));
            }
            return Err(FitsError::MissingEnd {
                path: path.to_owned(),
                hdu: 0,
            });
        }
    }
    if !found_end {
        return Err(if len % 2880 != 0 {
            FitsError::Truncated {
                path: path.to_owned(),
                what: "header",
                needed: len.div_ceil(2880) * 2880,
                actual: len,
            }
        } else {
            FitsError::MissingEnd {
                path: path.to_owned(),
                hdu: 0,
            }
        });
    }
    let fits = Fits::open_bytes(bytes, &path.to_string_lossy())
        .map_err(|e| classify(e, path, 0, len, primary_bitpix))?;
    Ok(Opened {
        fits,
        path: path.to_owned(),
        len,
        primary_bitpix,
    })
}

/// Map cfitsio status codes of a malformed file onto structured variants.
fn classify(e: FitsError, path: &Path, hdu: usize, len: u64, bitpix: Option<i64>) -> FitsError {
    let FitsError::Cfitsio { code, message, .. } = &e else {
        return e;
    };
    let bad = |keyword: &'static str| FitsError::BadHeader {
        path: path.to_owned(),
        keyword,
        code: *code,
        message: message.clone(),
    };
    match *code {
        107 | 108 => FitsError::Truncated {
            path: path.to_owned(),
            what: "header",
            needed: len.div_ceil(2880) * 2880 + 2880,
            actual: len,
        },
        210 => FitsError::MissingEnd {
            path: path.to_owned(),
            hdu,
        },
        211 => FitsError::UnsupportedBitpix {
            path: path.to_owned(),
            bitpix: bitpix.unwrap_or(0),
        },
        212 | 223 => bad("NAXIS"),
        213 | 224 | 209 => bad("NAXISn"),
        214 | 228 => bad("PCOUNT"),
        215 | 229 => bad("GCOUNT"),
        220 | 221 => bad("SIMPLE"),
        222 => bad("BITPIX"),
        225 | 251 => bad("XTENSION"),
        216 | 230..=232 | 234 | 241 => bad("table keywords"),
        202..=208 | 252 | 253 => bad("header record"),
        _ => e,
    }
}

impl Opened {
    /// Move to the HDU; errors for missing HDUs and tables.
    fn select(&mut self, hdu: &Hdu) -> Result<usize, FitsError> {
        let kind = match hdu {
            Hdu::Primary => self.fits.move_to(0),
            Hdu::Index(0) => self.fits.move_to(0),
            Hdu::Index(i) => self.move_to_index(*i),
            Hdu::Name(name) => match self.fits.move_to_name(name) {
                Err(FitsError::Cfitsio { code: 301, .. }) => Err(FitsError::HduNotFound {
                    path: self.path.clone(),
                    hdu: hdu.describe(),
                }),
                other => other,
            },
        }
        .map_err(|e| {
            let at = if let Hdu::Index(i) = hdu { *i } else { 0 };
            classify(e, &self.path, at, self.len, None)
        })?;
        let index = self.fits.current_index();
        match kind {
            HduKind::Image => Ok(index),
            HduKind::AsciiTable | HduKind::BinaryTable => Err(FitsError::NotAnImage {
                path: self.path.clone(),
                hdu: hdu.describe(),
                kind: if kind == HduKind::AsciiTable {
                    "ASCII table"
                } else {
                    "binary table"
                },
            }),
        }
    }

    /// Walk HDU by HDU so that "no such HDU" and "file cut inside an HDU" are told apart.
    fn move_to_index(&mut self, target: usize) -> Result<HduKind, FitsError> {
        let mut kind = self.fits.move_to(0)?;
        for j in 1..=target {
            let (_, _, end) = self.fits.hdu_offsets()?;
            if end >= self.len {
                return Err(FitsError::HduNotFound {
                    path: self.path.clone(),
                    hdu: Hdu::Index(target).describe(),
                });
            }
            kind = self.fits.move_to(j)?;
        }
        Ok(kind)
    }

    /// Image parameters with every size check done before any allocation.
    fn checked_shape(&mut self) -> Result<(i64, Vec<u64>), FitsError> {
        let p = self
            .fits
            .img_params()
            .map_err(|e| classify(e, &self.path, 0, self.len, self.primary_bitpix))?;
        if !matches!(p.bitpix, 8 | 16 | 32 | 64 | -32 | -64) {
            return Err(FitsError::UnsupportedBitpix {
                path: self.path.clone(),
                bitpix: p.bitpix,
            });
        }
        let mut pixels: u64 = 1;
        for &n in &p.naxes {
            pixels = pixels.saturating_mul(n);
        }
        if p.naxes.is_empty() {
            pixels = 0;
        }
        if pixels > MAX_PIXELS {
            return Err(FitsError::TooLarge {
                path: self.path.clone(),
                pixels,
                limit: MAX_PIXELS,
            });
        }
        let (_, data_start, _) = self.fits.hdu_offsets()?;
        let needed = data_start + pixels * (p.bitpix.unsigned_abs() / 8);
        if needed > self.len {
            return Err(FitsError::Truncated {
                path: self.path.clone(),
                what: "data",
                needed,
                actual: self.len,
            });
        }
        Ok((p.bitpix, p.naxes))
    }

    fn header(&mut self) -> Result<Header, FitsError> {
        let recs = self.fits.read_records()?;
        Ok(Header::from_records(&recs))
    }

    /// Read `ny * nx` pixels starting at 0-based element `offset` (the shape was checked by
    /// [`Opened::checked_shape`], so the allocation is bounded by the file size).
    fn pixels<T: CType>(
        &mut self,
        ny: usize,
        nx: usize,
        offset: u64,
        bitpix: i64,
    ) -> Result<Array2<T>, FitsError> {
        let n = ny * nx;
        let mut buf = vec![T::NAN; n];
        if n > 0 {
            self.fits
                .read_pixels(offset + 1, &mut buf, bitpix > 0)
                .map_err(|e| classify(e, &self.path, 0, self.len, None))?;
        }
        Array2::from_shape_vec((ny, nx), buf).map_err(|_| FitsError::ShapeMismatch {
            what: "pixel buffer".into(),
            expected: vec![ny, nx],
            actual: vec![n],
        })
    }
}

fn wrong_dims(path: &Path, hdu: &Hdu, shape: &[u64], expected: String) -> FitsError {
    FitsError::WrongDimensions {
        path: path.to_owned(),
        hdu: hdu.describe(),
        shape: shape.to_vec(),
        expected,
    }
}

/// (rows, cols) of a 2-D image; trailing axes of length 1 (NAXIS3 = 1) are accepted.
fn shape_2d(path: &Path, hdu: &Hdu, naxes: &[u64]) -> Result<(usize, usize), FitsError> {
    let mut eff = naxes;
    while eff.len() > 2 && eff.last() == Some(&1) {
        eff = &eff[..eff.len() - 1];
    }
    if eff.len() != 2 {
        let expected = if eff.len() == 3 {
            "2-D image (use read_image_plane for a cube)".to_owned()
        } else {
            "2-D image".to_owned()
        };
        return Err(wrong_dims(path, hdu, naxes, expected));
    }
    // Both fit usize: their product is <= MAX_PIXELS.
    Ok((eff[1] as usize, eff[0] as usize))
}

// ----------------------------------------------------------------------------------------------
// Public readers
// ----------------------------------------------------------------------------------------------

/// Read a 2-D image HDU as `f32` or `f64`, with BSCALE/BZERO applied (BLANK pixels of integer
/// images become NaN), and its header.
///
/// Accepts BITPIX 8, 16, 32, 64, -32, -64 and NAXIS = 2 (or more axes whose extra lengths are
/// all 1). A cube gives [`FitsError::WrongDimensions`] naming its shape: use
/// [`read_image_plane`].
pub fn read_image<T: FitsFloat>(path: &Path, hdu: &Hdu) -> Result<Image<T>, FitsError> {
    let mut f = open(path)?;
    f.select(hdu)?;
    let (bitpix, naxes) = f.checked_shape()?;
    let (ny, nx) = shape_2d(path, hdu, &naxes)?;
    let header = f.header()?;
    let data = f.pixels::<T>(ny, nx, 0, bitpix)?;
    Ok(Image { data, header })
}

/// Read plane `plane` (0-based, along NAXIS3) of a 3-D cube; a 2-D image has one plane (0).
pub fn read_image_plane<T: FitsFloat>(
    path: &Path,
    hdu: &Hdu,
    plane: usize,
) -> Result<Image<T>, FitsError> {
    let mut f = open(path)?;
    f.select(hdu)?;
    let (bitpix, naxes) = f.checked_shape()?;
    let mut eff: &[u64] = &naxes;
    while eff.len() > 3 && eff.last() == Some(&1) {
        eff = &eff[..eff.len() - 1];
    }
    let nplanes = match eff.len() {
        2 => 1,
        3 => eff[2],
        _ => {
            return Err(wrong_dims(
                path,
                hdu,
                &naxes,
                "2-D image or 3-D cube".into(),
            ));
        }
    };
    if plane as u64 >= nplanes {
        return Err(wrong_dims(
            path,
            hdu,
            &naxes,
            format!("a cube with more than {plane} planes"),
        ));
    }
    let (ny, nx) = (eff[1] as usize, eff[0] as usize);
    let header = f.header()?;
    let data = f.pixels::<T>(ny, nx, (plane * ny * nx) as u64, bitpix)?;
    Ok(Image { data, header })
}

/// Read a mask: `true` (bad) where the pixel is non-zero or NaN. Any BITPIX.
pub fn read_mask(path: &Path, hdu: &Hdu) -> Result<Array2<bool>, FitsError> {
    let img = read_image::<f64>(path, hdu)?;
    Ok(img.data.mapv(|v| v != 0.0 || v.is_nan()))
}

/// Read a mask and check that it has the shape `[rows, cols]` of its image.
pub fn read_mask_for(
    path: &Path,
    hdu: &Hdu,
    image_shape: (usize, usize),
) -> Result<Array2<bool>, FitsError> {
    let m = read_mask(path, hdu)?;
    if m.dim() != image_shape {
        return Err(FitsError::ShapeMismatch {
            what: format!("mask {}", path.display()),
            expected: vec![image_shape.0, image_shape.1],
            actual: vec![m.nrows(), m.ncols()],
        });
    }
    Ok(m)
}

/// Read only the header of an HDU (any HDU type, tables included).
pub fn read_header(path: &Path, hdu: &Hdu) -> Result<Header, FitsError> {
    let mut f = open(path)?;
    match f.select(hdu) {
        Ok(_) | Err(FitsError::NotAnImage { .. }) => {}
        Err(e) => return Err(e),
    }
    f.header()
}

/// Number of HDUs in the file (primary included).
pub fn hdu_count(path: &Path) -> Result<usize, FitsError> {
    let mut f = open(path)?;
    let len = f.len;
    f.fits
        .num_hdus()
        .map_err(|e| classify(e, path, 0, len, None))
}

/// Read a multi-extension file: the primary header and every image extension as a [`Plane`]
/// (pixel type from BITPIX: -32 -> F32, -64 -> F64, 8 -> U8, 16 -> I16 when unscaled; scaled or
/// 32/64-bit integers -> F64). A table extension gives [`FitsError::NotAnImage`].
pub fn read_mef(path: &Path) -> Result<(Header, Vec<Plane>), FitsError> {
    let mut f = open(path)?;
    f.fits
        .move_to(0)
        .map_err(|e| classify(e, path, 0, f.len, None))?;
    let primary = f.header()?;
    let mut planes = Vec::new();
    let mut index = 1;
    loop {
        let (_, _, end) = f.fits.hdu_offsets()?;
        if end >= f.len {
            break;
        }
        let hdu = Hdu::Index(index);
        let kind = f
            .fits
            .move_to(index)
            .map_err(|e| classify(e, path, index, f.len, None))?;
        if kind != HduKind::Image {
            return Err(FitsError::NotAnImage {
                path: path.to_owned(),
                hdu: hdu.describe(),
                kind: if kind == HduKind::AsciiTable {
                    "ASCII table"
                } else {
                    "binary table"
                },
            });
        }
        let (bitpix, naxes) = f.checked_shape()?;
        let (ny, nx) = shape_2d(path, &hdu, &naxes)?;
        let header = f.header()?;
        let scaled = header
            .get_f64_opt("BSCALE")
            .ok()
            .flatten()
            .is_some_and(|v| v != 1.0)
            || header
                .get_f64_opt("BZERO")
                .ok()
                .flatten()
                .is_some_and(|v| v != 0.0);
        let data = match (bitpix, scaled) {
            (-32, _) => PlaneData::F32(f.pixels::<f32>(ny, nx, 0, bitpix)?),
            (8, false) => PlaneData::U8(f.pixels::<u8>(ny, nx, 0, bitpix)?),
            (16, false) => PlaneData::I16(f.pixels::<i16>(ny, nx, 0, bitpix)?),
            _ => PlaneData::F64(f.pixels::<f64>(ny, nx, 0, bitpix)?),
        };
        let name = header
            .get_str("EXTNAME")
            .map(str::to_owned)
            .unwrap_or_default();
        planes.push(Plane { name, data, header });
        index += 1;
    }
    Ok((primary, planes))
}

// ----------------------------------------------------------------------------------------------
// Writers
// ----------------------------------------------------------------------------------------------

fn contiguous<'a, T: Copy>(a: &'a ArrayView2<'_, T>) -> std::borrow::Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// Append an image HDU with the header's user cards (managed keywords skipped).
fn add_hdu<T: CType>(
    fits: &mut Fits,
    bitpix: i32,
    data: Option<&ArrayView2<T>>,
    header: &Header,
) -> Result<(), FitsError> {
    let naxes: Vec<i64> = match data {
        Some(a) => vec![a.ncols() as i64, a.nrows() as i64],
        None => Vec::new(),
    };
    fits.create_image(bitpix, &naxes)?;
    for card in header.user_cards() {
        for rec in card.to_records()? {
            fits.write_record(&rec)?;
        }
    }
    if let Some(a) = data
        && !a.is_empty()
    {
        fits.write_pixels(&contiguous(a))?;
    }
    Ok(())
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, flushed to disk,
/// then renamed over the target. With `overwrite: false` an existing target gives
/// [`FitsError::AlreadyExists`] (checked again at rename time, so no race replaces it). On any
/// error the temporary file is removed and the target is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], opts: WriteOptions) -> Result<(), FitsError> {
    if !opts.overwrite && path.exists() {
        return Err(FitsError::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // `.<name>.tmpXXXXXX`: hidden, recognisable next to its target, matched by `*.fits.tmp*`.
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".tmp");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(dir)
        .map_err(|e| io_err(dir, e))?;
    tmp.write_all(bytes).map_err(|e| io_err(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
    let persisted = if opts.overwrite {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    match persisted {
        Ok(_) => {}
        // The PersistError owns the temporary file: dropping it deletes it.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(FitsError::AlreadyExists {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(io_err(path, e.error)),
    }
    // Make the rename itself durable (best effort: not every platform can open a directory).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Write a 2-D image (BITPIX -32 for `f32`, -64 for `f64`) with the header's cards, atomically.
///
/// The writer manages the structural keywords itself (SIMPLE, BITPIX, NAXIS, NAXISn, EXTEND,
/// PCOUNT, GCOUNT, BSCALE, BZERO, BLANK, CHECKSUM, DATASUM): those cards of `header` are not
/// copied, so a header read from another file can be passed back as is. Every other card is
/// written in order.
pub fn write_image<T: FitsFloat>(
    path: &Path,
    data: &ArrayView2<T>,
    header: &Header,
    opts: WriteOptions,
) -> Result<(), FitsError> {
    if !opts.overwrite && path.exists() {
        return Err(FitsError::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let mut fits = Fits::create_mem(data.len() * std::mem::size_of::<T>())?;
    add_hdu(&mut fits, T::BITPIX, Some(data), header)?;
    write_atomic(path, &fits.finish()?, opts)
}

/// Write a mask as BITPIX 8 (1 = bad, 0 = good), atomically.
pub fn write_mask(
    path: &Path,
    mask: &ArrayView2<bool>,
    header: &Header,
    opts: WriteOptions,
) -> Result<(), FitsError> {
    let bytes = mask.mapv(u8::from);
    write_plane_file(path, &PlaneData::U8(bytes), header, opts)
}

/// Write any [`PlaneData`] as a single-HDU file (u8 -> BITPIX 8, i16 -> BITPIX 16), atomically.
pub fn write_plane_file(
    path: &Path,
    data: &PlaneData,
    header: &Header,
    opts: WriteOptions,
) -> Result<(), FitsError> {
    if !opts.overwrite && path.exists() {
        return Err(FitsError::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let mut fits = Fits::create_mem(data.bytes())?;
    add_plane(&mut fits, data, header)?;
    write_atomic(path, &fits.finish()?, opts)
}

fn add_plane(fits: &mut Fits, data: &PlaneData, header: &Header) -> Result<(), FitsError> {
    match data {
        PlaneData::F32(a) => add_hdu(fits, -32, Some(&a.view()), header),
        PlaneData::F64(a) => add_hdu(fits, -64, Some(&a.view()), header),
        PlaneData::U8(a) => add_hdu(fits, 8, Some(&a.view()), header),
        PlaneData::I16(a) => add_hdu(fits, 16, Some(&a.view()), header),
    }
}

/// Write a multi-extension file, atomically: an empty primary HDU carrying `primary`'s cards,
/// then one image extension per plane, with `EXTNAME = plane.name` (set in place if the plane's
/// header already has an EXTNAME card, appended otherwise) and the plane header's other cards.
pub fn write_mef(
    path: &Path,
    primary: &Header,
    planes: &[Plane],
    opts: WriteOptions,
) -> Result<(), FitsError> {
    if !opts.overwrite && path.exists() {
        return Err(FitsError::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let mut fits = Fits::create_mem(planes.iter().map(|p| p.data.bytes() + 5760).sum())?;
    add_hdu::<u8>(&mut fits, 8, None, primary)?;
    for p in planes {
        let mut h = p.header.clone();
        h.set("EXTNAME", p.name.as_str());
        add_plane(&mut fits, &p.data, &h)?;
    }
    write_atomic(path, &fits.finish()?, opts)
}
