//! Per-key rate limits over a sliding minute: requests per minute, counted when a request is
//! admitted, and tokens per minute (prompt plus generated), counted when a generation ends
//! or is cancelled. A key over either limit gets 429 with `Retry-After` until enough of the
//! last minute's use has aged out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::keys::Key;

const WINDOW: Duration = Duration::from_secs(60);

/// Which limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

/// A refusal: which limit, its value, what was used and when to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// The limit hit.
    pub limit: Limit,
    /// Its value.
    pub max: u64,
    /// Use within the last minute.
    pub used: u64,
    /// When a retry may succeed.
    pub retry_after: Duration,
}

#[derive(Debug, Default)]
struct Window {
    requests: VecDeque<Instant>,
    tokens: VecDeque<(Instant, u64)>,
    token_sum: u64,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.requests.pop_front();
        }
        while let Some(&(t, n)) = self.tokens.front() {
            if now.duration_since(t) < WINDOW {
                break;
            }
            self.token_sum -= n;
            self.tokens.pop_front();
        }
    }
}

/// The windows of every key with a limit.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, Window>>,
}

impl RateLimiter {
    /// Admit a request for `key` at `now` (counting it), or say which limit refuses it.
    pub fn admit(&self, key: &Key, now: Instant) -> Result<(), Exceeded> {
        if key.rpm.is_none() && key.tpm.is_none() {
            return Ok(());
        }
        let mut all = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = all.entry(key.name.clone()).or_default();
        w.prune(now);
        if let Some(max) = key.tpm.filter(|&m| w.token_sum >= m) {
            // Wait until enough of the oldest use ages out to fall under the limit.
            let mut left = w.token_sum;
            let mut until = now;
            for &(t, n) in &w.tokens {
                left -= n;
                until = t + WINDOW;
                if left < max {
                    break;
                }
            }
            return Err(Exceeded {
                limit: Limit::Tokens,
                max,
                used: w.token_sum,
                retry_after: until.saturating_duration_since(now),
            });
        }
        if let Some(max) = key.rpm.filter(|&m| w.requests.len() as u64 >= m) {
            let oldest = w.requests[w.requests.len() - max as usize];
            return Err(Exceeded {
                limit: Limit::Requests,
                max,
                used: w.requests.len() as u64,
                retry_after: (oldest + WINDOW).saturating_duration_since(now),
            });
        }
        if key.rpm.is_some() {
            w.requests.push_back(now);
        }
        Ok(())
    }

    /// Count `tokens` used by `key` at `now`.
    pub fn charge(&self, key: &Key, tokens: u64, now: Instant) {
        if key.tpm.is_none() || tokens == 0 {
            return;
        }
        let mut all = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = all.entry(key.name.clone()).or_default();
        w.prune(now);
        w.tokens.push_back((now, tokens));
        w.token_sum += tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::Role;

    fn key(rpm: Option<u64>, tpm: Option<u64>) -> Key {
        Key {
            name: "k".into(),
            role: Role::Inference,
            sha256: [0; 32],
            rpm,
            tpm,
        }
    }

    #[test]
    fn requests_per_minute_slide() {
        let l = RateLimiter::default();
        let k = key(Some(3), None);
        let t0 = Instant::now();
        for i in 0..3 {
            l.admit(&k, t0 + Duration::from_secs(i * 10)).unwrap();
        }
        let e = l.admit(&k, t0 + Duration::from_secs(30)).unwrap_err();
        assert_eq!(e.limit, Limit::Requests);
        assert_eq!((e.max, e.used), (3, 3));
        // The first request (t0) ages out at t0 + 60 s.
        assert_eq!(e.retry_after, Duration::from_secs(30));
        assert!(l.admit(&k, t0 + Duration::from_secs(59)).is_err());
        l.admit(&k, t0 + Duration::from_secs(60)).unwrap();
        assert!(l.admit(&k, t0 + Duration::from_secs(65)).is_err());
    }

    #[test]
    fn tokens_per_minute() {
        let l = RateLimiter::default();
        let k = key(None, Some(100));
        let t0 = Instant::now();
        l.admit(&k, t0).unwrap();
        l.charge(&k, 60, t0);
        l.admit(&k, t0 + Duration::from_secs(5)).unwrap();
        l.charge(&k, 60, t0 + Duration::from_secs(5));
        let e = l.admit(&k, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.limit, Limit::Tokens);
        assert_eq!(e.used, 120);
        // Dropping the first 60 leaves 60 < 100: at t0 + 60 s.
        assert_eq!(e.retry_after, Duration::from_secs(50));
        l.admit(&k, t0 + Duration::from_secs(60)).unwrap();
        // Keys without limits are never counted.
        let free = key(None, None);
        for _ in 0..1000 {
            l.admit(&free, t0).unwrap();
        }
        assert!(l.windows.lock().unwrap().len() == 1);
    }
}
