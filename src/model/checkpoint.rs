//! A checkpoint directory, opened and validated: configs parsed, both weight files mapped,
//! and every tensor the configuration implies found with the right shape.
//!
//! Released layout (text tokenizer files are read by `text::TextTokenizer`):
//!
//! ```text
//! config.json  generation_config.json  model.safetensors
//! speech_tokenizer/config.json  speech_tokenizer/model.safetensors
//! ```
//!
//! All paths stay `Path`/`OsStr`, so directories whose names are not UTF-8 load normally.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::config::{GenerationConfig, ModelConfig, SpeechTokenizerConfig};
use super::manifest::{TensorSpec, main_model_tensors, speech_tokenizer_tensors};
use super::weights::SafeTensorsFile;
use crate::error::{Error, ErrorKind, Result};

/// How many missing or mis-shaped tensors one error lists before summarising the rest.
const MAX_REPORTED: usize = 5;

/// A validated checkpoint. Immutable; the weights stay memory-mapped.
#[derive(Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub generation: GenerationConfig,
    pub speech_config: SpeechTokenizerConfig,
    pub weights: SafeTensorsFile,
    pub speech_weights: SafeTensorsFile,
}

impl Checkpoint {
    /// Opens `dir`: parses and validates the three configs, maps both safetensors files and
    /// checks every expected tensor's presence and shape (dtypes are BF16, F16 or F32: the
    /// weight-file reader rejects anything else). Cheap configuration errors are reported
    /// before any weight file is touched; tensors the configuration does not use are logged
    /// and ignored.
    pub fn open(dir: &Path) -> Result<Self> {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("model directory {} is not a directory", dir.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(ErrorKind::NotFound, format!("model directory {} not found", dir.display())));
            }
            Err(e) => return Err(Error::from_io(&e, dir)),
        }

        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let generation_path = dir.join("generation_config.json");
        // The reference wrapper treats this file as optional and falls back to hard defaults.
        let generation = if generation_path.exists() {
            GenerationConfig::from_file(&generation_path)?
        } else {
            log::warn!("{} not found; using default sampling parameters", generation_path.display());
            GenerationConfig::default()
        };
        let speech_dir = dir.join("speech_tokenizer");
        let speech_config_path = speech_dir.join("config.json");
        let speech_config = SpeechTokenizerConfig::from_file(&speech_config_path)?;
        check_compatible(&config, &speech_config, &dir.join("config.json"), &speech_config_path)?;

        let weights = SafeTensorsFile::open(&dir.join("model.safetensors"))?;
        check_tensors(&weights, &main_model_tensors(&config))?;
        let speech_weights = SafeTensorsFile::open(&speech_dir.join("model.safetensors"))?;
        check_tensors(&speech_weights, &speech_tokenizer_tensors(&speech_config))?;

        Ok(Checkpoint { dir: dir.to_path_buf(), config, generation, speech_config, weights, speech_weights })
    }
}

/// The talker's codebooks are the codec's codebooks: counts and sizes must agree.
fn check_compatible(
    model: &ModelConfig,
    speech: &SpeechTokenizerConfig,
    model_path: &Path,
    speech_path: &Path,
) -> Result<()> {
    let talker = &model.talker_config;
    let predictor = &talker.code_predictor_config;
    let decoder = &speech.decoder_config;
    let mismatch = |what: String| {
        Err(Error::bad_config(format!("{} and {} disagree: {what}", model_path.display(), speech_path.display())))
    };
    if talker.num_code_groups != decoder.num_quantizers {
        return mismatch(format!(
            "talker_config.num_code_groups is {}, decoder_config.num_quantizers is {}",
            talker.num_code_groups, decoder.num_quantizers
        ));
    }
    if predictor.vocab_size != decoder.codebook_size {
        return mismatch(format!(
            "talker_config.code_predictor_config.vocab_size is {}, decoder_config.codebook_size is {}",
            predictor.vocab_size, decoder.codebook_size
        ));
    }
    Ok(())
}

/// Every expected tensor present with its shape; extras are logged, not fatal.
fn check_tensors(file: &SafeTensorsFile, expected: &[TensorSpec]) -> Result<()> {
    let mut problems = Vec::new();
    let mut first_kind = None;
    for spec in expected {
        let problem = match file.get(&spec.name) {
            Err(_) => Some((
                ErrorKind::MissingTensor,
                format!("`{}` is missing (expected shape {:?})", spec.name, spec.shape),
            )),
            Ok(view) if view.shape != spec.shape.as_slice() => Some((
                ErrorKind::ShapeMismatch,
                format!("`{}` has shape {:?}, expected {:?}", spec.name, view.shape, spec.shape),
            )),
            Ok(_) => None,
        };
        if let Some((kind, text)) = problem {
            first_kind.get_or_insert(kind);
            problems.push(text);
        }
    }
    if let Some(kind) = first_kind {
        let shown = problems.iter().take(MAX_REPORTED).cloned().collect::<Vec<_>>().join("; ");
        let more = problems.len().saturating_sub(MAX_REPORTED);
        let tail = if more > 0 { format!("; and {more} more") } else { String::new() };
        let what = if problems.len() == 1 { "tensor problem" } else { "tensor problems" };
        return Err(Error::new(
            kind,
            format!("{}: {} {what} for this configuration: {shown}{tail}", file.path().display(), problems.len()),
        ));
    }

    let known: HashSet<&str> = expected.iter().map(|s| s.name.as_str()).collect();
    let extra: Vec<&str> = file.names().filter(|n| !known.contains(n)).collect();
    if !extra.is_empty() {
        let sample = extra.iter().take(MAX_REPORTED).copied().collect::<Vec<_>>().join(", ");
        log::warn!(
            "{}: {} tensors not used by this configuration are ignored (e.g. {sample})",
            file.path().display(),
            extra.len()
        );
    }
    Ok(())
}
