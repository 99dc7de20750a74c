//! The [`Wcs`] type: linear part, distortions, projection and spherical rotation.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::distortion::{Sip, Tpv};
use crate::error::WcsError;
use crate::proj::{Projection, Rotation};

/// The celestial reference frame of the world coordinates.
///
/// ICRS and FK5 (J2000) differ by less than 0.03 arcsec; like most survey pipelines this crate
/// treats them as the same frame and does not transform between them. FK4, other FK5 equinoxes
/// and ecliptic coordinates are rejected with [`WcsError::UnsupportedFrame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Frame {
    /// International Celestial Reference System (RADESYS = 'ICRS', the default).
    #[default]
    Icrs,
    /// FK5 at equinox J2000 (RADESYS = 'FK5', EQUINOX = 2000), treated as ICRS.
    Fk5,
    /// Galactic longitude/latitude (CTYPE GLON/GLAT).
    Galactic,
}

/// The plain parameters of a WCS (what a header says, in this crate's conventions).
///
/// Pixel coordinates are 0-based (FITS CRPIX minus 1); angles in degrees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WcsParams {
    /// Sky projection.
    pub projection: Projection,
    /// Reference pixel, 0-based `[x, y]` (FITS CRPIX1 - 1, CRPIX2 - 1).
    pub crpix: [f64; 2],
    /// World coordinates of the reference point `[lon, lat]` (CRVAL1, CRVAL2), degrees.
    pub crval: [f64; 2],
    /// Linear transformation `[[CD1_1, CD1_2], [CD2_1, CD2_2]]`, degrees per pixel.
    pub cd: [[f64; 2]; 2],
    /// LONPOLE (degrees); `None` = default of Calabretta & Greisen 2002 (180 for zenithal
    /// projections unless CRVAL2 is at the native pole, 0 for CAR when CRVAL2 >= 0).
    pub lonpole: Option<f64>,
    /// LATPOLE (degrees); `None` = 90.
    pub latpole: Option<f64>,
    /// SIP distortion on pixel offsets (Shupe et al. 2005).
    pub sip: Option<Sip>,
    /// TPV distortion on intermediate world coordinates (TAN only).
    pub tpv: Option<Tpv>,
    /// Celestial frame.
    pub frame: Frame,
}

impl WcsParams {
    /// A distortion-free WCS with the given projection, reference point, reference pixel
    /// (0-based) and CD matrix; default poles, ICRS.
    pub fn linear(
        projection: Projection,
        crval: [f64; 2],
        crpix: [f64; 2],
        cd: [[f64; 2]; 2],
    ) -> Self {
        Self {
            projection,
            crpix,
            crval,
            cd,
            lonpole: None,
            latpole: None,
            sip: None,
            tpv: None,
            frame: Frame::Icrs,
        }
    }
}

/// A validated, ready-to-use celestial WCS (2 axes).
///
/// pixel -> world: `(u, v) = p - CRPIX`, SIP `(u + A, v + B)`, `x = CD (u, v)`, TPV
/// `(xi, eta) = P(x, y)`, de-projection to native `(phi, theta)`, rotation to `(ra, dec)`
/// (Greisen & Calabretta 2002; Calabretta & Greisen 2002). world -> pixel runs the same steps
/// backwards, inverting the distortions by Newton iterations.
#[derive(Clone, Debug, PartialEq)]
pub struct Wcs {
    params: WcsParams,
    cd_inv: [[f64; 2]; 2],
    rot: Rotation,
    lonpole: f64,
    latpole: f64,
}

impl Wcs {
    /// Validates the parameters and solves for the celestial pole.
    ///
    /// # Errors
    /// Non-finite values ([`WcsError::InvalidParameter`]), a singular CD matrix, TPV on a
    /// projection other than TAN, or a pole that no rotation satisfies.
    pub fn new(params: WcsParams) -> Result<Self, WcsError> {
        let finite = |name: &'static str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(WcsError::InvalidParameter { name, value: v })
            }
        };
        finite("crpix[0]", params.crpix[0])?;
        finite("crpix[1]", params.crpix[1])?;
        finite("crval[0]", params.crval[0])?;
        finite("crval[1]", params.crval[1])?;
        if params.crval[1].abs() > 90.0 {
            return Err(WcsError::InvalidParameter {
                name: "crval[1]",
                value: params.crval[1],
            });
        }
        for row in &params.cd {
            for &c in row {
                finite("cd", c)?;
            }
        }
        let [[a, b], [c, d]] = params.cd;
        let det = a * d - b * c;
        let scale = a.abs().max(b.abs()).max(c.abs()).max(d.abs());
        if det == 0.0 || !det.is_finite() || det.abs() <= 1e-14 * scale * scale {
            return Err(WcsError::SingularMatrix { det });
        }
        let cd_inv = [[d / det, -b / det], [-c / det, a / det]];
        if params.tpv.is_some() && params.projection != Projection::Tan {
            return Err(WcsError::Contradictory {
                first: "TPV distortion".into(),
                second: format!("projection {}", params.projection.code()),
            });
        }
        let theta0 = params.projection.theta0();
        let delta0 = params.crval[1];
        let lonpole = match params.lonpole {
            Some(l) => {
                finite("lonpole", l)?;
                l
            }
            None => {
                if delta0 >= theta0 {
                    0.0
                } else {
                    180.0
                }
            }
        };
        let latpole_in = match params.latpole {
            Some(l) => {
                finite("latpole", l)?;
                l
            }
            None => 90.0,
        };
        let (rot, delta_p) = Rotation::solve(params.crval[0], delta0, theta0, lonpole, latpole_in)
            .ok_or(WcsError::InvalidPole {
                crval2: delta0,
                lonpole,
                latpole: latpole_in,
            })?;
        Ok(Self {
            params,
            cd_inv,
            rot,
            lonpole,
            latpole: delta_p,
        })
    }

    /// The parameters this WCS was built from.
    pub fn params(&self) -> &WcsParams {
        &self.params
    }

    /// Projection.
    pub fn projection(&self) -> Projection {
        self.params.projection
    }

    /// Reference pixel, 0-based `[x, y]`.
    pub fn crpix(&self) -> [f64; 2] {
        self.params.crpix
    }

    /// Reference world coordinates `[lon, lat]`, degrees.
    pub fn crval(&self) -> [f64; 2] {
        self.params.crval
    }

    /// CD matrix, degrees per pixel.
    pub fn cd(&self) -> [[f64; 2]; 2] {
        self.params.cd
    }

    /// The LONPOLE in effect (given or defaulted), degrees.
    pub fn lonpole(&self) -> f64 {
        self.lonpole
    }

    /// The celestial latitude of the native pole in effect (what wcslib writes as LATPOLE).
    pub fn latpole(&self) -> f64 {
        self.latpole
    }

    /// Celestial frame.
    pub fn frame(&self) -> Frame {
        self.params.frame
    }

    /// SIP distortion, if any.
    pub fn sip(&self) -> Option<&Sip> {
        self.params.sip.as_ref()
    }

    /// TPV distortion, if any.
    pub fn tpv(&self) -> Option<&Tpv> {
        self.params.tpv.as_ref()
    }

    /// The same WCS with the reference pixel moved to `crpix` (0-based); distortions are kept
    /// (they are defined relative to CRPIX, so a cutout shifts CRPIX and nothing else).
    pub fn with_crpix(&self, crpix: [f64; 2]) -> Self {
        let mut w = self.clone();
        w.params.crpix = crpix;
        w
    }

    /// Pixel `(x, y)` (0-based) -> intermediate world coordinates after the distortions, deg.
    #[inline]
    fn pixel_to_plane(&self, x: f64, y: f64) -> (f64, f64) {
        let p = &self.params;
        let (mut u, mut v) = (x - p.crpix[0], y - p.crpix[1]);
        if let Some(sip) = &p.sip {
            (u, v) = sip.forward(u, v);
        }
        let [[a, b], [c, d]] = p.cd;
        let (px, py) = (a * u + b * v, c * u + d * v);
        match &p.tpv {
            Some(t) => t.forward(px, py),
            None => (px, py),
        }
    }

    /// Pixel `(x, y)` (0-based) -> world `(lon, lat)` in degrees, `lon` in `[0, 360)`.
    /// `None` where the pixel lies outside the projection's domain (e.g. beyond a SIN horizon).
    #[inline]
    pub fn pixel_to_world(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let (px, py) = self.pixel_to_plane(x, y);
        let (phi, theta) = self.params.projection.plane_to_native(px, py)?;
        let (a, d) = self.rot.native_to_celestial(phi, theta);
        let lon = a.to_degrees().rem_euclid(360.0);
        let lon = if lon >= 360.0 { 0.0 } else { lon };
        Some((lon, d.to_degrees()))
    }

    /// World `(lon, lat)` in degrees -> pixel `(x, y)` (0-based). `None` where the point is
    /// outside the projection's domain (behind a TAN/SIN tangent plane) or the distortion
    /// inverse does not converge.
    #[inline]
    pub fn world_to_pixel(&self, lon: f64, lat: f64) -> Option<(f64, f64)> {
        if !(lon.is_finite() && lat.is_finite()) || lat.abs() > 90.0 {
            return None;
        }
        let p = &self.params;
        let (phi, theta) = self
            .rot
            .celestial_to_native(lon.to_radians(), lat.to_radians());
        let (mut px, mut py) = p.projection.native_to_plane(phi, theta)?;
        if let Some(t) = &p.tpv {
            (px, py) = t.inverse(px, py)?;
        }
        let [[a, b], [c, d]] = self.cd_inv;
        let (mut u, mut v) = (a * px + b * py, c * px + d * py);
        if let Some(sip) = &p.sip {
            (u, v) = sip.inverse(u, v)?;
        }
        Some((u + p.crpix[0], v + p.crpix[1]))
    }

    /// [`Wcs::pixel_to_world`] over arrays of `x` and `y`, in parallel; NaN where undefined.
    ///
    /// # Errors
    /// [`WcsError::LengthMismatch`] if the slices differ in length.
    pub fn pixels_to_world(&self, x: &[f64], y: &[f64]) -> Result<(Vec<f64>, Vec<f64>), WcsError> {
        self.map_pairs(x, y, |a, b| self.pixel_to_world(a, b))
    }

    /// [`Wcs::world_to_pixel`] over arrays of `lon` and `lat`, in parallel; NaN where undefined.
    ///
    /// # Errors
    /// [`WcsError::LengthMismatch`] if the slices differ in length.
    pub fn worlds_to_pixel(
        &self,
        lon: &[f64],
        lat: &[f64],
    ) -> Result<(Vec<f64>, Vec<f64>), WcsError> {
        self.map_pairs(lon, lat, |a, b| self.world_to_pixel(a, b))
    }

    fn map_pairs<F>(&self, a: &[f64], b: &[f64], f: F) -> Result<(Vec<f64>, Vec<f64>), WcsError>
    where
        F: Fn(f64, f64) -> Option<(f64, f64)> + Sync,
    {
        if a.len() != b.len() {
            return Err(WcsError::LengthMismatch {
                first: a.len(),
                second: b.len(),
            });
        }
        let out: Vec<(f64, f64)> = a
            .par_iter()
            .zip(b.par_iter())
            .with_min_len(1024)
            .map(|(&p, &q)| f(p, q).unwrap_or((f64::NAN, f64::NAN)))
            .collect();
        Ok(out.into_iter().unzip())
    }

    /// Local pixel scale at pixel `(x, y)` in arcsec per pixel: the square root of the pixel's
    /// solid angle (distortions included), from the Jacobian of pixel -> world.
    pub fn pixel_scale_at(&self, x: f64, y: f64) -> Option<f64> {
        self.pixel_area_at(x, y).map(|a| a.sqrt() * 3600.0)
    }

    /// Solid angle of pixel `(x, y)` in square degrees (|det| of the Jacobian of pixel -> world,
    /// with longitudes scaled by cos(lat)).
    pub fn pixel_area_at(&self, x: f64, y: f64) -> Option<f64> {
        let h = 0.5;
        let (l0, b0) = self.pixel_to_world(x, y)?;
        let off = |xx: f64, yy: f64| -> Option<(f64, f64)> {
            let (l, b) = self.pixel_to_world(xx, yy)?;
            let dl = ((l - l0 + 540.0).rem_euclid(360.0) - 180.0) * b0.to_radians().cos();
            Some((dl, b - b0))
        };
        let (xp, xq) = off(x + h, y)?;
        let (xm, xn) = off(x - h, y)?;
        let (yp, yq) = off(x, y + h)?;
        let (ym, yn) = off(x, y - h)?;
        let j11 = (xp - xm) / (2.0 * h);
        let j21 = (xq - xn) / (2.0 * h);
        let j12 = (yp - ym) / (2.0 * h);
        let j22 = (yq - yn) / (2.0 * h);
        Some((j11 * j22 - j12 * j21).abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tan_reference_pixel_maps_to_crval() {
        let s = 0.25 / 3600.0;
        let w = Wcs::new(WcsParams::linear(
            Projection::Tan,
            [150.0, 2.0],
            [100.0, 50.0],
            [[-s, 0.0], [0.0, s]],
        ))
        .unwrap();
        let (ra, dec) = w.pixel_to_world(100.0, 50.0).unwrap();
        assert!((ra - 150.0).abs() < 1e-12 && (dec - 2.0).abs() < 1e-12);
        // East is left: x + 1 decreases RA.
        let (ra1, dec1) = w.pixel_to_world(101.0, 50.0).unwrap();
        assert!(ra1 < 150.0);
        let (x, y) = w.world_to_pixel(ra1, dec1).unwrap();
        assert!((x - 101.0).abs() < 1e-9 && (y - 50.0).abs() < 1e-9);
        assert!((w.pixel_scale_at(100.0, 50.0).unwrap() - 0.25).abs() < 1e-6);
        // Antipode is outside the gnomonic projection.
        assert!(w.world_to_pixel(330.0, -2.0).is_none());
    }

    #[test]
    fn singular_matrix_is_an_error() {
        let e = Wcs::new(WcsParams::linear(
            Projection::Tan,
            [0.0, 0.0],
            [0.0, 0.0],
            [[1e-4, 2e-4], [2e-4, 4e-4]],
        ));
        assert!(matches!(e, Err(WcsError::SingularMatrix { .. })));
    }
}
