//! Access control: API keys with roles ([`keys`]), the route table saying which role each
//! route needs ([`routes`]), per-key rate limits ([`rate`]) and the audit log ([`audit`]).
//!
//! [`guard`] is the middleware. A server without keys is open, as before keys existed (its
//! admin actions are still audited, as `anonymous`). With keys, every route but the public
//! ones needs `Authorization: Bearer KEY` (401 otherwise), a key whose role the route table
//! allows (403 otherwise; a route missing from the table is refused), and a key within its
//! rate limits (429 with `Retry-After`). The caller is kept in a task-local for the request,
//! so generations charge their tokens to the key that asked for them.

pub mod audit;
pub mod keys;
pub mod rate;
pub mod routes;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use audit::AuditLog;
pub use keys::{Key, KeySet, Role};
pub use rate::RateLimiter;
pub use routes::Access;

use crate::error::ApiError;
use crate::state::AppState;

/// The server's access-control settings.
#[derive(Clone, Debug, Default)]
pub struct AccessControl {
    /// The keys; empty leaves the server open.
    pub keys: KeySet,
    /// Where admin actions and refusals are recorded.
    pub audit: Option<Arc<AuditLog>>,
    /// The per-key rate-limit windows.
    pub limiter: Arc<RateLimiter>,
}

impl AccessControl {
    /// Access with these keys and no audit log.
    pub fn with_keys(keys: KeySet) -> AccessControl {
        AccessControl {
            keys,
            ..AccessControl::default()
        }
    }

    /// One admin key, as `--api-key SECRET` gives.
    pub fn single_key(secret: &str) -> AccessControl {
        let key = Key::from_spec(secret, "flag-1".into()).expect("a non-empty key");
        AccessControl::with_keys(KeySet::new(vec![key]).expect("one key"))
    }
}

/// Who is making the current request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key (`None` on an open server).
    pub key: Option<Key>,
    limiter: Arc<RateLimiter>,
}

impl Caller {
    /// Whether this caller may do admin things (any caller of an open server may).
    pub fn is_admin(&self) -> bool {
        self.key.as_ref().is_none_or(|k| k.role == Role::Admin)
    }

    /// Count `tokens` against the key's tokens-per-minute limit.
    pub fn charge(&self, tokens: u64) {
        if let Some(k) = &self.key {
            self.limiter.charge(k, tokens, Instant::now());
        }
    }
}

tokio::task_local! {
    static CALLER: Caller;
}

/// The caller of the request being handled, when called inside one.
pub fn caller() -> Option<Caller> {
    CALLER.try_with(Caller::clone).ok()
}

/// Whether the current request may do admin things (true outside a request, as in tests
/// that call handlers directly, and on an open server).
pub fn may_administer() -> bool {
    caller().is_none_or(|c| c.is_admin())
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn render(err: ApiError, path: &str) -> Response {
    if path.starts_with("/api/") {
        crate::error::Ollama(err).into_response()
    } else {
        err.into_response()
    }
}

/// What the middleware learned about a request, for the audit log.
struct Seen<'a> {
    access: &'a AccessControl,
    method: String,
    path: String,
    remote: Option<String>,
}

impl Seen<'_> {
    fn audit(&self, event: audit::Event, key: &str, status: u16) {
        if let Some(log) = &self.access.audit {
            log.record(&audit::Record {
                event,
                key,
                method: &self.method,
                path: &self.path,
                status,
                remote: self.remote.clone(),
            });
        }
    }

    fn refuse(&self, event: audit::Event, key: &str, err: ApiError) -> Response {
        tracing::warn!(key, path = %self.path, status = err.status.as_u16(), "{}", err.message);
        self.audit(event, key, err.status.as_u16());
        render(err, &self.path)
    }
}

/// The role `method` on the route `pattern` needs; `None` when the table refuses it.
fn needed(method: &Method, pattern: Option<&str>) -> Option<Access> {
    let Some(p) = pattern else {
        // No route: any valid key gets the 404.
        return Some(Access::Key(Role::Inference));
    };
    routes::access(method, p).or_else(|| {
        // A known path with another method: let axum answer 405 to any valid key.
        routes::table()
            .iter()
            .any(|r| r.1 == p)
            .then_some(Access::Key(Role::Inference))
    })
}

/// The access-control middleware (see the module documentation).
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let access = &state.config.access;
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let seen = Seen {
        access,
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        remote: req
            .extensions()
            .get::<ConnectInfo<crate::tls::Remote>>()
            .map(|c| c.0.0.to_string()),
    };
    let needed = needed(req.method(), pattern.as_deref());
    let admin_route = needed == Some(Access::Key(Role::Admin));
    // CORS preflights carry no credentials.
    if req.method() == Method::OPTIONS || needed == Some(Access::Public) {
        return next.run(req).await;
    }
    if access.keys.is_empty() {
        let caller = Caller {
            key: None,
            limiter: access.limiter.clone(),
        };
        let resp = CALLER.scope(caller, next.run(req)).await;
        if admin_route {
            seen.audit(audit::Event::Admin, "anonymous", resp.status().as_u16());
        }
        return resp;
    }
    let token = bearer(&req);
    let key = match token.map(|t| access.keys.find(t)) {
        None => {
            return seen.refuse(
                audit::Event::AuthFailure,
                "anonymous",
                ApiError::unauthorized("missing API key: send it as `Authorization: Bearer KEY`"),
            );
        }
        Some(None) => {
            return seen.refuse(
                audit::Event::AuthFailure,
                "anonymous",
                ApiError::unauthorized("invalid API key"),
            );
        }
        Some(Some(k)) => k.clone(),
    };
    let role = match needed {
        Some(Access::Key(r)) => r,
        _ => {
            return seen.refuse(
                audit::Event::Forbidden,
                &key.name,
                ApiError::forbidden(format!(
                    "{} {} is not open to API keys on this server",
                    seen.method, seen.path
                )),
            );
        }
    };
    if !key.role.allows(role) {
        return seen.refuse(
            audit::Event::Forbidden,
            &key.name,
            ApiError::forbidden(format!(
                "this API key has the `{}` role; {} {} needs `{}`",
                key.role, seen.method, seen.path, role
            )),
        );
    }
    if let Err(e) = access.limiter.admit(&key, Instant::now()) {
        return seen.refuse(
            audit::Event::RateLimited,
            &key.name,
            ApiError::rate_limited(&e),
        );
    }
    let name = key.name.clone();
    let caller = Caller {
        key: Some(key),
        limiter: access.limiter.clone(),
    };
    let resp = CALLER.scope(caller, next.run(req)).await;
    if admin_route {
        seen.audit(audit::Event::Admin, &name, resp.status().as_u16());
    }
    resp
}
