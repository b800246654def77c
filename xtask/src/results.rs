//! Where the bench subcommands put their results: `results/<kind>-<unix time>.{json,md,svg}`
//! at the workspace root, each file written to a temporary name and renamed.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes `body` to `path` through a temporary file in the same folder.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let r = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    r.with_context(|| format!("writing {}", path.display()))
}

/// Writes `<dir>/<stem>.json`, `.md` and `.svg`; returns the common base path.
pub fn save_in(
    dir: &Path,
    stem: &str,
    json: &impl Serialize,
    markdown: &str,
    svg: &str,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = dir.join(stem);
    let with = |ext: &str| {
        let mut p = base.clone().into_os_string();
        p.push(".");
        p.push(ext);
        PathBuf::from(p)
    };
    write_atomic(
        &with("json"),
        serde_json::to_string_pretty(json)?.as_bytes(),
    )?;
    write_atomic(&with("md"), markdown.as_bytes())?;
    write_atomic(&with("svg"), svg.as_bytes())?;
    eprintln!("==> wrote {}.{{json,md,svg}}", base.display());
    Ok(base)
}

/// Writes `results/<kind>-<unix time>.{json,md,svg}` under the workspace root.
pub fn save(kind: &str, json: &impl Serialize, markdown: &str, svg: &str) -> Result<PathBuf> {
    let dir = perch_fixtures::workspace_root().join("results");
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    save_in(&dir, &format!("{kind}-{stamp}"), json, markdown, svg)
}
