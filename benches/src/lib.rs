//! Shared setup of the diffim benchmarks (run them with `cargo xtask bench`).
//!
//! The `subtract` bench and the `peakmem` binary use the same cases, so the table of
//! `cargo xtask bench` pairs each timing with the peak memory of the same work.

use diffim::sim::{SimConfig, SimPair, simulate};
use diffim::subtract::{Method, SubtractInputs, Subtraction};

/// Image sizes of the `subtract` group (override with `DIFFIM_BENCH_SIZES=1024,2048`).
pub fn sizes() -> Vec<usize> {
    std::env::var("DIFFIM_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1024, 2048, 4096])
}

/// The simulated pair of a benchmark case (sky-sim default preset, seed 1).
pub fn pair(size: usize) -> Result<SimPair, diffim::sim::SimError> {
    simulate(&SimConfig::default().with_size(size, size).with_seed(1))
}

/// Subtraction inputs for a simulated pair (masks, gains, saturation from its headers).
pub fn inputs(p: &SimPair) -> SubtractInputs<'_> {
    SubtractInputs::from_sim(p)
}

/// One subtraction with the method's default options (what the CLI runs).
pub fn run(method: Method, p: &SimPair) -> Result<Subtraction, diffim::subtract::SubtractError> {
    diffim::subtract::subtract(method, &inputs(p), None)
}
