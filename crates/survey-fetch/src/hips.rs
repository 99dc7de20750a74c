//! Raw HiPS FITS tiles (IVOA HiPS 1.0, Fernique et al. 2017), resampled here onto the grid.
//!
//! A tile of order `k` and index `n` (HEALPix NESTED, `nside = 2^k`) with width `W = 2^w`
//! holds the cells of order `k + w` whose hashes are `n W^2 + s`, `s` in `0..W^2`. The sub-hash
//! `s` interleaves two `w`-bit coordinates: `i` in the even bits (the cell's south-to-east
//! axis) and `j` in the odd bits (south-to-west). In the FITS tile, as read into an `[y, x]`
//! array, cell `(i, j)` is at `x = j`, `y = W - 1 - i` (the layout of Aladin/Hipsgen tiles, also
//! written by the `hips` Python package: its `[[0, 1], [2, 3]]` recursion rotated by 90 deg).

use std::collections::{BTreeMap, HashMap};

use ndarray::Array2;
use wcs_grid::Grid;

use crate::Template;
use crate::error::FetchError;
use crate::hips2fits::{finish, grid_header};
use crate::transport::{Expect, FetchOptions, Fetcher};

/// Most tiles one template may need (a bound on the request loop).
pub const MAX_TILES: usize = 4096;

/// Celestial frame of a HiPS (`hips_frame`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HipsFrame {
    /// ICRS (`equatorial`, the default).
    Equatorial,
    /// Galactic.
    Galactic,
}

/// The parts of a HiPS `properties` file this crate uses.
#[derive(Debug, Clone, PartialEq)]
pub struct HipsProperties {
    /// Deepest tile order (`hips_order`).
    pub order: u8,
    /// Shallowest tile order (`hips_order_min`, default 0).
    pub order_min: u8,
    /// Tile width in pixels (`hips_tile_width`, default 512; a power of two).
    pub tile_width: usize,
    /// Frame (`hips_frame`).
    pub frame: HipsFrame,
    /// Tile formats (`hips_tile_format`, e.g. `["jpeg", "fits"]`).
    pub formats: Vec<String>,
    /// Every `key = value` line.
    pub all: BTreeMap<String, String>,
}

/// Parses a HiPS `properties` file (`key = value` lines, `#` comments).
///
/// # Errors
/// [`FetchError::Malformed`] without a valid `hips_order`, with a tile width that is not a power
/// of two in 2..=4096, an unknown frame, or a tile format list without `fits`.
pub fn parse_properties(text: &str, url: &str) -> Result<HipsProperties, FetchError> {
    let bad = |reason: String| FetchError::Malformed {
        url: url.to_string(),
        reason,
    };
    let mut all = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            all.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let num = |key: &str| -> Result<Option<u64>, FetchError> {
        match all.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad(format!("{key} = {v:?} is not an integer"))),
        }
    };
    let order = num("hips_order")?.ok_or_else(|| bad("no hips_order".into()))?;
    if order > 24 {
        return Err(bad(format!("hips_order {order} above 24")));
    }
    let order_min = num("hips_order_min")?.unwrap_or(0).min(order);
    let tile_width = num("hips_tile_width")?.unwrap_or(512);
    if !(2..=4096).contains(&tile_width) || !tile_width.is_power_of_two() {
        return Err(bad(format!(
            "hips_tile_width {tile_width} is not a power of two in 2..=4096"
        )));
    }
    let frame = match all.get("hips_frame").map(|s| s.to_ascii_lowercase()) {
        None => HipsFrame::Equatorial,
        Some(f) if f == "equatorial" || f == "icrs" || f == "c" => HipsFrame::Equatorial,
        Some(f) if f == "galactic" || f == "g" => HipsFrame::Galactic,
        Some(f) => return Err(bad(format!("unsupported hips_frame {f:?}"))),
    };
    let formats: Vec<String> = all
        .get("hips_tile_format")
        .map(|s| {
            s.split_whitespace()
                .map(|t| t.to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_else(|| vec!["fits".to_string()]);
    if !formats.iter().any(|f| f == "fits") {
        return Err(bad(format!(
            "no FITS tiles (hips_tile_format = {formats:?})"
        )));
    }
    Ok(HipsProperties {
        order: order as u8,
        order_min: order_min as u8,
        tile_width: tile_width as usize,
        frame,
        formats,
        all,
    })
}

/// Path of a FITS tile relative to the HiPS root: `Norder{k}/Dir{10000*floor(n/10000)}/Npix{n}.fits`.
///
/// ```
/// assert_eq!(survey_fetch::tile_path(9, 123456), "Norder9/Dir120000/Npix123456.fits");
/// ```
pub fn tile_path(order: u8, npix: u64) -> String {
    format!(
        "Norder{order}/Dir{}/Npix{npix}.fits",
        (npix / 10000) * 10000
    )
}

/// Angular size of a tile pixel at tile order `order`, arcsec: `sqrt(4 pi / (12 * 4^(order+w)))`.
pub fn tile_pixel_scale(order: u8, tile_width: usize) -> f64 {
    let w = tile_width.trailing_zeros() as i32;
    let cells = 12.0 * 4f64.powi(order as i32 + w);
    (4.0 * std::f64::consts::PI / cells).sqrt().to_degrees() * 3600.0
}

/// The shallowest order in `order_min..=order_max` whose tile pixels are no coarser than
/// `pixel_scale_arcsec` (the deepest order when none is fine enough).
pub fn choose_order(
    pixel_scale_arcsec: f64,
    tile_width: usize,
    order_min: u8,
    order_max: u8,
) -> u8 {
    (order_min..=order_max)
        .find(|&k| tile_pixel_scale(k, tile_width) <= pixel_scale_arcsec)
        .unwrap_or(order_max)
}

/// Splits a sub-hash into its even-bit (`i`) and odd-bit (`j`) coordinates.
fn deinterleave(s: u64) -> (u64, u64) {
    let (mut i, mut j) = (0u64, 0u64);
    for b in 0..32 {
        i |= ((s >> (2 * b)) & 1) << b;
        j |= ((s >> (2 * b + 1)) & 1) << b;
    }
    (i, j)
}

/// Tile pixel `(x, y)` (array `[y, x]` of the FITS tile) of sub-hash `s` in a tile of width
/// `tile_width`. See the module docs.
pub fn tile_pixel_of_subhash(s: u64, tile_width: usize) -> (usize, usize) {
    let (i, j) = deinterleave(s);
    (j as usize, tile_width - 1 - i as usize)
}

/// Sub-hash (nested index relative to the tile, `0..W^2`) of tile pixel `(x, y)`.
pub fn subhash_of_tile_pixel(x: usize, y: usize, tile_width: usize) -> u64 {
    let i = (tile_width - 1 - y) as u64;
    let j = x as u64;
    let mut s = 0u64;
    for b in 0..32 {
        s |= ((i >> b) & 1) << (2 * b);
        s |= ((j >> b) & 1) << (2 * b + 1);
    }
    s
}

/// ICRS -> Galactic rotation matrix (Hipparcos definition).
const ICRS_TO_GAL: [[f64; 3]; 3] = [
    [
        -0.054_875_560_416_215_4,
        -0.873_437_090_234_885,
        -0.483_835_015_548_713_2,
    ],
    [
        0.494_109_427_875_583_7,
        -0.444_829_629_960_011_2,
        0.746_982_244_497_219,
    ],
    [
        -0.867_666_149_019_004_7,
        -0.198_076_373_431_201_5,
        0.455_983_776_175_066_9,
    ],
];

/// ICRS (ra, dec) in degrees -> galactic (l, b) in degrees.
pub fn icrs_to_galactic(ra: f64, dec: f64) -> (f64, f64) {
    let (sa, ca) = ra.to_radians().sin_cos();
    let (sd, cd) = dec.to_radians().sin_cos();
    let v = [cd * ca, cd * sa, sd];
    let g: Vec<f64> = ICRS_TO_GAL
        .iter()
        .map(|r| r[0] * v[0] + r[1] * v[1] + r[2] * v[2])
        .collect();
    let l = g[1].atan2(g[0]).to_degrees().rem_euclid(360.0);
    let b = g[2].clamp(-1.0, 1.0).asin().to_degrees();
    (l, b)
}

/// Where one target pixel falls: tile index and continuous tile pixel coordinates.
#[derive(Clone, Copy)]
struct Hit {
    tile: u64,
    tx: f64,
    ty: f64,
}

fn locate(grid: &Grid, frame: HipsFrame, order: u8, width: usize) -> Vec<Option<Hit>> {
    let layer = cdshealpix::nested::get(order);
    let w = width as f64;
    let (ny, nx) = grid.shape();
    let mut out = Vec::with_capacity(ny * nx);
    for y in 0..ny {
        for x in 0..nx {
            let hit = grid
                .wcs()
                .pixel_to_world(x as f64, y as f64)
                .filter(|(a, d)| a.is_finite() && d.is_finite())
                .map(|(ra, dec)| {
                    let (lon, lat) = match frame {
                        HipsFrame::Equatorial => (ra, dec),
                        HipsFrame::Galactic => icrs_to_galactic(ra, dec),
                    };
                    let lat = lat.clamp(-90.0, 90.0).to_radians();
                    let (tile, dx, dy) = layer.hash_with_dxdy(lon.to_radians(), lat);
                    // i = dx W - 1/2 (south-to-east), j = dy W - 1/2; x = j, y = W - 1 - i.
                    Hit {
                        tile,
                        tx: dy * w - 0.5,
                        ty: w - 1.0 - (dx * w - 0.5),
                    }
                });
            out.push(hit);
        }
    }
    out
}

/// Bilinear interpolation inside one tile, coordinates clamped to the tile (half a tile pixel
/// of constant extrapolation along tile borders). NaN if a used pixel is not finite.
fn bilinear(tile: &Array2<f64>, tx: f64, ty: f64) -> f64 {
    let (h, w) = tile.dim();
    let x = tx.clamp(0.0, (w - 1) as f64);
    let y = ty.clamp(0.0, (h - 1) as f64);
    let x0 = (x.floor() as usize).min(w.saturating_sub(2));
    let y0 = (y.floor() as usize).min(h.saturating_sub(2));
    let fx = x - x0 as f64;
    let fy = y - y0 as f64;
    let mut acc = 0.0;
    for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
        for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
            let wgt = wx * wy;
            if wgt <= 0.0 {
                continue;
            }
            let v = tile[[y0 + dy, x0 + dx]];
            if !v.is_finite() {
                return f64::NAN;
            }
            acc += wgt * v;
        }
    }
    acc
}

/// Options of [`hips_tiles`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HipsTilesParams {
    /// Tile order to use; `None` (default) = chosen from the grid's pixel scale
    /// ([`choose_order`]).
    pub order: Option<u8>,
}

/// Fetches the raw FITS tiles of the HiPS at `base` (http(s) URL, `file://` URL or folder)
/// covering `grid` and resamples them bilinearly onto it. Missing tiles (404, or absent in a
/// local mirror) are masked; every other error is returned.
///
/// # Errors
/// Transport errors, [`FetchError::Malformed`] for bad `properties` or tiles of the wrong size,
/// [`FetchError::InvalidParameter`] when more than [`MAX_TILES`] tiles would be needed,
/// [`FetchError::EmptyResult`] when no tile covering the grid exists.
pub fn hips_tiles(
    base: &str,
    grid: &Grid,
    params: &HipsTilesParams,
    opts: &FetchOptions,
) -> Result<Template, FetchError> {
    let fetcher = Fetcher::new(opts)?;
    hips_tiles_with(&fetcher, base, grid, params)
}

pub(crate) fn hips_tiles_with(
    fetcher: &Fetcher,
    base: &str,
    grid: &Grid,
    params: &HipsTilesParams,
) -> Result<Template, FetchError> {
    let base = base.trim_end_matches('/');
    let purl = format!("{base}/properties");
    let props = parse_properties(&fetcher.get_text(&purl)?, &purl)?;
    let order = match params.order {
        Some(k) => k.min(props.order),
        None => choose_order(
            grid.pixel_scale()?,
            props.tile_width,
            props.order_min,
            props.order,
        ),
    };
    let hits = locate(grid, props.frame, order, props.tile_width);
    let mut tiles: Vec<u64> = hits.iter().flatten().map(|h| h.tile).collect();
    tiles.sort_unstable();
    tiles.dedup();
    if tiles.len() > MAX_TILES {
        return Err(FetchError::InvalidParameter {
            name: "grid",
            reason: format!(
                "needs {} HiPS tiles at order {order} (limit {MAX_TILES})",
                tiles.len()
            ),
        });
    }
    let urls: Vec<String> = tiles
        .iter()
        .map(|&n| format!("{base}/{}", tile_path(order, n)))
        .collect();
    let limit = fetcher.options().max_in_flight;
    let results = fetcher.get_many(&urls, Expect::Fits, limit, "HiPS tiles");
    let mut data_of: HashMap<u64, Array2<f64>> = HashMap::new();
    for ((&n, url), r) in tiles.iter().zip(&urls).zip(results) {
        match r {
            Ok(mut imgs) => {
                let img = imgs.swap_remove(0);
                if img.data.dim() != (props.tile_width, props.tile_width) {
                    return Err(FetchError::Malformed {
                        url: url.clone(),
                        reason: format!(
                            "tile has shape {:?}, hips_tile_width is {}",
                            img.data.dim(),
                            props.tile_width
                        ),
                    });
                }
                data_of.insert(n, img.data);
            }
            Err(FetchError::HttpStatus { status: 404, .. }) => {}
            Err(FetchError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            Err(e) => return Err(e),
        }
    }
    if data_of.is_empty() {
        return Err(FetchError::EmptyResult {
            what: format!("HiPS tiles at order {order} under {base}"),
        });
    }
    let (ny, nx) = grid.shape();
    let mut out = Array2::from_elem((ny, nx), f64::NAN);
    for (v, hit) in out.iter_mut().zip(&hits) {
        if let Some(h) = hit
            && let Some(t) = data_of.get(&h.tile)
        {
            *v = bilinear(t, h.tx, h.ty);
        }
    }
    let (image, mask) = finish(&out);
    let mut header = grid_header(grid, "hips-tiles");
    header.set_with_comment("HIPSORD", order as i64, "HiPS tile order used");
    header.set_with_comment("HIPSURL", base, "HiPS root");
    Ok(Template {
        image,
        mask,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subhash_layout_matches_the_hips_convention() {
        // W = 2: the hips package's [[0, 1], [2, 3]] rotated by 90 degrees (np.rot90) is
        // [[1, 3], [0, 2]] as an [y, x] array.
        let expect = [[1u64, 3], [0, 2]];
        for (y, row) in expect.iter().enumerate() {
            for (x, &s) in row.iter().enumerate() {
                assert_eq!(subhash_of_tile_pixel(x, y, 2), s);
                assert_eq!(tile_pixel_of_subhash(s, 2), (x, y));
            }
        }
        // W = 8: the two maps are inverse.
        for s in 0..64 {
            let (x, y) = tile_pixel_of_subhash(s, 8);
            assert_eq!(subhash_of_tile_pixel(x, y, 8), s);
        }
    }

    #[test]
    fn dxdy_agrees_with_the_deeper_hash() {
        // The position inside a tile from hash_with_dxdy at order k must select the same cell
        // as the hash at order k + w: i = floor(dx W) in the even bits, j = floor(dy W) odd.
        let (k, w) = (3u8, 4u32);
        let wid = 1u64 << w;
        let mut n = 0;
        for a in 0..40 {
            for b in 0..20 {
                let lon = (a as f64 * 9.1 + 0.37).to_radians();
                let lat = (b as f64 * 8.7 - 84.0).to_radians();
                let (t, dx, dy) = cdshealpix::nested::hash_with_dxdy(k, lon, lat);
                let fine = cdshealpix::nested::hash(k + w as u8, lon, lat);
                assert_eq!(fine / (wid * wid), t);
                let (i, j) = deinterleave(fine % (wid * wid));
                let (fi, fj) = (dx * wid as f64, dy * wid as f64);
                // Skip points within 1e-9 of a cell border.
                if (fi - fi.round()).abs() < 1e-9 || (fj - fj.round()).abs() < 1e-9 {
                    continue;
                }
                assert_eq!(i, fi.floor() as u64);
                assert_eq!(j, fj.floor() as u64);
                n += 1;
            }
        }
        assert!(n > 700);
    }

    #[test]
    fn order_choice_and_paths() {
        // 512-px tiles: order 9 tiles have 0.8"/px... order k pixel = 58.6"/2^(k+9-3)...
        let s9 = tile_pixel_scale(9, 512);
        assert!((s9 - 0.805).abs() < 0.01, "{s9}");
        assert_eq!(choose_order(1.0, 512, 0, 11), 9);
        assert_eq!(choose_order(0.1, 512, 0, 11), 11);
        assert_eq!(choose_order(1000.0, 512, 3, 11), 3);
        assert_eq!(tile_path(3, 42), "Norder3/Dir0/Npix42.fits");
    }

    #[test]
    fn galactic_pole_and_centre() {
        let (l, b) = icrs_to_galactic(266.404_996_7, -28.936_172_3);
        assert!(b.abs() < 1e-4 && (l.min(360.0 - l)) < 1e-4, "{l} {b}");
        let (_, b) = icrs_to_galactic(192.859_481_6, 27.128_251_2);
        assert!((b - 90.0).abs() < 1e-4, "{b}");
    }

    #[test]
    fn properties_parse() {
        let p = parse_properties(
            "# comment\nhips_order = 5\nhips_tile_width = 64\nhips_frame = equatorial\nhips_tile_format = png fits\n",
            "x",
        )
        .unwrap();
        assert_eq!(
            (p.order, p.tile_width, p.frame),
            (5, 64, HipsFrame::Equatorial)
        );
        assert!(parse_properties("hips_order = 5\nhips_tile_width = 100\n", "x").is_err());
        assert!(parse_properties("hips_tile_width = 512\n", "x").is_err());
        assert!(parse_properties("hips_order = 3\nhips_tile_format = jpeg\n", "x").is_err());
    }
}
