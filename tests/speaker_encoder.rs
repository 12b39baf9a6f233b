//! Speaker-encoder parity with the official implementation on the tiny Base checkpoint.
//!
//! Goldens: `tests/fixtures/golden/speaker_base.safetensors` (`mel` [286, 128] = the official
//! `mel_spectrogram` of `audio/ref_24k.wav`, `spk_embedding` [32] = `extract_speaker_embedding`),
//! computed in f32 on CPU from the same BF16-stored weights (see the fixtures' MANIFEST.md).

use std::path::{Path, PathBuf};

use qwentts::audio::{MelConfig, MelFrontEnd, ReferenceAudio, ReferenceLimits};
use qwentts::model::Checkpoint;
use qwentts::backend::cpu::CpuBackend;
use qwentts::model::log_mel::LogMel;
use qwentts::model::speaker_encoder::SpeakerEncoder;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Golden {
    mel: Vec<f32>,
    mel_frames: usize,
    spk_embedding: Vec<f32>,
}

/// Reads an F32 tensor with the `safetensors` crate (the golden file also holds I64 tensors,
/// which the library's weight reader rightly refuses).
fn f32_tensor(bytes: &[u8], name: &str) -> (Vec<f32>, Vec<usize>) {
    let st = safetensors::SafeTensors::deserialize(bytes).expect("golden safetensors parses");
    let t = st.tensor(name).unwrap_or_else(|e| panic!("golden tensor {name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name} dtype");
    let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (data, t.shape().to_vec())
}

fn golden() -> Golden {
    let bytes = std::fs::read(fixtures().join("golden/speaker_base.safetensors")).expect("golden file");
    let (mel, shape) = f32_tensor(&bytes, "mel");
    assert_eq!(shape.len(), 2);
    assert_eq!(shape[1], 128);
    let (spk_embedding, _) = f32_tensor(&bytes, "spk_embedding");
    Golden { mel, mel_frames: shape[0], spk_embedding }
}

/// (max |a − b|, max |a − b| / max |b|).
fn errors(ours: &[f32], want: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), want.len(), "length differs");
    let max_abs = ours.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
    (max_abs, max_abs / scale)
}

fn reference_24k() -> Vec<f32> {
    ReferenceAudio::from_file(&fixtures().join("audio/ref_24k.wav"), &ReferenceLimits::default())
        .expect("ref_24k.wav loads")
        .into_samples()
}

fn encoder() -> SpeakerEncoder {
    let ckpt = Checkpoint::open(&fixtures().join("tiny-base")).expect("tiny-base opens");
    SpeakerEncoder::load(&ckpt.weights, &ckpt.config.speaker_encoder_config).expect("speaker encoder loads")
}

#[test]
fn mel_matches_official_mel_spectrogram() {
    let g = golden();
    let samples = reference_24k();
    assert_eq!(samples.len(), 73_319);
    let fe = MelFrontEnd::new(MelConfig::default()).unwrap();
    let mel = fe.compute(&samples).unwrap();
    assert_eq!((mel.frames, mel.n_mels), (g.mel_frames, 128));
    let (abs, rel) = errors(&mel.data, &g.mel);
    eprintln!("mel: max abs error {abs:.3e}, relative to max |golden| {rel:.3e}");
    assert!(rel <= 1e-4, "mel differs: max abs {abs:e}, relative {rel:e}");
}

/// The front end as a convolution over the audio op set (what a GPU runs), here on the CPU
/// backend: against the FFT front end and the official mel.
#[test]
fn log_mel_as_a_convolution_matches_the_fft_front_end() {
    let g = golden();
    let samples = reference_24k();
    let fft = MelFrontEnd::new(MelConfig::default()).unwrap();
    let conv = LogMel::new(CpuBackend::new(2), &fft).unwrap();
    let ours = conv.compute(&samples).unwrap();
    let want = fft.compute(&samples).unwrap();
    assert_eq!((ours.frames, ours.n_mels), (want.frames, want.n_mels));
    // A bin's DFT summed as one product over 1024 samples rounds differently from an FFT; in
    // the log domain that shows most on the quietest bins (a relative error of their energy).
    let (abs, rel) = errors(&ours.data, &want.data);
    eprintln!("log-mel as a convolution vs FFT: max abs error {abs:.3e}, relative {rel:.3e}");
    assert!(rel <= 1e-4, "log-mel as a convolution differs from the FFT one: max abs {abs:e}, relative {rel:e}");
    let (abs, rel) = errors(&ours.data, &g.mel);
    eprintln!("log-mel as a convolution vs official: max abs error {abs:.3e}, relative {rel:.3e}");
    assert!(rel <= 1e-4, "log-mel as a convolution vs official: max abs {abs:e}, relative {rel:e}");
    // What counts: the x-vector it leads to.
    let xvec = encoder().embed(&ours.data, ours.frames).unwrap();
    let (abs, rel) = errors(&xvec, &g.spk_embedding);
    eprintln!("x-vector from the convolution's log-mel: max abs error {abs:.3e}, relative {rel:.3e}");
    assert!(rel <= 1e-4, "x-vector differs: max abs {abs:e}, relative {rel:e}");
    // The shortest input the padding allows, and one sample fewer.
    assert_eq!(conv.compute(&samples[..385]).unwrap().frames, fft.compute(&samples[..385]).unwrap().frames);
    assert!(conv.compute(&samples[..384]).is_err());
    let mut bad = samples[..1000].to_vec();
    bad[10] = f32::NAN;
    assert!(conv.compute(&bad).is_err());
}

#[test]
fn x_vector_from_golden_mel_matches() {
    let g = golden();
    let enc = encoder();
    assert_eq!(enc.enc_dim(), g.spk_embedding.len());
    let xvec = enc.embed(&g.mel, g.mel_frames).unwrap();
    let (abs, rel) = errors(&xvec, &g.spk_embedding);
    eprintln!("x-vector (golden mel): max abs error {abs:.3e}, relative {rel:.3e}");
    assert!(rel <= 1e-4, "x-vector differs: max abs {abs:e}, relative {rel:e}");
}

#[test]
fn x_vector_from_our_mel_matches() {
    let g = golden();
    let enc = encoder();
    let mel = MelFrontEnd::new(MelConfig::default()).unwrap().compute(&reference_24k()).unwrap();
    let xvec = enc.embed(&mel.data, mel.frames).unwrap();
    let (abs, rel) = errors(&xvec, &g.spk_embedding);
    eprintln!("x-vector (our mel): max abs error {abs:.3e}, relative {rel:.3e}");
    assert!(rel <= 1e-4, "x-vector differs: max abs {abs:e}, relative {rel:e}");
}

#[test]
fn embedding_is_deterministic_and_thread_safe() {
    let g = golden();
    let enc = std::sync::Arc::new(encoder());
    let first = enc.embed(&g.mel, g.mel_frames).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (enc, mel, frames) = (enc.clone(), g.mel.clone(), g.mel_frames);
            std::thread::spawn(move || enc.embed(&mel, frames).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), first, "same input must give bit-identical x-vectors");
    }
}

#[test]
fn bad_mel_input_is_rejected_with_a_message() {
    let enc = encoder();
    assert_eq!(enc.min_frames(), 5, "dilation 4 × (kernel 3 − 1) / 2 = 4 frames of padding");
    let err = enc.embed(&[0.0; 128 * 4], 4).unwrap_err();
    assert!(err.message().contains("too few"), "{}", err.message());
    assert_eq!(err.kind(), qwentts::ErrorKind::InvalidArgument);
    let err = enc.embed(&[0.0; 100], 5).unwrap_err();
    assert!(err.message().contains("expected frames 5 × mel_dim 128"), "{}", err.message());
    let mut mel = vec![0.0f32; 128 * 10];
    mel[3 * 128 + 7] = f32::NAN;
    let err = enc.embed(&mel, 10).unwrap_err();
    assert!(err.message().contains("frame 3, bin 7"), "{}", err.message());
    // Five frames is enough.
    assert_eq!(enc.embed(&vec![-5.0; 128 * 5], 5).unwrap().len(), enc.enc_dim());
}

#[test]
fn missing_tensor_is_named() {
    // The CustomVoice checkpoint has no speaker encoder: loading one from it names the tensor.
    let ckpt = Checkpoint::open(&fixtures().join("tiny-customvoice")).expect("tiny-customvoice opens");
    let err = SpeakerEncoder::load(&ckpt.weights, &ckpt.config.speaker_encoder_config).unwrap_err();
    assert_eq!(err.kind(), qwentts::ErrorKind::MissingTensor);
    assert!(err.message().contains("speaker_encoder.blocks.0.conv.weight"), "{}", err.message());
}
