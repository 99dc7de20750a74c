//! `diffim template` against a local stand-in for hips2fits (a plain TCP server on 127.0.0.1).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diffim::fits::{self, Hdu};
use diffim::sim::SimConfig;

mod common;

/// Answers every HTTP request with `body` as a FITS file; counts the requests.
fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                if req.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            h.fetch_add(1, Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/fits\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (format!("http://{addr}"), hits)
}

#[test]
fn template_from_a_local_hips2fits() {
    let dir = tempfile::tempdir().unwrap();
    let (pair, sci, tmpl) = common::write_pair(
        dir.path(),
        &SimConfig::default().with_size(96, 96).with_seed(3),
    );
    // The stand-in serves the sim template (on the science grid: offset 0 in the default sim).
    let (base, hits) = serve(std::fs::read(&tmpl).unwrap());

    let cache = dir.path().join("cache");
    let out = dir.path().join("tmpl.fits");
    let mask = dir.path().join("tmask.fits");
    let run = |extra: &[&str], out: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_diffim"))
            .args(["template", "--survey", "hips:CDS/P/DSS2/red", "--like"])
            .arg(&sci)
            .arg("--out")
            .arg(out)
            .arg("--mask-out")
            .arg(&mask)
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--base-url", &base, "--timeout", "5", "--overwrite"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = fits::read_image::<f32>(&out, &Hdu::Primary).unwrap();
    assert_eq!(t.data, pair.template);
    assert_eq!(t.header.get_str("TMPLSRC").unwrap(), "hips2fits");
    assert_eq!(t.header.get_str("CTYPE1").unwrap(), "RA---TAN");
    let m = fits::read_mask(&mask, &Hdu::Primary).unwrap();
    assert!(!m.iter().any(|&b| b));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Offline from the cache: same output, no request.
    let out2 = dir.path().join("tmpl2.fits");
    let o = run(&["--offline"], &out2);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fits::read_image::<f32>(&out2, &Hdu::Primary).unwrap().data,
        pair.template
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Offline miss (another survey): exit code 1 with a message; bad spec: usage error 2.
    let o = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args([
            "template",
            "--survey",
            "hips:CDS/P/2MASS/J",
            "--offline",
            "--like",
        ])
        .arg(&sci)
        .arg("--out")
        .arg(dir.path().join("x.fits"))
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("offline"));
    let o = Command::new(env!("CARGO_BIN_EXE_diffim"))
        .args(["template", "--survey", "ps1:q", "--like"])
        .arg(&sci)
        .arg("--out")
        .arg(dir.path().join("x.fits"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
