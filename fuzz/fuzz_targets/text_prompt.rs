//! Text input as a request carries it: text, language, speaker, instruction, reference
//! transcript, through the real Qwen tokenizer and the prompt planner (`plan_request`) of the
//! tiny Base and CustomVoice fixtures. Byte 0 picks the voice kind and the streaming mode,
//! byte 1 the reference frame count; the rest is four NUL-separated strings. A request that
//! plans must reference only frames it has and text ids inside the vocabulary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qwentts::model::prompt::{PromptRequest, Voice, plan_request};
use qwentts_fuzz::{split_parts, tiny_base, tiny_customvoice};

fuzz_target!(|data: &[u8]| {
    let [flags, frames, rest @ ..] = data else { return };
    let parts = split_parts(rest, b"\0", 4);
    let Ok(strings) = parts.iter().map(|p| std::str::from_utf8(p)).collect::<Result<Vec<_>, _>>() else { return };
    let [text, language, extra, instruct] = strings[..] else { unreachable!("split_parts gives 4 parts") };
    let ref_frames = usize::from(*frames);
    let (model, voice) = match flags % 4 {
        0 => (tiny_base(), Voice::XVector),
        1 => (tiny_base(), Voice::Icl { ref_text: extra, ref_frames }),
        2 => (tiny_customvoice(), Voice::Speaker { name: extra, instruct: Some(instruct).filter(|i| !i.is_empty()) }),
        // No VoiceDesign fixture exists; a CustomVoice request without a speaker row (an
        // empty name) carries an instruction the same way.
        _ => (tiny_customvoice(), Voice::Speaker { name: "", instruct: Some(instruct) }),
    };
    let request = PromptRequest { text, language, voice, non_streaming_mode: flags & 4 != 0 };
    let config = &model.checkpoint().config;
    let Ok((plan, ids)) = plan_request(config, model.tokenizer(), &request) else { return };
    assert!(!plan.is_empty());
    if let Voice::Icl { ref_frames, .. } = voice {
        assert!(plan.ref_frames() <= ref_frames, "plan uses {} of {ref_frames} frames", plan.ref_frames());
    }
    let vocab = model.tokenizer().vocab_size();
    for id in ids.text_ids.iter().chain(ids.ref_ids.iter().flatten()).chain(ids.instruct_ids.iter().flatten()) {
        assert!((*id as usize) < vocab, "text id {id} outside the vocabulary");
    }
});
