//! `Voice`: who speaks. Immutable, cheap to clone, shareable across threads.
//!
//! Which voices a checkpoint accepts depends on its kind: Base checkpoints clone (a speaker
//! x-vector, optionally with reference codes and transcript for in-context cloning),
//! CustomVoice checkpoints have built-in speakers, VoiceDesign checkpoints take a
//! description in words.
//!
//! A cloned voice only makes sense to the model family that made it: the x-vector lives in
//! that talker's embedding space and the reference codes in that codec's code space. So a
//! voice made by a model ([`Model::clone_voice`](super::Model::clone_voice),
//! [`Model::voice_from_bytes`](super::Model::voice_from_bytes), ...) carries the model's
//! [`ModelFingerprint`], and using it with a model whose fingerprint differs is an
//! [`ErrorKind::VoiceMismatch`](crate::ErrorKind::VoiceMismatch).

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Checkpoint, ModelKind};

/// A voice for [`Model::generate`](super::Model::generate) and
/// [`Model::generate_codes`](super::Model::generate_codes).
#[derive(Debug, Clone, PartialEq)]
pub struct Voice {
    inner: Arc<VoiceInner>,
}

#[derive(Debug, PartialEq)]
struct VoiceInner {
    kind: VoiceKind,
    /// The model family that made this voice; `None` for voices built from parts without a
    /// model (then only the embedding width is checked when generating).
    origin: Option<ModelFingerprint>,
}

/// What a voice is made of.
#[derive(Debug, Clone, PartialEq)]
pub enum VoiceKind {
    /// Base models: the speaker encoder's x-vector (talker width), and for in-context
    /// cloning the reference audio's codes and transcript.
    Cloned { embedding: Vec<f32>, reference: Option<Reference> },
    /// CustomVoice models: a built-in speaker by name (case-insensitive).
    Speaker { name: String },
    /// VoiceDesign models: the voice described in words.
    Design { description: String },
}

/// In-context cloning material: reference codes `[frames, 16]` (row-major) and the exact
/// transcript of the reference audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub codes: Vec<u32>,
    pub text: String,
}

impl Reference {
    /// Number of reference frames.
    pub fn frames(&self, num_code_groups: usize) -> usize {
        self.codes.len() / num_code_groups.max(1)
    }
}

impl Voice {
    /// An x-vector-only clone from a stored speaker embedding. It carries no model
    /// fingerprint; prefer [`Model::voice_from_embedding`](super::Model::voice_from_embedding),
    /// which checks the width and records the model.
    pub fn from_embedding(embedding: Vec<f32>) -> Result<Voice> {
        check_embedding(&embedding)?;
        Ok(Voice::new(VoiceKind::Cloned { embedding, reference: None }, None))
    }

    /// An in-context clone: embedding plus reference codes (row-major `[frames, 16]`) and
    /// the transcript of the reference audio. Carries no model fingerprint.
    pub fn with_reference(embedding: Vec<f32>, codes: Vec<u32>, text: impl Into<String>) -> Result<Voice> {
        check_embedding(&embedding)?;
        let text = text.into();
        if text.trim().is_empty() {
            return Err(Error::invalid_argument("in-context cloning needs the reference transcript"));
        }
        if codes.is_empty() {
            return Err(Error::invalid_argument("in-context cloning needs reference codes (got none)"));
        }
        Ok(Voice::new(VoiceKind::Cloned { embedding, reference: Some(Reference { codes, text }) }, None))
    }

    /// A CustomVoice built-in speaker (checked against the model when generating).
    pub fn speaker(name: impl Into<String>) -> Voice {
        Voice::new(VoiceKind::Speaker { name: name.into() }, None)
    }

    /// A VoiceDesign voice described in words.
    pub fn design(description: impl Into<String>) -> Voice {
        Voice::new(VoiceKind::Design { description: description.into() }, None)
    }

    pub(crate) fn new(kind: VoiceKind, origin: Option<ModelFingerprint>) -> Voice {
        Voice { inner: Arc::new(VoiceInner { kind, origin }) }
    }

    /// The same voice, recorded as made by the model family `origin`.
    pub(crate) fn with_origin(self, origin: ModelFingerprint) -> Voice {
        let kind = Arc::try_unwrap(self.inner).map(|inner| inner.kind).unwrap_or_else(|shared| shared.kind.clone());
        Voice::new(kind, Some(origin))
    }

    pub fn kind(&self) -> &VoiceKind {
        &self.inner.kind
    }

    /// The model family that made this voice, if it was made by a model.
    pub fn origin(&self) -> Option<&ModelFingerprint> {
        self.inner.origin.as_ref()
    }

    /// The speaker x-vector of a cloned voice (`None` for built-in and designed voices).
    pub fn embedding(&self) -> Option<&[f32]> {
        match &self.inner.kind {
            VoiceKind::Cloned { embedding, .. } => Some(embedding),
            _ => None,
        }
    }

    /// The in-context material of an ICL clone (`None` for x-vector-only and other voices).
    pub fn reference(&self) -> Option<&Reference> {
        match &self.inner.kind {
            VoiceKind::Cloned { reference, .. } => reference.as_ref(),
            _ => None,
        }
    }
}

pub(crate) fn check_embedding(embedding: &[f32]) -> Result<()> {
    if embedding.is_empty() {
        return Err(Error::invalid_argument("speaker embedding is empty"));
    }
    if let Some(i) = embedding.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid_argument(format!("speaker embedding value {i} is not finite")));
    }
    Ok(())
}

/// Identifies a model *family* for voice compatibility: everything that decides what a
/// cloned voice's numbers mean, and nothing else.
///
/// Contents, as `key=value` pairs joined by `;` (this string is what voice files store):
///
/// | key | value | why |
/// |---|---|---|
/// | `fingerprint` | `1` | version of this layout |
/// | `kind` | `base`, `custom_voice`, `voice_design` | only Base models clone |
/// | `talker_hidden` | talker hidden size | the x-vector is a talker input row |
/// | `speaker_encoder` | mel bins, x-vector width, channels, kernels, dilations, attention, Res2Net scale, SE width, sample rate | the network that made the x-vector |
/// | `codec` | codebooks per frame, codebook size, input / output rates, samples per frame | the code space of ICL reference codes |
///
/// Weights are deliberately not hashed: two checkpoints of one family (say, a fine-tune
/// that keeps the speaker encoder and codec) accept each other's voices. Checkpoint size
/// (0.6B / 1.7B) enters through the talker and x-vector widths.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelFingerprint(String);

/// Version of the fingerprint layout above.
const FINGERPRINT_VERSION: u32 = 1;

impl ModelFingerprint {
    /// The fingerprint of an opened checkpoint.
    pub fn of(checkpoint: &Checkpoint) -> ModelFingerprint {
        let cfg = &checkpoint.config;
        let spk = &cfg.speaker_encoder_config;
        let codec = &checkpoint.speech_config;
        let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        let kind = match cfg.kind() {
            ModelKind::Base => "base",
            ModelKind::CustomVoice => "custom_voice",
            ModelKind::VoiceDesign => "voice_design",
        };
        ModelFingerprint(format!(
            "fingerprint={FINGERPRINT_VERSION};kind={kind};talker_hidden={};\
             speaker_encoder=mel{}/dim{}/ch{}/k{}/d{}/att{}/res2net{}/se{}/sr{};\
             codec=q{}/cb{}/in{}/out{}/hop{}",
            cfg.talker_config.hidden_size,
            spk.mel_dim,
            spk.enc_dim,
            list(&spk.enc_channels),
            list(&spk.enc_kernel_sizes),
            list(&spk.enc_dilations),
            spk.enc_attention_channels,
            spk.enc_res2net_scale,
            spk.enc_se_channels,
            spk.sample_rate,
            cfg.talker_config.num_code_groups,
            codec.decoder_config.codebook_size,
            codec.input_sample_rate,
            codec.output_sample_rate,
            codec.encode_downsample_rate,
        ))
    }

    /// A fingerprint read back from storage (checked for the `key=value;...` shape only).
    pub(crate) fn parse(text: &str) -> Result<ModelFingerprint> {
        let well_formed = !text.is_empty()
            && text.split(';').all(|pair| pair.split_once('=').is_some_and(|(k, v)| !k.is_empty() && !v.is_empty()));
        if !well_formed {
            return Err(Error::new(ErrorKind::BadVoice, format!("model fingerprint \"{text}\" is malformed")));
        }
        Ok(ModelFingerprint(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `VoiceMismatch` error for a voice made by `self` used with a model of `model`,
    /// naming the parts that differ.
    pub(crate) fn mismatch(&self, model: &ModelFingerprint) -> Error {
        let pairs = |s: &str| -> Vec<(String, String)> {
            s.split(';').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
        };
        let (ours, theirs) = (pairs(&self.0), pairs(&model.0));
        let mut diffs = Vec::new();
        for (k, v) in &ours {
            match theirs.iter().find(|(k2, _)| k2 == k) {
                Some((_, v2)) if v2 == v => {}
                Some((_, v2)) => diffs.push(format!("{k}: voice {v}, model {v2}")),
                None => diffs.push(format!("{k}: voice {v}, model has none")),
            }
        }
        for (k, v) in &theirs {
            if !ours.iter().any(|(k2, _)| k2 == k) {
                diffs.push(format!("{k}: voice has none, model {v}"));
            }
        }
        Error::new(
            ErrorKind::VoiceMismatch,
            format!("the voice was made by a different model family ({})", diffs.join("; ")),
        )
    }

    /// Ok when a voice made by `self` can be used with a model of `model`.
    pub(crate) fn check_compatible(&self, model: &ModelFingerprint) -> Result<()> {
        if self == model { Ok(()) } else { Err(self.mismatch(model)) }
    }
}

impl fmt::Display for ModelFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
