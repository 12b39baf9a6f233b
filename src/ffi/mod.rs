//! The C ABI: every `qt_*` symbol the shared library exports, and nothing else.
//!
//! This module is a thin, mechanical shim over [`crate::api`]. Every export does four things:
//! enter the boundary guard ([`boundary::guard`]: catches panics, clears and sets the
//! thread-local last error), validate and borrow its arguments (NULL, UTF-8, struct sizes,
//! integer enums, object tags), call the safe API, and turn the `Result` into a
//! [`qt_status`] plus an out-parameter written only on success.
//!
//! `include/qwentts.h` is generated from this module alone by cbindgen (see `build.rs`), so
//! the rustdoc on every export *is* the C documentation: each says what the function does,
//! who owns what, which threads may call it, and what it returns.
//!
//! Files, one job each:
//!
//! | file          | job                                                                      |
//! |---------------|--------------------------------------------------------------------------|
//! | `status.rs`   | `qt_status` values, `ErrorKind` → status table, thread-local last error  |
//! | `boundary.rs` | the guard and the argument converters (NULL, strings, paths, sizes)      |
//! | `types.rs`    | `#[repr(C)]` params/info structs and their integer constants             |
//! | `handle.rs`   | the type tag every object starts with, the live-object registry, `qt_free` |
//! | `library.rs`  | versions, build information, CUDA device count                           |
//! | `log.rs`      | the `log` facade bridged to one process-global C callback                |
//! | `model.rs`    | `qt_load` and the model accessors                                        |
//! | `voice.rs`    | `qt_voice`: cloning, built-in speakers, x-vectors, save/load/serialize   |
//! | `audio.rs`    | `qt_audio`: the generated utterance, its accessors, WAV output           |
//! | `generate.rs` | `qt_generate`, `qt_gen_params_default`, the chunk and abort callbacks    |
//!
//! Internal items are `pub(crate)`: cbindgen turns every `pub const` it sees into a `#define`,
//! so only the `qt_*`/`QT_*` names that belong in the header are `pub`.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// The C names are the Rust names (rustls-ffi style), so `grep qt_model` finds both sides.
#![allow(non_camel_case_types)]
// The pointer contract of each `unsafe extern "C" fn` (arguments, ownership, threads) is written in
// its doc as prose for the generated C header, not under a Markdown `# Safety` heading.
#![allow(clippy::missing_safety_doc)]

// Declaration order is header order (cbindgen keeps parse order); one module per paragraph, so
// that rustfmt does not sort them.
//
// Statuses and the last error come first,
pub mod status;

// then the structs and the constants their fields take,
pub mod types;

// versions,
pub mod library;

// logging,
pub mod log;

// objects and qt_free,
pub mod handle;

// the model,
pub mod model;

// voices,
pub mod voice;

// generated audio,
pub mod audio;

// and generation.
pub mod generate;

/// `qt_stream`: a generation read without blocking from a real-time audio callback.
pub mod stream;

// The boundary helpers export nothing.
pub mod boundary;

pub use handle::qt_free;
pub use library::{QT_ABI_VERSION, qt_abi_version, qt_build_info, qt_device_count, qt_version};
pub use log::{
    QT_LOG_DEBUG, QT_LOG_ERROR, QT_LOG_INFO, QT_LOG_OFF, QT_LOG_TRACE, QT_LOG_WARN, qt_log_cb, qt_log_set,
    qt_log_set_level,
};
pub use audio::{qt_audio, qt_audio_get_info, qt_audio_samples, qt_audio_write_wav};
pub use generate::{qt_gen_params_default, qt_generate};
pub use stream::{qt_stream, qt_stream_cancel, qt_stream_get_info, qt_stream_read, qt_stream_result, qt_stream_start};
pub use model::{qt_load, qt_model, qt_model_get_info, qt_model_language, qt_model_params_default, qt_model_speaker};
pub use voice::{
    qt_clone_params_default, qt_clone_voice, qt_clone_voice_from_file, qt_voice, qt_voice_deserialize,
    qt_voice_embedding, qt_voice_from_description, qt_voice_from_embedding, qt_voice_from_speaker, qt_voice_get_info,
    qt_voice_load, qt_voice_save, qt_voice_serialize,
};
pub use status::*;
pub use types::*;
