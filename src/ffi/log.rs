//! Logging: the crate logs through the `log` facade; this module installs the one logger that
//! forwards records to a process-global C callback (`qt_log_set`), or by default writes
//! warnings and errors to stderr.
//!
//! The callback lives behind a `RwLock`: records take the read side (so callbacks run
//! concurrently on any thread), `qt_log_set` the write side, which is why the previous callback
//! is guaranteed idle once `qt_log_set` returns. A thread-local flag drops records logged from
//! inside the callback itself (it called back into the library), which would otherwise
//! re-enter the lock.

use std::cell::Cell;
use std::ffi::c_char;
use std::ffi::c_void;
use std::io::Write;
use std::sync::{Once, PoisonError, RwLock};

use ::log::{Level, LevelFilter, Log, Metadata, Record};

use super::boundary::guard;
use super::status::{qt_status, to_cstring_lossy};
use crate::error::Error;

/// `qt_log_set_level`: log nothing.
pub const QT_LOG_OFF: i32 = 0;
/// Log level: errors (the library could not do what was asked, or a bug was caught).
pub const QT_LOG_ERROR: i32 = 1;
/// Log level: warnings (misuse that was caught, such as freeing an object twice; suspicious input).
pub const QT_LOG_WARN: i32 = 2;
/// Log level: informational progress (a model was loaded, with its size and timing).
pub const QT_LOG_INFO: i32 = 3;
/// Log level: details useful when debugging an integration (every failed call with its status).
pub const QT_LOG_DEBUG: i32 = 4;
/// Log level: everything.
pub const QT_LOG_TRACE: i32 = 5;

/// Receives one log message.
///
/// - `level`: `QT_LOG_ERROR` .. `QT_LOG_TRACE`.
/// - `message`: UTF-8, NUL-terminated, no trailing newline; valid only during the call (copy it
///   to keep it).
/// - `user_data`: the pointer given to `qt_log_set`.
///
/// Threads: called on whichever thread logs, possibly several at once; it must be thread-safe
/// and must not unwind (no C++ exception may leave it). Messages that library calls made from
/// inside the callback would log are dropped.
pub type qt_log_cb = Option<unsafe extern "C" fn(level: i32, message: *const c_char, user_data: *mut c_void)>;

struct Sink {
    callback: qt_log_cb,
    user_data: *mut c_void,
}

// SAFETY: `qt_log_set`'s contract makes the callback and its user data safe to use from any
// thread, concurrently; the library never dereferences `user_data` itself.
unsafe impl Send for Sink {}
// SAFETY: as above.
unsafe impl Sync for Sink {}

static SINK: RwLock<Sink> = RwLock::new(Sink { callback: None, user_data: std::ptr::null_mut() });
static INSTALL: Once = Once::new();
static BRIDGE: Bridge = Bridge;

thread_local! {
    /// True while this thread runs the C callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Installs the bridge as the `log` logger, once per process, with the default level (warnings
/// and errors). When the host process (a Rust program using the rlib) already installed a
/// logger, records go to that logger instead and `qt_log_set` has no effect on them.
pub(crate) fn ensure_installed() {
    INSTALL.call_once(|| {
        if ::log::set_logger(&BRIDGE).is_ok() {
            ::log::set_max_level(LevelFilter::Warn);
        }
    });
}

struct Bridge;

impl Log for Bridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= ::log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if IN_CALLBACK.try_with(Cell::get).unwrap_or(true) {
            return; // logged from inside the callback (or during thread teardown): dropped
        }
        // Format before taking the lock: a Display impl is arbitrary code.
        let message = to_cstring_lossy(&record.args().to_string());
        let sink = SINK.read().unwrap_or_else(PoisonError::into_inner);
        match sink.callback {
            Some(callback) => {
                IN_CALLBACK.set(true);
                // SAFETY: the callback and user data were registered together through
                // `qt_log_set`, whose contract allows this call from any thread.
                unsafe { callback(record.level() as i32, message.as_ptr(), sink.user_data) };
                IN_CALLBACK.set(false);
            }
            None => {
                let level = match record.level() {
                    Level::Error => "error",
                    Level::Warn => "warning",
                    Level::Info => "info",
                    Level::Debug => "debug",
                    Level::Trace => "trace",
                };
                // One locked write per line; a failing stderr is not worth a panic.
                let _ = writeln!(std::io::stderr().lock(), "qwentts: {level}: {}", record.args());
            }
        }
    }

    fn flush(&self) {}
}

/// Routes the library's log messages to `callback` (with `user_data` passed back on each
/// call), or restores the default when `callback` is NULL: warnings and errors written to
/// stderr. Which levels are delivered is set by `qt_log_set_level` (default `QT_LOG_WARN`).
///
/// The setting is process-global. Set it once at start-up, before other threads call into the
/// library. When `qt_log_set` returns, the previous callback is not running and will not be
/// called again, so its `user_data` may be released (it waits for calls in progress on other
/// threads to return).
///
/// Pointers: `callback` must stay callable, and `user_data` valid for it, until it is replaced
/// by another `qt_log_set` call (or the process ends). See `qt_log_cb` for the thread rules.
///
/// Returns `QT_STATUS_OK`, or `QT_STATUS_INVALID_ARGUMENT` when called from inside the log
/// callback itself (the setting is then unchanged).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qt_log_set(callback: qt_log_cb, user_data: *mut c_void) -> qt_status {
    guard("qt_log_set", || {
        if IN_CALLBACK.try_with(Cell::get).unwrap_or(false) {
            return Err(Error::invalid_argument("cannot replace the log callback from inside the log callback"));
        }
        let mut sink = SINK.write().unwrap_or_else(PoisonError::into_inner);
        *sink = Sink { callback, user_data };
        Ok(())
    })
}

/// Sets the most detailed level delivered to the log callback (or stderr): `QT_LOG_OFF`,
/// `QT_LOG_ERROR`, `QT_LOG_WARN` (the default), `QT_LOG_INFO`, `QT_LOG_DEBUG` or
/// `QT_LOG_TRACE`. Process-global.
///
/// Threads: any thread; takes effect for messages logged after it returns.
/// Returns `QT_STATUS_OK`, or `QT_STATUS_INVALID_ARGUMENT` for any other value (level unchanged).
#[unsafe(no_mangle)]
pub extern "C" fn qt_log_set_level(level: i32) -> qt_status {
    guard("qt_log_set_level", || {
        let filter = match level {
            QT_LOG_OFF => LevelFilter::Off,
            QT_LOG_ERROR => LevelFilter::Error,
            QT_LOG_WARN => LevelFilter::Warn,
            QT_LOG_INFO => LevelFilter::Info,
            QT_LOG_DEBUG => LevelFilter::Debug,
            QT_LOG_TRACE => LevelFilter::Trace,
            other => {
                return Err(Error::invalid_argument(format!(
                    "log level {other} is not valid: use QT_LOG_OFF ({QT_LOG_OFF}) .. QT_LOG_TRACE ({QT_LOG_TRACE})"
                )));
            }
        };
        ::log::set_max_level(filter);
        Ok(())
    })
}
