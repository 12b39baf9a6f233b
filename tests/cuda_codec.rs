//! The codec decoder on the GPU against the same network on the CPU (the oracle, itself held
//! to the official goldens by tests/codec_decoder.rs): the tiny fixture offline with every
//! intermediate, the official 300/25 chunking past 300 frames, streams fed in uneven pieces,
//! and a full-size random codec (`QT_FULL_MODELS`). Feature `cuda`; each test needs a GPU, so
//! it is `#[ignore]`d here and run on the device machine by tools/device/run.sh with
//! `--include-ignored`.
//!
//! Bound: relative L2 ≤ 1e-4 everywhere (issue 10: every stage runs in f32 on both), with the
//! SNR printed; NaN never passes.
#![cfg(feature = "cuda")]

mod common;

use std::path::{Path, PathBuf};

use common::checkpoint_dir;
use common::generation::base_voice;
use qwentts::backend::cpu_audio::cpu_audio_ops_run;
use qwentts::{Device, ErrorKind, GenerateOptions, LoadOptions, Model};
use qwentts::backend::cuda::CudaBackend;
use qwentts::model::codec::{ChunkPolicy, CodecDecoder, StreamingDecoder};
use qwentts::model::config::SpeechTokenizerConfig;
use qwentts::model::{Checkpoint, SafeTensorsFile};

const NQ: usize = 16;
const HOP: usize = 1920;
const TOL: f64 = 1e-4;

fn speech_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-base/speech_tokenizer")
}

fn tiny() -> (SpeechTokenizerConfig, SafeTensorsFile) {
    let cfg = SpeechTokenizerConfig::from_file(&speech_dir().join("config.json")).expect("tiny speech config");
    let weights = SafeTensorsFile::open(&speech_dir().join("model.safetensors")).expect("tiny speech weights");
    (cfg, weights)
}

fn tiny_pair() -> (CodecDecoder, CodecDecoder<CudaBackend>) {
    let (cfg, weights) = tiny();
    let cpu = CodecDecoder::load(&cfg, &weights).expect("CPU decoder");
    let gpu = CodecDecoder::load_on(CudaBackend::new(0).expect("CUDA device 0"), &cfg, &weights).expect("GPU decoder");
    (cpu, gpu)
}

/// Deterministic codes covering the codebook (`frames · 16`).
fn codes(frames: usize, salt: usize, codebook_size: usize) -> Vec<u32> {
    (0..frames * NQ).map(|i| ((i * 7919 + salt * 104_729 + 13) % codebook_size) as u32).collect()
}

/// Asserts the relative L2 of `got` against `want` is within `TOL` (NaN fails), printing it
/// with the SNR.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    let d = common::assert_close(what, got, want, TOL);
    let snr = -20.0 * d.rel.max(1e-150).log10();
    println!("{what:<44} rel L2 {:.3e}  SNR {snr:6.1} dB  max |d| {:.3e}", d.rel, d.max_abs);
}

/// Feeds `codes` to `stream` in the given piece sizes (cycled), concatenating the audio.
fn stream_in_pieces(stream: &mut StreamingDecoder<&CodecDecoder<CudaBackend>, CudaBackend>, codes: &[u32], pieces: &[usize]) -> Vec<f32> {
    let frames = codes.len() / NQ;
    let (mut done, mut i, mut out) = (0, 0, Vec::new());
    while done < frames {
        let n = pieces[i % pieces.len()].min(frames - done);
        let wav = stream.push(&codes[done * NQ..(done + n) * NQ], NQ).expect("push");
        assert_eq!(wav.len(), n * HOP, "a stream returns exactly 1920 samples per frame");
        out.extend(wav);
        done += n;
        i += 1;
    }
    out
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn tiny_decode_matches_cpu_with_every_intermediate() {
    let (cpu, gpu) = tiny_pair();
    let codes = codes(30, 1, cpu.codebook_size());
    let (want_wav, want) = cpu.decode_traced(&codes, NQ).unwrap();
    let (got_wav, got) = gpu.decode_traced(&codes, NQ).unwrap();
    assert_close("dequant", &got.dequant, &want.dequant);
    assert_close("pre_conv", &got.pre_conv, &want.pre_conv);
    assert_close("pre_transformer", &got.pre_transformer, &want.pre_transformer);
    assert_close("upsample", &got.upsample, &want.upsample);
    assert_close("decoder0", &got.decoder0, &want.decoder0);
    assert_close("waveform (30 frames)", &got_wav, &want_wav);
    assert!(got_wav.iter().all(|v| (-1.0..=1.0).contains(v)), "output clamped to [-1, 1]");
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn tiny_official_chunking_past_300_frames_matches_cpu() {
    let (cpu, gpu) = tiny_pair();
    let codes = codes(320, 2, cpu.codebook_size());
    let want = cpu.decode(&codes, NQ).unwrap();
    let got = gpu.decode(&codes, NQ).unwrap();
    assert_eq!(got.len(), 320 * HOP);
    assert_close("official decode, 320 frames (300/25)", &got, &want);
    let want_full = cpu.decode_full(&codes, NQ).unwrap();
    let got_full = gpu.decode_full(&codes, NQ).unwrap();
    assert_close("one forward, 320 frames", &got_full, &want_full);
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn tiny_streams_in_uneven_pieces_equal_the_offline_decode() {
    let (_, gpu) = tiny_pair();
    let codes = codes(320, 3, gpu.codebook_size());
    let offline = gpu.decode(&codes, NQ).unwrap();
    let mut stream = StreamingDecoder::new(&gpu, ChunkPolicy::Official).unwrap();
    let streamed = stream_in_pieces(&mut stream, &codes, &[1, 2, 7, 45, 250, 13]);
    assert_close("official stream vs offline (GPU)", &streamed, &offline);
    let full = gpu.decode_full(&codes, NQ).unwrap();
    let mut stream = StreamingDecoder::new(&gpu, ChunkPolicy::Continuous).unwrap();
    let streamed = stream_in_pieces(&mut stream, &codes, &[1, 4, 3]);
    assert_close("continuous stream vs one forward (GPU)", &streamed, &full);
    // A reset stream starts a new signal: the same audio again.
    stream.reset().unwrap();
    let again = stream_in_pieces(&mut stream, &codes[..40 * NQ], &[1]);
    assert_close("after reset, 1-frame pieces", &again, &full[..40 * HOP]);
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn bad_codes_are_clean_errors_on_the_gpu() {
    let (_, gpu) = tiny_pair();
    let mut bad = codes(3, 4, gpu.codebook_size());
    bad[17] = gpu.codebook_size() as u32;
    let err = gpu.decode(&bad, NQ).expect_err("out-of-range code");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let mut stream = StreamingDecoder::new(&gpu, ChunkPolicy::Official).unwrap();
    assert!(stream.push(&bad, NQ).is_err());
    assert_eq!(stream.frames(), 0, "a refused push changes nothing");
    let good = codes(3, 4, gpu.codebook_size());
    assert_eq!(stream.push(&good, NQ).unwrap().len(), 3 * HOP);
}

/// Full-size random checkpoints (the released shapes; `QT_FULL_MODELS`, directories
/// separated by ':'): 24 frames offline and streamed a frame at a time, GPU vs CPU.
#[test]
#[ignore = "needs a CUDA GPU and QT_FULL_MODELS: tools/device/run.sh runs it with --include-ignored"]
fn full_size_random_codec_matches_cpu() {
    let dirs = std::env::var("QT_FULL_MODELS").expect("QT_FULL_MODELS: full-size checkpoint directories, ':'-separated");
    // The codec is the same in every checkpoint: the first one is enough.
    let dir = PathBuf::from(dirs.split(':').next().expect("one directory"));
    let ckpt = Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let cpu = CodecDecoder::from_checkpoint(&ckpt).expect("CPU decoder");
    let gpu = CodecDecoder::load_on(CudaBackend::new(0).unwrap(), &ckpt.speech_config, &ckpt.speech_weights).expect("GPU decoder");
    let codes = codes(24, 5, cpu.codebook_size());
    let want = cpu.decode_full(&codes, NQ).unwrap();
    let got = gpu.decode_full(&codes, NQ).unwrap();
    assert_close("full-size codec, 24 frames offline", &got, &want);
    let mut stream = StreamingDecoder::new(&gpu, ChunkPolicy::Official).unwrap();
    let streamed = stream_in_pieces(&mut stream, &codes, &[1, 4]);
    assert_close("full-size codec, streamed 1 and 4 frames", &streamed, &want);
}

/// A CUDA model decodes on its GPU: `qt_generate`'s path (an ICL voice, streamed in 1-frame
/// chunks) runs no codec op on the CPU, and its audio equals a CPU model's within the bound.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn a_cuda_model_never_decodes_on_the_cpu() {
    let options = LoadOptions { device: Device::Cuda(0), ..Default::default() };
    let gpu = Model::load(checkpoint_dir("tiny-base"), &options).expect("tiny-base on CUDA");
    assert!(
        gpu.audio_device().starts_with("cuda:"),
        "codec decoder on {} (CUDA models decode on the GPU unless QT_GPU_CODEC=0)",
        gpu.audio_device()
    );
    let mut request = GenerateOptions::defaults(&gpu).greedy();
    request.max_frames = Some(10);
    request.min_frames = Some(10);
    request.chunk_frames = 1;
    let before = cpu_audio_ops_run();
    let mut chunks = 0;
    let mut on_chunk = |_: &qwentts::AudioChunk<'_>| {
        chunks += 1;
        true
    };
    let audio = gpu.generate(&base_voice(true), "Decoded on the GPU.", &request, Some(&mut on_chunk)).unwrap();
    assert_eq!(cpu_audio_ops_run(), before, "a codec op ran on the CPU during a CUDA model's request");
    assert!(chunks >= 10, "{chunks} chunks for 10 frames of 1");
    let cpu = Model::load(checkpoint_dir("tiny-base"), &LoadOptions::default()).unwrap();
    let mut cpu_gen = GenerateOptions::defaults(&cpu).greedy();
    cpu_gen.max_frames = Some(10);
    cpu_gen.min_frames = Some(10);
    let want = cpu.generate(&base_voice(true), "Decoded on the GPU.", &cpu_gen, None).unwrap();
    assert!(cpu_audio_ops_run() > before, "the CPU model's decode is counted (the counter works)");
    assert_close("CUDA model vs CPU model audio (ICL, greedy)", &audio.samples, &want.samples);
}
