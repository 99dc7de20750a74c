//! Where tests and benches find the real datasets (one rule for the whole workspace).
//!
//! A file `sub` (a path under the mirror, e.g. `properimage/aligned_eso085-030-004.fit`) is
//! looked up in `$DIFFIM_DATA/<sub>` when `DIFFIM_DATA` is set, else in
//! `<workspace>/data/real/<sub>`, where `cargo xtask fetch-data` puts it.

use std::path::PathBuf;

/// The folder real datasets are read from: `$DIFFIM_DATA`, else `<workspace>/data/real`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("DIFFIM_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/real"),
    }
}

/// The path of real data file `sub` if it exists. When it is missing: under `CI=true` this
/// panics (a test must fail rather than skip in CI); otherwise it prints a note saying how to
/// fetch the data and returns `None`, so the caller can return early.
///
/// # Panics
/// When the file is missing and the environment variable `CI` is `true`.
pub fn real_data(sub: &str) -> Option<PathBuf> {
    let p = data_dir().join(sub);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "real data file missing in CI: {} (run `cargo xtask fetch-data`)",
            p.display()
        );
    }
    eprintln!(
        "note: {} not found; skipped (run `cargo xtask fetch-data`)",
        p.display()
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_folder_is_under_the_workspace() {
        if std::env::var_os("DIFFIM_DATA").is_none() {
            let d = data_dir();
            assert!(d.ends_with("data/real"), "{}", d.display());
            assert!(
                d.join("../../Cargo.toml").exists(),
                "workspace root above data/real"
            );
        }
    }
}
