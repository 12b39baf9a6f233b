//! The loader's idea of each released checkpoint equals the real one.
//!
//! For all five checkpoints in `shared/checkpoints/`: the configs parse and validate, the
//! tensor set implied by the configs equals the exact manifest of the released files
//! (`tensors.json`, `speech_tokenizer/tensors.json`; names and shapes), and the derived facts
//! (kind, size label, languages, speakers) are right.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use qwentts::ModelKind;
use qwentts::model::config::{GenerationConfig, ModelConfig, SpeechTokenizerConfig};
use qwentts::model::manifest::{TensorSpec, main_model_tensors, speech_tokenizer_tensors};
use serde_json::Value;
use support::{CHECKPOINTS, checkpoint_meta_dir};

/// (name, shape) pairs of a `tensors.json`, with the dtype every entry must have.
fn released_manifest(path: &Path, dtype: &str) -> BTreeSet<(String, Vec<usize>)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap();
    let tensors = json["tensors"].as_object().expect("`tensors` object");
    assert_eq!(json["count"].as_u64(), Some(tensors.len() as u64), "{}: count", path.display());
    tensors
        .iter()
        .map(|(name, info)| {
            assert_eq!(info["dtype"], dtype, "{}: dtype of {name}", path.display());
            let shape = info["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (name.clone(), shape)
        })
        .collect()
}

/// Asserts set equality, printing the symmetric difference.
fn assert_same(what: &str, ours: &[TensorSpec], released: &BTreeSet<(String, Vec<usize>)>) {
    let ours_set: BTreeSet<(String, Vec<usize>)> = ours.iter().map(|s| (s.name.clone(), s.shape.clone())).collect();
    assert_eq!(ours_set.len(), ours.len(), "{what}: the manifest lists a tensor twice");
    if &ours_set != released {
        let only_ours: Vec<_> = ours_set.difference(released).collect();
        let only_released: Vec<_> = released.difference(&ours_set).collect();
        panic!(
            "{what}: manifest differs from the released tensors\n  only in ours ({}):\n    {}\n  only in the release ({}):\n    {}",
            only_ours.len(),
            only_ours.iter().map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>().join("\n    "),
            only_released.len(),
            only_released.iter().map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>().join("\n    "),
        );
    }
}

#[test]
fn main_model_manifest_matches_every_release() {
    for name in CHECKPOINTS {
        let dir = checkpoint_meta_dir(name);
        let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let released = released_manifest(&dir.join("tensors.json"), "BF16");
        assert_same(&format!("{name}/model.safetensors"), &main_model_tensors(&cfg), &released);
    }
}

#[test]
fn speech_tokenizer_manifest_matches_every_release() {
    for name in CHECKPOINTS {
        let dir = checkpoint_meta_dir(name).join("speech_tokenizer");
        let cfg = SpeechTokenizerConfig::from_file(&dir.join("config.json")).unwrap_or_else(|e| panic!("{name}: {e}"));
        let released = released_manifest(&dir.join("tensors.json"), "F32");
        assert_same(&format!("{name}/speech_tokenizer/model.safetensors"), &speech_tokenizer_tensors(&cfg), &released);
    }
}

#[test]
fn variant_facts() {
    let ten: Vec<&str> = vec![
        "auto",
        "chinese",
        "english",
        "french",
        "german",
        "italian",
        "japanese",
        "korean",
        "portuguese",
        "russian",
        "spanish",
    ];
    let nine = vec!["aiden", "dylan", "eric", "ono_anna", "ryan", "serena", "sohee", "uncle_fu", "vivian"];
    let none: Vec<&str> = vec![];
    let cases = [
        ("Qwen3-TTS-12Hz-0.6B-Base", ModelKind::Base, "0.6B", 1024, &none),
        ("Qwen3-TTS-12Hz-0.6B-CustomVoice", ModelKind::CustomVoice, "0.6B", 1024, &nine),
        ("Qwen3-TTS-12Hz-1.7B-Base", ModelKind::Base, "1.7B", 2048, &none),
        ("Qwen3-TTS-12Hz-1.7B-CustomVoice", ModelKind::CustomVoice, "1.7B", 2048, &nine),
        ("Qwen3-TTS-12Hz-1.7B-VoiceDesign", ModelKind::VoiceDesign, "1.7B", 2048, &none),
    ];
    for (name, kind, size, hidden, speakers) in cases {
        let dir = checkpoint_meta_dir(name);
        let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        assert_eq!(cfg.kind(), kind, "{name}");
        assert_eq!(cfg.size_label(), size, "{name}");
        // Dialect entries (CustomVoice) are reached through speakers, not listed as languages.
        assert_eq!(cfg.languages(), ten, "{name}");
        assert_eq!(&cfg.speakers(), speakers, "{name}");

        let t = &cfg.talker_config;
        assert_eq!(t.hidden_size, hidden, "{name}");
        assert_eq!((t.num_hidden_layers, t.num_code_groups, t.head_dim()), (28, 16, 128), "{name}");
        assert_eq!(t.code_predictor_config.num_hidden_layers, 5, "{name}");
        assert_eq!(t.codec_eos_token_id, 2150, "{name}");
        assert_eq!(cfg.tts_pad_token_id, 151671, "{name}");
        if kind == ModelKind::CustomVoice {
            assert_eq!(t.speaker_dialect("eric"), Some("sichuan_dialect"), "{name}");
            assert_eq!(t.speaker_dialect("dylan"), Some("beijing_dialect"), "{name}");
            assert_eq!(t.speaker_dialect("vivian"), None, "{name}");
            assert_eq!(t.spk_id["serena"], 3066, "{name}");
            assert_eq!(t.codec_language_id.len(), 12, "{name}");
        }
        if kind == ModelKind::Base {
            assert_eq!(cfg.speaker_encoder_config.enc_dim, hidden, "{name}");
        }

        let generation = GenerationConfig::from_file(&dir.join("generation_config.json")).unwrap();
        assert!(generation.do_sample && generation.subtalker_dosample, "{name}");
        assert_eq!((generation.top_k, generation.max_new_tokens), (50, 8192), "{name}");
        assert_eq!((generation.temperature, generation.repetition_penalty), (0.9, 1.05), "{name}");

        let speech = SpeechTokenizerConfig::from_file(&dir.join("speech_tokenizer/config.json")).unwrap();
        assert_eq!(speech.frame_rate(), 12.5, "{name}");
        assert_eq!(speech.output_sample_rate, 24000, "{name}");
        assert_eq!(speech.encoder_config.frame_rate(), 12.5, "{name}");
        assert_eq!(speech.encoder_config.downsample_kernel(), Some(4), "{name}");
    }
}

#[test]
fn missing_generation_keys_take_wrapper_defaults() {
    let tmp = support::TempDir::new("gen");
    let path = tmp.path().join("generation_config.json");
    fs::write(&path, r#"{"top_k": 20}"#).unwrap();
    let g = GenerationConfig::from_file(&path).unwrap();
    assert_eq!(g.top_k, 20);
    assert_eq!(g.max_new_tokens, 2048, "wrapper hard default, not the file's 8192");
    assert_eq!(GenerationConfig { top_k: 50, ..g }, GenerationConfig::default());
}
