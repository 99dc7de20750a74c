//! Reading and writing WCS keywords (Greisen & Calabretta 2002, Calabretta & Greisen 2002,
//! Shupe et al. 2005 for SIP, the FITS registry's TPV convention).
//!
//! The parser works on any [`KeywordSource`]; `fits_io::Header` implements it (see
//! [`Wcs::from_header`]), and so does a plain `BTreeMap<String, String>` of raw value texts,
//! handy for tests and for headers that come as text (e.g. from a HiPS service).

use std::collections::BTreeMap;

use crate::distortion::{MAX_SIP_ORDER, Sip, SipPolynomial, TPV_NCOEFF, Tpv};
use crate::error::WcsError;
use crate::proj::Projection;
use crate::wcs::{Frame, Wcs, WcsParams};

/// Read access to header keywords, by name.
pub trait KeywordSource {
    /// A numeric keyword: `Ok(None)` if absent, an error if present but not a number.
    fn number(&self, key: &str) -> Result<Option<f64>, WcsError>;
    /// A string keyword (trailing blanks trimmed): `Ok(None)` if absent.
    fn text(&self, key: &str) -> Result<Option<String>, WcsError>;
}

/// Write access to header keywords.
pub trait KeywordSink {
    /// Sets a numeric keyword (replacing any previous value).
    fn set_number(&mut self, key: &str, value: f64);
    /// Sets an integer keyword.
    fn set_integer(&mut self, key: &str, value: i64);
    /// Sets a string keyword.
    fn set_text(&mut self, key: &str, value: &str);
    /// Removes a keyword if present.
    fn remove_key(&mut self, key: &str);
    /// The keys present, in order.
    fn key_list(&self) -> Vec<String>;
}

/// Parses a FITS number, accepting Fortran `D` exponents.
fn parse_number(key: &str, s: &str) -> Result<f64, WcsError> {
    let t = s.trim().replace(['D', 'd'], "E");
    t.parse::<f64>().map_err(|_| WcsError::BadValue {
        key: key.to_string(),
        reason: format!("{s:?} is not a number"),
    })
}

/// Raw value texts by keyword (strings may keep or omit their quotes).
impl KeywordSource for BTreeMap<String, String> {
    fn number(&self, key: &str) -> Result<Option<f64>, WcsError> {
        self.get(key).map(|s| parse_number(key, s)).transpose()
    }
    fn text(&self, key: &str) -> Result<Option<String>, WcsError> {
        Ok(self.get(key).map(|s| {
            let t = s.trim();
            let t = t
                .strip_prefix('\'')
                .and_then(|t| t.strip_suffix('\''))
                .unwrap_or(t);
            t.trim_end().replace("''", "'")
        }))
    }
}

impl KeywordSink for BTreeMap<String, String> {
    fn set_number(&mut self, key: &str, value: f64) {
        self.insert(key.to_string(), format!("{value:?}"));
    }
    fn set_integer(&mut self, key: &str, value: i64) {
        self.insert(key.to_string(), value.to_string());
    }
    fn set_text(&mut self, key: &str, value: &str) {
        self.insert(key.to_string(), format!("'{}'", value.replace('\'', "''")));
    }
    fn remove_key(&mut self, key: &str) {
        self.remove(key);
    }
    fn key_list(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Axis {
    Lon(Frame),
    Lat(Frame),
}

struct Ctype {
    axis: Axis,
    code: String,
    sip: bool,
}

fn parse_ctype(ctype: &str) -> Result<Ctype, WcsError> {
    let c = ctype.trim_end();
    let malformed = || WcsError::MalformedCtype {
        ctype: ctype.to_string(),
    };
    if c.len() < 8 || !c.is_ascii() || c.as_bytes()[4] != b'-' {
        return Err(malformed());
    }
    let name = c[..4].trim_end_matches('-');
    let code = &c[5..8];
    let suffix = &c[8..];
    let axis = match name {
        "RA" => Axis::Lon(Frame::Icrs),
        "DEC" => Axis::Lat(Frame::Icrs),
        "GLON" => Axis::Lon(Frame::Galactic),
        "GLAT" => Axis::Lat(Frame::Galactic),
        _ => return Err(malformed()),
    };
    let sip = match suffix {
        "" => false,
        "-SIP" => true,
        _ => {
            return Err(WcsError::UnsupportedProjection {
                code: c[5..].to_string(),
            });
        }
    };
    Ok(Ctype {
        axis,
        code: code.to_string(),
        sip,
    })
}

fn required<K: KeywordSource + ?Sized>(k: &K, key: &str) -> Result<f64, WcsError> {
    let v = k.number(key)?.ok_or_else(|| WcsError::MissingKey {
        key: key.to_string(),
    })?;
    finite(key, v)
}

fn finite(key: &str, v: f64) -> Result<f64, WcsError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(WcsError::BadValue {
            key: key.to_string(),
            reason: "not finite".into(),
        })
    }
}

fn optional<K: KeywordSource + ?Sized>(k: &K, key: &str) -> Result<Option<f64>, WcsError> {
    k.number(key)?.map(|v| finite(key, v)).transpose()
}

fn order<K: KeywordSource + ?Sized>(k: &K, key: &str) -> Result<Option<usize>, WcsError> {
    let Some(v) = optional(k, key)? else {
        return Ok(None);
    };
    if v.fract() != 0.0 || v < 0.0 || v > MAX_SIP_ORDER as f64 {
        return Err(WcsError::SipOrder {
            key: key.to_string(),
            order: v as i64,
            max: MAX_SIP_ORDER,
        });
    }
    Ok(Some(v as usize))
}

fn sip_poly<K: KeywordSource + ?Sized>(
    k: &K,
    prefix: &str,
    order: usize,
) -> Result<SipPolynomial, WcsError> {
    let mut poly = SipPolynomial::new(order);
    for p in 0..=order {
        for q in 0..=(order - p) {
            if let Some(c) = optional(k, &format!("{prefix}_{p}_{q}"))? {
                poly.set(p, q, c);
            }
        }
    }
    Ok(poly)
}

fn frame<K: KeywordSource + ?Sized>(k: &K, galactic: bool) -> Result<Frame, WcsError> {
    if galactic {
        return Ok(Frame::Galactic);
    }
    let radesys = match k.text("RADESYS")? {
        Some(s) => Some(s),
        None => k.text("RADECSYS")?,
    };
    let equinox = match optional(k, "EQUINOX")? {
        Some(e) => Some(e),
        None => optional(k, "EPOCH")?,
    };
    let unsupported = |r: &str| WcsError::UnsupportedFrame {
        radesys: r.to_string(),
        equinox,
    };
    let is_j2000 = |e: Option<f64>| e.is_none_or(|e| (e - 2000.0).abs() < 1e-6);
    match radesys.as_deref().map(|s| s.trim().to_ascii_uppercase()) {
        Some(r) if r == "ICRS" => Ok(Frame::Icrs),
        Some(r) if r == "FK5" => {
            if is_j2000(equinox) {
                Ok(Frame::Fk5)
            } else {
                Err(unsupported("FK5"))
            }
        }
        Some(r) if r.is_empty() => frame_from_equinox(equinox),
        Some(r) => Err(unsupported(&r)),
        None => frame_from_equinox(equinox),
    }
}

fn frame_from_equinox(equinox: Option<f64>) -> Result<Frame, WcsError> {
    match equinox {
        None => Ok(Frame::Icrs),
        Some(e) if (e - 2000.0).abs() < 1e-6 => Ok(Frame::Fk5),
        Some(e) => Err(WcsError::UnsupportedFrame {
            radesys: if e < 1984.0 {
                "FK4".into()
            } else {
                "FK5".into()
            },
            equinox: Some(e),
        }),
    }
}

/// Parses a celestial WCS from header keywords.
pub(crate) fn parse<K: KeywordSource + ?Sized>(k: &K) -> Result<Wcs, WcsError> {
    let ctype1 = k.text("CTYPE1")?.ok_or(WcsError::MissingKey {
        key: "CTYPE1".into(),
    })?;
    let ctype2 = k.text("CTYPE2")?.ok_or(WcsError::MissingKey {
        key: "CTYPE2".into(),
    })?;
    let c1 = parse_ctype(&ctype1)?;
    let c2 = parse_ctype(&ctype2)?;
    let mismatched = || WcsError::MismatchedAxes {
        ctype1: ctype1.clone(),
        ctype2: ctype2.clone(),
    };
    let galactic = match (c1.axis, c2.axis) {
        (Axis::Lon(f1), Axis::Lat(f2)) if f1 == f2 => f1 == Frame::Galactic,
        _ => return Err(mismatched()),
    };
    if c1.code != c2.code {
        return Err(mismatched());
    }
    if c1.sip != c2.sip {
        return Err(WcsError::Contradictory {
            first: ctype1.clone(),
            second: ctype2.clone(),
        });
    }
    let (projection, is_tpv) = match c1.code.as_str() {
        "TPV" => (Projection::Tan, true),
        code => (
            Projection::from_code(code).ok_or_else(|| WcsError::UnsupportedProjection {
                code: code.to_string(),
            })?,
            false,
        ),
    };
    if is_tpv && c1.sip {
        return Err(WcsError::UnsupportedProjection {
            code: "TPV-SIP".into(),
        });
    }
    for key in ["CUNIT1", "CUNIT2"] {
        if let Some(u) = k.text(key)? {
            let t = u.trim().to_ascii_lowercase();
            if !(t.is_empty() || t == "deg") {
                return Err(WcsError::UnsupportedUnit {
                    key: key.into(),
                    unit: u,
                });
            }
        }
    }
    let crpix = [required(k, "CRPIX1")? - 1.0, required(k, "CRPIX2")? - 1.0];
    let crval = [required(k, "CRVAL1")?, required(k, "CRVAL2")?];
    if crval[1].abs() > 90.0 {
        return Err(WcsError::BadValue {
            key: "CRVAL2".into(),
            reason: "latitude beyond +-90".into(),
        });
    }

    // Linear part: CD, or PC x CDELT, or CDELT + CROTA2 (G&C 2002 sect. 2.1, 6.1).
    let cd_keys = ["CD1_1", "CD1_2", "CD2_1", "CD2_2"];
    let pc_keys = ["PC1_1", "PC1_2", "PC2_1", "PC2_2"];
    let cd_vals = cd_keys
        .iter()
        .map(|key| optional(k, key))
        .collect::<Result<Vec<_>, _>>()?;
    let pc_vals = pc_keys
        .iter()
        .map(|key| optional(k, key))
        .collect::<Result<Vec<_>, _>>()?;
    let has_cd = cd_vals.iter().any(Option::is_some);
    let has_pc = pc_vals.iter().any(Option::is_some);
    let cdelt1 = optional(k, "CDELT1")?;
    let cdelt2 = optional(k, "CDELT2")?;
    let crota2 = match optional(k, "CROTA2")? {
        Some(r) => Some(r),
        None => optional(k, "CROTA1")?,
    };
    let cd = if has_cd {
        if has_pc {
            return Err(WcsError::Contradictory {
                first: "CDi_j".into(),
                second: "PCi_j".into(),
            });
        }
        let g = |i: usize| cd_vals[i].unwrap_or(0.0);
        [[g(0), g(1)], [g(2), g(3)]]
    } else {
        let (d1, d2) = match (cdelt1, cdelt2) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => {
                return Err(WcsError::MissingKey {
                    key: "CD1_1 or CDELT1".into(),
                });
            }
            (None, Some(_)) => {
                return Err(WcsError::MissingKey {
                    key: "CDELT1".into(),
                });
            }
            (Some(_), None) => {
                return Err(WcsError::MissingKey {
                    key: "CDELT2".into(),
                });
            }
        };
        if has_pc {
            if crota2.is_some_and(|r| r != 0.0) {
                return Err(WcsError::Contradictory {
                    first: "PCi_j".into(),
                    second: "CROTA2".into(),
                });
            }
            let g = |i: usize, def: f64| pc_vals[i].unwrap_or(def);
            [
                [d1 * g(0, 1.0), d1 * g(1, 0.0)],
                [d2 * g(2, 0.0), d2 * g(3, 1.0)],
            ]
        } else {
            let (s, c) = crota2.unwrap_or(0.0).to_radians().sin_cos();
            [[d1 * c, -d2 * s], [d1 * s, d2 * c]]
        }
    };

    if projection == Projection::Sin {
        for key in ["PV2_1", "PV2_2"] {
            if let Some(v) = optional(k, key)?
                && v != 0.0
            {
                return Err(WcsError::UnsupportedParameter {
                    key: key.into(),
                    value: v,
                });
            }
        }
    }

    let sip = if c1.sip {
        let ao = order(k, "A_ORDER")?.ok_or(WcsError::MissingKey {
            key: "A_ORDER".into(),
        })?;
        let bo = order(k, "B_ORDER")?.ok_or(WcsError::MissingKey {
            key: "B_ORDER".into(),
        })?;
        let a = sip_poly(k, "A", ao)?;
        let b = sip_poly(k, "B", bo)?;
        let (ap, bp) = match (order(k, "AP_ORDER")?, order(k, "BP_ORDER")?) {
            (Some(apo), Some(bpo)) => {
                (Some(sip_poly(k, "AP", apo)?), Some(sip_poly(k, "BP", bpo)?))
            }
            _ => (None, None),
        };
        Some(Sip { a, b, ap, bp })
    } else {
        None
    };

    let tpv = if is_tpv {
        let mut t = Tpv::default();
        for n in 0..TPV_NCOEFF {
            if let Some(v) = optional(k, &format!("PV1_{n}"))? {
                t.pv1[n] = v;
            }
            if let Some(v) = optional(k, &format!("PV2_{n}"))? {
                t.pv2[n] = v;
            }
        }
        Some(t)
    } else {
        None
    };

    let params = WcsParams {
        projection,
        crpix,
        crval,
        cd,
        lonpole: optional(k, "LONPOLE")?,
        latpole: optional(k, "LATPOLE")?,
        sip,
        tpv,
        frame: frame(k, galactic)?,
    };
    Wcs::new(params)
}

/// True for keywords that describe a celestial WCS (removed before writing a new one).
fn is_wcs_key(key: &str) -> bool {
    const EXACT: [&str; 14] = [
        "WCSAXES", "LONPOLE", "LATPOLE", "RADESYS", "RADECSYS", "EQUINOX", "EPOCH", "A_ORDER",
        "B_ORDER", "AP_ORDER", "BP_ORDER", "CROTA1", "CROTA2", "A_DMAX",
    ];
    if EXACT.contains(&key) || key == "B_DMAX" {
        return true;
    }
    for prefix in ["CTYPE", "CRPIX", "CRVAL", "CDELT", "CUNIT"] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return rest == "1" || rest == "2";
        }
    }
    let digits_us = |rest: &str| {
        !rest.is_empty()
            && rest
                .split('_')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    for prefix in ["CD", "PC"] {
        if let Some(rest) = key.strip_prefix(prefix)
            && digits_us(rest)
            && rest.split('_').count() == 2
        {
            return true;
        }
    }
    for prefix in ["AP_", "BP_", "A_", "B_", "PV1_", "PV2_"] {
        if let Some(rest) = key.strip_prefix(prefix)
            && digits_us(rest)
        {
            return true;
        }
    }
    false
}

/// Writes the WCS keywords (after removing every existing celestial-WCS keyword).
pub(crate) fn write<S: KeywordSink + ?Sized>(w: &Wcs, s: &mut S) {
    for key in s.key_list() {
        if is_wcs_key(&key) {
            s.remove_key(&key);
        }
    }
    let p = w.params();
    let (lon, lat) = match p.frame {
        Frame::Galactic => ("GLON", "GLAT"),
        _ => ("RA--", "DEC-"),
    };
    let code = if p.tpv.is_some() {
        "TPV"
    } else {
        p.projection.code()
    };
    let suffix = if p.sip.is_some() { "-SIP" } else { "" };
    s.set_integer("WCSAXES", 2);
    s.set_text("CTYPE1", &format!("{lon}-{code}{suffix}"));
    s.set_text("CTYPE2", &format!("{lat}-{code}{suffix}"));
    s.set_text("CUNIT1", "deg");
    s.set_text("CUNIT2", "deg");
    s.set_number("CRPIX1", p.crpix[0] + 1.0);
    s.set_number("CRPIX2", p.crpix[1] + 1.0);
    s.set_number("CRVAL1", p.crval[0]);
    s.set_number("CRVAL2", p.crval[1]);
    s.set_number("CD1_1", p.cd[0][0]);
    s.set_number("CD1_2", p.cd[0][1]);
    s.set_number("CD2_1", p.cd[1][0]);
    s.set_number("CD2_2", p.cd[1][1]);
    s.set_number("LONPOLE", w.lonpole());
    s.set_number("LATPOLE", w.latpole());
    match p.frame {
        Frame::Icrs => s.set_text("RADESYS", "ICRS"),
        Frame::Fk5 => {
            s.set_text("RADESYS", "FK5");
            s.set_number("EQUINOX", 2000.0);
        }
        Frame::Galactic => {}
    }
    if let Some(sip) = &p.sip {
        let mut put = |name: &str, poly: &SipPolynomial| {
            s.set_integer(&format!("{name}_ORDER"), poly.order() as i64);
            for (i, j, c) in poly.terms() {
                s.set_number(&format!("{name}_{i}_{j}"), c);
            }
        };
        put("A", &sip.a);
        put("B", &sip.b);
        if let (Some(ap), Some(bp)) = (&sip.ap, &sip.bp) {
            put("AP", ap);
            put("BP", bp);
        }
    }
    if let Some(t) = &p.tpv {
        for (axis, c) in [(1, &t.pv1), (2, &t.pv2)] {
            for (n, &v) in c.iter().enumerate() {
                if v != 0.0 || n == 1 {
                    s.set_number(&format!("PV{axis}_{n}"), v);
                }
            }
        }
    }
}

impl Wcs {
    /// Parses a WCS from any [`KeywordSource`] (e.g. a `BTreeMap<String, String>` of raw value
    /// texts).
    ///
    /// # Errors
    /// Missing or contradictory keys, malformed CTYPE, unsupported projection/frame/unit, a
    /// singular CD matrix: see [`WcsError`].
    pub fn from_keywords<K: KeywordSource + ?Sized>(k: &K) -> Result<Self, WcsError> {
        parse(k)
    }

    /// Writes this WCS into any [`KeywordSink`], first removing every celestial-WCS keyword
    /// already there (CD/PC/CDELT/CROTA, SIP and PV terms...). CRPIX is written 1-based.
    pub fn to_keywords<S: KeywordSink + ?Sized>(&self, s: &mut S) {
        write(self, s);
    }
}

fn header_err(key: &str, e: fits_io::HeaderError) -> WcsError {
    WcsError::BadValue {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// `fits_io::Header` as a keyword source: numbers must be FITS numbers (integers convert),
/// strings must be FITS strings.
impl KeywordSource for fits_io::Header {
    fn number(&self, key: &str) -> Result<Option<f64>, WcsError> {
        self.get_f64_opt(key).map_err(|e| header_err(key, e))
    }
    fn text(&self, key: &str) -> Result<Option<String>, WcsError> {
        self.get_str_opt(key)
            .map(|s| s.map(|t| t.trim_end().to_string()))
            .map_err(|e| header_err(key, e))
    }
}

impl KeywordSink for fits_io::Header {
    fn set_number(&mut self, key: &str, value: f64) {
        self.set(key, value);
    }
    fn set_integer(&mut self, key: &str, value: i64) {
        self.set(key, value);
    }
    fn set_text(&mut self, key: &str, value: &str) {
        self.set(key, value);
    }
    fn remove_key(&mut self, key: &str) {
        self.remove(key);
    }
    fn key_list(&self) -> Vec<String> {
        self.cards().iter().map(|c| c.key.clone()).collect()
    }
}

impl Wcs {
    /// Parses the celestial WCS of a FITS header (see the crate docs for what is supported).
    ///
    /// # Errors
    /// See [`Wcs::from_keywords`].
    pub fn from_header(header: &fits_io::Header) -> Result<Self, WcsError> {
        parse(header)
    }

    /// Writes this WCS into a FITS header, replacing any celestial-WCS keywords already there
    /// (astropy/wcslib read the result back as the same WCS).
    pub fn to_header(&self, header: &mut fits_io::Header) {
        write(self, header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(cards: &[(&str, &str)]) -> BTreeMap<String, String> {
        cards
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> BTreeMap<String, String> {
        map(&[
            ("CTYPE1", "'RA---TAN'"),
            ("CTYPE2", "'DEC--TAN'"),
            ("CRPIX1", "100.5"),
            ("CRPIX2", "200.5"),
            ("CRVAL1", "10.0"),
            ("CRVAL2", "-20.0"),
            ("CD1_1", "-7.0E-5"),
            ("CD1_2", "1.0D-6"),
            ("CD2_1", "1.0E-6"),
            ("CD2_2", "7.0E-5"),
        ])
    }

    #[test]
    fn parses_and_round_trips() {
        let w = Wcs::from_keywords(&base()).unwrap();
        assert_eq!(w.crpix(), [99.5, 199.5]);
        assert_eq!(w.cd()[0][1], 1e-6);
        let mut out = BTreeMap::new();
        w.to_keywords(&mut out);
        let w2 = Wcs::from_keywords(&out).unwrap();
        assert_eq!(w.crpix(), w2.crpix());
        assert_eq!(w.crval(), w2.crval());
        assert_eq!(w.cd(), w2.cd());
        assert_eq!(w.lonpole(), w2.lonpole());
        assert_eq!(w.latpole(), w2.latpole());
        assert_eq!(w.pixel_to_world(3.0, 4.0), w2.pixel_to_world(3.0, 4.0));
    }

    #[test]
    fn bad_headers_are_errors() {
        let mut h = base();
        h.insert("CTYPE1".into(), "'RA---XYZ'".into());
        h.insert("CTYPE2".into(), "'DEC--XYZ'".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::UnsupportedProjection { .. })
        ));
        let mut h = base();
        h.insert("CTYPE1".into(), "'RA'".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::MalformedCtype { .. })
        ));
        let mut h = base();
        h.remove("CRVAL2");
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::MissingKey { .. })
        ));
        let mut h = base();
        h.insert("PC1_1".into(), "1.0".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::Contradictory { .. })
        ));
        let mut h = base();
        h.insert("CD2_2".into(), "-7.0E-5".into());
        h.insert("CD1_2".into(), "7.0E-5".into());
        h.insert("CD2_1".into(), "7.0E-5".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::SingularMatrix { .. })
        ));
        let mut h = base();
        h.insert("RADESYS".into(), "'FK4'".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::UnsupportedFrame { .. })
        ));
        let mut h = base();
        h.insert("CRPIX1".into(), "'abc'".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::BadValue { .. })
        ));
        let mut h = base();
        h.insert("CTYPE1".into(), "'RA---TAN-SIP'".into());
        h.insert("CTYPE2".into(), "'DEC--TAN-SIP'".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::MissingKey { .. })
        ));
        h.insert("A_ORDER".into(), "1000000".into());
        h.insert("B_ORDER".into(), "2".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::SipOrder { .. })
        ));
        let mut h = base();
        h.insert("CTYPE2".into(), "'DEC--SIN'".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::MismatchedAxes { .. })
        ));
        let mut h = base();
        h.insert("CTYPE1".into(), "'DEC--TAN'".into());
        h.insert("CTYPE2".into(), "'RA---TAN'".into());
        assert!(matches!(
            Wcs::from_keywords(&h),
            Err(WcsError::MismatchedAxes { .. })
        ));
    }

    #[test]
    fn crota2_matches_pc() {
        let mut h = base();
        for k in ["CD1_1", "CD1_2", "CD2_1", "CD2_2"] {
            h.remove(k);
        }
        h.insert("CDELT1".into(), "-1e-4".into());
        h.insert("CDELT2".into(), "1e-4".into());
        h.insert("CROTA2".into(), "30".into());
        let w = Wcs::from_keywords(&h).unwrap();
        let (s, c) = 30f64.to_radians().sin_cos();
        let cd = w.cd();
        assert!((cd[0][0] + 1e-4 * c).abs() < 1e-18);
        assert!((cd[0][1] + 1e-4 * s).abs() < 1e-18);
        assert!((cd[1][0] + 1e-4 * s).abs() < 1e-18);
        assert!((cd[1][1] - 1e-4 * c).abs() < 1e-18);
    }
}
