//! The frame loop: prompt prefill, then per frame one talker step, the code predictor and
//! sampling, until EOS or the frame limit (codes only; audio is the codec's job).
//!
//! Mirrors `Qwen3TTSForConditionalGeneration.generate` + HF `GenerationMixin.generate`:
//! sample codebook 0 from the talker's logits (penalty over previously generated codebook-0
//! ids, EOS masked before `min_new_tokens`, control ids suppressed); stop on EOS without
//! emitting a frame; otherwise run the code predictor from the talker's post-norm hidden
//! state for codebooks 1..15, emit the frame, and feed `Σ embeddings + text row` back.
//!
//! Frame limit: the reference's `max_new_tokens = N` yields at most `N − 1` frames, because
//! the token sampled at the last step never gets residual codes. We express limits in frames:
//! a limit of `F` frames samples up to `F + 1` codebook-0 tokens, so a request whose EOS
//! comes right after frame `F` still ends as [`FinishReason::Eos`].

use super::code_predictor::{CodePredictor, CodePredictorState};
use super::prefix_cache::{PrefillReport, PrefillSplit, PrefixCache, prefill};
use super::prompt::{PromptEmbeds, PromptPlan, SpecialIds, VoiceData};
use super::rng::Philox;
use super::sampling::{SamplerConfig, TalkerSamplerConfig, sample_code_predictor, sample_talker};
use super::talker::{Talker, TalkerState};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced its end-of-speech token.
    Eos,
    /// The frame limit was reached first (the model may have missed EOS; the audio may be
    /// cut mid-word).
    FrameLimit,
    /// The caller's abort hook asked to stop.
    Aborted,
}

/// Sampling and limits for one request, already merged with the checkpoint's defaults.
#[derive(Debug, Clone)]
pub struct FrameLoopConfig {
    pub talker: TalkerSamplerConfig,
    pub code_predictor: SamplerConfig,
    /// Most frames to emit.
    pub frame_limit: usize,
    /// Seed of the counter-based RNG (ignored by greedy decoding).
    pub seed: u64,
}

/// Codes of one request. Frames are row-major `[frames, num_code_groups]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedCodes {
    pub codes: Vec<u32>,
    pub num_code_groups: usize,
    pub finish: FinishReason,
    /// The prompt's rows and how many of them a voice prefix cache supplied.
    pub prefill: PrefillReport,
}

impl GeneratedCodes {
    pub fn frames(&self) -> usize {
        self.codes.len() / self.num_code_groups.max(1)
    }

    /// Frame `i` as a slice of `num_code_groups` codes.
    pub fn frame(&self, i: usize) -> &[u32] {
        &self.codes[i * self.num_code_groups..(i + 1) * self.num_code_groups]
    }
}

/// What the loop reports after every frame; returning `false` stops generation
/// ([`FinishReason::Aborted`]).
pub type FrameSink<'a> = dyn FnMut(usize, &[u32]) -> bool + 'a;

/// Polled during the work before the first frame (after each layer of each pass of the
/// prompt's prefill, up to MAX_PROMPT_ROWS rows of it; a prefill that computes a voice prefix
/// for the cache runs two passes, the prefix's and the rest's): `true` stops the request
/// there, with no frame made ([`FinishReason::Aborted`]).
pub type StopPoll<'a> = dyn FnMut() -> bool + 'a;

/// Runs the whole request on backend `b`. All per-request state is created here and
/// dropped at the end, so concurrent calls on shared weights never interfere (`prefix_cache`,
/// when given, is shared and locked for its lookups only).
#[allow(clippy::too_many_arguments)]
pub fn generate_codes<B: Backend>(
    b: &B,
    talker: &Talker<B>,
    predictor: &CodePredictor<B>,
    prefix_cache: Option<&PrefixCache<B>>,
    ids: &SpecialIds,
    plan: &PromptPlan,
    voice: VoiceData<'_>,
    cfg: &FrameLoopConfig,
    mut on_frame: Option<&mut FrameSink<'_>>,
    should_stop: Option<&mut StopPoll<'_>>,
) -> Result<GeneratedCodes> {
    cfg.talker.validate()?;
    cfg.code_predictor.validate()?;
    let groups = predictor.num_code_groups();
    let rng = Philox::new(cfg.seed);
    let mut s = b.new_stream()?;

    // 1. Prompt rows, then prefill: the logits of the last prompt row give frame 0's c0.
    let split = PrefillSplit::decide(prefix_cache, talker, plan, voice, groups);
    let mut prompt = PromptEmbeds::materialize(b, &mut s, talker, predictor, ids, plan, voice, split.prefix_rows())?;
    let capacity = prompt.len() + cfg.frame_limit + 1;
    let mut tst: TalkerState<B> = talker.new_state(b, capacity)?;
    let mut pst: CodePredictorState<B> = predictor.new_state(b)?;
    // The prefill is the longest stretch without a frame: the stop poll runs after each layer.
    let mut stopped = false;
    let prefilled = match should_stop {
        None => prefill(b, &mut s, talker, &mut tst, &mut prompt, split, None),
        Some(stop) => {
            let mut poll = |_: &mut B::Stream, _layer: usize, _: &B::Buffer| -> Result<()> {
                stopped = stop();
                if stopped { Err(Error::invalid_argument("the prefill was stopped")) } else { Ok(()) }
            };
            prefill(b, &mut s, talker, &mut tst, &mut prompt, split, Some(&mut poll))
        }
    };
    if stopped {
        let prefill = PrefillReport { rows: prompt.len(), reused_rows: 0 };
        return Ok(GeneratedCodes { codes: Vec::new(), num_code_groups: groups, finish: FinishReason::Aborted, prefill });
    }
    let prefill = prefilled?;

    let mut generated: Vec<u32> = Vec::with_capacity(cfg.frame_limit + 1);
    let mut codes: Vec<u32> = Vec::with_capacity(cfg.frame_limit * groups);
    let mut frame = vec![0u32; groups];
    let mut finish = FinishReason::FrameLimit;

    for step in 0..=cfg.frame_limit {
        let frame_index = u32::try_from(step).map_err(|_| Error::invalid_argument("frame limit exceeds u32"))?;
        // 2. Codebook 0 from the talker's logits (host copy; the processors edit it in place).
        let c0 = sample_talker(tst.logits_mut(), &generated, &cfg.talker, rng.uniform(frame_index, 0));
        generated.push(c0);
        if c0 == cfg.talker.eos_token {
            finish = FinishReason::Eos;
            break;
        }
        // The token sampled at the limit only tells whether EOS would have come next.
        if step == cfg.frame_limit {
            break;
        }
        if c0 as usize >= predictor.vocab_size() {
            return Err(Error::invalid_argument(format!(
                "talker produced codebook-0 id {c0}, outside the codec's {} codes (sampling settings left a control token unsuppressed)",
                predictor.vocab_size()
            )));
        }

        // 3. Codebooks 1..15 from the talker's post-norm hidden state of that row.
        frame[0] = c0;
        predictor.predict(b, &mut s, &mut pst, tst.last_hidden(), talker.codec_embedding(), &mut frame, |g, logits| {
            sample_code_predictor(logits, &cfg.code_predictor, rng.uniform(frame_index, g as u32))
        })?;
        codes.extend_from_slice(&frame);
        if let Some(sink) = on_frame.as_deref_mut()
            && !sink(step, &frame)
        {
            finish = FinishReason::Aborted;
            break;
        }

        // 4. Next talker input: Σ of the 16 codebook embeddings + this step's text row.
        prompt.decode_input(b, &mut s, talker, predictor, &frame, step, tst.input_mut())?;
        talker.step(b, &mut s, &mut tst)?;
    }

    Ok(GeneratedCodes { codes, num_code_groups: groups, finish, prefill })
}
