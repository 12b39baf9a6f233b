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

/// The whole GPU encoder's codes against the CPU encoder's: returns the flips as
/// (frame, codebook, GPU code, CPU code, CPU margin).
fn code_flips(dir: &Path, wav: &[f32]) -> (usize, Vec<(usize, usize, u32, u32, f32)>) {
    let ckpt = Checkpoint::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let net = CodecEncoderNet::load(CudaBackend::new(0).unwrap(), &ckpt.speech_config, &ckpt.speech_weights)
        .expect("GPU encoder");
    let before = cpu_audio_ops_run();
    let (codes, _) = net.encode(wav).expect("GPU encode");
    assert_eq!(cpu_audio_ops_run(), before, "the GPU encoder ran an audio op on the CPU");
    let (want, trace) = CodecEncoder::from_checkpoint(&ckpt).unwrap().encode_traced(wav).unwrap();
    assert_eq!(codes.len(), want.len(), "frames");
    let nq = net.num_codebooks();
    let flips: Vec<_> = codes
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (&a, &b))| (i / nq, i % nq, a, b, trace.margins[i]))
        .collect();
    for f in &flips {
        eprintln!("  flip: frame {} codebook {}: GPU {} CPU {} (CPU margin {:.3e})", f.0, f.1, f.2, f.3, f.4);
    }
    assert_eq!(net.encode(wav).unwrap().0, codes, "a second GPU encode differs");
    (codes.len(), flips)
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn tiny_gpu_encoder_gives_the_official_codes() {
    let wav = ReferenceAudio::from_file(&fixtures_dir().join("audio/ref_24k.wav"), &ReferenceLimits::default())
        .expect("ref_24k.wav")
        .into_samples();
    let (n, flips) = code_flips(&checkpoint_dir("tiny-base"), &wav);
    eprintln!("tiny GPU encoder: {} of {n} codes differ from the CPU's", flips.len());
    assert!(flips.is_empty(), "{} of {n} codes differ", flips.len());
    let golden = common::Golden::open("speaker_base").u32("ref_codes");
    let ckpt = Checkpoint::open(&checkpoint_dir("tiny-base")).unwrap();
    let net = CodecEncoderNet::load(CudaBackend::new(0).unwrap(), &ckpt.speech_config, &ckpt.speech_weights).unwrap();
    assert_eq!(net.encode(&wav).unwrap().0, golden.data, "the official reference codes");
}

#[test]
#[ignore = "needs a CUDA GPU and QT_FULL_MODELS: tools/device/run.sh runs it with --include-ignored"]
fn full_size_gpu_encoder_codes_match_cpu_on_ten_seconds() {
    let dirs = std::env::var("QT_FULL_MODELS").expect("QT_FULL_MODELS: full-size checkpoint directories, ':'-separated");
    let dir = PathBuf::from(dirs.split(':').next().expect("one directory"));
    let (n, flips) = code_flips(&dir, &chirp());
    eprintln!("full-size GPU encoder, 10 s: {} of {n} codes differ from the CPU's", flips.len());
    // A flip is acceptable only where the CPU's own decision was a near-tie.
    for f in &flips {
        assert!(f.4 < 1e-3, "frame {} codebook {}: GPU {} vs CPU {} with a CPU margin of {:.3e}", f.0, f.1, f.2, f.3, f.4);
    }
    assert!(flips.len() * 100 <= n, "{} of {n} codes differ", flips.len());
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
