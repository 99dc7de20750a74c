//! A self-contained HTML gallery of cutouts (thumbnails, fields, links to the FITS files).

use std::path::Path;

use crate::CutoutError;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One gallery entry: a row of fields plus the PNG and FITS file names (relative to the page).
#[derive(Debug, Clone)]
pub struct GalleryItem {
    /// Title of the entry (e.g. the candidate's id and name).
    pub title: String,
    /// Field names and values shown beside the picture.
    pub fields: Vec<(String, String)>,
    /// PNG file, relative to the gallery page.
    pub png: Option<String>,
    /// FITS file, relative to the gallery page.
    pub fits: Option<String>,
}

/// Writes a self-contained HTML gallery page (no scripts, no external resources), atomically.
pub fn write_gallery(
    path: &Path,
    title: &str,
    summary: &[(String, String)],
    items: &[GalleryItem],
) -> Result<(), CutoutError> {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str(&format!("<title>{}</title>\n", esc(title)));
    h.push_str(
        "<style>body{font-family:sans-serif;margin:1.5em;background:#fafafa}\
         table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #ddd;\
         vertical-align:top;text-align:left}img{max-width:900px;image-rendering:pixelated}\
         .k{color:#555}</style>\n</head><body>\n",
    );
    h.push_str(&format!("<h1>{}</h1>\n<table>\n", esc(title)));
    for (k, v) in summary {
        h.push_str(&format!(
            "<tr><td class=\"k\">{}</td><td>{}</td></tr>\n",
            esc(k),
            esc(v)
        ));
    }
    h.push_str(&format!(
        "</table>\n<h2>{} candidates</h2>\n<table>\n",
        items.len()
    ));
    for it in items {
        h.push_str(&format!("<tr><th>{}</th><td>", esc(&it.title)));
        if let Some(p) = &it.png {
            h.push_str(&format!(
                "<a href=\"{0}\"><img src=\"{0}\" alt=\"{1}\" loading=\"lazy\"></a><br>",
                esc(p),
                esc(&it.title)
            ));
        }
        for (k, v) in &it.fields {
            h.push_str(&format!(
                "<span class=\"k\">{}</span>: {} &nbsp; ",
                esc(k),
                esc(v)
            ));
        }
        if let Some(f) = &it.fits {
            h.push_str(&format!("<br><a href=\"{0}\">{0}</a>", esc(f)));
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</table>\n</body></html>\n");
    fits_io::write_atomic(path, h.as_bytes(), fits_io::WriteOptions::overwrite())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gallery_escapes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.html");
        let items = vec![GalleryItem {
            title: "#1 <new>".into(),
            fields: vec![("flux".into(), "3 & 4".into())],
            png: Some("c/1.png".into()),
            fits: Some("c/1.fits".into()),
        }];
        write_gallery(&p, "run", &[("method".into(), "zogy".into())], &items).unwrap();
        let html = std::fs::read_to_string(&p).unwrap();
        assert!(html.contains("&lt;new&gt;") && html.contains("3 &amp; 4"));
        assert!(html.contains("<img src=\"c/1.png\"") && html.contains("href=\"c/1.fits\""));
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    }
}
