//! Integration tests of fits-io: round trips, headers, MEF, atomic writes, the hostile-file
//! corpus (tests/bad/), astropy-written golden files (tests/golden/) and the real data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use fits_io::{
    Card, FitsError, Hdu, Header, HeaderError, Plane, PlaneData, Value, WriteOptions, hdu_count,
    read_header, read_image, read_image_plane, read_mask, read_mask_for, read_mef, write_image,
    write_mask, write_mef, write_plane_file,
};
use ndarray::{Array2, s};

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// A real data file (see `diffim_core::testdata`: `$DIFFIM_DATA` or `data/real`; missing
/// files fail under `CI=true`).
fn real_data(sub: &str) -> Option<PathBuf> {
    diffim_core::testdata::real_data(sub)
}

fn bad(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bad")
        .join(name)
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Seeded LCG in [0, 1): deterministic test data without extra dependencies.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn random_image(ny: usize, nx: usize, seed: u64) -> Array2<f64> {
    let mut r = Lcg(seed);
    Array2::from_shape_fn((ny, nx), |_| (r.next() - 0.3) * 1.0e4)
}

/// Slow, obviously correct FITS writer used as the reference for the reader: header cards
/// padded to 2880, big-endian data padded to 2880.
fn hand_fits(cards: &[String], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cards {
        out.extend(format!("{c:<80}").as_bytes());
    }
    out.extend(format!("{:<80}", "END").as_bytes());
    while out.len() % 2880 != 0 {
        out.push(b' ');
    }
    out.extend(data);
    while out.len() % 2880 != 0 {
        out.push(0);
    }
    out
}

fn image_cards(bitpix: i32, axes: &[usize], extra: &[&str]) -> Vec<String> {
    let mut c = vec![
        format!("{:<8}= {:>20}", "SIMPLE", "T"),
        format!("{:<8}= {:>20}", "BITPIX", bitpix),
        format!("{:<8}= {:>20}", "NAXIS", axes.len()),
    ];
    for (i, n) in axes.iter().enumerate() {
        c.push(format!("{:<8}= {:>20}", format!("NAXIS{}", i + 1), n));
    }
    c.extend(extra.iter().map(|s| s.to_string()));
    c
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn user_cards(h: &Header) -> Vec<Card> {
    h.user_cards().cloned().collect()
}

// ------------------------------------------------------------------------------------------
// Round trips
// ------------------------------------------------------------------------------------------

#[test]
fn f32_and_f64_round_trip_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d64 = random_image(37, 53, 1);
    let d32 = d64.mapv(|v| v as f32);
    let mut h = Header::new();
    h.set("GAIN", 2.5);
    let p32 = dir.path().join("a32.fits");
    let p64 = dir.path().join("a64.fits");
    write_image(&p32, &d32.view(), &h, WriteOptions::default()).unwrap();
    write_image(&p64, &d64.view(), &h, WriteOptions::default()).unwrap();
    let r32 = read_image::<f32>(&p32, &Hdu::Primary).unwrap();
    let r64 = read_image::<f64>(&p64, &Hdu::Primary).unwrap();
    assert_eq!(r32.data, d32);
    assert_eq!(r64.data, d64);
    assert_eq!(r32.header.get_i64("BITPIX").unwrap(), -32);
    assert_eq!(r64.header.get_i64("BITPIX").unwrap(), -64);
    assert_eq!(r32.header.get_i64("NAXIS1").unwrap(), 53);
    assert_eq!(r32.header.get_i64("NAXIS2").unwrap(), 37);
    // Cross-type reads convert.
    let x = read_image::<f64>(&p32, &Hdu::Primary).unwrap();
    assert_eq!(x.data, d32.mapv(f64::from));
    // File length is a whole number of blocks.
    assert_eq!(std::fs::metadata(&p32).unwrap().len() % 2880, 0);
}

#[test]
fn non_contiguous_view_is_written_in_logical_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = random_image(20, 30, 2).mapv(|v| v as f32);
    let view = d.slice(s![2..15;2, 3..27;3]);
    let t = d.t();
    let p = dir.path().join("v.fits");
    let q = dir.path().join("t.fits");
    write_image(&p, &view, &Header::new(), WriteOptions::default()).unwrap();
    write_image(&q, &t, &Header::new(), WriteOptions::default()).unwrap();
    assert_eq!(read_image::<f32>(&p, &Hdu::Primary).unwrap().data, view);
    assert_eq!(read_image::<f32>(&q, &Hdu::Primary).unwrap().data, t);
}

#[test]
fn u8_and_i16_planes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let u = Array2::from_shape_fn((7, 9), |(y, x)| ((y * 31 + x * 7) % 256) as u8);
    let i = Array2::from_shape_fn((7, 9), |(y, x)| (y as i16 - 3) * 1000 + x as i16 - 20000);
    let pu = dir.path().join("u8.fits");
    let pi = dir.path().join("i16.fits");
    write_plane_file(
        &pu,
        &PlaneData::U8(u.clone()),
        &Header::new(),
        WriteOptions::default(),
    )
    .unwrap();
    write_plane_file(
        &pi,
        &PlaneData::I16(i.clone()),
        &Header::new(),
        WriteOptions::default(),
    )
    .unwrap();
    let ru = read_image::<f64>(&pu, &Hdu::Primary).unwrap();
    let ri = read_image::<f64>(&pi, &Hdu::Primary).unwrap();
    assert_eq!(ru.header.get_i64("BITPIX").unwrap(), 8);
    assert_eq!(ri.header.get_i64("BITPIX").unwrap(), 16);
    assert!(!ri.header.contains("BZERO"));
    assert_eq!(ru.data, u.mapv(f64::from));
    assert_eq!(ri.data, i.mapv(f64::from));
}

#[test]
fn mask_round_trip_and_nan_masks() {
    let dir = tempfile::tempdir().unwrap();
    let m = Array2::from_shape_fn((11, 13), |(y, x)| (x * y) % 5 == 1);
    let p = dir.path().join("m.fits");
    write_mask(&p, &m.view(), &Header::new(), WriteOptions::default()).unwrap();
    assert_eq!(read_mask(&p, &Hdu::Primary).unwrap(), m);
    assert_eq!(
        read_header(&p, &Hdu::Primary)
            .unwrap()
            .get_i64("BITPIX")
            .unwrap(),
        8
    );
    // A float mask: NaN and non-zero are bad.
    let mut f = Array2::<f32>::zeros((3, 4));
    f[[0, 1]] = f32::NAN;
    f[[2, 3]] = -0.5;
    let q = dir.path().join("fm.fits");
    write_image(&q, &f.view(), &Header::new(), WriteOptions::default()).unwrap();
    let fm = read_mask(&q, &Hdu::Primary).unwrap();
    assert_eq!(fm.iter().filter(|&&b| b).count(), 2);
    assert!(fm[[0, 1]] && fm[[2, 3]] && !fm[[0, 0]]);
    // Mask vs image shape check.
    match read_mask_for(&q, &Hdu::Primary, (4, 3)) {
        Err(FitsError::ShapeMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, vec![4, 3]);
            assert_eq!(actual, vec![3, 4]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    assert!(read_mask_for(&q, &Hdu::Primary, (3, 4)).is_ok());
}

/// Every BITPIX, with BSCALE/BZERO, read against values computed here.
#[test]
fn every_bitpix_with_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let (ny, nx) = (3, 4);
    let raw: Vec<i64> = (0..12).map(|k| k * 3 - 5).collect();
    for bitpix in [8, 16, 32, 64, -32, -64] {
        for (bscale, bzero) in [(1.0, 0.0), (2.5, 100.0), (1.0, 32768.0)] {
            let mut bytes = Vec::new();
            for &v in &raw {
                let v = if bitpix == 8 { v + 10 } else { v };
                match bitpix {
                    8 => bytes.push(v as u8),
                    16 => bytes.extend((v as i16).to_be_bytes()),
                    32 => bytes.extend((v as i32).to_be_bytes()),
                    64 => bytes.extend(v.to_be_bytes()),
                    -32 => bytes.extend((v as f32).to_be_bytes()),
                    _ => bytes.extend((v as f64).to_be_bytes()),
                }
            }
            let bs = format!("{:<8}= {:>20}", "BSCALE", format!("{bscale:?}"));
            let bz = format!("{:<8}= {:>20}", "BZERO", format!("{bzero:?}"));
            let cards = image_cards(bitpix, &[nx, ny], &[&bs, &bz]);
            let p = dir.path().join(format!("b{bitpix}_{bscale}_{bzero}.fits"));
            std::fs::write(&p, hand_fits(&cards, &bytes)).unwrap();
            let img = read_image::<f64>(&p, &Hdu::Primary).unwrap();
            assert_eq!(img.data.dim(), (ny, nx));
            for (k, &v) in raw.iter().enumerate() {
                let v = if bitpix == 8 { v + 10 } else { v };
                let want = v as f64 * bscale + bzero;
                let got = img.data[[k / nx, k % nx]];
                assert_eq!(
                    got, want,
                    "BITPIX {bitpix} scale {bscale} zero {bzero} k {k}"
                );
            }
            let f = read_image::<f32>(&p, &Hdu::Primary).unwrap();
            assert_eq!(
                f.data[[2, 3]],
                ((raw[11] + if bitpix == 8 { 10 } else { 0 }) as f64 * bscale + bzero) as f32
            );
        }
    }
}

#[test]
fn blank_pixels_of_integer_images_read_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let vals: [i16; 4] = [1, -999, 3, 4];
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    let blank = format!("{:<8}= {:>20}", "BLANK", -999);
    let p = dir.path().join("blank.fits");
    std::fs::write(&p, hand_fits(&image_cards(16, &[2, 2], &[&blank]), &bytes)).unwrap();
    let img = read_image::<f32>(&p, &Hdu::Primary).unwrap();
    assert!(img.data[[0, 1]].is_nan());
    assert_eq!(img.data[[1, 1]], 4.0);
    assert!(read_mask(&p, &Hdu::Primary).unwrap()[[0, 1]]);
}

#[test]
fn degenerate_third_axis_and_cube_planes() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<f32> = (0..12).map(|k| k as f32).collect();
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    let p = dir.path().join("deg.fits");
    std::fs::write(&p, hand_fits(&image_cards(-32, &[4, 3, 1], &[]), &bytes)).unwrap();
    let img = read_image::<f32>(&p, &Hdu::Primary).unwrap();
    assert_eq!(img.data.dim(), (3, 4));
    assert_eq!(img.data[[2, 1]], 9.0);

    // Cube 4 x 5 x 3 from the bad corpus: value of element k is k.
    let cube = bad("cube.fits");
    match read_image::<f32>(&cube, &Hdu::Primary) {
        Err(FitsError::WrongDimensions { shape, .. }) => assert_eq!(shape, vec![4, 5, 3]),
        other => panic!("expected WrongDimensions, got {other:?}"),
    }
    let plane = read_image_plane::<f32>(&cube, &Hdu::Primary, 2).unwrap();
    assert_eq!(plane.data.dim(), (5, 4));
    assert_eq!(plane.data[[0, 0]], 40.0);
    assert_eq!(plane.data[[4, 3]], 59.0);
    assert!(matches!(
        read_image_plane::<f32>(&cube, &Hdu::Primary, 3),
        Err(FitsError::WrongDimensions { .. })
    ));
    // A 2-D image is a one-plane cube.
    assert_eq!(
        read_image_plane::<f32>(&p, &Hdu::Primary, 0).unwrap().data,
        img.data
    );
}

// ------------------------------------------------------------------------------------------
// Headers
// ------------------------------------------------------------------------------------------

fn rich_header() -> Header {
    let mut h = Header::new();
    h.set_with_comment("OBJECT", "NGC 1234", "target name");
    h.set("EXPTIME", 60.0);
    h.set("NCOMBINE", 7_i64);
    h.set("SATURATE", 6.5e4);
    h.set("TINY", -1.25e-30);
    h.set("DONE", true);
    h.set("QUOTES", "O'Brien's \"test\"");
    h.set("LONGSTRN", "OGIP 1.0");
    h.set_with_comment(
        "PATHS",
        "/very/long/path/".repeat(12) + "file.fits",
        "a long string over CONTINUE cards",
    );
    h.set("HIERARCH ESO DET CHIP NAME", "CCD 3");
    h.set("ESO TEL AIRM START", 1.5);
    h.set("lowercase_long_key", 3_i64); // stored upper case
    h.add_comment("a comment card");
    h.add_history("step 1: made by a test");
    h.add_history("step 2");
    h.push(Card {
        key: String::new(),
        value: None,
        comment: Some("blank keyword text".into()),
    });
    h.add_comment("");
    h.add_comment(&"x".repeat(72));
    h.set("UNDEF", 0_i64);
    h.push(Card {
        key: "UNDEF2".into(),
        value: None,
        comment: Some("undefined value".into()),
    });
    h
}

#[test]
fn header_round_trip_keeps_every_card_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let h = rich_header();
    let p = dir.path().join("h.fits");
    let data = Array2::<f32>::zeros((4, 5));
    write_image(&p, &data.view(), &h, WriteOptions::default()).unwrap();
    let back = read_header(&p, &Hdu::Primary).unwrap();
    // The cards after the structural ones are exactly ours, in order.
    assert_eq!(user_cards(&back), h.cards().to_vec());
    assert_eq!(back.get_str("PATHS").unwrap().len(), 16 * 12 + 9);
    assert_eq!(back.get_str("ESO DET CHIP NAME").unwrap(), "CCD 3");
    assert_eq!(back.get_f64("HIERARCH ESO TEL AIRM START").unwrap(), 1.5);
    assert_eq!(back.get_i64("LOWERCASE_LONG_KEY").unwrap(), 3);
    assert_eq!(back.get_str("QUOTES").unwrap(), "O'Brien's \"test\"");
    assert_eq!(
        back.history().collect::<Vec<_>>(),
        vec!["step 1: made by a test", "step 2"]
    );

    // Read -> write -> read again: nothing duplicated, nothing lost.
    let q = dir.path().join("h2.fits");
    let img = read_image::<f32>(&p, &Hdu::Primary).unwrap();
    write_image(&q, &img.data.view(), &img.header, WriteOptions::default()).unwrap();
    let again = read_header(&q, &Hdu::Primary).unwrap();
    assert_eq!(again, back);
    for key in ["SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"] {
        let n = again.cards().iter().filter(|c| c.key == key).count();
        assert_eq!(n, 1, "{key} appears {n} times");
    }
    // cfitsio's own reference COMMENTs are not added.
    assert_eq!(again.comments().count(), 3);
}

#[test]
fn header_getters_return_structured_errors() {
    let h = rich_header();
    assert_eq!(h.get_f64("NCOMBINE").unwrap(), 7.0);
    assert_eq!(h.get_i64("EXPTIME").unwrap(), 60);
    assert_eq!(
        h.get_f64("OBJECT"),
        Err(HeaderError::WrongType {
            key: "OBJECT".into(),
            expected: "float",
            found: "string"
        })
    );
    assert_eq!(
        h.get_bool("MISSING"),
        Err(HeaderError::Missing {
            key: "MISSING".into()
        })
    );
    assert!(matches!(
        h.get_str("DONE"),
        Err(HeaderError::WrongType {
            found: "logical",
            ..
        })
    ));
    assert!(matches!(
        h.get_i64("TINY"),
        Err(HeaderError::WrongType { .. })
    ));
    assert_eq!(h.get_f64_opt("NOPE").unwrap(), None);
    assert_eq!(h.get_f64_opt("SATURATE").unwrap(), Some(6.5e4));
    assert!(h.get_f64_opt("OBJECT").is_err());
    assert!(matches!(
        h.get_f64("UNDEF2"),
        Err(HeaderError::WrongType {
            found: "undefined",
            ..
        })
    ));
    let mut h2 = h.clone();
    assert_eq!(h2.remove("EXPTIME"), 1);
    assert!(!h2.contains("EXPTIME"));
    h2.set("OBJECT", "other");
    assert_eq!(h2.cards()[0].value, Some(Value::Str("other".into())));
    assert_eq!(h2.comment("OBJECT"), Some("target name"));
    // Display: 80-character lines.
    let text = h.to_string();
    assert!(text.lines().all(|l| l.len() == 80));
    assert!(text.lines().any(|l| l.starts_with("CONTINUE  '")));
    assert!(
        text.lines()
            .any(|l| l.starts_with("HIERARCH ESO DET CHIP NAME = 'CCD 3"))
    );
}

#[test]
fn invalid_header_value_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Header::new();
    h.set("BAD", f64::NAN);
    let p = dir.path().join("nan.fits");
    let e = write_image(
        &p,
        &Array2::<f32>::zeros((2, 2)).view(),
        &h,
        WriteOptions::default(),
    );
    assert!(matches!(e, Err(FitsError::InvalidCard { ref key, .. }) if key == "BAD"));
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn astropy_written_header_is_read_exactly() {
    // tests/golden/make_golden.py (astropy 8.0.2)
    let p = golden("astropy_header.fits");
    let img = read_image::<f32>(&p, &Hdu::Primary).unwrap();
    assert_eq!(img.data.dim(), (6, 5));
    assert_eq!(img.data[[5, 4]], 54.0);
    assert_eq!(img.data[[2, 1]], 21.0);
    let h = &img.header;
    assert_eq!(h.get_str("OBJECT").unwrap(), "M51");
    assert_eq!(h.comment("OBJECT"), Some("target"));
    assert_eq!(h.get_f64("EXPTIME").unwrap(), 60.25);
    assert_eq!(h.get_f64("SMALL").unwrap(), 1.5e-12);
    assert!(!h.get_bool("FLAG").unwrap());
    assert_eq!(h.get_str("QUOTED").unwrap(), "it's a 'test'");
    assert_eq!(h.get_str("ESO DET CHIP NAME").unwrap(), "CCD-7 left");
    assert_eq!(h.get_f64("ESO TEL AIRM START").unwrap(), 1.234);
    let long = "A".repeat(60) + " " + &"B".repeat(60) + " the end";
    assert_eq!(h.get_str("LONGVAL").unwrap(), long);
    assert_eq!(h.comment("LONGVAL"), Some("long one"));
    assert_eq!(h.get_str("LONGSTRN").unwrap(), "OGIP 1.0");
    assert_eq!(h.comments().collect::<Vec<_>>(), vec!["first comment"]);
    assert_eq!(
        h.history().collect::<Vec<_>>(),
        vec!["history line 1", "history line 2"]
    );
    // Keys in file order (CONTINUE records folded into LONGVAL).
    let keys: Vec<&str> = h.cards().iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "SIMPLE",
            "BITPIX",
            "NAXIS",
            "NAXIS1",
            "NAXIS2",
            "EXTEND",
            "LONGSTRN",
            "OBJECT",
            "EXPTIME",
            "SMALL",
            "FLAG",
            "QUOTED",
            "ESO DET CHIP NAME",
            "ESO TEL AIRM START",
            "LONGVAL",
            "COMMENT",
            "HISTORY",
            "HISTORY",
            ""
        ]
    );
    // And it survives our writer.
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("again.fits");
    write_image(&q, &img.data.view(), h, WriteOptions::default()).unwrap();
    let back = read_image::<f32>(&q, &Hdu::Primary).unwrap();
    assert_eq!(back.data, img.data);
    assert_eq!(user_cards(&back.header), user_cards(h));
}

#[test]
fn astropy_uint16_reads_with_bzero() {
    // tests/golden/make_golden.py: uint16 written as BITPIX 16, BZERO 32768.
    let img = read_image::<f64>(&golden("scaled_u16.fits"), &Hdu::Primary).unwrap();
    assert_eq!(
        img.data.row(0).to_vec(),
        vec![0.0, 1000.0, 32767.0, 32768.0]
    );
    assert_eq!(img.data.row(1).to_vec(), vec![40000.0, 65535.0, 1.0, 2.0]);
    assert_eq!(img.header.get_f64("BZERO").unwrap(), 32768.0);
}

// ------------------------------------------------------------------------------------------
// Multi-extension files
// ------------------------------------------------------------------------------------------

#[test]
fn mef_round_trip_with_extname_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let sci = random_image(16, 24, 3).mapv(|v| v as f32);
    let var = random_image(16, 24, 4);
    let mask = Array2::from_shape_fn((16, 24), |(y, x)| u8::from((x + y) % 7 == 0));
    let flags = Array2::from_shape_fn((16, 24), |(y, x)| (y * 24 + x) as i16 - 100);
    let mut primary = Header::new();
    primary.set("ORIGIN", "diffim");
    primary.add_history("mef test");
    let mut sh = Header::new();
    sh.set_with_comment("BUNIT", "adu", "units");
    sh.set("EXTNAME", "OLDNAME");
    let planes = vec![
        Plane {
            name: "SCI".into(),
            data: PlaneData::F32(sci.clone()),
            header: sh,
        },
        Plane {
            name: "VAR".into(),
            data: PlaneData::F64(var.clone()),
            header: Header::new(),
        },
        Plane {
            name: "MASK".into(),
            data: PlaneData::U8(mask.clone()),
            header: Header::new(),
        },
        Plane {
            name: "FLAGS".into(),
            data: PlaneData::I16(flags.clone()),
            header: Header::new(),
        },
    ];
    let p = dir.path().join("mef.fits");
    write_mef(&p, &primary, &planes, WriteOptions::default()).unwrap();
    assert_eq!(hdu_count(&p).unwrap(), 5);

    let (ph, back) = read_mef(&p).unwrap();
    assert_eq!(ph.get_str("ORIGIN").unwrap(), "diffim");
    assert_eq!(ph.get_i64("NAXIS").unwrap(), 0);
    assert_eq!(back.len(), 4);
    let names: Vec<&str> = back.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["SCI", "VAR", "MASK", "FLAGS"]);
    assert_eq!(back[0].data, PlaneData::F32(sci.clone()));
    assert_eq!(back[1].data, PlaneData::F64(var));
    assert_eq!(back[2].data, PlaneData::U8(mask.clone()));
    assert_eq!(back[3].data, PlaneData::I16(flags));
    assert_eq!(back[0].header.get_str("BUNIT").unwrap(), "adu");
    assert_eq!(back[0].header.get_str("EXTNAME").unwrap(), "SCI");
    assert_eq!(
        back[0]
            .header
            .cards()
            .iter()
            .filter(|c| c.key == "EXTNAME")
            .count(),
        1
    );
    assert_eq!(back[0].header.get_str("XTENSION").unwrap(), "IMAGE");

    // Look-ups by name (case-insensitive) and index.
    let s = read_image::<f32>(&p, &Hdu::Name("sci".into())).unwrap();
    assert_eq!(s.data, sci);
    let m = read_mask(&p, &Hdu::Name("MASK".into())).unwrap();
    assert_eq!(m, mask.mapv(|v| v != 0));
    let v = read_image::<f32>(&p, &Hdu::Index(2)).unwrap();
    assert_eq!(v.header.get_str("EXTNAME").unwrap(), "VAR");
    assert!(matches!(
        read_image::<f32>(&p, &Hdu::Name("NOPE".into())),
        Err(FitsError::HduNotFound { .. })
    ));
    assert!(matches!(
        read_image::<f32>(&p, &Hdu::Index(5)),
        Err(FitsError::HduNotFound { .. })
    ));
    assert!(matches!(
        read_image::<f32>(&p, &Hdu::Primary),
        Err(FitsError::WrongDimensions { .. })
    ));

    // read_mef -> write_mef -> read_mef is the identity.
    let q = dir.path().join("mef2.fits");
    write_mef(&q, &ph, &back, WriteOptions::default()).unwrap();
    let (ph2, back2) = read_mef(&q).unwrap();
    assert_eq!(ph2, ph);
    assert_eq!(back2, back);
}

// ------------------------------------------------------------------------------------------
// Atomic writes
// ------------------------------------------------------------------------------------------

#[test]
fn existing_file_is_untouched_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.fits");
    let a = Array2::<f32>::from_elem((5, 5), 1.0);
    let b = Array2::<f32>::from_elem((5, 5), 2.0);
    write_image(&p, &a.view(), &Header::new(), WriteOptions::default()).unwrap();
    let before = std::fs::read(&p).unwrap();
    for r in [
        write_image(&p, &b.view(), &Header::new(), WriteOptions::default()),
        write_mask(
            &p,
            &a.mapv(|v| v > 0.0).view(),
            &Header::new(),
            WriteOptions::default(),
        ),
        write_mef(&p, &Header::new(), &[], WriteOptions::default()),
    ] {
        assert!(
            matches!(r, Err(FitsError::AlreadyExists { ref path }) if path == &p),
            "{r:?}"
        );
    }
    assert_eq!(std::fs::read(&p).unwrap(), before);
    assert_eq!(files_in(dir.path()), vec!["out.fits"]);
    // overwrite replaces it.
    write_image(&p, &b.view(), &Header::new(), WriteOptions::overwrite()).unwrap();
    assert_eq!(read_image::<f32>(&p, &Hdu::Primary).unwrap().data, b);
    assert_eq!(files_in(dir.path()), vec!["out.fits"]);
}

#[test]
fn failed_writes_leave_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    // Target is a directory: the rename fails after the temp file was written.
    let sub = dir.path().join("a_dir.fits");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("inside"), b"x").unwrap();
    let a = Array2::<f32>::zeros((3, 3));
    let e = write_image(&sub, &a.view(), &Header::new(), WriteOptions::overwrite());
    assert!(matches!(e, Err(FitsError::Io { .. })), "{e:?}");
    assert_eq!(files_in(dir.path()), vec!["a_dir.fits"]);
    // Missing directory.
    let e = write_image(
        &dir.path().join("no/such/dir/x.fits"),
        &a.view(),
        &Header::new(),
        WriteOptions::default(),
    );
    assert!(
        matches!(
            e,
            Err(FitsError::NotFound { .. }) | Err(FitsError::Io { .. })
        ),
        "{e:?}"
    );
    assert_eq!(files_in(dir.path()), vec!["a_dir.fits"]);
}

#[test]
fn concurrent_reads_and_writes_from_threads() {
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let dir = dir.path();
            sc.spawn(move || {
                for k in 0..5u64 {
                    let d = random_image(33, 17, t * 100 + k).mapv(|v| v as f32);
                    let p = dir.join(format!("t{t}_{k}.fits"));
                    write_image(&p, &d.view(), &Header::new(), WriteOptions::default()).unwrap();
                    assert_eq!(read_image::<f32>(&p, &Hdu::Primary).unwrap().data, d);
                }
            });
        }
    });
    assert_eq!(files_in(dir.path()).len(), 20);
}

// ------------------------------------------------------------------------------------------
// Hostile files
// ------------------------------------------------------------------------------------------

type Check = fn(&FitsError) -> bool;

#[test]
fn bad_corpus_gives_exact_errors() {
    use FitsError as E;
    let cases: &[(&str, Hdu, Check)] = &[
        ("empty.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::NotFits {
                    reason: "empty file",
                    ..
                }
            )
        }),
        ("random_bytes.fits", Hdu::Primary, |e| {
            matches!(e, E::NotFits { .. })
        }),
        ("text_file.fits", Hdu::Primary, |e| {
            matches!(e, E::NotFits { .. })
        }),
        ("binary_header.fits", Hdu::Primary, |e| {
            matches!(e, E::NotFits { .. })
        }),
        ("truncated_header.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::Truncated {
                    what: "header",
                    actual: 1000,
                    ..
                }
            )
        }),
        ("no_end.fits", Hdu::Primary, |e| {
            matches!(e, E::MissingEnd { hdu: 0, .. })
        }),
        ("truncated_data.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::Truncated {
                    what: "data",
                    needed: 3280,
                    actual: 2980,
                    ..
                }
            )
        }),
        ("naxis_lie.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::Truncated {
                    what: "data",
                    needed: 42880,
                    actual: 5760,
                    ..
                }
            )
        }),
        ("huge_naxis.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::TooLarge {
                    pixels: 10_000_000_000,
                    ..
                }
            )
        }),
        ("big_naxis_short_file.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::Truncated {
                    what: "data",
                    needed: 3_600_002_880,
                    ..
                }
            )
        }),
        ("overflow_naxis.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::TooLarge {
                    pixels: u64::MAX,
                    ..
                }
            )
        }),
        ("bad_bitpix.fits", Hdu::Primary, |e| {
            matches!(e, E::UnsupportedBitpix { bitpix: 24, .. })
        }),
        ("negative_naxis.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::BadHeader {
                    keyword: "NAXISn",
                    ..
                }
            )
        }),
        ("naxis_1000.fits", Hdu::Primary, |e| {
            matches!(
                e,
                E::BadHeader {
                    keyword: "NAXIS",
                    ..
                }
            )
        }),
        ("cube.fits", Hdu::Primary, |e| {
            matches!(e, E::WrongDimensions { .. })
        }),
        ("bintable.fits", Hdu::Index(1), |e| {
            matches!(
                e,
                E::NotAnImage {
                    kind: "binary table",
                    ..
                }
            )
        }),
        ("bintable.fits", Hdu::Name("TABLE".into()), |e| {
            matches!(e, E::NotAnImage { .. })
        }),
        ("bintable.fits", Hdu::Primary, |e| {
            matches!(e, E::WrongDimensions { .. })
        }),
        ("truncated_extension.fits", Hdu::Index(1), |e| {
            matches!(e, E::Truncated { what: "header", .. })
        }),
        ("no_such_file.fits", Hdu::Primary, |e| {
            matches!(e, E::NotFound { .. })
        }),
    ];
    let mut covered = std::collections::BTreeSet::new();
    for (name, hdu, check) in cases {
        covered.insert(name.to_string());
        let p = bad(name);
        for result in [
            read_image::<f32>(&p, hdu).map(|_| ()),
            read_image::<f64>(&p, hdu).map(|_| ()),
            read_mask(&p, hdu).map(|_| ()),
        ] {
            match result {
                Err(e) => assert!(check(&e), "{name} {hdu:?}: unexpected error {e:?}"),
                Ok(()) => panic!("{name} {hdu:?}: read succeeded"),
            }
        }
        // The other entry points must not panic either.
        let _ = read_header(&p, hdu);
        let _ = read_mef(&p);
        let _ = hdu_count(&p);
        let _ = read_image_plane::<f32>(&p, hdu, 0);
    }
    // Every file of the corpus is covered by a case.
    for f in files_in(&bad("")) {
        if f.ends_with(".fits") {
            assert!(covered.contains(&f), "tests/bad/{f} has no expectation");
        }
    }
    // The primary HDU of the file with a truncated extension is still readable.
    let ok = read_image::<f32>(&bad("truncated_extension.fits"), &Hdu::Primary).unwrap();
    assert_eq!(ok.data[[9, 9]], 99.0);
}

// ------------------------------------------------------------------------------------------
// Real data
// ------------------------------------------------------------------------------------------

#[test]
fn real_properimage_uint16() {
    let Some(p) = real_data("properimage/aligned_eso085-030-004.fit") else {
        return;
    };
    let img = read_image::<f32>(&p, &Hdu::Primary).unwrap();
    assert_eq!(img.data.dim(), (682, 1024));
    // Truth from astropy 8.0.2:
    //   python3 -c "from astropy.io import fits; d = fits.getdata('aligned_eso085-030-004.fit');
    //               print(d[0,0], d[0,1], d[100,200], d[681,1023], d[340,512], d.min(), d.max(),
    //               d.astype('f8').sum())"
    //   -> 8138 7185 8173 8138 11221 1150 65535 5710166643.0
    assert_eq!(img.data[[0, 0]], 8138.0);
    assert_eq!(img.data[[0, 1]], 7185.0);
    assert_eq!(img.data[[100, 200]], 8173.0);
    assert_eq!(img.data[[681, 1023]], 8138.0);
    assert_eq!(img.data[[340, 512]], 11221.0);
    let min = img.data.iter().copied().fold(f32::INFINITY, f32::min);
    let max = img.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!((min, max), (1150.0, 65535.0));
    let sum: f64 = img.data.iter().map(|&v| f64::from(v)).sum();
    assert_eq!(sum, 5_710_166_643.0);
    let h = &img.header;
    assert_eq!(h.get_i64("BITPIX").unwrap(), 16);
    assert_eq!(h.get_f64("BZERO").unwrap(), 32768.0);
    assert_eq!(h.get_f64("EXPTIME").unwrap(), 60.0);
    assert_eq!(h.get_i64("XBINNING").unwrap(), 3);
    assert_eq!(h.get_f64("FOCALLEN").unwrap(), 7475.0);
    assert_eq!(h.get_str("OBJECT").unwrap(), "eso085-030");
    assert_eq!(h.get_str("FILTER").unwrap(), "Clear");
    assert_eq!(h.get_str("INSTRUME").unwrap(), "Apogee USB/Net");
    assert_eq!(h.get_str("DATE-OBS").unwrap(), "2015-12-27T06:26:24");
    assert_eq!(h.get_f64("JD").unwrap(), 2457383.7683333335);
    // Round trip through our writer keeps every non-structural card and the pixels.
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("copy.fits");
    write_image(&q, &img.data.view(), h, WriteOptions::default()).unwrap();
    let back = read_image::<f32>(&q, &Hdu::Primary).unwrap();
    assert_eq!(back.data, img.data);
    assert_eq!(user_cards(&back.header), user_cards(h));
}

#[test]
fn real_nircam_float32_with_nans() {
    let sub =
        "sfft-nircam/input_data/jw01324001001-01324-o001_t001_nircam_clear-f200w_i2d_stamp.fits";
    let Some(p) = real_data(sub) else { return };
    let img = read_image::<f32>(&p, &Hdu::Primary).unwrap();
    assert_eq!(img.data.dim(), (900, 900));
    // Truth from astropy 8.0.2:
    //   python3 -c "from astropy.io import fits; import numpy as np; d = fits.getdata(F);
    //               print(np.argwhere(np.isnan(d)), d[0,0], d[450,450], d[899,899], d[123,456],
    //               np.nansum(d.astype('f8')))"
    let nans: Vec<(usize, usize)> = img
        .data
        .indexed_iter()
        .filter(|(_, v)| v.is_nan())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        nans,
        vec![(505, 897), (505, 898), (506, 897), (506, 898), (506, 899)]
    );
    assert_eq!(img.data[[0, 0]], 0.008860892616212368_f64 as f32);
    assert_eq!(img.data[[450, 450]], -0.0009813883807510138_f64 as f32);
    assert_eq!(img.data[[899, 899]], -0.002610386349260807_f64 as f32);
    assert_eq!(img.data[[123, 456]], 0.023361414670944214_f64 as f32);
    let sum: f64 = img
        .data
        .iter()
        .filter(|v| !v.is_nan())
        .map(|&v| f64::from(v))
        .sum();
    assert!((sum - 7959.511231253533).abs() < 1e-6, "{sum}");
    let h = &img.header;
    assert_eq!(h.get_i64("BITPIX").unwrap(), -32);
    assert_eq!(h.get_str("EXTNAME").unwrap(), "SCI");
    assert_eq!(h.get_str("BUNIT").unwrap(), "MJy/sr");
    assert_eq!(h.get_f64("PHOTMJSR").unwrap(), 2.080699920654297);
    assert_eq!(h.get_f64("TDB-MID").unwrap(), 59759.41309917784);
    // The primary HDU carries EXTNAME = 'SCI': look-up by name finds it.
    let by_name = read_image::<f32>(&p, &Hdu::Name("SCI".into())).unwrap();
    assert_eq!(by_name.data[[123, 456]], img.data[[123, 456]]);
    // As a float *mask* every non-zero pixel is bad: the image has no exact zeros.
    let m = read_mask(&p, &Hdu::Primary).unwrap();
    assert_eq!(m.iter().filter(|&&b| !b).count(), 0);
}

// ------------------------------------------------------------------------------------------
// Killed writer
// ------------------------------------------------------------------------------------------

/// Child half of `killed_writer_never_leaves_a_partial_file`: only active when the parent sets
/// `FITS_IO_CHILD_DIR`; writes the same target over and over until killed.
#[test]
fn child_writer_loop() {
    let Some(dir) = std::env::var_os("FITS_IO_CHILD_DIR") else {
        return;
    };
    let target = PathBuf::from(dir).join("target.fits");
    let img = Array2::from_shape_fn((1024, 1024), |(y, x)| (y * 1024 + x) as f32);
    for _ in 0..10_000 {
        write_image(
            &target,
            &img.view(),
            &Header::new(),
            WriteOptions::overwrite(),
        )
        .unwrap();
    }
}

#[test]
fn killed_writer_never_leaves_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.fits");
    for round in 0..3u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_writer_loop",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FITS_IO_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the first complete write, then kill during one of the following ones.
        let t0 = std::time::Instant::now();
        while !target.exists() && t0.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(20 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever moment the kill hit, the target is complete.
        let img = read_image::<f32>(&target, &Hdu::Primary).unwrap();
        assert_eq!(img.data.dim(), (1024, 1024));
        assert_eq!(img.data[[1023, 1023]], (1024 * 1024 - 1) as f32);
        // Only the target and possibly the killed writer's temporary file are there.
        for f in files_in(dir.path()) {
            assert!(
                f == "target.fits" || f.starts_with(".target.fits.tmp"),
                "unexpected file {f}"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// Mutation fuzzing: corrupted copies of valid files never panic
// ------------------------------------------------------------------------------------------

#[test]
fn mutated_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mef = dir.path().join("mef.fits");
    let planes = vec![
        Plane {
            name: "SCI".into(),
            data: PlaneData::F32(random_image(9, 7, 5).mapv(|v| v as f32)),
            header: rich_header(),
        },
        Plane {
            name: "MASK".into(),
            data: PlaneData::I16(Array2::from_elem((9, 7), 3)),
            header: Header::new(),
        },
    ];
    write_mef(&mef, &rich_header(), &planes, WriteOptions::default()).unwrap();
    let sources = [
        std::fs::read(&mef).unwrap(),
        std::fs::read(golden("astropy_header.fits")).unwrap(),
    ];
    let mut rng = Lcg(77);
    let (mut ok, mut err) = (0, 0);
    let p = dir.path().join("mutant.fits");
    // FITS_IO_FUZZ_ITERS=20000 for a longer run by hand.
    let iters: usize = std::env::var("FITS_IO_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    for i in 0..iters {
        let mut bytes = sources[i % 2].clone();
        let mode = rng.next();
        if mode < 0.2 {
            // Truncate anywhere.
            let n = (rng.next() * bytes.len() as f64) as usize;
            bytes.truncate(n);
        } else {
            // Overwrite 1-6 bytes, mostly inside headers, with digits, signs, quotes or noise.
            let hits = 1 + (rng.next() * 6.0) as usize;
            for _ in 0..hits {
                let pos = (rng.next() * bytes.len() as f64) as usize;
                let alphabet = b"0123456789-+'=/ E.TFX\x00\xff";
                bytes[pos] = alphabet[(rng.next() * alphabet.len() as f64) as usize];
            }
        }
        std::fs::write(&p, &bytes).unwrap();
        for hdu in [Hdu::Primary, Hdu::Index(1), Hdu::Name("MASK".into())] {
            match read_image::<f32>(&p, &hdu) {
                Ok(img) => {
                    ok += 1;
                    assert!(img.data.len() as u64 <= fits_io::MAX_PIXELS);
                }
                Err(_) => err += 1,
            }
            let _ = read_mask(&p, &hdu);
            let _ = read_header(&p, &hdu);
            let _ = read_image_plane::<f64>(&p, &hdu, 1);
        }
        let _ = read_mef(&p);
        let _ = hdu_count(&p);
    }
    assert!(ok > 100 && err > 100, "ok {ok} err {err}");
}

/// Many MEF writes in a row (and from several threads) each give back exactly their own
/// planes. A memory file's buffer can reuse the memory of an earlier one; counting HDUs by
/// scanning it once picked up the stale HDUs behind the new ones (5 planes read back for 3
/// written, on the third write of a single thread).
#[test]
fn repeated_mef_writes_hold_only_their_own_planes() {
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let dir = dir.path();
            s.spawn(move || {
                for k in 0..40u64 {
                    let n_planes = 1 + ((t + k) % 4) as usize;
                    let planes: Vec<Plane> = (0..n_planes)
                        .map(|i| Plane {
                            name: format!("P{i}"),
                            data: PlaneData::F32(
                                random_image(8, 12, t * 1000 + k * 10 + i as u64)
                                    .mapv(|v| v as f32),
                            ),
                            header: Header::new(),
                        })
                        .collect();
                    let p = dir.join(format!("t{t}-{k}.fits"));
                    write_mef(&p, &Header::new(), &planes, WriteOptions::default()).unwrap();
                    let (_, back) = read_mef(&p).unwrap();
                    assert_eq!(back.len(), n_planes, "thread {t} iteration {k}");
                    for (a, b) in back.iter().zip(&planes) {
                        assert_eq!(a.data, b.data);
                    }
                }
            });
        }
    });
}
