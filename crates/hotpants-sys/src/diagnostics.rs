//! The diagnostics HOTPANTS writes into the difference image's header.

use fits_io::{Header, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// A header value, with HOTPANTS's numeric strings (it writes `KSUM00 = '1.0012'`) parsed
/// into numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum KeywordValue {
    /// Logical.
    Bool(bool),
    /// Integer (or a string holding one).
    Int(i64),
    /// Real (or a string holding one).
    Float(f64),
    /// Any other string.
    Str(String),
}

impl KeywordValue {
    fn from_value(v: &Value) -> Self {
        match v {
            Value::Bool(b) => Self::Bool(*b),
            Value::Int(i) => Self::Int(*i),
            Value::Float(f) => Self::Float(*f),
            Value::Str(s) => {
                let t = s.trim();
                if let Ok(i) = t.parse::<i64>() {
                    Self::Int(i)
                } else if let Ok(f) = t.parse::<f64>() {
                    Self::Float(f)
                } else {
                    Self::Str(s.clone())
                }
            }
        }
    }

    /// The value as a number, when it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as text, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// HOTPANTS's per-region header keywords (`nn` = region index, 2 digits).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RegionDiagnostics {
    /// Region index `nn`.
    pub index: usize,
    /// `REGIONnn`: IRAF-style pixel range `[x1:x2,y1:y2]`, 1-based.
    pub region: Option<String>,
    /// `CONVOLnn`: which image was convolved, `"TEMPLATE"` or `"IMAGE"`.
    pub convolved: Option<String>,
    /// `KSUMnn`: kernel sum (the flux ratio between the images).
    pub kernel_sum: Option<f64>,
    /// `SSSIGnn`: mean substamp figure of merit.
    pub stamp_sigma_mean: Option<f64>,
    /// `SSSCATnn`: its scatter.
    pub stamp_sigma_scatter: Option<f64>,
    /// `FSIGnn`: mean substamp figure of merit with the final kernel.
    pub final_sigma_mean: Option<f64>,
    /// `FSCATnn`: its scatter.
    pub final_sigma_scatter: Option<f64>,
    /// `X2NRMnn`: `1/N sum (diff/noise)^2` over good pixels (1 for a perfect noise model).
    pub x2norm: Option<f64>,
    /// `NX2NRMnn`: pixels in `X2NRMnn`.
    pub n_x2norm: Option<i64>,
    /// `DMEANnn`: mean of the difference, good pixels.
    pub diff_mean: Option<f64>,
    /// `DSIGEnn`: standard deviation of the difference, good pixels.
    pub diff_std: Option<f64>,
    /// `DSIGnn`: mean of the noise image, good pixels.
    pub noise_mean: Option<f64>,
    /// `DMEANOnn`: mean of the difference, "OK" pixels (near masked ones).
    pub diff_mean_ok: Option<f64>,
    /// `DSIGEOnn`: standard deviation of the difference, OK pixels.
    pub diff_std_ok: Option<f64>,
    /// `DSIGOnn`: mean of the noise, OK pixels.
    pub noise_mean_ok: Option<f64>,
    /// `NSCALOnn`: noise rescaling factor of OK pixels (`-okn`).
    pub noise_rescale_ok: Option<f64>,
}

impl RegionDiagnostics {
    /// `DSIGEnn / DSIGnn`: empirical over expected noise of the difference (about 1 when
    /// the noise model is right).
    pub fn noise_ratio(&self) -> Option<f64> {
        match (self.diff_std, self.noise_mean) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }
}

/// Everything HOTPANTS added to the difference image's header: every card generically in
/// [`keywords`](Self::keywords), and the common ones typed.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Diagnostics {
    /// Per-region values, in region order.
    pub regions: Vec<RegionDiagnostics>,
    /// `NREGION`.
    pub n_regions: Option<i64>,
    /// `PHOTNORM`: `t`, `i` or `u`.
    pub photometric_normalisation: Option<String>,
    /// `MASKVAL`: value of masked pixels in the difference.
    pub mask_value: Option<f64>,
    /// `SOFTVERS`: HOTPANTS version.
    pub version: Option<String>,
    /// `DIFFCMD`: the command line as HOTPANTS saw it.
    pub command: Option<String>,
    /// Every non-commentary card of the difference header that was not in the science
    /// header this crate wrote, by keyword (numeric strings parsed).
    pub keywords: BTreeMap<String, KeywordValue>,
}

/// Prefixes of HOTPANTS's per-region keywords (followed by 2 digits).
const REGION_PREFIXES: &[&str] = &[
    "REGION", "CONVOL", "KSUM", "SSSIG", "SSSCAT", "FSIG", "FSCAT", "X2NRM", "NX2NRM", "DMEAN",
    "DSIGE", "DSIG", "DMEANO", "DSIGEO", "DSIGO", "NSCALO",
];
/// HOTPANTS's global keywords.
const GLOBAL_KEYS: &[&str] = &[
    "SOFTNAME", "SOFTVERS", "SOFTAUTH", "SOFTINST", "DIFFCMD", "TARGET", "TEMPLATE", "DIFFIM",
    "PHOTNORM", "NREGION", "MASKVAL", "KERINFO", "KERFILE", "NGAUSS", "FWKERN", "CKORDER",
    "BGORDER",
];

/// True for a keyword HOTPANTS writes (so stale copies are removed from an input header
/// before it is written: HOTPANTS appends, and the old value would be read first).
pub fn is_hotpants_keyword(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    if GLOBAL_KEYS.contains(&k.as_str()) {
        return true;
    }
    if let Some(rest) = k
        .strip_prefix("DGAUSS")
        .or_else(|| k.strip_prefix("SGAUSS"))
    {
        return !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    }
    REGION_PREFIXES.iter().any(|p| {
        k.strip_prefix(p)
            .is_some_and(|rest| rest.len() == 2 && rest.bytes().all(|b| b.is_ascii_digit()))
    })
}

impl Diagnostics {
    /// Parses HOTPANTS's keywords from the difference header. `input` is the header that
    /// was written with the science image: its keywords are not diagnostics.
    pub fn from_header(diff: &Header, input: &Header) -> Self {
        let mut keywords = BTreeMap::new();
        for card in diff.cards() {
            if card.is_commentary() || fits_io::is_managed(&card.key) {
                continue;
            }
            if input.contains(&card.key) && !is_hotpants_keyword(&card.key) {
                continue;
            }
            if let Some(v) = &card.value {
                // HOTPANTS appends: keep the first value of a repeated key.
                keywords
                    .entry(card.key.to_ascii_uppercase())
                    .or_insert_with(|| KeywordValue::from_value(v));
            }
        }
        let num = |k: &str| keywords.get(k).and_then(KeywordValue::as_f64);
        let text = |k: &str| {
            keywords
                .get(k)
                .and_then(KeywordValue::as_str)
                .map(str::to_string)
        };
        let n_regions = keywords
            .get("NREGION")
            .and_then(KeywordValue::as_f64)
            .map(|v| v as i64);
        let mut regions = Vec::new();
        let max_regions = n_regions.unwrap_or(0).clamp(0, 100) as usize;
        for i in 0..100usize {
            let k = |p: &str| format!("{p}{i:02}");
            let present = REGION_PREFIXES.iter().any(|p| keywords.contains_key(&k(p)));
            if !present && i >= max_regions {
                break;
            }
            regions.push(RegionDiagnostics {
                index: i,
                region: text(&k("REGION")),
                convolved: text(&k("CONVOL")),
                kernel_sum: num(&k("KSUM")),
                stamp_sigma_mean: num(&k("SSSIG")),
                stamp_sigma_scatter: num(&k("SSSCAT")),
                final_sigma_mean: num(&k("FSIG")),
                final_sigma_scatter: num(&k("FSCAT")),
                x2norm: num(&k("X2NRM")),
                n_x2norm: num(&k("NX2NRM")).map(|v| v as i64),
                diff_mean: num(&k("DMEAN")),
                diff_std: num(&k("DSIGE")),
                noise_mean: num(&k("DSIG")),
                diff_mean_ok: num(&k("DMEANO")),
                diff_std_ok: num(&k("DSIGEO")),
                noise_mean_ok: num(&k("DSIGO")),
                noise_rescale_ok: num(&k("NSCALO")),
            });
        }
        Self {
            regions,
            n_regions,
            photometric_normalisation: text("PHOTNORM"),
            mask_value: num("MASKVAL"),
            version: text("SOFTVERS"),
            command: text("DIFFCMD"),
            keywords,
        }
    }

    /// Kernel sum of the first region (`KSUM00`), the science/template flux ratio when the
    /// template was convolved.
    pub fn kernel_sum(&self) -> Option<f64> {
        self.regions.first().and_then(|r| r.kernel_sum)
    }

    /// Mean `X2NRMnn` over regions.
    pub fn x2norm(&self) -> Option<f64> {
        let v: Vec<f64> = self.regions.iter().filter_map(|r| r.x2norm).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}
