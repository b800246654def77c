//! Resolving `hf.co/OWNER/REPO[:QUANT]` through the Hugging Face hub's HTTP API.
//!
//! The repository's files come from `GET {endpoint}/api/models/{repo}/tree/main?recursive=true`
//! (entries with `path`, `size` and, for LFS files, `lfs.oid` = the sha256), following `Link:
//! rel="next"` pages; a hub that lacks the tree route is asked
//! `GET {endpoint}/api/models/{repo}?blobs=true` (`siblings` with `rfilename`, `size`,
//! `lfs.sha256`). The GGUF whose file name carries the quantization as a whole word
//! (case-insensitively: `Q4_K_M` matches `model-q4_k_m.gguf` but `Q4_K` does not) is picked;
//! without a quantization, `Q4_K_M` as Ollama does, or the only GGUF of the repository.
//! Multimodal projector files (`mmproj`) are never picked. A file without an LFS hash gets
//! one from `X-Linked-Etag` on a non-redirected `HEAD` of its download URL
//! (`{endpoint}/{repo}/resolve/main/{file}`), when the hub sends it.

use serde_json::Value;

use super::{DEFAULT_QUANT, PullError, PullOptions, Target, transport_error};

/// A file in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    /// Its path in the repository.
    pub path: String,
    /// Its size, when listed.
    pub size: Option<u64>,
    /// Its sha256 (LFS oid), when listed.
    pub sha256: Option<String>,
}

fn auth(
    req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    opts: &PullOptions,
) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
    match &opts.hf_token {
        Some(t) => req.header("Authorization", format!("Bearer {t}")),
        None => req,
    }
}

/// `GET url` as JSON, with the hub's errors named.
fn get_json(
    agent: &ureq::Agent,
    opts: &PullOptions,
    url: &str,
    repo: &str,
) -> Result<Option<(Value, Option<String>)>, PullError> {
    let resp = auth(agent.get(url), opts)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| transport_error(url, e))?;
    let status = resp.status().as_u16();
    let next = resp
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .and_then(next_link);
    match status {
        200 => {}
        404 => return Ok(None),
        401 => {
            return Err(PullError::RepoNotFound {
                repo: repo.to_string(),
                endpoint: opts.hf_endpoint.clone(),
                hint: if opts.hf_token.is_some() {
                    " (or HF_TOKEN does not give access to it)"
                } else {
                    " (if it is private or gated, set HF_TOKEN)"
                },
            });
        }
        403 => {
            return Err(PullError::Http {
                url: url.to_string(),
                status,
                hint: " (access denied: the repository may be gated; accept its terms on the hub and set HF_TOKEN)".into(),
            });
        }
        s => {
            return Err(PullError::Http {
                url: url.to_string(),
                status: s,
                hint: String::new(),
            });
        }
    }
    let text = resp
        .into_body()
        .read_to_string()
        .map_err(|e| transport_error(url, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| PullError::Protocol {
        url: url.to_string(),
        why: format!("the hub's answer is not JSON ({e})"),
    })?;
    Ok(Some((v, next)))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn sha_of(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::to_ascii_lowercase)
        .filter(|s| crate::is_sha256_hex(s))
}

/// The repository's files.
pub fn list_files(
    agent: &ureq::Agent,
    opts: &PullOptions,
    repo: &str,
) -> Result<Vec<HubFile>, PullError> {
    let ep = &opts.hf_endpoint;
    let mut url = format!("{ep}/api/models/{repo}/tree/main?recursive=true");
    let mut files = Vec::new();
    let mut pages = 0;
    loop {
        let Some((v, next)) = get_json(agent, opts, &url, repo)? else {
            if pages > 0 {
                return Err(PullError::Protocol {
                    url,
                    why: "a page of the file list is missing".into(),
                });
            }
            return list_siblings(agent, opts, repo);
        };
        let Value::Array(items) = v else {
            return Err(PullError::Protocol {
                url,
                why: "the file list is not a JSON array".into(),
            });
        };
        for it in items {
            if it["type"].as_str().is_some_and(|t| t != "file") {
                continue;
            }
            let Some(path) = it["path"].as_str() else {
                continue;
            };
            files.push(HubFile {
                path: path.to_string(),
                size: it["lfs"]["size"].as_u64().or(it["size"].as_u64()),
                sha256: sha_of(&it["lfs"]["oid"]).or_else(|| sha_of(&it["lfs"]["sha256"])),
            });
        }
        pages += 1;
        match next {
            Some(n) if pages < 100 => url = n,
            _ => break,
        }
    }
    Ok(files)
}

/// The file list from the model info route (`siblings`).
fn list_siblings(
    agent: &ureq::Agent,
    opts: &PullOptions,
    repo: &str,
) -> Result<Vec<HubFile>, PullError> {
    let url = format!("{}/api/models/{repo}?blobs=true", opts.hf_endpoint);
    let Some((v, _)) = get_json(agent, opts, &url, repo)? else {
        return Err(PullError::RepoNotFound {
            repo: repo.to_string(),
            endpoint: opts.hf_endpoint.clone(),
            hint: if opts.hf_token.is_some() {
                ""
            } else {
                " (if it is private or gated, set HF_TOKEN)"
            },
        });
    };
    let Some(sibs) = v["siblings"].as_array() else {
        return Err(PullError::Protocol {
            url,
            why: "the model info has no `siblings` list".into(),
        });
    };
    Ok(sibs
        .iter()
        .filter_map(|s| {
            Some(HubFile {
                path: s["rfilename"].as_str()?.to_string(),
                size: s["lfs"]["size"].as_u64().or(s["size"].as_u64()),
                sha256: sha_of(&s["lfs"]["sha256"]).or_else(|| sha_of(&s["lfs"]["oid"])),
            })
        })
        .collect())
}

/// Whether `name` carries `quant` as a whole word (case-insensitively).
pub fn matches_quant(name: &str, quant: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    let q = quant.to_ascii_lowercase();
    if q.is_empty() {
        return false;
    }
    let b = base.as_bytes();
    base.match_indices(&q).any(|(i, _)| {
        let end = i + q.len();
        let before_ok = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let after_ok = end == b.len() || !(b[end].is_ascii_alphanumeric() || b[end] == b'_');
        before_ok && after_ok
    })
}

/// Pick the file for `quant` (`None` or `latest`: [`DEFAULT_QUANT`], or the only GGUF).
pub fn pick<'a>(
    repo: &str,
    files: &'a [HubFile],
    quant: Option<&str>,
) -> Result<&'a HubFile, PullError> {
    let ggufs: Vec<&HubFile> = files
        .iter()
        .filter(|f| {
            let lower = f.path.to_ascii_lowercase();
            lower.ends_with(".gguf") && !lower.rsplit('/').next().unwrap_or("").contains("mmproj")
        })
        .collect();
    let wanted = quant.filter(|q| !q.eq_ignore_ascii_case("latest"));
    let q = wanted.unwrap_or(DEFAULT_QUANT);
    let mut found: Vec<&HubFile> = ggufs
        .iter()
        .copied()
        .filter(|f| matches_quant(&f.path, q))
        .collect();
    if found.is_empty() && wanted.is_none() && ggufs.len() == 1 {
        found = ggufs.clone();
    }
    // Whole files before split parts, then the shortest path (top-level before subfolders).
    found.sort_by_key(|f| (super::is_split_part(&f.path), f.path.len(), f.path.clone()));
    found.first().copied().ok_or_else(|| PullError::NoMatch {
        repo: repo.to_string(),
        quant: q.to_string(),
        available: ggufs.iter().map(|f| f.path.clone()).collect(),
    })
}

/// Percent-encode a repository path for a URL (keeping `/`).
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolve a repository and quantization to the file to download.
pub(crate) fn resolve(
    agent: &ureq::Agent,
    opts: &PullOptions,
    repo: &str,
    quant: Option<&str>,
) -> Result<Target, PullError> {
    let files = list_files(agent, opts, repo)?;
    let f = pick(repo, &files, quant)?;
    let url = format!(
        "{}/{repo}/resolve/main/{}",
        opts.hf_endpoint,
        encode_path(&f.path)
    );
    let sha256 = match &f.sha256 {
        Some(s) => Some(s.clone()),
        None => linked_etag(agent, opts, &url),
    };
    Ok(Target {
        url,
        file: f.path.rsplit('/').next().unwrap_or(&f.path).to_string(),
        sha256,
        size: f.size,
        token: opts.hf_token.clone(),
    })
}

/// The sha256 the hub sends as `X-Linked-Etag` (or a 64-hex `ETag`) on the resolve URL.
fn linked_etag(agent: &ureq::Agent, opts: &PullOptions, url: &str) -> Option<String> {
    let resp = auth(agent.head(url), opts)
        .config()
        .max_redirects(0)
        .build()
        .call()
        .ok()?;
    ["x-linked-etag", "etag"].iter().find_map(|h| {
        let v = resp.headers().get(*h)?.to_str().ok()?;
        let v = v.trim().trim_start_matches("W/").trim_matches('"');
        sha_of(&Value::String(v.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &str) -> HubFile {
        HubFile {
            path: p.into(),
            size: None,
            sha256: None,
        }
    }

    #[test]
    fn quant_words() {
        assert!(matches_quant("SmolLM2-135M-Instruct-Q4_K_M.gguf", "q4_k_m"));
        assert!(matches_quant("model.Q8_0.gguf", "Q8_0"));
        assert!(!matches_quant("model-Q4_K_M.gguf", "Q4_K"));
        assert!(!matches_quant("model-IQ4_XS.gguf", "Q4_XS"));
        assert!(matches_quant("sub/model_f16.gguf", "F16"));
        assert!(!matches_quant("model-q4_k_m.gguf", ""));
    }

    #[test]
    fn picking() {
        let files = vec![
            f("README.md"),
            f("m-Q4_K_M.gguf"),
            f("m-Q8_0.gguf"),
            f("big/m-Q8_0-00001-of-00002.gguf"),
            f("mmproj-m-Q8_0.gguf"),
        ];
        assert_eq!(pick("o/r", &files, None).unwrap().path, "m-Q4_K_M.gguf");
        assert_eq!(
            pick("o/r", &files, Some("latest")).unwrap().path,
            "m-Q4_K_M.gguf"
        );
        assert_eq!(
            pick("o/r", &files, Some("q8_0")).unwrap().path,
            "m-Q8_0.gguf"
        );
        match pick("o/r", &files, Some("Q2_K")) {
            Err(PullError::NoMatch { available, .. }) => assert_eq!(
                available,
                vec![
                    "m-Q4_K_M.gguf",
                    "m-Q8_0.gguf",
                    "big/m-Q8_0-00001-of-00002.gguf"
                ]
            ),
            other => panic!("{other:?}"),
        }
        let one = vec![f("only.Q4_1.gguf")];
        assert_eq!(pick("o/r", &one, None).unwrap().path, "only.Q4_1.gguf");
        assert!(pick("o/r", &one, Some("Q8_0")).is_err());
        assert!(pick("o/r", &[], None).is_err());
    }

    #[test]
    fn links_and_paths() {
        assert_eq!(
            next_link("<https://h/api/models/a/b/tree/main?cursor=x>; rel=\"next\"").as_deref(),
            Some("https://h/api/models/a/b/tree/main?cursor=x")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
        assert_eq!(encode_path("a b/c#.gguf"), "a%20b/c%23.gguf");
    }
}
