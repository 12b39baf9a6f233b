//! Every CUDA op against the CPU backend (the oracle) on fresh random inputs (feature
//! `cuda`; needs a GPU, so each test is `#[ignore]`d here and run on the device machine by
//! tools/device/run.sh with `--ignored`).
//!
//! Method (METHOD.md): weights are random BF16 values uploaded to BOTH backends (the CPU
//! converts them to f32 exactly), so both compute the same function; inputs are fresh
//! random f32 each run (seed printed; `QT_SEED` repeats one); outputs are poisoned with NaN
//! before every op so an unwritten element fails; error is ‖gpu − cpu‖ / ‖cpu‖ per call and
//! NaN never passes. Tolerance classes: f32 ops 1e-5 (different summation orders only),
//! the tensor-core GEMM (prefill, > 8 rows) 2e-3 with TF32 inputs, 1e-4 with X split into two
//! bf16, 3e-3 with X rounded to bf16.
#![cfg(feature = "cuda")]

mod common;

use common::gpu::{GStream, download, gpu, poison, rel_err, upload};
use common::rng::Rng;
use half::bf16;
use qwentts::backend::cpu::CpuBackend;
use qwentts::backend::cuda::{CudaBackend, GemmPrecision};
use qwentts::backend::{AttentionShape, Backend, LinearOut, Rope};
use qwentts::model::{DType, TensorView};

const F32_TOL: f64 = 1e-5;
const TF32_TOL: f64 = 2e-3;
/// X split into two bf16 (2^-17 relative per element) on f32 accumulation.
const BF16X2_TOL: f64 = 1e-4;
/// X rounded to bf16 (2^-9 relative per element): ~1.1e-3 on random data.
const BF16_TOL: f64 = 3e-3;
const GPU: &str = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored";

/// A random BF16 weight on both backends.
struct W {
    cpu: <CpuBackend as Backend>::Weight,
    gpu: <CudaBackend as Backend>::Weight,
}

fn weight(rng: &mut Rng, shape: &[usize], scale: f32, offset: f32) -> W {
    let n: usize = shape.iter().product();
    let bytes: Vec<u8> =
        (0..n).flat_map(|_| bf16::from_f32(offset + rng.uniform() * scale).to_bits().to_le_bytes()).collect();
    let view = TensorView { name: "random", dtype: DType::BF16, shape, bytes: &bytes };
    W { cpu: CpuBackend::new(1).upload_weight(&view).unwrap(), gpu: gpu().upload_weight(&view).unwrap() }
}

/// The same f32 data in a CPU buffer and a GPU buffer.
struct Buf {
    cpu: Vec<f32>,
    gpu: <CudaBackend as Backend>::Buffer,
}

fn buf(s: &mut GStream, data: &[f32]) -> Buf {
    Buf { cpu: data.to_vec(), gpu: upload(s, data) }
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let e = rel_err(what, got, want);
    eprintln!("{what}: rel err {e:.2e} (tol {tol:.0e})");
    assert!(e <= tol, "{what}: rel err {e:.3e} > {tol:.0e}");
}

fn cpu() -> CpuBackend {
    CpuBackend::new(2)
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn linear_rows_and_gemm_match_cpu() {
    let _ = GPU;
    let (c, g) = (cpu(), gpu());
    let (mut cs, mut gs) = (c.new_stream().unwrap(), g.new_stream().unwrap());
    let mut rng = Rng::seeded(1);
    // (out, in): the real projection shapes, a ragged vector-path shape, a scalar-path shape
    // (in % 8 != 0) and the tiny fixtures' widths.
    let shapes = [(3072, 1024), (1024, 3072), (2048, 1024), (1024, 2048), (1001, 1032), (37, 45), (96, 32), (2048, 16)];
    // 1-8 rows: row kernels; 9+: the GEMM, split over K up to 100 rows; 520 rows fills the
    // GPU with output tiles alone (no split).
    let row_counts = [1, 2, 3, 5, 8, 9, 16, 17, 32, 64, 100, 520];
    for &(n, k) in &shapes {
        let w = weight(&mut rng, &[n, k], 0.05, 0.0);
        let bias = weight(&mut rng, &[n], 0.5, 0.0);
        for &rows in &row_counts {
            if rows == 520 && (n, k) != (3072, 1024) {
                continue;
            }
            for (use_bias, accumulate) in [(false, false), (true, false), (false, true), (true, true)] {
                if !(rows == 1 || rows == 9 || use_bias == accumulate) {
                    continue; // every mode on one row-kernel and one GEMM count; plain elsewhere
                }
                // The row kernels have one precision; the GEMM is run in each.
                let precisions: &[GemmPrecision] = if rows <= 8 { &[GemmPrecision::Tf32] } else { &GEMM_PRECISIONS };
                for &precision in precisions {
                    let x = buf(&mut gs, &rng.vec(rows * k, 1.0));
                    let mut y = buf(&mut gs, &rng.vec(rows * n, 1.0));
                    if !accumulate {
                        poison(&mut gs, &mut y.gpu);
                    }
                    let b = use_bias.then_some(&bias);
                    gs.set_gemm_precision(precision);
                    c.linear(&mut cs, &x.cpu, rows, &w.cpu, b.map(|b| &b.cpu), &mut y.cpu, accumulate).unwrap();
                    g.linear(&mut gs, &x.gpu, rows, &w.gpu, b.map(|b| &b.gpu), &mut y.gpu, accumulate).unwrap();
                    let got = download(&mut gs, &y.gpu, rows * n);
                    assert_close(
                        &format!("linear {n}x{k} rows {rows} bias {use_bias} acc {accumulate} {precision:?}"),
                        &got,
                        &y.cpu,
                        linear_tolerance(rows, k, precision),
                    );
                }
            }
        }
        gs.set_gemm_precision(GemmPrecision::Tf32);
        // Every warps-per-row variant of the row kernels gives the same function.
        for wpr in [1, 2, 4] {
            let x = buf(&mut gs, &rng.vec(3 * k, 1.0));
            let mut y = buf(&mut gs, &vec![0.0; 3 * n]);
            poison(&mut gs, &mut y.gpu);
            c.linear(&mut cs, &x.cpu, 3, &w.cpu, None, &mut y.cpu, false).unwrap();
            g.linear_with_wpr(&mut gs, &x.gpu, 3, &w.gpu, None, &mut y.gpu, false, Some(wpr)).unwrap();
            assert_close(&format!("linear {n}x{k} wpr {wpr}"), &download(&mut gs, &y.gpu, 3 * n), &y.cpu, F32_TOL);
        }
    }
}

/// The GEMM's precisions, each through the same shapes.
const GEMM_PRECISIONS: [GemmPrecision; 3] = [GemmPrecision::Tf32, GemmPrecision::Bf16x2, GemmPrecision::Bf16];

/// Relative L2 tolerance of a linear call: f32 for the row kernels; for the GEMM, its
/// precision's class (the BF16 kernels fall back to TF32 where K is not a multiple of 8).
fn linear_tolerance(rows: usize, k: usize, precision: GemmPrecision) -> f64 {
    match precision {
        _ if rows <= 8 => F32_TOL,
        GemmPrecision::Bf16x2 if k % 8 == 0 => BF16X2_TOL,
        GemmPrecision::Bf16 if k % 8 == 0 => BF16_TOL,
        _ => TF32_TOL,
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn linear_shared_input_matches_cpu_in_every_precision() {
    let (c, g) = (cpu(), gpu());
    let (mut cs, mut gs) = (c.new_stream().unwrap(), g.new_stream().unwrap());
    let mut rng = Rng::seeded(12);
    // (outputs' features, in): q/k/v and gate/up of the 0.6B shapes, a ragged group, and a K
    // the BF16 kernels cannot take (one call per output instead).
    let groups: [(&[usize], usize); 4] =
        [(&[2048, 1024, 1024], 1024), (&[3072, 3072], 1024), (&[100, 37, 64], 96), (&[40, 24], 45)];
    // 9 and 40 rows split over K; 200 rows (the prompt) mostly not; 3 rows: the row kernels.
    for (ns, k) in groups {
        let ws: Vec<_> = ns.iter().map(|&n| weight(&mut rng, &[n, k], 0.05, 0.0)).collect();
        let bs: Vec<_> = ns.iter().map(|&n| weight(&mut rng, &[n], 0.5, 0.0)).collect();
        for rows in [3, 9, 40, 200] {
            let precisions: &[GemmPrecision] = if rows <= 8 { &[GemmPrecision::Tf32] } else { &GEMM_PRECISIONS };
            for &precision in precisions {
                gs.set_gemm_precision(precision);
                let x = buf(&mut gs, &rng.vec(rows * k, 1.0));
                let mut cy: Vec<Vec<f32>> = ns.iter().map(|&n| vec![0.0; rows * n]).collect();
                let mut gy: Vec<_> = ns.iter().map(|&n| g.alloc(rows * n).unwrap()).collect();
                for y in gy.iter_mut() {
                    poison(&mut gs, y);
                }
                // The first output biased, the others not.
                let mut couts: Vec<LinearOut<'_, CpuBackend>> = cy
                    .iter_mut()
                    .enumerate()
                    .map(|(i, y)| LinearOut { w: &ws[i].cpu, bias: (i == 0).then_some(&bs[i].cpu), y })
                    .collect();
                c.linear_shared_input(&mut cs, &x.cpu, rows, &mut couts).unwrap();
                let mut gouts: Vec<LinearOut<'_, CudaBackend>> = gy
                    .iter_mut()
                    .enumerate()
                    .map(|(i, y)| LinearOut { w: &ws[i].gpu, bias: (i == 0).then_some(&bs[i].gpu), y })
                    .collect();
                g.linear_shared_input(&mut gs, &x.gpu, rows, &mut gouts).unwrap();
                for (i, &n) in ns.iter().enumerate() {
                    assert_close(
                        &format!("group {ns:?}x{k} output {i} rows {rows} {precision:?}"),
                        &download(&mut gs, &gy[i], rows * n),
                        &cy[i],
                        linear_tolerance(rows, k, precision),
                    );
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn the_gemm_is_deterministic_in_every_precision() {
    let g = gpu();
    let mut s = g.new_stream().unwrap();
    let mut rng = Rng::seeded(11);
    // 100 rows of 1024 x 3072: split over K (partial sums and their reduction).
    let (n, k, rows) = (1024, 3072, 100);
    let w = weight(&mut rng, &[n, k], 0.05, 0.0);
    let x = buf(&mut s, &rng.vec(rows * k, 1.0));
    for precision in GEMM_PRECISIONS {
        s.set_gemm_precision(precision);
        let mut runs = Vec::new();
        for _ in 0..3 {
            let mut y = g.alloc(rows * n).unwrap();
            poison(&mut s, &mut y);
            g.linear(&mut s, &x.gpu, rows, &w.gpu, None, &mut y, false).unwrap();
            runs.push(download(&mut s, &y, rows * n).iter().map(|v| v.to_bits()).collect::<Vec<u32>>());
        }
        assert!(runs.iter().all(|r| *r == runs[0]), "{precision:?}: the same call gave different bits");
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn linear_rejects_bad_sizes() {
    let g = gpu();
    let mut s = g.new_stream().unwrap();
    let mut rng = Rng::seeded(2);
    let w = weight(&mut rng, &[16, 8], 1.0, 0.0);
    let wrong_bias = weight(&mut rng, &[15], 1.0, 0.0);
    let x = g.alloc(2 * 8).unwrap();
    let mut y = g.alloc(2 * 16).unwrap();
    assert!(g.linear(&mut s, &x, 3, &w.gpu, None, &mut y, false).is_err(), "x too short");
    let mut short = g.alloc(16).unwrap();
    assert!(g.linear(&mut s, &x, 2, &w.gpu, None, &mut short, false).is_err(), "y too short");
    assert!(g.linear(&mut s, &x, 2, &w.gpu, Some(&wrong_bias.gpu), &mut y, false).is_err(), "bias length");
    assert!(g.linear(&mut s, &x, 0, &w.gpu, None, &mut y, false).is_err(), "zero rows");
    assert!(g.linear_with_wpr(&mut s, &x, 2, &w.gpu, None, &mut y, false, Some(3)).is_err(), "wpr 3");
    assert!(g.copy(&mut s, &x, 10, &mut y, 0, 7).is_err(), "copy past the source");
    assert!(g.write(&mut s, &mut y, 30, &[0.0; 3]).is_err(), "write past the end");
    let mut host = [0.0f32; 4];
    assert!(g.read(&mut s, &x, 13, &mut host).is_err(), "read past the end");
    assert!(g.embedding(&mut s, &w.gpu, &[16], &mut y, false).is_err(), "id out of range");
    // The stream is still usable after rejected calls.
    g.linear(&mut s, &x, 2, &w.gpu, None, &mut y, false).unwrap();
    g.read(&mut s, &y, 0, &mut host).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn norms_match_cpu() {
    let (c, g) = (cpu(), gpu());
    let (mut cs, mut gs) = (c.new_stream().unwrap(), g.new_stream().unwrap());
    let mut rng = Rng::seeded(3);
    for &(rows, dim) in &[(1, 1024), (1, 2048), (7, 1024), (100, 2048), (3, 32), (5, 16), (2, 1000)] {
        let w = weight(&mut rng, &[dim], 0.5, 1.0);
        let x = buf(&mut gs, &rng.vec(rows * dim, 3.0));
        let mut y = buf(&mut gs, &vec![0.0; rows * dim]);
        poison(&mut gs, &mut y.gpu);
        c.rms_norm(&mut cs, &x.cpu, rows, &w.cpu, 1e-6, &mut y.cpu).unwrap();
        g.rms_norm(&mut gs, &x.gpu, rows, &w.gpu, 1e-6, &mut y.gpu).unwrap();
        assert_close(&format!("rms_norm {rows}x{dim}"), &download(&mut gs, &y.gpu, rows * dim), &y.cpu, F32_TOL);

        // In place.
        let mut z = buf(&mut gs, &x.cpu);
        c.rms_norm_inplace(&mut cs, &mut z.cpu, rows, &w.cpu, 1e-6).unwrap();
        g.rms_norm_inplace(&mut gs, &mut z.gpu, rows, &w.gpu, 1e-6).unwrap();
        assert_close(
            &format!("rms_norm_inplace {rows}x{dim}"),
            &download(&mut gs, &z.gpu, rows * dim),
            &z.cpu,
            F32_TOL,
        );

        // Fused residual add + norm == add then norm; the residual stream is written back.
        let mut h = buf(&mut gs, &x.cpu);
        let r = buf(&mut gs, &rng.vec(rows * dim, 1.0));
        let mut out = buf(&mut gs, &vec![0.0; rows * dim]);
        poison(&mut gs, &mut out.gpu);
        c.add(&mut cs, &mut h.cpu, &r.cpu, rows * dim).unwrap();
        c.rms_norm(&mut cs, &h.cpu, rows, &w.cpu, 1e-6, &mut out.cpu).unwrap();
        g.add_rms_norm(&mut gs, &mut h.gpu, &r.gpu, rows, &w.gpu, 1e-6, &mut out.gpu).unwrap();
        assert_close(
            &format!("add_rms_norm {rows}x{dim}: residual"),
            &download(&mut gs, &h.gpu, rows * dim),
            &h.cpu,
            1e-7,
        );
        assert_close(
            &format!("add_rms_norm {rows}x{dim}: norm"),
            &download(&mut gs, &out.gpu, rows * dim),
            &out.cpu,
            F32_TOL,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn qk_norm_and_rope_match_cpu() {
    let (c, g) = (cpu(), gpu());
    let (mut cs, mut gs) = (c.new_stream().unwrap(), g.new_stream().unwrap());
    let mut rng = Rng::seeded(4);
    // (rows, heads, kv_heads, head_dim, first position): decode at short and long contexts,
    // a prefill, and the tiny fixtures' head_dim 16.
    let cases =
        [(1, 16, 8, 128, 0), (1, 16, 8, 128, 4095), (37, 16, 8, 128, 100), (3, 4, 2, 16, 5), (1, 8, 8, 64, 1234)];
    for &(rows, heads, kv_heads, hd, pos) in &cases {
        let shape = AttentionShape { num_heads: heads, num_kv_heads: kv_heads, head_dim: hd };
        let rope = Rope { theta: 1_000_000.0, head_dim: hd };
        let qn = weight(&mut rng, &[hd], 0.5, 1.0);
        let kn = weight(&mut rng, &[hd], 0.5, 1.0);
        let mut q = buf(&mut gs, &rng.vec(rows * heads * hd, 2.0));
        let mut k = buf(&mut gs, &rng.vec(rows * kv_heads * hd, 2.0));
        c.qk_norm_rope(&mut cs, &mut q.cpu, &mut k.cpu, rows, shape, &qn.cpu, &kn.cpu, 1e-6, rope, pos).unwrap();
        g.qk_norm_rope(&mut gs, &mut q.gpu, &mut k.gpu, rows, shape, &qn.gpu, &kn.gpu, 1e-6, rope, pos).unwrap();
        let what = format!("qk_norm_rope rows {rows} heads {heads}/{kv_heads} hd {hd} pos {pos}");
        assert_close(&format!("{what}: q"), &download(&mut gs, &q.gpu, q.cpu.len()), &q.cpu, F32_TOL);
        assert_close(&format!("{what}: k"), &download(&mut gs, &k.gpu, k.cpu.len()), &k.cpu, F32_TOL);

        // The standalone rope.
        let mut x = buf(&mut gs, &rng.vec(rows * heads * hd, 2.0));
        c.rope(&mut cs, &mut x.cpu, rows, heads, rope, pos).unwrap();
        g.rope(&mut gs, &mut x.gpu, rows, heads, rope, pos).unwrap();
        assert_close(
            &format!("rope rows {rows} hd {hd} pos {pos}"),
            &download(&mut gs, &x.gpu, x.cpu.len()),
            &x.cpu,
            F32_TOL,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn attention_matches_cpu() {
    let (c, g) = (cpu(), gpu());
    let (mut cs, mut gs) = (c.new_stream().unwrap(), g.new_stream().unwrap());
    let mut rng = Rng::seeded(5);
    // (rows, first position, heads, kv_heads, head_dim): decode over contexts from 1 to 4096
    // (one split up to 64 positions, then more), prefills from scratch and on a cache, the
    // code predictor's 2-row prefill and the tiny fixtures' shapes.
    let cases = [
        (1, 0, 16, 8, 128),
        (1, 6, 16, 8, 128),
        (1, 63, 16, 8, 128),
        (1, 64, 16, 8, 128),
        (1, 499, 16, 8, 128),
        (1, 4095, 16, 8, 128),
        (2, 0, 16, 8, 128),
        (37, 0, 16, 8, 128),
        (20, 300, 16, 8, 128),
        (5, 3, 4, 2, 16),
        (1, 1000, 32, 8, 64),
        // Prompt rows (> 8) through the query-tiled kernel: the 200-row prefill, the first
        // row count it takes, a ragged last tile on a cache, groups of 3 and 16 (MQA), and
        // shapes it leaves to the split kernel (a group of 32, head_dim 256).
        (200, 0, 16, 8, 128),
        (9, 0, 16, 8, 128),
        (33, 17, 4, 2, 16),
        (50, 0, 12, 4, 96),
        (40, 5, 16, 1, 64),
        (24, 0, 32, 1, 64),
        (12, 0, 8, 8, 256),
    ];
    for &(rows, pos, heads, kv_heads, hd) in &cases {
        let shape = AttentionShape { num_heads: heads, num_kv_heads: kv_heads, head_dim: hd };
        let len = pos + rows;
        let cap = len + 3;
        let q = buf(&mut gs, &rng.vec(rows * heads * hd, 1.0));
        // Keys scaled so the softmax is neither flat nor one-hot.
        let kc = buf(&mut gs, &rng.vec(cap * kv_heads * hd, 0.4));
        let vc = buf(&mut gs, &rng.vec(cap * kv_heads * hd, 1.0));
        let mut out = buf(&mut gs, &vec![0.0; rows * heads * hd]);
        poison(&mut gs, &mut out.gpu);
        c.attention(&mut cs, &q.cpu, &kc.cpu, &vc.cpu, shape, rows, pos, &mut out.cpu).unwrap();
        g.attention(&mut gs, &q.gpu, &kc.gpu, &vc.gpu, shape, rows, pos, &mut out.gpu).unwrap();
        let what = format!("attention rows {rows} pos {pos} heads {heads}/{kv_heads} hd {hd}");
        assert_close(&what, &download(&mut gs, &out.gpu, out.cpu.len()), &out.cpu, F32_TOL);
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn elementwise_and_embeddings_match_cpu() {
    let (c, g) = (cpu(), gpu());
    let (mut cs, mut gs) = (c.new_stream().unwrap(), g.new_stream().unwrap());
    let mut rng = Rng::seeded(6);
    for &n in &[1usize, 96, 3072, 100 * 3072 + 5] {
        let mut a = buf(&mut gs, &rng.vec(n, 6.0));
        let b = buf(&mut gs, &rng.vec(n, 2.0));
        c.silu_mul(&mut cs, &mut a.cpu, &b.cpu, n).unwrap();
        g.silu_mul(&mut gs, &mut a.gpu, &b.gpu, n).unwrap();
        assert_close(&format!("silu_mul {n}"), &download(&mut gs, &a.gpu, n), &a.cpu, F32_TOL);
        c.silu(&mut cs, &mut a.cpu, n).unwrap();
        g.silu(&mut gs, &mut a.gpu, n).unwrap();
        assert_close(&format!("silu {n}"), &download(&mut gs, &a.gpu, n), &a.cpu, F32_TOL);
        // Fresh operands: silu's rounding differences must not carry into the exact add.
        let mut a = buf(&mut gs, &rng.vec(n, 6.0));
        c.add(&mut cs, &mut a.cpu, &b.cpu, n).unwrap();
        g.add(&mut gs, &mut a.gpu, &b.gpu, n).unwrap();
        assert_close(&format!("add {n}"), &download(&mut gs, &a.gpu, n), &a.cpu, 0.0);
    }
    // Gathers: one table (overwrite and accumulate), then the frame embedding's 16 tables.
    let (vocab, dim) = (3072, 1024);
    let tables: Vec<W> = (0..16).map(|_| weight(&mut rng, &[vocab, dim], 0.1, 0.0)).collect();
    for &rows in &[1usize, 4, 33] {
        let ids: Vec<u32> = (0..rows).map(|_| rng.below(vocab) as u32).collect();
        let mut out = buf(&mut gs, &rng.vec(rows * dim, 1.0));
        c.embedding(&mut cs, &tables[0].cpu, &ids, &mut out.cpu, true).unwrap();
        g.embedding(&mut gs, &tables[0].gpu, &ids, &mut out.gpu, true).unwrap();
        assert_close(&format!("embedding accumulate {rows}"), &download(&mut gs, &out.gpu, rows * dim), &out.cpu, 0.0);
        poison(&mut gs, &mut out.gpu);
        c.embedding(&mut cs, &tables[1].cpu, &ids, &mut out.cpu, false).unwrap();
        g.embedding(&mut gs, &tables[1].gpu, &ids, &mut out.gpu, false).unwrap();
        assert_close(&format!("embedding {rows}"), &download(&mut gs, &out.gpu, rows * dim), &out.cpu, 0.0);

        let ids: Vec<u32> = (0..rows * 16).map(|_| rng.below(2048) as u32).collect();
        let (ct, gt): (Vec<_>, Vec<_>) = tables.iter().map(|t| (&t.cpu, &t.gpu)).unzip();
        poison(&mut gs, &mut out.gpu);
        c.embedding_sum(&mut cs, &ct, &ids, &mut out.cpu, false).unwrap();
        g.embedding_sum(&mut gs, &gt, &ids, &mut out.gpu, false).unwrap();
        // Same adds in the same order: bit-identical.
        assert_close(
            &format!("embedding_sum 16 tables {rows}"),
            &download(&mut gs, &out.gpu, rows * dim),
            &out.cpu,
            0.0,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn copies_and_concurrent_streams() {
    let g = gpu();
    let mut rng = Rng::seeded(7);
    let data = rng.vec(1000, 1.0);
    let mut s1 = g.new_stream().unwrap();
    let mut s2 = g.new_stream().unwrap();
    let mut a = g.alloc(1000).unwrap();
    let mut b = g.alloc(1200).unwrap();
    g.write(&mut s1, &mut a, 0, &data).unwrap();
    g.copy(&mut s1, &a, 100, &mut b, 150, 800).unwrap();
    let mut host = vec![0.0; 800];
    g.read(&mut s1, &b, 150, &mut host).unwrap();
    assert_eq!(host, data[100..900]);
    // Two streams on independent buffers, interleaved.
    let w = weight(&mut rng, &[512, 256], 0.1, 0.0);
    let x1 = rng.vec(256, 1.0);
    let x2 = rng.vec(256, 1.0);
    let (mut gx1, mut gx2) = (g.alloc(256).unwrap(), g.alloc(256).unwrap());
    let (mut y1, mut y2) = (g.alloc(512).unwrap(), g.alloc(512).unwrap());
    g.write(&mut s1, &mut gx1, 0, &x1).unwrap();
    g.write(&mut s2, &mut gx2, 0, &x2).unwrap();
    for _ in 0..50 {
        g.linear(&mut s1, &gx1, 1, &w.gpu, None, &mut y1, false).unwrap();
        g.linear(&mut s2, &gx2, 1, &w.gpu, None, &mut y2, false).unwrap();
    }
    let c = cpu();
    let mut cs = c.new_stream().unwrap();
    for (x, y, s) in [(&x1, &y1, &mut s1), (&x2, &y2, &mut s2)] {
        let mut want = vec![0.0; 512];
        c.linear(&mut cs, x, 1, &w.cpu, None, &mut want, false).unwrap();
        let mut got = vec![0.0; 512];
        g.read(s, y, 0, &mut got).unwrap();
        assert_close("two streams", &got, &want, F32_TOL);
    }
    // Dropping buffers while another stream still has queued work must be safe.
    for _ in 0..20 {
        g.linear(&mut s2, &gx2, 1, &w.gpu, None, &mut y2, false).unwrap();
    }
    drop(gx1);
    drop(y1);
    g.read(&mut s2, &y2, 0, &mut host[..512]).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn device_errors_are_classified_and_recoverable() {
    use qwentts::ErrorKind;
    // An ordinal the driver does not have.
    let count = qwentts::backend::cuda_device_count();
    let err = CudaBackend::new(count + 3).expect_err("no such device");
    assert_eq!(err.kind(), ErrorKind::NoDevice, "{err}");
    // More memory than any GPU has (4 TiB of f32): out of memory, and the device stays usable.
    let g = gpu();
    let err = g.alloc(1 << 40).expect_err("4 TiB cannot be allocated");
    assert_eq!(err.kind(), ErrorKind::OutOfMemory, "{err}");
    assert!(err.message().contains("out of GPU memory"), "{err}");
    let mut s = g.new_stream().unwrap();
    let mut b = g.alloc(4).unwrap();
    g.write(&mut s, &mut b, 0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let mut host = [0.0f32; 4];
    g.read(&mut s, &b, 0, &mut host).unwrap();
    assert_eq!(host, [1.0, 2.0, 3.0, 4.0]);
    // Through the public API: a model on a missing device fails before reading the checkpoint.
    let options = qwentts::LoadOptions { device: qwentts::Device::Cuda(count + 3), ..Default::default() };
    let err = match qwentts::Model::load("/nonexistent/checkpoint", &options) {
        Ok(_) => panic!("a missing device must fail"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::NoDevice, "{err}");
}
