//! Shared test support: locating the shared checkpoint metadata, temporary directories, and
//! small but complete synthetic checkpoints with helpers that corrupt them in specific ways.
//!
//! A synthetic checkpoint is a real checkpoint's configs with every size shrunk (special ids,
//! vocabularies, codebook counts and sample rates kept), plus every tensor the loader's manifest
//! implies, filled with deterministic pseudo-random values: BF16 for `model.safetensors`, F32
//! for `speech_tokenizer/model.safetensors`, as released. The text tokenizer files are copied
//! from the shared tokenizer directory, so `Model::load` works on it too.
//!
//! Only std plus the crate's own dependencies (serde_json, safetensors, half) are used.

#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use qwentts::model::config::{ModelConfig, SpeechTokenizerConfig};
use qwentts::model::manifest::{TensorSpec, main_model_tensors, speech_tokenizer_tensors};
use safetensors::Dtype;
use serde_json::{Value, json};

/// The five released checkpoints whose metadata lives in `shared/checkpoints/`.
pub const CHECKPOINTS: [&str; 5] = [
    "Qwen3-TTS-12Hz-0.6B-Base",
    "Qwen3-TTS-12Hz-0.6B-CustomVoice",
    "Qwen3-TTS-12Hz-1.7B-Base",
    "Qwen3-TTS-12Hz-1.7B-CustomVoice",
    "Qwen3-TTS-12Hz-1.7B-VoiceDesign",
];

/// `$QT_SHARED_DIR`, else `<crate>/../shared`. Panics (fails the test) when absent: the
/// checks that need it must never be skipped silently.
pub fn shared_dir() -> PathBuf {
    let dir = match std::env::var_os("QT_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    assert!(
        dir.join("checkpoints").is_dir(),
        "shared data not found: {} has no checkpoints/ folder (set QT_SHARED_DIR to the shared directory)",
        dir.display()
    );
    dir
}

/// `shared/checkpoints/<name>`.
pub fn checkpoint_meta_dir(name: &str) -> PathBuf {
    let dir = shared_dir().join("checkpoints").join(name);
    assert!(dir.is_dir(), "checkpoint metadata {} not found", dir.display());
    dir
}

// ---------------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("qwentts-{tag}-{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Copies a directory tree (files and folders only).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A tiny VoiceDesign checkpoint in `dir` (created): the committed tiny-customvoice fixture
/// with the config edited the way the released 1.7B-VoiceDesign config differs from
/// 1.7B-CustomVoice (`tts_model_type` "voice_design", no built-in speakers, no dialects).
/// Its official outputs are not in the goldens: tests compare the C ABI with the Rust API.
pub fn tiny_voice_design(dir: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-customvoice");
    copy_dir(&from, dir);
    let config = dir.join("config.json");
    let mut value: Value = serde_json::from_str(&fs::read_to_string(&config).unwrap()).unwrap();
    value["tts_model_type"] = json!("voice_design");
    let talker = value["talker_config"].as_object_mut().expect("talker_config");
    talker.remove("spk_id");
    talker.remove("spk_is_dialect");
    if let Some(languages) = talker.get_mut("codec_language_id").and_then(Value::as_object_mut) {
        languages.retain(|name, _| !name.ends_with("_dialect"));
    }
    fs::write(&config, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    dir.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints
// ---------------------------------------------------------------------------------------------

/// Bytes of one synthetic checkpoint, built once per variant and process.
struct Built {
    config: String,
    speech_config: String,
    model: Vec<u8>,
    speech_model: Vec<u8>,
}

/// A complete synthetic checkpoint in its own temporary directory.
pub struct SyntheticCheckpoint {
    root: TempDir,
    dir: PathBuf,
}

impl SyntheticCheckpoint {
    /// A shrunk 0.6B-Base checkpoint (the variant with every component).
    pub fn new() -> Self {
        Self::from_variant("Qwen3-TTS-12Hz-0.6B-Base")
    }

    /// A shrunk copy of one of [`CHECKPOINTS`].
    pub fn from_variant(variant: &str) -> Self {
        let built = built(variant);
        let meta = checkpoint_meta_dir(variant);
        let tokenizer = shared_dir().join("checkpoints/tokenizer");

        let root = TempDir::new("ckpt");
        let dir = root.path().join("checkpoint");
        fs::create_dir_all(dir.join("speech_tokenizer")).unwrap();
        fs::write(dir.join("config.json"), &built.config).unwrap();
        fs::write(dir.join("model.safetensors"), &built.model).unwrap();
        fs::write(dir.join("speech_tokenizer/config.json"), &built.speech_config).unwrap();
        fs::write(dir.join("speech_tokenizer/model.safetensors"), &built.speech_model).unwrap();
        for file in ["generation_config.json", "preprocessor_config.json"] {
            fs::copy(meta.join(file), dir.join(file)).unwrap();
        }
        fs::copy(
            meta.join("speech_tokenizer/preprocessor_config.json"),
            dir.join("speech_tokenizer/preprocessor_config.json"),
        )
        .unwrap();
        for file in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
            fs::copy(tokenizer.join(file), dir.join(file)).unwrap();
        }
        SyntheticCheckpoint { root, dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    pub fn speech_model_path(&self) -> PathBuf {
        self.dir.join("speech_tokenizer/model.safetensors")
    }

    /// Copies the checkpoint to a sibling directory called `name` (any bytes on Unix) and
    /// returns its path; it is removed with this checkpoint.
    pub fn copy_as(&self, name: &OsStr) -> PathBuf {
        let target = self.root.path().join(name);
        copy_dir(&self.dir, &target);
        target
    }

    pub fn remove(&self, relative: &str) {
        fs::remove_file(self.dir.join(relative)).unwrap();
    }

    // --- config.json -----------------------------------------------------------------------

    pub fn write_config_text(&self, text: &str) {
        fs::write(self.config_path(), text).unwrap();
    }

    /// Parses config.json, applies `edit`, writes it back.
    pub fn edit_config(&self, edit: impl FnOnce(&mut Value)) {
        let mut value: Value = serde_json::from_str(&fs::read_to_string(self.config_path()).unwrap()).unwrap();
        edit(&mut value);
        self.write_config_text(&serde_json::to_string_pretty(&value).unwrap());
    }

    // --- safetensors corruption -----------------------------------------------------------

    /// Overwrites the 8-byte little-endian header length of `file`.
    pub fn set_header_len(&self, file: &Path, len: u64) {
        let mut bytes = fs::read(file).unwrap();
        bytes[..8].copy_from_slice(&len.to_le_bytes());
        fs::write(file, bytes).unwrap();
    }

    /// Rewrites the JSON header of `file` (tensor data untouched; offsets are relative to the
    /// data section, so the header may change length).
    pub fn edit_header(&self, file: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        let (mut header, data) = split_file(&fs::read(file).unwrap());
        edit(&mut header);
        fs::write(file, join_file(&header, &data)).unwrap();
    }

    /// Gives the second of two equally sized tensors the first one's byte range. Returns both names.
    pub fn overlap_offsets(&self, file: &Path) -> (String, String) {
        let mut names = None;
        self.edit_header(file, |h| {
            let mut by_size: BTreeMap<u64, String> = BTreeMap::new();
            for (name, info) in tensor_entries(h) {
                let (b, e) = offsets(&info);
                if let Some(first) = by_size.get(&(e - b)) {
                    names = Some((first.clone(), name));
                    break;
                }
                by_size.insert(e - b, name);
            }
            let (first, second) = names.clone().expect("two tensors of equal size");
            let range = h[&first]["data_offsets"].clone();
            h.get_mut(&second).unwrap()["data_offsets"] = range;
        });
        names.unwrap()
    }

    /// Moves `tensor`'s byte range past the end of the data section (same length).
    pub fn offsets_out_of_range(&self, file: &Path, tensor: &str) {
        let data_len = data_len(file);
        self.edit_header(file, |h| {
            let (b, e) = offsets(&h[tensor]);
            let start = data_len + 64;
            h.get_mut(tensor).unwrap()["data_offsets"] = json!([start, start + (e - b)]);
        });
    }

    /// Sets the dtype string of `tensor` in the header (any text, valid or not).
    pub fn set_dtype(&self, file: &Path, tensor: &str, dtype: &str) {
        self.edit_header(file, |h| h.get_mut(tensor).unwrap()["dtype"] = json!(dtype));
    }

    /// Truncates the file in the middle of its last tensor. Returns that tensor's name.
    pub fn truncate_inside_last_tensor(&self, file: &Path) -> String {
        let bytes = fs::read(file).unwrap();
        let (header, _) = split_file(&bytes);
        let (name, (b, e)) = tensor_entries(&header)
            .into_iter()
            .map(|(n, info)| (n, offsets(&info)))
            .max_by_key(|&(_, (_, e))| e)
            .unwrap();
        let data_start = bytes.len() as u64 - data_len(file);
        let cut = data_start + b + (e - b) / 2;
        fs::OpenOptions::new().write(true).open(file).unwrap().set_len(cut).unwrap();
        name
    }

    /// Re-serializes `file` after `edit` changes its tensor list: a valid file with different content.
    pub fn rewrite_tensors(&self, file: &Path, edit: impl FnOnce(&mut BTreeMap<String, RawTensor>)) {
        let bytes = fs::read(file).unwrap();
        let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: BTreeMap<String, RawTensor> = parsed
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                (name, RawTensor { dtype: view.dtype(), shape: view.shape().to_vec(), data: view.data().to_vec() })
            })
            .collect();
        edit(&mut tensors);
        fs::write(file, serialize(&tensors)).unwrap();
    }

    /// Removes one tensor (the file stays valid).
    pub fn drop_tensor(&self, file: &Path, tensor: &str) {
        self.rewrite_tensors(file, |t| {
            t.remove(tensor).unwrap_or_else(|| panic!("no tensor {tensor}"));
        });
    }

    /// Gives `tensor` a new shape (with matching data, so the file stays valid).
    pub fn set_shape(&self, file: &Path, tensor: &str, shape: &[usize]) {
        self.rewrite_tensors(file, |t| {
            let raw = t.get_mut(tensor).unwrap_or_else(|| panic!("no tensor {tensor}"));
            raw.data = vec![0; shape.iter().product::<usize>() * raw.dtype.bitsize() / 8];
            raw.shape = shape.to_vec();
        });
    }
}

impl Default for SyntheticCheckpoint {
    fn default() -> Self {
        Self::new()
    }
}

/// One tensor held in memory for rewriting.
#[derive(Clone)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// The synthetic checkpoint of `variant`, built once per process.
fn built(variant: &str) -> Arc<Built> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Arc<Built>>>> = OnceLock::new();
    // The lock is held while building so that parallel tests wait for one build instead of
    // each making their own.
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cache.entry(variant.to_owned()).or_insert_with(|| Arc::new(build(variant))).clone()
}

fn build(variant: &str) -> Built {
    let meta = checkpoint_meta_dir(variant);
    let config =
        shrink_model_config(serde_json::from_str(&fs::read_to_string(meta.join("config.json")).unwrap()).unwrap());
    let speech = shrink_speech_config(
        serde_json::from_str(&fs::read_to_string(meta.join("speech_tokenizer/config.json")).unwrap()).unwrap(),
    );
    let config_text = serde_json::to_string_pretty(&config).unwrap();
    let speech_text = serde_json::to_string_pretty(&speech).unwrap();

    let model_cfg = ModelConfig::from_json_str(&config_text).unwrap();
    model_cfg.validate().unwrap();
    let speech_cfg = SpeechTokenizerConfig::from_json_str(&speech_text).unwrap();
    speech_cfg.validate().unwrap();

    Built {
        config: config_text,
        speech_config: speech_text,
        model: serialize(&random_tensors(&main_model_tensors(&model_cfg), Dtype::BF16)),
        speech_model: serialize(&random_tensors(&speech_tokenizer_tensors(&speech_cfg), Dtype::F32)),
    }
}

/// Shrinks every width and depth of a real config.json; keeps vocabularies and special ids
/// (the real tokenizer and prompt layout must keep working), 16 code groups, and whether the
/// code predictor is narrower than the talker (0.6B: equal, 1.7B: narrower).
pub fn shrink_model_config(mut c: Value) -> Value {
    let t = &mut c["talker_config"];
    let narrower_predictor = t["hidden_size"] != t["code_predictor_config"]["hidden_size"];
    let hidden = if narrower_predictor { 64 } else { 32 };
    for (k, v) in [
        ("hidden_size", json!(hidden)),
        ("intermediate_size", json!(96)),
        ("num_hidden_layers", json!(2)),
        ("num_attention_heads", json!(4)),
        ("num_key_value_heads", json!(2)),
        ("head_dim", json!(16)),
        ("text_hidden_size", json!(16)),
    ] {
        t[k] = v;
    }
    t["rope_scaling"]["mrope_section"] = json!([4, 2, 2]);
    let p = &mut t["code_predictor_config"];
    for (k, v) in [
        ("hidden_size", json!(32)),
        ("intermediate_size", json!(64)),
        ("num_hidden_layers", json!(1)),
        ("num_attention_heads", json!(4)),
        ("num_key_value_heads", json!(2)),
        ("head_dim", json!(8)),
        ("layer_types", json!(["full_attention"])),
    ] {
        p[k] = v;
    }
    if c.get("speaker_encoder_config").is_some() {
        c["speaker_encoder_config"] = json!({
            "enc_dim": hidden,
            "sample_rate": 24000,
            "enc_channels": [16, 16, 16, 16, 48],
            "enc_attention_channels": 8,
            "enc_se_channels": 8,
        });
    }
    c
}

/// Shrinks speech_tokenizer/config.json; keeps the rate lists (hop 1920), codebook sizes and
/// codebook counts.
pub fn shrink_speech_config(mut c: Value) -> Value {
    let d = &mut c["decoder_config"];
    for (k, v) in [
        ("codebook_dim", 16),
        ("latent_dim", 32),
        ("hidden_size", 16),
        ("intermediate_size", 32),
        ("num_hidden_layers", 1),
        ("num_attention_heads", 2),
        ("num_key_value_heads", 2),
        ("head_dim", 8),
        ("decoder_dim", 32),
    ] {
        d[k] = json!(v);
    }
    let e = &mut c["encoder_config"];
    for (k, v) in [
        ("num_filters", 4),
        ("hidden_size", 32),
        ("intermediate_size", 64),
        ("num_hidden_layers", 1),
        ("num_attention_heads", 2),
        ("num_key_value_heads", 2),
        ("head_dim", 16),
        ("codebook_dim", 8),
        ("vector_quantization_hidden_dimension", 8),
        ("upsample_groups", 32),
    ] {
        e[k] = json!(v);
    }
    c
}

/// Deterministic values for every spec: plausible magnitudes by role (norm scales near 1,
/// positive codebook usage), small noise elsewhere.
pub fn random_tensors(specs: &[TensorSpec], dtype: Dtype) -> BTreeMap<String, RawTensor> {
    specs
        .iter()
        .map(|spec| {
            let n: usize = spec.shape.iter().product();
            let mut rng = SplitMix64(fnv1a(spec.name.as_bytes()));
            // value = center + spread * (u - 0.5), with u uniform in [0, 1).
            let name = spec.name.as_str();
            let (center, spread) = if name.ends_with("initialized") {
                (1.0, 0.0)
            } else if name.ends_with("cluster_usage") {
                (1.5, 1.0)
            } else if name.ends_with("layer_scale.scale") {
                (0.01, 0.0)
            } else if name.ends_with("norm.weight") || name.ends_with("layernorm.weight") {
                (1.0, 0.1)
            } else {
                (0.0, 0.1)
            };
            // Tests run unoptimised, so only one period of a prime length is drawn and the
            // rest tiled with memcpy; rows of any power-of-two width still all differ.
            const PERIOD: usize = 4093;
            let width = dtype.bitsize() / 8;
            let mut block = Vec::with_capacity(n.min(PERIOD) * width);
            for _ in 0..n.min(PERIOD) {
                let x = center + spread * (rng.next_unit() - 0.5);
                match dtype {
                    Dtype::BF16 => block.extend_from_slice(&half::bf16::from_f32(x).to_le_bytes()),
                    Dtype::F16 => block.extend_from_slice(&half::f16::from_f32(x).to_le_bytes()),
                    Dtype::F32 => block.extend_from_slice(&x.to_le_bytes()),
                    other => panic!("unsupported synthetic dtype {other:?}"),
                }
            }
            let mut data = Vec::with_capacity(n * width);
            while data.len() < n * width {
                let take = block.len().min(n * width - data.len());
                data.extend_from_slice(&block[..take]);
            }
            (spec.name.clone(), RawTensor { dtype, shape: spec.shape.clone(), data })
        })
        .collect()
}

/// safetensors serialization of an in-memory tensor set.
pub fn serialize(tensors: &BTreeMap<String, RawTensor>) -> Vec<u8> {
    let views = tensors.iter().map(|(name, t)| {
        (name.as_str(), safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap())
    });
    safetensors::serialize(views, None).unwrap()
}

/// Splits a safetensors file into its header object and data section.
pub fn split_file(bytes: &[u8]) -> (serde_json::Map<String, Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let Value::Object(map) = header else { panic!("header is not an object") };
    (map, bytes[8 + n..].to_vec())
}

/// Reassembles a safetensors file, padding the header to 8 bytes as the writer does.
pub fn join_file(header: &serde_json::Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let mut json = serde_json::to_vec(header).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

/// Bytes in the data section of a (well-formed) safetensors file.
pub fn data_len(file: &Path) -> u64 {
    let bytes = fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    bytes.len() as u64 - 8 - n
}

fn tensor_entries(header: &serde_json::Map<String, Value>) -> Vec<(String, Value)> {
    header.iter().filter(|(k, _)| *k != "__metadata__").map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn offsets(info: &Value) -> (u64, u64) {
    (info["data_offsets"][0].as_u64().unwrap(), info["data_offsets"][1].as_u64().unwrap())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64: tiny, fast, deterministic across platforms.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}
