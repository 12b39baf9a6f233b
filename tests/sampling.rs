//! Sampling chains, the draw, the Philox RNG and the frame budget.
//!
//! Processor semantics are checked against transformers' own classes through
//! tests/fixtures/sampling/processors.json (tools/fixtures/make_sampling_golden.py), Philox
//! against the Random123 known answers and an independent Python implementation
//! (tests/fixtures/sampling/philox.json).

use std::collections::BTreeMap;
use std::path::PathBuf;

use qwentts::error::ErrorKind;
use qwentts::model::frame_budget::{FRAME_BUDGET_BASE, FRAME_BUDGET_PER_TOKEN, default_frame_budget};
use qwentts::model::rng::Philox;
use qwentts::model::sampling::{
    self, SamplerConfig, TalkerSamplerConfig, argmax, canonical_exp, draw, process_code_predictor, process_talker,
    sample_code_predictor, sample_talker,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sampling").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// f32 vector with null = −inf (the generator writes shortest round-trip decimals, so the
/// f64 → f32 conversion is exact).
fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| if x.is_null() { f32::NEG_INFINITY } else { x.as_f64().unwrap() as f32 })
        .collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn sampler_cfg(c: &Value) -> SamplerConfig {
    SamplerConfig {
        do_sample: c["do_sample"].as_bool().unwrap(),
        temperature: c["temperature"].as_f64().unwrap() as f32,
        top_k: c["top_k"].as_u64().unwrap() as usize,
        top_p: c["top_p"].as_f64().unwrap() as f32,
    }
}

fn talker_cfg(c: &Value) -> TalkerSamplerConfig {
    let suppress = u32s(&c["suppress"]);
    TalkerSamplerConfig {
        sampler: sampler_cfg(c),
        repetition_penalty: c["repetition_penalty"].as_f64().unwrap() as f32,
        min_new_tokens: c["min_new_tokens"].as_u64().unwrap() as usize,
        eos_token: c["eos_token"].as_u64().unwrap() as u32,
        suppress: suppress[0]..suppress[1],
    }
}

/// The official defaults on a small vocabulary: ids 24..32 suppressed except EOS 26.
fn small_talker(do_sample: bool) -> TalkerSamplerConfig {
    TalkerSamplerConfig {
        sampler: SamplerConfig { do_sample, temperature: 0.9, top_k: 50, top_p: 1.0 },
        repetition_penalty: 1.05,
        min_new_tokens: 2,
        eos_token: 26,
        suppress: 24..32,
    }
}

// ---------------------------------------------------------------------------------------------
// Processor chains vs transformers
// ---------------------------------------------------------------------------------------------

#[test]
fn processors_match_transformers() {
    let fx = fixture("processors.json");
    let inputs: BTreeMap<String, Vec<f32>> =
        fx["inputs"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), f32s(v))).collect();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 19);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut scores = inputs[case["logits"].as_str().unwrap()].clone();
        let want = f32s(&case["scores"]);
        let generated = u32s(&case["generated"]);
        let cfg = &case["config"];
        let do_sample = cfg["do_sample"].as_bool().unwrap();
        let processed_pick;
        match case["kind"].as_str().unwrap() {
            "talker" => {
                let cfg = talker_cfg(cfg);
                process_talker(&mut scores, &generated, &cfg);
                let mut again = inputs[case["logits"].as_str().unwrap()].clone();
                processed_pick = sample_talker(&mut again, &generated, &cfg, 0.5);
                assert_eq!(again, scores, "{name}: sample_talker processes like process_talker");
            }
            "code_predictor" => {
                let cfg = sampler_cfg(cfg);
                process_code_predictor(&mut scores, &cfg);
                let mut again = inputs[case["logits"].as_str().unwrap()].clone();
                processed_pick = sample_code_predictor(&mut again, &cfg, 0.5);
                assert_eq!(again, scores, "{name}: sample_code_predictor processes like process_code_predictor");
            }
            kind => panic!("{name}: unknown kind {kind}"),
        }
        assert_eq!(scores.len(), want.len(), "{name}");
        for (i, (&got, &want)) in scores.iter().zip(&want).enumerate() {
            // Bit-exact: the same IEEE operations as torch's CPU kernels (the brief allowed 1e-6).
            assert!(
                got.to_bits() == want.to_bits(),
                "{name}: score {i} is {got:e} ({:#010x}), transformers gives {want:e} ({:#010x})",
                got.to_bits(),
                want.to_bits()
            );
        }
        let hf_argmax = case["argmax"].as_u64().unwrap() as u32;
        assert_eq!(argmax(&scores), hf_argmax, "{name}: argmax");
        if do_sample {
            // The draw stays on tokens transformers could sample and follows its probabilities.
            assert!(scores[processed_pick as usize].is_finite(), "{name}: drew a masked token");
            let probs = f32s(&case["probs"]);
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let weights: Vec<f64> = scores.iter().map(|&s| f64::from(canonical_exp(s - max))).collect();
            let total: f64 = weights.iter().sum();
            for (i, (w, p)) in weights.iter().zip(&probs).enumerate() {
                assert!((w / total - f64::from(*p)).abs() < 1e-6, "{name}: probability of {i}: {} vs {p}", w / total);
            }
        } else {
            assert_eq!(processed_pick, hf_argmax, "{name}: greedy pick");
        }
    }
}

#[test]
fn fixture_chains_are_the_official_ones() {
    // The processor lists recorded from transformers show what the chain must contain.
    let fx = fixture("processors.json");
    let case = |n: &str| fx["cases"].as_array().unwrap().iter().find(|c| c["name"] == n).unwrap().clone();
    let names = |c: &Value| -> Vec<String> {
        c["processors"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        names(&case("talker_defaults_3072")),
        [
            "RepetitionPenaltyLogitsProcessor",
            "MinLengthLogitsProcessor",
            "MinNewTokensLengthLogitsProcessor",
            "SuppressTokensLogitsProcessor",
            "TemperatureLogitsWarper",
            "TopKLogitsWarper"
        ]
    );
    assert_eq!(names(&case("cp_greedy_2048")), Vec::<String>::new());
    assert_eq!(names(&case("cp_topk_topp_2048")), ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"]);
}

// ---------------------------------------------------------------------------------------------
// Picks
// ---------------------------------------------------------------------------------------------

#[test]
fn greedy_ignores_uniform_and_takes_first_maximum() {
    let logits = [0.5f32, 2.0, -1.0, 2.0, 1.0];
    let cfg = SamplerConfig::greedy();
    for u in [0.0, 0.25, 0.5, 0.999_999_94] {
        assert_eq!(sample_code_predictor(&mut logits.clone(), &cfg, u), 1);
    }
    // Greedy still applies the talker's penalty: 1 was generated, so 3 wins the tie.
    let talker = small_talker(false);
    let mut l = vec![0.0f32; 32];
    l[1] = 2.0;
    l[3] = 2.0;
    for u in [0.0, 0.7] {
        assert_eq!(sample_talker(&mut l.clone(), &[1, 5], &talker, u), 3);
    }
    assert_eq!(argmax(&[f32::NEG_INFINITY; 4]), 0);
}

#[test]
fn top_k_one_equals_greedy() {
    let philox = Philox::new(7);
    let values = Philox::new(99);
    for trial in 0..200u32 {
        let logits: Vec<f32> = (0..64).map(|i| (values.uniform(trial, i) - 0.5) * 20.0).collect();
        // With a tied maximum top-k = 1 keeps every tied token, so greedy and top-1 may differ.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(logits.iter().filter(|&&l| l == max).count(), 1);
        let greedy = sample_code_predictor(&mut logits.clone(), &SamplerConfig::greedy(), 0.0);
        let k1 = SamplerConfig { do_sample: true, temperature: 0.9, top_k: 1, top_p: 1.0 };
        for slot in 0..4 {
            assert_eq!(sample_code_predictor(&mut logits.clone(), &k1, philox.uniform(trial, slot)), greedy);
        }
    }
}

#[test]
fn eos_never_before_min_new_tokens_and_suppressed_never() {
    let philox = Philox::new(2024);
    let mut cfg = small_talker(true);
    cfg.sampler.top_k = 0;
    cfg.sampler.temperature = 1.5;
    // EOS and the suppressed ids dominate the raw logits.
    let mut logits = vec![0.0f32; 32];
    for (i, l) in logits.iter_mut().enumerate().skip(24) {
        *l = 12.0 + i as f32;
    }
    let mut eos_after_min = 0;
    for frame in 0..2000u32 {
        for len in 0..4usize {
            let generated: Vec<u32> = (0..len as u32).collect();
            let id = sample_talker(&mut logits.clone(), &generated, &cfg, philox.uniform(frame, len as u32));
            assert!(!(24..32).contains(&id) || id == 26, "suppressed id {id} drawn");
            if len < 2 {
                assert_ne!(id, 26, "EOS drawn after {len} tokens");
            } else if id == 26 {
                eos_after_min += 1;
            }
        }
    }
    // Once allowed, EOS (by far the largest surviving logit) is what gets drawn.
    assert!(eos_after_min > 3900, "EOS drawn {eos_after_min} times of 4000");
    // Greedy obeys the same masks (ids 0..24 tie at 0: the first wins).
    let greedy = small_talker(false);
    assert_eq!(sample_talker(&mut logits.clone(), &[], &greedy, 0.0), 0);
    assert_eq!(sample_talker(&mut logits.clone(), &[3, 4], &greedy, 0.0), 26);
}

#[test]
fn draw_frequencies_follow_the_distribution() {
    // softmax([ln 1, ln 2, ln 3, ln 4, -inf, ln 10]) = [1, 2, 3, 4, 0, 10] / 20.
    let logits: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0, 0.0, 10.0]
        .iter()
        .map(|&w| if w == 0.0 { f32::NEG_INFINITY } else { w.ln() })
        .collect();
    let expected = [0.05, 0.10, 0.15, 0.20, 0.0, 0.50];
    let philox = Philox::new(0x5eed);
    let n = 200_000u32;
    let mut counts = [0u32; 6];
    for i in 0..n {
        // Spread over many (frame, slot) counters, as generation does.
        counts[draw(&logits, philox.uniform(i / 16, i % 16)) as usize] += 1;
    }
    assert_eq!(counts[4], 0, "zero-probability id drawn");
    let mut chi2 = 0.0;
    for (c, p) in counts.iter().zip(expected) {
        if p > 0.0 {
            let e = p * f64::from(n);
            // 5 standard deviations.
            assert!((f64::from(*c) - e).abs() < 5.0 * (e * (1.0 - p)).sqrt(), "counts {counts:?}");
            chi2 += (f64::from(*c) - e).powi(2) / e;
        }
    }
    // 4 degrees of freedom: P(chi2 > 23.5) ≈ 1e-4.
    assert!(chi2 < 23.5, "chi2 {chi2} counts {counts:?}");
}

#[test]
fn draw_is_inverse_cdf_in_id_order() {
    // Weights 1, 1, 2 (total 4): [0, .25) -> 0, [.25, .5) -> 1, [.5, 1) -> 2.
    let l = [0.0f32, 0.0, std::f32::consts::LN_2];
    assert_eq!(canonical_exp(std::f32::consts::LN_2 - std::f32::consts::LN_2), 1.0);
    let cases = [(0.0, 0), (0.2, 0), (0.25, 1), (0.49, 1), (0.5, 2), (0.99, 2)];
    for (u, want) in cases {
        assert_eq!(draw(&l, u), want, "u = {u}");
    }
    // Zero-weight ids are skipped even at u = 0, and the rounding guard returns the last
    // non-zero id when uniform * total rounds up to the total.
    let l = [f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY];
    assert_eq!(draw(&l, 0.0), 1);
    assert_eq!(draw(&l, 1.0), 3);
    assert_eq!(draw(&l, 0.999_999_94), 3);
    // Everything masked: fall back to argmax rather than panic.
    assert_eq!(draw(&[f32::NEG_INFINITY; 3], 0.3), 0);
}

#[test]
fn sampling_is_reproducible_per_seed() {
    let logits: Vec<f32> = (0..2048).map(|i| ((i * 37 % 101) as f32 - 50.0) / 8.0).collect();
    let cfg = SamplerConfig { do_sample: true, temperature: 0.9, top_k: 50, top_p: 1.0 };
    let run = |seed: u64| -> Vec<u32> {
        let p = Philox::new(seed);
        (0..64u32)
            .flat_map(|f| (1..16u32).map(move |s| (f, s)))
            .map(|(f, s)| sample_code_predictor(&mut logits.clone(), &cfg, p.uniform(f, s)))
            .collect()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn validation_messages() {
    let ok = SamplerConfig { do_sample: true, temperature: 0.9, top_k: 50, top_p: 1.0 };
    ok.validate().unwrap();
    for bad in [
        SamplerConfig { temperature: 0.0, ..ok },
        SamplerConfig { temperature: -1.0, ..ok },
        SamplerConfig { temperature: f32::NAN, ..ok },
        SamplerConfig { temperature: f32::INFINITY, ..ok },
        SamplerConfig { top_p: 0.0, ..ok },
        SamplerConfig { top_p: 1.5, ..ok },
        SamplerConfig { top_p: f32::NAN, ..ok },
    ] {
        let err = bad.validate().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("temperature") || err.message().contains("top_p"), "{}", err.message());
    }
    // Greedy ignores the warper settings, as transformers does.
    SamplerConfig { do_sample: false, temperature: 0.0, top_k: 0, top_p: 0.0 }.validate().unwrap();
    let mut t = small_talker(true);
    t.validate().unwrap();
    t.repetition_penalty = 0.0;
    assert!(t.validate().unwrap_err().message().contains("repetition_penalty"));
}

#[test]
fn official_configs_from_a_checkpoint() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-base");
    let model = qwentts::model::ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let generation = qwentts::model::GenerationConfig::from_file(&dir.join("generation_config.json")).unwrap();
    let talker = TalkerSamplerConfig::new(&generation, &model.talker_config);
    assert_eq!(
        talker,
        TalkerSamplerConfig {
            sampler: SamplerConfig { do_sample: true, temperature: 0.9, top_k: 50, top_p: 1.0 },
            repetition_penalty: 1.05,
            min_new_tokens: 2,
            eos_token: 2150,
            suppress: 2048..3072,
        }
    );
    talker.validate().unwrap();
    let cp = SamplerConfig::code_predictor(&generation);
    assert_eq!(cp, SamplerConfig { do_sample: true, temperature: 0.9, top_k: 50, top_p: 1.0 });
    assert_eq!((sampling::TALKER_MIN_NEW_TOKENS, sampling::TALKER_SUPPRESSED_TAIL), (2, 1024));
}

// ---------------------------------------------------------------------------------------------
// Philox
// ---------------------------------------------------------------------------------------------

#[test]
fn philox_matches_random123_and_python() {
    let fx = fixture("philox.json");
    for k in fx["kat"].as_array().unwrap() {
        let ctr = u32s(&k["counter"]);
        let key = u32s(&k["key"]);
        let seed = u64::from(key[0]) | u64::from(key[1]) << 32;
        let got = Philox::new(seed).block([ctr[0], ctr[1], ctr[2], ctr[3]]);
        assert_eq!(got.to_vec(), u32s(&k["expected"]));
    }
    let uniforms = fx["uniforms"].as_array().unwrap();
    assert_eq!(uniforms.len(), 30);
    for u in uniforms {
        let p = Philox::new(u["seed"].as_u64().unwrap());
        let (frame, slot) = (u["frame"].as_u64().unwrap() as u32, u["slot"].as_u64().unwrap() as u32);
        assert_eq!(p.block([frame, slot, 0, 0]).to_vec(), u32s(&u["block"]));
        assert_eq!(p.uniform(frame, slot), u["uniform"].as_f64().unwrap() as f32, "{u}");
    }
}

#[test]
fn philox_uniforms_are_in_range_and_distinct_per_draw() {
    let a = Philox::new(42);
    let b = Philox::new(43);
    let mut seen = std::collections::HashSet::new();
    let mut sum = 0f64;
    let n = 4096 * 16;
    for frame in 0..4096u32 {
        for slot in 0..16u32 {
            let u = a.uniform(frame, slot);
            assert!((0.0..1.0).contains(&u));
            sum += f64::from(u);
            seen.insert(u.to_bits());
            assert_eq!(u, Philox::new(42).uniform(frame, slot));
        }
        assert_ne!(a.block([frame, 0, 0, 0]), b.block([frame, 0, 0, 0]));
    }
    // 65536 draws of 2^24 values: ~128 birthday collisions expected; distinct streams give
    // nearly all distinct values.
    assert!(seen.len() > n - 400, "{} distinct of {n}", seen.len());
    let mean = sum / n as f64;
    assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    // (frame, slot) and (slot, frame) are different draws.
    assert_ne!(a.uniform(1, 2), a.uniform(2, 1));
    // Seed 0, frame 0, slot 0 is the all-zero Random123 vector: word 0 = 0x6627e8d5.
    assert_eq!(Philox::new(0).uniform(0, 0), (0x6627_e8d5u32 >> 8) as f32 / 16_777_216.0);
}

// ---------------------------------------------------------------------------------------------
// Frame budget
// ---------------------------------------------------------------------------------------------

#[test]
fn frame_budget_values() {
    assert_eq!((FRAME_BUDGET_BASE, FRAME_BUDGET_PER_TOKEN), (100, 20));
    assert_eq!(default_frame_budget(0, 8192), 100);
    assert_eq!(default_frame_budget(10, 8192), 300);
    assert_eq!(default_frame_budget(100, 8192), 2100);
    assert_eq!(default_frame_budget(404, 8192), 8180);
    assert_eq!(default_frame_budget(405, 8192), 8192);
    assert_eq!(default_frame_budget(usize::MAX, 8192), 8192);
    assert_eq!(default_frame_budget(usize::MAX, usize::MAX), usize::MAX);
    // The caller's cap wins, even below the base.
    assert_eq!(default_frame_budget(10, 50), 50);
    assert_eq!(default_frame_budget(0, 0), 0);
}

#[test]
fn frame_budget_is_monotonic_and_generous() {
    for cap in [0usize, 1, 99, 100, 2048, 8192] {
        let mut prev = 0;
        for tokens in 0..1000usize {
            let b = default_frame_budget(tokens, cap);
            assert!(b >= prev && b <= cap);
            assert!(b >= default_frame_budget(tokens, cap.saturating_sub(1)));
            // Unless capped: at least 8 s, and ~4x a Chinese speaking rate (~5.2 frames per token).
            assert!(b == cap || (b >= 100 && b as f64 >= 3.8 * 5.2 * tokens as f64));
            prev = b;
        }
    }
}
