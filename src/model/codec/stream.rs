//! Incremental decoding: codec frames in as the talker produces them, audio out at once.
//!
//! The decoder is strictly causal and has no look-ahead, so `n` new frames yield exactly
//! `1920·n` new samples, and every layer needs only a small per-stream state
//! (`DecoderState`): the last `(k−1)·d` input rows of each causal conv, the overlap rows of
//! each transposed conv, the last `window − 1` keys/values of each attention layer and the
//! running RoPE position. With that state, pushing frames in any pieces produces the same
//! samples as one forward over all of them (to f32 rounding: matrix products over different
//! row counts may round differently).
//!
//! Beyond 300 frames the official pipeline does not run one forward: it decodes 300-frame
//! chunks afresh with 25 frames of re-computed left context (`chunked_decode`). The network
//! being causal, a stream can reproduce that exactly too: at every 300-frame boundary it
//! drops its state and re-primes a fresh one with the previous 25 frames (their samples were
//! already emitted, so the re-computed ones are discarded). That is
//! [`ChunkPolicy::Official`], the default: the stream equals [`CodecDecoder::decode`] for any
//! length. [`ChunkPolicy::Continuous`] never restarts: it equals
//! [`CodecDecoder::decode_full`], which has no seam at frame 300 (the official chunking
//! changes samples after the seam by up to 0.15 on random codes, since attention alone can
//! look back 8 × 71 frames), but it is not what the reference outputs.

use std::ops::Deref;

use super::decoder::{CodecDecoder, OFFICIAL_CHUNK_FRAMES, OFFICIAL_LEFT_CONTEXT_FRAMES};
use super::transformer::TransformerState;
use crate::backend::Backend;
use crate::backend::audio::AudioBackend;
use crate::backend::cpu::CpuBackend;
use crate::error::Result;

/// Stream state of one upsampling stage.
pub(crate) struct UpsampleState<B: Backend> {
    /// Transposed-conv carry (none: kernel = stride there).
    pub(crate) up: Option<B::Buffer>,
    /// ConvNeXt depthwise conv history.
    pub(crate) dwconv: B::Buffer,
}

/// Stream state of one vocoder block.
pub(crate) struct BlockState<B: Backend> {
    pub(crate) up: Option<B::Buffer>,
    /// Per residual unit: [conv1 history, conv2 history (none, k = 1)].
    pub(crate) units: Vec<[Option<B::Buffer>; 2]>,
}

/// Stream state of steps 4–7.
pub(crate) struct VocoderState<B: Backend> {
    pub(crate) upsample: Vec<UpsampleState<B>>,
    pub(crate) conv_in: Option<B::Buffer>,
    pub(crate) blocks: Vec<BlockState<B>>,
    pub(crate) conv_out: Option<B::Buffer>,
}

/// Activation buffers of one stream, grown to its largest call and reused.
#[derive(Default)]
pub(crate) struct Workspace<B: Backend> {
    /// `[frames, codebook_dim]`: the quantizer output.
    pub(crate) dequant: Option<B::Buffer>,
    /// The quantizer's gathers and second projection.
    pub(crate) quant: [Option<B::Buffer>; 3],
    pub(crate) pre_conv: Option<B::Buffer>,
    /// `[frames, latent]`: the pre-transformer output.
    pub(crate) latent: Option<B::Buffer>,
    /// The vocoder's four rotating activations.
    pub(crate) vocoder: [Option<B::Buffer>; 4],
}

impl<B: Backend> VocoderState<B> {
    /// Every state buffer (the convolutions' histories and carries).
    fn buffers(&mut self) -> impl Iterator<Item = &mut B::Buffer> {
        let upsample = self.upsample.iter_mut().flat_map(|u| u.up.iter_mut().chain(std::iter::once(&mut u.dwconv)));
        let blocks = self.blocks.iter_mut().flat_map(|blk| blk.up.iter_mut().chain(blk.units.iter_mut().flatten().flatten()));
        upsample.chain(self.conv_in.iter_mut()).chain(blocks).chain(self.conv_out.iter_mut())
    }
}

/// Everything a decode carries from one frame to the next, and the context it runs on.
/// (`stream` is declared last: its drop waits for the stream and returns the buffers dropped
/// before it to the device's pool at once.)
pub(crate) struct DecoderState<B: AudioBackend> {
    pub(crate) pre_conv: Option<B::Buffer>,
    pub(crate) transformer: TransformerState<B>,
    pub(crate) vocoder: VocoderState<B>,
    pub(crate) workspace: Workspace<B>,
    /// The execution context every op of this stream is queued on (on a GPU: its own stream,
    /// apart from generation).
    pub(crate) stream: B::Stream,
}

impl<B: AudioBackend> DecoderState<B> {
    /// The state at the start of a signal: all histories zero (= the causal zero padding),
    /// no keys remembered, position 0.
    pub(crate) fn new(decoder: &CodecDecoder<B>) -> Result<Self> {
        let b = decoder.backend();
        Ok(DecoderState {
            stream: b.new_stream()?,
            pre_conv: decoder.pre_conv.new_state(b)?,
            transformer: decoder.transformer.new_state(),
            vocoder: decoder.new_vocoder_state()?,
            workspace: Workspace { dequant: None, quant: [None, None, None], pre_conv: None, latent: None, vocoder: [None, None, None, None] },
        })
    }

    /// Back to the start of a signal, keeping the execution context and the buffers: every
    /// history and carry zeroed in stream order (no allocation), nothing remembered.
    pub(crate) fn reset(&mut self, decoder: &CodecDecoder<B>) -> Result<()> {
        let b = decoder.backend();
        for buf in self.pre_conv.iter_mut().chain(self.vocoder.buffers()) {
            b.zero(&mut self.stream, buf)?;
        }
        self.transformer.reset();
        Ok(())
    }
}

/// What a stream does at the official 300-frame chunk boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkPolicy {
    /// Reproduce `chunked_decode(300, 25)`: restart with 25 frames of context at frames
    /// 300, 600, …; output equals [`CodecDecoder::decode`].
    #[default]
    Official,
    /// One uninterrupted causal decode; output equals [`CodecDecoder::decode_full`].
    Continuous,
}

/// A per-request incremental decoder over shared weights (`&CodecDecoder`,
/// `Arc<CodecDecoder>`, …), on the decoder's backend.
pub struct StreamingDecoder<D: Deref<Target = CodecDecoder<B>>, B: AudioBackend = CpuBackend> {
    decoder: D,
    policy: ChunkPolicy,
    state: DecoderState<B>,
    /// Frames pushed so far.
    frames: usize,
    /// The last ≤ 25 frames of codes (row-major), to re-prime at a chunk boundary.
    recent: Vec<u32>,
}

impl<D: Deref<Target = CodecDecoder<B>>, B: AudioBackend> StreamingDecoder<D, B> {
    /// A stream at the start of a signal. Errors only when the backend cannot create its
    /// execution context or state buffers (a GPU out of memory).
    pub fn new(decoder: D, policy: ChunkPolicy) -> Result<Self> {
        let state = DecoderState::new(&decoder)?;
        Ok(StreamingDecoder { decoder, policy, state, frames: 0, recent: Vec::new() })
    }

    /// Frames pushed since creation or the last [`reset`](Self::reset).
    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn policy(&self) -> ChunkPolicy {
        self.policy
    }

    /// Starts a new signal.
    pub fn reset(&mut self) -> Result<()> {
        self.state.reset(&self.decoder)?;
        self.frames = 0;
        self.recent.clear();
        Ok(())
    }

    /// Decodes the next frames (`codes`: row-major `[n, num_codebooks]`) and returns their
    /// `1920·n` samples. Invalid codes are rejected before any state changes.
    pub fn push(&mut self, codes: &[u32], num_codebooks: usize) -> Result<Vec<f32>> {
        let n = self.decoder.check_codes(codes, num_codebooks)?;
        let nq = num_codebooks;
        let mut wav = Vec::with_capacity(n * self.decoder.samples_per_frame());
        let mut done = 0;
        while done < n {
            // 1. Split the input at official chunk boundaries; continuous streams never split.
            let take = match self.policy {
                ChunkPolicy::Official => {
                    if self.frames > 0 && self.frames.is_multiple_of(OFFICIAL_CHUNK_FRAMES) {
                        // 2. A boundary: the reference decodes the next chunk afresh, with
                        //    the preceding 25 frames as context whose audio it drops.
                        self.state.reset(&self.decoder)?;
                        let _context_audio = self.decoder.forward(&self.recent, &mut self.state, None)?;
                    }
                    (n - done).min(OFFICIAL_CHUNK_FRAMES - self.frames % OFFICIAL_CHUNK_FRAMES)
                }
                ChunkPolicy::Continuous => n - done,
            };
            // 3. Decode the piece on the running state.
            let piece = &codes[done * nq..(done + take) * nq];
            wav.extend(self.decoder.forward(piece, &mut self.state, None)?);
            self.frames += take;
            done += take;
            if self.policy == ChunkPolicy::Official {
                self.recent.extend_from_slice(piece);
                let keep = OFFICIAL_LEFT_CONTEXT_FRAMES * nq;
                if self.recent.len() > keep {
                    self.recent.drain(..self.recent.len() - keep);
                }
            }
        }
        Ok(wav)
    }
}
