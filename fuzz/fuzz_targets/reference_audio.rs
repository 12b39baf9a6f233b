//! Reference audio as cloning reads it: WAV, FLAC, Ogg Vorbis and MP3 decoding, downmix,
//! resampling and validation (`ReferenceAudio::from_bytes`), with the shortest-duration rule
//! relaxed so that short inputs reach the resampler. Accepted audio is finite, 24 kHz mono,
//! and within the duration limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qwentts::audio::{ReferenceAudio, ReferenceLimits, TARGET_SAMPLE_RATE};

fuzz_target!(|data: &[u8]| {
    let limits = ReferenceLimits { min_seconds: 1e-3, ..ReferenceLimits::default() };
    let Ok(audio) = ReferenceAudio::from_bytes(data, &limits) else { return };
    assert_eq!(audio.sample_rate(), TARGET_SAMPLE_RATE);
    assert!(audio.samples().iter().all(|s| s.is_finite()), "finite samples");
    // The resampler may add a sample of rounding at either end.
    assert!(audio.seconds() <= limits.max_seconds + 1e-3, "{} s accepted", audio.seconds());
});
