//! The `#[repr(C)]` structs of the C API and the integer constants their fields take.
//!
//! Conventions (header preamble, "Structs"): every struct starts with `uint32_t struct_size` and
//! only grows at the end; fields that hold a choice are `int32_t` with `QT_*` constants (never a
//! C enum, whose size is up to the compiler, and never `bool`, which C# marshals as 4 bytes);
//! the library validates every value it reads.

use std::ffi::c_char;
use std::mem::offset_of;

use super::boundary::SizedStruct;
use crate::api::ModelKind;
use crate::error::{Error, Result};

/// `qt_model_params.device` / `qt_model_info.device`: the CPU reference backend.
pub const QT_DEVICE_CPU: i32 = -1;

/// `qt_model_info.kind`: a Base checkpoint (clones voices from reference audio).
pub const QT_MODEL_BASE: i32 = 1;
/// `qt_model_info.kind`: a CustomVoice checkpoint (built-in speakers, see `qt_model_speaker`).
pub const QT_MODEL_CUSTOM_VOICE: i32 = 2;
/// `qt_model_info.kind`: a VoiceDesign checkpoint (voice described by an instruction text).
pub const QT_MODEL_VOICE_DESIGN: i32 = 3;

/// Options for `qt_load`. Fill it with `qt_model_params_default(&p, sizeof p)`, change what you
/// need, and pass a pointer; passing NULL to `qt_load` means "all defaults".
///
/// The library reads only the first `struct_size` bytes, so a program built against an older
/// header keeps working with a newer library (later fields take their defaults).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct qt_model_params {
    /// Size of this struct as the caller knows it: `sizeof(qt_model_params)`. Set by
    /// `qt_model_params_default`.
    pub struct_size: u32,
    /// Where the model runs: `QT_DEVICE_CPU` (-1, the default) or a CUDA device ordinal (>= 0).
    /// This build has only the CPU backend; an ordinal returns `QT_STATUS_UNSUPPORTED`.
    pub device: i32,
}

impl Default for qt_model_params {
    fn default() -> Self {
        qt_model_params { struct_size: size_of::<Self>() as u32, device: QT_DEVICE_CPU }
    }
}

// SAFETY: repr(C), u32 struct_size first, integer fields only, no padding (asserted below).
unsafe impl SizedStruct for qt_model_params {
    const NAME: &'static str = "qt_model_params";
    // v1 ends after `device`. Append a size when a field is added; never edit an entry.
    const LAYOUT_SIZES: &'static [usize] = &[offset_of!(qt_model_params, device) + 4];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

/// Facts about a loaded model, filled by `qt_model_get_info`. Set `struct_size` to
/// `sizeof(qt_model_info)` before the call; the library fills the fields that fit and sets
/// `struct_size` to the number of bytes it wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct qt_model_info {
    /// In: the caller's `sizeof(qt_model_info)`. Out: the bytes the library filled.
    pub struct_size: u32,
    /// `QT_MODEL_BASE`, `QT_MODEL_CUSTOM_VOICE` or `QT_MODEL_VOICE_DESIGN`. Compare with the
    /// constants; a future library may report a kind this header does not name.
    pub kind: i32,
    /// Size label of the checkpoint, e.g. "0.6B" or "1.7B". Owned by the model: valid until the
    /// model is freed.
    pub size_label: *const c_char,
    /// Output sample rate in Hz (24000).
    pub sample_rate: i32,
    /// Codec frames per second (12.5; one frame is 80 ms of audio).
    pub frame_rate: f32,
    /// Codebooks per codec frame (16).
    pub n_codebooks: i32,
    /// Talker hidden width (1024 for 0.6B, 2048 for 1.7B).
    pub talker_hidden_size: i32,
    /// Talker decoder layers.
    pub talker_layers: i32,
    /// Code-predictor decoder layers.
    pub code_predictor_layers: i32,
    /// 1 if voices can be cloned from reference audio with this model (Base), else 0.
    pub can_clone: i32,
    /// Where the model runs: `QT_DEVICE_CPU` or a CUDA ordinal.
    pub device: i32,
    /// Number of supported languages; names via `qt_model_language(model, i, &name)`.
    pub n_languages: usize,
    /// Number of built-in speakers (CustomVoice; 0 otherwise); names via `qt_model_speaker`.
    pub n_speakers: usize,
    /// Tensors in the checkpoint's weight files.
    pub tensor_count: u64,
    /// Bytes of tensor data in the checkpoint's weight files.
    pub weight_bytes: u64,
}

// SAFETY: repr(C), u32 struct_size first, integer/float/pointer fields only, no padding before
// the end of v1 (asserted below).
unsafe impl SizedStruct for qt_model_info {
    const NAME: &'static str = "qt_model_info";
    // v1 ends after `weight_bytes`. Append a size when a field is added; never edit an entry.
    const LAYOUT_SIZES: &'static [usize] = &[offset_of!(qt_model_info, weight_bytes) + 8];
    fn set_struct_size(&mut self, size: u32) {
        self.struct_size = size;
    }
}

// The layouts are fixed ABI: no hidden padding (every byte is a field), sizes as published.
const _: () = {
    assert!(size_of::<qt_model_params>() == 8);
    assert!(offset_of!(qt_model_info, size_label) == 8);
    assert!(offset_of!(qt_model_info, n_languages) == 8 + size_of::<usize>() + 8 * 4);
    assert!(size_of::<qt_model_info>() == offset_of!(qt_model_info, weight_bytes) + 8);
};

/// The execution device a `device` field selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Device {
    Cpu,
}

impl Device {
    /// Validates a C `device` value.
    pub(crate) fn from_c(device: i32) -> Result<Device> {
        match device {
            QT_DEVICE_CPU => Ok(Device::Cpu),
            d if d >= 0 => Err(Error::unsupported(format!(
                "device {d} is a CUDA device, but the CUDA backend is not built yet; \
                 use QT_DEVICE_CPU ({QT_DEVICE_CPU})"
            ))),
            d => Err(Error::invalid_argument(format!(
                "device {d} is not valid: use QT_DEVICE_CPU ({QT_DEVICE_CPU}) or a CUDA device ordinal >= 0"
            ))),
        }
    }

    pub(crate) fn to_c(self) -> i32 {
        match self {
            Device::Cpu => QT_DEVICE_CPU,
        }
    }
}

/// The `QT_MODEL_*` value of a model kind.
pub(crate) fn model_kind_to_c(kind: ModelKind) -> i32 {
    match kind {
        ModelKind::Base => QT_MODEL_BASE,
        ModelKind::CustomVoice => QT_MODEL_CUSTOM_VOICE,
        ModelKind::VoiceDesign => QT_MODEL_VOICE_DESIGN,
    }
}
