//! Block bookkeeping: reference counts, the free list, and the prefix cache.
//!
//! Every block is either *in use* (reference count ≥ 1) or *free* (count 0, on the free list).
//! A full block may carry a [`BlockHash`] that identifies its contents: the hash of its parent
//! block's hash and its own token ids. A freed block keeps its hash and stays findable until
//! it is handed out again, so a later sequence with the same prefix can take it back
//! ([`BlockPool::lookup`]) instead of recomputing it. The free list is least-recently-freed
//! first, so the blocks evicted are the ones unused longest. The list is intrusive and doubly
//! linked: taking a cached block out of the middle is O(1).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The id of a KV block.
pub type BlockId = u32;

/// Identifies a full block's contents together with everything before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockHash(pub u64);

impl BlockHash {
    /// The hash of a block holding `tokens`, after the block whose hash is `parent`.
    pub fn new(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
        let mut h = DefaultHasher::new();
        parent.map(|p| p.0).hash(&mut h);
        tokens.hash(&mut h);
        BlockHash(h.finish())
    }

    /// The hashes of every full block of `tokens`, in order.
    pub fn chain(tokens: &[u32], block_size: usize) -> Vec<BlockHash> {
        let mut out = Vec::with_capacity(tokens.len() / block_size);
        let mut parent = None;
        for chunk in tokens.chunks_exact(block_size) {
            let h = BlockHash::new(parent, chunk);
            out.push(h);
            parent = Some(h);
        }
        out
    }
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Meta {
    ref_count: u32,
    /// Set while the block is registered in the prefix cache.
    hash: Option<BlockHash>,
    /// Free-list links (NIL when not on the list).
    prev: u32,
    next: u32,
    on_free_list: bool,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Blocks in the pool.
    pub total: usize,
    /// Blocks in use by at least one sequence.
    pub used: usize,
    /// Free blocks that still hold a reusable cached prefix.
    pub cached: usize,
    /// Free blocks.
    pub free: usize,
    /// Prefix-cache lookups.
    pub lookups: u64,
    /// Lookups that found a block.
    pub hits: u64,
}

/// Reference-counted fixed-size blocks with a prefix cache.
#[derive(Debug, Clone)]
pub struct BlockPool {
    block_size: usize,
    meta: Vec<Meta>,
    head: u32,
    tail: u32,
    n_free: usize,
    cache: HashMap<BlockHash, BlockId>,
    n_cached_free: usize,
    lookups: u64,
    hits: u64,
}

impl BlockPool {
    /// A pool of `n_blocks` blocks of `block_size` token slots.
    ///
    /// # Panics
    /// If `block_size` is zero or `n_blocks` does not fit a `u32`.
    pub fn new(n_blocks: usize, block_size: usize) -> BlockPool {
        assert!(block_size > 0, "block size must be positive");
        assert!(n_blocks < NIL as usize, "too many blocks");
        let mut pool = BlockPool {
            block_size,
            meta: vec![
                Meta {
                    ref_count: 0,
                    hash: None,
                    prev: NIL,
                    next: NIL,
                    on_free_list: false,
                };
                n_blocks
            ],
            head: NIL,
            tail: NIL,
            n_free: 0,
            cache: HashMap::new(),
            n_cached_free: 0,
            lookups: 0,
            hits: 0,
        };
        for b in 0..n_blocks as BlockId {
            pool.push_back(b);
        }
        pool
    }

    fn push_back(&mut self, b: BlockId) {
        let m = &mut self.meta[b as usize];
        debug_assert!(!m.on_free_list);
        m.prev = self.tail;
        m.next = NIL;
        m.on_free_list = true;
        if m.hash.is_some() {
            self.n_cached_free += 1;
        }
        if self.tail == NIL {
            self.head = b;
        } else {
            self.meta[self.tail as usize].next = b;
        }
        self.tail = b;
        self.n_free += 1;
    }

    fn unlink(&mut self, b: BlockId) {
        let (prev, next) = {
            let m = &self.meta[b as usize];
            debug_assert!(m.on_free_list);
            (m.prev, m.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.meta[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.meta[next as usize].prev = prev;
        }
        let m = &mut self.meta[b as usize];
        m.prev = NIL;
        m.next = NIL;
        m.on_free_list = false;
        if m.hash.is_some() {
            self.n_cached_free -= 1;
        }
        self.n_free -= 1;
    }

    /// Token slots per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in the pool.
    pub fn n_blocks(&self) -> usize {
        self.meta.len()
    }

    /// Free blocks (including ones that hold a cached prefix).
    pub fn n_free(&self) -> usize {
        self.n_free
    }

    /// Blocks in use by at least one sequence.
    pub fn n_used(&self) -> usize {
        self.n_blocks() - self.n_free
    }

    /// Counters for metrics.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            total: self.n_blocks(),
            used: self.n_used(),
            cached: self.n_cached_free,
            free: self.n_free,
            lookups: self.lookups,
            hits: self.hits,
        }
    }

    /// How many sequences use `block`.
    pub fn ref_count(&self, block: BlockId) -> u32 {
        self.meta[block as usize].ref_count
    }

    /// The hash `block` is registered under, if any.
    pub fn hash_of(&self, block: BlockId) -> Option<BlockHash> {
        self.meta[block as usize].hash
    }

    /// Take the least recently freed block (count 1), evicting any cached prefix it held, or
    /// `None` when every block is in use.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let b = self.head;
        if b == NIL {
            return None;
        }
        self.unlink(b);
        let m = &mut self.meta[b as usize];
        if let Some(h) = m.hash.take() {
            if self.cache.get(&h) == Some(&b) {
                self.cache.remove(&h);
            }
        }
        m.ref_count = 1;
        Some(b)
    }

    /// Another user of `block`.
    ///
    /// # Panics
    /// If the block is free.
    pub fn retain(&mut self, block: BlockId) {
        let c = &mut self.meta[block as usize].ref_count;
        assert!(*c > 0, "retain of free block {block}");
        *c += 1;
    }

    /// One user fewer of `block`; at zero it goes to the back of the free list, keeping its
    /// cached contents until it is handed out again.
    ///
    /// # Panics
    /// If the block is already free.
    pub fn release(&mut self, block: BlockId) {
        let c = &mut self.meta[block as usize].ref_count;
        assert!(*c > 0, "release of free block {block}");
        *c -= 1;
        if *c == 0 {
            self.push_back(block);
        }
    }

    /// Register the full, in-use `block` as holding the contents `hash` identifies. If another
    /// block already holds them, the cache keeps pointing at that one.
    pub fn commit(&mut self, block: BlockId, hash: BlockHash) {
        debug_assert!(self.meta[block as usize].ref_count > 0);
        if self.meta[block as usize].hash.is_some() {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.cache.entry(hash) {
            e.insert(block);
            self.meta[block as usize].hash = Some(hash);
        }
    }

    /// Take a reference to the cached block holding `hash`, if there is one.
    pub fn lookup(&mut self, hash: BlockHash) -> Option<BlockId> {
        self.lookups += 1;
        let &b = self.cache.get(&hash)?;
        self.hits += 1;
        if self.meta[b as usize].on_free_list {
            self.unlink(b);
        }
        self.meta[b as usize].ref_count += 1;
        Some(b)
    }

    /// Whether a block holding `hash` is cached (no reference taken, not counted).
    pub fn contains(&self, hash: BlockHash) -> bool {
        self.cache.contains_key(&hash)
    }

    /// Blocks needed to hold `n_tokens` tokens.
    pub fn blocks_for(&self, n_tokens: usize) -> usize {
        n_tokens.div_ceil(self.block_size)
    }

    /// Grow `table` so it holds `n_tokens` tokens. All-or-nothing: on `false` nothing changed.
    pub fn ensure_capacity(&mut self, table: &mut BlockTable, n_tokens: usize) -> bool {
        let need = self.blocks_for(n_tokens).saturating_sub(table.blocks.len());
        if need > self.n_free {
            return false;
        }
        for _ in 0..need {
            let b = self.allocate().expect("checked free count");
            table.blocks.push(b);
        }
        true
    }

    /// Give back every block of `table` and empty it.
    pub fn free_table(&mut self, table: &mut BlockTable) {
        // Release the tail first: its blocks are the least likely to be shared by a later
        // prefix, so they should be evicted first.
        for b in table.blocks.drain(..).rev() {
            self.release(b);
        }
    }
}

/// A sequence's blocks in position order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockTable {
    /// Block ids; position `p` lives in `blocks[p / block_size]`.
    pub blocks: Vec<BlockId>,
}

impl BlockTable {
    /// An empty table.
    pub fn new() -> BlockTable {
        BlockTable::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn capacity_is_all_or_nothing() {
        let mut pool = BlockPool::new(4, 16);
        let mut a = BlockTable::new();
        assert!(pool.ensure_capacity(&mut a, 33)); // 3 blocks
        assert_eq!(a.blocks.len(), 3);
        let mut b = BlockTable::new();
        assert!(!pool.ensure_capacity(&mut b, 17)); // needs 2, 1 free
        assert!(b.blocks.is_empty());
        assert_eq!(pool.n_free(), 1);
        pool.free_table(&mut a);
        assert_eq!(pool.n_free(), 4);
    }

    #[test]
    fn freed_blocks_stay_cached_until_evicted_lru() {
        let mut pool = BlockPool::new(3, 2);
        let h: Vec<BlockHash> = BlockHash::chain(&[1, 2, 3, 4, 5, 6], 2);
        let mut t = BlockTable::new();
        assert!(pool.ensure_capacity(&mut t, 6));
        for (b, &hash) in t.blocks.iter().zip(&h) {
            pool.commit(*b, hash);
        }
        let blocks = t.blocks.clone();
        pool.free_table(&mut t);
        assert_eq!(pool.stats().cached, 3);
        // Same prefix: the first block comes back without allocation.
        assert_eq!(pool.lookup(h[0]), Some(blocks[0]));
        assert_eq!(pool.n_used(), 1);
        // Allocating evicts the least recently freed: the table's tail went first.
        let b = pool.allocate().unwrap();
        assert_eq!(b, blocks[2]);
        assert!(!pool.contains(h[2]));
        assert!(pool.contains(h[1]));
        assert_eq!(pool.stats().hits, 1);
    }

    #[test]
    fn hash_chains_depend_on_the_whole_prefix() {
        let a = BlockHash::chain(&[1, 2, 3, 4], 2);
        let b = BlockHash::chain(&[9, 9, 3, 4], 2);
        assert_eq!(a.len(), 2);
        assert_ne!(a[1], b[1], "same block after a different prefix");
        assert_eq!(
            BlockHash::chain(&[1, 2, 3], 2).len(),
            1,
            "only full blocks are hashed"
        );
    }

    proptest! {
        /// Any sequence of allocate / retain / release / commit / lookup keeps the counts
        /// consistent with a model the test keeps itself, and leaks nothing.
        #[test]
        fn counts_stay_consistent(ops in proptest::collection::vec((0u8..5, 0usize..8, 0u64..4), 0..300)) {
            let mut pool = BlockPool::new(8, 4);
            let mut model = [0u32; 8];
            for (op, i, h) in ops {
                match op {
                    0 => if let Some(b) = pool.allocate() {
                        prop_assert_eq!(model[b as usize], 0);
                        model[b as usize] = 1;
                    } else {
                        prop_assert!(model.iter().all(|&c| c > 0));
                    },
                    1 => if model[i] > 0 { pool.retain(i as BlockId); model[i] += 1; },
                    2 => if model[i] > 0 { pool.release(i as BlockId); model[i] -= 1; },
                    3 => if model[i] > 0 { pool.commit(i as BlockId, BlockHash(h)); },
                    _ => if let Some(b) = pool.lookup(BlockHash(h)) {
                        prop_assert_eq!(pool.hash_of(b), Some(BlockHash(h)));
                        model[b as usize] += 1;
                    },
                }
                let used = model.iter().filter(|&&c| c > 0).count();
                prop_assert_eq!(pool.n_used(), used);
                prop_assert_eq!(pool.n_free() + pool.n_used(), 8);
                let s = pool.stats();
                prop_assert!(s.cached <= s.free);
                for (b, &c) in model.iter().enumerate() {
                    prop_assert_eq!(pool.ref_count(b as BlockId), c);
                }
            }
            // Releasing everything returns every block.
            for (b, c) in model.iter().enumerate() {
                for _ in 0..*c { pool.release(b as BlockId); }
            }
            prop_assert_eq!(pool.n_free(), 8);
        }
    }
}
