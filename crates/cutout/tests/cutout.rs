//! Integration tests of the cutout crate: stamps, FITS round trip, adjust fit, plots.
#![allow(clippy::unwrap_used)]

use cutout::*;
use fits_io::{Header, WriteOptions};
use ndarray::Array2;

/// Deterministic standard normal deviates (LCG + Box-Muller).
struct Gauss(u64);
impl Gauss {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn gauss_star(y: f64, x: f64, y0: f64, x0: f64, flux: f64, fwhm: f64) -> f64 {
    let s2 = (fwhm / 2.354_820_045).powi(2);
    flux / (2.0 * std::f64::consts::PI * s2)
        * (-((x - x0).powi(2) + (y - y0).powi(2)) / (2.0 * s2)).exp()
}

fn tan_header() -> Header {
    let mut h = Header::new();
    h.set("CTYPE1", "RA---TAN");
    h.set("CTYPE2", "DEC--TAN");
    h.set("CRVAL1", 150.0);
    h.set("CRVAL2", 2.0);
    h.set("CRPIX1", 50.5);
    h.set("CRPIX2", 40.5);
    h.set("CD1_1", -0.0002);
    h.set("CD1_2", 0.0);
    h.set("CD2_1", 0.0);
    h.set("CD2_2", 0.0002);
    h.set("OBJECT", "test field");
    h
}

#[test]
fn stamp_is_centred_and_pads_outside_with_nan() {
    let img = Array2::from_shape_fn((80, 100), |(y, x)| (y * 1000 + x) as f32);
    let mut mask = Array2::from_elem((80, 100), false);
    mask[[41, 51]] = true;
    let h = tan_header();
    let cand = Candidate {
        x: 50.3,
        y: 40.6,
        ra: Some(150.0),
        dec: Some(2.0),
        fields: vec![
            ("flux".into(), MetaValue::Float(12.5)),
            ("id".into(), MetaValue::Int(7)),
        ],
    };
    let opts = CutoutOptions {
        header: Some(&h),
        time: Some(MetaValue::Float(60000.25)),
        filename: Some("sci.fits".into()),
        mask: Some(mask.view()),
        ..Default::default()
    };
    let c = get_cutout(&img.view(), &cand, 4.2, &opts).unwrap();
    assert_eq!(c.size(), 11, "2*ceil(4.2)+1");
    let im = c.plane(IMAGE).unwrap();
    assert_eq!(
        im[[5, 5]],
        img[[41, 50]],
        "object in the central pixel (round(y)=41, round(x)=50)"
    );
    assert_eq!((c.x0, c.y0), (45, 36));
    assert!(c.mask[[5, 6]], "parent mask carried");
    assert!(!c.mask[[5, 5]]);
    assert_eq!(
        c.meta("name"),
        Some(&MetaValue::Str("J100000.00+020000.0".into()))
    );
    assert_eq!(c.meta("id"), Some(&MetaValue::Int(7)));
    assert_eq!(c.meta("time"), Some(&MetaValue::Float(60000.25)));
    assert_eq!(c.meta("filename"), Some(&MetaValue::Str("sci.fits".into())));
    assert_eq!(c.header.get_f64("CRPIX1").unwrap(), 50.5 - 45.0);
    assert_eq!(c.header.get_f64("CRPIX2").unwrap(), 40.5 - 36.0);
    assert_eq!(c.header.get_str("OBJECT").unwrap(), "test field");
    let (px, py) = c.position();
    assert!((px - 5.3).abs() < 1e-12 && (py - 4.6).abs() < 1e-12);

    // Near the corner: outside pixels are NaN and masked.
    let c = get_cutout(
        &img.view(),
        &Candidate::at(1.0, 2.0),
        5.0,
        &CutoutOptions::default(),
    )
    .unwrap();
    let im = c.plane(IMAGE).unwrap();
    assert!(im[[0, 0]].is_nan() && c.mask[[0, 0]]);
    assert_eq!(im[[5, 5]], img[[2, 1]]);
    assert!(!c.mask[[5, 5]]);
    let n_out = c.mask.iter().filter(|&&m| m).count();
    assert_eq!(
        n_out,
        11 * 11 - 8 * 7,
        "parent rows 0..=7 and columns 0..=6 are inside"
    );
}

#[test]
fn stamp_wcs_agrees_with_parent_wcs() {
    let img = Array2::<f32>::zeros((80, 100));
    let h = tan_header();
    let opts = CutoutOptions {
        header: Some(&h),
        ..Default::default()
    };
    let c = get_cutout(&img.view(), &Candidate::at(30.0, 20.0), 6.0, &opts).unwrap();
    let parent = wcs_grid::Wcs::from_header(&h).unwrap();
    let stamp = wcs_grid::Wcs::from_header(&c.header).unwrap();
    for (sx, sy) in [(0.0, 0.0), (6.0, 6.0), (12.0, 3.5)] {
        let a = stamp.pixel_to_world(sx, sy).unwrap();
        let b = parent
            .pixel_to_world(sx + c.x0 as f64, sy + c.y0 as f64)
            .unwrap();
        assert!((a.0 - b.0).abs() < 1e-10 && (a.1 - b.1).abs() < 1e-10);
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    let img = Array2::<f32>::zeros((20, 30));
    let o = CutoutOptions::default();
    assert!(matches!(
        get_cutout(&img.view(), &Candidate::at(40.0, 5.0), 3.0, &o),
        Err(CutoutError::CandidateOutside { .. })
    ));
    assert!(matches!(
        get_cutout(&img.view(), &Candidate::at(-0.6, 5.0), 3.0, &o),
        Err(CutoutError::CandidateOutside { .. })
    ));
    assert!(matches!(
        get_cutout(&img.view(), &Candidate::at(f64::NAN, 5.0), 3.0, &o),
        Err(CutoutError::InvalidCoordinates { .. })
    ));
    assert!(matches!(
        get_cutout(&img.view(), &Candidate::at(5.0, 5.0), 0.0, &o),
        Err(CutoutError::InvalidRadius { .. })
    ));
    let small = Array2::<f32>::zeros((10, 10));
    let o2 = CutoutOptions {
        planes: vec![("diff", small.view())],
        ..Default::default()
    };
    assert!(matches!(
        get_cutout(&img.view(), &Candidate::at(5.0, 5.0), 3.0, &o2),
        Err(CutoutError::ShapeMismatch { .. })
    ));
    let o3 = CutoutOptions {
        planes: vec![("mask", img.view())],
        ..Default::default()
    };
    assert!(matches!(
        get_cutout(&img.view(), &Candidate::at(5.0, 5.0), 3.0, &o3),
        Err(CutoutError::InvalidPlaneName(_))
    ));
    let mut c = get_cutout(&img.view(), &Candidate::at(5.0, 5.0), 3.0, &o).unwrap();
    assert!(matches!(
        adjust_cutout(&mut c, &AdjustParams::default()),
        Err(CutoutError::MissingPlane(p)) if p == "convolved"
    ));
    let row = Candidate::from_row(&["id", "flux"], &["1", "2.0"]);
    assert!(matches!(row, Err(CutoutError::InvalidCoordinates { .. })));
    let row =
        Candidate::from_row(&["X", "y", "ra", "note"], &["3.5", "4", "10.0", "hello"]).unwrap();
    assert_eq!((row.x, row.y, row.ra), (3.5, 4.0, Some(10.0)));
    assert_eq!(
        row.fields[3],
        ("note".to_string(), MetaValue::Str("hello".into()))
    );
}

/// A cutout with a template star, a science star shifted by `shift` px plus an optional new
/// point source, Gaussian noise of RMS `sigma`.
fn dipole_cutout(shift: f64, new_flux: f64, seed: u64) -> Cutout {
    let n = 64;
    let sigma = 5.0;
    let mut g = Gauss(seed);
    let conv = Array2::from_shape_fn((n, n), |(y, x)| {
        (200.0 + gauss_star(y as f64, x as f64, 32.0, 32.0, 50_000.0, 3.0)) as f32
    });
    let sci = Array2::from_shape_fn((n, n), |(y, x)| {
        let (y, x) = (y as f64, x as f64);
        (200.0
            + gauss_star(y, x, 32.0, 32.0 + shift, 50_000.0, 3.0)
            + gauss_star(y, x, 34.0, 30.0, new_flux, 3.0)
            + sigma * g.next()) as f32
    });
    let err = Array2::from_elem((n, n), sigma as f32);
    let diff = &sci - &conv;
    let opts = CutoutOptions {
        planes: vec![
            ("convolved", conv.view()),
            ("err", err.view()),
            ("diff", diff.view()),
        ],
        ..Default::default()
    };
    get_cutout(&sci.view(), &Candidate::at(32.0, 32.0), 12.0, &opts).unwrap()
}

#[test]
fn adjust_explains_a_half_pixel_dipole() {
    for seed in 1..4 {
        let mut c = dipole_cutout(0.5, 0.0, seed);
        let r = adjust_cutout(&mut c, &AdjustParams::default()).unwrap();
        assert!(r.pvalue > 1e-3, "seed {seed}: p = {} ({r:?})", r.pvalue);
        assert!(
            r.chi2_0 > 3.0 * r.chi2,
            "seed {seed}: chi2 {} -> {}",
            r.chi2_0,
            r.chi2
        );
        assert!((r.dx - 0.5).abs() < 0.05 && r.dy.abs() < 0.05, "{r:?}");
        assert!((r.scale - 1.0).abs() < 0.02, "{r:?}");
        let adj = c.plane(ADJUSTED).unwrap();
        let centre: Vec<f64> = adj
            .slice(ndarray::s![8..17, 8..17])
            .iter()
            .map(|&v| v as f64)
            .collect();
        let rms = (centre.iter().map(|v| v * v).sum::<f64>() / centre.len() as f64).sqrt();
        assert!(rms < 1.5, "normalised residual RMS {rms}");
    }
}

#[test]
fn adjust_does_not_explain_a_new_point_source() {
    for seed in 1..4 {
        let mut c = dipole_cutout(0.3, 3_000.0, seed);
        let r = adjust_cutout(
            &mut c,
            &AdjustParams {
                fit_bg: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(r.pvalue < 1e-5, "seed {seed}: p = {} ({r:?})", r.pvalue);
    }
}

#[test]
fn fits_round_trip_is_exact() {
    let mut c = dipole_cutout(0.5, 0.0, 9);
    c.header = tan_header();
    c.set_meta("name", MetaValue::Str("J100000.00+020000.0".into()));
    c.set_meta("flag", MetaValue::Bool(true));
    c.set_meta("count", MetaValue::Int(-42));
    c.set_meta("third", MetaValue::Float(1.0 / 3.0));
    c.set_meta("nanval", MetaValue::Float(f64::NAN));
    c.set_meta(
        "a_rather_long_field_name_with_underscores",
        MetaValue::Float(2.5e-9),
    );
    c.mask[[0, 3]] = true;
    adjust_cutout(&mut c, &AdjustParams::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cand.fits");
    write_cutout(&path, &c, WriteOptions::default()).unwrap();
    assert!(matches!(
        write_cutout(&path, &c, WriteOptions::default()),
        Err(CutoutError::Fits(fits_io::FitsError::AlreadyExists { .. }))
    ));
    let back = load_cutout(&path).unwrap();
    assert_eq!(back.planes.len(), c.planes.len());
    for ((n1, a), (n2, b)) in c.planes.iter().zip(&back.planes) {
        assert_eq!(n1, n2);
        assert!(
            a.iter()
                .zip(b.iter())
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "plane {n1}"
        );
    }
    assert_eq!(back.mask, c.mask);
    assert_eq!((back.x0, back.y0), (c.x0, c.y0));
    assert_eq!(back.adjust, c.adjust);
    assert_eq!(back.meta.len(), c.meta.len());
    for ((k1, v1), (k2, v2)) in c.meta.iter().zip(&back.meta) {
        assert_eq!(k1, k2);
        match (v1, v2) {
            (MetaValue::Float(a), MetaValue::Float(b)) => {
                assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "{k1}: {a} vs {b}"
                )
            }
            _ => assert_eq!(v1, v2, "{k1}"),
        }
    }
    for key in ["CTYPE1", "CRVAL1", "CRPIX1", "CD2_2", "OBJECT"] {
        assert_eq!(back.header.get(key), c.header.get(key), "{key}");
    }
    let not_cutout = dir.path().join("plain.fits");
    fits_io::write_image(
        &not_cutout,
        &Array2::<f32>::zeros((4, 4)).view(),
        &Header::new(),
        WriteOptions::default(),
    )
    .unwrap();
    assert!(matches!(
        load_cutout(&not_cutout),
        Err(CutoutError::NotACutout(_)) | Err(CutoutError::Fits(_))
    ));
}

#[test]
fn plot_has_expected_layout_marks_and_text() {
    let mut c = dipole_cutout(0.5, 0.0, 3);
    c.mask[[0, 0]] = true;
    c.set_meta("name", MetaValue::Str("J000000.00+000000.0".into()));
    let params = PlotParams {
        marks: Some(vec![Mark {
            pos: MarkPos::Pixel { x: 12.0, y: 12.0 },
            r: 4.0,
            r2: Some(7.0),
            r3: None,
        }]),
        ..Default::default()
    };
    let img = plot_cutout(&c, &params).unwrap();
    let n = c.size() as u32; // 25
    let zoom = (192 / n).max(1);
    let panel = n * zoom;
    let np = c.planes.len() as u32 + 1;
    use cutout::layout::*;
    assert_eq!(img.width(), 2 * MARGIN + np * panel + (np - 1) * GAP);
    assert_eq!(img.height(), 2 * MARGIN + TITLE_H + LABEL_H + panel);
    // The solid circle passes through (centre + r, centre) of the first panel.
    let oy = MARGIN + TITLE_H + LABEL_H;
    let cx = MARGIN as f64 + 12.5 * zoom as f64;
    let cy = oy as f64 + (n as f64 - 12.5) * zoom as f64;
    let r = 4.0 * zoom as f64;
    let near_mark = |x: f64, y: f64| {
        (-2i64..=2).any(|d| {
            (-2i64..=2)
                .any(|e| *img.get_pixel((x as i64 + d) as u32, (y as i64 + e) as u32) == MARK_COLOR)
        })
    };
    assert!(near_mark(cx + r, cy) && near_mark(cx - r, cy) && near_mark(cx, cy - r));
    assert!(
        !near_mark(cx + 2.0 * zoom as f64, cy),
        "no mark between the circles"
    );
    // Title text: dark pixels in the title band; label band of the first panel too.
    let dark = |x0: u32, y0: u32, x1: u32, y1: u32| {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
            .count()
    };
    assert!(
        dark(MARGIN, MARGIN, MARGIN + 200, MARGIN + TITLE_H) > 50,
        "title drawn"
    );
    assert!(
        dark(MARGIN, MARGIN + TITLE_H, MARGIN + 60, oy) > 20,
        "panel label drawn"
    );
    assert_eq!(
        dark(img.width() - MARGIN, 0, img.width(), img.height()),
        0,
        "margin stays white"
    );
    // Mask panel (last): the masked pixel (0,0) is drawn at the bottom-left, in red.
    let mx = MARGIN + (np - 1) * (panel + GAP);
    assert_eq!(
        *img.get_pixel(mx + zoom / 2, oy + panel - 1 - zoom / 2),
        MASK_BAD
    );
    assert_eq!(
        *img.get_pixel(mx + panel / 2 + 3 * zoom, oy + zoom / 2),
        MASK_GOOD
    );
    // Writing the PNG.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.png");
    save_plot(&c, &params, &p).unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() > 1000);
}
