//! Test support shared by the crates that drive HOTPANTS (diffim, diffim-cli): a stand-in
//! executable, so that their tests need no real HOTPANTS. Not part of the API.

/// A stand-in for HOTPANTS (POSIX shell): checks that its inputs (`-inim`, `-tmplim`, `-ini`,
/// `-imi`, and `-ssf` when given) exist, then copies them to the outputs (diff = science,
/// conv = template, noise = science noise, mask = science mask) and prints `SUCCESS`. With
/// `FAIL=1` in its environment it fails like HOTPANTS does (message on stderr, status 1).
pub const STAND_IN_SCRIPT: &str = include_str!("../testdata/stand-in-hotpants.sh");

/// Writes [`STAND_IN_SCRIPT`] as an executable `hotpants` into `dir` and returns its path.
///
/// # Errors
/// Writing the file or setting its permissions.
#[cfg(unix)]
pub fn write_stand_in(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("hotpants");
    std::fs::write(&p, STAND_IN_SCRIPT)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    Ok(p)
}
