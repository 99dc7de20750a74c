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
    /// Science gain (explicit, else GAIN).
    pub science_gain: Option<f64>,
    /// Template gain.
    pub template_gain: Option<f64>,
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
    /// Science gain, e-/ADU (default: the GAIN keyword).
    #[arg(long)]
    pub gain: Option<f64>,
    /// Template gain, e-/ADU (default: the template's GAIN keyword).
    #[arg(long)]
    pub template_gain: Option<f64>,
    /// Path of the hotpants executable (default: $HOTPANTS, then PATH).
    #[arg(long)]
    pub hotpants: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    pub overwrite: bool,
}

impl SubtractArgs {
    /// The method, or a usage error naming the accepted ones.
    pub fn method(&self) -> Result<diffim::subtract::Method, CliError> {
        self.method
            .parse()
            .map_err(|e: diffim::subtract::SubtractError| CliError::usage(e.to_string()))
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
    /// Loads the masks and noise maps of `files` for an already loaded pair, checking shapes.
    pub fn load(
        science: LoadedImage,
        template: LoadedImage,
        files: &PairFiles,
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
        Ok(Self {
            science_mask: load_mask(files.mask, shape)?,
            template_mask: load_mask(files.template_mask, shape)?,
            science_noise: load_noise(files.noise, shape)?,
            template_noise: load_noise(files.template_noise, shape)?,
            science_gain: gain_from(files.gain, &science.header),
            template_gain: gain_from(files.template_gain, &template.header),
            science,
            template,
        })
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
