//! Distortion polynomials: SIP (Shupe et al. 2005) on pixel offsets and TPV on intermediate
//! world coordinates, with Newton inverses.

use serde::{Deserialize, Serialize};

/// Largest SIP order accepted from a header (real headers use 2-6; the bound keeps a hostile
/// header from asking for a huge allocation).
pub const MAX_SIP_ORDER: usize = 9;

/// Newton iterations for the inverse distortions.
const MAX_NEWTON: usize = 50;

/// One SIP polynomial `sum_{p+q<=order} c_pq u^p v^q` (Shupe et al. 2005).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SipPolynomial {
    order: usize,
    /// Dense `(order+1)^2` table, index `p * (order+1) + q`.
    coeffs: Vec<f64>,
}

impl SipPolynomial {
    /// A zero polynomial of the given order.
    ///
    /// # Panics
    /// If `order > MAX_SIP_ORDER` (a caller bug; header parsing checks this first).
    pub fn new(order: usize) -> Self {
        assert!(
            order <= MAX_SIP_ORDER,
            "SIP order {order} > {MAX_SIP_ORDER}"
        );
        Self {
            order,
            coeffs: vec![0.0; (order + 1) * (order + 1)],
        }
    }

    /// The polynomial's order.
    pub fn order(&self) -> usize {
        self.order
    }

    /// Coefficient of `u^p v^q` (0 when `p + q > order`).
    pub fn get(&self, p: usize, q: usize) -> f64 {
        if p + q > self.order {
            0.0
        } else {
            self.coeffs[p * (self.order + 1) + q]
        }
    }

    /// Sets the coefficient of `u^p v^q`.
    ///
    /// # Panics
    /// If `p + q > order` (a caller bug).
    pub fn set(&mut self, p: usize, q: usize, c: f64) {
        assert!(
            p + q <= self.order,
            "SIP term {p},{q} beyond order {}",
            self.order
        );
        self.coeffs[p * (self.order + 1) + q] = c;
    }

    /// Non-zero terms as `(p, q, coefficient)`.
    pub fn terms(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        let n = self.order + 1;
        (0..n)
            .flat_map(move |p| (0..n - p).map(move |q| (p, q, self.coeffs[p * n + q])))
            .filter(|t| t.2 != 0.0)
    }

    /// Value and partial derivatives (d/du, d/dv) at (u, v).
    #[inline]
    fn eval_grad(&self, u: f64, v: f64) -> (f64, f64, f64) {
        let n = self.order + 1;
        let mut pu = [1.0_f64; MAX_SIP_ORDER + 1];
        let mut pv = [1.0_f64; MAX_SIP_ORDER + 1];
        for i in 1..n {
            pu[i] = pu[i - 1] * u;
            pv[i] = pv[i - 1] * v;
        }
        let (mut f, mut fu, mut fv) = (0.0, 0.0, 0.0);
        for p in 0..n {
            for q in 0..n - p {
                let c = self.coeffs[p * n + q];
                if c == 0.0 {
                    continue;
                }
                f += c * pu[p] * pv[q];
                if p > 0 {
                    fu += c * p as f64 * pu[p - 1] * pv[q];
                }
                if q > 0 {
                    fv += c * q as f64 * pu[p] * pv[q - 1];
                }
            }
        }
        (f, fu, fv)
    }

    #[inline]
    fn eval(&self, u: f64, v: f64) -> f64 {
        self.eval_grad(u, v).0
    }
}

/// SIP distortion (Shupe et al. 2005, ASP Conf. Ser. 347, 491): pixel offsets from CRPIX
/// `(u, v)` become `(u + A(u, v), v + B(u, v))` before the CD matrix. The optional inverse
/// polynomials AP/BP give a starting point for world -> pixel, which is always refined by Newton
/// iterations on the forward polynomials (as astropy's `all_world2pix` does) to 1e-10 px.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sip {
    /// Forward polynomial for u (A_p_q).
    pub a: SipPolynomial,
    /// Forward polynomial for v (B_p_q).
    pub b: SipPolynomial,
    /// Optional approximate inverse for u (AP_p_q).
    pub ap: Option<SipPolynomial>,
    /// Optional approximate inverse for v (BP_p_q).
    pub bp: Option<SipPolynomial>,
}

impl Sip {
    /// Distorted offsets `(u + A, v + B)` for pixel offsets `(u, v)` from CRPIX.
    #[inline]
    pub fn forward(&self, u: f64, v: f64) -> (f64, f64) {
        (u + self.a.eval(u, v), v + self.b.eval(u, v))
    }

    /// Solves `forward(u, v) = (uu, vv)`; `None` if Newton does not converge.
    pub fn inverse(&self, uu: f64, vv: f64) -> Option<(f64, f64)> {
        let (mut u, mut v) = match (&self.ap, &self.bp) {
            (Some(ap), Some(bp)) => (uu + ap.eval(uu, vv), vv + bp.eval(uu, vv)),
            _ => (uu, vv),
        };
        if !(u.is_finite() && v.is_finite()) {
            (u, v) = (uu, vv);
        }
        for _ in 0..MAX_NEWTON {
            let (fa, au, av) = self.a.eval_grad(u, v);
            let (fb, bu, bv) = self.b.eval_grad(u, v);
            let (ru, rv) = (u + fa - uu, v + fb - vv);
            let (j11, j12, j21, j22) = (1.0 + au, av, bu, 1.0 + bv);
            let det = j11 * j22 - j12 * j21;
            if det == 0.0 || !det.is_finite() {
                return None;
            }
            let du = (j22 * ru - j12 * rv) / det;
            let dv = (j11 * rv - j21 * ru) / det;
            u -= du;
            v -= dv;
            if du.abs().max(dv.abs()) < 1e-11 * (1.0 + u.abs().max(v.abs())) {
                let (fu, fv) = self.forward(u, v);
                let res = (fu - uu).abs().max((fv - vv).abs());
                return (res < 1e-7).then_some((u, v));
            }
        }
        None
    }
}

/// Powers `(i, j, k)` of `x`, `y` and `r = sqrt(x^2 + y^2)` of the 40 TPV terms PV1_0..PV1_39
/// (for PV2_n the roles of x and y are swapped). Source: the FITS registry's TPV definition
/// (<https://fits.gsfc.nasa.gov/registry/tpvwcs/tpv.html>), which wcslib implements.
pub const TPV_TERMS: [(u8, u8, u8); 40] = [
    (0, 0, 0),
    (1, 0, 0),
    (0, 1, 0),
    (0, 0, 1),
    (2, 0, 0),
    (1, 1, 0),
    (0, 2, 0),
    (3, 0, 0),
    (2, 1, 0),
    (1, 2, 0),
    (0, 3, 0),
    (0, 0, 3),
    (4, 0, 0),
    (3, 1, 0),
    (2, 2, 0),
    (1, 3, 0),
    (0, 4, 0),
    (5, 0, 0),
    (4, 1, 0),
    (3, 2, 0),
    (2, 3, 0),
    (1, 4, 0),
    (0, 5, 0),
    (0, 0, 5),
    (6, 0, 0),
    (5, 1, 0),
    (4, 2, 0),
    (3, 3, 0),
    (2, 4, 0),
    (1, 5, 0),
    (0, 6, 0),
    (7, 0, 0),
    (6, 1, 0),
    (5, 2, 0),
    (4, 3, 0),
    (3, 4, 0),
    (2, 5, 0),
    (1, 6, 0),
    (0, 7, 0),
    (0, 0, 7),
];

/// Number of TPV coefficients per axis (n = 0..=39).
pub const TPV_NCOEFF: usize = 40;

/// TPV distortion: the intermediate world coordinates `(x, y)` (degrees, after the CD matrix)
/// become `xi = P1(x, y)`, `eta = P2(y, x)` with `P_i(a, b) = sum_n PVi_n a^i b^j r^k`
/// (powers from [`TPV_TERMS`]), before the gnomonic projection. Absent coefficients are 0 except
/// PV1_1 = PV2_1 = 1 (the identity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tpv {
    /// PV1_0..PV1_39.
    pub pv1: Vec<f64>,
    /// PV2_0..PV2_39.
    pub pv2: Vec<f64>,
}

impl Default for Tpv {
    fn default() -> Self {
        let mut pv1 = vec![0.0; TPV_NCOEFF];
        let mut pv2 = vec![0.0; TPV_NCOEFF];
        pv1[1] = 1.0;
        pv2[1] = 1.0;
        Self { pv1, pv2 }
    }
}

/// `sum_n c_n a^i b^j r^k` and its derivatives with respect to a and b.
#[inline]
fn tpv_eval(c: &[f64], a: f64, b: f64) -> (f64, f64, f64) {
    let r = a.hypot(b);
    let mut pa = [1.0_f64; 8];
    let mut pb = [1.0_f64; 8];
    let mut pr = [1.0_f64; 8];
    for i in 1..8 {
        pa[i] = pa[i - 1] * a;
        pb[i] = pb[i - 1] * b;
        pr[i] = pr[i - 1] * r;
    }
    let (mut f, mut fa, mut fb) = (0.0, 0.0, 0.0);
    for (n, &(i, j, k)) in TPV_TERMS.iter().enumerate() {
        let cn = c.get(n).copied().unwrap_or(0.0);
        if cn == 0.0 {
            continue;
        }
        let (i, j, k) = (i as usize, j as usize, k as usize);
        if k > 0 {
            f += cn * pr[k];
            if r > 0.0 {
                // d r^k / da = k r^(k-1) a / r
                let g = cn * k as f64 * pr[k - 1] / r;
                fa += g * a;
                fb += g * b;
            }
        } else {
            f += cn * pa[i] * pb[j];
            if i > 0 {
                fa += cn * i as f64 * pa[i - 1] * pb[j];
            }
            if j > 0 {
                fb += cn * j as f64 * pa[i] * pb[j - 1];
            }
        }
    }
    (f, fa, fb)
}

impl Tpv {
    /// `(xi, eta)` for intermediate world coordinates `(x, y)`, degrees.
    #[inline]
    pub fn forward(&self, x: f64, y: f64) -> (f64, f64) {
        (tpv_eval(&self.pv1, x, y).0, tpv_eval(&self.pv2, y, x).0)
    }

    /// Solves `forward(x, y) = (xi, eta)` by Newton iterations started from the linear part;
    /// `None` if they do not converge.
    pub fn inverse(&self, xi: f64, eta: f64) -> Option<(f64, f64)> {
        let c1 = |n: usize| self.pv1.get(n).copied().unwrap_or(0.0);
        let c2 = |n: usize| self.pv2.get(n).copied().unwrap_or(0.0);
        // Linear start: [pv1_1 pv1_2; pv2_2 pv2_1] (x, y) = (xi - pv1_0, eta - pv2_0).
        let (l11, l12, l21, l22) = (c1(1), c1(2), c2(2), c2(1));
        let det = l11 * l22 - l12 * l21;
        let (mut x, mut y) = if det.abs() > 1e-12 {
            let (bx, by) = (xi - c1(0), eta - c2(0));
            ((l22 * bx - l12 * by) / det, (l11 * by - l21 * bx) / det)
        } else {
            (xi, eta)
        };
        for _ in 0..MAX_NEWTON {
            let (f1, f1x, f1y) = tpv_eval(&self.pv1, x, y);
            let (f2, f2y, f2x) = tpv_eval(&self.pv2, y, x);
            let (r1, r2) = (f1 - xi, f2 - eta);
            let det = f1x * f2y - f1y * f2x;
            if det == 0.0 || !det.is_finite() {
                return None;
            }
            let dx = (f2y * r1 - f1y * r2) / det;
            let dy = (f1x * r2 - f2x * r1) / det;
            x -= dx;
            y -= dy;
            if dx.abs().max(dy.abs()) < 1e-15 * (1.0 + x.abs().max(y.abs())) * 10.0 {
                let (g1, g2) = self.forward(x, y);
                let res = (g1 - xi).abs().max((g2 - eta).abs());
                return (res < 1e-10).then_some((x, y));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_inverse_inverts() {
        let mut a = SipPolynomial::new(3);
        let mut b = SipPolynomial::new(3);
        a.set(2, 0, 2e-6);
        a.set(1, 1, -3e-6);
        a.set(0, 3, 1e-9);
        b.set(0, 2, 4e-6);
        b.set(2, 1, -2e-9);
        let sip = Sip {
            a,
            b,
            ap: None,
            bp: None,
        };
        for &(u, v) in &[(0.0, 0.0), (1000.0, -800.0), (-1500.0, 1200.0)] {
            let (uu, vv) = sip.forward(u, v);
            let (u2, v2) = sip.inverse(uu, vv).unwrap();
            assert!((u - u2).abs() < 1e-9 && (v - v2).abs() < 1e-9);
        }
    }

    #[test]
    fn tpv_identity_and_inverse() {
        let t = Tpv::default();
        assert_eq!(t.forward(0.1, -0.2), (0.1, -0.2));
        let mut t = Tpv::default();
        t.pv1[0] = 1e-3;
        t.pv1[3] = 2e-3;
        t.pv1[4] = -5e-3;
        t.pv1[11] = 1e-2;
        t.pv2[2] = 3e-4;
        t.pv2[7] = 4e-3;
        t.pv2[39] = 1e-2;
        for &(x, y) in &[(0.0, 0.0), (0.1, -0.07), (-0.2, 0.15)] {
            let (xi, eta) = t.forward(x, y);
            let (x2, y2) = t.inverse(xi, eta).unwrap();
            assert!(
                (x - x2).abs() < 1e-12 && (y - y2).abs() < 1e-12,
                "{x} {y} {x2} {y2}"
            );
        }
    }
}
