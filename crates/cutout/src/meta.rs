//! Cutout metadata: typed values and IAU-style J2000 names.

use serde::{Deserialize, Serialize};

/// A metadata value of a cutout (a candidate's column, the time, the file name...). Types are
/// kept exactly through [`crate::write_cutout`] / [`crate::load_cutout`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetaValue {
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Floating point.
    Float(f64),
    /// Text.
    Str(String),
}

impl MetaValue {
    /// The value as `f64` when it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Parses a table cell: integer, then float, then `true`/`false`, else text.
    pub fn parse_cell(s: &str) -> Self {
        let t = s.trim();
        if let Ok(i) = t.parse::<i64>() {
            return Self::Int(i);
        }
        if let Ok(f) = t.parse::<f64>() {
            return Self::Float(f);
        }
        match t.to_ascii_lowercase().as_str() {
            "true" => Self::Bool(true),
            "false" => Self::Bool(false),
            _ => Self::Str(t.to_string()),
        }
    }
}

impl std::fmt::Display for MetaValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => {
                if x.abs() >= 1e5 || (x.abs() < 1e-3 && *x != 0.0) {
                    write!(f, "{x:.4e}")
                } else {
                    write!(f, "{x:.4}")
                }
            }
            Self::Str(s) => f.write_str(s),
        }
    }
}

impl From<f64> for MetaValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<i64> for MetaValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<bool> for MetaValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<&str> for MetaValue {
    fn from(v: &str) -> Self {
        Self::Str(v.to_string())
    }
}
impl From<String> for MetaValue {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}

/// IAU-style name `JHHMMSS.ss+DDMMSS.s` from J2000 RA/Dec in degrees (components truncated,
/// not rounded, as the IAU convention asks). `None` when the coordinates are not finite or the
/// declination is outside [-90, 90].
///
/// ```
/// assert_eq!(cutout::j2000_name(188.73250, 12.58250).as_deref(), Some("J123455.80+123457.0"));
/// ```
pub fn j2000_name(ra: f64, dec: f64) -> Option<String> {
    if !ra.is_finite() || !dec.is_finite() || dec.abs() > 90.0 {
        return None;
    }
    let ra = ra.rem_euclid(360.0);
    // Work in integer hundredths of a second of time / tenths of an arcsecond (truncated),
    // with a tiny epsilon against binary representation (188.7325 deg = 45295.8 s exactly).
    let ra_cs = ((ra / 15.0 * 3600.0 * 100.0) + 1e-6).floor() as i64;
    let (h, rem) = (ra_cs / 360_000, ra_cs % 360_000);
    let (m, s_cs) = (rem / 6000, rem % 6000);
    let sign = if dec < 0.0 { '-' } else { '+' };
    let dec_ds = ((dec.abs() * 3600.0 * 10.0) + 1e-6).floor() as i64;
    let (d, rem) = (dec_ds / 36_000, dec_ds % 36_000);
    let (dm, ds) = (rem / 600, rem % 600);
    Some(format!(
        "J{h:02}{m:02}{:02}.{:02}{sign}{d:02}{dm:02}{:02}.{}",
        s_cs / 100,
        s_cs % 100,
        ds / 10,
        ds % 10
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(j2000_name(0.0, 0.0).as_deref(), Some("J000000.00+000000.0"));
        assert_eq!(
            j2000_name(359.99999, -89.99999).as_deref(),
            Some("J235959.99-895959.9")
        );
        // 10h 00m 00.00s, -05d 30m 00.0s
        assert_eq!(
            j2000_name(150.0, -5.5).as_deref(),
            Some("J100000.00-053000.0")
        );
        assert_eq!(j2000_name(f64::NAN, 0.0), None);
        assert_eq!(j2000_name(10.0, 91.0), None);
    }

    #[test]
    fn cells() {
        assert_eq!(MetaValue::parse_cell("12"), MetaValue::Int(12));
        assert_eq!(MetaValue::parse_cell(" 1.5e3 "), MetaValue::Float(1500.0));
        assert_eq!(MetaValue::parse_cell("True"), MetaValue::Bool(true));
        assert_eq!(MetaValue::parse_cell("abc"), MetaValue::Str("abc".into()));
    }
}
