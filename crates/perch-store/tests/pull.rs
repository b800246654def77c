//! `Store::pull` against a local imitation of the Hugging Face hub on loopback
//! (tests/support/fake_hub.rs) serving the SmolLM2 fixture GGUF: a normal pull, a dropped
//! connection resumed within the pull and across pulls, a server that ignores ranges, a wrong
//! checksum, an unknown repository and quantization, a token, plain URLs, a file that is not
//! GGUF, and no server at all.

mod support {
    pub mod fake_hub;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use perch_store::Store;
use perch_store::pull::{PullError, PullEvent, PullOptions, partial_files};
use sha2::{Digest, Sha256};
use support::fake_hub::{self, FakeHub, HubFile, SMOL_FILE};

const REPO: &str = "test-org/SmolLM2-135M-Instruct-GGUF";

fn hub_with_smol() -> (FakeHub, Arc<Vec<u8>>) {
    let hub = fake_hub::start();
    let data = fake_hub::smollm2_bytes();
    hub.hub.repos.lock().unwrap().insert(
        REPO.to_string(),
        vec![
            HubFile::new(SMOL_FILE, data.clone()),
            // A second quantization the tests never download (its bytes are junk).
            HubFile::new(
                "SmolLM2-135M-Instruct.Q8_0.gguf",
                Arc::new(b"not used".to_vec()),
            ),
        ],
    );
    (hub, data)
}

fn opts(hub: &FakeHub) -> PullOptions {
    PullOptions {
        hf_endpoint: hub.url.clone(),
        retry_backoff: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(20),
        ..PullOptions::default()
    }
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Nothing of a failed pull is visible: no manifest, no blob.
fn assert_nothing_stored(store: &Store) {
    assert!(store.list().unwrap().is_empty(), "a model is listed");
    let blobs: Vec<_> = std::fs::read_dir(store.root().join("blobs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
}

#[test]
fn pull_from_the_hub_stores_a_verified_blob_and_names_it() {
    let (hub, data) = hub_with_smol();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let mut events = Vec::new();
    let entry = store
        .pull(&format!("hf.co/{REPO}:q4_1"), &opts(&hub), &mut |e| {
            events.push(e.clone())
        })
        .unwrap();
    assert_eq!(entry.name.to_string(), format!("hf.co/{REPO}:q4_1"));
    assert_eq!(entry.manifest.sha256, sha(&data));
    assert_eq!(entry.manifest.size, data.len() as u64);
    assert_eq!(std::fs::read(&entry.path).unwrap().len(), data.len());
    // Ollama's order of statuses.
    assert_eq!(events.first(), Some(&PullEvent::Resolving));
    let n = events.len();
    assert_eq!(
        events[n - 3..],
        [PullEvent::Verifying, PullEvent::Writing, PullEvent::Success]
    );
    let PullEvent::Downloading {
        digest,
        total,
        completed,
        ..
    } = &events[n - 4]
    else {
        panic!("{:?}", events[n - 4]);
    };
    assert_eq!(
        digest.as_deref(),
        Some(format!("sha256:{}", sha(&data)).as_str())
    );
    assert_eq!((*total, *completed), (data.len() as u64, data.len() as u64));
    assert!(
        events[1..n - 3]
            .iter()
            .all(|e| matches!(e, PullEvent::Downloading { .. }))
    );
    assert!(
        partial_files(&store).is_empty(),
        "{:?}",
        partial_files(&store)
    );
    assert_eq!(hub.hub.downloads(), vec![format!("GET {SMOL_FILE} -")]);
    // Listed under its name; a second pull finds the blob and downloads nothing.
    assert_eq!(store.list().unwrap().len(), 1);
    store
        .pull(&format!("hf.co/{REPO}:Q4_1"), &opts(&hub), &mut |_| {})
        .unwrap();
    assert_eq!(hub.hub.downloads().len(), 1);
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn a_dropped_connection_resumes_with_a_range_request() {
    let (hub, data) = hub_with_smol();
    hub.hub
        .drop_after
        .store(10 << 20, std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let entry = store
        .pull(
            &format!("huggingface.co/{REPO}:Q4_1"),
            &opts(&hub),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(entry.manifest.sha256, sha(&data));
    let log = hub.hub.downloads();
    assert_eq!(log.len(), 2, "{log:?}");
    let start: u64 = log[1]
        .rsplit("bytes=")
        .next()
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("second request has no range: {log:?}"));
    assert!(start > 0 && start <= 10 << 20, "resumed at {start}");
}

#[test]
fn an_interrupted_pull_keeps_its_partial_file_hidden_and_the_next_pull_resumes_it() {
    let (hub, data) = hub_with_smol();
    hub.hub
        .drop_after
        .store(20 << 20, std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let no_retry = PullOptions {
        retries: 0,
        ..opts(&hub)
    };
    let err = store
        .pull(&format!("hf.co/{REPO}:Q4_1"), &no_retry, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, PullError::Interrupted { .. }), "{err}");
    assert!(
        err.to_string().contains("run the pull again to resume"),
        "{err}"
    );
    assert_nothing_stored(&store);
    let partial = partial_files(&store);
    let kept = partial
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "partial"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .expect("the partial file is kept");
    assert!(kept > 0 && kept <= 20 << 20, "{kept}");
    let entry = store
        .pull(&format!("hf.co/{REPO}:Q4_1"), &opts(&hub), &mut |_| {})
        .unwrap();
    assert_eq!(entry.manifest.sha256, sha(&data));
    let log = hub.hub.downloads();
    assert_eq!(log[1], format!("GET {SMOL_FILE} bytes={kept}-"));
    assert!(partial_files(&store).is_empty());
}

#[test]
fn a_server_that_ignores_ranges_makes_the_download_start_over() {
    let (hub, data) = hub_with_smol();
    hub.hub
        .drop_after
        .store(5 << 20, std::sync::atomic::Ordering::Relaxed);
    hub.hub
        .ignore_range
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let entry = store
        .pull(&format!("hf.co/{REPO}:Q4_1"), &opts(&hub), &mut |_| {})
        .unwrap();
    assert_eq!(entry.manifest.sha256, sha(&data));
    assert_eq!(
        std::fs::metadata(&entry.path).unwrap().len(),
        data.len() as u64
    );
}

#[test]
fn a_wrong_checksum_is_rejected_and_nothing_is_stored() {
    let hub = fake_hub::start();
    let data = fake_hub::smollm2_bytes();
    let mut f = HubFile::new(SMOL_FILE, data);
    f.sha256 = "0".repeat(64);
    hub.hub.repos.lock().unwrap().insert(REPO.into(), vec![f]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let err = store
        .pull(&format!("hf.co/{REPO}:Q4_1"), &opts(&hub), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, PullError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains(&"0".repeat(64)), "{err}");
    assert_nothing_stored(&store);
    assert!(
        partial_files(&store).is_empty(),
        "{:?}",
        partial_files(&store)
    );
}

#[test]
fn unknown_repositories_and_quantizations_are_named() {
    let (hub, _) = hub_with_smol();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let err = store
        .pull("hf.co/nobody/nothing", &opts(&hub), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, PullError::RepoNotFound { .. }), "{err}");
    assert!(err.to_string().contains("nobody/nothing"), "{err}");
    let err = store
        .pull(&format!("hf.co/{REPO}:Q2_K"), &opts(&hub), &mut |_| {})
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PullError::NoMatch { .. }), "{msg}");
    assert!(
        msg.contains("Q2_K")
            && msg.contains(SMOL_FILE)
            && msg.contains("SmolLM2-135M-Instruct.Q8_0.gguf"),
        "{msg}"
    );
    // No quantization: Q4_K_M, which this repository lacks.
    let err = store
        .pull(&format!("hf.co/{REPO}"), &opts(&hub), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("Q4_K_M"), "{err}");
    assert_nothing_stored(&store);
    assert!(hub.hub.downloads().is_empty());
}

#[test]
fn the_model_info_route_and_a_token_work_too() {
    let (hub, data) = hub_with_smol();
    hub.hub
        .no_tree
        .store(true, std::sync::atomic::Ordering::Relaxed);
    *hub.hub.token.lock().unwrap() = Some("hf_secret".into());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let err = store
        .pull(&format!("hf.co/{REPO}:Q4_1"), &opts(&hub), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    let with_token = PullOptions {
        hf_token: Some("hf_secret".into()),
        ..opts(&hub)
    };
    let e = store
        .pull(&format!("hf.co/{REPO}:Q4_1"), &with_token, &mut |_| {})
        .unwrap();
    assert_eq!(e.manifest.sha256, sha(&data));
}

#[test]
fn plain_urls_are_pulled_and_checked_as_gguf() {
    let hub = fake_hub::start();
    let data = fake_hub::smollm2_bytes();
    hub.hub.plain.lock().unwrap().extend([
        HubFile::new(SMOL_FILE, data.clone()),
        HubFile::new("junk.gguf", Arc::new(vec![7u8; 4096])),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let mut digests = Vec::new();
    let e = store
        .pull(
            &format!("{}/files/{SMOL_FILE}", hub.url),
            &opts(&hub),
            &mut |ev| {
                if let PullEvent::Downloading { digest, .. } = ev {
                    digests.push(digest.clone());
                }
            },
        )
        .unwrap();
    assert_eq!(e.name.to_string(), "SmolLM2-135M-Instruct.Q4_1:latest");
    assert_eq!(e.manifest.sha256, sha(&data));
    // A URL gives no digest up front.
    assert!(digests.iter().all(Option::is_none));
    let err = store
        .pull(
            &format!("{}/files/junk.gguf", hub.url),
            &opts(&hub),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, PullError::NotGguf { .. }), "{err}");
    let err = store
        .pull(
            &format!("{}/files/missing.gguf", hub.url),
            &opts(&hub),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(
        partial_files(&store).is_empty(),
        "{:?}",
        partial_files(&store)
    );
}

#[test]
fn offline_pulls_fail_fast_and_leave_nothing() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path());
    let o = PullOptions {
        hf_endpoint: format!("http://127.0.0.1:{port}"),
        ..PullOptions::default()
    };
    for reference in [
        format!("hf.co/{REPO}:Q4_1"),
        format!("http://127.0.0.1:{port}/files/{SMOL_FILE}"),
    ] {
        let started = Instant::now();
        let err = store.pull(&reference, &o, &mut |_| {}).unwrap_err();
        assert!(matches!(err, PullError::Offline { .. }), "{err}");
        assert!(err.to_string().contains("offline"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    assert_nothing_stored(&store);
    assert!(partial_files(&store).is_empty());
}
