//! Helpers shared by the tests that run the `perch` binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::process::{Command, Output};

/// Runs `perch` with `args`, capturing its output.
pub fn perch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(args)
        .output()
        .expect("run perch")
}

/// Standard output of a run that must have succeeded.
pub fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "perch failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The SmolLM2 fixture's path.
pub fn smollm2() -> String {
    perch_fixtures::smollm2_q4_1().display().to_string()
}

/// `perch args` fails with one line on stderr that mentions `expect`, and nothing on stdout.
pub fn assert_one_line_error(args: &[&str], expect: &str) {
    let o = perch(args);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(o.stdout.is_empty());
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("perch: "), "{err}");
    assert!(err.contains(expect), "{err:?} should mention {expect:?}");
}

/// Runs `perch` with `args` on the model store at `home`.
pub fn perch_in(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(args)
        .env("PERCH_HOME", home)
        .env("PERCH_LOG", "error")
        .output()
        .expect("perch runs")
}

/// Standard output of `perch args` on the store at `home`, which must succeed.
pub fn ok_in(home: &std::path::Path, args: &[&str]) -> String {
    let out = perch_in(home, args);
    assert!(
        out.status.success(),
        "perch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
