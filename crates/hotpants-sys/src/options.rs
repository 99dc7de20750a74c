//! Inputs, parameters, and the derivation of HOTPANTS's command line from them (no I/O).

use crate::HotpantsError;
use fits_io::Header;
use ndarray::ArrayView2;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// FWHM / sigma of a Gaussian as HOTPANTS's documentation rounds it (2 sqrt(2 ln 2) = 2.3548).
pub const FWHM_PER_SIGMA: f64 = 2.35;
/// Default kernel half-width per pixel of the larger FWHM: `r = ceil(2.5 * max(fwhm))`.
pub const KERNEL_HALF_WIDTH_PER_FWHM: f64 = 2.5;
/// Default substamp half-width per kernel half-width: `rss = ceil(1.5 * r)`, HOTPANTS's own
/// default ratio (`-rss 15` for `-r 10`).
pub const SUBSTAMP_PER_KERNEL: f64 = 1.5;
/// Smallest derived kernel half-width, pixels.
pub const MIN_KERNEL_HALF_WIDTH: u32 = 4;
/// Largest derived kernel half-width, pixels.
pub const MAX_KERNEL_HALF_WIDTH: u32 = 50;

/// File names HOTPANTS reads and writes inside the private working directory. The process
/// runs with that directory as its current directory, so the command line holds these short
/// relative names (HOTPANTS copies its command line into a 2048-byte buffer).
pub mod files {
    /// Science image (`-inim`).
    pub const SCIENCE: &str = "sci.fits";
    /// Template image (`-tmplim`).
    pub const TEMPLATE: &str = "tmpl.fits";
    /// Science mask (`-imi`), 1 = bad.
    pub const SCIENCE_MASK: &str = "sci_mask.fits";
    /// Template mask (`-tmi`), 1 = bad.
    pub const TEMPLATE_MASK: &str = "tmpl_mask.fits";
    /// Science noise RMS (`-ini`).
    pub const SCIENCE_NOISE: &str = "sci_noise.fits";
    /// Template noise RMS (`-tni`).
    pub const TEMPLATE_NOISE: &str = "tmpl_noise.fits";
    /// Substamp centres, `x y` per line, 1-based FITS pixels (`-ssf`).
    pub const STAMPS: &str = "stamps.txt";
    /// Difference image (`-outim`).
    pub const DIFF: &str = "diff.fits";
    /// Convolved image (`-oci`).
    pub const CONVOLVED: &str = "conv.fits";
    /// Noise RMS of the difference (`-oni`).
    pub const NOISE: &str = "noise.fits";
    /// Output bit mask (`-omi`).
    pub const MASK: &str = "mask.fits";
    /// Kernel solution table (`-oki`).
    pub const KERNEL: &str = "kernel.fits";
}

/// Flags whose values are file names this crate writes or reads; they cannot be passed
/// through [`HotpantsParams::extra_args`].
pub const RESERVED_FLAGS: &[&str] = &[
    "-inim", "-tmplim", "-outim", "-oci", "-oni", "-omi", "-oki", "-ond", "-imi", "-tmi", "-ini",
    "-tni", "-ssf", "-cmp", "-rf", "-ki", "-savexy", "-nc", "-sht", "-nsht", "-cim", "-nim",
    "-ndm", "-allm", "-pca",
];

/// Which image HOTPANTS convolves (`-c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Convolve {
    /// Convolve the template to the science PSF (`-c t`): the template is sharper.
    Template,
    /// Convolve the science image to the template PSF (`-c i`): the science image is sharper.
    Image,
    /// Try both, keep the better one by HOTPANTS's figure of merit (`-c b`, its default).
    Both,
}

impl Convolve {
    fn flag(self) -> &'static str {
        match self {
            Self::Template => "t",
            Self::Image => "i",
            Self::Both => "b",
        }
    }
}

/// Photometric system of the difference (`-n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// Template's flux scale (`-n t`, HOTPANTS's default).
    Template,
    /// Science image's flux scale (`-n i`): the difference is in science ADU (diffim's
    /// convention and this crate's default).
    #[default]
    Image,
    /// No renormalisation (`-n u`).
    Unconvolved,
}

impl Normalize {
    fn flag(self) -> &'static str {
        match self {
            Self::Template => "t",
            Self::Image => "i",
            Self::Unconvolved => "u",
        }
    }
}

/// One escape-hatch command-line flag with its value tokens, appended after every derived
/// flag (HOTPANTS reads flags left to right, so these override derived values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraArg {
    /// The flag, with its leading `-` (e.g. `"-ft"`).
    pub flag: String,
    /// Its value tokens (none for switches like `-okn`, four for `-gd`).
    pub values: Vec<String>,
}

/// One image as HOTPANTS needs it. Build with [`ImageInput::new`] and the `with_*` methods.
#[derive(Debug, Clone, Copy)]
pub struct ImageInput<'a> {
    /// Pixels, ADU, `[y, x]`. Non-finite pixels are masked and replaced before writing.
    pub data: ArrayView2<'a, f32>,
    /// Header written with the image (HOTPANTS copies the science header, WCS included, to
    /// its outputs); `SATURATE`, `GAIN` and `RDNOISE` are read from it when not given.
    pub header: Option<&'a Header>,
    /// Bad-pixel mask, `true` = bad.
    pub mask: Option<ArrayView2<'a, bool>>,
    /// Per-pixel noise RMS, ADU (`-ini`/`-tni`). Without it HOTPANTS models the noise from
    /// the pixel values, gain and read noise, which is wrong for sky-subtracted images.
    pub noise: Option<ArrayView2<'a, f32>>,
    /// PSF FWHM, pixels (required: it sets the kernel basis and size).
    pub fwhm: f64,
    /// Gain, e-/ADU (`-ig`/`-tg`); else the header's `GAIN`; else 1.
    pub gain: Option<f64>,
    /// Read noise, e- (`-ir`/`-tr`); else the header's `RDNOISE`; else not passed (0).
    pub read_noise: Option<f64>,
    /// Upper valid level, ADU (`-iu`/`-tu`); else the header's `SATURATE`; else the largest
    /// finite pixel plus 1.
    pub saturation: Option<f64>,
    /// Lower valid level, ADU (`-il`/`-tl`); else `median - lower_sigma * MAD-sigma` of the
    /// good pixels ([`HotpantsParams::lower_sigma`]).
    pub lower: Option<f64>,
}

impl<'a> ImageInput<'a> {
    /// An image with its FWHM (pixels); everything else derived.
    pub fn new(data: ArrayView2<'a, f32>, fwhm: f64) -> Self {
        Self {
            data,
            header: None,
            mask: None,
            noise: None,
            fwhm,
            gain: None,
            read_noise: None,
            saturation: None,
            lower: None,
        }
    }
    /// Sets [`header`](Self::header).
    pub fn with_header(mut self, header: &'a Header) -> Self {
        self.header = Some(header);
        self
    }
    /// Sets [`mask`](Self::mask).
    pub fn with_mask(mut self, mask: ArrayView2<'a, bool>) -> Self {
        self.mask = Some(mask);
        self
    }
    /// Sets [`noise`](Self::noise).
    pub fn with_noise(mut self, noise: ArrayView2<'a, f32>) -> Self {
        self.noise = Some(noise);
        self
    }
    /// Sets [`gain`](Self::gain).
    pub fn with_gain(mut self, gain: f64) -> Self {
        self.gain = Some(gain);
        self
    }
    /// Sets [`read_noise`](Self::read_noise).
    pub fn with_read_noise(mut self, read_noise: f64) -> Self {
        self.read_noise = Some(read_noise);
        self
    }
    /// Sets [`saturation`](Self::saturation).
    pub fn with_saturation(mut self, saturation: f64) -> Self {
        self.saturation = Some(saturation);
        self
    }
    /// Sets [`lower`](Self::lower).
    pub fn with_lower(mut self, lower: f64) -> Self {
        self.lower = Some(lower);
        self
    }
}

/// Both images and the stamp positions.
#[derive(Debug, Clone)]
pub struct HotpantsInputs<'a> {
    /// Science ("new") image, HOTPANTS's `-inim`.
    pub science: ImageInput<'a>,
    /// Template ("reference") image on the same grid, `-tmplim`.
    pub template: ImageInput<'a>,
    /// Substamp centres (e.g. isolated bright stars), 0-based `(x, y)` array pixels; written
    /// 1-based to the `-ssf` file. Empty: HOTPANTS finds its own. Positions outside the image
    /// or non-finite are dropped.
    pub stamps: Vec<(f64, f64)>,
}

impl<'a> HotpantsInputs<'a> {
    /// Science and template, no stamp list.
    pub fn new(science: ImageInput<'a>, template: ImageInput<'a>) -> Self {
        Self {
            science,
            template,
            stamps: Vec::new(),
        }
    }
    /// Sets [`stamps`](Self::stamps).
    pub fn with_stamps(mut self, stamps: Vec<(f64, f64)>) -> Self {
        self.stamps = stamps;
        self
    }
}

/// Parameters of a HOTPANTS run. `None` fields are derived from the inputs (see
/// [`derive_options`]); the defaults are listed on each field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HotpantsParams {
    /// The executable; `None`: `$HOTPANTS`, then `hotpants` on `PATH`.
    pub executable: Option<PathBuf>,
    /// Wall-clock limit; the process is killed past it. Default 600 s; `None` = no limit.
    pub timeout: Option<Duration>,
    /// Keep the working directory (inputs, outputs, `stderr.txt`) for debugging; its path is
    /// in [`HotpantsResult::work_dir`](crate::HotpantsResult::work_dir) or the error.
    /// Default false.
    pub keep_dir: bool,
    /// Where to create the working directory; default the system temporary directory.
    pub work_dir_parent: Option<PathBuf>,
    /// Kernel half-width `-r`, pixels. Default `ceil(2.5 * max(fwhm))` clamped to 4..=50.
    pub kernel_half_width: Option<u32>,
    /// Substamp half-width `-rss`, pixels. Default `ceil(1.5 * r)`; never below `r`.
    pub substamp_half_width: Option<u32>,
    /// Gaussian basis `-ng` as `(polynomial degree, sigma in pixels)`. Default
    /// `[(6, s/2), (4, s), (2, 2s)]` with `s` from [`derive_options`].
    pub gaussians: Option<Vec<(u32, f64)>>,
    /// Floor of the matching sigma `s`, pixels: with nearly equal FWHMs `s` would shrink to
    /// zero and the basis would degenerate into delta functions. Default 1.0 (basis sigmas
    /// 0.5, 1, 2 px, close to HOTPANTS's built-in 0.7, 1.5, 3).
    pub min_sigma_match: f64,
    /// Convolution direction `-c`. Default: from the FWHMs (see [`derive_options`]).
    pub convolve: Option<Convolve>,
    /// Photometric normalisation `-n`. Default [`Normalize::Image`].
    pub normalize: Normalize,
    /// Regions `(nx, ny)` with independent kernel solutions, `-nrx -nry`. Default (1, 1).
    pub regions: (u32, u32),
    /// Stamps per region `(nx, ny)`, `-nsx -nsy`. Default `None` (HOTPANTS: 10 x 10).
    pub stamps_per_region: Option<(u32, u32)>,
    /// Spatial order of the kernel `-ko`. Default `None` (HOTPANTS: 2).
    pub kernel_order: Option<u32>,
    /// Spatial order of the background `-bgo`. Default `None` (HOTPANTS: 1).
    pub background_order: Option<u32>,
    /// Lower valid level = `median - lower_sigma * sigma` when not given. Default 10.
    pub lower_sigma: f64,
    /// HOTPANTS verbosity `-v` (0-2). Default 1.
    pub verbosity: u8,
    /// Ask for the kernel solution table (`-oki kernel.fits`; also puts the basis keywords
    /// `NGAUSS`, `DGAUSSn`, `SGAUSSn`, `FWKERN`, `CKORDER`, `BGORDER` in the difference
    /// header). Default true.
    pub kernel_info: bool,
    /// Any other flags, appended last. Flags naming files are refused ([`RESERVED_FLAGS`]).
    pub extra_args: Vec<ExtraArg>,
    /// Extra environment variables for the process (e.g. `LD_LIBRARY_PATH` for a cfitsio
    /// outside the system paths). Default none; the rest of the environment is inherited.
    pub env: Vec<(String, String)>,
}

impl Default for HotpantsParams {
    fn default() -> Self {
        Self {
            executable: None,
            timeout: Some(Duration::from_secs(600)),
            keep_dir: false,
            work_dir_parent: None,
            kernel_half_width: None,
            substamp_half_width: None,
            gaussians: None,
            min_sigma_match: 1.0,
            convolve: None,
            normalize: Normalize::Image,
            regions: (1, 1),
            stamps_per_region: None,
            kernel_order: None,
            background_order: None,
            lower_sigma: 10.0,
            verbosity: 1,
            kernel_info: true,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl HotpantsParams {
    /// Sets [`executable`](Self::executable).
    pub fn executable(mut self, path: impl Into<PathBuf>) -> Self {
        self.executable = Some(path.into());
        self
    }
    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets [`keep_dir`](Self::keep_dir).
    pub fn keep_dir(mut self, keep: bool) -> Self {
        self.keep_dir = keep;
        self
    }
    /// Sets [`regions`](Self::regions).
    pub fn regions(mut self, nx: u32, ny: u32) -> Self {
        self.regions = (nx, ny);
        self
    }
    /// Sets [`convolve`](Self::convolve).
    pub fn convolve(mut self, c: Convolve) -> Self {
        self.convolve = Some(c);
        self
    }
    /// Sets [`normalize`](Self::normalize).
    pub fn normalize(mut self, n: Normalize) -> Self {
        self.normalize = n;
        self
    }
    /// Sets [`kernel_half_width`](Self::kernel_half_width).
    pub fn kernel_half_width(mut self, r: u32) -> Self {
        self.kernel_half_width = Some(r);
        self
    }
    /// Adds an environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// Appends an escape-hatch flag, e.g. `.arg("-ft", &["10"])` or `.arg("-okn", &[])`.
    pub fn arg(mut self, flag: &str, values: &[&str]) -> Self {
        self.extra_args.push(ExtraArg {
            flag: flag.to_string(),
            values: values.iter().map(|v| v.to_string()).collect(),
        });
        self
    }
}

/// Where a valid-data limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// Given in [`ImageInput`].
    Given,
    /// The header's `SATURATE`.
    Header,
    /// From the pixel values (largest pixel + 1, or median - N sigma).
    Data,
}

/// The per-image part of [`DerivedOptions`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideOptions {
    /// Upper valid level `-iu`/`-tu`, ADU.
    pub upper: f64,
    /// Where `upper` came from.
    pub upper_source: LimitSource,
    /// Lower valid level `-il`/`-tl`, ADU.
    pub lower: f64,
    /// Where `lower` came from.
    pub lower_source: LimitSource,
    /// Gain `-ig`/`-tg`, e-/ADU.
    pub gain: f64,
    /// Read noise `-ir`/`-tr`, e-; not passed when `None` (HOTPANTS: 0).
    pub read_noise: Option<f64>,
    /// A noise map is passed (`-ini`/`-tni`).
    pub noise_map: bool,
    /// Median of the good pixels (the value written in place of non-finite pixels).
    pub fill: f64,
    /// FWHM, pixels.
    pub fwhm: f64,
}

/// Everything that goes on HOTPANTS's command line, derived from the inputs and parameters
/// by [`derive_options`]; [`DerivedOptions::to_args`] turns it into the argument vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DerivedOptions {
    /// `sqrt(|fwhm_sci^2 - fwhm_tmpl^2|) / 2.35`, pixels, before the floor.
    pub sigma_match: f64,
    /// The sigma the basis is built from: `max(sigma_match, min_sigma_match)`.
    pub sigma_basis: f64,
    /// Convolution direction `-c`.
    pub convolve: Convolve,
    /// Gaussian basis `-ng`, `(degree, sigma)`.
    pub gaussians: Vec<(u32, f64)>,
    /// `-r`.
    pub kernel_half_width: u32,
    /// `-rss`.
    pub substamp_half_width: u32,
    /// Science (`-i*`) options.
    pub science: SideOptions,
    /// Template (`-t*`) options.
    pub template: SideOptions,
    /// Substamp centres kept, 0-based `(x, y)` (written 1-based).
    pub stamps: Vec<(f64, f64)>,
    /// `-n`.
    pub normalize: Normalize,
    /// `-nrx -nry`.
    pub regions: (u32, u32),
    /// `-nsx -nsy`.
    pub stamps_per_region: Option<(u32, u32)>,
    /// `-ko`.
    pub kernel_order: Option<u32>,
    /// `-bgo`.
    pub background_order: Option<u32>,
    /// `-v`.
    pub verbosity: u8,
    /// `-oki`.
    pub kernel_info: bool,
    /// Escape-hatch flags, last.
    pub extra_args: Vec<ExtraArg>,
}

/// Formats a number for the command line: at most 4 decimals, trailing zeros dropped
/// (`2.0 -> "2"`, `0.61725 -> "0.6173"`, `25000.0 -> "25000"`).
pub fn fmt_num(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

impl DerivedOptions {
    /// The argument vector (without the program name). File names are relative to the
    /// working directory ([`files`]).
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |flag: &str, vals: &[String]| {
            a.push(flag.to_string());
            a.extend(vals.iter().cloned());
        };
        let s = |x: &str| vec![x.to_string()];
        push("-inim", &s(files::SCIENCE));
        push("-tmplim", &s(files::TEMPLATE));
        push("-outim", &s(files::DIFF));
        push("-oci", &s(files::CONVOLVED));
        push("-oni", &s(files::NOISE));
        push("-omi", &s(files::MASK));
        if self.kernel_info {
            push("-oki", &s(files::KERNEL));
        }
        push("-imi", &s(files::SCIENCE_MASK));
        push("-tmi", &s(files::TEMPLATE_MASK));
        if self.science.noise_map {
            push("-ini", &s(files::SCIENCE_NOISE));
        }
        if self.template.noise_map {
            push("-tni", &s(files::TEMPLATE_NOISE));
        }
        for (p, side) in [("i", &self.science), ("t", &self.template)] {
            push(&format!("-{p}u"), &[fmt_num(side.upper)]);
            push(&format!("-{p}l"), &[fmt_num(side.lower)]);
            push(&format!("-{p}g"), &[fmt_num(side.gain)]);
            if let Some(rn) = side.read_noise {
                push(&format!("-{p}r"), &[fmt_num(rn)]);
            }
        }
        push("-r", &[self.kernel_half_width.to_string()]);
        push("-rss", &[self.substamp_half_width.to_string()]);
        let mut ng = vec![self.gaussians.len().to_string()];
        for &(deg, sig) in &self.gaussians {
            ng.push(deg.to_string());
            ng.push(fmt_num(sig));
        }
        push("-ng", &ng);
        push("-c", &s(self.convolve.flag()));
        push("-n", &s(self.normalize.flag()));
        push("-nrx", &[self.regions.0.to_string()]);
        push("-nry", &[self.regions.1.to_string()]);
        if let Some((nx, ny)) = self.stamps_per_region {
            push("-nsx", &[nx.to_string()]);
            push("-nsy", &[ny.to_string()]);
        }
        if !self.stamps.is_empty() {
            push("-ssf", &s(files::STAMPS));
        }
        if let Some(o) = self.kernel_order {
            push("-ko", &[o.to_string()]);
        }
        if let Some(o) = self.background_order {
            push("-bgo", &[o.to_string()]);
        }
        push("-v", &[self.verbosity.to_string()]);
        for e in &self.extra_args {
            push(&e.flag, &e.values);
        }
        a
    }

    /// The `-ssf` file's text: one `x y` line per stamp, 1-based FITS pixels.
    pub fn stamp_file_text(&self) -> String {
        self.stamps
            .iter()
            .map(|&(x, y)| format!("{:.3} {:.3}\n", x + 1.0, y + 1.0))
            .collect()
    }
}

fn positive_finite(name: &'static str, v: f64) -> Result<f64, HotpantsError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(HotpantsError::InvalidInput {
            name,
            reason: format!("{v} is not a positive finite number"),
        })
    }
}

fn header_f64(h: Option<&Header>, key: &str) -> Option<f64> {
    h.and_then(|h| h.get_f64_opt(key).ok().flatten())
        .filter(|v| v.is_finite())
}

fn check_shape<T>(
    name: &'static str,
    expected: (usize, usize),
    a: Option<&ArrayView2<T>>,
) -> Result<(), HotpantsError> {
    match a {
        Some(a) if a.dim() != expected => Err(HotpantsError::ShapeMismatch {
            name,
            expected,
            got: a.dim(),
        }),
        _ => Ok(()),
    }
}

/// Good-pixel statistics of one image: `(median, MAD-sigma, max)` over finite unmasked
/// pixels (`max` over all finite pixels).
fn pixel_stats(img: &ImageInput, name: &'static str) -> Result<(f64, f64, f64), HotpantsError> {
    let mut good = Vec::with_capacity(img.data.len());
    let mut max = f64::NEG_INFINITY;
    for ((iy, ix), &v) in img.data.indexed_iter() {
        if !v.is_finite() {
            continue;
        }
        max = max.max(v as f64);
        let masked = img.mask.as_ref().is_some_and(|m| m[[iy, ix]]);
        if !masked {
            good.push(v as f64);
        }
    }
    let med = diffim_core::stats::median_in_place(&mut good).ok_or_else(|| {
        HotpantsError::InvalidInput {
            name,
            reason: "no finite unmasked pixels".into(),
        }
    })?;
    let sigma = diffim_core::stats::mad_std(good.iter().copied()).unwrap_or(0.0);
    Ok((med, sigma, max))
}

fn side_options(
    img: &ImageInput,
    name: &'static str,
    params: &HotpantsParams,
) -> Result<SideOptions, HotpantsError> {
    let fwhm = positive_finite(
        if name == "science" {
            "science fwhm"
        } else {
            "template fwhm"
        },
        img.fwhm,
    )?;
    let (med, sigma, max) = pixel_stats(img, name)?;
    let (upper, upper_source) = match (img.saturation, header_f64(img.header, "SATURATE")) {
        (Some(s), _) => (s, LimitSource::Given),
        (None, Some(s)) => (s, LimitSource::Header),
        (None, None) => (max + 1.0, LimitSource::Data),
    };
    let (lower, lower_source) = match img.lower {
        Some(l) => (l, LimitSource::Given),
        None => (med - params.lower_sigma * sigma, LimitSource::Data),
    };
    if !(upper.is_finite() && lower.is_finite() && upper > 0.0 && upper > lower) {
        return Err(HotpantsError::InvalidInput {
            name: if name == "science" {
                "science valid range"
            } else {
                "template valid range"
            },
            reason: format!(
                "HOTPANTS needs 0 < upper and lower < upper; got lower {lower}, upper {upper}"
            ),
        });
    }
    let gain = match img.gain.or_else(|| header_f64(img.header, "GAIN")) {
        Some(g) => positive_finite(
            if name == "science" {
                "science gain"
            } else {
                "template gain"
            },
            g,
        )?,
        None => 1.0,
    };
    let read_noise = img
        .read_noise
        .or_else(|| header_f64(img.header, "RDNOISE"))
        .filter(|&r| r > 0.0 && r.is_finite());
    Ok(SideOptions {
        upper,
        upper_source,
        lower,
        lower_source,
        gain,
        read_noise,
        noise_map: img.noise.is_some(),
        fill: med,
        fwhm,
    })
}

/// Derives HOTPANTS's options from the images and parameters (ALGORITHMS.md section 6).
///
/// * **Basis** (`-ng 3 6 s/2 4 s 2 2s`): `s = sqrt(|fwhm_sci^2 - fwhm_tmpl^2|) / 2.35` is the
///   sigma of the Gaussian that turns the sharper PSF into the broader one (Alard & Lupton
///   1998; Becker's recommendation), floored at [`HotpantsParams::min_sigma_match`].
/// * **Direction** (`-c`): the sharper image is convolved: `t` when the science FWHM is the
///   larger, `i` when the template's is (the FWHMs are "reversed"), `b` (let HOTPANTS choose
///   by its figure of merit) when `s` is below the floor (nearly equal FWHMs).
/// * **Sizes**: `-r = ceil(2.5 max(fwhm))` in 4..=50, `-rss = max(ceil(1.5 r), r)`.
/// * **Valid ranges**: `-iu/-tu` from the given saturation, else `SATURATE`, else the largest
///   pixel + 1; `-il/-tl` from the given lower level, else `median - lower_sigma * sigma`.
/// * **Noise**: gains (`-ig/-tg`, else `GAIN`, else 1) and read noise (`-ir/-tr`, else
///   `RDNOISE`) are always passed; noise maps, when given, as `-ini/-tni`.
///
/// # Errors
/// [`HotpantsError::ShapeMismatch`], [`HotpantsError::InvalidInput`] (non-positive FWHM or
/// gain, no good pixels, an empty valid range, zero regions, non-finite basis sigma),
/// [`HotpantsError::ReservedFlag`].
pub fn derive_options(
    inputs: &HotpantsInputs,
    params: &HotpantsParams,
) -> Result<DerivedOptions, HotpantsError> {
    let dim = inputs.science.data.dim();
    if dim.0 == 0 || dim.1 == 0 {
        return Err(HotpantsError::InvalidInput {
            name: "science",
            reason: "empty image".into(),
        });
    }
    check_shape("template", dim, Some(&inputs.template.data))?;
    check_shape("science mask", dim, inputs.science.mask.as_ref())?;
    check_shape("template mask", dim, inputs.template.mask.as_ref())?;
    check_shape("science noise", dim, inputs.science.noise.as_ref())?;
    check_shape("template noise", dim, inputs.template.noise.as_ref())?;
    for e in &params.extra_args {
        if !e.flag.starts_with('-') || e.flag.len() < 2 || e.flag.contains(char::is_whitespace) {
            return Err(HotpantsError::ReservedFlag {
                flag: e.flag.clone(),
                reason: "flags start with '-' and contain no spaces",
            });
        }
        if RESERVED_FLAGS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&e.flag))
        {
            return Err(HotpantsError::ReservedFlag {
                flag: e.flag.clone(),
                reason: "it names a file or output layer this crate manages",
            });
        }
    }
    if params.regions.0 == 0 || params.regions.1 == 0 {
        return Err(HotpantsError::InvalidInput {
            name: "regions",
            reason: format!("{:?}: need at least 1 x 1", params.regions),
        });
    }
    let floor = params.min_sigma_match;
    if !(floor.is_finite() && floor > 0.0) {
        return Err(HotpantsError::InvalidInput {
            name: "min_sigma_match",
            reason: format!("{floor} is not a positive finite number"),
        });
    }
    if !(params.lower_sigma.is_finite() && params.lower_sigma > 0.0) {
        return Err(HotpantsError::InvalidInput {
            name: "lower_sigma",
            reason: format!("{} is not a positive finite number", params.lower_sigma),
        });
    }
    let science = side_options(&inputs.science, "science", params)?;
    let template = side_options(&inputs.template, "template", params)?;

    let d2 = science.fwhm * science.fwhm - template.fwhm * template.fwhm;
    let sigma_match = d2.abs().sqrt() / FWHM_PER_SIGMA;
    let sigma_basis = sigma_match.max(floor);
    let convolve = params.convolve.unwrap_or(if sigma_match < floor {
        Convolve::Both
    } else if d2 > 0.0 {
        Convolve::Template
    } else {
        Convolve::Image
    });
    let gaussians = match &params.gaussians {
        Some(g) => {
            if g.is_empty() || g.iter().any(|&(_, s)| !(s.is_finite() && s > 0.0)) {
                return Err(HotpantsError::InvalidInput {
                    name: "gaussians",
                    reason: format!("{g:?}: need at least one positive finite sigma"),
                });
            }
            g.clone()
        }
        None => vec![
            (6, 0.5 * sigma_basis),
            (4, sigma_basis),
            (2, 2.0 * sigma_basis),
        ],
    };
    let max_fwhm = science.fwhm.max(template.fwhm);
    let r = match params.kernel_half_width {
        Some(0) => {
            return Err(HotpantsError::InvalidInput {
                name: "kernel_half_width",
                reason: "must be at least 1".into(),
            });
        }
        Some(r) => r,
        None => {
            let r = (KERNEL_HALF_WIDTH_PER_FWHM * max_fwhm).ceil();
            (r.min(MAX_KERNEL_HALF_WIDTH as f64) as u32).max(MIN_KERNEL_HALF_WIDTH)
        }
    };
    let rss = params
        .substamp_half_width
        .unwrap_or_else(|| (SUBSTAMP_PER_KERNEL * r as f64).ceil() as u32)
        .max(r);
    let (ny, nx) = dim;
    let stamps = inputs
        .stamps
        .iter()
        .copied()
        .filter(|&(x, y)| {
            x.is_finite()
                && y.is_finite()
                && x >= -0.5
                && y >= -0.5
                && x < nx as f64 - 0.5
                && y < ny as f64 - 0.5
        })
        .collect();
    Ok(DerivedOptions {
        sigma_match,
        sigma_basis,
        convolve,
        gaussians,
        kernel_half_width: r,
        substamp_half_width: rss,
        science,
        template,
        stamps,
        normalize: params.normalize,
        regions: params.regions,
        stamps_per_region: params.stamps_per_region,
        kernel_order: params.kernel_order,
        background_order: params.background_order,
        verbosity: params.verbosity,
        kernel_info: params.kernel_info,
        extra_args: params.extra_args.clone(),
    })
}
