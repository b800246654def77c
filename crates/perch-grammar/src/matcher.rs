//! The matcher: llama.cpp's stack-based pushdown matcher over bytes, run as a lazily built
//! DFA over sets of stacks, with token masks from a walk of the vocabulary trie.
//!
//! A *stack* is a chain of positions in the program: the top is a terminal still to match,
//! the rest are where to continue when each enclosing rule ends. Stacks are interned as
//! `(position, parent)` nodes, so a stack is one `u32` and equal stacks are equal numbers.
//! A matcher *state* is the sorted set of live stacks plus whether the input so far is a
//! complete match; states are interned too, and each keeps a 256-entry transition table
//! filled on first use. Advancing by a byte is then one table lookup once warm.
//!
//! The mask of a state walks the token trie depth first, advancing the state along each edge
//! and cutting a subtree as soon as its state is dead, so a token costs nothing beyond the
//! bytes it shares with others. Masks are cached per state: JSON output revisits the same
//! few states (inside a string, after a comma, ...) over and over, and those steps cost a
//! copy-free lookup.

use std::sync::Arc;

use crate::{FastMap as HashMap, FastSet as HashSet};

use crate::compile::{ByteSet, Elem, Program, has};
use crate::error::{GrammarError, Result};
use crate::vocab::{TokenMask, TokenVocab};

const NO_PARENT: u32 = u32::MAX;
const DEAD: u32 = 0;
const UNKNOWN: u32 = u32::MAX;
/// States kept before the caches are dropped and rebuilt from the current state.
const MAX_STATES: usize = 20_000;

struct State {
    stacks: Box<[u32]>,
    accept: bool,
    first: ByteSet,
    trans: Option<Box<[u32; 256]>>,
    mask: Option<Arc<TokenMask>>,
    /// Bytes that lead back to this same state (computed on first use).
    loops: Option<ByteSet>,
}

/// Matches output against a compiled grammar, byte by byte or token by token, and says
/// which tokens may come next.
pub struct Matcher {
    prog: Arc<Program>,
    vocab: Arc<TokenVocab>,
    nodes: Vec<(u32, u32)>,
    node_index: HashMap<(u32, u32), u32>,
    states: Vec<State>,
    state_index: HashMap<(Box<[u32]>, bool), u32>,
    cur: u32,
    start: u32,
    ended: bool,
    work: Vec<(u32, u32)>,
    seen: HashSet<(u32, u32)>,
    dfs: Vec<(u32, u32)>,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher")
            .field("states", &self.states.len())
            .field("stacks", &self.nodes.len())
            .field("accepting", &self.is_accepting())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl Matcher {
    /// A matcher at the start of `prog`, masking over `vocab`.
    pub(crate) fn new(prog: Arc<Program>, vocab: Arc<TokenVocab>) -> Matcher {
        let mut m = Matcher {
            prog,
            vocab,
            nodes: Vec::new(),
            node_index: HashMap::default(),
            states: Vec::new(),
            state_index: HashMap::default(),
            cur: DEAD,
            start: DEAD,
            ended: false,
            work: Vec::new(),
            seen: HashSet::default(),
            dfs: Vec::new(),
        };
        m.init();
        m
    }

    fn init(&mut self) {
        if self.states.is_empty() {
            self.states.push(State {
                stacks: Box::new([]),
                accept: false,
                first: [0; 4],
                trans: None,
                mask: None,
                loops: None,
            });
        }
        let mut out = Vec::new();
        let mut accept = false;
        let root = self.prog.root as usize;
        let starts = self.prog.alts[root].clone();
        for s in starts {
            self.expand(s, NO_PARENT, &mut out, &mut accept);
        }
        self.cur = self.intern_state(out, accept);
        self.start = self.cur;
    }

    /// Back to the start of the grammar, keeping the caches (masks of states seen before are
    /// reused).
    pub fn reset(&mut self) {
        self.cur = self.start;
        self.ended = false;
    }

    /// The vocabulary this matcher masks over.
    pub fn vocab(&self) -> &Arc<TokenVocab> {
        &self.vocab
    }

    /// The output so far is a complete match (end of generation is allowed).
    pub fn is_accepting(&self) -> bool {
        self.ended || self.states[self.cur as usize].accept
    }

    /// The output is complete and nothing more may follow: generation should stop.
    pub fn is_finished(&self) -> bool {
        self.ended || {
            let s = &self.states[self.cur as usize];
            s.accept && s.stacks.is_empty()
        }
    }

    /// Feed bytes; `false` (and no change) when they cannot continue the match.
    pub fn accept_bytes(&mut self, bytes: &[u8]) -> bool {
        if self.ended {
            return bytes.is_empty();
        }
        let mut s = self.cur;
        for &b in bytes {
            s = self.step(s, b);
            if s == DEAD {
                return false;
            }
        }
        self.cur = s;
        true
    }

    /// Advance by a sampled token. An end-of-generation token is accepted only where the
    /// grammar may end.
    pub fn accept_token(&mut self, id: u32) -> Result<()> {
        if self.vocab.is_eog(id) {
            if self.is_accepting() {
                self.ended = true;
                return Ok(());
            }
            return Err(GrammarError::Rejected(id));
        }
        let vocab = self.vocab.clone();
        let bytes = vocab.token_bytes(id);
        if bytes.is_empty() || !self.accept_bytes(bytes) {
            return Err(GrammarError::Rejected(id));
        }
        Ok(())
    }

    /// The tokens that may come next (end-of-generation tokens only where the grammar may
    /// end). Cached per state.
    pub fn mask(&mut self) -> Arc<TokenMask> {
        if self.states.len() > MAX_STATES {
            self.rebuild();
        }
        let s = self.cur;
        if let Some(m) = &self.states[s as usize].mask {
            return m.clone();
        }
        let vocab = self.vocab.clone();
        let mut mask = TokenMask::none(vocab.n_vocab());
        if self.ended {
            let m = Arc::new(mask);
            return m;
        }
        if self.states[s as usize].accept {
            for &t in vocab.eog() {
                mask.allow(t);
            }
        }
        let mut dfs = std::mem::take(&mut self.dfs);
        dfs.clear();
        if vocab.n_nodes() > 0 {
            dfs.push((0, s));
        }
        while let Some((node, st)) = dfs.pop() {
            let first = self.states[st as usize].first;
            for &(b, child) in vocab.edges(node) {
                if !has(&first, b) {
                    continue;
                }
                let next = self.step(st, b);
                if next == DEAD {
                    continue;
                }
                if vocab.edges(child).is_empty() {
                    for &t in vocab.tokens_at(child) {
                        mask.allow(t);
                    }
                    continue;
                }
                // Every byte below leads back to the same state (plain text inside a JSON
                // string, say): the whole subtree is allowed without walking it.
                let loops = self.loops(next);
                let below = vocab.below(child);
                if below.iter().zip(&loops).all(|(b, l)| b & !l == 0) {
                    for &t in vocab.subtree_tokens(child) {
                        mask.allow(t);
                    }
                    continue;
                }
                for &t in vocab.tokens_at(child) {
                    mask.allow(t);
                }
                dfs.push((child, next));
            }
        }
        self.dfs = dfs;
        let m = Arc::new(mask);
        self.states[s as usize].mask = Some(m.clone());
        m
    }

    /// Set the logits of tokens that cannot come next to `-inf`.
    pub fn apply_mask(&mut self, logits: &mut [f32]) {
        self.mask().apply(logits);
    }

    /// Number of interned states and stacks (for tests and diagnostics).
    pub fn cache_size(&self) -> (usize, usize) {
        (self.states.len(), self.nodes.len())
    }

    /// The bytes that lead from state `s` back to itself.
    fn loops(&mut self, s: u32) -> ByteSet {
        if let Some(l) = self.states[s as usize].loops {
            return l;
        }
        let first = self.states[s as usize].first;
        let mut l = [0u64; 4];
        for b in 0..=255u8 {
            if has(&first, b) && self.step(s, b) == s {
                l[(b >> 6) as usize] |= 1 << (b & 63);
            }
        }
        self.states[s as usize].loops = Some(l);
        l
    }

    fn node(&mut self, pos: u32, parent: u32) -> u32 {
        if let Some(&n) = self.node_index.get(&(pos, parent)) {
            return n;
        }
        let n = self.nodes.len() as u32;
        self.nodes.push((pos, parent));
        self.node_index.insert((pos, parent), n);
        n
    }

    /// Push the stacks that continue at `pos` under `parent` until each has a terminal on
    /// top; a stack that runs off the root's end sets `accept`.
    fn expand(&mut self, pos: u32, parent: u32, out: &mut Vec<u32>, accept: &mut bool) {
        let mut work = std::mem::take(&mut self.work);
        work.clear();
        self.seen.clear();
        work.push((pos, parent));
        while let Some((pos, parent)) = work.pop() {
            if !self.seen.insert((pos, parent)) {
                continue;
            }
            match self.prog.elems[pos as usize] {
                Elem::Term(_) => {
                    let n = self.node(pos, parent);
                    out.push(n);
                }
                Elem::End => {
                    if parent == NO_PARENT {
                        *accept = true;
                    } else {
                        let (ppos, pparent) = self.nodes[parent as usize];
                        work.push((ppos, pparent));
                    }
                }
                Elem::Call(r) => {
                    // A call in tail position returns straight to the caller's caller (as in
                    // llama.cpp), so right recursion (`x*`) does not grow the stack and a
                    // loop comes back to the same state.
                    let ret = if self.prog.elems[pos as usize + 1] == Elem::End {
                        parent
                    } else {
                        self.node(pos + 1, parent)
                    };
                    for i in 0..self.prog.alts[r as usize].len() {
                        let start = self.prog.alts[r as usize][i];
                        work.push((start, ret));
                    }
                }
            }
        }
        self.work = work;
    }

    fn intern_state(&mut self, mut stacks: Vec<u32>, accept: bool) -> u32 {
        if stacks.is_empty() && !accept {
            return DEAD;
        }
        stacks.sort_unstable();
        stacks.dedup();
        let key = (stacks.into_boxed_slice(), accept);
        if let Some(&s) = self.state_index.get(&key) {
            return s;
        }
        let mut first = [0u64; 4];
        for &st in key.0.iter() {
            let (pos, _) = self.nodes[st as usize];
            if let Elem::Term(set) = self.prog.elems[pos as usize] {
                let set = &self.prog.sets[set as usize];
                for (f, w) in first.iter_mut().zip(set) {
                    *f |= w;
                }
            }
        }
        let id = self.states.len() as u32;
        self.states.push(State {
            stacks: key.0.clone(),
            accept,
            first,
            trans: None,
            mask: None,
            loops: None,
        });
        self.state_index.insert(key, id);
        id
    }

    fn step(&mut self, s: u32, b: u8) -> u32 {
        if s == DEAD {
            return DEAD;
        }
        if let Some(t) = &self.states[s as usize].trans {
            let v = t[b as usize];
            if v != UNKNOWN {
                return v;
            }
        }
        let next = if has(&self.states[s as usize].first, b) {
            let mut out = Vec::new();
            let mut accept = false;
            let stacks = self.states[s as usize].stacks.clone();
            for &st in stacks.iter() {
                let (pos, parent) = self.nodes[st as usize];
                if let Elem::Term(set) = self.prog.elems[pos as usize]
                    && has(&self.prog.sets[set as usize], b)
                {
                    self.expand(pos + 1, parent, &mut out, &mut accept);
                }
            }
            self.intern_state(out, accept)
        } else {
            DEAD
        };
        let t = self.states[s as usize]
            .trans
            .get_or_insert_with(|| Box::new([UNKNOWN; 256]));
        t[b as usize] = next;
        next
    }

    /// Drop every cache and re-intern the current state (a long, deeply nested output can
    /// visit many states; this bounds the memory).
    fn rebuild(&mut self) {
        let ended = self.ended;
        let stacks: Vec<Vec<u32>> = self.states[self.cur as usize]
            .stacks
            .iter()
            .map(|&st| {
                let mut chain = Vec::new();
                let mut n = st;
                while n != NO_PARENT {
                    let (pos, parent) = self.nodes[n as usize];
                    chain.push(pos);
                    n = parent;
                }
                chain
            })
            .collect();
        let accept = self.states[self.cur as usize].accept;
        self.nodes.clear();
        self.node_index.clear();
        self.states.clear();
        self.state_index.clear();
        self.states.push(State {
            stacks: Box::new([]),
            accept: false,
            first: [0; 4],
            trans: None,
            mask: None,
            loops: None,
        });
        let mut ids = Vec::with_capacity(stacks.len());
        for chain in stacks {
            let mut parent = NO_PARENT;
            for &pos in chain.iter().rev() {
                parent = self.node(pos, parent);
            }
            ids.push(parent);
        }
        let cur = self.intern_state(ids, accept);
        self.init();
        self.cur = cur;
        self.ended = ended;
    }
}
