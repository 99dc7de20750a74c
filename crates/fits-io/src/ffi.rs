//! The one checked boundary to cfitsio. Every raw call goes through [`Fits`], whose methods
//! check the status code with [`check`]. Files are never opened by name through cfitsio: they
//! are read into memory by Rust (clean I/O errors, no extended-filename parsing of odd paths)
//! and handed to cfitsio's memory driver; new files are built in memory and written by Rust.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;

use fitsio::sys;

use crate::error::FitsError;

// The C allocator, for cfitsio's growable memory files (cfitsio calls realloc on our buffer).
unsafe extern "C" {
    fn realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
}

unsafe extern "C" fn c_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: cfitsio passes a pointer it got from this function (or null) and a new size.
    unsafe { realloc(p, size) }
}

pub(crate) const TBYTE: c_int = 11;
pub(crate) const TSHORT: c_int = 21;
pub(crate) const TFLOAT: c_int = 42;
pub(crate) const TDOUBLE: c_int = 82;
const IMAGE_HDU: c_int = 0;
const ASCII_TBL: c_int = 1;
const ANY_HDU: c_int = -1;
const READONLY: c_int = 0;

/// Text of a cfitsio status code.
fn status_text(code: c_int) -> String {
    let mut buf = [0 as c_char; 31];
    // SAFETY: ffgerr writes at most FLEN_STATUS (31) bytes including the NUL.
    unsafe { sys::ffgerr(code, buf.as_mut_ptr()) };
    // SAFETY: the buffer is NUL-terminated by ffgerr (and zero-initialised).
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Drain cfitsio's error-message stack into one string.
fn drain_messages() -> String {
    let mut all = Vec::new();
    loop {
        let mut buf = [0 as c_char; 81];
        // SAFETY: ffgmsg writes at most FLEN_ERRMSG (81) bytes including the NUL.
        let n = unsafe { sys::ffgmsg(buf.as_mut_ptr()) };
        if n == 0 {
            break;
        }
        // SAFETY: NUL-terminated by ffgmsg.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
        all.push(s.trim().to_owned());
        if all.len() > 64 {
            break;
        }
    }
    all.join("; ")
}

/// Turn a cfitsio status into a `Result` (the single status check of the crate).
pub(crate) fn check(status: c_int, context: &str) -> Result<(), FitsError> {
    if status == 0 {
        return Ok(());
    }
    Err(FitsError::Cfitsio {
        code: status,
        status_text: status_text(status),
        message: drain_messages(),
        context: context.to_owned(),
    })
}

/// Image parameters of the current HDU.
#[derive(Debug, Clone)]
pub(crate) struct ImgParams {
    pub bitpix: i64,
    /// NAXISn in FITS order (NAXIS1 first).
    pub naxes: Vec<u64>,
}

/// HDU kinds as cfitsio reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HduKind {
    Image,
    AsciiTable,
    BinaryTable,
}

/// The memory of a file: either borrowed bytes (read-only) or a C buffer cfitsio grows.
struct MemCell {
    ptr: *mut c_void,
    size: usize,
}

/// An open cfitsio memory file. Not `Send` (cfitsio handles are used from one thread).
pub(crate) struct Fits {
    fptr: *mut sys::fitsfile,
    /// cfitsio keeps pointers to both fields: boxed so they never move.
    cell: Box<MemCell>,
    /// Owned C buffer (files we create); freed on drop.
    owns_c_buffer: bool,
    /// Keeps the bytes of a read-only file alive.
    _bytes: Option<Vec<u8>>,
    /// HDUs appended by [`Fits::create_image`] (files we create).
    n_created: usize,
}

impl Fits {
    /// Open FITS bytes read-only. `name` is only used in cfitsio messages.
    pub(crate) fn open_bytes(bytes: Vec<u8>, name: &str) -> Result<Self, FitsError> {
        let mut bytes = bytes;
        let mut cell = Box::new(MemCell {
            ptr: bytes.as_mut_ptr().cast::<c_void>(),
            size: bytes.len(),
        });
        let cname = CString::new(name.replace('\0', "?")).unwrap_or_default();
        let mut fptr = ptr::null_mut();
        let mut status = 0;
        // SAFETY: `cell` is boxed and lives as long as `Fits` (cfitsio stores the addresses of
        // its two fields); the buffer is the Vec's heap memory, kept alive in `_bytes` and never
        // written (READONLY, no realloc function).
        unsafe {
            sys::ffomem(
                &mut fptr,
                cname.as_ptr(),
                READONLY,
                &mut cell.ptr,
                &mut cell.size,
                0,
                None,
                &mut status,
            );
        }
        if status != 0 {
            if !fptr.is_null() {
                let mut s2 = 0;
                // SAFETY: fptr was returned by ffomem.
                unsafe { sys::ffclos(fptr, &mut s2) };
            }
            check(status, "ffomem")?;
        }
        Ok(Self {
            fptr,
            cell,
            owns_c_buffer: false,
            _bytes: Some(bytes),
            n_created: 0,
        })
    }

    /// A new, empty, growable memory file; `size_hint` (bytes) pre-sizes the buffer so that
    /// cfitsio does not grow it by many small reallocations.
    pub(crate) fn create_mem(size_hint: usize) -> Result<Self, FitsError> {
        let start = (size_hint / 2880 + 2).saturating_mul(2880);
        // SAFETY: plain C allocation; checked for null below.
        let buf = unsafe { c_realloc(ptr::null_mut(), start) };
        if buf.is_null() {
            return Err(FitsError::Cfitsio {
                code: 113,
                status_text: "memory allocation failed".into(),
                message: String::new(),
                context: "create memory file".into(),
            });
        }
        // The allocator may hand back the memory of an earlier file: zero it, so that nothing
        // past what we write can look like a FITS header.
        // SAFETY: `buf` holds `start` bytes.
        unsafe { ptr::write_bytes(buf.cast::<u8>(), 0, start) };
        let mut cell = Box::new(MemCell {
            ptr: buf,
            size: start,
        });
        let mut fptr = ptr::null_mut();
        let mut status = 0;
        // SAFETY: `cell` is boxed (stable addresses, cfitsio keeps them) and the buffer comes
        // from the C allocator, which cfitsio grows through `c_realloc`.
        unsafe {
            sys::ffimem(
                &mut fptr,
                &mut cell.ptr,
                &mut cell.size,
                (start / 4).max(2880 * 16),
                Some(c_realloc),
                &mut status,
            );
        }
        let fits = Self {
            fptr,
            cell,
            owns_c_buffer: true,
            _bytes: None,
            n_created: 0,
        };
        check(status, "ffimem")?;
        Ok(fits)
    }

    /// Number of HDUs (cfitsio walks the whole file).
    pub(crate) fn num_hdus(&mut self) -> Result<usize, FitsError> {
        let mut n: c_int = 0;
        let mut status = 0;
        // SAFETY: valid open fptr; n is a valid out pointer.
        unsafe { sys::ffthdu(self.fptr, &mut n, &mut status) };
        check(status, "ffthdu")?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Move to the 0-based HDU `index`; returns its kind.
    pub(crate) fn move_to(&mut self, index: usize) -> Result<HduKind, FitsError> {
        let num = c_int::try_from(index + 1).map_err(|_| FitsError::Cfitsio {
            code: 301,
            status_text: "bad HDU number".into(),
            message: String::new(),
            context: "ffmahd".into(),
        })?;
        let mut kind: c_int = 0;
        let mut status = 0;
        // SAFETY: valid fptr and out pointers.
        unsafe { sys::ffmahd(self.fptr, num, &mut kind, &mut status) };
        check(status, "ffmahd")?;
        Ok(kind_of(kind))
    }

    /// Move to the first HDU whose EXTNAME (or HDUNAME) is `name`; returns its kind.
    pub(crate) fn move_to_name(&mut self, name: &str) -> Result<HduKind, FitsError> {
        let cname = CString::new(name).map_err(|_| FitsError::Cfitsio {
            code: 301,
            status_text: "bad HDU name".into(),
            message: "NUL in extension name".into(),
            context: "ffmnhd".into(),
        })?;
        let mut status = 0;
        // SAFETY: valid fptr; cfitsio only reads the name (the binding wants *mut).
        unsafe {
            sys::ffmnhd(
                self.fptr,
                ANY_HDU,
                cname.as_ptr().cast_mut(),
                0,
                &mut status,
            )
        };
        check(status, "ffmnhd")?;
        self.current_kind()
    }

    fn current_kind(&mut self) -> Result<HduKind, FitsError> {
        let mut kind: c_int = 0;
        let mut status = 0;
        // SAFETY: valid fptr and out pointer.
        unsafe { sys::ffghdt(self.fptr, &mut kind, &mut status) };
        check(status, "ffghdt")?;
        Ok(kind_of(kind))
    }

    /// 0-based number of the current HDU.
    pub(crate) fn current_index(&mut self) -> usize {
        let mut n: c_int = 0;
        // SAFETY: valid fptr; ffghdn cannot fail.
        unsafe { sys::ffghdn(self.fptr, &mut n) };
        usize::try_from(n.max(1) - 1).unwrap_or(0)
    }

    /// Byte offsets (header start, data start, data end) of the current HDU.
    pub(crate) fn hdu_offsets(&mut self) -> Result<(u64, u64, u64), FitsError> {
        let (mut h, mut d, mut e) = (0, 0, 0);
        let mut status = 0;
        // SAFETY: valid fptr and out pointers.
        unsafe { sys::ffghadll(self.fptr, &mut h, &mut d, &mut e, &mut status) };
        check(status, "ffghadll")?;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok((u(h), u(d), u(e)))
    }

    /// BITPIX and NAXISn (at most 9 axes) of the current image HDU.
    pub(crate) fn img_params(&mut self) -> Result<ImgParams, FitsError> {
        let mut bitpix: c_int = 0;
        let mut naxis: c_int = 0;
        let mut naxes = [0i64; 9];
        let mut status = 0;
        // SAFETY: naxes has room for maxdim = 9 values.
        unsafe {
            sys::ffgiprll(
                self.fptr,
                9,
                &mut bitpix,
                &mut naxis,
                naxes.as_mut_ptr(),
                &mut status,
            )
        };
        check(status, "ffgiprll")?;
        let n = usize::try_from(naxis).unwrap_or(0).min(9);
        Ok(ImgParams {
            bitpix: i64::from(bitpix),
            naxes: naxes[..n]
                .iter()
                .map(|&v| u64::try_from(v).unwrap_or(0))
                .collect(),
        })
    }

    /// Every header record of the current HDU, in order (80 characters each, without END).
    pub(crate) fn read_records(&mut self) -> Result<Vec<String>, FitsError> {
        let mut nkeys: c_int = 0;
        let mut status = 0;
        // SAFETY: valid fptr; null for the unused `morekeys` output is allowed.
        unsafe { sys::ffghsp(self.fptr, &mut nkeys, ptr::null_mut(), &mut status) };
        check(status, "ffghsp")?;
        let mut out = Vec::with_capacity(usize::try_from(nkeys).unwrap_or(0).min(100_000));
        for i in 1..=nkeys {
            let mut buf = [0 as c_char; 81];
            // SAFETY: buf has FLEN_CARD (81) bytes.
            unsafe { sys::ffgrec(self.fptr, i, buf.as_mut_ptr(), &mut status) };
            check(status, "ffgrec")?;
            // SAFETY: NUL-terminated by ffgrec.
            let rec = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
            out.push(rec.into_owned());
        }
        Ok(out)
    }

    /// Read `out.len()` pixels of the current image, converted by cfitsio to `T`, starting at
    /// 1-based element `first`, with BSCALE/BZERO applied. With `blank_to_nan` (integer
    /// images), pixels equal to BLANK become `T::NAN`; float images keep their NaNs as they are.
    pub(crate) fn read_pixels<T: CType>(
        &mut self,
        first: u64,
        out: &mut [T],
        blank_to_nan: bool,
    ) -> Result<(), FitsError> {
        let n = i64::try_from(out.len()).map_err(|_| too_many())?;
        let first = i64::try_from(first).map_err(|_| too_many())?;
        let mut nul = T::NAN;
        let nulptr = if blank_to_nan {
            (&mut nul as *mut T).cast::<c_void>()
        } else {
            ptr::null_mut()
        };
        let mut anynul: c_int = 0;
        let mut status = 0;
        // SAFETY: `out` holds exactly `n` values of the C type named by T::DATATYPE; `nulptr`
        // is null (no undefined-pixel check) or points to a value of the same type.
        unsafe {
            sys::ffgpv(
                self.fptr,
                T::DATATYPE,
                first,
                n,
                nulptr,
                out.as_mut_ptr().cast::<c_void>(),
                &mut anynul,
                &mut status,
            )
        };
        check(status, "ffgpv")
    }

    /// Append an image HDU (primary if the file is empty) with this BITPIX and FITS-order axes,
    /// then delete the non-structural cards cfitsio adds on its own (the FITS reference COMMENTs)
    /// so that the output header is exactly: structural cards + the caller's cards.
    pub(crate) fn create_image(&mut self, bitpix: i32, naxes: &[i64]) -> Result<(), FitsError> {
        let mut axes = naxes.to_vec();
        let naxis = c_int::try_from(axes.len()).map_err(|_| too_many())?;
        let mut status = 0;
        // SAFETY: axes holds `naxis` values.
        unsafe { sys::ffcrimll(self.fptr, bitpix, naxis, axes.as_mut_ptr(), &mut status) };
        check(status, "ffcrimll")?;
        self.n_created += 1;
        let recs = self.read_records()?;
        for (i, rec) in recs.iter().enumerate().rev() {
            let key = rec.get(..8).unwrap_or(rec).trim_end();
            if !crate::header::is_managed(key) {
                let keynum = c_int::try_from(i + 1).map_err(|_| too_many())?;
                // SAFETY: valid fptr; keynum is within the header.
                unsafe { sys::ffdrec(self.fptr, keynum, &mut status) };
                check(status, "ffdrec")?;
            }
        }
        Ok(())
    }

    /// Append one 80-character record to the current header.
    pub(crate) fn write_record(&mut self, rec: &str) -> Result<(), FitsError> {
        let c = CString::new(rec).map_err(|_| FitsError::InvalidCard {
            key: rec.get(..8).unwrap_or(rec).trim().to_owned(),
            reason: "NUL in card",
        })?;
        let mut status = 0;
        // SAFETY: valid fptr; cfitsio copies at most 80 characters of the NUL-terminated card.
        unsafe { sys::ffprec(self.fptr, c.as_ptr(), &mut status) };
        check(status, "ffprec")
    }

    /// Write all pixels of the current image (FITS order: NAXIS1 varies fastest).
    pub(crate) fn write_pixels<T: CType>(&mut self, data: &[T]) -> Result<(), FitsError> {
        let n = i64::try_from(data.len()).map_err(|_| too_many())?;
        let mut status = 0;
        // SAFETY: `data` holds `n` values of T::DATATYPE; cfitsio only reads from it (the
        // binding wants *mut).
        unsafe {
            sys::ffppr(
                self.fptr,
                T::DATATYPE,
                1,
                n,
                data.as_ptr().cast_mut().cast::<c_void>(),
                &mut status,
            )
        };
        check(status, "ffppr")
    }

    /// Flush and close a file made by [`Fits::create_mem`]; returns its bytes (no copy).
    pub(crate) fn finish(mut self) -> Result<CBytes, FitsError> {
        let mut status = 0;
        // SAFETY: valid fptr.
        unsafe { sys::ffflus(self.fptr, &mut status) };
        check(status, "ffflus")?;
        // The HDUs we appended, not `num_hdus`: cfitsio scans the buffer past the last HDU,
        // and memory it grew by realloc may hold stale bytes of an earlier file (seen as
        // extra HDUs in the output).
        let n = if self.n_created > 0 {
            self.n_created
        } else {
            self.num_hdus()?
        };
        self.move_to(n.saturating_sub(1))?;
        let (_, _, end) = self.hdu_offsets()?;
        // SAFETY: valid fptr; nulled right after so that Drop does not close it again.
        unsafe { sys::ffclos(self.fptr, &mut status) };
        self.fptr = ptr::null_mut();
        check(status, "ffclos")?;
        let len = usize::try_from(end)
            .unwrap_or(usize::MAX)
            .min(self.cell.size);
        // Hand the C buffer over to CBytes, which frees it.
        let out = CBytes {
            ptr: self.cell.ptr,
            len: if self.cell.ptr.is_null() { 0 } else { len },
        };
        self.cell.ptr = ptr::null_mut();
        Ok(out)
    }
}

/// The bytes of a file built in memory by cfitsio (a C buffer, freed on drop).
pub(crate) struct CBytes {
    ptr: *mut c_void,
    len: usize,
}

impl std::ops::Deref for CBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: `ptr` holds at least `len` bytes written by cfitsio (len <= allocated size),
        // owned by this value until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for CBytes {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: the buffer came from the C allocator and is freed exactly once.
            unsafe { free(self.ptr) };
        }
    }
}

fn too_many() -> FitsError {
    FitsError::Cfitsio {
        code: 111,
        status_text: "array too big".into(),
        message: String::new(),
        context: "size conversion".into(),
    }
}

fn kind_of(k: c_int) -> HduKind {
    match k {
        IMAGE_HDU => HduKind::Image,
        ASCII_TBL => HduKind::AsciiTable,
        _ => HduKind::BinaryTable,
    }
}

impl Drop for Fits {
    fn drop(&mut self) {
        if !self.fptr.is_null() {
            let mut status = 0;
            // SAFETY: fptr is open and closed exactly once.
            unsafe { sys::ffclos(self.fptr, &mut status) };
            if status != 0 {
                let _ = drain_messages();
            }
        }
        if self.owns_c_buffer && !self.cell.ptr.is_null() {
            // SAFETY: the buffer came from the C allocator (c_realloc) and is freed once.
            unsafe { free(self.cell.ptr) };
            self.cell.ptr = ptr::null_mut();
        }
    }
}

/// Pixel types cfitsio converts to and from (sealed: implemented for the four types below).
pub trait CType: Copy + private::Sealed {
    /// cfitsio datatype code.
    #[doc(hidden)]
    const DATATYPE: c_int;
    /// Value used for undefined pixels when reading (NaN for floats; 0 for integers).
    #[doc(hidden)]
    const NAN: Self;
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for u8 {}
    impl Sealed for i16 {}
}

impl CType for f32 {
    const DATATYPE: c_int = TFLOAT;
    const NAN: Self = f32::NAN;
}
impl CType for f64 {
    const DATATYPE: c_int = TDOUBLE;
    const NAN: Self = f64::NAN;
}
impl CType for u8 {
    const DATATYPE: c_int = TBYTE;
    const NAN: Self = 0;
}
impl CType for i16 {
    const DATATYPE: c_int = TSHORT;
    const NAN: Self = 0;
}
