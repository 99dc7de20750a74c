//! Per-stage timings of the ZOGY glue on the real ProperImage pair (mean over runs).
//!
//! `DIFFIM_DATA=/path/to/data cargo run --release -p diffim --example zogy_stages [RUNS]`

use diffim::subtract::SubtractInputs;
use diffim::subtract::zogy::{ZogyOptions, subtract_zogy};
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = diffim::core::testdata::data_dir().join("properimage");
    let hdu = diffim::fits::Hdu::Primary;
    let n = diffim::fits::read_image::<f32>(&dir.join("aligned_eso085-030-005.fit"), &hdu)?.data;
    let r = diffim::fits::read_image::<f32>(&dir.join("aligned_eso085-030-004.fit"), &hdu)?.data;
    let mut inputs = SubtractInputs::new(n.view(), r.view());
    inputs.science_saturation = Some(65_000.0);
    inputs.template_saturation = Some(65_000.0);
    inputs.science_gain = Some(1.35);
    inputs.template_gain = Some(1.52);
    let opts = ZogyOptions::default();
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = 0.0;
    for _ in 0..runs {
        let t = Instant::now();
        let res = subtract_zogy(&inputs, &opts)?;
        total += t.elapsed().as_secs_f64();
        for (k, v) in &res.timings {
            *sums.entry(k.clone()).or_default() += v;
        }
    }
    for (k, v) in &sums {
        println!("{k:>8}: {:.4} s", v / runs as f64);
    }
    println!("   total: {:.4} s", total / runs as f64);
    Ok(())
}
