//! The three configuration files of a checkpoint. The first byte picks the file (0:
//! config.json, 1: speech_tokenizer/config.json, 2: generation_config.json), the rest is its
//! text. A configuration that validates must size its tensor manifest and its derived values
//! without a panic, an overflow or a runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qwentts::model::manifest::{main_model_tensors, speech_tokenizer_tensors};
use qwentts::model::{GenerationConfig, ModelConfig, SpeechTokenizerConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(json) else { return };
    match which % 3 {
        0 => {
            let Ok(config) = ModelConfig::from_json_str(text) else { return };
            if config.validate().is_err() {
                return;
            }
            let _ = (config.size_label(), config.languages(), config.speakers());
            let talker = &config.talker_config;
            let _ = (talker.head_dim(), talker.code_predictor_config.head_dim());
            for name in config.speakers() {
                let _ = talker.speaker_dialect(&name);
            }
            assert!(!main_model_tensors(&config).is_empty());
        }
        1 => {
            let Ok(config) = SpeechTokenizerConfig::from_json_str(text) else { return };
            if config.validate().is_err() {
                return;
            }
            let encoder = &config.encoder_config;
            let _ = (config.frame_rate(), config.decoder_config.head_dim());
            let _ = (encoder.head_dim(), encoder.codebook_dim(), encoder.conv_hop(), encoder.frame_rate());
            let _ = encoder.downsample_kernel();
            assert!(!speech_tokenizer_tensors(&config).is_empty());
        }
        _ => {
            let Ok(config) = GenerationConfig::from_json_str(text) else { return };
            let _ = config.validate();
        }
    }
});
