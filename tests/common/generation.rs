//! Generation helpers shared by the code-generation tests (CPU here, the CUDA megakernel in
//! cuda_megakernel.rs): the voices and options the greedy goldens were made with, and the
//! golden check itself.

use qwentts::{FinishReason, GenerateOptions, Model, Voice};
use serde_json::Value;

use super::{Golden, cases};

/// The fixed prompt item the greedy goldens were made with: speaker_base's x-vector, and
/// for ICL its reference codes and transcript.
pub fn base_voice(icl: bool) -> Voice {
    let speaker = Golden::open("speaker_base");
    let embedding = speaker.f32("spk_embedding").data;
    if icl {
        let codes = speaker.u32("ref_codes").data;
        let text = cases()["speaker"]["ref_text"].as_str().unwrap().to_owned();
        Voice::with_reference(embedding, codes, text).unwrap()
    } else {
        Voice::from_embedding(embedding).unwrap()
    }
}

/// Greedy options matching a golden case's `generate_kwargs` (max_new_tokens N → N−1 frames).
pub fn greedy_options(model: &Model, case: &Value) -> GenerateOptions {
    let mut options = GenerateOptions::defaults(model).greedy();
    options.language = case["languages"][0].as_str().unwrap().to_owned();
    options.non_streaming_mode = Some(case["non_streaming_mode"].as_bool().unwrap());
    let max_new_tokens = case["generate_kwargs"]["max_new_tokens"].as_u64().unwrap() as usize;
    options.max_frames = Some(max_new_tokens - 1);
    options
}

pub fn check_case(model: &Model, golden: &Golden, name: &str, case: &Value, voice: &Voice, options: &GenerateOptions) {
    let text = case["text"].as_str().unwrap();
    let out = model.generate_codes(voice, text, options, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = golden.u32(&format!("{name}.codes"));
    assert_eq!(out.frames(), expected.shape[0], "{name}: frame count");
    for f in 0..out.frames() {
        assert_eq!(out.frame(f), expected.index(f), "{name}: frame {f} differs");
    }
    let eos = case["eos_hit"].as_bool().unwrap();
    let want = if eos { FinishReason::Eos } else { FinishReason::FrameLimit };
    assert_eq!(out.finish, want, "{name}: finish reason");
}


/// Every greedy_base golden case (x-vector and ICL) on `model` (a tiny-base load).
pub fn check_base_goldens(model: &Model) {
    let golden = Golden::open("greedy_base");
    let all = cases();
    let cases = all["greedy_base"].as_object().unwrap();
    assert!(cases.len() >= 8, "expected the full greedy_base case list");
    for (name, case) in cases {
        let icl = case["icl_mode"][0].as_bool().unwrap();
        let voice = base_voice(icl);
        check_case(model, &golden, name, case, &voice, &greedy_options(model, case));
    }
}

/// Every greedy_customvoice golden case on `model` (a tiny-customvoice load).
pub fn check_customvoice_goldens(model: &Model) {
    let golden = Golden::open("greedy_customvoice");
    let all = cases();
    for (name, case) in all["greedy_customvoice"].as_object().unwrap() {
        let voice = Voice::speaker(case["speaker"].as_str().unwrap());
        let mut options = greedy_options(model, case);
        options.instruct = case["instruct"].as_str().map(str::to_owned);
        check_case(model, &golden, name, case, &voice, &options);
    }
}
