//! Two-dimensional real FFTs with one normalisation convention.
//!
//! Forward: unnormalised, real `(ny, nx)` -> complex half spectrum `(ny, nx/2 + 1)` indexed
//! `[ky, kx]`. Inverse: applies `1/(ny*nx)`. Rows are transformed with `realfft`, columns with
//! `rustfft` after a blocked transpose; both passes run in parallel over rows with rayon.
//! Plans are made once in [`Fft2::new`] and reused (plan once, run many times).

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use num_complex::Complex;
use rayon::prelude::*;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftNum, FftPlanner};
use std::sync::Arc;

/// Float types the FFTs run in (`f32` or `f64`).
pub trait FftFloat: FftNum + num_traits::Float + Send + Sync {}
impl FftFloat for f32 {}
impl FftFloat for f64 {}

/// A planned 2-D real FFT of one shape.
pub struct Fft2<T: FftFloat> {
    ny: usize,
    nx: usize,
    r2c: Arc<dyn RealToComplex<T>>,
    c2r: Arc<dyn ComplexToReal<T>>,
    col_fwd: Arc<dyn Fft<T>>,
    col_inv: Arc<dyn Fft<T>>,
}

impl<T: FftFloat> std::fmt::Debug for Fft2<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fft2")
            .field("ny", &self.ny)
            .field("nx", &self.nx)
            .finish()
    }
}

const BLOCK: usize = 32;

/// Arrays smaller than this (elements) are transformed on the calling thread: for tiny
/// arrays (cutouts, kernels) handing rows to the thread pool costs more than the FFT.
const PAR_MIN_ELEMS: usize = 1 << 14;

/// Blocked transpose of `src` (shape `(r, c)`) into `dst` (shape `(c, r)`).
fn transpose_into<E: Copy + Send + Sync>(src: &ArrayView2<E>, dst: &mut ArrayViewMut2<E>) {
    let (r, c) = src.dim();
    debug_assert_eq!(dst.dim(), (c, r));
    let block = |bi: usize, mut chunk: ArrayViewMut2<E>| {
        let c0 = bi * BLOCK;
        let nrow = chunk.nrows();
        for r0 in (0..r).step_by(BLOCK) {
            let r1 = (r0 + BLOCK).min(r);
            for i in 0..nrow {
                for j in r0..r1 {
                    chunk[[i, j]] = src[[j, c0 + i]];
                }
            }
        }
    };
    if r * c >= PAR_MIN_ELEMS {
        dst.axis_chunks_iter_mut(Axis(0), BLOCK)
            .into_par_iter()
            .enumerate()
            .for_each(|(bi, chunk)| block(bi, chunk));
    } else {
        for (bi, chunk) in dst.axis_chunks_iter_mut(Axis(0), BLOCK).enumerate() {
            block(bi, chunk);
        }
    }
}

/// Applies `f` to each pair of rows of `a` and `b` (with per-thread state from `init`), on
/// the thread pool when `par`, else on the calling thread.
fn zip_rows<A, B, S, I, F>(
    par: bool,
    mut a: ArrayViewMut2<A>,
    mut b: ArrayViewMut2<B>,
    init: I,
    f: F,
) where
    A: Send + Sync,
    B: Send + Sync,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, ArrayViewMut1<A>, ArrayViewMut1<B>) + Sync + Send,
{
    if par {
        a.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(b.axis_iter_mut(Axis(0)).into_par_iter())
            .for_each_init(init, |s, (x, y)| f(s, x, y));
    } else {
        let mut s = init();
        for (x, y) in a.axis_iter_mut(Axis(0)).zip(b.axis_iter_mut(Axis(0))) {
            f(&mut s, x, y);
        }
    }
}

impl<T: FftFloat> Fft2<T> {
    /// Plans transforms for real images of shape `(ny, nx)`.
    ///
    /// # Panics
    /// If `ny` or `nx` is zero (a caller bug).
    pub fn new(ny: usize, nx: usize) -> Self {
        assert!(ny > 0 && nx > 0, "Fft2::new: empty shape ({ny}, {nx})");
        let mut rp = RealFftPlanner::<T>::new();
        let mut cp = FftPlanner::<T>::new();
        Self {
            ny,
            nx,
            r2c: rp.plan_fft_forward(nx),
            c2r: rp.plan_fft_inverse(nx),
            col_fwd: cp.plan_fft_forward(ny),
            col_inv: cp.plan_fft_inverse(ny),
        }
    }

    /// Whether the passes run on the thread pool (large arrays only).
    fn parallel(&self) -> bool {
        self.ny * self.nx >= PAR_MIN_ELEMS
    }

    /// Real-space shape `(ny, nx)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.ny, self.nx)
    }

    /// Spectrum shape `(ny, nx/2 + 1)`.
    pub fn spectrum_shape(&self) -> (usize, usize) {
        (self.ny, self.nx / 2 + 1)
    }

    /// Unnormalised forward transform of a real image of the planned shape.
    ///
    /// # Panics
    /// If `input` does not have the planned shape.
    pub fn forward(&self, input: &ArrayView2<T>) -> Array2<Complex<T>> {
        let mut out = Array2::zeros(self.spectrum_shape());
        self.forward_into(input, &mut out.view_mut());
        out
    }

    /// Forward transform written into a caller-owned spectrum of shape [`Self::spectrum_shape`].
    ///
    /// # Panics
    /// If the shapes differ from the plan.
    pub fn forward_into(&self, input: &ArrayView2<T>, out: &mut ArrayViewMut2<Complex<T>>) {
        assert_eq!(
            input.dim(),
            (self.ny, self.nx),
            "Fft2::forward: shape mismatch"
        );
        assert_eq!(
            out.dim(),
            self.spectrum_shape(),
            "Fft2::forward: output shape mismatch"
        );
        let rows = self.rows_forward(input);
        self.columns_forward(&rows, out);
    }

    /// Forward transform in the transposed layout: the half spectrum as `(nx/2 + 1, ny)`,
    /// indexed `[kx, ky]`. One transpose cheaper than [`Self::forward`]; element-wise
    /// products of spectra do not care about the layout, and [`Self::inverse_t`] takes it
    /// back.
    ///
    /// # Panics
    /// If `input` does not have the planned shape.
    pub fn forward_t(&self, input: &ArrayView2<T>) -> Array2<Complex<T>> {
        assert_eq!(
            input.dim(),
            (self.ny, self.nx),
            "Fft2::forward_t: shape mismatch"
        );
        let rows = self.rows_forward(input);
        self.columns_forward_t(&rows)
    }

    /// Real FFT of each row into a `(ny, nx/2 + 1)` buffer.
    fn rows_forward(&self, input: &ArrayView2<T>) -> Array2<Complex<T>> {
        let nc = self.nx / 2 + 1;
        let mut rows = Array2::<Complex<T>>::zeros((self.ny, nc));
        let init = || (self.r2c.make_input_vec(), self.r2c.make_scratch_vec());
        let row_fft = |(buf, scratch): &mut (Vec<T>, Vec<Complex<T>>),
                       mut orow: ArrayViewMut1<Complex<T>>,
                       irow: ArrayView1<T>| {
            for (b, v) in buf.iter_mut().zip(irow.iter()) {
                *b = *v;
            }
            let o = orow.as_slice_mut().expect("row-major buffer");
            // Lengths are fixed by the plan, so this cannot fail.
            let _ = self.r2c.process_with_scratch(buf, o, scratch);
        };
        if self.parallel() {
            rows.axis_iter_mut(Axis(0))
                .into_par_iter()
                .zip(input.axis_iter(Axis(0)).into_par_iter())
                .for_each_init(init, |st, (o, i)| row_fft(st, o, i));
        } else {
            let mut st = init();
            for (o, i) in rows.axis_iter_mut(Axis(0)).zip(input.axis_iter(Axis(0))) {
                row_fft(&mut st, o, i);
            }
        }
        rows
    }

    /// Transposes the row spectra to `(nc, ny)` and transforms along the original columns.
    fn columns_forward_t(&self, rows: &Array2<Complex<T>>) -> Array2<Complex<T>> {
        let nc = self.nx / 2 + 1;
        let mut t = Array2::<Complex<T>>::zeros((nc, self.ny));
        transpose_into(&rows.view(), &mut t.view_mut());
        self.complex_rows(&mut t, &self.col_fwd);
        t
    }

    /// Transposes the row spectra to `(nc, ny)`, transforms along the original columns and
    /// transposes back into `out`.
    fn columns_forward(&self, rows: &Array2<Complex<T>>, out: &mut ArrayViewMut2<Complex<T>>) {
        let t = self.columns_forward_t(rows);
        transpose_into(&t.view(), out);
    }

    /// Forward transform of a small odd-sized stamp embedded as [`crate::psf::embed_psf`]
    /// does (centre at index `(0, 0)`, negative offsets wrapped): the stamp's transfer
    /// function. Equal to `forward(&embed_psf(stamp, ny, nx).view())`, but only the rows the
    /// stamp occupies get a row transform, so it costs about half a full transform.
    ///
    /// # Panics
    /// If a side of the stamp is even or larger than the planned shape (a caller bug).
    pub fn forward_stamp(&self, stamp: &ArrayView2<T>) -> Array2<Complex<T>> {
        let rows = self.stamp_rows(stamp);
        let mut out = Array2::zeros(self.spectrum_shape());
        self.columns_forward(&rows, &mut out.view_mut());
        out
    }

    /// [`Self::forward_stamp`] in the transposed layout of [`Self::forward_t`].
    ///
    /// # Panics
    /// As [`Self::forward_stamp`].
    pub fn forward_stamp_t(&self, stamp: &ArrayView2<T>) -> Array2<Complex<T>> {
        let rows = self.stamp_rows(stamp);
        self.columns_forward_t(&rows)
    }

    /// Row transforms of an embedded stamp (only its rows are non-zero).
    fn stamp_rows(&self, stamp: &ArrayView2<T>) -> Array2<Complex<T>> {
        let (h, w) = stamp.dim();
        assert!(
            h % 2 == 1 && w % 2 == 1 && h <= self.ny && w <= self.nx,
            "Fft2::forward_stamp: stamp {h}x{w} must be odd and fit {}x{}",
            self.ny,
            self.nx
        );
        let nc = self.nx / 2 + 1;
        let (cy, cx) = (h / 2, w / 2);
        let mut rows = Array2::<Complex<T>>::zeros((self.ny, nc));
        let mut buf = self.r2c.make_input_vec();
        let mut scratch = self.r2c.make_scratch_vec();
        for (j, srow) in stamp.axis_iter(Axis(0)).enumerate() {
            buf.iter_mut().for_each(|b| *b = T::zero());
            for (i, &v) in srow.iter().enumerate() {
                buf[(i + self.nx - cx) % self.nx] = v;
            }
            let y = (j + self.ny - cy) % self.ny;
            let mut orow = rows.row_mut(y);
            if let Some(o) = orow.as_slice_mut() {
                // Lengths are fixed by the plan, so this cannot fail.
                let _ = self.r2c.process_with_scratch(&mut buf, o, &mut scratch);
            }
        }
        rows
    }

    /// Inverse transform, normalised by `1/(ny*nx)`; consumes the spectrum as scratch.
    ///
    /// # Panics
    /// If `spec` does not have the shape [`Self::spectrum_shape`].
    pub fn inverse(&self, spec: Array2<Complex<T>>) -> Array2<T> {
        let mut out = Array2::zeros((self.ny, self.nx));
        self.inverse_into(spec, &mut out.view_mut());
        out
    }

    /// Inverse transform written into a caller-owned real image.
    ///
    /// # Panics
    /// If the shapes differ from the plan.
    pub fn inverse_into(&self, spec: Array2<Complex<T>>, out: &mut ArrayViewMut2<T>) {
        assert_eq!(
            spec.dim(),
            self.spectrum_shape(),
            "Fft2::inverse: shape mismatch"
        );
        assert_eq!(
            out.dim(),
            (self.ny, self.nx),
            "Fft2::inverse: output shape mismatch"
        );
        let nc = self.nx / 2 + 1;
        let mut t = Array2::<Complex<T>>::zeros((nc, self.ny));
        transpose_into(&spec.view(), &mut t.view_mut());
        self.complex_rows(&mut t, &self.col_inv);
        let mut rows = spec; // reuse the allocation
        transpose_into(&t.view(), &mut rows.view_mut());
        drop(t);
        self.rows_inverse(rows, out);
    }

    /// Inverse transform of a spectrum in the transposed layout of [`Self::forward_t`],
    /// normalised by `1/(ny*nx)`; consumes the spectrum as scratch.
    ///
    /// # Panics
    /// If `spec_t` does not have the shape `(nx/2 + 1, ny)`.
    pub fn inverse_t(&self, mut spec_t: Array2<Complex<T>>) -> Array2<T> {
        let nc = self.nx / 2 + 1;
        assert_eq!(
            spec_t.dim(),
            (nc, self.ny),
            "Fft2::inverse_t: shape mismatch"
        );
        self.complex_rows(&mut spec_t, &self.col_inv);
        let mut rows = Array2::<Complex<T>>::zeros(self.spectrum_shape());
        transpose_into(&spec_t.view(), &mut rows.view_mut());
        drop(spec_t);
        let mut out = Array2::zeros((self.ny, self.nx));
        self.rows_inverse(rows, &mut out.view_mut());
        out
    }

    /// Normalised complex-to-real transform of each row of `rows` (`(ny, nc)`) into `out`.
    fn rows_inverse(&self, mut rows: Array2<Complex<T>>, out: &mut ArrayViewMut2<T>) {
        let nc = self.nx / 2 + 1;
        let norm = T::one() / T::from(self.ny * self.nx).unwrap_or_else(T::one);
        let nx = self.nx;
        zip_rows(
            self.parallel(),
            out.view_mut(),
            rows.view_mut(),
            || (self.c2r.make_output_vec(), self.c2r.make_scratch_vec()),
            |(buf, scratch), mut orow, mut srow| {
                let s = srow.as_slice_mut().expect("row-major buffer");
                // A real signal's DC (and Nyquist, for even nx) bins are real; rounding
                // can leave a tiny imaginary part that realfft would reject.
                s[0].im = T::zero();
                if nx % 2 == 0 {
                    s[nc - 1].im = T::zero();
                }
                let _ = self.c2r.process_with_scratch(s, buf, scratch);
                for (o, v) in orow.iter_mut().zip(buf.iter()) {
                    *o = *v * norm;
                }
            },
        );
    }

    fn complex_rows(&self, a: &mut Array2<Complex<T>>, plan: &Arc<dyn Fft<T>>) {
        let init = || vec![Complex::new(T::zero(), T::zero()); plan.get_inplace_scratch_len()];
        let run = |scratch: &mut Vec<Complex<T>>, mut row: ArrayViewMut1<Complex<T>>| {
            let r = row.as_slice_mut().expect("row-major buffer");
            plan.process_with_scratch(r, scratch);
        };
        if self.parallel() {
            a.axis_iter_mut(Axis(0))
                .into_par_iter()
                .for_each_init(init, run);
        } else {
            let mut scratch = init();
            for row in a.axis_iter_mut(Axis(0)) {
                run(&mut scratch, row);
            }
        }
    }

    /// Signed integer frequency of spectrum row `ky` (in cycles per image height).
    pub fn freq_y(&self, ky: usize) -> isize {
        signed_freq(ky, self.ny)
    }

    /// Integer frequency of spectrum column `kx` (always >= 0 for the half spectrum).
    pub fn freq_x(&self, kx: usize) -> isize {
        kx as isize
    }
}

/// Signed frequency index of bin `k` for an axis of length `n`: `0, 1, .., -2, -1`.
pub fn signed_freq(k: usize, n: usize) -> isize {
    if k <= n / 2 {
        k as isize
    } else {
        k as isize - n as isize
    }
}

/// The smallest 7-smooth size (factors 2, 3, 5, 7 only) `>= n`: sizes with large prime
/// factors are 2.5-3.5x slower.
pub fn next_fast_len(n: usize) -> usize {
    let mut m = n.max(1);
    loop {
        let mut r = m;
        for p in [2, 3, 5, 7] {
            while r % p == 0 {
                r /= p;
            }
        }
        if r == 1 {
            return m;
        }
        m += 1;
    }
}

/// Linear (not circular) convolution of `image` with an odd-sized `kernel` centred at its
/// middle pixel, returning the same shape as `image` ("same" mode, zero outside the image).
/// The image is zero-padded to a fast size so that nothing wraps around.
///
/// # Panics
/// If the kernel has an even side (a caller bug).
pub fn convolve_same<T: FftFloat>(image: &ArrayView2<T>, kernel: &ArrayView2<T>) -> Array2<T> {
    let (ny, nx) = image.dim();
    let (ky, kx) = kernel.dim();
    assert!(
        ky % 2 == 1 && kx % 2 == 1,
        "convolve_same: kernel sides must be odd"
    );
    let py = next_fast_len(ny + ky / 2);
    let px = next_fast_len(nx + kx / 2);
    let fft = Fft2::<T>::new(py, px);
    let mut padded = Array2::<T>::zeros((py, px));
    padded.slice_mut(ndarray::s![..ny, ..nx]).assign(image);
    let mut spec = fft.forward(&padded.view());
    let kpad = crate::psf::embed_psf(kernel, py, px);
    let kspec = fft.forward(&kpad.view());
    spec.zip_mut_with(&kspec, |a, b| *a = *a * *b);
    let full = fft.inverse(spec);
    full.slice(ndarray::s![..ny, ..nx]).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
    }

    /// Slow, obviously correct DFT of a real image.
    fn naive_dft(a: &Array2<f64>) -> Array2<Complex<f64>> {
        let (ny, nx) = a.dim();
        let mut out = Array2::zeros((ny, nx / 2 + 1));
        for ky in 0..ny {
            for kx in 0..nx / 2 + 1 {
                let mut s = Complex::new(0.0, 0.0);
                for y in 0..ny {
                    for x in 0..nx {
                        let ph = -2.0
                            * std::f64::consts::PI
                            * ((ky * y) as f64 / ny as f64 + (kx * x) as f64 / nx as f64);
                        s += a[[y, x]] * Complex::new(ph.cos(), ph.sin());
                    }
                }
                out[[ky, kx]] = s;
            }
        }
        out
    }

    #[test]
    fn parallel_path_matches_direct_sums_and_round_trips() {
        // 129 x 128 >= PAR_MIN_ELEMS: the passes run on the thread pool.
        let (ny, nx) = (129, 128);
        assert!(ny * nx >= PAR_MIN_ELEMS);
        let mut seed = 5;
        let a = Array2::from_shape_fn((ny, nx), |_| lcg(&mut seed));
        let f = Fft2::<f64>::new(ny, nx);
        let spec = f.forward(&a.view());
        for &(ky, kx) in &[(0, 0), (1, 2), (64, 63), (128, 64), (77, 5)] {
            let mut s = Complex::new(0.0, 0.0);
            for ((y, x), v) in a.indexed_iter() {
                let ph = -2.0
                    * std::f64::consts::PI
                    * ((ky * y) as f64 / ny as f64 + (kx * x) as f64 / nx as f64);
                s += v * Complex::new(ph.cos(), ph.sin());
            }
            assert!((spec[[ky, kx]] - s).norm() < 1e-9, "bin ({ky}, {kx})");
        }
        let back = f.inverse(spec);
        for (p, q) in back.iter().zip(a.iter()) {
            assert!((p - q).abs() < 1e-12);
        }
    }

    #[test]
    fn forward_stamp_equals_forward_of_embedded_stamp() {
        let mut seed = 11;
        for &(ny, nx, h, w) in &[(16, 20, 5, 7), (15, 9, 3, 9), (33, 17, 33, 1)] {
            let st = Array2::from_shape_fn((h, w), |_| lcg(&mut seed));
            let f = Fft2::<f64>::new(ny, nx);
            let fast = f.forward_stamp(&st.view());
            let slow = f.forward(&crate::psf::embed_psf(&st.view(), ny, nx).view());
            for (a, b) in fast.iter().zip(slow.iter()) {
                assert!((a - b).norm() < 1e-12, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn forward_matches_naive_dft_odd_and_even_shapes() {
        let mut seed = 7;
        for &(ny, nx) in &[(6, 8), (7, 9), (5, 12), (33, 17)] {
            let a = Array2::from_shape_fn((ny, nx), |_| lcg(&mut seed));
            let fast = Fft2::<f64>::new(ny, nx).forward(&a.view());
            let slow = naive_dft(&a);
            for (f, s) in fast.iter().zip(slow.iter()) {
                assert!((f - s).norm() < 1e-9, "{ny}x{nx}: {f} vs {s}");
            }
        }
    }

    #[test]
    fn transposed_layout_matches_and_round_trips() {
        let mut seed = 13;
        for &(ny, nx, par) in &[(7, 10, false), (129, 130, true)] {
            assert_eq!(ny * nx >= PAR_MIN_ELEMS, par);
            let a = Array2::from_shape_fn((ny, nx), |_| lcg(&mut seed));
            let st = Array2::from_shape_fn((5, 3), |_| lcg(&mut seed));
            let f = Fft2::<f64>::new(ny, nx);
            let t = f.forward_t(&a.view());
            let ts = f.forward_stamp_t(&st.view());
            let (plain, stamp) = (f.forward(&a.view()), f.forward_stamp(&st.view()));
            assert_eq!(t.dim(), (nx / 2 + 1, ny));
            for ((ky, kx), v) in plain.indexed_iter() {
                assert!((t[[kx, ky]] - v).norm() < 1e-12);
                assert!((ts[[kx, ky]] - stamp[[ky, kx]]).norm() < 1e-12);
            }
            let back = f.inverse_t(t);
            let err = (&back - &a).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
            assert!(err < 1e-12, "{ny}x{nx}: round trip error {err}");
        }
    }

    #[test]
    fn inverse_roundtrip_is_identity_f32_and_f64() {
        let mut seed = 11;
        let a = Array2::from_shape_fn((40, 70), |_| lcg(&mut seed));
        let f = Fft2::<f64>::new(40, 70);
        let back = f.inverse(f.forward(&a.view()));
        let err = (&back - &a).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
        assert!(err < 1e-12, "f64 roundtrip error {err}");
        let a32 = a.mapv(|v| v as f32);
        let f32p = Fft2::<f32>::new(40, 70);
        let back32 = f32p.inverse(f32p.forward(&a32.view()));
        let err32 = (&back32 - &a32)
            .mapv(f32::abs)
            .fold(0.0f32, |m, v| m.max(*v));
        assert!(err32 < 1e-5, "f32 roundtrip error {err32}");
    }

    #[test]
    fn convolution_with_shifted_delta_moves_the_image() {
        // A kernel with its only non-zero pixel one right of centre shifts the image right.
        let mut k = Array2::<f64>::zeros((3, 3));
        k[[1, 2]] = 1.0;
        let img = Array2::from_shape_fn((10, 12), |(y, x)| (y * 12 + x) as f64);
        let c = convolve_same(&img.view(), &k.view());
        assert!((c[[4, 5]] - img[[4, 4]]).abs() < 1e-9);
        assert!(c[[4, 0]].abs() < 1e-9, "zero padded, no wrap-around");
    }

    #[test]
    fn convolve_same_matches_direct_sum() {
        let mut seed = 3;
        let img = Array2::from_shape_fn((13, 11), |_| lcg(&mut seed));
        let k = Array2::from_shape_fn((5, 3), |_| lcg(&mut seed));
        let c = convolve_same(&img.view(), &k.view());
        for y in 0..13isize {
            for x in 0..11isize {
                let mut s = 0.0;
                for j in -2..=2isize {
                    for i in -1..=1isize {
                        let (yy, xx) = (y - j, x - i);
                        if (0..13).contains(&yy) && (0..11).contains(&xx) {
                            s += img[[yy as usize, xx as usize]]
                                * k[[(j + 2) as usize, (i + 1) as usize]];
                        }
                    }
                }
                assert!((c[[y as usize, x as usize]] - s).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn fast_lengths_are_7_smooth() {
        assert_eq!(
            next_fast_len(4126),
            4200,
            "DEPENDENCIES.md: 4126 = 2*2063 pads to 4200"
        );
        for n in [1, 97, 1000, 1025, 4097, 4126] {
            let m = next_fast_len(n);
            assert!(m >= n);
            let mut r = m;
            for p in [2, 3, 5, 7] {
                while r % p == 0 {
                    r /= p;
                }
            }
            assert_eq!(r, 1, "{m} is not 7-smooth");
        }
        assert_eq!(next_fast_len(4097), 4116);
    }
}
