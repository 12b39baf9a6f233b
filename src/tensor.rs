//! Borrowed tensors: an element type, a shape and raw little-endian bytes. A leaf module: the
//! loader ([`crate::model::weights`]) produces these views and the backends consume them.

use std::fmt;

/// Element types this library reads. Released checkpoints use BF16 (main model) and F32
/// (speech tokenizer); F16 is accepted for converted checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    BF16,
    F16,
    F32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::BF16 | DType::F16 => 2,
            DType::F32 => 4,
        }
    }

    /// The name safetensors uses in headers ("BF16", "F16", "F32").
    pub fn name(self) -> &'static str {
        match self {
            DType::BF16 => "BF16",
            DType::F16 => "F16",
            DType::F32 => "F32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A borrowed tensor: metadata plus its raw little-endian bytes inside the mapped file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

impl TensorView<'_> {
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Converts the elements to f32 (exact for BF16 and F16).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.numel()];
        self.copy_to_f32(&mut out);
        out
    }

    /// Writes the elements, converted to f32, into `out` (whose length must be `numel()`).
    ///
    /// # Panics
    /// If `out.len() != self.numel()`.
    pub fn copy_to_f32(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.numel(), "tensor `{}`: output length differs from element count", self.name);
        // `bytes` may start at any address (safetensors offsets are only byte-aligned), so read
        // each element with from_le_bytes instead of casting the slice.
        match self.dtype {
            DType::BF16 => {
                for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
                    *o = half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            DType::F16 => {
                for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
                    *o = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            DType::F32 => {
                for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
    }
}

