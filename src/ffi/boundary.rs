//! The boundary every export goes through: the panic/status guard, and the converters that turn
//! C arguments (pointers, strings, paths, sized structs) into Rust values or a typed error.
//!
//! Rules enforced here, so that no export has to remember them:
//! * no panic unwinds into C (it would abort the host): [`guard`] catches it and returns
//!   `QT_STATUS_PANIC`;
//! * every pointer is NULL-checked before use, and a NULL names the argument in the message;
//! * strings are validated as UTF-8 and paths converted per platform;
//! * sized structs are read and written only up to the size the caller declared, never past it;
//! * out-parameters are written only after everything else succeeded (`Out::write`).

use std::any::Any;
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::ptr::NonNull;

use super::status::{
    QT_STATUS_OK, QT_STATUS_PANIC, clear_last_error, qt_status, set_last_error, status_for_kind, status_name,
};
use crate::error::{Error, ErrorKind, Result};

/// Runs the body of the export `function` at the C boundary and returns its status.
///
/// Clears the calling thread's last error, installs the log bridge on first use, runs `body`
/// under `catch_unwind`, and maps the outcome: `Ok` → `QT_STATUS_OK`; `Err(e)` → the status of
/// `e.kind()` with "`function`: message" as the last error; a panic → `QT_STATUS_PANIC` with the
/// panic message. Public (but hidden) so the integration tests can drive it with a panicking
/// body; it is a Rust function, not an exported symbol.
#[doc(hidden)]
pub fn guard(function: &'static str, body: impl FnOnce() -> Result<()>) -> qt_status {
    guard_status(function, || body().map(|()| QT_STATUS_OK))
}

/// [`guard`] for a body that chooses its own non-error status (`QT_STATUS_OK` or a positive
/// "finished early" value such as `QT_STATUS_ABORTED`).
pub(crate) fn guard_status(function: &'static str, body: impl FnOnce() -> Result<qt_status>) -> qt_status {
    super::log::ensure_installed();
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => {
            debug_assert!(status >= 0, "a body returned error status {status} as success");
            // A callback may have made a failing qt_* call inside this one: a success leaves
            // no message behind.
            clear_last_error();
            status
        }
        Ok(Err(err)) => {
            let status = status_for_kind(err.kind());
            set_last_error(&format!("{function}: {}", err.message()));
            ::log::debug!("{function} -> {}: {}", status_name(status), err.message());
            status
        }
        Err(payload) => {
            let what = panic_message(&payload);
            // Dropping a payload can itself panic; never let that escape either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            let message =
                format!("{function}: internal error (Rust panic: {what}); this is a bug in qwentts, please report it");
            set_last_error(&message);
            ::log::error!("{message}");
            QT_STATUS_PANIC
        }
    }
}

/// Runs an export that cannot fail and has no status to return (`qt_version`, ...): a panic,
/// which would be a bug, yields `fallback` instead of aborting the host.
pub(crate) fn guard_infallible<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The error for a NULL `arg`.
pub(crate) fn null_argument(arg: &str) -> Error {
    Error::new(ErrorKind::NullArgument, format!("`{arg}` is NULL"))
}

/// A NUL-terminated C string argument as `&str`: NULL → `NullArgument`, invalid UTF-8 →
/// `InvalidArgument` naming the first bad byte.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the returned reference.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, arg: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(null_argument(arg));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Error::invalid_argument(format!(
            "`{arg}` is not valid UTF-8 (invalid byte 0x{:02x} at offset {})",
            bytes[e.valid_up_to()],
            e.valid_up_to()
        ))
    })
}

/// An optional C string argument: NULL → `None`; otherwise as [`str_arg`].
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(ptr: *const c_char, arg: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { str_arg(ptr, arg) }.map(Some)
}

/// A pointer-plus-count input array: NULL with `len` > 0 → `NullArgument`; NULL with `len` 0 →
/// an empty slice; a count whose byte size cannot be an allocation → `InvalidArgument`.
///
/// # Safety
/// `ptr` is NULL or points to `len` initialised, aligned `T` that stay unchanged while the
/// returned slice is used.
pub(crate) unsafe fn slice_arg<'a, T>(ptr: *const T, len: usize, arg: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null_argument(arg));
    }
    if len.checked_mul(size_of::<T>()).is_none_or(|bytes| bytes > isize::MAX as usize) {
        return Err(Error::invalid_argument(format!("`{arg}`: {len} elements cannot be an array in memory")));
    }
    if !ptr.is_aligned() {
        return Err(Error::invalid_argument(format!("`{arg}` ({ptr:p}) is not aligned to {} bytes", align_of::<T>())));
    }
    // SAFETY: non-NULL, aligned, `len` elements by the caller's contract, size checked above.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A pointer-plus-count output array, checked like [`slice_arg`]: NULL with `len` > 0 →
/// `NullArgument`; NULL with `len` 0 → an empty slice; an impossible size or a misaligned
/// pointer → `InvalidArgument`.
///
/// # Safety
/// `ptr` is NULL or points to `len` writable, aligned `T` that nothing else uses while the
/// returned slice is alive.
pub(crate) unsafe fn slice_out_arg<'a, T>(ptr: *mut T, len: usize, arg: &str) -> Result<&'a mut [T]> {
    // SAFETY: forwarded contract (the checks do not read through the pointer).
    unsafe { slice_arg(ptr.cast_const(), len, arg) }?;
    if len == 0 {
        return Ok(&mut []);
    }
    // SAFETY: non-NULL, aligned, `len` writable elements by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// The two-call output pattern: copies `data` to the caller's buffer (capacity `cap`
/// elements) and reports its length through `out_len`; `names` are the C parameter names of
/// the three (buffer, capacity, length) as the header spells them, for the messages.
/// `out_len` NULL → `NullArgument`. When `buf` is NULL or `cap` is smaller than `data`,
/// `*out_len` is set to the length needed, nothing else is written, and the result is
/// `BufferTooSmall` (the only failure that writes an out-parameter).
///
/// # Safety
/// `buf` is NULL or valid for writing `cap` elements; `out_len` is NULL or valid for writing.
pub(crate) unsafe fn write_buffer<T: Copy>(
    data: &[T],
    buf: *mut T,
    cap: usize,
    out_len: *mut usize,
    names: [&str; 3],
    what: &str,
    unit: &str,
) -> Result<()> {
    let [buf_name, cap_name, len_name] = names;
    // SAFETY: forwarded contract.
    let out_len = unsafe { out_arg(out_len, len_name) }?;
    if buf.is_null() || cap < data.len() {
        let why =
            if buf.is_null() { format!("`{buf_name}` is NULL (a size query)") } else { format!("`{cap_name}` is {cap}") };
        out_len.write(data.len());
        return Err(Error::new(
            ErrorKind::BufferTooSmall,
            format!("{what} needs {} {unit} and {why}; *{len_name} holds the size needed", data.len()),
        ));
    }
    // SAFETY: `buf` holds `cap >= data.len()` writable elements; a caller's buffer cannot
    // overlap the library's own data.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
    out_len.write(data.len());
    Ok(())
}

/// A NUL-terminated path argument: NULL → `NullArgument`, "" → `InvalidArgument`.
///
/// On Unix the bytes are taken as they are (like `open(2)`), so file names that are not UTF-8
/// work; elsewhere the path must be UTF-8 (`InvalidArgument` otherwise) and is converted to the
/// platform's encoding.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn path_arg(ptr: *const c_char, arg: &str) -> Result<PathBuf> {
    if ptr.is_null() {
        return Err(null_argument(arg));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    if bytes.is_empty() {
        return Err(Error::invalid_argument(format!("`{arg}` is an empty path")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        // SAFETY: same pointer, same contract.
        unsafe { str_arg(ptr, arg) }.map(PathBuf::from)
    }
}

/// An out-parameter that has been NULL-checked and is written only by [`Out::write`], which
/// an export calls last, after everything that can fail has succeeded.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// Writes the result. Called once, on success only.
    pub(crate) fn write(self, value: T) {
        // SAFETY: non-NULL, and writable by the contract under which `out_arg` accepted it.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// Accepts an out-parameter: NULL → `NullArgument` naming `arg`.
///
/// # Safety
/// `ptr` is NULL or valid for writing one `T`.
pub(crate) unsafe fn out_arg<T>(ptr: *mut T, arg: &str) -> Result<Out<T>> {
    NonNull::new(ptr).map(Out).ok_or_else(|| null_argument(arg))
}

/// A `#[repr(C)]` struct that starts with `uint32_t struct_size` and only ever grows at the end.
///
/// # Safety
/// The implementor is `#[repr(C)]`, its first field is the `u32` struct size, it has no
/// padding before the end of any published layout, and every bit pattern of its fields is a
/// valid value (integers, floats and raw pointers only), so copying a prefix of bytes from C
/// yields a valid value.
pub(crate) unsafe trait SizedStruct: Copy + 'static {
    /// The C type name, for messages.
    const NAME: &'static str;
    /// Byte size of each published layout, oldest first. The first is the smallest size the
    /// library accepts; the last is `size_of::<Self>()`. Never edited, only appended to.
    const LAYOUT_SIZES: &'static [usize];
    /// Sets the `struct_size` field.
    fn set_struct_size(&mut self, size: u32);
}

/// The layout this library uses for a caller that declared `size` bytes: the largest published
/// layout that fits. Fails with `AbiMismatch` when `size` is smaller than the first layout.
fn effective_size<T: SizedStruct>(size: usize, what: &str) -> Result<usize> {
    debug_assert_eq!(T::LAYOUT_SIZES.last(), Some(&size_of::<T>()));
    T::LAYOUT_SIZES.iter().rev().copied().find(|&s| s <= size).ok_or_else(|| {
        Error::new(
            ErrorKind::AbiMismatch,
            format!(
                "{what} is {size}, but the smallest {name} this library accepts is {min} bytes; \
                 initialise the struct with its defaults function (or set struct_size to \
                 sizeof({name})), and check that qwentts.h matches the loaded library \
                 (QT_ABI_VERSION against qt_abi_version())",
                name = T::NAME,
                min = T::LAYOUT_SIZES[0],
            ),
        )
    })
}

/// The `struct_size` a caller stored at the start of its struct.
///
/// # Safety
/// `ptr` is non-NULL, aligned and points to at least the `u32` struct size.
unsafe fn declared_size<T>(ptr: *const T) -> usize {
    // SAFETY: by contract; struct_size is the first field, a u32.
    unsafe { ptr.cast::<u32>().read() as usize }
}

/// Reads a caller's input struct: NULL → `defaults`; otherwise the fields inside the caller's
/// `struct_size` come from the caller and the rest from `defaults`.
///
/// # Safety
/// `ptr` is NULL or points to a `T`-prefixed struct at least `struct_size` bytes long.
pub(crate) unsafe fn read_sized<T: SizedStruct>(ptr: *const T, arg: &str, defaults: T) -> Result<T> {
    if ptr.is_null() {
        return Ok(defaults);
    }
    // SAFETY: non-NULL; the struct_size field is there by contract.
    let declared = unsafe { declared_size(ptr) };
    let n = effective_size::<T>(declared, &format!("`{arg}`->struct_size ({})", T::NAME))?;
    let mut value = defaults;
    // SAFETY: the caller's struct holds at least `declared >= n` bytes; `value` holds
    // size_of::<T>() >= n; any byte pattern is a valid T (SizedStruct contract).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&raw mut value).cast::<u8>(), n);
    }
    value.set_struct_size(size_of::<T>() as u32);
    Ok(value)
}

/// Accepts an output struct the caller sized through its `struct_size` field: NULL →
/// `NullArgument`; a `struct_size` below the first layout → `AbiMismatch`. Returns the
/// out-parameter and the byte count to write.
///
/// # Safety
/// `ptr` is NULL, or valid for reading its `u32` struct size and for writing `struct_size` bytes.
pub(crate) unsafe fn sized_out_arg<T: SizedStruct>(ptr: *mut T, arg: &str) -> Result<(Out<T>, usize)> {
    // SAFETY: forwarded contract.
    let out = unsafe { out_arg(ptr, arg) }?;
    // SAFETY: non-NULL; the struct_size field is there by contract.
    let declared = unsafe { declared_size(ptr) };
    let len = effective_size::<T>(declared, &format!("`{arg}`->struct_size ({})", T::NAME))?;
    Ok((out, len))
}

/// The byte count to write for a defaults function that received the caller's `size`.
pub(crate) fn sized_len<T: SizedStruct>(size: usize) -> Result<usize> {
    effective_size::<T>(size, &format!("`size` ({})", T::NAME))
}

/// Writes the first `len` bytes of `value` (a published layout size from `sized_len` or
/// `sized_out_len`) to `out`, with `struct_size` = `len`: the caller learns which fields hold
/// data, and bytes past `len` are left untouched.
pub(crate) fn write_sized<T: SizedStruct>(out: Out<T>, len: usize, mut value: T) {
    debug_assert!(T::LAYOUT_SIZES.contains(&len));
    value.set_struct_size(len as u32);
    // SAFETY: the caller's struct holds at least `len` bytes (len <= its declared size), and
    // `value` holds size_of::<T>() >= len.
    unsafe {
        std::ptr::copy_nonoverlapping((&raw const value).cast::<u8>(), out.0.as_ptr().cast::<u8>(), len);
    }
}
