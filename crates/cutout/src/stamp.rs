//! Making postage stamps around candidates.

use fits_io::Header;
use ndarray::{Array2, ArrayView2};

use crate::CutoutError;
use crate::adjust::AdjustResult;
use crate::meta::{MetaValue, j2000_name};

/// Largest cutout radius accepted (pixels): a 4097x4097 stamp.
pub const MAX_RADIUS: f64 = 2048.0;

/// Name of the science image plane in every cutout.
pub const IMAGE: &str = "image";
/// Name of the mask plane (1 = bad or outside the image).
pub const MASK: &str = "mask";

/// A candidate to cut out: a position and any number of named fields (a table row).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Candidate {
    /// Column, 0-based pixel coordinate.
    pub x: f64,
    /// Row, 0-based pixel coordinate.
    pub y: f64,
    /// Right ascension, degrees (J2000), when known.
    pub ra: Option<f64>,
    /// Declination, degrees (J2000), when known.
    pub dec: Option<f64>,
    /// Every other field, in order (kept in the cutout's meta).
    pub fields: Vec<(String, MetaValue)>,
}

impl Candidate {
    /// A candidate at `(x, y)` with no other fields.
    pub fn at(x: f64, y: f64) -> Self {
        Self {
            x,
            y,
            ..Default::default()
        }
    }

    /// A candidate from a table row: `x` and `y` columns are required (case-insensitive;
    /// `x_image`/`y_image` too, which are 1-based as in SExtractor and converted), `ra`/`dec`
    /// optional; every column is kept as a field.
    pub fn from_row<S: AsRef<str>>(columns: &[S], cells: &[S]) -> Result<Self, CutoutError> {
        let mut c = Candidate {
            x: f64::NAN,
            y: f64::NAN,
            ..Default::default()
        };
        for (k, v) in columns.iter().zip(cells) {
            let (k, v) = (k.as_ref(), MetaValue::parse_cell(v.as_ref()));
            let num = v.as_f64();
            match k.to_ascii_lowercase().as_str() {
                "x" => c.x = num.unwrap_or(f64::NAN),
                "y" => c.y = num.unwrap_or(f64::NAN),
                "x_image" if c.x.is_nan() => c.x = num.map_or(f64::NAN, |v| v - 1.0),
                "y_image" if c.y.is_nan() => c.y = num.map_or(f64::NAN, |v| v - 1.0),
                "ra" => c.ra = num,
                "dec" => c.dec = num,
                _ => {}
            }
            c.fields.push((k.to_string(), v));
        }
        if !c.x.is_finite() || !c.y.is_finite() {
            return Err(CutoutError::InvalidCoordinates { x: c.x, y: c.y });
        }
        Ok(c)
    }
}

/// What to put into a cutout besides the image.
#[derive(Debug, Clone, Default)]
pub struct CutoutOptions<'a> {
    /// Header of the image (its WCS is shifted to the stamp).
    pub header: Option<&'a Header>,
    /// Observation time (e.g. MJD as a float, or an ISO string).
    pub time: Option<MetaValue>,
    /// File the image came from.
    pub filename: Option<String>,
    /// Name of the candidate; built from RA/Dec (`JHHMMSS.ss+DDMMSS.s`) when absent.
    pub name: Option<String>,
    /// Bad-pixel mask of the image (`true` = bad).
    pub mask: Option<ArrayView2<'a, bool>>,
    /// Extra planes of the image's shape by name (diff, template, convolved, err, bg, ...).
    pub planes: Vec<(&'a str, ArrayView2<'a, f32>)>,
}

/// A postage stamp: named planes of the same small shape, a mask, a header and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Cutout {
    /// Planes in order; the first is always [`IMAGE`].
    pub planes: Vec<(String, Array2<f32>)>,
    /// `true` = bad pixel, or outside the parent image.
    pub mask: Array2<bool>,
    /// The parent image's header with its WCS shifted to the stamp (CRPIX), plus `CUTX0`/`CUTY0`.
    pub header: Header,
    /// Candidate fields plus `x`, `y` (in the parent), `time`, `filename`, `name`.
    pub meta: Vec<(String, MetaValue)>,
    /// Column of the stamp's pixel (0, 0) in the parent image (may be negative).
    pub x0: i64,
    /// Row of the stamp's pixel (0, 0) in the parent image (may be negative).
    pub y0: i64,
    /// The adjust fit, once [`crate::adjust_cutout`] has run.
    pub adjust: Option<AdjustResult>,
}

impl Cutout {
    /// A plane by name.
    pub fn plane(&self, name: &str) -> Option<&Array2<f32>> {
        self.planes.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// A metadata value by name.
    pub fn meta(&self, name: &str) -> Option<&MetaValue> {
        self.meta.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets (replaces or appends) a metadata value.
    pub fn set_meta(&mut self, name: &str, v: MetaValue) {
        match self.meta.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v,
            None => self.meta.push((name.to_string(), v)),
        }
    }

    /// Side of the square stamp, pixels.
    pub fn size(&self) -> usize {
        self.mask.nrows()
    }

    /// Position of the candidate in stamp pixel coordinates.
    pub fn position(&self) -> (f64, f64) {
        let x = self
            .meta("x")
            .and_then(MetaValue::as_f64)
            .unwrap_or(f64::NAN);
        let y = self
            .meta("y")
            .and_then(MetaValue::as_f64)
            .unwrap_or(f64::NAN);
        (x - self.x0 as f64, y - self.y0 as f64)
    }
}

/// Cuts a `(2*ceil(radius)+1)`-pixel square stamp centred on the candidate's pixel, so that the
/// object falls in the central pixel, from the image and every extra plane. Pixels outside the
/// image are NaN and flagged in the mask; NaN/Inf pixels of the image are flagged too.
///
/// The header (if given) is copied with `CRPIX1/2` shifted to the stamp (any SIP/TPV distortion
/// stays valid since it is defined relative to CRPIX), and `CUTX0`/`CUTY0` record the stamp's
/// origin in the parent (0-based).
pub fn get_cutout(
    image: &ArrayView2<f32>,
    candidate: &Candidate,
    radius: f64,
    opts: &CutoutOptions,
) -> Result<Cutout, CutoutError> {
    let (x, y) = (candidate.x, candidate.y);
    if !x.is_finite() || !y.is_finite() {
        return Err(CutoutError::InvalidCoordinates { x, y });
    }
    if !(radius.is_finite() && radius > 0.0 && radius <= MAX_RADIUS) {
        return Err(CutoutError::InvalidRadius {
            radius,
            max: MAX_RADIUS,
        });
    }
    let (ny, nx) = image.dim();
    let (cx, cy) = (x.round(), y.round());
    if cx < 0.0 || cy < 0.0 || cx >= nx as f64 || cy >= ny as f64 {
        return Err(CutoutError::CandidateOutside { x, y, nx, ny });
    }
    let mut names: Vec<&str> = vec![IMAGE, MASK];
    for (name, plane) in &opts.planes {
        if name.is_empty() || names.contains(name) {
            return Err(CutoutError::InvalidPlaneName(name.to_string()));
        }
        if plane.dim() != (ny, nx) {
            return Err(CutoutError::ShapeMismatch {
                name: name.to_string(),
                expected: (ny, nx),
                got: plane.dim(),
            });
        }
        names.push(name);
    }
    if let Some(m) = &opts.mask
        && m.dim() != (ny, nx)
    {
        return Err(CutoutError::ShapeMismatch {
            name: MASK.into(),
            expected: (ny, nx),
            got: m.dim(),
        });
    }
    let r = radius.ceil() as i64;
    let size = (2 * r + 1) as usize;
    let (x0, y0) = (cx as i64 - r, cy as i64 - r);
    let inside = |j: usize, i: usize| -> Option<(usize, usize)> {
        let (py, px) = (y0 + j as i64, x0 + i as i64);
        (py >= 0 && px >= 0 && py < ny as i64 && px < nx as i64)
            .then_some((py as usize, px as usize))
    };
    let cut = |src: &ArrayView2<f32>| {
        Array2::from_shape_fn((size, size), |(j, i)| {
            inside(j, i).map_or(f32::NAN, |p| src[p])
        })
    };
    let mut planes = vec![(IMAGE.to_string(), cut(image))];
    for (name, plane) in &opts.planes {
        planes.push((name.to_string(), cut(plane)));
    }
    let mask = Array2::from_shape_fn((size, size), |(j, i)| match inside(j, i) {
        None => true,
        Some(p) => !image[p].is_finite() || opts.mask.as_ref().is_some_and(|m| m[p]),
    });

    let mut header = opts.header.cloned().unwrap_or_default();
    shift_header_wcs(&mut header, x0, y0);

    let mut meta: Vec<(String, MetaValue)> = Vec::new();
    let mut push = |k: &str, v: MetaValue| {
        if let Some(slot) = meta.iter_mut().find(|(n, _)| n == k) {
            slot.1 = v;
        } else {
            meta.push((k.to_string(), v));
        }
    };
    for (k, v) in &candidate.fields {
        push(k, v.clone());
    }
    push("x", MetaValue::Float(x));
    push("y", MetaValue::Float(y));
    if let Some(ra) = candidate.ra {
        push("ra", MetaValue::Float(ra));
    }
    if let Some(dec) = candidate.dec {
        push("dec", MetaValue::Float(dec));
    }
    if let Some(t) = &opts.time {
        push("time", t.clone());
    }
    if let Some(f) = &opts.filename {
        push("filename", MetaValue::Str(f.clone()));
    }
    let name = opts
        .name
        .clone()
        .or_else(|| match (candidate.ra, candidate.dec) {
            (Some(ra), Some(dec)) => j2000_name(ra, dec),
            _ => None,
        });
    if let Some(n) = name {
        push("name", MetaValue::Str(n));
    }
    Ok(Cutout {
        planes,
        mask,
        header,
        meta,
        x0,
        y0,
        adjust: None,
    })
}

/// Shifts a header's WCS reference pixel for a sub-image starting at parent pixel `(x0, y0)`
/// (0-based), and records the origin in `CUTX0`/`CUTY0` and IRAF's `LTV1`/`LTV2`.
pub fn shift_header_wcs(header: &mut Header, x0: i64, y0: i64) {
    for (key, off) in [("CRPIX1", x0), ("CRPIX2", y0)] {
        if let Ok(Some(v)) = header.get_f64_opt(key) {
            header.set(key, v - off as f64);
        }
    }
    let ltv1 = header.get_f64_opt("LTV1").ok().flatten().unwrap_or(0.0);
    let ltv2 = header.get_f64_opt("LTV2").ok().flatten().unwrap_or(0.0);
    header.set_with_comment(
        "LTV1",
        ltv1 - x0 as f64,
        "offset of the cutout (IRAF convention)",
    );
    header.set_with_comment(
        "LTV2",
        ltv2 - y0 as f64,
        "offset of the cutout (IRAF convention)",
    );
    header.set_with_comment("CUTX0", x0, "parent column of cutout pixel 0 (0-based)");
    header.set_with_comment("CUTY0", y0, "parent row of cutout pixel 0 (0-based)");
}
