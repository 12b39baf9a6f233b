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

/// The keys and values of a cache's first positions, every layer in one buffer laid out
/// `[layer, K|V, position, kv_heads · head_dim]`: what [`KvCache::save_prefix`] copies out and
/// [`KvCache::load_prefix`] copies into a fresh cache (the voice prefix cache keeps these).
pub struct KvPrefix<B: Backend> {
    data: B::Buffer,
    layers: usize,
    rows: usize,
    row: usize,
}

impl<B: Backend> KvPrefix<B> {
    /// Positions held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of device (or host) memory it occupies.
    pub fn bytes(&self) -> usize {
        Self::bytes_for(self.layers, self.rows, self.row)
    }

    /// Bytes of a prefix of `rows` positions of `layers` layers of `row` values per position.
    pub fn bytes_for(layers: usize, rows: usize, row: usize) -> usize {
        layers * 2 * rows * row * size_of::<f32>()
    }
}

impl<B: Backend> KvCache<B> {
    /// Copies positions `0..rows` of every layer into a new [`KvPrefix`] (queued on `s`).
    pub fn save_prefix(&self, b: &B, s: &mut B::Stream, rows: usize) -> Result<KvPrefix<B>> {
        if rows == 0 || rows > self.len {
            return Err(Error::invalid_argument(format!(
                "KV prefix: {rows} positions asked for, {} cached",
                self.len
            )));
        }
        let block = rows * self.row;
        let mut data = b.alloc(self.layers() * 2 * block)?;
        for (l, (k, v)) in self.keys.iter().zip(&self.values).enumerate() {
            b.copy(s, k, 0, &mut data, 2 * l * block, block)?;
            b.copy(s, v, 0, &mut data, (2 * l + 1) * block, block)?;
        }
        Ok(KvPrefix { data, layers: self.layers(), rows, row: self.row })
    }

    /// Fills an empty cache's first positions from `prefix` (queued on `s`) and marks them
    /// cached: the next forward continues at position `prefix.rows()`.
    pub fn load_prefix(&mut self, b: &B, s: &mut B::Stream, prefix: &KvPrefix<B>) -> Result<()> {
        if !self.is_empty() || prefix.layers != self.layers() || prefix.row != self.row {
            return Err(Error::invalid_argument(format!(
                "KV prefix of {} layers × {} values does not fit a cache of {} layers × {} values holding {} positions",
                prefix.layers,
                prefix.row,
                self.layers(),
                self.row,
                self.len
            )));
        }
        self.check_room(prefix.rows)?;
        let block = prefix.rows * self.row;
        for (l, (k, v)) in self.keys.iter_mut().zip(&mut self.values).enumerate() {
            b.copy(s, &prefix.data, 2 * l * block, k, 0, block)?;
            b.copy(s, &prefix.data, (2 * l + 1) * block, v, 0, block)?;
        }
        self.advance(prefix.rows)
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

    #[test]
    fn a_saved_prefix_restores_those_positions_in_another_cache() {
        let b = CpuBackend::new(1);
        let mut s = b.new_stream().unwrap();
        let mut a = KvCache::<CpuBackend>::new(&b, 2, 5, 1, 3).unwrap();
        for l in 0..2 {
            let (k, v) = a.layer_mut(l);
            for (i, x) in k.iter_mut().enumerate() {
                *x = (100 * l + i) as f32;
            }
            for (i, x) in v.iter_mut().enumerate() {
                *x = -((100 * l + i) as f32);
            }
        }
        a.advance(4).unwrap();
        assert!(a.save_prefix(&b, &mut s, 5).is_err(), "more positions than cached");
        let prefix = a.save_prefix(&b, &mut s, 3).unwrap();
        assert_eq!((prefix.rows(), prefix.bytes()), (3, 2 * 2 * 3 * 3 * 4));

        let mut c = KvCache::<CpuBackend>::new(&b, 2, 5, 1, 3).unwrap();
        c.load_prefix(&b, &mut s, &prefix).unwrap();
        assert_eq!(c.len(), 3);
        for l in 0..2 {
            assert_eq!(c.layer(l).0[..9], a.layer(l).0[..9], "layer {l} keys");
            assert_eq!(c.layer(l).1[..9], a.layer(l).1[..9], "layer {l} values");
            assert!(c.layer(l).0[9..].iter().all(|&x| x == 0.0), "positions past the prefix untouched");
        }
        assert!(c.load_prefix(&b, &mut s, &prefix).is_err(), "only into an empty cache");
        let mut other = KvCache::<CpuBackend>::new(&b, 3, 5, 1, 3).unwrap();
        assert!(other.load_prefix(&b, &mut s, &prefix).is_err(), "layer count must match");
        let mut small = KvCache::<CpuBackend>::new(&b, 2, 2, 1, 3).unwrap();
        assert!(small.load_prefix(&b, &mut s, &prefix).is_err(), "capacity must hold it");
        assert!(small.is_empty());
    }
}
