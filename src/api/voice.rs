//! `Voice`: who speaks. Immutable, cheap to clone, shareable across threads.
//!
//! Which voices a checkpoint accepts depends on its kind: Base checkpoints clone (a speaker
//! x-vector, optionally with reference codes and transcript for in-context cloning),
//! CustomVoice checkpoints have built-in speakers, VoiceDesign checkpoints take a
//! description in words.

use std::sync::Arc;

use crate::error::{Error, Result};

/// A voice for [`Model::generate_codes`](super::Model::generate_codes).
#[derive(Debug, Clone, PartialEq)]
pub struct Voice {
    inner: Arc<VoiceKind>,
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
    /// An x-vector-only clone from a stored speaker embedding.
    pub fn from_embedding(embedding: Vec<f32>) -> Result<Voice> {
        check_embedding(&embedding)?;
        Ok(Voice { inner: Arc::new(VoiceKind::Cloned { embedding, reference: None }) })
    }

    /// An in-context clone: embedding plus reference codes (row-major `[frames, 16]`) and
    /// the transcript of the reference audio.
    pub fn with_reference(embedding: Vec<f32>, codes: Vec<u32>, text: impl Into<String>) -> Result<Voice> {
        check_embedding(&embedding)?;
        let text = text.into();
        if text.trim().is_empty() {
            return Err(Error::invalid_argument("in-context cloning needs the reference transcript"));
        }
        if codes.is_empty() {
            return Err(Error::invalid_argument("in-context cloning needs reference codes (got none)"));
        }
        Ok(Voice { inner: Arc::new(VoiceKind::Cloned { embedding, reference: Some(Reference { codes, text }) }) })
    }

    /// A CustomVoice built-in speaker (checked against the model when generating).
    pub fn speaker(name: impl Into<String>) -> Voice {
        Voice { inner: Arc::new(VoiceKind::Speaker { name: name.into() }) }
    }

    /// A VoiceDesign voice described in words.
    pub fn design(description: impl Into<String>) -> Voice {
        Voice { inner: Arc::new(VoiceKind::Design { description: description.into() }) }
    }

    pub fn kind(&self) -> &VoiceKind {
        &self.inner
    }
}

fn check_embedding(embedding: &[f32]) -> Result<()> {
    if embedding.is_empty() {
        return Err(Error::invalid_argument("speaker embedding is empty"));
    }
    if let Some(i) = embedding.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid_argument(format!("speaker embedding value {i} is not finite")));
    }
    Ok(())
}
