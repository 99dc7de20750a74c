#!/usr/bin/env python3
"""Golden data for the wcs-grid crate, computed with astropy (wcslib) and reproject.

Re-run from anywhere:  python3 crates/wcs-grid/tests/golden/make_golden.py
Needs: astropy, reproject (pip install astropy reproject), numpy.
Optional env DIFFIM_DATA (default /work/shared/data, then <root>/data/real) for the two real
headers (NIRCam, DECam); their header text is committed, so the real FITS files are only needed
to refresh those two .hdr files.

Outputs (all in this folder):
  <name>.hdr      header cards, one 80-character card per line
  <name>.csv      x,y,ra,dec : 0-based pixels and astropy all_pix2world(x, y, 0) in degrees
  reproj_<name>.csv / .hdr : reproject_interp(order='bilinear') of an analytic image (see
                  `analytic_image`, reproduced in the Rust test) from a source header onto the
                  target header; NaN written as 'nan'.
"""
import os
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

warnings.simplefilter("ignore", FITSFixedWarning)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
RNG = np.random.default_rng(20240611)

NIRCAM = "sfft-nircam/input_data/jw01324001001-01324-o001_t001_nircam_clear-f200w_i2d_stamp.fits"
DECAM = "sfft-decam-decorr/input_data/DEC-OBS04a.mini.fits"


def data_path(sub):
    for base in [os.environ.get("DIFFIM_DATA"), "/work/shared/data", os.path.join(ROOT, "data", "real")]:
        if base and os.path.exists(os.path.join(base, sub)):
            return os.path.join(base, sub)
    return None


def cards(text):
    return fits.Header.fromstring("".join(f"{line:<80}" for line in text.strip("\n").split("\n")))


def write_header(name, header):
    keep = fits.Header()
    for card in header.cards:
        if card.keyword in ("COMMENT", "HISTORY", ""):
            continue
        keep.append(card)
    with open(os.path.join(HERE, name + ".hdr"), "w") as f:
        for card in keep.cards:
            image = card.image  # long strings span several 80-character CONTINUE cards
            for i in range(0, len(image), 80):
                f.write(image[i:i + 80].rstrip() + "\n")


def read_header(name):
    with open(os.path.join(HERE, name + ".hdr")) as f:
        return fits.Header.fromstring("".join(f"{line.rstrip(chr(10)):<80}" for line in f))


def fit_inverse_sip(w, nx, ny, order):
    """AP/BP by least squares on a grid, as real pipelines do (approximate on purpose)."""
    xs, ys = np.meshgrid(np.linspace(0, nx - 1, 40), np.linspace(0, ny - 1, 40))
    u = xs.ravel() - (w.wcs.crpix[0] - 1)
    v = ys.ravel() - (w.wcs.crpix[1] - 1)
    a = w.sip.a
    b = w.sip.b
    fu = sum(a[p, q] * u**p * v**q for p in range(a.shape[0]) for q in range(a.shape[1]))
    fv = sum(b[p, q] * u**p * v**q for p in range(b.shape[0]) for q in range(b.shape[1]))
    U, V = u + fu, v + fv
    terms = [(p, q) for p in range(order + 1) for q in range(order + 1 - p)]
    M = np.stack([U**p * V**q for p, q in terms], axis=1)
    cu = np.linalg.lstsq(M, u - U, rcond=None)[0]
    cv = np.linalg.lstsq(M, v - V, rcond=None)[0]
    out = {}
    for (p, q), c1, c2 in zip(terms, cu, cv):
        out[f"AP_{p}_{q}"] = float(c1)
        out[f"BP_{p}_{q}"] = float(c2)
    return out


SYNTHETIC = {
    # A survey-like TAN header, slightly rotated CD.
    "tan": """
NAXIS   =                    2
NAXIS1  =                 2048
NAXIS2  =                 4096
CTYPE1  = 'RA---TAN'
CTYPE2  = 'DEC--TAN'
CRPIX1  =               1024.5
CRPIX2  =               2048.5
CRVAL1  =        150.119166667
CRVAL2  =          2.205833333
CD1_1   =   -7.27777777778E-05
CD1_2   =    1.20000000000E-07
CD2_1   =    1.18000000000E-07
CD2_2   =    7.27777777778E-05
RADESYS = 'ICRS'
""",
    # ZTF-like TAN-SIP (3072x3080 quadrant, 1.01"/px, order-4 forward polynomial; AP/BP are
    # least-squares fits added below, approximate like real ones).
    "tan_sip": """
NAXIS   =                    2
NAXIS1  =                 3072
NAXIS2  =                 3080
CTYPE1  = 'RA---TAN-SIP'
CTYPE2  = 'DEC--TAN-SIP'
CRPIX1  =      1545.2431640625
CRPIX2  =      1541.7886962891
CRVAL1  =      284.70166015625
CRVAL2  =      47.462585449219
CD1_1   =  -0.00028101040329785
CD1_2   =   -1.1409327559569E-06
CD2_1   =   -1.0969879218214E-06
CD2_2   =   0.00028085484122857
RADESYS = 'FK5'
EQUINOX =               2000.0
A_ORDER =                    4
A_0_2   =  -3.2130427548717E-07
A_0_3   =   2.1370473938306E-11
A_0_4   =   6.0839215082233E-15
A_1_1   =   5.2402474339613E-07
A_1_2   =   -1.0294853006016E-10
A_1_3   =   -3.6290018442548E-15
A_2_0   =   -1.6104018452373E-07
A_2_1   =   2.3211813046823E-11
A_2_2   =   1.4325519373581E-14
A_3_0   =   -9.9234007034212E-11
A_3_1   =   2.9076584981203E-15
A_4_0   =   -2.1188138698958E-15
B_ORDER =                    4
B_0_2   =   2.9411017658011E-07
B_0_3   =   -1.0159698937436E-10
B_0_4   =   -3.6011521049216E-15
B_1_1   =   -1.8167564233419E-07
B_1_2   =   2.0049829751548E-11
B_1_3   =   1.5190811698291E-14
B_2_0   =   -5.7133542587128E-08
B_2_1   =   -9.9802406001745E-11
B_2_2   =   6.3197633282357E-15
B_3_0   =   2.5402163373016E-11
B_3_1   =   7.7810633437826E-15
B_4_0   =   -3.3025427346613E-15
""",
    # Radio-style SIN (no slant parameters), wide field.
    "sin": """
NAXIS   =                    2
NAXIS1  =                 1024
NAXIS2  =                 1024
CTYPE1  = 'RA---SIN'
CTYPE2  = 'DEC--SIN'
CRPIX1  =                513.0
CRPIX2  =                513.0
CRVAL1  =           201.365063
CRVAL2  =           -43.019112
CDELT1  =            -0.012
CDELT2  =             0.012
RADESYS = 'FK5'
EQUINOX =               2000.0
""",
    # Zenithal equal area near the south celestial pole, PC + CDELT with rotation.
    "zea": """
NAXIS   =                    2
NAXIS1  =                 1200
NAXIS2  =                 1000
CTYPE1  = 'RA---ZEA'
CTYPE2  = 'DEC--ZEA'
CRPIX1  =                600.5
CRPIX2  =                500.5
CRVAL1  =                 45.0
CRVAL2  =                -75.0
CDELT1  =               -0.05
CDELT2  =                0.05
PC1_1   =   0.9659258262890683
PC1_2   =  -0.2588190451025207
PC2_1   =   0.2588190451025207
PC2_2   =   0.9659258262890683
""",
    # All-sky plate carree in galactic coordinates (CRVAL2 = 0, default LONPOLE = 0).
    "car": """
NAXIS   =                    2
NAXIS1  =                  720
NAXIS2  =                  360
CTYPE1  = 'GLON-CAR'
CTYPE2  = 'GLAT-CAR'
CRPIX1  =                360.5
CRPIX2  =                180.5
CRVAL1  =                  0.0
CRVAL2  =                  0.0
CDELT1  =                 -0.5
CDELT2  =                  0.5
""",
    # Oblique CAR (CRVAL2 != 0: the general pole solution of C&G 2002 sect. 2.4).
    "car_oblique": """
NAXIS   =                    2
NAXIS1  =                  400
NAXIS2  =                  300
CTYPE1  = 'RA---CAR'
CTYPE2  = 'DEC--CAR'
CRPIX1  =                200.5
CRPIX2  =                150.5
CRVAL1  =                 83.6
CRVAL2  =                 22.0
CDELT1  =                 -0.1
CDELT2  =                  0.1
RADESYS = 'ICRS'
""",
    # Rotated, non-symmetric CD (flipped handedness is what broke the `wcs` crate).
    "rotated_cd": """
NAXIS   =                    2
NAXIS1  =                 2000
NAXIS2  =                 1500
CTYPE1  = 'RA---TAN'
CTYPE2  = 'DEC--TAN'
CRPIX1  =                812.3
CRPIX2  =               -140.7
CRVAL1  =              359.987
CRVAL2  =               61.250
CD1_1   =   -5.1961524227E-05
CD1_2   =    3.2000000000E-05
CD2_1   =   -2.8000000000E-05
CD2_2   =   -4.8497423281E-05
LONPOLE =                180.0
""",
    "arc": """
NAXIS   =                    2
NAXIS1  =                  800
NAXIS2  =                  800
CTYPE1  = 'RA---ARC'
CTYPE2  = 'DEC--ARC'
CRPIX1  =                400.5
CRPIX2  =                400.5
CRVAL1  =                266.4
CRVAL2  =                -28.9
CD1_1   =                -0.05
CD1_2   =                  0.0
CD2_1   =                  0.0
CD2_2   =                 0.05
""",
    "stg": """
NAXIS   =                    2
NAXIS1  =                  800
NAXIS2  =                  800
CTYPE1  = 'RA---STG'
CTYPE2  = 'DEC--STG'
CRPIX1  =                400.5
CRPIX2  =                400.5
CRVAL1  =                 10.7
CRVAL2  =                 41.3
CD1_1   =                -0.05
CD1_2   =                0.002
CD2_1   =                0.002
CD2_2   =                 0.05
""",
}

ROWS = {"arc": 300, "stg": 300, "car_oblique": 300}


def make_pairs(name, header):
    w = WCS(header)
    nx, ny = header["NAXIS1"], header["NAXIS2"]
    n = ROWS.get(name, 1000)
    margin = 0.05 * max(nx, ny)
    x = np.round(RNG.uniform(-margin, nx - 1 + margin, 4 * n), 4)
    y = np.round(RNG.uniform(-margin, ny - 1 + margin, 4 * n), 4)
    if name == "sin":
        # Stay inside the visible hemisphere (|intermediate| < 57 deg).
        pass
    if name == "car":
        # Keep away from the +-180 deg seam, where either side is a valid answer.
        x = np.round(RNG.uniform(3, nx - 4, 4 * n), 4)
        y = np.round(RNG.uniform(1, ny - 2, 4 * n), 4)
    ra, dec = w.all_pix2world(x, y, 0)
    ok = np.isfinite(ra) & np.isfinite(dec)
    x, y, ra, dec = x[ok][:n], y[ok][:n], ra[ok][:n], dec[ok][:n]
    # Self-check: astropy's own inverse at tight tolerance.
    xb, yb = w.all_world2pix(ra, dec, 0, tolerance=1e-10, maxiter=200)
    err = np.nanmax(np.hypot(xb - x, yb - y))
    with open(os.path.join(HERE, name + ".csv"), "w") as f:
        f.write("x,y,ra,dec\n")
        for r in zip(x, y, ra, dec):
            f.write(f"{r[0]:.4f},{r[1]:.4f},{float(r[2])!r},{float(r[3])!r}\n")
    print(f"{name:12s} {len(x):5d} pairs, astropy round trip {err:.2e} px")


def analytic_image(ny, nx):
    """The source image of the reprojection golden test (same formula in the Rust test)."""
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    img = 100.0 + 0.05 * x - 0.03 * y + 20.0 * np.sin(x / 7.0) * np.cos(y / 11.0)
    for (cx, cy, amp, s) in [(60.3, 70.2, 500.0, 3.0), (180.7, 40.1, 300.0, 2.5),
                             (128.2, 190.9, 800.0, 4.0), (30.5, 220.4, 200.0, 2.0)]:
        img += amp * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return img.astype(np.float32)


def make_reproject(name, src_header, dst_header):
    from reproject import reproject_interp

    ny, nx = src_header["NAXIS2"], src_header["NAXIS1"]
    img = analytic_image(ny, nx)
    out, foot = reproject_interp((img, WCS(src_header)), WCS(dst_header),
                                 shape_out=(dst_header["NAXIS2"], dst_header["NAXIS1"]),
                                 order="bilinear")
    write_header("reproj_" + name + "_target", dst_header)
    with open(os.path.join(HERE, "reproj_" + name + ".csv"), "w") as f:
        for row in out:
            f.write(",".join("nan" if not np.isfinite(v) else f"{v:.8g}" for v in row) + "\n")
    print(f"reproj_{name}: {np.isfinite(out).sum()} finite of {out.size}")


def main():
    for name, text in SYNTHETIC.items():
        h = cards(text)
        if name == "tan_sip":
            w = WCS(h)
            for k, v in fit_inverse_sip(w, h["NAXIS1"], h["NAXIS2"], 4).items():
                h[k] = v
            h.insert("A_ORDER", ("AP_ORDER", 4))
            h.insert("A_ORDER", ("BP_ORDER", 4))
        write_header(name, h)
    for name, sub in [("nircam", NIRCAM), ("decam_tpv", DECAM)]:
        path = data_path(sub)
        if path is not None:
            with fits.open(path) as hdul:
                hdu = next(x for x in hdul if x.data is not None)
                write_header(name, hdu.header)
        elif not os.path.exists(os.path.join(HERE, name + ".hdr")):
            raise SystemExit(f"need {sub} (set DIFFIM_DATA) to make {name}.hdr")
    for name in list(SYNTHETIC) + ["nircam", "decam_tpv"]:
        make_pairs(name, read_header(name))

    # Reprojection goldens: an analytic image on the (real) DECam TPV grid and on the SIP grid,
    # resampled onto rotated, shifted TAN grids.
    dec = read_header("decam_tpv")
    wd = WCS(dec)
    ra0, dec0 = (float(v) for v in wd.all_pix2world([[127.5, 127.5]], 0)[0])
    tgt = cards(f"""
NAXIS   =                    2
NAXIS1  =                   96
NAXIS2  =                   80
CTYPE1  = 'RA---TAN'
CTYPE2  = 'DEC--TAN'
CRPIX1  =                 40.0
CRPIX2  =                 45.0
CRVAL1  = {ra0!r}
CRVAL2  = {dec0!r}
CD1_1   =  {-2.2e-4 / 3.0 * np.cos(np.radians(25)):.15E}
CD1_2   =  {2.2e-4 / 3.0 * np.sin(np.radians(25)):.15E}
CD2_1   =  {2.2e-4 / 3.0 * np.sin(np.radians(25)):.15E}
CD2_2   =  {2.2e-4 / 3.0 * np.cos(np.radians(25)):.15E}
""")
    make_reproject("decam_tpv", dec, tgt)
    # Source: a 256x256 cutout-sized grid carrying the SIP header's distortion.
    sip = read_header("tan_sip")
    sip["NAXIS1"], sip["NAXIS2"] = 256, 256
    ws = WCS(sip)
    ra0, dec0 = (float(v) for v in ws.all_pix2world([[140.0, 120.0]], 0)[0])
    tgt = cards(f"""
NAXIS   =                    2
NAXIS1  =                   80
NAXIS2  =                   96
CTYPE1  = 'RA---TAN'
CTYPE2  = 'DEC--TAN'
CRPIX1  =                 35.5
CRPIX2  =                 52.0
CRVAL1  = {ra0!r}
CRVAL2  = {dec0!r}
CD1_1   =  {-1.2 * 2.81e-4 * np.cos(np.radians(-40)):.15E}
CD1_2   =  {1.2 * 2.81e-4 * np.sin(np.radians(-40)):.15E}
CD2_1   =  {1.2 * 2.81e-4 * np.sin(np.radians(-40)):.15E}
CD2_2   =  {1.2 * 2.81e-4 * np.cos(np.radians(-40)):.15E}
RADESYS = 'FK5'
EQUINOX =               2000.0
""")
    # Same frame as the source: astropy applies the ~20 mas ICRS<->FK5 frame bias, which this
    # crate (documented) does not.
    make_reproject("tan_sip", sip, tgt)


def check_rust_written():
    """astropy must read the headers written by wcs-grid's `to_header` (committed as
    rust_written_<name>.hdr by the Rust test) as the WCS of the original header."""
    for name in ["tan_sip", "decam_tpv", "zea", "car_oblique", "rotated_cd"]:
        path = os.path.join(HERE, f"rust_written_{name}.hdr")
        if not os.path.exists(path):
            print(f"rust_written_{name}.hdr missing: run WCS_GRID_WRITE_GOLDEN=1 cargo test -p wcs-grid")
            continue
        w = WCS(read_header(f"rust_written_{name}"))
        rows = np.loadtxt(os.path.join(HERE, name + ".csv"), delimiter=",", skiprows=1)
        ra, dec = w.all_pix2world(rows[:, 0], rows[:, 1], 0)
        err = np.max(np.hypot((ra - rows[:, 2]) * np.cos(np.radians(rows[:, 3])), dec - rows[:, 3]))
        x, y = w.all_world2pix(rows[:, 2], rows[:, 3], 0, tolerance=1e-10, maxiter=200)
        perr = np.max(np.hypot(x - rows[:, 0], y - rows[:, 1]))
        print(f"rust_written_{name}: astropy reads it back within {err:.1e} deg, {perr:.1e} px")
        assert err < 1e-9 and perr < 1e-6, name


if __name__ == "__main__":
    main()
    check_rust_written()
