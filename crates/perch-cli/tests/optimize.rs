//! `perch optimize`: the smallest variant within the budget is kept, the report says why, and
//! bad settings or an impossible budget are clear errors that leave no output.

mod common;
use common::{assert_one_line_error, perch, smollm2};

const TEXT: &str = "/usr/share/common-licenses/GPL-3";

#[test]
fn keeps_the_smallest_variant_within_the_budget_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let out = dir.path().join("best.gguf");
    let run = |max_kld: &str| {
        perch(&[
            "optimize",
            &smollm2(),
            "-f",
            TEXT,
            "--max-kld",
            max_kld,
            "--types",
            "Q8_0,Q5_0,Q4_0",
            "-c",
            "128",
            "--chunks",
            "2",
            "--gen-tokens",
            "4",
            "--report-dir",
            report.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
    };
    let o = run("0.5");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    let variants = r["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 3);
    // The report's own numbers decide: the smallest file among those within the budget.
    let within: Vec<&serde_json::Value> = variants
        .iter()
        .filter(|v| v["kld_mean"].as_f64().unwrap() <= 0.5)
        .collect();
    assert_eq!(
        within.len(),
        variants
            .iter()
            .filter(|v| v["within_budget"].as_bool().unwrap())
            .count()
    );
    let best = within
        .iter()
        .min_by_key(|v| v["bytes"].as_u64().unwrap())
        .expect("Q8_0 of the same weights is within 0.5 nats");
    assert_eq!(r["chosen"], best["ftype"]);
    // Quality falls with size.
    let kld = |t: &str| {
        variants.iter().find(|v| v["ftype"] == t).unwrap()["kld_mean"]
            .as_f64()
            .unwrap()
    };
    assert!(
        kld("Q8_0") < kld("Q5_0") && kld("Q5_0") < kld("Q4_0"),
        "{r}"
    );
    // The kept file is the chosen type, complete; the other candidates are gone.
    let f = perch_gguf::GgufFile::open(&out).unwrap();
    let ftype = perch_convert::FileType::from_name(best["ftype"].as_str().unwrap()).unwrap();
    assert_eq!(
        f.metadata().get_u32("general.file_type").unwrap(),
        ftype.id()
    );
    assert_eq!(f.len(), best["bytes"].as_u64().unwrap());
    let mut left: Vec<String> = std::fs::read_dir(&report)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["chart.svg", "report.json", "report.md"]);
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("**chosen**"), "{md}");
    let svg = std::fs::read_to_string(report.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<circle").count() == 3);

    // A budget nothing meets: an error naming the best candidate, no output file.
    std::fs::remove_file(&out).unwrap();
    let o = run("1e-9");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no candidate is within mean KLD"), "{err}");
    assert!(!out.exists());
}

#[test]
fn bad_settings_are_one_clear_line() {
    let m = smollm2();
    assert_one_line_error(
        &["optimize", &m, "-f", TEXT, "--max-kld=-1"],
        "--max-kld must be a positive number",
    );
    assert_one_line_error(
        &[
            "optimize",
            &m,
            "-f",
            TEXT,
            "--max-kld",
            "0.1",
            "--types",
            "Q4_0,Q9_9",
        ],
        "unknown file type \"Q9_9\"",
    );
    assert_one_line_error(
        &[
            "optimize",
            &m,
            "-f",
            "/nonexistent/text",
            "--max-kld",
            "0.1",
        ],
        "/nonexistent/text",
    );
}
