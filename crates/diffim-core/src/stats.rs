//! Robust statistics shared by every crate: median, MAD, sigma clipping, SExtractor mode.

use rayon::prelude::*;

/// Scale factor from the median absolute deviation to the standard deviation of a normal
/// distribution.
pub const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// Median of the finite values in `v` (reorders `v`); `None` when there is none.
pub fn median_in_place(v: &mut [f64]) -> Option<f64> {
    let n = partition_finite(v);
    let v = &mut v[..n];
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let hi = *m;
    if n % 2 == 1 {
        Some(hi)
    } else {
        let lo = v[..mid].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        Some(0.5 * (lo + hi))
    }
}

/// Key of `v` whose unsigned order is [`f64::total_cmp`]'s order of the values.
#[inline(always)]
fn total_key(v: f64) -> u64 {
    let b = v.to_bits();
    // Negative: all bits flipped; positive: the sign bit set (branch-free: signs of noise
    // around zero are unpredictable).
    b ^ ((((b as i64) >> 63) as u64) | (1 << 63))
}

/// The median of the finite values that `row(y, buf)` appends to `buf` for the rows
/// `y in 0..nrows`, bit for bit as [`median_in_place`] gives it for them, without holding
/// them all: for large images, where a copy to select in would be image-sized (ZOGY's
/// offset and `Scorr` statistics). Each row is asked for twice and must give the same values
/// both times. The first pass counts the values per 16-bit prefix of their total-order keys
/// (the order of [`f64::total_cmp`]), the second collects only those of the one or two
/// prefixes that hold the middle ranks, and these are selected among. Both passes run in
/// parallel over the rows.
///
/// ```
/// use diffim_core::stats::{median_in_place, median_two_pass};
/// let v: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
/// let m = median_two_pass(10, |y, buf| buf.extend_from_slice(&v[100 * y..100 * (y + 1)]));
/// assert_eq!(m, median_in_place(&mut v.clone()));
/// ```
pub fn median_two_pass<F>(nrows: usize, row: F) -> Option<f64>
where
    F: Fn(usize, &mut Vec<f64>) + Sync,
{
    const SHIFT: u32 = 48;
    const BINS: usize = 1 << (64 - SHIFT);
    let hist = (0..nrows)
        .into_par_iter()
        .fold(
            || (vec![0u32; BINS], Vec::new()),
            |(mut h, mut buf), y| {
                buf.clear();
                row(y, &mut buf);
                for &v in &buf {
                    if v.is_finite() {
                        h[(total_key(v) >> SHIFT) as usize] += 1;
                    }
                }
                (h, buf)
            },
        )
        .map(|(h, _)| h)
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })?;
    // Counted afterwards: a counter in the loop, spilled to memory, chains every iteration.
    let n = hist.iter().map(|&c| c as usize).sum::<usize>();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    // Ranks needed: `mid`, and `mid - 1` for even counts. Bin of a rank, and the number of
    // values in the bins below it.
    let bin_of = |rank: usize| {
        let mut below = 0usize;
        for (b, &c) in hist.iter().enumerate() {
            if rank < below + c as usize {
                return (b, below);
            }
            below += c as usize;
        }
        unreachable!("rank < n")
    };
    let (b_hi, base_hi) = bin_of(mid);
    let (b_lo, base_lo) = if n % 2 == 0 {
        bin_of(mid - 1)
    } else {
        (b_hi, base_hi)
    };
    let (b_lo, b_hi) = (b_lo as u64, b_hi as u64);
    let mut sel: Vec<f64> = (0..nrows)
        .into_par_iter()
        .fold(
            || (Vec::new(), Vec::new()),
            |(mut sel, mut buf), y| {
                buf.clear();
                row(y, &mut buf);
                for &v in &buf {
                    let b = total_key(v) >> SHIFT;
                    if v.is_finite() && (b == b_lo || b == b_hi) {
                        sel.push(v);
                    }
                }
                (sel, buf)
            },
        )
        .map(|(sel, _)| sel)
        .reduce(Vec::new, |mut a, mut b| {
            a.append(&mut b);
            a
        });
    // `sel` holds the values of ranks `base_lo..`, both bins (in any order).
    let (_, m, _) = sel.select_nth_unstable_by(mid - base_lo, f64::total_cmp);
    let hi = *m;
    if n % 2 == 1 {
        return Some(hi);
    }
    debug_assert!(base_lo <= base_hi);
    let (_, l, _) = sel.select_nth_unstable_by(mid - 1 - base_lo, f64::total_cmp);
    Some(0.5 * (*l + hi))
}

/// Moves the finite values to the front; returns how many there are.
fn partition_finite(v: &mut [f64]) -> usize {
    let mut n = 0;
    for i in 0..v.len() {
        if v[i].is_finite() {
            v.swap(i, n);
            n += 1;
        }
    }
    n
}

/// Median of the finite values of an iterator.
pub fn median<I: IntoIterator<Item = f64>>(it: I) -> Option<f64> {
    let mut v: Vec<f64> = it.into_iter().collect();
    median_in_place(&mut v)
}

/// Robust standard deviation `1.4826 * median(|x - median(x)|)` of the finite values.
pub fn mad_std<I: IntoIterator<Item = f64>>(it: I) -> Option<f64> {
    let mut v: Vec<f64> = it.into_iter().filter(|x| x.is_finite()).collect();
    let m = median_in_place(&mut v)?;
    for x in v.iter_mut() {
        *x = (*x - m).abs();
    }
    median_in_place(&mut v).map(|d| d * MAD_TO_SIGMA)
}

/// Tukey-biweight weighted mean of `v` with one-sigma errors `e` and biweight constant `c`
/// (4.685 is the usual choice): iteratively reweighted from the median, at most `max_iter`
/// times, with the residual scale from the MAD (never below the formal errors). Returns
/// `(mean, error, iterations, n_kept)`; `n_kept` is 0 (and the error infinite) when no value
/// gets a weight. `None` when `v` has no finite value.
pub fn tukey_mean(
    v: &[f64],
    e: &[f64],
    c: f64,
    max_iter: usize,
) -> Option<(f64, f64, usize, usize)> {
    let mut mu = median(v.iter().copied())?;
    let mut it = 0;
    let mut result = (mu, f64::INFINITY, 0, 0);
    for k in 0..max_iter.max(1) {
        it = k + 1;
        let r: Vec<f64> = v.iter().zip(e).map(|(x, s)| (x - mu) / s).collect();
        let scale = mad_std(r.iter().copied()).unwrap_or(1.0).max(1.0);
        let (mut sw, mut swx, mut kept) = (0.0, 0.0, 0);
        for ((x, s), ri) in v.iter().zip(e).zip(&r) {
            let u = ri / (c * scale);
            if u.abs() < 1.0 {
                let w = (1.0 - u * u).powi(2) / (s * s);
                sw += w;
                swx += w * x;
                kept += 1;
            }
        }
        if sw <= 0.0 {
            break;
        }
        let new = swx / sw;
        result = (new, scale / sw.sqrt(), it, kept);
        let conv = (new - mu).abs() <= 1e-6 * (scale / sw.sqrt()).max(1e-300);
        mu = new;
        if conv {
            break;
        }
    }
    Some((result.0, result.1, it, result.3))
}

/// Result of [`sigma_clip`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClippedStats {
    /// Mean of the kept values.
    pub mean: f64,
    /// Median of the kept values.
    pub median: f64,
    /// Standard deviation of the kept values.
    pub std: f64,
    /// Number of values kept.
    pub n: usize,
}

impl ClippedStats {
    /// SExtractor's mode estimate `2.5 median - 1.5 mean`, falling back to the median when the
    /// distribution is too skewed (`|mean - median| / std > 0.3`), as SExtractor does.
    pub fn mode(&self) -> f64 {
        if self.std > 0.0 && ((self.mean - self.median) / self.std).abs() > 0.3 {
            self.median
        } else {
            2.5 * self.median - 1.5 * self.mean
        }
    }
}

/// Iterative sigma clipping around the median at `nsigma` standard deviations, until no value is
/// rejected or `max_iter` passes. Non-finite values are ignored; `None` when none is finite.
/// Overwrites `v`: on return its first `n` values are the kept ones (in their order after the
/// last median selection); the rest is unspecified.
pub fn sigma_clip(v: &mut [f64], nsigma: f64, max_iter: usize) -> Option<ClippedStats> {
    let mut n = partition_finite(v);
    if n == 0 {
        return None;
    }
    let mut stats = moments(&mut v[..n])?;
    for _ in 0..max_iter {
        let (lo, hi) = (
            stats.median - nsigma * stats.std,
            stats.median + nsigma * stats.std,
        );
        // The kept values copied forward, in order.
        let mut k = 0;
        for i in 0..n {
            let x = v[i];
            if x >= lo && x <= hi {
                v[k] = x;
                k += 1;
            }
        }
        if k == n || k == 0 {
            break;
        }
        n = k;
        stats = moments(&mut v[..n])?;
    }
    Some(stats)
}

fn moments(v: &mut [f64]) -> Option<ClippedStats> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    let median = median_in_place(v)?;
    Some(ClippedStats {
        mean,
        median,
        std: var.sqrt(),
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_two_pass_matches_median_in_place() {
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let specials = [
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-310,
            -1e-310,
            f64::MAX,
            -f64::MAX,
        ];
        for n in [0usize, 1, 2, 3, 4, 5, 10, 101, 1000, 4097, 20000] {
            for kind in 0..6 {
                let v: Vec<f64> = (0..n)
                    .map(|i| match kind {
                        // Gaussian-ish noise around 0 (both signs, many exponents).
                        0 => (rnd() + rnd() + rnd() - 1.5) * 30.0,
                        // Many ties.
                        1 => ((rnd() * 7.0).floor() - 3.0) * 0.5,
                        // Specials mixed in.
                        2 => {
                            if i % 7 == 0 {
                                specials[i % specials.len()]
                            } else {
                                rnd() - 0.5
                            }
                        }
                        // All in one 16-bit key prefix.
                        3 => 1.0 + rnd() * 1e-6,
                        // Zeros of both signs.
                        4 => [0.0, -0.0][i % 2] * (1.0 + rnd()),
                        _ => (rnd() * 40.0 - 20.0).exp() * if rnd() < 0.5 { -1.0 } else { 1.0 },
                    })
                    .collect();
                let fast = median_two_pass(1, |_, buf| buf.extend_from_slice(&v));
                // Rows of 7 values (parallel passes, several partial histograms).
                let rows = median_two_pass(n.div_ceil(7), |y, buf| {
                    buf.extend_from_slice(&v[7 * y..(7 * y + 7).min(n)])
                });
                assert_eq!(fast.map(f64::to_bits), rows.map(f64::to_bits));
                let slow = median_in_place(&mut v.clone());
                assert_eq!(
                    fast.map(f64::to_bits),
                    slow.map(f64::to_bits),
                    "n {n} kind {kind}: {fast:?} vs {slow:?}"
                );
            }
        }
    }

    #[test]
    fn median_odd_even_and_nan() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([f64::NAN, 5.0, f64::INFINITY]), Some(5.0));
        assert_eq!(median([f64::NAN]), None);
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn mad_std_of_normal_sample_is_sigma() {
        // Deterministic normal quantiles: MAD std of the quantiles of N(0, 2) is 2.
        let n = 20001;
        let q: Vec<f64> = (1..=n)
            .map(|i| {
                let p = i as f64 / (n + 1) as f64;
                // Acklam-free inverse: use a bisection on erf via the complementary formula.
                2.0 * inv_norm(p)
            })
            .collect();
        let s = mad_std(q).unwrap();
        assert!((s - 2.0).abs() < 2e-3, "{s}");
    }

    fn inv_norm(p: f64) -> f64 {
        // Bisection on the normal CDF computed by numerical integration-free erf approximation
        // (Abramowitz-Stegun 7.1.26, |err| < 1.5e-7).
        let cdf = |x: f64| {
            let t = 1.0 / (1.0 + 0.3275911 * x.abs() / 2f64.sqrt());
            let y = 1.0
                - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
                    + 0.254829592)
                    * t
                    * (-(x * x) / 2.0).exp();
            if x >= 0.0 {
                0.5 * (1.0 + y)
            } else {
                0.5 * (1.0 - y)
            }
        };
        let (mut lo, mut hi) = (-10.0, 10.0);
        for _ in 0..100 {
            let m = 0.5 * (lo + hi);
            if cdf(m) < p { lo = m } else { hi = m }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn sigma_clip_rejects_outliers_and_mode_falls_back() {
        let mut v: Vec<f64> = (0..1008).map(|i| ((i % 21) as f64 - 10.0) * 0.1).collect();
        v.extend([100.0, -80.0, 55.0]);
        let s = sigma_clip(&mut v, 3.0, 5).unwrap();
        assert_eq!(s.n, 1008);
        assert!(s.mean.abs() < 1e-9 && s.median.abs() < 1e-9);
        assert!(s.mode().abs() < 1e-9);
        let skew = ClippedStats {
            mean: 1.0,
            median: 0.0,
            std: 1.0,
            n: 10,
        };
        assert_eq!(skew.mode(), 0.0, "skewed -> median");
        let mild = ClippedStats {
            mean: 0.2,
            median: 0.1,
            std: 1.0,
            n: 10,
        };
        assert!((mild.mode() - (0.25 - 0.3)).abs() < 1e-12);
    }
}
