//! Saving and loading cutouts as multi-extension FITS files.

use std::path::Path;

use fits_io::{Header, Plane, PlaneData, Value, WriteOptions};

use crate::CutoutError;
use crate::adjust::AdjustResult;
use crate::meta::MetaValue;
use crate::stamp::{Cutout, IMAGE, MASK};

/// Keyword of the i-th metadata name (1-based): `MKEY0001`, ... Names are stored as string
/// values because FITS keywords are upper case and at most 8 characters (cfitsio upper-cases
/// HIERARCH keywords too), while candidate fields can be any text.
fn name_key(i: usize) -> String {
    format!("MKEY{i:04}")
}

/// Keyword of the i-th metadata value: `MVAL0001`, ...
fn value_key(i: usize) -> String {
    format!("MVAL{i:04}")
}

/// Most metadata fields a cutout file can hold (four-digit keyword numbers).
pub const MAX_META: usize = 9999;

/// Writes a cutout as a multi-extension FITS file, atomically: the primary HDU holds the
/// metadata as pairs of keywords `MKEYnnnn` (the name, as a string) and `MVALnnnn` (the value;
/// types kept: logical, integer, real, string; non-finite reals are stored as the strings
/// `NaN`, `inf`, `-inf` and read back as reals; at most [`MAX_META`] fields) and
/// the adjust results (`ADJ*` keywords); then one extension per plane (EXTNAME = plane name,
/// header = the stamp's header with its WCS), and a `MASK` extension (BITPIX 8).
pub fn write_cutout(path: &Path, cutout: &Cutout, opts: WriteOptions) -> Result<(), CutoutError> {
    let mut primary = Header::new();
    primary.set_with_comment("DIFFCUT", true, "diffim cutout file");
    primary.set_with_comment("CUTX0", cutout.x0, "parent column of pixel 0 (0-based)");
    primary.set_with_comment("CUTY0", cutout.y0, "parent row of pixel 0 (0-based)");
    for (i, (k, v)) in cutout.meta.iter().take(MAX_META).enumerate() {
        primary.set(&name_key(i + 1), k.as_str());
        let value: Value = match v {
            MetaValue::Bool(b) => (*b).into(),
            MetaValue::Int(i) => (*i).into(),
            MetaValue::Float(f) if f.is_finite() => (*f).into(),
            MetaValue::Float(f) => f.to_string().into(),
            MetaValue::Str(s) => s.as_str().into(),
        };
        primary.set(&value_key(i + 1), value);
    }
    if let Some(a) = &cutout.adjust {
        a.to_header(&mut primary);
    }
    let mut planes: Vec<Plane> = cutout
        .planes
        .iter()
        .map(|(name, data)| Plane {
            name: name.clone(),
            data: PlaneData::F32(data.clone()),
            header: cutout.header.clone(),
        })
        .collect();
    planes.push(Plane {
        name: MASK.to_string(),
        data: PlaneData::U8(cutout.mask.mapv(u8::from)),
        header: cutout.header.clone(),
    });
    fits_io::write_mef(path, &primary, &planes, opts)?;
    Ok(())
}

/// Reads a cutout written by [`write_cutout`]: planes, mask, header, metadata (with their
/// types), origin and adjust results.
pub fn load_cutout(path: &Path) -> Result<Cutout, CutoutError> {
    let (primary, planes) = fits_io::read_mef(path)?;
    if !primary.get_bool("DIFFCUT").unwrap_or(false) {
        return Err(CutoutError::NotACutout(format!(
            "{}: no DIFFCUT keyword",
            path.display()
        )));
    }
    let x0 = primary.get_i64("CUTX0")?;
    let y0 = primary.get_i64("CUTY0")?;
    let mut meta = Vec::new();
    for i in 1..=MAX_META {
        let Some(name) = primary.get_str_opt(&name_key(i))? else {
            break;
        };
        let v = match primary.get(&value_key(i)) {
            Some(Value::Bool(b)) => MetaValue::Bool(*b),
            Some(Value::Int(i)) => MetaValue::Int(*i),
            Some(Value::Float(f)) => MetaValue::Float(*f),
            Some(Value::Str(s)) => match s.as_str() {
                "NaN" | "inf" | "-inf" => MetaValue::Float(s.parse().unwrap_or(f64::NAN)),
                _ => MetaValue::Str(s.clone()),
            },
            None => {
                return Err(CutoutError::NotACutout(format!(
                    "{} without {}",
                    name_key(i),
                    value_key(i)
                )));
            }
        };
        meta.push((name.to_string(), v));
    }
    let adjust = AdjustResult::from_header(&primary)?;
    let mut out_planes = Vec::new();
    let mut mask = None;
    let mut header = None;
    for p in planes {
        if header.is_none() {
            header = Some(user_header(&p.header));
        }
        if p.name.eq_ignore_ascii_case(MASK) {
            mask = Some(p.data.to_mask());
        } else {
            out_planes.push((p.name.clone(), p.data.to_f32()));
        }
    }
    let mask = mask.ok_or_else(|| CutoutError::NotACutout("no MASK extension".into()))?;
    if out_planes.first().map(|(n, _)| n.as_str()) != Some(IMAGE) {
        return Err(CutoutError::NotACutout(
            "first extension is not IMAGE".into(),
        ));
    }
    for (name, a) in &out_planes {
        if a.dim() != mask.dim() {
            return Err(CutoutError::ShapeMismatch {
                name: name.clone(),
                expected: mask.dim(),
                got: a.dim(),
            });
        }
    }
    Ok(Cutout {
        planes: out_planes,
        mask,
        header: header.unwrap_or_default(),
        meta,
        x0,
        y0,
        adjust,
    })
}

/// The header without the cards that the FITS writer manages (and EXTNAME, set per plane).
fn user_header(h: &Header) -> Header {
    let cards = h
        .cards()
        .iter()
        .filter(|c| !fits_io::is_managed(&c.key) && c.key != "EXTNAME" && c.key != "XTENSION")
        .cloned()
        .collect();
    Header::from_cards(cards)
}
