//! Which role each route needs: one table for the whole server. A route the table does not
//! name is refused (403) when the server has keys, so a new route stays closed until it is
//! classified here; a test reads the router's sources and fails on any route missing from it.

use axum::http::Method;

use super::keys::Role;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a key (health probes, Ollama's liveness probe).
    Public,
    /// A key of this role or a higher one.
    Key(Role),
}

/// One row: method, axum path pattern, who may call it.
pub type Route = (Method, &'static str, Access);

const I: Access = Access::Key(Role::Inference);
const A: Access = Access::Key(Role::Admin);
const P: Access = Access::Public;

/// Every route of the server and who may call it. Rows for routes other branches add
/// (embeddings, blobs, push) are classified ahead of them.
pub fn table() -> &'static [Route] {
    static TABLE: std::sync::LazyLock<Vec<Route>> = std::sync::LazyLock::new(build);
    &TABLE
}

fn build() -> Vec<Route> {
    vec![
        // Operations.
        (Method::GET, "/health", P),
        (Method::GET, "/metrics", I),
        // Ollama's probes: "Ollama is running".
        (Method::GET, "/", P),
        (Method::HEAD, "/", P),
        // OpenAI.
        (Method::GET, "/v1/models", I),
        (Method::GET, "/v1/models/{*id}", I),
        (Method::POST, "/v1/chat/completions", I),
        (Method::POST, "/v1/completions", I),
        (Method::POST, "/v1/embeddings", I),
        // Ollama: generation and listing.
        (Method::GET, "/api/version", I),
        (Method::GET, "/api/tags", I),
        (Method::GET, "/api/ps", I),
        (Method::POST, "/api/show", I),
        (Method::POST, "/api/generate", I),
        (Method::POST, "/api/chat", I),
        (Method::POST, "/api/embed", I),
        (Method::POST, "/api/embeddings", I),
        // Ollama: changing the store.
        (Method::POST, "/api/pull", A),
        (Method::POST, "/api/push", A),
        (Method::POST, "/api/create", A),
        (Method::POST, "/api/copy", A),
        (Method::DELETE, "/api/delete", A),
        (Method::HEAD, "/api/blobs/{digest}", A),
        (Method::POST, "/api/blobs/{digest}", A),
    ]
}

/// Who may call `method` on the route whose pattern is `path`; `None` when the table does
/// not know it.
pub fn access(method: &Method, path: &str) -> Option<Access> {
    // axum answers HEAD with the GET handler when no HEAD handler is set.
    let lookup = |m: &Method| {
        table()
            .iter()
            .find(|(tm, tp, _)| tm == m && *tp == path)
            .map(|r| r.2)
    };
    lookup(method).or_else(|| {
        if method == Method::HEAD {
            lookup(&Method::GET)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(access(&Method::GET, "/health"), Some(Access::Public));
        assert_eq!(access(&Method::DELETE, "/api/delete"), Some(A));
        assert_eq!(access(&Method::HEAD, "/api/tags"), Some(I));
        assert_eq!(access(&Method::POST, "/api/tags"), None);
        assert_eq!(access(&Method::GET, "/nope"), None);
        let t = table();
        for (i, a) in t.iter().enumerate() {
            assert!(
                !t[i + 1..].iter().any(|b| a.0 == b.0 && a.1 == b.1),
                "{} {} twice",
                a.0,
                a.1
            );
        }
    }
}
