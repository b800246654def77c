//! Faults on the model store and on written files, with the real binary:
//! - SIGKILL in the middle of `perch import` leaves the store consistent: the half-copied
//!   blob sits under a temporary name, is never visible as a model, and `perch verify`
//!   removes it once it is stale;
//! - a full disk (RLIMIT_FSIZE through bash's `ulimit -f`, with SIGXFSZ ignored so writes
//!   fail with EFBIG as on a full file system) during import and quantize is one clear error
//!   and leaves no partial file;
//! - an unwritable folder (the child runs as `nobody`) is one clear error;
//! - a model file truncated or changed after import is caught on load and by `perch verify`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

const PARTIAL: &str = ".partial-";

fn perch_cmd(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perch"));
    c.env("PERCH_HOME", home).env("PERCH_LOG", "error");
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    perch_cmd(home).args(args).output().expect("perch runs")
}

/// `perch args` with the file-size limit at `kib` KiB and SIGXFSZ ignored.
fn run_limited(home: &Path, kib: u64, args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_perch"))
        .args(args)
        .env("PERCH_HOME", home)
        .env("PERCH_LOG", "error")
        .output()
        .expect("bash runs")
}

fn one_line_error(o: &Output, expect: &[&str]) -> String {
    assert!(!o.status.success(), "should have failed");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for e in expect {
        assert!(err.contains(e), "{err:?} should mention {e:?}");
    }
    err
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| f.starts_with(PARTIAL))
        .map(|f| dir.join(f))
        .collect()
}

#[test]
fn sigkill_mid_import_leaves_the_store_consistent() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let smol = perch_fixtures::smollm2_q4_1();
    let blobs = h.join("blobs");
    // Kill the import as soon as its partial blob appears; the copy of 98 MB takes far longer
    // than the 1 ms polling, but try a few times in case the machine is very fast.
    let mut caught = None;
    for attempt in 0..5 {
        let name = format!("killed{attempt}");
        let mut child = perch_cmd(h)
            .args(["import", smol.to_str().unwrap(), &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = loop {
            let p = partials(&blobs);
            if p.iter()
                .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
            {
                break true;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if seen {
            caught = Some(name);
            break;
        }
        assert!(run(h, &["rm", &name]).status.success());
    }
    let name = caught.expect("never caught the import mid-copy");
    let left = partials(&blobs);
    assert_eq!(left.len(), 1, "{left:?}");
    // Not a model: not listed, not found, and no manifest names it.
    let list = run(h, &["list"]);
    assert!(list.status.success());
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    let o = run(h, &["show", &name]);
    one_line_error(&o, &["not found"]);
    assert!(files(&blobs).iter().all(|f| f.starts_with(PARTIAL)));
    // `perch verify` keeps a fresh partial (it could be a live write) and removes a stale one.
    let o = run(h, &["verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(partials(&blobs), left);
    std::fs::File::options()
        .write(true)
        .open(&left[0])
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let o = run(h, &["verify"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("removed an unfinished write"));
    assert!(partials(&blobs).is_empty());
    // The store still works.
    assert!(
        run(h, &["import", smol.to_str().unwrap(), &name])
            .status
            .success()
    );
    let o = run(h, &["verify", &name]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("  ok  sha256:"));
}

#[test]
fn a_full_disk_during_import_is_a_clear_error_without_partial_files() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let smol = perch_fixtures::smollm2_q4_1();
    let o = run_limited(h, 8192, &["import", smol.to_str().unwrap(), "full"]);
    one_line_error(&o, &["File too large", "blobs"]);
    assert!(
        files(&h.join("blobs")).is_empty(),
        "{:?}",
        files(&h.join("blobs"))
    );
    assert!(!h.join("manifests/full").exists());
}

#[test]
fn a_full_disk_during_quantize_is_a_clear_error_without_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q8.gguf");
    let smol = perch_fixtures::smollm2_q4_1();
    let o = run_limited(
        dir.path(),
        8192,
        &[
            "quantize",
            "--allow-requantize",
            smol.to_str().unwrap(),
            out.to_str().unwrap(),
            "Q8_0",
        ],
    );
    one_line_error(&o, &["File too large"]);
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[test]
fn an_unwritable_folder_is_a_clear_error() {
    // Root ignores permissions: the child runs as nobody.
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let smol = perch_fixtures::smollm2_q4_1();
    let out = ro.join("q8.gguf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perch"));
    cmd.args([
        "quantize",
        "--allow-requantize",
        smol.to_str().unwrap(),
        out.to_str().unwrap(),
        "Q8_0",
    ])
    .env("PERCH_LOG", "error");
    if nix_is_root() {
        cmd.uid(65534).gid(65534);
    }
    let o = cmd.output().unwrap();
    one_line_error(&o, &["Permission denied", "ro"]);
    assert!(files(&ro).is_empty());
    // The store folder too.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perch"));
    cmd.args(["import", smol.to_str().unwrap(), "x"])
        .env("PERCH_HOME", &ro)
        .env("PERCH_LOG", "error");
    if nix_is_root() {
        cmd.uid(65534).gid(65534);
    }
    one_line_error(&cmd.output().unwrap(), &["Permission denied"]);
    assert!(files(&ro).is_empty());
}

/// Whether this test runs as root (then it must drop to another user to meet permissions).
fn nix_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[test]
fn a_truncated_or_changed_model_file_is_detected() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let smol = perch_fixtures::smollm2_q4_1();
    assert!(
        run(h, &["import", smol.to_str().unwrap(), "smol"])
            .status
            .success()
    );
    let blob = h.join("blobs").join(&files(&h.join("blobs"))[0]);
    let len = std::fs::metadata(&blob).unwrap().len();
    // One byte changed, same size: loading cannot tell, `perch verify` can.
    let mut f = std::fs::File::options().write(true).open(&blob).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    f.seek(SeekFrom::Start(len - 10)).unwrap();
    f.write_all(b"X").unwrap();
    drop(f);
    let o = run(h, &["verify", "smol"]);
    one_line_error(&o, &["1 of 1 models failed verification"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("smol:latest  CHANGED"));
    // Truncated: every use of the model says so.
    std::fs::File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let o = run(h, &["run", "smol", "-n", "1", "Hi"]);
    one_line_error(&o, &["truncated", &len.to_string()]);
    let o = run(h, &["serve", "--model", "smol", "--port", "0"]);
    one_line_error(&o, &["truncated"]);
    let o = run(h, &["verify"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("smol:latest  CHANGED"));
}
