//! The voice prefix cache (src/model/prefix_cache.rs) through the public API on the tiny Base
//! checkpoint: what a hit reuses, that codes never depend on a hit, what makes a new prefix,
//! the byte budget, and concurrent requests.

mod common;

use common::checkpoint_dir;
use common::generation::base_voice;
use qwentts::backend::Backend;
use qwentts::backend::cpu::CpuBackend;
use qwentts::model::Checkpoint;
use qwentts::model::code_predictor::CodePredictor;
use qwentts::model::prefix_cache::{PrefillReport, PrefillSplit, PrefixCache, prefill};
use qwentts::model::prompt::{self, PromptEmbeds, PromptRequest, SpecialIds, VoiceData, plan_request, ref_text};
use qwentts::model::talker::Talker;
use qwentts::text::TextTokenizer;
use qwentts::{FinishReason, GenerateOptions, LoadOptions, Model, Voice};

fn load(prefix_cache_bytes: Option<usize>) -> Model {
    let options = LoadOptions { threads: Some(1), prefix_cache_bytes, ..Default::default() };
    Model::load(checkpoint_dir("tiny-base"), &options).unwrap()
}

fn options(model: &Model, language: &str, seed: u64) -> GenerateOptions {
    let mut o = GenerateOptions::defaults(model);
    o.language = language.into();
    o.seed = Some(seed);
    o.max_frames = Some(12);
    o
}

const TEXT: &str = "The cache keeps what the voice alone decides.";

/// Rows of an English ICL prefix: 3 role rows, 6 control rows (think tags, language, the
/// x-vector, codec_pad) and one per reference-transcript token.
fn icl_prefix_rows(model: &Model) -> usize {
    let transcript = common::cases()["speaker"]["ref_text"].as_str().unwrap().to_owned();
    let ids = model.tokenizer().encode(&ref_text(&transcript)).unwrap();
    9 + ids.len() - 5
}

#[test]
fn a_hit_reuses_the_voice_prefix_and_gives_the_codes_of_the_miss() {
    let model = load(None);
    let voice = base_voice(true);
    let stats = || model.prefix_cache_stats().expect("the cache is on by default");
    assert_eq!((stats().entries, stats().hits, stats().misses), (0, 0, 0));
    assert_eq!(stats().budget, 64 << 20);

    let miss = model.generate(&voice, TEXT, &options(&model, "english", 5), None).unwrap();
    assert_eq!(miss.timings.reused_prompt_rows, 0);
    assert_eq!((stats().entries, stats().hits, stats().misses), (1, 0, 1));
    assert!(stats().bytes > 0);

    let hit = model.generate(&voice, TEXT, &options(&model, "english", 5), None).unwrap();
    let prefix = icl_prefix_rows(&model);
    assert_eq!(hit.timings.reused_prompt_rows, prefix);
    assert_eq!(hit.timings.prompt_rows, miss.timings.prompt_rows);
    assert!(prefix < hit.timings.prompt_rows);
    assert_eq!((stats().entries, stats().hits, stats().misses), (1, 1, 1));
    assert_eq!(hit.codes, miss.codes, "seeded sampling: same codes on a hit");
    assert_eq!(hit.samples, miss.samples, "and the same audio");

    // Another text in the same voice and language reuses the prefix, with the codes that
    // text gets from a fresh cache (its own miss); another language or voice does not.
    let other = model.generate(&voice, "Something else entirely.", &options(&model, "english", 5), None).unwrap();
    assert_eq!(other.timings.reused_prompt_rows, prefix);
    let fresh = load(None);
    let own_miss = fresh.generate(&voice, "Something else entirely.", &options(&fresh, "english", 5), None).unwrap();
    assert_eq!(own_miss.timings.reused_prompt_rows, 0);
    assert_eq!(other.codes, own_miss.codes, "a prefix made by another text gives this text's own codes");
    assert_eq!(other.samples, own_miss.samples);
    let german = model.generate(&voice, TEXT, &options(&model, "german", 5), None).unwrap();
    assert_eq!(german.timings.reused_prompt_rows, 0);
    let xvector = model.generate(&base_voice(false), TEXT, &options(&model, "english", 5), None).unwrap();
    assert_eq!(xvector.timings.reused_prompt_rows, 0);
    assert_eq!((stats().entries, stats().hits, stats().misses), (3, 2, 3));

    // The same codes as a model without the cache (one-pass prefill; f32 rounding aside,
    // which does not move these codes).
    let plain = load(Some(0));
    assert_eq!(plain.prefix_cache_stats(), None);
    let uncached = plain.generate(&voice, TEXT, &options(&plain, "english", 5), None).unwrap();
    assert_eq!(uncached.timings.reused_prompt_rows, 0);
    assert_eq!(uncached.codes, miss.codes);

    model.clear_prefix_cache();
    assert_eq!((stats().entries, stats().bytes, stats().hits), (0, 0, 2));
    let after = model.generate(&voice, TEXT, &options(&model, "english", 5), None).unwrap();
    assert_eq!(after.timings.reused_prompt_rows, 0, "cleared: a miss again");
    assert_eq!(after.codes, miss.codes);
}

/// A voice differs from another in any value its prefix holds: one bit of the x-vector, or one
/// code of a reference frame inside the prefix.
#[test]
fn a_prefix_is_keyed_by_every_value_it_holds() {
    let model = load(None);
    let voice = base_voice(true);
    let (embedding, reference) = (voice.embedding().unwrap().to_vec(), voice.reference().unwrap().clone());
    let o = options(&model, "english", 9);
    model.generate_codes(&voice, TEXT, &o, None).unwrap();

    let mut nudged = embedding.clone();
    nudged[3] = f32::from_bits(nudged[3].to_bits() ^ 1);
    let other = Voice::with_reference(nudged, reference.codes.clone(), reference.text.clone()).unwrap();
    assert_eq!(model.generate_codes(&other, TEXT, &o, None).unwrap().prefill.reused_rows, 0, "x-vector bit");

    let mut codes = reference.codes.clone();
    codes[0] = (codes[0] + 1) % 2048; // frame 0 is inside the prefix (it follows codec_bos)
    let other = Voice::with_reference(embedding.clone(), codes, reference.text.clone()).unwrap();
    assert_eq!(model.generate_codes(&other, TEXT, &o, None).unwrap().prefill.reused_rows, 0, "reference code");

    let same = Voice::with_reference(embedding, reference.codes.clone(), reference.text.clone()).unwrap();
    assert!(model.generate_codes(&same, TEXT, &o, None).unwrap().prefill.reused_rows > 0, "an equal voice hits");
}

/// The budget bounds the bytes held; the least recently used prefix goes first; a budget
/// smaller than one prefix holds nothing and changes nothing else.
#[test]
fn the_byte_budget_evicts_the_least_recently_used_prefix() {
    let probe = load(None);
    let o = options(&probe, "english", 3);
    let voice = |k: u32| {
        let mut e = base_voice(false).embedding().unwrap().to_vec();
        e[0] += k as f32 * 0.01;
        Voice::from_embedding(e).unwrap()
    };
    probe.generate_codes(&voice(0), TEXT, &o, None).unwrap();
    let one = probe.prefix_cache_stats().unwrap().bytes;

    let model = load(Some(2 * one));
    let reused = |k| model.generate_codes(&voice(k), TEXT, &o, None).unwrap().prefill.reused_rows;
    assert_eq!(reused(0), 0);
    assert_eq!(reused(1), 0);
    assert!(reused(0) > 0, "both fit");
    assert_eq!(reused(2), 0, "evicts voice 1, the least recently used");
    let stats = model.prefix_cache_stats().unwrap();
    assert_eq!((stats.entries, stats.bytes), (2, 2 * one));
    assert!(reused(0) > 0, "voice 0 stayed");
    assert_eq!(reused(1), 0, "voice 1 was evicted");

    let tiny = load(Some(one - 1));
    let a = tiny.generate_codes(&voice(0), TEXT, &o, None).unwrap();
    let b = tiny.generate_codes(&voice(0), TEXT, &o, None).unwrap();
    assert_eq!((a.prefill.reused_rows, b.prefill.reused_rows), (0, 0));
    let stats = tiny.prefix_cache_stats().unwrap();
    assert_eq!((stats.entries, stats.hits, stats.misses), (0, 0, 0), "no split: the cache is not even asked");
    assert_eq!(a.codes, b.codes);
}

/// Requests from many threads at once on one voice: the misses race to fill the cache, the
/// hits copy from it, and every request gets the lone request's codes.
#[test]
fn concurrent_requests_share_prefixes_without_changing_codes() {
    let model = load(None);
    let voice = base_voice(true);
    let o = options(&model, "english", 11);
    let plain = load(Some(0));
    let alone = plain.generate_codes(&voice, TEXT, &options(&plain, "english", 11), None).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..6).map(|_| s.spawn(|| model.generate_codes(&voice, TEXT, &o, None).unwrap())).collect();
        for h in handles {
            assert_eq!(h.join().unwrap().codes, alone.codes);
        }
    });
    let stats = model.prefix_cache_stats().unwrap();
    assert_eq!(stats.hits + stats.misses, 6);
    assert_eq!(stats.entries, 1, "racing misses keep one entry");
}

/// A request stopped before its first frame (the abort hook during the prefill, after the
/// prefix's forward) leaves no entry behind, and the next request is unaffected.
#[test]
fn a_prefill_stopped_midway_publishes_nothing() {
    let model = load(None);
    let voice = base_voice(true);
    let o = options(&model, "english", 2);
    let mut polls = 0;
    // Poll 1 comes before the prefill, then one per layer: the tiny talker's 2 layers of the
    // prefix's forward, then the first layer of the rest.
    let mut stop = || {
        polls += 1;
        polls == 4
    };
    let hooks = qwentts::GenerateHooks { should_abort: Some(&mut stop), ..Default::default() };
    let stopped = model.generate_with(&voice, TEXT, &o, hooks).unwrap();
    assert_eq!(stopped.finish, FinishReason::Aborted);
    assert_eq!(polls, 4);
    assert_eq!(model.prefix_cache_stats().unwrap().entries, 0);
    let next = model.generate_codes(&voice, TEXT, &o, None).unwrap();
    assert_eq!(next.prefill.reused_rows, 0);
    assert_eq!(model.prefix_cache_stats().unwrap().entries, 1);
}

/// Below the API: the prefill itself. Text B hitting a prefix that text A's request made leaves
/// exactly what B's own miss (on a fresh cache) leaves: the last row's logits and hidden state
/// and every cached key and value, to the bit.
#[test]
fn a_hit_leaves_the_bits_of_its_own_miss() {
    let dir = checkpoint_dir("tiny-base");
    let b = CpuBackend::new(2);
    let ckpt = Checkpoint::open(&dir).unwrap();
    let cfg = &ckpt.config.talker_config;
    let talker = Talker::load(&b, &ckpt.weights, cfg).unwrap();
    let predictor = CodePredictor::load(&b, &ckpt.weights, cfg).unwrap();
    let tokenizer = TextTokenizer::from_dir(&dir).unwrap();
    let ids = SpecialIds::from_config(&ckpt.config);
    let voice = base_voice(true);
    let reference = voice.reference().unwrap();
    let groups = cfg.num_code_groups;
    let data = VoiceData { speaker_vector: voice.embedding(), ref_codes: Some(&reference.codes) };

    // (logits, last hidden, keys and values of every layer, report) of one request's prefill.
    let run = |cache: &PrefixCache<CpuBackend>, text: &str| {
        let icl = prompt::Voice::Icl { ref_text: &reference.text, ref_frames: reference.codes.len() / groups };
        let req = PromptRequest { text, language: "english", voice: icl, non_streaming_mode: false };
        let (plan, _) = plan_request(&ckpt.config, &tokenizer, &req).unwrap();
        let split = PrefillSplit::decide(Some(cache), &talker, &plan, data, groups);
        let mut s = b.new_stream().unwrap();
        let mut embeds =
            PromptEmbeds::materialize(&b, &mut s, &talker, &predictor, &ids, &plan, data, split.prefix_rows()).unwrap();
        let mut st = talker.new_state(&b, plan.len() + 4).unwrap();
        let report = prefill(&b, &mut s, &talker, &mut st, &mut embeds, split, None).unwrap();
        let kv = st.kv();
        let width = kv.row_len() * kv.len();
        let cached: Vec<Vec<f32>> =
            (0..kv.layers()).flat_map(|l| [kv.layer(l).0[..width].to_vec(), kv.layer(l).1[..width].to_vec()]).collect();
        (st.logits().to_vec(), st.last_hidden().clone(), cached, report)
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();

    let shared = PrefixCache::new(64 << 20);
    let (.., made) = run(&shared, "The first line makes the prefix.");
    assert_eq!(made.reused_rows, 0);
    let (logits, hidden, kv, hit) = run(&shared, "A second line, longer than the first one, reuses it.");
    assert!(hit.reused_rows > 0, "{hit:?}");

    let (own_logits, own_hidden, own_kv, miss) =
        run(&PrefixCache::new(64 << 20), "A second line, longer than the first one, reuses it.");
    assert_eq!(miss, PrefillReport { rows: hit.rows, reused_rows: 0 });
    assert_eq!(bits(&logits), bits(&own_logits), "logits");
    assert_eq!(bits(&hidden), bits(&own_hidden), "last hidden state");
    assert_eq!(kv.len(), own_kv.len());
    for (i, (a, b)) in kv.iter().zip(&own_kv).enumerate() {
        assert_eq!(bits(a), bits(b), "layer {} {}", i / 2, if i % 2 == 0 { "keys" } else { "values" });
    }
}
