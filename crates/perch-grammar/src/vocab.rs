//! A model's vocabulary as the matcher needs it: each token's bytes in a trie (tokens that
//! share a prefix share the walk), and the end-of-generation tokens.

/// The vocabulary of one model, built once and shared by every matcher of that model.
#[derive(Debug, Clone)]
pub struct TokenVocab {
    n_vocab: usize,
    /// Trie nodes: first child index range into `edges`.
    nodes: Vec<TrieNode>,
    /// Edges sorted by byte within each node: (byte, child node).
    edges: Vec<(u8, u32)>,
    /// Tokens ending at each node: range into `token_ids`.
    token_ids: Vec<u32>,
    eog: Vec<u32>,
    bytes: Vec<Option<Vec<u8>>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct TrieNode {
    edges: (u32, u32),
    /// Tokens ending here.
    tokens: (u32, u32),
    /// End of the tokens of this node's whole subtree (which start at `tokens.0`).
    subtree_end: u32,
    /// Every byte on an edge below this node.
    below: [u64; 4],
}

impl TokenVocab {
    /// Builds the trie. `tokens[i]` is token `i`'s bytes when decoded (`None` or empty for
    /// tokens that never appear in text: control tokens, unused ids); `eog` are the
    /// end-of-generation tokens, allowed only where the grammar may end.
    pub fn new(tokens: Vec<Option<Vec<u8>>>, eog: &[u32]) -> TokenVocab {
        let n_vocab = tokens.len();
        // Build a pointer trie, then flatten it.
        struct Build {
            children: Vec<(u8, usize)>,
            tokens: Vec<u32>,
        }
        let mut b: Vec<Build> = vec![Build {
            children: Vec::new(),
            tokens: Vec::new(),
        }];
        for (id, t) in tokens.iter().enumerate() {
            let Some(bytes) = t.as_deref().filter(|b| !b.is_empty()) else {
                continue;
            };
            if eog.contains(&(id as u32)) {
                continue;
            }
            let mut node = 0;
            for &byte in bytes {
                node = match b[node].children.iter().find(|(c, _)| *c == byte) {
                    Some(&(_, n)) => n,
                    None => {
                        let n = b.len();
                        b.push(Build {
                            children: Vec::new(),
                            tokens: Vec::new(),
                        });
                        b[node].children.push((byte, n));
                        n
                    }
                };
            }
            b[node].tokens.push(id as u32);
        }
        // Flatten in depth-first preorder, so each subtree's nodes (and tokens) are contiguous.
        let mut order = Vec::with_capacity(b.len());
        let mut stack = vec![0usize];
        while let Some(n) = stack.pop() {
            order.push(n);
            b[n].children.sort_unstable_by_key(|c| c.0);
            stack.extend(b[n].children.iter().rev().map(|&(_, c)| c));
        }
        let mut new_id = vec![0u32; b.len()];
        for (i, &old) in order.iter().enumerate() {
            new_id[old] = i as u32;
        }
        let mut nodes = vec![TrieNode::default(); b.len()];
        let mut edges = Vec::with_capacity(b.len());
        let mut token_ids = Vec::new();
        for (i, &old) in order.iter().enumerate() {
            let node = &b[old];
            let start = edges.len() as u32;
            edges.extend(node.children.iter().map(|&(c, n)| (c, new_id[n])));
            let tstart = token_ids.len() as u32;
            token_ids.extend_from_slice(&node.tokens);
            nodes[i] = TrieNode {
                edges: (start, edges.len() as u32),
                tokens: (tstart, token_ids.len() as u32),
                subtree_end: 0,
                below: [0; 4],
            };
        }
        // Bottom-up: where each subtree's tokens end, and the bytes below each node.
        for i in (0..nodes.len()).rev() {
            let (a, z) = nodes[i].edges;
            let mut end = nodes[i].tokens.1;
            let mut below = [0u64; 4];
            for &(byte, child) in &edges[a as usize..z as usize] {
                let c = &nodes[child as usize];
                end = end.max(c.subtree_end);
                below[(byte >> 6) as usize] |= 1 << (byte & 63);
                for (w, cw) in below.iter_mut().zip(c.below) {
                    *w |= cw;
                }
            }
            nodes[i].subtree_end = end;
            nodes[i].below = below;
        }
        let mut eog: Vec<u32> = eog
            .iter()
            .copied()
            .filter(|&t| (t as usize) < n_vocab)
            .collect();
        eog.sort_unstable();
        eog.dedup();
        TokenVocab {
            n_vocab,
            nodes,
            edges,
            token_ids,
            eog,
            bytes: tokens,
        }
    }

    /// Number of token ids.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The end-of-generation tokens.
    pub fn eog(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// Token `id`'s bytes (empty for tokens that are never text).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes
            .get(id as usize)
            .and_then(|b| b.as_deref())
            .unwrap_or(&[])
    }

    /// Trie nodes (the root is node 0).
    pub(crate) fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Edges of node `n`: (byte, child).
    #[inline]
    pub(crate) fn edges(&self, n: u32) -> &[(u8, u32)] {
        let (a, b) = self.nodes[n as usize].edges;
        &self.edges[a as usize..b as usize]
    }

    /// Tokens of node `n`'s whole subtree (those ending at `n` and below).
    #[inline]
    pub(crate) fn subtree_tokens(&self, n: u32) -> &[u32] {
        let node = &self.nodes[n as usize];
        &self.token_ids[node.tokens.0 as usize..node.subtree_end as usize]
    }

    /// Every byte on an edge below node `n`.
    #[inline]
    pub(crate) fn below(&self, n: u32) -> &[u64; 4] {
        &self.nodes[n as usize].below
    }

    /// Tokens whose bytes end at node `n`.
    #[inline]
    pub(crate) fn tokens_at(&self, n: u32) -> &[u32] {
        let (a, b) = self.nodes[n as usize].tokens;
        &self.token_ids[a as usize..b as usize]
    }
}

/// Which tokens may come next: one bit per token id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    words: Vec<u64>,
    n_vocab: usize,
}

impl TokenMask {
    /// A mask allowing nothing.
    pub fn none(n_vocab: usize) -> TokenMask {
        TokenMask {
            words: vec![0; n_vocab.div_ceil(64)],
            n_vocab,
        }
    }

    /// Allow token `id`.
    #[inline]
    pub fn allow(&mut self, id: u32) {
        self.words[(id >> 6) as usize] |= 1 << (id & 63);
    }

    /// Whether token `id` is allowed.
    #[inline]
    pub fn is_allowed(&self, id: u32) -> bool {
        (id as usize) < self.n_vocab && self.words[(id >> 6) as usize] >> (id & 63) & 1 == 1
    }

    /// Number of allowed tokens.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Set the logits of tokens that are not allowed to `-inf`.
    pub fn apply(&self, logits: &mut [f32]) {
        for (w, chunk) in self.words.iter().zip(logits.chunks_mut(64)) {
            if *w == u64::MAX {
                continue;
            }
            if *w == 0 {
                chunk.fill(f32::NEG_INFINITY);
                continue;
            }
            for (j, l) in chunk.iter_mut().enumerate() {
                if w >> j & 1 == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}
