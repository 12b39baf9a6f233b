//! Per-request key/value cache of one decoder stack.
//!
//! Each layer owns a K and a V buffer laid out `[capacity, kv_heads, head_dim]`: position `p`
//! is one contiguous row of `kv_heads · head_dim` values, which is exactly how the
//! projections produce them, so appending `rows` positions is one copy per buffer. Keys are
//! stored after QK-norm and RoPE (what attention consumes), values as projected.
//!
//! The cache belongs to a request's state, never to the (shared) weights. `len` is advanced
//! by [`DecoderStack::forward`](super::layers::DecoderStack::forward) once every layer has
//! appended its rows, so a failed forward leaves the visible length unchanged.

use crate::backend::Backend;
use crate::error::{Error, Result};

/// Keys and values of every layer for positions `0..len`.
pub struct KvCache<B: Backend> {
    keys: Vec<B::Buffer>,
    values: Vec<B::Buffer>,
    /// Values per position: `kv_heads · head_dim`.
    row: usize,
    capacity: usize,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// A cache of `capacity` positions for `layers` layers of `kv_heads` heads of `head_dim`.
    pub fn new(b: &B, layers: usize, capacity: usize, kv_heads: usize, head_dim: usize) -> Result<Self> {
        let row = kv_heads * head_dim;
        if row == 0 {
            return Err(Error::invalid_argument("KV cache: kv_heads and head_dim must be positive"));
        }
        let alloc = || b.alloc(capacity * row);
        let keys = (0..layers).map(|_| alloc()).collect::<Result<Vec<_>>>()?;
        let values = (0..layers).map(|_| alloc()).collect::<Result<Vec<_>>>()?;
        Ok(KvCache { keys, values, row, capacity, len: 0 })
    }

    /// Positions currently cached (= the position of the next row fed to the stack).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Largest number of positions this cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Positions still free.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Number of layers the cache was built for.
    pub fn layers(&self) -> usize {
        self.keys.len()
    }

    /// Values per cached position of one layer (`kv_heads · head_dim`).
    pub fn row_len(&self) -> usize {
        self.row
    }

    /// Forgets every position (the buffers are kept and overwritten later).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Errors unless `rows` more positions fit.
    pub fn check_room(&self, rows: usize) -> Result<()> {
        if rows > self.remaining() {
            return Err(Error::invalid_argument(format!(
                "KV cache full: {rows} new positions requested, {} of {} in use",
                self.len, self.capacity
            )));
        }
        Ok(())
    }

    /// The K and V buffers of `layer` (`[capacity, kv_heads · head_dim]` each).
    pub fn layer(&self, layer: usize) -> (&B::Buffer, &B::Buffer) {
        (&self.keys[layer], &self.values[layer])
    }

    /// The K and V buffers of `layer`.
    pub(crate) fn layer_mut(&mut self, layer: usize) -> (&mut B::Buffer, &mut B::Buffer) {
        (&mut self.keys[layer], &mut self.values[layer])
    }

    /// Marks `rows` more positions as valid (after every layer appended them).
    pub(crate) fn advance(&mut self, rows: usize) -> Result<()> {
        self.check_room(rows)?;
        self.len += rows;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn capacity_is_a_clean_error_and_reset_frees_it() {
        let b = CpuBackend::new(1);
        let mut kv = KvCache::<CpuBackend>::new(&b, 2, 4, 2, 8).unwrap();
        assert_eq!((kv.len(), kv.capacity(), kv.row_len(), kv.layers()), (0, 4, 16, 2));
        kv.advance(3).unwrap();
        let err = kv.check_room(2).unwrap_err();
        assert!(err.message().contains("KV cache full"), "{err}");
        assert!(kv.advance(2).is_err());
        assert_eq!(kv.len(), 3, "a refused advance leaves the length unchanged");
        kv.reset();
        assert!(kv.is_empty());
        kv.advance(4).unwrap();
    }
}
