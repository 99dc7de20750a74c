//! Process plumbing against the `fake-hotpants` stand-in (every failure mode), and an
//! end-to-end run with a real HOTPANTS when one is installed.
#![allow(clippy::unwrap_used)]

use hotpants_sys::{
    HotpantsError, HotpantsInputs, HotpantsParams, ImageInput, derive_options, find_executable,
    run_hotpants,
};
use ndarray::{Array2, Zip};
use sky_sim::{SimConfig, SimPair, simulate};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-hotpants");

fn small_pair() -> SimPair {
    let cfg = SimConfig {
        ny: 96,
        nx: 128,
        n_stars: 25,
        n_transients: 2,
        ..SimConfig::default()
    };
    simulate(&cfg).unwrap()
}

fn inputs(p: &SimPair) -> HotpantsInputs<'_> {
    HotpantsInputs::new(
        ImageInput::new(p.science.view(), 3.5)
            .with_header(&p.science_header)
            .with_mask(p.science_mask.view())
            .with_noise(p.science_noise.view()),
        ImageInput::new(p.template.view(), 2.5)
            .with_header(&p.template_header)
            .with_mask(p.template_mask.view())
            .with_noise(p.template_noise.view()),
    )
    .with_stamps(vec![(10.0, 12.0), (50.5, 60.25)])
}

fn fake(mode: &str) -> HotpantsParams {
    HotpantsParams::default()
        .executable(FAKE)
        .env("FAKE_HOTPANTS_MODE", mode)
}

#[test]
fn ok_run_reads_every_output_back() {
    let mut p = small_pair();
    // A bad pixel in each input mask and a NaN pixel: all must come out masked.
    p.science_mask[[20, 30]] = true;
    p.template_mask[[40, 70]] = true;
    p.science[[50, 50]] = f32::NAN;
    let inp = inputs(&p);
    let params = fake("ok");
    let r = run_hotpants(&inp, &params).unwrap();

    assert_eq!(r.argv, derive_options(&inp, &params).unwrap().to_args());
    assert_eq!(r.executable, PathBuf::from(FAKE));
    assert!(r.work_dir.is_none());
    assert!(r.stderr.contains("SUCCESS"), "{}", r.stderr);
    assert!(r.mask[[20, 30]] && r.mask[[40, 70]] && r.mask[[50, 50]]);
    assert_eq!(
        r.mask_flags[[20, 30]] & hotpants_sys::FLAG_OUTPUT_ISBAD,
        hotpants_sys::FLAG_OUTPUT_ISBAD
    );
    assert_eq!(
        (r.diff[[20, 30]], r.noise[[20, 30]], r.scaled[[20, 30]]),
        (0.0, 0.0, 0.0)
    );
    // The fake computes diff = sci - tmpl and noise = hypot(noise_sci, noise_tmpl).
    let mut n_good = 0;
    for ((iy, ix), &m) in r.mask.indexed_iter() {
        if m {
            continue;
        }
        n_good += 1;
        let want = p.science[[iy, ix]] - p.template[[iy, ix]];
        assert!((r.diff[[iy, ix]] - want).abs() <= 1e-3 * want.abs().max(1.0));
        let wn = p.science_noise[[iy, ix]].hypot(p.template_noise[[iy, ix]]);
        assert!((r.noise[[iy, ix]] - wn).abs() <= 1e-4 * wn);
        assert!((r.scaled[[iy, ix]] - r.diff[[iy, ix]] / r.noise[[iy, ix]]).abs() < 1e-5);
        assert_eq!(r.convolved[[iy, ix]], p.template[[iy, ix]]);
    }
    assert!(n_good > 96 * 128 - 200, "{n_good}");
    // Header diagnostics, typed and generic; the science header (WCS) is carried through.
    assert_eq!(r.diagnostics.kernel_sum(), Some(1.0));
    assert_eq!(r.diagnostics.regions.len(), 1);
    assert_eq!(
        r.diagnostics.regions[0].convolved.as_deref(),
        Some("TEMPLATE")
    );
    assert_eq!(
        r.diagnostics.photometric_normalisation.as_deref(),
        Some("i")
    );
    assert!(r.diagnostics.x2norm().unwrap() > 0.0);
    assert!(r.diagnostics.keywords.contains_key("SOFTVERS"));
    assert!(!r.diagnostics.keywords.contains_key("CRPIX1"));
    assert_eq!(
        r.header.get_f64("CRPIX1").unwrap(),
        p.science_header.get_f64("CRPIX1").unwrap()
    );
}

#[test]
fn kept_directory_holds_inputs_outputs_and_log() {
    let p = small_pair();
    let parent = tempfile::tempdir().unwrap();
    let mut params = fake("ok").keep_dir(true);
    params.work_dir_parent = Some(parent.path().to_path_buf());
    let r = run_hotpants(&inputs(&p), &params).unwrap();
    let dir = r.work_dir.clone().unwrap();
    assert!(dir.starts_with(parent.path()));
    for f in [
        "sci.fits",
        "tmpl.fits",
        "sci_mask.fits",
        "tmpl_noise.fits",
        "diff.fits",
        "stderr.txt",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    // Stamps go 1-based into the -ssf file.
    let stamps = std::fs::read_to_string(dir.join("stamps.txt")).unwrap();
    assert_eq!(stamps, "11.000 13.000\n51.500 61.250\n");
    // Written mask: input mask OR non-finite, 1 = bad.
    let m = fits_io::read_mask(&dir.join("sci_mask.fits"), &fits_io::Hdu::Primary).unwrap();
    assert_eq!(m, p.science_mask);
}

#[test]
fn removed_directory_without_keep() {
    let p = small_pair();
    let parent = tempfile::tempdir().unwrap();
    let mut params = fake("ok");
    params.work_dir_parent = Some(parent.path().to_path_buf());
    run_hotpants(&inputs(&p), &params).unwrap();
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    // ...also when HOTPANTS fails.
    let mut params = fake("exit3");
    params.work_dir_parent = Some(parent.path().to_path_buf());
    assert!(run_hotpants(&inputs(&p), &params).is_err());
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}

#[test]
fn nonzero_exit_carries_the_stderr_tail() {
    let p = small_pair();
    let params = fake("exit3").env("FAKE_HOTPANTS_LOG_LINES", "500");
    let e = run_hotpants(&inputs(&p), &params).unwrap_err();
    let HotpantsError::ExitStatus {
        code,
        ref stderr_tail,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(code, 3);
    assert!(stderr_tail.len() <= hotpants_sys::STDERR_TAIL_BYTES);
    assert!(stderr_tail.len() > 1500);
    assert!(
        stderr_tail
            .trim_end()
            .ends_with("asked to exit with status 3"),
        "{stderr_tail}"
    );
    assert!(e.to_string().contains("status 3"));
}

#[test]
fn unknown_option_is_a_nonzero_exit() {
    // The fake rejects unknown flags like HOTPANTS does; the escape hatch passes them as is.
    let p = small_pair();
    let e = run_hotpants(&inputs(&p), &fake("ok").arg("-nosuchflag", &["1"])).unwrap_err();
    let HotpantsError::ExitStatus {
        code: 1,
        stderr_tail,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert!(stderr_tail.contains("Unknown option : -nosuchflag"));
}

#[cfg(unix)]
#[test]
fn crash_is_reported_with_its_signal() {
    let p = small_pair();
    let e = run_hotpants(&inputs(&p), &fake("abort")).unwrap_err();
    let HotpantsError::Crashed {
        signal,
        stderr_tail,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(signal, Some(6)); // SIGABRT
    assert!(stderr_tail.contains("aborting"));
}

#[test]
fn timeout_kills_the_process() {
    let p = small_pair();
    let params = fake("sleep")
        .env("FAKE_HOTPANTS_SLEEP", "60")
        .timeout(Some(Duration::from_millis(300)));
    let t0 = Instant::now();
    let e = run_hotpants(&inputs(&p), &params).unwrap_err();
    // Not a timing test: only that it did not wait for the 60 s sleep.
    assert!(t0.elapsed() < Duration::from_secs(30));
    let HotpantsError::Timeout {
        seconds,
        stderr_tail,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(seconds, 0.3);
    assert!(stderr_tail.contains("sleeping"));
}

#[test]
fn slow_but_in_time_succeeds() {
    let p = small_pair();
    let params = fake("sleep")
        .env("FAKE_HOTPANTS_SLEEP", "0.2")
        .timeout(Some(Duration::from_secs(60)));
    let r = run_hotpants(&inputs(&p), &params).unwrap();
    assert!(r.elapsed >= Duration::from_millis(200));
}

#[test]
fn missing_outputs() {
    let p = small_pair();
    let e = run_hotpants(&inputs(&p), &fake("no-output")).unwrap_err();
    let HotpantsError::MissingOutput {
        file, stderr_tail, ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(file, "diff.fits");
    assert!(stderr_tail.contains("writes nothing"));
}

#[test]
fn garbage_and_wrong_shape_outputs() {
    let p = small_pair();
    let parent = tempfile::tempdir().unwrap();
    let mut params = fake("garbage").keep_dir(true);
    params.work_dir_parent = Some(parent.path().to_path_buf());
    let e = run_hotpants(&inputs(&p), &params).unwrap_err();
    assert!(
        e.work_dir().is_some_and(|d| d.join("diff.fits").is_file()),
        "{e:?}"
    );
    let HotpantsError::BadOutput { file, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(file, "diff.fits");

    let e = run_hotpants(&inputs(&p), &fake("wrong-shape")).unwrap_err();
    let HotpantsError::BadOutput { file, reason, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(file, "diff.fits");
    assert!(reason.contains("shape"), "{reason}");
}

#[test]
fn missing_and_unstartable_executables() {
    let p = small_pair();
    let e = run_hotpants(
        &inputs(&p),
        &HotpantsParams::default().executable("/no/such/hotpants"),
    )
    .unwrap_err();
    assert!(matches!(e, HotpantsError::NotFound { .. }), "{e:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("hotpants");
        std::fs::write(&exe, "#!/no/such/interpreter\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = run_hotpants(&inputs(&p), &HotpantsParams::default().executable(&exe)).unwrap_err();
        assert!(matches!(e, HotpantsError::Spawn { .. }), "{e:?}");
    }
}

#[test]
fn bad_input_fails_before_running() {
    let p = small_pair();
    let other = Array2::<f32>::zeros((10, 10));
    let inp = HotpantsInputs::new(
        ImageInput::new(p.science.view(), 3.5),
        ImageInput::new(other.view(), 2.5),
    );
    // Even with a missing executable, the shape error comes first.
    let e = run_hotpants(&inp, &HotpantsParams::default().executable("/no/such")).unwrap_err();
    assert!(matches!(e, HotpantsError::ShapeMismatch { .. }), "{e:?}");
}

/// With a real HOTPANTS installed (`$HOTPANTS` or on `PATH`): the noise-scaled difference of a
/// sky-sim pair is close to N(0, 1). Not a CI requirement: returns early without one.
#[test]
fn real_hotpants_scaled_difference_is_unit_normal() {
    let Ok(exe) = find_executable(None) else {
        eprintln!(
            "note: no HOTPANTS executable ($HOTPANTS or PATH); skipping the real-HOTPANTS test"
        );
        return;
    };
    let cfg = SimConfig {
        ny: 512,
        nx: 512,
        n_transients: 0,
        ..SimConfig::default()
    };
    let p = simulate(&cfg).unwrap();
    let stars: Vec<(f64, f64)> = p
        .truth
        .stars
        .iter()
        .filter(|s| !s.saturated && s.flux_template > 5000.0)
        .map(|s| (s.x, s.y))
        .collect();
    let inp = HotpantsInputs::new(
        ImageInput::new(p.science.view(), 3.5)
            .with_header(&p.science_header)
            .with_mask(p.science_mask.view())
            .with_noise(p.science_noise.view()),
        ImageInput::new(p.template.view(), 2.5)
            .with_header(&p.template_header)
            .with_mask(p.template_mask.view())
            .with_noise(p.template_noise.view()),
    )
    .with_stamps(stars);
    let r = run_hotpants(&inp, &HotpantsParams::default().executable(exe)).unwrap();
    let mut v: Vec<f64> = Vec::new();
    Zip::from(&r.scaled).and(&r.mask).for_each(|&s, &m| {
        if !m {
            v.push(s as f64);
        }
    });
    assert!(v.len() > 512 * 512 / 2, "{} good pixels", v.len());
    let std = diffim_core_mad_std(&mut v);
    eprintln!(
        "real HOTPANTS: robust std of scaled diff {std:.3}, KSUM {:?}",
        r.diagnostics.kernel_sum()
    );
    assert!((0.9..=1.2).contains(&std), "robust std {std}");
    // The template is convolved and scaled by the flux ratio 1.2 to the science system.
    let ksum = r.diagnostics.kernel_sum().unwrap();
    assert!(
        (ksum - 1.2).abs() < 0.05 || (ksum - 1.0 / 1.2).abs() < 0.05,
        "KSUM {ksum}"
    );
}

/// MAD-based standard deviation (the slow, obvious way).
fn diffim_core_mad_std(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    let mut d: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    d.sort_by(f64::total_cmp);
    1.482_602_218_505_602 * d[d.len() / 2]
}
