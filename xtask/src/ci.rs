//! `cargo xtask ci`: the project's whole check, the one command the README, `.ci/run` and
//! the GitHub workflow all run.
//!
//! Steps: fixtures (a fast no-op when present), `cargo fmt --check`, clippy on every target
//! with `-D warnings`, every test with cargo-nextest, then the doc tests (nextest does not
//! run those), then a reduced `cargo xtask bench serve --soak` (8 clients, 40 requests). Clippy,
//! nextest and the doc tests all use the `ci` profile (optimized, with
//! debug assertions), so build scripts and proc macros are compiled once for all three.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// One command of the check, as shown to the user.
struct Step {
    what: &'static str,
    args: &'static [&'static str],
}

/// The steps after the fixtures, in order.
const STEPS: &[Step] = &[
    Step {
        what: "format",
        args: &["fmt", "--all", "--check"],
    },
    Step {
        what: "lint",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--profile",
            "ci",
            "--",
            "-D",
            "warnings",
        ],
    },
    Step {
        what: "tests",
        args: &[
            "nextest",
            "run",
            "--workspace",
            "--cargo-profile",
            "ci",
            "--no-fail-fast",
        ],
    },
    Step {
        what: "doc tests",
        args: &["test", "--workspace", "--doc", "--profile", "ci"],
    },
    Step {
        what: "serve soak (reduced: 8 clients, 40 requests, a tenth dropped)",
        args: &[
            "run",
            "--profile",
            "ci",
            "-p",
            "xtask",
            "--",
            "bench",
            "serve",
            "--soak",
            "--clients",
            "8",
            "--requests",
            "40",
            "--max-tokens",
            "16",
            "--out",
            "target/soak-ci",
        ],
    },
];

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Runs the whole check; fails at the first failing step, naming it.
pub fn run() -> Result<()> {
    let started = std::time::Instant::now();
    println!("==> fixtures: cargo xtask fixtures");
    crate::fixtures::run(false).context("step `fixtures` failed")?;
    ensure_nextest()?;
    for step in STEPS {
        println!("==> {}: cargo {}", step.what, step.args.join(" "));
        let status = Command::new(cargo())
            .args(step.args)
            .status()
            .with_context(|| format!("running cargo {}", step.args.join(" ")))?;
        if !status.success() {
            bail!(
                "step `{}` failed ({status}): cargo {}",
                step.what,
                step.args.join(" ")
            );
        }
        println!(
            "==> {}: passed ({:.0?} since start)",
            step.what,
            started.elapsed()
        );
    }
    println!("==> ci: all steps passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Installs cargo-nextest with `cargo install --locked` when it is missing.
fn ensure_nextest() -> Result<()> {
    let have = Command::new(cargo())
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    println!("==> cargo-nextest is missing: cargo install --locked cargo-nextest");
    let status = Command::new(cargo())
        .args(["install", "--locked", "cargo-nextest"])
        .status()
        .context("running cargo install cargo-nextest")?;
    if !status.success() {
        bail!("could not install cargo-nextest ({status}); install it yourself and retry");
    }
    Ok(())
}
