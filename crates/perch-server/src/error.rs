//! API errors and the JSON extractors whose rejections are API errors.
//!
//! Every failure a client can cause becomes an [`ApiError`]: a status, OpenAI's error type
//! (`invalid_request_error`, `authentication_error`, ...), a message that names what is wrong,
//! and the offending parameter when there is one. OpenAI routes render it as
//! `{"error": {"message", "type", "param", "code"}}`; Ollama routes wrap it in [`Ollama`] and
//! render `{"error": "message"}` as Ollama does. Internal failures are logged in full and
//! answered with a generic message, so nothing internal leaks.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::json;

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's error type.
    pub kind: &'static str,
    /// What went wrong, for the client.
    pub message: String,
    /// The request parameter at fault.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<&'static str>,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed or a value is out of range.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message.into(),
        )
    }

    /// 400 naming the parameter at fault.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        let mut e = Self::invalid(message);
        e.param = Some(param.into());
        e
    }

    /// 400 for a parameter perch does not support yet.
    pub fn unsupported(param: &str, what: &str) -> ApiError {
        let mut e = Self::invalid_param(
            param,
            format!("`{param}` is not supported by this server yet: {what}"),
        );
        e.code = Some("unsupported_parameter");
        e
    }

    /// 400 for a prompt that does not fit the context.
    pub fn context_overflow(prompt: usize, ctx: usize) -> ApiError {
        let mut e = Self::invalid_param(
            "messages",
            format!(
                "the prompt has {prompt} tokens but this model's context holds {ctx} tokens \
                 (prompt plus completion); shorten the prompt or raise --ctx-size"
            ),
        );
        e.code = Some("context_length_exceeded");
        e
    }

    /// 401: the API key is missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message);
        e.code = Some("invalid_api_key");
        e
    }

    /// 403: the API key's role does not allow this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        let mut e = Self::new(StatusCode::FORBIDDEN, "permission_error", message);
        e.code = Some("insufficient_permissions");
        e
    }

    /// 429 with `Retry-After`: the API key is over a rate limit. The shape is OpenAI's (its
    /// type names the limit, `requests` or `tokens`).
    pub fn rate_limited(e: &crate::auth::rate::Exceeded) -> ApiError {
        use crate::auth::rate::Limit;
        let (kind, what) = match e.limit {
            Limit::Requests => ("requests", "requests per min (RPM)"),
            Limit::Tokens => ("tokens", "tokens per min (TPM)"),
        };
        let secs = e.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            kind,
            format!(
                "rate limit reached for this API key on {what}: limit {}, used {}; \
                 please try again in {secs}s",
                e.max, e.used
            ),
        );
        err.code = Some("rate_limit_exceeded");
        err.retry_after = Some(secs);
        err
    }

    /// 404: no such model.
    pub fn model_not_found(name: &str) -> ApiError {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model `{name}` not found; GET /v1/models lists the models this server has"),
        );
        e.param = Some("model".into());
        e.code = Some("model_not_found");
        e
    }

    /// 404: no such route.
    pub fn route_not_found(path: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no route for {path}"),
        )
    }

    /// 503 with `Retry-After`: the model's queue is full.
    pub fn overloaded(model: &str, limit: usize) -> ApiError {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("model `{model}` already has {limit} requests queued or running; retry later"),
        );
        e.code = Some("queue_full");
        e.retry_after = Some(1);
        e
    }

    /// 503: the server is loading or shutting down.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
        e.retry_after = Some(1);
        e
    }

    /// 500: logs `detail` and answers a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the server failed to process the request",
        )
    }

    /// The OpenAI error object.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }

    fn with_headers(&self, mut resp: Response) -> Response {
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let resp = (self.status, Json(self.body())).into_response();
        self.with_headers(resp)
    }
}

/// An [`ApiError`] rendered in Ollama's shape, `{"error": "message"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ollama(pub ApiError);

impl From<ApiError> for Ollama {
    fn from(e: ApiError) -> Ollama {
        Ollama(e)
    }
}

impl IntoResponse for Ollama {
    fn into_response(self) -> Response {
        let resp = (self.0.status, Json(json!({"error": self.0.message}))).into_response();
        self.0.with_headers(resp)
    }
}

/// Parse a JSON body into `T`, naming the field at fault on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                return ApiError::invalid(format!("the request body is not valid JSON: {inner}"));
            }
            _ => inner.to_string(),
        };
        // serde's messages end with " at line L column C", which means little to a client.
        let what = match what.rfind(" at line ") {
            Some(i) => what[..i].to_string(),
            None => what,
        };
        if path == "." || path.is_empty() {
            ApiError::invalid(format!("invalid request body: {what}"))
        } else {
            ApiError::invalid_param(path.clone(), format!("invalid `{path}`: {what}"))
        }
    })?;
    Ok(value)
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                let mut err = ApiError::invalid(
                    "the request body is larger than this server accepts (see --body-limit)",
                );
                err.status = StatusCode::PAYLOAD_TOO_LARGE;
                err.code = Some("body_too_large");
                err
            } else {
                ApiError::invalid(format!("cannot read the request body: {}", e.body_text()))
            }
        })
}

/// A JSON body extractor whose rejection is an OpenAI-shaped [`ApiError`].
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        Ok(ApiJson(parse_json(&bytes)?))
    }
}

/// A JSON body extractor whose rejection is an Ollama-shaped error.
#[derive(Debug, Clone)]
pub struct OllamaJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OllamaJson<T> {
    type Rejection = Ollama;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        Ok(OllamaJson(parse_json(&bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        a: Option<f32>,
        b: Option<Vec<Inner>>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        c: u32,
    }

    #[test]
    fn names_the_field_at_fault() {
        let e = parse_json::<Body>(br#"{"a": "hot"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("a"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = parse_json::<Body>(br#"{"b": [{"c": 1}, {"c": -1}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("b[1].c"));
        let e = parse_json::<Body>(br#"{"a": 1"#).unwrap_err();
        assert_eq!(e.param, None);
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
