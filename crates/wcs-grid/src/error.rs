//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong when building or using a WCS, a grid or a reprojection.
///
/// Bad header data always ends here (never in a panic). Points outside a projection's domain
/// are not errors: the point transforms return `None` (or NaN in the array versions).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum WcsError {
    /// A keyword the WCS needs is absent.
    #[error("missing WCS keyword {key}")]
    MissingKey {
        /// The keyword (or the alternatives, e.g. `CD1_1 or CDELT1`).
        key: String,
    },
    /// A keyword is present but its value has the wrong type or is not finite.
    #[error("bad value for WCS keyword {key}: {reason}")]
    BadValue {
        /// The keyword.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two keywords (or families of keywords) contradict each other.
    #[error("contradictory WCS keywords: {first} and {second}")]
    Contradictory {
        /// One keyword.
        first: String,
        /// The keyword it contradicts.
        second: String,
    },
    /// A CTYPE is too short or not of the form `XXXX-PPP[-SIP]`.
    #[error("malformed CTYPE {ctype:?}")]
    MalformedCtype {
        /// The offending value.
        ctype: String,
    },
    /// The projection code (or distortion suffix) is not one this crate implements.
    #[error(
        "unsupported projection {code:?} (supported: TAN, SIN, ARC, ZEA, STG, CAR, TAN-SIP, TPV)"
    )]
    UnsupportedProjection {
        /// The projection part of CTYPE, e.g. `XYZ` or `TNX`.
        code: String,
    },
    /// CTYPE1/CTYPE2 are not a longitude/latitude pair of the same system and projection.
    #[error("CTYPE1 {ctype1:?} and CTYPE2 {ctype2:?} are not a matching longitude/latitude pair")]
    MismatchedAxes {
        /// CTYPE1.
        ctype1: String,
        /// CTYPE2.
        ctype2: String,
    },
    /// A reference frame this crate does not transform (FK4, a non-J2000 FK5 equinox).
    #[error("unsupported reference frame RADESYS={radesys:?} EQUINOX={equinox:?}")]
    UnsupportedFrame {
        /// RADESYS (or what was inferred).
        radesys: String,
        /// EQUINOX, if given.
        equinox: Option<f64>,
    },
    /// A CUNIT other than degrees.
    #[error("unsupported unit {unit:?} in {key} (only degrees)")]
    UnsupportedUnit {
        /// CUNIT1 or CUNIT2.
        key: String,
        /// Its value.
        unit: String,
    },
    /// A projection parameter this crate does not implement (e.g. slant SIN).
    #[error("unsupported projection parameter {key} = {value}")]
    UnsupportedParameter {
        /// The keyword.
        key: String,
        /// Its value.
        value: f64,
    },
    /// The linear transformation matrix (CD, or PC x CDELT) cannot be inverted.
    #[error("singular CD matrix (determinant {det:e})")]
    SingularMatrix {
        /// Its determinant.
        det: f64,
    },
    /// A SIP polynomial order beyond the supported bound.
    #[error("SIP order {order} in {key} out of range (0..={max})")]
    SipOrder {
        /// A_ORDER, B_ORDER, AP_ORDER or BP_ORDER.
        key: String,
        /// The value found.
        order: i64,
        /// The largest order accepted.
        max: usize,
    },
    /// CRVAL/LONPOLE/LATPOLE admit no celestial pole (Calabretta & Greisen 2002, sect. 2.4).
    #[error("no celestial pole satisfies CRVAL2={crval2}, LONPOLE={lonpole}, LATPOLE={latpole}")]
    InvalidPole {
        /// CRVAL2.
        crval2: f64,
        /// LONPOLE used.
        lonpole: f64,
        /// LATPOLE used.
        latpole: f64,
    },
    /// A numeric parameter passed to a constructor is out of range or not finite.
    #[error("invalid parameter {name} = {value}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// An array does not have the shape of the grid it is said to live on.
    #[error("array shape {found:?} does not match the grid shape {expected:?}")]
    ShapeMismatch {
        /// The grid's (ny, nx).
        expected: (usize, usize),
        /// The array's (ny, nx).
        found: (usize, usize),
    },
    /// Two coordinate arrays of different lengths.
    #[error("coordinate arrays of different lengths ({first} and {second})")]
    LengthMismatch {
        /// Length of the first array.
        first: usize,
        /// Length of the second array.
        second: usize,
    },
    /// A sub-grid that is empty or does not lie inside its parent.
    #[error(
        "sub-grid x0={x0} y0={y0} nx={nx} ny={ny} is empty or outside the {parent_nx}x{parent_ny} grid"
    )]
    BadSubgrid {
        /// First column.
        x0: i64,
        /// First row.
        y0: i64,
        /// Columns.
        nx: usize,
        /// Rows.
        ny: usize,
        /// Parent columns.
        parent_nx: usize,
        /// Parent rows.
        parent_ny: usize,
    },
    /// A point that has to be transformed (a grid's centre, say) lies outside the projection.
    #[error("point ({0}, {1}) is outside the projection's domain")]
    OutsideDomain(f64, f64),
}
