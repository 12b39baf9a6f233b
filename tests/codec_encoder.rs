//! Speech-tokenizer encoder (24 kHz waveform → codes) against the official qwen-tts 0.1.1 /
//! transformers 4.57.3 goldens of `tests/fixtures/golden/speaker_base.safetensors` (see
//! MANIFEST.md): `ref_codes` [39, 16] of `audio/ref_24k.wav` and three intermediates captured
//! with forward hooks in the same call, `enc_conv_out` [32, 77] (channels-first, 25 Hz),
//! `enc_transformer_out` [77, 32] and `enc_latent` [32, 39] (channels-first, 12.5 Hz).
//!
//! Float errors are reported as relative L2 (‖a−b‖/‖b‖) and max |a−b|; codes must be identical.
//! Quantizer decisions also report their margin (runner-up distance − chosen distance), so a
//! near-tie is visible before it ever flips.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{Golden, Tensor, assert_close, fixtures_dir};
use qwentts::ErrorKind;
use qwentts::model::Checkpoint;
use qwentts::backend::cpu::CpuBackend;
use qwentts::model::codec::encoder::CodecEncoder;
use qwentts::model::codec::encoder_net::{CodecEncoderNet, EncoderConvStack, EncoderTransformer};

/// Codebooks per frame and samples per frame of every Qwen3-TTS 12 Hz tokenizer.
const NQ: usize = 16;
const HOP: usize = 1920;
/// Relative L2 tolerance for the float intermediates.
const TOL: f64 = 1e-4;

fn tiny_dir() -> PathBuf {
    fixtures_dir().join("tiny-base")
}

fn tiny_encoder() -> CodecEncoder {
    let ckpt = Checkpoint::open(&tiny_dir()).expect("tiny-base opens");
    CodecEncoder::from_checkpoint(&ckpt).expect("tiny encoder loads")
}

/// `audio/ref_24k.wav` exactly as the reference loads it (`librosa.load(sr=None)` →
/// soundfile: int16 / 32768, no resampling at 24 kHz).
fn reference_wav() -> Vec<f32> {
    let path = fixtures_dir().join("audio/ref_24k.wav");
    let mut reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 24_000, 16), "fixture format");
    reader.samples::<i16>().map(|s| s.expect("sample") as f32 / 32768.0).collect()
}

/// `[channels, rows]` → `[rows, channels]`.
fn transpose(t: &Tensor<f32>) -> Vec<f32> {
    let (c, r) = (t.shape[0], t.shape[1]);
    let mut out = vec![0.0; c * r];
    for i in 0..c {
        for j in 0..r {
            out[j * c + i] = t.data[i * r + j];
        }
    }
    out
}

/// Lists every code that differs, with our margin at that decision.
fn code_mismatches(ours: &[u32], want: &[u32], margins: &[f32]) -> Vec<String> {
    ours.iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("frame {} codebook {}: ours {a}, reference {b} (margin {:.3e})", i / NQ, i % NQ, margins[i]))
        .collect()
}

/// The smallest margin and where it is.
fn min_margin(margins: &[f32]) -> (f32, usize) {
    margins.iter().copied().enumerate().fold((f32::INFINITY, 0), |(m, at), (i, v)| if v < m { (v, i) } else { (m, at) })
}

#[test]
fn encoder_matches_official_on_reference_wav() {
    let golden = Golden::open("speaker_base");
    let enc = tiny_encoder();
    let wav = reference_wav();
    assert_eq!(wav.len(), 73_319);

    let start = Instant::now();
    let (codes, trace) = enc.encode_traced(&wav).expect("encode");
    let elapsed = start.elapsed();
    eprintln!(
        "tiny encoder: {} samples ({:.2} s audio) in {:.1} ms on {} threads",
        wav.len(),
        wav.len() as f64 / 24_000.0,
        elapsed.as_secs_f64() * 1e3,
        enc.threads()
    );

    // 1. The three intermediates.
    let conv = golden.f32("enc_conv_out");
    let tr = golden.f32("enc_transformer_out");
    let lat = golden.f32("enc_latent");
    assert_eq!((trace.conv_frames, trace.latent_frames), (conv.shape[1], lat.shape[1]));
    let d = assert_close("enc_conv_out", &trace.conv_out, &transpose(&conv), TOL);
    eprintln!("enc_conv_out        {d}");
    let d = assert_close("enc_transformer_out", &trace.transformer_out, &tr.data, TOL);
    eprintln!("enc_transformer_out {d}");
    let d = assert_close("enc_latent", &trace.latent, &transpose(&lat), TOL);
    eprintln!("enc_latent          {d}");

    // 2. The codes, every one of them.
    let want = golden.u32("ref_codes");
    assert_eq!(want.shape, vec![wav.len().div_ceil(HOP), NQ]);
    assert_eq!(codes.len(), want.data.len(), "frames");
    let (m, at) = min_margin(&trace.margins);
    eprintln!("ref_codes: smallest quantizer margin {m:.3e} (frame {}, codebook {})", at / NQ, at % NQ);
    let bad = code_mismatches(&codes, &want.data, &trace.margins);
    assert!(bad.is_empty(), "{} of {} codes differ:\n{}", bad.len(), codes.len(), bad.join("\n"));
}

/// The conv stack written over the audio op set (what the GPU runs), on the CPU backend:
/// against the official `enc_conv_out` and the CPU encoder's blocked stack.
#[test]
fn the_op_set_conv_stack_matches_the_encoder() {
    let golden = Golden::open("speaker_base");
    let ckpt = Checkpoint::open(&tiny_dir()).expect("tiny-base opens");
    let stack = EncoderConvStack::load(CpuBackend::new(2), &ckpt.speech_config, &ckpt.speech_weights).expect("conv stack");
    let wav = reference_wav();
    let (out, rows) = stack.forward(&wav).expect("forward");
    let (_, trace) = tiny_encoder().encode_traced(&wav).expect("encode");
    assert_eq!(rows, trace.conv_frames);
    let d = assert_close("op-set conv stack vs the CPU encoder's", &out, &trace.conv_out, 1e-5);
    eprintln!("op-set conv stack vs CPU encoder: {d}");
    let d = assert_close("op-set conv stack vs official", &out, &transpose(&golden.f32("enc_conv_out")), TOL);
    eprintln!("op-set conv stack vs official:    {d}");
    // A short input (fewer samples than one stride of the stack) still gives its rows.
    let (short, n) = stack.forward(&wav[..100]).unwrap();
    let (_, t) = tiny_encoder().encode_traced(&wav[..100]).unwrap();
    assert_eq!(n, t.conv_frames);
    assert_close("100 samples", &short, &t.conv_out, 1e-5);
    assert!(stack.forward(&[]).is_err());
    assert!(stack.forward(&[0.0, f32::NAN]).is_err());
}

/// The transformer written over the audio op set, on the CPU backend: from the official
/// conv output, against the official transformer output and the CPU encoder's transformer.
#[test]
fn the_op_set_transformer_matches_the_encoder() {
    let golden = Golden::open("speaker_base");
    let ckpt = Checkpoint::open(&tiny_dir()).expect("tiny-base opens");
    let net = EncoderTransformer::load(CpuBackend::new(2), &ckpt.speech_config, &ckpt.speech_weights).expect("transformer");
    let conv = transpose(&golden.f32("enc_conv_out"));
    let rows = golden.f32("enc_conv_out").shape[1];
    let ours = net.forward(&conv, rows).expect("forward");
    let theirs = tiny_encoder().transformer_forward(&conv).expect("CPU encoder transformer");
    let d = assert_close("op-set transformer vs the CPU encoder's", &ours, &theirs, 1e-5);
    eprintln!("op-set transformer vs CPU encoder: {d}");
    let d = assert_close("op-set transformer vs official", &ours, &golden.f32("enc_transformer_out").data, TOL);
    eprintln!("op-set transformer vs official:    {d}");
    assert!(net.forward(&conv[1..], rows).is_err(), "a ragged input");
    assert!(net.forward(&[], 0).unwrap().is_empty());
}

/// The whole encoder over the audio op set, on the CPU backend: the official reference codes,
/// every one, and the CPU encoder's codes and margins.
#[test]
fn the_op_set_encoder_gives_the_official_codes() {
    let golden = Golden::open("speaker_base");
    let ckpt = Checkpoint::open(&tiny_dir()).expect("tiny-base opens");
    let net = CodecEncoderNet::load(CpuBackend::new(2), &ckpt.speech_config, &ckpt.speech_weights).expect("encoder");
    let wav = reference_wav();
    let (codes, margins) = net.encode_with_margins(&wav).expect("encode");
    let want = golden.u32("ref_codes");
    assert_eq!(codes.len(), want.data.len(), "frames");
    let bad = code_mismatches(&codes, &want.data, &margins);
    assert!(bad.is_empty(), "{} of {} codes differ:\n{}", bad.len(), codes.len(), bad.join("\n"));
    let (theirs, trace) = tiny_encoder().encode_traced(&wav).unwrap();
    assert_eq!(codes, theirs, "the CPU encoder's codes");
    let d = assert_close("margins vs the CPU encoder's", &margins, &trace.margins, 1e-4);
    eprintln!("op-set encoder: {} codes equal the official ones; margins vs the CPU encoder: {d}", codes.len());
    // Short and bad input.
    let (short, _) = net.encode_with_margins(&wav[..100]).unwrap();
    assert_eq!(short, tiny_encoder().encode(&wav[..100]).unwrap());
    assert!(net.encode_with_margins(&[]).is_err());
    assert!(net.encode_with_margins(&[f32::INFINITY]).is_err());
}

#[test]
fn stages_match_official_from_reference_inputs() {
    // Each stage fed with the reference's own input, so an error cannot come from upstream.
    let golden = Golden::open("speaker_base");
    let enc = tiny_encoder();

    let conv = transpose(&golden.f32("enc_conv_out"));
    let tr = enc.transformer_forward(&conv).expect("transformer");
    let d = assert_close("transformer(golden conv_out)", &tr, &golden.f32("enc_transformer_out").data, TOL);
    eprintln!("transformer alone   {d}");

    let latent = transpose(&golden.f32("enc_latent"));
    let (codes, margins) = enc.quantize_traced(&latent).expect("quantize");
    let want = golden.u32("ref_codes");
    let (m, at) = min_margin(&margins);
    eprintln!("quantizer alone: smallest margin {m:.3e} (frame {}, codebook {})", at / NQ, at % NQ);
    let bad = code_mismatches(&codes, &want.data, &margins);
    assert!(bad.is_empty(), "quantizer on the golden latent: {} codes differ:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn frame_count_is_ceil_of_samples_over_1920() {
    let enc = tiny_encoder();
    assert_eq!(enc.samples_per_frame(), HOP);
    assert_eq!(enc.num_codebooks(), NQ);
    for (n, frames) in [(1, 1), (2, 1), (HOP - 1, 1), (HOP, 1), (HOP + 1, 2), (2 * HOP, 2), (48_000, 25), (48_001, 26)] {
        let wav: Vec<f32> = (0..n).map(|i| 0.3 * (i as f32 * 0.05).sin() + 0.01 * ((i * 7919 % 101) as f32 - 50.0) / 50.0).collect();
        let codes = enc.encode(&wav).unwrap_or_else(|e| panic!("{n} samples: {e}"));
        assert_eq!(enc.frames_for(n), frames, "frames_for({n})");
        assert_eq!(codes.len(), frames * NQ, "{n} samples → {} codes", codes.len());
        assert!(codes.iter().all(|&c| c < 2048));
    }
}

#[test]
fn prefix_frames_do_not_depend_on_later_audio() {
    // Everything is causal (convs, attention): the codes of a prefix are a prefix of the
    // codes, as long as the prefix ends on a frame boundary.
    let enc = tiny_encoder();
    let wav = reference_wav();
    let full = enc.encode(&wav).unwrap();
    let head = enc.encode(&wav[..20 * HOP]).unwrap();
    assert_eq!(head[..], full[..20 * NQ]);
}

#[test]
fn result_does_not_depend_on_thread_count() {
    let mut enc = tiny_encoder();
    let wav = reference_wav();
    enc.set_threads(1);
    let (c1, t1) = enc.encode_traced(&wav).unwrap();
    enc.set_threads(4);
    let (c4, t4) = enc.encode_traced(&wav).unwrap();
    assert_eq!(c1, c4);
    assert_eq!(t1.latent, t4.latent, "latent differs between 1 and 4 threads");
}

#[test]
fn bad_input_is_rejected_cleanly() {
    let enc = tiny_encoder();
    let err = enc.encode(&[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = enc.encode(&[0.0, f32::NAN, 0.0]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = enc.encode(&[0.0, f32::INFINITY]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = enc.quantize(&[0.0; 33]).unwrap_err(); // hidden is 32
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = enc.transformer_forward(&[0.0; 31]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // Silence and full scale are fine.
    assert_eq!(enc.encode(&vec![0.0; 5000]).unwrap().len(), 3 * NQ);
    assert_eq!(enc.encode(&vec![1.0; 5000]).unwrap().len(), 3 * NQ);
}

#[test]
fn encoder_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<CodecEncoder>();
    // And usable from several threads at once.
    let enc = std::sync::Arc::new(tiny_encoder());
    let wav: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
    let want = enc.encode(&wav).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (enc, wav, want) = (enc.clone(), &wav, &want);
            s.spawn(move || assert_eq!(&enc.encode(wav).unwrap(), want));
        }
    });
}
