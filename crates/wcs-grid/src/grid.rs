//! [`Grid`]: a WCS plus an image shape.

use crate::error::WcsError;
use crate::keywords::{KeywordSink, KeywordSource};
use crate::proj::Projection;
use crate::wcs::{Wcs, WcsParams};

/// Largest image side accepted from a header (guards allocations sized from a file).
pub const MAX_GRID_SIDE: usize = 1 << 20;

/// A pixel grid on the sky: a [`Wcs`] and a shape of `nx` columns by `ny` rows.
///
/// Pixel `(0, 0)` is centred on coordinate `(0.0, 0.0)` and covers `[-0.5, 0.5)`; the grid
/// covers `[-0.5, nx - 0.5) x [-0.5, ny - 0.5)`. Arrays on the grid have shape `(ny, nx)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    wcs: Wcs,
    nx: usize,
    ny: usize,
}

impl Grid {
    /// A grid of `nx` x `ny` pixels with the given WCS.
    ///
    /// # Errors
    /// [`WcsError::InvalidParameter`] for an empty or oversized shape.
    pub fn new(wcs: Wcs, nx: usize, ny: usize) -> Result<Self, WcsError> {
        for (name, n) in [("nx", nx), ("ny", ny)] {
            if n == 0 || n > MAX_GRID_SIDE {
                return Err(WcsError::InvalidParameter {
                    name,
                    value: n as f64,
                });
            }
        }
        Ok(Self { wcs, nx, ny })
    }

    /// A gnomonic (TAN) grid centred on `(ra, dec)` (degrees) with square pixels of
    /// `scale_arcsec`, north up and east left when `rotation_deg` = 0. The rotation follows the
    /// legacy CROTA2 convention with CDELT1 = -s, CDELT2 = s (s = scale in degrees):
    /// `CD = [[-s cos r, -s sin r], [-s sin r, s cos r]]`. The reference pixel is the centre
    /// `((nx - 1) / 2, (ny - 1) / 2)`.
    ///
    /// # Errors
    /// [`WcsError::InvalidParameter`] for a non-positive scale, empty shape or bad centre.
    pub fn from_center(
        ra: f64,
        dec: f64,
        nx: usize,
        ny: usize,
        scale_arcsec: f64,
        rotation_deg: f64,
    ) -> Result<Self, WcsError> {
        if !(scale_arcsec.is_finite() && scale_arcsec > 0.0) {
            return Err(WcsError::InvalidParameter {
                name: "scale_arcsec",
                value: scale_arcsec,
            });
        }
        if !rotation_deg.is_finite() {
            return Err(WcsError::InvalidParameter {
                name: "rotation_deg",
                value: rotation_deg,
            });
        }
        let s = scale_arcsec / 3600.0;
        let (sr, cr) = rotation_deg.to_radians().sin_cos();
        let cd = [[-s * cr, -s * sr], [-s * sr, s * cr]];
        let crpix = [(nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0];
        let wcs = Wcs::new(WcsParams::linear(
            Projection::Tan,
            [ra.rem_euclid(360.0), dec],
            crpix,
            cd,
        ))?;
        Self::new(wcs, nx, ny)
    }

    /// Reads NAXIS1/NAXIS2 and the WCS from header keywords.
    ///
    /// # Errors
    /// As [`Wcs::from_keywords`], plus a missing or non-positive NAXIS1/NAXIS2.
    pub fn from_keywords<K: KeywordSource + ?Sized>(k: &K) -> Result<Self, WcsError> {
        let mut n = [0usize; 2];
        for (i, key) in ["NAXIS1", "NAXIS2"].iter().enumerate() {
            let v = k.number(key)?.ok_or(WcsError::MissingKey {
                key: key.to_string(),
            })?;
            if !(v.fract() == 0.0 && v >= 1.0 && v <= MAX_GRID_SIDE as f64) {
                return Err(WcsError::BadValue {
                    key: key.to_string(),
                    reason: format!("{v} is not an image side in 1..={MAX_GRID_SIDE}"),
                });
            }
            n[i] = v as usize;
        }
        Self::new(Wcs::from_keywords(k)?, n[0], n[1])
    }

    /// Reads NAXIS1/NAXIS2 and the WCS of a FITS header.
    ///
    /// # Errors
    /// As [`Grid::from_keywords`].
    pub fn from_header(header: &fits_io::Header) -> Result<Self, WcsError> {
        Self::from_keywords(header)
    }

    /// Writes the WCS into a FITS header (not NAXISn, which belong to the image writer).
    pub fn to_header(&self, header: &mut fits_io::Header) {
        self.wcs.to_header(header);
    }

    /// Writes the WCS keywords (not NAXISn, which belong to the image writer).
    pub fn to_keywords<S: KeywordSink + ?Sized>(&self, s: &mut S) {
        self.wcs.to_keywords(s);
    }

    /// The WCS.
    pub fn wcs(&self) -> &Wcs {
        &self.wcs
    }

    /// Columns.
    pub fn nx(&self) -> usize {
        self.nx
    }

    /// Rows.
    pub fn ny(&self) -> usize {
        self.ny
    }

    /// Array shape `(ny, nx)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.ny, self.nx)
    }

    /// Pixel coordinates of the grid's centre, `((nx - 1) / 2, (ny - 1) / 2)`.
    pub fn center_pixel(&self) -> (f64, f64) {
        ((self.nx as f64 - 1.0) / 2.0, (self.ny as f64 - 1.0) / 2.0)
    }

    /// World coordinates of the grid's centre.
    ///
    /// # Errors
    /// [`WcsError::OutsideDomain`] if the centre is not on the sky.
    pub fn center(&self) -> Result<(f64, f64), WcsError> {
        let (x, y) = self.center_pixel();
        self.wcs
            .pixel_to_world(x, y)
            .ok_or(WcsError::OutsideDomain(x, y))
    }

    /// World coordinates of the four outer pixel corners, in the order
    /// `(-0.5, -0.5)`, `(nx - 0.5, -0.5)`, `(nx - 0.5, ny - 0.5)`, `(-0.5, ny - 0.5)`.
    ///
    /// # Errors
    /// [`WcsError::OutsideDomain`] if a corner is not on the sky.
    pub fn corners(&self) -> Result<[(f64, f64); 4], WcsError> {
        let (x1, y1) = (self.nx as f64 - 0.5, self.ny as f64 - 0.5);
        let pts = [(-0.5, -0.5), (x1, -0.5), (x1, y1), (-0.5, y1)];
        let mut out = [(0.0, 0.0); 4];
        for (o, &(x, y)) in out.iter_mut().zip(&pts) {
            *o = self
                .wcs
                .pixel_to_world(x, y)
                .ok_or(WcsError::OutsideDomain(x, y))?;
        }
        Ok(out)
    }

    /// The grid's outline on the sky: `per_side` points along each edge (at least 1), going
    /// round the pixel-edge boundary from `(-0.5, -0.5)` in the same order as [`Grid::corners`].
    ///
    /// # Errors
    /// [`WcsError::OutsideDomain`] if a boundary point is not on the sky.
    pub fn footprint(&self, per_side: usize) -> Result<Vec<(f64, f64)>, WcsError> {
        let n = per_side.max(1);
        let (x1, y1) = (self.nx as f64 - 0.5, self.ny as f64 - 0.5);
        let edges = [
            ((-0.5, -0.5), (x1, -0.5)),
            ((x1, -0.5), (x1, y1)),
            ((x1, y1), (-0.5, y1)),
            ((-0.5, y1), (-0.5, -0.5)),
        ];
        let mut out = Vec::with_capacity(4 * n);
        for ((ax, ay), (bx, by)) in edges {
            for i in 0..n {
                let t = i as f64 / n as f64;
                let (x, y) = (ax + t * (bx - ax), ay + t * (by - ay));
                out.push(
                    self.wcs
                        .pixel_to_world(x, y)
                        .ok_or(WcsError::OutsideDomain(x, y))?,
                );
            }
        }
        Ok(out)
    }

    /// Pixel scale at the grid's centre, arcsec per pixel (square root of the pixel's solid
    /// angle, distortions included).
    ///
    /// # Errors
    /// [`WcsError::OutsideDomain`] if the centre is not on the sky.
    pub fn pixel_scale(&self) -> Result<f64, WcsError> {
        let (x, y) = self.center_pixel();
        self.wcs
            .pixel_scale_at(x, y)
            .ok_or(WcsError::OutsideDomain(x, y))
    }

    /// True when the pixel coordinate lies on the grid, `[-0.5, n - 0.5)` on both axes.
    pub fn contains_pixel(&self, x: f64, y: f64) -> bool {
        x >= -0.5 && y >= -0.5 && x < self.nx as f64 - 0.5 && y < self.ny as f64 - 0.5
    }

    /// True when the sky position `(ra, dec)` (degrees) falls on the grid.
    pub fn contains(&self, ra: f64, dec: f64) -> bool {
        self.wcs
            .world_to_pixel(ra, dec)
            .is_some_and(|(x, y)| self.contains_pixel(x, y))
    }

    /// Fraction of this grid's area that `other` covers, estimated on a lattice of up to
    /// 64 x 64 sample points spread evenly over this grid (accuracy about 1/64 per side).
    pub fn overlap_fraction(&self, other: &Grid) -> f64 {
        let sx = self.nx.min(64);
        let sy = self.ny.min(64);
        let mut hit = 0usize;
        for j in 0..sy {
            let y = (j as f64 + 0.5) * self.ny as f64 / sy as f64 - 0.5;
            for i in 0..sx {
                let x = (i as f64 + 0.5) * self.nx as f64 / sx as f64 - 0.5;
                if let Some((ra, dec)) = self.wcs.pixel_to_world(x, y)
                    && other.contains(ra, dec)
                {
                    hit += 1;
                }
            }
        }
        hit as f64 / (sx * sy) as f64
    }

    /// True when the two grids share some sky (either's sample lattice or corners fall on the
    /// other), which also catches a small grid lying wholly inside a big one.
    pub fn overlaps(&self, other: &Grid) -> bool {
        let corner_in = |a: &Grid, b: &Grid| {
            a.corners()
                .is_ok_and(|c| c.iter().any(|&(ra, dec)| b.contains(ra, dec)))
        };
        corner_in(self, other)
            || corner_in(other, self)
            || self.overlap_fraction(other) > 0.0
            || other.overlap_fraction(self) > 0.0
    }

    /// The grid of a cutout whose pixel `(0, 0)` is this grid's pixel `(x0, y0)`, of `nx` x
    /// `ny` pixels. CRPIX shifts by `(-x0, -y0)`; the distortion (SIP, TPV) is kept as is.
    /// The cutout may extend beyond this grid (it is a pure coordinate shift) but must share
    /// at least one pixel with it.
    ///
    /// # Errors
    /// [`WcsError::BadSubgrid`] for an empty cutout or one wholly outside this grid.
    pub fn subgrid(&self, x0: i64, y0: i64, nx: usize, ny: usize) -> Result<Grid, WcsError> {
        let bad = || WcsError::BadSubgrid {
            x0,
            y0,
            nx,
            ny,
            parent_nx: self.nx,
            parent_ny: self.ny,
        };
        if nx == 0 || ny == 0 {
            return Err(bad());
        }
        let inside_x = x0 < self.nx as i64 && x0.saturating_add(nx as i64) > 0;
        let inside_y = y0 < self.ny as i64 && y0.saturating_add(ny as i64) > 0;
        if !(inside_x && inside_y) {
            return Err(bad());
        }
        let c = self.wcs.crpix();
        Grid::new(
            self.wcs.with_crpix([c[0] - x0 as f64, c[1] - y0 as f64]),
            nx,
            ny,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_scale_and_containment() {
        let g = Grid::from_center(150.0, 2.0, 200, 100, 0.5, 30.0).unwrap();
        let (ra, dec) = g.center().unwrap();
        assert!((ra - 150.0).abs() < 1e-10 && (dec - 2.0).abs() < 1e-10);
        assert!((g.pixel_scale().unwrap() - 0.5).abs() < 1e-6);
        assert!(g.contains(150.0, 2.0));
        assert!(!g.contains(150.1, 2.0));
        let c = g.corners().unwrap();
        // Diagonal of 200x100 px at 0.5": sqrt(100^2 + 50^2) = 111.8"
        let d = ((c[0].0 - c[2].0) * 2f64.to_radians().cos()).hypot(c[0].1 - c[2].1) * 3600.0;
        assert!((d - 111.803).abs() < 0.01, "{d}");
    }

    #[test]
    fn overlap_and_subgrid() {
        let a = Grid::from_center(10.0, 10.0, 100, 100, 1.0, 0.0).unwrap();
        // Shifted by half its width in RA: half the area overlaps.
        let b = Grid::from_center(
            10.0 + 50.0 / 3600.0 / 10f64.to_radians().cos(),
            10.0,
            100,
            100,
            1.0,
            0.0,
        )
        .unwrap();
        let f = a.overlap_fraction(&b);
        assert!((f - 0.5).abs() < 0.03, "{f}");
        assert!(a.overlaps(&b));
        let far = Grid::from_center(40.0, 10.0, 100, 100, 1.0, 0.0).unwrap();
        assert!(!a.overlaps(&far));
        assert_eq!(a.overlap_fraction(&far), 0.0);
        let s = a.subgrid(20, 30, 10, 10).unwrap();
        let p = a.wcs().pixel_to_world(25.0, 37.0).unwrap();
        let q = s.wcs().pixel_to_world(5.0, 7.0).unwrap();
        assert!((p.0 - q.0).abs() < 1e-12 && (p.1 - q.1).abs() < 1e-12);
        assert!(a.subgrid(200, 0, 10, 10).is_err());
        assert!(a.subgrid(0, 0, 0, 10).is_err());
    }
}
