//! Large buffers that are read before they are written: allocated by writing every element.
//!
//! A zeroed allocation (`vec![0.0; n]`, `Array2::zeros`) larger than a few hundred kB comes
//! straight from the kernel, its pages mapped on first touch. When the first touch of a page
//! is a *read* (an accumulation `out += ...`, a memo lookup), the kernel maps the shared zero
//! page, and the first write then replaces it: a second fault which, in a process whose
//! threads run on several CPUs, flushes the TLB of each of them by an inter-processor
//! interrupt (costly in virtual machines). Buffers filled by [`filled`] / [`filled_array`]
//! have every page mapped by a write, once. Measured with `perf record` on the 1024x682
//! ProperImage pair, 2 threads (ZOGY pipeline, `scratch_cpu`): these faults took ~25 % of the
//! CPU time before the ZOGY output planes and the cosmic-ray memo were allocated this way.
//!
//! ```
//! let v = diffim_core::mem::filled(1 << 20, 0.0f32);
//! assert_eq!(v.len(), 1 << 20);
//! assert!(v.iter().all(|&x| x == 0.0));
//! let a = diffim_core::mem::filled_array((3, 4), 7u8);
//! assert_eq!(a.dim(), (3, 4));
//! assert!(a.iter().all(|&x| x == 7));
//! ```

use ndarray::Array2;
use rayon::prelude::*;

/// Sizes (bytes) from which the elements are written by the thread pool.
const PARALLEL_BYTES: usize = 1 << 20;

/// A vector of `n` copies of `value`, every element written once (in parallel for large
/// buffers), so that no page of it is first mapped by a read (see the module docs).
pub fn filled<T: Copy + Send + Sync>(n: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    if n.saturating_mul(std::mem::size_of::<T>()) < PARALLEL_BYTES {
        // `resize` writes into an allocation that was not requested zeroed.
        v.resize(n, value);
    } else {
        v.par_extend(rayon::iter::repeat_n(value, n));
    }
    v
}

/// A `(rows, cols)` array of `value`, allocated with [`filled`].
pub fn filled_array<T: Copy + Send + Sync>(dim: (usize, usize), value: T) -> Array2<T> {
    let v = filled(dim.0.saturating_mul(dim.1), value);
    Array2::from_shape_vec(dim, v).unwrap_or_else(|_| unreachable!("length is rows * cols"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_has_the_value_everywhere() {
        for n in [0, 1, 1000, (1 << 18) + 3] {
            let v = filled(n, -2.5f32);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == -2.5));
        }
        let a = filled_array((513, 1021), [1u32, 2]);
        assert_eq!(a.dim(), (513, 1021));
        assert!(a.iter().all(|&x| x == [1, 2]));
        assert_eq!(filled_array((0, 5), 0.0f64).dim(), (0, 5));
    }
}
