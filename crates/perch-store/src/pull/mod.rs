//! Pulling models into the store: `perch pull`, pull-on-first-use and Ollama's `/api/pull`.
//!
//! A reference is either a URL of a GGUF file (`https://...`, or `http://` for a loopback
//! test server) or a Hugging Face repository, `hf.co/OWNER/REPO[:QUANT]` (also spelled
//! `huggingface.co/...`), as Ollama takes them. A repository is resolved through the hub's
//! HTTP API ([`hub`]): its file list, the GGUF whose name carries the quantization (default
//! `Q4_K_M`, as Ollama), the file's sha256 from its LFS record. The hub is
//! `$PERCH_HF_ENDPOINT` (default `https://huggingface.co`), with `$HF_TOKEN` as a bearer
//! token.
//!
//! The file is downloaded into the store's `partial/` folder ([`download`]): an interrupted
//! download (a dropped connection, a stopped process) resumes where it stopped with an HTTP
//! `Range` request whose `Content-Range` answer is checked. The finished file is verified
//! (its sha256 when the source gives one, and always that it is a valid GGUF) and only then
//! renamed into `blobs/` and given a manifest, so nothing half-downloaded is ever visible as
//! a model. When the network cannot be reached at all (connection refused, unknown host),
//! the pull fails at once with a message saying so.
//!
//! Progress is reported as [`PullEvent`]s, which map one to one onto Ollama's streamed pull
//! statuses (`pulling manifest`, `pulling <digest>`, `verifying sha256 digest`,
//! `writing manifest`, `success`).

mod download;
pub mod hub;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{Entry, ModelName, Store, StoreError};

/// Environment variable naming the Hugging Face endpoint (like `HF_ENDPOINT`).
pub const HF_ENDPOINT_ENV: &str = "PERCH_HF_ENDPOINT";
/// Environment variable holding a Hugging Face token.
pub const HF_TOKEN_ENV: &str = "HF_TOKEN";
/// The default Hugging Face endpoint.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";
/// The quantization picked from a repository when the reference names none (Ollama's choice).
pub const DEFAULT_QUANT: &str = "Q4_K_M";

/// What can go wrong while pulling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// The reference is neither a URL nor an `hf.co/OWNER/REPO[:QUANT]`.
    #[error("`{reference}` cannot be pulled: {why}")]
    BadReference {
        /// The reference.
        reference: String,
        /// What is wrong.
        why: String,
    },
    /// The server cannot be reached at all (no network, DNS failure, connection refused).
    #[error("cannot reach {host}: {why} (are you offline? nothing was downloaded)")]
    Offline {
        /// The host.
        host: String,
        /// The underlying failure.
        why: String,
    },
    /// The repository does not exist (or is private and no token was given).
    #[error("repository `{repo}` not found on {endpoint}{hint}")]
    RepoNotFound {
        /// The repository.
        repo: String,
        /// The hub.
        endpoint: String,
        /// A hint about tokens.
        hint: &'static str,
    },
    /// No GGUF file of the repository matches the quantization.
    #[error("repository `{repo}` has no GGUF file for `{quant}`; available: {}", available_list(.available))]
    NoMatch {
        /// The repository.
        repo: String,
        /// The quantization asked for.
        quant: String,
        /// The repository's GGUF files.
        available: Vec<String>,
    },
    /// The model is split into several files, which perch does not load.
    #[error(
        "`{file}` is one part of a split GGUF; perch loads single-file GGUF models (merge the parts with llama-gguf-split --merge, then `perch import`)"
    )]
    SplitModel {
        /// The file.
        file: String,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}{hint}")]
    Http {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// What it probably means.
        hint: String,
    },
    /// The server's answer is not what HTTP or the hub promise.
    #[error("{url}: {why}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The download was interrupted and the retries ran out; the partial file is kept and a
    /// later pull resumes it.
    #[error(
        "download of {url} interrupted after {completed} of {total} bytes: {why} (run the pull again to resume)"
    )]
    Interrupted {
        /// The URL.
        url: String,
        /// Bytes kept.
        completed: u64,
        /// Expected size (0: unknown).
        total: u64,
        /// The last failure.
        why: String,
    },
    /// The downloaded file's sha256 is not the one the source gave.
    #[error(
        "sha256 mismatch for {file}: expected {expected}, got {actual}; the download was discarded"
    )]
    Checksum {
        /// The file.
        file: String,
        /// What the source said.
        expected: String,
        /// What was downloaded.
        actual: String,
    },
    /// The downloaded file is not a usable GGUF.
    #[error("{file} is not a usable GGUF file: {why}; the download was discarded")]
    NotGguf {
        /// The file.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// The pull was cancelled (the client went away); the partial file is kept.
    #[error("pull cancelled")]
    Cancelled,
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn available_list(files: &[String]) -> String {
    if files.is_empty() {
        "none (the repository has no .gguf files)".to_string()
    } else {
        files.join(", ")
    }
}

/// What is pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A GGUF file at a URL.
    Url(String),
    /// A Hugging Face repository and the quantization to pick.
    HuggingFace {
        /// `OWNER/REPO`.
        repo: String,
        /// The tag after `:`, if any (a quantization such as `Q4_K_M`, or `latest`).
        quant: Option<String>,
    },
}

impl Reference {
    /// Parse a pullable reference; `None` when `s` is neither a URL nor a hub reference (so
    /// it is a plain store name).
    pub fn parse(s: &str) -> Option<Result<Reference, PullError>> {
        let s = s.trim();
        if s.starts_with("https://") || s.starts_with("http://") {
            return Some(Ok(Reference::Url(s.to_string())));
        }
        let rest = ["hf.co/", "huggingface.co/"]
            .iter()
            .find_map(|p| s.strip_prefix(p))?;
        Some(parse_hf(s, rest))
    }

    /// The name the model gets in the store: `hf.co/OWNER/REPO:QUANT` (`:latest` without a
    /// quantization, as Ollama names them), or for a URL the file name without `.gguf`.
    pub fn store_name(&self) -> Result<ModelName, PullError> {
        match self {
            Reference::HuggingFace { repo, quant } => {
                let tag = quant.as_deref().unwrap_or("latest");
                ModelName::parse(&format!("hf.co/{repo}:{tag}")).map_err(PullError::from)
            }
            Reference::Url(url) => {
                let file = url_file_name(url);
                let stem = file.strip_suffix(".gguf").unwrap_or(&file);
                let clean: String = stem
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "._-".contains(c) {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                let clean = clean.trim_start_matches(['.', '-']).to_string();
                ModelName::parse(&clean).map_err(|e| PullError::BadReference {
                    reference: url.clone(),
                    why: format!("no model name can be made from its file name ({e})"),
                })
            }
        }
    }
}

fn parse_hf(full: &str, rest: &str) -> Result<Reference, PullError> {
    let bad = |why: &str| PullError::BadReference {
        reference: full.to_string(),
        why: why.to_string(),
    };
    let (repo, quant) = match rest.split_once(':') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['.', '-'])
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if parts.len() != 2 || !parts.iter().all(|p| ok_part(p)) {
        return Err(bad(
            "a Hugging Face reference is hf.co/OWNER/REPO[:QUANT] with letters, digits, `.`, `_` and `-`",
        ));
    }
    let quant = match quant {
        None => None,
        Some(q) if ok_part(q) => Some(q.to_string()),
        Some(_) => {
            return Err(bad(
                "the quantization after `:` is empty or has odd characters",
            ));
        }
    };
    Ok(Reference::HuggingFace {
        repo: repo.to_string(),
        quant,
    })
}

/// The last path segment of a URL, without query or fragment.
fn url_file_name(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = no_query.split_once("://").map_or(no_query, |(_, r)| r);
    match after_scheme.split_once('/') {
        Some((_host, path)) => path.rsplit('/').next().unwrap_or("").to_string(),
        None => String::new(),
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The Hugging Face endpoint (no trailing slash).
    pub hf_endpoint: String,
    /// A Hugging Face token sent as `Authorization: Bearer`.
    pub hf_token: Option<String>,
    /// How many times an interrupted download is resumed within one pull.
    pub retries: u32,
    /// The pause before the first retry (doubling each time).
    pub retry_backoff: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for any one read (a stalled transfer counts as interrupted).
    pub read_timeout: Duration,
    /// Set to stop the pull (the partial file is kept).
    pub cancel: Arc<AtomicBool>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            hf_endpoint: DEFAULT_HF_ENDPOINT.to_string(),
            hf_token: None,
            retries: 5,
            retry_backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl PullOptions {
    /// Defaults with the endpoint and token from `$PERCH_HF_ENDPOINT` and `$HF_TOKEN`.
    pub fn from_env() -> PullOptions {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        PullOptions {
            hf_endpoint: env(HF_ENDPOINT_ENV)
                .map(|e| e.trim().trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_string()),
            hf_token: env(HF_TOKEN_ENV).map(|t| t.trim().to_string()),
            ..PullOptions::default()
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_resolve(Some(self.connect_timeout))
            .timeout_recv_response(Some(self.read_timeout))
            .timeout_per_read(Some(self.read_timeout))
            .user_agent(concat!("perch/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    }
}

/// Progress of a pull, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// Resolving the reference (Ollama's `pulling manifest`).
    Resolving,
    /// Downloading a file (Ollama's `pulling <digest>`), sent as bytes arrive.
    Downloading {
        /// `sha256:<hex>` when the source gave it.
        digest: Option<String>,
        /// The file's name.
        file: String,
        /// Its size (0 when unknown).
        total: u64,
        /// Bytes present so far (including a resumed part).
        completed: u64,
    },
    /// Hashing and validating the file (Ollama's `verifying sha256 digest`).
    Verifying,
    /// Writing the manifest (Ollama's `writing manifest`).
    Writing,
    /// Done (Ollama's `success`).
    Success,
}

impl PullEvent {
    /// The Ollama status text.
    pub fn status(&self) -> String {
        match self {
            PullEvent::Resolving => "pulling manifest".into(),
            PullEvent::Downloading { digest, file, .. } => match digest {
                Some(d) => {
                    let hex = d.strip_prefix("sha256:").unwrap_or(d);
                    format!("pulling {}", &hex[..hex.len().min(12)])
                }
                None => format!("pulling {file}"),
            },
            PullEvent::Verifying => "verifying sha256 digest".into(),
            PullEvent::Writing => "writing manifest".into(),
            PullEvent::Success => "success".into(),
        }
    }
}

/// One file to fetch.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Where it is.
    pub url: String,
    /// Its name (for messages and progress).
    pub file: String,
    /// Its sha256 when the source says.
    pub sha256: Option<String>,
    /// Its size when the source says.
    pub size: Option<u64>,
    /// A bearer token to send (only to the hub).
    pub token: Option<String>,
}

/// Turn a ureq failure into a pull error: connection-level failures are `Offline`.
pub(crate) fn transport_error(url: &str, e: ureq::Error) -> PullError {
    let host = host_of(url);
    match e {
        ureq::Error::HostNotFound => PullError::Offline {
            host,
            why: "the host name does not resolve".into(),
        },
        ureq::Error::ConnectionFailed => PullError::Offline {
            host,
            why: "the connection failed".into(),
        },
        ureq::Error::Io(io) if is_connect_error(&io) => PullError::Offline {
            host,
            why: io.to_string(),
        },
        ureq::Error::Timeout(t) => PullError::Offline {
            host,
            why: format!("timed out ({t})"),
        },
        other => PullError::Protocol {
            url: url.to_string(),
            why: other.to_string(),
        },
    }
}

fn is_connect_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | NetworkUnreachable
            | HostUnreachable
            | AddrNotAvailable
            | NetworkDown
            | TimedOut
    )
}

pub(crate) fn host_of(url: &str) -> String {
    let after = url.split_once("://").map_or(url, |(_, r)| r);
    after
        .split(['/', '?', '#'])
        .next()
        .unwrap_or(after)
        .to_string()
}

impl Store {
    /// Pull `reference` (a URL or `hf.co/OWNER/REPO[:QUANT]`) into the store and name it
    /// [`Reference::store_name`]. Reports progress to `progress`. A file already in the store
    /// (same sha256) is not downloaded again.
    pub fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
        progress: &mut dyn FnMut(&PullEvent),
    ) -> Result<Entry, PullError> {
        let parsed = Reference::parse(reference).unwrap_or_else(|| {
            Err(PullError::BadReference {
                reference: reference.to_string(),
                why: "give a URL of a .gguf file or hf.co/OWNER/REPO[:QUANT]".into(),
            })
        })?;
        let name = parsed.store_name()?;
        progress(&PullEvent::Resolving);
        let agent = opts.agent();
        let target = match &parsed {
            Reference::Url(url) => Target {
                url: url.clone(),
                file: url_file_name(url),
                sha256: None,
                size: None,
                token: None,
            },
            Reference::HuggingFace { repo, quant } => {
                hub::resolve(&agent, opts, repo, quant.as_deref())?
            }
        };
        if is_split_part(&target.file) {
            return Err(PullError::SplitModel { file: target.file });
        }
        let digest = target.sha256.as_ref().map(|h| format!("sha256:{h}"));
        if let Some(sha) = target.sha256.as_deref().filter(|s| self.has_blob(s)) {
            // Already here: report it complete and just write the manifest.
            let size = std::fs::metadata(self.blob_path(sha)).map_or(0, |m| m.len());
            progress(&PullEvent::Downloading {
                digest: digest.clone(),
                file: target.file.clone(),
                total: size,
                completed: size,
            });
            progress(&PullEvent::Verifying);
            progress(&PullEvent::Writing);
            let entry = self.add_blob_model(&name.to_string(), sha)?;
            progress(&PullEvent::Success);
            return Ok(entry);
        }
        let partial_dir = self.partial_dir()?;
        let file = download::fetch(&agent, opts, &target, &partial_dir, &mut |total, done| {
            progress(&PullEvent::Downloading {
                digest: digest.clone(),
                file: target.file.clone(),
                total,
                completed: done,
            })
        })?;
        progress(&PullEvent::Verifying);
        let sha = verify(&file, &target)?;
        progress(&PullEvent::Writing);
        self.install_blob(&file.path, &sha)?;
        download::forget(&file);
        let entry = self.add_blob_model(&name.to_string(), &sha)?;
        progress(&PullEvent::Success);
        Ok(entry)
    }
}

/// `model-00001-of-00003.gguf`: one part of a split model.
fn is_split_part(file: &str) -> bool {
    let stem = file.strip_suffix(".gguf").unwrap_or(file);
    let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
    parts.len() == 4
        && parts[1] == "of"
        && [parts[0], parts[2]]
            .iter()
            .all(|p| p.len() == 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Check the finished download: its sha256 against the source's, then that it is a GGUF. A
/// file that fails is deleted (a resume could only repeat the failure).
fn verify(file: &download::Partial, target: &Target) -> Result<String, PullError> {
    let discard = |e: PullError| {
        download::discard(file);
        e
    };
    let (sha, _) = crate::hash_file(&file.path)?;
    if let Some(expected) = &target.sha256
        && *expected != sha
    {
        return Err(discard(PullError::Checksum {
            file: target.file.clone(),
            expected: expected.clone(),
            actual: sha,
        }));
    }
    if let Err(e) = perch_gguf::GgufFile::open(&file.path) {
        return Err(discard(PullError::NotGguf {
            file: target.file.clone(),
            why: e.to_string(),
        }));
    }
    Ok(sha)
}

/// Where a reference would be in the store, if it has been pulled: the entry, or `None`.
pub fn pulled(store: &Store, reference: &str) -> Result<Option<Entry>, PullError> {
    let Some(parsed) = Reference::parse(reference) else {
        return Ok(None);
    };
    let name = parsed?.store_name()?;
    match store.get(&name.to_string()) {
        Ok(e) => Ok(Some(e)),
        Err(StoreError::NotFound(_)) | Err(StoreError::MissingBlob { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The partial files a store holds (for tests and `perch list --partial` style reports).
pub fn partial_files(store: &Store) -> Vec<PathBuf> {
    let dir = store.root().join("partial");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert!(Reference::parse("smollm2").is_none());
        assert!(Reference::parse("smollm2:latest").is_none());
        let r = Reference::parse("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0")
            .unwrap()
            .unwrap();
        assert_eq!(
            r,
            Reference::HuggingFace {
                repo: "bartowski/SmolLM2-135M-Instruct-GGUF".into(),
                quant: Some("Q8_0".into())
            }
        );
        assert_eq!(
            r.store_name().unwrap().to_string(),
            "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q8_0"
        );
        let r = Reference::parse("huggingface.co/a/b").unwrap().unwrap();
        assert_eq!(r.store_name().unwrap().to_string(), "hf.co/a/b:latest");
        for bad in [
            "hf.co/a",
            "hf.co/a/b/c",
            "hf.co/../b",
            "hf.co/a/b:",
            "hf.co/a/b:x/y",
        ] {
            assert!(
                matches!(
                    Reference::parse(bad),
                    Some(Err(PullError::BadReference { .. }))
                ),
                "{bad} accepted"
            );
        }
        let u = Reference::parse("https://example.org/m/Model Q4.gguf?download=1")
            .unwrap()
            .unwrap();
        assert_eq!(u.store_name().unwrap().to_string(), "Model-Q4:latest");
        assert!(
            Reference::parse("https://example.org/")
                .unwrap()
                .unwrap()
                .store_name()
                .is_err()
        );
    }

    #[test]
    fn split_parts() {
        assert!(is_split_part("Llama-3-70B-Q4_K_M-00001-of-00002.gguf"));
        assert!(!is_split_part("Llama-3-70B-Q4_K_M.gguf"));
        assert!(!is_split_part("a-1-of-2.gguf"));
    }

    #[test]
    fn statuses_are_ollamas() {
        let d = PullEvent::Downloading {
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            file: "x.gguf".into(),
            total: 1,
            completed: 0,
        };
        assert_eq!(d.status(), "pulling abababababab");
        assert_eq!(PullEvent::Resolving.status(), "pulling manifest");
        assert_eq!(PullEvent::Verifying.status(), "verifying sha256 digest");
    }
}
