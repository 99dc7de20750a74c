//! Peak memory of one benchmark case, in a fresh process: `peakmem GROUP FUNCTION SIZE`
//! prints the high-water mark of the resident set (MiB, from /proc/self/status VmHWM).
//! Used by `cargo xtask bench` for the `subtract` group; exits 2 for other groups.

use std::process::ExitCode;

use diffim::subtract::Method;

fn vm_hwm_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [group, function, size] = args.as_slice() else {
        eprintln!("usage: peakmem GROUP FUNCTION SIZE");
        return ExitCode::from(2);
    };
    if group != "subtract" {
        return ExitCode::from(2);
    }
    let Ok(size) = size.parse::<usize>() else {
        return ExitCode::from(2);
    };
    let Ok(pair) = diffim_benches::pair(size) else {
        return ExitCode::FAILURE;
    };
    let ok = match function.as_str() {
        "fft2_yardstick" => {
            let fft = diffim::core::fft::Fft2::<f32>::new(size, size);
            std::hint::black_box(fft.forward(&pair.science.view()));
            true
        }
        m => match m.parse::<Method>() {
            Ok(method) => diffim_benches::run(method, &pair).is_ok(),
            Err(_) => false,
        },
    };
    match (ok, vm_hwm_mib()) {
        (true, Some(mib)) => {
            println!("{mib:.1}");
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}
