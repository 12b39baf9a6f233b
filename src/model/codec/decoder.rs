//! Codes → 24 kHz waveform: `Qwen3TTSTokenizerV2Decoder` (qwen-tts 0.1.1), written once over
//! the audio op set ([`AudioBackend`]): on the CPU (the default, f32, the oracle) or on a GPU.
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

use std::ops::Range;

use super::conv::{Conv, DepthwiseConv, TransposedConv};
use super::stream::{BlockState, DecoderState, UpsampleState, VocoderState};
use super::transformer::PreTransformer;
use super::workspace::fit;
use super::{TensorSource, load_vec};
use crate::backend::Backend;
use crate::backend::audio::{AudioBackend, ConvShape};
use crate::backend::cpu::CpuBackend;
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

/// SnakeBeta `x + 1/(e^β + 1e-9) · sin²(x · e^α)` per channel. α and β are stored in log
/// space; the two per-channel factors are computed once at load exactly as the reference
/// computes them on every call (f32 exp, f32 add and divide).
pub(crate) struct Snake<B: AudioBackend> {
    /// e^α: the frequency.
    freq: B::AudioWeight,
    /// 1 / (e^β + 1e-9): the magnitude.
    inv_mag: B::AudioWeight,
}

impl<B: AudioBackend> Snake<B> {
    fn load(backend: &B, src: &dyn TensorSource, prefix: &str, dim: usize) -> Result<Self> {
        const NO_DIV_BY_ZERO: f32 = 1e-9;
        let alpha = load_vec(src, &format!("{prefix}.alpha"), &[dim])?;
        let beta = load_vec(src, &format!("{prefix}.beta"), &[dim])?;
        let freq: Vec<f32> = alpha.iter().map(|a| a.exp()).collect();
        let inv_mag: Vec<f32> = beta.iter().map(|b| 1.0 / (b.exp() + NO_DIV_BY_ZERO)).collect();
        Ok(Snake { freq: backend.upload_audio_weight(&freq, &[dim])?, inv_mag: backend.upload_audio_weight(&inv_mag, &[dim])? })
    }

    fn apply(&self, b: &B, s: &mut B::Stream, x: &mut B::Buffer, rows: usize) -> Result<()> {
        b.snake_beta(s, x, rows, &self.freq, &self.inv_mag)
    }
}

/// ConvNeXt block: depthwise causal conv k7 → LayerNorm → Linear ×4 → GELU → Linear →
/// ×gamma → + input.
pub(crate) struct ConvNeXtBlock<B: AudioBackend> {
    pub(crate) dwconv: DepthwiseConv<B>,
    norm_weight: B::AudioWeight,
    norm_bias: B::AudioWeight,
    pwconv1: Conv<B>,
    pwconv2: Conv<B>,
    gamma: B::AudioWeight,
}

impl<B: AudioBackend> ConvNeXtBlock<B> {
    fn load(backend: &B, src: &dyn TensorSource, prefix: &str, dim: usize) -> Result<Self> {
        let vec = |name: &str| -> Result<B::AudioWeight> { backend.upload_audio_weight(&load_vec(src, name, &[dim])?, &[dim]) };
        Ok(ConvNeXtBlock {
            dwconv: DepthwiseConv::load(backend, src, &format!("{prefix}.dwconv.conv"), dim, CONVNEXT_KERNEL)?,
            norm_weight: vec(&format!("{prefix}.norm.weight"))?,
            norm_bias: vec(&format!("{prefix}.norm.bias"))?,
            pwconv1: Conv::load_linear(backend, src, &format!("{prefix}.pwconv1"), dim, 4 * dim, true)?,
            pwconv2: Conv::load_linear(backend, src, &format!("{prefix}.pwconv2"), 4 * dim, dim, true)?,
            gamma: vec(&format!("{prefix}.gamma"))?,
        })
    }

    /// `x [rows, dim]` in place, using `t1 [rows, dim]` and `t2 [rows, 4·dim]`.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        b: &B,
        s: &mut B::Stream,
        x: &mut B::Buffer,
        rows: usize,
        dw_history: &mut B::Buffer,
        t1: &mut B::Buffer,
        t2: &mut B::Buffer,
    ) -> Result<()> {
        self.dwconv.forward(b, s, x, rows, dw_history, t1)?;
        b.layer_norm(s, t1, rows, &self.norm_weight, &self.norm_bias, CONVNEXT_NORM_EPS)?;
        self.pwconv1.forward(b, s, t1, rows, None, t2)?;
        b.gelu(s, t2, rows * self.pwconv1.shape.cout)?;
        self.pwconv2.forward(b, s, t2, rows, None, t1)?;
        b.scale_add(s, x, t1, rows, &self.gamma)
    }
}

/// One upsampling stage of step 4.
pub(crate) struct UpsampleStage<B: AudioBackend> {
    pub(crate) up: TransposedConv<B>,
    pub(crate) convnext: ConvNeXtBlock<B>,
}

/// `[SnakeBeta → causal conv k7 (dilation d) → SnakeBeta → conv k1] + identity`.
pub(crate) struct ResidualUnit<B: AudioBackend> {
    act1: Snake<B>,
    pub(crate) conv1: Conv<B>,
    act2: Snake<B>,
    pub(crate) conv2: Conv<B>,
}

impl<B: AudioBackend> ResidualUnit<B> {
    fn load(backend: &B, src: &dyn TensorSource, prefix: &str, dim: usize, dilation: usize) -> Result<Self> {
        Ok(ResidualUnit {
            act1: Snake::load(backend, src, &format!("{prefix}.act1"), dim)?,
            conv1: Conv::load(backend, src, &format!("{prefix}.conv1.conv"), dim, dim, VOCODER_KERNEL, dilation)?,
            act2: Snake::load(backend, src, &format!("{prefix}.act2"), dim)?,
            conv2: Conv::load(backend, src, &format!("{prefix}.conv2.conv"), dim, dim, 1, 1)?,
        })
    }

    /// `x [rows, dim]` → `out [rows, dim]`, using `t1`, `t2` of the same size.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        b: &B,
        s: &mut B::Stream,
        x: &B::Buffer,
        rows: usize,
        state: &mut [Option<B::Buffer>; 2],
        t1: &mut B::Buffer,
        t2: &mut B::Buffer,
        out: &mut B::Buffer,
    ) -> Result<()> {
        let len = rows * self.conv1.shape.cin;
        b.copy(s, x, 0, t1, 0, len)?;
        self.act1.apply(b, s, t1, rows)?;
        let [h1, h2] = state;
        self.conv1.forward(b, s, t1, rows, h1.as_mut(), t2)?;
        self.act2.apply(b, s, t2, rows)?;
        self.conv2.forward(b, s, t2, rows, h2.as_mut(), out)?;
        b.add(s, out, x, len)
    }
}

/// One vocoder block of step 6.
pub(crate) struct VocoderBlock<B: AudioBackend> {
    act: Snake<B>,
    pub(crate) up: TransposedConv<B>,
    pub(crate) units: Vec<ResidualUnit<B>>,
}

/// The decoder's weights on backend `B` (the CPU unless said otherwise). Immutable after
/// load, `Send + Sync`: one instance serves any number of concurrent decodes and streams,
/// each with its own state ([`super::StreamingDecoder`]).
pub struct CodecDecoder<B: AudioBackend = CpuBackend> {
    backend: B,
    num_quantizers: usize,
    codebook_size: usize,
    /// Width of the codebook vectors (`codebook_dim / 2`).
    quant_dim: usize,
    codebook_dim: usize,
    latent_dim: usize,
    samples_per_frame: usize,
    sample_rate: u32,
    /// `[num_quantizers]` tables `[codebook_size, quant_dim]`, already divided by the usage.
    codebooks: Vec<B::AudioWeight>,
    /// `rvq_first.output_proj` / `rvq_rest.output_proj` (1×1 convs, no bias).
    first_proj: Conv<B>,
    rest_proj: Conv<B>,
    pub(crate) pre_conv: Conv<B>,
    pub(crate) transformer: PreTransformer<B>,
    pub(crate) upsample: Vec<UpsampleStage<B>>,
    pub(crate) conv_in: Conv<B>,
    pub(crate) blocks: Vec<VocoderBlock<B>>,
    final_act: Snake<B>,
    pub(crate) conv_out: Conv<B>,
}

impl<B: AudioBackend> std::fmt::Debug for CodecDecoder<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecDecoder")
            .field("backend", &self.backend.name())
            .field("num_quantizers", &self.num_quantizers)
            .field("codebook_size", &self.codebook_size)
            .field("latent_dim", &self.latent_dim)
            .field("samples_per_frame", &self.samples_per_frame)
            .finish_non_exhaustive()
    }
}

impl CodecDecoder<CpuBackend> {
    /// The decoder of an opened checkpoint (`speech_tokenizer/`), on the CPU.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        Self::load(&ckpt.speech_config, &ckpt.speech_weights)
    }

    /// Builds the CPU decoder from `decoder.*` tensors, every shape checked against `cfg`,
    /// using every available thread.
    pub fn load(cfg: &SpeechTokenizerConfig, src: &dyn TensorSource) -> Result<Self> {
        Self::load_on(CpuBackend::default(), cfg, src)
    }

    /// Threads each decode may use (default: all available). Results do not depend on it.
    pub fn threads(&self) -> usize {
        self.backend.threads()
    }

    pub fn set_threads(&mut self, threads: usize) {
        self.backend = CpuBackend::new(threads);
    }
}

impl<B: AudioBackend> CodecDecoder<B> {
    /// Builds the decoder on `backend` from `decoder.*` tensors, every shape checked against
    /// `cfg`.
    pub fn load_on(backend: B, cfg: &SpeechTokenizerConfig, src: &dyn TensorSource) -> Result<Self> {
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
        let b = &backend;
        let mut codebooks = Vec::with_capacity(nq);
        for q in 0..nq {
            let p = if q == 0 {
                "decoder.quantizer.rvq_first.vq.layers.0._codebook".to_string()
            } else {
                format!("decoder.quantizer.rvq_rest.vq.layers.{}._codebook", q - 1)
            };
            let sum = load_vec(src, &format!("{p}.embedding_sum"), &[d.codebook_size, qd])?;
            let usage = load_vec(src, &format!("{p}.cluster_usage"), &[d.codebook_size])?;
            codebooks.push(b.upload_audio_weight(&materialize_codebook(&sum, &usage, qd), &[d.codebook_size, qd])?);
        }
        let proj = |name: &str| -> Result<Conv<B>> {
            let w = load_vec(src, &format!("decoder.quantizer.{name}.output_proj.weight"), &[cd, qd, 1])?;
            Conv::from_torch(b, ConvShape::linear(qd, cd), &w, None)
        };

        // 3. Steps 2–7.
        let mut upsample = Vec::with_capacity(d.upsampling_ratios.len());
        for (i, &r) in d.upsampling_ratios.iter().enumerate() {
            let p = format!("decoder.upsample.{i}");
            upsample.push(UpsampleStage {
                up: TransposedConv::load(b, src, &format!("{p}.0.conv"), latent, latent, r, r)?,
                convnext: ConvNeXtBlock::load(b, src, &format!("{p}.1"), latent)?,
            });
        }
        let mut blocks = Vec::with_capacity(blocks_n);
        for (i, &r) in d.upsample_rates.iter().enumerate() {
            let (cin, cout) = (d.decoder_dim >> i, d.decoder_dim >> (i + 1));
            let p = format!("decoder.decoder.{}.block", i + 1);
            let mut units = Vec::with_capacity(RESIDUAL_DILATIONS.len());
            for (u, &dil) in RESIDUAL_DILATIONS.iter().enumerate() {
                units.push(ResidualUnit::load(b, src, &format!("{p}.{}", u + 2), cout, dil)?);
            }
            blocks.push(VocoderBlock {
                act: Snake::load(b, src, &format!("{p}.0"), cin)?,
                up: TransposedConv::load(b, src, &format!("{p}.1.conv"), cin, cout, 2 * r, r)?,
                units,
            });
        }
        let out_dim = d.decoder_dim >> blocks_n;
        Ok(CodecDecoder {
            num_quantizers: nq,
            codebook_size: d.codebook_size,
            quant_dim: qd,
            codebook_dim: cd,
            latent_dim: latent,
            samples_per_frame,
            sample_rate: cfg.output_sample_rate,
            codebooks,
            first_proj: proj("rvq_first")?,
            rest_proj: proj("rvq_rest")?,
            pre_conv: Conv::load(b, src, "decoder.pre_conv.conv", cd, latent, PRE_CONV_KERNEL, 1)?,
            transformer: PreTransformer::load(b, src, "decoder.pre_transformer", d)?,
            upsample,
            conv_in: Conv::load(b, src, "decoder.decoder.0.conv", latent, d.decoder_dim, VOCODER_KERNEL, 1)?,
            blocks,
            final_act: Snake::load(b, src, &format!("decoder.decoder.{}", blocks_n + 1), out_dim)?,
            conv_out: Conv::load(b, src, &format!("decoder.decoder.{}.conv", blocks_n + 2), out_dim, 1, VOCODER_KERNEL, 1)?,
            backend,
        })
    }

    /// The backend the decoder computes on.
    pub fn backend(&self) -> &B {
        &self.backend
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
        let mut state = DecoderState::new(self)?;
        let mut start = 0;
        while start < frames {
            let end = (start + OFFICIAL_CHUNK_FRAMES).min(frames);
            // `left_context_size if start_index - left_context_size > 0 else start_index`
            let context = OFFICIAL_LEFT_CONTEXT_FRAMES.min(start);
            if start > 0 {
                state.reset(self)?;
            }
            let chunk = self.forward(&codes[(start - context) * nq..end * nq], &mut state, None)?;
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
        self.forward(codes, &mut DecoderState::new(self)?, None)
    }

    /// [`decode_full`](Self::decode_full), also returning the intermediate activations.
    pub fn decode_traced(&self, codes: &[u32], num_codebooks: usize) -> Result<(Vec<f32>, DecoderTrace)> {
        self.check_codes(codes, num_codebooks)?;
        let mut trace = DecoderTrace::default();
        let wav = self.forward(codes, &mut DecoderState::new(self)?, Some(&mut trace))?;
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
    pub(crate) fn forward(&self, codes: &[u32], state: &mut DecoderState<B>, mut trace: Option<&mut DecoderTrace>) -> Result<Vec<f32>> {
        let b = &self.backend;
        let frames = codes.len() / self.num_quantizers;
        let mut wav = vec![0.0; frames * self.samples_per_frame];
        if frames == 0 {
            return Ok(wav);
        }
        let DecoderState { stream: s, pre_conv, transformer, vocoder, workspace: ws } = state;
        let (cd, latent) = (self.codebook_dim, self.latent_dim);
        let q = fit(b, &mut ws.dequant, frames * cd)?;
        let h = fit(b, &mut ws.pre_conv, frames * latent)?;
        let lat = fit(b, &mut ws.latent, frames * latent)?;
        // 1. Dequantise.
        self.dequantize(s, codes, frames, q, &mut ws.quant)?;
        // 2. pre_conv.
        self.pre_conv.forward(b, s, q, frames, pre_conv.as_mut(), h)?;
        if let Some(t) = trace.as_deref_mut() {
            t.dequant.extend(read(b, s, q, frames * cd)?);
            t.pre_conv.extend(read(b, s, h, frames * latent)?);
        }
        // 3. Pre-transformer.
        self.transformer.forward(b, s, h, frames, transformer, lat)?;
        if let Some(t) = trace.as_deref_mut() {
            t.pre_transformer.extend(read(b, s, lat, frames * latent)?);
        }
        // 4–7. The convolutional stages, a few frames at a time.
        let mut start = 0;
        while start < frames {
            let n = SLICE_FRAMES.min(frames - start);
            let out = &mut wav[start * self.samples_per_frame..(start + n) * self.samples_per_frame];
            let rows = start * latent..(start + n) * latent;
            self.vocode(s, lat, rows, n, vocoder, &mut ws.vocoder, out, trace.as_deref_mut())?;
            start += n;
        }
        Ok(wav)
    }

    /// Step 1: `[frames, num_quantizers]` codes → `q [frames, codebook_dim]`: codebook 0
    /// projected by `rvq_first`, plus the sum of codebooks 1.. (in codebook order) projected
    /// by `rvq_rest`.
    fn dequantize(&self, s: &mut B::Stream, codes: &[u32], frames: usize, q: &mut B::Buffer, bufs: &mut [Option<B::Buffer>; 3]) -> Result<()> {
        let b = &self.backend;
        let nq = self.num_quantizers;
        let first_ids: Vec<u32> = codes.chunks_exact(nq).map(|row| row[0]).collect();
        let rest_ids: Vec<u32> = codes.chunks_exact(nq).flat_map(|row| row[1..].iter().copied()).collect();
        let rest_tables: Vec<&B::AudioWeight> = self.codebooks[1..].iter().collect();
        let [first, rest, projected] = bufs;
        let first = fit(b, first, frames * self.quant_dim)?;
        let rest = fit(b, rest, frames * self.quant_dim)?;
        let projected = fit(b, projected, frames * self.codebook_dim)?;
        b.codebook_sum(s, &[&self.codebooks[0]], &first_ids, first)?;
        b.codebook_sum(s, &rest_tables, &rest_ids, rest)?;
        self.first_proj.forward(b, s, first, frames, None, q)?;
        self.rest_proj.forward(b, s, rest, frames, None, projected)?;
        b.add(s, q, projected, frames * self.codebook_dim)
    }

    /// Largest activation (elements) of steps 4–7 over `frames` frames.
    fn vocoder_buffer_len(&self, frames: usize) -> usize {
        let mut rows = frames;
        let mut len = rows * self.latent_dim;
        for stage in &self.upsample {
            rows *= stage.up.shape.stride;
            len = len.max(rows * stage.convnext.pwconv1.shape.cout);
        }
        len = len.max(rows * self.conv_in.shape.cout);
        for block in &self.blocks {
            rows *= block.up.shape.stride;
            len = len.max(rows * block.up.shape.cout);
        }
        len
    }

    /// Steps 4–7 for `frames` frames of pre-transformer output (`x[range]`, `[frames,
    /// latent]`) into `out` (`1920·frames` samples).
    #[allow(clippy::too_many_arguments)]
    fn vocode(
        &self,
        s: &mut B::Stream,
        x: &B::Buffer,
        range: Range<usize>,
        frames: usize,
        st: &mut VocoderState<B>,
        bufs: &mut [Option<B::Buffer>; 4],
        out: &mut [f32],
        mut trace: Option<&mut DecoderTrace>,
    ) -> Result<()> {
        let b = &self.backend;
        let len = self.vocoder_buffer_len(frames);
        let [a, t1, t2, t3] = bufs;
        let (mut a, mut t1, t2, mut t3) = (fit(b, a, len)?, fit(b, t1, len)?, fit(b, t2, len)?, fit(b, t3, len)?);
        b.copy(s, x, range.start, a, 0, range.len())?;
        let mut rows = frames;
        // 4. Upsampling stages (12.5 Hz → 50 Hz).
        for (stage, ust) in self.upsample.iter().zip(&mut st.upsample) {
            stage.up.forward(b, s, a, rows, ust.up.as_mut(), t1)?;
            rows *= stage.up.shape.stride;
            stage.convnext.forward(b, s, t1, rows, &mut ust.dwconv, t2, t3)?;
            std::mem::swap(&mut a, &mut t1);
        }
        if let Some(t) = trace.as_deref_mut() {
            t.upsample.extend(read(b, s, a, rows * self.latent_dim)?);
        }
        // 5. decoder.0.
        self.conv_in.forward(b, s, a, rows, st.conv_in.as_mut(), t1)?;
        std::mem::swap(&mut a, &mut t1);
        if let Some(t) = trace {
            t.decoder0.extend(read(b, s, a, rows * self.conv_in.shape.cout)?);
        }
        // 6. Vocoder blocks (50 Hz → 24 kHz).
        for (block, bst) in self.blocks.iter().zip(&mut st.blocks) {
            block.act.apply(b, s, a, rows)?;
            block.up.forward(b, s, a, rows, bst.up.as_mut(), t1)?;
            rows *= block.up.shape.stride;
            std::mem::swap(&mut a, &mut t1);
            for (unit, ust) in block.units.iter().zip(&mut bst.units) {
                unit.forward(b, s, a, rows, ust, t1, t2, t3)?;
                std::mem::swap(&mut a, &mut t3);
            }
        }
        // 7. Output conv to one channel, clamped.
        self.final_act.apply(b, s, a, rows)?;
        self.conv_out.forward(b, s, a, rows, st.conv_out.as_mut(), t1)?;
        b.clamp(s, t1, rows, -1.0, 1.0)?;
        b.read(s, t1, 0, out)
    }

    /// A fresh per-stream state of this decoder's vocoder layers.
    pub(crate) fn new_vocoder_state(&self) -> Result<VocoderState<B>> {
        let b = &self.backend;
        let upsample = self
            .upsample
            .iter()
            .map(|st| Ok(UpsampleState { up: st.up.new_state(b)?, dwconv: st.convnext.dwconv.new_state(b)? }))
            .collect::<Result<_>>()?;
        let blocks = self
            .blocks
            .iter()
            .map(|blk| {
                let units = blk.units.iter().map(|u| Ok([u.conv1.new_state(b)?, u.conv2.new_state(b)?])).collect::<Result<_>>()?;
                Ok(BlockState { up: blk.up.new_state(b)?, units })
            })
            .collect::<Result<_>>()?;
        Ok(VocoderState { upsample, conv_in: self.conv_in.new_state(b)?, blocks, conv_out: self.conv_out.new_state(b)? })
    }
}

/// The first `len` elements of `buf`, on the host.
fn read<B: Backend>(b: &B, s: &mut B::Stream, buf: &B::Buffer, len: usize) -> Result<Vec<f32>> {
    let mut host = vec![0.0; len];
    b.read(s, buf, 0, &mut host)?;
    Ok(host)
}
