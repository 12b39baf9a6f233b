//! Talker prompt construction (spec §5, §12), mirroring `Qwen3TTSForConditionalGeneration
//! .generate` and `generate_icl_prompt` of qwen-tts 0.1.1, and the string building of
//! `qwen_tts/inference/qwen3_tts_model.py`.
//!
//! Every talker input row is the sum of a text-side vector and a codec-side vector (the
//! "dual track"). Construction is split in two:
//!
//! 1. A pure [`PromptPlan`]: for each row, which text part (projected token, `tts_pad`,
//!    `tts_bos`, `tts_eos`, or none) and which codec part (codec token, speaker x-vector,
//!    reference frame, or none) it sums; plus the trailing text rows added to decode steps.
//!    Built from token ids and options only ([`build_plan`]), or from a request's strings
//!    ([`plan_request`], which also applies the reference wrapper's validation).
//! 2. [`PromptEmbeds::materialize`]: the plan turned into device rows through the talker's
//!    and the code predictor's embeddings (the distinct text ids projected in one batch, or
//!    in two when the voice prefix cache needs the prefix rows' ids on their own).
//!
//! Layout (n = number of codec control entries, 5 to 7):
//!
//! ```text
//! [instruct rows: P(id), no codec]                    (instruction models only)
//! P(role0) P(role1) P(role2)                          no codec
//! pad+S0 … pad+S(n-3), bos+S(n-2)                     S = think…, [spk], codec_pad, codec_bos
//! then, by mode:
//!   x-vector, streaming      P(body0)+codec_bos        trailing P(body1..), eos
//!   x-vector, non-streaming  P(body_i)+codec_pad…, eos+codec_pad, pad+codec_bos;  trailing pad
//!   ICL, streaming           zip([ref_body, body, eos], [codec_bos, F(ref 0..R)]) padded
//!                            with pad; text beyond the codec column becomes trailing
//!   ICL, non-streaming       [ref_body, body, eos]+codec_pad…, pad+[codec_bos, F(ref…)];
//!                            trailing pad
//! ```
//!
//! After the trailing rows are used up every decode step adds `P(tts_pad)`.

use super::code_predictor::CodePredictor;
use super::config::{ModelConfig, ModelKind};
use super::talker::Talker;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::text::TextTokenizer;

// ---------------------------------------------------------------------------------------------
// Strings and tokenisation (qwen3_tts_model.py)
// ---------------------------------------------------------------------------------------------

/// `_build_assistant_text`: the target text in the chat template, ending with the opened
/// assistant turn the model continues.
pub fn assistant_text(text: &str) -> String {
    format!("<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n")
}

/// `_build_ref_text`: the ICL reference transcript.
pub fn ref_text(text: &str) -> String {
    format!("<|im_start|>assistant\n{text}<|im_end|>\n")
}

/// `_build_instruct_text`: a voice/style instruction as a user turn.
pub fn instruct_text(instruct: &str) -> String {
    format!("<|im_start|>user\n{instruct}<|im_end|>\n")
}

/// Ids of the assistant template: `role = ids[..3]`, `body = ids[3..len-5]`.
const ROLE_LEN: usize = 3;
const TEXT_TAIL_LEN: usize = 5; // <|im_end|> \n <|im_start|> assistant \n
const REF_TAIL_LEN: usize = 2; // <|im_end|> \n

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

/// Text-side part of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextPart {
    /// No text vector (the codec part alone).
    None,
    /// `P(id)`: a projected text token.
    Token(u32),
    /// `P(tts_pad)`.
    Pad,
    /// `P(tts_bos)`.
    Bos,
    /// `P(tts_eos)`.
    Eos,
}

/// Codec-side part of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecPart {
    /// No codec vector (the text part alone).
    None,
    /// `Ec(id)`: the talker's codec embedding of a control, language or speaker token.
    Token(u32),
    /// The speaker x-vector (Base models), supplied at materialisation.
    Speaker,
    /// `F(ref[i])`: the embedding sum of reference frame `i` (ICL).
    RefFrame(usize),
}

/// One prompt row: `text + codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromptRow {
    pub text: TextPart,
    pub codec: CodecPart,
}

impl PromptRow {
    pub const fn new(text: TextPart, codec: CodecPart) -> Self {
        PromptRow { text, codec }
    }
}

/// The rows of a talker prompt and the text rows of the first decode steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPlan {
    /// Prompt rows, fed as one prefill at positions `0..rows.len()`.
    pub rows: Vec<PromptRow>,
    /// Text vector added to decode step `k` for `k < trailing.len()`; `P(tts_pad)` after.
    pub trailing: Vec<TextPart>,
    /// Leading rows that do not depend on the target text: the instruction, role and control
    /// rows (language, speaker) and, for ICL, the reference transcript's rows with their
    /// reference frames. Requests with the same voice, language and instruction share them,
    /// so their keys and values can be computed once ([`crate::model::prefix_cache`]). (The
    /// role rows are the first three ids of the tokenised text template, the same for any text
    /// except one that starts with white space and a line break; a cache key holds the rows
    /// themselves.) At
    /// most `rows.len() − 1`: the last prompt row, whose logits start the frame loop, is never
    /// in it.
    pub voice_prefix: usize,
}

impl PromptPlan {
    /// Prompt length (positions of the prefill).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether materialisation needs a speaker x-vector.
    pub fn needs_speaker_vector(&self) -> bool {
        self.rows.iter().any(|r| r.codec == CodecPart::Speaker)
    }

    /// Reference frames materialisation needs (ICL): one more than the largest index used.
    pub fn ref_frames(&self) -> usize {
        self.rows
            .iter()
            .filter_map(|r| if let CodecPart::RefFrame(i) = r.codec { Some(i + 1) } else { None })
            .max()
            .unwrap_or(0)
    }
}

/// The special ids the layout uses (text side from `config.json`, codec side from
/// `talker_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub tts_pad: u32,
    pub tts_bos: u32,
    pub tts_eos: u32,
    pub codec_pad: u32,
    pub codec_bos: u32,
    pub codec_think: u32,
    pub codec_nothink: u32,
    pub codec_think_bos: u32,
    pub codec_think_eos: u32,
}

impl SpecialIds {
    pub fn from_config(c: &ModelConfig) -> Self {
        let t = &c.talker_config;
        SpecialIds {
            tts_pad: c.tts_pad_token_id,
            tts_bos: c.tts_bos_token_id,
            tts_eos: c.tts_eos_token_id,
            codec_pad: t.codec_pad_id,
            codec_bos: t.codec_bos_id,
            codec_think: t.codec_think_id,
            codec_nothink: t.codec_nothink_id,
            codec_think_bos: t.codec_think_bos_id,
            codec_think_eos: t.codec_think_eos_id,
        }
    }

    /// The text id a [`TextPart`] projects (`None` for [`TextPart::None`]).
    pub fn text_id(&self, part: TextPart) -> Option<u32> {
        match part {
            TextPart::None => None,
            TextPart::Token(id) => Some(id),
            TextPart::Pad => Some(self.tts_pad),
            TextPart::Bos => Some(self.tts_bos),
            TextPart::Eos => Some(self.tts_eos),
        }
    }
}

/// The voice row of the codec control sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceRow {
    /// No speaker row (VoiceDesign, or CustomVoice without a speaker).
    None,
    /// `Ec(id)`: a CustomVoice built-in speaker token.
    Speaker(u32),
    /// The speaker x-vector (Base models; x-vector-only and ICL modes).
    XVector,
}

/// ICL reference: the full reference-transcript ids (`ref_text(...)` tokenised) and the
/// number of reference code frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IclReference<'a> {
    pub ref_ids: &'a [u32],
    pub frames: usize,
}

/// Everything a plan depends on, in ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanInputs<'a> {
    /// `assistant_text(text)` tokenised: role (3) + body + tail (5).
    pub text_ids: &'a [u32],
    /// `instruct_text(...)` tokenised; all ids become text-only rows before the role.
    pub instruct_ids: Option<&'a [u32]>,
    /// The codec language token, or `None` for "auto" (the nothink path). Dialect
    /// substitution has already been applied (see [`resolve_language`]).
    pub language_id: Option<u32>,
    pub voice: VoiceRow,
    /// Reference for ICL voice cloning; `None` for every other mode.
    pub icl: Option<IclReference<'a>>,
    /// Whole text in the prompt (`true`) or text streamed alongside the codec (`false`).
    pub non_streaming_mode: bool,
}

/// Builds the plan exactly as the reference `generate` (one sample of the batch).
pub fn build_plan(ids: &SpecialIds, p: &PlanInputs<'_>) -> Result<PromptPlan> {
    use CodecPart as C;
    use TextPart as T;

    let text_ids = p.text_ids;
    if text_ids.len() < ROLE_LEN + TEXT_TAIL_LEN {
        return Err(Error::invalid_argument(format!(
            "prompt: the target text ids must hold the assistant template (3 role + 5 tail ids), got {} ids",
            text_ids.len()
        )));
    }
    let role = &text_ids[..ROLE_LEN];
    let body = &text_ids[ROLE_LEN..text_ids.len() - TEXT_TAIL_LEN];

    let mut rows = Vec::new();

    // 1. Instruction rows: projected text only.
    if let Some(instruct) = p.instruct_ids {
        rows.extend(instruct.iter().map(|&t| PromptRow::new(T::Token(t), C::None)));
    }

    // 2. Role rows "<|im_start|>assistant\n": projected text only.
    rows.extend(role.iter().map(|&t| PromptRow::new(T::Token(t), C::None)));

    // 3. Codec control sequence S: think tags with the language (or nothink), the voice,
    //    then codec_pad, codec_bos.
    let mut control = match p.language_id {
        None => vec![C::Token(ids.codec_nothink), C::Token(ids.codec_think_bos), C::Token(ids.codec_think_eos)],
        Some(lang) => vec![
            C::Token(ids.codec_think),
            C::Token(ids.codec_think_bos),
            C::Token(lang),
            C::Token(ids.codec_think_eos),
        ],
    };
    match p.voice {
        VoiceRow::None => {}
        VoiceRow::Speaker(id) => control.push(C::Token(id)),
        VoiceRow::XVector => control.push(C::Speaker),
    }
    control.push(C::Token(ids.codec_pad));
    control.push(C::Token(ids.codec_bos));

    // 4. All of S but its last entry, under pad…pad, bos: tts_bos lines up with codec_pad
    //    and codec_bos is held back for the first text row.
    let n = control.len();
    for (i, &codec) in control[..n - 1].iter().enumerate() {
        rows.push(PromptRow::new(if i < n - 2 { T::Pad } else { T::Bos }, codec));
    }
    let codec_bos = control[n - 1];
    let mut voice_prefix = rows.len();

    // 5. The text, by mode.
    let trailing = match p.icl {
        Some(icl) => {
            // generate_icl_prompt: text column [ref_body, body, eos], codec column
            // [codec_bos, F(ref 0..R)].
            if icl.ref_ids.len() < ROLE_LEN + REF_TAIL_LEN {
                return Err(Error::invalid_argument(format!(
                    "prompt: the reference transcript ids must hold the template (3 role + 2 tail ids), got {}",
                    icl.ref_ids.len()
                )));
            }
            if icl.frames == 0 {
                return Err(Error::invalid_argument("prompt: ICL needs at least one reference code frame"));
            }
            let ref_body = &icl.ref_ids[ROLE_LEN..icl.ref_ids.len() - REF_TAIL_LEN];
            let text: Vec<TextPart> =
                ref_body.iter().chain(body).map(|&t| T::Token(t)).chain(std::iter::once(T::Eos)).collect();
            let codec: Vec<CodecPart> =
                std::iter::once(C::Token(ids.codec_bos)).chain((0..icl.frames).map(C::RefFrame)).collect();
            // The transcript's rows come first in every ICL layout and pair its tokens with
            // codec_pad (non-streaming) or with the codec column (streaming), which the text
            // cannot reach before the transcript ends.
            voice_prefix += if p.non_streaming_mode { ref_body.len() } else { ref_body.len().min(codec.len()) };
            if p.non_streaming_mode {
                rows.extend(text.iter().map(|&t| PromptRow::new(t, C::Token(ids.codec_pad))));
                rows.extend(codec.iter().map(|&c| PromptRow::new(T::Pad, c)));
                vec![T::Pad]
            } else if text.len() > codec.len() {
                rows.extend(text.iter().zip(&codec).map(|(&t, &c)| PromptRow::new(t, c)));
                text[codec.len()..].to_vec()
            } else {
                let padded = text.iter().copied().chain(std::iter::repeat(T::Pad));
                rows.extend(padded.zip(&codec).map(|(t, &c)| PromptRow::new(t, c)));
                vec![T::Pad]
            }
        }
        None if p.non_streaming_mode => {
            // Whole body against codec_pad, then eos, then pad + codec_bos.
            rows.extend(body.iter().map(|&t| PromptRow::new(T::Token(t), C::Token(ids.codec_pad))));
            rows.push(PromptRow::new(T::Eos, C::Token(ids.codec_pad)));
            rows.push(PromptRow::new(T::Pad, codec_bos));
            vec![T::Pad]
        }
        None => {
            // First text token (ids[3], which is <|im_end|> for an empty text, as in the
            // reference) with codec_bos; the rest of the body and eos trail.
            rows.push(PromptRow::new(T::Token(text_ids[ROLE_LEN]), codec_bos));
            // ids[4:-5], empty (not reversed) when the body is empty, as Python slicing.
            let rest = text_ids.get(ROLE_LEN + 1..text_ids.len() - TEXT_TAIL_LEN).unwrap_or(&[]);
            rest.iter().map(|&t| T::Token(t)).chain(std::iter::once(T::Eos)).collect()
        }
    };
    let voice_prefix = voice_prefix.min(rows.len() - 1);
    Ok(PromptPlan { rows, trailing, voice_prefix })
}

// ---------------------------------------------------------------------------------------------
// Requests: names and strings → plan (the wrapper's validation)
// ---------------------------------------------------------------------------------------------

/// How the voice is chosen. The variant must match the checkpoint's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice<'a> {
    /// Base: speaker x-vector only (`x_vector_only_mode = True`).
    XVector,
    /// Base: in-context cloning from `ref_frames` reference code frames and their transcript
    /// (the x-vector is used too).
    Icl { ref_text: &'a str, ref_frames: usize },
    /// CustomVoice: a built-in speaker (case-insensitive; "" means no speaker row, as in the
    /// reference) and an optional instruction. The 0.6B CustomVoice ignores instructions, as
    /// the reference does.
    Speaker { name: &'a str, instruct: Option<&'a str> },
    /// VoiceDesign: the voice described in words ("" means no instruction rows).
    Design { instruct: &'a str },
}

/// One synthesis request in the wrapper's terms. `non_streaming_mode` has no default here:
/// the reference uses `false` for voice cloning and `true` for CustomVoice/VoiceDesign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptRequest<'a> {
    pub text: &'a str,
    /// "Auto" or a language name, case-insensitive ("English", "chinese", ...).
    pub language: &'a str,
    pub voice: Voice<'a>,
    pub non_streaming_mode: bool,
}

/// The codec language token for `language` (`None` for auto), after the CustomVoice dialect
/// rule: a dialect speaker speaking Chinese or Auto gets its dialect's token.
///
/// Accepted names are "auto" and the non-dialect keys of `codec_language_id`
/// (`_validate_languages`); anything else is `InvalidArgument`.
pub fn resolve_language(config: &ModelConfig, language: &str, speaker: Option<&str>) -> Result<Option<u32>> {
    let t = &config.talker_config;
    let lang = language.to_lowercase();
    let supported = config.languages();
    if !supported.contains(&lang) {
        return Err(Error::invalid_argument(format!(
            "unsupported language {}; this model supports: {}",
            crate::error::quoted(language),
            supported.join(", ")
        )));
    }
    let mut id = if lang == "auto" { None } else { Some(t.codec_language_id[&lang]) };
    if let Some(speaker) = speaker.filter(|s| !s.is_empty())
        && (lang == "chinese" || lang == "auto")
        && let Some(dialect) = t.speaker_dialect(&speaker.to_lowercase())
    {
        let dialect_id = t.codec_language_id.get(dialect).ok_or_else(|| {
            Error::bad_config(format!("speaker \"{speaker}\" has dialect \"{dialect}\", which has no language token"))
        })?;
        id = Some(*dialect_id);
    }
    Ok(id)
}

/// The codec token of a CustomVoice speaker (case-insensitive), `None` for "" (no speaker).
pub fn resolve_speaker(config: &ModelConfig, speaker: &str) -> Result<Option<u32>> {
    if speaker.is_empty() {
        return Ok(None);
    }
    let t = &config.talker_config;
    match t.spk_id.get(&speaker.to_lowercase()) {
        Some(&id) => Ok(Some(id)),
        None => Err(Error::invalid_argument(format!(
            "unknown speaker {}; this model has: {}",
            crate::error::quoted(speaker),
            if t.spk_id.is_empty() { "no built-in speakers".to_owned() } else { config.speakers().join(", ") }
        ))),
    }
}

/// Token ids of one request (kept so callers can inspect or log them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    pub text_ids: Vec<u32>,
    pub ref_ids: Option<Vec<u32>>,
    pub instruct_ids: Option<Vec<u32>>,
}

/// Validates `req` against the checkpoint like the reference wrapper, tokenises its strings
/// and builds the plan.
///
/// Errors: `Unsupported` for a voice the model kind cannot use (voice cloning on a
/// CustomVoice model, …) or an instruction on a Base model; `InvalidArgument` for an unknown
/// language or speaker and for ICL without a transcript or reference frames.
pub fn plan_request(
    config: &ModelConfig,
    tokenizer: &TextTokenizer,
    req: &PromptRequest<'_>,
) -> Result<(PromptPlan, RequestIds)> {
    let kind = config.kind();
    // The reference raises from generate_voice_clone / generate_custom_voice /
    // generate_voice_design when the checkpoint is of another kind.
    let wrong_kind = |what: &str, needs: &str| {
        Err(Error::unsupported(format!("{what} needs a {needs} model; this checkpoint is {kind:?}")))
    };

    let mut speaker_name = None;
    let (voice, instruct, icl) = match req.voice {
        Voice::XVector | Voice::Icl { .. } if kind != ModelKind::Base => return wrong_kind("voice cloning", "Base"),
        Voice::XVector => (VoiceRow::XVector, None, None),
        Voice::Icl { ref_text: rt, ref_frames } => {
            // create_voice_clone_prompt: "ref_text is required when x_vector_only_mode=False".
            if rt.is_empty() {
                return Err(Error::invalid_argument("ICL voice cloning needs the reference transcript"));
            }
            if ref_frames == 0 {
                return Err(Error::invalid_argument("ICL voice cloning needs reference codes (got 0 frames)"));
            }
            (VoiceRow::XVector, None, Some((rt, ref_frames)))
        }
        Voice::Speaker { .. } if kind != ModelKind::CustomVoice => {
            return wrong_kind("a built-in speaker", "CustomVoice");
        }
        Voice::Speaker { name, instruct } => {
            speaker_name = Some(name);
            let voice = resolve_speaker(config, name)?.map_or(VoiceRow::None, VoiceRow::Speaker);
            // generate_custom_voice: `if self.model.tts_model_size in "0b6": instruct = None`
            // (a substring test, kept as such).
            let instruct = if "0b6".contains(config.tts_model_size.as_str()) {
                if instruct.is_some_and(|i| !i.is_empty()) {
                    log::warn!("the 0.6B CustomVoice model ignores instructions; the instruction is dropped");
                }
                None
            } else {
                instruct
            };
            (voice, instruct, None)
        }
        Voice::Design { .. } if kind != ModelKind::VoiceDesign => {
            return wrong_kind("a voice description", "VoiceDesign");
        }
        Voice::Design { instruct } => (VoiceRow::None, Some(instruct), None),
    };

    let language_id = resolve_language(config, req.language, speaker_name)?;

    let text_ids = tokenizer.encode(&assistant_text(req.text))?;
    let instruct_ids = match instruct.filter(|i| !i.is_empty()) {
        Some(i) => Some(tokenizer.encode(&instruct_text(i))?),
        None => None,
    };
    let ref_ids = match icl {
        Some((rt, _)) => Some(tokenizer.encode(&ref_text(rt))?),
        None => None,
    };

    let plan = build_plan(
        &SpecialIds::from_config(config),
        &PlanInputs {
            text_ids: &text_ids,
            instruct_ids: instruct_ids.as_deref(),
            language_id,
            voice,
            icl: icl.map(|(_, frames)| IclReference { ref_ids: ref_ids.as_deref().unwrap_or(&[]), frames }),
            non_streaming_mode: req.non_streaming_mode,
        },
    )?;
    Ok((plan, RequestIds { text_ids, ref_ids, instruct_ids }))
}

// ---------------------------------------------------------------------------------------------
// Materialisation
// ---------------------------------------------------------------------------------------------

/// Host-side voice data a plan may refer to.
#[derive(Debug, Clone, Copy, Default)]
pub struct VoiceData<'a> {
    /// Speaker x-vector `[talker_hidden]` for [`CodecPart::Speaker`].
    pub speaker_vector: Option<&'a [f32]>,
    /// Reference codes, row-major `[frames, num_code_groups]`, for [`CodecPart::RefFrame`].
    pub ref_codes: Option<&'a [u32]>,
}

/// A materialised prompt: device rows of the prompt, of the trailing text, and `P(tts_pad)`.
pub struct PromptEmbeds<B: Backend> {
    /// Rows whose text ids were projected as a batch of their own (0: one batch).
    own_batch_rows: usize,
    embeds: B::Buffer,
    len: usize,
    trailing: B::Buffer,
    trailing_len: usize,
    tts_pad: B::Buffer,
    scratch: B::Buffer,
    hidden: usize,
}

impl<B: Backend> PromptEmbeds<B> {
    /// Turns `plan` into rows. `voice` must provide what the plan refers to.
    ///
    /// `own_batch_rows`: the text ids of the first `own_batch_rows` rows (with `tts_pad`) are
    /// projected as a batch of their own, so their vectors depend on those rows alone and not
    /// on the rest of the prompt (a GPU chooses its matrix kernels by row count). The voice
    /// prefix cache needs that for the prefix rows; 0 projects every id in one batch.
    #[allow(clippy::too_many_arguments)]
    pub fn materialize(
        b: &B,
        s: &mut B::Stream,
        talker: &Talker<B>,
        predictor: &CodePredictor<B>,
        ids: &SpecialIds,
        plan: &PromptPlan,
        voice: VoiceData<'_>,
        own_batch_rows: usize,
    ) -> Result<Self> {
        let h = talker.hidden_size();
        let len = plan.len();
        if len == 0 {
            return Err(Error::invalid_argument("prompt: empty plan"));
        }

        // 1. Every distinct text id (pad always: it is the fallback decode text row) projected
        //    into a small table: one batch, or the first rows' ids and then the others.
        let mut table_ids: Vec<u32> = vec![ids.tts_pad];
        let text_parts = plan.rows.iter().map(|r| r.text).chain(plan.trailing.iter().copied());
        let mut first_batch = 0;
        for (i, part) in text_parts.enumerate() {
            if own_batch_rows > 0 && i == own_batch_rows {
                first_batch = table_ids.len();
            }
            if let Some(id) = ids.text_id(part)
                && !table_ids.contains(&id)
            {
                table_ids.push(id);
            }
        }
        let text_vocab = talker.text_vocab_size();
        if let Some(&bad) = table_ids.iter().find(|&&id| id as usize >= text_vocab) {
            return Err(Error::invalid_argument(format!(
                "prompt: text id {bad} is outside the text vocabulary of {text_vocab} rows"
            )));
        }
        let mut table = b.alloc(table_ids.len() * h)?;
        if first_batch == 0 || first_batch == table_ids.len() {
            talker.project_text(b, s, &table_ids, &mut table)?;
        } else {
            talker.project_text(b, s, &table_ids[..first_batch], &mut table)?;
            let rest = &table_ids[first_batch..];
            let mut projected = b.alloc(rest.len() * h)?;
            talker.project_text(b, s, rest, &mut projected)?;
            b.copy(s, &projected, 0, &mut table, first_batch * h, rest.len() * h)?;
        }
        let slot = |part: TextPart| ids.text_id(part).map(|id| table_ids.iter().position(|&t| t == id).unwrap());

        // 2. Text column of the prompt, scattered from the table (zero where there is none).
        let mut embeds = b.alloc(len * h)?;
        for (r, row) in plan.rows.iter().enumerate() {
            if let Some(i) = slot(row.text) {
                b.copy(s, &table, i * h, &mut embeds, r * h, h)?;
            }
        }

        // 3. Codec column: control/speaker tokens gathered in one call, the x-vector
        //    written from the host, reference frames summed over their 16 codebooks.
        let mut codec = b.alloc(len * h)?;
        let token_rows: Vec<(usize, u32)> = (plan.rows.iter().enumerate())
            .filter_map(|(r, row)| if let CodecPart::Token(id) = row.codec { Some((r, id)) } else { None })
            .collect();
        if !token_rows.is_empty() {
            let token_ids: Vec<u32> = token_rows.iter().map(|&(_, id)| id).collect();
            let mut gathered = b.alloc(token_ids.len() * h)?;
            talker.embed_codec(b, s, &token_ids, &mut gathered, false)?;
            for (i, &(r, _)) in token_rows.iter().enumerate() {
                b.copy(s, &gathered, i * h, &mut codec, r * h, h)?;
            }
        }
        if plan.needs_speaker_vector() {
            let spk = voice
                .speaker_vector
                .ok_or_else(|| Error::invalid_argument("prompt: this voice needs a speaker x-vector"))?;
            if spk.len() != h {
                return Err(Error::invalid_argument(format!(
                    "prompt: the speaker x-vector has {} values, the talker width is {h}",
                    spk.len()
                )));
            }
            for (r, row) in plan.rows.iter().enumerate() {
                if row.codec == CodecPart::Speaker {
                    b.write(s, &mut codec, r * h, spk)?;
                }
            }
        }
        let frames = plan.ref_frames();
        if frames > 0 {
            let groups = predictor.num_code_groups();
            let codes =
                voice.ref_codes.ok_or_else(|| Error::invalid_argument("prompt: ICL needs the reference codes"))?;
            if codes.len() % groups != 0 || codes.len() / groups < frames {
                return Err(Error::invalid_argument(format!(
                    "prompt: the plan uses {frames} reference frames of {groups} codes; got {} codes",
                    codes.len()
                )));
            }
            let mut summed = b.alloc(frames * h)?;
            predictor.embed_frames(b, s, talker.codec_embedding(), &codes[..frames * groups], &mut summed)?;
            for (r, row) in plan.rows.iter().enumerate() {
                if let CodecPart::RefFrame(i) = row.codec {
                    b.copy(s, &summed, i * h, &mut codec, r * h, h)?;
                }
            }
        }

        // 4. Row = text + codec (either may be the zero vector, which adds exactly).
        b.add(s, &mut embeds, &codec, len * h)?;

        // 5. Trailing text rows and the pad row, from the same table.
        let trailing_len = plan.trailing.len();
        let mut trailing = b.alloc(trailing_len.max(1) * h)?;
        for (k, &part) in plan.trailing.iter().enumerate() {
            if let Some(i) = slot(part) {
                b.copy(s, &table, i * h, &mut trailing, k * h, h)?;
            }
        }
        let mut tts_pad = b.alloc(h)?;
        b.copy(s, &table, 0, &mut tts_pad, 0, h)?;

        Ok(PromptEmbeds {
            own_batch_rows: if first_batch == 0 { 0 } else { own_batch_rows },
            embeds,
            len,
            trailing,
            trailing_len,
            tts_pad,
            scratch: b.alloc(h)?,
            hidden: h,
        })
    }

    /// Rows whose text vectors were projected in a batch of their own (the `own_batch_rows`
    /// of [`materialize`](Self::materialize) when it split the projection, else 0).
    pub fn own_batch_rows(&self) -> usize {
        self.own_batch_rows
    }

    /// Prompt rows `[len, hidden]` (the talker's prefill input).
    pub fn embeds(&self) -> &B::Buffer {
        &self.embeds
    }

    /// Mutable prompt rows: the talker forward uses its input as the residual stream, so a
    /// prefill consumes them.
    pub fn embeds_mut(&mut self) -> &mut B::Buffer {
        &mut self.embeds
    }

    /// Prompt length in rows.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Trailing text rows `[trailing_len, hidden]`.
    pub fn trailing(&self) -> &B::Buffer {
        &self.trailing
    }

    pub fn trailing_len(&self) -> usize {
        self.trailing_len
    }

    /// `P(tts_pad)` `[hidden]`.
    pub fn tts_pad(&self) -> &B::Buffer {
        &self.tts_pad
    }

    /// Decode-step input for step `k` (k = 0 for the first generated frame):
    /// `out[..hidden] = F(frame) + (trailing[k] if k < trailing_len else P(tts_pad))`,
    /// the frame sum first and the text vector added once, as the reference does.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_input(
        &mut self,
        b: &B,
        s: &mut B::Stream,
        talker: &Talker<B>,
        predictor: &CodePredictor<B>,
        frame: &[u32],
        k: usize,
        out: &mut B::Buffer,
    ) -> Result<()> {
        let h = self.hidden;
        if frame.len() != predictor.num_code_groups() {
            return Err(Error::invalid_argument(format!(
                "decode input: a frame has {} codes, got {}",
                predictor.num_code_groups(),
                frame.len()
            )));
        }
        // 1. Σ of the 16 codebook embeddings.
        predictor.embed_frames(b, s, talker.codec_embedding(), frame, out)?;
        // 2. Plus this step's text vector.
        if k < self.trailing_len {
            b.copy(s, &self.trailing, k * h, &mut self.scratch, 0, h)?;
            b.add(s, out, &self.scratch, h)
        } else {
            b.add(s, out, &self.tts_pad, h)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The worked example of spec §5.4: "Hello world." in English, reference "Okay. Yeah."
    //! with 25 frames, x-vector speaker.
    use super::*;
    use CodecPart as C;
    use TextPart as T;

    const IDS: SpecialIds = SpecialIds {
        tts_pad: 151671,
        tts_bos: 151672,
        tts_eos: 151673,
        codec_pad: 2148,
        codec_bos: 2149,
        codec_think: 2154,
        codec_nothink: 2155,
        codec_think_bos: 2156,
        codec_think_eos: 2157,
    };
    const ENGLISH: u32 = 2050;
    const TEXT: [u32; 11] = [151644, 77091, 198, 9707, 1879, 13, 151645, 198, 151644, 77091, 198];
    const REF: [u32; 9] = [151644, 77091, 198, 32313, 13, 21607, 13, 151645, 198];

    fn plan(language: Option<u32>, icl: bool, non_streaming: bool) -> PromptPlan {
        build_plan(
            &IDS,
            &PlanInputs {
                text_ids: &TEXT,
                instruct_ids: None,
                language_id: language,
                voice: VoiceRow::XVector,
                icl: icl.then_some(IclReference { ref_ids: &REF, frames: 25 }),
                non_streaming_mode: non_streaming,
            },
        )
        .unwrap()
    }

    fn row(text: TextPart, codec: CodecPart) -> PromptRow {
        PromptRow::new(text, codec)
    }

    /// Rows 0..9 of every English layout with an x-vector.
    fn english_prefix() -> Vec<PromptRow> {
        vec![
            row(T::Token(151644), C::None),
            row(T::Token(77091), C::None),
            row(T::Token(198), C::None),
            row(T::Pad, C::Token(2154)),
            row(T::Pad, C::Token(2156)),
            row(T::Pad, C::Token(ENGLISH)),
            row(T::Pad, C::Token(2157)),
            row(T::Pad, C::Speaker),
            row(T::Bos, C::Token(2148)),
        ]
    }

    #[test]
    fn icl_streaming_matches_the_worked_example_table() {
        let p = plan(Some(ENGLISH), true, false);
        assert_eq!(p.len(), 35);
        assert_eq!(p.trailing, vec![T::Pad]);
        assert_eq!(p.rows[..9], english_prefix()[..]);
        assert_eq!(p.rows[9], row(T::Token(32313), C::Token(2149)));
        let text_10_16 = [13, 21607, 13, 9707, 1879, 13].map(T::Token);
        for (i, t) in text_10_16.iter().enumerate() {
            assert_eq!(p.rows[10 + i], row(*t, C::RefFrame(i)), "pos {}", 10 + i);
        }
        assert_eq!(p.rows[16], row(T::Eos, C::RefFrame(6)));
        for pos in 17..35 {
            assert_eq!(p.rows[pos], row(T::Pad, C::RefFrame(pos - 10)), "pos {pos}");
        }
        assert!(p.needs_speaker_vector());
        assert_eq!(p.ref_frames(), 25);
    }

    #[test]
    fn icl_non_streaming_puts_text_then_codec() {
        let p = plan(Some(ENGLISH), true, true);
        assert_eq!(p.len(), 9 + 8 + 26);
        assert_eq!(p.trailing, vec![T::Pad]);
        assert_eq!(p.rows[..9], english_prefix()[..]);
        let text = [32313, 13, 21607, 13, 9707, 1879, 13].map(T::Token);
        for (i, t) in text.iter().enumerate() {
            assert_eq!(p.rows[9 + i], row(*t, C::Token(2148)));
        }
        assert_eq!(p.rows[16], row(T::Eos, C::Token(2148)));
        assert_eq!(p.rows[17], row(T::Pad, C::Token(2149)));
        for i in 0..25 {
            assert_eq!(p.rows[18 + i], row(T::Pad, C::RefFrame(i)));
        }
    }

    #[test]
    fn xvector_layouts_match_the_worked_example() {
        let p = plan(Some(ENGLISH), false, false);
        assert_eq!(p.len(), 10);
        assert_eq!(p.rows[..9], english_prefix()[..]);
        assert_eq!(p.rows[9], row(T::Token(9707), C::Token(2149)));
        assert_eq!(p.trailing, vec![T::Token(1879), T::Token(13), T::Eos]);

        let p = plan(Some(ENGLISH), false, true);
        assert_eq!(p.len(), 14);
        assert_eq!(
            p.rows[9..],
            [
                row(T::Token(9707), C::Token(2148)),
                row(T::Token(1879), C::Token(2148)),
                row(T::Token(13), C::Token(2148)),
                row(T::Eos, C::Token(2148)),
                row(T::Pad, C::Token(2149)),
            ]
        );
        assert_eq!(p.trailing, vec![T::Pad]);
    }

    #[test]
    fn auto_language_is_one_row_shorter_with_the_nothink_tags() {
        for (icl, ns, len) in [(true, false, 35), (true, true, 43), (false, false, 10), (false, true, 14)] {
            let p = plan(None, icl, ns);
            assert_eq!(p.len(), len - 1, "icl {icl} non-streaming {ns}");
            assert_eq!(
                p.rows[3..7],
                [
                    row(T::Pad, C::Token(2155)),
                    row(T::Pad, C::Token(2156)),
                    row(T::Pad, C::Token(2157)),
                    row(T::Pad, C::Speaker),
                ]
            );
            assert_eq!(p.rows[7], row(T::Bos, C::Token(2148)));
        }
    }

    #[test]
    fn text_longer_than_the_codec_column_spills_into_trailing_rows() {
        let p = build_plan(
            &IDS,
            &PlanInputs {
                text_ids: &TEXT,
                instruct_ids: None,
                language_id: Some(ENGLISH),
                voice: VoiceRow::XVector,
                icl: Some(IclReference { ref_ids: &REF, frames: 2 }),
                non_streaming_mode: false,
            },
        )
        .unwrap();
        // Codec column: bos + 2 frames = 3 rows; text column: 4 + 3 + eos = 8.
        assert_eq!(p.len(), 9 + 3);
        assert_eq!(
            p.rows[9..],
            [
                row(T::Token(32313), C::Token(2149)),
                row(T::Token(13), C::RefFrame(0)),
                row(T::Token(21607), C::RefFrame(1)),
            ]
        );
        assert_eq!(p.trailing, vec![T::Token(13), T::Token(9707), T::Token(1879), T::Token(13), T::Eos]);
    }

    #[test]
    fn the_voice_prefix_holds_every_row_before_the_target_text() {
        // Another text with a different first body token: the prefix must not see it.
        const OTHER: [u32; 10] = [151644, 77091, 198, 2000, 13, 151645, 198, 151644, 77091, 198];
        let build = |text: &[u32], language, frames: Option<usize>, non_streaming_mode| {
            build_plan(
                &IDS,
                &PlanInputs {
                    text_ids: text,
                    instruct_ids: None,
                    language_id: language,
                    voice: VoiceRow::XVector,
                    icl: frames.map(|frames| IclReference { ref_ids: &REF, frames }),
                    non_streaming_mode,
                },
            )
            .unwrap()
        };
        // (language, reference frames, non-streaming) → prefix rows: 9 control and role rows
        // (8 with "auto"), plus the 4 transcript rows for ICL; with 2 frames the streaming
        // codec column (bos + 2 frames) ends inside the transcript, and the last row of a
        // prompt is never in the prefix.
        let cases = [
            (Some(ENGLISH), Some(25), false, 13),
            (Some(ENGLISH), Some(25), true, 13),
            (None, Some(25), false, 12),
            (Some(ENGLISH), None, false, 9),
            (Some(ENGLISH), None, true, 9),
            (None, None, true, 8),
            (Some(ENGLISH), Some(2), false, 11),
            (Some(ENGLISH), Some(2), true, 13),
        ];
        for (language, frames, non_streaming, want) in cases {
            let a = build(&TEXT, language, frames, non_streaming);
            let b = build(&OTHER, language, frames, non_streaming);
            let case = format!("language {language:?}, frames {frames:?}, non-streaming {non_streaming}");
            assert_eq!(a.voice_prefix, want, "{case}");
            assert_eq!(b.voice_prefix, want, "{case}");
            assert!(a.voice_prefix < a.len(), "{case}");
            assert_eq!(a.rows[..want], b.rows[..want], "{case}");
        }

        // Built-in speakers, no speaker, and instruction rows in front (CustomVoice and
        // VoiceDesign): the instruction belongs to the prefix, the text never does.
        let instruct = [151644, 872, 198, 11622, 151645, 198];
        for voice in [VoiceRow::Speaker(3061), VoiceRow::None] {
            for instruct_ids in [None, Some(&instruct[..])] {
                for non_streaming_mode in [false, true] {
                    let build = |text: &[u32]| {
                        let inputs = PlanInputs {
                            text_ids: text,
                            instruct_ids,
                            language_id: Some(ENGLISH),
                            voice,
                            icl: None,
                            non_streaming_mode,
                        };
                        build_plan(&IDS, &inputs).unwrap()
                    };
                    let (a, b) = (build(&TEXT), build(&OTHER));
                    let controls = if voice == VoiceRow::None { 5 } else { 6 };
                    let want = instruct_ids.map_or(0, <[u32]>::len) + 3 + controls;
                    let case = format!("{voice:?}, instruction {}, non-streaming {non_streaming_mode}", instruct_ids.is_some());
                    assert_eq!((a.voice_prefix, b.voice_prefix), (want, want), "{case}");
                    assert_eq!(a.rows[..want], b.rows[..want], "{case}");
                    assert_ne!(a.rows[want..], b.rows[want..], "{case}: the text starts right after");
                }
            }
        }
    }

    #[test]
    fn speaker_token_and_instruction_rows() {
        let instruct = [151644, 872, 198, 11622, 151645, 198];
        let p = build_plan(
            &IDS,
            &PlanInputs {
                text_ids: &TEXT,
                instruct_ids: Some(&instruct),
                language_id: None,
                voice: VoiceRow::Speaker(3061),
                icl: None,
                non_streaming_mode: true,
            },
        )
        .unwrap();
        assert_eq!(p.len(), 6 + 3 + 5 + 5);
        for (i, &t) in instruct.iter().enumerate() {
            assert_eq!(p.rows[i], row(T::Token(t), C::None));
        }
        assert_eq!(p.rows[6 + 3 + 3], row(T::Pad, C::Token(3061)));
        assert_eq!(p.rows[6 + 3 + 4], row(T::Bos, C::Token(2148)));
        assert!(!p.needs_speaker_vector());
    }

    #[test]
    fn empty_text_streams_im_end_first_as_the_reference_slicing_does() {
        let empty = [151644, 77091, 198, 151645, 198, 151644, 77091, 198];
        let inputs = |non_streaming_mode| PlanInputs {
            text_ids: &empty,
            instruct_ids: None,
            language_id: Some(ENGLISH),
            voice: VoiceRow::None,
            icl: None,
            non_streaming_mode,
        };
        let p = build_plan(&IDS, &inputs(false)).unwrap();
        assert_eq!(p.len(), 3 + 5 + 1);
        assert_eq!(p.rows[8], row(T::Token(151645), C::Token(2149)));
        assert_eq!(p.trailing, vec![T::Eos]);
        let p = build_plan(&IDS, &inputs(true)).unwrap();
        assert_eq!(p.rows[8..], [row(T::Eos, C::Token(2148)), row(T::Pad, C::Token(2149))]);
    }

    #[test]
    fn malformed_ids_are_clean_errors() {
        let err = build_plan(
            &IDS,
            &PlanInputs {
                text_ids: &TEXT[..7],
                instruct_ids: None,
                language_id: None,
                voice: VoiceRow::None,
                icl: None,
                non_streaming_mode: false,
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidArgument);
        let err = build_plan(
            &IDS,
            &PlanInputs {
                text_ids: &TEXT,
                instruct_ids: None,
                language_id: None,
                voice: VoiceRow::XVector,
                icl: Some(IclReference { ref_ids: &REF, frames: 0 }),
                non_streaming_mode: false,
            },
        )
        .unwrap_err();
        assert!(err.message().contains("reference code frame"), "{err}");
    }
}
