//! Iterative sigma clipping of large samples on a sorted copy (for [`estimate_gain`]).
//!
//! [`estimate_gain`]: crate::estimate_gain

use diffim_core::stats::ClippedStats;

/// [`diffim_core::stats::sigma_clip`] for large samples: the same clipping (about the
/// median, at `nsigma` standard deviations, until no value is rejected, `k == 0` or
/// `max_iter` passes; non-finite values ignored), computed on the sorted values so that every
/// pass is a binary search and a sum over a contiguous range instead of a selection and a
/// compaction of the whole sample.
///
/// The kept set and the median are those of `sigma_clip`; the mean and standard deviation
/// differ from its by the rounding of the sums only (they are accumulated in another order,
/// in 8 lanes). `v` is sorted (finite values first) on return; `scratch` is reused.
pub(crate) fn sigma_clip_sorted(
    v: &mut [f64],
    scratch: &mut Vec<f64>,
    nsigma: f64,
    max_iter: usize,
) -> Option<ClippedStats> {
    // Finite values to the front (their relative order does not matter: they get sorted).
    let mut n = 0;
    for i in 0..v.len() {
        if v[i].is_finite() {
            v.swap(i, n);
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    let v = &mut v[..n];
    radix_sort(v, scratch);
    let (mut a, mut b) = (0, n);
    let mut stats = sorted_moments(&v[a..b]);
    for _ in 0..max_iter {
        let (lo, hi) = (
            stats.median - nsigma * stats.std,
            stats.median + nsigma * stats.std,
        );
        // Kept: lo <= x <= hi, a contiguous range of the sorted values.
        let cur = &v[a..b];
        let start = cur.partition_point(|&x| x < lo);
        let end = cur.partition_point(|&x| x <= hi);
        let k = end.saturating_sub(start);
        if k == b - a || k == 0 {
            break;
        }
        (a, b) = (a + start, a + end);
        stats = sorted_moments(&v[a..b]);
    }
    Some(stats)
}

/// Mean, median, population standard deviation and count of sorted, finite, non-empty `v`
/// (the formulas of `diffim_core::stats` moments: the mean first, then the mean squared
/// deviation; the even-count median is the mean of the two middle values).
fn sorted_moments(v: &[f64]) -> ClippedStats {
    let n = v.len();
    let mean = lane_sum(v, |x| x) / n as f64;
    let var = lane_sum(v, |x| (x - mean) * (x - mean)) / n as f64;
    let mid = n / 2;
    let median = if n % 2 == 1 {
        v[mid]
    } else {
        0.5 * (v[mid - 1] + v[mid])
    };
    ClippedStats {
        mean,
        median,
        std: var.sqrt(),
        n,
    }
}

/// `sum f(x)` in 8 independent lanes (vectorisable), lanes then the tail added in order.
#[inline]
fn lane_sum(v: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] += f(c[k]);
        }
    }
    let mut s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for &x in tail {
        s += f(x);
    }
    s
}

/// Order-preserving map of a finite `f32` to `u32` (the order of `f32::total_cmp`).
#[inline]
fn key32(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | (1 << 31) }
}

/// The radix key of a finite value: its `f32` rounding, in [`key32`] order. Rounding is
/// monotonic, so values sorted by this key are sorted except within runs of equal keys.
#[inline]
fn key(x: f64) -> u32 {
    key32(x as f32)
}

/// Digit width of [`radix_sort`].
const RADIX_BITS: u32 = 11;

/// Sorts `v` in the order of `f64::total_cmp`: an LSD radix sort on the `f32` rounding of the
/// values ([`key`]; `RADIX_BITS`-bit digits, skipping the digits that every key shares), then
/// an insertion sort, which only has to reorder values within runs of equal keys (values
/// that are `f32` to begin with, such as pixel values and most pixel differences, have none).
fn radix_sort(v: &mut [f64], scratch: &mut Vec<f64>) {
    let n = v.len();
    if n < 2 {
        return;
    }
    if n < 256 {
        v.sort_unstable_by(f64::total_cmp);
        return;
    }
    const NB: usize = 1 << RADIX_BITS;
    const NDIGITS: usize = 32_usize.div_ceil(RADIX_BITS as usize);
    let mask = (NB - 1) as u32;
    let (mut all_or, mut all_and) = (0u32, u32::MAX);
    let mut counts = vec![[0u32; NB]; NDIGITS];
    for &x in v.iter() {
        let k = key(x);
        all_or |= k;
        all_and &= k;
        for (d, c) in counts.iter_mut().enumerate() {
            c[((k >> (d as u32 * RADIX_BITS)) & mask) as usize] += 1;
        }
    }
    let varying = all_or ^ all_and;
    scratch.clear();
    scratch.resize(n, 0.0);
    // Data alternates between `v` and `scratch`; `in_v`: the current data is in `v`.
    let mut in_v = true;
    for (d, c) in counts.iter().enumerate() {
        let shift = d as u32 * RADIX_BITS;
        if (varying >> shift) & mask == 0 {
            continue;
        }
        let mut pos = [0usize; NB];
        let mut acc = 0usize;
        for (p, &cnt) in pos.iter_mut().zip(c) {
            *p = acc;
            acc += cnt as usize;
        }
        let (src, dst): (&[f64], &mut [f64]) = if in_v {
            (&*v, &mut scratch[..])
        } else {
            (&scratch[..], &mut *v)
        };
        for &x in src {
            let digit = ((key(x) >> shift) & mask) as usize;
            dst[pos[digit]] = x;
            pos[digit] += 1;
        }
        in_v = !in_v;
    }
    if !in_v {
        v.copy_from_slice(scratch);
    }
    // Insertion sort: values out of order only within runs of equal keys. Long runs of
    // distinct values (not `f32` data) would make it quadratic: past a budget of moves the
    // nearly sorted slice goes to the general sort instead.
    let mut budget = 4 * n;
    for i in 1..n {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1].total_cmp(&x).is_gt() {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
        budget = match budget.checked_sub(i - j) {
            Some(b) => b,
            None => {
                v.sort_unstable_by(f64::total_cmp);
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn radix_sort_is_total_order_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for n in [0, 1, 2, 255, 256, 1000, 5000] {
            for kind in 0..6 {
                let v: Vec<f64> = (0..n)
                    .map(|_| match kind {
                        0 => rng.random_range(-1e6..1e6),
                        1 => (rng.random_range(-300.0..300.0) as f32) as f64,
                        2 => [0.0, -0.0, 1.5, -1.5, 1e-300, -1e300][rng.random_range(0..6)],
                        3 => (rng.random_range(8000.0..8400.0) as f32) as f64,
                        // Runs of equal f32 keys: a few, and (past the insertion budget) many.
                        4 => 1000.0 + rng.random_range(0.0..1e-5) * (n as f64 / 1000.0),
                        _ => 1000.0 + rng.random_range(0.0..1e-9),
                    })
                    .collect();
                let mut a = v.clone();
                radix_sort(&mut a, &mut Vec::new());
                let mut b = v;
                b.sort_by(f64::total_cmp);
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "n {n} kind {kind}"
                );
            }
        }
    }

    /// Against `diffim_core::stats::sigma_clip`: the same kept count and median, the mean and
    /// standard deviation to rounding, on Gaussian samples with outlier tails (the pixel values
    /// and pixel differences that `estimate_gain` clips), NaNs and ties.
    #[test]
    fn sorted_clip_matches_sigma_clip() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (mut max_mean, mut max_std) = (0.0f64, 0.0f64);
        for case in 0..60 {
            let n = [10usize, 257, 1000, 40_000][case % 4];
            let (mu, sigma) = [(8000.0, 70.0), (0.0, 100.0), (3.0, 0.5)][case % 3];
            let normal = Normal::new(mu, sigma).unwrap();
            let mut v: Vec<f64> = (0..n)
                .map(|i| {
                    let x: f64 = normal.sample(&mut rng);
                    let x = if i % 17 == 0 {
                        x + rng.random_range(0.0..30.0) * sigma
                    } else {
                        x
                    };
                    // f32 data, as pixels; every 5th case rounded to integers (ties).
                    if case % 5 == 0 {
                        x.round()
                    } else {
                        (x as f32) as f64
                    }
                })
                .collect();
            if case % 7 == 0 {
                v[n / 2] = f64::NAN;
                v[0] = f64::INFINITY;
            }
            for max_iter in [0, 1, 3, 50] {
                let mut a = v.clone();
                let mut b = v.clone();
                let fast = sigma_clip_sorted(&mut a, &mut Vec::new(), 3.0, max_iter).unwrap();
                let slow = diffim_core::stats::sigma_clip(&mut b, 3.0, max_iter).unwrap();
                assert_eq!(fast.n, slow.n, "case {case} iter {max_iter}");
                assert_eq!(
                    fast.median.to_bits(),
                    slow.median.to_bits(),
                    "case {case} iter {max_iter}"
                );
                let scale = slow.std.max(1e-300);
                max_mean = max_mean.max((fast.mean - slow.mean).abs() / slow.mean.abs().max(scale));
                max_std = max_std.max((fast.std - slow.std).abs() / scale);
            }
        }
        assert!(max_mean < 1e-13, "mean differs by {max_mean:e}");
        assert!(max_std < 1e-12, "std differs by {max_std:e}");
        let mut empty = [f64::NAN];
        assert!(sigma_clip_sorted(&mut empty, &mut Vec::new(), 3.0, 5).is_none());
    }
}
