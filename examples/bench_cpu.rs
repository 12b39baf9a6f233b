//! CPU benchmark of code generation (the talker + code predictor frame loop).
//!
//! ```text
//! cargo run --release --example bench_cpu -- [--model DIR] [--frames N] [--runs R] [--threads T]
//! ```
//!
//! Forces exactly N frames (EOS masked) in x-vector clone mode with the official sampling
//! settings and a fixed seed, after one warm-up run, and reports prefill time and
//! milliseconds per frame (median of R runs). Numbers go to BENCHMARKS.md.

use std::path::PathBuf;
use std::time::Instant;

use qwentts::{GenerateOptions, LoadOptions, Model, Voice};

const TEXT: &str = "Technology is changing the world in ways we never imagined possible.";

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir: PathBuf = arg(&args, "--model", PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-base")));
    let frames: usize = arg(&args, "--frames", 20);
    let runs: usize = arg(&args, "--runs", 3);
    let threads: usize = arg(&args, "--threads", 0);

    let t = Instant::now();
    let options = LoadOptions { threads: (threads > 0).then_some(threads), ..Default::default() };
    let model = Model::load(&dir, &options).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()));
    let load_s = t.elapsed().as_secs_f64();
    let info = model.info();
    // A deterministic x-vector of the talker's width stands in for a cloned voice.
    let embedding: Vec<f32> = (0..info.talker_hidden_size).map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.1).collect();
    let voice = Voice::from_embedding(embedding).unwrap();
    let mut request = GenerateOptions::defaults(&model);
    request.language = "english".into();
    request.seed = Some(42);
    request.max_frames = Some(frames);
    request.min_frames = Some(frames);

    let mut prefill_ms = Vec::new();
    let mut frame_ms = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let mut first: Option<f64> = None;
        let mut sink = |_: usize, _: &[u32]| {
            first.get_or_insert_with(|| start.elapsed().as_secs_f64() * 1e3);
            true
        };
        let out = model.generate_codes(&voice, TEXT, &request, Some(&mut sink)).expect("generation failed");
        let total = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(out.frames(), frames, "EOS should have been masked");
        let first = first.unwrap();
        if run > 0 {
            // The first frame includes the prefill; the rest are steady-state frames.
            prefill_ms.push(first);
            frame_ms.push((total - first) / (frames - 1).max(1) as f64);
        }
    }
    let per_frame = median(frame_ms);
    println!("model        {} ({:?} {}, talker {}x{}, predictor {} layers)", dir.display(), info.kind, info.size_label,
        info.talker_layers, info.talker_hidden_size, info.code_predictor_layers);
    println!("backend      cpu, {} threads", if threads > 0 { threads } else { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) });
    println!("load         {load_s:.2} s");
    println!("first frame  {:.1} ms (prompt prefill + frame 0, median of {runs})", median(prefill_ms));
    println!("per frame    {per_frame:.2} ms (median of {runs} runs x {} frames)", frames - 1);
    println!("RTF          {:.3} (wall / audio, codes only, 80 ms of audio per frame)", per_frame / 80.0);
}
