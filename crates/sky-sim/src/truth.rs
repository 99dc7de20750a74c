//! The truth tables of a simulated pair and their CSV form.

use std::path::Path;

use crate::SimError;

/// A star present in both images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrueStar {
    /// Science-image x (column) of the centre, 0-based pixel coordinates.
    pub x: f64,
    /// Science-image y (row) of the centre, 0-based pixel coordinates.
    pub y: f64,
    /// Total flux in the template (ADU), all of it inside the rendered stamp.
    pub flux_template: f64,
    /// Total flux in the science image (ADU) = `flux_template * flux_scale_at(x, y)`.
    pub flux_science: f64,
    /// True when a pixel within one pixel of the centre is saturated (masked) in either image.
    pub saturated: bool,
}

/// A transient, present in the science image only.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transient {
    /// Science-image x (column), 0-based pixel coordinates.
    pub x: f64,
    /// Science-image y (row), 0-based pixel coordinates.
    pub y: f64,
    /// Total flux in the science image (ADU).
    pub flux: f64,
    /// Optimal PSF S/N against the science background variance (see the crate docs):
    /// `flux / sigma_flux`, `sigma_flux^-2 = sum_i P_i^2 / var_i`.
    pub snr: f64,
}

/// Everything that was injected.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Truth {
    /// Stars, in generation order.
    pub stars: Vec<TrueStar>,
    /// Transients, in generation order.
    pub transients: Vec<Transient>,
}

/// One CSV row: `kind` is `star` or `transient`; star rows leave `snr` empty, transient rows
/// leave `flux_template` and `saturated` empty. `flux` is the science flux for both.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Row {
    kind: String,
    x: f64,
    y: f64,
    flux: f64,
    snr: Option<f64>,
    flux_template: Option<f64>,
    saturated: Option<bool>,
}

impl Truth {
    /// Writes the truth as CSV with the header row
    /// `kind,x,y,flux,snr,flux_template,saturated`: one `star` row per star (`flux` = science
    /// flux, `snr` empty) then one `transient` row per transient (`flux_template`, `saturated`
    /// empty). Floats are written with enough digits to read back exactly.
    pub fn write_csv(&self, path: &Path) -> Result<(), SimError> {
        let mut w = csv::Writer::from_path(path)?;
        for s in &self.stars {
            w.serialize(Row {
                kind: "star".into(),
                x: s.x,
                y: s.y,
                flux: s.flux_science,
                snr: None,
                flux_template: Some(s.flux_template),
                saturated: Some(s.saturated),
            })?;
        }
        for t in &self.transients {
            w.serialize(Row {
                kind: "transient".into(),
                x: t.x,
                y: t.y,
                flux: t.flux,
                snr: Some(t.snr),
                flux_template: None,
                saturated: None,
            })?;
        }
        w.flush()?;
        Ok(())
    }

    /// Reads a table written by [`Truth::write_csv`].
    pub fn read_csv(path: &Path) -> Result<Truth, SimError> {
        let mut r = csv::Reader::from_path(path)?;
        let mut truth = Truth::default();
        for (i, row) in r.deserialize::<Row>().enumerate() {
            let row = row?;
            let line = i + 2;
            match row.kind.as_str() {
                "star" => {
                    let flux_template = row.flux_template.ok_or(SimError::CsvRow {
                        line,
                        reason: "star row without flux_template",
                    })?;
                    truth.stars.push(TrueStar {
                        x: row.x,
                        y: row.y,
                        flux_template,
                        flux_science: row.flux,
                        saturated: row.saturated.unwrap_or(false),
                    });
                }
                "transient" => {
                    let snr = row.snr.ok_or(SimError::CsvRow {
                        line,
                        reason: "transient row without snr",
                    })?;
                    truth.transients.push(Transient {
                        x: row.x,
                        y: row.y,
                        flux: row.flux,
                        snr,
                    });
                }
                _ => {
                    return Err(SimError::CsvRow {
                        line,
                        reason: "kind must be `star` or `transient`",
                    });
                }
            }
        }
        Ok(truth)
    }
}
