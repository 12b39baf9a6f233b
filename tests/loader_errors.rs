//! Loading a checkpoint: the good synthetic checkpoint loads, and every kind of bad input
//! fails with its own error kind and a message that says what is wrong and where.
//!
//! Errors are checked through the public `Model::load` (which opens the checkpoint before the
//! text tokenizer, so these failures never reach the tokenizer) and, for the weight-file
//! details, through `model::Checkpoint::open` and `SafeTensorsFile::open` directly.

mod support;

use std::path::Path;

use qwentts::model::manifest::main_model_tensors;
use qwentts::model::{Checkpoint, DType, SafeTensorsFile};
use qwentts::{ErrorKind, LoadOptions, Model, ModelKind};
use safetensors::Dtype;
use serde_json::json;
use support::{RawTensor, SyntheticCheckpoint, TempDir};

/// Loads `dir`, expecting failure with `kind` and a message containing every fragment.
#[track_caller]
fn expect_error(dir: &Path, kind: ErrorKind, fragments: &[&str]) -> String {
    let err = match Model::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded, expected {kind:?}", dir.display()),
        Err(e) => e,
    };
    assert_eq!(err.kind(), kind, "wrong kind; message: {err}");
    for fragment in fragments {
        assert!(err.message().contains(fragment), "message lacks `{fragment}`: {err}");
    }
    err.message().to_owned()
}

#[test]
fn good_checkpoint_loads() {
    let ck = SyntheticCheckpoint::new();
    let model = Model::load(ck.dir(), &LoadOptions::default()).unwrap();
    let info = model.info();
    assert_eq!(info.kind, ModelKind::Base);
    assert_eq!(info.size_label, "0.6B");
    assert_eq!((info.sample_rate, info.frame_rate, info.num_codebooks), (24000, 12.5, 16));
    assert!(info.can_clone);
    let ck = model.checkpoint();
    assert_eq!(ck.weights.len(), main_model_tensors(&ck.config).len());
    assert_eq!(ck.generation.max_new_tokens, 8192);
    // Zero-copy views convert to the stored values.
    let norm = ck.weights.require("talker.model.norm.weight", &[32]).unwrap();
    assert_eq!(norm.dtype, DType::BF16);
    assert!(norm.to_f32_vec().iter().all(|v| (0.9..=1.1).contains(v)));
    let usage = ck.speech_weights.get("decoder.quantizer.rvq_first.vq.layers.0._codebook.cluster_usage").unwrap();
    assert_eq!(usage.dtype, DType::F32);
    assert!(usage.to_f32_vec().iter().all(|v| (1.0..2.0).contains(v)));
}

#[test]
fn every_variant_loads() {
    for (variant, kind, projection) in [
        ("Qwen3-TTS-12Hz-0.6B-CustomVoice", ModelKind::CustomVoice, false),
        ("Qwen3-TTS-12Hz-1.7B-Base", ModelKind::Base, true),
        ("Qwen3-TTS-12Hz-1.7B-VoiceDesign", ModelKind::VoiceDesign, true),
    ] {
        let ck = SyntheticCheckpoint::from_variant(variant);
        let opened = Checkpoint::open(ck.dir()).unwrap_or_else(|e| panic!("{variant}: {e}"));
        assert_eq!(opened.config.kind(), kind, "{variant}");
        assert_eq!(
            opened.weights.contains("talker.code_predictor.small_to_mtp_projection.weight"),
            projection,
            "{variant}"
        );
        assert_eq!(opened.weights.contains("speaker_encoder.fc.weight"), kind == ModelKind::Base, "{variant}");
    }
}

#[test]
fn extra_tensors_are_ignored() {
    let ck = SyntheticCheckpoint::new();
    ck.rewrite_tensors(&ck.model_path(), |t| {
        t.insert("talker.unused.weight".into(), RawTensor { dtype: Dtype::BF16, shape: vec![2], data: vec![0; 4] });
    });
    let opened = Checkpoint::open(ck.dir()).unwrap();
    assert!(opened.weights.contains("talker.unused.weight"));
}

#[test]
fn missing_directory() {
    let tmp = TempDir::new("missing");
    let dir = tmp.path().join("no-such-model");
    expect_error(&dir, ErrorKind::NotFound, &["model directory", "no-such-model", "not found"]);
}

#[test]
fn missing_config_json() {
    let ck = SyntheticCheckpoint::new();
    ck.remove("config.json");
    expect_error(ck.dir(), ErrorKind::NotFound, &["config.json", "not found"]);
}

#[test]
fn missing_model_safetensors() {
    let ck = SyntheticCheckpoint::new();
    ck.remove("model.safetensors");
    expect_error(ck.dir(), ErrorKind::NotFound, &["model.safetensors", "not found"]);
}

#[test]
fn missing_speech_tokenizer_weights() {
    let ck = SyntheticCheckpoint::new();
    ck.remove("speech_tokenizer/model.safetensors");
    expect_error(ck.dir(), ErrorKind::NotFound, &["speech_tokenizer", "model.safetensors", "not found"]);
}

#[test]
fn malformed_config_json() {
    let ck = SyntheticCheckpoint::new();
    ck.write_config_text("{\"talker_config\": {\"hidden_size\": 32,");
    expect_error(ck.dir(), ErrorKind::BadConfig, &["config.json", "not valid JSON", "line 1"]);
}

#[test]
fn wrongly_typed_config_value() {
    let ck = SyntheticCheckpoint::new();
    ck.edit_config(|c| c["talker_config"]["hidden_size"] = json!("big"));
    expect_error(
        ck.dir(),
        ErrorKind::BadConfig,
        &["config.json", "talker_config.hidden_size", "invalid type: string \"big\""],
    );
}

#[test]
fn missing_config_key() {
    let ck = SyntheticCheckpoint::new();
    ck.edit_config(|c| {
        c["talker_config"]["code_predictor_config"].as_object_mut().unwrap().remove("num_hidden_layers");
    });
    expect_error(
        ck.dir(),
        ErrorKind::BadConfig,
        &["config.json", "missing required key `talker_config.code_predictor_config.num_hidden_layers`"],
    );
}

#[test]
fn impossible_config_value() {
    let ck = SyntheticCheckpoint::new();
    ck.edit_config(|c| c["talker_config"]["num_key_value_heads"] = json!(3));
    expect_error(ck.dir(), ErrorKind::BadConfig, &["config.json", "num_attention_heads (4) is not a multiple of"]);
}

#[test]
fn unknown_model_type() {
    let ck = SyntheticCheckpoint::new();
    ck.edit_config(|c| c["tts_model_type"] = json!("voice_clone_v9"));
    expect_error(ck.dir(), ErrorKind::BadConfig, &["tts_model_type", "voice_clone_v9"]);
}

#[test]
fn file_shorter_than_prefix() {
    let ck = SyntheticCheckpoint::new();
    std::fs::write(ck.model_path(), [1u8, 2, 3]).unwrap();
    expect_error(ck.dir(), ErrorKind::BadWeights, &["model.safetensors", "3 bytes long", "8-byte"]);
}

#[test]
fn header_length_past_end_of_file() {
    let ck = SyntheticCheckpoint::new();
    let len = std::fs::metadata(ck.model_path()).unwrap().len();
    ck.set_header_len(&ck.model_path(), len);
    expect_error(
        ck.dir(),
        ErrorKind::BadWeights,
        &["model.safetensors", &format!("header length field says {len} bytes")],
    );
}

#[test]
fn header_not_json() {
    let ck = SyntheticCheckpoint::new();
    let mut bytes = std::fs::read(ck.model_path()).unwrap();
    bytes[8..14].copy_from_slice(b"{oops:");
    std::fs::write(ck.model_path(), bytes).unwrap();
    expect_error(ck.dir(), ErrorKind::BadWeights, &["model.safetensors", "header is not valid JSON"]);
}

#[test]
fn header_not_utf8() {
    let ck = SyntheticCheckpoint::new();
    let mut bytes = std::fs::read(ck.model_path()).unwrap();
    bytes[10] = 0xff;
    std::fs::write(ck.model_path(), bytes).unwrap();
    expect_error(ck.dir(), ErrorKind::BadWeights, &["model.safetensors", "header is not valid UTF-8"]);
}

#[test]
fn overlapping_offsets() {
    let ck = SyntheticCheckpoint::new();
    let (a, b) = ck.overlap_offsets(&ck.model_path());
    let msg = expect_error(ck.dir(), ErrorKind::BadWeights, &["model.safetensors", "overlap"]);
    assert!(msg.contains(&a) && msg.contains(&b), "both tensors named: {msg}");
}

#[test]
fn out_of_range_offsets() {
    let ck = SyntheticCheckpoint::new();
    let tensor = "decoder.pre_conv.conv.bias";
    ck.offsets_out_of_range(&ck.speech_model_path(), tensor);
    expect_error(
        ck.dir(),
        ErrorKind::BadWeights,
        &["speech_tokenizer", "model.safetensors", tensor, "outside the data section"],
    );
}

#[test]
fn unknown_dtype() {
    let ck = SyntheticCheckpoint::new();
    let tensor = "talker.model.norm.weight";
    ck.set_dtype(&ck.model_path(), tensor, "F8_FOO");
    expect_error(ck.dir(), ErrorKind::BadWeights, &["model.safetensors", tensor, "unknown dtype \"F8_FOO\""]);
}

#[test]
fn unsupported_dtype() {
    let ck = SyntheticCheckpoint::new();
    let tensor = "talker.model.norm.weight";
    ck.rewrite_tensors(&ck.model_path(), |t| {
        let raw = t.get_mut(tensor).unwrap();
        raw.dtype = Dtype::I64;
        raw.data = vec![0; raw.shape.iter().product::<usize>() * 8];
    });
    expect_error(ck.dir(), ErrorKind::BadWeights, &["model.safetensors", tensor, "dtype I64", "does not read"]);
}

#[test]
fn byte_length_inconsistent_with_shape() {
    let ck = SyntheticCheckpoint::new();
    let tensor = "talker.codec_head.weight";
    ck.edit_header(&ck.model_path(), |h| h.get_mut(tensor).unwrap()["shape"] = json!([3072, 31]));
    expect_error(
        ck.dir(),
        ErrorKind::BadWeights,
        &["model.safetensors", tensor, "[3072, 31]", "need 190464 bytes", "span 196608 bytes"],
    );
}

#[test]
fn missing_tensor() {
    let ck = SyntheticCheckpoint::new();
    let tensor = "talker.code_predictor.lm_head.7.weight";
    ck.drop_tensor(&ck.model_path(), tensor);
    expect_error(ck.dir(), ErrorKind::MissingTensor, &["model.safetensors", tensor, "missing", "[2048, 32]"]);
}

#[test]
fn many_missing_tensors_are_summarised() {
    let ck = SyntheticCheckpoint::new();
    ck.rewrite_tensors(&ck.model_path(), |t| t.retain(|name, _| !name.starts_with("speaker_encoder.blocks.1.")));
    let msg = expect_error(ck.dir(), ErrorKind::MissingTensor, &["22 tensor problems", "and 17 more"]);
    assert!(msg.len() < 1500, "no flood: {msg}");
}

#[test]
fn wrong_shape() {
    let ck = SyntheticCheckpoint::new();
    let tensor = "encoder.downsample.conv.weight";
    ck.set_shape(&ck.speech_model_path(), tensor, &[32, 32, 3]);
    expect_error(
        ck.dir(),
        ErrorKind::ShapeMismatch,
        &["speech_tokenizer", tensor, "has shape [32, 32, 3], expected [32, 32, 4]"],
    );
}

#[test]
fn truncated_inside_a_tensor() {
    let ck = SyntheticCheckpoint::new();
    let tensor = ck.truncate_inside_last_tensor(&ck.model_path());
    expect_error(ck.dir(), ErrorKind::BadWeights, &["model.safetensors", "truncated", &tensor]);
}

#[test]
fn codec_and_talker_disagree() {
    let ck = SyntheticCheckpoint::new();
    let path = ck.dir().join("speech_tokenizer/config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["decoder_config"]["codebook_size"] = json!(1024);
    cfg["encoder_config"]["codebook_size"] = json!(1024);
    std::fs::write(&path, cfg.to_string()).unwrap();
    expect_error(ck.dir(), ErrorKind::BadConfig, &["disagree", "decoder_config.codebook_size is 1024"]);
}

#[test]
fn safetensors_file_api() {
    let ck = SyntheticCheckpoint::new();
    let file = SafeTensorsFile::open(&ck.speech_model_path()).unwrap();
    assert!(!file.is_empty());
    let err = file.get("no.such.tensor").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingTensor);
    assert!(err.message().contains("no.such.tensor"), "{err}");
    let err = file.require("encoder.downsample.conv.weight", &[1, 2]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ShapeMismatch);
    let names: Vec<&str> = file.names().collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted names");
    let total: u64 = names.iter().map(|n| file.get(n).unwrap().bytes.len() as u64).sum();
    assert_eq!(total, file.data_bytes());
}

#[cfg(unix)]
#[test]
fn non_utf8_directory_name_loads() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let ck = SyntheticCheckpoint::new();
    let dir = ck.copy_as(OsStr::from_bytes(b"model-\xff\xfe"));
    assert!(dir.to_str().is_none(), "the path really is not UTF-8");
    let model = Model::load(&dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.dir(), dir.as_path());

    // Errors on such paths still render (lossily) instead of failing.
    std::fs::remove_file(dir.join("config.json")).unwrap();
    expect_error(&dir, ErrorKind::NotFound, &["model-\u{fffd}", "config.json"]);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_the_cuda_feature_is_unsupported() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-base");
    let options = LoadOptions { device: qwentts::Device::Cuda(0), ..Default::default() };
    let err = match Model::load(&dir, &options) {
        Ok(_) => panic!("a CUDA device in a build without CUDA must fail"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("cuda"), "{err}");
}

/// Files that are not regular files (a symlink to /dev/zero, a FIFO) in place of a config,
/// a tokenizer file or the weights are refused at once: nothing is read until memory runs out,
/// nothing blocks in `open` (issue 11, item 3).
#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_in_place_of_checkpoint_files() {
    use std::os::unix::fs::symlink;
    let mkfifo = |path: &Path| {
        let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
    };
    for file in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "speech_tokenizer/config.json",
        "speech_tokenizer/model.safetensors",
        "vocab.json",
        "merges.txt",
    ] {
        for special in ["zero", "urandom", "fifo"] {
            let ck = SyntheticCheckpoint::new();
            let path = ck.dir().join(file);
            std::fs::remove_file(&path).unwrap();
            match special {
                "fifo" => mkfifo(&path),
                dev => symlink(format!("/dev/{dev}"), &path).unwrap(),
            }
            let err = Model::load(ck.dir(), &LoadOptions::default()).err().unwrap_or_else(|| panic!("{file} as {special} loaded"));
            assert_eq!(err.kind(), ErrorKind::Io, "{file} as {special}: {err}");
            assert!(err.message().contains("not a regular file"), "{file} as {special}: {err}");
        }
    }
    // An oversized config is refused from its size, before it is parsed.
    let ck = SyntheticCheckpoint::new();
    let f = std::fs::File::options().append(true).open(ck.config_path()).unwrap();
    f.set_len(qwentts::model::config::MAX_CONFIG_BYTES + 1).unwrap();
    let err = Model::load(ck.dir(), &LoadOptions::default()).err().expect("a 16 MiB config loaded");
    assert_eq!(err.kind(), ErrorKind::BadConfig, "{err}");
    assert!(err.message().contains("too large for a configuration file"), "{err}");
}

/// Counts that size the expected-tensor list are bounded before it is built: a billion layers
/// in a config is a clean BadConfig, not an allocation that takes the process down (issue 11,
/// item 2). The same for the codec's stacks in speech_tokenizer/config.json.
#[test]
fn huge_counts_in_configs_are_refused_before_anything_is_sized_from_them() {
    for (key, want) in [
        (&["talker_config", "num_hidden_layers"][..], "talker_config.num_hidden_layers is 1000000000"),
        (&["talker_config", "code_predictor_config", "num_hidden_layers"][..], "num_hidden_layers is 1000000000"),
        (&["talker_config", "num_code_groups"][..], "num_code_groups is 1000000000"),
    ] {
        let ck = SyntheticCheckpoint::new();
        ck.edit_config(|c| {
            let mut v = &mut *c;
            for k in key {
                v = &mut v[*k];
            }
            *v = json!(1_000_000_000u64);
        });
        let message = expect_error(ck.dir(), ErrorKind::BadConfig, &[want]);
        assert!(message.contains("at most"), "{message}");
    }
    for (section, field) in [("encoder_config", "num_hidden_layers"), ("decoder_config", "num_hidden_layers"), ("encoder_config", "num_quantizers")] {
        let ck = SyntheticCheckpoint::new();
        let path = ck.dir().join("speech_tokenizer/config.json");
        let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        value[section][field] = json!(1_000_000_000u64);
        std::fs::write(&path, serde_json::to_string(&value).unwrap()).unwrap();
        expect_error(ck.dir(), ErrorKind::BadConfig, &[&format!("{section}.{field} is 1000000000"), "at most"]);
    }
}

/// The codec encoder's residual blocks take `width / compress` channels rounded down, as the
/// official `MimiResnetBlock` does (`dim // compress`): a config whose widths are not
/// divisible by `compress` loads and clones a voice (issue 11, item 9). Compress 3 over the
/// shrunk widths 4, 8, 16, 32 gives inner widths 1, 2, 5, 10; compress 5 gives a first block
/// of zero channels (its output is the second conv's bias alone, as in PyTorch).
#[test]
fn encoder_widths_not_divisible_by_compress_load_and_encode() {
    use qwentts::model::SpeechTokenizerConfig;
    use qwentts::model::manifest::speech_tokenizer_tensors;
    for compress in [3usize, 5] {
        let ck = SyntheticCheckpoint::new();
        let path = ck.dir().join("speech_tokenizer/config.json");
        let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        value["encoder_config"]["compress"] = json!(compress);
        let text = serde_json::to_string(&value).unwrap();
        std::fs::write(&path, &text).unwrap();
        let cfg = SpeechTokenizerConfig::from_json_str(&text).unwrap();
        let specs = speech_tokenizer_tensors(&cfg);
        let inner = specs.iter().find(|s| s.name.ends_with("encoder.layers.1.block.1.conv.weight")).unwrap();
        assert_eq!(inner.shape[0], 4 / compress, "compress {compress}: {inner:?}");
        ck.rewrite_tensors(&ck.speech_model_path(), |t| *t = support::random_tensors(&specs, Dtype::F32));
        let model = Model::load(ck.dir(), &LoadOptions::default()).unwrap_or_else(|e| panic!("compress {compress}: {e}"));
        let samples: Vec<f32> = (0..24_000 * 2).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let voice = model
            .clone_voice_from_pcm(&samples, 1, 24_000, Some("A short reference."))
            .unwrap_or_else(|e| panic!("compress {compress}: {e}"));
        let codes = &voice.reference().expect("an in-context voice").codes;
        assert_eq!(codes.len() % 16, 0);
        assert!(codes.len() >= 16 * 24, "compress {compress}: {} codes for 2 s", codes.len());
    }
}
