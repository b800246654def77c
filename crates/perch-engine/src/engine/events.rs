//! What goes into the engine and what comes out: a request, its stream's events, its
//! token counts and timings, and the engine's counters.

use std::time::Duration;

use crate::kv::PoolStats;
use crate::sampling::{Constraint, Logprobs, SamplingParams};

/// One generation request, already tokenized and validated.
#[derive(Debug)]
pub struct GenerationRequest {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Stop strings (not included in the output).
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Report the chosen token's log-probability and this many alternatives.
    pub logprobs: Option<usize>,
    /// Constrained decoding: only tokens the constraint allows are sampled, and generation
    /// stops when it is complete. (Log-probabilities are still those of the raw logits.)
    pub constraint: Option<Box<dyn Constraint>>,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-generation token or stop string.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The request was cancelled (or the engine shut down).
    Cancelled,
}

/// Token counts of a finished request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
}

/// Timings of a finished request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// From submission to admission.
    pub queued: Duration,
    /// From admission to the first generated token.
    pub prompt: Duration,
    /// From the first generated token to the end.
    pub generation: Duration,
}

/// What a request's stream carries.
#[derive(Clone, Debug)]
pub enum Event {
    /// A generated token and the text it completes (may be empty while a character or a
    /// possible stop string is incomplete).
    Token {
        /// Token id.
        id: u32,
        /// Text to show now.
        text: String,
        /// Log-probabilities, when asked.
        logprobs: Option<Logprobs>,
    },
    /// The end, with any text still held back.
    Done {
        /// Remaining text.
        text: String,
        /// Why it ended.
        finish: FinishReason,
        /// Token counts.
        usage: Usage,
        /// Timings.
        timings: Timings,
    },
    /// The request failed.
    Error(String),
}

/// Counters the server's metrics read.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineStats {
    /// Requests waiting to be admitted (including ones not yet seen by the loop).
    pub waiting: usize,
    /// Sequences running.
    pub running: usize,
    /// KV pool counters.
    pub pool: PoolStats,
    /// Forward steps run.
    pub steps: u64,
    /// Tokens computed by forward steps.
    pub tokens_computed: u64,
    /// Sequences preempted because the KV pool ran out (recomputed later).
    pub preemptions: u64,
    /// Speculative draft tokens computed.
    pub draft_tokens: u64,
    /// Draft tokens the sampler accepted.
    pub draft_accepted: u64,
    /// Forward passes of the draft model (`--draft-model`).
    pub draft_model_steps: u64,
    /// Tokens the draft model computed (catching up with the target, then its guesses).
    pub draft_model_tokens: u64,
    /// Time spent in the draft model.
    pub draft_model_time: Duration,
    /// Blocks of the draft model's KV cache in use.
    pub draft_blocks_used: usize,
}
