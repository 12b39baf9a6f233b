//! The C ABI driven from Rust, the way a careless C caller would: NULLs everywhere, bad
//! integers, undersized structs, foreign and freed pointers, a panicking body, log hooks; and
//! the real thing on synthetic checkpoints (see `tests/support`). Every failure must come back
//! as its own status with a message that names the culprit, and leave out-parameters alone.

mod support;

use std::collections::BTreeSet;
use std::ffi::{CStr, CString, OsStr, c_char, c_void};
use std::path::Path;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use qwentts::ErrorKind;
use qwentts::ffi::*;
use support::{SyntheticCheckpoint, TempDir};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn c_string(ptr: *const c_char) -> String {
    assert!(!ptr.is_null(), "the library returned a NULL string");
    unsafe { CStr::from_ptr(ptr) }.to_str().expect("UTF-8").to_owned()
}

fn last_error() -> String {
    c_string(qt_last_error())
}

fn status_str(status: qt_status) -> String {
    c_string(qt_status_str(status))
}

/// Asserts `got == want` and that the last error contains every fragment; returns the message.
#[track_caller]
fn expect(got: qt_status, want: qt_status, fragments: &[&str]) -> String {
    let message = last_error();
    assert_eq!(got, want, "got {}, want {}; last error: {message}", status_str(got), status_str(want));
    for fragment in fragments {
        assert!(message.contains(fragment), "last error lacks `{fragment}`: {message}");
    }
    if want == QT_STATUS_OK {
        assert_eq!(message, "", "a successful call leaves no last error");
    } else {
        assert!(!message.is_empty(), "a failed call must explain itself");
    }
    message
}

/// The path as the NUL-terminated bytes C passes (raw bytes on Unix).
fn c_path(path: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// qt_load with default params; returns the status and the (possibly untouched) out pointer.
fn load(path: &Path, params: *const qt_model_params) -> (qt_status, *mut qt_model) {
    let dir = c_path(path);
    let mut model = ptr::null_mut();
    let status = unsafe { qt_load(dir.as_ptr(), params, &mut model) };
    (status, model)
}

fn info_of(model: *const qt_model) -> qt_model_info {
    let mut info = empty_info();
    expect(unsafe { qt_model_get_info(model, &mut info) }, QT_STATUS_OK, &[]);
    info
}

fn empty_info() -> qt_model_info {
    qt_model_info {
        struct_size: size_of::<qt_model_info>() as u32,
        kind: 0,
        size_label: ptr::null(),
        sample_rate: 0,
        frame_rate: 0.0,
        n_codebooks: 0,
        talker_hidden_size: 0,
        talker_layers: 0,
        code_predictor_layers: 0,
        can_clone: 0,
        device: 0,
        n_languages: 0,
        n_speakers: 0,
        tensor_count: 0,
        weight_bytes: 0,
    }
}

fn names(
    model: *const qt_model,
    count: usize,
    get: unsafe extern "C" fn(*const qt_model, usize, *mut *const c_char) -> qt_status,
) -> Vec<String> {
    (0..count)
        .map(|i| {
            let mut name = ptr::null();
            expect(unsafe { get(model, i, &mut name) }, QT_STATUS_OK, &[]);
            c_string(name)
        })
        .collect()
}

/// Something that is not an object of the library: readable memory with a wrong tag.
fn fake_object() -> Box<[u64; 8]> {
    Box::new([0x5a5a_5a5a_5a5a_5a5a; 8])
}

// ---------------------------------------------------------------------------------------------
// statuses
// ---------------------------------------------------------------------------------------------

/// Published values never move: C programs compiled against an old header compare with them.
#[test]
fn status_values_are_pinned() {
    let pinned = [
        (QT_STATUS_OK, 0),
        (QT_STATUS_ABORTED, 1),
        (QT_STATUS_INVALID_ARGUMENT, -1),
        (QT_STATUS_NULL_ARGUMENT, -2),
        (QT_STATUS_ABI_MISMATCH, -3),
        (QT_STATUS_NOT_FOUND, -4),
        (QT_STATUS_IO, -5),
        (QT_STATUS_BAD_CONFIG, -6),
        (QT_STATUS_BAD_WEIGHTS, -7),
        (QT_STATUS_MISSING_TENSOR, -8),
        (QT_STATUS_SHAPE_MISMATCH, -9),
        (QT_STATUS_BAD_TOKENIZER, -10),
        (QT_STATUS_UNSUPPORTED, -11),
        (QT_STATUS_BUFFER_TOO_SMALL, -12),
        (QT_STATUS_INVALID_HANDLE, -13),
        (QT_STATUS_VOICE_MISMATCH, -14),
        (QT_STATUS_BAD_VOICE, -15),
        (QT_STATUS_NO_CUDA_DRIVER, -16),
        (QT_STATUS_NO_DEVICE, -17),
        (QT_STATUS_OUT_OF_MEMORY, -18),
        (QT_STATUS_CUDA, -19),
        (QT_STATUS_PANIC, -99),
    ];
    for (status, value) in pinned {
        assert_eq!(status, value, "{} was renumbered", status_str(status));
    }
    assert_eq!(status_table().count(), pinned.len(), "a status was added: pin it here too");
}

/// Every `ErrorKind`, listed by an exhaustive match so a new kind does not compile here
/// until it is added to the list.
fn all_error_kinds() -> Vec<ErrorKind> {
    use ErrorKind::*;
    let all = vec![
        InvalidArgument,
        NullArgument,
        AbiMismatch,
        NotFound,
        Io,
        BadConfig,
        BadWeights,
        MissingTensor,
        ShapeMismatch,
        BadTokenizer,
        Unsupported,
        BufferTooSmall,
        InvalidHandle,
        VoiceMismatch,
        BadVoice,
        NoCudaDriver,
        NoDevice,
        OutOfMemory,
        Cuda,
        Panic,
    ];
    for kind in &all {
        match kind {
            InvalidArgument | NullArgument | AbiMismatch | NotFound | Io | BadConfig | BadWeights | MissingTensor
            | ShapeMismatch | BadTokenizer | Unsupported | BufferTooSmall | InvalidHandle | VoiceMismatch
            | BadVoice | NoCudaDriver | NoDevice | OutOfMemory | Cuda | Panic => {}
        }
    }
    all
}

#[test]
fn each_error_kind_has_its_own_negative_status() {
    let kinds = all_error_kinds();
    let statuses: BTreeSet<qt_status> = kinds.iter().map(|&k| status_for_kind(k)).collect();
    assert_eq!(statuses.len(), kinds.len(), "two error kinds share a status");
    for kind in kinds {
        let status = status_for_kind(kind);
        assert!(status < 0, "{kind:?} -> {status} is not an error status");
        assert!(
            status_table().any(|(s, k)| s == status && k == Some(kind)),
            "{kind:?} -> {status} is not in the status table"
        );
    }
    for (status, kind) in status_table() {
        match kind {
            Some(kind) => assert_eq!(status_for_kind(kind), status),
            None => assert!(status >= 0, "a non-error status must not be negative"),
        }
    }
}

#[test]
fn status_str_names_every_status_and_never_returns_null() {
    for (status, _) in status_table() {
        let text = status_str(status);
        assert!(text.starts_with("QT_STATUS_") && !text.starts_with("QT_STATUS_UNKNOWN"), "{status}: {text}");
        assert!(text.contains(": "), "name and meaning: {text}");
    }
    assert!(status_str(QT_STATUS_NOT_FOUND).starts_with("QT_STATUS_NOT_FOUND:"));
    // Each text starts with the status's own name, so no two rows were swapped.
    for (status, name) in [
        (QT_STATUS_NO_CUDA_DRIVER, "QT_STATUS_NO_CUDA_DRIVER: "),
        (QT_STATUS_NO_DEVICE, "QT_STATUS_NO_DEVICE: "),
        (QT_STATUS_OUT_OF_MEMORY, "QT_STATUS_OUT_OF_MEMORY: "),
        (QT_STATUS_CUDA, "QT_STATUS_CUDA: "),
    ] {
        assert!(status_str(status).starts_with(name), "{status}: {}", status_str(status));
    }
    for unknown in [2, 100, -20, -98, -100, i32::MIN, i32::MAX] {
        assert!(status_str(unknown).starts_with("QT_STATUS_UNKNOWN"), "{unknown}");
    }
}

#[test]
fn versions_agree() {
    assert_eq!(c_string(qt_version()), env!("CARGO_PKG_VERSION"));
    assert_eq!(qt_abi_version(), QT_ABI_VERSION);
    let build = c_string(qt_build_info());
    assert!(build.starts_with(&format!("qwentts {}; git ", env!("CARGO_PKG_VERSION"))), "{build}");
    // The backends compiled in, and for CUDA the GPU code it carries (or that it has none).
    if cfg!(feature = "cuda") {
        let cuda = build.split_once("backends: cpu, cuda (").map(|(_, rest)| rest).unwrap_or_else(|| panic!("{build}"));
        assert!(cuda.ends_with(')'), "{build}");
        assert!(cuda.starts_with("sm_") || cuda == "no kernels compiled)", "{build}");
    } else {
        assert!(build.ends_with("backends: cpu"), "{build}");
    }
}

/// Without the `cuda` feature there is no GPU to count; with it, the count is the backend's
/// (0 on a machine without an NVIDIA driver). Never negative, never a panic, and the last error
/// is left alone.
#[test]
fn device_count_is_zero_without_cuda_and_leaves_the_last_error() {
    use qwentts::ffi::library::qt_device_count;
    std::thread::spawn(|| {
        let status = unsafe { qt_model_params_default(ptr::null_mut(), size_of::<qt_model_params>()) };
        let message = expect(status, QT_STATUS_NULL_ARGUMENT, &["`out` is NULL"]);
        let count = qt_device_count();
        assert_eq!(last_error(), message, "qt_device_count changed the last error");
        assert!(count >= 0, "{count}");
        if cfg!(feature = "cuda") {
            assert_eq!(count as usize, qwentts::backend::cuda_device_count());
        } else {
            assert_eq!(count, 0, "no CUDA backend built, yet {count} devices");
        }
        // Stable across calls and threads.
        let threads: Vec<_> = (0..4).map(|_| std::thread::spawn(|| qt_device_count())).collect();
        let others: Vec<i32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(others.iter().all(|&n| n == count), "{count} then {others:?}");
    })
    .join()
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// last error
// ---------------------------------------------------------------------------------------------

#[test]
fn last_error_is_per_thread_and_cleared_by_the_next_fallible_call() {
    std::thread::spawn(|| {
        assert_eq!(last_error(), "", "a fresh thread has no error");
        let status = unsafe { qt_model_params_default(ptr::null_mut(), size_of::<qt_model_params>()) };
        let message = expect(status, QT_STATUS_NULL_ARGUMENT, &["qt_model_params_default", "`out` is NULL"]);

        // Getters leave it alone, so `printf("%s: %s", qt_status_str(st), qt_last_error())` works.
        let _ = (qt_status_str(status), qt_version(), qt_abi_version(), qt_build_info());
        let _ = qwentts::ffi::library::qt_device_count();
        assert_eq!(last_error(), message);

        // Another thread has its own.
        std::thread::spawn(|| assert_eq!(last_error(), "")).join().unwrap();

        // A successful fallible call clears it.
        let mut params = qt_model_params { struct_size: 0, device: 0, engine: 0, prefix_cache_mb: 0 };
        expect(unsafe { qt_model_params_default(&mut params, size_of::<qt_model_params>()) }, QT_STATUS_OK, &[]);
    })
    .join()
    .unwrap();
}

#[test]
fn panic_inside_the_boundary_becomes_a_status() {
    let status = qwentts::ffi::boundary::guard("qt_test_entry", || panic!("boom at the boundary"));
    expect(status, QT_STATUS_PANIC, &["qt_test_entry", "boom at the boundary", "bug"]);
    let status = qwentts::ffi::boundary::guard("qt_test_entry", || std::panic::panic_any(42_u32));
    expect(status, QT_STATUS_PANIC, &["non-string panic payload"]);
    // The library is still usable, and the error is gone after the next call.
    let mut params = qt_model_params { struct_size: 0, device: 0, engine: 0, prefix_cache_mb: 0 };
    expect(unsafe { qt_model_params_default(&mut params, size_of::<qt_model_params>()) }, QT_STATUS_OK, &[]);
}

// ---------------------------------------------------------------------------------------------
// params
// ---------------------------------------------------------------------------------------------

#[test]
fn params_default_writes_only_what_the_caller_declared() {
    let size = size_of::<qt_model_params>();
    let mut params = qt_model_params { struct_size: 0, device: 1234, engine: 99, prefix_cache_mb: 0 };
    expect(unsafe { qt_model_params_default(&mut params, size) }, QT_STATUS_OK, &[]);
    assert_eq!(params, qt_model_params { struct_size: size as u32, device: QT_DEVICE_CPU, engine: QT_ENGINE_AUTO, prefix_cache_mb: 0 });

    // A caller built against the v1 header (no `engine`): only its 8 bytes are written.
    let mut v1 = qt_model_params { struct_size: 0, device: 1234, engine: 99, prefix_cache_mb: 0 };
    expect(unsafe { qt_model_params_default(&mut v1, 8) }, QT_STATUS_OK, &[]);
    assert_eq!(v1, qt_model_params { struct_size: 8, device: QT_DEVICE_CPU, engine: 99, prefix_cache_mb: 0 });

    // A newer caller with a bigger struct: our fields are filled, the rest untouched.
    let mut bigger = [0xabu8; 64];
    let out = bigger.as_mut_ptr().cast::<qt_model_params>();
    assert_eq!(out.align_offset(align_of::<qt_model_params>()), 0);
    expect(unsafe { qt_model_params_default(out, bigger.len()) }, QT_STATUS_OK, &[]);
    assert_eq!(
        unsafe { out.read() },
        qt_model_params { struct_size: size as u32, device: QT_DEVICE_CPU, engine: QT_ENGINE_AUTO, prefix_cache_mb: 0 }
    );
    assert!(bigger[size..].iter().all(|&b| b == 0xab), "wrote past its own fields");

    // Too small for any layout: nothing written.
    for small in [0, 1, 4, 7] {
        let mut params = qt_model_params { struct_size: 77, device: 77, engine: 77, prefix_cache_mb: 0 };
        let status = unsafe { qt_model_params_default(&mut params, small) };
        expect(status, QT_STATUS_ABI_MISMATCH, &["qt_model_params", &format!("is {small}")]);
        assert_eq!(params, qt_model_params { struct_size: 77, device: 77, engine: 77, prefix_cache_mb: 0 });
    }
    expect(unsafe { qt_model_params_default(ptr::null_mut(), size) }, QT_STATUS_NULL_ARGUMENT, &["`out`"]);
}

// ---------------------------------------------------------------------------------------------
// qt_load: arguments
// ---------------------------------------------------------------------------------------------

#[test]
fn load_rejects_bad_arguments_and_leaves_the_out_pointer_alone() {
    let sentinel = ptr::dangling_mut::<qt_model>();
    let dir = c"/nonexistent/qwentts";
    let mut out = sentinel;

    let status = unsafe { qt_load(ptr::null(), ptr::null(), &mut out) };
    expect(status, QT_STATUS_NULL_ARGUMENT, &["qt_load", "`model_dir` is NULL"]);
    let status = unsafe { qt_load(dir.as_ptr(), ptr::null(), ptr::null_mut()) };
    expect(status, QT_STATUS_NULL_ARGUMENT, &["`out_model` is NULL"]);
    let status = unsafe { qt_load(c"".as_ptr(), ptr::null(), &mut out) };
    expect(status, QT_STATUS_INVALID_ARGUMENT, &["`model_dir` is an empty path"]);

    for struct_size in [0, 4, 7] {
        let params = qt_model_params { struct_size, device: QT_DEVICE_CPU, engine: QT_ENGINE_AUTO, prefix_cache_mb: 0 };
        let status = unsafe { qt_load(dir.as_ptr(), &params, &mut out) };
        expect(status, QT_STATUS_ABI_MISMATCH, &["`params`->struct_size", "qt_model_params"]);
    }
    // Devices are validated before any file is read.
    let params = qt_model_params { struct_size: size_of::<qt_model_params>() as u32, device: -7, engine: QT_ENGINE_AUTO, prefix_cache_mb: 0 };
    let status = unsafe { qt_load(dir.as_ptr(), &params, &mut out) };
    expect(status, QT_STATUS_INVALID_ARGUMENT, &["device -7 is not valid", "QT_DEVICE_CPU"]);
    let params = qt_model_params { struct_size: size_of::<qt_model_params>() as u32, device: 0, engine: QT_ENGINE_AUTO, prefix_cache_mb: 0 };
    let status = unsafe { qt_load(dir.as_ptr(), &params, &mut out) };
    if cfg!(feature = "cuda") {
        // With the CUDA backend the device is checked first: no driver here (CI); on the GPU
        // machine device 0 exists and the missing directory is reported next.
        let want = if qt_device_count() > 0 { QT_STATUS_NOT_FOUND } else { QT_STATUS_NO_CUDA_DRIVER };
        expect(status, want, &[]);
    } else {
        expect(status, QT_STATUS_UNSUPPORTED, &["device 0", "has no CUDA backend"]);
    }

    assert_eq!(out, sentinel, "out_model written on failure");
}

// ---------------------------------------------------------------------------------------------
// qt_load: checkpoints
// ---------------------------------------------------------------------------------------------

#[test]
fn load_reports_missing_and_malformed_checkpoints() {
    let tmp = TempDir::new("ffi-missing");
    let missing = tmp.path().join("no-such-checkpoint");
    let (status, out) = load(&missing, ptr::null());
    expect(status, QT_STATUS_NOT_FOUND, &["qt_load", "no-such-checkpoint"]);
    assert!(out.is_null());

    // Unix paths are bytes: a non-UTF-8 name reaches the file system and is reported lossily.
    use std::os::unix::ffi::OsStrExt;
    let missing = tmp.path().join(OsStr::from_bytes(b"caf\xe9-\xff"));
    let (status, out) = load(&missing, ptr::null());
    expect(status, QT_STATUS_NOT_FOUND, &["caf\u{fffd}-\u{fffd}"]);
    assert!(out.is_null());

    let ck = SyntheticCheckpoint::new();
    ck.write_config_text("{ \"talker_config\": [1, 2");
    let (status, out) = load(ck.dir(), ptr::null());
    expect(status, QT_STATUS_BAD_CONFIG, &["config.json"]);
    assert!(out.is_null());
}

#[test]
fn load_accepts_a_non_utf8_directory_name() {
    use std::os::unix::ffi::OsStrExt;
    let ck = SyntheticCheckpoint::new();
    let dir = ck.copy_as(OsStr::from_bytes(b"tiny-\xff\xfe-base"));
    let (status, model) = load(&dir, ptr::null());
    expect(status, QT_STATUS_OK, &[]);
    assert!(!model.is_null());
    assert_eq!(info_of(model).kind, QT_MODEL_BASE);
    unsafe { qt_free(model.cast()) };
}

#[test]
fn model_info_and_names_match_the_rust_api() {
    for variant in ["Qwen3-TTS-12Hz-0.6B-Base", "Qwen3-TTS-12Hz-0.6B-CustomVoice"] {
        let ck = SyntheticCheckpoint::from_variant(variant);
        let expected = qwentts::Model::load(ck.dir(), &Default::default()).unwrap().info();
        let mut params = qt_model_params { struct_size: 0, device: 0, engine: 0, prefix_cache_mb: 0 };
        expect(unsafe { qt_model_params_default(&mut params, size_of::<qt_model_params>()) }, QT_STATUS_OK, &[]);
        let (status, model) = load(ck.dir(), &params);
        expect(status, QT_STATUS_OK, &[]);

        let info = info_of(model);
        assert_eq!(info.struct_size as usize, size_of::<qt_model_info>());
        let kind = match expected.kind {
            qwentts::ModelKind::Base => QT_MODEL_BASE,
            qwentts::ModelKind::CustomVoice => QT_MODEL_CUSTOM_VOICE,
            qwentts::ModelKind::VoiceDesign => QT_MODEL_VOICE_DESIGN,
        };
        assert_eq!(info.kind, kind, "{variant}");
        assert_eq!(c_string(info.size_label), expected.size_label);
        assert_eq!(info.sample_rate as u32, expected.sample_rate);
        assert_eq!(info.frame_rate, expected.frame_rate);
        assert_eq!(info.n_codebooks as usize, expected.num_codebooks);
        assert_eq!(info.talker_hidden_size as usize, expected.talker_hidden_size);
        assert_eq!(info.talker_layers as usize, expected.talker_layers);
        assert_eq!(info.code_predictor_layers as usize, expected.code_predictor_layers);
        assert_eq!(info.can_clone, i32::from(expected.can_clone));
        assert_eq!(info.device, QT_DEVICE_CPU);
        assert_eq!(info.tensor_count, expected.tensor_count as u64);
        assert_eq!(info.weight_bytes, expected.weight_bytes);
        assert_eq!(names(model, info.n_languages, qt_model_language), expected.languages);
        assert_eq!(names(model, info.n_speakers, qt_model_speaker), expected.speakers);
        if variant.ends_with("CustomVoice") {
            assert!(info.n_speakers > 0 && info.can_clone == 0);
        } else {
            assert!(info.n_speakers == 0 && info.can_clone == 1);
        }

        // Out-of-range names: an error, and the out-parameter untouched.
        let mut name: *const c_char = c"untouched".as_ptr();
        let before = name;
        let status = unsafe { qt_model_language(model, info.n_languages, &mut name) };
        expect(status, QT_STATUS_INVALID_ARGUMENT, &["language index", "out of range"]);
        let status = unsafe { qt_model_speaker(model, info.n_speakers + 3, &mut name) };
        expect(status, QT_STATUS_INVALID_ARGUMENT, &["speaker index", "out of range"]);
        assert_eq!(name, before);
        let status = unsafe { qt_model_language(model, 0, ptr::null_mut()) };
        expect(status, QT_STATUS_NULL_ARGUMENT, &["`out_name`"]);
        let status = unsafe { qt_model_speaker(ptr::null(), 0, &mut name) };
        expect(status, QT_STATUS_NULL_ARGUMENT, &["`model`"]);

        unsafe { qt_free(model.cast()) };
        expect(QT_STATUS_OK, QT_STATUS_OK, &[]);
    }
}

#[test]
fn model_info_respects_struct_size() {
    let ck = SyntheticCheckpoint::new();
    let (status, model) = load(ck.dir(), ptr::null());
    expect(status, QT_STATUS_OK, &[]);
    let size = size_of::<qt_model_info>();

    // Too small: refused, nothing written.
    for struct_size in [0u32, 4, (size - 1) as u32] {
        let mut info = empty_info();
        info.struct_size = struct_size;
        info.kind = 77;
        let status = unsafe { qt_model_get_info(model, &mut info) };
        expect(status, QT_STATUS_ABI_MISMATCH, &["`out_info`->struct_size", &format!("is {struct_size}")]);
        assert_eq!((info.struct_size, info.kind), (struct_size, 77));
    }

    // A newer caller's bigger struct: our layout filled, the size we wrote reported, the rest untouched.
    #[repr(C)]
    struct Newer {
        info: qt_model_info,
        future: [u8; 32],
    }
    let mut newer = Newer { info: empty_info(), future: [0xcd; 32] };
    newer.info.struct_size = size_of::<Newer>() as u32;
    expect(unsafe { qt_model_get_info(model, &mut newer.info) }, QT_STATUS_OK, &[]);
    assert_eq!(newer.info.struct_size as usize, size);
    assert_eq!(newer.info.kind, QT_MODEL_BASE);
    assert!(newer.future.iter().all(|&b| b == 0xcd));

    let status = unsafe { qt_model_get_info(model, ptr::null_mut()) };
    expect(status, QT_STATUS_NULL_ARGUMENT, &["`out_info` is NULL"]);
    let mut info = empty_info();
    let status = unsafe { qt_model_get_info(ptr::null(), &mut info) };
    expect(status, QT_STATUS_NULL_ARGUMENT, &["`model` is NULL"]);
    unsafe { qt_free(model.cast()) };
}

#[test]
fn one_model_serves_many_threads() {
    let ck = SyntheticCheckpoint::new();
    let (status, model) = load(ck.dir(), ptr::null());
    expect(status, QT_STATUS_OK, &[]);
    let address = model as usize;
    let label = info_of(model).size_label as usize;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let info = info_of(address as *const qt_model);
                    assert_eq!(info.size_label as usize, label, "names live in the model: one pointer");
                    assert_eq!(names(address as *const qt_model, 1, qt_model_language), ["auto"]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    unsafe { qt_free(model.cast()) };
}

// ---------------------------------------------------------------------------------------------
// qt_free and object tags
// ---------------------------------------------------------------------------------------------

#[test]
fn free_accepts_null_and_refuses_what_it_does_not_own() {
    unsafe { qt_free(ptr::null_mut()) };
    assert_eq!(last_error(), "", "qt_free(NULL) is a silent no-op");

    let fake = fake_object();
    unsafe { qt_free(fake.as_ptr() as *mut c_void) };
    let message = last_error();
    assert!(message.contains("is not a live qwentts object") && message.contains("nothing was freed"), "{message}");
    assert!(fake.iter().all(|&w| w == 0x5a5a_5a5a_5a5a_5a5a), "qt_free touched memory it does not own");

    // An accessor given a foreign object says so instead of misreading it.
    let mut info = empty_info();
    let status = unsafe { qt_model_get_info(fake.as_ptr().cast(), &mut info) };
    expect(
        status,
        QT_STATUS_INVALID_HANDLE,
        &["`model`", "not a live qt_model", "not an object returned by this library"],
    );
    assert_eq!(info.kind, 0);
}

#[test]
fn double_free_is_reported_not_fatal() {
    let ck = SyntheticCheckpoint::new();
    let (status, model) = load(ck.dir(), ptr::null());
    expect(status, QT_STATUS_OK, &[]);
    unsafe { qt_free(model.cast()) };
    assert_eq!(last_error(), "");
    unsafe { qt_free(model.cast()) };
    let message = last_error();
    assert!(message.contains("already freed"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// logging (process-global: one test owns it)
// ---------------------------------------------------------------------------------------------

static LOG_LOCK: Mutex<()> = Mutex::new(());

type Lines = Mutex<Vec<(i32, String)>>;

unsafe extern "C" fn collect(level: i32, message: *const c_char, user_data: *mut c_void) {
    let lines = unsafe { &*(user_data as *const Lines) };
    let message = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
    lines.lock().unwrap().push((level, message));
}

/// Tries to replace the callback from inside it; records the status it got.
unsafe extern "C" fn reenter(_level: i32, _message: *const c_char, user_data: *mut c_void) {
    let seen = unsafe { &*(user_data as *const AtomicI32) };
    seen.store(unsafe { qt_log_set(None, ptr::null_mut()) }, Ordering::SeqCst);
}

fn logged(lines: &Lines, fragment: &str) -> Vec<i32> {
    lines.lock().unwrap().iter().filter(|(_, m)| m.contains(fragment)).map(|&(l, _)| l).collect()
}

/// Frees a fake object (a warning naming its address) and returns that address as logged.
/// The fakes are kept alive in `keep`, so every address is unique within the test.
#[allow(clippy::vec_box)] // the boxes are the point: distinct addresses that stay allocated
fn warn_once(keep: &mut Vec<Box<[u64; 8]>>) -> String {
    let fake = fake_object();
    let address = format!("{:p}", fake.as_ptr());
    unsafe { qt_free(fake.as_ptr() as *mut c_void) };
    keep.push(fake);
    address
}

/// Restores the default sink and level even when an assertion fails, before the data the
/// test's callback points to is dropped (declare it after that data).
struct RestoreLogDefaults;

impl Drop for RestoreLogDefaults {
    fn drop(&mut self) {
        unsafe { qt_log_set(None, ptr::null_mut()) };
        qt_log_set_level(QT_LOG_WARN);
    }
}

#[test]
fn log_hook_receives_messages_filters_by_level_and_restores_the_default() {
    let _serial = LOG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lines: Box<Lines> = Box::default();
    let seen = Box::new(AtomicI32::new(i32::MIN));
    let _restore = RestoreLogDefaults;
    let mut fakes = Vec::new();
    let user_data = &*lines as *const Lines as *mut c_void;
    expect(unsafe { qt_log_set(Some(collect), user_data) }, QT_STATUS_OK, &[]);

    // Default level: warnings arrive, with their level.
    // Another test thread may log about a stale handle that happened to have this address
    // before our fake was allocated there, so expect at least one line, all warnings.
    let address = warn_once(&mut fakes);
    let levels = logged(&lines, &address);
    assert!(!levels.is_empty() && levels.iter().all(|&l| l == QT_LOG_WARN), "{:?}", lines.lock().unwrap());

    // Errors only: the warning is filtered out.
    expect(qt_log_set_level(QT_LOG_ERROR), QT_STATUS_OK, &[]);
    let address = warn_once(&mut fakes);
    assert!(logged(&lines, &address).is_empty());

    // Debug: every failed call is logged with its status.
    expect(qt_log_set_level(QT_LOG_DEBUG), QT_STATUS_OK, &[]);
    let status = unsafe { qt_model_params_default(ptr::null_mut(), 3) };
    assert_eq!(status, QT_STATUS_NULL_ARGUMENT);
    assert!(!logged(&lines, "qt_model_params_default -> QT_STATUS_NULL_ARGUMENT").is_empty());

    for bad in [-1, 6, 100, i32::MIN] {
        expect(qt_log_set_level(bad), QT_STATUS_INVALID_ARGUMENT, &[&format!("log level {bad} is not valid")]);
    }
    expect(qt_log_set_level(QT_LOG_WARN), QT_STATUS_OK, &[]);

    // The callback cannot replace itself from inside (the lock it runs under would deadlock).
    let seen_ptr = &*seen as *const AtomicI32 as *mut c_void;
    expect(unsafe { qt_log_set(Some(reenter), seen_ptr) }, QT_STATUS_OK, &[]);
    warn_once(&mut fakes);
    assert_eq!(seen.load(Ordering::SeqCst), QT_STATUS_INVALID_ARGUMENT);

    // NULL restores stderr; the previous callback is never called again, so its data may go.
    expect(unsafe { qt_log_set(None, ptr::null_mut()) }, QT_STATUS_OK, &[]);
    let before = lines.lock().unwrap().len();
    let address = warn_once(&mut fakes);
    assert!(logged(&lines, &address).is_empty());
    assert_eq!(lines.lock().unwrap().len(), before);
}

/// The C ABI on a real GPU: `qt_load` with `device = 0` (a `cuda` build on the device
/// machine), `qt_model_get_info` reports the device, and greedy `qt_generate` gives the same
/// audio as the CPU backend on both engines, the megakernel and the unfused path (the
/// fixture's weights are BF16 on both sides, greedy codes agree).
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn cuda_device_through_the_c_abi() {
    assert!(qt_device_count() > 0, "no CUDA device visible");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-base");
    let run = |device: i32, engine: i32| -> (i32, Vec<f32>) {
        let params = qt_model_params { device, engine, ..qt_model_params::default() };
        let (status, model) = load(&dir, &params);
        expect(status, QT_STATUS_OK, &[]);
        let info = info_of(model);
        assert_eq!(info.device, device);
        let embedding: Vec<f32> = (0..info.talker_hidden_size).map(|i| (i as f32 * 0.61).cos() * 0.1).collect();
        let mut voice = ptr::null_mut();
        let st = unsafe { qt_voice_from_embedding(model, embedding.as_ptr(), embedding.len(), &mut voice) };
        expect(st, QT_STATUS_OK, &[]);
        let mut gp: qt_gen_params = unsafe { std::mem::zeroed() };
        expect(unsafe { qt_gen_params_default(model, &mut gp, size_of::<qt_gen_params>()) }, QT_STATUS_OK, &[]);
        gp.do_sample = 0;
        gp.sub_do_sample = 0;
        gp.max_frames = 10;
        let text = CString::new("The GPU speaks through C.").unwrap();
        let mut audio = ptr::null_mut();
        let st = unsafe { qt_generate(model, voice, text.as_ptr(), &gp, None, ptr::null_mut(), &mut audio) };
        expect(st, QT_STATUS_OK, &[]);
        let (mut samples, mut n) = (ptr::null(), 0usize);
        expect(unsafe { qt_audio_samples(audio, &mut samples, &mut n) }, QT_STATUS_OK, &[]);
        let pcm = unsafe { std::slice::from_raw_parts(samples, n) }.to_vec();
        unsafe {
            qt_free(audio as *mut c_void);
            qt_free(voice as *mut c_void);
            qt_free(model as *mut c_void);
        }
        (info.device, pcm)
    };
    let (_, cpu) = run(QT_DEVICE_CPU, QT_ENGINE_AUTO);
    for (engine, name) in [(QT_ENGINE_MEGAKERNEL, "megakernel"), (QT_ENGINE_UNFUSED, "unfused")] {
        let (_, gpu) = run(0, engine);
        assert!(!gpu.is_empty() && gpu.iter().all(|v| v.is_finite()), "{name}: GPU audio empty or not finite");
        assert_eq!(gpu.len(), cpu.len(), "{name}: same greedy frames on both devices");
        let (num, den) = gpu.iter().zip(&cpu).fold((0.0f64, 0.0f64), |(n, d), (g, c)| {
            (n + (*g as f64 - *c as f64).powi(2), d + (*c as f64).powi(2))
        });
        let rel = (num / den.max(f64::MIN_POSITIVE)).sqrt();
        eprintln!("C ABI, tiny-base, greedy, {name}: {} samples, GPU vs CPU audio rel err {rel:.2e}", gpu.len());
        assert!(rel < 1e-4, "{name}: GPU vs CPU audio rel err {rel:.2e}");
    }
}

/// `qt_model_params.engine`: unknown values are refused before anything is read, and the
/// megakernel needs a CUDA device.
#[test]
fn engine_param_is_checked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-base");
    for bad in [-1, 3, 1000] {
        let params = qt_model_params { engine: bad, ..qt_model_params::default() };
        let (status, model) = load(&dir, &params);
        expect(status, QT_STATUS_INVALID_ARGUMENT, &["engine", &bad.to_string(), "QT_ENGINE_AUTO"]);
        assert!(model.is_null());
    }
    let params = qt_model_params { engine: QT_ENGINE_MEGAKERNEL, ..qt_model_params::default() };
    let (status, model) = load(&dir, &params);
    expect(status, QT_STATUS_UNSUPPORTED, &["megakernel", "CUDA"]);
    assert!(model.is_null());
    for engine in [QT_ENGINE_AUTO, QT_ENGINE_UNFUSED] {
        let params = qt_model_params { engine, ..qt_model_params::default() };
        let (status, model) = load(&dir, &params);
        expect(status, QT_STATUS_OK, &[]);
        unsafe { qt_free(model as *mut c_void) };
    }
}
