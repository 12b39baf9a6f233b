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
use crate::error::Result;

/// Stream state of one upsampling stage.
#[derive(Debug, Clone)]
pub(crate) struct UpsampleState {
    /// Transposed-conv carry (empty: kernel = stride there).
    pub(crate) up: Vec<f32>,
    /// ConvNeXt depthwise conv history.
    pub(crate) dwconv: Vec<f32>,
}

/// Stream state of one vocoder block.
#[derive(Debug, Clone)]
pub(crate) struct BlockState {
    pub(crate) up: Vec<f32>,
    /// Per residual unit: [conv1 history, conv2 history (empty, k = 1)].
    pub(crate) units: Vec<[Vec<f32>; 2]>,
}

/// Everything a decode carries from one frame to the next.
#[derive(Debug, Clone)]
pub(crate) struct DecoderState {
    pub(crate) pre_conv: Vec<f32>,
    pub(crate) transformer: TransformerState,
    pub(crate) upsample: Vec<UpsampleState>,
    pub(crate) conv_in: Vec<f32>,
    pub(crate) blocks: Vec<BlockState>,
    pub(crate) conv_out: Vec<f32>,
}

impl DecoderState {
    /// The state at the start of a signal: all histories zero (= the causal zero padding),
    /// no keys remembered, position 0.
    pub(crate) fn new(decoder: &CodecDecoder) -> Self {
        DecoderState {
            pre_conv: decoder.pre_conv.new_state(),
            transformer: decoder.transformer.new_state(),
            upsample: decoder.new_upsample_states(),
            conv_in: decoder.conv_in.new_state(),
            blocks: decoder.new_block_states(),
            conv_out: decoder.conv_out.new_state(),
        }
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
/// `Arc<CodecDecoder>`, …).
pub struct StreamingDecoder<D: Deref<Target = CodecDecoder>> {
    decoder: D,
    policy: ChunkPolicy,
    state: DecoderState,
    /// Frames pushed so far.
    frames: usize,
    /// The last ≤ 25 frames of codes (row-major), to re-prime at a chunk boundary.
    recent: Vec<u32>,
}

impl<D: Deref<Target = CodecDecoder>> StreamingDecoder<D> {
    pub fn new(decoder: D, policy: ChunkPolicy) -> Self {
        let state = DecoderState::new(&decoder);
        StreamingDecoder { decoder, policy, state, frames: 0, recent: Vec::new() }
    }

    /// Frames pushed since creation or the last [`reset`](Self::reset).
    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn policy(&self) -> ChunkPolicy {
        self.policy
    }

    /// Starts a new signal.
    pub fn reset(&mut self) {
        self.state = DecoderState::new(&self.decoder);
        self.frames = 0;
        self.recent.clear();
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
                        self.state = DecoderState::new(&self.decoder);
                        let _context_audio = self.decoder.forward(&self.recent, &mut self.state, None);
                    }
                    (n - done).min(OFFICIAL_CHUNK_FRAMES - self.frames % OFFICIAL_CHUNK_FRAMES)
                }
                ChunkPolicy::Continuous => n - done,
            };
            // 3. Decode the piece on the running state.
            let piece = &codes[done * nq..(done + take) * nq];
            wav.extend(self.decoder.forward(piece, &mut self.state, None));
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
