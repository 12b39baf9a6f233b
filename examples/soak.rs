//! Soak: load → clone → generate → free, many times through the C ABI, with the process's
//! resident memory (and, on a CUDA device, the device's used memory) recorded as it goes.
//! A leak shows as a slope after warm-up; the exit status is 1 when memory after warm-up
//! grew by more than `--max-growth-mib`.
//!
//! ```text
//! soak [--model DIR] [--cycles N] [--device ORDINAL] [--every K] [--max-growth-mib M]
//! ```
//!
//! Each cycle: `qt_load`, `qt_clone_voice_from_file` (the fixture reference, in-context),
//! `qt_generate` (seeded sampling, chunks of 1 then 2 frames into a callback, at most 12 frames), a
//! failing `qt_generate` (empty text) and a failing clone (missing file), then `qt_free` of
//! audio, voice and model. Figures go to BENCHMARKS.md (issue 11's soak).

use std::ffi::{CString, c_void};
use std::process::ExitCode;
use std::ptr;
use std::time::Instant;

use qwentts::ffi::*;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-base");
const REF_WAV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/audio/ref_24k.wav");
const REF_TEXT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/audio/ref_24k.txt");

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.windows(2).filter(|w| w[0] == name).last().and_then(|w| w[1].parse().ok()).unwrap_or(default)
}

/// Resident set size in MiB (Linux `/proc/self/statm`, second field in pages).
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    pages * page / (1 << 20) as f64
}

/// Used device memory in MiB (all processes), or 0 without a CUDA device.
fn device_used_mib(ordinal: i32) -> f64 {
    #[cfg(feature = "cuda")]
    if ordinal >= 0
        && let Ok(dev) = qwentts::backend::cuda::CudaDevice::new(ordinal as usize)
        && let Ok((free, total)) = dev.memory_info()
    {
        return (total - free) as f64 / (1 << 20) as f64;
    }
    let _ = ordinal;
    0.0
}

unsafe extern "C" fn count_chunk(_: *const qt_chunk, user: *mut c_void) -> i32 {
    // SAFETY: `user` is the &mut usize passed to qt_generate below.
    unsafe { *user.cast::<usize>() += 1 };
    QT_CONTINUE
}

fn check(status: qt_status, what: &str) -> Result<(), String> {
    if status < 0 {
        // SAFETY: qt_last_error never returns NULL.
        let detail = unsafe { std::ffi::CStr::from_ptr(qt_last_error()) }.to_string_lossy().into_owned();
        return Err(format!("{what}: status {status}: {detail}"));
    }
    Ok(())
}

fn cycle(dir: &CString, device: i32, seed: u64) -> Result<usize, String> {
    let mut mp = std::mem::MaybeUninit::<qt_model_params>::zeroed();
    // SAFETY: out-pointers to owned, correctly sized storage; handles freed below.
    unsafe {
        check(qt_model_params_default(mp.as_mut_ptr(), size_of::<qt_model_params>()), "params")?;
        let mut mp = mp.assume_init();
        mp.device = device;
        let mut model = ptr::null_mut();
        check(qt_load(dir.as_ptr(), &mp, &mut model), "qt_load")?;
        let wav = CString::new(REF_WAV).unwrap();
        let text = CString::new(std::fs::read_to_string(REF_TEXT).unwrap().trim()).unwrap();
        let mut voice = ptr::null_mut();
        let cloned = check(qt_clone_voice_from_file(model, wav.as_ptr(), text.as_ptr(), ptr::null(), &mut voice), "clone");
        if let Err(e) = cloned {
            qt_free(model.cast());
            return Err(e);
        }
        let mut gp = std::mem::MaybeUninit::<qt_gen_params>::zeroed();
        check(qt_gen_params_default(model, gp.as_mut_ptr(), size_of::<qt_gen_params>()), "gen params")?;
        let mut gp = gp.assume_init();
        gp.seed = seed;
        gp.max_frames = 12;
        gp.chunk_frames = 2;
        let say = CString::new("A soak test speaks the same short line again and again.").unwrap();
        let mut chunks = 0usize;
        let mut audio = ptr::null_mut();
        let generated = check(
            qt_generate(model, voice, say.as_ptr(), &gp, Some(count_chunk), (&raw mut chunks).cast(), &mut audio),
            "qt_generate",
        );
        // Failures must leak nothing either.
        let empty = CString::new("").unwrap();
        let mut none = ptr::null_mut();
        let _ = qt_generate(model, voice, empty.as_ptr(), &gp, None, ptr::null_mut(), &mut none);
        let missing = CString::new("/nonexistent/reference.wav").unwrap();
        let mut no_voice = ptr::null_mut();
        let _ = qt_clone_voice_from_file(model, missing.as_ptr(), text.as_ptr(), ptr::null(), &mut no_voice);
        qt_free(audio.cast());
        qt_free(voice.cast());
        qt_free(model.cast());
        generated.map(|()| chunks)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model: String = arg(&args, "--model", TINY.to_owned());
    let cycles: usize = arg(&args, "--cycles", 1000);
    let device: i32 = arg(&args, "--device", -1);
    let every: usize = arg(&args, "--every", 100).max(1);
    let max_growth: f64 = arg(&args, "--max-growth-mib", 16.0);
    let dir = CString::new(model.clone()).unwrap();
    let warmup = (cycles / 10).max(1);
    println!("soak: {model}, {cycles} cycles on {}", if device < 0 { "the CPU".into() } else { format!("CUDA {device}") });
    println!("| cycle | RSS MiB | device used MiB | s elapsed |");
    println!("|---|---|---|---|");
    let start = Instant::now();
    let (mut base_rss, mut base_dev) = (0.0, 0.0);
    let (mut peak_rss, mut peak_dev) = (0.0f64, 0.0f64);
    for i in 1..=cycles {
        if let Err(e) = cycle(&dir, device, i as u64) {
            eprintln!("soak: cycle {i}: {e}");
            return ExitCode::from(2);
        }
        let (rss, dev) = (rss_mib(), device_used_mib(device));
        if i == warmup {
            (base_rss, base_dev) = (rss, dev);
        }
        if i > warmup {
            (peak_rss, peak_dev) = (peak_rss.max(rss), peak_dev.max(dev));
        }
        if i % every == 0 || i == 1 || i == warmup {
            println!("| {i} | {rss:.1} | {dev:.0} | {:.1} |", start.elapsed().as_secs_f64());
        }
    }
    let (grow_rss, grow_dev) = (peak_rss - base_rss, peak_dev - base_dev);
    println!(
        "after warm-up ({warmup} cycles): RSS {base_rss:.1} MiB, peak later {peak_rss:.1} MiB (+{grow_rss:.1}); device used {base_dev:.0} MiB, peak later {peak_dev:.0} MiB (+{grow_dev:.0}); {:.1} ms per cycle",
        start.elapsed().as_secs_f64() * 1e3 / cycles as f64
    );
    if cycles > warmup && (grow_rss > max_growth || grow_dev > max_growth) {
        eprintln!("soak: memory grew after warm-up by more than {max_growth} MiB");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
