//! The codec encoder on the GPU against the CPU encoder (the oracle): its conv stack
//! (`EncoderConvStack`), transformer (`EncoderTransformer`) and the whole encoder's codes
//! (`CodecEncoderNet`), on the tiny Base fixture's reference recording (codes: the official
//! ones, every one) and on a full-size random checkpoint (`QT_FULL_MODELS`) over 10 s (codes:
//! the CPU's, a flip allowed only at a near-tie, each reported with its margin). Feature `cuda`; each test needs a GPU, so
//! each is `#[ignore]`d here and run on the device machine by tools/device/run.sh with
//! `--include-ignored`.
#![cfg(feature = "cuda")]

mod common;

use std::path::{Path, PathBuf};

use common::{assert_close, checkpoint_dir, fixtures_dir};
use qwentts::audio::{ReferenceAudio, ReferenceLimits};
use qwentts::backend::cpu_audio::cpu_audio_ops_run;
use qwentts::backend::cuda::CudaBackend;
use qwentts::model::Checkpoint;
use qwentts::model::codec::encoder::CodecEncoder;
use qwentts::model::codec::encoder_net::{CodecEncoderNet, EncoderConvStack, EncoderTransformer};

/// The GPU conv stack against the CPU encoder's, on `wav`.
fn compare(dir: &Path, wav: &[f32], tol: f64) {
    let ckpt = Checkpoint::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let gpu = EncoderConvStack::load(CudaBackend::new(0).expect("CUDA device 0"), &ckpt.speech_config, &ckpt.speech_weights)
        .expect("GPU conv stack");
    let before = cpu_audio_ops_run();
    let (out, rows) = gpu.forward(wav).expect("GPU conv stack");
    assert_eq!(cpu_audio_ops_run(), before, "the GPU conv stack ran an audio op on the CPU");
    let (_, trace) = CodecEncoder::from_checkpoint(&ckpt).unwrap().encode_traced(wav).unwrap();
    assert_eq!(rows, trace.conv_frames);
    let d = assert_close(&format!("{}: GPU conv stack vs CPU", dir.display()), &out, &trace.conv_out, tol);
    eprintln!("{}: {} samples, GPU conv stack vs CPU encoder: {d}", dir.display(), wav.len());
    // Deterministic.
    assert_eq!(gpu.forward(wav).unwrap().0, out, "a second GPU run differs");

    // The transformer, from the CPU's conv output.
    let transformer = EncoderTransformer::load(CudaBackend::new(0).unwrap(), &ckpt.speech_config, &ckpt.speech_weights)
        .expect("GPU transformer");
    let before = cpu_audio_ops_run();
    let ours = transformer.forward(&trace.conv_out, rows).expect("GPU transformer");
    assert_eq!(cpu_audio_ops_run(), before, "the GPU transformer ran an audio op on the CPU");
    let d = assert_close(&format!("{}: GPU transformer vs CPU", dir.display()), &ours, &trace.transformer_out, tol);
    eprintln!("{}: {rows} rows, GPU transformer vs CPU encoder: {d}", dir.display());
}

/// A code the GPU chose differently: (frame, codebook, GPU code, CPU code, CPU margin, the
/// frame's latent norm).
type Flip = (usize, usize, u32, u32, f32, f32);

/// The whole GPU encoder's codes against the CPU encoder's: the code count and the flips.
fn code_flips(dir: &Path, wav: &[f32]) -> (usize, usize, Vec<Flip>) {
    let ckpt = Checkpoint::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let net = CodecEncoderNet::load(CudaBackend::new(0).unwrap(), &ckpt.speech_config, &ckpt.speech_weights)
        .expect("GPU encoder");
    let before = cpu_audio_ops_run();
    let (codes, _) = net.encode_with_margins(wav).expect("GPU encode");
    assert_eq!(cpu_audio_ops_run(), before, "the GPU encoder ran an audio op on the CPU");
    let (want, trace) = CodecEncoder::from_checkpoint(&ckpt).unwrap().encode_traced(wav).unwrap();
    assert_eq!(codes.len(), want.len(), "frames");
    let nq = net.num_codebooks();
    let hidden = ckpt.speech_config.encoder_config.hidden_size;
    let norm = |t: usize| trace.latent[t * hidden..(t + 1) * hidden].iter().map(|v| v * v).sum::<f32>().sqrt();
    let flips: Vec<Flip> = codes
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (&a, &b))| (i / nq, i % nq, a, b, trace.margins[i], norm(i / nq)))
        .collect();
    for f in &flips {
        eprintln!("  flip: frame {} codebook {}: GPU {} CPU {} (CPU margin {:.3e}, latent norm {:.3})", f.0, f.1, f.2, f.3, f.4, f.5);
    }
    let (min_margin, at) = trace.margins.iter().copied().enumerate().fold((f32::INFINITY, 0), |m, (i, v)| if v < m.0 { (v, i) } else { m });
    eprintln!("  smallest CPU margin {min_margin:.3e} (frame {}, codebook {})", at / nq, at % nq);
    assert_eq!(net.encode_with_margins(wav).unwrap().0, codes, "a second GPU encode differs");
    let semantic = ckpt.speech_config.encoder_config.num_semantic_quantizers.min(nq);
    (codes.len(), semantic, flips)
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn tiny_gpu_encoder_gives_the_official_codes() {
    let wav = ReferenceAudio::from_file(&fixtures_dir().join("audio/ref_24k.wav"), &ReferenceLimits::default())
        .expect("ref_24k.wav")
        .into_samples();
    let (n, _, flips) = code_flips(&checkpoint_dir("tiny-base"), &wav);
    eprintln!("tiny GPU encoder: {} of {n} codes differ from the CPU's", flips.len());
    assert!(flips.is_empty(), "{} of {n} codes differ", flips.len());
    let golden = common::Golden::open("speaker_base").u32("ref_codes");
    let ckpt = Checkpoint::open(&checkpoint_dir("tiny-base")).unwrap();
    let net = CodecEncoderNet::load(CudaBackend::new(0).unwrap(), &ckpt.speech_config, &ckpt.speech_weights).unwrap();
    assert_eq!(net.encode_with_margins(&wav).unwrap().0, golden.data, "the official reference codes");
}

#[test]
#[ignore = "needs a CUDA GPU and QT_FULL_MODELS: tools/device/run.sh runs it with --include-ignored"]
fn full_size_gpu_encoder_codes_match_cpu_on_ten_seconds() {
    let dirs = std::env::var("QT_FULL_MODELS").expect("QT_FULL_MODELS: full-size checkpoint directories, ':'-separated");
    let dir = PathBuf::from(dirs.split(':').next().expect("one directory"));
    let (n, semantic, flips) = code_flips(&dir, &chirp());
    eprintln!("full-size GPU encoder, 10 s: {} of {n} codes differ from the CPU's", flips.len());
    // Residual quantization is a chain: once a frame's codebook q differs, its later codebooks
    // quantize another residual and may differ as consequences. Only the first flip of each
    // frame's semantic and acoustic chains is a decision the two backends made differently; it
    // must have been a near-tie for the CPU (a margin at the rounding level of the distances,
    // which scale with the latent), and such chains must be rare.
    let mut chains = 0;
    let mut seen = std::collections::HashSet::new();
    for f in &flips {
        let group = usize::from(f.1 >= semantic);
        if seen.insert((f.0, group)) {
            chains += 1;
            assert!(
                f.4 <= 1e-3 * (1.0 + f.5),
                "frame {} codebook {}: GPU {} vs CPU {}, but the CPU's margin {:.3e} was no near-tie (latent norm {:.3})",
                f.0, f.1, f.2, f.3, f.4, f.5
            );
        }
    }
    let frames = n / 16;
    eprintln!("  {chains} chains of {} (frames x 2 groups)", 2 * frames);
    assert!(chains * 100 <= 2 * frames, "{chains} diverging chains in {frames} frames");
}

/// 10 s of a 0.3-amplitude chirp.
fn chirp() -> Vec<f32> {
    (0..240_000)
        .map(|i| {
            let t = i as f32 / 24_000.0;
            0.3 * (2.0 * std::f32::consts::PI * (120.0 + 400.0 * t) * t).sin()
        })
        .collect()
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn tiny_conv_stack_and_transformer_match_cpu() {
    let wav = ReferenceAudio::from_file(&fixtures_dir().join("audio/ref_24k.wav"), &ReferenceLimits::default())
        .expect("ref_24k.wav")
        .into_samples();
    compare(&checkpoint_dir("tiny-base"), &wav, 1e-5);
    compare(&checkpoint_dir("tiny-base"), &wav[..100], 1e-5);
}

#[test]
#[ignore = "needs a CUDA GPU and QT_FULL_MODELS: tools/device/run.sh runs it with --include-ignored"]
fn full_size_conv_stack_and_transformer_match_cpu_on_ten_seconds() {
    let dirs = std::env::var("QT_FULL_MODELS").expect("QT_FULL_MODELS: full-size checkpoint directories, ':'-separated");
    let dir = PathBuf::from(dirs.split(':').next().expect("one directory"));
    compare(&dir, &chirp(), 1e-4);
}
