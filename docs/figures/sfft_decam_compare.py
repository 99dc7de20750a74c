"""Compare diffim's SFFT difference of the DECam stacks with SFFT's own FinalDifference.

Usage (from the workspace root, after `cargo xtask fetch-data`):
    cargo run --release -p diffim-cli -- subtract \
        data/real/sfft-decam-decorr/4check/Stack-DEC-OBS04.fits \
        data/real/sfft-decam-decorr/4check/Stack-DEC-OBS18.fits --method sfft --out /tmp/decam
    python3 docs/figures/sfft_decam_compare.py /tmp/decam data/real docs/figures/sfft_decam.png

Their FinalDifference is exactly Stack04 - FinalMatchKernel (x) Stack18: a kernel made for the
individual frames, not a least-squares fit to these stacks. Both differences are dominated by
the same noise, so they agree only where the kernels agree; the panels show where they differ.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from astropy.io import fits
from scipy.signal import fftconvolve

out, data, png = sys.argv[1], sys.argv[2], sys.argv[3]
ours = fits.getdata(f"{out}/diff.fits").astype(float)
mask = fits.getdata(f"{out}/mask.fits").astype(bool)
theirs = fits.getdata(f"{data}/sfft-decam-decorr/4check/FinalDifference.fits").astype(float)
s04 = fits.getdata(f"{data}/sfft-decam-decorr/4check/Stack-DEC-OBS04.fits").astype(float)
s18 = fits.getdata(f"{data}/sfft-decam-decorr/4check/Stack-DEC-OBS18.fits").astype(float)
k = fits.getdata(f"{data}/sfft-decam-decorr/input_data/FinalMatchKernel.fits").astype(float)

# Their difference rebuilt from the stacks and their kernel (checks the reading of their data).
rebuilt = s04 - fftconvolve(s18, k / k.sum() * k.sum(), mode="same")
good = ~mask & np.isfinite(ours) & np.isfinite(theirs)
edge = np.zeros_like(good)
edge[15:-15, 15:-15] = True
good &= edge
r = np.corrcoef(ours[good], theirs[good])[0, 1]
rms_ours = np.std(ours[good] - np.median(ours[good]))
rms_theirs = np.std(theirs[good] - np.median(theirs[good]))

vmin, vmax = np.percentile(theirs[good], [1, 99])
fig, ax = plt.subplots(1, 4, figsize=(17, 4.6))
for a, img, title in [
    (ax[0], ours, f"diffim SFFT diff (rms {rms_ours:.1f})"),
    (ax[1], theirs, f"SFFT FinalDifference (rms {rms_theirs:.1f})"),
    (ax[2], ours - theirs, "diffim - SFFT"),
]:
    im = a.imshow(np.where(good, img, np.nan), origin="lower", cmap="gray", vmin=vmin, vmax=vmax)
    a.set_title(title)
    a.set_xticks([])
    a.set_yticks([])
ax[3].hexbin(theirs[good], ours[good], gridsize=60, bins="log", cmap="viridis",
             extent=(vmin * 2, vmax * 2, vmin * 2, vmax * 2))
ax[3].plot([vmin * 2, vmax * 2], [vmin * 2, vmax * 2], "w--", lw=1)
ax[3].set_xlabel("SFFT FinalDifference")
ax[3].set_ylabel("diffim SFFT diff")
ax[3].set_title(f"Pearson r = {r:.3f} ({good.sum()} px)")
fig.suptitle("DECam i-band stacks (sfft test data): Stack-DEC-OBS04 - Stack-DEC-OBS18")
fig.tight_layout()
fig.savefig(png, dpi=80)
print(f"r = {r:.4f}, rms ours {rms_ours:.2f}, rms theirs {rms_theirs:.2f}, "
      f"rebuilt-vs-theirs max |d| = {np.nanmax(np.abs(rebuilt - theirs)[20:-20, 20:-20]):.3g}")
