//! `nino spectrum`: plot written, elbow printed, and the count agrees with the rule on the build-time table.

use nino_core::Task;
use nino_core::spectral::{builtin, lpe_elbow};
use std::process::Command;

#[test]
fn prints_the_elbow_of_the_builtin_spectrum_and_writes_the_plot() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("s.png");
    let out = Command::new(env!("CARGO_BIN_EXE_nino"))
        .args(["spectrum", "--task", "fm16", "--out", png.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // The run-time f64 solver and the baked f32 table must lead the rule to the same count.
    let table = builtin(&Task::Fm16.arch()).unwrap();
    let k = lpe_elbow(table.eigenvalues).unwrap();
    assert!(text.contains(&format!("LPE count {k}\n")), "{text}");
    assert!(text.starts_with("fm16: 95 nodes; smallest eigenvalues 0.0000, "), "{text}"); // 95: golden fm16.json
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    for args in [&["spectrum", "--arch", "conv:"][..], &["spectrum", "--task", "fm16", "--show", "1"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_nino")).args(args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}
