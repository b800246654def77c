//! The engine loop: one thread that owns the model, the KV cache and the scheduler, and runs
//! continuous batching for every request submitted through an [`EngineHandle`].
//!
//! Each step: take in new requests and notice cancelled ones, ask the scheduler for a plan,
//! run one batched forward pass inside the compute pool, then sample the sequences that reached
//! their last token and stream the results out. A request's events go through its own channel;
//! dropping the receiver cancels it, and its blocks are freed at the next step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use perch_tokenizer::{StreamDecoder, Tokenizer};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::draft::{DraftConfig, DraftRequest, Drafter};
use crate::error::{EngineError, Result};
use crate::kv::{BlockPool, KvLayout, KvStorage, KvType};
use crate::model::{LogitsWanted, Model, SeqStep, Workspace};
use crate::sampling::{Constraint, Sampler, StopMatcher, logprobs};
use crate::scheduler::{Scheduler, SchedulerConfig, SeqId};
use crate::speculative::{DraftPace, Speculative};

mod events;
pub use events::{EngineStats, Event, FinishReason, GenerationRequest, Timings, Usage};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Token slots per KV block.
    pub block_size: usize,
    /// KV blocks in the pool.
    pub n_blocks: usize,
    /// Longest sequence (prompt plus generation) one request may have.
    pub max_seq_len: usize,
    /// Most tokens in one forward step.
    pub max_batch_tokens: usize,
    /// Most sequences running at once.
    pub max_running: usize,
    /// Compute threads.
    pub threads: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
    /// Speculative decoding by prompt lookup (off when `None`).
    pub speculative: Option<Speculative>,
    /// Speculative decoding with a draft model (off when `None`; not together with
    /// `speculative`).
    pub draft: Option<DraftConfig>,
}

impl EngineConfig {
    /// A configuration holding `parallel` sequences of `n_ctx` tokens each, or the given KV
    /// memory budget in bytes when `kv_memory` is set.
    pub fn for_model(
        model: &Model,
        n_ctx: usize,
        parallel: usize,
        kv_memory: Option<usize>,
        threads: usize,
    ) -> EngineConfig {
        Self::for_model_kv(model, n_ctx, parallel, kv_memory, threads, KvType::F16)
    }

    /// [`Self::for_model`] with a KV cache of `kv_type` (a Q8_0 cache holds about twice the
    /// tokens of an f16 one in the same `kv_memory`).
    pub fn for_model_kv(
        model: &Model,
        n_ctx: usize,
        parallel: usize,
        kv_memory: Option<usize>,
        threads: usize,
        kv_type: KvType,
    ) -> EngineConfig {
        let block_size = 16;
        let layout = kv_layout(model, block_size, 1, kv_type);
        let n_blocks = match kv_memory {
            Some(bytes) => (bytes / layout.bytes_per_block()).max(1),
            None => n_ctx.div_ceil(block_size) * parallel.max(1),
        };
        EngineConfig {
            block_size,
            n_blocks,
            max_seq_len: n_ctx,
            max_batch_tokens: 512,
            max_running: 64.max(parallel),
            threads,
            kv_type,
            speculative: None,
            draft: None,
        }
    }

    /// Bytes the KV cache of this configuration takes for `model`.
    pub fn kv_bytes(&self, model: &Model) -> usize {
        kv_layout(model, self.block_size, self.n_blocks, self.kv_type).bytes_per_block()
            * self.n_blocks
    }
}

pub(crate) fn kv_layout(
    model: &Model,
    block_size: usize,
    n_blocks: usize,
    kv_type: KvType,
) -> KvLayout {
    let c = model.config();
    KvLayout {
        n_layer: c.n_layer,
        n_head_kv: c.n_head_kv,
        head_dim_k: c.head_dim,
        head_dim_v: c.head_dim_v,
        block_size,
        n_blocks,
        kv_type,
    }
}

enum Command {
    Submit {
        id: SeqId,
        req: Box<GenerationRequest>,
        tx: UnboundedSender<Event>,
        at: Instant,
    },
    Shutdown,
}

struct Shared {
    stats: Mutex<EngineStats>,
    pending: AtomicUsize,
}

/// Submits requests to the engine thread. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    cfg: Arc<EngineConfig>,
    n_vocab: usize,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The running engine: its handle and its thread.
pub struct Engine {
    handle: EngineHandle,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Start the engine thread for `model`.
    pub fn start(
        model: Arc<Model>,
        tokenizer: Arc<Tokenizer>,
        cfg: EngineConfig,
    ) -> Result<Engine> {
        if cfg.block_size == 0
            || cfg.n_blocks == 0
            || cfg.max_batch_tokens == 0
            || cfg.max_seq_len == 0
        {
            return Err(EngineError::BadConfig(
                "block size, block count, batch and context sizes must be positive".into(),
            ));
        }
        if cfg.speculative.is_some() && cfg.draft.is_some() {
            return Err(EngineError::BadConfig(
                "prompt-lookup speculation (--draft-ngram) and a draft model (--draft-model) \
                 cannot be used together; choose one"
                    .into(),
            ));
        }
        let n_vocab = model.config().n_vocab;
        let drafter = match &cfg.draft {
            // The draft cache mirrors the target's sequences, with room for each running
            // sequence's guesses on top (it shares no prefix blocks between sequences).
            Some(d) => Some(Drafter::new(
                d.clone(),
                tokenizer.eog_ids().to_vec(),
                cfg.n_blocks + cfg.max_running * (d.max_draft + 1).div_ceil(cfg.block_size),
                cfg.block_size,
                cfg.kv_type,
                cfg.max_batch_tokens,
                n_vocab,
            )?),
            None => None,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads.max(1))
            .thread_name(|i| format!("perch-compute-{i}"))
            .build()
            .map_err(|e| EngineError::BadConfig(format!("cannot start compute threads: {e}")))?;
        let kv = KvStorage::new(kv_layout(&model, cfg.block_size, cfg.n_blocks, cfg.kv_type))
            .map_err(EngineError::BadConfig)?;
        let sched = Scheduler::new(
            SchedulerConfig {
                max_batch_tokens: cfg.max_batch_tokens,
                max_running: cfg.max_running,
            },
            BlockPool::new(cfg.n_blocks, cfg.block_size),
        );
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            stats: Mutex::new(EngineStats::default()),
            pending: AtomicUsize::new(0),
        });
        let cfg = Arc::new(cfg);
        let mut lp = Loop {
            model,
            tokenizer,
            kv,
            sched,
            ws: Workspace::default(),
            pool,
            rx,
            shared: shared.clone(),
            reqs: HashMap::new(),
            steps: 0,
            tokens_computed: 0,
            preemptions: 0,
            draft_tokens: 0,
            draft_accepted: 0,
            max_seq_len: cfg.max_seq_len,
            speculative: cfg.speculative,
            drafter,
            to_draft: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("perch-engine".into())
            .spawn(move || lp.run())
            .map_err(|e| EngineError::BadConfig(format!("cannot start the engine thread: {e}")))?;
        Ok(Engine {
            handle: EngineHandle {
                tx,
                shared,
                next_id: Arc::new(AtomicU64::new(1)),
                cfg,
                n_vocab,
            },
            thread: Some(thread),
        })
    }

    /// A handle for submitting requests.
    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Cancel everything still running and stop the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl EngineHandle {
    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Submit a request; its events arrive on the returned receiver. Requests that can never
    /// run (empty, longer than a sequence may be, or than the whole KV pool) are refused here.
    pub fn submit(&self, req: GenerationRequest) -> Result<UnboundedReceiver<Event>> {
        if req.prompt.is_empty() {
            return Err(EngineError::BadConfig("the prompt is empty".into()));
        }
        if let Some(&bad) = req.prompt.iter().find(|&&t| t as usize >= self.n_vocab) {
            return Err(EngineError::BadToken {
                id: bad,
                n_vocab: self.n_vocab,
            });
        }
        let capacity = (self.cfg.n_blocks * self.cfg.block_size).min(self.cfg.max_seq_len);
        if req.prompt.len() >= capacity {
            return Err(EngineError::ContextOverflow {
                prompt: req.prompt.len(),
                ctx: capacity,
            });
        }
        let (tx, rx) = unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Command::Submit {
                id,
                req: Box::new(req),
                tx,
                at: Instant::now(),
            })
            .map_err(|_| EngineError::BadConfig("the engine has stopped".into()))?;
        Ok(rx)
    }

    /// Current counters.
    pub fn stats(&self) -> EngineStats {
        let mut s = *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting += self.shared.pending.load(Ordering::Relaxed);
        s
    }
}

struct Request {
    tx: UnboundedSender<Event>,
    sampler: Sampler,
    decoder: StreamDecoder<Arc<Tokenizer>>,
    stop: StopMatcher,
    max_tokens: usize,
    ignore_eos: bool,
    logprobs: Option<usize>,
    constraint: Option<Box<dyn Constraint>>,
    /// The masked copy of the logits when a constraint is set.
    masked: Vec<f32>,
    prompt_len: usize,
    generated: usize,
    last: u32,
    submitted: Instant,
    admitted: Option<Instant>,
    first_token: Option<Instant>,
    /// How many prompt-lookup drafts to propose next.
    pace: DraftPace,
}

struct Loop {
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    kv: KvStorage,
    sched: Scheduler,
    ws: Workspace,
    pool: rayon::ThreadPool,
    rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    reqs: HashMap<SeqId, Request>,
    steps: u64,
    tokens_computed: u64,
    preemptions: u64,
    draft_tokens: u64,
    draft_accepted: u64,
    max_seq_len: usize,
    speculative: Option<Speculative>,
    /// The draft model, when drafting with one.
    drafter: Option<Drafter>,
    /// Sequences to draft for with the draft model once this step's sampling is done.
    to_draft: Vec<SeqId>,
}

impl Loop {
    fn run(&mut self) {
        loop {
            // Block for work when idle; otherwise take whatever arrived since the last step.
            let first = if self.sched.is_idle() {
                match self.rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            } else {
                None
            };
            let mut shutdown = false;
            let mut cmds: Vec<Command> = first.into_iter().collect();
            cmds.extend(self.rx.try_iter());
            for cmd in cmds {
                match cmd {
                    Command::Submit { id, req, tx, at } => {
                        self.shared.pending.fetch_sub(1, Ordering::Relaxed);
                        self.admit(id, *req, tx, at);
                    }
                    Command::Shutdown => shutdown = true,
                }
            }
            if shutdown {
                let ids: Vec<SeqId> = self.reqs.keys().copied().collect();
                for id in ids {
                    self.finish(id, FinishReason::Cancelled);
                }
                self.publish();
                return;
            }
            self.drop_cancelled();
            if !self.sched.is_idle() {
                if let Err(e) = self.step() {
                    tracing::error!(error = %e, "engine step failed");
                    let ids: Vec<SeqId> = self.reqs.keys().copied().collect();
                    for id in ids {
                        self.fail(id, &e.to_string());
                    }
                }
            }
            self.publish();
        }
    }

    fn admit(
        &mut self,
        id: SeqId,
        req: GenerationRequest,
        tx: UnboundedSender<Event>,
        at: Instant,
    ) {
        let sampler = match Sampler::new(&req.sampling, self.model.config().n_vocab) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Event::Error(e.to_string()));
                return;
            }
        };
        // Generation stops at the longest sequence allowed, whatever max_tokens says.
        let max_len = (req.prompt.len() + req.max_tokens).min(self.max_seq_len);
        let prompt_len = req.prompt.len();
        let mut sampler = sampler;
        for &t in &req.prompt {
            sampler.accept(t);
        }
        if let Err(e) = self.sched.add(id, req.prompt, max_len) {
            let _ = tx.send(Event::Error(e.to_string()));
            return;
        }
        self.reqs.insert(
            id,
            Request {
                tx,
                sampler,
                decoder: StreamDecoder::new(self.tokenizer.clone(), false),
                stop: StopMatcher::new(req.stop),
                max_tokens: req.max_tokens,
                ignore_eos: req.ignore_eos,
                logprobs: req.logprobs,
                constraint: req.constraint,
                masked: Vec::new(),
                prompt_len,
                generated: 0,
                last: 0,
                submitted: at,
                admitted: None,
                first_token: None,
                pace: DraftPace::new(self.speculative.map_or(0, |s| s.max_draft)),
            },
        );
    }

    fn drop_cancelled(&mut self) {
        let gone: Vec<SeqId> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.tx.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            tracing::debug!(seq = id, "client went away; cancelling");
            self.finish(id, FinishReason::Cancelled);
        }
    }

    fn step(&mut self) -> Result<()> {
        let plan = self.sched.schedule();
        self.preemptions += plan.preempted.len() as u64;
        if let Some(d) = &mut self.drafter {
            for &id in &plan.preempted {
                d.remove(id);
            }
        }
        if plan.seqs.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for s in &plan.seqs {
            if let Some(r) = self.reqs.get_mut(&s.id) {
                r.admitted.get_or_insert(now);
            }
        }
        let steps: Vec<SeqStep<'_>> = plan
            .seqs
            .iter()
            .map(|s| {
                let seq = self.sched.get(s.id).expect("scheduled sequence exists");
                SeqStep {
                    tokens: &seq.tokens[s.start..s.start + s.len],
                    start_pos: s.start,
                    table: &seq.table,
                    logits: if s.draft > 0 {
                        LogitsWanted::All
                    } else if s.sample {
                        LogitsWanted::Last
                    } else {
                        LogitsWanted::None
                    },
                }
            })
            .collect();
        let (model, kv, ws) = (&self.model, &mut self.kv, &mut self.ws);
        let logits = self.pool.install(|| model.forward(&steps, kv, ws))?;
        drop(steps);
        self.steps += 1;
        self.tokens_computed += plan.n_tokens() as u64;
        self.sched.step_done(&plan);

        let n_vocab = self.model.config().n_vocab;
        let mut rows = logits.chunks_exact(n_vocab);
        for s in plan.seqs.iter().filter(|s| s.sample) {
            if s.draft == 0 {
                let row = rows.next().expect("one logits row per sampled sequence");
                self.sample(s.id, &[row], &[]);
            } else {
                let rs: Vec<&[f32]> = rows.by_ref().take(s.len).collect();
                let seq = self.sched.get(s.id).expect("scheduled sequence exists");
                let drafts = seq.tokens[seq.verified_len()..].to_vec();
                self.draft_tokens += drafts.len() as u64;
                self.sample(s.id, &rs, &drafts);
            }
        }
        self.draft_with_model()
    }

    /// Runs the draft model for the sequences that sampled this step, batched, and sets
    /// their drafts.
    fn draft_with_model(&mut self) -> Result<()> {
        let Some(drafter) = &mut self.drafter else {
            return Ok(());
        };
        let ids = std::mem::take(&mut self.to_draft);
        let reqs: Vec<DraftRequest<'_>> = ids
            .iter()
            .filter_map(|&id| {
                let (r, seq) = (self.reqs.get(&id)?, self.sched.get(id)?);
                Some(DraftRequest {
                    id,
                    tokens: &seq.tokens,
                    // No more drafts than tokens the request may still produce after the
                    // next one.
                    limit: r.max_tokens.saturating_sub(r.generated + 1),
                    eog_ends: !r.ignore_eos,
                })
            })
            .collect();
        if reqs.is_empty() {
            return Ok(());
        }
        let drafts = drafter.propose(&self.pool, &reqs)?;
        let ids: Vec<SeqId> = reqs.iter().map(|r| r.id).collect();
        drop(reqs);
        for (id, d) in ids.into_iter().zip(drafts) {
            if !d.is_empty() {
                self.sched.set_drafts(id, &d);
            }
        }
        Ok(())
    }

    /// Samples sequence `id` from `rows` of logits: the row of its last verified token, then
    /// one per draft. A draft is kept while the sampler picks exactly it; the first token
    /// that differs (or the one after the last kept draft) is appended as usual.
    fn sample(&mut self, id: SeqId, rows: &[&[f32]], drafts: &[u32]) {
        let mut accepted = 0;
        for (i, row) in rows.iter().enumerate() {
            let outcome = match self.reqs.get_mut(&id) {
                Some(r) => Self::sample_one(r, &self.tokenizer, row),
                None => return,
            };
            match outcome {
                Err(msg) => return self.fail(id, &msg),
                Ok(Some(finish)) => {
                    // The drafts kept before the end count, and the last token when it was
                    // guessed too (an end-of-generation token, typically).
                    let last = self.reqs.get(&id).map(|r| r.last);
                    let hit = last.is_some() && drafts.get(i).copied() == last;
                    self.draft_accepted += (accepted + usize::from(hit)) as u64;
                    return self.finish(id, finish);
                }
                Ok(None) => {}
            }
            let r = &self.reqs[&id];
            let token = r.last;
            let done = r.generated >= r.max_tokens;
            if !done && drafts.get(i) == Some(&token) {
                accepted += 1;
                continue;
            }
            self.draft_accepted += accepted as u64;
            if let (Some(spec), Some(r)) = (self.speculative, self.reqs.get_mut(&id)) {
                r.pace.record(drafts.len(), accepted, spec.max_draft);
            }
            if !drafts.is_empty() {
                self.sched.resolve_drafts(id, accepted);
                if let (Some(d), Some(seq)) = (&mut self.drafter, self.sched.get(id)) {
                    // Roll the draft model back to the verified tokens.
                    d.truncate(id, seq.tokens.len());
                }
            }
            let room = self.sched.append_token(id, token);
            if !room || done {
                return self.finish(id, FinishReason::Length);
            }
            self.propose(id);
            return;
        }
    }

    /// Sets the next drafts of `id` by prompt lookup, or queues it for the draft model,
    /// when speculation is on.
    fn propose(&mut self, id: SeqId) {
        if self.drafter.is_some() {
            self.to_draft.push(id);
            return;
        }
        let Some(spec) = self.speculative else {
            return;
        };
        let (Some(r), Some(seq)) = (self.reqs.get_mut(&id), self.sched.get(id)) else {
            return;
        };
        // No more drafts than tokens the request may still produce after the next one, nor
        // than its pace allows.
        let limit = r
            .max_tokens
            .saturating_sub(r.generated + 1)
            .min(r.pace.take_limit());
        let drafts = spec.draft(&seq.tokens, limit);
        if !drafts.is_empty() {
            self.sched.set_drafts(id, &drafts);
        }
    }

    /// Sample one token for `r` and stream it. `Ok(Some(_))` when the request is finished.
    fn sample_one(
        r: &mut Request,
        tokenizer: &Tokenizer,
        logits: &[f32],
    ) -> std::result::Result<Option<FinishReason>, String> {
        let token = match &mut r.constraint {
            None => r.sampler.sample(logits).map_err(|e| e.to_string())?,
            Some(c) => {
                r.masked.clear();
                r.masked.extend_from_slice(logits);
                c.mask(&mut r.masked);
                let token = r.sampler.sample(&r.masked).map_err(|e| match e {
                    crate::sampling::SamplingError::NoCandidates => {
                        "the output constraint allows no token here".to_string()
                    }
                    e => e.to_string(),
                })?;
                c.accept(token)?;
                token
            }
        };
        r.sampler.accept(token);
        r.last = token;
        r.generated += 1;
        r.first_token.get_or_insert_with(Instant::now);
        if !r.ignore_eos && tokenizer.is_eog(token) {
            return Ok(Some(FinishReason::Stop));
        }
        let lp = r.logprobs.and_then(|n| logprobs(logits, token, n));
        let piece = r.decoder.push(token).map_err(|e| e.to_string())?;
        let out = r.stop.push(&piece);
        let _ = r.tx.send(Event::Token {
            id: token,
            text: out.emit,
            logprobs: lp,
        });
        let complete = r.constraint.as_ref().is_some_and(|c| c.is_finished());
        Ok((out.stopped || complete).then_some(FinishReason::Stop))
    }

    fn finish(&mut self, id: SeqId, finish: FinishReason) {
        let seq = self.sched.remove(id);
        if let Some(d) = &mut self.drafter {
            d.remove(id);
        }
        let Some(mut r) = self.reqs.remove(&id) else {
            return;
        };
        let mut text = String::new();
        if finish != FinishReason::Stop || !r.stop.is_stopped() {
            let rest = r.stop.push(&r.decoder.finish());
            text.push_str(&rest.emit);
            if !rest.stopped {
                text.push_str(&r.stop.finish());
            }
        }
        // Whoever reads the counters after the last event sees this request in them.
        self.publish();
        let now = Instant::now();
        let admitted = r.admitted.unwrap_or(now);
        let first = r.first_token.unwrap_or(now);
        let _ = r.tx.send(Event::Done {
            text,
            finish,
            usage: Usage {
                prompt_tokens: r.prompt_len,
                cached_tokens: seq.map_or(0, |s| s.num_cached),
                completion_tokens: r.generated,
            },
            timings: Timings {
                queued: admitted - r.submitted,
                prompt: first.saturating_duration_since(admitted),
                generation: now.saturating_duration_since(first),
            },
        });
    }

    fn fail(&mut self, id: SeqId, msg: &str) {
        self.sched.remove(id);
        if let Some(d) = &mut self.drafter {
            d.remove(id);
        }
        if let Some(r) = self.reqs.remove(&id) {
            let _ = r.tx.send(Event::Error(msg.to_string()));
        }
    }

    fn publish(&self) {
        let ds = self.drafter.as_ref().map(|d| d.stats).unwrap_or_default();
        let mut s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        *s = EngineStats {
            waiting: self.sched.n_waiting(),
            running: self.sched.n_running(),
            pool: self.sched.pool_stats(),
            steps: self.steps,
            tokens_computed: self.tokens_computed,
            preemptions: self.preemptions,
            draft_tokens: self.draft_tokens,
            draft_accepted: self.draft_accepted,
            draft_model_steps: ds.steps,
            draft_model_tokens: ds.tokens_computed,
            draft_model_time: ds.time,
            draft_blocks_used: self.drafter.as_ref().map_or(0, Drafter::blocks_used),
        };
    }
}
