//! Per-stream activation buffers that grow to the largest call seen and are then reused, so
//! a stream decoding a frame at a time allocates nothing after its first call.

use crate::backend::Backend;
use crate::error::Result;

/// The buffer in `slot`, replaced by a fresh zeroed one of `len` elements when it is absent
/// or shorter (its old contents are not kept).
pub(crate) fn fit<'a, B: Backend>(b: &B, slot: &'a mut Option<B::Buffer>, len: usize) -> Result<&'a mut B::Buffer> {
    let buf = match slot.take() {
        Some(buf) if b.buffer_len(&buf) >= len => buf,
        _ => b.alloc(len.max(1))?,
    };
    Ok(slot.insert(buf))
}
