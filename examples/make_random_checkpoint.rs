//! Writes a complete Qwen3-TTS 12 Hz checkpoint directory with random weights at full size,
//! from one released checkpoint's metadata folder (configs and tensor manifests, no weights).
//!
//! ```text
//! cargo run --release --example make_random_checkpoint -- \
//!     --from ../shared/checkpoints/Qwen3-TTS-12Hz-0.6B-Base --out /tmp/random-0.6B-base [--seed N] [--std 0.02]
//! ```
//!
//! Speed does not depend on weight values once the number of frames is fixed, so a random
//! checkpoint of the right shapes is what speed and memory work needs. The values are chosen
//! so that the model stays numerically sane over long runs (see [`init_rule`]).
//!
//! # Output
//!
//! The released layout: the JSON configs and text tokenizer files copied unchanged, plus
//! `model.safetensors` (BF16) and `speech_tokenizer/model.safetensors` (F32) holding exactly
//! the tensors the configs imply (`qwentts::model::manifest`). Where the metadata folder has
//! `tensors.json` manifests, names, shapes and dtypes are cross-checked against them first.
//!
//! # Values
//!
//! Every element is a pure function of (seed, tensor name, element index): SplitMix64 on a
//! counter, turned into an approximate standard normal by summing four 16-bit uniforms
//! (Irwin–Hall, |z| ≤ 2√3, so no outliers). The bytes therefore do not depend on the thread
//! count or the chunking. Tensors are written in name order (as `safetensors.save_file`
//! does); the header is computed from the manifest first, then worker threads fill fixed-size
//! chunks and write them at their final offsets, so memory stays at one chunk per thread.
//! Each file is written as `*.partial` and renamed when complete.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use qwentts::model::DType;
use qwentts::model::config::{ModelConfig, SpeechTokenizerConfig};
use qwentts::model::manifest::{TensorSpec, main_model_tensors, speech_tokenizer_tensors};
use serde_json::{Map, Value, json};

pub type Result<T, E = String> = std::result::Result<T, E>;

pub const USAGE: &str = "\
usage: make_random_checkpoint --from DIR --out DIR [options]

Writes a complete Qwen3-TTS 12 Hz checkpoint directory (released layout) with random weights
at full size, from a released checkpoint's metadata folder.

  --from DIR     metadata folder, e.g. shared/checkpoints/Qwen3-TTS-12Hz-0.6B-Base: config.json,
                 generation_config.json, preprocessor_config.json,
                 speech_tokenizer/{config.json,preprocessor_config.json}, optional tensors.json
                 manifests (cross-checked). tokenizer_config.json, vocab.json and merges.txt are
                 taken from DIR, else from DIR/../tokenizer/
  --out DIR      output directory (created; must be empty unless --force)
  --seed N       seed (default 0); the same seed gives the same bytes on any machine
  --std X        standard deviation of embedding rows (default 0.02); linear and conv weights
                 use 1/sqrt(fan_in)
  --threads N    generator threads (default: available cores)
  --keep-eos     give the codec-EOS row of talker.codec_head random values too (default: zero,
                 so that greedy and top-k sampling never stop a run early)
  --force        write into a non-empty --out (overwriting the checkpoint files)
  --no-verify    do not reopen the result (qwentts Checkpoint::open + TextTokenizer) afterwards
  -h, --help     this text";

/// Embedding-row standard deviation: the configs' `initializer_range`.
pub const DEFAULT_EMBED_STD: f32 = 0.02;
/// Elements per work item: 2 MiB (BF16) or 4 MiB (F32) per thread in flight.
const CHUNK_ELEMENTS: usize = 1 << 20;
/// Norm scales are 1 + N(0, NORM_STD); biases N(0, BIAS_STD).
const NORM_STD: f32 = 0.02;
const BIAS_STD: f32 = 0.02;
/// SnakeBeta log-space alpha and beta: N(0, SNAKE_STD), i.e. alpha, beta = e^x ≈ 1.
const SNAKE_STD: f32 = 0.05;
/// Codebook usage counts: N(1, USAGE_STD) (≥ 0.65 with the bounded normal), so codebook
/// rows `embedding_sum / usage` keep the scale of `embedding_sum`.
const USAGE_STD: f32 = 0.1;
/// Gain of the last conv of each vocoder residual unit: each unit then grows the signal by
/// √(1 + g²) instead of √2 (12 units: ×1.7 instead of ×64).
const VOCODER_RESIDUAL_GAIN: f32 = 0.3;
/// Gain of the vocoder's output conv: brings the waveform to roughly −20 dBFS (RMS ≈ 0.1),
/// so the final clamp to [−1, 1] rarely bites.
const VOCODER_OUTPUT_GAIN: f32 = 0.03;

/// Released files besides the weights, relative to the checkpoint directory.
const CONFIG_FILES: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "speech_tokenizer/config.json",
    "speech_tokenizer/preprocessor_config.json",
];
/// Text tokenizer files: in `--from`, else in `--from/../tokenizer/`.
const TOKENIZER_FILES: [&str; 3] = ["tokenizer_config.json", "vocab.json", "merges.txt"];

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub from: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    pub embed_std: f32,
    pub threads: usize,
    pub keep_eos: bool,
    pub force: bool,
    pub verify: bool,
}

impl Options {
    /// Defaults for everything but the two directories.
    pub fn new(from: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        Options {
            from: from.into(),
            out: out.into(),
            seed: 0,
            embed_std: DEFAULT_EMBED_STD,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            keep_eos: false,
            force: false,
            verify: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut args = args.into_iter();
    let (mut from, mut out) = (None, None);
    let mut opts = Options::new("", "");
    while let Some(arg) = args.next() {
        let flag = arg.to_str().ok_or_else(|| format!("unexpected argument {arg:?}"))?.to_owned();
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--from" => from = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--seed" => opts.seed = parse_number(&flag, value()?)?,
            "--std" => {
                let std: f32 = parse_number(&flag, value()?)?;
                if !(std.is_finite() && std > 0.0) {
                    return Err(format!("--std must be a positive finite number, got {std}"));
                }
                opts.embed_std = std;
            }
            "--threads" => {
                opts.threads = parse_number(&flag, value()?)?;
                if opts.threads == 0 {
                    return Err("--threads must be at least 1".into());
                }
            }
            "--keep-eos" => opts.keep_eos = true,
            "--force" => opts.force = true,
            "--no-verify" => opts.verify = false,
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    opts.from = from.ok_or("--from DIR is required")?;
    opts.out = out.ok_or("--out DIR is required")?;
    for (flag, dir) in [("--from", &opts.from), ("--out", &opts.out)] {
        if dir.as_os_str().is_empty() {
            return Err(format!("{flag} is empty"));
        }
    }
    Ok(Command::Run(opts))
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: OsString) -> Result<T> {
    value
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{flag}: cannot parse {value:?} as a {}", std::any::type_name::<T>()))
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// How one tensor is filled. `Normal` draws are bounded (|z| ≤ 2√3, see [`normal`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Const(f32),
    Normal { mean: f32, std: f32 },
}

/// The facts of the configs that the init rules need.
#[derive(Debug, Clone)]
pub struct InitContext {
    pub embed_std: f32,
    /// Row of `talker.codec_head.weight` forced to zero (the codec EOS id), if any.
    pub zero_eos_row: Option<usize>,
    pub encoder_layer_scale: f32,
    pub decoder_layer_scale: f32,
    /// Codebooks in the decoder's `rvq_rest` (their sum is scaled back to unit size).
    pub decoder_rest_codebooks: usize,
    /// ConvTranspose1d weight name → stride (the only convs whose fan-in is not `in · k`).
    pub transposed_strides: HashMap<String, usize>,
    /// Name of the vocoder's output conv weight.
    pub vocoder_output_conv: String,
}

impl InitContext {
    pub fn new(model: &ModelConfig, speech: &SpeechTokenizerConfig, embed_std: f32, keep_eos: bool) -> Self {
        let d = &speech.decoder_config;
        let mut transposed_strides = HashMap::new();
        // Mirrors manifest::codec_decoder: upsample.{i}.0 (k = stride) and the vocoder
        // blocks' block.1 (k = 2 · stride) are ConvTranspose1d.
        for (i, &ratio) in d.upsampling_ratios.iter().enumerate() {
            transposed_strides.insert(format!("decoder.upsample.{i}.0.conv.weight"), ratio);
        }
        for (i, &rate) in d.upsample_rates.iter().enumerate() {
            transposed_strides.insert(format!("decoder.decoder.{}.block.1.conv.weight", i + 1), rate);
        }
        InitContext {
            embed_std,
            zero_eos_row: (!keep_eos).then_some(model.talker_config.codec_eos_token_id as usize),
            encoder_layer_scale: speech.encoder_config.layer_scale_initial_scale as f32,
            decoder_layer_scale: d.layer_scale_initial_scale as f32,
            decoder_rest_codebooks: d.num_quantizers.saturating_sub(1).max(1),
            transposed_strides,
            vocoder_output_conv: format!("decoder.decoder.{}.conv.weight", d.upsample_rates.len() + 2),
        }
    }
}

/// The value rule of one tensor, from its name and shape. Every tensor of the five released
/// layouts has a rule; an unknown tensor is an error rather than a silent default.
///
/// Weights are variance-preserving, `N(0, gain/√fan_in)`: at the talker widths (1024–3072)
/// that is 0.018–0.031, the scale of the configs' `initializer_range` 0.02, but unlike a
/// fixed 0.02 it stays right for the codec's convs, whose fan-ins run from 7 (depthwise) to
/// 10752, where a fixed std would scale each layer's output by 0.05× to 2×. With pre-norm
/// residual blocks each talker layer adds O(1) to the residual stream (measured at full
/// size: RMS ≈ 6 after 28 layers) and logits are O(1). The vocoder's residual units and
/// output conv get smaller gains (see the constants), so its waveform stays near −20 dBFS.
/// Everything that a fresh module initialises to a constant keeps that constant's role:
/// norm scales ≈ 1, biases ≈ 0, layer scales = the config's `layer_scale_initial_scale`,
/// SnakeBeta log-parameters ≈ 0, codebook usage ≈ 1 (so `embedding_sum / usage` is a sane
/// codebook). Embedding rows are `N(0, embed_std)`.
pub fn init_rule(name: &str, shape: &[usize], ctx: &InitContext) -> Result<Init> {
    use Init::{Const, Normal};
    let (parent, leaf) = name.rsplit_once('.').unwrap_or(("", name));
    let module = parent.rsplit('.').next().unwrap_or("");
    let normal = |std: f32| Normal { mean: 0.0, std };
    let rank = shape.len();
    let rule = match leaf {
        // Mimi codebook buffers (encoder) and their decoder counterparts.
        "initialized" => Const(1.0),
        "cluster_usage" => Normal { mean: 1.0, std: USAGE_STD },
        "embed_sum" => normal(1.0),
        "embedding_sum" if parent.contains(".rvq_rest.") => normal(1.0 / (ctx.decoder_rest_codebooks as f32).sqrt()),
        "embedding_sum" => normal(1.0),
        "alpha" | "beta" if rank == 1 => normal(SNAKE_STD),
        "scale" if module.ends_with("layer_scale") => {
            Const(if name.starts_with("encoder.") { ctx.encoder_layer_scale } else { ctx.decoder_layer_scale })
        }
        // ConvNeXt layer scale.
        "gamma" if rank == 1 => Const(ctx.decoder_layer_scale),
        "weight" if rank == 1 && module.ends_with("norm") => Normal { mean: 1.0, std: NORM_STD },
        "bias" if rank == 1 => normal(BIAS_STD),
        "weight" if rank == 2 && (module.ends_with("embedding") || is_numbered_embedding(parent)) => {
            normal(ctx.embed_std)
        }
        // Linear [out, in].
        "weight" if rank == 2 => normal(1.0 / (shape[1] as f32).sqrt()),
        // Conv1d [out, in/groups, k]; ConvTranspose1d [in, out, k] (each output sample sees
        // in · k / stride taps).
        "weight" if rank == 3 => {
            let fan_in = match ctx.transposed_strides.get(name) {
                Some(&stride) => shape[0] * shape[2] / stride.max(1),
                None => shape[1] * shape[2],
            };
            let gain = if name == ctx.vocoder_output_conv {
                VOCODER_OUTPUT_GAIN
            } else if name.starts_with("decoder.decoder.") && name.ends_with(".conv2.conv.weight") {
                VOCODER_RESIDUAL_GAIN
            } else {
                1.0
            };
            normal(gain / (fan_in.max(1) as f32).sqrt())
        }
        _ => return Err(format!("no init rule for tensor `{name}` with shape {shape:?}")),
    };
    Ok(rule)
}

/// `...codec_embedding.{j}` (the code predictor's per-codebook embeddings).
fn is_numbered_embedding(parent: &str) -> bool {
    parent
        .rsplit_once('.')
        .is_some_and(|(head, index)| head.ends_with("embedding") && index.bytes().all(|b| b.is_ascii_digit()))
}

/// SplitMix64's output function (Steele, Lea, Flood 2014; Stafford's mix13).
#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The stream key of one tensor: seed and name hashed together.
pub fn tensor_key(seed: u64, name: &str) -> u64 {
    let fnv = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    mix64(mix64(seed) ^ fnv)
}

/// Element `index` of stream `key` as an approximate standard normal: the sum of four
/// 16-bit uniforms (Irwin–Hall, n = 4), centred and scaled to unit variance. Bounded by
/// 2√3 ≈ 3.46; kurtosis 2.7 instead of 3. Plenty for random weights, and branch-free.
#[inline(always)]
fn normal(key: u64, index: u64) -> f32 {
    let r = mix64(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)));
    let sum = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48);
    // Each 16-bit value u stands for (u + 0.5) / 65536, mean 1/2, variance ≈ 1/12.
    const CENTRE: f32 = 2.0 * 65535.0;
    const SCALE: f32 = 1.732_050_8 / 65536.0; // √3 / 65536: variance 4/12 → 1
    (sum as f32 - CENTRE) * SCALE
}

/// Fills `out` with elements `first..first + n` of a tensor (`n = out.len() / dtype size`).
fn fill(init: Init, key: u64, dtype: DType, first: u64, out: &mut [u8]) {
    match init {
        Init::Const(c) => encode(dtype, out, |_| c),
        Init::Normal { mean, std } => encode(dtype, out, |i| mean + std * normal(key, first + i)),
    }
}

/// `out[i] = value(i)` in `dtype`, little-endian (BF16/F16 round to nearest even).
#[inline(always)]
fn encode(dtype: DType, out: &mut [u8], value: impl Fn(u64) -> f32) {
    match dtype {
        DType::BF16 => {
            for (i, b) in (0..).zip(out.chunks_exact_mut(2)) {
                b.copy_from_slice(&half::bf16::from_f32(value(i)).to_le_bytes());
            }
        }
        DType::F16 => {
            for (i, b) in (0..).zip(out.chunks_exact_mut(2)) {
                b.copy_from_slice(&half::f16::from_f32(value(i)).to_le_bytes());
            }
        }
        DType::F32 => {
            for (i, b) in (0..).zip(out.chunks_exact_mut(4)) {
                b.copy_from_slice(&value(i).to_le_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plans: what goes into each file
// ---------------------------------------------------------------------------------------------

/// One tensor to write.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorPlan {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub init: Init,
    /// Elements forced to 0 after filling (the codec-EOS row of `codec_head`).
    pub zeroed: Option<Range<u64>>,
}

impl TensorPlan {
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    pub fn bytes(&self) -> u64 {
        self.numel() * self.dtype.size() as u64
    }
}

/// Plans for every spec, sorted by name (the order `safetensors.save_file` writes).
pub fn plan_tensors(specs: &[TensorSpec], dtype: DType, ctx: &InitContext) -> Result<Vec<TensorPlan>> {
    let mut plans = specs
        .iter()
        .map(|spec| {
            let init = init_rule(&spec.name, &spec.shape, ctx)?;
            let zeroed = match (spec.name.as_str(), ctx.zero_eos_row) {
                ("talker.codec_head.weight", Some(row)) if row < spec.shape[0] => {
                    let width = spec.shape[1] as u64;
                    Some(row as u64 * width..(row as u64 + 1) * width)
                }
                _ => None,
            };
            Ok(TensorPlan { name: spec.name.clone(), shape: spec.shape.clone(), dtype, init, zeroed })
        })
        .collect::<Result<Vec<_>>>()?;
    plans.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = plans.windows(2).find(|p| p[0].name == p[1].name) {
        return Err(format!("the manifest lists tensor `{}` twice", pair[0].name));
    }
    Ok(plans)
}

/// The parsed configs of a metadata folder and the plans of both weight files.
pub struct CheckpointPlan {
    pub model: ModelConfig,
    pub speech: SpeechTokenizerConfig,
    pub main: Vec<TensorPlan>,
    pub codec: Vec<TensorPlan>,
}

/// Reads the configs in `from` and plans both files; cross-checks every `tensors.json`
/// present. Returns the plan and one line per manifest saying what was checked.
pub fn plan_checkpoint(from: &Path, embed_std: f32, keep_eos: bool) -> Result<(CheckpointPlan, Vec<String>)> {
    let model = ModelConfig::from_file(&from.join("config.json")).map_err(|e| e.to_string())?;
    let speech =
        SpeechTokenizerConfig::from_file(&from.join("speech_tokenizer/config.json")).map_err(|e| e.to_string())?;
    let ctx = InitContext::new(&model, &speech, embed_std, keep_eos);
    let main = plan_tensors(&main_model_tensors(&model), DType::BF16, &ctx)?;
    let codec = plan_tensors(&speech_tokenizer_tensors(&speech), DType::F32, &ctx)?;
    let mut notes = Vec::new();
    for (manifest, plans) in [(from.join("tensors.json"), &main), (from.join("speech_tokenizer/tensors.json"), &codec)]
    {
        if manifest.exists() {
            check_manifest(plans, &manifest)?;
            notes.push(format!("{}: {} tensors match (names, shapes, dtypes)", manifest.display(), plans.len()));
        } else {
            notes.push(format!("{}: absent; tensor set from the config alone", manifest.display()));
        }
    }
    Ok((CheckpointPlan { model, speech, main, codec }, notes))
}

/// Checks `plans` against a `tensors.json` (`{"tensors": {name: {"dtype", "shape"}}}`, with
/// optional `count` and `bytes`): the same names, shapes and dtypes.
pub fn check_manifest(plans: &[TensorPlan], path: &Path) -> Result<()> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    let tensors = json
        .get("tensors")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{}: no `tensors` object", path.display()))?;
    let mut released = BTreeMap::new();
    for (name, info) in tensors {
        let dtype = info.get("dtype").and_then(Value::as_str);
        let shape: Option<Vec<usize>> = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        match (dtype, shape) {
            (Some(dtype), Some(shape)) => released.insert(name.as_str(), (dtype, shape)),
            _ => return Err(format!("{}: tensor `{name}` needs a string dtype and an integer shape", path.display())),
        };
    }

    let ours: BTreeMap<&str, &TensorPlan> = plans.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut problems = Vec::new();
    for (name, plan) in &ours {
        match released.get(name) {
            None => problems.push(format!("`{name}` is implied by the config but not in the manifest")),
            Some((dtype, shape)) => {
                if shape != &plan.shape {
                    problems
                        .push(format!("`{name}`: shape {:?} from the config, {shape:?} in the manifest", plan.shape));
                }
                if *dtype != plan.dtype.name() {
                    problems.push(format!("`{name}`: dtype {} as released, {dtype} in the manifest", plan.dtype));
                }
            }
        }
    }
    let extra: BTreeSet<&str> = released.keys().filter(|n| !ours.contains_key(*n)).copied().collect();
    problems.extend(extra.iter().map(|n| format!("`{n}` is in the manifest but not implied by the config")));
    if !problems.is_empty() {
        const SHOWN: usize = 8;
        let more = problems.len().saturating_sub(SHOWN);
        let tail = if more > 0 { format!("\n  ... and {more} more") } else { String::new() };
        return Err(format!(
            "{} disagrees with the configs ({} problems):\n  {}{tail}",
            path.display(),
            problems.len(),
            problems[..problems.len().min(SHOWN)].join("\n  ")
        ));
    }
    let bytes: u64 = plans.iter().map(TensorPlan::bytes).sum();
    for (key, ours) in [("count", plans.len() as u64), ("bytes", bytes)] {
        if let Some(theirs) = json.get(key).and_then(Value::as_u64)
            && theirs != ours
        {
            return Err(format!("{}: `{key}` is {theirs}, the tensors listed give {ours}", path.display()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// The safetensors prefix and header for `plans` in order: an 8-byte little-endian length,
/// then JSON padded with spaces to a multiple of 8 (as the reference writer does), so that
/// the data section starts 8-byte aligned. Returns it with each tensor's data offset.
pub fn safetensors_header(plans: &[TensorPlan]) -> (Vec<u8>, Vec<u64>) {
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offsets = Vec::with_capacity(plans.len());
    let mut at = 0u64;
    for plan in plans {
        offsets.push(at);
        let end = at + plan.bytes();
        header.insert(
            plan.name.clone(),
            json!({ "dtype": plan.dtype.name(), "shape": plan.shape, "data_offsets": [at, end] }),
        );
        at = end;
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).expect("a JSON map serialises");
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    (out, offsets)
}

/// What was written to one file.
#[derive(Debug, Clone)]
pub struct FileSummary {
    pub path: PathBuf,
    pub tensors: usize,
    pub params: u64,
    pub file_bytes: u64,
    pub seconds: f64,
}

/// Writes `plans` as a safetensors file at `path` (via `path.partial`, renamed at the end).
pub fn write_safetensors(path: &Path, plans: &[TensorPlan], seed: u64, threads: usize) -> Result<FileSummary> {
    let started = Instant::now();
    let (header, offsets) = safetensors_header(plans);
    let data_start = header.len() as u64;
    let file_bytes = data_start + plans.iter().map(TensorPlan::bytes).sum::<u64>();

    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", partial.display());
    let file = File::create(&partial).map_err(|e| io("cannot create", e))?;
    file.set_len(file_bytes).map_err(|e| io("cannot size", e))?;
    write_at(&file, &header, 0).map_err(|e| io("cannot write", e))?;

    // Work items: (tensor, first element, elements), in file order.
    let mut work = Vec::new();
    for (t, plan) in plans.iter().enumerate() {
        let n = plan.numel();
        let mut first = 0;
        while first < n {
            let len = (n - first).min(CHUNK_ELEMENTS as u64);
            work.push((t, first, len));
            first += len;
        }
    }
    let keys: Vec<u64> = plans.iter().map(|p| tensor_key(seed, &p.name)).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, work.len().max(1)) {
            scope.spawn(|| {
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Some(&(t, first, len)) = work.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let plan = &plans[t];
                    let size = plan.dtype.size() as u64;
                    buf.resize((len * size) as usize, 0);
                    fill(plan.init, keys[t], plan.dtype, first, &mut buf);
                    if let Some(z) = &plan.zeroed {
                        let (lo, hi) = (z.start.max(first), z.end.min(first + len));
                        if lo < hi {
                            buf[((lo - first) * size) as usize..((hi - first) * size) as usize].fill(0);
                        }
                    }
                    let offset = data_start + offsets[t] + first * size;
                    if let Err(e) = write_at(&file, &buf, offset) {
                        stop.store(true, Ordering::Relaxed);
                        error.lock().unwrap().get_or_insert(io("cannot write", e));
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap() {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    drop(file);
    fs::rename(&partial, path)
        .map_err(|e| format!("cannot rename {} to {}: {e}", partial.display(), path.display()))?;
    Ok(FileSummary {
        path: path.to_path_buf(),
        tensors: plans.len(),
        params: plans.iter().map(TensorPlan::numel).sum(),
        file_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset)? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => {
                buf = &buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The whole run
// ---------------------------------------------------------------------------------------------

/// What [`run`] did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub notes: Vec<String>,
    pub copied: Vec<PathBuf>,
    pub files: Vec<FileSummary>,
    /// Seconds [`verify`] took, if it ran.
    pub verify_seconds: Option<f64>,
    pub seconds: f64,
}

/// Finds each file to copy: (source, path relative to the output). Errors name every
/// missing file and where it was looked for.
fn source_files(from: &Path) -> Result<Vec<(PathBuf, &'static str)>> {
    let tokenizer_dir = from.join("..").join("tokenizer");
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in CONFIG_FILES {
        let path = from.join(name);
        if path.is_file() {
            found.push((path, name));
        } else {
            missing.push(path.display().to_string());
        }
    }
    for name in TOKENIZER_FILES {
        match [from.join(name), tokenizer_dir.join(name)].into_iter().find(|p| p.is_file()) {
            Some(path) => found.push((path, name)),
            None => missing.push(format!("{} (nor {})", from.join(name).display(), tokenizer_dir.join(name).display())),
        }
    }
    if !missing.is_empty() {
        return Err(format!("{}: missing metadata files:\n  {}", from.display(), missing.join("\n  ")));
    }
    Ok(found)
}

/// Creates `out` (and `out/speech_tokenizer`); refuses a non-empty `out` unless `force`, and
/// refuses `out == from` always (copying a file onto itself would truncate it).
fn prepare_out(from: &Path, out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(format!("--out {} exists and is not a directory", out.display()));
        }
        let same = match (fs::canonicalize(from), fs::canonicalize(out)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(format!("--out {} is the --from directory; choose another", out.display()));
        }
        let non_empty = fs::read_dir(out).map_err(|e| format!("cannot read {}: {e}", out.display()))?.next().is_some();
        if non_empty && !force {
            return Err(format!(
                "--out {} is not empty (use --force to overwrite its checkpoint files)",
                out.display()
            ));
        }
    }
    let speech = out.join("speech_tokenizer");
    fs::create_dir_all(&speech).map_err(|e| format!("cannot create {}: {e}", speech.display()))
}

/// Generates the checkpoint described by `opts`.
pub fn run(opts: &Options) -> Result<Summary> {
    let started = Instant::now();
    if !opts.from.is_dir() {
        return Err(format!("--from {} is not a directory", opts.from.display()));
    }
    // Everything that can be checked without writing is checked first.
    let sources = source_files(&opts.from)?;
    let (plan, notes) = plan_checkpoint(&opts.from, opts.embed_std, opts.keep_eos)?;
    prepare_out(&opts.from, &opts.out, opts.force)?;

    let mut copied = Vec::new();
    for (src, name) in sources {
        let dst = opts.out.join(name);
        // Contents only: fs::copy would also copy the (read-only) permissions of the shared
        // metadata, and a later --force run could not overwrite the files.
        let bytes = fs::read(&src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        if dst.exists() {
            fs::remove_file(&dst).map_err(|e| format!("cannot replace {}: {e}", dst.display()))?;
        }
        fs::write(&dst, bytes).map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
        copied.push(dst);
    }
    let files = vec![
        write_safetensors(&opts.out.join("model.safetensors"), &plan.main, opts.seed, opts.threads)?,
        write_safetensors(&opts.out.join("speech_tokenizer/model.safetensors"), &plan.codec, opts.seed, opts.threads)?,
    ];
    let verify_seconds = if opts.verify {
        let t = Instant::now();
        verify(&opts.out)?;
        Some(t.elapsed().as_secs_f64())
    } else {
        None
    };
    Ok(Summary { notes, copied, files, verify_seconds, seconds: started.elapsed().as_secs_f64() })
}

/// The file-level half of `qwentts::Model::load`: configs, every tensor's presence, shape,
/// dtype and byte range (`Checkpoint::open`), and the text tokenizer. `Model::load` also
/// builds the CPU networks, which converts every talker weight to f32 (several GB at full
/// size); that proves nothing more about the files, so it is left to the caller.
pub fn verify(dir: &Path) -> Result<()> {
    qwentts::model::Checkpoint::open(dir).map_err(|e| format!("the written checkpoint does not open: {e}"))?;
    qwentts::text::TextTokenizer::from_dir(dir).map_err(|e| format!("the written tokenizer files do not load: {e}"))?;
    Ok(())
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn print_summary(opts: &Options, s: &Summary) {
    for note in &s.notes {
        println!("manifest  {note}");
    }
    println!("copied    {} files", s.copied.len());
    for f in &s.files {
        println!(
            "wrote     {}: {} tensors, {} parameters, {} bytes ({:.2} GB) in {:.2} s ({:.0} MB/s)",
            f.path.display(),
            f.tensors,
            f.params,
            f.file_bytes,
            f.file_bytes as f64 / 1e9,
            f.seconds,
            f.file_bytes as f64 / 1e6 / f.seconds.max(1e-9)
        );
    }
    if let Some(t) = s.verify_seconds {
        println!("verified  configs, tensors and tokenizer load (Checkpoint::open, TextTokenizer) in {t:.2} s");
    }
    let tensors: usize = s.files.iter().map(|f| f.tensors).sum();
    let bytes: u64 = s.files.iter().map(|f| f.file_bytes).sum();
    let rss = peak_rss_bytes().map_or(String::new(), |b| format!(", peak RSS {:.0} MiB", b as f64 / (1 << 20) as f64));
    println!(
        "done      {}: {tensors} tensors, {:.2} GB, seed {}, {} threads, {:.2} s total{rss}",
        opts.out.display(),
        bytes as f64 / 1e9,
        opts.seed,
        opts.threads,
        s.seconds
    );
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n(make_random_checkpoint --help for usage)");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(summary) => {
            print_summary(&opts, &summary);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
