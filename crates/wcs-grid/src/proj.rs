//! Sky projections (native spherical <-> projection plane) and the spherical rotation between
//! native and celestial coordinates, after Calabretta & Greisen (2002, A&A 395, 1077).
//!
//! Written here rather than taken from `mapproj`: the FITS pipeline needs the general native
//! rotation with LONPOLE/LATPOLE (C&G 2002 sect. 2.4, eqs. 2 and 5), `None` instead of panics
//! outside a projection's domain, and exact control of the precision near the reference point
//! (the rotation below uses `atan2` forms that keep full precision where `asin` loses it). The
//! formulas are short; they are pinned against astropy/wcslib by the golden tests.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Degrees per radian: the "R0" of C&G 2002 (projection plane in degrees).
pub(crate) const R0: f64 = 180.0 / PI;

/// A sky projection code of the FITS standard (C&G 2002, sect. 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Projection {
    /// Gnomonic (C&G 2002 sect. 5.1.3).
    Tan,
    /// Orthographic/synthesis, without slant parameters (sect. 5.1.5 with xi = eta = 0).
    Sin,
    /// Zenithal equidistant (sect. 5.1.6).
    Arc,
    /// Zenithal equal area (sect. 5.1.8).
    Zea,
    /// Stereographic (sect. 5.1.4).
    Stg,
    /// Plate carree (sect. 5.2.3).
    Car,
}

impl Projection {
    /// The projection for a three-letter FITS code (`"TAN"`, `"SIN"`, ...).
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "TAN" => Self::Tan,
            "SIN" => Self::Sin,
            "ARC" => Self::Arc,
            "ZEA" => Self::Zea,
            "STG" => Self::Stg,
            "CAR" => Self::Car,
            _ => return None,
        })
    }

    /// The three-letter FITS code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Tan => "TAN",
            Self::Sin => "SIN",
            Self::Arc => "ARC",
            Self::Zea => "ZEA",
            Self::Stg => "STG",
            Self::Car => "CAR",
        }
    }

    /// Native latitude of the fiducial point, theta_0 in degrees (90 for zenithal, 0 for CAR).
    pub fn theta0(self) -> f64 {
        match self {
            Self::Car => 0.0,
            _ => 90.0,
        }
    }

    /// Projection plane (x, y) in degrees -> native (phi, theta) in radians.
    pub(crate) fn plane_to_native(self, x: f64, y: f64) -> Option<(f64, f64)> {
        if !(x.is_finite() && y.is_finite()) {
            return None;
        }
        if self == Self::Car {
            // x = phi, y = theta (degrees).
            if y.abs() > 90.0 + 1e-12 {
                return None;
            }
            return Some((x.to_radians(), y.clamp(-90.0, 90.0).to_radians()));
        }
        let r = x.hypot(y);
        let phi = if r == 0.0 { 0.0 } else { x.atan2(-y) };
        let theta = match self {
            // R_theta = R0 cot(theta)
            Self::Tan => R0.atan2(r),
            // R_theta = R0 cos(theta)
            Self::Sin => {
                let c = r / R0;
                if c > 1.0 + 1e-13 {
                    return None;
                }
                c.min(1.0).acos()
            }
            // R_theta = 90 - theta (degrees)
            Self::Arc => {
                if r > 180.0 + 1e-12 {
                    return None;
                }
                (90.0 - r.min(180.0)).to_radians()
            }
            // R_theta = 2 R0 sin((90 - theta)/2)
            Self::Zea => {
                let s = r / (2.0 * R0);
                if s > 1.0 + 1e-13 {
                    return None;
                }
                PI / 2.0 - 2.0 * s.min(1.0).asin()
            }
            // R_theta = 2 R0 tan((90 - theta)/2)
            Self::Stg => PI / 2.0 - 2.0 * (r / (2.0 * R0)).atan(),
            Self::Car => return None,
        };
        Some((phi, theta))
    }

    /// Native (phi, theta) in radians -> projection plane (x, y) in degrees; `None` where the
    /// projection is undefined (TAN and SIN beyond the native equator, STG at its antipode).
    pub(crate) fn native_to_plane(self, phi: f64, theta: f64) -> Option<(f64, f64)> {
        if !(phi.is_finite() && theta.is_finite()) {
            return None;
        }
        if self == Self::Car {
            // Longitude in [-180, 180).
            let mut p = phi.to_degrees();
            p = (p + 180.0).rem_euclid(360.0) - 180.0;
            return Some((p, theta.to_degrees()));
        }
        let (st, ct) = theta.sin_cos();
        let r = match self {
            Self::Tan => {
                if st <= 0.0 {
                    return None;
                }
                R0 * ct / st
            }
            Self::Sin => {
                if st < 0.0 {
                    return None;
                }
                R0 * ct
            }
            Self::Arc => (PI / 2.0 - theta) * R0,
            Self::Zea => 2.0 * R0 * ((PI / 2.0 - theta) / 2.0).sin(),
            Self::Stg => {
                if st <= -1.0 + 1e-15 {
                    return None;
                }
                2.0 * R0 * ((PI / 2.0 - theta) / 2.0).tan()
            }
            Self::Car => return None,
        };
        let (sp, cp) = phi.sin_cos();
        Some((r * sp, -r * cp))
    }
}

/// The native <-> celestial rotation: celestial coordinates (alpha_p, delta_p) of the native
/// pole and native longitude phi_p of the celestial pole (C&G 2002, eqs. 2 and 5).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rotation {
    alpha_p: f64,
    sin_dp: f64,
    cos_dp: f64,
    phi_p: f64,
}

impl Rotation {
    /// Solves for the celestial pole from the fiducial point (alpha0, delta0) = CRVAL, its native
    /// coordinates (phi0 = 0, theta0), LONPOLE and LATPOLE, all in degrees. This follows C&G 2002
    /// sect. 2.4 and wcslib's `celset`, including the choice of the solution nearest
    /// LATPOLE. Returns `None` when no pole satisfies the inputs.
    pub(crate) fn solve(
        alpha0: f64,
        delta0: f64,
        theta0: f64,
        lonpole: f64,
        latpole: f64,
    ) -> Option<(Self, f64)> {
        const TOL: f64 = 1e-10;
        let phi0 = 0.0_f64;
        let (alpha_p, delta_p);
        if theta0 == 90.0 {
            alpha_p = alpha0;
            delta_p = delta0;
        } else {
            let (sthe0, cthe0) = theta0.to_radians().sin_cos();
            let (slat0, clat0) = delta0.to_radians().sin_cos();
            let (sphip, cphip) = (lonpole - phi0).to_radians().sin_cos();
            let x = cthe0 * cphip;
            let y = sthe0;
            let z = x.hypot(y);
            let dp = if z == 0.0 {
                if slat0 != 0.0 {
                    return None;
                }
                latpole
            } else {
                let ratio = slat0 / z;
                if ratio.abs() > 1.0 + TOL {
                    return None;
                }
                let u = y.atan2(x).to_degrees();
                let v = ratio.clamp(-1.0, 1.0).acos().to_degrees();
                let norm = |a: f64| {
                    if a > 180.0 {
                        a - 360.0
                    } else if a < -180.0 {
                        a + 360.0
                    } else {
                        a
                    }
                };
                let l1 = norm(u + v);
                let l2 = norm(u - v);
                let ok1 = l1.abs() <= 90.0 + TOL;
                let ok2 = l2.abs() <= 90.0 + TOL;
                match (ok1, ok2) {
                    (true, true) => {
                        if (l1 - latpole).abs() <= (l2 - latpole).abs() {
                            l1
                        } else {
                            l2
                        }
                    }
                    (true, false) => l1,
                    (false, true) => l2,
                    (false, false) => return None,
                }
                .clamp(-90.0, 90.0)
            };
            delta_p = dp;
            let zz = dp.to_radians().cos() * clat0;
            if zz.abs() < 1e-12 {
                if clat0.abs() < 1e-12 {
                    // Fiducial point at a celestial pole.
                    alpha_p = alpha0;
                } else if dp > 0.0 {
                    alpha_p = alpha0 + lonpole - phi0 - 180.0;
                } else {
                    alpha_p = alpha0 - lonpole + phi0;
                }
            } else {
                let xx = (sthe0 - dp.to_radians().sin() * slat0) / zz;
                let yy = sphip * cthe0 / clat0;
                if xx == 0.0 && yy == 0.0 {
                    return None;
                }
                alpha_p = alpha0 - yy.atan2(xx).to_degrees();
            }
        }
        let (sin_dp, cos_dp) = delta_p.to_radians().sin_cos();
        Some((
            Self {
                alpha_p: alpha_p.to_radians(),
                sin_dp,
                cos_dp,
                phi_p: lonpole.to_radians(),
            },
            delta_p,
        ))
    }

    /// Native (phi, theta) -> celestial (alpha, delta), radians (C&G 2002 eq. 2, in the
    /// `atan2` form that keeps precision near the poles).
    #[inline]
    pub(crate) fn native_to_celestial(&self, phi: f64, theta: f64) -> (f64, f64) {
        let (st, ct) = theta.sin_cos();
        let (sd, cd) = (phi - self.phi_p).sin_cos();
        let a = -ct * sd;
        let b = st * self.cos_dp - ct * self.sin_dp * cd;
        let c = st * self.sin_dp + ct * self.cos_dp * cd;
        (self.alpha_p + a.atan2(b), c.atan2(a.hypot(b)))
    }

    /// Celestial (alpha, delta) -> native (phi, theta), radians (C&G 2002 eq. 5).
    #[inline]
    pub(crate) fn celestial_to_native(&self, alpha: f64, delta: f64) -> (f64, f64) {
        let (sdl, cdl) = delta.sin_cos();
        let (sa, ca) = (alpha - self.alpha_p).sin_cos();
        let a = -cdl * sa;
        let b = sdl * self.cos_dp - cdl * self.sin_dp * ca;
        let c = sdl * self.sin_dp + cdl * self.cos_dp * ca;
        (self.phi_p + a.atan2(b), c.atan2(a.hypot(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_round_trip() {
        for p in [
            Projection::Tan,
            Projection::Sin,
            Projection::Arc,
            Projection::Zea,
            Projection::Stg,
            Projection::Car,
        ] {
            for &(x, y) in &[(0.3, -0.2), (10.0, 5.0), (-20.0, 31.0), (1e-9, 2e-9)] {
                let (phi, th) = p.plane_to_native(x, y).unwrap();
                let (x2, y2) = p.native_to_plane(phi, th).unwrap();
                assert!(
                    (x - x2).abs() < 1e-10 && (y - y2).abs() < 1e-10,
                    "{p:?} {x} {y} {x2} {y2}"
                );
            }
        }
        assert!(Projection::Tan.native_to_plane(0.0, -0.1).is_none());
        assert!(Projection::Sin.plane_to_native(60.0, 0.0).is_none());
    }

    #[test]
    fn rotation_round_trip_and_fiducial_point() {
        let (rot, dp) = Rotation::solve(150.0, 30.0, 0.0, 0.0, 90.0).unwrap();
        assert!((dp - 60.0).abs() < 1e-12);
        // The fiducial point (phi0 = 0, theta0 = 0) maps to CRVAL.
        let (a, d) = rot.native_to_celestial(0.0, 0.0);
        assert!((a.to_degrees().rem_euclid(360.0) - 150.0).abs() < 1e-10);
        assert!((d.to_degrees() - 30.0).abs() < 1e-10);
        let (phi, th) = rot.celestial_to_native(a + 0.1, d - 0.05);
        let (a2, d2) = rot.native_to_celestial(phi, th);
        assert!(((a2 - a - 0.1 + PI).rem_euclid(2.0 * PI) - PI).abs() < 1e-12);
        assert!((d2 - d + 0.05).abs() < 1e-12);
    }
}
