//! Voices made with a model: cloning a reference recording (Base checkpoints), rebuilding a
//! clone from a stored x-vector, and naming a built-in speaker (CustomVoice).
//!
//! As `Qwen3TTSModel.create_voice_clone_prompt`: the 24 kHz mono signal goes (1) through
//! the speaker encoder's log-mel front end and the speaker encoder → the x-vector, and, when
//! the transcript is given (in-context cloning), (2) through the codec encoder → the
//! reference codes. Decoding, downmixing, resampling and the input checks are
//! [`ReferenceAudio`]'s job.

use std::path::Path;

use super::clone_networks::CloningNetworks;
use super::model::Model;
use super::voice::{Voice, check_embedding};
use crate::audio::{ReferenceAudio, ReferenceLimits};
use crate::error::{Error, ErrorKind, Result};
use crate::model::ModelKind;

impl Model {
    /// Clones the voice of `audio`. With `ref_text` (the exact transcript of the recording)
    /// the voice is an in-context clone: x-vector plus the recording's codec codes and its
    /// text, which the official implementation rates best. Without it, x-vector only.
    ///
    /// The voice records this model's [`fingerprint`](Self::fingerprint); it works with any
    /// model of the same family.
    ///
    /// Errors: `Unsupported` on CustomVoice / VoiceDesign checkpoints (no speaker encoder);
    /// `InvalidArgument` for an empty `ref_text` (pass `None` for x-vector-only cloning).
    pub fn clone_voice(&self, audio: &ReferenceAudio, ref_text: Option<&str>) -> Result<Voice> {
        let nets = self.cloning_networks()?;
        let ref_text = check_ref_text(ref_text)?;
        let samples = audio.samples();

        // 1. x-vector: log-mel (24 kHz, 128 bins) → speaker encoder.
        let embedding = nets.xvector.embed(samples).map_err(|e| e.context("voice cloning"))?;
        check_embedding(&embedding)?;

        // 2. ICL: the recording's codes (`ceil(N / 1920)` frames).
        let voice = match ref_text {
            Some(text) => {
                let codes = nets.codec_encoder.encode(samples).map_err(|e| e.context("voice cloning"))?;
                Voice::with_reference(embedding, codes, text)?
            }
            None => Voice::from_embedding(embedding)?,
        };
        Ok(voice.with_origin(self.fingerprint().clone()))
    }

    /// [`clone_voice`](Self::clone_voice) from an audio file (WAV, FLAC, Ogg Vorbis or MP3;
    /// 1 kHz to 768 kHz, up to 64 channels), with the default [`ReferenceLimits`].
    pub fn clone_voice_from_file(&self, path: impl AsRef<Path>, ref_text: Option<&str>) -> Result<Voice> {
        // Refuse before reading a file this model could not use anyway.
        self.cloning_networks()?;
        check_ref_text(ref_text)?;
        let audio = ReferenceAudio::from_file(path.as_ref(), &ReferenceLimits::default())?;
        self.clone_voice(&audio, ref_text)
    }

    /// [`clone_voice`](Self::clone_voice) from caller PCM: `samples` holds interleaved frames
    /// of `channels` f32 values in [-1, 1] at `sample_rate` Hz (mixed to mono by averaging,
    /// resampled to 24 kHz), with the default [`ReferenceLimits`].
    pub fn clone_voice_from_pcm(
        &self,
        samples: &[f32],
        channels: usize,
        sample_rate: u32,
        ref_text: Option<&str>,
    ) -> Result<Voice> {
        self.cloning_networks()?;
        check_ref_text(ref_text)?;
        let audio = ReferenceAudio::from_pcm(samples, channels, sample_rate, &ReferenceLimits::default())?;
        self.clone_voice(&audio, ref_text)
    }

    /// Checks that this model clones voices and that a speaker embedding of `len` values fits
    /// its talker width, before any value is read (the C API calls it on the caller's `dim`).
    ///
    /// Errors: `Unsupported` on non-Base checkpoints; `VoiceMismatch` when `len` is not the
    /// talker's hidden size.
    pub(crate) fn check_embedding_len(&self, len: usize) -> Result<()> {
        self.cloning_networks()?;
        let width = self.checkpoint().config.talker_config.hidden_size;
        if len != width {
            return Err(Error::new(
                ErrorKind::VoiceMismatch,
                format!("speaker embedding has {len} values; this model needs {width}"),
            ));
        }
        Ok(())
    }

    /// An x-vector-only voice from a stored speaker embedding (e.g. one read back with
    /// [`Voice::embedding`]), checked against this model and tagged with its fingerprint.
    ///
    /// Errors: `Unsupported` on non-Base checkpoints; `VoiceMismatch` when the width is not
    /// the talker's hidden size; `InvalidArgument` for an empty or non-finite embedding.
    pub fn voice_from_embedding(&self, embedding: Vec<f32>) -> Result<Voice> {
        self.cloning_networks()?;
        check_embedding(&embedding)?;
        self.check_embedding_len(embedding.len())?;
        Ok(Voice::from_embedding(embedding)?.with_origin(self.fingerprint().clone()))
    }

    /// A built-in speaker of a CustomVoice checkpoint, by name (case-insensitive), checked
    /// against the model's list now rather than at generation time.
    ///
    /// Errors: `Unsupported` on other checkpoints; `InvalidArgument` for an unknown name
    /// (the message lists the known ones).
    pub fn voice_from_speaker(&self, name: &str) -> Result<Voice> {
        let info = self.info();
        if info.kind != ModelKind::CustomVoice {
            return Err(Error::unsupported(format!(
                "built-in speakers need a CustomVoice checkpoint; this is a {:?} {} model",
                info.kind, info.size_label
            )));
        }
        if !info.speakers.contains(&name.to_lowercase()) {
            return Err(Error::invalid_argument(format!(
                "unknown speaker {}; this model has: {}",
                crate::error::quoted(name),
                info.speakers.join(", ")
            )));
        }
        Ok(Voice::speaker(name))
    }

    /// The cloning networks, or the `Unsupported` error of a checkpoint without them.
    fn cloning_networks(&self) -> Result<&CloningNetworks> {
        self.networks().cloning.as_ref().ok_or_else(|| {
            let info = self.info();
            Error::unsupported(format!(
                "voice cloning needs a Base checkpoint; this is a {:?} {} model (no speaker encoder){}",
                info.kind,
                info.size_label,
                if info.speakers.is_empty() {
                    String::new()
                } else {
                    "; use a built-in speaker (Voice::speaker)".into()
                }
            ))
        })
    }
}

/// `None` stays x-vector-only; an empty transcript is a mistake, not a request for that.
fn check_ref_text(ref_text: Option<&str>) -> Result<Option<&str>> {
    match ref_text {
        Some(text) if text.trim().is_empty() => Err(Error::invalid_argument(
            "ref_text is empty: pass the transcript of the reference audio, or none for x-vector-only cloning",
        )),
        other => Ok(other),
    }
}
