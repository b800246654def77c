//! # perch-store
//!
//! The local model store, like Ollama's: a folder (`$PERCH_HOME`, default
//! `$XDG_DATA_HOME/perch` or `~/.local/share/perch`) holding
//!
//! ```text
//! blobs/sha256-<hex>                 model files, named by their content
//! manifests/<name>/<tag>.json        one manifest per model name
//! ```
//!
//! A manifest names a blob (or, for `import --no-copy`, a file left where it is), its sha256
//! and size, and what the model runs with: default parameters (temperature, stop strings,
//! context size, ...) and a system prompt. Names are `name[:tag]` (tag `latest` by default)
//! made of ASCII letters, digits, `.`, `_` and `-`, so a name can never reach outside the
//! store. Every file is written to a temporary name in its folder and renamed, so an
//! interrupted import or create never leaves a half-written blob or manifest visible.
//!
//! Files are checked to be valid GGUF (perch-gguf's validating reader) before they are
//! imported; the store knows nothing else of what a model holds.
#![deny(missing_docs)]

mod modelfile;
pub mod pull;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use modelfile::{Modelfile, parse_modelfile};

/// Environment variable naming the store folder.
pub const HOME_ENV: &str = "PERCH_HOME";

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A model name is not valid.
    #[error("invalid model name `{name}`: {why}")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// No model has this name.
    #[error("model `{0}` not found in the store (see `perch list`)")]
    NotFound(String),
    /// The model's file is gone.
    #[error("model `{name}`: its file {path} is missing (re-import it)")]
    MissingBlob {
        /// The model.
        name: String,
        /// The missing file.
        path: PathBuf,
    },
    /// A manifest cannot be read.
    #[error("manifest {path} is corrupt: {why}")]
    BadManifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file to import is not a valid GGUF.
    #[error("{path} is not a usable GGUF file: {why}")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A Modelfile cannot be used.
    #[error("Modelfile line {line}: {why}")]
    BadModelfile {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The model's file is not the size it had when it was imported.
    #[error(
        "model `{name}`: its file {path} has {actual} bytes but had {expected} when it was \
         imported; it was changed or truncated (re-import it; `perch verify` checks the sha256)"
    )]
    SizeChanged {
        /// The model.
        name: String,
        /// The file.
        path: PathBuf,
        /// The size in the manifest.
        expected: u64,
        /// The size now.
        actual: u64,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A validated `name:tag`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName {
    /// The name.
    pub name: String,
    /// The tag (`latest` when not given).
    pub tag: String,
}

fn check_part(full: &str, part: &str, what: &'static str) -> Result<(), StoreError> {
    let bad = |why| StoreError::BadName {
        name: full.to_string(),
        why,
    };
    if part.is_empty() {
        return Err(bad(what));
    }
    if part.len() > 128 {
        return Err(bad("longer than 128 characters"));
    }
    if part.starts_with('.') || part.starts_with('-') {
        return Err(bad("must start with a letter, digit or `_`"));
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(bad("only letters, digits, `.`, `_` and `-` are allowed"));
    }
    Ok(())
}

/// Most `/`-separated parts in a name (`hf.co/owner/repo` has three).
const MAX_NAME_PARTS: usize = 4;

impl ModelName {
    /// Parse and validate `name[:tag]`. A name may have `/`-separated parts, as Ollama's
    /// `namespace/model` and pulled `hf.co/owner/repo` names do; each part follows the same
    /// rules, so no part can be `.`, `..` or empty.
    pub fn parse(s: &str) -> Result<ModelName, StoreError> {
        let (name, tag) = match s.split_once(':') {
            Some((n, t)) => (n, t),
            None => (s, "latest"),
        };
        if name.split('/').count() > MAX_NAME_PARTS {
            return Err(StoreError::BadName {
                name: s.to_string(),
                why: "too many `/`-separated parts",
            });
        }
        for part in name.split('/') {
            check_part(s, part, "the name or a `/`-separated part of it is empty")?;
        }
        check_part(s, tag, "the tag is empty")?;
        Ok(ModelName {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// Where a model's file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A blob in the store (`blobs/sha256-<hex>`).
    Blob,
    /// A file outside the store, left where it was imported from.
    Path(PathBuf),
}

/// A model's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Where the file is.
    pub source: Source,
    /// sha256 of the file, lowercase hex.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// Default parameters (Ollama option names: `temperature`, `top_k`, `stop`, `num_ctx`...).
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Default system prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// A chat template (Ollama Go or Jinja) replacing the model's own.
    #[serde(default)]
    pub template: Option<String>,
    /// Messages put before every conversation (Ollama's `MESSAGE` / create `messages`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<serde_json::Value>,
    /// When the manifest was written (seconds since the Unix epoch).
    pub created: u64,
}

impl Manifest {
    /// A manifest for a file with no parameters, system prompt, template or messages, created
    /// now.
    pub fn new(source: Source, sha256: String, size: u64) -> Manifest {
        Manifest {
            source,
            sha256,
            size,
            parameters: BTreeMap::new(),
            system: None,
            template: None,
            messages: Vec::new(),
            created: now(),
        }
    }
}

/// A model in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its name.
    pub name: ModelName,
    /// Its manifest.
    pub manifest: Manifest,
    /// The model file.
    pub path: PathBuf,
}

/// The store folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store at `root` (created when first written to).
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// The store at `$PERCH_HOME`, else `$XDG_DATA_HOME/perch`, else `~/.local/share/perch`.
    pub fn default_location() -> Result<Store, StoreError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let root = if let Some(h) = env(HOME_ENV) {
            PathBuf::from(h)
        } else if let Some(x) = env("XDG_DATA_HOME") {
            PathBuf::from(x).join("perch")
        } else if let Some(home) = env("HOME") {
            PathBuf::from(home).join(".local/share/perch")
        } else {
            return Err(StoreError::Io {
                what: "finding the store folder",
                path: PathBuf::from("$PERCH_HOME"),
                source: io::Error::new(io::ErrorKind::NotFound, "set PERCH_HOME or HOME"),
            });
        };
        Ok(Store::at(root))
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn manifest_path(&self, n: &ModelName) -> PathBuf {
        let mut p = self.root.join("manifests");
        p.extend(n.name.split('/'));
        p.join(format!("{}.json", n.tag))
    }

    /// The file of the blob with this sha256 (lowercase hex), whether or not it exists.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("sha256-{sha256}"))
    }

    /// Whether the blob with this sha256 is in the store.
    pub fn has_blob(&self, sha256: &str) -> bool {
        is_sha256_hex(sha256) && self.blob_path(sha256).is_file()
    }

    /// The folder where unfinished downloads and uploads are kept (`partial/`), created if
    /// needed. It is on the same file system as `blobs/`, so a finished file is renamed in.
    pub fn partial_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join("partial");
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(dir)
    }

    /// Move a finished, already verified file into `blobs/` as the blob `sha256`
    /// (a rename: the blob appears whole or not at all). A blob that is already there stays.
    pub fn install_blob(&self, file: &Path, sha256: &str) -> Result<PathBuf, StoreError> {
        if !is_sha256_hex(sha256) {
            return Err(StoreError::BadManifest {
                path: file.to_path_buf(),
                why: format!("`{sha256}` is not 64 lowercase hex digits"),
            });
        }
        let blobs = self.root.join("blobs");
        fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
        let dest = self.blob_path(sha256);
        if let Ok(f) = File::open(file) {
            f.sync_all().map_err(io_err("writing", file))?;
        }
        fs::rename(file, &dest).map_err(io_err("moving into the store", file))?;
        Ok(dest)
    }

    /// Add the blob `sha256` (already in the store) as `name`, with no parameters.
    pub fn add_blob_model(&self, name: &str, sha256: &str) -> Result<Entry, StoreError> {
        let n = ModelName::parse(name)?;
        let blob = self.blob_path(sha256);
        let size = fs::metadata(&blob)
            .map_err(|_| StoreError::MissingBlob {
                name: n.to_string(),
                path: blob.clone(),
            })?
            .len();
        let manifest = Manifest::new(Source::Blob, sha256.to_string(), size);
        self.write_manifest(&n, &manifest)?;
        self.get(&n.to_string())
    }

    /// Look `name` up.
    pub fn get(&self, name: &str) -> Result<Entry, StoreError> {
        let n = ModelName::parse(name)?;
        let (_, manifest) = self.read_manifest(&n)?;
        let file = match &manifest.source {
            Source::Blob => self.blob_path(&manifest.sha256),
            Source::Path(p) => p.clone(),
        };
        let actual = match fs::metadata(&file) {
            Ok(m) if m.is_file() => m.len(),
            _ => {
                return Err(StoreError::MissingBlob {
                    name: n.to_string(),
                    path: file,
                });
            }
        };
        if actual != manifest.size {
            return Err(StoreError::SizeChanged {
                name: n.to_string(),
                path: file,
                expected: manifest.size,
                actual,
            });
        }
        Ok(Entry {
            name: n,
            manifest,
            path: file,
        })
    }

    fn read_manifest(&self, n: &ModelName) -> Result<(PathBuf, Manifest), StoreError> {
        let path = self.manifest_path(n);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(n.to_string()));
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| StoreError::BadManifest {
                path: path.clone(),
                why: e.to_string(),
            })?;
        // The hash names a file in blobs/: it must not be able to name anything else.
        if !is_sha256_hex(&manifest.sha256) {
            return Err(StoreError::BadManifest {
                path,
                why: "sha256 is not 64 lowercase hex digits".into(),
            });
        }
        Ok((path, manifest))
    }

    /// Every model, sorted by name. Manifests that cannot be read are skipped with a warning.
    pub fn list(&self) -> Result<Vec<Entry>, StoreError> {
        let dir = self.root.join("manifests");
        let mut out = Vec::new();
        match fs::read_dir(&dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("listing", &dir)(e)),
        }
        // manifests/<part>/.../<part>/<tag>.json: walk the name folders (a few levels deep).
        let mut pending = vec![(dir, String::new(), 0usize)];
        while let Some((folder, prefix, depth)) = pending.pop() {
            let Ok(items) = fs::read_dir(&folder) else {
                continue;
            };
            for item in items.flatten() {
                let p = item.path();
                let Some(file_name) = item.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if p.is_dir() {
                    if depth < MAX_NAME_PARTS {
                        let name = if prefix.is_empty() {
                            file_name
                        } else {
                            format!("{prefix}/{file_name}")
                        };
                        pending.push((p, name, depth + 1));
                    }
                    continue;
                }
                let Some(tag) = file_name.strip_suffix(".json") else {
                    continue;
                };
                if prefix.is_empty() {
                    continue;
                }
                match self.get(&format!("{prefix}:{tag}")) {
                    Ok(e) => out.push(e),
                    Err(e) => tracing::warn!(error = %e, "skipping a model in the store"),
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Add `file` as `name`: copied into the blob store (hashing while copying), or, with
    /// `copy = false`, hashed and referenced where it is. The file must be a valid GGUF.
    pub fn import(&self, file: &Path, name: &str, copy: bool) -> Result<Entry, StoreError> {
        let n = ModelName::parse(name)?;
        perch_gguf::GgufFile::open(file).map_err(|e| StoreError::NotGguf {
            path: file.to_path_buf(),
            why: e.to_string(),
        })?;
        let (sha256, size) = if copy {
            let blobs = self.root.join("blobs");
            fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
            let (tmp, sha, size) = copy_hashing(file, &blobs)?;
            let dest = self.blob_path(&sha);
            tmp.persist(&dest).map_err(|e| StoreError::Io {
                what: "writing",
                path: dest.clone(),
                source: e.error,
            })?;
            (sha, size)
        } else {
            hash_file(file)?
        };
        let source = if copy {
            Source::Blob
        } else {
            Source::Path(fs::canonicalize(file).map_err(io_err("resolving", file))?)
        };
        let manifest = Manifest::new(source, sha256, size);
        self.write_manifest(&n, &manifest)?;
        self.get(&n.to_string())
    }

    /// Write `manifest` as `name` (atomically).
    pub fn write_manifest(&self, n: &ModelName, manifest: &Manifest) -> Result<(), StoreError> {
        let path = self.manifest_path(n);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError::BadManifest {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let mut tmp = partial_file(&dir)?;
        tmp.as_file_mut()
            .write_all(&text)
            .map_err(io_err("writing", &path))?;
        tmp.as_file().sync_all().map_err(io_err("writing", &path))?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            what: "writing",
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Create `name` from a Modelfile. `FROM` is a GGUF file (relative to `base_dir`), which
    /// is imported, or a model in the store, whose file, parameters, system prompt and
    /// template are the starting point; the Modelfile's own settings override them.
    pub fn create(&self, name: &str, mf: &Modelfile, base_dir: &Path) -> Result<Entry, StoreError> {
        let n = ModelName::parse(name)?;
        let from_path = base_dir.join(&mf.from);
        let mut manifest = if from_path.is_file() {
            self.import(&from_path, &n.to_string(), true)?.manifest
        } else if ModelName::parse(&mf.from).is_ok() {
            self.get(&mf.from)?.manifest
        } else {
            return Err(StoreError::NotFound(mf.from.clone()));
        };
        for (k, v) in &mf.parameters {
            manifest.parameters.insert(k.clone(), v.clone());
        }
        if mf.system.is_some() {
            manifest.system = mf.system.clone();
        }
        if mf.template.is_some() {
            manifest.template = mf.template.clone();
        }
        manifest.created = now();
        self.write_manifest(&n, &manifest)?;
        self.get(&n.to_string())
    }

    /// Copy the manifest of `from` to `to` (the blob is shared).
    pub fn copy(&self, from: &str, to: &str) -> Result<Entry, StoreError> {
        let e = self.get(from)?;
        let n = ModelName::parse(to)?;
        self.write_manifest(&n, &e.manifest)?;
        self.get(&n.to_string())
    }

    /// Remove `name`; its blob goes too when no other manifest uses it.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        // A model whose blob is gone can still be removed: read only the manifest.
        let n = ModelName::parse(name)?;
        let (path, manifest) = self.read_manifest(&n)?;
        fs::remove_file(&path).map_err(io_err("removing", &path))?;
        // Empty name folders go too (only when empty; never the manifests folder).
        let manifests = self.root.join("manifests");
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != manifests && d.starts_with(&manifests)) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        if manifest.source == Source::Blob {
            let still_used = self
                .list()?
                .iter()
                .any(|o| o.manifest.source == Source::Blob && o.manifest.sha256 == manifest.sha256);
            if !still_used {
                let blob = self.blob_path(&manifest.sha256);
                fs::remove_file(&blob).or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => Ok(()),
                    _ => Err(io_err("removing", &blob)(e)),
                })?;
            }
        }
        Ok(())
    }

    /// Check `name`'s file against the sha256 in its manifest (reading the whole file).
    pub fn verify(&self, name: &str) -> Result<Verified, StoreError> {
        let n = ModelName::parse(name)?;
        let (_, manifest) = self.read_manifest(&n)?;
        let path = match &manifest.source {
            Source::Blob => self.blob_path(&manifest.sha256),
            Source::Path(p) => p.clone(),
        };
        let (actual, size) = match hash_file(&path) {
            Ok(h) => h,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    name: n.to_string(),
                    path,
                });
            }
            Err(e) => return Err(e),
        };
        Ok(Verified {
            name: n.to_string(),
            path,
            ok: actual == manifest.sha256 && size == manifest.size,
            expected: manifest.sha256,
            actual,
            expected_size: manifest.size,
            size,
        })
    }

    /// Remove the temporary files of writes that never finished (a killed import, create or
    /// copy) and were last modified more than `min_age` ago; returns what was removed.
    /// They are never visible as models: blobs are looked up by their full hash name and
    /// manifests by `<tag>.json`.
    pub fn sweep_partials(&self, min_age: std::time::Duration) -> Result<Vec<PathBuf>, StoreError> {
        let mut dirs = vec![self.root.join("blobs")];
        if let Ok(names) = fs::read_dir(self.root.join("manifests")) {
            dirs.extend(names.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        let mut removed = Vec::new();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let is_partial = e
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(PARTIAL_PREFIX));
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= min_age);
                if is_partial && old {
                    let p = e.path();
                    fs::remove_file(&p).map_err(io_err("removing", &p))?;
                    removed.push(p);
                }
            }
        }
        Ok(removed)
    }

    /// Resolve a `--model` argument: an existing file is used as it is; otherwise it is a
    /// store name.
    pub fn resolve(&self, arg: &str) -> Result<Option<Entry>, StoreError> {
        if Path::new(arg).is_file() {
            return Ok(None);
        }
        self.get(arg).map(Some)
    }
}

/// Whether `s` is a sha256 in lowercase hex (what names a blob).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The model.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// Whether the file's sha256 and size match the manifest.
    pub ok: bool,
    /// The sha256 in the manifest.
    pub expected: String,
    /// The file's sha256.
    pub actual: String,
    /// The size in the manifest.
    pub expected_size: u64,
    /// The file's size.
    pub size: u64,
}

/// The name prefix of files being written (renamed into place when complete).
pub const PARTIAL_PREFIX: &str = ".partial-";

fn partial_file(dir: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
    tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(dir)
        .map_err(io_err("writing in", dir))
}

/// Seconds since the Unix epoch (a manifest's `created`).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn copy_hashing(
    file: &Path,
    dir: &Path,
) -> Result<(tempfile::NamedTempFile, String, u64), StoreError> {
    let mut src = File::open(file).map_err(io_err("opening", file))?;
    let mut tmp = partial_file(dir)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io_err("reading", file))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        tmp.as_file_mut()
            .write_all(&buf[..n])
            .map_err(io_err("writing", dir))?;
        size += n as u64;
    }
    tmp.as_file().sync_all().map_err(io_err("writing", dir))?;
    Ok((tmp, hex::encode(h.finalize()), size))
}

/// sha256 (lowercase hex) and size of a file.
pub fn hash_file(file: &Path) -> Result<(String, u64), StoreError> {
    let mut src = File::open(file).map_err(io_err("opening", file))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(io_err("reading", file))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

#[cfg(test)]
mod tests;
