#!/usr/bin/env python3
"""Golden files for crates/fits-io/tests/fits_io.rs, written by astropy (the reference reader/writer).

Run:  python3 crates/fits-io/tests/golden/make_golden.py   (astropy 8.0.2 used for the committed files)

astropy_header.fits: 6 x 5 float32 image (data[y, x] = 10*y + x, NAXIS1 = 5 columns) whose header
has COMMENT, HISTORY, a blank-keyword card, HIERARCH keywords, a long string (CONTINUE, with
LONGSTRN), a string with quotes, a float with an exponent and a logical.
scaled_u16.fits: 4 x 3 uint16 image (BITPIX 16, BZERO 32768), values 0, 1000, ..., 65535-ish.
"""
import os

import numpy as np
from astropy.io import fits

HERE = os.path.dirname(os.path.abspath(__file__))

data = (10 * np.arange(6)[:, None] + np.arange(5)[None, :]).astype(np.float32)
hdu = fits.PrimaryHDU(data)
h = hdu.header
h["LONGSTRN"] = ("OGIP 1.0", "The OGIP long string convention may be used")
h["OBJECT"] = ("M51", "target")
h["EXPTIME"] = (60.25, "[s]")
h["SMALL"] = 1.5e-12
h["FLAG"] = False
h["QUOTED"] = "it's a 'test'"
h["HIERARCH ESO DET CHIP NAME"] = ("CCD-7 left", "chip")
h["HIERARCH ESO TEL AIRM START"] = 1.234
h["LONGVAL"] = ("A" * 60 + " " + "B" * 60 + " the end", "long one")
h.add_comment("first comment")
h.add_history("history line 1")
h.add_blank("blank keyword text")
h.add_history("history line 2")
hdu.writeto(os.path.join(HERE, "astropy_header.fits"), overwrite=True)

u = np.array([[0, 1000, 32767, 32768], [40000, 65535, 1, 2], [3, 4, 5, 6]], dtype=np.uint16)
fits.PrimaryHDU(u).writeto(os.path.join(HERE, "scaled_u16.fits"), overwrite=True)
