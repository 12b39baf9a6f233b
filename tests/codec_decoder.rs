//! Speech-tokenizer decoder (codes → 24 kHz) against the official qwen-tts 0.1.1 goldens
//! (`tests/fixtures/golden/codec.safetensors`, `greedy_base.safetensors`; see MANIFEST.md),
//! plus streaming, error handling and the codebook epsilon rule.
//!
//! Errors are reported as relative L2 (‖a−b‖/‖b‖) and max |a−b|.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use qwentts::ErrorKind;
use qwentts::model::SafeTensorsFile;
use qwentts::model::codec::{ChunkPolicy, CodecDecoder, StreamingDecoder, TensorSource, icl_cut, materialize_codebook};
use qwentts::model::config::SpeechTokenizerConfig;
use safetensors::{Dtype, SafeTensors};

const NQ: usize = 16;
const HOP: usize = 1920;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn speech_dir() -> PathBuf {
    fixtures().join("tiny-base/speech_tokenizer")
}

fn tiny_config() -> SpeechTokenizerConfig {
    SpeechTokenizerConfig::from_file(&speech_dir().join("config.json")).expect("tiny speech config")
}

fn tiny_weights() -> SafeTensorsFile {
    SafeTensorsFile::open(&speech_dir().join("model.safetensors")).expect("tiny speech weights")
}

fn tiny_decoder() -> CodecDecoder {
    CodecDecoder::load(&tiny_config(), &tiny_weights()).expect("load tiny decoder")
}

/// A golden safetensors file, read whole (they hold I64 tensors, which the crate's F32/BF16
/// loader does not take).
struct Golden(Vec<u8>);

impl Golden {
    fn open(name: &str) -> Self {
        let path = fixtures().join("golden").join(name);
        Golden(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }

    fn view(&self, name: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.0).expect("golden parses");
        let t = st.tensor(name).unwrap_or_else(|_| panic!("golden tensor {name} missing"));
        (t.dtype(), t.shape().to_vec(), t.data().to_vec())
    }

    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (dtype, shape, data) = self.view(name);
        assert_eq!(dtype, Dtype::F32, "{name}");
        (shape, data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
    }

    /// I64 codes `[T, 16]` as u32 (row-major).
    fn codes(&self, name: &str) -> Vec<u32> {
        let (dtype, shape, data) = self.view(name);
        assert_eq!(dtype, Dtype::I64, "{name}");
        assert_eq!(shape[1], NQ, "{name}");
        data.chunks_exact(8).map(|b| u32::try_from(i64::from_le_bytes(b.try_into().unwrap())).unwrap()).collect()
    }
}

/// `[C, T]` (channels-first, as the reference stores it) → `[T, C]`.
fn transpose(x: &[f32], shape: &[usize]) -> Vec<f32> {
    let (c, t) = (shape[0], shape[1]);
    let mut y = vec![0.0; x.len()];
    for i in 0..c {
        for j in 0..t {
            y[j * c + i] = x[i * t + j];
        }
    }
    y
}

/// (‖a−b‖/‖b‖, max |a−b|), accumulated in f64.
fn errors(got: &[f32], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len(), "length");
    let (mut diff, mut norm, mut max) = (0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in got.iter().zip(want) {
        let d = f64::from(a) - f64::from(b);
        diff += d * d;
        norm += f64::from(b) * f64::from(b);
        max = max.max(d.abs());
    }
    ((diff / norm.max(1e-300)).sqrt(), max)
}

fn assert_close(what: &str, got: &[f32], want: &[f32], rel_tol: f64) {
    let (rel, max) = errors(got, want);
    println!("{what:<32} rel {rel:.3e}  max_abs {max:.3e}");
    assert!(rel <= rel_tol, "{what}: relative error {rel:.3e} > {rel_tol:.0e} (max abs {max:.3e})");
}

// ---------------------------------------------------------------------------------------
// Offline decode vs the official goldens
// ---------------------------------------------------------------------------------------

#[test]
fn decode_30_frames_matches_golden_with_intermediates() {
    let dec = tiny_decoder();
    let g = Golden::open("codec.safetensors");
    let codes = g.codes("decode_codes");
    assert_eq!(codes.len(), 30 * NQ);

    let t0 = Instant::now();
    let (wav, trace) = dec.decode_traced(&codes, NQ).unwrap();
    println!("tiny decoder, 30 frames: {:.1} ms ({} threads)", t0.elapsed().as_secs_f64() * 1e3, dec.threads());

    for (name, got, channels_first) in [
        ("decode_dequant", &trace.dequant, true),
        ("decode_pre_conv", &trace.pre_conv, true),
        ("decode_pre_transformer", &trace.pre_transformer, false),
        ("decode_upsample", &trace.upsample, true),
        ("decode_decoder0", &trace.decoder0, true),
    ] {
        let (shape, want) = g.f32s(name);
        let want = if channels_first { transpose(&want, &shape) } else { want };
        assert_close(name, got, &want, 1e-4);
    }
    let (_, want) = g.f32s("decode_wave");
    assert_eq!(wav.len(), 30 * HOP);
    assert_close("decode_wave", &wav, &want, 1e-4);

    // The public decode (official wrapper) is the same single forward for ≤ 300 frames.
    let official = dec.decode(&codes, NQ).unwrap();
    assert_close("decode() vs decode_traced()", &official, &wav, 1e-7);
}

#[test]
fn chunked_320_frames_matches_golden_window_and_frame_stats() {
    let dec = tiny_decoder();
    let g = Golden::open("codec.safetensors");
    let codes = g.codes("chunked_codes");
    let frames = codes.len() / NQ;
    assert_eq!(frames, 320);

    let t0 = Instant::now();
    let wav = dec.decode(&codes, NQ).unwrap();
    println!("tiny decoder, 320 frames chunked: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    assert_eq!(wav.len(), frames * HOP);

    // 1. The stored window: frames 290..310, across the chunk seam at frame 300.
    let (_, window) = g.f32s("chunked_wave_window");
    assert_close("chunked window [290, 310)", &wav[290 * HOP..310 * HOP], &window, 1e-4);

    // 2. Per-frame sums and RMS of the whole output (float64 in the reference).
    let mut sums = Vec::with_capacity(frames);
    let mut rms = Vec::with_capacity(frames);
    for f in wav.chunks_exact(HOP) {
        let s: f64 = f.iter().map(|&v| f64::from(v)).sum();
        let sq: f64 = f.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        sums.push(s as f32);
        rms.push((sq / HOP as f64).sqrt() as f32);
    }
    let (_, want_sums) = g.f32s("chunked_frame_sum");
    let (_, want_rms) = g.f32s("chunked_frame_rms");
    assert_close("chunked per-frame sums", &sums, &want_sums, 1e-4);
    assert_close("chunked per-frame rms", &rms, &want_rms, 1e-4);

    // 3. Whole-output statistics from cases.json.
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("golden/cases.json")).unwrap()).unwrap();
    let stats = &cases["codec"]["chunked_stats"];
    let sum: f64 = wav.iter().map(|&v| f64::from(v)).sum();
    let sum_sq: f64 = wav.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let max_abs = wav.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let rel = |got: f64, key: &str| {
        let want = stats[key].as_f64().unwrap();
        let r = (got - want).abs() / want.abs();
        println!("chunked stat {key:<8} got {got:.9e} want {want:.9e} rel {r:.2e}");
        r
    };
    assert!(rel(sum, "sum") < 1e-4);
    assert!(rel(sum_sq, "sum_sq") < 1e-4);
    assert!(rel(sum / wav.len() as f64, "mean") < 1e-4);
    assert_eq!(f64::from(max_abs), stats["max_abs"].as_f64().unwrap());
    assert!((f64::from(wav[0]) - stats["first"].as_f64().unwrap()).abs() < 1e-6);
    assert!((f64::from(*wav.last().unwrap()) - stats["last"].as_f64().unwrap()).abs() < 1e-4);

    // 4. How far the chunking is from one forward: as the reference measured it.
    let full = dec.decode_full(&codes, NQ).unwrap();
    let (_, before_seam) = errors(&full[..300 * HOP], &wav[..300 * HOP]);
    let (_, window_diff) = errors(&full[290 * HOP..310 * HOP], &wav[290 * HOP..310 * HOP]);
    let want_diff = cases["codec"]["chunked_vs_single_forward"]["max_abs_diff_window"].as_f64().unwrap();
    println!("single forward vs chunked: max diff frames <300 {before_seam:.2e}, window {window_diff:.4} (reference {want_diff:.4})");
    assert!(before_seam < 1e-5);
    assert!((window_diff - want_diff).abs() < 1e-3);
}

#[test]
fn greedy_base_waveforms_and_icl_cut() {
    let dec = tiny_decoder();
    let g = Golden::open("greedy_base.safetensors");

    // x-vector mode: the generated codes alone.
    let codes = g.codes("xvec_en.codes");
    let wav = dec.decode(&codes, NQ).unwrap();
    let (_, want) = g.f32s("xvec_en.wave");
    assert_close("xvec_en wave", &wav, &want, 1e-4);

    // ICL: decode(ref ++ generated), then drop the reference part with the float formula.
    let ref_codes = Golden::open("speaker_base.safetensors").codes("ref_codes");
    let gen_codes = g.codes("icl_en2_cut.codes");
    let (ref_frames, gen_frames) = (ref_codes.len() / NQ, gen_codes.len() / NQ);
    let all: Vec<u32> = [ref_codes, gen_codes].concat();
    let full = dec.decode(&all, NQ).unwrap();
    assert_eq!(full.len(), 142_080);
    let cut = icl_cut(ref_frames, ref_frames + gen_frames, full.len());
    // cases.json: 39 / 74 · 142080 = 74879.99… → 74879 = 39·1920 − 1 (one reference sample kept).
    assert_eq!((ref_frames, gen_frames, cut), (39, 35, 74_879));
    let (_, want) = g.f32s("icl_en2_cut.wave");
    assert_eq!(full.len() - cut, want.len());
    assert_close("icl_en2_cut wave", &full[cut..], &want, 1e-4);
}

#[test]
fn decoder_is_shareable_and_streams_are_sendable() {
    fn shareable<T: Send + Sync>() {}
    fn sendable<T: Send>() {}
    shareable::<CodecDecoder>();
    sendable::<StreamingDecoder<Arc<CodecDecoder>>>();
}

#[test]
fn icl_cut_reproduces_python_float_arithmetic() {
    assert_eq!(icl_cut(39, 74, 142_080), 74_879);
    assert_eq!(icl_cut(15, 22, 22 * HOP), 15 * HOP - 1); // the spec's example
    assert_eq!(icl_cut(10, 20, 20 * HOP), 10 * HOP);
    assert_eq!(icl_cut(0, 0, 0), 0); // max(total_len, 1)
}

// ---------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------

/// Pushes `codes` in pieces of the given frame counts (cycled), checking each piece's length.
fn stream_in_pieces<D: std::ops::Deref<Target = CodecDecoder>>(
    stream: &mut StreamingDecoder<D>,
    codes: &[u32],
    pieces: &[usize],
) -> Vec<f32> {
    let frames = codes.len() / NQ;
    let mut out = Vec::new();
    let (mut done, mut i) = (0, 0);
    while done < frames {
        let n = pieces[i % pieces.len()].min(frames - done);
        let wav = stream.push(&codes[done * NQ..(done + n) * NQ], NQ).unwrap();
        assert_eq!(wav.len(), n * HOP, "a push of {n} frames returns {n}·1920 samples");
        out.extend(wav);
        done += n;
        i += 1;
    }
    assert_eq!(stream.frames(), frames);
    out
}

#[test]
fn streaming_uneven_pieces_equal_offline_decode() {
    let dec = tiny_decoder();
    let codes = Golden::open("codec.safetensors").codes("decode_codes");
    let offline = dec.decode_full(&codes, NQ).unwrap();
    for policy in [ChunkPolicy::Official, ChunkPolicy::Continuous] {
        let mut stream = StreamingDecoder::new(&dec, policy).unwrap();
        let streamed = stream_in_pieces(&mut stream, &codes, &[1, 2, 7, 3, 11, 6]);
        assert_close(&format!("stream {policy:?} vs offline"), &streamed, &offline, 1e-5);
        // Frame by frame, after a reset.
        stream.reset().unwrap();
        let streamed = stream_in_pieces(&mut stream, &codes, &[1]);
        assert_close(&format!("stream {policy:?} 1-by-1"), &streamed, &offline, 1e-5);
    }
    // An empty push is a no-op.
    let mut stream = StreamingDecoder::new(&dec, ChunkPolicy::Official).unwrap();
    assert!(stream.push(&[], NQ).unwrap().is_empty());
    assert_eq!(stream.frames(), 0);
}

#[test]
fn streaming_320_frames_official_policy_reproduces_chunked_decode() {
    let dec = Arc::new(tiny_decoder());
    let g = Golden::open("codec.safetensors");
    let codes = g.codes("chunked_codes");

    // Official: re-primed at frame 300, so it matches the official chunked output.
    let mut stream = StreamingDecoder::new(Arc::clone(&dec), ChunkPolicy::Official).unwrap();
    let streamed = stream_in_pieces(&mut stream, &codes, &[1, 2, 7, 45, 250, 13]);
    let (_, window) = g.f32s("chunked_wave_window");
    assert_close("official stream window", &streamed[290 * HOP..310 * HOP], &window, 1e-4);
    let offline = dec.decode(&codes, NQ).unwrap();
    assert_close("official stream vs decode()", &streamed, &offline, 1e-5);

    // A push ending exactly on the seam, then one crossing nothing.
    let mut stream = StreamingDecoder::new(Arc::clone(&dec), ChunkPolicy::Official).unwrap();
    let streamed = stream_in_pieces(&mut stream, &codes, &[300, 20]);
    assert_close("official stream 300+20", &streamed, &offline, 1e-5);

    // Continuous: one uninterrupted causal decode, no seam.
    let mut stream = StreamingDecoder::new(Arc::clone(&dec), ChunkPolicy::Continuous).unwrap();
    let streamed = stream_in_pieces(&mut stream, &codes, &[7, 64, 1, 100]);
    let full = dec.decode_full(&codes, NQ).unwrap();
    assert_close("continuous stream vs decode_full()", &streamed, &full, 1e-5);
}

// ---------------------------------------------------------------------------------------
// Input checking and padding
// ---------------------------------------------------------------------------------------

#[test]
fn bad_codes_are_clean_errors() {
    let dec = tiny_decoder();
    let mut codes = Golden::open("codec.safetensors").codes("decode_codes");
    codes.truncate(4 * NQ);

    let mut bad = codes.clone();
    bad[2 * NQ + 5] = 2048;
    let err = dec.decode(&bad, NQ).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("frame 2, codebook 5"), "{}", err.message());
    assert_eq!(dec.decode_full(&bad, NQ).unwrap_err().kind(), ErrorKind::InvalidArgument);

    let err = dec.decode(&codes[..4 * 15], 15).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("expected 16 codebooks"), "{}", err.message());
    assert_eq!(dec.decode(&codes[..NQ + 3], NQ).unwrap_err().kind(), ErrorKind::InvalidArgument);

    // A rejected push leaves the stream untouched.
    let mut stream = StreamingDecoder::new(&dec, ChunkPolicy::Official).unwrap();
    let first = stream.push(&codes[..2 * NQ], NQ).unwrap();
    assert_eq!(stream.push(&bad[2 * NQ..], NQ).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(stream.frames(), 2);
    let second = stream.push(&codes[2 * NQ..], NQ).unwrap();
    let offline = dec.decode_full(&codes, NQ).unwrap();
    assert_close("stream after a rejected push", &[first, second].concat(), &offline, 1e-5);

    assert!(dec.decode(&[], NQ).unwrap().is_empty());
}

#[test]
fn padded_batch_row_follows_the_official_valid_length_rule() {
    let dec = tiny_decoder();
    let codes = Golden::open("codec.safetensors").codes("decode_codes");
    let mut padded: Vec<i64> = codes.iter().map(|&c| i64::from(c)).collect();
    padded.extend(std::iter::repeat_n(-1, 5 * NQ)); // 5 frames of -1 padding
    let wav = dec.decode_padded(&padded, NQ).unwrap();
    let want = dec.decode(&codes, NQ).unwrap();
    assert_eq!(wav.len(), 30 * HOP);
    // 35 rows instead of 30 through the matrix products: same math, different rounding.
    assert_close("padded row vs unpadded", &wav, &want, 1e-5);

    padded[3] = 2048;
    assert_eq!(dec.decode_padded(&padded, NQ).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

// ---------------------------------------------------------------------------------------
// Codebook epsilon
// ---------------------------------------------------------------------------------------

#[test]
fn codebook_divides_by_usage_clamped_at_1e_5() {
    let sum = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
    let usage = [0.0f32, 1e-7, 1e-5, 0.5, 2.0];
    let cb = materialize_codebook(&sum, &usage, 2);
    let want = [1.0 / 1e-5, 2.0 / 1e-5, 3.0 / 1e-5, 4.0 / 1e-5, 5.0 / 1e-5, 6.0 / 1e-5, 14.0, 16.0, 4.5, 5.0];
    for (g, w) in cb.iter().zip(want) {
        assert!((g - w).abs() <= 1e-6 * w.abs(), "{g} vs {w}");
    }
}

/// The tiny weights with one codebook row's usage replaced.
struct UsageOverride {
    inner: SafeTensorsFile,
    tensor: &'static str,
    row: usize,
    usage: f32,
}

impl TensorSource for UsageOverride {
    fn tensor(&self, name: &str, shape: &[usize]) -> qwentts::Result<Vec<f32>> {
        let mut v = self.inner.tensor(name, shape)?;
        if name == self.tensor {
            v[self.row] = self.usage;
        }
        Ok(v)
    }
}

#[test]
fn codebook_epsilon_reaches_the_decoder() {
    // Usage 0 and 1e-6 are both clamped to 1e-5, so they decode identically; 2e-5 is not
    // clamped and must decode differently. (The fixture's usages lie in [0.5, 2], so the
    // golden decode already rules out max(usage, 1).)
    let cfg = tiny_config();
    let (row, name) = (77, "decoder.quantizer.rvq_rest.vq.layers.4._codebook.cluster_usage");
    let decode_with = |usage: f32| {
        let src = UsageOverride { inner: tiny_weights(), tensor: name, row, usage };
        let dec = CodecDecoder::load(&cfg, &src).unwrap();
        let mut codes = vec![5u32; 3 * NQ];
        codes[NQ + 5] = row as u32; // frame 1, codebook 5 = rvq_rest layer 4
        dec.decode(&codes, NQ).unwrap()
    };
    let (zero, tiny, above) = (decode_with(0.0), decode_with(1e-6), decode_with(2e-5));
    assert_eq!(zero, tiny);
    assert_ne!(zero, above);
}
