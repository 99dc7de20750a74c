//! A stand-in for HOTPANTS used by hotpants-sys's tests.
//!
//! It parses the command line the way HOTPANTS does (flags with their value counts), checks
//! it (required flags present, input files exist, `-rss >= -r`, `-ng` complete), then, in the
//! default mode, writes HOTPANTS-like outputs: `diff = science - template`, `noise =
//! sqrt(noise_sci^2 + noise_tmpl^2)`, `conv = template`, a bit mask with `0x8000` on input-masked
//! pixels, and HOTPANTS's header keywords (`KSUM00` as a string, `X2NRM00`, `NREGION`, ...).
//!
//! `FAKE_HOTPANTS_MODE` selects a failure instead: `exit3` (exit status 3), `abort` (killed by
//! SIGABRT), `sleep` (sleeps `FAKE_HOTPANTS_SLEEP` seconds, default 30, then succeeds),
//! `no-output` (exit 0, writes nothing), `garbage` (the difference file is not FITS),
//! `wrong-shape` (a 3 x 3 difference). `FAKE_HOTPANTS_LOG_LINES` adds that many log lines.

use fits_io::{Hdu, Header, WriteOptions};
use ndarray::{Array2, Zip};
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

fn fatal(msg: &str) -> ExitCode {
    eprintln!("FATAL ERROR {msg}");
    ExitCode::from(1)
}

/// How many value tokens each flag takes (HOTPANTS's `vargs.c`); switches take 0.
fn arity(flag: &str) -> Option<usize> {
    Some(match flag {
        "-okn" | "-sconv" | "-nc" | "-hki" | "-sht" | "-nsht" | "-convvar" | "-allm" | "-nim"
        | "-ndm" | "-cim" | "-sum" => 0,
        "-gd" => 4,
        "-rkw" => 2,
        "-inim" | "-tmplim" | "-outim" | "-tu" | "-tuk" | "-tl" | "-tg" | "-tr" | "-tp"
        | "-tni" | "-tmi" | "-iu" | "-iuk" | "-il" | "-ig" | "-ir" | "-ip" | "-ini" | "-imi"
        | "-ki" | "-r" | "-kcs" | "-ft" | "-sft" | "-nft" | "-mins" | "-mous" | "-omi" | "-nrx"
        | "-nry" | "-rf" | "-nsx" | "-nsy" | "-ssf" | "-cmp" | "-afssc" | "-nss" | "-rss"
        | "-ko" | "-bgo" | "-ssig" | "-ks" | "-kfm" | "-c" | "-n" | "-fom" | "-fi" | "-ef"
        | "-oni" | "-ond" | "-oci" | "-oki" | "-obs" | "-obz" | "-nbs" | "-nbz" | "-fin" | "-v"
        | "-savexy" => 1,
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lines: usize = std::env::var("FAKE_HOTPANTS_LOG_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for i in 0..lines {
        eprintln!("fake-hotpants log line {i:06}: substamp statistics and so on");
    }
    let mode = std::env::var("FAKE_HOTPANTS_MODE").unwrap_or_else(|_| "ok".into());
    match mode.as_str() {
        "exit3" => {
            eprintln!("FATAL ERROR fake-hotpants asked to exit with status 3");
            return ExitCode::from(3);
        }
        "abort" => {
            eprintln!("fake-hotpants aborting");
            std::process::abort();
        }
        "sleep" => {
            let s: f64 = std::env::var("FAKE_HOTPANTS_SLEEP")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(30.0);
            eprintln!("fake-hotpants sleeping {s} s");
            std::thread::sleep(std::time::Duration::from_secs_f64(s));
        }
        "no-output" => {
            eprintln!("fake-hotpants writes nothing");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }

    // Parse like HOTPANTS: -flag value..., anything else is an error.
    let mut opts: HashMap<String, Vec<String>> = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].to_ascii_lowercase();
        if flag == "-ng" {
            let Some(n) = args.get(i + 1).and_then(|v| v.parse::<usize>().ok()) else {
                return fatal("ng : missing count");
            };
            let vals: Vec<String> = args.iter().skip(i + 1).take(1 + 2 * n).cloned().collect();
            if vals.len() != 1 + 2 * n {
                return fatal("ng : incomplete");
            }
            for pair in vals[1..].chunks(2) {
                if pair[0].parse::<u32>().is_err()
                    || pair[1].parse::<f64>().map_or(true, |s| s <= 0.0)
                {
                    return fatal(&format!("ng : bad degree/sigma {pair:?}"));
                }
            }
            i += 2 + 2 * n;
            opts.insert(flag, vals);
            continue;
        }
        let Some(n) = arity(&flag) else {
            eprintln!("Unknown option : {}", args[i]);
            return ExitCode::from(1);
        };
        let vals: Vec<String> = args.iter().skip(i + 1).take(n).cloned().collect();
        if vals.len() != n {
            return fatal(&format!("{flag} : missing value"));
        }
        opts.insert(flag, vals);
        i += 1 + n;
    }
    let get = |f: &str| opts.get(f).and_then(|v| v.first()).map(String::as_str);
    for f in ["-inim", "-tmplim", "-outim"] {
        if get(f).is_none() {
            return fatal(&format!("{} : required command line option", &f[1..]));
        }
    }
    for f in ["-inim", "-tmplim", "-imi", "-tmi", "-ini", "-tni", "-ssf"] {
        if let Some(p) = get(f)
            && !Path::new(p).is_file()
        {
            return fatal(&format!("{f} : no such file {p}"));
        }
    }
    let int = |f: &str, d: i64| get(f).map_or(Some(d), |v| v.parse::<i64>().ok());
    let (Some(r), Some(rss)) = (int("-r", 10), int("-rss", 15)) else {
        return fatal("r / rss : not integers");
    };
    if rss < r {
        return fatal(&format!("rss ({rss}) < r ({r}) : conflicting requests"));
    }
    let num = |f: &str, d: f64| get(f).and_then(|v| v.parse::<f64>().ok()).unwrap_or(d);
    for f in ["-iu", "-tu", "-il", "-tl", "-ig", "-tg", "-ir", "-tr"] {
        if get(f).is_some_and(|v| v.parse::<f64>().is_err()) {
            return fatal(&format!("{f} : not a number"));
        }
    }
    if num("-ig", 1.0) <= 0.0 || num("-tg", 1.0) <= 0.0 {
        return fatal("gain : cannot be negative (or zero)");
    }
    if num("-iu", 25000.0) <= num("-il", 0.0) || num("-tu", 25000.0) <= num("-tl", 0.0) {
        return fatal("u < l : conflicting requests");
    }
    if let Some(c) = get("-c")
        && !["i", "t", "b"].contains(&c)
    {
        return fatal("c : invalid char");
    }
    match run(&opts, &mode) {
        Ok(()) => {
            eprintln!("SUCCESS");
            ExitCode::SUCCESS
        }
        Err(e) => fatal(&e),
    }
}

fn run(opts: &HashMap<String, Vec<String>>, mode: &str) -> Result<(), String> {
    let get = |f: &str| opts.get(f).and_then(|v| v.first()).map(String::as_str);
    let read = |p: &str| {
        fits_io::read_image::<f32>(Path::new(p), &Hdu::Primary).map_err(|e| format!("{p}: {e}"))
    };
    let sci = read(get("-inim").unwrap_or_default())?;
    let tmpl = read(get("-tmplim").unwrap_or_default())?;
    if sci.data.dim() != tmpl.data.dim() {
        return Err("image and template differ in size".into());
    }
    eprintln!("Doing : {} -", get("-inim").unwrap_or_default());
    let noise_of =
        |flag: &str, img: &Array2<f32>, g: &str, r: &str| -> Result<Array2<f32>, String> {
            match get(flag) {
                Some(p) => Ok(read(p)?.data),
                None => {
                    let gain = get(g).and_then(|v| v.parse::<f32>().ok()).unwrap_or(1.0);
                    let rn = get(r).and_then(|v| v.parse::<f32>().ok()).unwrap_or(0.0);
                    Ok(img.mapv(|v| (v.abs() / gain + (rn / gain).powi(2)).sqrt()))
                }
            }
        };
    let ns = noise_of("-ini", &sci.data, "-ig", "-ir")?;
    let nt = noise_of("-tni", &tmpl.data, "-tg", "-tr")?;
    let read_mask = |flag: &str| -> Result<Option<Array2<bool>>, String> {
        get(flag)
            .map(|p| {
                fits_io::read_mask(Path::new(p), &Hdu::Primary).map_err(|e| format!("{p}: {e}"))
            })
            .transpose()
    };
    let ms = read_mask("-imi")?;
    let mt = read_mask("-tmi")?;
    let dim = sci.data.dim();
    let mut flags = Array2::<f32>::zeros(dim);
    for m in [ms, mt].into_iter().flatten() {
        Zip::from(&mut flags).and(&m).for_each(|f, &b| {
            if b {
                *f = 32768.0 + 32.0;
            }
        });
    }
    let fill = 1e-30f32;
    let mut diff = &sci.data - &tmpl.data;
    let mut noise = Zip::from(&ns)
        .and(&nt)
        .map_collect(|a, b| (a * a + b * b).sqrt());
    Zip::from(&mut diff)
        .and(&mut noise)
        .and(&flags)
        .for_each(|d, n, &f| {
            if f >= 32768.0 {
                *d = fill;
                *n = 0.0;
            }
        });
    let x2: f64 = Zip::from(&diff)
        .and(&noise)
        .fold((0.0, 0usize), |(s, k), &d, &n| {
            if n > 0.0 {
                (s + ((d / n) as f64).powi(2), k + 1)
            } else {
                (s, k)
            }
        })
        .0;
    let mut h = sci.header.clone();
    h.set("SOFTNAME", "HOTPanTS");
    h.set("SOFTVERS", "fake-5.1.11");
    h.set_with_comment("REGION00", format!("[1:{}, 1:{}]", dim.1, dim.0), "");
    h.set("CONVOL00", "TEMPLATE");
    h.set_with_comment("KSUM00", "1.0000", "Kernel Sum");
    h.set_with_comment(
        "X2NRM00",
        format!("{:.4}", x2 / (dim.0 * dim.1) as f64),
        "1/N * SUM (diff/noise)^2",
    );
    h.set("NX2NRM00", format!("{}", dim.0 * dim.1));
    h.set("DMEAN00", "0.0000");
    h.set("DSIGE00", "1.0000");
    h.set("DSIG00", "1.0000");
    h.set("DIFFCMD", "fake-hotpants");
    h.set("PHOTNORM", get("-n").unwrap_or("t"));
    h.set("NREGION", 1i64);
    h.set_with_comment("MASKVAL", 1e-30, "Value of Masked Pixels");
    let out = |flag: &str| get(flag).map(Path::new);
    let w = WriteOptions::overwrite();
    let Some(diff_path) = out("-outim") else {
        return Err("no -outim".into());
    };
    match mode {
        "garbage" => {
            std::fs::write(diff_path, b"this is not a FITS file").map_err(|e| e.to_string())?
        }
        "wrong-shape" => {
            fits_io::write_image(diff_path, &Array2::<f32>::zeros((3, 3)).view(), &h, w)
                .map_err(|e| e.to_string())?
        }
        _ => fits_io::write_image(diff_path, &diff.view(), &h, w).map_err(|e| e.to_string())?,
    }
    if let Some(p) = out("-oci") {
        fits_io::write_image(p, &tmpl.data.view(), &Header::new(), w).map_err(|e| e.to_string())?;
    }
    if let Some(p) = out("-oni") {
        fits_io::write_image(p, &noise.view(), &Header::new(), w).map_err(|e| e.to_string())?;
    }
    if let Some(p) = out("-omi") {
        fits_io::write_image(p, &flags.view(), &Header::new(), w).map_err(|e| e.to_string())?;
    }
    if let Some(p) = out("-oki") {
        fits_io::write_image(p, &Array2::<f32>::zeros((1, 1)).view(), &Header::new(), w)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
