//! Benchmark of the voice prefix cache: time from the call to the first frame (prompt prefill
//! and frame 0) of an in-context (ICL) request, with the cache off (one-pass prefill), on a
//! miss (the prefix's forward, then the rest) and on a hit (the prefix's keys and values
//! copied in, then the rest).
//!
//! ```text
//! cargo run --release --example bench_prefix -- [--model DIR] [--device N] [--runs R]
//!     [--ref-seconds S] [--threads T]
//! ```
//!
//! The voice is synthetic (a fixed x-vector, pseudo-random reference codes of S seconds, a
//! 21-word transcript); the text is 18 words; sampling is seeded. Numbers go to BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Instant;

use qwentts::{Device, GenerateOptions, LoadOptions, Model, Voice};

const TRANSCRIPT: &str = "This is the reference recording, read aloud slowly and clearly so that the model \
                          can hear every single word of it.";
const TEXT: &str = "The north gate opens at dawn, so pack your things tonight and meet me by the old mill.";

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}: {v}")))
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds from the call to the first frame, and the prompt rows (all, reused).
fn first_frame(model: &Model, voice: &Voice, options: &GenerateOptions) -> (f64, usize, usize) {
    let start = Instant::now();
    let mut first = None;
    let mut sink = |_: usize, _: &[u32]| {
        first = Some(start.elapsed().as_secs_f64() * 1e3);
        false // stop after frame 0
    };
    let out = model.generate_codes(voice, TEXT, options, Some(&mut sink)).expect("generation failed");
    (first.expect("no frame was made"), out.prefill.rows, out.prefill.reused_rows)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir: PathBuf =
        arg(&args, "--model", PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-base")));
    let device: i64 = arg(&args, "--device", -1);
    let runs: usize = arg(&args, "--runs", 5);
    let ref_seconds: f64 = arg(&args, "--ref-seconds", 10.0);
    let threads: usize = arg(&args, "--threads", 0);

    let load = |prefix_cache_bytes| {
        let options = LoadOptions {
            threads: (threads > 0).then_some(threads),
            device: if device >= 0 { Device::Cuda(device as usize) } else { Device::Cpu },
            prefix_cache_bytes,
            ..Default::default()
        };
        Model::load(&dir, &options).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
    };
    let cached = load(None);
    let plain = load(Some(0));

    let info = cached.info();
    let talker = &cached.checkpoint().config.talker_config;
    let codebook = talker.code_predictor_config.vocab_size as u64;
    let frames = (ref_seconds * f64::from(info.frame_rate)).round().max(1.0) as usize;
    let embedding: Vec<f32> = (0..info.talker_hidden_size).map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.1).collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let codes: Vec<u32> = (0..frames * info.num_codebooks)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % codebook) as u32
        })
        .collect();
    let voice = Voice::with_reference(embedding, codes, TRANSCRIPT.to_owned()).expect("voice");
    let mut options = GenerateOptions::defaults(&cached);
    options.language = "english".into();
    options.seed = Some(42);
    options.min_frames = Some(4);

    let mut off = Vec::new();
    let mut miss = Vec::new();
    let mut hit = Vec::new();
    let mut rows = (0, 0);
    for run in 0..=runs {
        let (t_off, ..) = first_frame(&plain, &voice, &options);
        cached.clear_prefix_cache();
        let (t_miss, _, reused_miss) = first_frame(&cached, &voice, &options);
        let (t_hit, all, reused) = first_frame(&cached, &voice, &options);
        assert_eq!(reused_miss, 0, "a cleared cache missed");
        assert!(reused > 0, "the second request hit (the prefix fits the cache)");
        rows = (all, reused);
        if run > 0 {
            off.push(t_off);
            miss.push(t_miss);
            hit.push(t_hit);
        }
    }
    let backend = if device >= 0 { format!("cuda:{device} ({})", cached.engine_name()) } else { "cpu".to_owned() };
    println!(
        "model        {} ({:?} {}, talker {}x{})",
        dir.display(),
        info.kind,
        info.size_label,
        info.talker_layers,
        info.talker_hidden_size
    );
    println!("backend      {backend}");
    println!("prompt       {} rows ({ref_seconds} s reference = {frames} frames), {} in the voice prefix", rows.0, rows.1);
    println!("first frame, median of {runs} (prefill + frame 0):");
    println!("  cache off  {:9.2} ms   (one-pass prefill)", median(off));
    println!("  miss       {:9.2} ms   (prefix forward, then the rest)", median(miss));
    println!("  hit        {:9.2} ms   (prefix copied in, then the rest)", median(hit));
}
