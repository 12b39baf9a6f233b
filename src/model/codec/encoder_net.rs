//! The codec encoder written over the audio op set, for the GPU: so far its SEANet
//! convolution stack (24 kHz → 25 Hz), the part that costs most of an encode.
//!
//! [`CodecEncoder`](super::CodecEncoder) (CPU) stays the oracle and the CPU path: it runs the
//! stack block by block with a little history per conv to keep its buffers cache-sized; here
//! the whole signal goes through each layer at once ([`AudioBackend::padded_conv`], which
//! pads the edges exactly as `MimiConv1d` does), so the two differ only in summation order.
//! The transformer, the downsample and the quantizers follow.

use super::TensorSource;
use super::conv::Conv;
use crate::backend::audio::{Activation, AudioBackend, EdgePad};
use crate::error::{Error, Result};
use crate::model::config::SpeechTokenizerConfig;

/// Kernel of a residual block's second conv (module constant).
const RESIDUAL_POINTWISE_KERNEL: usize = 1;

/// One entry of the stack; the ELU modules are folded into the conv after them.
enum Stage<B: AudioBackend> {
    /// A conv (stride ≥ 1), ELU on its input first when `elu`.
    Conv { conv: Conv<B>, stride: usize, elu: bool },
    /// `MimiResnetBlock`: ELU → conv1 → ELU → conv2, plus the identity or a k1 shortcut.
    Res { conv1: Conv<B>, conv2: Conv<B>, shortcut: Option<Conv<B>> },
}

/// The encoder's conv stack on backend `B`.
pub struct EncoderConvStack<B: AudioBackend> {
    backend: B,
    stages: Vec<Stage<B>>,
    pad: EdgePad,
    hidden: usize,
}

impl<B: AudioBackend> std::fmt::Debug for EncoderConvStack<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderConvStack")
            .field("backend", &self.backend.name())
            .field("stages", &self.stages.len())
            .field("hidden", &self.hidden)
            .finish()
    }
}

impl<B: AudioBackend> EncoderConvStack<B> {
    /// Loads `encoder.encoder.layers.*` onto `backend`, mirroring `MimiEncoder.__init__`
    /// (its ELU modules take list slots, so the conv tensors sit at layers 0, 3, 6, … at full
    /// size), with the checks of [`CodecEncoder::load`](super::CodecEncoder::load).
    pub fn load(backend: B, cfg: &SpeechTokenizerConfig, src: &dyn TensorSource) -> Result<Self> {
        let e = &cfg.encoder_config;
        if e.audio_channels != 1 {
            return Err(Error::unsupported(format!(
                "encoder_config.audio_channels = {}: the tokenizer encodes mono audio",
                e.audio_channels
            )));
        }
        if !e.use_causal_conv {
            return Err(Error::unsupported("encoder_config.use_causal_conv = false is not implemented"));
        }
        let pad = match e.pad_mode.as_str() {
            "constant" => EdgePad::Zeros,
            "replicate" => EdgePad::Replicate,
            other => {
                return Err(Error::unsupported(format!(
                    "encoder_config.pad_mode \"{other}\": only \"constant\" and \"replicate\" are implemented"
                )));
            }
        };
        if e.compress == 0 || e.hidden_size == 0 {
            return Err(Error::bad_config("encoder_config: compress and hidden_size must be positive"));
        }
        let b = &backend;
        let causal = |kernel: usize, dilation: usize, stride: usize, what: &str| -> Result<()> {
            // The causal padding (k − 1)·d + 1 − stride must not be negative.
            if kernel == 0 || stride == 0 || dilation == 0 || (kernel - 1) * dilation + 1 < stride {
                return Err(Error::bad_config(format!(
                    "{what}: kernel {kernel}, stride {stride}, dilation {dilation} is not a valid causal conv"
                )));
            }
            Ok(())
        };
        let mut stages = Vec::new();
        let mut slot = 0; // `len(model)` in the reference
        let conv = |slot: usize, cin: usize, cout: usize, k: usize, stride: usize, elu: bool| -> Result<Stage<B>> {
            let prefix = format!("encoder.encoder.layers.{slot}.conv");
            causal(k, 1, stride, &prefix)?;
            Ok(Stage::Conv { conv: Conv::load(b, src, &prefix, cin, cout, k, 1)?, stride, elu })
        };
        stages.push(conv(slot, e.audio_channels, e.num_filters, e.kernel_size, 1, false)?);
        slot += 1;
        let mut width = e.num_filters;
        for &ratio in e.upsampling_ratios.iter().rev() {
            for j in 0..e.num_residual_layers {
                let p = format!("encoder.encoder.layers.{slot}");
                let dilation = e.dilation_growth_rate.checked_pow(j as u32).filter(|&d| d > 0).ok_or_else(|| {
                    Error::bad_config(format!("encoder_config: residual dilation {}^{j} is out of range", e.dilation_growth_rate))
                })?;
                let inner = width / e.compress;
                let k1 = e.residual_kernel_size;
                causal(k1, dilation, 1, &p)?;
                stages.push(Stage::Res {
                    conv1: Conv::load(b, src, &format!("{p}.block.1.conv"), width, inner, k1, dilation)?,
                    conv2: Conv::load(b, src, &format!("{p}.block.3.conv"), inner, width, RESIDUAL_POINTWISE_KERNEL, 1)?,
                    shortcut: if e.use_conv_shortcut {
                        Some(Conv::load(b, src, &format!("{p}.shortcut.conv"), width, width, 1, 1)?)
                    } else {
                        None
                    },
                });
                slot += 1;
            }
            slot += 1; // nn.ELU()
            stages.push(conv(slot, width, 2 * width, 2 * ratio, ratio, true)?);
            slot += 1;
            width *= 2;
        }
        slot += 1; // nn.ELU()
        stages.push(conv(slot, width, e.hidden_size, e.last_kernel_size, 1, true)?);
        Ok(EncoderConvStack { backend, stages, pad, hidden: e.hidden_size })
    }

    /// The stack's output for a 24 kHz mono waveform: `([T25, hidden], T25)` on the host, as
    /// [`EncoderTrace::conv_out`](super::encoder::EncoderTrace) / `conv_frames`.
    ///
    /// Errors (`InvalidArgument`): an empty waveform, a non-finite sample.
    pub fn forward(&self, wav: &[f32]) -> Result<(Vec<f32>, usize)> {
        let b = &self.backend;
        let mut s = b.new_stream()?;
        let (out, rows) = self.forward_on(&mut s, wav)?;
        let mut host = vec![0f32; rows * self.hidden];
        b.read(&mut s, &out, 0, &mut host)?;
        Ok((host, rows))
    }

    /// [`forward`](Self::forward) left on the backend: the `[T25, hidden]` buffer and `T25`.
    pub fn forward_on(&self, s: &mut B::Stream, wav: &[f32]) -> Result<(B::Buffer, usize)> {
        let b = &self.backend;
        if wav.is_empty() {
            return Err(Error::invalid_argument("codec encode: the waveform is empty"));
        }
        if let Some(i) = wav.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_argument(format!("codec encode: sample {i} is not finite ({})", wav[i])));
        }
        let mut rows = wav.len();
        let mut x = b.alloc(rows)?;
        b.write(s, &mut x, 0, wav)?;
        for stage in &self.stages {
            (x, rows) = match stage {
                Stage::Conv { conv, stride, elu } => {
                    let input = if *elu { Some(self.elu_copy(s, &x, rows * conv.shape.cin)?) } else { None };
                    let out = rows.div_ceil(*stride);
                    let mut y = b.alloc(out * conv.shape.cout)?;
                    conv.forward_padded(b, s, input.as_ref().unwrap_or(&x), rows, *stride, self.pad, &mut y)?;
                    (y, out)
                }
                Stage::Res { conv1, conv2, shortcut } => {
                    // Stride 1 throughout: the rows are kept.
                    let a = self.elu_copy(s, &x, rows * conv1.shape.cin)?;
                    let mut h = b.alloc(rows * conv1.shape.cout)?;
                    conv1.forward_padded(b, s, &a, rows, 1, self.pad, &mut h)?;
                    b.activation(s, &mut h, rows * conv1.shape.cout, Activation::Elu)?;
                    let width = conv2.shape.cout;
                    let mut h2 = b.alloc(rows * width)?;
                    conv2.forward_padded(b, s, &h, rows, 1, self.pad, &mut h2)?;
                    // `residual + hidden_states`.
                    let mut out = match shortcut {
                        Some(sc) => {
                            let mut r = b.alloc(rows * width)?;
                            sc.forward_padded(b, s, &x, rows, 1, self.pad, &mut r)?;
                            r
                        }
                        None => x,
                    };
                    b.add(s, &mut out, &h2, rows * width)?;
                    (out, rows)
                }
            };
        }
        Ok((x, rows))
    }

    /// ELU of the first `len` values of `x`, in a new buffer (`x` stays: the residual).
    fn elu_copy(&self, s: &mut B::Stream, x: &B::Buffer, len: usize) -> Result<B::Buffer> {
        let b = &self.backend;
        let mut a = b.alloc(len)?;
        b.copy(s, x, 0, &mut a, 0, len)?;
        b.activation(s, &mut a, len, Activation::Elu)?;
        Ok(a)
    }
}
