//! [`SurveySpec`]: which survey a template comes from, parsed from `--survey` strings.

use std::fmt;
use std::str::FromStr;

use crate::error::FetchError;

/// Default Legacy Survey layer.
pub const DEFAULT_LEGACY_LAYER: &str = "ls-dr10";

/// Where a template comes from.
///
/// | string | meaning |
/// |---|---|
/// | `ps1:r` | Pan-STARRS DR2 stacks, band g/r/i/z/y, from `ps1filenames.py` + `fitscut.cgi` |
/// | `ls:r`, `ls:ls-dr9:r` | Legacy Survey `fits-cutout` (layer `ls-dr10` by default), band g/r/i/z |
/// | `hips:PanSTARRS/DR1/r` | any HiPS through CDS hips2fits |
/// | `hips-tiles:URL` | raw FITS tiles of a HiPS at `URL` (http(s), `file://` or a path) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurveySpec {
    /// Pan-STARRS stack images and masks.
    Ps1 {
        /// Filter: one of `grizy`.
        band: char,
    },
    /// Legacy Survey cutouts.
    Legacy {
        /// Viewer layer, e.g. `ls-dr10`.
        layer: String,
        /// Filter: one of `griz`.
        band: char,
    },
    /// A HiPS resampled by hips2fits.
    Hips2Fits {
        /// HiPS identifier, e.g. `PanSTARRS/DR1/r` or `CDS/P/DSS2/red`.
        hips_id: String,
    },
    /// Raw HiPS FITS tiles resampled here.
    HipsTiles {
        /// Base URL or local folder of the HiPS (the folder holding `properties`).
        base: String,
    },
}

impl FromStr for SurveySpec {
    type Err = FetchError;

    /// Parses `ps1:r`, `ls:r`, `ls:LAYER:r`, `hips:ID` or `hips-tiles:URL` (the prefix is
    /// case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| FetchError::BadSpec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("expected KIND:VALUE (ps1:r, ls:r, hips:ID, hips-tiles:URL)"))?;
        let rest = rest.trim();
        let band_of = |b: &str, allowed: &str| -> Result<char, FetchError> {
            let mut chars = b.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if allowed.contains(c) => Ok(c),
                _ => Err(bad(&format!("band must be one of {allowed}"))),
            }
        };
        match kind.trim().to_ascii_lowercase().as_str() {
            "ps1" | "panstarrs" => Ok(SurveySpec::Ps1 {
                band: band_of(rest, "grizy")?,
            }),
            "ls" | "legacy" => {
                let (layer, band) = match rest.rsplit_once(':') {
                    Some((layer, band)) if !layer.is_empty() => (layer.to_string(), band),
                    _ => (DEFAULT_LEGACY_LAYER.to_string(), rest),
                };
                Ok(SurveySpec::Legacy {
                    layer,
                    band: band_of(band, "griz")?,
                })
            }
            "hips" | "hips2fits" => {
                if rest.is_empty() {
                    return Err(bad("empty HiPS identifier"));
                }
                Ok(SurveySpec::Hips2Fits {
                    hips_id: rest.to_string(),
                })
            }
            "hips-tiles" | "hipstiles" => {
                if rest.is_empty() {
                    return Err(bad("empty HiPS URL"));
                }
                Ok(SurveySpec::HipsTiles {
                    base: rest.trim_end_matches('/').to_string(),
                })
            }
            _ => Err(bad("unknown survey kind (ps1, ls, hips, hips-tiles)")),
        }
    }
}

impl fmt::Display for SurveySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SurveySpec::Ps1 { band } => write!(f, "ps1:{band}"),
            SurveySpec::Legacy { layer, band } if layer == DEFAULT_LEGACY_LAYER => {
                write!(f, "ls:{band}")
            }
            SurveySpec::Legacy { layer, band } => write!(f, "ls:{layer}:{band}"),
            SurveySpec::Hips2Fits { hips_id } => write!(f, "hips:{hips_id}"),
            SurveySpec::HipsTiles { base } => write!(f, "hips-tiles:{base}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        for s in [
            "ps1:r",
            "ls:z",
            "ls:ls-dr9:g",
            "hips:PanSTARRS/DR1/r",
            "hips:CDS/P/DSS2/red",
            "hips-tiles:http://127.0.0.1:9/hips",
            "hips-tiles:file:///data/hips",
        ] {
            let spec: SurveySpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!(
            "ls:r".parse::<SurveySpec>().unwrap(),
            SurveySpec::Legacy {
                layer: "ls-dr10".into(),
                band: 'r'
            }
        );
        for bad in ["ps1:q", "ps1:rr", "ls:y", "hips:", "xyz:r", "ps1"] {
            assert!(
                matches!(bad.parse::<SurveySpec>(), Err(FetchError::BadSpec { .. })),
                "{bad}"
            );
        }
    }
}
