//! Saved voices: [`Voice::to_bytes`] / [`Voice::save`] and [`Model::voice_from_bytes`] /
//! [`Model::load_voice`].
//!
//! # Format (version 1)
//!
//! A safetensors file (readable by any safetensors tool), with string metadata:
//!
//! | key | value |
//! |---|---|
//! | `format` | `qwentts-voice` (the magic) |
//! | `format_version` | `1` |
//! | `voice_kind` | `xvector`, `icl`, `speaker` or `design` |
//! | `model_fingerprint` | the [`ModelFingerprint`] of the model that made the voice (absent for voices built without a model) |
//! | `ref_text` | ICL only: the transcript of the reference audio |
//! | `speaker` / `description` | built-in speaker name / voice description |
//! | `writer` | `qwentts-turbo <version>` (informative) |
//! | `checksum` | `fnv1a64:<16 hex digits>` over everything else (below) |
//!
//! and tensors: `embedding` F32 `[width]` (x-vector and ICL), `ref_codes` I32
//! `[frames · codebooks]` (ICL; flat, row-major `[frames, 16]` for the released models, so the
//! file does not depend on the codebook count, which the fingerprint records).
//!
//! The checksum is FNV-1a 64 over, in order: each metadata key except `checksum` and its
//! value (sorted by key, each followed by a 0 byte), then each tensor (sorted by name): name,
//! 0, dtype name, 0, shape as little-endian u64s, data. It catches bit rot and edits that
//! keep the container valid; it is not a signature.
//!
//! Reading checks, in order, and each failure is its own message: container structure
//! (truncated, trailing bytes, corrupt header) and magic → `BadVoice`; version newer than
//! this library → `Unsupported`; checksum, fields and tensors → `BadVoice`; the fingerprint
//! and widths against the model → `VoiceMismatch`.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::model::Model;
use super::voice::{ModelFingerprint, Reference, Voice, VoiceKind, check_embedding};
use crate::audio::MAX_REFERENCE_SECONDS;
use crate::error::{Error, ErrorKind, Result};
use crate::model::ModelKind;

/// The magic in `format`.
pub const VOICE_FORMAT: &str = "qwentts-voice";
/// The format version written (and the newest read).
pub const VOICE_FORMAT_VERSION: u32 = 1;
/// Largest voice accepted: a 30 s ICL reference of a 1.7B model is ~35 KB, so anything near
/// this is not a voice.
pub const MAX_VOICE_BYTES: usize = 16 << 20;

const EMBEDDING: &str = "embedding";
const REF_CODES: &str = "ref_codes";
const CHECKSUM: &str = "checksum";

fn bad(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadVoice, message)
}

impl Voice {
    /// The voice as a self-contained byte string (see the module docs for the format).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut meta: BTreeMap<String, String> = BTreeMap::new();
        meta.insert("format".into(), VOICE_FORMAT.into());
        meta.insert("format_version".into(), VOICE_FORMAT_VERSION.to_string());
        meta.insert("writer".into(), concat!("qwentts-turbo ", env!("CARGO_PKG_VERSION")).into());
        if let Some(origin) = self.origin() {
            meta.insert("model_fingerprint".into(), origin.as_str().into());
        }
        // Tensors as (name, dtype, shape, little-endian bytes).
        let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let kind = match self.kind() {
            VoiceKind::Cloned { embedding, reference } => {
                let bytes = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
                tensors.push((EMBEDDING, Dtype::F32, vec![embedding.len()], bytes));
                match reference {
                    Some(r) => {
                        let mut bytes = Vec::with_capacity(4 * r.codes.len());
                        for &c in &r.codes {
                            let c = i32::try_from(c)
                                .map_err(|_| Error::invalid_argument(format!("reference code {c} exceeds i32")))?;
                            bytes.extend_from_slice(&c.to_le_bytes());
                        }
                        tensors.push((REF_CODES, Dtype::I32, vec![r.codes.len()], bytes));
                        meta.insert("ref_text".into(), r.text.clone());
                        "icl"
                    }
                    None => "xvector",
                }
            }
            VoiceKind::Speaker { name } => {
                meta.insert("speaker".into(), name.clone());
                "speaker"
            }
            VoiceKind::Design { description } => {
                meta.insert("description".into(), description.clone());
                "design"
            }
        };
        meta.insert("voice_kind".into(), kind.into());
        let sum = checksum(&meta, tensors.iter().map(|(n, d, s, b)| (*n, *d, s.as_slice(), b.as_slice())));
        meta.insert(CHECKSUM.into(), sum);

        Ok(write_safetensors(&meta, &tensors))
    }

    /// Writes [`to_bytes`](Self::to_bytes) to `path` (conventionally `*.qtvoice` or
    /// `*.safetensors`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes)
            .map_err(|e| Error::new(ErrorKind::Io, format!("voice file {} cannot be written: {e}", path.display())))
    }
}

impl Model {
    /// Reads a voice saved by [`Voice::to_bytes`] and checks that this model can use it.
    ///
    /// Errors: `BadVoice` (not a voice, truncated, corrupt), `Unsupported` (a newer format
    /// version), `VoiceMismatch` (made by another model family, or a built-in speaker /
    /// designed voice for a model of another kind).
    pub fn voice_from_bytes(&self, bytes: &[u8]) -> Result<Voice> {
        let voice = parse_voice(bytes)?;
        self.check_voice(&voice)?;
        Ok(voice)
    }

    /// [`voice_from_bytes`](Self::voice_from_bytes) of a file; errors name the path.
    pub fn load_voice(&self, path: impl AsRef<Path>) -> Result<Voice> {
        let path = path.as_ref();
        let bytes = crate::files::read_bounded(path, MAX_VOICE_BYTES as u64, |size| {
            bad(format!("voice file {}: {size} bytes is too large to be a voice (at most {MAX_VOICE_BYTES})", path.display()))
        })?;
        self.voice_from_bytes(&bytes).map_err(|e| e.context(format!("voice file {}", path.display())))
    }

    /// Most reference frames a voice may carry: what the longest accepted reference
    /// ([`MAX_REFERENCE_SECONDS`]) encodes to, plus one for the encoder's rounding. The
    /// reference codes enter every prompt, so this bounds the prefill's work and memory.
    pub fn max_reference_frames(&self) -> usize {
        (MAX_REFERENCE_SECONDS * f64::from(self.checkpoint().speech_config.frame_rate())).ceil() as usize + 1
    }

    /// In-context reference codes this model can use: whole frames, at most
    /// [`max_reference_frames`](Self::max_reference_frames), every code inside the codebook.
    pub(crate) fn check_reference_codes(&self, codes: &[u32]) -> Result<()> {
        let talker = &self.checkpoint().config.talker_config;
        let groups = talker.num_code_groups;
        let mismatch = |m: String| Error::new(ErrorKind::VoiceMismatch, m);
        if codes.len() % groups != 0 {
            return Err(mismatch(format!("{} reference codes are not whole {groups}-code frames", codes.len())));
        }
        let (frames, max) = (codes.len() / groups, self.max_reference_frames());
        if frames > max {
            return Err(Error::invalid_argument(format!(
                "{frames} reference frames ({:.1} s) exceed the {max} frames of a {MAX_REFERENCE_SECONDS} s reference",
                frames as f64 / f64::from(self.checkpoint().speech_config.frame_rate())
            )));
        }
        let codebook = talker.code_predictor_config.vocab_size;
        if let Some((i, &c)) = codes.iter().enumerate().find(|(_, c)| **c as usize >= codebook) {
            return Err(mismatch(format!(
                "reference code {c} (frame {}, codebook {}) is outside the codebook's {codebook} codes",
                i / groups,
                i % groups
            )));
        }
        Ok(())
    }

    /// Whether this model can speak with `voice` (fingerprint, kind and widths).
    fn check_voice(&self, voice: &Voice) -> Result<()> {
        if let Some(origin) = voice.origin() {
            origin.check_compatible(self.fingerprint())?;
        }
        let kind = self.checkpoint().config.kind();
        let mismatch = |what: &str, needs: &str| {
            Error::new(ErrorKind::VoiceMismatch, format!("{what} needs a {needs} model; this is a {kind:?} model"))
        };
        match voice.kind() {
            VoiceKind::Cloned { embedding, .. } => {
                if kind != ModelKind::Base {
                    return Err(mismatch("a cloned voice", "Base"));
                }
                let width = self.checkpoint().config.talker_config.hidden_size;
                if embedding.len() != width {
                    return Err(Error::new(
                        ErrorKind::VoiceMismatch,
                        format!(
                            "the voice's speaker embedding has {} values; this model needs {width}",
                            embedding.len()
                        ),
                    ));
                }
                if let Some(r) = voice.reference() {
                    self.check_reference_codes(&r.codes).map_err(|e| e.context("the voice"))?;
                }
            }
            VoiceKind::Speaker { .. } if kind != ModelKind::CustomVoice => {
                return Err(mismatch("a built-in speaker", "CustomVoice"));
            }
            VoiceKind::Design { .. } if kind != ModelKind::VoiceDesign => {
                return Err(mismatch("a designed voice", "VoiceDesign"));
            }
            VoiceKind::Speaker { name } => {
                let speakers = self.checkpoint().config.speakers();
                if !speakers.contains(&name.to_lowercase()) {
                    return Err(Error::new(
                        ErrorKind::VoiceMismatch,
                        format!("built-in speaker \"{name}\" is not one of this model's: {}", speakers.join(", ")),
                    ));
                }
            }
            VoiceKind::Design { .. } => {}
        }
        Ok(())
    }
}

/// Bytes → voice, checking everything that does not need a model.
fn parse_voice(bytes: &[u8]) -> Result<Voice> {
    // 1. Container: clear words for the common breakages before safetensors' own checks.
    if bytes.len() > MAX_VOICE_BYTES {
        return Err(bad(format!("{} bytes is too large to be a voice (at most {MAX_VOICE_BYTES})", bytes.len())));
    }
    if bytes.len() < 8 {
        return Err(bad(format!(
            "truncated: {} bytes, not even the 8-byte header length of a voice file",
            bytes.len()
        )));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let available = bytes.len() as u64 - 8;
    if header_len > MAX_VOICE_BYTES as u64 {
        return Err(bad(format!("not a voice file: header length {header_len} is implausible")));
    }
    if header_len > available {
        return Err(bad(format!("truncated: the header needs {header_len} bytes, only {available} follow")));
    }
    let header = &bytes[8..8 + header_len as usize];
    let header: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| bad(format!("corrupt: the header is not valid JSON ({e}); not a voice file or damaged")))?;
    let data_needed = data_section_len(&header)?;
    let data_have = available - header_len;
    if data_have < data_needed {
        return Err(bad(format!(
            "truncated: the tensors need {data_needed} bytes of data, only {data_have} are present"
        )));
    }
    if data_have > data_needed {
        return Err(bad(format!("corrupt: {} unexpected bytes after the tensor data", data_have - data_needed)));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("corrupt: {e}")))?;
    let (_, container) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("corrupt: {e}")))?;
    let meta: BTreeMap<String, String> = container.metadata().clone().unwrap_or_default().into_iter().collect();

    // 2. Magic and version.
    if meta.get("format").map(String::as_str) != Some(VOICE_FORMAT) {
        return Err(bad(format!("not a qwentts voice: no \"format\": \"{VOICE_FORMAT}\" in the metadata")));
    }
    let version = meta.get("format_version").ok_or_else(|| bad("format_version is missing"))?;
    let version: u32 = version.parse().map_err(|_| bad(format!("format_version \"{version}\" is not a number")))?;
    if version > VOICE_FORMAT_VERSION {
        return Err(Error::unsupported(format!(
            "voice format version {version} is newer than this library reads ({VOICE_FORMAT_VERSION}); update qwentts"
        )));
    }
    if version == 0 {
        return Err(bad("format_version 0 does not exist"));
    }

    // 3. Checksum over metadata and tensors.
    let mut names: Vec<&str> = st.names().into_iter().collect();
    names.sort_unstable();
    let views: Vec<(&str, TensorView<'_>)> =
        names.iter().map(|&n| (n, st.tensor(n).expect("listed by names()"))).collect();
    let stored = meta.get(CHECKSUM).ok_or_else(|| bad("checksum is missing"))?;
    let computed = checksum(&meta, views.iter().map(|(n, v)| (*n, v.dtype(), v.shape(), v.data())));
    // Fuzzing builds (`--cfg fuzzing`, as cargo-fuzz sets; fuzz/README.md) accept any checksum
    // so that mutated voices reach the field checks below; no other build does.
    if *stored != computed && !cfg!(fuzzing) {
        return Err(bad(format!("corrupt: checksum mismatch (stored {stored}, computed {computed})")));
    }

    // 4. Fields by kind.
    let origin = meta.get("model_fingerprint").map(|f| ModelFingerprint::parse(f)).transpose()?;
    let field = |key: &str| meta.get(key).cloned().ok_or_else(|| bad(format!("\"{key}\" is missing")));
    let tensor = |name: &str, dtype: Dtype| -> Result<&[u8]> {
        let view = views
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
        if view.dtype() != dtype || view.shape().len() != 1 {
            return Err(bad(format!("tensor {name} is {:?} {:?}; expected 1-D {dtype:?}", view.dtype(), view.shape())));
        }
        Ok(view.data())
    };
    let kind_name = field("voice_kind")?;
    let expected_tensors: &[&str] = match kind_name.as_str() {
        "xvector" => &[EMBEDDING],
        "icl" => &[EMBEDDING, REF_CODES],
        "speaker" | "design" => &[],
        other => return Err(bad(format!("unknown voice_kind \"{other}\""))),
    };
    if let Some(extra) = names.iter().find(|n| !expected_tensors.contains(n)) {
        return Err(bad(format!("unexpected tensor {extra} in a {kind_name} voice")));
    }
    let kind = match kind_name.as_str() {
        "xvector" | "icl" => {
            let embedding: Vec<f32> = tensor(EMBEDDING, Dtype::F32)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
                .collect();
            check_embedding(&embedding).map_err(|e| bad(e.message().to_owned()))?;
            let reference = if kind_name == "icl" {
                let codes = tensor(REF_CODES, Dtype::I32)?
                    .chunks_exact(4)
                    .map(|b| {
                        let c = i32::from_le_bytes(b.try_into().expect("4"));
                        u32::try_from(c).map_err(|_| bad(format!("reference code {c} is negative")))
                    })
                    .collect::<Result<Vec<u32>>>()?;
                let text = field("ref_text")?;
                if codes.is_empty() || text.trim().is_empty() {
                    return Err(bad("an ICL voice needs reference codes and a transcript"));
                }
                Some(Reference { codes, text })
            } else {
                None
            };
            VoiceKind::Cloned { embedding, reference }
        }
        "speaker" => VoiceKind::Speaker { name: field("speaker")? },
        _ => VoiceKind::Design { description: field("description")? },
    };
    Ok(Voice::new(kind, origin))
}

/// A safetensors container written directly rather than with `safetensors::serialize`,
/// whose metadata passes through a `HashMap` and so comes out in a different order on every
/// run: a voice must serialize to the same bytes every time (the C API's two-call
/// `qt_voice_serialize` and content-addressed caches rely on it). Layout: u64 LE header
/// length, the JSON header (keys in a fixed order, padded with spaces to a multiple of 8
/// bytes as safetensors does), then the tensors' data back to back in the given order.
fn write_safetensors(meta: &BTreeMap<String, String>, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(meta).expect("strings serialize"));
    let mut offset = 0usize;
    for (name, dtype, shape, data) in tensors {
        header.insert(
            (*name).to_owned(),
            serde_json::json!({ "dtype": dtype_name(*dtype), "shape": shape, "data_offsets": [offset, offset + data.len()] }),
        );
        offset += data.len();
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header)).expect("JSON values serialize");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    out
}

/// Bytes of tensor data the header describes: the largest `data_offsets` end. (safetensors
/// requires the data section to be exactly this long.)
fn data_section_len(header: &serde_json::Value) -> Result<u64> {
    let entries = header.as_object().ok_or_else(|| bad("corrupt: the header is not a JSON object"))?;
    let mut end = 0u64;
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let offsets = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .and_then(|o| o[1].as_u64())
            .ok_or_else(|| bad(format!("corrupt: tensor {name} has no valid data_offsets")))?;
        end = end.max(offsets);
    }
    Ok(end)
}

/// `fnv1a64:<hex>` of the metadata (except the checksum) and the tensors, in a canonical order.
fn checksum<'a>(
    meta: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>,
) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    };
    for (k, v) in meta.iter().filter(|(k, _)| k.as_str() != CHECKSUM) {
        eat(k.as_bytes());
        eat(&[0]);
        eat(v.as_bytes());
        eat(&[0]);
    }
    let mut tensors: Vec<_> = tensors.collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, dtype, shape, data) in tensors {
        eat(name.as_bytes());
        eat(&[0]);
        eat(dtype_name(dtype).as_bytes());
        eat(&[0]);
        for &d in shape {
            eat(&(d as u64).to_le_bytes());
        }
        eat(data);
    }
    format!("fnv1a64:{h:016x}")
}

/// The safetensors spelling of the dtypes a voice uses, fixed here so the checksum does not
/// depend on how a safetensors release prints its enum.
fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => "F32",
        Dtype::I32 => "I32",
        _ => "other",
    }
}
