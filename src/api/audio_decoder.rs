//! The codec decoder on the model's device: the CPU for CPU models, the model's GPU for CUDA
//! models (with its own CUDA streams, apart from generation), behind one interface for the
//! request path.
//!
//! CUDA models decode on their GPU (parity with the CPU decoder: relative L2 ≤ 1e-5 on the
//! H100, tests/cuda_codec.rs); `QT_GPU_CODEC=0` in the environment makes them decode on the
//! CPU instead (a fallback while the GPU decoder is young).

#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::error::Result;
use crate::model::codec::{ChunkPolicy, CodecDecoder, StreamingDecoder};

/// Whether CUDA models decode on their GPU: yes unless `QT_GPU_CODEC=0` (see the module doc).
#[cfg(feature = "cuda")]
pub(crate) fn gpu_codec_enabled() -> bool {
    std::env::var("QT_GPU_CODEC").map_or(true, |v| v != "0")
}

/// The decoder's weights on the model's device.
pub(crate) enum AudioDecoder {
    Cpu(CodecDecoder),
    #[cfg(feature = "cuda")]
    Cuda(CodecDecoder<CudaBackend>),
}

/// One request's incremental decode on the decoder's device.
pub(crate) enum AudioStream<'m> {
    Cpu(StreamingDecoder<&'m CodecDecoder>),
    #[cfg(feature = "cuda")]
    Cuda(StreamingDecoder<&'m CodecDecoder<CudaBackend>, CudaBackend>),
}

impl AudioDecoder {
    /// Output sample rate in Hz (24000).
    pub fn sample_rate(&self) -> u32 {
        match self {
            AudioDecoder::Cpu(d) => d.sample_rate(),
            #[cfg(feature = "cuda")]
            AudioDecoder::Cuda(d) => d.sample_rate(),
        }
    }

    /// Output samples per frame (1920).
    pub fn samples_per_frame(&self) -> usize {
        match self {
            AudioDecoder::Cpu(d) => d.samples_per_frame(),
            #[cfg(feature = "cuda")]
            AudioDecoder::Cuda(d) => d.samples_per_frame(),
        }
    }

    /// Where it runs ("cpu (8 threads)", "cuda:0").
    pub fn device_name(&self) -> String {
        use crate::backend::Backend;
        match self {
            AudioDecoder::Cpu(d) => d.backend().name(),
            #[cfg(feature = "cuda")]
            AudioDecoder::Cuda(d) => d.backend().name(),
        }
    }

    /// A stream at the start of a signal.
    pub fn stream(&self, policy: ChunkPolicy) -> Result<AudioStream<'_>> {
        Ok(match self {
            AudioDecoder::Cpu(d) => AudioStream::Cpu(StreamingDecoder::new(d, policy)?),
            #[cfg(feature = "cuda")]
            AudioDecoder::Cuda(d) => AudioStream::Cuda(StreamingDecoder::new(d, policy)?),
        })
    }
}

impl AudioStream<'_> {
    /// Decodes the next frames (row-major `[n, num_codebooks]`): `1920·n` samples.
    pub fn push(&mut self, codes: &[u32], num_codebooks: usize) -> Result<Vec<f32>> {
        match self {
            AudioStream::Cpu(s) => s.push(codes, num_codebooks),
            #[cfg(feature = "cuda")]
            AudioStream::Cuda(s) => s.push(codes, num_codebooks),
        }
    }
}
