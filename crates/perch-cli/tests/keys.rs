//! `perch keys`: a generated key is printed once, stored only as its sha256 (checked against
//! coreutils' `sha256sum`) in a 0600 file, listed without secrets and removed; and
//! `perch serve --api-key-file` accepts it with its role.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{assert_one_line_error, perch, stdout};

fn sha256sum(text: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn add_list_and_remove_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let f = file.to_str().unwrap();
    let out = perch(&["keys", "add", "alice", "--role", "admin", "--key-file", f]);
    let alice = stdout(&out).trim().to_string();
    assert!(alice.starts_with("perch-") && alice.len() == 54, "{alice}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only now"));
    let out = perch(&[
        "keys",
        "add",
        "bob",
        "--key-file",
        f,
        "--rpm",
        "60",
        "--tpm",
        "10000",
    ]);
    let bob = stdout(&out).trim().to_string();
    assert_ne!(alice, bob);

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&alice) && !text.contains(&bob),
        "secrets stored: {text}"
    );
    assert!(
        text.contains(&format!("alice admin {}\n", sha256sum(&alice))),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "bob inference {} rpm=60 tpm=10000\n",
            sha256sum(&bob)
        )),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let list = stdout(&perch(&["keys", "list", "--key-file", f]));
    assert!(list.contains("alice") && list.contains("admin") && list.contains("10000"));
    assert!(!list.contains(&alice));

    assert_one_line_error(
        &["keys", "add", "alice", "--key-file", f],
        "already has a key named `alice`",
    );
    assert_one_line_error(
        &["keys", "add", "carol", "--role", "root", "--key-file", f],
        "unknown role `root`",
    );
    stdout(&perch(&["keys", "rm", "alice", "--key-file", f]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("alice") && text.contains("bob"));
    assert_one_line_error(&["keys", "rm", "alice", "--key-file", f], "no key named");
}

#[test]
fn a_broken_key_file_stops_serve_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, "# ok\nalice admin not-a-hash\n").unwrap();
    let model = common::smollm2();
    assert_one_line_error(
        &[
            "serve",
            "--model",
            &model,
            "--api-key-file",
            file.to_str().unwrap(),
        ],
        "keys:2",
    );
}
