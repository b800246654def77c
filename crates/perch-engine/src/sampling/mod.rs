//! Sampling: turns a step's logits into the next token.
//!
//! The design follows llama.cpp's sampler interface: each sampler is a small stage with
//! `apply` (transform the candidate list), `accept` (observe the token that was chosen) and
//! `reset`, and stages compose into a [`Sampler`] chain. The default order is llama.cpp's:
//!
//! logit bias → penalties (repetition, frequency, presence over the last `penalty_last_n`
//! tokens) → top-k → typical-p → top-p → min-p → temperature → a draw from the resulting
//! distribution with a seeded ChaCha8 generator (the same seed gives the same tokens on
//! every platform).
//!
//! A temperature of zero or less is greedy decoding: the argmax of the biased and penalized
//! logits (ties go to the lowest token id); the truncation stages do not run, since top-k,
//! top-p and min-p always keep the most likely token.
//!
//! Candidates are the whole vocabulary (150k entries for some models), so stages avoid full
//! sorts: top-k keeps the k best in a small heap (or partitions with `select_nth_unstable`)
//! and sorts only those; top-p sorts the 256 most likely tokens, widening 8 times at a time
//! until the mass is reached; min-p filters without sorting.
//!
//! [`logprobs`] gives the per-token log-probabilities the OpenAI API reports: the
//! log-softmax of the raw logits (before penalties, bias or temperature), with the top-N
//! alternatives. [`StopMatcher`] finds stop strings in the detokenized text.
//!
//! A [`Constraint`] (constrained decoding: a grammar, a JSON schema) masks the logits before
//! the chain runs, so every stage sees only the tokens the constraint allows.

mod candidates;
mod constraint;
mod logprob;
mod stages;
pub mod stop;

pub use candidates::{Candidates, TokenData};
pub use constraint::Constraint;
pub use logprob::{Logprobs, TokenLogprob, logprobs};
pub use stages::{
    Distribution, Greedy, LogitBias, MinP, Penalties, SamplerStage, Temperature, TopK, TopP,
    Typical,
};
pub use stop::{Stop, StopMatcher, StopOutcome};

/// Sampling parameters of one request. [`Default`] gives llama.cpp's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits; `<= 0` means greedy decoding.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` disables.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability mass reaches `top_p`;
    /// `1.0` disables.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top token's; `0.0` disables.
    pub min_p: f32,
    /// Locally typical sampling mass; `1.0` disables.
    pub typical_p: f32,
    /// Repetition penalty: positive logits of recent tokens are divided by it, negative ones
    /// multiplied; `1.0` disables.
    pub repeat_penalty: f32,
    /// Subtracted once from the logit of every token seen in the window; `0.0` disables.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the window; `0.0` disables.
    pub frequency_penalty: f32,
    /// How many of the most recent accepted tokens the penalties look at; `0` disables the
    /// penalties. (Callers map OpenAI/Ollama's `-1` = "whole context" to the context length.)
    pub penalty_last_n: usize,
    /// Added to the logits of the given tokens (`f32::NEG_INFINITY` bans a token).
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the random generator; `None` picks one at random ([`Sampler::seed`] tells
    /// which).
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        // llama.cpp's common_params_sampling defaults.
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (temperature 0) with no penalties.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

/// Why sampling parameters or logits were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplingError {
    /// A parameter is out of its range.
    #[error("invalid sampling parameter {name} = {value}: {expected}")]
    InvalidParam {
        /// The parameter.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A logit bias names a token outside the vocabulary.
    #[error("logit_bias token {token} is outside the vocabulary (size {n_vocab})")]
    BiasTokenOutOfRange {
        /// The token id.
        token: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// The logits slice does not have one entry per vocabulary token.
    #[error("got {got} logits for a vocabulary of {n_vocab}")]
    LogitsLength {
        /// Entries given.
        got: usize,
        /// The vocabulary size.
        n_vocab: usize,
    },
    /// Every token was excluded (e.g. all banned by logit bias, or all logits NaN).
    #[error("no token can be sampled: every candidate was excluded")]
    NoCandidates,
}

/// A sampler chain: the stages of [`SamplingParams`] in llama.cpp's order, ending in a
/// seeded draw (or greedy argmax). Feed it each step's logits with [`Sampler::sample`] and
/// tell it the token that was used with [`Sampler::accept`] (also for prompt tokens, if the
/// penalties should see them).
pub struct Sampler {
    n_vocab: usize,
    seed: u64,
    greedy: bool,
    /// Stages before the final pick (bias, penalties, truncation, temperature).
    stages: Vec<Box<dyn SamplerStage>>,
    dist: Distribution,
    candidates: Candidates,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("n_vocab", &self.n_vocab)
            .field("seed", &self.seed)
            .field("greedy", &self.greedy)
            .field(
                "stages",
                &self.stages.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Sampler {
    /// Builds the chain for `params` over a vocabulary of `n_vocab` tokens.
    pub fn new(params: &SamplingParams, n_vocab: usize) -> Result<Self, SamplingError> {
        validate(params, n_vocab)?;
        let seed = params.seed.unwrap_or_else(random_seed);
        let greedy = params.temperature <= 0.0;
        let mut stages: Vec<Box<dyn SamplerStage>> = Vec::new();
        if !params.logit_bias.is_empty() {
            stages.push(Box::new(LogitBias::new(params.logit_bias.clone())));
        }
        let penalties = Penalties::new(
            params.penalty_last_n,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        );
        if !penalties.is_disabled() {
            stages.push(Box::new(penalties));
        }
        if !greedy {
            if params.top_k > 0 {
                stages.push(Box::new(TopK::new(params.top_k)));
            }
            if params.typical_p < 1.0 {
                stages.push(Box::new(Typical::new(params.typical_p)));
            }
            if params.top_p < 1.0 {
                stages.push(Box::new(TopP::new(params.top_p)));
            }
            if params.min_p > 0.0 {
                stages.push(Box::new(MinP::new(params.min_p)));
            }
            if params.temperature != 1.0 {
                stages.push(Box::new(Temperature::new(params.temperature)));
            }
        }
        Ok(Sampler {
            n_vocab,
            seed,
            greedy,
            stages,
            dist: Distribution::new(seed),
            candidates: Candidates::default(),
        })
    }

    /// The seed in use (the given one, or the one picked at random).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Names of the stages in order, ending with `greedy` or `dist`.
    pub fn stage_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.stages.iter().map(|s| s.name()).collect();
        names.push(if self.greedy { "greedy" } else { "dist" });
        names
    }

    /// Picks the next token from one step's logits (one per vocabulary entry). Does not
    /// accept it: call [`Sampler::accept`] with the token actually used.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplingError> {
        if logits.len() != self.n_vocab {
            return Err(SamplingError::LogitsLength {
                got: logits.len(),
                n_vocab: self.n_vocab,
            });
        }
        if self.greedy && self.stages.is_empty() {
            // Plain greedy decoding: no candidate list needed.
            return argmax(logits).ok_or(SamplingError::NoCandidates);
        }
        self.candidates.fill(logits);
        for stage in &mut self.stages {
            stage.apply(&mut self.candidates);
        }
        if self.greedy {
            Greedy.apply(&mut self.candidates);
        } else {
            self.dist.apply(&mut self.candidates);
        }
        self.candidates
            .selected()
            .ok_or(SamplingError::NoCandidates)
    }

    /// Records the token that was used (for the penalty window).
    pub fn accept(&mut self, token: u32) {
        for stage in &mut self.stages {
            stage.accept(token);
        }
    }

    /// Forgets accepted tokens and restarts the random generator from the seed.
    pub fn reset(&mut self) {
        for stage in &mut self.stages {
            stage.reset();
        }
        self.dist.reset();
    }
}

/// Index of the largest logit (ties: the lowest index), ignoring NaN; `None` when no logit
/// is above `-inf`.
///
/// Two passes: the maximum in sixteen independent lanes (which the compiler vectorizes; a
/// step of sixteen sequences over a 49,152-token vocabulary took 1.7 ms serially with one
/// compare-and-branch per logit), then the first index holding it.
fn argmax(logits: &[f32]) -> Option<u32> {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &l) in lanes.iter_mut().zip(c) {
            // Strictly greater: NaN never replaces a lane's value.
            *m = if l > *m { l } else { *m };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for &l in lanes.iter().chain(tail) {
        if l > best {
            best = l;
        }
    }
    if best == f32::NEG_INFINITY {
        return None;
    }
    logits.iter().position(|&l| l == best).map(|i| i as u32)
}

fn validate(p: &SamplingParams, n_vocab: usize) -> Result<(), SamplingError> {
    fn bad(name: &'static str, value: f32, expected: &'static str) -> SamplingError {
        SamplingError::InvalidParam {
            name,
            value: value.to_string(),
            expected,
        }
    }
    if n_vocab == 0 || n_vocab > u32::MAX as usize {
        return Err(SamplingError::InvalidParam {
            name: "n_vocab",
            value: n_vocab.to_string(),
            expected: "between 1 and 2^32 - 1",
        });
    }
    if !p.temperature.is_finite() {
        return Err(bad("temperature", p.temperature, "a finite number"));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return Err(bad("top_p", p.top_p, "in (0, 1]"));
    }
    if !(0.0..=1.0).contains(&p.min_p) {
        return Err(bad("min_p", p.min_p, "in [0, 1]"));
    }
    if !(p.typical_p > 0.0 && p.typical_p <= 1.0) {
        return Err(bad("typical_p", p.typical_p, "in (0, 1]"));
    }
    if !(p.repeat_penalty.is_finite() && p.repeat_penalty > 0.0) {
        return Err(bad(
            "repeat_penalty",
            p.repeat_penalty,
            "a finite number > 0",
        ));
    }
    if !p.presence_penalty.is_finite() {
        return Err(bad(
            "presence_penalty",
            p.presence_penalty,
            "a finite number",
        ));
    }
    if !p.frequency_penalty.is_finite() {
        return Err(bad(
            "frequency_penalty",
            p.frequency_penalty,
            "a finite number",
        ));
    }
    for &(token, bias) in &p.logit_bias {
        if token as usize >= n_vocab {
            return Err(SamplingError::BiasTokenOutOfRange { token, n_vocab });
        }
        if bias.is_nan() || bias == f32::INFINITY {
            return Err(bad("logit_bias", bias, "a finite number or -inf"));
        }
    }
    Ok(())
}

/// A seed for requests that give none: not reproducible, and not meant to be.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
mod tests;
