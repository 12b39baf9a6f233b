//! The speaker encoder on the GPU against the CPU backend (the oracle) and the official
//! x-vector: the tiny Base fixture (golden mel and ours) and a full-size random checkpoint
//! (`QT_FULL_MODELS`) on a 10-second reference. Issue 10's bound: x-vector relative L2
//! ≤ 1e-4. Feature `cuda`; each test needs a GPU, so each is `#[ignore]`d here and run on the
//! device machine by tools/device/run.sh with `--include-ignored`.
#![cfg(feature = "cuda")]

mod common;

use std::path::PathBuf;

use common::checkpoint_dir;
use qwentts::audio::{MelConfig, MelFrontEnd, ReferenceAudio, ReferenceLimits};
use qwentts::backend::cpu_audio::cpu_audio_ops_run;
use qwentts::backend::cuda::CudaBackend;
use qwentts::model::Checkpoint;
use qwentts::model::log_mel::LogMel;
use qwentts::model::speaker_encoder::SpeakerEncoder;
use qwentts::{Device, LoadOptions, Model};

/// ‖a − b‖ / ‖b‖ (NaN when either holds a non-finite value, which fails every bound).
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    common::diff(a, b).rel
}

/// The CPU and GPU encoders of one checkpoint.
fn encoders(dir: &std::path::Path) -> (SpeakerEncoder, SpeakerEncoder<CudaBackend>) {
    let ckpt = Checkpoint::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let cfg = &ckpt.config.speaker_encoder_config;
    let cpu = SpeakerEncoder::load(&ckpt.weights, cfg).expect("CPU speaker encoder");
    let gpu = SpeakerEncoder::load_on(CudaBackend::new(0).expect("CUDA device 0"), &ckpt.weights, cfg)
        .expect("GPU speaker encoder");
    (cpu, gpu)
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn tiny_fixture_x_vector_matches_cpu_and_official() {
    let (cpu, gpu) = encoders(&checkpoint_dir("tiny-base"));
    let golden = common::Golden::open("speaker_base");
    let mel = golden.f32("mel");
    let frames = mel.shape[0];
    let want = golden.f32("spk_embedding").data;

    let before = cpu_audio_ops_run();
    let on_gpu = gpu.embed(&mel.data, frames).expect("GPU embed");
    assert_eq!(cpu_audio_ops_run(), before, "the GPU encoder ran an audio op on the CPU");
    let on_cpu = cpu.embed(&mel.data, frames).expect("CPU embed");
    let vs_cpu = rel_l2(&on_gpu, &on_cpu);
    let vs_official = rel_l2(&on_gpu, &want);
    eprintln!("tiny x-vector: GPU vs CPU {vs_cpu:.2e}, GPU vs official {vs_official:.2e}");
    assert!(vs_cpu <= 1e-4, "GPU vs CPU x-vector: relative L2 {vs_cpu:.2e}");
    assert!(vs_official <= 1e-4, "GPU vs official x-vector: relative L2 {vs_official:.2e}");

    // Deterministic: the same input gives the same bits.
    assert_eq!(gpu.embed(&mel.data, frames).unwrap(), on_gpu, "a second GPU run differs");
    // Bad input is an error, not a fault.
    assert!(gpu.embed(&mel.data[..mel.data.len() - 1], frames).is_err());
    assert!(gpu.embed(&mel.data[..4 * 128], 4).is_err(), "4 frames are fewer than the reflect pads need");
}

#[test]
#[ignore = "needs a CUDA GPU and QT_FULL_MODELS: tools/device/run.sh runs it with --include-ignored"]
fn full_size_random_x_vector_matches_cpu_on_ten_seconds() {
    let dirs = std::env::var("QT_FULL_MODELS").expect("QT_FULL_MODELS: full-size checkpoint directories, ':'-separated");
    let dir = PathBuf::from(dirs.split(':').next().expect("one directory"));
    let (cpu, gpu) = encoders(&dir);
    // 10 s of a 0.3-amplitude chirp with a little noise-like ripple, as a cloned reference.
    let rate = 24_000.0f32;
    let samples: Vec<f32> = (0..240_000)
        .map(|i| {
            let t = i as f32 / rate;
            0.3 * (2.0 * std::f32::consts::PI * (120.0 + 400.0 * t) * t).sin() + 0.02 * ((i * 7919 % 101) as f32 / 50.0 - 1.0)
        })
        .collect();
    let audio = ReferenceAudio::from_pcm(&samples, 1, 24_000, &ReferenceLimits::default()).expect("reference");
    let mel = MelFrontEnd::new(MelConfig::default()).unwrap().compute(audio.samples()).unwrap();
    let on_gpu = gpu.embed(&mel.data, mel.frames).expect("GPU embed");
    let on_cpu = cpu.embed(&mel.data, mel.frames).expect("CPU embed");
    let d = rel_l2(&on_gpu, &on_cpu);
    eprintln!("full-size x-vector, {} mel frames: GPU vs CPU {d:.2e}", mel.frames);
    assert!(d <= 1e-4, "GPU vs CPU x-vector: relative L2 {d:.2e}");
}

/// The whole GPU path of a clone's x-vector: the reference's log-mel as a convolution on the
/// GPU (no FFT there), then the encoder, against the official mel and x-vector.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn gpu_log_mel_and_x_vector_match_the_official() {
    let (_, gpu) = encoders(&checkpoint_dir("tiny-base"));
    let golden = common::Golden::open("speaker_base");
    let want_mel = golden.f32("mel");
    let want = golden.f32("spk_embedding").data;
    let wav = common::fixtures_dir().join("audio/ref_24k.wav");
    let samples = ReferenceAudio::from_file(&wav, &ReferenceLimits::default()).expect("ref_24k.wav").into_samples();
    let fft = MelFrontEnd::new(MelConfig::default()).unwrap();
    let conv = LogMel::new(CudaBackend::new(0).expect("CUDA device 0"), &fft).expect("GPU log-mel");
    let before = cpu_audio_ops_run();
    let mel = conv.compute(&samples).expect("GPU log-mel");
    assert_eq!(cpu_audio_ops_run(), before, "the GPU log-mel ran an audio op on the CPU");
    assert_eq!((mel.frames, mel.n_mels), (want_mel.shape[0], want_mel.shape[1]));
    let max = want_mel.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = mel.data.iter().zip(&want_mel.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("GPU log-mel vs official: max abs {worst:.3e}, relative to max |mel| {:.3e}", worst / max);
    assert!(worst / max <= 1e-4, "GPU log-mel vs official: max abs {worst:e}");
    let cpu_mel = fft.compute(&samples).unwrap();
    let vs_fft = mel.data.iter().zip(&cpu_mel.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / max;
    eprintln!("GPU log-mel vs the CPU FFT front end: relative to max |mel| {vs_fft:.3e}");
    assert!(vs_fft <= 1e-4);
    let xvec = gpu.embed(&mel.data, mel.frames).expect("GPU embed");
    let d = rel_l2(&xvec, &want);
    eprintln!("x-vector, GPU log-mel + GPU encoder vs official: {d:.2e}");
    assert!(d <= 1e-4, "x-vector: relative L2 {d:.2e}");
}

/// A CUDA model clones on its GPU (the default; `QT_GPU_CLONE=0` would keep it on the CPU):
/// no audio op on the CPU; the x-vector within 1e-4 of a CPU model's and, in-context, the
/// reference codes equal to the CPU model's.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn a_cuda_model_clones_on_its_gpu() {
    assert_ne!(std::env::var("QT_GPU_CLONE").as_deref(), Ok("0"), "run without QT_GPU_CLONE=0");
    let gpu = Model::load(checkpoint_dir("tiny-base"), &LoadOptions { device: Device::Cuda(0), ..Default::default() })
        .expect("tiny-base on CUDA");
    // "cuda:0 (device name)".
    assert!(gpu.cloning_device().is_some_and(|d| d.starts_with("cuda:0")), "{:?}", gpu.cloning_device());
    let cpu = Model::load(checkpoint_dir("tiny-base"), &LoadOptions::default()).unwrap();
    assert!(cpu.cloning_device().is_some_and(|d| d.starts_with("cpu")), "{:?}", cpu.cloning_device());
    let wav = common::fixtures_dir().join("audio/ref_24k.wav");
    let text = std::fs::read_to_string(common::fixtures_dir().join("audio/ref_24k.txt")).expect("transcript");
    let before = cpu_audio_ops_run();
    let on_gpu = gpu.clone_voice_from_file(&wav, Some(text.trim())).expect("in-context clone on the GPU");
    assert_eq!(cpu_audio_ops_run(), before, "a cloning op ran on the CPU");
    let on_cpu = cpu.clone_voice_from_file(&wav, Some(text.trim())).unwrap();
    let d = rel_l2(on_gpu.embedding().unwrap(), on_cpu.embedding().unwrap());
    eprintln!("cloned x-vector, CUDA model vs CPU model: {d:.2e}");
    assert!(d <= 1e-4, "cloned x-vector: relative L2 {d:.2e}");
    let (g, c) = (on_gpu.reference().unwrap(), on_cpu.reference().unwrap());
    assert_eq!(g.codes, c.codes, "reference codes, CUDA model vs CPU model");
}
