//! Two-dimensional real FFTs with one normalisation convention.
//!
//! Forward: unnormalised, real `(ny, nx)` -> complex half spectrum `(ny, nx/2 + 1)` indexed
//! `[ky, kx]`. Inverse: applies `1/(ny*nx)`. Rows are transformed with `realfft`, columns with
//! `rustfft` after a blocked transpose; both passes run in parallel over rows with rayon.
//! Plans are made once in [`Fft2::new`] and reused (plan once, run many times).

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use num_complex::Complex;
use rayon::prelude::*;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftNum, FftPlanner};
use std::sync::Arc;

/// Float types the FFTs run in (`f32` or `f64`).
pub trait FftFloat: FftNum + num_traits::Float + Send + Sync {
    /// Runs `f` with this thread's reusable buffer of row spectra (any length; `f` resizes
    /// it). A forward transform needs one image-sized intermediate; keeping it per thread
    /// spares an allocation, and the page faults of fresh memory, on every call. Buffers
    /// over 32 MiB are not kept (no image-sized memory held between calls for large images).
    #[doc(hidden)]
    fn with_row_buffer<R>(f: impl FnOnce(&mut Vec<Complex<Self>>) -> R) -> R;
}

/// Largest per-thread row buffer (bytes) [`FftFloat::with_row_buffer`] keeps between calls.
const ROW_BUFFER_KEEP_BYTES: usize = 32 << 20;

macro_rules! fft_float {
    ($t:ty) => {
        impl FftFloat for $t {
            fn with_row_buffer<R>(f: impl FnOnce(&mut Vec<Complex<Self>>) -> R) -> R {
                thread_local! {
                    static ROWS: std::cell::Cell<Vec<Complex<$t>>> =
                        const { std::cell::Cell::new(Vec::new()) };
                }
                // Taken, not borrowed: a transform that runs nested on this thread (rayon
                // work stealing) finds an empty buffer and allocates its own.
                let mut v = ROWS.with(|c| c.take());
                let r = f(&mut v);
                // Kept for the next call up to ROW_BUFFER_KEEP_BYTES (ZOGY's tiles, images
                // to ~2k^2); a larger one is freed rather than held by the thread.
                if v.capacity() * std::mem::size_of::<Complex<$t>>() <= ROW_BUFFER_KEEP_BYTES {
                    ROWS.with(|c| c.set(v));
                }
                r
            }
        }
    };
}
fft_float!(f32);
fft_float!(f64);

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

/// Rows of a spectrum are transposed in blocks of this many, each block transformed along the
/// other axis while it is in cache (the transpose is fused with the column transforms).
const TB: usize = 16;

/// Arrays smaller than this (elements) are transformed on the calling thread: for tiny
/// arrays (cutouts, kernels) handing rows to the thread pool costs more than the FFT.
const PAR_MIN_ELEMS: usize = 1 << 14;

/// Runs `f(index, chunk, state)` over the `size`-element chunks of `data`, on the thread
/// pool when `par`, each thread with its own state from `init`.
fn for_chunks<E, S, I, F>(par: bool, data: &mut [E], size: usize, init: I, f: F)
where
    E: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(usize, &mut [E], &mut S) + Sync + Send,
{
    if par {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each_init(init, |s, (i, c)| f(i, c, s));
    } else {
        let mut s = init();
        for (i, c) in data.chunks_mut(size).enumerate() {
            f(i, c, &mut s);
        }
    }
}

/// Copies columns `k0..k0 + kb` of the row-major `(rows, cols)` matrix `src` into the rows of
/// `dst` (`kb` rows of length `rows`, row-major): a block of the transpose.
fn gather_columns<E: Copy>(src: &[E], cols: usize, k0: usize, dst: &mut [E]) {
    let rows = src.len() / cols;
    let kb = dst.len() / rows;
    // Blocks of 8 source rows: each destination row gets 8 contiguous values per block.
    const R: usize = 8;
    let full = rows - rows % R;
    for y in (0..full).step_by(R) {
        let block = &src[y * cols..(y + R) * cols];
        for (j, d) in dst.chunks_exact_mut(rows).enumerate() {
            let col = &block[k0 + j..];
            for (i, o) in d[y..y + R].iter_mut().enumerate() {
                *o = col[i * cols];
            }
        }
    }
    for y in full..rows {
        let row = &src[y * cols + k0..y * cols + k0 + kb];
        for (d, &v) in dst.chunks_exact_mut(rows).zip(row) {
            d[y] = v;
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

    /// Shape `(nx/2 + 1, ny)` of a spectrum in the transposed layout ([`Self::forward_t`]).
    pub fn spectrum_shape_t(&self) -> (usize, usize) {
        (self.nx / 2 + 1, self.ny)
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
            out.dim(),
            self.spectrum_shape(),
            "Fft2::forward: output shape mismatch"
        );
        let t = self.forward_t(input);
        self.transpose_back(&t, out);
    }

    /// Forward transform in the transposed layout: the half spectrum as `(nx/2 + 1, ny)`,
    /// indexed `[kx, ky]`. One transpose cheaper than [`Self::forward`]; element-wise
    /// products of spectra do not care about the layout, and [`Self::inverse_t`] takes it
    /// back.
    ///
    /// # Panics
    /// If `input` does not have the planned shape.
    pub fn forward_t(&self, input: &ArrayView2<T>) -> Array2<Complex<T>> {
        let mut out = Array2::zeros(self.spectrum_shape_t());
        self.forward_t_into(input, &mut out);
        out
    }

    /// [`Self::forward_t`] written into a caller-owned spectrum of shape
    /// [`Self::spectrum_shape_t`] (every element is overwritten): no allocation of the
    /// output when the caller reuses it.
    ///
    /// # Panics
    /// If `input` or `out` does not have the planned shape.
    pub fn forward_t_into(&self, input: &ArrayView2<T>, out: &mut Array2<Complex<T>>) {
        assert_eq!(
            input.dim(),
            (self.ny, self.nx),
            "Fft2::forward_t: shape mismatch"
        );
        T::with_row_buffer(|rows| {
            self.rows_forward(input, rows);
            self.columns_forward_t(rows, None, out);
        });
    }

    /// Real FFT of each row into `rows`, row-major `(ny, nx/2 + 1)`.
    fn rows_forward(&self, input: &ArrayView2<T>, rows: &mut Vec<Complex<T>>) {
        let nc = self.nx / 2 + 1;
        rows.resize(self.ny * nc, Complex::new(T::zero(), T::zero()));
        let init = || (self.r2c.make_input_vec(), self.r2c.make_scratch_vec());
        for_chunks(self.parallel(), rows, nc, init, |y, o, (buf, scratch)| {
            match input.row(y).as_slice() {
                Some(r) => buf.copy_from_slice(r),
                None => buf.iter_mut().zip(input.row(y)).for_each(|(b, v)| *b = *v),
            }
            // Lengths are fixed by the plan, so this cannot fail.
            let _ = self.r2c.process_with_scratch(buf, o, scratch);
        });
    }

    /// Transposes the row spectra (`(ny, nc)`, row-major) into `out` (`(nc, ny)`) block by
    /// block, transforming each block along the original columns while it is in cache.
    /// `nonzero`: when given, the only rows of `rows` that may be non-zero (a stamp's).
    fn columns_forward_t(
        &self,
        rows: &[Complex<T>],
        nonzero: Option<&[usize]>,
        out: &mut Array2<Complex<T>>,
    ) {
        let nc = self.nx / 2 + 1;
        assert_eq!(
            out.dim(),
            (nc, self.ny),
            "Fft2::forward_t: output shape mismatch"
        );
        let ny = self.ny;
        let plan = &self.col_fwd;
        let dst = out
            .as_slice_mut()
            .expect("an owned spectrum in standard layout");
        for_chunks(
            self.parallel(),
            dst,
            TB * ny,
            || vec![Complex::new(T::zero(), T::zero()); plan.get_inplace_scratch_len()],
            |b, chunk, scratch| {
                match nonzero {
                    None => gather_columns(rows, nc, b * TB, chunk),
                    Some(ys) => {
                        chunk.fill(Complex::new(T::zero(), T::zero()));
                        for &y in ys {
                            let src = &rows[y * nc + b * TB..];
                            for (d, &v) in chunk.chunks_exact_mut(ny).zip(src) {
                                d[y] = v;
                            }
                        }
                    }
                }
                plan.process_with_scratch(chunk, scratch);
            },
        );
    }

    /// Transposes a spectrum in the transposed layout back to `(ny, nc)` into `out`.
    fn transpose_back(&self, t: &Array2<Complex<T>>, out: &mut ArrayViewMut2<Complex<T>>) {
        let nc = self.nx / 2 + 1;
        let src = t.as_slice().expect("an owned spectrum in standard layout");
        let par = self.parallel();
        let run = |y0: usize, mut block: ArrayViewMut2<Complex<T>>| {
            for (k, col) in src.chunks_exact(self.ny).enumerate().take(nc) {
                for (j, &v) in col[y0..y0 + block.nrows()].iter().enumerate() {
                    block[[j, k]] = v;
                }
            }
        };
        if par {
            out.axis_chunks_iter_mut(Axis(0), TB)
                .into_par_iter()
                .enumerate()
                .for_each(|(b, block)| run(b * TB, block));
        } else {
            for (b, block) in out.axis_chunks_iter_mut(Axis(0), TB).enumerate() {
                run(b * TB, block);
            }
        }
    }

    /// Forward transform of a small odd-sized stamp embedded as [`crate::psf::embed_psf`]
    /// does (centre at index `(0, 0)`, negative offsets wrapped): the stamp's transfer
    /// function. Equal to `forward(&embed_psf(stamp, ny, nx).view())`, but only the rows the
    /// stamp occupies get a row transform, so it costs about half a full transform.
    ///
    /// # Panics
    /// If a side of the stamp is even or larger than the planned shape (a caller bug).
    pub fn forward_stamp(&self, stamp: &ArrayView2<T>) -> Array2<Complex<T>> {
        let t = self.forward_stamp_t(stamp);
        let mut out = Array2::zeros(self.spectrum_shape());
        self.transpose_back(&t, &mut out.view_mut());
        out
    }

    /// [`Self::forward_stamp`] in the transposed layout of [`Self::forward_t`].
    ///
    /// # Panics
    /// As [`Self::forward_stamp`].
    pub fn forward_stamp_t(&self, stamp: &ArrayView2<T>) -> Array2<Complex<T>> {
        let mut out = Array2::zeros(self.spectrum_shape_t());
        self.forward_stamp_t_into(stamp, &mut out);
        out
    }

    /// [`Self::forward_stamp_t`] written into a caller-owned spectrum of shape
    /// [`Self::spectrum_shape_t`] (every element is overwritten).
    ///
    /// # Panics
    /// As [`Self::forward_stamp`], or if `out` does not have the shape.
    pub fn forward_stamp_t_into(&self, stamp: &ArrayView2<T>, out: &mut Array2<Complex<T>>) {
        T::with_row_buffer(|rows| {
            let ys = self.stamp_rows(stamp, rows);
            self.columns_forward_t(rows, Some(&ys), out);
        });
    }

    /// Row transforms of an embedded stamp (only its rows are non-zero) into `rows`,
    /// row-major `(ny, nx/2 + 1)`; returns the indices of the stamp's rows.
    fn stamp_rows(&self, stamp: &ArrayView2<T>, rows: &mut Vec<Complex<T>>) -> Vec<usize> {
        let (h, w) = stamp.dim();
        assert!(
            h % 2 == 1 && w % 2 == 1 && h <= self.ny && w <= self.nx,
            "Fft2::forward_stamp: stamp {h}x{w} must be odd and fit {}x{}",
            self.ny,
            self.nx
        );
        let nc = self.nx / 2 + 1;
        let (cy, cx) = (h / 2, w / 2);
        // Only the stamp's rows are written and read (the others may hold stale values).
        rows.resize(self.ny * nc, Complex::new(T::zero(), T::zero()));
        let mut buf = self.r2c.make_input_vec();
        let mut scratch = self.r2c.make_scratch_vec();
        let mut ys = Vec::with_capacity(h);
        for (j, srow) in stamp.axis_iter(Axis(0)).enumerate() {
            buf.iter_mut().for_each(|b| *b = T::zero());
            for (i, &v) in srow.iter().enumerate() {
                buf[(i + self.nx - cx) % self.nx] = v;
            }
            let y = (j + self.ny - cy) % self.ny;
            ys.push(y);
            // Lengths are fixed by the plan, so this cannot fail.
            let _ = self.r2c.process_with_scratch(
                &mut buf,
                &mut rows[y * nc..(y + 1) * nc],
                &mut scratch,
            );
        }
        ys
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
        let nc = self.nx / 2 + 1;
        let mut t = Array2::<Complex<T>>::zeros((nc, self.ny));
        let src = spec.as_standard_layout();
        let src = src.as_slice().expect("standard layout");
        let dst = t.as_slice_mut().expect("standard layout");
        for_chunks(
            self.parallel(),
            dst,
            TB * self.ny,
            || (),
            |b, chunk, _| gather_columns(src, nc, b * TB, chunk),
        );
        self.inverse_t_into(&mut t, out);
    }

    /// Inverse transform of a spectrum in the transposed layout of [`Self::forward_t`],
    /// normalised by `1/(ny*nx)`; consumes the spectrum as scratch.
    ///
    /// # Panics
    /// If `spec_t` does not have the shape `(nx/2 + 1, ny)`.
    pub fn inverse_t(&self, mut spec_t: Array2<Complex<T>>) -> Array2<T> {
        let mut out = Array2::zeros((self.ny, self.nx));
        self.inverse_t_into(&mut spec_t, &mut out.view_mut());
        out
    }

    /// [`Self::inverse_t`] into a caller-owned real image of the planned shape, using
    /// `spec_t` (shape [`Self::spectrum_shape_t`]) as scratch: its content is destroyed.
    ///
    /// # Panics
    /// If the shapes differ from the plan.
    pub fn inverse_t_into(&self, spec_t: &mut Array2<Complex<T>>, out: &mut ArrayViewMut2<T>) {
        let nc = self.nx / 2 + 1;
        let (ny, nx) = (self.ny, self.nx);
        assert_eq!(spec_t.dim(), (nc, ny), "Fft2::inverse_t: shape mismatch");
        assert_eq!(out.dim(), (ny, nx), "Fft2::inverse: output shape mismatch");
        let par = self.parallel();
        let plan = &self.col_inv;
        let spec = spec_t
            .as_slice_mut()
            .expect("an owned spectrum in standard layout");
        for_chunks(
            par,
            spec,
            TB * ny,
            || vec![Complex::new(T::zero(), T::zero()); plan.get_inplace_scratch_len()],
            |_, chunk, scratch| plan.process_with_scratch(chunk, scratch),
        );
        let spec: &[Complex<T>] = spec;
        let norm = T::one() / T::from(ny * nx).unwrap_or_else(T::one);
        let init = || {
            (
                vec![Complex::new(T::zero(), T::zero()); TB * nc],
                self.c2r.make_output_vec(),
                self.c2r.make_scratch_vec(),
            )
        };
        // A block of output rows: gather its row spectra from the transposed spectrum, then
        // one complex-to-real transform per row.
        let run =
            |y0: usize,
             mut block: ArrayViewMut2<T>,
             (rows, buf, scratch): &mut (Vec<Complex<T>>, Vec<T>, Vec<Complex<T>>)| {
                let b = block.nrows();
                gather_columns(spec, ny, y0, &mut rows[..b * nc]);
                for (j, mut orow) in block.axis_iter_mut(Axis(0)).enumerate() {
                    let s = &mut rows[j * nc..(j + 1) * nc];
                    // A real signal's DC (and Nyquist, for even nx) bins are real; rounding
                    // can leave a tiny imaginary part that realfft would reject.
                    s[0].im = T::zero();
                    if nx % 2 == 0 {
                        s[nc - 1].im = T::zero();
                    }
                    match orow.as_slice_mut() {
                        Some(o) => {
                            let _ = self.c2r.process_with_scratch(s, o, scratch);
                            o.iter_mut().for_each(|v| *v = *v * norm);
                        }
                        None => {
                            let _ = self.c2r.process_with_scratch(s, buf, scratch);
                            orow.iter_mut()
                                .zip(buf.iter())
                                .for_each(|(o, v)| *o = *v * norm);
                        }
                    }
                }
            };
        if par {
            out.axis_chunks_iter_mut(Axis(0), TB)
                .into_par_iter()
                .enumerate()
                .for_each_init(init, |st, (b, block)| run(b * TB, block, st));
        } else {
            let mut st = init();
            for (b, block) in out.axis_chunks_iter_mut(Axis(0), TB).enumerate() {
                run(b * TB, block, &mut st);
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

/// Exponents of 2, 3, 5 and 7 in `m`, or `None` when `m` has another prime factor.
fn smooth7_exponents(m: usize) -> Option<[u32; 4]> {
    let mut r = m;
    let mut e = [0u32; 4];
    for (k, p) in [2, 3, 5, 7].into_iter().enumerate() {
        while r % p == 0 {
            r /= p;
            e[k] += 1;
        }
    }
    (r == 1).then_some(e)
}

/// The smallest 7-smooth size (factors 2, 3, 5, 7 only) `>= n`: any other prime factor
/// makes an FFT 2.5-3.5x slower. Odd grids use it (see `zogy_core::odd_fast_len`).
pub fn next_smooth_len(n: usize) -> usize {
    (n.max(1)..)
        .find(|&m| smooth7_exponents(m).is_some())
        .unwrap_or(n)
}

/// The smallest length `>= n` that rustfft transforms fast, for complex transforms (the
/// column axis of [`Fft2`]): `2^a 3^b 5^c 7^d` with `a >= 3` and `c + d <= 1` (for
/// `n >= 16`; plain 7-smooth below). rustfft's AVX code is fastest on lengths rich in
/// factors 2 (and 3): measured per `n log2 n` on this project's 2-core x86-64 machine
/// (f32), lengths 150-1100 chosen this way cost 1.19x the best length `>= n` on average,
/// against 1.79x for the smallest 7-smooth length (e.g. 315: 0.27 ns, 320: 0.13 ns; 4200:
/// 0.17 ns, 4320: 0.14 ns). For the real row axis use [`next_fast_real_len`].
pub fn next_fast_len(n: usize) -> usize {
    if n < 16 {
        return next_smooth_len(n);
    }
    (n..)
        .find(|&m| smooth7_exponents(m).is_some_and(|e| e[0] >= 3 && e[2] + e[3] <= 1))
        .unwrap_or(n)
}

/// The fast length `>= n` for the real (row) axis of [`Fft2`]: even, with half of it
/// [`next_fast_len`] (a real FFT of length `2m` is a complex FFT of length `m`).
pub fn next_fast_real_len(n: usize) -> usize {
    2 * next_fast_len(n.div_ceil(2))
}

/// Fast padded shape `(py, px) >= (ny, nx)` of a real 2-D [`Fft2`]:
/// `(next_fast_len(ny), next_fast_real_len(nx))`.
pub fn fast_shape(ny: usize, nx: usize) -> (usize, usize) {
    (next_fast_len(ny), next_fast_real_len(nx))
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
    let (py, px) = fast_shape(ny + ky / 2, nx + kx / 2);
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
    fn into_variants_overwrite_reused_buffers() {
        let mut seed = 17;
        for &(ny, nx) in &[(9, 14), (130, 131)] {
            let f = Fft2::<f64>::new(ny, nx);
            let a = Array2::from_shape_fn((ny, nx), |_| lcg(&mut seed));
            let st = Array2::from_shape_fn((7, 5), |_| lcg(&mut seed));
            // Buffers full of garbage, as a reused buffer is.
            let junk = Complex::new(1e30, -1e30);
            let mut spec = Array2::from_elem(f.spectrum_shape_t(), junk);
            f.forward_t_into(&a.view(), &mut spec);
            assert_eq!(spec, f.forward_t(&a.view()));
            let mut sspec = Array2::from_elem(f.spectrum_shape_t(), junk);
            f.forward_stamp_t_into(&st.view(), &mut sspec);
            assert_eq!(sspec, f.forward_stamp_t(&st.view()));
            // Into a strided view of a larger image.
            let mut big = Array2::from_elem((ny + 3, nx + 4), f64::NAN);
            let mut view = big.slice_mut(ndarray::s![1..ny + 1, 2..nx + 2]);
            f.inverse_t_into(&mut spec, &mut view);
            let back = big.slice(ndarray::s![1..ny + 1, 2..nx + 2]);
            let err = (&back - &a).mapv(f64::abs).fold(0.0f64, |m, v| m.max(*v));
            assert!(err < 1e-12, "{ny}x{nx}: {err}");
            assert!(big[[0, 0]].is_nan(), "nothing written outside the view");
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
    fn fast_lengths_are_rich_in_twos() {
        // 4126 = 2 * 2063 (DEPENDENCIES.md): 4320 = 2^5 3^3 5 is faster than 4116 or 4200.
        assert_eq!(next_fast_len(4126), 4320);
        assert_eq!(next_fast_len(315), 320);
        assert_eq!(next_fast_len(4096), 4096);
        // 175 = 5^2 7 and 176 = 2^4 11 are slow; 192 = 2^6 3 is fast.
        assert_eq!(next_fast_real_len(350), 384);
        assert_eq!(next_fast_real_len(320), 320);
        assert_eq!(fast_shape(315, 350), (320, 384));
        for n in 1..3000 {
            let m = next_fast_len(n);
            let e = smooth7_exponents(m).expect("7-smooth");
            assert!(m >= n);
            if n >= 16 {
                assert!(e[0] >= 3 && e[2] + e[3] <= 1, "{n} -> {m}: {e:?}");
                // The smallest such length: nothing in between qualifies.
                assert!(
                    (n..m)
                        .all(|k| smooth7_exponents(k).is_none_or(|e| e[0] < 3 || e[2] + e[3] > 1))
                );
            }
            let r = next_fast_real_len(n);
            assert!(r >= n && r % 2 == 0 && next_fast_len(r / 2) == r / 2);
        }
        for n in [1, 97, 1000, 1025, 4097, 4126] {
            let m = next_smooth_len(n);
            assert!(m >= n && smooth7_exponents(m).is_some());
        }
        assert_eq!(next_smooth_len(4097), 4116);
        assert_eq!(next_smooth_len(4126), 4200);
    }
}
