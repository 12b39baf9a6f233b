//! `qt_model`: loading a checkpoint and reading what it is.

use std::ffi::{CString, c_char};
use std::time::Instant;

use super::boundary::{guard, out_arg, path_arg, read_sized, sized_len, sized_out_arg, write_sized};
use super::handle::{Handle, TAG_MODEL, borrow, into_raw};
use super::status::{qt_status, to_cstring_lossy};
use super::types::{Device, engine_from_c, model_kind_to_c, qt_model_info, qt_model_params};
use crate::api::{LoadOptions, Model, ModelInfo};
use crate::error::{Error, Result};

/// A loaded Qwen3-TTS checkpoint: configuration, weights and tokenizer. Created by `qt_load`,
/// released by `qt_free`.
///
/// Threads: immutable once loaded; any number of threads may use one model at the same time.
pub struct qt_model {
    _opaque: [u8; 0],
}

/// What a `qt_model*` points to (behind its type tag): the model and the C strings its
/// accessors hand out, which live exactly as long as the object.
pub(crate) struct ModelObject {
    model: Model,
    info: ModelInfo,
    device: Device,
    size_label: CString,
    languages: Vec<CString>,
    speakers: Vec<CString>,
}

// SAFETY: TAG_MODEL is unique and named in tag_name; qt_model pointers come only from into_raw.
unsafe impl Handle for qt_model {
    type Value = ModelObject;
    const TAG: u64 = TAG_MODEL;
    const TYPE_NAME: &'static str = "qt_model";
}

impl ModelObject {
    fn new(model: Model, device: Device) -> ModelObject {
        let info = model.info();
        let cstrings = |names: &[String]| names.iter().map(|n| to_cstring_lossy(n)).collect();
        ModelObject {
            size_label: to_cstring_lossy(&info.size_label),
            languages: cstrings(&info.languages),
            speakers: cstrings(&info.speakers),
            model,
            info,
            device,
        }
    }

    /// The model, for the exports of other objects (voices, generation).
    pub(crate) fn model(&self) -> &Model {
        &self.model
    }

    /// What `qt_model_get_info` reports, as the Rust API has it.
    pub(crate) fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn to_c_info(&self) -> qt_model_info {
        let i = &self.info;
        let int = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        qt_model_info {
            struct_size: size_of::<qt_model_info>() as u32,
            kind: model_kind_to_c(i.kind),
            size_label: self.size_label.as_ptr(),
            sample_rate: i32::try_from(i.sample_rate).unwrap_or(i32::MAX),
            frame_rate: i.frame_rate,
            n_codebooks: int(i.num_codebooks),
            talker_hidden_size: int(i.talker_hidden_size),
            talker_layers: int(i.talker_layers),
            code_predictor_layers: int(i.code_predictor_layers),
            can_clone: i32::from(i.can_clone),
            device: self.device.to_c(),
            n_languages: self.languages.len(),
            n_speakers: self.speakers.len(),
            tensor_count: i.tensor_count as u64,
            weight_bytes: i.weight_bytes,
        }
    }
}

// The thread contract in qt_model's doc, checked: a model may be shared across threads.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<ModelObject>();
};

/// Fills `*out` with the default load options: `struct_size` = the bytes written, `device` =
/// `QT_DEVICE_CPU`.
///
/// - `out`: the caller's struct; `size`: `sizeof *out` as the caller compiled it. At most `size`
///   bytes are written, so a program built against an older header is safe.
///
/// Threads: any thread.
/// Returns `QT_STATUS_OK`; `QT_STATUS_NULL_ARGUMENT` if `out` is NULL; `QT_STATUS_ABI_MISMATCH`
/// if `size` is smaller than the oldest `qt_model_params` (nothing written then).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_model_params_default(out: *mut qt_model_params, size: usize) -> qt_status {
    guard("qt_model_params_default", || {
        // SAFETY: the caller provides `size` writable bytes at a non-NULL `out`.
        let out = unsafe { out_arg(out, "out") }?;
        let len = sized_len::<qt_model_params>(size)?;
        write_sized(out, len, qt_model_params::default());
        Ok(())
    })
}

/// Loads a Qwen3-TTS checkpoint directory (the released Hugging Face layout: `config.json`,
/// `model.safetensors`, the tokenizer files and `speech_tokenizer/`). Every file is read and
/// validated (configuration, tensor names and shapes, tokenizer) before this returns; weights
/// are memory-mapped, not copied.
///
/// - `model_dir`: NUL-terminated path. UTF-8 on every platform; on Unix any byte string is
///   accepted and used as is (like `open(2)`), so directory names that are not UTF-8 work.
/// - `params`: options, or NULL for the defaults (see `qt_model_params_default`).
/// - `out_model`: receives the model on success; left untouched on failure (initialise it to
///   NULL so that an unconditional `qt_free` is safe).
///
/// Ownership: on `QT_STATUS_OK` the caller owns `*out_model` and releases it with `qt_free`.
/// `model_dir` and `params` are only read during the call.
/// Threads: any thread; loading different models in parallel is fine.
/// Returns `QT_STATUS_OK`, or: `QT_STATUS_NULL_ARGUMENT` (`model_dir` or `out_model` NULL),
/// `QT_STATUS_INVALID_ARGUMENT` (empty path, invalid `device`, `engine` or `prefix_cache_mb`), `QT_STATUS_ABI_MISMATCH`
/// (`params->struct_size` too small), `QT_STATUS_UNSUPPORTED` (a CUDA device in a build without
/// CUDA), `QT_STATUS_NO_CUDA_DRIVER` / `QT_STATUS_NO_DEVICE` / `QT_STATUS_OUT_OF_MEMORY` /
/// `QT_STATUS_CUDA` (the GPU cannot take the model), `QT_STATUS_NOT_FOUND` / `QT_STATUS_IO`
/// (files), `QT_STATUS_BAD_CONFIG`, `QT_STATUS_BAD_WEIGHTS`, `QT_STATUS_MISSING_TENSOR`,
/// `QT_STATUS_SHAPE_MISMATCH`, `QT_STATUS_BAD_TOKENIZER` (checkpoint content). `qt_last_error()` names the file, key or
/// tensor at fault.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_load(
    model_dir: *const c_char,
    params: *const qt_model_params,
    out_model: *mut *mut qt_model,
) -> qt_status {
    guard("qt_load", || {
        // SAFETY (all three): pointers are NULL or valid per the documented contract.
        let dir = unsafe { path_arg(model_dir, "model_dir") }?;
        let out = unsafe { out_arg(out_model, "out_model") }?;
        let params = unsafe { read_sized(params, "params", qt_model_params::default()) }?;
        let device = Device::from_c(params.device)?;
        let engine = engine_from_c(params.engine)?;

        let prefix_cache_bytes = params.prefix_cache_bytes()?;

        let started = Instant::now();
        let options = LoadOptions { device: device.to_api(), engine, prefix_cache_bytes, ..LoadOptions::default() };
        let model = Model::load(&dir, &options)?;
        let object = ModelObject::new(model, device);
        ::log::info!(
            "loaded {} ({} {:?}, {} tensors, {} bytes of weights) in {} ms",
            dir.display(),
            object.info.size_label,
            object.info.kind,
            object.info.tensor_count,
            object.info.weight_bytes,
            started.elapsed().as_millis()
        );
        out.write(into_raw::<qt_model>(object));
        Ok(())
    })
}

/// Describes a loaded model: kind, sizes, rates, the number of languages and speakers.
///
/// - `model`: a model from `qt_load`.
/// - `out_info`: the caller's struct with `struct_size` set to `sizeof(qt_model_info)`; the
///   library fills the fields that fit in it and sets `struct_size` to the bytes it wrote.
///
/// Ownership: `out_info->size_label` is owned by the model and valid until the model is freed.
/// Threads: any thread, concurrently with any other use of the model.
/// Returns `QT_STATUS_OK`; `QT_STATUS_NULL_ARGUMENT` (`model` or `out_info` NULL);
/// `QT_STATUS_INVALID_HANDLE` (`model` is not a live `qt_model`); `QT_STATUS_ABI_MISMATCH`
/// (`struct_size` smaller than the oldest layout). On failure `*out_info` is left untouched.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_model_get_info(model: *const qt_model, out_info: *mut qt_model_info) -> qt_status {
    guard("qt_model_get_info", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let (out, len) = unsafe { sized_out_arg(out_info, "out_info") }?;
        write_sized(out, len, object.to_c_info());
        Ok(())
    })
}

fn name_at(names: &[CString], index: usize, what: &str) -> Result<*const c_char> {
    names.get(index).map(|n| n.as_ptr()).ok_or_else(|| {
        Error::invalid_argument(format!("{what} index {index} is out of range: the model has {} {what}s", names.len()))
    })
}

/// The name of supported language `index` (0 <= index < `qt_model_info.n_languages`), in lower
/// case: "auto" first, then e.g. "chinese", "english", ... sorted.
///
/// Ownership: `*out_name` is owned by the model and valid until the model is freed.
/// Threads: any thread, concurrently with any other use of the model.
/// Returns `QT_STATUS_OK`; `QT_STATUS_NULL_ARGUMENT`; `QT_STATUS_INVALID_HANDLE`;
/// `QT_STATUS_INVALID_ARGUMENT` if `index` is out of range. `*out_name` is written only on success.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_model_language(
    model: *const qt_model,
    index: usize,
    out_name: *mut *const c_char,
) -> qt_status {
    guard("qt_model_language", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let out = unsafe { out_arg(out_name, "out_name") }?;
        out.write(name_at(&object.languages, index, "language")?);
        Ok(())
    })
}

/// The name of built-in speaker `index` (0 <= index < `qt_model_info.n_speakers`; CustomVoice
/// checkpoints have speakers, others none), sorted.
///
/// Ownership: `*out_name` is owned by the model and valid until the model is freed.
/// Threads: any thread, concurrently with any other use of the model.
/// Returns `QT_STATUS_OK`; `QT_STATUS_NULL_ARGUMENT`; `QT_STATUS_INVALID_HANDLE`;
/// `QT_STATUS_INVALID_ARGUMENT` if `index` is out of range. `*out_name` is written only on success.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_model_speaker(
    model: *const qt_model,
    index: usize,
    out_name: *mut *const c_char,
) -> qt_status {
    guard("qt_model_speaker", || {
        // SAFETY: pointers are NULL or valid per the documented contract.
        let object = unsafe { borrow(model, "model") }?;
        let out = unsafe { out_arg(out_name, "out_name") }?;
        out.write(name_at(&object.speakers, index, "speaker")?);
        Ok(())
    })
}
