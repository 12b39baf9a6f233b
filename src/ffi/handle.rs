//! Objects handed to C, and the one `qt_free` that releases any of them.
//!
//! Every object the library returns is a heap allocation that begins with a private 64-bit type
//! tag (`Tagged`), and is listed, with its tag and its destructor, in a process-wide registry
//! of live objects. Accessors check the tag (one load, no lock), so passing a `qt_voice*` where
//! a `qt_model*` is expected is reported as `QT_STATUS_INVALID_HANDLE` instead of being
//! misread. `qt_free` consults the registry *before* touching the pointer, so a double free, a
//! pointer the library never returned, or a stray value is reported (log hook and
//! `qt_last_error`) without reading or freeing memory it does not own.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::boundary::{guard, null_argument};
use crate::error::{Error, ErrorKind, Result};

/// Tag of a `qt_model` allocation ("qtMODEL1" in memory).
pub(crate) const TAG_MODEL: u64 = u64::from_le_bytes(*b"qtMODEL1");
/// Tag of a `qt_voice` allocation ("qtVOICE1").
pub(crate) const TAG_VOICE: u64 = u64::from_le_bytes(*b"qtVOICE1");
/// Tag of a `qt_audio` allocation ("qtAUDIO1").
pub(crate) const TAG_AUDIO: u64 = u64::from_le_bytes(*b"qtAUDIO1");
/// Tag of a `qt_stream` allocation ("qtSTREA1").
pub(crate) const TAG_STREAM: u64 = u64::from_le_bytes(*b"qtSTREA1");
/// Written over the tag when an object is freed ("qtFREED!"), so a use after free that reaches
/// an accessor before the memory is reused is reported as such.
const TAG_FREED: u64 = u64::from_le_bytes(*b"qtFREED!");

/// Name of the object type a tag belongs to, for messages.
fn tag_name(tag: u64) -> Option<&'static str> {
    match tag {
        TAG_MODEL => Some("qt_model"),
        TAG_VOICE => Some("qt_voice"),
        TAG_AUDIO => Some("qt_audio"),
        TAG_STREAM => Some("qt_stream"),
        _ => None,
    }
}

/// An opaque C type (`qt_model`, ...) and the Rust value behind it.
///
/// # Safety
/// `TAG` is unique among implementors and listed in [`tag_name`]; the C type is only ever
/// created by [`into_raw`], so a `*const Self` that carries `TAG` points to a `Tagged<Value>`.
pub(crate) unsafe trait Handle: Sized {
    /// The Rust value the C pointer refers to. `Sync`: objects are shared across threads.
    type Value: Send + Sync + 'static;
    /// Its type tag.
    const TAG: u64;
    /// Its C type name, for messages.
    const TYPE_NAME: &'static str;
}

/// The allocation behind every C object: the tag first, then the value.
#[repr(C)]
struct Tagged<V> {
    tag: AtomicU64,
    value: V,
}

/// A live object: its tag and how to drop it.
struct Entry {
    tag: u64,
    release: unsafe fn(*mut c_void),
}

/// Every object handed out and not yet freed, by address.
static LIVE: Mutex<BTreeMap<usize, Entry>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<usize, Entry>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Moves `value` to the heap behind a tag, registers it, and returns the C pointer. The caller
/// owns it until `qt_free`.
pub(crate) fn into_raw<H: Handle>(value: H::Value) -> *mut H {
    let ptr = Box::into_raw(Box::new(Tagged { tag: AtomicU64::new(H::TAG), value }));
    live().insert(ptr as usize, Entry { tag: H::TAG, release: release::<H> });
    ptr.cast()
}

/// Drops the allocation made by `into_raw::<H>`.
///
/// # Safety
/// `ptr` came from `into_raw::<H>` and has just been removed from the registry.
unsafe fn release<H: Handle>(ptr: *mut c_void) {
    // SAFETY: by contract, the pointer is the Box made in into_raw::<H>, released once.
    drop(unsafe { Box::from_raw(ptr.cast::<Tagged<H::Value>>()) });
}

/// Borrows the value behind a C object argument: NULL → `NullArgument`; a pointer whose tag is
/// not `H::TAG` → `InvalidHandle` (saying what it is instead, when known).
///
/// # Safety
/// `ptr` is NULL, or points to readable memory of at least 8 bytes that stays valid (an object
/// of this library that the caller has not freed) while the returned reference is used.
pub(crate) unsafe fn borrow<'a, H: Handle>(ptr: *const H, arg: &str) -> Result<&'a H::Value> {
    if ptr.is_null() {
        return Err(null_argument(arg));
    }
    let tagged = ptr.cast::<Tagged<H::Value>>();
    // SAFETY: by contract the first 8 bytes are readable; every object starts with its tag.
    let tag = unsafe { (*tagged.cast::<AtomicU64>()).load(Ordering::Acquire) };
    if tag != H::TAG {
        let found = match (tag, tag_name(tag)) {
            (TAG_FREED, _) => "an object that was already freed".to_owned(),
            (_, Some(other)) => format!("a {other}"),
            (_, None) => "not an object returned by this library".to_owned(),
        };
        return Err(Error::new(
            ErrorKind::InvalidHandle,
            format!("`{arg}` ({ptr:p}) is not a live {}: it is {found}", H::TYPE_NAME),
        ));
    }
    // SAFETY: the tag says this is a live Tagged<H::Value> (Handle contract).
    Ok(unsafe { &(*tagged).value })
}

/// Releases any object this library returned: a `qt_model*`, `qt_voice*`, `qt_audio*` or
/// `qt_stream*` (which first cancels its generation and waits for it to stop, at most one
/// frame of compute). NULL is a no-op.
///
/// A pointer that is not a live object of this library (already freed, never returned by it,
/// or an interior pointer) is not touched: the mistake is reported through the log hook (at
/// `QT_LOG_WARN`) and `qt_last_error()`, and the call returns normally. Detection is by address,
/// so a pointer freed and then handed out again for a new object cannot be told apart.
///
/// Ownership: the object must not be used after this call. Strings and samples an object handed
/// out (a model's names, a voice's transcript, an audio's samples) are released with it. A voice
/// does not depend on the model that made it, so the two may be freed in any order. Work
/// already running on a model or voice on other threads (`qt_generate`) keeps the data it uses
/// alive until it finishes.
/// Threads: any thread, but each object is freed once, by one thread, after every other use of
/// it has returned.
/// Clears `qt_last_error()` on entry; it is non-empty afterwards only if the pointer was refused.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_free(object: *mut c_void) {
    guard("qt_free", || {
        if object.is_null() {
            return Ok(());
        }
        let Some(entry) = live().remove(&(object as usize)) else {
            let message = format!(
                "{object:p} is not a live qwentts object: it was already freed, or was not \
                 returned by this library; nothing was freed"
            );
            ::log::warn!("qt_free: {message}");
            return Err(Error::new(ErrorKind::InvalidHandle, message));
        };
        // SAFETY: the registry says a live object starts at this address; its tag is first.
        let tag = unsafe { &*object.cast::<AtomicU64>() }.swap(TAG_FREED, Ordering::AcqRel);
        if tag != entry.tag {
            // The tag of a live object changed: something overwrote our memory. Freeing it
            // could make matters worse; leak it and say so.
            let message = format!(
                "{object:p} is a live object whose type tag was overwritten (memory corruption \
                 in the process); it was not freed"
            );
            ::log::error!("qt_free: {message}");
            return Err(Error::new(ErrorKind::InvalidHandle, message));
        }
        // SAFETY: registered by into_raw with this destructor; removed above, so released once.
        unsafe { (entry.release)(object) };
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe;
    unsafe impl Handle for Probe {
        type Value = String;
        const TAG: u64 = u64::from_le_bytes(*b"qtPROBE1");
        const TYPE_NAME: &'static str = "probe";
    }

    #[test]
    fn free_releases_once_then_reports_double_free() {
        let p = into_raw::<Probe>("hello".to_owned());
        assert_eq!(unsafe { borrow(p, "p") }.unwrap(), "hello");
        unsafe { qt_free(p.cast()) };
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(super::super::status::qt_last_error()) }.to_bytes(), b"");
        unsafe { qt_free(p.cast()) };
        let msg = unsafe { std::ffi::CStr::from_ptr(super::super::status::qt_last_error()) };
        assert!(msg.to_str().unwrap().contains("already freed"), "{msg:?}");
    }
}
