//! `qt_status`: the status values, the one-to-one `ErrorKind` → status table, and the
//! thread-local last-error message behind `qt_last_error`.
//!
//! Numbering rules: 0 is success, positive values mean "finished early because the caller
//! asked", negative values are errors. A value, once published, is never renumbered or reused;
//! a retired value stays here as a `// reserved: ...` comment.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};

use crate::error::ErrorKind;

/// Result of every fallible `qt_*` function (`int32_t`): `QT_STATUS_OK` (0) on success, a
/// positive value when the call finished early because the caller asked it to, a negative value
/// on error. `qt_status_str()` names a value; `qt_last_error()` gives the detail of the last
/// failure on the calling thread. Values are never renumbered.
pub type qt_status = i32;

/// Success. Out-parameters have been written.
pub const QT_STATUS_OK: i32 = 0;
/// The call stopped early because the caller asked it to (a callback returned stop, or an abort
/// hook fired). Not an error; out-parameters hold what was produced until then.
pub const QT_STATUS_ABORTED: i32 = 1;
/// An argument was out of range, empty, not valid UTF-8, or inconsistent with another argument.
pub const QT_STATUS_INVALID_ARGUMENT: i32 = -1;
/// A required pointer argument was NULL.
pub const QT_STATUS_NULL_ARGUMENT: i32 = -2;
/// A caller-supplied struct (its `struct_size`, or the `size` argument) is smaller than the
/// oldest layout this library accepts: the header and the library do not match.
pub const QT_STATUS_ABI_MISMATCH: i32 = -3;
/// A file or directory that must exist does not.
pub const QT_STATUS_NOT_FOUND: i32 = -4;
/// Reading a file failed for a reason other than absence (permissions, I/O error).
pub const QT_STATUS_IO: i32 = -5;
/// A JSON configuration file is malformed, wrongly typed, or describes an impossible model.
pub const QT_STATUS_BAD_CONFIG: i32 = -6;
/// A safetensors weight file is corrupt: bad header, offsets or dtype, or truncated data.
pub const QT_STATUS_BAD_WEIGHTS: i32 = -7;
/// A tensor the configuration requires is missing from the checkpoint.
pub const QT_STATUS_MISSING_TENSOR: i32 = -8;
/// A tensor exists but its shape or dtype differs from what the configuration implies.
pub const QT_STATUS_SHAPE_MISMATCH: i32 = -9;
/// The text tokenizer files are missing pieces or inconsistent.
pub const QT_STATUS_BAD_TOKENIZER: i32 = -10;
/// The request is valid, but this build of the library or this checkpoint cannot serve it.
pub const QT_STATUS_UNSUPPORTED: i32 = -11;
/// An output buffer was too small; the needed size was reported through the size out-parameter.
pub const QT_STATUS_BUFFER_TOO_SMALL: i32 = -12;
/// An object pointer is not a live object of the expected type: already freed, of another type,
/// or never returned by this library.
pub const QT_STATUS_INVALID_HANDLE: i32 = -13;
/// A voice was made by a model of another family (different kind, widths, speaker encoder or
/// codec): it cannot be used with this model.
pub const QT_STATUS_VOICE_MISMATCH: i32 = -14;
/// The bytes or file given as a saved voice are not one: wrong magic, truncated or corrupt.
pub const QT_STATUS_BAD_VOICE: i32 = -15;
/// A CUDA device was requested but the NVIDIA driver library (libcuda.so / nvcuda.dll) cannot be
/// loaded or initialised: no NVIDIA driver is installed, or it is too old for this build. Use
/// `QT_DEVICE_CPU`, or install a current driver.
pub const QT_STATUS_NO_CUDA_DRIVER: i32 = -16;
/// The requested CUDA device does not exist: its ordinal is not below `qt_device_count()`
/// (which may be 0).
pub const QT_STATUS_NO_DEVICE: i32 = -17;
/// GPU memory is exhausted: an allocation on the device failed. The device stays usable; freeing
/// other models, or loading a smaller one, can make a retry succeed.
pub const QT_STATUS_OUT_OF_MEMORY: i32 = -18;
/// Any other failure reported by the CUDA driver or a kernel (launch failure, illegal address,
/// lost device, unsupported GPU architecture). The CUDA context, and every model on that
/// device, may be unusable afterwards: free them and load again. `qt_last_error()` has the
/// detail.
pub const QT_STATUS_CUDA: i32 = -19;
/// A bug inside the library was caught at the C boundary (a Rust panic). The call had no
/// effect on its out-parameters; the library remains usable. Please report it with the
/// `qt_last_error()` text.
pub const QT_STATUS_PANIC: i32 = -99;

/// One row per published status: value, its `ErrorKind` (None for non-errors), and the text
/// `qt_status_str` returns ("NAME: meaning").
const TABLE: &[(qt_status, Option<ErrorKind>, &CStr)] = &[
    (QT_STATUS_OK, None, c"QT_STATUS_OK: success"),
    (QT_STATUS_ABORTED, None, c"QT_STATUS_ABORTED: stopped early at the caller's request"),
    (
        QT_STATUS_INVALID_ARGUMENT,
        Some(ErrorKind::InvalidArgument),
        c"QT_STATUS_INVALID_ARGUMENT: an argument is out of range, empty or malformed",
    ),
    (
        QT_STATUS_NULL_ARGUMENT,
        Some(ErrorKind::NullArgument),
        c"QT_STATUS_NULL_ARGUMENT: a required pointer argument is NULL",
    ),
    (
        QT_STATUS_ABI_MISMATCH,
        Some(ErrorKind::AbiMismatch),
        c"QT_STATUS_ABI_MISMATCH: a struct is smaller than this library accepts (header and library differ)",
    ),
    (
        QT_STATUS_NOT_FOUND,
        Some(ErrorKind::NotFound),
        c"QT_STATUS_NOT_FOUND: a required file or directory does not exist",
    ),
    (QT_STATUS_IO, Some(ErrorKind::Io), c"QT_STATUS_IO: a file could not be read"),
    (
        QT_STATUS_BAD_CONFIG,
        Some(ErrorKind::BadConfig),
        c"QT_STATUS_BAD_CONFIG: a configuration file is malformed or inconsistent",
    ),
    (
        QT_STATUS_BAD_WEIGHTS,
        Some(ErrorKind::BadWeights),
        c"QT_STATUS_BAD_WEIGHTS: a weight file is corrupt or truncated",
    ),
    (
        QT_STATUS_MISSING_TENSOR,
        Some(ErrorKind::MissingTensor),
        c"QT_STATUS_MISSING_TENSOR: a required tensor is missing from the checkpoint",
    ),
    (
        QT_STATUS_SHAPE_MISMATCH,
        Some(ErrorKind::ShapeMismatch),
        c"QT_STATUS_SHAPE_MISMATCH: a tensor's shape or dtype differs from the configuration",
    ),
    (
        QT_STATUS_BAD_TOKENIZER,
        Some(ErrorKind::BadTokenizer),
        c"QT_STATUS_BAD_TOKENIZER: the text tokenizer files are missing or inconsistent",
    ),
    (
        QT_STATUS_UNSUPPORTED,
        Some(ErrorKind::Unsupported),
        c"QT_STATUS_UNSUPPORTED: not supported by this build or this checkpoint",
    ),
    (
        QT_STATUS_BUFFER_TOO_SMALL,
        Some(ErrorKind::BufferTooSmall),
        c"QT_STATUS_BUFFER_TOO_SMALL: an output buffer is too small",
    ),
    (
        QT_STATUS_INVALID_HANDLE,
        Some(ErrorKind::InvalidHandle),
        c"QT_STATUS_INVALID_HANDLE: not a live object of the expected type",
    ),
    (
        QT_STATUS_VOICE_MISMATCH,
        Some(ErrorKind::VoiceMismatch),
        c"QT_STATUS_VOICE_MISMATCH: the voice was made by a different model family",
    ),
    (
        QT_STATUS_BAD_VOICE,
        Some(ErrorKind::BadVoice),
        c"QT_STATUS_BAD_VOICE: not a valid saved voice (wrong format, truncated or corrupt)",
    ),
    (
        QT_STATUS_NO_CUDA_DRIVER,
        Some(ErrorKind::NoCudaDriver),
        c"QT_STATUS_NO_CUDA_DRIVER: the NVIDIA driver library cannot be loaded (no NVIDIA driver, or it is too old)",
    ),
    (QT_STATUS_NO_DEVICE, Some(ErrorKind::NoDevice), c"QT_STATUS_NO_DEVICE: no CUDA device with this ordinal"),
    (QT_STATUS_OUT_OF_MEMORY, Some(ErrorKind::OutOfMemory), c"QT_STATUS_OUT_OF_MEMORY: GPU memory is exhausted"),
    (
        QT_STATUS_CUDA,
        Some(ErrorKind::Cuda),
        c"QT_STATUS_CUDA: a CUDA driver or kernel error (the GPU context may be unusable)",
    ),
    (
        QT_STATUS_PANIC,
        Some(ErrorKind::Panic),
        c"QT_STATUS_PANIC: internal error caught at the C boundary (a bug; please report it)",
    ),
];

const UNKNOWN: &CStr = c"QT_STATUS_UNKNOWN: a status value this version of the library does not define";

/// The status a failure of `kind` is reported as. Exhaustive on purpose: adding an
/// [`ErrorKind`] does not compile until it has its own status here and a row in the table.
pub fn status_for_kind(kind: ErrorKind) -> qt_status {
    match kind {
        ErrorKind::InvalidArgument => QT_STATUS_INVALID_ARGUMENT,
        ErrorKind::NullArgument => QT_STATUS_NULL_ARGUMENT,
        ErrorKind::AbiMismatch => QT_STATUS_ABI_MISMATCH,
        ErrorKind::NotFound => QT_STATUS_NOT_FOUND,
        ErrorKind::Io => QT_STATUS_IO,
        ErrorKind::BadConfig => QT_STATUS_BAD_CONFIG,
        ErrorKind::BadWeights => QT_STATUS_BAD_WEIGHTS,
        ErrorKind::MissingTensor => QT_STATUS_MISSING_TENSOR,
        ErrorKind::ShapeMismatch => QT_STATUS_SHAPE_MISMATCH,
        ErrorKind::BadTokenizer => QT_STATUS_BAD_TOKENIZER,
        ErrorKind::Unsupported => QT_STATUS_UNSUPPORTED,
        ErrorKind::BufferTooSmall => QT_STATUS_BUFFER_TOO_SMALL,
        ErrorKind::InvalidHandle => QT_STATUS_INVALID_HANDLE,
        ErrorKind::VoiceMismatch => QT_STATUS_VOICE_MISMATCH,
        ErrorKind::BadVoice => QT_STATUS_BAD_VOICE,
        ErrorKind::NoCudaDriver => QT_STATUS_NO_CUDA_DRIVER,
        ErrorKind::NoDevice => QT_STATUS_NO_DEVICE,
        ErrorKind::OutOfMemory => QT_STATUS_OUT_OF_MEMORY,
        ErrorKind::Cuda => QT_STATUS_CUDA,
        ErrorKind::Panic => QT_STATUS_PANIC,
    }
}

/// Every published status with the [`ErrorKind`] it reports (None for OK and ABORTED), in
/// table order. For tests and tools; the C side uses `qt_status_str`.
pub fn status_table() -> impl Iterator<Item = (qt_status, Option<ErrorKind>)> {
    TABLE.iter().map(|&(status, kind, _)| (status, kind))
}

fn status_text(status: qt_status) -> &'static CStr {
    TABLE.iter().find(|row| row.0 == status).map_or(UNKNOWN, |row| row.2)
}

/// The symbolic name of `status` ("QT_STATUS_NOT_FOUND"), for messages built in Rust.
pub(crate) fn status_name(status: qt_status) -> &'static str {
    let text = status_text(status).to_str().unwrap_or("QT_STATUS_UNKNOWN");
    text.split(':').next().unwrap_or(text)
}

thread_local! {
    /// The detail of the last failed call on this thread; None reads as "".
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Forgets this thread's last error (every fallible export does this on entry).
pub(crate) fn clear_last_error() {
    // try_with: during thread teardown the slot may already be gone; nothing to clear then.
    let _ = LAST_ERROR.try_with(|slot| slot.borrow_mut().take());
}

/// Records `message` as this thread's last error.
pub(crate) fn set_last_error(message: &str) {
    let c = to_cstring_lossy(message);
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = Some(c));
}

/// A `CString` of `s`, with interior NUL bytes (which C cannot represent) written as `\0`.
pub(crate) fn to_cstring_lossy(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\\0")).expect("interior NULs were replaced"))
}

/// The detail message of the last failed `qt_*` call on the calling thread, or "" if the last
/// fallible call on this thread succeeded (or none was made).
///
/// Every function that returns `qt_status` (and `qt_free`) clears the message on entry and sets
/// it when it fails, so read it right after the failing call. `qt_last_error`,
/// `qt_status_str`, `qt_version`, `qt_abi_version`, `qt_build_info` and `qt_device_count`
/// never change it, so `printf("%s: %s", qt_status_str(st), qt_last_error())` is safe in any
/// evaluation order.
///
/// Ownership: the string belongs to the library; do not free it. It stays valid until the
/// calling thread's next `qt_*` call other than the six above (copy it to keep it).
/// Threads: per thread; each thread sees only its own failures. Never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn qt_last_error() -> *const c_char {
    LAST_ERROR.try_with(|slot| slot.borrow().as_ref().map_or(c"".as_ptr(), |c| c.as_ptr())).unwrap_or(c"".as_ptr())
}

/// A static, human-readable description of `status`: its name and a one-line meaning, e.g.
/// "QT_STATUS_NOT_FOUND: a required file or directory does not exist". Values this version of
/// the library does not define (including any int) give a generic "QT_STATUS_UNKNOWN: ..." text.
///
/// Ownership: static; never NULL, never freed. Threads: any thread. Does not change
/// `qt_last_error()`.
#[unsafe(no_mangle)]
pub extern "C" fn qt_status_str(status: qt_status) -> *const c_char {
    status_text(status).as_ptr()
}
