//! The one error type every layer returns.
//!
//! Each failure carries a [`ErrorKind`] (which the C boundary maps one-to-one onto a
//! `qt_status` value) and a human-readable message that names the offending file, tensor,
//! key or argument. Messages are written for the person reading a log: they say what was
//! expected and what was found.

use std::fmt;
use std::path::Path;

/// Classes of failure. The C status codes mirror these one-to-one (see `ffi::status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An argument was out of range, empty, or inconsistent with another argument.
    InvalidArgument,
    /// A required pointer argument was NULL (C boundary only).
    NullArgument,
    /// A caller-supplied struct was smaller than the oldest layout the library accepts.
    AbiMismatch,
    /// A file or directory that must exist does not.
    NotFound,
    /// Reading a file failed for a reason other than absence (permissions, I/O error).
    Io,
    /// A JSON configuration file is malformed, wrongly typed, or describes an impossible model.
    BadConfig,
    /// A safetensors container is corrupt: bad header, offsets, dtype, or truncated data.
    BadWeights,
    /// A tensor the configuration requires is absent from the checkpoint.
    MissingTensor,
    /// A tensor exists but its shape or dtype differs from what the configuration implies.
    ShapeMismatch,
    /// The text tokenizer files are missing pieces or inconsistent.
    BadTokenizer,
    /// The request is valid but this build or this checkpoint cannot serve it.
    Unsupported,
    /// An output buffer was too small; the needed size was reported.
    BufferTooSmall,
    /// An object handle was of the wrong type or already released.
    InvalidHandle,
    /// A panic was caught at the C boundary: a bug in the library.
    Panic,
    /// A voice was made by a model of another family (its fingerprint, or its embedding
    /// width, differs from this model's): it cannot be used with this model.
    VoiceMismatch,
    /// Bytes or a file that should hold a saved voice do not: wrong magic, truncated,
    /// corrupt (checksum or structure), or internally inconsistent.
    BadVoice,
    /// A CUDA device was requested but the NVIDIA driver library (`libcuda.so` / `nvcuda.dll`)
    /// cannot be loaded or initialised: no NVIDIA driver is installed, or it is too old for this
    /// build. The CPU device still works.
    NoCudaDriver,
    /// The requested CUDA device does not exist: the ordinal is not below the number of devices
    /// the driver sees (which may be 0, e.g. with `CUDA_VISIBLE_DEVICES` empty).
    NoDevice,
    /// GPU memory is exhausted: an allocation on the device failed. The device stays usable;
    /// freeing other models, or loading a smaller one, can make a retry succeed.
    OutOfMemory,
    /// Any other failure reported by the CUDA driver or a kernel (launch failure, illegal
    /// address, lost device, unsupported architecture). The CUDA context, and every model on
    /// that device, may be unusable afterwards: free them and load again.
    Cuda,
}

/// An error with its class and a message that says what went wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with context ("loading talker: ...").
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn bad_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadConfig, message)
    }

    pub fn bad_weights(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadWeights, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Maps an I/O error on `path` to `NotFound` or `Io`, naming the path.
    pub fn from_io(err: &std::io::Error, path: &Path) -> Self {
        let kind = if err.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
        let what = if kind == ErrorKind::NotFound { "not found" } else { "cannot be read" };
        Self::new(kind, format!("{} {what}: {err}", path.display()))
    }
}

/// A caller's string as messages quote it: in quotes, control characters escaped, cut to
/// [`QUOTE_MAX_CHARS`] characters with the full length noted (a 100 KB name is not echoed
/// back whole into a log or `qt_last_error`).
pub fn quoted(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(QUOTE_MAX_CHARS).collect();
    let escaped = format!("{head:?}");
    if chars.next().is_some() {
        format!("{}…\" ({} bytes)", &escaped[..escaped.len() - 1], s.len())
    } else {
        escaped
    }
}

/// Characters of a caller's string kept by [`quoted`].
pub const QUOTE_MAX_CHARS: usize = 64;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
