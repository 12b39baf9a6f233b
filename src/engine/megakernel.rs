//! The megakernel engine: the frame loop as one persistent kernel launch per frame
//! ([`crate::backend::cuda::megakernel`]), samplers on the device, codes back through mapped
//! host memory.
//!
//! A request: the prompt is materialised and prefilled through the CUDA backend's batched
//! path (GEMMs, one host wait to read the prompt's logits), which leaves the talker's K/V in
//! its cache; the kernel continues in that cache. Frames are queued [`LOOKAHEAD`] ahead of the
//! one the host waits for; the host polls each frame's record in mapped memory (no stream or
//! event wait per frame), hands the codes to the caller's callback, and stops queueing on EOS,
//! the limit or an abort. An abort sets a flag the next codebook-0 sampler reads, so at most
//! the frame in flight completes after it. The request ends with one stream wait.

use std::time::{Duration, Instant};

use super::{FrameEngine, FrameRequest as Request};
use crate::backend::cpu::rope_inv_freq;
use crate::backend::cuda::megakernel::layout::{MkSampler, MkTalkerSampler};
use crate::backend::cuda::megakernel::program::{FrameWeights, LayerAddrs, LinearAddr, StackAddrs, StackShape};
use crate::backend::cuda::megakernel::{FrameKernel, FrameRecord, FrameRequest, KernelGeometry, LoadPath, RequestInputs};
use crate::backend::cuda::{CudaBackend, CudaWeight};
use crate::backend::{Backend, Rope};
use crate::error::{Error, ErrorKind, Result};
use crate::model::code_predictor::CodePredictor;
use crate::model::generate::{FinishReason, FrameLoopConfig, FrameSink, GeneratedCodes, StopPoll};
use crate::model::layers::{DecoderStack, LinearParts, StackDims};
use crate::model::prefix_cache::{PrefillReport, PrefillSplit, PrefixCache, prefill};
use crate::model::prompt::PromptEmbeds;
use crate::model::sampling::{SamplerConfig, TalkerSamplerConfig, top_p_cut};
use crate::model::talker::{Talker, TalkerState};

/// Frames queued ahead of the one the host waits for. Two keep the GPU busy while the
/// callback of the previous frame runs; the abort flag bounds what an abort lets through.
pub const LOOKAHEAD: usize = 2;

/// Longest the host waits for one frame before reporting the kernel as stuck.
const FRAME_TIMEOUT: Duration = Duration::from_secs(20);

/// The frame megakernel prepared for one model's weights.
pub struct MegakernelEngine {
    kernel: FrameKernel,
    groups: usize,
}

impl std::fmt::Debug for MegakernelEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MegakernelEngine").field("kernel", &self.kernel).finish()
    }
}

fn addr(w: &CudaWeight) -> u64 {
    w.memory().ptr()
}

fn linear<B: Backend>(p: &LinearParts<'_, B>, addr: &impl Fn(&B::Weight) -> u64) -> LinearAddr {
    LinearAddr { w: addr(p.weight), bias: p.bias.map_or(0, addr) }
}

fn stack<B: Backend>(s: &DecoderStack<B>, addr: &impl Fn(&B::Weight) -> u64) -> StackAddrs {
    let d = s.dims();
    StackAddrs {
        shape: StackShape {
            hidden: d.hidden,
            intermediate: d.intermediate,
            heads: d.heads,
            kv_heads: d.kv_heads,
            head_dim: d.head_dim,
            eps: d.eps,
        },
        layers: s
            .layers()
            .iter()
            .map(|l| {
                let p = l.parts();
                LayerAddrs {
                    input_norm: addr(p.input_layernorm),
                    q: linear(&p.q_proj, addr),
                    k: linear(&p.k_proj, addr),
                    v: linear(&p.v_proj, addr),
                    o: linear(&p.o_proj, addr),
                    q_norm: addr(p.q_norm),
                    k_norm: addr(p.k_norm),
                    post_norm: addr(p.post_attention_layernorm),
                    gate: linear(&p.gate_proj, addr),
                    up: linear(&p.up_proj, addr),
                    down: linear(&p.down_proj, addr),
                }
            })
            .collect(),
        final_norm: addr(s.final_norm()),
    }
}

/// The addresses of every weight the frame program reads, each taken with `addr`: device
/// addresses for the kernel; the program emulator (tests) passes host addresses of the CPU
/// backend's weights.
pub fn frame_weights<B: Backend>(
    talker: &Talker<B>,
    predictor: &CodePredictor<B>,
    addr: impl Fn(&B::Weight) -> u64,
) -> FrameWeights {
    FrameWeights {
        talker: stack(talker.stack(), &addr),
        codec_head: addr(talker.codec_head()),
        codec_embedding: addr(talker.codec_embedding()),
        talker_vocab: talker.vocab_size(),
        cp: stack(predictor.stack(), &addr),
        cp_heads: predictor.heads().iter().map(&addr).collect(),
        cp_embeddings: predictor.embeddings().iter().map(&addr).collect(),
        projection: predictor.projection().as_ref().map(|p| linear(p, &addr)),
        cp_vocab: predictor.vocab_size(),
        groups: predictor.num_code_groups(),
    }
}

/// Rotary inverse frequencies of a stack, as the CPU backend computes them.
pub fn inv_freq(d: &StackDims) -> Vec<f32> {
    rope_inv_freq(Rope { theta: d.rope_theta, head_dim: d.head_dim })
}

/// The device sampler's settings for a host sampler config.
pub fn mk_sampler(s: &SamplerConfig) -> MkSampler {
    MkSampler {
        do_sample: i32::from(s.do_sample),
        temperature: s.temperature,
        top_k: s.top_k.min(i32::MAX as usize) as i32,
        top_p: s.top_p,
        top_p_cut: top_p_cut(s.top_p),
        pad: 0,
    }
}

/// The device talker sampler's settings for a host talker chain.
pub fn mk_talker_sampler(t: &TalkerSamplerConfig) -> MkTalkerSampler {
    let clip = |v: u32| v.min(i32::MAX as u32) as i32;
    MkTalkerSampler {
        s: mk_sampler(&t.sampler),
        penalty: t.repetition_penalty,
        min_new_tokens: t.min_new_tokens.min(i32::MAX as usize) as i32,
        eos: clip(t.eos_token),
        suppress_start: clip(t.suppress.start),
        suppress_end: clip(t.suppress.end),
        pad: 0,
    }
}

impl MegakernelEngine {
    /// Prepares the kernel for this talker and code predictor. `Unsupported` when their shapes
    /// or the GPU cannot run it (the caller may fall back to the unfused engine).
    /// `max_frames`: the most frames a request may ask for.
    pub fn new(
        backend: &CudaBackend,
        talker: &Talker<CudaBackend>,
        predictor: &CodePredictor<CudaBackend>,
        max_frames: usize,
        path: LoadPath,
    ) -> Result<Self> {
        let weights = frame_weights(talker, predictor, addr);
        let freqs = (inv_freq(talker.dims()), inv_freq(predictor.dims()));
        let kernel = FrameKernel::new(backend.device_arc().clone(), weights, freqs, max_frames + 1, path)?;
        Ok(MegakernelEngine { kernel, groups: predictor.num_code_groups() })
    }

    /// The launch geometry chosen for this GPU.
    pub fn geometry(&self) -> KernelGeometry {
        self.kernel.geometry()
    }

    /// Ops in the frame program and the index of the codebook-0 sampler.
    pub fn program_shape(&self) -> (usize, usize) {
        self.kernel.program_shape()
    }

    /// This engine bound to the decoders whose weights it was prepared for, and the model's
    /// voice prefix cache if it keeps one.
    pub fn bind<'a>(
        &'a self,
        backend: &'a CudaBackend,
        talker: &'a Talker<CudaBackend>,
        predictor: &'a CodePredictor<CudaBackend>,
        prefix_cache: Option<&'a PrefixCache<CudaBackend>>,
    ) -> MegakernelFrames<'a> {
        MegakernelFrames { engine: self, backend, talker, predictor, prefix_cache }
    }
}

/// [`MegakernelEngine`] with the decoders it runs.
pub struct MegakernelFrames<'a> {
    engine: &'a MegakernelEngine,
    backend: &'a CudaBackend,
    talker: &'a Talker<CudaBackend>,
    predictor: &'a CodePredictor<CudaBackend>,
    prefix_cache: Option<&'a PrefixCache<CudaBackend>>,
}

/// A prefilled request: the prompt's rows and the talker state the kernel continues from.
pub struct Prefilled {
    stream: crate::backend::cuda::CudaStreamCtx,
    prompt: PromptEmbeds<CudaBackend>,
    talker: TalkerState<CudaBackend>,
    report: PrefillReport,
}

impl<'a> MegakernelFrames<'a> {
    /// Materialises and prefills the prompt of `r` on a fresh stream (the unfused batched
    /// path, through the voice prefix cache if the model keeps one), leaving the talker's
    /// cache ready for `frames` more positions.
    pub fn prefill(&self, r: &Request<'_>, frames: usize) -> Result<Prefilled> {
        let b = self.backend;
        let mut stream = b.new_stream()?;
        let split = PrefillSplit::decide(self.prefix_cache, self.talker, r.plan, r.voice, self.groups());
        let (talker, predictor) = (self.talker, self.predictor);
        let mut prompt =
            PromptEmbeds::materialize(b, &mut stream, talker, predictor, r.ids, r.plan, r.voice, split.prefix_rows())?;
        let rows = prompt.len();
        let mut state = talker.new_state(b, rows + frames + 1)?;
        let report = prefill(b, &mut stream, talker, &mut state, &mut prompt, split, None)?;
        Ok(Prefilled { stream, prompt, talker: state, report })
    }

    /// The device state of a prefilled request, ready to launch frames. It borrows `p`: the
    /// kernels write into its cache.
    pub fn start<'p>(&'p self, p: &'p Prefilled, cfg: &FrameLoopConfig) -> Result<FrameRequest<'p>> {
        let kv = p.talker.kv();
        let inputs = RequestInputs {
            talker_kv: (0..kv.layers()).map(|i| kv.layer(i)).collect(),
            capacity: kv.capacity(),
            prompt_len: p.prompt.len(),
            last_hidden: p.talker.last_hidden(),
            logits: p.talker.logits_device(),
            text_rows: p.prompt.trailing(),
            trailing: p.prompt.trailing_len(),
            pad_row: p.prompt.tts_pad(),
            frame_limit: cfg.frame_limit,
            seed: cfg.seed,
            talker: mk_talker_sampler(&cfg.talker),
            cp: mk_sampler(&cfg.code_predictor),
        };
        self.engine.kernel.request(p.stream.stream(), inputs)
    }

    /// Codebooks per frame.
    pub fn groups(&self) -> usize {
        self.engine.groups
    }
}

/// Waits for frame `frame`'s record by polling mapped memory (no stream or event wait). A
/// kernel fault surfaces through the stream query; a stream that went idle without writing
/// the record, or no progress for [`FRAME_TIMEOUT`], is an error.
pub fn wait_record(req: &FrameRequest<'_>, frame: usize) -> Result<FrameRecord> {
    let start = Instant::now();
    let mut last_query = start;
    let mut spins = 0u32;
    loop {
        if let Some(r) = req.poll(frame) {
            return Ok(r);
        }
        spins = spins.wrapping_add(1);
        if spins < 256 {
            std::hint::spin_loop();
            continue;
        }
        let now = Instant::now();
        if now.duration_since(last_query) > Duration::from_micros(200) {
            last_query = now;
            if req.idle()? {
                return req.poll(frame).ok_or_else(|| {
                    Error::new(ErrorKind::Cuda, format!("CUDA: the frame megakernel finished without frame {frame}"))
                });
            }
            if now.duration_since(start) > FRAME_TIMEOUT {
                return Err(Error::new(
                    ErrorKind::Cuda,
                    format!(
                        "CUDA: frame {frame} not done after {} s: the frame megakernel is stuck ({})",
                        FRAME_TIMEOUT.as_secs(),
                        req.diagnose_stuck()
                    ),
                ));
            }
        }
        std::thread::yield_now();
    }
}

impl FrameEngine for MegakernelFrames<'_> {
    fn name(&self) -> &'static str {
        "megakernel"
    }

    fn generate(
        &self,
        r: Request<'_>,
        mut on_frame: Option<&mut FrameSink<'_>>,
        should_stop: Option<&mut StopPoll<'_>>,
    ) -> Result<GeneratedCodes> {
        let cfg = r.config;
        cfg.talker.validate()?;
        cfg.code_predictor.validate()?;
        let groups = self.groups();
        let pre = self.prefill(&r, cfg.frame_limit)?;
        // The GPU prefill is queued whole (seconds at most for MAX_PROMPT_ROWS rows); the stop
        // poll runs once it is done, before any frame is launched.
        if let Some(stop) = should_stop
            && stop()
        {
            return Ok(GeneratedCodes {
                codes: Vec::new(),
                num_code_groups: groups,
                finish: FinishReason::Aborted,
                prefill: pre.report,
            });
        }
        let mut req = self.start(&pre, cfg)?;

        let mut codes = Vec::with_capacity(cfg.frame_limit.min(4096) * groups);
        let mut finish = FinishReason::FrameLimit;
        let mut launched = 0usize;
        let mut frame = 0usize;
        let outcome: Result<()> = (|| {
            loop {
                while launched <= cfg.frame_limit && launched < frame + LOOKAHEAD {
                    req.launch(launched)?;
                    launched += 1;
                }
                match wait_record(&req, frame)? {
                    FrameRecord::Frame(c) => {
                        codes.extend_from_slice(&c[..groups]);
                        if let Some(sink) = on_frame.as_deref_mut()
                            && !sink(frame, &c[..groups])
                        {
                            req.abort();
                            finish = FinishReason::Aborted;
                            return Ok(());
                        }
                        frame += 1;
                    }
                    FrameRecord::Eos => {
                        finish = FinishReason::Eos;
                        return Ok(());
                    }
                    FrameRecord::Limit => return Ok(()),
                    FrameRecord::Aborted => {
                        finish = FinishReason::Aborted;
                        return Ok(());
                    }
                    FrameRecord::BadCode(c) => {
                        return Err(Error::invalid_argument(format!(
                            "talker produced codebook-0 id {c}, outside the codec's {} codes (sampling settings left a control token unsuppressed)",
                            self.predictor.vocab_size()
                        )));
                    }
                }
            }
        })();
        // One wait per request: nothing of it may run once its buffers are released.
        let waited = req.synchronize();
        outcome?;
        waited?;
        Ok(GeneratedCodes { codes, num_code_groups: groups, finish, prefill: pre.report })
    }
}

/// One frame as the device saw it: each sampler's raw logits and the codes it took.
#[derive(Debug, Clone)]
pub struct ObservedFrame {
    /// The talker's raw codec logits (codebook 0).
    pub talker: Vec<f32>,
    /// Raw logits of codebooks 1.. (the code predictor's heads).
    pub groups: Vec<Vec<f32>>,
    /// The frame's codes (forced, or the device samplers' picks).
    pub codes: Vec<u32>,
}

impl MegakernelFrames<'_> {
    /// For tests: runs `frames` frames of `r` one at a time, returning every sampler's raw
    /// logits. With `forced` (`[frames, groups]` codes) every code is taken from it (teacher
    /// forcing); without, the device samplers choose. Waits after every frame (a test path,
    /// not a fast one). Every frame must complete (mask EOS through the request's config).
    pub fn observe(&self, r: Request<'_>, forced: Option<&[u32]>, frames: usize) -> Result<Vec<ObservedFrame>> {
        let groups = self.groups();
        if frames == 0 || forced.is_some_and(|c| c.len() < frames * groups) {
            return Err(Error::invalid_argument("observe: no frames, or fewer forced codes than frames"));
        }
        let mut cfg = r.config.clone();
        cfg.frame_limit = frames;
        let pre = self.prefill(&r, frames)?;
        let mut req = self.start(&pre, &cfg)?;
        if let Some(codes) = forced {
            let mut all = codes[..frames * groups].to_vec();
            all.extend(std::iter::repeat_n(0, groups)); // the limit frame's codebook 0 (unused)
            req.set_forced(&all)?;
        }
        req.enable_dump()?;
        let (tv, cv) = (self.talker.vocab_size(), self.predictor.vocab_size());
        let mut out = Vec::with_capacity(frames);
        for f in 0..frames {
            req.launch(f)?;
            let talker = req.read_dump(0, tv)?;
            let groups_logits = (1..groups).map(|g| req.read_dump(g, cv)).collect::<Result<Vec<_>>>()?;
            let codes = match req.poll(f) {
                Some(FrameRecord::Frame(c)) => c[..groups].to_vec(),
                other => {
                    return Err(Error::new(ErrorKind::Cuda, format!("observe: frame {f} ended as {other:?}")));
                }
            };
            out.push(ObservedFrame { talker, groups: groups_logits, codes });
        }
        Ok(out)
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<MegakernelEngine>();
};
