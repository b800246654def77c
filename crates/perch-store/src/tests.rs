use std::path::PathBuf;

use perch_gguf::GgufBuilder;
use sha2::{Digest, Sha256};

use super::*;

fn tiny_gguf(dir: &Path, name: &str, arch: &str) -> PathBuf {
    let p = dir.join(name);
    GgufBuilder::new()
        .kv("general.architecture", arch)
        .write(&p)
        .expect("a tiny GGUF writes");
    p
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn names_are_validated() {
    assert_eq!(ModelName::parse("smol").unwrap().to_string(), "smol:latest");
    assert_eq!(ModelName::parse("smol:q4_1").unwrap().tag, "q4_1");
    for bad in [
        "",
        "../etc",
        "a//b",
        "a/../b",
        "/a",
        "a/",
        "a/b/c/d/e",
        ".hidden",
        "x:",
        ":x",
        "a:b:c",
        "a b",
        "a\\b",
        "-x",
        "x:../y",
    ] {
        assert!(ModelName::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert!(ModelName::parse(&"a".repeat(129)).is_err());
    let ns = ModelName::parse("hf.co/owner/Repo-GGUF:Q4_K_M").unwrap();
    assert_eq!(
        (ns.name.as_str(), ns.tag.as_str()),
        ("hf.co/owner/Repo-GGUF", "Q4_K_M")
    );
}

#[test]
fn import_copies_hashes_lists_and_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("home"));
    let src = tiny_gguf(tmp.path(), "m.gguf", "llama");
    let bytes = fs::read(&src).unwrap();
    let e = store.import(&src, "tiny", true).unwrap();
    assert_eq!(e.name.to_string(), "tiny:latest");
    assert_eq!(e.manifest.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(e.manifest.size, bytes.len() as u64);
    assert_eq!(fs::read(&e.path).unwrap(), bytes, "the blob is a copy");
    assert!(e.path.starts_with(store.root().join("blobs")));
    assert_eq!(
        files_in(&store.root().join("blobs")),
        [format!("sha256-{}", e.manifest.sha256)],
        "no temporary files left"
    );

    let c = store.copy("tiny", "tiny:v2").unwrap();
    assert_eq!(c.path, e.path, "copies share the blob");
    let names: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["tiny:latest", "tiny:v2"]);

    store.remove("tiny").unwrap();
    assert!(e.path.is_file(), "still used by tiny:v2");
    assert!(matches!(store.get("tiny"), Err(StoreError::NotFound(_))));
    store.remove("tiny:v2").unwrap();
    assert!(!e.path.exists(), "the last user removed the blob");
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(
        store.remove("tiny:v2"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn import_in_place_and_a_missing_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("home"));
    let src = tiny_gguf(tmp.path(), "m.gguf", "llama");
    let e = store.import(&src, "inplace", false).unwrap();
    assert_eq!(e.path, fs::canonicalize(&src).unwrap());
    assert!(!store.root().join("blobs").exists());
    fs::remove_file(&src).unwrap();
    let err = store.get("inplace").unwrap_err();
    assert!(matches!(err, StoreError::MissingBlob { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    // It can still be removed.
    store.remove("inplace").unwrap();
}

#[test]
fn only_gguf_files_are_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("home"));
    let junk = tmp.path().join("junk.gguf");
    fs::write(&junk, b"not a gguf at all").unwrap();
    let err = store.import(&junk, "junk", true).unwrap_err();
    assert!(matches!(err, StoreError::NotGguf { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(files_in(&store.root().join("blobs")).is_empty());
}

#[test]
fn a_tampered_manifest_cannot_point_outside_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("home"));
    let src = tiny_gguf(tmp.path(), "m.gguf", "llama");
    let e = store.import(&src, "x", true).unwrap();
    let mut m = e.manifest.clone();
    m.sha256 = "../../../../etc/passwd".into();
    store
        .write_manifest(&ModelName::parse("x").unwrap(), &m)
        .unwrap();
    assert!(matches!(
        store.get("x"),
        Err(StoreError::BadManifest { .. })
    ));
}

#[test]
fn modelfiles_parse() {
    let mf = parse_modelfile(
        "# a comment\nFROM ./m.gguf\nPARAMETER temperature 0.2\nPARAMETER stop \"<|im_end|>\"\nPARAMETER stop END\nPARAMETER num_ctx 2048\nSYSTEM \"\"\"You are\nterse.\"\"\"\n",
    )
    .unwrap();
    assert_eq!(mf.from, "./m.gguf");
    assert_eq!(mf.parameters["temperature"], serde_json::json!(0.2));
    assert_eq!(
        mf.parameters["stop"],
        serde_json::json!(["<|im_end|>", "END"])
    );
    assert_eq!(mf.parameters["num_ctx"], serde_json::json!(2048));
    assert_eq!(mf.system.as_deref(), Some("You are\nterse."));

    let err = |t: &str| parse_modelfile(t).unwrap_err().to_string();
    assert!(err("PARAMETER temperature 1").contains("FROM"));
    assert!(err("FROM x\nPARAMETER warp 9").contains("unknown PARAMETER `warp`"));
    assert!(err("FROM x\nPARAMETER top_k lots").contains("line 2"));
    // Ollama Go templates are taken (perch-template renders them).
    let go = parse_modelfile("FROM x\nTEMPLATE \"\"\"{{ .System }} {{ .Prompt }}\"\"\"").unwrap();
    assert_eq!(go.template.as_deref(), Some("{{ .System }} {{ .Prompt }}"));
    assert!(err("FROM x\nSYSTEM \"\"\"open").contains("unterminated"));
    assert!(err("FROM x\nFLY away").contains("unknown instruction"));
}

#[test]
fn create_from_a_file_or_from_another_model() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("home"));
    tiny_gguf(tmp.path(), "m.gguf", "llama");
    let mf = parse_modelfile("FROM m.gguf\nPARAMETER temperature 0.1\nSYSTEM Be brief.").unwrap();
    let base = store.create("base", &mf, tmp.path()).unwrap();
    assert_eq!(base.manifest.system.as_deref(), Some("Be brief."));
    assert_eq!(base.manifest.source, Source::Blob);

    let mf = parse_modelfile("FROM base\nPARAMETER top_k 5").unwrap();
    let derived = store.create("derived:v1", &mf, tmp.path()).unwrap();
    assert_eq!(derived.path, base.path);
    assert_eq!(derived.manifest.system.as_deref(), Some("Be brief."));
    assert_eq!(
        derived.manifest.parameters["temperature"],
        serde_json::json!(0.1)
    );
    assert_eq!(derived.manifest.parameters["top_k"], serde_json::json!(5));

    let mf = parse_modelfile("FROM nothing-here").unwrap();
    assert!(matches!(
        store.create("z", &mf, tmp.path()),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn resolve_prefers_existing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::at(tmp.path().join("home"));
    let src = tiny_gguf(tmp.path(), "m.gguf", "llama");
    assert!(store.resolve(src.to_str().unwrap()).unwrap().is_none());
    store.import(&src, "named", true).unwrap();
    assert!(store.resolve("named").unwrap().is_some());
    assert!(store.resolve("unknown").is_err());
}

/// What a kill in the middle of an import or a manifest write leaves behind: partial files
/// under their temporary names. They are never listed or found as models, and
/// `sweep_partials` removes them (only once they are old enough not to be a live write).
#[test]
fn leftovers_of_a_killed_write_are_invisible_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("store"));
    let src = tiny_gguf(dir.path(), "m.gguf", "llama");
    store.import(&src, "good", true).unwrap();
    let blobs = store.root().join("blobs");
    let mdir = store.root().join("manifests").join("half");
    fs::create_dir_all(&mdir).unwrap();
    // A half-copied blob and a half-written manifest, as tempfile names them.
    fs::write(
        blobs.join(format!("{PARTIAL_PREFIX}a1b2c3")),
        b"GGUF\x03\0\0\0 half",
    )
    .unwrap();
    fs::write(
        mdir.join(format!("{PARTIAL_PREFIX}x9")),
        b"{\"source\": \"bl",
    )
    .unwrap();
    let names: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["good:latest"]);
    assert!(matches!(store.get("half"), Err(StoreError::NotFound(_))));
    // Fresh partials may belong to a running write: kept.
    assert!(
        store
            .sweep_partials(std::time::Duration::from_secs(60))
            .unwrap()
            .is_empty()
    );
    let removed = store.sweep_partials(std::time::Duration::ZERO).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        !files_in(&blobs)
            .iter()
            .any(|f| f.starts_with(PARTIAL_PREFIX))
    );
    assert!(store.get("good").is_ok());
}

#[test]
fn a_changed_or_truncated_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("store"));
    let src = tiny_gguf(dir.path(), "m.gguf", "llama");
    let e = store.import(&src, "m", true).unwrap();
    let v = store.verify("m").unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.actual, e.manifest.sha256);

    // Same size, one byte flipped: only the hash sees it.
    let mut bytes = fs::read(&e.path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&e.path, &bytes).unwrap();
    assert!(store.get("m").is_ok());
    let v = store.verify("m").unwrap();
    assert!(!v.ok);
    assert_ne!(v.actual, v.expected);

    // Truncated: the size check on every lookup sees it.
    fs::write(&e.path, &bytes[..bytes.len() / 2]).unwrap();
    let err = store.get("m").unwrap_err();
    assert!(matches!(err, StoreError::SizeChanged { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("truncated") && msg.contains(&bytes.len().to_string()),
        "{msg}"
    );
    fs::remove_file(&e.path).unwrap();
    assert!(matches!(
        store.verify("m"),
        Err(StoreError::MissingBlob { .. })
    ));
}
