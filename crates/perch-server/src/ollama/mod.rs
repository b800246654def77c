//! The Ollama-compatible API: `/api/generate`, `/api/chat`, `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/version`, `/api/pull`, `/api/create`, `/api/copy`, `/api/delete` (on perch's model
//! store), and `HEAD /` / `GET /` as Ollama clients probe them.
//!
//! Errors use Ollama's shape, `{"error": "message"}`, with the same statuses as the OpenAI
//! routes. Streams are NDJSON (one JSON object per line), the default as in Ollama.

mod blobs;
pub(crate) mod chat;
mod info;
pub mod pull;
mod store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// The Ollama routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(crate::ui::root).head(info::root_head))
        .route("/api/version", get(info::version))
        .route("/api/tags", get(info::tags))
        .route("/api/ps", get(info::ps))
        .route("/api/show", post(info::show))
        .route("/api/pull", post(pull::pull))
        .route("/api/create", post(store::create))
        .route(
            "/api/blobs/{digest}",
            axum::routing::head(blobs::head)
                .post(blobs::upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/copy", post(store::copy))
        .route("/api/delete", axum::routing::delete(store::delete))
        .route("/api/generate", post(chat::generate))
        .route("/api/chat", post(chat::chat))
}

/// `created_at` and `modified_at` values: RFC 3339 in UTC with nanoseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Ollama's `keep_alive`: seconds as a number, or a duration string like `"5m"`, `"1h30m"`,
/// `"10s"`; negative means forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeepAlive {
    /// Seconds.
    Seconds(f64),
    /// A Go-style duration.
    Text(String),
}

impl KeepAlive {
    /// `Some(d)`: unload after `d` idle; `None`: never.
    pub fn duration(&self) -> Result<Option<Duration>, ApiError> {
        let secs = match self {
            KeepAlive::Seconds(s) => *s,
            KeepAlive::Text(t) => parse_duration(t).ok_or_else(|| {
                ApiError::invalid_param(
                    "keep_alive",
                    format!("`keep_alive` must be a duration such as \"5m\" or seconds, got `{t}`"),
                )
            })?,
        };
        if !secs.is_finite() {
            return Err(ApiError::invalid_param(
                "keep_alive",
                "`keep_alive` must be finite",
            ));
        }
        Ok((secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9))))
    }
}

/// Seconds in a Go-style duration (`"1h30m"`, `"-1"`, `"300"`, `"2.5s"`).
fn parse_duration(t: &str) -> Option<f64> {
    let t = t.trim();
    if let Ok(v) = t.parse::<f64>() {
        return Some(v);
    }
    let (neg, mut rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += num * scale;
    }
    Some(if neg { -total } else { total })
}

/// Ollama's `options` (unknown ones, such as GPU settings, are ignored as Ollama does for
/// options a runner has no use for).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Options {
    /// Temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Top-k.
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Top-p.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Min-p.
    #[serde(default)]
    pub min_p: Option<f64>,
    /// Seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Most tokens to generate (-1: no limit, -2: fill the context).
    #[serde(default)]
    pub num_predict: Option<i64>,
    /// Context size for this request (at most the server's).
    #[serde(default)]
    pub num_ctx: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Repetition penalty.
    #[serde(default)]
    pub repeat_penalty: Option<f64>,
    /// Tokens the penalties look back over (-1: the whole context).
    #[serde(default)]
    pub repeat_last_n: Option<i64>,
    /// Presence penalty.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
}

impl Options {
    /// These options, with the fields they leave out taken from a model's defaults.
    pub fn with_defaults(self, d: &crate::state::ModelDefaults) -> Options {
        Options {
            temperature: self.temperature.or(d.f64("temperature")),
            top_k: self.top_k.or(d.i64("top_k")),
            top_p: self.top_p.or(d.f64("top_p")),
            min_p: self.min_p.or(d.f64("min_p")),
            seed: self.seed.or(d.i64("seed")),
            num_predict: self.num_predict.or(d.i64("num_predict")),
            // The model was loaded with its num_ctx already.
            num_ctx: self.num_ctx,
            stop: self.stop.or_else(|| d.stop()),
            repeat_penalty: self.repeat_penalty.or(d.f64("repeat_penalty")),
            repeat_last_n: self.repeat_last_n.or(d.i64("repeat_last_n")),
            presence_penalty: self.presence_penalty.or(d.f64("presence_penalty")),
            frequency_penalty: self.frequency_penalty.or(d.f64("frequency_penalty")),
        }
    }
}

/// Fields of `Value` type that must be absent (features not built yet).
pub fn reject(field: &str, v: Option<&Value>, what: &str) -> Result<(), ApiError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(Value::Bool(false)) => Ok(()),
        Some(_) => Err(ApiError::unsupported(field, what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(300.0));
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("-1"), Some(-1.0));
        assert_eq!(parse_duration("2.5s"), Some(2.5));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(
            KeepAlive::Text("0".into()).duration().unwrap(),
            Some(Duration::ZERO)
        );
        assert_eq!(KeepAlive::Seconds(-1.0).duration().unwrap(), None);
    }

    #[test]
    fn rfc3339_dates() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }
}
