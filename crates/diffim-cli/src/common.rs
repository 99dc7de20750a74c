//! Helpers shared by the subcommands: loading images and masks, headers, progress bars.

use std::path::{Path, PathBuf};

use diffim::fits::{Hdu, Header};
use diffim::ndarray::Array2;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{CliError, Context, Ctx};

/// An image read from a FITS file.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Pixels, `[y, x]`, as `f32`.
    pub data: Array2<f32>,
    /// The HDU's header.
    pub header: Header,
    /// Where it came from (for messages).
    pub path: PathBuf,
}

/// Splits `file.fits[EXT]` into the path and the HDU (`[2]` = index 2, `[SCI]` = EXTNAME SCI);
/// a plain path selects the primary HDU.
pub fn parse_hdu_spec(spec: &Path) -> (PathBuf, Hdu) {
    let s = spec.to_string_lossy();
    if let Some(open) = s.rfind('[')
        && s.ends_with(']')
        && open > 0
    {
        let inner = &s[open + 1..s.len() - 1];
        let path = PathBuf::from(&s[..open]);
        let hdu = match inner.parse::<usize>() {
            Ok(i) => Hdu::Index(i),
            Err(_) => Hdu::Name(inner.to_string()),
        };
        return (path, hdu);
    }
    (spec.to_path_buf(), Hdu::Primary)
}

/// Reads an image (`path` or `path[EXT]`). When the primary HDU of a plain path holds no image
/// (common for multi-extension files), the first extension is tried.
pub fn load_image(spec: &Path) -> Result<LoadedImage, CliError> {
    let (path, hdu) = parse_hdu_spec(spec);
    let read = |h: &Hdu| diffim::fits::read_image::<f32>(&path, h);
    let img = match read(&hdu) {
        Ok(img) => img,
        Err(first) if hdu == Hdu::Primary => match read(&Hdu::Index(1)) {
            Ok(img) => img,
            Err(_) => return Err(CliError::from(first).context(spec.display())),
        },
        Err(e) => return Err(CliError::from(e).context(spec.display())),
    };
    Ok(LoadedImage {
        data: img.data,
        header: img.header,
        path,
    })
}

/// Reads an optional mask and checks it has `shape`.
pub fn load_mask(
    spec: Option<&Path>,
    shape: (usize, usize),
) -> Result<Option<Array2<bool>>, CliError> {
    let Some(spec) = spec else { return Ok(None) };
    let (path, hdu) = parse_hdu_spec(spec);
    let m = diffim::fits::read_mask_for(&path, &hdu, shape).context(spec.display())?;
    Ok(Some(m))
}

/// Reads an optional per-pixel noise map (RMS) and checks it has `shape`.
pub fn load_noise(
    spec: Option<&Path>,
    shape: (usize, usize),
) -> Result<Option<Array2<f32>>, CliError> {
    let Some(spec) = spec else { return Ok(None) };
    let img = load_image(spec)?;
    if img.data.dim() != shape {
        return Err(CliError::failure(format!(
            "{}: noise map has shape {:?}, image has {:?}",
            spec.display(),
            img.data.dim(),
            shape
        )));
    }
    Ok(Some(img.data))
}

/// A science/template pair with everything the subtraction methods can use.
#[derive(Debug, Clone)]
pub struct PairInputs {
    /// Science image.
    pub science: LoadedImage,
    /// Template image (same shape).
    pub template: LoadedImage,
    /// Science mask.
    pub science_mask: Option<Array2<bool>>,
    /// Template mask.
    pub template_mask: Option<Array2<bool>>,
    /// Science noise map (RMS).
    pub science_noise: Option<Array2<f32>>,
    /// Template noise map (RMS).
    pub template_noise: Option<Array2<f32>>,
    /// Science gain (explicit, else GAIN, else estimated from the sky).
    pub science_gain: Option<f64>,
    /// Template gain.
    pub template_gain: Option<f64>,
    /// Where the science gain came from.
    pub science_gain_source: GainOrigin,
    /// Where the template gain came from.
    pub template_gain_source: GainOrigin,
}

/// The file options shared by `subtract` and `pipeline`.
#[derive(Debug, Clone, Default)]
pub struct PairFiles<'a> {
    /// Science bad-pixel mask.
    pub mask: Option<&'a Path>,
    /// Template bad-pixel mask.
    pub template_mask: Option<&'a Path>,
    /// Science noise map.
    pub noise: Option<&'a Path>,
    /// Template noise map.
    pub template_noise: Option<&'a Path>,
    /// Science gain.
    pub gain: Option<f64>,
    /// Template gain.
    pub template_gain: Option<f64>,
}

/// The options `diffim subtract` and `diffim pipeline` share (flattened into both).
#[derive(Debug, Clone, clap::Args)]
pub struct SubtractArgs {
    /// Subtraction method: sfft, zogy or hotpants. SFFT is the default: on simulated pairs
    /// it has no false candidates at bright stars, where ZOGY still leaves some (issue 6).
    #[arg(long, default_value = "sfft")]
    pub method: String,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Science bad-pixel mask (non-zero = bad).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Template bad-pixel mask (non-zero = bad).
    #[arg(long)]
    pub template_mask: Option<PathBuf>,
    /// Science gain, e-/ADU (default: the GAIN keyword, else estimated from the sky as
    /// sky / sky variance, which assumes raw counts with the bias removed; a note prints the
    /// value; summary.json records where each gain came from).
    #[arg(long)]
    pub gain: Option<f64>,
    /// Template gain, e-/ADU (default: the template's GAIN keyword, else estimated).
    #[arg(long)]
    pub template_gain: Option<f64>,
    /// Path of the hotpants executable (default: $HOTPANTS, then PATH).
    #[arg(long)]
    pub hotpants: Option<PathBuf>,
    /// ZOGY: source of the flux ratio beta. `aperture` (default): robust mean of the
    /// large-aperture flux ratios of the common bright isolated stars (falls back to the PSF
    /// fit with fewer than 5 such stars); `psf-fit`: zogy-core's fit of matched PSF
    /// photometry with the estimated PSF models (biased by their shape errors, +-3 %).
    #[arg(long, value_enum, default_value_t = ZogyBeta::Aperture)]
    pub zogy_beta: ZogyBeta,
    /// ZOGY: leave the PSF-photometry flux planes (flux.fits, flux_err.fits) uncorrected
    /// (by default they are scaled so that the common stars' PSF fluxes match their 3-FWHM
    /// aperture fluxes).
    #[arg(long)]
    pub no_flux_correction: bool,
    /// ZOGY: never rescale Scorr (by default, when its robust std over the unmasked pixels
    /// differs from 1 by more than 0.1, as correlated noise of resampled or drizzled images
    /// makes it, significance.fits is divided by it and flux_err.fits multiplied by it;
    /// summary.json records the factor as `scorr_calibration`).
    #[arg(long)]
    pub no_scorr_calibration: bool,
    /// Replace existing output files.
    #[arg(long)]
    pub overwrite: bool,
}

/// `--zogy-beta`: where ZOGY's flux ratio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ZogyBeta {
    /// Large-aperture flux ratios of the common stars (the default).
    #[default]
    Aperture,
    /// zogy-core's PSF-photometry fit.
    PsfFit,
}

/// Where a gain came from (summary.json `science_gain_source` / `template_gain_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GainOrigin {
    /// `--gain` / `--template-gain` (or a manifest column).
    Option,
    /// The GAIN header keyword.
    Header,
    /// Estimated from the sky ([`diffim::subtract::resolve_gain`]).
    Estimated,
    /// None of those: the methods' noise maps hold the background noise only.
    Unknown,
}

impl GainOrigin {
    /// `"option"`, `"header"`, `"estimated"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Option => "option",
            Self::Header => "header",
            Self::Estimated => "estimated",
            Self::Unknown => "unknown",
        }
    }
}

impl SubtractArgs {
    /// The method, or a usage error naming the accepted ones.
    pub fn method(&self) -> Result<diffim::subtract::Method, CliError> {
        self.method
            .parse()
            .map_err(|e: diffim::subtract::SubtractError| CliError::usage(e.to_string()))
    }

    /// The ZOGY options of `--zogy-beta`, `--no-flux-correction` and
    /// `--no-scorr-calibration` (the rest default).
    pub fn zogy_options(&self) -> diffim::subtract::zogy::ZogyOptions {
        use diffim::subtract::zogy::{BetaSource, ZogyOptions};
        ZogyOptions {
            beta_from: match self.zogy_beta {
                ZogyBeta::Aperture => BetaSource::Aperture,
                ZogyBeta::PsfFit => BetaSource::PsfFit,
            },
            flux_aperture_correction: !self.no_flux_correction,
            calibrate_scorr: if self.no_scorr_calibration {
                None
            } else {
                ZogyOptions::default().calibrate_scorr
            },
            ..Default::default()
        }
    }

    /// The masks and gains as [`PairFiles`] (no noise maps).
    pub fn pair_files(&self) -> PairFiles<'_> {
        PairFiles {
            mask: self.mask.as_deref(),
            template_mask: self.template_mask.as_deref(),
            gain: self.gain,
            template_gain: self.template_gain,
            ..Default::default()
        }
    }
}

impl PairInputs {
    /// Loads the masks and noise maps of `files` for an already loaded pair, checking shapes;
    /// a gain that is neither given nor in the header is estimated from the sky (masked
    /// pixels excluded), with a note.
    pub fn load(
        science: LoadedImage,
        template: LoadedImage,
        files: &PairFiles,
        ctx: &Ctx,
    ) -> Result<Self, CliError> {
        Self::load_with_template_mask(science, template, None, files, ctx)
    }

    /// [`PairInputs::load`] with an extra template mask (e.g. a fetched template's coverage),
    /// OR-ed into the template mask from `files`.
    pub fn load_with_template_mask(
        science: LoadedImage,
        template: LoadedImage,
        extra_template_mask: Option<Array2<bool>>,
        files: &PairFiles,
        ctx: &Ctx,
    ) -> Result<Self, CliError> {
        let shape = science.data.dim();
        if template.data.dim() != shape {
            return Err(CliError::failure(format!(
                "template {} has shape {:?} but science {} has {:?}: reproject it first \
                 (diffim reproject TEMPLATE --like SCIENCE --out T.fits)",
                template.path.display(),
                template.data.dim(),
                science.path.display(),
                shape
            )));
        }
        if let Some(m) = &extra_template_mask
            && m.dim() != shape
        {
            return Err(CliError::failure(format!(
                "template mask has shape {:?}, image has {:?}",
                m.dim(),
                shape
            )));
        }
        let science_mask = load_mask(files.mask, shape)?;
        let template_mask = match (load_mask(files.template_mask, shape)?, extra_template_mask) {
            (Some(given), Some(extra)) => Some(&given | &extra),
            (given, extra) => given.or(extra),
        };
        // Both gains at once (an estimate reads the whole image); notes in a fixed order.
        let ((science_gain, science_gain_source, n1), (template_gain, template_gain_source, n2)) =
            rayon::join(
                || gain_with_note(files.gain, &science, science_mask.as_ref()),
                || gain_with_note(files.template_gain, &template, template_mask.as_ref()),
            );
        for n in [n1, n2].into_iter().flatten() {
            say(ctx, n);
        }
        Ok(Self {
            science_mask,
            template_mask,
            science_noise: load_noise(files.noise, shape)?,
            template_noise: load_noise(files.template_noise, shape)?,
            science_gain,
            template_gain,
            science_gain_source,
            template_gain_source,
            science,
            template,
        })
    }

    /// The gains and where they came from, for summary.json (`science_gain`,
    /// `science_gain_source`, `template_gain`, `template_gain_source`).
    pub fn gain_summary(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("science_gain".into(), serde_json::json!(self.science_gain));
        m.insert(
            "science_gain_source".into(),
            self.science_gain_source.as_str().into(),
        );
        m.insert(
            "template_gain".into(),
            serde_json::json!(self.template_gain),
        );
        m.insert(
            "template_gain_source".into(),
            self.template_gain_source.as_str().into(),
        );
        m
    }

    /// The subtraction inputs (views into this pair).
    pub fn inputs(&self) -> diffim::subtract::SubtractInputs<'_> {
        let mut i = diffim::subtract::SubtractInputs::new(
            self.science.data.view(),
            self.template.data.view(),
        );
        i.science_mask = self.science_mask.as_ref().map(|m| m.view());
        i.template_mask = self.template_mask.as_ref().map(|m| m.view());
        i.science_noise = self.science_noise.as_ref().map(|m| m.view());
        i.template_noise = self.template_noise.as_ref().map(|m| m.view());
        i.science_gain = self.science_gain;
        i.template_gain = self.template_gain;
        i.science_saturation = header_f64(&self.science.header, "SATURATE");
        i.template_saturation = header_f64(&self.template.header, "SATURATE");
        i
    }
}

/// A numeric header value if present and numeric (GAIN, SATURATE...).
pub fn header_f64(h: &Header, key: &str) -> Option<f64> {
    h.get_f64_opt(key).ok().flatten().filter(|v| v.is_finite())
}

/// The gain: the explicit value, else the header's GAIN (positive values only).
pub fn gain_from(explicit: Option<f64>, h: &Header) -> Option<f64> {
    explicit
        .or_else(|| header_f64(h, "GAIN"))
        .filter(|g| *g > 0.0)
}

/// The gain of `img` and where it came from: the explicit value, else the header's GAIN
/// (positive values only), else an estimate from the sky ([`diffim::subtract::resolve_gain`],
/// pixels of `mask` excluded), announced by a note (via [`say`]); unknown when the sky does
/// not allow one (e.g. a background-subtracted image; the note says why).
pub fn resolve_gain(
    explicit: Option<f64>,
    img: &LoadedImage,
    mask: Option<&Array2<bool>>,
    ctx: &Ctx,
) -> (Option<f64>, GainOrigin) {
    let (gain, origin, note) = gain_with_note(explicit, img, mask);
    if let Some(n) = note {
        say(ctx, n);
    }
    (gain, origin)
}

/// [`resolve_gain`] without printing: the note (estimated value, or why none) is returned
/// for the caller to print where it belongs (stderr when stdout carries data).
pub fn gain_with_note(
    explicit: Option<f64>,
    img: &LoadedImage,
    mask: Option<&Array2<bool>>,
) -> (Option<f64>, GainOrigin, Option<String>) {
    if let Some(g) = explicit.filter(|g| g.is_finite() && *g > 0.0) {
        return (Some(g), GainOrigin::Option, None);
    }
    if let Some(g) = gain_from(None, &img.header) {
        return (Some(g), GainOrigin::Header, None);
    }
    let mask_view = mask.map(|m| m.view());
    let r = diffim::subtract::resolve_gain(&img.data.view(), mask_view.as_ref(), None);
    let note = match (&r.estimate, &r.failure) {
        (Some(e), _) => Some(format!(
            "note: no gain for {}: estimated {:.3} e-/ADU from the sky (sky {:.1} ADU, RMS \
             {:.2} ADU; assumes raw counts with the bias removed)",
            img.path.display(),
            e.gain,
            e.sky,
            e.sky_rms
        )),
        (None, Some(err)) => Some(format!(
            "note: no gain for {}, and {err}; its noise map holds the background noise only \
             (give its gain for the source Poisson term)",
            img.path.display()
        )),
        (None, None) => None,
    };
    match r.source {
        diffim::subtract::GainSource::Estimated => (r.gain, GainOrigin::Estimated, note),
        _ => (None, GainOrigin::Unknown, note),
    }
}

/// A spinner for a long stage, hidden when progress bars are off (not a terminal, or quiet).
pub fn stage(ctx: &Ctx, msg: &str) -> ProgressBar {
    if !ctx.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        pb.set_style(style);
    }
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

/// Prints a line to stdout unless `--quiet` or `--json`.
pub fn say(ctx: &Ctx, msg: impl std::fmt::Display) {
    if !ctx.quiet && !ctx.json {
        println!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdu_specs() {
        assert_eq!(
            parse_hdu_spec(Path::new("a.fits")),
            ("a.fits".into(), Hdu::Primary)
        );
        assert_eq!(
            parse_hdu_spec(Path::new("a.fits[2]")),
            ("a.fits".into(), Hdu::Index(2))
        );
        assert_eq!(
            parse_hdu_spec(Path::new("dir/a.fits[SCI]")),
            ("dir/a.fits".into(), Hdu::Name("SCI".into()))
        );
    }
}
