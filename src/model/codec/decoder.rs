//! Codes → 24 kHz waveform: `Qwen3TTSTokenizerV2Decoder` (qwen-tts 0.1.1) on the CPU in f32.
//!
//! 1. Dequantise: codebook 0 (`rvq_first`) and the sum of codebooks 1.. (`rvq_rest`), each
//!    projected 1×1 to `codebook_dim`, added.
//! 2. `pre_conv`: causal conv k3 → `latent_dim`.
//! 3. Pre-transformer (see [`super::transformer`]).
//! 4. Upsample ×r per `upsampling_ratios`: causal ConvTranspose(k = s = r), ConvNeXt block.
//! 5. `decoder.0`: causal conv k7 → `decoder_dim`.
//! 6. One block per `upsample_rates` entry r, channels halving: SnakeBeta → causal
//!    ConvTranspose(k = 2r, s = r) → 3 residual units (dilation 1, 3, 9) of
//!    [SnakeBeta → causal conv k7 → SnakeBeta → conv k1] + identity.
//! 7. SnakeBeta → causal conv k7 → 1 channel → clamp(−1, 1).
//!
//! The network is strictly causal (output sample n depends on frames ≤ n / 1920 only), so
//! every layer runs on a stream with a small state ([`super::stream`]); a one-shot decode is
//! the same code with a fresh state. Steps 4–7 run over at most [`SLICE_FRAMES`] frames at a
//! time: with the state carried across slices that is the same computation as one pass,
//! and it keeps the 24 kHz-rate buffers small (a few MB at full size).
//!
//! [`CodecDecoder::decode`] reproduces the official wrapper, which for more than 300 frames
//! decodes 300-frame chunks separately, each with 25 frames of re-computed left context.

use super::conv::{CausalConv1d, CausalConvTranspose1d, DepthwiseCausalConv1d};
use super::ops::{Linear, SnakeBeta, gelu, layer_norm_rows, par_rows, scale_add_rows};
use super::stream::{BlockState, DecoderState, UpsampleState};
use super::transformer::PreTransformer;
use super::{TensorSource, load_linear, load_vec};
use crate::error::{Error, Result};
use crate::model::Checkpoint;
use crate::model::config::SpeechTokenizerConfig;

/// Frames per chunk of the official `chunked_decode`.
pub const OFFICIAL_CHUNK_FRAMES: usize = 300;
/// Frames of left context each official chunk after the first re-decodes.
pub const OFFICIAL_LEFT_CONTEXT_FRAMES: usize = 25;
/// Frames the convolutional stages (steps 4–7) process at once.
pub const SLICE_FRAMES: usize = 10;

/// `EuclideanCodebook` epsilon: usage counts are clamped to at least this before dividing.
const CODEBOOK_EPSILON: f32 = 1e-5;
/// `nn.LayerNorm(dim, eps=1e-6)` in the ConvNeXt block (a module constant, not config).
const CONVNEXT_NORM_EPS: f32 = 1e-6;
/// ConvNeXt depthwise kernel (module constant).
const CONVNEXT_KERNEL: usize = 7;
/// Kernel of `decoder.0`, the residual units' first conv and the output conv.
const VOCODER_KERNEL: usize = 7;
/// `pre_conv` kernel.
const PRE_CONV_KERNEL: usize = 3;
/// Dilations of the three residual units of every vocoder block.
const RESIDUAL_DILATIONS: [usize; 3] = [1, 3, 9];

/// `codebook[i] = embedding_sum[i] / max(cluster_usage[i], 1e-5)`, row by row in f32
/// (`EuclideanCodebook.decode`). Not `max(u, 1)`, not 1e-7: rows with usage below 1 are
/// scaled up.
pub fn materialize_codebook(embedding_sum: &[f32], cluster_usage: &[f32], dim: usize) -> Vec<f32> {
    let mut out = embedding_sum.to_vec();
    for (row, &usage) in out.chunks_exact_mut(dim).zip(cluster_usage) {
        let denom = usage.max(CODEBOOK_EPSILON);
        for v in row {
            *v /= denom;
        }
    }
    out
}

/// Start of the generated audio in an ICL decode of `ref ++ generated` codes
/// (`qwen3_tts_model.py`): `int(ref_len / max(total_len, 1) * len(wav))`, evaluated in IEEE
/// double exactly like Python, so it is sometimes `ref_len·1920 − 1` (e.g. 39/74 of 142080
/// = 74879): one reference sample is then kept. Reproduced literally on purpose.
pub fn icl_cut(ref_frames: usize, total_frames: usize, wav_len: usize) -> usize {
    let cut = ref_frames as f64 / total_frames.max(1) as f64 * wav_len as f64;
    cut as usize // Python int(): truncation toward zero (the value is never negative)
}

/// Intermediate activations of one decode, all time-major `[rows, channels]` (the
/// reference's `[channels, rows]` transposed).
#[derive(Debug, Clone, Default)]
pub struct DecoderTrace {
    /// `[T, codebook_dim]` quantizer output.
    pub dequant: Vec<f32>,
    /// `[T, latent_dim]` after `pre_conv`.
    pub pre_conv: Vec<f32>,
    /// `[T, latent_dim]` pre-transformer output (after output_proj).
    pub pre_transformer: Vec<f32>,
    /// `[T·∏ratios, latent_dim]` after the upsampling stages.
    pub upsample: Vec<f32>,
    /// `[T·∏ratios, decoder_dim]` after `decoder.0`.
    pub decoder0: Vec<f32>,
}

/// ConvNeXt block: depthwise causal conv k7 → LayerNorm → Linear ×4 → GELU → Linear →
/// ×gamma → + input.
pub(crate) struct ConvNeXtBlock {
    pub(crate) dwconv: DepthwiseCausalConv1d,
    norm_weight: Vec<f32>,
    norm_bias: Vec<f32>,
    pwconv1: Linear,
    pwconv2: Linear,
    gamma: Vec<f32>,
}

impl ConvNeXtBlock {
    fn load(src: &dyn TensorSource, prefix: &str, dim: usize) -> Result<Self> {
        Ok(ConvNeXtBlock {
            dwconv: DepthwiseCausalConv1d::load(src, &format!("{prefix}.dwconv.conv"), dim, CONVNEXT_KERNEL)?,
            norm_weight: load_vec(src, &format!("{prefix}.norm.weight"), &[dim])?,
            norm_bias: load_vec(src, &format!("{prefix}.norm.bias"), &[dim])?,
            pwconv1: load_linear(src, &format!("{prefix}.pwconv1"), dim, 4 * dim, true)?,
            pwconv2: load_linear(src, &format!("{prefix}.pwconv2"), 4 * dim, dim, true)?,
            gamma: load_vec(src, &format!("{prefix}.gamma"), &[dim])?,
        })
    }

    fn forward(&self, x: &[f32], rows: usize, dw_history: &mut [f32], threads: usize) -> Vec<f32> {
        let mut h = self.dwconv.forward(x, rows, dw_history);
        layer_norm_rows(&mut h, &self.norm_weight, &self.norm_bias, CONVNEXT_NORM_EPS);
        let mut h = self.pwconv1.forward(&h, rows, threads);
        par_rows(&mut h, self.pwconv1.n_out, threads, |_, chunk| chunk.iter_mut().for_each(|v| *v = gelu(*v)));
        let h = self.pwconv2.forward(&h, rows, threads);
        let mut out = x.to_vec();
        scale_add_rows(&mut out, &h, &self.gamma);
        out
    }
}

/// One upsampling stage of step 4.
pub(crate) struct UpsampleStage {
    pub(crate) up: CausalConvTranspose1d,
    pub(crate) convnext: ConvNeXtBlock,
}

/// `[SnakeBeta → causal conv k7 (dilation d) → SnakeBeta → conv k1] + identity`.
pub(crate) struct ResidualUnit {
    act1: SnakeBeta,
    pub(crate) conv1: CausalConv1d,
    act2: SnakeBeta,
    pub(crate) conv2: CausalConv1d,
}

impl ResidualUnit {
    fn load(src: &dyn TensorSource, prefix: &str, dim: usize, dilation: usize) -> Result<Self> {
        Ok(ResidualUnit {
            act1: load_snake(src, &format!("{prefix}.act1"), dim)?,
            conv1: CausalConv1d::load(src, &format!("{prefix}.conv1.conv"), dim, dim, VOCODER_KERNEL, dilation)?,
            act2: load_snake(src, &format!("{prefix}.act2"), dim)?,
            conv2: CausalConv1d::load(src, &format!("{prefix}.conv2.conv"), dim, dim, 1, 1)?,
        })
    }

    fn forward(&self, x: Vec<f32>, rows: usize, state: &mut [Vec<f32>; 2], threads: usize) -> Vec<f32> {
        let mut h = x.clone();
        self.act1.apply(&mut h, threads);
        let mut h = self.conv1.forward(&h, rows, &mut state[0], threads);
        self.act2.apply(&mut h, threads);
        let mut h = self.conv2.forward(&h, rows, &mut state[1], threads);
        for (v, r) in h.iter_mut().zip(&x) {
            *v += r;
        }
        h
    }
}

/// One vocoder block of step 6.
pub(crate) struct VocoderBlock {
    act: SnakeBeta,
    pub(crate) up: CausalConvTranspose1d,
    pub(crate) units: Vec<ResidualUnit>,
}

fn load_snake(src: &dyn TensorSource, prefix: &str, dim: usize) -> Result<SnakeBeta> {
    let alpha = load_vec(src, &format!("{prefix}.alpha"), &[dim])?;
    let beta = load_vec(src, &format!("{prefix}.beta"), &[dim])?;
    Ok(SnakeBeta::new(&alpha, &beta))
}

/// The decoder's weights. Immutable after load, `Send + Sync`: one instance serves any
/// number of concurrent decodes and streams.
pub struct CodecDecoder {
    num_quantizers: usize,
    codebook_size: usize,
    /// Width of the codebook vectors (`codebook_dim / 2`).
    quant_dim: usize,
    latent_dim: usize,
    samples_per_frame: usize,
    sample_rate: u32,
    /// `[num_quantizers][codebook_size · quant_dim]`, already divided by the usage.
    codebooks: Vec<Vec<f32>>,
    /// `rvq_first.output_proj` / `rvq_rest.output_proj` (1×1 convs, no bias).
    first_proj: Linear,
    rest_proj: Linear,
    pub(crate) pre_conv: CausalConv1d,
    pub(crate) transformer: PreTransformer,
    pub(crate) upsample: Vec<UpsampleStage>,
    pub(crate) conv_in: CausalConv1d,
    pub(crate) blocks: Vec<VocoderBlock>,
    final_act: SnakeBeta,
    pub(crate) conv_out: CausalConv1d,
    threads: usize,
}

impl std::fmt::Debug for CodecDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecDecoder")
            .field("num_quantizers", &self.num_quantizers)
            .field("codebook_size", &self.codebook_size)
            .field("latent_dim", &self.latent_dim)
            .field("samples_per_frame", &self.samples_per_frame)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl CodecDecoder {
    /// The decoder of an opened checkpoint (`speech_tokenizer/`).
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        Self::load(&ckpt.speech_config, &ckpt.speech_weights)
    }

    /// Builds the decoder from `decoder.*` tensors, every shape checked against `cfg`.
    pub fn load(cfg: &SpeechTokenizerConfig, src: &dyn TensorSource) -> Result<Self> {
        let d = &cfg.decoder_config;
        let nq = d.num_quantizers;
        // 1. Shape sanity the module constructors would assert.
        if nq < 2 {
            return Err(Error::bad_config(format!(
                "decoder_config.num_quantizers = {nq}: need 1 semantic codebook plus at least 1 acoustic"
            )));
        }
        if d.codebook_dim < 2 || !d.codebook_dim.is_multiple_of(2) || d.codebook_size == 0 {
            return Err(Error::bad_config(format!(
                "decoder_config: codebook_dim {} must be even and codebook_size {} positive",
                d.codebook_dim, d.codebook_size
            )));
        }
        let blocks_n = d.upsample_rates.len();
        if blocks_n >= usize::BITS as usize || !d.decoder_dim.is_multiple_of(1 << blocks_n) || d.decoder_dim >> blocks_n == 0 {
            return Err(Error::bad_config(format!(
                "decoder_config.decoder_dim {} cannot be halved {blocks_n} times",
                d.decoder_dim
            )));
        }
        if d.upsample_rates.iter().chain(&d.upsampling_ratios).any(|&r| r == 0) {
            return Err(Error::bad_config("decoder_config: upsampling factors must be positive"));
        }
        let samples_per_frame: usize = d.upsample_rates.iter().chain(&d.upsampling_ratios).product();
        if samples_per_frame != cfg.decode_upsample_rate as usize {
            return Err(Error::bad_config(format!(
                "decoder_config upsamples by {samples_per_frame} per frame but decode_upsample_rate is {}",
                cfg.decode_upsample_rate
            )));
        }
        let (cd, qd, latent) = (d.codebook_dim, d.codebook_dim / 2, d.latent_dim);

        // 2. Quantizer: codebooks materialised once (the reference recomputes the same
        //    division on every call).
        let mut codebooks = Vec::with_capacity(nq);
        for q in 0..nq {
            let p = if q == 0 {
                "decoder.quantizer.rvq_first.vq.layers.0._codebook".to_string()
            } else {
                format!("decoder.quantizer.rvq_rest.vq.layers.{}._codebook", q - 1)
            };
            let sum = load_vec(src, &format!("{p}.embedding_sum"), &[d.codebook_size, qd])?;
            let usage = load_vec(src, &format!("{p}.cluster_usage"), &[d.codebook_size])?;
            codebooks.push(materialize_codebook(&sum, &usage, qd));
        }
        let proj = |name: &str| -> Result<Linear> {
            let w = load_vec(src, &format!("decoder.quantizer.{name}.output_proj.weight"), &[cd, qd, 1])?;
            Ok(Linear { n_in: qd, n_out: cd, weight: w, bias: None })
        };

        // 3. Steps 2–7.
        let mut upsample = Vec::with_capacity(d.upsampling_ratios.len());
        for (i, &r) in d.upsampling_ratios.iter().enumerate() {
            let p = format!("decoder.upsample.{i}");
            upsample.push(UpsampleStage {
                up: CausalConvTranspose1d::load(src, &format!("{p}.0.conv"), latent, latent, r, r)?,
                convnext: ConvNeXtBlock::load(src, &format!("{p}.1"), latent)?,
            });
        }
        let mut blocks = Vec::with_capacity(blocks_n);
        for (i, &r) in d.upsample_rates.iter().enumerate() {
            let (cin, cout) = (d.decoder_dim >> i, d.decoder_dim >> (i + 1));
            let p = format!("decoder.decoder.{}.block", i + 1);
            let mut units = Vec::with_capacity(RESIDUAL_DILATIONS.len());
            for (u, &dil) in RESIDUAL_DILATIONS.iter().enumerate() {
                units.push(ResidualUnit::load(src, &format!("{p}.{}", u + 2), cout, dil)?);
            }
            blocks.push(VocoderBlock {
                act: load_snake(src, &format!("{p}.0"), cin)?,
                up: CausalConvTranspose1d::load(src, &format!("{p}.1.conv"), cin, cout, 2 * r, r)?,
                units,
            });
        }
        let out_dim = d.decoder_dim >> blocks_n;
        Ok(CodecDecoder {
            num_quantizers: nq,
            codebook_size: d.codebook_size,
            quant_dim: qd,
            latent_dim: latent,
            samples_per_frame,
            sample_rate: cfg.output_sample_rate,
            codebooks,
            first_proj: proj("rvq_first")?,
            rest_proj: proj("rvq_rest")?,
            pre_conv: CausalConv1d::load(src, "decoder.pre_conv.conv", cd, latent, PRE_CONV_KERNEL, 1)?,
            transformer: PreTransformer::load(src, "decoder.pre_transformer", d)?,
            upsample,
            conv_in: CausalConv1d::load(src, "decoder.decoder.0.conv", latent, d.decoder_dim, VOCODER_KERNEL, 1)?,
            blocks,
            final_act: load_snake(src, &format!("decoder.decoder.{}", blocks_n + 1), out_dim)?,
            conv_out: CausalConv1d::load(src, &format!("decoder.decoder.{}.conv", blocks_n + 2), out_dim, 1, VOCODER_KERNEL, 1)?,
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        })
    }

    /// Codebooks per frame (16).
    pub fn num_codebooks(&self) -> usize {
        self.num_quantizers
    }

    /// Entries per codebook (2048): valid codes are `0..codebook_size`.
    pub fn codebook_size(&self) -> usize {
        self.codebook_size
    }

    /// Output samples per frame (1920).
    pub fn samples_per_frame(&self) -> usize {
        self.samples_per_frame
    }

    /// Output sample rate in Hz (24000).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Threads each decode may use (default: all available). Results do not depend on it.
    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Checks `codes` (row-major `[frames, num_codebooks]`) and returns the frame count.
    pub fn check_codes(&self, codes: &[u32], num_codebooks: usize) -> Result<usize> {
        if num_codebooks != self.num_quantizers {
            return Err(Error::invalid_argument(format!(
                "codec decode: expected {} codebooks per frame, got {num_codebooks}",
                self.num_quantizers
            )));
        }
        if !codes.len().is_multiple_of(num_codebooks) {
            return Err(Error::invalid_argument(format!(
                "codec decode: {} codes is not a whole number of {num_codebooks}-code frames",
                codes.len()
            )));
        }
        if let Some(i) = codes.iter().position(|&c| c as usize >= self.codebook_size) {
            return Err(Error::invalid_argument(format!(
                "codec decode: code {} at frame {}, codebook {} is out of range (codebook size {})",
                codes[i],
                i / num_codebooks,
                i % num_codebooks,
                self.codebook_size
            )));
        }
        Ok(codes.len() / num_codebooks)
    }

    /// The official decode (`Qwen3TTSTokenizerV2Model.decode` → `chunked_decode(300, 25)`):
    /// up to 300 frames in one forward; beyond, 300-frame chunks each decoded afresh with up
    /// to 25 preceding frames of context whose samples are dropped. `1920·T` samples.
    pub fn decode(&self, codes: &[u32], num_codebooks: usize) -> Result<Vec<f32>> {
        let frames = self.check_codes(codes, num_codebooks)?;
        let nq = self.num_quantizers;
        let mut wav = Vec::with_capacity(frames * self.samples_per_frame);
        let mut start = 0;
        while start < frames {
            let end = (start + OFFICIAL_CHUNK_FRAMES).min(frames);
            // `left_context_size if start_index - left_context_size > 0 else start_index`
            let context = OFFICIAL_LEFT_CONTEXT_FRAMES.min(start);
            let mut state = DecoderState::new(self);
            let chunk = self.forward(&codes[(start - context) * nq..end * nq], &mut state, None);
            wav.extend_from_slice(&chunk[context * self.samples_per_frame..]);
            start = end;
        }
        Ok(wav)
    }

    /// One forward over all frames, whatever their number (no chunking): what a stream in
    /// [`ChunkPolicy::Continuous`](super::ChunkPolicy) produces. Equals [`decode`](Self::decode)
    /// up to rounding for ≤ 300 frames.
    pub fn decode_full(&self, codes: &[u32], num_codebooks: usize) -> Result<Vec<f32>> {
        self.check_codes(codes, num_codebooks)?;
        Ok(self.forward(codes, &mut DecoderState::new(self), None))
    }

    /// [`decode_full`](Self::decode_full), also returning the intermediate activations.
    pub fn decode_traced(&self, codes: &[u32], num_codebooks: usize) -> Result<(Vec<f32>, DecoderTrace)> {
        self.check_codes(codes, num_codebooks)?;
        let mut trace = DecoderTrace::default();
        let wav = self.forward(codes, &mut DecoderState::new(self), Some(&mut trace));
        Ok((wav, trace))
    }

    /// The official wrapper's handling of a padded batch row (`[frames, num_codebooks]`,
    /// padding = −1): the valid length is the number of frames whose codebook-0 code is ≥ 0,
    /// every negative code is clamped to 0, all frames are decoded (chunked), and the output
    /// is cut to `valid · 1920` samples. Because the decoder is causal, trailing padding
    /// does not change the samples that are kept.
    pub fn decode_padded(&self, codes: &[i64], num_codebooks: usize) -> Result<Vec<f32>> {
        let too_big = codes.iter().position(|&c| c >= self.codebook_size as i64);
        if let Some(i) = too_big {
            return Err(Error::invalid_argument(format!(
                "codec decode: code {} at frame {}, codebook {} is out of range (codebook size {})",
                codes[i],
                i / num_codebooks.max(1),
                i % num_codebooks.max(1),
                self.codebook_size
            )));
        }
        let clamped: Vec<u32> = codes.iter().map(|&c| c.max(0) as u32).collect();
        let frames = self.check_codes(&clamped, num_codebooks)?;
        let valid = (0..frames).filter(|&t| codes[t * num_codebooks] > -1).count();
        let mut wav = self.decode(&clamped, num_codebooks)?;
        wav.truncate(valid * self.samples_per_frame);
        Ok(wav)
    }

    /// Decodes checked `codes` continuing from `state`: exactly `1920` samples per frame.
    pub(crate) fn forward(&self, codes: &[u32], state: &mut DecoderState, mut trace: Option<&mut DecoderTrace>) -> Vec<f32> {
        let threads = self.threads;
        let frames = codes.len() / self.num_quantizers;
        // 1. Dequantise.
        let q = self.dequantize(codes, frames);
        // 2. pre_conv.
        let h = self.pre_conv.forward(&q, frames, &mut state.pre_conv, threads);
        if let Some(t) = trace.as_deref_mut() {
            t.dequant.extend_from_slice(&q);
            t.pre_conv.extend_from_slice(&h);
        }
        // 3. Pre-transformer.
        let h = self.transformer.forward(&h, frames, &mut state.transformer, threads);
        if let Some(t) = trace.as_deref_mut() {
            t.pre_transformer.extend_from_slice(&h);
        }
        // 4–7. The convolutional stages, a few frames at a time.
        let mut wav = Vec::with_capacity(frames * self.samples_per_frame);
        let mut start = 0;
        while start < frames {
            let n = SLICE_FRAMES.min(frames - start);
            let slice = &h[start * self.latent_dim..(start + n) * self.latent_dim];
            wav.extend(self.vocode(slice, n, state, trace.as_deref_mut()));
            start += n;
        }
        wav
    }

    /// Step 1: `[frames, num_quantizers]` codes → `[frames, codebook_dim]`.
    fn dequantize(&self, codes: &[u32], frames: usize) -> Vec<f32> {
        let (nq, qd) = (self.num_quantizers, self.quant_dim);
        let mut first = vec![0.0; frames * qd];
        let mut rest = vec![0.0; frames * qd];
        for t in 0..frames {
            let row = &codes[t * nq..(t + 1) * nq];
            let c0 = row[0] as usize;
            first[t * qd..(t + 1) * qd].copy_from_slice(&self.codebooks[0][c0 * qd..(c0 + 1) * qd]);
            // rvq_rest sums its embeddings in codebook order, then projects once.
            let acc = &mut rest[t * qd..(t + 1) * qd];
            for (q, &c) in row.iter().enumerate().skip(1) {
                let e = &self.codebooks[q][c as usize * qd..(c as usize + 1) * qd];
                for (a, &v) in acc.iter_mut().zip(e) {
                    *a += v;
                }
            }
        }
        let mut out = self.first_proj.forward(&first, frames, 1);
        let rest = self.rest_proj.forward(&rest, frames, 1);
        for (o, r) in out.iter_mut().zip(&rest) {
            *o += r;
        }
        out
    }

    /// Steps 4–7 for `frames` frames of pre-transformer output `x [frames, latent]`.
    fn vocode(&self, x: &[f32], frames: usize, state: &mut DecoderState, mut trace: Option<&mut DecoderTrace>) -> Vec<f32> {
        let threads = self.threads;
        let mut rows = frames;
        let mut h = x.to_vec();
        // 4. Upsampling stages (12.5 Hz → 50 Hz).
        for (stage, st) in self.upsample.iter().zip(&mut state.upsample) {
            h = stage.up.forward(&h, rows, &mut st.up, threads);
            rows *= stage.up.stride;
            h = stage.convnext.forward(&h, rows, &mut st.dwconv, threads);
        }
        if let Some(t) = trace.as_deref_mut() {
            t.upsample.extend_from_slice(&h);
        }
        // 5. decoder.0.
        h = self.conv_in.forward(&h, rows, &mut state.conv_in, threads);
        if let Some(t) = trace {
            t.decoder0.extend_from_slice(&h);
        }
        // 6. Vocoder blocks (50 Hz → 24 kHz).
        for (block, st) in self.blocks.iter().zip(&mut state.blocks) {
            block.act.apply(&mut h, threads);
            h = block.up.forward(&h, rows, &mut st.up, threads);
            rows *= block.up.stride;
            for (unit, ust) in block.units.iter().zip(&mut st.units) {
                h = unit.forward(h, rows, ust, threads);
            }
        }
        // 7. Output conv to one channel, clamped.
        self.final_act.apply(&mut h, threads);
        let mut wav = self.conv_out.forward(&h, rows, &mut state.conv_out, threads);
        for v in &mut wav {
            *v = v.clamp(-1.0, 1.0);
        }
        wav
    }

    /// A fresh per-stream state for this decoder's layers.
    pub(crate) fn new_upsample_states(&self) -> Vec<UpsampleState> {
        self.upsample
            .iter()
            .map(|s| UpsampleState { up: s.up.new_state(), dwconv: s.convnext.dwconv.new_state() })
            .collect()
    }

    pub(crate) fn new_block_states(&self) -> Vec<BlockState> {
        self.blocks
            .iter()
            .map(|b| BlockState {
                up: b.up.new_state(),
                units: b.units.iter().map(|u| [u.conv1.new_state(), u.conv2.new_state()]).collect(),
            })
            .collect()
    }
}
