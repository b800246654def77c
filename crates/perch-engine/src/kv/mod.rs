//! The paged KV cache.
//!
//! K and V live in fixed-size *blocks* of `block_size` token slots, for every layer. A sequence
//! holds a [`BlockTable`]: the ids of its blocks in position order, so position `p` is slot
//! `p % block_size` of block `table[p / block_size]`. The [`BlockPool`] does the bookkeeping
//! (reference counts, the free list); [`KvStorage`] holds the numbers. Keeping the two apart
//! lets the scheduler plan with the pool alone and the model write and read storage alone.

mod pool;
mod storage;

pub use pool::{BlockHash, BlockId, BlockPool, BlockTable, PoolStats};
pub use storage::{KvLayout, KvStorage, KvType, Query};
