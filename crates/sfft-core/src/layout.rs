//! Parameter layout of the linear model: polynomial terms, kernel shifts, row evaluation.

use ndarray::ArrayView2;

/// Monomials `cx^p cy^q` with `p + q <= order`, by total degree then decreasing `p`:
/// `(0,0), (1,0), (0,1), (2,0), (1,1), (0,2), ...`.
pub fn monomials(order: usize) -> Vec<(u32, u32)> {
    let mut v = Vec::new();
    for d in 0..=order as u32 {
        for q in 0..=d {
            v.push((d - q, q));
        }
    }
    v
}

/// Scaled coordinate in `[-1, 1]` of pixel index `i` on an axis of length `n`.
#[inline]
pub fn scaled(i: f64, n: usize) -> f64 {
    if n > 1 {
        2.0 * i / (n - 1) as f64 - 1.0
    } else {
        0.0
    }
}

/// The layout of the parameter vector.
#[derive(Debug, Clone)]
pub struct Layout {
    pub ny: usize,
    pub nx: usize,
    /// Kernel shifts `(dy, dx)`, row-major over the stamp.
    pub shifts: Vec<(isize, isize)>,
    /// Index of the `(0, 0)` shift.
    pub center: usize,
    pub kterms: Vec<(u32, u32)>,
    pub bterms: Vec<(u32, u32)>,
    /// Kernel parameters `(term, shift)`, ordered by term then shift.
    pub kparams: Vec<(usize, usize)>,
    pub max_order: usize,
}

impl Layout {
    pub fn new(
        ny: usize,
        nx: usize,
        kernel_shape: (usize, usize),
        kernel_order: usize,
        bg_order: usize,
        constant_flux: bool,
    ) -> Self {
        let (hy, hx) = (kernel_shape.0 / 2, kernel_shape.1 / 2);
        let mut shifts = Vec::new();
        for dy in -(hy as isize)..=(hy as isize) {
            for dx in -(hx as isize)..=(hx as isize) {
                shifts.push((dy, dx));
            }
        }
        let center = shifts.len() / 2;
        let kterms = monomials(kernel_order);
        let bterms = monomials(bg_order);
        let mut kparams = Vec::new();
        for i in 0..kterms.len() {
            for s in 0..shifts.len() {
                if constant_flux && i > 0 && s == center {
                    continue;
                }
                kparams.push((i, s));
            }
        }
        Self {
            ny,
            nx,
            shifts,
            center,
            kterms,
            bterms,
            kparams,
            max_order: kernel_order.max(bg_order),
        }
    }

    pub fn n_params(&self) -> usize {
        self.kparams.len() + self.bterms.len()
    }

    /// Powers `c^0 .. c^max_order`.
    #[inline]
    pub fn powers(&self, c: f64, out: &mut [f64]) {
        let mut v = 1.0;
        for o in out.iter_mut().take(self.max_order + 1) {
            *o = v;
            v *= c;
        }
    }

    /// The differential shift values of pixel `(y, x)` (at least `(hy, hx)` from the edges):
    /// `out[s] = C(x - s) - C(x)` for `s != center`, `out[center] = C(x)`.
    #[inline]
    pub fn fill_shifts(&self, c: &ArrayView2<f32>, y: usize, x: usize, out: &mut [f64]) {
        let c0 = c[[y, x]] as f64;
        for (d, &(dy, dx)) in out.iter_mut().zip(self.shifts.iter()) {
            let v = c[[(y as isize - dy) as usize, (x as isize - dx) as usize]] as f64;
            *d = v - c0;
        }
        out[self.center] = c0;
    }

    /// Fills the design row of pixel `(y, x)` (which must be at least `(hy, hx)` from the
    /// edges) for the convolved image `c`; `scratch` holds `shifts.len()` values.
    pub fn fill_row(
        &self,
        c: &ArrayView2<f32>,
        y: usize,
        x: usize,
        row: &mut [f64],
        scratch: &mut [f64],
    ) {
        let mut px = [0.0f64; 16];
        let mut py = [0.0f64; 16];
        self.powers(scaled(x as f64, self.nx), &mut px);
        self.powers(scaled(y as f64, self.ny), &mut py);
        let c0 = c[[y, x]] as f64;
        for (d, &(dy, dx)) in scratch.iter_mut().zip(self.shifts.iter()) {
            let v = c[[(y as isize - dy) as usize, (x as isize - dx) as usize]] as f64;
            *d = v - c0;
        }
        scratch[self.center] = c0;
        for (r, &(i, s)) in row.iter_mut().zip(self.kparams.iter()) {
            let (p, q) = self.kterms[i];
            *r = px[p as usize] * py[q as usize] * scratch[s];
        }
        let nk = self.kparams.len();
        for (j, &(p, q)) in self.bterms.iter().enumerate() {
            row[nk + j] = px[p as usize] * py[q as usize];
        }
    }
}
