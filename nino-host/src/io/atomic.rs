//! Crash-safe file writes: temporary file, fsync, rename.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically, so a crash leaves either the old file or the new one, never half
/// of it: a temporary file in the same directory, fsync, then rename over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".nino-tmp-");
    // Temporary files are private (0600) by default; the result is an ordinary file others may read.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable; not every filesystem lets a directory be fsynced, so ignore that.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Kill tests' hook: when the environment variable `var` holds `n`, prints `holding after {var}={n}` on
/// stderr and waits forever, so a test kills the process at a known point (right after a durable write)
/// instead of after a sleep that a fast machine outruns. Unset or another value: returns at once. Used by
/// `nino train` after each checkpoint (`NINO_TEST_HOLD_AFTER_CHECKPOINT=STEP`) and `nino collect` after each
/// manifest write (`NINO_TEST_HOLD_AFTER_TRAJECTORIES=COUNT`).
pub fn hold_for_kill(var: &str, n: u64) {
    if std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok()) == Some(n) {
        eprintln!("holding after {var}={n}: waiting to be killed");
        loop {
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        write_atomic(&p, b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        write_atomic(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.csv")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        }
    }

    #[test]
    fn missing_directory_is_an_error_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/x.json");
        assert!(write_atomic(&p, b"{}").is_err());
        assert!(!p.exists());
    }
}
