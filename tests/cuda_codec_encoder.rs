//! The codec encoder on the GPU against the CPU encoder (the oracle): so far its conv stack
//! (`EncoderConvStack`) and transformer (`EncoderTransformer`), on the tiny Base fixture's
//! reference recording and on a full-size random checkpoint (`QT_FULL_MODELS`) over 10 s. Feature `cuda`; each test needs a GPU, so
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
use qwentts::model::codec::encoder_net::{EncoderConvStack, EncoderTransformer};

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
    let wav: Vec<f32> = (0..240_000)
        .map(|i| {
            let t = i as f32 / 24_000.0;
            0.3 * (2.0 * std::f32::consts::PI * (120.0 + 400.0 * t) * t).sin()
        })
        .collect();
    compare(&dir, &wav, 1e-4);
}
