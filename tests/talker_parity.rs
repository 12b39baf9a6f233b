//! Talker and code-predictor parity with qwen-tts 0.1.1 (fp32 eager reference).
//!
//! * `talker_tf_base`: the ICL prompt of case `icl_en` plus 6 decode rows, run as one
//!   prefill (every layer's residual stream, the final hidden states and the logits at every
//!   position), then incrementally (chunked prefill, then one row per frame), and with decode
//!   rows built by our own prompt/frame-embedding code instead of the golden rows.
//! * `code_predictor_tf`: 2 frames per model, logits of all 15 codebooks and the greedy
//!   codes; tiny-customvoice exercises `small_to_mtp_projection`.
//!
//! Tolerances: hidden states 1e-5, logits 1e-4 relative (‖a−b‖/‖b‖ per tensor or row).

mod common;

use common::{Golden, Worst, argmax, assert_close, cases, checkpoint_dir, diff};
use qwentts::backend::Backend;
use qwentts::backend::cpu::CpuBackend;
use qwentts::model::Checkpoint;
use qwentts::model::code_predictor::{CodePredictor, CodePredictorState};
use qwentts::model::prompt::{PromptEmbeds, PromptRequest, SpecialIds, Voice, VoiceData, plan_request};
use qwentts::model::talker::{Talker, TalkerState};
use qwentts::text::TextTokenizer;

const HIDDEN_TOL: f64 = 1e-5;
const LOGITS_TOL: f64 = 1e-4;

// Weights are shared between threads; per-request state moves between them.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Talker<CpuBackend>>();
    send_sync::<CodePredictor<CpuBackend>>();
    send::<TalkerState<CpuBackend>>();
    send::<CodePredictorState<CpuBackend>>();
};

struct Model {
    b: CpuBackend,
    ckpt: Checkpoint,
    talker: Talker<CpuBackend>,
    predictor: CodePredictor<CpuBackend>,
}

fn load(name: &str) -> Model {
    let dir = checkpoint_dir(name);
    let b = CpuBackend::new(1);
    let ckpt = Checkpoint::open(&dir).expect("open checkpoint");
    let talker = Talker::load(&b, &ckpt.weights, &ckpt.config.talker_config).expect("talker");
    let predictor = CodePredictor::load(&b, &ckpt.weights, &ckpt.config.talker_config).expect("code predictor");
    Model { b, ckpt, talker, predictor }
}

/// The teacher-forced talker golden: inputs, per-layer outputs, final hidden, logits.
struct TalkerGolden {
    inputs: common::Tensor<f32>,
    codes: common::Tensor<u32>,
    layers: common::Tensor<f32>,
    hidden: common::Tensor<f32>,
    logits: common::Tensor<f32>,
    prompt_len: usize,
    seq: usize,
}

fn talker_golden() -> TalkerGolden {
    let g = Golden::open("talker_tf_base");
    let meta = &cases()["talker_tf_base"];
    let inputs = g.f32("inputs_embeds");
    let seq = inputs.shape[0];
    assert_eq!(meta["seq_len"].as_u64().unwrap() as usize, seq);
    TalkerGolden {
        codes: g.u32("codes"),
        layers: g.f32("layer_outputs"),
        hidden: g.f32("final_hidden"),
        logits: g.f32("logits"),
        prompt_len: meta["prompt_len"].as_u64().unwrap() as usize,
        seq,
        inputs,
    }
}

#[test]
fn talker_full_prefill_matches_every_layer_and_position() {
    let m = load("tiny-base");
    let g = talker_golden();
    let (b, h, vocab) = (&m.b, m.talker.hidden_size(), m.talker.vocab_size());
    let mut s = b.new_stream().unwrap();
    let mut st = m.talker.new_state(b, 64).unwrap();
    let mut worst = Worst::default();
    assert_eq!(g.layers.shape[0], m.talker.dims().layers);

    // 1. The whole sequence as one prefill, observing the residual stream after each layer.
    let mut x = g.inputs.data.clone();
    let mut seen = 0;
    let mut observe = |s: &mut <CpuBackend as Backend>::Stream, layer: usize, x: &Vec<f32>| {
        let mut host = vec![0f32; g.seq * h];
        b.read(s, x, 0, &mut host)?;
        let d = assert_close(&format!("layer {layer} output"), &host, g.layers.index(layer), HIDDEN_TOL);
        worst.record("layer outputs", d);
        seen += 1;
        Ok(())
    };
    let last = m.talker.forward_observed(b, &mut s, &mut st, &mut x, g.seq, Some(&mut observe)).unwrap().to_vec();
    assert_eq!(seen, g.layers.shape[0], "the observer runs once per layer");
    assert_eq!(st.position(), g.seq);

    // 2. Final (post-norm) hidden states of every row.
    let mut hidden = vec![0f32; g.seq * h];
    b.read(&mut s, st.hidden(), 0, &mut hidden).unwrap();
    worst.record("final hidden", assert_close("final hidden", &hidden, &g.hidden.data, HIDDEN_TOL));

    // 3. Logits at every position (each row on its own), and the last row's from forward().
    let mut logits = vec![0f32; g.seq * vocab];
    m.talker.codec_logits(b, &mut s, st.hidden(), g.seq, &mut logits).unwrap();
    for p in 0..g.seq {
        let row = &logits[p * vocab..(p + 1) * vocab];
        worst.record("logits", assert_close(&format!("logits at {p}"), row, g.logits.index(p), LOGITS_TOL));
    }
    assert_close("forward() last-row logits", &last, g.logits.index(g.seq - 1), LOGITS_TOL);
    worst.report("talker, one prefill over 55 rows");
}

#[test]
fn talker_incremental_decode_matches_the_prefill_logits() {
    let m = load("tiny-base");
    let g = talker_golden();
    let (b, h) = (&m.b, m.talker.hidden_size());
    let mut s = b.new_stream().unwrap();
    let mut st = m.talker.new_state(b, g.seq).unwrap();
    let mut worst = Worst::default();
    let l = g.prompt_len;

    // 1. The prompt as a chunked prefill (positions 0..20, then 20..L): multi-row calls at a
    //    non-zero start position must agree with the single prefill.
    let mut chunk = g.inputs.rows(0, 20).to_vec();
    m.talker.forward(b, &mut s, &mut st, &mut chunk, 20).unwrap();
    let mut chunk = g.inputs.rows(20, l).to_vec();
    let logits = m.talker.forward(b, &mut s, &mut st, &mut chunk, l - 20).unwrap().to_vec();
    worst.record("logits", assert_close("prompt logits", &logits, g.logits.index(l - 1), LOGITS_TOL));

    // 2. One decode row per frame through the state's step input.
    for k in 0..g.seq - l {
        let mut last_hidden = vec![0f32; h];
        b.read(&mut s, st.last_hidden(), 0, &mut last_hidden).unwrap();
        let d = assert_close(&format!("hidden before step {k}"), &last_hidden, g.hidden.index(l - 1 + k), HIDDEN_TOL);
        worst.record("last hidden", d);

        b.write(&mut s, st.input_mut(), 0, g.inputs.index(l + k)).unwrap();
        let logits = m.talker.step(b, &mut s, &mut st).unwrap().to_vec();
        let d = assert_close(&format!("step {k} logits"), &logits, g.logits.index(l + k), LOGITS_TOL);
        worst.record("logits", d);
        assert_eq!(st.position(), l + k + 1);
    }

    // 3. The cache is full: one more row is a clean error and changes nothing.
    b.write(&mut s, st.input_mut(), 0, g.inputs.index(0)).unwrap();
    let err = m.talker.step(b, &mut s, &mut st).unwrap_err();
    assert!(err.message().contains("KV cache full"), "{err}");
    assert_eq!(st.position(), g.seq);
    worst.report("talker, incremental");
}

#[test]
fn own_prompt_and_decode_rows_reproduce_the_talker_golden() {
    let m = load("tiny-base");
    let g = talker_golden();
    let (b, h) = (&m.b, m.talker.hidden_size());
    let mut s = b.new_stream().unwrap();
    let mut worst = Worst::default();

    // 1. Our own prompt for case icl_en (= prompts_base icl_stream_en).
    let all = cases();
    let case = &all["prompts_base"]["icl_stream_en"];
    let speaker = Golden::open("speaker_base");
    let spk = speaker.f32("spk_embedding");
    let ref_codes = speaker.u32("ref_codes");
    let dir = checkpoint_dir("tiny-base");
    let tokenizer = TextTokenizer::from_dir(&dir).unwrap();
    let req = PromptRequest {
        text: case["text"].as_str().unwrap(),
        language: case["languages"][0].as_str().unwrap(),
        voice: Voice::Icl {
            ref_text: all["speaker"]["ref_text"].as_str().unwrap(),
            ref_frames: case["ref_code_frames"][0].as_u64().unwrap() as usize,
        },
        non_streaming_mode: false,
    };
    let (plan, _) = plan_request(&m.ckpt.config, &tokenizer, &req).unwrap();
    assert_eq!(plan.len(), g.prompt_len);
    let ids = SpecialIds::from_config(&m.ckpt.config);
    let voice = VoiceData { speaker_vector: Some(&spk.data), ref_codes: Some(&ref_codes.data) };
    let mut prompt = PromptEmbeds::materialize(b, &mut s, &m.talker, &m.predictor, &ids, &plan, voice, 0).unwrap();

    // 2. Decode rows from the golden codes: F(frame) + trailing[k] / tts_pad. These must be
    //    the golden inputs_embeds rows (the decode-step input of the reference forward).
    let frames = g.seq - g.prompt_len;
    let mut rows = vec![vec![0f32; h]; frames];
    for (k, row) in rows.iter_mut().enumerate() {
        prompt.decode_input(b, &mut s, &m.talker, &m.predictor, g.codes.index(k), k, row).unwrap();
        let d = assert_close(&format!("decode input {k}"), row, g.inputs.index(g.prompt_len + k), HIDDEN_TOL);
        worst.record("decode input rows", d);
    }

    // 3. Prompt prefill then those rows, step by step: same logits as the golden.
    let mut st = m.talker.new_state(b, g.seq).unwrap();
    let n = prompt.len();
    let logits = m.talker.forward(b, &mut s, &mut st, prompt.embeds_mut(), n).unwrap().to_vec();
    worst.record("logits", assert_close("prompt logits", &logits, g.logits.index(n - 1), LOGITS_TOL));
    for (k, row) in rows.iter().enumerate() {
        b.write(&mut s, st.input_mut(), 0, row).unwrap();
        let logits = m.talker.step(b, &mut s, &mut st).unwrap();
        worst.record("logits", assert_close(&format!("step {k}"), logits, g.logits.index(n + k), LOGITS_TOL));
    }
    worst.report("talker, own prompt and decode rows");
}

/// Teacher-forced code predictor for one golden prefix ("base" or "customvoice").
fn code_predictor_case(checkpoint: &str, prefix: &str, expect_projection: bool) {
    let m = load(checkpoint);
    let g = Golden::open("code_predictor_tf");
    let talker_hidden = g.f32(&format!("{prefix}.talker_hidden"));
    let codes = g.u32(&format!("{prefix}.codes"));
    let projected = g.f32(&format!("{prefix}.prefill_projected"));
    let logits = g.f32(&format!("{prefix}.logits"));
    let (b, th) = (&m.b, m.talker.hidden_size());
    let (groups, vocab) = (m.predictor.num_code_groups(), m.predictor.vocab_size());
    assert_eq!(m.predictor.has_projection(), expect_projection);
    assert_eq!(logits.shape[1..], [groups - 1, vocab]);

    let mut s = b.new_stream().unwrap();
    let mut st = m.predictor.new_state(b).unwrap();
    let mut worst = Worst::default();
    for f in 0..codes.shape[0] {
        let frame_golden = codes.index(f);
        let h = talker_hidden.index(f).to_vec();

        // 1. Prefill rows [h, Ec(c0)] through small_to_mtp_projection.
        let mut rows = vec![0f32; 2 * th];
        rows[..th].copy_from_slice(&h);
        let mut ec = vec![0f32; th];
        m.talker.embed_codec(b, &mut s, &frame_golden[..1], &mut ec, false).unwrap();
        rows[th..].copy_from_slice(&ec);
        let mut out = vec![0f32; projected.index(f).len()];
        m.predictor.project_input(b, &mut s, &rows, 2, &mut out).unwrap();
        worst.record("prefill_projected", assert_close("prefill_projected", &out, projected.index(f), HIDDEN_TOL));

        // 2. Free-running greedy (argmax) frame; the goldens are greedy, so teacher forcing
        //    and free running coincide. Every group's logits must match.
        let mut frame = vec![0u32; groups];
        frame[0] = frame_golden[0];
        let mut visited = Vec::new();
        let golden_logits = logits.index(f);
        let mut choose = |g: usize, l: &mut [f32]| {
            let want = &golden_logits[(g - 1) * vocab..g * vocab];
            let d = diff(l, want);
            assert!(d.rel <= LOGITS_TOL, "{prefix} frame {f} codebook {g}: logits {d}");
            worst.record("logits", d);
            assert_eq!(argmax(l), argmax(want), "{prefix} frame {f} codebook {g}: argmax");
            visited.push(g);
            argmax(l) as u32
        };
        m.predictor.predict(b, &mut s, &mut st, &h, m.talker.codec_embedding(), &mut frame, &mut choose).unwrap();
        assert_eq!(visited, (1..groups).collect::<Vec<_>>(), "codebooks are chosen in order");
        assert_eq!(frame, frame_golden, "{prefix} frame {f}: greedy codes");
    }
    worst.report(&format!("code predictor, {prefix}"));
}

#[test]
fn code_predictor_base_matches_logits_and_greedy_codes() {
    code_predictor_case("tiny-base", "base", false);
}

#[test]
fn code_predictor_customvoice_projection_matches_logits_and_greedy_codes() {
    code_predictor_case("tiny-customvoice", "customvoice", true);
}

#[test]
fn code_predictor_rejects_out_of_range_choices() {
    let m = load("tiny-base");
    let b = &m.b;
    let mut s = b.new_stream().unwrap();
    let mut st = m.predictor.new_state(b).unwrap();
    let h = vec![0.1f32; m.talker.hidden_size()];
    let mut frame = vec![0u32; m.predictor.num_code_groups()];
    let vocab = m.predictor.vocab_size() as u32;
    let err = m.predictor.predict(b, &mut s, &mut st, &h, m.talker.codec_embedding(), &mut frame, |_, _| vocab);
    assert!(err.unwrap_err().message().contains("outside"));
    let mut short = vec![0u32; 3];
    assert!(m.predictor.predict(b, &mut s, &mut st, &h, m.talker.codec_embedding(), &mut short, |_, _| 0).is_err());
}
