//! Versions, build information and visible CUDA devices of the loaded library.
//!
//! Compile-time twins live in the header: `QT_VERSION_MAJOR/MINOR/PATCH`,
//! `QT_VERSION_STRING` and `QT_VERSION_NUMBER` (written by `build.rs` from Cargo metadata) and
//! `QT_ABI_VERSION` (below). `tests/header.rs` checks both sides agree.

use std::ffi::c_char;

use super::boundary::guard_infallible;
use crate::backend::cuda_device_count;

/// ABI revision of this header. `qt_abi_version()` returns the loaded library's value; when they
/// differ, the program was built against another header than the library it loaded and must not
/// call anything else. Bumped on any incompatible change (a removed function, a changed
/// signature, a struct field moved); additions (new functions, fields appended to sized
/// structs, new constants) keep it.
pub const QT_ABI_VERSION: u32 = 1;

/// The version of the loaded library ("MAJOR.MINOR.PATCH"), which may differ from the header's
/// `QT_VERSION_STRING` the program was compiled with.
///
/// Ownership: static; never NULL, never freed. Threads: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qt_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI revision of the loaded library. Check it once at start-up:
/// `if (qt_abi_version() != QT_ABI_VERSION) { ...wrong library: stop... }`.
///
/// Threads: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qt_abi_version() -> u32 {
    guard_infallible(0, || QT_ABI_VERSION)
}

/// One line describing how the loaded library was built: version, git commit, target, profile,
/// compiler and the compute backends compiled in, e.g. "qwentts 0.1.0; git 1a2b3c4d5e6f;
/// x86_64-unknown-linux-gnu; release; rustc 1.95.0; backends: cpu, cuda (sm_80 sm_86 ...
/// compute_90)" (the GPU code in the library). For bug reports and logs;
/// the format is not stable, do not parse it.
///
/// Ownership: static; never NULL, never freed. Threads: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qt_build_info() -> *const c_char {
    concat!(env!("QT_BUILD_INFO"), "\0").as_ptr().cast()
}

/// The number of CUDA devices this library can use: the GPUs the NVIDIA driver reports (as
/// filtered by `CUDA_VISIBLE_DEVICES`), which `qt_model_params.device` numbers from 0. Returns 0
/// when the library was built without the CUDA backend, when no NVIDIA driver can be loaded, or
/// when the driver reports an error; never negative. A GPU counted here can still fail to load a
/// model (`QT_STATUS_OUT_OF_MEMORY`, `QT_STATUS_CUDA`).
///
/// The first call may take a while (it loads and initialises the driver); later calls are cheap.
/// Does not change `qt_last_error()`. Threads: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qt_device_count() -> i32 {
    guard_infallible(0, || i32::try_from(cuda_device_count()).unwrap_or(i32::MAX))
}
