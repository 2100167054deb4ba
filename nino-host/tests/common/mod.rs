//! Helpers shared by the integration tests that run the `nino` binary (each test file uses a subset).
#![allow(dead_code)]

use std::process::Output;

/// Asserts a failed run: non-zero exit, no panic, exactly one stderr line starting `error:` holding every needle.
pub fn assert_one_line_error_all(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` not in: {err}");
    }
}

/// [`assert_one_line_error_all`] with one needle.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    assert_one_line_error_all(out, &[needle]);
}

/// Reads `stderr` line by line until one contains `needle`; fails if it ends first (the process exited).
pub fn wait_for_line(stderr: impl std::io::Read, needle: &str) {
    use std::io::BufRead;
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains(needle) {
            return;
        }
        seen.push(line);
    }
    panic!("stderr ended without `{needle}`: {seen:?}");
}
