#!/usr/bin/env python3
"""Generate the hostile-FITS corpus of crates/fits-io/tests/bad/ (pure Python, deterministic).

Run from anywhere:  python3 crates/fits-io/tests/bad/make_bad.py
Each file must make fits-io fail with the exact error kind listed in tests/fits_io.rs
(`bad_corpus_gives_exact_errors`); none may make it panic or allocate what the header claims.
"""
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def card(key, value=None, comment=None):
    if value is None:
        s = f"{key:<8}" + (comment or "")
    else:
        s = f"{key:<8}= {value:>20}"
        if comment:
            s += f" / {comment}"
    assert len(s) <= 80, s
    return s.ljust(80).encode("ascii")


def header(cards, end=True):
    raw = b"".join(cards) + (card("END") if end else b"")
    pad = (-len(raw)) % 2880
    return raw + b" " * pad


def image_header(bitpix, axes, extra=(), primary=True, end=True):
    cards = [card("SIMPLE", "T")] if primary else [card("XTENSION", "'IMAGE   '")]
    cards += [card("BITPIX", str(bitpix)), card("NAXIS", str(len(axes)))]
    cards += [card(f"NAXIS{i + 1}", str(n)) for i, n in enumerate(axes)]
    if primary:
        cards.append(card("EXTEND", "T"))
    else:
        cards += [card("PCOUNT", "0"), card("GCOUNT", "1")]
    cards += list(extra)
    return header(cards, end)


def pad_data(b):
    return b + b"\0" * ((-len(b)) % 2880)


def f32_data(n):
    return pad_data(struct.pack(f">{n}f", *[float(i) for i in range(n)]))


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def main():
    rng = random.Random(20240601)
    good = image_header(-32, [10, 10]) + f32_data(100)

    write("empty.fits", b"")
    write("random_bytes.fits", bytes(rng.randrange(256) for _ in range(4000)))
    write("text_file.fits", b"This is a plain text file, not FITS.\n" * 40)
    # Header cut in the middle of its first block: no END, length not a multiple of 2880.
    write("truncated_header.fits", good[:1000])
    # A whole 2880-byte header block without END, then a data block.
    write("no_end.fits", header([card("SIMPLE", "T"), card("BITPIX", "-32"), card("NAXIS", "2"),
                                 card("NAXIS1", "10"), card("NAXIS2", "10")], end=False)
          + f32_data(100))
    # 10 x 10 float32 needs 400 data bytes: only 100 are there.
    write("truncated_data.fits", good[:2880 + 100])
    # Header says 100 x 100 float32 (40000 bytes); the file holds one data block.
    write("naxis_lie.fits", image_header(-32, [100, 100]) + f32_data(100))
    # 100000 x 100000 float32 (40 GB) in a 5760-byte file: must fail before allocating.
    write("huge_naxis.fits", image_header(-32, [100000, 100000]) + f32_data(100))
    # 30000 x 30000 is under the pixel cap, but the file is far too short for it.
    write("big_naxis_short_file.fits", image_header(-32, [30000, 30000]) + f32_data(100))
    # Axis product overflows 64 bits.
    write("overflow_naxis.fits",
          image_header(-32, [4294967296, 4294967296, 4294967296]) + f32_data(100))
    write("bad_bitpix.fits", image_header(24, [10, 10]) + f32_data(100))
    write("negative_naxis.fits", image_header(-32, [-10, 10]) + f32_data(100))
    write("naxis_1000.fits", header([card("SIMPLE", "T"), card("BITPIX", "-32"),
                                     card("NAXIS", "1000")]) + f32_data(100))
    # 3-D cube 4 x 5 x 3 (NAXIS1 x NAXIS2 x NAXIS3): read_image must refuse it.
    write("cube.fits", image_header(-32, [4, 5, 3]) + f32_data(60))
    # Empty primary + a binary table extension (one J column, 3 rows).
    prim = image_header(8, [])
    tab = header([card("XTENSION", "'BINTABLE'"), card("BITPIX", "8"), card("NAXIS", "2"),
                  card("NAXIS1", "4"), card("NAXIS2", "3"), card("PCOUNT", "0"),
                  card("GCOUNT", "1"), card("TFIELDS", "1"), card("TTYPE1", "'FLUX    '"),
                  card("TFORM1", "'J       '"), card("EXTNAME", "'TABLE   '")])
    write("bintable.fits", prim + tab + pad_data(struct.pack(">3i", 1, 2, 3)))
    # Valid primary image, then an extension header cut short.
    ext = image_header(-32, [10, 10], primary=False)
    write("truncated_extension.fits", good + ext[:500])
    # SIMPLE card followed by binary garbage where the rest of the header should be.
    write("binary_header.fits", card("SIMPLE", "T")
          + bytes(rng.randrange(256) for _ in range(2800)))


if __name__ == "__main__":
    main()
