//! The store commands as a user types them: import, list, show, cp, create, rm, and running a
//! model by its name.

use std::path::Path;
use std::process::{Command, Output};

fn perch(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(args)
        .env("PERCH_HOME", home)
        .env("PERCH_LOG", "error")
        .output()
        .expect("perch runs")
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = perch(home, args);
    assert!(
        out.status.success(),
        "perch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn import_list_show_copy_create_run_and_remove() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let smol = perch_fixtures::smollm2_q4_1();
    let smol = smol.to_str().unwrap();
    ok(h, &["import", smol, "smol", "--no-copy"]);
    let list = ok(h, &["list"]);
    assert!(list.contains("smol:latest"), "{list}");
    let show = ok(h, &["show", "smol"]);
    assert!(show.contains("referenced in place"), "{show}");

    // A model is run by its name.
    let out = ok(
        h,
        &[
            "run",
            "smol",
            "The capital of France is",
            "--raw",
            "--temp",
            "0",
            "-n",
            "4",
        ],
    );
    assert!(out.contains("Paris"), "{out}");

    ok(h, &["cp", "smol", "smol:copy"]);
    std::fs::write(
        h.join("Modelfile"),
        "FROM smol\nPARAMETER temperature 0.3\nSYSTEM Be brief.\n",
    )
    .unwrap();
    ok(
        h,
        &[
            "create",
            "brief",
            "-f",
            h.join("Modelfile").to_str().unwrap(),
        ],
    );
    let show = ok(h, &["show", "brief"]);
    assert!(
        show.contains("parameter   temperature 0.3") && show.contains("Be brief."),
        "{show}"
    );
    // `perch run` applies a stored model's parameters, system prompt and Go template: the
    // same answer as the base model with those given as flags.
    std::fs::write(
        h.join("Modelfile.go"),
        "FROM smol\nPARAMETER temperature 0\nPARAMETER num_predict 8\nSYSTEM You are a helpful assistant.\nTEMPLATE \"\"\"{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n\"\"\"\n",
    )
    .unwrap();
    ok(
        h,
        &[
            "create",
            "stored",
            "-f",
            h.join("Modelfile.go").to_str().unwrap(),
        ],
    );
    let stored = ok(h, &["run", "stored", "What is the capital of France?"]);
    let flags = ok(
        h,
        &[
            "run",
            "smol",
            "What is the capital of France?",
            "--system",
            "You are a helpful assistant.",
            "--temp",
            "0",
            "-n",
            "8",
        ],
    );
    assert_eq!(stored, flags);
    assert!(stored.contains("Paris"), "{stored}");
    ok(h, &["rm", "stored"]);

    let list = ok(h, &["list"]);
    for n in ["smol:latest", "smol:copy", "brief:latest"] {
        assert!(list.contains(n), "{n} missing: {list}");
    }
    ok(h, &["rm", "smol:copy", "brief"]);
    let list = ok(h, &["list"]);
    assert!(
        !list.contains("smol:copy") && !list.contains("brief"),
        "{list}"
    );

    // Clear errors.
    let out = perch(h, &["show", "../x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid model name"));
    let out = perch(h, &["run", "nothing-here", "hi"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither a file nor a model in the store")
    );
}
