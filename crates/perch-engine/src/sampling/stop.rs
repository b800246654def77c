//! Stop strings over streamed text.
//!
//! Text arrives in deltas (one detokenized token at a time), and a stop string can span
//! several of them. [`StopMatcher`] emits text as soon as it is certain not to be part of a
//! stop string: it holds back the longest tail that is the start of some stop string, and
//! when a stop string completes it emits what came before it and nothing of the stop string
//! itself (nor anything after it).
//!
//! It also ends generation at end-of-generation tokens (EOS, EOT, ...) given with
//! [`StopMatcher::with_stop_tokens`] and fed through [`StopMatcher::push_token`]: their text
//! is never emitted, and text held back until then is released.

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// An end-of-generation token.
    Token(u32),
    /// A stop string (the one that matched).
    String(String),
}

/// What [`StopMatcher::push`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopOutcome {
    /// Text that may be sent to the client now.
    pub emit: String,
    /// Generation must end; `emit` then holds the last text before the stop.
    pub stopped: bool,
    /// What stopped it (set exactly when `stopped` is).
    pub stop: Option<Stop>,
}

impl StopOutcome {
    fn stop(emit: String, stop: Stop) -> Self {
        StopOutcome {
            emit,
            stopped: true,
            stop: Some(stop),
        }
    }
}

/// Finds stop strings and stop tokens in a stream of generated tokens and text deltas.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    stop_tokens: Vec<u32>,
    /// Text received but not emitted yet (a possible start of a stop string).
    pending: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for the given stop strings (empty strings are ignored).
    pub fn new<I, S>(stops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StopMatcher {
            stops: stops
                .into_iter()
                .map(Into::into)
                .filter(|s: &String| !s.is_empty())
                .collect(),
            stop_tokens: Vec::new(),
            pending: String::new(),
            stopped: false,
        }
    }

    /// Also stops at these tokens (the vocabulary's end-of-generation tokens: EOS, EOT, EOM,
    /// ...).
    pub fn with_stop_tokens(mut self, tokens: impl IntoIterator<Item = u32>) -> Self {
        self.stop_tokens.extend(tokens);
        self
    }

    /// Feeds the next generated token and its detokenized text. A stop token ends the
    /// stream: its text is dropped and the held-back text is released.
    pub fn push_token(&mut self, token: u32, text: &str) -> StopOutcome {
        if !self.stopped && self.stop_tokens.contains(&token) {
            let emit = self.finish();
            self.stopped = true;
            return StopOutcome::stop(emit, Stop::Token(token));
        }
        self.push(text)
    }

    /// Whether a stop string has been found.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds the next text delta. After a stop, further deltas emit nothing.
    pub fn push(&mut self, delta: &str) -> StopOutcome {
        if self.stopped {
            return StopOutcome {
                stopped: true,
                ..Default::default()
            };
        }
        self.pending.push_str(delta);
        // The earliest complete stop string wins (the longest one on a tie).
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|pos| (pos, s)))
            .min_by(|a, b| a.0.cmp(&b.0).then(b.1.len().cmp(&a.1.len())));
        if let Some((pos, stop)) = found {
            let stop = stop.clone();
            self.stopped = true;
            let mut emit = std::mem::take(&mut self.pending);
            emit.truncate(pos);
            return StopOutcome::stop(emit, Stop::String(stop));
        }
        let hold = self.held_back_len();
        let split = self.pending.len() - hold;
        let rest = self.pending.split_off(split);
        let emit = std::mem::replace(&mut self.pending, rest);
        StopOutcome {
            emit,
            stopped: false,
            stop: None,
        }
    }

    /// Ends the stream without a stop string: returns the text still held back.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.pending)
    }

    /// Length in bytes of the longest tail of `pending` that is a proper prefix of a stop
    /// string. Such a tail starts on a character boundary, because a stop string's first
    /// byte is never a UTF-8 continuation byte.
    fn held_back_len(&self) -> usize {
        let text = self.pending.as_bytes();
        let mut best = 0;
        for stop in &self.stops {
            let stop = stop.as_bytes();
            let max = (stop.len() - 1).min(text.len());
            for len in (best + 1..=max).rev() {
                if text[text.len() - len..] == stop[..len] {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}
