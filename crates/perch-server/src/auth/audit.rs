//! The audit log: one JSON object per line for every admin action and every refused
//! authentication or authorization, with when, who (key name or `anonymous`), what (method
//! and path), the status answered and the client's address. The file is rotated by size:
//! `audit.log` becomes `audit.log.1`, that one `audit.log.2`, and so on up to `keep` old
//! files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// What an audit line records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An admin route was called (any outcome).
    Admin,
    /// No key, or a key the server does not know.
    AuthFailure,
    /// A valid key whose role does not allow the route.
    Forbidden,
    /// A valid key over its rate limit.
    RateLimited,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Admin => "admin",
            Event::AuthFailure => "auth_failure",
            Event::Forbidden => "forbidden",
            Event::RateLimited => "rate_limited",
        }
    }
}

/// One line of the log.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    /// The kind of event.
    pub event: Event,
    /// The key's name, or `anonymous`.
    pub key: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// The request path.
    pub path: &'a str,
    /// The status answered.
    pub status: u16,
    /// The client's address, when known.
    pub remote: Option<String>,
}

/// An append-only JSON-lines file rotated by size.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Mutex<Option<(File, u64)>>,
}

impl AuditLog {
    /// Open (or create) the log at `path`; rotate once it would pass `max_bytes`, keeping
    /// `keep` old files.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<AuditLog> {
        let log = AuditLog {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file: Mutex::new(None),
        };
        *log.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(log.open_file()?);
        Ok(log)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_file(&self) -> std::io::Result<(File, u64)> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let f = opts.open(&self.path)?;
        let len = f.metadata()?.len();
        Ok((f, len))
    }

    fn rotated(&self, i: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    }

    fn rotate(&self) -> std::io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
            return Ok(());
        }
        let _ = std::fs::remove_file(self.rotated(self.keep));
        for i in (1..self.keep).rev() {
            let from = self.rotated(i);
            if from.exists() {
                std::fs::rename(&from, self.rotated(i + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }

    /// Append `r` (failures to write are logged, never fatal to the request).
    pub fn record(&self, r: &Record<'_>) {
        let line = serde_json::json!({
            "ts": crate::ollama::rfc3339(SystemTime::now()),
            "event": r.event.as_str(),
            "key": r.key,
            "method": r.method,
            "path": r.path,
            "status": r.status,
            "remote": r.remote,
        });
        let mut text = line.to_string();
        text.push('\n');
        if let Err(e) = self.write(text.as_bytes()) {
            tracing::error!(error = %e, path = %self.path.display(), "cannot write the audit log");
        }
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let size = guard.as_ref().map_or(0, |f| f.1);
        if guard.is_none() || (size > 0 && size + bytes.len() as u64 > self.max_bytes) {
            if guard.take().is_some() {
                self.rotate()?;
            }
            *guard = Some(self.open_file()?);
        }
        let (f, size) = guard.as_mut().expect("opened above");
        f.write_all(bytes)?;
        *size += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> Record<'static> {
        Record {
            event: if i % 2 == 0 {
                Event::Admin
            } else {
                Event::AuthFailure
            },
            key: "alice",
            method: "POST",
            path: "/api/create",
            status: 200,
            remote: Some(format!("127.0.0.1:{i}")),
        }
    }

    #[test]
    fn lines_are_json_and_rotate_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, 1000, 2).unwrap();
        for i in 0..60 {
            log.record(&rec(i));
        }
        drop(log);
        let mut lines = Vec::new();
        for p in [
            path.with_extension("log.2"),
            path.with_extension("log.1"),
            path.clone(),
        ] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.len() <= 1000,
                "{} has {} bytes",
                p.display(),
                text.len()
            );
            lines.extend(text.lines().map(str::to_string));
        }
        assert!(!path.with_extension("log.3").exists());
        // The newest lines survive, in order, each a JSON object with every field.
        let last: Vec<u64> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                for f in ["ts", "event", "key", "method", "path", "status", "remote"] {
                    assert!(v.get(f).is_some(), "{f} missing in {l}");
                }
                let remote = v["remote"].as_str().unwrap();
                remote.rsplit(':').next().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(*last.last().unwrap(), 59);
        assert!(last.windows(2).all(|w| w[1] == w[0] + 1), "{last:?}");
        assert!(last.len() > 10 && last.len() < 60);
        // Reopening appends to the current file.
        let before = std::fs::metadata(&path).unwrap().len();
        let log = AuditLog::open(&path, 1000, 2).unwrap();
        log.record(&rec(60));
        assert!(
            std::fs::metadata(&path).unwrap().len() > before
                || path.with_extension("log.1").exists()
        );
    }
}
