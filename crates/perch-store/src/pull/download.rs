//! Resumable downloads into the store's `partial/` folder.
//!
//! A download of `KEY` (the sha256 the source gave, else the sha256 of the URL) writes
//! `partial/KEY.partial` and records in `partial/KEY.json` the URL, the size and the
//! validators (`ETag`, `Last-Modified`) of the response. Resuming sends
//! `Range: bytes=N-` with `If-Range`, and accepts only a `206` whose `Content-Range` starts at
//! `N` and has the expected total; a `200` (the file changed, or the server ignores ranges)
//! starts over. Within one pull a dropped connection or a stalled read is retried with
//! backoff; when the retries run out the partial file stays for the next pull.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{PullError, PullOptions, Target, transport_error};
use crate::StoreError;

/// A finished download, still in `partial/`.
#[derive(Debug)]
pub(crate) struct Partial {
    /// The downloaded file.
    pub path: PathBuf,
    meta: PathBuf,
}

/// What is remembered about a partial file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    url: String,
    size: Option<u64>,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Remove a failed download (file and record).
pub(crate) fn discard(p: &Partial) {
    let _ = fs::remove_file(&p.path);
    let _ = fs::remove_file(&p.meta);
}

/// Remove the record of a download whose file was moved into the store.
pub(crate) fn forget(p: &Partial) {
    let _ = fs::remove_file(&p.meta);
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PullError + 'a {
    move |source| {
        PullError::Store(StoreError::Io {
            what,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) or `bytes */TOTAL`.
fn content_range(v: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => None,
        r => Some(r.split_once('-')?.0.trim().parse().ok()?),
    };
    Some((start, total))
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Why an attempt ended without the whole file.
enum Attempt {
    Done,
    Retry(String),
    Restart(String),
}

/// Download `target` into `dir`, resuming what an earlier pull left. `progress` gets
/// `(total, completed)` (total 0 when unknown).
pub(crate) fn fetch(
    agent: &ureq::Agent,
    opts: &PullOptions,
    target: &Target,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Partial, PullError> {
    let key = match &target.sha256 {
        Some(s) => s.clone(),
        None => hex::encode(Sha256::digest(target.url.as_bytes())),
    };
    let path = dir.join(format!("{key}.partial"));
    let meta_path = dir.join(format!("{key}.json"));
    let mut meta: Meta = fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut offset = fs::metadata(&path).map_or(0, |m| m.len());
    // A partial file without its record, from another URL, or of another size starts over.
    let stale = meta.url.is_empty()
        || (target.sha256.is_none() && meta.url != target.url)
        || (target.size.is_some() && meta.size.is_some() && meta.size != target.size);
    if stale && offset > 0 {
        tracing::debug!(path = %path.display(), "discarding a stale partial download");
        offset = 0;
    }
    meta.url = target.url.clone();
    let mut retries = 0u32;
    let mut connected = false;
    loop {
        if opts.cancelled() {
            return Err(PullError::Cancelled);
        }
        if let Some(size) = target.size.or(meta.size)
            && offset >= size
        {
            if offset == size {
                progress(size, size);
                break;
            }
            offset = 0;
        }
        let outcome = attempt(
            agent,
            opts,
            target,
            &path,
            &meta_path,
            &mut meta,
            &mut offset,
            &mut connected,
            progress,
        )?;
        let why = match outcome {
            Attempt::Done => break,
            Attempt::Retry(why) => why,
            Attempt::Restart(why) => {
                offset = 0;
                meta.etag = None;
                meta.last_modified = None;
                why
            }
        };
        retries += 1;
        if retries > opts.retries {
            return Err(PullError::Interrupted {
                url: target.url.clone(),
                completed: offset,
                total: meta.size.unwrap_or(0),
                why,
            });
        }
        let pause = opts
            .retry_backoff
            .saturating_mul(1 << (retries - 1).min(5))
            .min(Duration::from_secs(10));
        tracing::info!(url = %target.url, offset, retry = retries, %why, "download interrupted; resuming");
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until {
            if opts.cancelled() {
                return Err(PullError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(50).min(pause));
        }
    }
    Ok(Partial {
        path,
        meta: meta_path,
    })
}

/// One request: from `offset` to the end, or until the connection fails.
#[allow(clippy::too_many_arguments)]
fn attempt(
    agent: &ureq::Agent,
    opts: &PullOptions,
    target: &Target,
    path: &Path,
    meta_path: &Path,
    meta: &mut Meta,
    offset: &mut u64,
    connected: &mut bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Attempt, PullError> {
    let url = &target.url;
    let mut req = agent.get(url);
    if let Some(t) = &target.token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if *offset > 0 {
        req = req.header("Range", format!("bytes={offset}-"));
        if let Some(v) = meta.etag.as_ref().or(meta.last_modified.as_ref()) {
            req = req.header("If-Range", v);
        }
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(e) => {
            let err = transport_error(url, e);
            // Offline: fail at once. A connection lost after a first answer is retried.
            return match err {
                PullError::Offline { .. } if !*connected => Err(err),
                other => Ok(Attempt::Retry(other.to_string())),
            };
        }
    };
    *connected = true;
    let status = resp.status().as_u16();
    let total = match status {
        200 => {
            if *offset > 0 {
                tracing::info!(%url, "the server sent the whole file again; starting over");
                *offset = 0;
            }
            header(&resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok())
        }
        206 => {
            let cr = header(&resp, "content-range").and_then(|v| content_range(&v));
            match cr {
                Some((Some(start), total)) if start == *offset => {
                    total.or_else(|| meta.size.or(target.size))
                }
                _ => {
                    return Ok(Attempt::Restart(format!(
                        "the server answered the range request for byte {offset} with Content-Range {:?}",
                        header(&resp, "content-range")
                    )));
                }
            }
        }
        416 => {
            let cr = header(&resp, "content-range").and_then(|v| content_range(&v));
            if let Some((None, Some(t))) = cr
                && t == *offset
            {
                meta.size = Some(t);
                progress(t, t);
                return Ok(Attempt::Done);
            }
            return Ok(Attempt::Restart(
                "the server refused the resume range".into(),
            ));
        }
        401 | 403 => {
            return Err(PullError::Http {
                url: url.clone(),
                status,
                hint: if target.token.is_some() {
                    " (the token does not give access)".into()
                } else {
                    " (access denied; for a private or gated repository set HF_TOKEN)".into()
                },
            });
        }
        404 => {
            return Err(PullError::Http {
                url: url.clone(),
                status,
                hint: " (not found)".into(),
            });
        }
        s if s >= 500 || s == 429 => {
            return Ok(Attempt::Retry(format!("HTTP {s}")));
        }
        s => {
            return Err(PullError::Http {
                url: url.clone(),
                status: s,
                hint: String::new(),
            });
        }
    };
    if let (Some(t), Some(expected)) = (total, target.size)
        && t != expected
    {
        return Err(PullError::Protocol {
            url: url.clone(),
            why: format!("the server sends {t} bytes but the repository lists {expected}"),
        });
    }
    meta.size = total;
    meta.etag = header(&resp, "etag").filter(|e| !e.starts_with("W/"));
    meta.last_modified = header(&resp, "last-modified");
    let record = serde_json::to_vec(&*meta).unwrap_or_default();
    fs::write(meta_path, record).map_err(io("writing", meta_path))?;

    let mut out = if *offset > 0 {
        OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("opening", path))?
    } else {
        File::create(path).map_err(io("creating", path))?
    };
    let total_or_zero = total.unwrap_or(0);
    progress(total_or_zero, *offset);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 256 << 10];
    let ended = loop {
        if opts.cancelled() {
            out.flush().map_err(io("writing", path))?;
            return Err(PullError::Cancelled);
        }
        match body.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                if total.is_some_and(|t| *offset + n as u64 > t) {
                    return Ok(Attempt::Restart(
                        "the server sent more bytes than it announced".into(),
                    ));
                }
                out.write_all(&buf[..n]).map_err(io("writing", path))?;
                *offset += n as u64;
                progress(total_or_zero, *offset);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e.to_string()),
        }
    };
    out.flush().map_err(io("writing", path))?;
    out.sync_data().map_err(io("writing", path))?;
    if let Some(why) = ended {
        return Ok(Attempt::Retry(why));
    }
    match total {
        Some(t) if *offset < t => Ok(Attempt::Retry(format!(
            "the connection closed after {offset} of {t} bytes"
        ))),
        _ => {
            meta.size = Some(*offset);
            Ok(Attempt::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(
            content_range("bytes 100-199/200"),
            Some((Some(100), Some(200)))
        );
        assert_eq!(content_range("bytes 0-9/*"), Some((Some(0), None)));
        assert_eq!(content_range("bytes */200"), Some((None, Some(200))));
        assert_eq!(content_range("items 0-1/2"), None);
        assert_eq!(content_range("bytes x-1/2"), None);
    }
}
