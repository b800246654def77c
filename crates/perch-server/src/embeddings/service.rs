//! A loaded embedding model behind a batching worker thread.
//!
//! Requests send their inputs to the worker over a channel and await a oneshot reply. The
//! worker takes the first waiting request, then keeps collecting requests that arrive within
//! a short window (or until the batch is full), and embeds them all in one call of
//! [`Embedder::embed`], so concurrent clients share each pass through the weights. The
//! compute runs on the worker thread (and the backend's own pool), never on the async
//! runtime.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perch_engine::embed::{EmbedError, EmbedInput, Embedder, Embedding};
use tokio::sync::oneshot;

/// How long the worker waits for more requests after the first of a batch.
pub const BATCH_WINDOW: Duration = Duration::from_millis(3);
/// Most inputs in one batch.
pub const MAX_BATCH_INPUTS: usize = 256;

type Reply = Result<Vec<Embedding>, EmbedError>;

struct Job {
    inputs: Vec<EmbedInput>,
    truncate: bool,
    reply: oneshot::Sender<Reply>,
}

/// An embedding model with its batching worker. Dropping it stops the worker after the
/// batch it is running.
pub struct EmbedService {
    embedder: Arc<dyn Embedder>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Option<JoinHandle<()>>,
    batches: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for EmbedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedService")
            .field("backend", &self.embedder.name())
            .field("dimension", &self.embedder.dimension())
            .finish_non_exhaustive()
    }
}

impl EmbedService {
    /// Start the worker for `embedder`.
    pub fn start(embedder: Arc<dyn Embedder>) -> std::io::Result<EmbedService> {
        let (tx, rx) = mpsc::channel::<Job>();
        let batches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let worker = {
            let embedder = embedder.clone();
            let batches = batches.clone();
            std::thread::Builder::new()
                .name("perch-embed".into())
                .spawn(move || worker(&*embedder, &rx, &batches))?
        };
        Ok(EmbedService {
            embedder,
            tx: Mutex::new(Some(tx)),
            worker: Some(worker),
            batches,
        })
    }

    /// The model.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    /// Batches run so far (a batch may hold several requests).
    pub fn batches(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Embed `inputs` (in one batch with whatever other requests arrive meanwhile).
    pub async fn embed(&self, inputs: Vec<EmbedInput>, truncate: bool) -> Reply {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|tx| {
                tx.send(Job {
                    inputs,
                    truncate,
                    reply,
                })
            });
        if !matches!(sent, Some(Ok(()))) {
            return Err(EmbedError::Backend(
                "the embedding worker has stopped".into(),
            ));
        }
        rx.await
            .unwrap_or_else(|_| Err(EmbedError::Backend("the embedding worker stopped".into())))
    }
}

impl Drop for EmbedService {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn worker(
    embedder: &dyn Embedder,
    rx: &mpsc::Receiver<Job>,
    batches: &std::sync::atomic::AtomicU64,
) {
    while let Ok(first) = rx.recv() {
        let mut n = first.inputs.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + BATCH_WINDOW;
        while n < MAX_BATCH_INPUTS {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) => {
                    n += j.inputs.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        // Requests that want truncation and those that do not run as separate batches.
        let (trunc, strict): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.truncate);
        for group in [trunc, strict] {
            if !group.is_empty() {
                batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                run(embedder, group);
            }
        }
    }
}

/// Embed a group of jobs with the same truncation setting in one call; when that fails
/// because of one request's input, run each request alone so only that one gets the error
/// (with indices relative to its own inputs).
fn run(embedder: &dyn Embedder, jobs: Vec<Job>) {
    let truncate = jobs[0].truncate;
    if jobs.len() == 1 {
        let job = jobs.into_iter().next().expect("one job");
        let _ = job.reply.send(embedder.embed(&job.inputs, truncate));
        return;
    }
    let all: Vec<EmbedInput> = jobs.iter().flat_map(|j| j.inputs.iter().cloned()).collect();
    let started = Instant::now();
    match embedder.embed(&all, truncate) {
        Ok(out) => {
            tracing::debug!(
                requests = jobs.len(),
                inputs = all.len(),
                ms = started.elapsed().as_millis() as u64,
                "embedding batch"
            );
            let mut it = out.into_iter();
            for job in jobs {
                let part: Vec<Embedding> = it.by_ref().take(job.inputs.len()).collect();
                let _ = job.reply.send(Ok(part));
            }
        }
        Err(e) if e.is_input_error() => {
            for job in jobs {
                let _ = job.reply.send(embedder.embed(&job.inputs, truncate));
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}
