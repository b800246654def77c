//! HTTPS: `serve` with a self-signed certificate made by rcgen, a rustls client that trusts
//! only that certificate, an API key over the encrypted connection and the client's address
//! in the audit log. A plain-text client gets no HTTP answer.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perch_server::auth::{AccessControl, AuditLog};
use perch_server::tls::TlsFiles;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn https_get(
    port: u16,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
    key: Option<&str>,
) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();

    let log_path = dir.path().join("audit.log");
    let mut cfg = common::config();
    cfg.tls = Some(TlsFiles {
        cert: cert_path.clone(),
        key: key_path.clone(),
    });
    cfg.access = AccessControl {
        audit: Some(Arc::new(AuditLog::open(&log_path, 1 << 20, 1).unwrap())),
        ..AccessControl::single_key("tls-key")
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(perch_server::serve(cfg, addr, async move {
        let _ = stop_rx.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = https_get(port, &connector, "/health", None).await {
            if r.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the HTTPS server never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = https_get(port, &connector, "/v1/models", Some("tls-key"))
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(common::MODEL), "{r}");
    let r = https_get(port, &connector, "/v1/models", Some("nope"))
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");

    // A client that does not trust the certificate fails the handshake.
    let untrusting = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let e = https_get(
        port,
        &tokio_rustls::TlsConnector::from(Arc::new(untrusting)),
        "/health",
        None,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(!out.starts_with(b"HTTP/1.1 200"));

    // The refused key is in the audit log with the client's address.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["event"], "auth_failure");
    assert!(
        line["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[test]
fn bad_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let files = TlsFiles {
        cert: empty.clone(),
        key: empty.clone(),
    };
    let e = perch_server::tls::server_config(&files).unwrap_err();
    assert!(e.to_string().contains("empty.pem"), "{e}");
    let files = TlsFiles {
        cert: dir.path().join("missing.pem"),
        key: empty,
    };
    let e = perch_server::tls::server_config(&files).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
}
