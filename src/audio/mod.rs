//! Audio input for voice cloning: decoding, channel mixing, resampling, validation, and the
//! speaker encoder's log-mel front end. CPU only, f32.
//!
//! * [`mod@decode`]: WAV (hound) and FLAC / Ogg Vorbis / MP3 (symphonia) → interleaved f32 PCM.
//! * [`mod@mix`]: channel average to mono (librosa `mono=True`).
//! * [`mod@resample`]: any rate → 24 kHz; 24 kHz passes through untouched. Not bit-exact with
//!   the reference's soxr_hq (see the module docs for where and how much they differ).
//! * [`mod@validate`]: finiteness, duration and silence rules with [`ReferenceLimits`].
//! * [`mod@reference`]: the pipeline tying these together, [`ReferenceAudio`].
//! * [`mod@mel`]: `mel_spectrogram` of the official implementation, [`MelFrontEnd`].
//!
//! Every rejection is an `ErrorKind::InvalidArgument` whose message names the input and the
//! rule it broke.

pub mod decode;
pub mod mel;
pub mod mix;
pub mod reference;
pub mod resample;
pub mod validate;

pub use decode::{DecodedAudio, decode};
pub use mel::{MelConfig, MelFrontEnd, MelSpectrogram};
pub use mix::downmix;
pub use reference::ReferenceAudio;
pub use resample::resample;
pub use validate::{MAX_REFERENCE_SECONDS, ReferenceLimits};

/// The sample rate of everything the models read and write (speaker encoder, codec).
pub const TARGET_SAMPLE_RATE: u32 = 24_000;
