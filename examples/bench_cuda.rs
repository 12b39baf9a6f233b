//! CUDA benchmarks (feature `cuda`): kernel bandwidth, one decoder layer, the 28-layer
//! talker stack launched directly and as a CUDA graph, the code-predictor pass, and whole
//! frames through the public API. Run on the GPU machine by tools/device/run.sh.
//!
//! ```text
//! bench_cuda [--model DIR]... [--frames N] [--runs R] [--quick] [--megakernel-only]
//! ```
//!
//! `--megakernel-only` skips the kernel tables and the unfused figures (measured before):
//! only the frame megakernel's components and its whole frames through the API.
//!
//! Method (METHOD.md): bytes are counted per kernel (each weight and activation once); GPU
//! time comes from CUDA events, medians of many repeats, after warm-up; "cold" shapes rotate
//! over ≥ 256 MiB of weight copies so L2 (50 MB) never holds them; back-to-back figures
//! queue the launches behind a spin kernel so the host's launch path never shows; "wall"
//! figures are host clock around real calls (what a request sees). Correctness is checked
//! by tests/cuda_kernels.rs and tests/cuda_model.rs, not here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use half::bf16;
use qwentts::backend::cuda::driver::{CudaEvent, CudaStream};
use qwentts::backend::cuda::{CudaBackend, CudaDevice, CudaStreamCtx, CudaWeight, GemmPrecision, kernels_compiler};
use qwentts::backend::{AttentionShape, Backend, Rope};
use qwentts::model::code_predictor::CodePredictor;
use qwentts::model::talker::Talker;
use qwentts::model::{Checkpoint, DType, TensorView};
use qwentts::{Device, EngineKind, GenerateOptions, LoadOptions, Model, Result, Voice};

const MIB: usize = 1 << 20;
const TEXT: &str = "Technology is changing the world in ways we never imagined possible.";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg_values(args: &[String], name: &str) -> Vec<String> {
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    arg_values(args, name).last().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Random bf16 weight of `shape` (values in ±0.05: realistic magnitudes, never zeros).
fn random_weight(b: &CudaBackend, shape: &[usize], seed: u64) -> Result<CudaWeight> {
    let n: usize = shape.iter().product();
    let mut z = seed;
    let bytes: Vec<u8> = (0..n)
        .flat_map(|_| {
            z = z.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            bf16::from_f32(u * 0.05).to_bits().to_le_bytes()
        })
        .collect();
    b.upload_weight(&TensorView { name: "bench", dtype: DType::BF16, shape, bytes: &bytes })
}

fn random_buffer(b: &CudaBackend, s: &mut CudaStreamCtx, n: usize) -> Result<<CudaBackend as Backend>::Buffer> {
    let mut buf = b.alloc(n)?;
    let host: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.5).collect();
    b.write(s, &mut buf, 0, &host)?;
    Ok(buf)
}

struct Timer<'a> {
    dev: &'a CudaDevice,
    stream: Arc<CudaStream>,
    e0: CudaEvent,
    e1: CudaEvent,
}

impl<'a> Timer<'a> {
    fn new(dev: &'a CudaDevice, stream: &Arc<CudaStream>) -> Result<Self> {
        Ok(Timer { dev, stream: stream.clone(), e0: dev.timing_event()?, e1: dev.timing_event()? })
    }

    /// GPU µs per call: `n` calls queued back to back behind a spin kernel, median of `reps`.
    fn b2b(&self, n: usize, reps: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<f64> {
        for i in 0..3 {
            f(i)?; // warm-up
        }
        let mut t = Vec::new();
        for _ in 0..reps {
            self.dev.spin(&self.stream, 3_000_000)?;
            self.dev.record(&self.stream, &self.e0)?;
            for i in 0..n {
                f(i)?;
            }
            self.dev.record(&self.stream, &self.e1)?;
            t.push(self.dev.elapsed_ms(&self.e0, &self.e1)? as f64 * 1e3 / n as f64);
        }
        Ok(median(t))
    }

    /// GPU µs of one call alone (event pair per call, queued behind a spin), median of `n`.
    fn single(&self, n: usize, mut f: impl FnMut(usize) -> Result<()>) -> Result<f64> {
        f(0)?;
        let evs: Vec<_> = (0..2 * n).map(|_| self.dev.timing_event()).collect::<Result<_>>()?;
        self.dev.spin(&self.stream, 3_000_000)?;
        for i in 0..n {
            self.dev.record(&self.stream, &evs[2 * i])?;
            f(i)?;
            self.dev.record(&self.stream, &evs[2 * i + 1])?;
        }
        let mut t = Vec::new();
        for i in 0..n {
            t.push(self.dev.elapsed_ms(&evs[2 * i], &evs[2 * i + 1])? as f64 * 1e3);
        }
        Ok(median(t))
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_cuda: error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mk_only = args.iter().any(|a| a == "--megakernel-only");
    let b = CudaBackend::new(0)?;
    let dev = b.device();
    let (maj, min) = dev.compute_capability()?;
    println!(
        "device: {} cc {maj}.{min}, {} SMs; kernels: {}",
        dev.name(),
        dev.sm_count(),
        kernels_compiler().unwrap_or("?")
    );
    let mut s = b.new_stream()?;
    let stream = s.stream().clone();
    let timer = Timer::new(dev, &stream)?;
    let mut summary: Vec<String> = Vec::new();

    // ---- 1. copy ceiling -------------------------------------------------------------------
    let copy_gbs = {
        let n = (1usize << 30) / 4;
        let src = b.alloc(n)?;
        let mut dst = b.alloc(n)?;
        let us = timer.b2b(1, 9, |_| b.copy(&mut s, &src, 0, &mut dst, 0, n))?;
        2.0 * (n * 4) as f64 / (us * 1e-6) / 1e9
    };
    println!("memcpy D2D 1 GiB: {copy_gbs:.0} GB/s (read + write)");
    summary.push(format!("| memcpy D2D 1 GiB | | {copy_gbs:.0} GB/s | 100% | ceiling |"));

    if !mk_only {
        kernel_tables(&b, &mut s, &timer, quick, copy_gbs, &mut summary)?;
    }

    // ---- 4. full-size checkpoints --------------------------------------------------------------
    let frames: usize = arg(&args, "--frames", 100);
    let runs: usize = arg(&args, "--runs", 3);
    for dir in arg_values(&args, "--model").into_iter().map(PathBuf::from) {
        model_bench(&b, &mut s, &timer, &dir, frames, runs, copy_gbs, mk_only, &mut summary)?;
    }

    println!("\n## summary ({})", dev.name());
    println!("| what | time | rate | % of memcpy | note |");
    println!("|---|---|---|---|---|");
    for line in &summary {
        println!("{line}");
    }
    Ok(())
}

/// Sections 2 and 3: the linear kernels over the model's shapes and the other decode kernels.
fn kernel_tables(
    b: &CudaBackend,
    s: &mut CudaStreamCtx,
    timer: &Timer<'_>,
    quick: bool,
    copy_gbs: f64,
    summary: &mut Vec<String>,
) -> Result<()> {
    // ---- 2. linear (row kernels and GEMM) ----------------------------------------------------
    // (out, in, rows, what)
    let mut shapes: Vec<(usize, usize, usize, &str)> = vec![
        (16384, 16384, 1, "512 MiB GEMV (streaming goal)"),
        (2048, 1024, 1, "q_proj"),
        (1024, 1024, 1, "k_proj / v_proj"),
        (1024, 2048, 1, "o_proj"),
        (3072, 1024, 1, "gate_proj / up_proj / codec_head"),
        (1024, 3072, 1, "down_proj"),
        (2048, 1024, 1, "code predictor lm_head"),
        (3072, 1024, 2, "gate_proj, 2 rows (CP prefill)"),
        (3072, 1024, 8, "gate_proj, 8 rows"),
        (3072, 1024, 100, "gate_proj, 100-row prefill (GEMM)"),
        (1024, 3072, 100, "down_proj, 100-row prefill (GEMM)"),
    ];
    if quick {
        shapes.truncate(6);
    }
    println!("\n| linear (out×in), rows | what | wpr | µs alone | µs back-to-back | GB/s | % of memcpy | TFLOP/s |");
    println!("|---|---|---|---|---|---|---|---|");
    for (si, &(n, k, rows, what)) in shapes.iter().enumerate() {
        let w_bytes = n * k * 2;
        let copies = (256 * MIB).div_ceil(w_bytes).max(1);
        let ws: Vec<CudaWeight> =
            (0..copies).map(|c| random_weight(b, &[n, k], 17 + c as u64)).collect::<Result<_>>()?;
        let x = random_buffer(b, s, rows * k)?;
        let mut y = b.alloc(rows * n)?;
        let bytes = (w_bytes + rows * (k + n) * 4) as f64;
        let flops = 2.0 * (rows * n * k) as f64;
        let variants: Vec<Option<u32>> = if rows <= 8 { vec![Some(1), Some(2), Some(4)] } else { vec![None] };
        let mut best = f64::MAX;
        for wpr in variants {
            let mut call = |i: usize| b.linear_with_wpr(s, &x, rows, &ws[i % copies], None, &mut y, false, wpr);
            let alone = timer.single(if w_bytes >= 256 * MIB { 20 } else { 200 }, &mut call)?;
            let b2b = timer.b2b(if w_bytes >= 256 * MIB { 10 } else { 100 }, 7, &mut call)?;
            let gbs = bytes / (b2b * 1e-6) / 1e9;
            best = best.min(b2b);
            println!(
                "| {n}×{k}, {rows} | {what} | {} | {alone:.2} | {b2b:.2} | {gbs:.0} | {:.0}% | {:.1} |",
                wpr.map_or("gemm".to_owned(), |w| w.to_string()),
                100.0 * gbs / copy_gbs,
                flops / (b2b * 1e-6) / 1e12
            );
        }
        if si == 0 {
            let gbs = bytes / (best * 1e-6) / 1e9;
            summary.push(format!(
                "| GEMV 16384×16384 bf16 (512 MiB) | {best:.1} µs | {gbs:.0} GB/s | {:.0}% | goal ≥ 85%: {} |",
                100.0 * gbs / copy_gbs,
                if gbs >= 0.85 * copy_gbs { "met" } else { "NOT met" }
            ));
        } else if rows == 1 && (n, k) == (3072, 1024) {
            summary.push(format!(
                "| linear 3072×1024, 1 row | {best:.2} µs | {:.0} GB/s | {:.0}% | |",
                bytes / (best * 1e-6) / 1e9,
                100.0 * bytes / (best * 1e-6) / 1e9 / copy_gbs
            ));
        }
    }

    // ---- 3. the other kernels, one decode row of the 0.6B talker -----------------------------
    println!("\n| kernel | shape | µs alone | µs back-to-back | bytes | GB/s |");
    println!("|---|---|---|---|---|---|");
    let shape = AttentionShape { num_heads: 16, num_kv_heads: 8, head_dim: 128 };
    let rope = Rope { theta: 1_000_000.0, head_dim: 128 };
    let norm_w = random_weight(b, &[1024], 3)?;
    let head_w = random_weight(b, &[128], 4)?;
    let x = random_buffer(b, s, 1024)?;
    let mut y = b.alloc(1024)?;
    let mut q = random_buffer(b, s, 2048)?;
    let mut k = random_buffer(b, s, 1024)?;
    let report = |name: &str, shape_s: String, bytes: usize, f: &mut dyn FnMut(usize) -> Result<()>| -> Result<()> {
        let alone = timer.single(200, &mut *f)?;
        let b2b = timer.b2b(200, 7, &mut *f)?;
        println!("| {name} | {shape_s} | {alone:.2} | {b2b:.2} | {bytes} | {:.0} |", bytes as f64 / (b2b * 1e-6) / 1e9);
        Ok(())
    };
    report("rms_norm", "1×1024".into(), 1024 * 10, &mut |_| b.rms_norm(s, &x, 1, &norm_w, 1e-6, &mut y))?;
    report("qk_norm_rope", "q 16×128, k 8×128".into(), 3072 * 8, &mut |_| {
        b.qk_norm_rope(s, &mut q, &mut k, 1, shape, &head_w, &head_w, 1e-6, rope, 300)
    })?;
    for ctx in [64usize, 256, 1024, 4096] {
        let kc = random_buffer(b, s, ctx * 1024)?;
        let vc = random_buffer(b, s, ctx * 1024)?;
        let qq = random_buffer(b, s, 2048)?;
        let mut out = b.alloc(2048)?;
        report("attention (decode)", format!("16/8 heads, ctx {ctx}"), 2 * ctx * 1024 * 4 + 2 * 2048 * 4, &mut |_| {
            b.attention(s, &qq, &kc, &vc, shape, 1, ctx - 1, &mut out)
        })?;
    }
    let mut gate = random_buffer(b, s, 3072)?;
    let up = random_buffer(b, s, 3072)?;
    report("silu_mul", "3072".into(), 3072 * 12, &mut |_| b.silu_mul(s, &mut gate, &up, 3072))?;
    let tables: Vec<CudaWeight> = (0..16).map(|t| random_weight(b, &[3072, 1024], 100 + t)).collect::<Result<_>>()?;
    let table_refs: Vec<&CudaWeight> = tables.iter().collect();
    let ids: Vec<u32> = (0..16).map(|t| (t * 131 % 2048) as u32).collect();
    let mut emb = b.alloc(1024)?;
    report("embedding_sum (+ id upload)", "16 tables × 1024".into(), 16 * 1024 * 2 + 4096, &mut |_| {
        b.embedding_sum(s, &table_refs, &ids, &mut emb, false)
    })?;
    drop(tables);
    Ok(())
}

/// Layer, stack, graph, code predictor and whole-frame figures on one checkpoint.
#[allow(clippy::too_many_arguments)]
fn model_bench(
    b: &CudaBackend,
    s: &mut CudaStreamCtx,
    timer: &Timer<'_>,
    dir: &std::path::Path,
    frames: usize,
    runs: usize,
    copy_gbs: f64,
    mk_only: bool,
    summary: &mut Vec<String>,
) -> Result<()> {
    let dev = b.device();
    let stream = s.stream().clone();
    let t0 = Instant::now();
    let ckpt = Checkpoint::open(dir)?;
    let cfg = &ckpt.config.talker_config;
    let talker = Talker::load(b, &ckpt.weights, cfg)?;
    let predictor = CodePredictor::load(b, &ckpt.weights, cfg)?;
    let label = format!(
        "{} ({})",
        ckpt.config.size_label(),
        dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    );
    println!("\n# {label}: talker + code predictor uploaded in {:.1} s", t0.elapsed().as_secs_f64());
    let d = *talker.dims();
    let layer_bytes = 2
        * (d.hidden * (d.q_width() + 2 * d.kv_width())
            + d.q_width() * d.hidden
            + 3 * d.hidden * d.intermediate
            + 2 * d.hidden
            + 2 * d.head_dim);
    let stack_bytes = d.layers * layer_bytes;
    let groups = predictor.num_code_groups();
    let cd = *predictor.dims();
    let cp_bytes = 2
        * cd.layers
        * (cd.hidden * (cd.q_width() + 2 * cd.kv_width()) + cd.q_width() * cd.hidden + 3 * cd.hidden * cd.intermediate);
    prefill_precisions(b, s, timer, &talker, stack_bytes, &label, summary)?;
    if mk_only {
        megakernel_components(b, timer, dir, &talker, &predictor, copy_gbs, stack_bytes, groups, cp_bytes, &label, summary)?;
        drop((talker, predictor));
        return whole_frames(dev, dir, EngineKind::Megakernel, frames, runs, &label, summary);
    }

    // Talker stack at position 200 after a 200-row prefill (GEMM path).
    let h = d.hidden;
    let prefill = 200;
    let mut kv = talker.stack().new_cache(b, prefill + 64)?;
    let mut ws = talker.stack().new_workspace(b, prefill)?;
    let mut xp = random_buffer(b, s, prefill * h)?;
    let mut out = b.alloc(prefill * h)?;
    let tp = Instant::now();
    talker.stack().forward(b, s, &mut xp, prefill, &mut kv, &mut ws, &mut out)?;
    s.synchronize()?;
    let prefill_ms = tp.elapsed().as_secs_f64() * 1e3;
    let mut kv2 = talker.stack().new_cache(b, prefill + 64)?;
    let mut xp2 = random_buffer(b, s, prefill * h)?;
    s.synchronize()?;
    let tp2 = Instant::now();
    talker.stack().forward(b, s, &mut xp2, prefill, &mut kv2, &mut ws, &mut out)?;
    s.synchronize()?;
    let prefill_ms = prefill_ms.min(tp2.elapsed().as_secs_f64() * 1e3);
    drop(kv2);

    let mut x1 = random_buffer(b, s, h)?;
    let mut o1 = b.alloc(h)?;
    // Each call appends one position; reset to the prefill length by re-prefilling is costly,
    // so the cache simply grows (positions 200..263) over the measurements below.
    // Each call appends one position (the cache grows over positions 200..263 below).
    // Wall time of one 28-layer step, launches issued by the host as a request does.
    talker.stack().forward(b, s, &mut x1, 1, &mut kv, &mut ws, &mut o1)?;
    let mut wall = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        talker.stack().forward(b, s, &mut x1, 1, &mut kv, &mut ws, &mut o1)?;
        s.synchronize()?;
        wall.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let stack_wall = median(wall);
    // GPU time of the same launches queued back to back (host launch path hidden).
    let mut gpu = Vec::new();
    for _ in 0..5 {
        dev.spin(&stream, 5_000_000)?;
        dev.record(&stream, &timer.e0)?;
        talker.stack().forward(b, s, &mut x1, 1, &mut kv, &mut ws, &mut o1)?;
        dev.record(&stream, &timer.e1)?;
        gpu.push(dev.elapsed_ms(&timer.e0, &timer.e1)? as f64 * 1e3);
    }
    let stack_gpu = median(gpu);
    // rms, q, k, v, qk_norm_rope, 2 cache copies, attention, o, rms, gate, up, silu_mul, down
    // (attention adds a combine launch when it splits).
    let ops_per_layer = 14;
    // CUDA graph of one step (fixed position; replays rewrite the same cache slot).
    dev.begin_capture(&stream)?;
    let captured = talker.stack().forward(b, s, &mut x1, 1, &mut kv, &mut ws, &mut o1);
    let graph = dev.end_capture(&stream);
    captured?;
    let graph = graph?;
    let mut g = Vec::new();
    for _ in 0..3 {
        dev.launch_graph(&graph)?;
    }
    for _ in 0..7 {
        dev.spin(&stream, 2_000_000)?;
        dev.record(&stream, &timer.e0)?;
        for _ in 0..10 {
            dev.launch_graph(&graph)?;
        }
        dev.record(&stream, &timer.e1)?;
        g.push(dev.elapsed_ms(&timer.e0, &timer.e1)? as f64 * 1e3 / 10.0);
    }
    let stack_graph = median(g);
    drop(graph);
    let floor_us = stack_bytes as f64 / (copy_gbs * 1e3);
    println!(
        "talker stack ({} layers, {:.1} MiB of weights), one decode row at position ~{prefill}:",
        d.layers,
        stack_bytes as f64 / MIB as f64
    );
    println!("  prefill {prefill} rows: {prefill_ms:.2} ms (wall)");
    println!(
        "  wall (host launches): {stack_wall:.0} µs; GPU back-to-back: {stack_gpu:.0} µs; CUDA graph replay: {stack_graph:.0} µs"
    );
    println!(
        "  per layer: {:.1} µs wall, {:.1} µs GPU, {:.1} µs graph; ~{} launches per layer -> {:.2} µs per launch (graph)",
        stack_wall / d.layers as f64,
        stack_gpu / d.layers as f64,
        stack_graph / d.layers as f64,
        ops_per_layer,
        stack_graph / (d.layers * ops_per_layer) as f64
    );
    println!(
        "  HBM floor for the weights at {copy_gbs:.0} GB/s: {floor_us:.0} µs -> graph reaches {:.0}% of it",
        100.0 * floor_us / stack_graph
    );
    summary.push(format!(
        "| {label}: talker 28 layers, 1 row | wall {stack_wall:.0} µs / GPU {stack_gpu:.0} µs / graph {stack_graph:.0} µs | {:.0} GB/s (graph) | {:.0}% | {:.1} µs per layer (graph) |",
        stack_bytes as f64 / (stack_graph * 1e-6) / 1e9,
        100.0 * floor_us / stack_graph,
        stack_graph / d.layers as f64
    ));
    summary.push(format!("| {label}: talker prefill 200 rows | {prefill_ms:.2} ms | | | GEMM path |"));
    drop(kv);
    drop(ws);

    // Code predictor: one frame's pass (2-row prefill + 14 single rows, 15 logits readbacks).
    let mut tst = talker.new_state(b, 64)?;
    let mut pst = predictor.new_state(b)?;
    let input = random_buffer(b, s, h)?;
    b.copy(s, &input, 0, tst.input_mut(), 0, h)?;
    talker.step(b, s, &mut tst)?;
    let mut frame = vec![0u32; groups];
    let argmax =
        |_: usize, l: &mut [f32]| l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32);
    let mut cp = Vec::new();
    for i in 0..25 {
        frame[0] = (i * 37 % 2048) as u32;
        let t = Instant::now();
        predictor.predict(b, s, &mut pst, tst.last_hidden(), talker.codec_embedding(), &mut frame, argmax)?;
        if i >= 5 {
            cp.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let cp_ms = median(cp);
    let cp_floor_ms =
        (groups - 1) as f64 * (cp_bytes + 2 * predictor.vocab_size() * cd.hidden) as f64 / (copy_gbs * 1e6);
    println!(
        "code predictor ({} layers), one frame (15 passes, host argmax): {cp_ms:.2} ms wall; HBM floor {cp_floor_ms:.2} ms",
        cd.layers
    );
    summary.push(format!(
        "| {label}: code predictor, 1 frame | {cp_ms:.2} ms wall | | {:.0}% | 15 passes, 15 readbacks |",
        100.0 * cp_floor_ms / cp_ms
    ));
    drop((tst, pst));

    // ---- the frame megakernel, launch by launch ----
    megakernel_components(b, timer, dir, &talker, &predictor, copy_gbs, stack_bytes, groups, cp_bytes, &label, summary)?;
    drop((talker, predictor));

    // Whole frames through the public API, on each engine.
    for engine in [EngineKind::Unfused, EngineKind::Megakernel] {
        whole_frames(dev, dir, engine, frames, runs, &label, summary)?;
    }
    Ok(())
}

/// The megakernel's talker step alone, its code-predictor frame alone (codes forced, so no
/// sampling and no EOS), and whole frames with the device samplers, each launched back to
/// back behind a spin kernel and timed with events: GPU time per launch.
#[allow(clippy::too_many_arguments)]
/// The talker's 200-row prefill (the 28-layer stack over the prompt's rows, GEMM path) in each
/// GEMM precision: GPU time with the launches queued behind a spin (host launch cost hidden),
/// and wall time with the host launching as a request does (median of 3 each, a fresh cache
/// each time).
fn prefill_precisions(
    b: &CudaBackend,
    s: &mut CudaStreamCtx,
    timer: &Timer<'_>,
    talker: &Talker<CudaBackend>,
    stack_bytes: usize,
    label: &str,
    summary: &mut Vec<String>,
) -> Result<()> {
    let rows = 200;
    let h = talker.dims().hidden;
    let mut ws = talker.stack().new_workspace(b, rows)?;
    let x = random_buffer(b, s, rows * h)?;
    let mut xp = b.alloc(rows * h)?;
    let mut out = b.alloc(rows * h)?;
    // Two FLOPs per weight and row (the stack's matrices; norms and attention are small).
    let tflop = 2.0 * rows as f64 * (stack_bytes / 2) as f64 / 1e12;
    let first = s.gemm_precision();
    for precision in [GemmPrecision::Tf32, GemmPrecision::Bf16x2, GemmPrecision::Bf16] {
        s.set_gemm_precision(precision);
        let (mut gpu, mut wall) = (Vec::new(), Vec::new());
        for rep in 0..7 {
            let mut kv = talker.stack().new_cache(b, rows)?;
            b.copy(s, &x, 0, &mut xp, 0, rows * h)?;
            s.synchronize()?;
            let timed = rep > 0; // the first is a warm-up
            if rep % 2 == 1 {
                timer.dev.spin(&timer.stream, 5_000_000)?;
                timer.dev.record(&timer.stream, &timer.e0)?;
                talker.stack().forward(b, s, &mut xp, rows, &mut kv, &mut ws, &mut out)?;
                timer.dev.record(&timer.stream, &timer.e1)?;
                s.synchronize()?;
                gpu.push(timer.dev.elapsed_ms(&timer.e0, &timer.e1)? as f64);
            } else {
                let t = Instant::now();
                talker.stack().forward(b, s, &mut xp, rows, &mut kv, &mut ws, &mut out)?;
                s.synchronize()?;
                if timed {
                    wall.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        let (gpu, wall) = (median(gpu), median(wall));
        println!(
            "talker prefill {rows} rows, GEMM {precision:?}: GPU {gpu:.3} ms ({:.0} TFLOP/s over the matrices), wall {wall:.3} ms",
            tflop / (gpu * 1e-3)
        );
        summary.push(format!(
            "| {label}: talker prefill {rows} rows, GEMM {precision:?} | GPU {gpu:.3} ms / wall {wall:.3} ms | {:.0} TFLOP/s | | |",
            tflop / (gpu * 1e-3)
        ));
    }
    s.set_gemm_precision(first);
    Ok(())
}

fn megakernel_components(
    b: &CudaBackend,
    timer: &Timer<'_>,
    dir: &std::path::Path,
    talker: &Talker<CudaBackend>,
    predictor: &CodePredictor<CudaBackend>,
    copy_gbs: f64,
    stack_bytes: usize,
    groups: usize,
    cp_bytes: usize,
    label: &str,
    summary: &mut Vec<String>,
) -> Result<()> {
    use qwentts::backend::cuda::megakernel::LoadPath;
    use qwentts::engine::{FrameRequest, MegakernelEngine};
    use qwentts::model::generate::FrameLoopConfig;
    use qwentts::model::prompt::{PromptRequest, SpecialIds, VoiceData, plan_request};
    use qwentts::model::sampling::{SamplerConfig, TalkerSamplerConfig};
    let dev = b.device();
    let ckpt = Checkpoint::open(dir)?;
    let tokenizer = qwentts::text::TextTokenizer::from_dir(dir)?;
    let req = PromptRequest { text: TEXT, language: "english", voice: qwentts::model::prompt::Voice::XVector, non_streaming_mode: false };
    let (plan, _) = plan_request(&ckpt.config, &tokenizer, &req)?;
    let ids = SpecialIds::from_config(&ckpt.config);
    let hidden = talker.hidden_size();
    let speaker: Vec<f32> = (0..hidden).map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.1).collect();
    let voice = VoiceData { speaker_vector: Some(&speaker), ref_codes: None };
    let launches = 40usize;
    let limit = 4 * launches + 8;
    let mut talker_cfg = TalkerSamplerConfig::new(&ckpt.generation, &ckpt.config.talker_config);
    talker_cfg.min_new_tokens = usize::MAX; // EOS masked: every frame runs
    let config = FrameLoopConfig {
        talker: talker_cfg,
        code_predictor: SamplerConfig::code_predictor(&ckpt.generation),
        frame_limit: limit,
        seed: 42,
    };
    let request = FrameRequest { ids: &ids, plan: &plan, voice, config: &config };
    for path in [LoadPath::Auto, LoadPath::Portable] {
        let engine = MegakernelEngine::new(b, talker, predictor, limit + 1, path)?;
        let g = engine.geometry();
        let (n_ops, sample0) = engine.program_shape();
        println!(
            "megakernel ({path:?}): {} blocks ({} per SM) x 256 threads, {} B shared ({} weight pages of 16 KiB), copy engine {}, {n_ops} ops per frame ({sample0} talker)",
            g.blocks, g.blocks_per_sm, g.shared_bytes, g.ring_slots, g.bulk_copies
        );
        let frames = engine.bind(b, talker, predictor, None);
        let pre = frames.prefill(&request, limit)?;
        let forced: Vec<u32> = (0..(limit + 1) * groups).map(|i| (i * 7919 % 2048) as u32).collect();
        // Forced codes for the component timings.
        let mut r = frames.start(&pre, &config)?;
        r.set_forced(&forced)?;
        let stream = r.stream().clone();
        let time = |r: &mut qwentts::backend::cuda::megakernel::FrameRequest<'_>, first_frame: usize, range: (usize, usize)| -> Result<f64> {
            let mut per = Vec::new();
            for rep in 0..3 {
                dev.spin(&stream, 3_000_000)?;
                dev.record(&stream, &timer.e0)?;
                for i in 0..launches / 4 {
                    let f = first_frame + rep * (launches / 4) + i;
                    r.launch_range(f, range.0, range.1.min(n_ops))?;
                }
                dev.record(&stream, &timer.e1)?;
                per.push(dev.elapsed_ms(&timer.e0, &timer.e1)? as f64 * 1e3 / (launches / 4) as f64);
            }
            Ok(median(per))
        };
        r.launch(0)?; // frame 0: the prefill's logits
        let talker_us = time(&mut r, 1, (0, sample0))?;
        let cp_us = time(&mut r, 1 + launches, (sample0, usize::MAX))?;
        let forced_frame_us = time(&mut r, 1 + 2 * launches, (0, usize::MAX))?;
        // Where the time goes: launches of the first n ops (frames reused; positions repeat).
        // The step from n to n + 1 is op n's cost with its wait; the first is launch overhead.
        let mut prefix = Vec::new();
        for n in [1usize, 2, 3, 4, 5, 6, 10, 20, 40, 80, sample0] {
            prefix.push((n, time(&mut r, 1, (0, n))?));
        }
        // The chain variants of MkArgs.flags, whole frames with forced codes.
        use qwentts::backend::cuda::megakernel::flags as mkf;
        use qwentts::backend::cuda::megakernel::runtime::env_flags;
        let mut variants = Vec::new();
        // Variants whose megakernel tests failed in this device call (tools/device/run.sh):
        // a variant that hangs would take the rest of the benchmark with it.
        let skip_flags: u32 = std::env::var("QT_BENCH_SKIP_FLAGS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        for (flags, what) in [
            (0u32, "op counters (sync thread 32, op fields in shared memory, constants staged, evict_first)"),
            (mkf::SYNC_THREAD0, "sync on thread 0"),
            (mkf::GLOBAL_OP_FIELDS, "op fields from global memory"),
            (mkf::RELAXED_SPIN, "relaxed spin + one fence"),
            (mkf::RELEASE_ADD, "red.release signal"),
            (mkf::RELAXED_SPIN | mkf::RELEASE_ADD, "relaxed spin + red.release"),
            (mkf::NO_STAGING, "op constants read after the wait (not staged)"),
            (mkf::NO_EVICT_FIRST, "weight copies without the L2 evict_first hint"),
            (mkf::BLOCK_FLAGS, "per-block flags instead of atomic counters"),
            (mkf::BLOCK_FLAGS | mkf::NO_EVICT_FIRST, "per-block flags, no evict_first"),
            (mkf::WARP_RELEASE, "pages freed per warp (empty mbarriers)"),
            (mkf::WARP_RELEASE | mkf::BLOCK_FLAGS, "pages freed per warp + per-block flags"),
            (mkf::LL, "dependencies in tagged data (LL) instead of counters"),
            (mkf::LL | mkf::WARP_RELEASE, "LL + pages freed per warp"),
            (mkf::LL | mkf::NO_EVICT_FIRST, "LL, no evict_first"),
            (mkf::SKIP_MATH, "matvec arithmetic skipped (timing only)"),
        ] {
            // WARP_RELEASE and NO_EVICT_FIRST change only the cp.async.bulk path.
            if path != LoadPath::Auto && flags & (mkf::WARP_RELEASE | mkf::NO_EVICT_FIRST) != 0 {
                continue;
            }
            if flags & skip_flags != 0 {
                variants.push(format!("{what}: skipped (QT_BENCH_SKIP_FLAGS: its tests failed)"));
                continue;
            }
            r.set_flags(flags);
            // Progress on stderr: a variant that never finishes shows which it was.
            eprintln!("  timing variant: {what}");
            variants.push(format!("{what} {:.0} µs", time(&mut r, 1, (0, usize::MAX))?));
        }
        r.set_flags(env_flags()); // what production runs
        // Prefetch depth: the same frame with fewer weight-ring slots.
        let mut depths = Vec::new();
        for slots in [2usize, 4, 6, 8, g.ring_slots] {
            if slots > g.ring_slots {
                continue;
            }
            r.set_ring_slots(slots)?;
            depths.push(format!("{slots}: {:.0} µs", time(&mut r, 1, (0, usize::MAX))?));
        }
        r.set_ring_slots(g.ring_slots)?;
        println!("  weight-ring slots (forced frame): {}", depths.join(", "));
        summary.push(format!("| {label}: {}: weight-ring slots (forced frame) | {} | | | |", if path == LoadPath::Auto { "megakernel" } else { "megakernel, cp.async path" }, depths.join(", ")));
        // Where a frame's time goes, op by op (MkArgs.trace).
        r.enable_trace()?;
        // The same frame with a 2-page ring: whether the pages in flight delay the small
        // dependent loads (inputs, wake-ups) that share the SM's memory path with them.
        for (flags, slots, what) in [
            (0u32, g.ring_slots, " (op counters)".to_string()),
            (mkf::SKIP_MATH, g.ring_slots, " (matvec arithmetic skipped)".to_string()),
            (0u32, 2, " (2 ring slots)".to_string()),
            (mkf::BLOCK_FLAGS, g.ring_slots, " (per-block flags)".to_string()),
            (mkf::WARP_RELEASE | mkf::BLOCK_FLAGS, g.ring_slots, " (pages freed per warp + per-block flags)".to_string()),
            (mkf::LL, g.ring_slots, " (dependencies in tagged data, LL)".to_string()),
            (mkf::LL, 2, " (LL, 2 ring slots)".to_string()),
        ] {
            if path != LoadPath::Auto && flags & mkf::WARP_RELEASE != 0 || flags & skip_flags != 0 {
                continue;
            }
            r.set_flags(flags);
            r.set_ring_slots(slots)?;
            eprintln!("  tracing{what}");
            r.launch_range(1 + 3 * launches, 0, n_ops)?;
            let trace = r.read_trace()?;
            println!("  trace{what}:");
            for line in trace_report(&trace, frames_program(&r), g.blocks as usize, dev.clock_khz()? as f64 * 1e-6) {
                println!("  {line}");
            }
        }
        r.set_flags(env_flags()); // what production runs
        r.set_ring_slots(g.ring_slots)?;
        println!("  chain variants, whole frame with forced codes: {}", variants.join("; "));
        summary.push(format!("| {label}: {}: chain variants (forced frame) | {} | | | |", if path == LoadPath::Auto { "megakernel" } else { "megakernel, cp.async path" }, variants.join("; ")));
        let steps: Vec<String> = prefix.iter().map(|(n, us)| format!("{n}: {us:.1}")).collect();
        println!("  launches of the first n ops (n: µs per launch): {}", steps.join(", "));
        let (n0, t0) = prefix[0];
        let (n1, t1) = *prefix.last().unwrap_or(&(n0, t0));
        if n1 > n0 {
            println!("  -> {:.2} µs per talker op beyond the first (launch + first op {t0:.1} µs)", (t1 - t0) / (n1 - n0) as f64);
        }
        r.synchronize()?;
        drop(r);
        // Whole frames with the device samplers (official settings, EOS masked).
        let mut r = frames.start(&pre, &config)?;
        let stream = r.stream().clone();
        r.launch(0)?;
        let mut per = Vec::new();
        for rep in 0..3 {
            dev.spin(&stream, 3_000_000)?;
            dev.record(&stream, &timer.e0)?;
            for i in 0..launches / 2 {
                r.launch(1 + rep * (launches / 2) + i)?;
            }
            dev.record(&stream, &timer.e1)?;
            per.push(dev.elapsed_ms(&timer.e0, &timer.e1)? as f64 * 1e3 / (launches / 2) as f64);
        }
        let frame_us = median(per);
        r.synchronize()?;
        drop(r);
        let talker_floor = (stack_bytes + 2 * hidden * talker.vocab_size()) as f64 / (copy_gbs * 1e3);
        let cp_floor = (groups - 1) as f64 * (cp_bytes + 2 * predictor.vocab_size() * predictor.dims().hidden) as f64
            / (copy_gbs * 1e3);
        println!(
            "  talker step {talker_us:.0} µs (floor {talker_floor:.0}, {:.0}%); code predictor {cp_us:.0} µs (floor {cp_floor:.0}, {:.0}%); frame, codes forced {forced_frame_us:.0} µs; frame with device sampling {frame_us:.0} µs (GPU, back to back)",
            100.0 * talker_floor / talker_us,
            100.0 * cp_floor / cp_us
        );
        let tag = if path == LoadPath::Auto { "megakernel" } else { "megakernel, cp.async path" };
        summary.push(format!(
            "| {label}: {tag}: talker step | {talker_us:.0} µs | {:.0} GB/s | {:.0}% | floor {talker_floor:.0} µs |",
            (stack_bytes + 2 * hidden * talker.vocab_size()) as f64 / (talker_us * 1e3),
            100.0 * talker_floor / talker_us
        ));
        summary.push(format!(
            "| {label}: {tag}: code predictor frame | {cp_us:.0} µs | | {:.0}% | floor {cp_floor:.0} µs, 15 steps |",
            100.0 * cp_floor / cp_us
        ));
        summary.push(format!(
            "| {label}: {tag}: whole frame, device sampling | {frame_us:.0} µs | RTF {:.4} | {:.0}% | GPU time back to back; forced codes {forced_frame_us:.0} µs |",
            frame_us / 80_000.0,
            100.0 * (talker_floor + cp_floor) / frame_us
        ));
    }
    Ok(())
}

fn frames_program<'r>(r: &'r qwentts::backend::cuda::megakernel::FrameRequest<'_>) -> &'r [qwentts::backend::cuda::megakernel::MkOp] {
    &r.program().ops
}

/// A frame's time, op class by op class, from one traced launch (`MkArgs.trace`). For op i:
/// its END is when its last block finished its work; its STEP the end minus the previous op's
/// end (the ops' steps add up to the frame); WAKE the median block's release from its wait
/// minus the end of the op it waited for (signal, fence, atomic, the poll that sees it);
/// WORK the median block's time from release to done, split (SM clock, median blocks) into a
/// matvec's PROLOGUE (inputs, norm), LOOP (weight pages: wait, arithmetic, barrier, refill; of
/// which PAGE WAITS; COPY ISSUE is thread 0's time issuing the refills, which a stalled copy
/// queue lengthens, and LOADER DECODE its time reading the next ops' descriptors) and EPILOGUE (sums, bias, stores); TAIL the last block's end minus the
/// median block's.
fn trace_report(trace: &[u64], ops: &[qwentts::backend::cuda::megakernel::MkOp], grid: usize, clock_ghz: f64) -> Vec<String> {
    use qwentts::backend::cuda::megakernel::{
        TRACE_DECODE_CYCLES, TRACE_DONE_CLK, TRACE_DONE_NS, TRACE_FIELDS, TRACE_INPUTS_CLK, TRACE_ISSUE_CYCLES, TRACE_LOOP_END_CLK, TRACE_LOOP_START_CLK, TRACE_PAGE_WAIT_CYCLES,
        TRACE_RELEASED_CLK, TRACE_RELEASED_NS, TRACE_START_NS,
    };
    use std::collections::BTreeMap;
    let at = |i: usize, b: usize, f: usize| trace[(i * grid + b) * TRACE_FIELDS + f];
    let med = |mut v: Vec<f64>| -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // Median over blocks of a clock-cycle difference, in µs.
    let cycles_us = |i: usize, to: usize, from: usize| -> f64 {
        med((0..grid).map(|b| at(i, b, to).saturating_sub(at(i, b, from)) as f64).collect()) / clock_ghz * 1e-3
    };
    let ends: Vec<u64> = (0..ops.len()).map(|i| (0..grid).map(|b| at(i, b, TRACE_DONE_NS)).max().unwrap_or(0)).collect();
    let start = (0..grid).map(|b| at(0, b, TRACE_START_NS)).min().unwrap_or(0);
    let mut resolution = u64::MAX;
    #[derive(Default)]
    struct Class {
        n: usize,
        step: f64,
        wake: f64,
        woken: usize,
        work: f64,
        inputs: f64,
        prologue: f64,
        looped: f64,
        epilogue: f64,
        pages: f64,
        issue: f64,
        decode: f64,
        tail: f64,
    }
    let mut classes: BTreeMap<String, Class> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let sample0 = ops.iter().position(|o| o.kind == 3).unwrap_or(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let stack = if i < sample0 { "talker" } else { "cp" };
        let name = match op.kind {
            1 => {
                let rows: i32 = op.seg[..op.nseg as usize].iter().map(|s| s.rows).sum();
                let epi = ["", " +residual", " silu*up"][op.epilogue.clamp(0, 2) as usize];
                let norm = if op.norm_w != 0 { " norm" } else { "" };
                format!("{stack} matvec {rows}x{}{norm}{epi}{}", op.k, if op.rows > 1 { " (2 rows)" } else { "" })
            }
            2 => format!("{stack} attention{}", if op.rows > 1 { " (2 rows)" } else { "" }),
            3 => format!("{stack} sample"),
            4 => "embed frame".to_string(),
            k => format!("kind {k}"),
        };
        let prev_end = if i == 0 { start } else { ends[i - 1] };
        let step = ends[i].saturating_sub(prev_end) as f64 * 1e-3;
        let wake = (op.wait >= 0).then(|| {
            let dep = ends[op.wait as usize];
            med((0..grid).map(|b| at(i, b, TRACE_RELEASED_NS) as f64 - dep as f64).collect()) * 1e-3
        });
        let work = cycles_us(i, TRACE_DONE_CLK, TRACE_RELEASED_CLK);
        let (inputs, prologue, looped, epilogue) = if op.kind == 1 {
            (
                cycles_us(i, TRACE_INPUTS_CLK, TRACE_RELEASED_CLK),
                cycles_us(i, TRACE_LOOP_START_CLK, TRACE_RELEASED_CLK),
                cycles_us(i, TRACE_LOOP_END_CLK, TRACE_LOOP_START_CLK),
                cycles_us(i, TRACE_DONE_CLK, TRACE_LOOP_END_CLK),
            )
        } else {
            (0.0, 0.0, 0.0, 0.0)
        };
        let pages = med((0..grid).map(|b| at(i, b, TRACE_PAGE_WAIT_CYCLES) as f64).collect()) / clock_ghz * 1e-3;
        let issue = med((0..grid).map(|b| at(i, b, TRACE_ISSUE_CYCLES) as f64).collect()) / clock_ghz * 1e-3;
        let decode = med((0..grid).map(|b| at(i, b, TRACE_DECODE_CYCLES) as f64).collect()) / clock_ghz * 1e-3;
        let median_end = med((0..grid).map(|b| at(i, b, TRACE_DONE_NS) as f64).collect());
        let tail = (ends[i] as f64 - median_end) * 1e-3;
        for b in 0..grid {
            let d = at(i, b, TRACE_RELEASED_NS).saturating_sub(at(i, b, TRACE_START_NS));
            if d > 0 {
                resolution = resolution.min(d);
            }
        }
        if !classes.contains_key(&name) {
            order.push(name.clone());
        }
        let c = classes.entry(name).or_default();
        c.n += 1;
        c.step += step;
        if let Some(w) = wake {
            c.wake += w;
            c.woken += 1;
        }
        c.work += work;
        c.inputs += inputs;
        c.prologue += prologue;
        c.looped += looped;
        c.epilogue += epilogue;
        c.pages += pages;
        c.issue += issue;
        c.decode += decode;
        c.tail += tail;
    }
    let total = ends.last().copied().unwrap_or(start).saturating_sub(start) as f64 * 1e-3;
    let mut out = vec![
        format!("trace of one forced frame: {total:.0} µs from the first op's start to the last op's end ({} ops; timer steps of >= {resolution} ns; phases in SM cycles at {clock_ghz:.2} GHz)", ops.len()),
        "| op class | ops | step µs (sum) | step µs (mean) | wake µs | work µs | prologue µs | of which inputs µs | page loop µs | of which page waits µs | copy issue µs (thread 0) | plan refill µs (thread 0) | epilogue µs | tail µs |".to_string(),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    for name in order {
        let c = &classes[&name];
        let n = c.n as f64;
        let wake = if c.woken > 0 { format!("{:.2}", c.wake / c.woken as f64) } else { "-".to_string() };
        out.push(format!(
            "| {name} | {} | {:.0} | {:.2} | {wake} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            c.n,
            c.step,
            c.step / n,
            c.work / n,
            c.prologue / n,
            c.inputs / n,
            c.looped / n,
            c.pages / n,
            c.issue / n,
            c.decode / n,
            c.epilogue / n,
            c.tail / n
        ));
    }
    out
}

/// Whole frames through the public API on one engine: prompt, prefill, frames, sampling.
fn whole_frames(
    dev: &CudaDevice,
    dir: &std::path::Path,
    engine: EngineKind,
    frames: usize,
    runs: usize,
    label: &str,
    summary: &mut Vec<String>,
) -> Result<()> {
    // No voice prefix cache: every run prefills the whole prompt, as the earlier figures did
    // (bench_prefix measures the cache).
    let options =
        LoadOptions { device: Device::Cuda(dev.ordinal()), engine, prefix_cache_bytes: Some(0), ..Default::default() };
    let model = Model::load(dir, &options)?;
    let engine_name = model.engine_name();
    let info = model.info();
    let embedding: Vec<f32> =
        (0..info.talker_hidden_size).map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.1).collect();
    // As reference-bench: an in-context clone from a 3 s reference (37 frames of codes, here
    // random) and, for comparison, the x-vector-only prompt.
    let ref_codes: Vec<u32> = (0..37 * info.num_codebooks).map(|i| (i * 7919 % 2048) as u32).collect();
    let voices = [
        (
            "ICL (3 s reference)",
            Voice::with_reference(embedding.clone(), ref_codes, "This is the reference transcript of three seconds.")?,
        ),
        ("x-vector", Voice::from_embedding(embedding)?),
    ];
    let mut request = GenerateOptions::defaults(&model);
    request.language = "english".into();
    request.seed = Some(42);
    request.max_frames = Some(frames);
    request.min_frames = Some(frames);
    for (mode, voice) in &voices {
        let (mut first_ms, mut frame_ms) = (Vec::new(), Vec::new());
        let mut waits = 0;
        for run in 0..=runs {
            let waits_before = qwentts::backend::cuda::host_waits();
            let start = Instant::now();
            let mut first: Option<f64> = None;
            let mut sink = |_: usize, _: &[u32]| {
                first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
                true
            };
            let out = model.generate_codes(voice, TEXT, &request, Some(&mut sink))?;
            let total = start.elapsed().as_secs_f64() * 1e3;
            if out.frames() != frames {
                return Err(qwentts::Error::invalid_argument(format!(
                    "expected {frames} frames, got {}",
                    out.frames()
                )));
            }
            let first = first.unwrap_or(total);
            waits = qwentts::backend::cuda::host_waits() - waits_before;
            if run > 0 {
                first_ms.push(first);
                frame_ms.push((total - first) / (frames - 1).max(1) as f64);
            }
        }
        let per_frame = median(frame_ms);
        let first = median(first_ms);
        println!(
            "generate_codes [{engine_name}] {mode}, {frames} frames x {runs} runs (seeded sampling, EOS masked): first frame {first:.1} ms, {per_frame:.3} ms/frame, RTF {:.4}; host waits per request {waits} ({:.3} per frame)",
            per_frame / 80.0,
            waits as f64 / frames as f64
        );
        summary.push(format!(
            "| {label}: [{engine_name}] whole frame, {mode} (API, sampling) | {per_frame:.3} ms/frame | RTF {:.4} | | first frame {first:.1} ms; {waits} host waits per request of {frames} frames |",
            per_frame / 80.0
        ));
    }
    Ok(())
}
