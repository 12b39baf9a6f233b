//! Every [`AudioBackend`] op of the CUDA backend against the CPU backend (the oracle), over a
//! matrix of shapes in the manner of llama.cpp's test-backend-ops (feature `cuda`; needs a
//! GPU, so each test is `#[ignore]`d here and run on the device machine by
//! tools/device/run.sh with `--ignored`).
//!
//! Method: the same f32 weights go to both backends (audio weights are f32 on the GPU too),
//! inputs are seeded (SplitMix64, tests/common/rng.rs; fixed seeds, so a failure repeats; the
//! helpers are shared with cuda_kernels.rs in tests/common/gpu.rs),
//! GPU outputs are poisoned with NaN before each op so an unwritten element fails, and the
//! error is ‖gpu − cpu‖ / ‖cpu‖ (NaN never passes); each test prints its worst case.
//! Streaming ops run twice from the same random starting state: in one call, and as a
//! stream in uneven pieces (1, 7, 3, 16, ...) so the history / carry / window paths are
//! exercised; the GPU's pieces must equal its one call exactly (every output is one fixed
//! chain of adds), and the state left behind must match too. Ops whose GPU kernels add in the
//! CPU's order (depthwise, overlap-add, scale_add, codebook sum, clamp) are expected to be
//! bit-identical or within the f32 tolerance; the convolutions' GEMM differs from the CPU's
//! summation order only.
#![cfg(feature = "cuda")]

mod common;

use common::gpu::{GBuf, GStream, assert_bits_eq, download, gpu, poisoned, rel_err, upload};
use common::rng::Rng;
use qwentts::backend::audio::{Activation, AudioBackend, ColumnSpan, ConvShape, EdgePad, TransposedConvShape};
use qwentts::backend::cpu::CpuBackend;
use qwentts::backend::cuda::CudaF32Weight;
use qwentts::backend::{AttentionShape, Backend};

/// f32 against f32: only summation orders (and erff / sinf / expf ulps) differ.
const TOL: f64 = 1e-5;
const GPU: &str = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored";

type CStream = <CpuBackend as Backend>::Stream;

fn cpu() -> CpuBackend {
    CpuBackend::new(2)
}

fn streams(c: &CpuBackend) -> (CStream, GStream) {
    (c.new_stream().unwrap(), gpu().new_stream().unwrap())
}

/// The same f32 weight on both backends.
struct W {
    cpu: <CpuBackend as AudioBackend>::AudioWeight,
    gpu: CudaF32Weight,
}

fn weight(c: &CpuBackend, data: &[f32], shape: &[usize]) -> W {
    W { cpu: c.upload_audio_weight(data, shape).unwrap(), gpu: gpu().upload_audio_weight(data, shape).unwrap() }
}

/// The worst relative error seen by one test.
#[derive(Default)]
struct Worst {
    err: f64,
    case: String,
    cases: usize,
}

impl Worst {
    fn check(&mut self, what: &str, got: &[f32], want: &[f32]) {
        let e = rel_err(what, got, want);
        assert!(e <= TOL, "{what}: rel err {e:.3e} > {TOL:.0e}");
        self.cases += 1;
        if e >= self.err {
            self.err = e;
            self.case = what.to_owned();
        }
    }

    fn report(&self, test: &str) {
        eprintln!("{test}: {} comparisons, worst rel err {:.2e} ({})", self.cases, self.err, self.case);
    }
}

/// Piece sizes of a stream of `rows` rows: the pattern from `start`, cycled, cut at `rows`.
fn pieces(rows: usize, start: usize) -> Vec<usize> {
    const PATTERN: [usize; 8] = [1, 7, 3, 16, 2, 64, 5, 37];
    let mut out = Vec::new();
    let (mut done, mut i) = (0, start);
    while done < rows {
        let n = PATTERN[i % PATTERN.len()].min(rows - done);
        out.push(n);
        done += n;
        i += 1;
    }
    out
}

/// Runs a streaming op over `x: [rows, width_in]` in `pieces` on both backends (the same
/// starting `state` on each), each piece into a fresh output of `out_per_row · n` values.
/// Returns (cpu outputs, gpu outputs, cpu state, gpu state), outputs concatenated.
#[allow(clippy::too_many_arguments)]
fn stream_both(
    c: &CpuBackend,
    cs: &mut CStream,
    gs: &mut GStream,
    x: &[f32],
    width_in: usize,
    out_per_row: usize,
    parts: &[usize],
    state: &[f32],
    mut cpu_op: impl FnMut(&CpuBackend, &mut CStream, &Vec<f32>, usize, &mut Vec<f32>, &mut Vec<f32>),
    mut gpu_op: impl FnMut(&mut GStream, &GBuf, usize, &mut GBuf, &mut GBuf),
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = gpu();
    let rows: usize = parts.iter().sum();
    let mut c_state = state.to_vec();
    let mut g_state = upload(gs, state);
    let mut c_out = Vec::with_capacity(rows * out_per_row);
    let mut g_all = poisoned(gs, rows * out_per_row);
    let mut done = 0;
    for &n in parts {
        let piece = x[done * width_in..(done + n) * width_in].to_vec();
        let mut cy = vec![0.0; n * out_per_row];
        cpu_op(c, cs, &piece, n, &mut c_state, &mut cy);
        c_out.extend_from_slice(&cy);
        let gx = upload(gs, &piece);
        let mut gy = poisoned(gs, n * out_per_row);
        gpu_op(gs, &gx, n, &mut g_state, &mut gy);
        g.copy(gs, &gy, 0, &mut g_all, done * out_per_row, n * out_per_row).unwrap();
        done += n;
    }
    let g_out = download(gs, &g_all, rows * out_per_row);
    let g_state = download(gs, &g_state, state.len());
    (c_out, g_out, c_state, g_state)
}

/// `Some(state)` when the op keeps one (the trait's rule: `None` for an empty state).
fn opt<T>(len: usize, state: &mut T) -> Option<&mut T> {
    (len > 0).then_some(state)
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn causal_conv_matches_cpu_streamed_and_in_one_call() {
    let _ = GPU;
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0xC0417);
    let mut worst = Worst::default();
    let mut case = 0;
    for cin in [3, 32, 96, 100] {
        for cout in [3, 32, 96, 100] {
            for kernel in [1, 3, 7] {
                for dilation in [1, 3, 9] {
                    if kernel == 1 && dilation > 1 {
                        continue; // no history: the same as dilation 1
                    }
                    let shape = ConvShape { cin, cout, kernel, dilation };
                    let scale = 1.0 / ((kernel * cin) as f32).sqrt();
                    let w = weight(&c, &rng.vec(shape.weight_len(), scale), &[cout, kernel * cin]);
                    let bias = (case % 3 != 2).then(|| weight(&c, &rng.vec(cout, 0.5), &[cout]));
                    let h_len = shape.history_rows() * cin;
                    for rows in [1, 5, 64, 200] {
                        case += 1;
                        let what = format!("conv cin {cin} cout {cout} k {kernel} d {dilation} rows {rows}");
                        let x = rng.vec(rows * cin, 1.0);
                        let h0 = rng.vec(h_len, 1.0);
                        // One call.
                        let mut ch = h0.clone();
                        let mut cy = vec![0.0; rows * cout];
                        c.causal_conv(
                            &mut cs,
                            &x,
                            rows,
                            opt(h_len, &mut ch),
                            shape,
                            &w.cpu,
                            bias.as_ref().map(|b| &b.cpu),
                            &mut cy,
                        )
                        .unwrap();
                        let gx = upload(&mut gs, &x);
                        let mut gh = upload(&mut gs, &h0);
                        let mut gy = poisoned(&mut gs, rows * cout);
                        g.causal_conv(
                            &mut gs,
                            &gx,
                            rows,
                            opt(h_len, &mut gh),
                            shape,
                            &w.gpu,
                            bias.as_ref().map(|b| &b.gpu),
                            &mut gy,
                        )
                        .unwrap();
                        let one_y = download(&mut gs, &gy, rows * cout);
                        let one_h = download(&mut gs, &gh, h_len);
                        worst.check(&format!("{what} one call"), &one_y, &cy);
                        assert_bits_eq(&format!("{what} one-call history"), &one_h, &ch);
                        // The same rows as a stream of uneven pieces.
                        let parts = pieces(rows, case);
                        let (c_out, g_out, c_h, g_h) = stream_both(
                            &c,
                            &mut cs,
                            &mut gs,
                            &x,
                            cin,
                            cout,
                            &parts,
                            &h0,
                            |c, s, x, n, h, y| {
                                c.causal_conv(s, x, n, opt(h_len, h), shape, &w.cpu, bias.as_ref().map(|b| &b.cpu), y)
                                    .unwrap()
                            },
                            |s, x, n, h, y| {
                                g.causal_conv(s, x, n, opt(h_len, h), shape, &w.gpu, bias.as_ref().map(|b| &b.gpu), y)
                                    .unwrap()
                            },
                        );
                        worst.check(&format!("{what} pieces {parts:?}"), &g_out, &c_out);
                        assert_bits_eq(&format!("{what} streamed history"), &g_h, &c_h);
                        assert_bits_eq(&format!("{what}: GPU pieces vs GPU one call"), &g_out, &one_y);
                    }
                }
            }
        }
    }
    worst.report("causal_conv");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn causal_conv_as_linear_layer_on_long_inputs() {
    // The real decoder's widths (kernel 1 = a dense layer; one 7-tap conv over 1536
    // channels) and a row count that spans many 64-row tiles.
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0x11EA);
    let mut worst = Worst::default();
    for (cin, cout, kernel, dilation, rows) in
        [(1024, 512, 1, 1, 300), (512, 1024, 1, 1, 77), (1536, 96, 7, 1, 130), (96, 96, 7, 9, 1000)]
    {
        let shape = ConvShape { cin, cout, kernel, dilation };
        let scale = 1.0 / ((kernel * cin) as f32).sqrt();
        let w = weight(&c, &rng.vec(shape.weight_len(), scale), &[cout, kernel * cin]);
        let b = weight(&c, &rng.vec(cout, 0.5), &[cout]);
        let h_len = shape.history_rows() * cin;
        let x = rng.vec(rows * cin, 1.0);
        let mut ch = rng.vec(h_len, 1.0);
        let mut gh = upload(&mut gs, &ch);
        let mut cy = vec![0.0; rows * cout];
        c.causal_conv(&mut cs, &x, rows, opt(h_len, &mut ch), shape, &w.cpu, Some(&b.cpu), &mut cy).unwrap();
        let gx = upload(&mut gs, &x);
        let mut gy = poisoned(&mut gs, rows * cout);
        g.causal_conv(&mut gs, &gx, rows, opt(h_len, &mut gh), shape, &w.gpu, Some(&b.gpu), &mut gy).unwrap();
        worst.check(
            &format!("conv {cin}->{cout} k {kernel} d {dilation} rows {rows}"),
            &download(&mut gs, &gy, rows * cout),
            &cy,
        );
        assert_bits_eq("history", &download(&mut gs, &gh, h_len), &ch);
    }
    worst.report("causal_conv (model widths)");
}

/// A call whose output tiles fill the GPU runs unsplit; the same rows in 16-row pieces have
/// one row tile each, so (by default; not with `QT_CODEC_SPLIT_K=0`) they run split over K (one block per
/// chunk and column tile, then the reduction). Both add the same chunk chains in the same
/// order, so the outputs must be the same bits (and without the split, trivially so).
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn a_conv_split_over_k_equals_the_unsplit_call_to_the_bit() {
    // K = 7 x 96 = 672: three chunks of 256 when chunked (the last one partial). 9,600 rows:
    // 150 row tiles x 2 column tiles = 300 blocks, more than the GPU's SMs.
    let (cin, cout, kernel, dilation, rows) = (96, 96, 7, 3, 9600);
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0x5B117);
    let shape = ConvShape { cin, cout, kernel, dilation };
    let scale = 1.0 / ((kernel * cin) as f32).sqrt();
    let w = weight(&c, &rng.vec(shape.weight_len(), scale), &[cout, kernel * cin]);
    let b = weight(&c, &rng.vec(cout, 0.5), &[cout]);
    let h_len = shape.history_rows() * cin;
    let x = rng.vec(rows * cin, 1.0);
    let h0 = rng.vec(h_len, 1.0);

    let gx = upload(&mut gs, &x);
    let mut gh = upload(&mut gs, &h0);
    let mut gy = poisoned(&mut gs, rows * cout);
    g.causal_conv(&mut gs, &gx, rows, Some(&mut gh), shape, &w.gpu, Some(&b.gpu), &mut gy).unwrap();
    let one_y = download(&mut gs, &gy, rows * cout);

    let parts = vec![16; rows / 16];
    let (c_out, g_out, c_h, g_h) = stream_both(
        &c,
        &mut cs,
        &mut gs,
        &x,
        cin,
        cout,
        &parts,
        &h0,
        |c, s, x, n, h, y| c.causal_conv(s, x, n, Some(h), shape, &w.cpu, Some(&b.cpu), y).unwrap(),
        |s, x, n, h, y| g.causal_conv(s, x, n, Some(h), shape, &w.gpu, Some(&b.gpu), y).unwrap(),
    );
    assert_bits_eq("16-row pieces vs one 9600-row call", &g_out, &one_y);
    assert_bits_eq("history after the pieces", &g_h, &c_h);
    let e = rel_err("16-row pieces vs the CPU", &g_out, &c_out);
    assert!(e <= TOL, "16-row pieces vs the CPU: relative error {e:.2e}");
    eprintln!("split vs unsplit conv: identical; vs CPU {e:.2e}");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn transposed_conv_matches_cpu_streamed_and_in_one_call() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0x7C0);
    let mut worst = Worst::default();
    let mut case = 0;
    for (kernel, stride) in [(2, 2), (16, 8), (10, 5), (6, 3), (5, 2)] {
        for (cin, cout) in [(3, 5), (32, 96), (96, 32), (100, 100)] {
            let shape = TransposedConvShape { cin, cout, kernel, stride };
            let w =
                weight(&c, &rng.vec(shape.weight_len(), 1.0 / (cin as f32).sqrt()), &[kernel * cout, cin]);
            let b = weight(&c, &rng.vec(cout, 0.5), &[cout]);
            let c_len = shape.overlap_rows() * cout;
            for rows in [1, 5, 64, 150] {
                case += 1;
                let what = format!("conv_transpose k {kernel} s {stride} cin {cin} cout {cout} rows {rows}");
                let x = rng.vec(rows * cin, 1.0);
                let carry0 = rng.vec(c_len, 1.0);
                let out = rows * stride * cout;
                let mut cc = carry0.clone();
                let mut cy = vec![0.0; out];
                c.causal_conv_transpose(&mut cs, &x, rows, opt(c_len, &mut cc), shape, &w.cpu, &b.cpu, &mut cy)
                    .unwrap();
                let gx = upload(&mut gs, &x);
                let mut gc = upload(&mut gs, &carry0);
                let mut gy = poisoned(&mut gs, out);
                g.causal_conv_transpose(&mut gs, &gx, rows, opt(c_len, &mut gc), shape, &w.gpu, &b.gpu, &mut gy)
                    .unwrap();
                let one_y = download(&mut gs, &gy, out);
                let one_c = download(&mut gs, &gc, c_len);
                worst.check(&format!("{what} one call"), &one_y, &cy);
                worst.check(&format!("{what} one-call carry"), &one_c, &cc);
                let parts = pieces(rows, case);
                let (c_out, g_out, c_c, g_c) = stream_both(
                    &c,
                    &mut cs,
                    &mut gs,
                    &x,
                    cin,
                    stride * cout,
                    &parts,
                    &carry0,
                    |c, s, x, n, st, y| {
                        c.causal_conv_transpose(s, x, n, opt(c_len, st), shape, &w.cpu, &b.cpu, y).unwrap()
                    },
                    |s, x, n, st, y| {
                        g.causal_conv_transpose(s, x, n, opt(c_len, st), shape, &w.gpu, &b.gpu, y).unwrap()
                    },
                );
                worst.check(&format!("{what} pieces {parts:?}"), &g_out, &c_out);
                worst.check(&format!("{what} streamed carry"), &g_c, &c_c);
                assert_bits_eq(&format!("{what}: GPU pieces vs GPU one call"), &g_out, &one_y);
                assert_bits_eq(&format!("{what}: GPU carry, pieces vs one call"), &g_c, &one_c);
            }
        }
    }
    worst.report("causal_conv_transpose");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn depthwise_conv_matches_cpu_streamed_and_in_one_call() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0xD3);
    let mut worst = Worst::default();
    let mut case = 0;
    for channels in [3, 96, 100, 1024] {
        for kernel in [1, 3, 7] {
            let taps = weight(&c, &rng.vec(kernel * channels, 0.5), &[kernel, channels]);
            let b = weight(&c, &rng.vec(channels, 0.5), &[channels]);
            let h_len = (kernel - 1) * channels;
            for rows in [1, 5, 64, 200] {
                case += 1;
                let what = format!("depthwise ch {channels} k {kernel} rows {rows}");
                let x = rng.vec(rows * channels, 1.0);
                let h0 = rng.vec(h_len, 1.0);
                let mut ch = h0.clone();
                let mut cy = vec![0.0; rows * channels];
                c.depthwise_causal_conv(&mut cs, &x, rows, &mut ch, channels, kernel, &taps.cpu, &b.cpu, &mut cy)
                    .unwrap();
                let gx = upload(&mut gs, &x);
                let mut gh = upload(&mut gs, &h0);
                let mut gy = poisoned(&mut gs, rows * channels);
                g.depthwise_causal_conv(&mut gs, &gx, rows, &mut gh, channels, kernel, &taps.gpu, &b.gpu, &mut gy)
                    .unwrap();
                let one_y = download(&mut gs, &gy, rows * channels);
                worst.check(&format!("{what} one call"), &one_y, &cy);
                assert_bits_eq(&format!("{what} one-call history"), &download(&mut gs, &gh, h_len), &ch);
                let parts = pieces(rows, case);
                let (c_out, g_out, c_h, g_h) = stream_both(
                    &c,
                    &mut cs,
                    &mut gs,
                    &x,
                    channels,
                    channels,
                    &parts,
                    &h0,
                    |c, s, x, n, h, y| {
                        c.depthwise_causal_conv(s, x, n, h, channels, kernel, &taps.cpu, &b.cpu, y).unwrap()
                    },
                    |s, x, n, h, y| {
                        g.depthwise_causal_conv(s, x, n, h, channels, kernel, &taps.gpu, &b.gpu, y).unwrap()
                    },
                );
                worst.check(&format!("{what} pieces {parts:?}"), &g_out, &c_out);
                assert_bits_eq(&format!("{what} streamed history"), &g_h, &c_h);
                assert_bits_eq(&format!("{what}: GPU pieces vs GPU one call"), &g_out, &one_y);
            }
        }
    }
    worst.report("depthwise_causal_conv");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn norms_match_cpu() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0x4E);
    let mut worst = Worst::default();
    for dim in [3, 96, 100, 1024, 1536] {
        let w = weight(&c, &rng.vec(dim, 0.5).iter().map(|v| 1.0 + v).collect::<Vec<_>>(), &[dim]);
        let b = weight(&c, &rng.vec(dim, 0.5), &[dim]);
        for rows in [1, 7, 64] {
            for eps in [1e-5f32, 1e-6] {
                // Rows with an offset, so the mean matters.
                let x: Vec<f32> = rng.vec(rows * dim, 2.0).iter().map(|v| v + 0.75).collect();
                // LayerNorm, in place; the buffer is longer than the rows it normalises.
                let mut cx = x.clone();
                cx.extend_from_slice(&[9.0; 5]);
                c.layer_norm(&mut cs, &mut cx, rows, &w.cpu, &b.cpu, eps).unwrap();
                let mut gx = upload(&mut gs, &[x.as_slice(), &[9.0; 5]].concat());
                g.layer_norm(&mut gs, &mut gx, rows, &w.gpu, &b.gpu, eps).unwrap();
                let got = download(&mut gs, &gx, rows * dim + 5);
                worst.check(
                    &format!("layer_norm dim {dim} rows {rows} eps {eps}"),
                    &got[..rows * dim],
                    &cx[..rows * dim],
                );
                assert_eq!(&got[rows * dim..], &[9.0; 5], "layer_norm wrote past its rows");
                // RMSNorm into y.
                let mut cy = vec![0.0; rows * dim];
                c.audio_rms_norm(&mut cs, &x, rows, &w.cpu, eps, &mut cy).unwrap();
                let gx = upload(&mut gs, &x);
                let mut gy = poisoned(&mut gs, rows * dim);
                g.audio_rms_norm(&mut gs, &gx, rows, &w.gpu, eps, &mut gy).unwrap();
                worst.check(
                    &format!("rms_norm dim {dim} rows {rows} eps {eps}"),
                    &download(&mut gs, &gy, rows * dim),
                    &cy,
                );
            }
        }
    }
    worst.report("norms");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn activations_match_cpu() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0xAC7);
    let mut worst = Worst::default();
    // GELU over erf's whole range (|x / √2| up to ~4.2); the element after `len` stays.
    for len in [1, 1000, 100_003] {
        let x = rng.vec(len, 6.0);
        let mut cx = x.clone();
        cx.push(7.0);
        c.gelu(&mut cs, &mut cx, len).unwrap();
        let mut gx = upload(&mut gs, &[x.as_slice(), &[7.0]].concat());
        g.gelu(&mut gs, &mut gx, len).unwrap();
        let got = download(&mut gs, &gx, len + 1);
        // Per element against the input's scale, not the output's: for x ≪ 0, 1 + erf(x/√2)
        // cancels, so CUDA's erff (≤ 2 ulp) and the CPU's f64 erf rounded once differ by a
        // few ulp of 1 times |x|, which is a large relative error on a tiny output (seen on
        // the H100: 3.3e-3 relative on one element, while the decoder matches to 2e-6).
        for (i, ((&g, &w), &xi)) in got[..len].iter().zip(&cx[..len]).zip(&x).enumerate() {
            let bound = 1e-6 * (1.0 + xi.abs());
            assert!((g - w).abs() <= bound, "gelu len {len}, element {i} (x = {xi}): {g} vs {w}");
        }
        assert_eq!(got[len], 7.0, "gelu wrote past len");
    }
    // SnakeBeta with log-space parameters as the model loads them.
    for channels in [3, 96, 1024] {
        let freq: Vec<f32> = rng.vec(channels, 1.0).iter().map(|a| a.exp()).collect();
        let inv_mag: Vec<f32> = rng.vec(channels, 1.0).iter().map(|b| 1.0 / (b.exp() + 1e-9)).collect();
        let f = weight(&c, &freq, &[channels]);
        let m = weight(&c, &inv_mag, &[channels]);
        for rows in [1, 7, 64] {
            let x = rng.vec(rows * channels, 3.0);
            let mut cx = x.clone();
            c.snake_beta(&mut cs, &mut cx, rows, &f.cpu, &m.cpu).unwrap();
            let mut gx = upload(&mut gs, &x);
            g.snake_beta(&mut gs, &mut gx, rows, &f.gpu, &m.gpu).unwrap();
            worst.check(&format!("snake ch {channels} rows {rows}"), &download(&mut gs, &gx, rows * channels), &cx);
        }
    }
    // Layer scale + residual: the CPU's exact rounding.
    for channels in [3, 96, 1024] {
        let scale = weight(&c, &rng.vec(channels, 0.1), &[channels]);
        for rows in [1, 7, 64] {
            let r = rng.vec(rows * channels, 1.0);
            let x = rng.vec(rows * channels, 1.0);
            let mut cr = r.clone();
            c.scale_add(&mut cs, &mut cr, &x, rows, &scale.cpu).unwrap();
            let mut gr = upload(&mut gs, &r);
            let gx = upload(&mut gs, &x);
            g.scale_add(&mut gs, &mut gr, &gx, rows, &scale.gpu).unwrap();
            let got = download(&mut gs, &gr, rows * channels);
            assert_bits_eq(&format!("scale_add ch {channels} rows {rows}"), &got, &cr);
            worst.check(&format!("scale_add ch {channels} rows {rows}"), &got, &cr);
        }
    }
    // Clamp, NaN included (f32::clamp passes it through).
    let mut x = rng.vec(1001, 2.0);
    x[17] = f32::NAN;
    x[18] = f32::INFINITY;
    x[19] = f32::NEG_INFINITY;
    let mut cx = x.clone();
    c.clamp(&mut cs, &mut cx, 1000, -1.0, 1.0).unwrap();
    let mut gx = upload(&mut gs, &x);
    g.clamp(&mut gs, &mut gx, 1000, -1.0, 1.0).unwrap();
    assert_bits_eq("clamp", &download(&mut gs, &gx, 1001), &cx);
    worst.report("activations");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn codebook_sum_matches_cpu_exactly() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0xCB);
    // 20 tables: more than one launch takes (16), summed in the same order.
    for (num_tables, entries, dim) in [(1, 2048, 512), (2, 5, 100), (16, 2048, 512), (20, 33, 100)] {
        let tables: Vec<W> =
            (0..num_tables).map(|_| weight(&c, &rng.vec(entries * dim, 1.0), &[entries, dim])).collect();
        let cpu_tables: Vec<_> = tables.iter().map(|t| &t.cpu).collect();
        let gpu_tables: Vec<_> = tables.iter().map(|t| &t.gpu).collect();
        for rows in [1, 3, 50] {
            let ids: Vec<u32> = (0..rows * num_tables).map(|_| rng.below(entries) as u32).collect();
            let mut cy = vec![0.0; rows * dim];
            c.codebook_sum(&mut cs, &cpu_tables, &ids, &mut cy).unwrap();
            let mut gy = poisoned(&mut gs, rows * dim);
            g.codebook_sum(&mut gs, &gpu_tables, &ids, &mut gy).unwrap();
            let got = download(&mut gs, &gy, rows * dim);
            assert_bits_eq(&format!("codebook_sum {num_tables} tables {entries}x{dim} rows {rows}"), &got, &cy);
        }
    }
    eprintln!("codebook_sum: bit-identical");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn window_attention_matches_cpu_streamed() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0xA77);
    let mut worst = Worst::default();
    let total_rows = 150;
    let shapes = [
        AttentionShape { num_heads: 16, num_kv_heads: 16, head_dim: 64 }, // the decoder's
        AttentionShape { num_heads: 8, num_kv_heads: 2, head_dim: 32 },   // grouped heads
    ];
    for shape in shapes {
        let (q_dim, kv_dim) = (shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim);
        for window in [72, 4] {
            let q = rng.vec(total_rows * q_dim, 1.5);
            let k = rng.vec(total_rows * kv_dim, 1.5);
            let v = rng.vec(total_rows * kv_dim, 1.0);
            for parts in [vec![1usize, 4, 37], vec![total_rows]] {
                let max_piece = *parts.iter().max().unwrap();
                let capacity = window - 1 + max_piece;
                let mut ck = vec![0.0; capacity * kv_dim];
                let mut cv = vec![0.0; capacity * kv_dim];
                let mut gk = poisoned(&mut gs, capacity * kv_dim);
                let mut gv = poisoned(&mut gs, capacity * kv_dim);
                let (mut c_past, mut g_past) = (0, 0);
                let mut c_out = Vec::new();
                let mut g_all = poisoned(&mut gs, total_rows * q_dim);
                let (mut done, mut i) = (0, 0);
                while done < total_rows {
                    let n = parts[i % parts.len()].min(total_rows - done);
                    let (qp, kp, vp) = (
                        q[done * q_dim..(done + n) * q_dim].to_vec(),
                        k[done * kv_dim..(done + n) * kv_dim].to_vec(),
                        v[done * kv_dim..(done + n) * kv_dim].to_vec(),
                    );
                    let mut co = vec![0.0; n * q_dim];
                    c_past = c
                        .window_attention(&mut cs, &qp, &kp, &vp, n, shape, window, &mut ck, &mut cv, c_past, &mut co)
                        .unwrap();
                    c_out.extend_from_slice(&co);
                    let (gq, gkn, gvn) = (upload(&mut gs, &qp), upload(&mut gs, &kp), upload(&mut gs, &vp));
                    let mut go = poisoned(&mut gs, n * q_dim);
                    g_past = g
                        .window_attention(&mut gs, &gq, &gkn, &gvn, n, shape, window, &mut gk, &mut gv, g_past, &mut go)
                        .unwrap();
                    assert_eq!(g_past, c_past, "returned past");
                    g.copy(&mut gs, &go, 0, &mut g_all, done * q_dim, n * q_dim).unwrap();
                    done += n;
                    i += 1;
                }
                let what = format!("window_attention {shape:?} window {window} pieces {parts:?}");
                worst.check(&what, &download(&mut gs, &g_all, total_rows * q_dim), &c_out);
                // The remembered rows (copies: exact).
                let kept = c_past * kv_dim;
                assert_bits_eq(&format!("{what} keys"), &download(&mut gs, &gk, kept), &ck[..kept]);
                assert_bits_eq(&format!("{what} values"), &download(&mut gs, &gv, kept), &cv[..kept]);
            }
        }
    }
    worst.report("window_attention");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn bad_sizes_and_states_are_errors() {
    let c = cpu();
    let g = gpu();
    let mut s = g.new_stream().unwrap();
    let up = |data: &[f32], shape: &[usize]| g.upload_audio_weight(data, shape).unwrap();
    assert!(g.upload_audio_weight(&[1.0; 5], &[2, 3]).is_err(), "weight data and shape disagree");

    // Causal conv 4 -> 6, kernel 3, dilation 2: history of 4 rows.
    let shape = ConvShape { cin: 4, cout: 6, kernel: 3, dilation: 2 };
    let w = up(&[0.1; 72], &[6, 12]);
    let b = up(&[0.0; 6], &[6]);
    let x = g.alloc(5 * 4).unwrap();
    let mut y = g.alloc(5 * 6).unwrap();
    let mut h = g.alloc(4 * 4).unwrap();
    assert!(g.causal_conv(&mut s, &x, 5, Some(&mut h), shape, &w, Some(&b), &mut y).is_ok());
    assert!(g.causal_conv(&mut s, &x, 6, Some(&mut h), shape, &w, Some(&b), &mut y).is_err(), "short input");
    let mut short_y = g.alloc(5 * 6 - 1).unwrap();
    assert!(g.causal_conv(&mut s, &x, 5, Some(&mut h), shape, &w, Some(&b), &mut short_y).is_err(), "short output");
    assert!(g.causal_conv(&mut s, &x, 5, None, shape, &w, Some(&b), &mut y).is_err(), "history missing");
    let mut long_h = g.alloc(4 * 4 + 1).unwrap();
    assert!(g.causal_conv(&mut s, &x, 5, Some(&mut long_h), shape, &w, Some(&b), &mut y).is_err(), "history size");
    let linear = ConvShape::linear(4, 6);
    let w1 = up(&[0.1; 24], &[6, 4]);
    assert!(g.causal_conv(&mut s, &x, 5, None, linear, &w1, None, &mut y).is_ok());
    assert!(
        g.causal_conv(&mut s, &x, 5, Some(&mut h), linear, &w1, None, &mut y).is_err(),
        "history given for kernel 1"
    );
    assert!(g.causal_conv(&mut s, &x, 5, None, linear, &w, None, &mut y).is_err(), "weight size");
    let wrong_bias = up(&[0.0; 5], &[5]);
    assert!(g.causal_conv(&mut s, &x, 5, None, linear, &w1, Some(&wrong_bias), &mut y).is_err(), "bias size");
    let zero_kernel = ConvShape { cin: 4, cout: 6, kernel: 0, dilation: 1 };
    assert!(g.causal_conv(&mut s, &x, 5, None, zero_kernel, &w1, None, &mut y).is_err(), "kernel 0");

    // Transposed conv 4 -> 6, kernel 4, stride 2: carry of 2 rows.
    let tshape = TransposedConvShape { cin: 4, cout: 6, kernel: 4, stride: 2 };
    let tw = up(&[0.1; 96], &[24, 4]);
    let mut carry = g.alloc(2 * 6).unwrap();
    let mut ty = g.alloc(5 * 2 * 6).unwrap();
    assert!(g.causal_conv_transpose(&mut s, &x, 5, Some(&mut carry), tshape, &tw, &b, &mut ty).is_ok());
    assert!(g.causal_conv_transpose(&mut s, &x, 5, None, tshape, &tw, &b, &mut ty).is_err(), "carry missing");
    assert!(g.causal_conv_transpose(&mut s, &x, 5, Some(&mut carry), tshape, &tw, &b, &mut y).is_err(), "short output");
    let equal = TransposedConvShape { cin: 4, cout: 6, kernel: 2, stride: 2 };
    let ew = up(&[0.1; 48], &[12, 4]);
    assert!(g.causal_conv_transpose(&mut s, &x, 5, None, equal, &ew, &b, &mut ty).is_ok());
    assert!(
        g.causal_conv_transpose(&mut s, &x, 5, Some(&mut carry), equal, &ew, &b, &mut ty).is_err(),
        "carry given, k = s"
    );
    let inverted = TransposedConvShape { cin: 4, cout: 6, kernel: 2, stride: 4 };
    assert!(g.causal_conv_transpose(&mut s, &x, 5, None, inverted, &ew, &b, &mut ty).is_err(), "kernel < stride");

    // Depthwise: history of kernel − 1 rows exactly.
    let taps = up(&[0.1; 28], &[7, 4]);
    let db = up(&[0.0; 4], &[4]);
    let mut dh = g.alloc(6 * 4).unwrap();
    let mut dy = g.alloc(5 * 4).unwrap();
    assert!(g.depthwise_causal_conv(&mut s, &x, 5, &mut dh, 4, 7, &taps, &db, &mut dy).is_ok());
    let mut bad_dh = g.alloc(5 * 4).unwrap();
    assert!(g.depthwise_causal_conv(&mut s, &x, 5, &mut bad_dh, 4, 7, &taps, &db, &mut dy).is_err(), "history size");
    assert!(g.depthwise_causal_conv(&mut s, &x, 6, &mut dh, 4, 7, &taps, &db, &mut dy).is_err(), "short input");

    // Norms and element-wise ops.
    let mut xm = g.alloc(5 * 4).unwrap();
    assert!(g.layer_norm(&mut s, &mut xm, 5, &db, &wrong_bias, 1e-5).is_err(), "layer_norm bias size");
    assert!(g.layer_norm(&mut s, &mut xm, 6, &db, &db, 1e-5).is_err(), "layer_norm short input");
    let mut short = g.alloc(19).unwrap();
    assert!(g.audio_rms_norm(&mut s, &x, 5, &db, 1e-5, &mut short).is_err(), "rms_norm short output");
    assert!(g.gelu(&mut s, &mut xm, 21).is_err(), "gelu past the end");
    assert!(g.snake_beta(&mut s, &mut xm, 5, &db, &wrong_bias).is_err(), "snake parameter sizes");
    assert!(g.scale_add(&mut s, &mut xm, &short, 5, &db).is_err(), "scale_add short input");
    assert!(g.clamp(&mut s, &mut xm, 20, 1.0, -1.0).is_err(), "clamp lo > hi");
    assert!(g.clamp(&mut s, &mut xm, 21, -1.0, 1.0).is_err(), "clamp past the end");

    // Codebooks.
    let t1 = up(&[0.5; 12], &[3, 4]);
    let t2 = up(&[0.5; 20], &[5, 4]);
    let t_wide = up(&[0.5; 15], &[3, 5]);
    let mut out = g.alloc(2 * 4).unwrap();
    assert!(g.codebook_sum(&mut s, &[&t1, &t2], &[2, 4, 0, 1], &mut out).is_ok());
    assert!(g.codebook_sum(&mut s, &[&t1, &t2], &[3, 0], &mut out).is_err(), "id out of range");
    assert!(g.codebook_sum(&mut s, &[&t1, &t2], &[0, 0, 0], &mut out).is_err(), "ids not a whole row");
    assert!(g.codebook_sum(&mut s, &[&t1, &t_wide], &[0, 0], &mut out).is_err(), "tables of different widths");
    assert!(g.codebook_sum(&mut s, &[&t1, &t2], &[0, 0, 0, 0, 0, 0], &mut out).is_err(), "short output");
    assert!(g.codebook_sum(&mut s, &[], &[], &mut out).is_err(), "no tables");

    // Window attention: 2 heads over 1 KV head of 4, window 3.
    let ashape = AttentionShape { num_heads: 2, num_kv_heads: 1, head_dim: 4 };
    let (q, k) = (g.alloc(2 * 8).unwrap(), g.alloc(2 * 4).unwrap());
    let mut keys = g.alloc(4 * 4).unwrap();
    let mut values = g.alloc(4 * 4).unwrap();
    let mut ao = g.alloc(2 * 8).unwrap();
    let past = g.window_attention(&mut s, &q, &k, &k, 2, ashape, 3, &mut keys, &mut values, 0, &mut ao).unwrap();
    assert_eq!(past, 2);
    let r = g.window_attention(&mut s, &q, &k, &k, 2, ashape, 3, &mut keys, &mut values, 3, &mut ao);
    assert!(r.is_err(), "past >= window");
    let mut small = g.alloc(3 * 4).unwrap();
    let r = g.window_attention(&mut s, &q, &k, &k, 2, ashape, 3, &mut small, &mut values, 2, &mut ao);
    assert!(r.is_err(), "window buffer below past + rows");
    let odd = AttentionShape { num_heads: 3, num_kv_heads: 2, head_dim: 4 };
    let r = g.window_attention(&mut s, &q, &k, &k, 1, odd, 3, &mut keys, &mut values, 0, &mut ao);
    assert!(r.is_err(), "heads not a multiple of kv heads");

    // The stream still works after the rejected calls, and the CPU agrees on the rules.
    g.causal_conv(&mut s, &x, 5, Some(&mut h), shape, &w, Some(&b), &mut y).unwrap();
    let mut host = [0.0f32; 30];
    g.read(&mut s, &y, 0, &mut host).unwrap();
    let mut cs = c.new_stream().unwrap();
    let (cx, mut cy) = (vec![0.0; 20], vec![0.0; 30]);
    let cw = c.upload_audio_weight(&[0.1; 24], &[6, 4]).unwrap();
    let mut ch = vec![0.0; 16];
    assert!(
        c.causal_conv(&mut cs, &cx, 5, Some(&mut ch), linear, &cw, None, &mut cy).is_err(),
        "CPU: history for kernel 1"
    );
}

// --- The speaker encoder's ops ----------------------------------------------------------------

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn reflect_conv_matches_cpu() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0x5EC7);
    let mut worst = Worst::default();
    // The released encoder's layers (k 5 d 1, k 3 d 2..4, k 1) at small widths, rows from the
    // fewest the pads allow to a few tiles, widths that do and do not divide by 4.
    for (cin, cout) in [(5, 7), (12, 16), (16, 12), (128, 64)] {
        for (kernel, dilation) in [(1, 1), (5, 1), (3, 2), (3, 3), (3, 4)] {
            let shape = ConvShape { cin, cout, kernel, dilation };
            let pad = shape.history_rows();
            let scale = 1.0 / ((kernel * cin) as f32).sqrt();
            let w = weight(&c, &rng.vec(shape.weight_len(), scale), &[cout, kernel * cin]);
            let b = weight(&c, &rng.vec(cout, 0.5), &[cout]);
            for rows in [pad - pad / 2 + 1, 9, 70, 286] {
                let x = rng.vec(rows * cin, 1.0);
                let mut cy = vec![0.0; rows * cout];
                c.reflect_conv(&mut cs, &x, rows, shape, &w.cpu, &b.cpu, &mut cy).unwrap();
                let gx = upload(&mut gs, &x);
                let mut gy = poisoned(&mut gs, rows * cout);
                g.reflect_conv(&mut gs, &gx, rows, shape, &w.gpu, &b.gpu, &mut gy).unwrap();
                worst.check(&format!("reflect conv {cin}->{cout} k {kernel} d {dilation} rows {rows}"), &download(&mut gs, &gy, rows * cout), &cy);
            }
            // Pads as long as the sequence: refused by both.
            if pad > 0 {
                let rows = pad - pad / 2;
                let x = rng.vec(rows * cin, 1.0);
                let mut cy = vec![0.0; rows * cout];
                assert!(c.reflect_conv(&mut cs, &x, rows, shape, &w.cpu, &b.cpu, &mut cy).is_err());
                let gx = upload(&mut gs, &x);
                let mut gy = poisoned(&mut gs, rows * cout);
                assert!(g.reflect_conv(&mut gs, &gx, rows, shape, &w.gpu, &b.gpu, &mut gy).is_err());
            }
        }
    }
    worst.report("reflect_conv");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn column_ops_match_cpu() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0xC01);
    let mut worst = Worst::default();
    for (rows, width) in [(1, 5), (7, 33), (286, 128), (1000, 1536)] {
        let x = rng.vec(rows * width, 2.0);
        let gx = upload(&mut gs, &x);
        // Mean.
        let mut cm = vec![0.0; width];
        c.column_mean(&mut cs, &x, rows, width, &mut cm).unwrap();
        let mut gm = poisoned(&mut gs, width);
        g.column_mean(&mut gs, &gx, rows, width, &mut gm).unwrap();
        worst.check(&format!("column_mean {rows}x{width}"), &download(&mut gs, &gm, width), &cm);
        // Statistics, uniform and weighted (softmax weights, as the pooling has).
        let mut cst = vec![0.0; 2 * width];
        c.column_stats(&mut cs, &x, rows, width, None, &mut cst).unwrap();
        let mut gst = poisoned(&mut gs, 2 * width);
        g.column_stats(&mut gs, &gx, rows, width, None, &mut gst).unwrap();
        worst.check(&format!("column_stats uniform {rows}x{width}"), &download(&mut gs, &gst, 2 * width), &cst);
        let mut cw = rng.vec(rows * width, 4.0);
        let mut gw = upload(&mut gs, &cw);
        c.column_softmax(&mut cs, &mut cw, rows, width).unwrap();
        g.column_softmax(&mut gs, &mut gw, rows, width).unwrap();
        worst.check(&format!("column_softmax {rows}x{width}"), &download(&mut gs, &gw, rows * width), &cw);
        c.column_stats(&mut cs, &x, rows, width, Some(&cw), &mut cst).unwrap();
        g.column_stats(&mut gs, &gx, rows, width, Some(&gw), &mut gst).unwrap();
        worst.check(&format!("column_stats weighted {rows}x{width}"), &download(&mut gs, &gst, 2 * width), &cst);
        // The SE gate: residual += gate[c] · x, bit for bit (one product and one sum each).
        let gate = rng.vec(width, 1.0);
        let mut cres = rng.vec(rows * width, 1.0);
        let mut gres = upload(&mut gs, &cres);
        let ggate = upload(&mut gs, &gate);
        c.gate_add(&mut cs, &mut cres, &x, rows, width, &gate).unwrap();
        g.gate_add(&mut gs, &mut gres, &gx, rows, width, &ggate).unwrap();
        assert_bits_eq(&format!("gate_add {rows}x{width}"), &download(&mut gs, &gres, rows * width), &cres);
    }
    worst.report("column ops");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn copy_columns_and_speaker_activations_match_cpu() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0xAC7);
    // A block of columns into the middle of a wider matrix, and one row broadcast.
    let (rows, src_w, dst_w) = (37, 10, 24);
    let src = rng.vec(rows * src_w, 1.0);
    let gsrc = upload(&mut gs, &src);
    let mut cdst = rng.vec(rows * dst_w, 1.0);
    let mut gdst = upload(&mut gs, &cdst);
    for (from, to, width) in [(ColumnSpan::of(src_w, 3), ColumnSpan::of(dst_w, 11), 6), (ColumnSpan::broadcast(2), ColumnSpan::of(dst_w, 0), 8)] {
        c.copy_columns(&mut cs, &src, from, &mut cdst, to, rows, width).unwrap();
        g.copy_columns(&mut gs, &gsrc, from, &mut gdst, to, rows, width).unwrap();
        assert_bits_eq(&format!("copy_columns {from:?} -> {to:?}"), &download(&mut gs, &gdst, rows * dst_w), &cdst);
    }
    // Out of range on either side: refused by both.
    let bad = [(ColumnSpan::of(src_w, 5), ColumnSpan::of(dst_w, 0), 6), (ColumnSpan::of(src_w, 0), ColumnSpan::of(dst_w, 20), 6), (ColumnSpan::of(src_w, 0), ColumnSpan::of(4, 0), 6)];
    for (from, to, width) in bad {
        assert!(c.copy_columns(&mut cs, &src, from, &mut cdst, to, rows, width).is_err(), "CPU {from:?} {to:?}");
        assert!(g.copy_columns(&mut gs, &gsrc, from, &mut gdst, to, rows, width).is_err(), "GPU {from:?} {to:?}");
    }
    // ReLU exactly; tanh and sigmoid within a few ulps (CUDA's tanhf / expf against libm, each
    // within about 2).
    let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
    let x: Vec<f32> = rng.vec(4096, 12.0);
    for f in [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::Elu] {
        let mut cx = x.clone();
        c.activation(&mut cs, &mut cx, x.len(), f).unwrap();
        let mut gx = upload(&mut gs, &x);
        g.activation(&mut gs, &mut gx, x.len(), f).unwrap();
        let got = download(&mut gs, &gx, x.len());
        if f == Activation::Relu {
            assert_bits_eq("relu", &got, &cx);
        } else {
            for (i, (&a, &b)) in got.iter().zip(&cx).enumerate() {
                assert!(a == b || (a.signum() == b.signum() && ulps(a, b) <= 8), "{f:?} at {} ({}): {a} vs {b}", i, x[i]);
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn log_mel_ops_match_cpu() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0x3E1);
    // Reflect padding: a copy, bit for bit; pads as long as the signal refused.
    for (rows, width, left, right) in [(385, 1, 384, 384), (10, 3, 4, 5), (2, 2, 1, 1)] {
        let x = rng.vec(rows * width, 1.0);
        let n = (rows + left + right) * width;
        let mut cy = vec![0.0; n];
        c.reflect_pad(&mut cs, &x, rows, width, left, right, &mut cy).unwrap();
        let gx = upload(&mut gs, &x);
        let mut gy = poisoned(&mut gs, n);
        g.reflect_pad(&mut gs, &gx, rows, width, left, right, &mut gy).unwrap();
        assert_bits_eq(&format!("reflect_pad {rows}x{width} +{left}/{right}"), &download(&mut gs, &gy, n), &cy);
        assert!(g.reflect_pad(&mut gs, &gx, rows, width, rows, 0, &mut gy).is_err(), "left pad = rows");
        assert!(c.reflect_pad(&mut cs, &x, rows, width, rows, 0, &mut cy).is_err(), "left pad = rows (CPU)");
    }
    // Magnitudes: correctly rounded steps on both sides, so the same bits.
    let (rows, bins) = (37, 513);
    let spec = rng.vec(rows * 2 * bins, 3.0);
    let mut cm = vec![0.0; rows * bins];
    c.complex_magnitude(&mut cs, &spec, rows, bins, 1e-9, &mut cm).unwrap();
    let gspec = upload(&mut gs, &spec);
    let mut gm = poisoned(&mut gs, rows * bins);
    g.complex_magnitude(&mut gs, &gspec, rows, bins, 1e-9, &mut gm).unwrap();
    assert_bits_eq("complex_magnitude", &download(&mut gs, &gm, rows * bins), &cm);
    // The clamped log: logf against libm's ln, within 2 ulp; the floor exact.
    let mut x: Vec<f32> = rng.vec(4096, 1.0).iter().map(|v| v.abs() * 100.0).collect();
    x[0] = 0.0;
    x[1] = 1e-7;
    let mut cx = x.clone();
    c.log_clamped(&mut cs, &mut cx, x.len(), 1e-5).unwrap();
    let mut gx = upload(&mut gs, &x);
    g.log_clamped(&mut gs, &mut gx, x.len(), 1e-5).unwrap();
    let got = download(&mut gs, &gx, x.len());
    for (i, (a, b)) in got.iter().zip(&cx).enumerate() {
        assert!((a - b).abs() <= 2.0 * f32::EPSILON * b.abs().max(1.0), "log at {} ({}): {a} vs {b}", i, x[i]);
    }
    assert_eq!(got[0], (1e-5f32).ln(), "the floor");
    assert!(g.log_clamped(&mut gs, &mut gx, x.len(), 0.0).is_err(), "a zero floor");
}

/// The codec encoder's strided convolutions (`MimiConv1d`): the released shapes at small
/// widths (the first conv from one channel, stride-4..8 downsampling convs, the replicate-padded
/// stride-2 downsample without bias, a dilated residual conv), rows that do and do not divide
/// by the stride, against the CPU.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn padded_conv_matches_cpu() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0x3131);
    let mut worst = Worst::default();
    for (cin, cout, kernel, dilation, stride, pad, with_bias) in [
        (1, 16, 7, 1, 1, EdgePad::Zeros, true),
        (16, 32, 8, 1, 4, EdgePad::Zeros, true),
        (32, 64, 10, 1, 5, EdgePad::Zeros, true),
        (64, 96, 16, 1, 8, EdgePad::Zeros, true),
        (96, 96, 4, 1, 2, EdgePad::Replicate, false),
        (24, 12, 3, 2, 1, EdgePad::Zeros, true),
        (20, 20, 1, 1, 1, EdgePad::Replicate, true),
        (6, 5, 3, 3, 2, EdgePad::Replicate, true),
    ] {
        let shape = ConvShape { cin, cout, kernel, dilation };
        let scale = 1.0 / ((kernel * cin) as f32).sqrt();
        let w = weight(&c, &rng.vec(shape.weight_len(), scale), &[cout, kernel * cin]);
        let b = weight(&c, &rng.vec(cout, 0.5), &[cout]);
        let bias = with_bias.then_some(&b);
        for rows in [1, stride, 7 * stride + 1, 333] {
            let x = rng.vec(rows * cin, 1.0);
            let out = rows.div_ceil(stride);
            let mut cy = vec![0.0; out * cout];
            let n = c.padded_conv(&mut cs, &x, rows, shape, stride, pad, &w.cpu, bias.map(|b| &b.cpu), &mut cy).unwrap();
            assert_eq!(n, out);
            let gx = upload(&mut gs, &x);
            let mut gy = poisoned(&mut gs, out * cout);
            let n = g.padded_conv(&mut gs, &gx, rows, shape, stride, pad, &w.gpu, bias.map(|b| &b.gpu), &mut gy).unwrap();
            assert_eq!(n, out);
            let what = format!("padded conv {cin}->{cout} k {kernel} d {dilation} s {stride} {pad:?} rows {rows}");
            worst.check(&what, &download(&mut gs, &gy, out * cout), &cy);
        }
    }
    // Not a causal conv (the kernel spans fewer rows than the stride), and no rows: refused.
    let shape = ConvShape { cin: 4, cout: 4, kernel: 2, dilation: 1 };
    let w = weight(&c, &rng.vec(shape.weight_len(), 0.5), &[4, 8]);
    let gx = upload(&mut gs, &[0.0; 16]);
    let mut gy = poisoned(&mut gs, 16);
    assert!(g.padded_conv(&mut gs, &gx, 4, shape, 3, EdgePad::Zeros, &w.gpu, None, &mut gy).is_err());
    assert!(g.padded_conv(&mut gs, &gx, 0, shape, 1, EdgePad::Zeros, &w.gpu, None, &mut gy).is_err());
    worst.report("padded_conv");
}

/// The quantizer's nearest-row search: exact ids and close margins against the CPU, ties (a
/// codebook row duplicated 256 entries later: across the GPU's threads and merge tree) to the
/// lower index with a margin of exactly 0, more rows than one block of the distance kernel.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --ignored"]
fn nearest_code_matches_cpu() {
    let c = cpu();
    let g = gpu();
    let (mut cs, mut gs) = streams(&c);
    let mut rng = Rng(0x7EA5);
    for (entries, dim, rows) in [(100, 8, 5), (2048, 256, 300)] {
        let mut embed = rng.vec(entries * dim, 1.0);
        if entries > 300 {
            // Row 7 again at 263: a tie the lower index must win.
            let dup = embed[7 * dim..8 * dim].to_vec();
            embed[263 * dim..264 * dim].copy_from_slice(&dup);
        }
        let aug = qwentts::backend::cpu_audio::augmented_codebook(&embed, dim);
        let cb = weight(&c, &aug, &[entries, dim + 2]);
        let mut x = rng.vec(rows * dim, 1.0);
        // The first query is row 7 itself, slightly moved: both copies are equally near.
        let near: Vec<f32> = embed[7 * dim..8 * dim].iter().map(|v| v + 1e-3).collect();
        x[..dim].copy_from_slice(&near);
        let (mut cid, mut cm) = (vec![0u32; rows], vec![0f32; rows]);
        c.nearest_code(&mut cs, &x, rows, dim, &cb.cpu, &mut cid, &mut cm).unwrap();
        let gx = upload(&mut gs, &x);
        let (mut gid, mut gm) = (vec![0u32; rows], vec![0f32; rows]);
        g.nearest_code(&mut gs, &gx, rows, dim, &cb.gpu, &mut gid, &mut gm).unwrap();
        assert_eq!(gid, cid, "{entries} entries: ids");
        for (t, (a, b)) in gm.iter().zip(&cm).enumerate() {
            assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{entries} entries, row {t}: margin {a} vs {b}");
        }
        assert_eq!(gid[0], 7, "the nearest is row 7 (or its later copy, which must lose)");
        if entries > 300 {
            assert_eq!(gm[0], 0.0, "a tie has no margin");
        }
    }
    // A codebook that is not whole rows of dim + 2: refused.
    let cb = weight(&c, &rng.vec(11, 1.0), &[11]);
    let gx = upload(&mut gs, &[0.0; 8]);
    let (mut id, mut m) = ([0u32; 1], [0f32; 1]);
    assert!(g.nearest_code(&mut gs, &gx, 1, 8, &cb.gpu, &mut id, &mut m).is_err());
}

