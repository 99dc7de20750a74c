//! FITS headers of the simulated images: a TAN WCS plus the exposure cards.

use fits_io::Header;

use crate::config::{ImageConfig, SimConfig};

/// Which image of the pair a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Science,
    Template,
}

/// Builds the header of one image.
///
/// The WCS is a plain gnomonic (TAN) projection: `CRVAL = (ra, dec)` of the config at the
/// template centre, `CRPIX` = the template centre in FITS 1-based pixels,
/// `(nx-1)/2 + 1, (ny-1)/2 + 1`, shifted by the science offset for the science image (so both
/// headers map a star to the same sky position), and a CD matrix of `pixel_scale` arcsec per
/// pixel with north up and east left (`CD1_1 = -scale`, `CD2_2 = +scale`, in degrees).
pub(crate) fn build_header(cfg: &SimConfig, which: Which) -> Header {
    let (im, off): (&ImageConfig, (f64, f64)) = match which {
        Which::Science => (&cfg.science, cfg.offset),
        Which::Template => (&cfg.template, (0.0, 0.0)),
    };
    let mut h = Header::new();
    let scale = cfg.pixel_scale / 3600.0;
    h.set_with_comment("BUNIT", "ADU", "pixel values are in ADU");
    h.set_with_comment(
        "OBJECT",
        match which {
            Which::Science => "sky-sim science",
            Which::Template => "sky-sim template",
        },
        "synthetic image",
    );
    h.set_with_comment("WCSAXES", 2i64, "number of WCS axes");
    h.set_with_comment("CTYPE1", "RA---TAN", "gnomonic projection");
    h.set_with_comment("CTYPE2", "DEC--TAN", "gnomonic projection");
    h.set("CUNIT1", "deg");
    h.set("CUNIT2", "deg");
    h.set_with_comment("CRVAL1", cfg.ra, "[deg] RA at the reference pixel");
    h.set_with_comment("CRVAL2", cfg.dec, "[deg] Dec at the reference pixel");
    h.set_with_comment(
        "CRPIX1",
        (cfg.nx as f64 - 1.0) / 2.0 + 1.0 + off.0,
        "reference pixel x (FITS 1-based)",
    );
    h.set_with_comment(
        "CRPIX2",
        (cfg.ny as f64 - 1.0) / 2.0 + 1.0 + off.1,
        "reference pixel y (FITS 1-based)",
    );
    h.set_with_comment("CD1_1", -scale, "[deg/px] east to the left");
    h.set_with_comment("CD1_2", 0.0, "[deg/px]");
    h.set_with_comment("CD2_1", 0.0, "[deg/px]");
    h.set_with_comment("CD2_2", scale, "[deg/px] north up");
    h.set_with_comment("RADESYS", "ICRS", "reference frame");
    h.set_with_comment("EQUINOX", 2000.0, "[yr] equinox");
    h.set_with_comment("GAIN", im.gain, "[e-/ADU] gain");
    h.set_with_comment("RDNOISE", im.read_noise, "[e-] read noise");
    h.set_with_comment("SATURATE", im.saturation, "[ADU] saturation level");
    h.set_with_comment(
        "FWHM",
        im.psf.fwhm.mean(),
        "[px] mean PSF FWHM over the field",
    );
    h.set_with_comment("EXPTIME", im.exptime, "[s] exposure time");
    h.set_with_comment("MJD-OBS", im.mjd, "[d] modified Julian date");
    h.set_with_comment("SKYLEVEL", im.sky.mean(), "[ADU] mean sky level");
    match i64::try_from(cfg.seed) {
        Ok(s) => h.set_with_comment("SIMSEED", s, "sky-sim seed"),
        Err(_) => h.set_with_comment("SIMSEED", cfg.seed.to_string(), "sky-sim seed"),
    }
    if which == Which::Science {
        h.set_with_comment(
            "FLXSCALE",
            cfg.flux_scale.mean(),
            "mean flux scale science/template",
        );
        h.set_with_comment("SIMOFFX", cfg.offset.0, "[px] x offset vs the template");
        h.set_with_comment("SIMOFFY", cfg.offset.1, "[px] y offset vs the template");
        h.set_with_comment("NTRANS", cfg.n_transients, "injected transients");
    }
    h.add_history("Simulated by sky-sim: stars, sky gradient, Poisson + read noise.");
    h
}
