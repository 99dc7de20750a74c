//! Unit tests: argument derivation (exact argv), executable lookup, header diagnostics.

use super::*;
use fits_io::{Card, Header, Value};
use ndarray::Array2;
use std::path::Path;

/// Deterministic image: 100 + a repeating pattern in 0..5 (median 102, MAD-sigma 1.4826).
fn image(ny: usize, nx: usize) -> Array2<f32> {
    Array2::from_shape_fn((ny, nx), |(y, x)| 100.0 + ((x * 7 + y * 3) % 5) as f32)
}

fn argv_of(inputs: &HotpantsInputs, params: &HotpantsParams) -> Vec<String> {
    derive_options(inputs, params).unwrap().to_args()
}

#[test]
fn exact_argv_for_explicit_inputs() {
    let sci = image(32, 40);
    let tmpl = image(32, 40);
    let noise = Array2::<f32>::from_elem((32, 40), 3.0);
    let mask = Array2::from_elem((32, 40), false);
    let inputs = HotpantsInputs::new(
        ImageInput::new(sci.view(), 4.0)
            .with_gain(2.0)
            .with_read_noise(5.0)
            .with_saturation(60000.0)
            .with_lower(-50.0)
            .with_noise(noise.view())
            .with_mask(mask.view()),
        ImageInput::new(tmpl.view(), 2.5)
            .with_gain(1.25)
            .with_saturation(30000.0)
            .with_lower(-20.5),
    )
    .with_stamps(vec![(3.0, 4.0), (100.0, 5.0), (f64::NAN, 1.0)]);
    let params = HotpantsParams::default()
        .regions(2, 3)
        .arg("-ft", &["15"])
        .arg("-okn", &[]);
    let argv = argv_of(&inputs, &params);
    // s = sqrt(16 - 6.25) / 2.35 = 1.32878...; r = ceil(2.5 * 4) = 10; rss = 15.
    let expected = "-inim sci.fits -tmplim tmpl.fits -outim diff.fits -oci conv.fits \
         -oni noise.fits -omi mask.fits -oki kernel.fits -imi sci_mask.fits -tmi tmpl_mask.fits \
         -ini sci_noise.fits -iu 60000 -il -50 -ig 2 -ir 5 -tu 30000 -tl -20.5 -tg 1.25 \
         -r 10 -rss 15 -ng 3 6 0.6644 4 1.3287 2 2.6574 -c t -n i -nrx 2 -nry 3 -ssf stamps.txt \
         -v 1 -ft 15 -okn";
    assert_eq!(argv.join(" "), expected);
    let opts = derive_options(&inputs, &params).unwrap();
    // The stamp at x = 100 (outside 40 columns) and the NaN one are dropped.
    assert_eq!(opts.stamps, vec![(3.0, 4.0)]);
    assert_eq!(opts.stamp_file_text(), "4.000 5.000\n");
}

#[test]
fn reversed_fwhms_convolve_the_science_image() {
    let a = image(16, 16);
    // Template FWHM 5 > science FWHM 2: s = sqrt(21) / 2.35, the science image is convolved.
    let inputs = HotpantsInputs::new(
        ImageInput::new(a.view(), 2.0),
        ImageInput::new(a.view(), 5.0),
    );
    let o = derive_options(&inputs, &HotpantsParams::default()).unwrap();
    assert_eq!(o.convolve, Convolve::Image);
    assert!((o.sigma_match - 21f64.sqrt() / 2.35).abs() < 1e-12);
    assert_eq!(o.gaussians[1], (4, o.sigma_match));
    assert_eq!(o.kernel_half_width, 13);
}

#[test]
fn nearly_equal_fwhms_floor_the_basis_and_let_hotpants_choose() {
    let a = image(16, 16);
    let inputs = HotpantsInputs::new(
        ImageInput::new(a.view(), 3.0),
        ImageInput::new(a.view(), 2.9),
    );
    let o = derive_options(&inputs, &HotpantsParams::default()).unwrap();
    assert!(o.sigma_match < 1.0);
    assert_eq!(o.sigma_basis, 1.0);
    assert_eq!(o.gaussians, vec![(6, 0.5), (4, 1.0), (2, 2.0)]);
    assert_eq!(o.convolve, Convolve::Both);
    let argv = o.to_args();
    assert!(argv.join(" ").contains("-ng 3 6 0.5 4 1 2 2 -c b"));
    // Small FWHMs: r clamps at the minimum, rss = ceil(1.5 * 8) = 12.
    assert_eq!(o.kernel_half_width, 8);
    assert_eq!(o.substamp_half_width, 12);
    let tiny = HotpantsInputs::new(
        ImageInput::new(a.view(), 1.0),
        ImageInput::new(a.view(), 1.0),
    );
    let o = derive_options(&tiny, &HotpantsParams::default()).unwrap();
    assert_eq!(
        (o.kernel_half_width, o.substamp_half_width),
        (MIN_KERNEL_HALF_WIDTH, 6)
    );
    // An explicit direction wins.
    let o = derive_options(
        &inputs,
        &HotpantsParams::default().convolve(Convolve::Template),
    )
    .unwrap();
    assert_eq!(o.convolve, Convolve::Template);
}

#[test]
fn limits_gain_and_read_noise_from_header_then_data() {
    let mut a = image(20, 20);
    a[[3, 4]] = 5000.0;
    a[[5, 5]] = f32::NAN;
    let mut h = Header::new();
    h.set("SATURATE", 45000.0);
    h.set("GAIN", 3.5);
    h.set("RDNOISE", 7.0);
    let inputs = HotpantsInputs::new(
        ImageInput::new(a.view(), 3.0).with_header(&h),
        ImageInput::new(a.view(), 3.0),
    );
    let o = derive_options(&inputs, &HotpantsParams::default()).unwrap();
    assert_eq!(
        (o.science.upper, o.science.upper_source),
        (45000.0, LimitSource::Header)
    );
    assert_eq!((o.science.gain, o.science.read_noise), (3.5, Some(7.0)));
    // No header: largest finite pixel + 1, gain 1, no read noise.
    assert_eq!(
        (o.template.upper, o.template.upper_source),
        (5001.0, LimitSource::Data)
    );
    assert_eq!((o.template.gain, o.template.read_noise), (1.0, None));
    // Lower: median - 10 * MAD-sigma over the good pixels, computed independently here.
    let mut good: Vec<f64> = a
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| v as f64)
        .collect();
    good.sort_by(f64::total_cmp);
    let med = good[good.len() / 2];
    let mut dev: Vec<f64> = good.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let sigma = 1.482_602_218_505_602 * dev[dev.len() / 2];
    assert!(
        (o.template.lower - (med - 10.0 * sigma)).abs() < 1e-9,
        "{}",
        o.template.lower
    );
    assert_eq!(o.template.fill, med);
    let argv = o.to_args().join(" ");
    assert!(argv.contains("-iu 45000 -il ") && argv.contains(" -ig 3.5 -ir 7 -tu 5001 "));
    assert!(!argv.contains("-tr"), "{argv}");
}

#[test]
fn bad_inputs_are_errors() {
    let a = image(10, 10);
    let b = image(10, 11);
    let p = HotpantsParams::default();
    let e = derive_options(
        &HotpantsInputs::new(
            ImageInput::new(a.view(), 3.0),
            ImageInput::new(b.view(), 3.0),
        ),
        &p,
    );
    assert!(matches!(
        e,
        Err(HotpantsError::ShapeMismatch {
            name: "template",
            ..
        })
    ));
    for fwhm in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = derive_options(
            &HotpantsInputs::new(
                ImageInput::new(a.view(), fwhm),
                ImageInput::new(a.view(), 3.0),
            ),
            &p,
        );
        assert!(
            matches!(
                e,
                Err(HotpantsError::InvalidInput {
                    name: "science fwhm",
                    ..
                })
            ),
            "{e:?}"
        );
    }
    let ok = HotpantsInputs::new(
        ImageInput::new(a.view(), 3.0),
        ImageInput::new(a.view(), 3.0),
    );
    for flag in ["-outim", "-OCI", "ft", "- x", "-"] {
        let e = derive_options(&ok, &p.clone().arg(flag, &["x"]));
        assert!(
            matches!(e, Err(HotpantsError::ReservedFlag { .. })),
            "{flag}: {e:?}"
        );
    }
    let e = derive_options(
        &HotpantsInputs::new(
            ImageInput::new(a.view(), 3.0).with_saturation(50.0),
            ImageInput::new(a.view(), 3.0),
        ),
        &p,
    );
    assert!(matches!(
        e,
        Err(HotpantsError::InvalidInput {
            name: "science valid range",
            ..
        })
    ));
    let e = derive_options(
        &HotpantsInputs::new(
            ImageInput::new(a.view(), 3.0).with_gain(0.0),
            ImageInput::new(a.view(), 3.0),
        ),
        &p,
    );
    assert!(matches!(
        e,
        Err(HotpantsError::InvalidInput {
            name: "science gain",
            ..
        })
    ));
    let all_nan = Array2::<f32>::from_elem((10, 10), f32::NAN);
    let e = derive_options(
        &HotpantsInputs::new(
            ImageInput::new(a.view(), 3.0),
            ImageInput::new(all_nan.view(), 3.0),
        ),
        &p,
    );
    assert!(matches!(
        e,
        Err(HotpantsError::InvalidInput {
            name: "template",
            ..
        })
    ));
    let e = derive_options(&ok, &p.clone().regions(0, 1));
    assert!(matches!(
        e,
        Err(HotpantsError::InvalidInput {
            name: "regions",
            ..
        })
    ));
}

#[test]
fn numbers_are_formatted_compactly() {
    assert_eq!(fmt_num(2.0), "2");
    assert_eq!(fmt_num(0.617_26), "0.6173");
    assert_eq!(fmt_num(25000.0), "25000");
    assert_eq!(fmt_num(-20.5), "-20.5");
    assert_eq!(fmt_num(-0.00001), "0");
    assert_eq!(fmt_num(1e-30), "0");
}

#[cfg(unix)]
#[test]
fn executable_lookup_order() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("hotpants");
    std::fs::write(&exe, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let other = dir.path().join("myhp");
    std::fs::write(&other, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let noexec = dir.path().join("noexec");
    std::fs::write(&noexec, "").unwrap();
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = Some(std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap());

    // PATH.
    assert_eq!(resolve_executable(None, None, path.clone()).unwrap(), exe);
    // $HOTPANTS beats PATH; a bare name in it is looked up on PATH.
    assert_eq!(
        resolve_executable(None, Some(other.clone().into()), path.clone()).unwrap(),
        other
    );
    assert_eq!(
        resolve_executable(None, Some("myhp".into()), path.clone()).unwrap(),
        other
    );
    // The explicit path beats both.
    assert_eq!(
        resolve_executable(Some(&other), Some("/bad/hotpants".into()), path.clone()).unwrap(),
        other
    );
    // Failures: not on PATH, a $HOTPANTS that does not exist (no fall-through), no exec bit.
    assert!(matches!(
        resolve_executable(None, None, None),
        Err(HotpantsError::NotFound { .. })
    ));
    assert!(matches!(
        resolve_executable(None, None, Some("/nonexistent".into())),
        Err(HotpantsError::NotFound { .. })
    ));
    assert!(matches!(
        resolve_executable(None, Some("/bad/hotpants".into()), path.clone()),
        Err(HotpantsError::NotFound { .. })
    ));
    assert!(matches!(
        resolve_executable(Some(&noexec), None, path.clone()),
        Err(HotpantsError::NotFound { .. })
    ));
    assert!(matches!(
        resolve_executable(Some(Path::new("/no/such/file")), None, path),
        Err(HotpantsError::NotFound { .. })
    ));
}

#[test]
fn diagnostics_from_a_hotpants_header() {
    let mut input = Header::new();
    input.set("OBJECT", "field");
    input.set("GAIN", 2.0);
    let mut h = input.clone();
    let s = |h: &mut Header, k: &str, v: &str| h.set(k, v);
    s(&mut h, "SOFTVERS", "5.1.11");
    s(&mut h, "REGION00", "[1:256,1:512]");
    s(&mut h, "CONVOL00", "TEMPLATE");
    s(&mut h, "KSUM00", "1.2345");
    s(&mut h, "X2NRM00", "1.0500");
    s(&mut h, "NX2NRM00", "120000");
    s(&mut h, "DSIGE00", "10.0000");
    s(&mut h, "DSIG00", "8.0000");
    s(&mut h, "REGION01", "[257:512,1:512]");
    s(&mut h, "CONVOL01", "IMAGE");
    s(&mut h, "KSUM01", "0.9000");
    s(&mut h, "X2NRM01", "0.9500");
    s(&mut h, "PHOTNORM", "i");
    h.set("NREGION", 2i64);
    h.set("MASKVAL", 1e-30);
    h.set("KERINFO", false);
    h.push(Card {
        key: "COMMENT".into(),
        value: None,
        comment: Some("x".into()),
    });
    let d = Diagnostics::from_header(&h, &input);
    assert_eq!(d.regions.len(), 2);
    assert_eq!(d.kernel_sum(), Some(1.2345));
    assert_eq!(d.regions[0].convolved.as_deref(), Some("TEMPLATE"));
    assert_eq!(d.regions[1].convolved.as_deref(), Some("IMAGE"));
    assert_eq!(d.regions[0].n_x2norm, Some(120000));
    assert_eq!(d.regions[0].noise_ratio(), Some(1.25));
    assert!((d.x2norm().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(d.n_regions, Some(2));
    assert_eq!(d.mask_value, Some(1e-30));
    assert_eq!(d.photometric_normalisation.as_deref(), Some("i"));
    assert_eq!(d.version.as_deref(), Some("5.1.11"));
    // Generic map: HOTPANTS's cards only, numeric strings parsed.
    assert_eq!(d.keywords.get("KSUM01"), Some(&KeywordValue::Float(0.9)));
    assert_eq!(d.keywords.get("KERINFO"), Some(&KeywordValue::Bool(false)));
    assert!(!d.keywords.contains_key("OBJECT") && !d.keywords.contains_key("GAIN"));
    assert!(is_hotpants_keyword("KSUM07") && is_hotpants_keyword("SGAUSS3"));
    assert!(!is_hotpants_keyword("KSUM") && !is_hotpants_keyword("GAIN"));
    let _ = Value::Int(0);
}
