//! Saved voices (`Model::voice_from_bytes`) against the tiny Base and CustomVoice fixtures.
//! This build ignores the voice checksum (`cfg(fuzzing)`), so mutations reach the field
//! checks. A voice that loads must save to bytes that load as the same voice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qwentts_fuzz::{tiny_base, tiny_customvoice};

fuzz_target!(|data: &[u8]| {
    for model in [tiny_base(), tiny_customvoice()] {
        let Ok(voice) = model.voice_from_bytes(data) else { continue };
        let bytes = voice.to_bytes().expect("a loaded voice saves");
        assert_eq!(model.voice_from_bytes(&bytes).expect("a saved voice loads"), voice);
    }
});
