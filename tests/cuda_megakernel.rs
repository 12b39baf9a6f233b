//! The frame megakernel through the public API and its device sampler, on a CUDA GPU
//! (`#[ignore]`d here; tools/device/run.sh runs them with `--include-ignored`).
//!
//! * The device sampler against the host sampler (`model::sampling`) on thousands of random
//!   logit vectors and settings: the same code every time (the draw is specified bit for bit).
//! * Greedy codes of both tiny fixtures equal the official goldens, frame for frame.
//! * Seeded sampling: the same seed gives the same codes on every run and from concurrent
//!   threads; another seed gives others.
//! * The frame callback sees every frame and can abort; streaming audio works.
//! * No host wait per frame: a request's waits do not grow with its frame count.
//!
//! The logit-level comparison with the CPU oracle (tiny and full-size checkpoints, both
//! weight-load paths) is in cuda_model.rs.

#![cfg(feature = "cuda")]

mod common;

use common::checkpoint_dir;
use common::rng::Rng;
use common::generation::{base_voice, check_base_goldens, check_customvoice_goldens};
use qwentts::backend::cuda::megakernel::FrameKernel;
use qwentts::backend::cuda::megakernel::layout::{MkSampleCase, MkSampler, MkTalkerSampler};
use qwentts::backend::cuda::{CudaBackend, host_waits};
use qwentts::model::rng::Philox;
use qwentts::model::sampling::{SamplerConfig, TalkerSamplerConfig, sample_code_predictor, sample_talker, top_p_cut};
use qwentts::{Device, EngineKind, FinishReason, GenerateOptions, LoadOptions, Model};

fn load(name: &str) -> Model {
    let options = LoadOptions { device: Device::Cuda(0), engine: EngineKind::Megakernel, ..Default::default() };
    let model = Model::load(checkpoint_dir(name), &options).unwrap_or_else(|e| panic!("loading {name}: {e}"));
    assert_eq!(model.engine_name(), "megakernel");
    model
}

/// A logit vector of one of several shapes that stress the sampler's edges.
fn logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    let scale = rng.pick(&[0.5f32, 2.0, 8.0, 40.0]);
    let mut v: Vec<f32> = (0..n).map(|_| rng.normal() * scale).collect();
    match rng.below(7) {
        // Quantised scores: many exact ties (bf16 logits tie often).
        0 => v.iter_mut().for_each(|x| *x = (*x * 2.0).round() / 2.0),
        1 => v.iter_mut().for_each(|x| *x = half::bf16::from_f32(*x).to_f32()),
        // A masked majority (a talker with its control ids suppressed).
        2 => {
            for x in v.iter_mut() {
                if rng.below(4) != 0 {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        // One dominant token, everything else far below (weights underflow to 0).
        3 => {
            let i = rng.below(n);
            v[i] += 200.0;
        }
        // All equal.
        4 => v.iter_mut().for_each(|x| *x = 1.5),
        // Signed zeros and tiny values.
        5 => v.iter_mut().for_each(|x| *x = if rng.below(3) == 0 { -0.0 } else { *x * 1e-6 }),
        _ => {}
    }
    v
}

fn sampler(rng: &mut Rng, n: usize) -> SamplerConfig {
    SamplerConfig {
        do_sample: rng.below(5) != 0,
        temperature: rng.pick(&[1.0, 0.9, 0.7, 1.3, 0.05, 3.0]),
        top_k: rng.pick(&[0, 1, 2, 50, 50, 50, n - 1, n, n + 5]),
        top_p: rng.pick(&[1.0, 1.0, 0.9, 0.5, 0.1, 1e-6, 0.999]),
    }
}

fn mk_sampler(s: &SamplerConfig) -> MkSampler {
    MkSampler {
        do_sample: i32::from(s.do_sample),
        temperature: s.temperature,
        top_k: s.top_k as i32,
        top_p: s.top_p,
        top_p_cut: top_p_cut(s.top_p),
        pad: 0,
    }
}

/// The device sampler picks the host sampler's code on thousands of random vectors and
/// settings (talker chain with penalty, EOS masking and suppression; code-predictor chain;
/// greedy and sampling; top-k and top-p on and off), with the uniform from the same Philox
/// coordinates on both sides.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn device_sampler_matches_host_sampler() {
    let b = CudaBackend::new(0).expect("CUDA device 0");
    let mut rng = Rng(0x5eed_0001);
    let mut total = 0;
    let mut mismatches = Vec::new();
    for batch in 0..4 {
        let mut cases = Vec::new();
        let mut host = Vec::new();
        for _ in 0..1000 {
            let talker = rng.below(2) == 0;
            let n = if talker { rng.pick(&[3072, 3072, 300, 64]) } else { rng.pick(&[2048, 2048, 17, 256]) };
            let scores = logits(&mut rng, n);
            let s = sampler(&mut rng, n);
            let (seed, frame, slot) = (rng.next(), rng.below(5000) as u32, rng.below(16) as u32);
            let uniform = Philox::new(seed).uniform(frame, slot);
            let mut case = MkSampleCase {
                cp: mk_sampler(&s),
                n: n as i32,
                is_talker: i32::from(talker),
                frame: frame as i32,
                slot: slot as i32,
                seed_lo: seed as u32,
                seed_hi: (seed >> 32) as u32,
                ..Default::default()
            };
            let mut seen = vec![0u32; n.div_ceil(32)];
            let want = if talker {
                let generated: Vec<u32> = (0..rng.below(40)).map(|_| rng.below(n) as u32).collect();
                for &id in &generated {
                    seen[id as usize / 32] |= 1 << (id % 32);
                }
                let eos = rng.below(n) as u32;
                let start = rng.pick(&[n.saturating_sub(n / 3), n, 0]) as u32;
                let cfg = TalkerSamplerConfig {
                    sampler: s,
                    repetition_penalty: rng.pick(&[1.0, 1.05, 1.5, 0.8]),
                    min_new_tokens: rng.pick(&[0, 2, 1000]),
                    eos_token: eos,
                    suppress: start..n as u32,
                };
                case.talker = MkTalkerSampler {
                    s: mk_sampler(&s),
                    penalty: cfg.repetition_penalty,
                    min_new_tokens: cfg.min_new_tokens as i32,
                    eos: eos as i32,
                    suppress_start: start as i32,
                    suppress_end: n as i32,
                    pad: 0,
                };
                case.generated = generated.len() as i32;
                // Duplicates in the history count once, as on the host.
                sample_talker(&mut scores.clone(), &generated, &cfg, uniform)
            } else {
                sample_code_predictor(&mut scores.clone(), &s, uniform)
            };
            cases.push((case, scores, seen));
            host.push((want, talker, s));
        }
        let got = FrameKernel::sample_cases(b.device(), &cases).expect("sampler launch");
        for (i, (g, (w, talker, s))) in got.iter().zip(&host).enumerate() {
            total += 1;
            if g != w {
                mismatches.push(format!("batch {batch} case {i}: device {g}, host {w} (talker {talker}, {s:?}, n {})", cases[i].0.n));
            }
        }
    }
    eprintln!("device sampler: {total} cases, {} mismatches", mismatches.len());
    assert!(mismatches.is_empty(), "{} of {total} picks differ:\n{}", mismatches.len(), mismatches[..mismatches.len().min(20)].join("\n"));
}

#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn greedy_codes_match_the_official_goldens() {
    check_base_goldens(&load("tiny-base"));
    check_customvoice_goldens(&load("tiny-customvoice"));
}

fn sampled(model: &Model, seed: u64, frames: usize) -> qwentts::GeneratedCodes {
    let mut options = GenerateOptions::defaults(model);
    options.language = "english".into();
    options.seed = Some(seed);
    options.max_frames = Some(frames);
    model
        .generate_codes(&base_voice(true), "Hello world, this is a short test of the speech model.", &options, None)
        .unwrap()
}

/// The same seed gives bit-identical codes on every run and from concurrent threads; the
/// seed matters. With the official sampling settings, EOS may end a run early.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn seeded_sampling_is_reproducible() {
    let model = load("tiny-base");
    let reference = sampled(&model, 1234, 40);
    assert!(!reference.codes.is_empty());
    // Codes and finish (the prefill reports differ: the first run filled the voice prefix cache).
    let same = |a: &qwentts::GeneratedCodes| (a.codes.clone(), a.finish);
    assert_eq!(same(&sampled(&model, 1234, 40)), same(&reference), "second run, same seed");
    assert_ne!(sampled(&model, 1235, 40).codes, reference.codes, "a different seed gave the same codes");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| (0..3).map(|_| sampled(&model, 1234, 40)).collect::<Vec<_>>())).collect();
        for h in handles {
            for codes in h.join().unwrap() {
                assert_eq!(same(&codes), same(&reference), "a concurrent request differs from the lone one");
            }
        }
    });
}

/// The callback sees every frame in order and stops the run; the codes end with the frame
/// whose callback returned false; the next request on the model is unaffected.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn the_frame_callback_sees_every_frame_and_can_abort() {
    let model = load("tiny-base");
    let mut options = GenerateOptions::defaults(&model).greedy();
    options.max_frames = Some(40);
    options.min_frames = Some(40);
    let full = model.generate_codes(&base_voice(true), "Hello there.", &options, None).unwrap();
    assert_eq!((full.frames(), full.finish), (40, FinishReason::FrameLimit));
    for stop_after in [0usize, 2, 17] {
        let mut seen = Vec::new();
        let mut sink = |i: usize, frame: &[u32]| {
            seen.push((i, frame.to_vec()));
            i < stop_after
        };
        let out = model.generate_codes(&base_voice(true), "Hello there.", &options, Some(&mut sink)).unwrap();
        assert_eq!(out.finish, FinishReason::Aborted);
        assert_eq!(out.frames(), stop_after + 1);
        assert_eq!(seen.len(), stop_after + 1);
        for (i, frame) in &seen {
            assert_eq!(&frame[..], out.frame(*i));
            assert_eq!(&frame[..], full.frame(*i), "greedy frames are the uninterrupted run's");
        }
    }
    let again = model.generate_codes(&base_voice(true), "Hello there.", &options, None).unwrap();
    assert_eq!((again.codes, again.finish), (full.codes, full.finish), "a request after an abort");
}

/// Streaming audio from the megakernel: chunks arrive, concatenate to the returned audio, and
/// an abort in the chunk callback ends the call.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn streaming_chunks_and_abort() {
    let model = load("tiny-base");
    let mut options = GenerateOptions::defaults(&model).greedy();
    options.max_frames = Some(12);
    options.min_frames = Some(12);
    options.chunk_frames = 3;
    options.first_chunk_frames = None; // every chunk 3 frames
    let mut chunks = Vec::new();
    let mut on_chunk = |c: &qwentts::AudioChunk<'_>| {
        chunks.push(c.samples.to_vec());
        true
    };
    let audio = model.generate(&base_voice(false), "Streaming from the GPU.", &options, Some(&mut on_chunk)).unwrap();
    assert_eq!(audio.frames, 12);
    assert!(chunks.len() >= 4, "{} chunks for 12 frames of 3", chunks.len());
    let joined: Vec<f32> = chunks.concat();
    assert_eq!(joined, audio.samples, "chunks concatenate to the returned audio");

    let mut calls = 0;
    let mut stop = |_: &qwentts::AudioChunk<'_>| {
        calls += 1;
        false
    };
    let audio = model.generate(&base_voice(false), "Streaming from the GPU.", &options, Some(&mut stop)).unwrap();
    assert_eq!(calls, 1);
    assert_eq!(audio.finish, FinishReason::Aborted);
    assert_eq!(audio.frames, 3, "the abort at the first chunk (3 frames) stops the run there");
}

/// No host wait per frame: the waits a request makes (reading the prefill's logits, the end
/// of the request, freeing its buffers) are the same for 8 frames and for 64.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn host_waits_do_not_grow_with_frames() {
    let model = load("tiny-base");
    let waits = |frames: usize| {
        let mut options = GenerateOptions::defaults(&model);
        options.seed = Some(5);
        options.max_frames = Some(frames);
        options.min_frames = Some(frames);
        let before = host_waits();
        let out = model.generate_codes(&base_voice(false), "Count the waits.", &options, None).unwrap();
        assert_eq!(out.frames(), frames);
        host_waits() - before
    };
    waits(4); // warm-up: pooled buffers exist from here on
    let (short, long) = (waits(8), waits(64));
    eprintln!("host waits per request: {short} for 8 frames, {long} for 64 frames");
    assert_eq!(short, long, "host waits grow with the frame count");
    assert!(short <= 4, "{short} waits for one request");
}

/// The voice prefix cache on the GPU: a prefix made by a short text and hit by a long one
/// gives the long text's own codes from a fresh cache (greedy, every code). The long text has
/// over 64 distinct text ids, so a projection batch shared between the prefix rows and the
/// text would have run another GEMM split than the short text's and changed the prefix's
/// vectors; the prefix rows' ids are projected on their own.
#[test]
#[ignore = "needs a CUDA GPU: tools/device/run.sh runs it with --include-ignored"]
fn a_prefix_made_by_one_text_serves_another_exactly() {
    const LONG: &str = "Morning fog rolled across quiet harbors while seven fishermen mended torn nets, \
        counting silver herring, arguing about weather, tides, prices, boats, engines, debts, \
        daughters, weddings, storms and lighthouses. Meanwhile, a curious child named Elsa \
        collected bright pebbles, feathers, broken shells, rusty keys, glass marbles and tiny \
        crabs beneath wooden piers; her grandmother knitted woolen scarves, hummed forgotten \
        melodies, brewed bitter coffee, and remembered distant summers.";
    let model = load("tiny-base");
    let voice = base_voice(true);
    let mut options = GenerateOptions::defaults(&model).greedy();
    options.language = "english".into();
    options.max_frames = Some(24);
    options.min_frames = Some(24);
    let short = model.generate_codes(&voice, "Hi there.", &options, None).unwrap();
    assert_eq!(short.prefill.reused_rows, 0);
    let hit = model.generate_codes(&voice, LONG, &options, None).unwrap();
    assert!(hit.prefill.reused_rows > 0, "{:?}", hit.prefill);
    let fresh = load("tiny-base");
    let own = fresh.generate_codes(&voice, LONG, &options, None).unwrap();
    assert_eq!(own.prefill.reused_rows, 0);
    let distinct = {
        let mut ids = model.tokenizer().encode(LONG).unwrap();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    assert!(distinct > 64, "the long text has only {distinct} distinct ids");
    assert_eq!((hit.codes, hit.finish), (own.codes, own.finish), "a hit from another text's prefix");
}
