//! GPU check and benchmark of the CUDA kernels (feature `cuda`); run on the GPU machine by
//! tools/device/run.sh after tools/device/build.sh built it here.
//!
//! 1. Correctness: the BF16-weight GEMV against an f64 host reference on fresh random data
//!    (seed printed; `QT_SEED` repeats a run), for every warps-per-row variant, with the output
//!    poisoned with NaN before each launch. Error per row is |y - ref| / Σ|W·x| (the scale
//!    the rounding error is proportional to); norm-wise ‖y - ref‖ / ‖ref‖ is also checked.
//! 2. Bandwidth: a 1 GiB device-to-device copy (the ceiling), then the GEMV timed with CUDA
//!    events behind a spin kernel (so host launch costs never show), median of repeats:
//!    per-launch event pairs, and back-to-back launches (one event pair around a batch).
//!    Shapes whose weights fit in L2 rotate over ≥ 256 MiB of weight copies ("cold").
//!
//! Exit status 0 only if every correctness check passed.

use std::time::Instant;

use half::bf16;
use qwentts::backend::cuda::gemv::{WARPS_PER_ROW, default_warps_per_row};
use qwentts::backend::cuda::{CudaDevice, driver::CudaSlice, kernels_compiler};

const TOL: f64 = 1e-5;
const MIB: usize = 1 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// f64 reference and per-row scale Σ|W||x|, computed on all cores.
fn reference(w: &[bf16], x: &[f32], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![(0.0f64, 0.0f64); rows];
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(4);
    let chunk = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (ci, part) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                for (k, o) in part.iter_mut().enumerate() {
                    let r = ci * chunk + k;
                    let row = &w[r * cols..(r + 1) * cols];
                    let (mut acc, mut mag) = (0.0f64, 0.0f64);
                    for (wv, xv) in row.iter().zip(x) {
                        let p = wv.to_f64() * *xv as f64;
                        acc += p;
                        mag += p.abs();
                    }
                    *o = (acc, mag);
                }
            });
        }
    });
    out.into_iter().unzip()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gpu_check: error: {e}");
        std::process::exit(2);
    }
}

fn run() -> qwentts::Result<()> {
    let dev = CudaDevice::new(0)?;
    let (maj, min) = dev.compute_capability()?;
    println!("device: {} cc {maj}.{min}, {} SMs", dev.name(), dev.sm_count()?);
    println!("kernels: {}", kernels_compiler().unwrap_or("?"));
    let seed = std::env::var("QT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!("seed: {seed}");
    let mut rng = Rng(seed);

    // ---- size checks (errors, not launches) --------------------------------------------
    {
        let w = dev.alloc_zeros::<bf16>(64)?;
        let x = dev.alloc_zeros::<f32>(8)?;
        let mut y = dev.alloc_zeros::<f32>(8)?;
        let bad = [
            dev.gemv_bf16(&w.as_view(), &x.as_view(), &mut y.as_view_mut(), 8, 9, None).is_err(),
            dev.gemv_bf16(&w.as_view(), &x.slice(0..7), &mut y.as_view_mut(), 8, 8, None).is_err(),
            dev.gemv_bf16(&w.as_view(), &x.as_view(), &mut y.as_view_mut(), 8, 8, Some(3)).is_err(),
            dev.gemv_bf16(&w.as_view(), &x.as_view(), &mut y.as_view_mut(), 0, 8, None).is_err(),
        ];
        println!("size checks reject bad calls: {}", if bad.iter().all(|&b| b) { "ok" } else { "FAIL" });
        if !bad.iter().all(|&b| b) {
            return Err(qwentts::Error::invalid_argument("size checks failed"));
        }
    }

    // ---- copy bandwidth ceiling ---------------------------------------------------------
    let copy_bytes = 1usize << 30;
    let copy_gbs = {
        let src = dev.alloc_zeros::<u8>(copy_bytes)?;
        let mut dst = dev.alloc_zeros::<u8>(copy_bytes)?;
        let (e0, e1) = (dev.timing_event()?, dev.timing_event()?);
        let mut t = Vec::new();
        for i in 0..13 {
            dev.record(&e0)?;
            dev.copy(&src, &mut dst)?;
            dev.record(&e1)?;
            let ms = dev.elapsed_ms(&e0, &e1)? as f64;
            if i >= 3 {
                t.push(ms);
            }
        }
        let ms = median(t);
        let gbs = 2.0 * copy_bytes as f64 / (ms * 1e-3) / 1e9;
        println!("memcpy D2D 1 GiB: {:.1} µs, {gbs:.0} GB/s (read + write)", ms * 1e3);
        gbs
    };

    // ---- correctness + timing per shape --------------------------------------------------
    let shapes: [(usize, usize, bool); 6] = [
        (1024, 3072, true),
        (3072, 1024, true),
        (2048, 1024, true),
        (1001, 1032, true), // ragged rows, vector path
        (999, 1037, true),  // cols % 8 != 0: scalar path
        (16384, 16384, true),
    ];
    let mut all_ok = true;
    let mut table = Vec::new();
    for &(rows, cols, bench) in &shapes {
        let t0 = Instant::now();
        let w_host: Vec<bf16> = (0..rows * cols).map(|_| bf16::from_f32(rng.uniform())).collect();
        let x_host: Vec<f32> = (0..cols).map(|_| rng.uniform()).collect();
        let (r64, mag) = reference(&w_host, &x_host, rows, cols);
        let w = dev.upload(&w_host)?;
        let x = dev.upload(&x_host)?;
        let mut y = dev.alloc_zeros::<f32>(rows)?;
        let poison = vec![f32::from_bits(0x7fc0_dead); rows];
        for &wpr in &WARPS_PER_ROW {
            dev.write(&mut y, &poison)?;
            dev.gemv_bf16(&w.as_view(), &x.as_view(), &mut y.as_view_mut(), rows, cols, Some(wpr))?;
            let got = dev.download(&y)?;
            let nan = got.iter().filter(|v| !v.is_finite()).count();
            let (mut worst, mut num, mut den) = (0.0f64, 0.0f64, 0.0f64);
            for i in 0..rows {
                let d = got[i] as f64 - r64[i];
                worst = worst.max(d.abs() / mag[i].max(f64::MIN_POSITIVE));
                num += d * d;
                den += r64[i] * r64[i];
            }
            let normwise = (num / den).sqrt();
            let ok = nan == 0 && worst <= TOL && normwise <= TOL;
            all_ok &= ok;
            println!(
                "check {rows}x{cols} wpr{wpr}: {} (non-finite {nan}, max row err {worst:.2e}, norm-wise {normwise:.2e})",
                if ok { "ok" } else { "FAIL" }
            );
        }
        println!("  (data + reference {:.1} s; default wpr {})", t0.elapsed().as_secs_f64(), default_warps_per_row(cols));
        if !bench {
            continue;
        }

        // Weight copies for L2-cold rotation: ≥ 256 MiB in all (one copy if W alone is that big).
        let w_bytes = rows * cols * 2;
        let copies = (256 * MIB).div_ceil(w_bytes).max(1);
        let mut pool: CudaSlice<bf16> = dev.alloc_zeros(copies * rows * cols)?;
        for c in 0..copies {
            let mut dst = pool.slice_mut(c * rows * cols..(c + 1) * rows * cols);
            dev.stream().memcpy_dtod(&w, &mut dst).map_err(|e| qwentts::Error::invalid_argument(format!("{e:?}")))?;
        }
        dev.synchronize()?;
        let bytes = (w_bytes + cols * 4 + rows * 4) as f64;
        let big = w_bytes >= 256 * MIB;
        let (n_ev, n_b2b, reps) = if big { (30, 10, 5) } else { (300, 100, 9) };
        for &wpr in &WARPS_PER_ROW {
            let launch = |c: usize, y: &mut CudaSlice<f32>| {
                let wv = pool.slice(c * rows * cols..(c + 1) * rows * cols);
                dev.gemv_bf16(&wv, &x.as_view(), &mut y.as_view_mut(), rows, cols, Some(wpr))
            };
            for i in 0..10 {
                launch(i % copies, &mut y)?;
            }
            // per-launch events, rotating copies
            let evs: Vec<_> = (0..2 * n_ev).map(|_| dev.timing_event()).collect::<Result<_, _>>()?;
            dev.spin(if big { 2_000_000 } else { 5_000_000 })?;
            for i in 0..n_ev {
                dev.record(&evs[2 * i])?;
                launch(i % copies, &mut y)?;
                dev.record(&evs[2 * i + 1])?;
            }
            dev.synchronize()?;
            let mut t = Vec::new();
            for i in 0..n_ev {
                t.push(dev.elapsed_ms(&evs[2 * i], &evs[2 * i + 1])? as f64 * 1e3);
            }
            let ev_us = median(t);
            // back-to-back, cold (rotating) and warm (one copy)
            let (e0, e1) = (dev.timing_event()?, dev.timing_event()?);
            let mut b2b = |rotate: bool| -> qwentts::Result<f64> {
                let mut t = Vec::new();
                for _ in 0..reps {
                    dev.spin(if big { 2_000_000 } else { 1_000_000 })?;
                    dev.record(&e0)?;
                    for i in 0..n_b2b {
                        launch(if rotate { i % copies } else { 0 }, &mut y)?;
                    }
                    dev.record(&e1)?;
                    t.push(dev.elapsed_ms(&e0, &e1)? as f64 * 1e3 / n_b2b as f64);
                }
                Ok(median(t))
            };
            let cold = b2b(true)?;
            let warm = if big { cold } else { b2b(false)? };
            let gbs = bytes / (cold * 1e-6) / 1e9;
            table.push((rows, cols, wpr, ev_us, bytes / (ev_us * 1e-6) / 1e9, cold, gbs, warm, copies));
        }
        drop(pool);
    }

    println!();
    println!("| W (rows×cols) | MiB | wpr | events µs (GB/s), L2-cold | back-to-back µs, L2-cold | GB/s | % of memcpy | back-to-back µs, L2-warm |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut big_best = 0.0f64;
    for &(rows, cols, wpr, ev, ev_gbs, cold, gbs, warm, copies) in &table {
        let big = copies == 1;
        println!(
            "| {rows}×{cols} | {:.1} | {wpr} | {ev:.2} ({ev_gbs:.0}) | {cold:.2} | {gbs:.0} | {:.0}% | {} |",
            (rows * cols * 2) as f64 / MIB as f64,
            100.0 * gbs / copy_gbs,
            if big { "= cold (W > L2)".to_owned() } else { format!("{warm:.2}") }
        );
        if big {
            big_best = big_best.max(gbs);
        }
    }
    println!("memcpy ceiling: {copy_gbs:.0} GB/s (1 GiB D2D, read + write)");
    println!(
        "goal ≥ 85% of memcpy on the 512 MiB matrix: best {:.0}% -> {}",
        100.0 * big_best / copy_gbs,
        if big_best >= 0.85 * copy_gbs { "met" } else { "NOT met" }
    );
    println!("correctness: {}", if all_ok { "all checks passed" } else { "FAILURES (see above)" });
    if !all_ok {
        std::process::exit(1);
    }
    Ok(())
}
