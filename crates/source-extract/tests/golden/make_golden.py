#!/usr/bin/env python3
"""Golden data for the source-extract tests, made with SEP (Barbary 2016).

Re-runnable:  pip install sep astropy numpy ; python make_golden.py [DATA_DIR]
DATA_DIR defaults to $DIFFIM_DATA or <workspace>/data/real (the properimage image).

Writes, next to this script:
  sim.fits                 seeded synthetic star field (384x384, uint16 + BZERO, like the real data)
  sim_truth.csv            its true star list (x, y 0-based, flux)
  <name>_bkg.csv           SEP background and RMS sampled on a grid (y, x 0-based)
  <name>_cat.csv           SEP catalogue: extract (thresh 5 x rms map, minarea 5, no filter,
                           deblend 32/0.005) + flux_radius + winpos + sum_circle (r=5, exact)
for name in (sim, properimage).
"""
import csv
import os
import sys

import numpy as np
import sep
from astropy.io import fits

HERE = os.path.dirname(os.path.abspath(__file__))
BOX = 64
FILTER = 3
THRESH = 5.0
MINAREA = 5
APER = 5.0


def make_sim():
    rng = np.random.default_rng(20240617)
    ny = nx = 384
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    sky = 1000.0 + 0.25 * xx + 0.15 * yy + 15.0 * np.sin(2 * np.pi * xx / 300.0)
    img = sky.copy()
    nstar = 120
    xs = rng.uniform(6, nx - 7, nstar)
    ys = rng.uniform(6, ny - 7, nstar)
    fl = 10 ** rng.uniform(3.0, 5.5, nstar)
    sigma = 3.0 / 2.3548
    from math import erf, sqrt

    verf = np.vectorize(erf)
    for x0, y0, f in zip(xs, ys, fl):
        x_lo, x_hi = int(x0) - 10, int(x0) + 11
        y_lo, y_hi = int(y0) - 10, int(y0) + 11
        gx = np.arange(max(x_lo, 0), min(x_hi, nx))
        gy = np.arange(max(y_lo, 0), min(y_hi, ny))
        # pixel-integrated Gaussian
        px = 0.5 * (verf((gx + 0.5 - x0) / (sqrt(2) * sigma)) - verf((gx - 0.5 - x0) / (sqrt(2) * sigma)))
        py = 0.5 * (verf((gy + 0.5 - y0) / (sqrt(2) * sigma)) - verf((gy - 0.5 - y0) / (sqrt(2) * sigma)))
        img[gy[0]:gy[-1] + 1, gx[0]:gx[-1] + 1] += f * np.outer(py, px)
    img = rng.poisson(img).astype(np.float64)  # gain 1 e-/ADU
    img = np.clip(np.round(img), 0, 65535).astype(np.uint16)
    hdr = fits.Header()
    hdr["GAIN"] = (1.0, "e-/ADU")
    hdr["SATURATE"] = (65535.0, "ADU")
    hdr["FWHM"] = (3.0, "px, Gaussian PSF")
    fits.PrimaryHDU(img, header=hdr).writeto(os.path.join(HERE, "sim.fits"), overwrite=True)
    with open(os.path.join(HERE, "sim_truth.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "flux"])
        for x0, y0, fl0 in zip(xs, ys, fl):
            w.writerow([f"{x0:.5f}", f"{y0:.5f}", f"{fl0:.3f}"])


def golden(name, path, step):
    data = fits.getdata(path).astype(np.float32)
    data = np.ascontiguousarray(data)
    bkg = sep.Background(data, bw=BOX, bh=BOX, fw=FILTER, fh=FILTER)
    back = bkg.back()
    rms = bkg.rms()
    ny, nx = data.shape
    with open(os.path.join(HERE, f"{name}_bkg.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["y", "x", "back", "rms"])
        w.writerow([-1, -1, f"{bkg.globalback:.4f}", f"{bkg.globalrms:.4f}"])
        for y in list(range(0, ny, step)) + [ny - 1]:
            for x in list(range(0, nx, step)) + [nx - 1]:
                w.writerow([y, x, f"{back[y, x]:.4f}", f"{rms[y, x]:.4f}"])
    sub = data - back
    objs = sep.extract(sub, THRESH, err=rms, minarea=MINAREA, filter_kernel=None,
                       deblend_nthresh=32, deblend_cont=0.005)
    rmax = np.clip(6.0 * objs["a"], 3.0, 60.0)
    rhalf, _ = sep.flux_radius(sub, objs["x"], objs["y"], rmax, 0.5, subpix=5)
    sig = 2.0 / 2.35 * rhalf
    xw, yw, _ = sep.winpos(sub, objs["x"], objs["y"], sig)
    flux, ferr, fflag = sep.sum_circle(sub, xw, yw, APER, err=rms, subpix=0)
    flux_ann, _, _ = sep.sum_circle(sub, xw, yw, APER, err=rms, subpix=0, bkgann=(8.0, 12.0))
    with open(os.path.join(HERE, f"{name}_cat.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "xwin", "ywin", "flux", "flux_err", "flux_ann", "a", "b",
                    "theta", "npix", "peak", "sep_flag", "r_half"])
        for i in range(len(objs)):
            w.writerow([f"{objs['x'][i]:.5f}", f"{objs['y'][i]:.5f}", f"{xw[i]:.5f}",
                        f"{yw[i]:.5f}", f"{flux[i]:.4f}", f"{ferr[i]:.4f}",
                        f"{flux_ann[i]:.4f}", f"{objs['a'][i]:.4f}", f"{objs['b'][i]:.4f}",
                        f"{objs['theta'][i]:.5f}", objs["npix"][i], f"{objs['peak'][i]:.3f}",
                        int(objs["flag"][i] | fflag[i]), f"{rhalf[i]:.4f}"])
    print(f"{name}: {len(objs)} objects, globalback {bkg.globalback:.3f}, globalrms {bkg.globalrms:.3f}")


def main():
    make_sim()
    golden("sim", os.path.join(HERE, "sim.fits"), 16)
    root = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
    data_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "DIFFIM_DATA", os.path.join(root, "data", "real"))
    real = os.path.join(data_dir, "properimage", "aligned_eso085-030-004.fit")
    if os.path.exists(real):
        golden("properimage", real, 32)
    else:
        print(f"note: {real} missing; properimage golden not regenerated")


if __name__ == "__main__":
    print("sep", sep.__version__)
    main()
