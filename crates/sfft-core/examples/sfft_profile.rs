//! Times the phases of `sfft_core::subtract` on a sky-sim `sfft_issue` pair.
//!
//! `cargo run --release -p sfft-core --example sfft_profile -- 2048 [kernel side]`
#![allow(clippy::unwrap_used)]

use sfft_core::{SfftInputs, SfftParams, subtract};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let k: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(7);
    let cfg = sky_sim::SimConfig::sfft_issue().with_size(n, n).with_seed(7);
    let pair = sky_sim::simulate(&cfg).unwrap();
    let inputs = SfftInputs {
        science_mask: Some(pair.science_mask.view()),
        template_mask: Some(pair.template_mask.view()),
        science_noise: Some(pair.science_noise.view()),
        template_noise: Some(pair.template_noise.view()),
        ..SfftInputs::new(pair.science.view(), pair.template.view())
    };
    let params = SfftParams {
        kernel_shape: (k, k),
        ..SfftParams::default()
    };
    for _ in 0..2 {
        let t0 = std::time::Instant::now();
        let r = subtract(&inputs, &params).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        println!("{n}^2 kernel {k}x{k}: {dt:.3} s; rows {} ; {:?}", r.n_good, r.summary());
        for (name, t) in &r.timings {
            println!("  {name:18} {t:.3}");
        }
    }
}
