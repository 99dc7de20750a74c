//! survey-fetch against a local emulator of the services (axum on 127.0.0.1, port 0), with
//! fault injection. No test touches the internet.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use fits_io::{Header, Plane, PlaneData, WriteOptions};
use ndarray::Array2;
use sky_sim::{SimConfig, SimPair, simulate};
use survey_fetch::{
    Endpoints, FetchError, FetchOptions, Hips2FitsParams, HipsTilesParams, SurveySpec,
    fetch_template, hips_tiles, hips2fits,
};
use wcs_grid::Grid;

// ------------------------------------------------------------------------------------------
// Fixtures
// ------------------------------------------------------------------------------------------

const N: usize = 128;

fn sim() -> &'static SimPair {
    static SIM: OnceLock<SimPair> = OnceLock::new();
    SIM.get_or_init(|| {
        let mut c = SimConfig::default().with_size(N, N).with_seed(5);
        c.n_stars = 40;
        c.n_transients = 0;
        c.noise = false;
        simulate(&c).unwrap()
    })
}

fn sim_grid() -> Grid {
    Grid::new(
        wcs_grid::Wcs::from_header(&sim().template_header).unwrap(),
        N,
        N,
    )
    .unwrap()
}

fn fits_bytes(data: &Array2<f32>, header: &Header) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.fits");
    fits_io::write_image(&p, &data.view(), header, WriteOptions::default()).unwrap();
    std::fs::read(p).unwrap()
}

fn mef_bytes(planes: &[Plane]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.fits");
    fits_io::write_mef(&p, &Header::new(), planes, WriteOptions::default()).unwrap();
    std::fs::read(p).unwrap()
}

/// PS1 full-stack asinh compression, the inverse of `ps1_linearize`.
fn ps1_compress(l: f64, boff: f64, bsoft: f64) -> f64 {
    let a = 2.5 / std::f64::consts::LN_10;
    a * ((l - boff) / (2.0 * bsoft)).asinh()
}

/// Two PS1 "skycells" cut from the sim template (columns 0..80 and 50..128), asinh-compressed,
/// without RADESYS; the second has twice the exposure time (and twice the counts).
struct Ps1Cells {
    images: Vec<(String, Vec<u8>)>,
    masks: Vec<(String, Vec<u8>)>,
}

fn ps1_cells() -> &'static Ps1Cells {
    static C: OnceLock<Ps1Cells> = OnceLock::new();
    C.get_or_init(|| {
        let s = sim();
        let mut images = Vec::new();
        let mut masks = Vec::new();
        for (k, (x0, x1, gain)) in [(0usize, 80usize, 1.0f64), (50, 128, 2.0)]
            .into_iter()
            .enumerate()
        {
            let cut = s.template.slice(ndarray::s![.., x0..x1]).to_owned();
            let mut h = s.template_header.clone();
            h.remove("RADESYS");
            let crpix1 = h.get_f64("CRPIX1").unwrap();
            h.set("CRPIX1", crpix1 - x0 as f64);
            let (boff, bsoft) = (300.0, 20.0);
            h.set("BOFFSET", boff);
            h.set("BSOFTEN", bsoft);
            h.set("EXPTIME", 1000.0 * gain);
            let comp = cut.mapv(|v| ps1_compress(v as f64 * gain, boff, bsoft) as f32);
            let name =
                format!("/rings.v3.skycell/1/00{k}/rings.v3.skycell.1.00{k}.stk.r.unconv.fits");
            images.push((name.clone(), fits_bytes(&comp, &h)));
            // Mask: bit 0x8000 everywhere in the first cell (ignored) and bit 0x20 on a block.
            let mut m = Array2::<f32>::zeros(cut.dim());
            if k == 0 {
                m.fill(32768.0);
                m.slice_mut(ndarray::s![10..20, 10..20])
                    .fill(32768.0 + 32.0);
            }
            let mname = name.replace(".fits", ".mask.fits");
            masks.push((mname, fits_bytes(&m, &h)));
        }
        Ps1Cells { images, masks }
    })
}

// ------------------------------------------------------------------------------------------
// The emulator
// ------------------------------------------------------------------------------------------

#[derive(Default)]
struct Emu {
    counts: Mutex<HashMap<String, usize>>,
    hits: AtomicUsize,
    hips_dir: Mutex<Option<PathBuf>>,
}

impl Emu {
    /// How many times this key was requested before (0 on the first request).
    fn seen(&self, key: &str) -> usize {
        let mut c = self.counts.lock().unwrap();
        let e = c.entry(key.to_string()).or_insert(0);
        *e += 1;
        *e - 1
    }
}

fn resp(status: StatusCode, ctype: &str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, ctype)
        .body(Body::from(body))
        .unwrap()
}

fn query(uri: &Uri) -> HashMap<String, String> {
    let u = reqwest::Url::parse(&format!("http://x{uri}")).unwrap();
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A fault selected by a marker in the request: the HiPS id, the file name, etc.
async fn fault(emu: &Emu, key: &str, body: Vec<u8>, ctype: &str) -> Response {
    if key.contains("fault-500once") && emu.seen(key) == 0 {
        return resp(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            b"boom".to_vec(),
        );
    }
    if key.contains("fault-500always") {
        return resp(
            StatusCode::BAD_GATEWAY,
            "text/plain",
            b"bad gateway".to_vec(),
        );
    }
    if key.contains("fault-404") {
        return resp(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"no such thing".to_vec(),
        );
    }
    if key.contains("fault-json") {
        let j = br#"{"title": "Unknown HiPS", "description": "fault-json is not a HiPS"}"#;
        return resp(StatusCode::BAD_REQUEST, "application/json", j.to_vec());
    }
    if key.contains("fault-html") {
        let h = b"<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>";
        return resp(StatusCode::OK, "text/html", h.to_vec());
    }
    if key.contains("fault-slow") {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    resp(StatusCode::OK, ctype, body)
}

async fn handler(State(emu): State<Arc<Emu>>, uri: Uri) -> Response {
    emu.hits.fetch_add(1, Ordering::SeqCst);
    let path = uri.path().to_string();
    let q = query(&uri);
    let s = sim();
    if path == "/hips2fits" {
        let id = q.get("hips").cloned().unwrap_or_default();
        let wcs: serde_json::Value = serde_json::from_str(q.get("wcs").unwrap()).unwrap();
        let (nx, ny) = (
            wcs["NAXIS1"].as_u64().unwrap() as usize,
            wcs["NAXIS2"].as_u64().unwrap() as usize,
        );
        // The "sky" is the sim template, served on the sim grid or on its 2x upscaled grid.
        let mut data = if nx == N {
            s.template.clone()
        } else {
            Array2::from_shape_fn((ny, nx), |(y, x)| s.template[[y / 2, x / 2]])
        };
        if id.starts_with("PanSTARRS") {
            let x0 = 0.4 * std::f64::consts::LN_10;
            data.mapv_inplace(|l| ((l as f64 / 2.0).asinh() / x0) as f32);
        }
        // A returned header with a bogus SIP distortion that must not reach the template.
        let mut h = s.template_header.clone();
        h.set("CTYPE1", "RA---TAN-SIP");
        h.set("CTYPE2", "DEC--TAN-SIP");
        h.set("A_ORDER", 2i64);
        h.set("A_2_0", 1e-3);
        h.set("B_ORDER", 2i64);
        return fault(&emu, &id, fits_bytes(&data, &h), "image/fits").await;
    }
    if path == "/ps1/ps1filenames.py" {
        let filters = q.get("filters").cloned().unwrap_or_default();
        let mut t =
            String::from("projcell subcell ra dec filter mjd type filename shortname badflag\n");
        if filters == "r" {
            let c = ps1_cells();
            for ((n, _), (m, _)) in c.images.iter().zip(&c.masks) {
                t += &format!("1 000 150 2.2 r 0 stack {n} a.fits 0\n");
                t += &format!("1 000 150 2.2 r 0 stack.mask {m} a.mask.fits 0\n");
            }
        }
        return resp(StatusCode::OK, "text/plain", t.into_bytes());
    }
    if path == "/ps1/fitscut.cgi" {
        let red = q.get("red").cloned().unwrap_or_default();
        let c = ps1_cells();
        if let Some((_, b)) = c.images.iter().chain(&c.masks).find(|(n, _)| *n == red) {
            return resp(StatusCode::OK, "image/fits", b.clone());
        }
        return resp(StatusCode::NOT_FOUND, "text/plain", b"no file".to_vec());
    }
    if path == "/legacy/fits-cutout" {
        let mut invvar = Array2::from_elem((N, N), 0.5f32);
        invvar.slice_mut(ndarray::s![100..110, 30..40]).fill(0.0);
        let planes = [
            Plane {
                name: "IMAGE".into(),
                data: PlaneData::F32(s.template.clone()),
                header: s.template_header.clone(),
            },
            Plane {
                name: "INVVAR".into(),
                data: PlaneData::F32(invvar),
                header: s.template_header.clone(),
            },
        ];
        let layer = q.get("layer").cloned().unwrap_or_default();
        return fault(&emu, &layer, mef_bytes(&planes), "image/fits").await;
    }
    if let Some(rest) = path.strip_prefix("/hips/") {
        let dir = emu.hips_dir.lock().unwrap().clone().unwrap();
        return match std::fs::read(dir.join(rest)) {
            Ok(b) => resp(StatusCode::OK, "application/octet-stream", b),
            Err(_) => resp(
                StatusCode::NOT_FOUND,
                "text/html",
                b"<html>404</html>".to_vec(),
            ),
        };
    }
    resp(
        StatusCode::NOT_FOUND,
        "text/plain",
        b"unknown endpoint".to_vec(),
    )
}

/// Starts the emulator on a background thread; returns its base URL and state.
fn start() -> (String, Arc<Emu>) {
    let emu = Arc::new(Emu::default());
    let state = Arc::clone(&emu);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = Router::new().fallback(handler).with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), emu)
}

fn opts(base: &str, cache: Option<&Path>) -> FetchOptions {
    FetchOptions {
        endpoints: Endpoints::all_at(base),
        cache_dir: cache.map(Path::to_path_buf),
        timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(300),
        retries: 2,
        backoff: Duration::from_millis(10),
        ..Default::default()
    }
}

/// Bitwise equality (NaN == NaN).
fn same(a: &Array2<f32>, b: &Array2<f32>) -> bool {
    a.dim() == b.dim() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A raw TCP server answering every connection with `response` and closing: for bodies
/// shorter than their Content-Length, which hyper's server refuses to produce.
fn start_raw(response: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&response);
        }
    });
    format!("http://{addr}")
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Max |a - b| over unmasked pixels at least `margin` from the edge, relative to the peak.
fn rel_err(a: &Array2<f32>, mask: &Array2<bool>, b: &Array2<f32>, margin: usize) -> f64 {
    let peak = b.iter().fold(0f32, |m, &v| m.max(v.abs())) as f64;
    let (ny, nx) = a.dim();
    let mut worst = 0f64;
    for y in margin..ny - margin {
        for x in margin..nx - margin {
            if !mask[[y, x]] {
                worst = worst.max((a[[y, x]] as f64 - b[[y, x]] as f64).abs());
            }
        }
    }
    worst / peak
}

// ------------------------------------------------------------------------------------------
// hips2fits
// ------------------------------------------------------------------------------------------

#[test]
fn hips2fits_linearises_keeps_request_wcs_and_caches() {
    let (base, emu) = start();
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&base, Some(cache.path()));
    let grid = sim_grid();
    let t = hips2fits("PanSTARRS/DR1/r", &grid, &Hips2FitsParams::default(), &o).unwrap();
    assert_eq!(t.image.dim(), (N, N));
    assert!(rel_err(&t.image, &t.mask, &sim().template, 0) < 1e-5);
    assert!(!t.mask.iter().any(|&m| m));
    // The request's WCS, not the service's SIP.
    assert_eq!(t.header.get_str("CTYPE1").unwrap(), "RA---TAN");
    assert!(!t.header.contains("A_2_0"));
    let back = Grid::from_header(&{
        let mut h = t.header.clone();
        h.set("NAXIS1", N as i64);
        h.set("NAXIS2", N as i64);
        h
    })
    .unwrap();
    let p = back.wcs().pixel_to_world(10.0, 20.0).unwrap();
    let q = grid.wcs().pixel_to_world(10.0, 20.0).unwrap();
    assert!((p.0 - q.0).abs() < 1e-10 && (p.1 - q.1).abs() < 1e-10);

    // Cached: a second fetch does not reach the server, and works offline.
    let hits = emu.hits.load(Ordering::SeqCst);
    assert_eq!(cache_files(cache.path()).len(), 1);
    let off = FetchOptions {
        offline: true,
        ..o.clone()
    };
    let t2 = hips2fits("PanSTARRS/DR1/r", &grid, &Hips2FitsParams::default(), &off).unwrap();
    assert_eq!(t2.image, t.image);
    assert_eq!(emu.hits.load(Ordering::SeqCst), hits);
    // Offline miss.
    let e = hips2fits("CDS/P/DSS2/red", &grid, &Hips2FitsParams::default(), &off).unwrap_err();
    assert!(matches!(e, FetchError::CacheMiss { .. }), "{e}");

    // No asinh for DSS; with asinh forced off the PS1 values stay compressed.
    let raw = hips2fits(
        "PanSTARRS/DR1/r",
        &grid,
        &Hips2FitsParams {
            asinh: Some(false),
            ..Default::default()
        },
        &FetchOptions {
            cache_dir: None,
            ..o.clone()
        },
    )
    .unwrap();
    assert!(rel_err(&raw.image, &raw.mask, &sim().template, 0) > 0.5);

    // Upscale 2 then rebin: the emulator serves 2x2 copies, so the result is exact.
    let up = hips2fits(
        "CDS/P/DSS2/red",
        &grid,
        &Hips2FitsParams {
            upscale: 2,
            ..Default::default()
        },
        &o,
    )
    .unwrap();
    assert!(rel_err(&up.image, &up.mask, &sim().template, 0) < 1e-6);

    // Normalised: median 100, robust RMS 10.
    let nrm = hips2fits(
        "CDS/P/DSS2/red",
        &grid,
        &Hips2FitsParams {
            normalize: true,
            ..Default::default()
        },
        &o,
    )
    .unwrap();
    let med = diffim_core::stats::median(nrm.image.iter().map(|&v| v as f64)).unwrap();
    let sd = diffim_core::stats::mad_std(nrm.image.iter().map(|&v| v as f64)).unwrap();
    assert!(
        (med - 100.0).abs() < 1e-3 && (sd - 10.0).abs() < 1e-3,
        "{med} {sd}"
    );
}

#[test]
fn faults_give_typed_errors_or_retry_and_never_poison_the_cache() {
    let (base, emu) = start();
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&base, Some(cache.path()));
    let grid = sim_grid();
    let p = Hips2FitsParams::default();

    // 500 once, then success on retry.
    let t = hips2fits("X/fault-500once", &grid, &p, &o).unwrap();
    assert_eq!(t.image.dim(), (N, N));
    assert_eq!(emu.counts.lock().unwrap()["X/fault-500once"], 2);
    let n_ok = cache_files(cache.path()).len();
    assert_eq!(n_ok, 1);

    // 5xx every time: retried (1 + retries attempts), then the status.
    let e = hips2fits("X/fault-500always", &grid, &p, &o).unwrap_err();
    assert!(
        matches!(e, FetchError::HttpStatus { status: 502, .. }),
        "{e}"
    );
    // 404: not retried.
    let before = emu.hits.load(Ordering::SeqCst);
    let e = hips2fits("X/fault-404", &grid, &p, &o).unwrap_err();
    assert!(
        matches!(e, FetchError::HttpStatus { status: 404, ref excerpt, .. } if excerpt.contains("no such")),
        "{e}"
    );
    assert_eq!(emu.hits.load(Ordering::SeqCst), before + 1);
    // JSON error body.
    let e = hips2fits("X/fault-json", &grid, &p, &o).unwrap_err();
    match e {
        FetchError::Service {
            status,
            title,
            description,
            ..
        } => {
            assert_eq!(status, 400);
            assert_eq!(title, "Unknown HiPS");
            assert!(description.contains("not a HiPS"));
        }
        e => panic!("{e}"),
    }
    // HTML page with 200: not FITS, not retried.
    let e = hips2fits("X/fault-html", &grid, &p, &o).unwrap_err();
    assert!(
        matches!(e, FetchError::NotFits { ref reason, .. } if reason.contains("HTML")),
        "{e}"
    );
    // Truncated body (Content-Length larger than the body): retried, then Truncated.
    let body = fits_bytes(&sim().template, &sim().template_header);
    let mut raw = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/fits\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body[..body.len() / 2]);
    let trunc = start_raw(raw);
    let ot = FetchOptions {
        endpoints: Endpoints::all_at(&trunc),
        ..o.clone()
    };
    let e = hips2fits("CDS/P/DSS2/red", &grid, &p, &ot).unwrap_err();
    assert!(
        matches!(e, FetchError::Truncated { received, expected: Some(n), .. } if received < n),
        "{e}"
    );
    // Slow past the timeout.
    let e = hips2fits(
        "X/fault-slow",
        &grid,
        &p,
        &FetchOptions {
            retries: 0,
            ..o.clone()
        },
    )
    .unwrap_err();
    assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    // Connection refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = hips2fits(
        "CDS/P/DSS2/red",
        &grid,
        &p,
        &opts(&format!("http://{dead}"), None),
    )
    .unwrap_err();
    assert!(matches!(e, FetchError::Network { .. }), "{e}");

    // The cache holds only the one good file, and it parses.
    let files = cache_files(cache.path());
    assert_eq!(files.len(), n_ok, "{files:?}");
    for f in files {
        fits_io::read_image::<f32>(&f, &fits_io::Hdu::Primary).unwrap();
    }
    // A corrupted cache entry is dropped and fetched again.
    let f = &cache_files(cache.path())[0];
    std::fs::write(f, b"<html>oops</html>").unwrap();
    let t2 = hips2fits("X/fault-500once", &grid, &p, &o).unwrap();
    assert_eq!(t2.image, t.image);
    fits_io::read_image::<f32>(f, &fits_io::Hdu::Primary).unwrap();
}

// ------------------------------------------------------------------------------------------
// Pan-STARRS and Legacy Survey
// ------------------------------------------------------------------------------------------

#[test]
fn ps1_mosaic_linearised_scaled_and_masked() {
    let (base, _emu) = start();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = Arc::clone(&events);
    let o = FetchOptions {
        progress: Some(Arc::new(move |e: &survey_fetch::ProgressEvent| {
            ev.lock().unwrap().push((e.done, e.total))
        })),
        ..opts(&base, None)
    };
    let s = sim();
    let t = fetch_template(
        &"ps1:r".parse::<SurveySpec>().unwrap(),
        &s.template_header,
        (N, N),
        &o,
    )
    .unwrap();
    assert_eq!(t.image.dim(), (N, N));
    // Bit 0x20 block masked; 0x8000 elsewhere ignored.
    assert!(t.mask[[15, 15]]);
    assert!(!t.mask[[60, 20]] && !t.mask[[60, 100]] && !t.mask[[60, 65]]);
    // Linearised, both cells brought to the first one's zero point: equal to the truth.
    assert!(
        rel_err(&t.image, &t.mask, &s.template, 4) < 1e-3,
        "{}",
        rel_err(&t.image, &t.mask, &s.template, 4)
    );
    assert!((t.header.get_f64("MAGZERO").unwrap() - 32.5).abs() < 1e-9);
    assert_eq!(t.header.get_i64("NSKYCELL").unwrap(), 2);
    let ev = events.lock().unwrap();
    assert_eq!(ev.len(), 4);
    assert!(ev.iter().any(|&(d, n)| d == 4 && n == 4));

    // No files for the y band.
    let e = fetch_template(
        &"ps1:y".parse::<SurveySpec>().unwrap(),
        &s.template_header,
        (N, N),
        &o,
    )
    .unwrap_err();
    assert!(matches!(e, FetchError::EmptyResult { .. }), "{e}");
}

#[test]
fn legacy_cutout_with_invvar_mask() {
    let (base, _emu) = start();
    let o = opts(&base, None);
    let s = sim();
    let t = fetch_template(
        &"ls:r".parse::<SurveySpec>().unwrap(),
        &s.template_header,
        (N, N),
        &o,
    )
    .unwrap();
    assert!(rel_err(&t.image, &t.mask, &s.template, 4) < 1e-4);
    assert!(t.mask[[105, 35]]);
    assert!(!t.mask[[60, 60]]);
    assert_eq!(t.header.get_f64("MAGZERO").unwrap(), 22.5);
    // 500 once on this layer, then success.
    let t2 = fetch_template(
        &"ls:fault-500once:r".parse::<SurveySpec>().unwrap(),
        &s.template_header,
        (N, N),
        &o,
    )
    .unwrap();
    assert!(same(&t2.image, &t.image));
}

// ------------------------------------------------------------------------------------------
// Raw HiPS tiles
// ------------------------------------------------------------------------------------------

/// The HiPS tile layout written the way the `hips` Python package does it, independently of
/// the library's bit arithmetic: A(1) = [[0, 1], [2, 3]], A(w) = 4 tiled copies of A(w-1)
/// plus (W/2)^2 [[0, 1], [2, 3]] by quadrant; the tile is rot90(A): T[y, x] = A[x, W-1-y].
fn hips_layout(w: u32) -> Array2<u64> {
    let mut a = Array2::from_shape_vec((2, 2), vec![0u64, 1, 2, 3]).unwrap();
    for k in 2..=w {
        let h = 1usize << (k - 1);
        let prev = a.clone();
        a = Array2::from_shape_fn((2 * h, 2 * h), |(r, c)| {
            prev[[r % h, c % h]] + (h * h) as u64 * (2 * (r / h) as u64 + (c / h) as u64)
        });
    }
    let wd = 1usize << w;
    Array2::from_shape_fn((wd, wd), |(y, x)| a[[x, wd - 1 - y]])
}

fn bilinear(img: &Array2<f32>, x: f64, y: f64) -> f32 {
    let (ny, nx) = img.dim();
    if !(x >= 0.0 && y >= 0.0 && x <= (nx - 1) as f64 && y <= (ny - 1) as f64) {
        return f32::NAN;
    }
    let (x0, y0) = (
        (x.floor() as usize).min(nx - 2),
        (y.floor() as usize).min(ny - 2),
    );
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let v = img[[y0, x0]] as f64 * (1.0 - fx) * (1.0 - fy)
        + img[[y0, x0 + 1]] as f64 * fx * (1.0 - fy)
        + img[[y0 + 1, x0]] as f64 * (1.0 - fx) * fy
        + img[[y0 + 1, x0 + 1]] as f64 * fx * fy;
    v as f32
}

/// Writes a HiPS (order 12, 64-px tiles, ~0.8"/px) sampled from the sim template into `dir`.
fn build_hips(dir: &Path) -> Vec<PathBuf> {
    let (k, w) = (12u8, 6u32);
    let wd = 1usize << w;
    std::fs::write(
        dir.join("properties"),
        format!("creator_did = ivo://diffim/test\nhips_order = {k}\nhips_order_min = 0\nhips_tile_width = {wd}\nhips_frame = equatorial\nhips_tile_format = fits\n"),
    )
    .unwrap();
    let s = sim();
    let grid = sim_grid();
    let mut tiles = std::collections::BTreeSet::new();
    for y in (-8..N as i64 + 8).step_by(2) {
        for x in (-8..N as i64 + 8).step_by(2) {
            let (ra, dec) = grid.wcs().pixel_to_world(x as f64, y as f64).unwrap();
            tiles.insert(cdshealpix::nested::hash(
                k,
                ra.to_radians(),
                dec.to_radians(),
            ));
        }
    }
    let layout = hips_layout(w);
    let depth = k + w as u8;
    let mut paths = Vec::new();
    for &n in &tiles {
        let data = Array2::from_shape_fn((wd, wd), |(y, x)| {
            let h = n * (wd * wd) as u64 + layout[[y, x]];
            let (lon, lat) = cdshealpix::nested::center(depth, h);
            let (px, py) = grid
                .wcs()
                .world_to_pixel(lon.to_degrees(), lat.to_degrees())
                .unwrap();
            bilinear(&s.template, px, py)
        });
        let p = dir.join(survey_fetch::tile_path(k, n));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        fits_io::write_image(&p, &data.view(), &Header::new(), WriteOptions::default()).unwrap();
        paths.push(p);
    }
    paths
}

fn correlation(a: &Array2<f32>, b: &Array2<f32>, margin: usize) -> f64 {
    let (ny, nx) = a.dim();
    let mut v = Vec::new();
    for y in margin..ny - margin {
        for x in margin..nx - margin {
            if a[[y, x]].is_finite() {
                v.push((a[[y, x]] as f64, b[[y, x]] as f64));
            }
        }
    }
    let n = v.len() as f64;
    let (ma, mb) = (
        v.iter().map(|p| p.0).sum::<f64>() / n,
        v.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = v.iter().map(|p| (p.0 - ma) * (p.1 - mb)).sum();
    let va: f64 = v.iter().map(|p| (p.0 - ma).powi(2)).sum();
    let vb: f64 = v.iter().map(|p| (p.1 - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn raw_hips_tiles_from_a_local_mirror_and_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let hips = dir.path().join("hips");
    std::fs::create_dir_all(&hips).unwrap();
    let tiles = build_hips(&hips);
    assert!(tiles.len() >= 2);
    let grid = sim_grid();
    let s = sim();

    // Local folder (plain path) and file:// URL.
    let o = opts("http://127.0.0.1:9", None);
    let t = hips_tiles(
        hips.to_str().unwrap(),
        &grid,
        &HipsTilesParams::default(),
        &o,
    )
    .unwrap();
    assert_eq!(t.header.get_i64("HIPSORD").unwrap(), 12);
    // Only the outermost pixels may be masked (tiles sampled outside the sim image are NaN).
    for ((y, x), &m) in t.mask.indexed_iter() {
        assert!(
            !m || x < 2 || y < 2 || x >= N - 2 || y >= N - 2,
            "masked at {x},{y}"
        );
    }
    let r = correlation(&t.image, &s.template, 4);
    assert!(r > 0.99, "correlation {r}");
    // A transposed or flipped layout would put stars elsewhere: the brightest pixel matches.
    let argmax = |a: &Array2<f32>| {
        let mut best = (0, 0, f32::MIN);
        for ((y, x), &v) in a.indexed_iter() {
            if v > best.2 && x > 4 && y > 4 && x < N - 4 && y < N - 4 {
                best = (y, x, v);
            }
        }
        (best.0 as i64, best.1 as i64)
    };
    let (a, b) = (argmax(&t.image), argmax(&s.template));
    assert!(
        (a.0 - b.0).abs() <= 1 && (a.1 - b.1).abs() <= 1,
        "{a:?} vs {b:?}"
    );
    let url = format!("file://{}", hips.display());
    let t2 = hips_tiles(&url, &grid, &HipsTilesParams::default(), &o).unwrap();
    assert!(same(&t2.image, &t.image));

    // Over HTTP through the emulator, with a cache; then via the SurveySpec string.
    let (base, emu) = start();
    *emu.hips_dir.lock().unwrap() = Some(hips.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = opts(&base, Some(cache.path()));
    let spec: SurveySpec = format!("hips-tiles:{base}/hips").parse().unwrap();
    let t3 = fetch_template(&spec, &s.template_header, (N, N), &o).unwrap();
    assert!(same(&t3.image, &t.image));

    // A missing tile is masked, not an error.
    std::fs::remove_file(&tiles[0]).unwrap();
    let t4 = hips_tiles(
        hips.to_str().unwrap(),
        &grid,
        &HipsTilesParams::default(),
        &o,
    )
    .unwrap();
    let nbad = t4.mask.iter().filter(|&&m| m).count();
    assert!(nbad > 0 && nbad < N * N, "{nbad}");
    assert!(
        t4.image
            .iter()
            .zip(&t4.mask)
            .all(|(v, &m)| m != v.is_finite())
    );
}
