//! A small blocking HTTP/1.1 client for the serve benchmarks (loopback only), the streaming
//! reader of OpenAI completions, and starting a server process and waiting for its /health.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// The 50th, 90th and 99th percentiles of `v` (seconds) in milliseconds (0 when empty).
pub fn pct(v: &mut [f64]) -> Percentiles {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * q).round() as usize] * 1e3
        }
    };
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

/// One HTTP/1.1 request; the response's status and a reader over its (de-chunked) body.
pub fn send(url: &Hostport, method: &str, path: &str, body: &str) -> Result<(u16, ChunkedReader)> {
    let mut s = TcpStream::connect((url.host.as_str(), url.port))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.host,
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok();
        }
    }
    Ok((
        status,
        ChunkedReader {
            inner: r,
            chunked,
            left: if chunked {
                0
            } else {
                length.unwrap_or(usize::MAX)
            },
            done: false,
        },
    ))
}

/// A body reader that undoes chunked transfer encoding.
pub struct ChunkedReader {
    inner: BufReader<TcpStream>,
    chunked: bool,
    left: usize,
    done: bool,
}

impl Read for ChunkedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.chunked && self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        if got == 0 {
            self.done = true;
        }
        self.left -= got;
        Ok(got)
    }
}

/// A server's host and port.
#[derive(Clone, Debug)]
pub struct Hostport {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// `http://HOST:PORT[/...]` as host and port.
pub fn parse_url(url: &str) -> Result<Hostport> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let hp = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hp.rsplit_once(':').unwrap_or((hp, "80"));
    Ok(Hostport {
        host: host.to_string(),
        port: port.parse().context("bad port")?,
    })
}

/// A child process killed (and reaped) when dropped.
pub struct Spawned(pub Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one streamed completion saw.
#[derive(Clone, Debug, Default)]
pub struct Streamed {
    /// The failure, if any (connection, status, a malformed chunk, a broken stream).
    pub error: Option<String>,
    /// The stream ended with `[DONE]`.
    pub done: bool,
    /// The client hung up on purpose (`hang_up_after`).
    pub hung_up: bool,
    /// Seconds from sending to the first chunk with text.
    pub ttft: Option<f64>,
    /// Seconds between chunks with text.
    pub gaps: Vec<f64>,
    /// Seconds from sending to the end of the stream.
    pub e2e: f64,
    /// Chunks with text.
    pub text_chunks: u64,
    /// `usage.completion_tokens`, when the server sent usage.
    pub completion_tokens: Option<u64>,
    /// `usage.prompt_tokens`, when the server sent usage.
    pub prompt_tokens: Option<u64>,
}

/// POSTs `body` (with `"stream": true`) to `path` and reads the server-sent events: chat
/// (`choices[0].delta.content`) and text completions (`choices[0].text`) alike. With
/// `hang_up_after = Some(n)`, hangs up once `n` gaps between text chunks were seen.
pub fn stream(url: &Hostport, path: &str, body: &str, hang_up_after: Option<usize>) -> Streamed {
    let mut out = Streamed::default();
    let started = Instant::now();
    let (status, reader) = match send(url, "POST", path, body) {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    if status != 200 {
        let mut text = String::new();
        let mut reader = reader;
        let _ = reader.read_to_string(&mut text);
        out.error = Some(format!("status {status}: {text}"));
        return out;
    }
    let mut last: Option<Instant> = None;
    for line in BufReader::new(reader).lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                out.error = Some(format!("stream broke: {e}"));
                break;
            }
        };
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            out.done = true;
            break;
        }
        let v: serde_json::Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(e) => {
                out.error = Some(format!("bad chunk {data:?}: {e}"));
                break;
            }
        };
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            out.completion_tokens = Some(n);
        }
        if let Some(n) = v["usage"]["prompt_tokens"].as_u64() {
            out.prompt_tokens = Some(n);
        }
        let choice = &v["choices"][0];
        let has_text = choice["delta"]["content"]
            .as_str()
            .or_else(|| choice["text"].as_str())
            .is_some_and(|s| !s.is_empty());
        if has_text {
            let now = Instant::now();
            match last {
                None => out.ttft = Some((now - started).as_secs_f64()),
                Some(t) => out.gaps.push((now - t).as_secs_f64()),
            }
            last = Some(now);
            out.text_chunks += 1;
            if hang_up_after.is_some_and(|n| out.gaps.len() >= n) {
                // Hang up mid-stream: the reader (and the socket) are dropped here.
                out.hung_up = true;
                break;
            }
        }
    }
    out.e2e = started.elapsed().as_secs_f64();
    out
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A server process started by [`start_server`]; killed when dropped.
pub struct Server {
    /// The process.
    pub child: Spawned,
    /// Where it listens.
    pub url: Hostport,
    /// Its stderr (and stdout), kept for error messages.
    pub log: PathBuf,
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Starts `cmd` (which listens on `port` of 127.0.0.1) with its output in `log`, and waits up
/// to `timeout` until `GET /health` answers 200; fails early, with the log's tail, when the
/// process exits.
pub fn start_server(
    what: &str,
    mut cmd: Command,
    port: u16,
    log: PathBuf,
    timeout: Duration,
) -> Result<Server> {
    let file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file));
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {what} ({:?})", cmd.get_program()))?;
    let mut server = Server {
        child: Spawned(child),
        url: Hostport {
            host: "127.0.0.1".into(),
            port,
        },
        log,
    };
    let deadline = Instant::now() + timeout;
    while send(&server.url, "GET", "/health", "").map(|r| r.0).ok() != Some(200) {
        if let Some(status) = server.child.0.try_wait()? {
            bail!(
                "{what} exited ({status}) before it was ready:\n{}",
                tail(&server.log, 20)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not become healthy in {timeout:?}:\n{}",
                tail(&server.log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one canned chunked response on a loopback port; returns the port.
    fn one_shot(response: &'static str) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            s.write_all(response.as_bytes()).unwrap();
        });
        port
    }

    fn chunk(data: &str) -> String {
        format!("{:x}\r\n{data}\r\n", data.len())
    }

    #[test]
    fn streamed_completions_are_timed_and_counted() {
        let events = [
            "data: {\"choices\":[{\"text\":\"Hel\"}]}\n\n",
            "data: {\"choices\":[{\"text\":\"\"}]}\n\n",
            "data: {\"choices\":[{\"text\":\"lo\"}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"!\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        ];
        let mut resp = String::from(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for e in events {
            resp.push_str(&chunk(e));
        }
        resp.push_str("0\r\n\r\n");
        let port = one_shot(Box::leak(resp.into_boxed_str()));
        let url = parse_url(&format!("http://127.0.0.1:{port}/v1")).unwrap();
        let r = stream(&url, "/v1/completions", "{}", None);
        assert!(r.error.is_none(), "{:?}", r.error);
        assert!(r.done && !r.hung_up);
        // Three chunks carry text (the empty one does not): one TTFT, two gaps.
        assert_eq!(r.text_chunks, 3);
        assert!(r.ttft.is_some());
        assert_eq!(r.gaps.len(), 2);
        assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(5), Some(3)));
    }

    #[test]
    fn errors_carry_the_status_and_body() {
        let port = one_shot(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 19\r\n\r\n{\"error\":\"no such\"}",
        );
        let url = parse_url(&format!("http://127.0.0.1:{port}")).unwrap();
        let r = stream(&url, "/v1/completions", "{}", None);
        assert_eq!(
            r.error.as_deref(),
            Some("status 400: {\"error\":\"no such\"}")
        );
        assert!(!r.done);
    }
}
