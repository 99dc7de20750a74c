//! PNG plots of cutouts: planes side by side, marks, titles in an embedded font.
//!
//! Images are drawn the astronomical way up: row 0 at the bottom (ds9 / matplotlib
//! `origin='lower'`). Text uses DejaVu Sans Mono, embedded in the crate (no system fonts).

use std::path::Path;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use image::{Rgb, RgbImage};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::CutoutError;
use crate::meta::MetaValue;
use crate::stamp::{Cutout, MASK};

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// How pixel values map to brightness after the quantile cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stretch {
    /// Linear.
    Linear,
    /// `asinh(10 v) / asinh(10)`: linear near zero, logarithmic for bright values (default).
    #[default]
    Asinh,
    /// `log10(1 + 1000 v) / 3`.
    Log,
    /// Square root.
    Sqrt,
}

impl std::str::FromStr for Stretch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "linear" => Ok(Self::Linear),
            "asinh" => Ok(Self::Asinh),
            "log" => Ok(Self::Log),
            "sqrt" => Ok(Self::Sqrt),
            _ => Err(format!("unknown stretch {s:?} (linear, asinh, log, sqrt)")),
        }
    }
}

impl Stretch {
    fn apply(self, v: f64) -> f64 {
        let v = v.clamp(0.0, 1.0);
        match self {
            Self::Linear => v,
            Self::Asinh => (10.0 * v).asinh() / 10f64.asinh(),
            Self::Log => (1.0 + 1000.0 * v).log10() / 3.0,
            Self::Sqrt => v.sqrt(),
        }
    }
}

/// Colour map of the image planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ColorMap {
    /// Black to white (default).
    #[default]
    Gray,
    /// Perceptually uniform dark-blue to yellow (viridis, 9 anchors interpolated).
    Viridis,
}

impl std::str::FromStr for ColorMap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "gray" | "grey" => Ok(Self::Gray),
            "viridis" => Ok(Self::Viridis),
            _ => Err(format!("unknown colour map {s:?} (gray, viridis)")),
        }
    }
}

const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

impl ColorMap {
    fn rgb(self, v: f64) -> Rgb<u8> {
        let v = v.clamp(0.0, 1.0);
        match self {
            Self::Gray => {
                let g = (v * 255.0).round() as u8;
                Rgb([g, g, g])
            }
            Self::Viridis => {
                let t = v * (VIRIDIS.len() - 1) as f64;
                let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
                let f = t - i as f64;
                let c: [u8; 3] = std::array::from_fn(|k| {
                    let (a, b) = (VIRIDIS[i][k] as f64, VIRIDIS[i + 1][k] as f64);
                    (a + f * (b - a)).round() as u8
                });
                Rgb(c)
            }
        }
    }
}

/// Where a mark goes: stamp pixel coordinates, or sky coordinates (needs the header's WCS).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MarkPos {
    /// Stamp pixel coordinates, 0-based.
    Pixel {
        /// Column.
        x: f64,
        /// Row.
        y: f64,
    },
    /// Right ascension and declination, degrees.
    World {
        /// Right ascension.
        ra: f64,
        /// Declination.
        dec: f64,
    },
}

/// A circle mark (solid radius `r`; `r2` and `r3` dashed, e.g. a background annulus).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Centre.
    pub pos: MarkPos,
    /// Solid circle radius, stamp pixels.
    pub r: f64,
    /// Optional dashed circle radius.
    pub r2: Option<f64>,
    /// Optional second dashed circle radius.
    pub r3: Option<f64>,
}

/// Parameters of [`plot_cutout`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlotParams {
    /// Planes to draw, in order (default: every plane, then the mask).
    pub planes: Option<Vec<String>>,
    /// Marks drawn on every panel (default: a circle of radius 5 at the candidate).
    pub marks: Option<Vec<Mark>>,
    /// Brightness stretch (default asinh).
    pub stretch: Stretch,
    /// Lower and upper percentiles mapped to black and white (default 0.5, 99.5).
    pub qq: (f64, f64),
    /// Gaussian smoothing sigma in pixels before display (default none).
    pub r0: Option<f64>,
    /// Title (default: built from the meta: name, position, time).
    pub title: Option<String>,
    /// Colour map (default gray).
    pub cmap: ColorMap,
    /// Side of each panel in the PNG, pixels (default 192).
    pub panel_size: usize,
}

impl Default for PlotParams {
    fn default() -> Self {
        Self {
            planes: None,
            marks: None,
            stretch: Stretch::Asinh,
            qq: (0.5, 99.5),
            r0: None,
            title: None,
            cmap: ColorMap::Gray,
            panel_size: 192,
        }
    }
}

/// Layout constants of the figure (pixels).
pub mod layout {
    /// Outer margin.
    pub const MARGIN: u32 = 8;
    /// Height of the title band.
    pub const TITLE_H: u32 = 22;
    /// Height of the panel-label band.
    pub const LABEL_H: u32 = 18;
    /// Gap between panels.
    pub const GAP: u32 = 8;
}

/// Colour of solid and dashed marks.
pub const MARK_COLOR: Rgb<u8> = Rgb([0, 230, 0]);
/// Colour of bad pixels in the mask panel.
pub const MASK_BAD: Rgb<u8> = Rgb([230, 40, 40]);
/// Colour of good pixels in the mask panel.
pub const MASK_GOOD: Rgb<u8> = Rgb([25, 25, 35]);
/// Colour of non-finite pixels in image panels.
pub const NAN_COLOR: Rgb<u8> = Rgb([40, 60, 140]);

/// The default title: name (or position), then time when present.
pub fn default_title(c: &Cutout) -> String {
    let mut parts = Vec::new();
    if let Some(MetaValue::Str(n)) = c.meta("name") {
        parts.push(n.clone());
    }
    if let (Some(x), Some(y)) = (
        c.meta("x").and_then(MetaValue::as_f64),
        c.meta("y").and_then(MetaValue::as_f64),
    ) {
        parts.push(format!("x={x:.1} y={y:.1}"));
    }
    if let Some(t) = c.meta("time") {
        parts.push(format!("t={t}"));
    }
    if let Some(a) = &c.adjust {
        parts.push(format!("adj p={:.2e}", a.pvalue));
    }
    parts.join("  ")
}

/// Draws the cutout's planes in one row with marks and titles.
pub fn plot_cutout(c: &Cutout, params: &PlotParams) -> Result<RgbImage, CutoutError> {
    let names: Vec<String> = match &params.planes {
        Some(p) => p.clone(),
        None => c
            .planes
            .iter()
            .map(|(n, _)| n.clone())
            .chain([MASK.to_string()])
            .collect(),
    };
    for n in &names {
        if n != MASK && c.plane(n).is_none() {
            return Err(CutoutError::MissingPlane(n.clone()));
        }
    }
    let n = c.size();
    let zoom = (params.panel_size.max(n) / n).max(1) as u32;
    let panel = n as u32 * zoom;
    let np = names.len().max(1) as u32;
    use layout::*;
    let width = 2 * MARGIN + np * panel + (np - 1) * GAP;
    let height = 2 * MARGIN + TITLE_H + LABEL_H + panel;
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let font = FontRef::try_from_slice(FONT_BYTES).ok();

    let marks = resolve_marks(c, params);
    for (k, name) in names.iter().enumerate() {
        let ox = MARGIN + k as u32 * (panel + GAP);
        let oy = MARGIN + TITLE_H + LABEL_H;
        if name == MASK {
            for y in 0..n {
                for x in 0..n {
                    let col = if c.mask[[y, x]] { MASK_BAD } else { MASK_GOOD };
                    fill(&mut img, ox, oy, zoom, n, x, y, col);
                }
            }
        } else if let Some(plane) = c.plane(name) {
            let data = match params.r0 {
                Some(s) if s > 0.0 => smooth(plane, s),
                _ => plane.mapv(f64::from),
            };
            let (lo, hi) = quantiles(&data, params.qq);
            for y in 0..n {
                for x in 0..n {
                    let v = data[[y, x]];
                    let col = if v.is_finite() {
                        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                        params.cmap.rgb(params.stretch.apply(t))
                    } else {
                        NAN_COLOR
                    };
                    fill(&mut img, ox, oy, zoom, n, x, y, col);
                }
            }
        }
        for &(mx, my, r, r2, r3) in &marks {
            let cx = ox as f64 + (mx + 0.5) * zoom as f64;
            let cy = oy as f64 + (n as f64 - 0.5 - my) * zoom as f64;
            let clip = (ox, oy, ox + panel, oy + panel);
            circle(&mut img, cx, cy, r * zoom as f64, false, clip);
            for rr in [r2, r3].into_iter().flatten() {
                circle(&mut img, cx, cy, rr * zoom as f64, true, clip);
            }
        }
        if let Some(f) = &font {
            draw_text(
                &mut img,
                f,
                name,
                ox as f32 + 2.0,
                (MARGIN + TITLE_H + 13) as f32,
                13.0,
            );
        }
    }
    let title = params.title.clone().unwrap_or_else(|| default_title(c));
    if let Some(f) = &font {
        draw_text(
            &mut img,
            f,
            &title,
            MARGIN as f32,
            (MARGIN + 15) as f32,
            15.0,
        );
    }
    Ok(img)
}

/// Plots and writes a PNG atomically (temporary file in the same folder, then rename).
pub fn save_plot(c: &Cutout, params: &PlotParams, path: &Path) -> Result<(), CutoutError> {
    let img = plot_cutout(c, params)?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| CutoutError::Png {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    fits_io::write_atomic(path, &bytes, fits_io::WriteOptions::overwrite())?;
    Ok(())
}

/// Marks in stamp pixel coordinates.
/// A mark resolved to stamp pixels: (x, y, r, r2, r3).
type PixelMark = (f64, f64, f64, Option<f64>, Option<f64>);

fn resolve_marks(c: &Cutout, params: &PlotParams) -> Vec<PixelMark> {
    let default = || {
        let (x, y) = c.position();
        vec![(x, y, 5.0, None, None)]
    };
    let Some(marks) = &params.marks else {
        return default();
    };
    let wcs = wcs_grid::Wcs::from_header(&c.header).ok();
    marks
        .iter()
        .filter_map(|m| {
            let (x, y) = match m.pos {
                MarkPos::Pixel { x, y } => (x, y),
                MarkPos::World { ra, dec } => wcs.as_ref()?.world_to_pixel(ra, dec)?,
            };
            (x.is_finite() && y.is_finite()).then_some((x, y, m.r, m.r2, m.r3))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // a pixel-fill primitive: all arguments are coordinates
fn fill(
    img: &mut RgbImage,
    ox: u32,
    oy: u32,
    zoom: u32,
    n: usize,
    x: usize,
    y: usize,
    col: Rgb<u8>,
) {
    let row = (n - 1 - y) as u32; // row 0 at the bottom
    for dy in 0..zoom {
        for dx in 0..zoom {
            img.put_pixel(ox + x as u32 * zoom + dx, oy + row * zoom + dy, col);
        }
    }
}

fn circle(img: &mut RgbImage, cx: f64, cy: f64, r: f64, dashed: bool, clip: (u32, u32, u32, u32)) {
    if r.is_nan() || r <= 0.0 {
        return;
    }
    let steps = ((2.0 * std::f64::consts::PI * r) * 2.0).ceil().max(16.0) as usize;
    for k in 0..steps {
        if dashed && (k * 12 / steps) % 2 == 1 {
            continue;
        }
        let t = 2.0 * std::f64::consts::PI * k as f64 / steps as f64;
        let (x, y) = (cx + r * t.cos(), cy + r * t.sin());
        for (px, py) in [(x, y), (x + 0.5, y), (x, y + 0.5)] {
            let (px, py) = (px.floor(), py.floor());
            if px >= clip.0 as f64
                && py >= clip.1 as f64
                && px < clip.2 as f64
                && py < clip.3 as f64
            {
                img.put_pixel(px as u32, py as u32, MARK_COLOR);
            }
        }
    }
}

/// Draws `text` with its baseline at `y`, black on the existing pixels (anti-aliased).
fn draw_text(img: &mut RgbImage, font: &FontRef, text: &str, x: f32, y: f32, size: f32) {
    let scale = PxScale::from(size);
    let scaled = font.as_scaled(scale);
    let mut caret = x;
    let (w, h) = img.dimensions();
    for ch in text.chars() {
        let id = font.glyph_id(ch);
        let glyph = id.with_scale_and_position(scale, point(caret, y));
        caret += scaled.h_advance(id);
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, cov| {
            let (px, py) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
            if px < 0 || py < 0 || px >= w as i64 || py >= h as i64 {
                return;
            }
            let p = img.get_pixel_mut(px as u32, py as u32);
            for c in p.0.iter_mut() {
                *c = (*c as f32 * (1.0 - cov)).round() as u8;
            }
        });
    }
}

fn quantiles(a: &Array2<f64>, qq: (f64, f64)) -> (f64, f64) {
    let mut v: Vec<f64> = a.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = (q / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
        let (i, f) = (pos.floor() as usize, pos.fract());
        let j = (i + 1).min(v.len() - 1);
        v[i] + f * (v[j] - v[i])
    };
    (at(qq.0), at(qq.1))
}

/// Separable Gaussian smoothing that ignores non-finite pixels (weights renormalised).
fn smooth(a: &Array2<f32>, sigma: f64) -> Array2<f64> {
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let (ny, nx) = a.dim();
    let pass = |src: &Array2<f64>, horizontal: bool| {
        Array2::from_shape_fn((ny, nx), |(y, x)| {
            if !src[[y, x]].is_finite() {
                return f64::NAN;
            }
            let (mut s, mut w) = (0.0, 0.0);
            for (t, kv) in (-r..=r).zip(&k) {
                let (yy, xx) = if horizontal {
                    (y as i64, x as i64 + t)
                } else {
                    (y as i64 + t, x as i64)
                };
                if yy < 0 || xx < 0 || yy >= ny as i64 || xx >= nx as i64 {
                    continue;
                }
                let v = src[[yy as usize, xx as usize]];
                if v.is_finite() {
                    s += kv * v;
                    w += kv;
                }
            }
            if w > 0.0 { s / w } else { f64::NAN }
        })
    };
    let a64 = a.mapv(f64::from);
    pass(&pass(&a64, true), false)
}
