//! Benchmark of the audio networks: codec decoder, codec encoder and speaker encoder on the
//! CPU, reported as CPU seconds per second of audio; with `--device N` (feature `cuda`), the
//! audio networks on that GPU instead: the codec decoder offline (the official decode), per
//! frame amortised over a stream fed 4-frame chunks and the latency of a first 1-frame chunk;
//! then, on a 10 s reference, the log-mel front end, the speaker encoder and the codec
//! encoder (cloning's networks).
//!
//! ```text
//! cargo run --release --example bench_codec -- --model DIR [--seconds S] [--threads T] [--runs R]
//! cargo run --release --features cuda --example bench_codec -- --model DIR --device 0
//! ```
//!
//! Use a full-size checkpoint from `make_random_checkpoint` (speed does not depend on the
//! weight values). Inputs are synthetic: codes cycling through the codebook for the decoder,
//! a chirp for the encoders. Median of R runs after one warm-up. Figures go to BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Instant;

use qwentts::audio::{MelConfig, MelFrontEnd};
use qwentts::model::Checkpoint;
use qwentts::model::codec::{CodecDecoder, CodecEncoder};
use qwentts::model::speaker_encoder::SpeakerEncoder;

const RATE: usize = 24_000;
const HOP: usize = 1920;
const CODEBOOKS: usize = 16;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}: {v}")))
        .unwrap_or(default)
}

/// Median wall time in seconds of `runs` calls after one warm-up.
fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir: PathBuf = arg(&args, "--model", PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-base")));
    let seconds: f64 = arg(&args, "--seconds", 8.0);
    let threads: usize = arg(&args, "--threads", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let runs: usize = arg(&args, "--runs", 3);

    let ckpt = Checkpoint::open(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let frames = (seconds * RATE as f64 / HOP as f64).round().max(1.0) as usize;
    let audio_s = (frames * HOP) as f64 / RATE as f64;
    println!("model     {} ({} frames = {audio_s:.2} s of audio, {threads} threads, median of {runs})", dir.display(), frames);

    let codes: Vec<u32> = (0..frames * CODEBOOKS).map(|i| ((i * 7919 + 13) % 2048) as u32).collect();
    if let Some(device) = args.iter().position(|a| a == "--device").and_then(|i| args.get(i + 1)) {
        let ordinal: usize = device.parse().unwrap_or_else(|_| panic!("bad --device {device}"));
        gpu_decoder(&ckpt, ordinal, &codes, frames, runs);
        return;
    }
    let mut decoder = CodecDecoder::from_checkpoint(&ckpt).expect("codec decoder");
    decoder.set_threads(threads);
    let t = time(runs, || {
        decoder.decode(&codes, CODEBOOKS).expect("decode");
    });
    println!("decoder   {:.3} s  ({:.3} s per second of audio)", t, t / audio_s);

    // A 100 Hz → 4 kHz chirp at moderate level stands in for speech.
    let n = frames * HOP;
    let wav: Vec<f32> = (0..n)
        .map(|i| {
            let x = i as f64 / RATE as f64;
            (0.3 * (2.0 * std::f64::consts::PI * (100.0 * x + 250.0 * x * x / audio_s)).sin()) as f32
        })
        .collect();
    let mut encoder = CodecEncoder::from_checkpoint(&ckpt).expect("codec encoder");
    encoder.set_threads(threads);
    let t = time(runs, || {
        encoder.encode(&wav).expect("encode");
    });
    println!("encoder   {:.3} s  ({:.3} s per second of audio)", t, t / audio_s);

    match SpeakerEncoder::load(&ckpt.weights, &ckpt.config.speaker_encoder_config) {
        Ok(speaker) => {
            let mel = MelFrontEnd::new(MelConfig::default()).expect("mel front end");
            let t = time(runs, || {
                let m = mel.compute(&wav).expect("mel");
                speaker.embed(&m.data, m.frames).expect("x-vector");
            });
            println!("speaker   {:.3} s  ({:.3} s per second of audio, mel included, single-threaded)", t, t / audio_s);
        }
        Err(e) => println!("speaker   n/a ({e})"),
    }
}

/// The codec decoder on CUDA device `ordinal`: offline, streamed in 4-frame chunks, and a
/// first 1-frame chunk. Each figure includes copying the samples to the host.
#[cfg(feature = "cuda")]
fn gpu_decoder(ckpt: &Checkpoint, ordinal: usize, codes: &[u32], frames: usize, runs: usize) {
    use qwentts::backend::cuda::CudaBackend;
    use qwentts::model::codec::{ChunkPolicy, StreamingDecoder};

    let backend = CudaBackend::new(ordinal).expect("CUDA device");
    let t0 = Instant::now();
    let decoder = CodecDecoder::load_on(backend, &ckpt.speech_config, &ckpt.speech_weights).expect("GPU codec decoder");
    println!("gpu decoder: cuda:{ordinal}, loaded in {:.0} ms (f32 weights)", t0.elapsed().as_secs_f64() * 1e3);
    let t = time(runs, || {
        decoder.decode(codes, CODEBOOKS).expect("decode");
    });
    println!("offline   {frames} frames in {:.2} ms ({:.4} ms per frame)", t * 1e3, t * 1e3 / frames as f64);
    const CHUNK: usize = 4;
    let t = time(runs, || {
        let mut stream = StreamingDecoder::new(&decoder, ChunkPolicy::Official).expect("stream");
        for chunk in codes.chunks(CHUNK * CODEBOOKS) {
            stream.push(chunk, CODEBOOKS).expect("push");
        }
    });
    println!("stream    {CHUNK}-frame chunks: {:.4} ms per frame amortised ({frames} frames)", t * 1e3 / frames as f64);
    // First audio: a fresh stream (its state and CUDA stream included) and one frame.
    let t = time(runs.max(5), || {
        let mut stream = StreamingDecoder::new(&decoder, ChunkPolicy::Official).expect("stream");
        stream.push(&codes[..CODEBOOKS], CODEBOOKS).expect("push");
    });
    println!("first     1-frame chunk on a fresh stream: {:.3} ms", t * 1e3);
    // The same on a stream already warm (its buffers allocated): a later 1-frame chunk.
    let mut stream = StreamingDecoder::new(&decoder, ChunkPolicy::Continuous).expect("stream");
    stream.push(&codes[..CODEBOOKS], CODEBOOKS).expect("push");
    let mut i = 1;
    let t = time(runs.max(5), || {
        let f = i % frames;
        stream.push(&codes[f * CODEBOOKS..(f + 1) * CODEBOOKS], CODEBOOKS).expect("push");
        i += 1;
    });
    println!("next      1-frame chunk on a warm stream: {:.3} ms", t * 1e3);

    // The speaker encoder on the GPU over 10 s of a chirp's mel: the network on a mel from the
    // CPU's FFT front end, then the GPU's log-mel, then both together.
    let wav: Vec<f32> = (0..10 * RATE as usize)
        .map(|i| {
            let x = i as f64 / RATE as f64;
            (0.3 * (2.0 * std::f64::consts::PI * (100.0 * x + 25.0 * x * x)).sin()) as f32
        })
        .collect();
    let mel_front = MelFrontEnd::new(MelConfig::default()).expect("mel front end");
    let t_mel = time(runs, || {
        mel_front.compute(&wav).expect("mel");
    });
    let mel = mel_front.compute(&wav).expect("mel");
    let cfg = &ckpt.config.speaker_encoder_config;
    match SpeakerEncoder::load_on(CudaBackend::new(ordinal).expect("CUDA device"), &ckpt.weights, cfg) {
        Ok(speaker) => {
            speaker.embed(&mel.data, mel.frames).expect("x-vector"); // warm-up
            let t = time(runs.max(5), || {
                speaker.embed(&mel.data, mel.frames).expect("x-vector");
            });
            println!(
                "speaker   10 s reference ({} mel frames): GPU network {:.2} ms (CPU FFT mel: {:.2} ms)",
                mel.frames,
                t * 1e3,
                t_mel * 1e3
            );
            let gpu_mel = qwentts::model::log_mel::LogMel::new(CudaBackend::new(ordinal).expect("CUDA device"), &mel_front)
                .expect("GPU log-mel");
            gpu_mel.compute(&wav).expect("GPU mel"); // warm-up
            let t_gpu_mel = time(runs.max(5), || {
                gpu_mel.compute(&wav).expect("GPU mel");
            });
            let t_both = time(runs.max(5), || {
                let m = gpu_mel.compute(&wav).expect("GPU mel");
                speaker.embed(&m.data, m.frames).expect("x-vector");
            });
            println!(
                "speaker   GPU log-mel {:.2} ms; GPU log-mel + network {:.2} ms (samples in, x-vector out)",
                t_gpu_mel * 1e3,
                t_both * 1e3
            );
        }
        Err(e) => println!("speaker   n/a ({e})"),
    }

    // The codec encoder on the GPU over the same 10 s (reference codes for in-context cloning).
    match qwentts::model::codec::encoder_net::CodecEncoderNet::load(
        CudaBackend::new(ordinal).expect("CUDA device"),
        &ckpt.speech_config,
        &ckpt.speech_weights,
    ) {
        Ok(encoder) => {
            encoder.encode_with_margins(&wav).expect("encode"); // warm-up
            let t = time(runs.max(5), || {
                encoder.encode_with_margins(&wav).expect("encode");
            });
            println!("encoder   10 s reference: GPU {:.2} ms (samples in, codes out)", t * 1e3);
        }
        Err(e) => println!("encoder   n/a ({e})"),
    }
}

#[cfg(not(feature = "cuda"))]
fn gpu_decoder(_: &Checkpoint, _: usize, _: &[u32], _: usize, _: usize) {
    eprintln!("--device needs a build with the `cuda` feature");
    std::process::exit(2);
}
