//! Time read/write of a large f32 image and write sample files for checking with astropy.
//!
//! ```text
//! cargo run --release -p fits-io --example fits_io_timing -- /tmp/fits-io-check 4096
//! python3 -c "from astropy.io import fits; fits.open('/tmp/fits-io-check/mef.fits').info()"
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

use fits_io::{Hdu, Header, Plane, PlaneData, WriteOptions, read_image, write_image, write_mef};
use ndarray::Array2;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/fits-io-check".into()));
    let n: usize = args.next().map_or(4096, |s| s.parse().expect("size"));
    std::fs::create_dir_all(&dir).expect("output directory");

    let data = Array2::from_shape_fn((n, n), |(y, x)| ((x * 7 + y * 13) % 1000) as f32 * 0.5);
    let big = dir.join("big.fits");
    let mut best_w = f64::INFINITY;
    let mut best_r = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        write_image(
            &big,
            &data.view(),
            &Header::new(),
            WriteOptions::overwrite(),
        )
        .unwrap();
        best_w = best_w.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let back = read_image::<f32>(&big, &Hdu::Primary).unwrap();
        best_r = best_r.min(t.elapsed().as_secs_f64());
        assert_eq!(back.data.dim(), (n, n));
    }
    println!(
        "{n}x{n} f32: write {:.1} ms, read {:.1} ms (best of 3)",
        best_w * 1e3,
        best_r * 1e3
    );
    std::fs::remove_file(&big).ok();

    let mut h = Header::new();
    h.set_with_comment("OBJECT", "NGC 1234", "target");
    h.set("LONGSTRN", "OGIP 1.0");
    h.set_with_comment("PATHS", "/a/long/path/".repeat(12), "long string");
    h.set("ESO DET CHIP NAME", "CCD 3");
    h.set("TINY", 1.25e-30);
    h.add_history("made by fits_io_timing");
    let small = Array2::from_shape_fn((6, 5), |(y, x)| (10 * y + x) as f32);
    let planes = vec![
        Plane {
            name: "SCI".into(),
            data: PlaneData::F32(small.clone()),
            header: h.clone(),
        },
        Plane {
            name: "MASK".into(),
            data: PlaneData::U8(small.mapv(|v| u8::from(v > 30.0))),
            header: Header::new(),
        },
        Plane {
            name: "FLAGS".into(),
            data: PlaneData::I16(small.mapv(|v| v as i16 - 20)),
            header: Header::new(),
        },
        Plane {
            name: "VAR".into(),
            data: PlaneData::F64(small.mapv(|v| f64::from(v) / 3.0)),
            header: Header::new(),
        },
    ];
    write_mef(
        &dir.join("mef.fits"),
        &h,
        &planes,
        WriteOptions::overwrite(),
    )
    .unwrap();
    write_image(
        &dir.join("image.fits"),
        &small.view(),
        &h,
        WriteOptions::overwrite(),
    )
    .unwrap();
    println!("wrote {}/mef.fits and image.fits", dir.display());
}
