//! Talker prompt parity with qwen-tts 0.1.1: for every case of `prompts_base` and
//! `prompts_customvoice`, the prompt is built from the case's strings (text, language,
//! speaker, instruction, mode) through the public request path — tokenisation included —
//! and materialised with the tiny checkpoints' weights. `inputs_embeds`,
//! `trailing_text_hidden` and `tts_pad_embed` must match the goldens to 1e-5 relative error.
//!
//! The goldens' batch-of-two case is checked item by item: we run one request per state, so
//! each item must equal its unpadded rows (the left pads of the golden are zero and its
//! trailing rows are right-padded with `tts_pad_embed`; both are checked too).

mod common;

use common::{Golden, Worst, assert_close, cases, checkpoint_dir, json_ids};
use qwentts::backend::Backend;
use qwentts::backend::cpu::CpuBackend;
use qwentts::error::ErrorKind;
use qwentts::model::Checkpoint;
use qwentts::model::code_predictor::CodePredictor;
use qwentts::model::prompt::{PromptEmbeds, PromptPlan, PromptRequest, SpecialIds, Voice, VoiceData, plan_request};
use qwentts::model::talker::Talker;
use qwentts::text::TextTokenizer;
use serde_json::Value;

const TOL: f64 = 1e-5;

struct Model {
    b: CpuBackend,
    ckpt: Checkpoint,
    tokenizer: TextTokenizer,
    talker: Talker<CpuBackend>,
    predictor: CodePredictor<CpuBackend>,
}

impl Model {
    fn load(name: &str) -> Model {
        let dir = checkpoint_dir(name);
        let b = CpuBackend::new(1);
        let ckpt = Checkpoint::open(&dir).expect("open checkpoint");
        let tokenizer = TextTokenizer::from_dir(&dir).expect("tokenizer");
        let talker = Talker::load(&b, &ckpt.weights, &ckpt.config.talker_config).expect("talker");
        let predictor = CodePredictor::load(&b, &ckpt.weights, &ckpt.config.talker_config).expect("code predictor");
        Model { b, ckpt, tokenizer, talker, predictor }
    }

    /// Materialises `plan` and reads (prompt rows, trailing rows, tts_pad) back to the host.
    fn materialize(&self, plan: &PromptPlan, voice: VoiceData<'_>) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let b = &self.b;
        let mut s = b.new_stream().unwrap();
        let ids = SpecialIds::from_config(&self.ckpt.config);
        let p = PromptEmbeds::materialize(b, &mut s, &self.talker, &self.predictor, &ids, plan, voice, 0)
            .expect("materialize");
        let h = self.talker.hidden_size();
        let mut rows = vec![0f32; p.len() * h];
        b.read(&mut s, p.embeds(), 0, &mut rows).unwrap();
        let mut trailing = vec![0f32; p.trailing_len() * h];
        b.read(&mut s, p.trailing(), 0, &mut trailing).unwrap();
        let mut pad = vec![0f32; h];
        b.read(&mut s, p.tts_pad(), 0, &mut pad).unwrap();
        (rows, trailing, pad)
    }
}

/// `case[key]` as a list (the goldens store per-item values as lists; scalars are wrapped).
fn items(case: &Value, key: &str) -> Vec<Value> {
    match &case[key] {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// One item's prompt compared against golden rows.
struct Expected<'a> {
    rows: &'a [f32],
    trailing: &'a [f32],
    pad: &'a [f32],
}

fn compare(name: &str, worst: &mut Worst, got: (Vec<f32>, Vec<f32>, Vec<f32>), want: Expected<'_>) {
    let (rows, trailing, pad) = got;
    assert_eq!(rows.len(), want.rows.len(), "{name}: prompt length (in values) differs");
    assert_eq!(trailing.len(), want.trailing.len(), "{name}: trailing length (in values) differs");
    worst.record("inputs_embeds", assert_close(&format!("{name}.inputs_embeds"), &rows, want.rows, TOL));
    worst.record(
        "trailing_text_hidden",
        assert_close(&format!("{name}.trailing_text_hidden"), &trailing, want.trailing, TOL),
    );
    worst.record("tts_pad_embed", assert_close(&format!("{name}.tts_pad_embed"), &pad, want.pad, TOL));
}

#[test]
fn base_prompts_match_the_reference() {
    let m = Model::load("tiny-base");
    let golden = Golden::open("prompts_base");
    let speaker = Golden::open("speaker_base");
    let spk = speaker.f32("spk_embedding");
    let ref_codes = speaker.u32("ref_codes");
    let all = cases();
    let ref_text = all["speaker"]["ref_text"].as_str().unwrap().to_owned();
    let h = m.talker.hidden_size();
    let mut worst = Worst::default();

    let cases = all["prompts_base"].as_object().unwrap();
    assert!(cases.len() >= 11, "expected the 11 base prompt cases");
    for (name, case) in cases {
        let texts = items(case, "text");
        let modes = items(case, "mode");
        let languages = items(case, "languages");
        let input_ids = items(case, "input_ids");
        let ref_ids = items(case, "ref_ids");
        let frames = items(case, "ref_code_frames");
        let batched = texts.len() > 1;
        let emb = golden.f32(&format!("{name}.inputs_embeds"));
        let trail = golden.f32(&format!("{name}.trailing_text_hidden"));
        let pad = golden.f32(&format!("{name}.tts_pad_embed"));
        let mask = batched.then(|| golden.i64(&format!("{name}.attention_mask")));

        for i in 0..texts.len() {
            let item = if batched { format!("{name}[{i}]") } else { name.clone() };
            let mode = modes[i].as_str().unwrap();
            let voice = if mode.starts_with("icl") {
                Voice::Icl { ref_text: &ref_text, ref_frames: frames[i].as_u64().unwrap() as usize }
            } else {
                Voice::XVector
            };
            let req = PromptRequest {
                text: texts[i].as_str().unwrap(),
                language: languages[i].as_str().unwrap(),
                voice,
                non_streaming_mode: case["non_streaming_mode"].as_bool().unwrap(),
            };
            let (plan, ids) = plan_request(&m.ckpt.config, &m.tokenizer, &req).expect(&item);

            // The request path tokenises exactly as the reference wrapper.
            assert_eq!(ids.text_ids, json_ids(&input_ids[i], "input_ids"), "{item}: text ids");
            match &ref_ids[i] {
                Value::Null => assert_eq!(ids.ref_ids, None, "{item}: ref ids"),
                v => assert_eq!(ids.ref_ids.as_deref(), Some(&json_ids(v, "ref_ids")[..]), "{item}: ref ids"),
            }

            let got =
                m.materialize(&plan, VoiceData { speaker_vector: Some(&spk.data), ref_codes: Some(&ref_codes.data) });
            if !batched {
                assert_eq!(plan.len(), case["prompt_len"].as_u64().unwrap() as usize, "{item}: prompt length");
                assert_eq!(plan.trailing.len(), case["trailing_len"].as_u64().unwrap() as usize, "{item}: trailing");
                compare(&item, &mut worst, got, Expected { rows: &emb.data, trailing: &trail.data, pad: &pad.data });
                continue;
            }

            // Batch item i: its real rows are the last `len` of the left-padded prompt, its
            // trailing rows the first `plan.trailing.len()` of the right-padded ones.
            let mask = mask.as_ref().unwrap();
            let width = emb.shape[1];
            let len = mask.index(i).iter().filter(|&&v| v == 1).count();
            assert_eq!(plan.len(), len, "{item}: prompt length vs attention mask");
            assert!(mask.index(i)[..width - len].iter().all(|&v| v == 0), "{item}: pads are on the left");
            let item_rows = &emb.index(i)[(width - len) * h..];
            assert!(emb.index(i)[..(width - len) * h].iter().all(|&v| v == 0.0), "{item}: left pads are zero");
            let t = plan.trailing.len();
            let item_trailing = &trail.index(i)[..t * h];
            for extra in trail.index(i)[t * h..].chunks(h) {
                assert_close(&format!("{item}: trailing right-pad"), extra, &pad.data, TOL);
            }
            compare(&item, &mut worst, got, Expected { rows: item_rows, trailing: item_trailing, pad: &pad.data });
        }
    }
    worst.report("prompt parity, tiny-base");
}

#[test]
fn customvoice_prompts_match_the_reference() {
    let m = Model::load("tiny-customvoice");
    let golden = Golden::open("prompts_customvoice");
    let all = cases();
    let mut worst = Worst::default();

    let cases = all["prompts_customvoice"].as_object().unwrap();
    assert!(cases.len() >= 8, "expected the 8 CustomVoice prompt cases");
    for (name, case) in cases {
        let req = PromptRequest {
            text: case["text"].as_str().unwrap(),
            language: case["languages"][0].as_str().unwrap(),
            voice: Voice::Speaker { name: case["speaker"].as_str().unwrap(), instruct: case["instruct"].as_str() },
            non_streaming_mode: case["non_streaming_mode"].as_bool().unwrap(),
        };
        let (plan, ids) = plan_request(&m.ckpt.config, &m.tokenizer, &req).expect(name);
        assert_eq!(ids.text_ids, json_ids(&case["input_ids"][0], "input_ids"), "{name}: text ids");
        match &case["instruct_ids"][0] {
            Value::Null => assert_eq!(ids.instruct_ids, None, "{name}: instruct ids"),
            v => assert_eq!(ids.instruct_ids.as_deref(), Some(&json_ids(v, "instruct_ids")[..]), "{name}"),
        }
        assert_eq!(plan.len(), case["prompt_len"].as_u64().unwrap() as usize, "{name}: prompt length");
        assert_eq!(plan.trailing.len(), case["trailing_len"].as_u64().unwrap() as usize, "{name}: trailing");
        assert!(!plan.needs_speaker_vector() && plan.ref_frames() == 0, "{name}: CustomVoice needs no voice data");

        let got = m.materialize(&plan, VoiceData::default());
        let emb = golden.f32(&format!("{name}.inputs_embeds"));
        let trail = golden.f32(&format!("{name}.trailing_text_hidden"));
        let pad = golden.f32(&format!("{name}.tts_pad_embed"));
        compare(name, &mut worst, got, Expected { rows: &emb.data, trailing: &trail.data, pad: &pad.data });
    }
    worst.report("prompt parity, tiny-customvoice");
}

#[test]
fn request_errors_are_clean() {
    let base = Model::load("tiny-base");
    let cv = Model::load("tiny-customvoice");
    let req = |language, voice| PromptRequest { text: "Hello.", language, voice, non_streaming_mode: false };
    let kind = |m: &Model, r: PromptRequest<'_>| plan_request(&m.ckpt.config, &m.tokenizer, &r).unwrap_err().kind();

    // Unknown language (dialect keys are not languages either), unknown speaker.
    assert_eq!(kind(&base, req("Klingon", Voice::XVector)), ErrorKind::InvalidArgument);
    assert_eq!(
        kind(&cv, req("sichuan_dialect", Voice::Speaker { name: "eric", instruct: None })),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(&cv, req("English", Voice::Speaker { name: "nobody", instruct: None })),
        ErrorKind::InvalidArgument
    );
    // Voices the model kind cannot use.
    assert_eq!(kind(&base, req("English", Voice::Speaker { name: "ryan", instruct: None })), ErrorKind::Unsupported);
    assert_eq!(kind(&cv, req("English", Voice::XVector)), ErrorKind::Unsupported);
    assert_eq!(kind(&base, req("English", Voice::Design { instruct: "calm" })), ErrorKind::Unsupported);
    // ICL without a transcript or without frames.
    assert_eq!(kind(&base, req("English", Voice::Icl { ref_text: "", ref_frames: 4 })), ErrorKind::InvalidArgument);
    assert_eq!(kind(&base, req("English", Voice::Icl { ref_text: "Hi.", ref_frames: 0 })), ErrorKind::InvalidArgument);

    // Materialising without the voice data a plan refers to.
    let (plan, _) = plan_request(
        &base.ckpt.config,
        &base.tokenizer,
        &req("English", Voice::Icl { ref_text: "Hi.", ref_frames: 4 }),
    )
    .unwrap();
    let b = &base.b;
    let mut s = b.new_stream().unwrap();
    let ids = SpecialIds::from_config(&base.ckpt.config);
    let spk = vec![0.5f32; base.talker.hidden_size()];
    for (voice, needle) in [
        (VoiceData { speaker_vector: None, ref_codes: Some(&[0; 64]) }, "x-vector"),
        (VoiceData { speaker_vector: Some(&spk), ref_codes: None }, "reference codes"),
        (VoiceData { speaker_vector: Some(&spk), ref_codes: Some(&[0; 48]) }, "reference frames"),
        (VoiceData { speaker_vector: Some(&spk[1..]), ref_codes: Some(&[0; 64]) }, "x-vector has"),
    ] {
        let err = PromptEmbeds::materialize(b, &mut s, &base.talker, &base.predictor, &ids, &plan, voice, 0)
            .err()
            .expect("materialize must fail");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains(needle), "{err}");
    }
}

#[test]
fn speaker_names_and_languages_are_case_insensitive_and_0b6_drops_instructions() {
    let cv = Model::load("tiny-customvoice");
    let plan = |config, language, name, instruct| {
        let r = PromptRequest {
            text: "Hello.",
            language,
            voice: Voice::Speaker { name, instruct },
            non_streaming_mode: true,
        };
        plan_request(config, &cv.tokenizer, &r).unwrap().0
    };
    let config = &cv.ckpt.config;
    assert_eq!(plan(config, "ENGLISH", "RYAN", None), plan(config, "english", "ryan", None));

    // tiny-customvoice is "1b7": the instruction adds rows. A "0b6" CustomVoice ignores it,
    // as the reference wrapper does.
    let with = plan(config, "English", "ryan", Some("Speak slowly."));
    let without = plan(config, "English", "ryan", None);
    assert!(with.len() > without.len());
    let mut small = config.clone();
    small.tts_model_size = "0b6".into();
    assert_eq!(plan(&small, "English", "ryan", Some("Speak slowly.")), plan(&small, "English", "ryan", None));
    // "" is no instruction on any size.
    assert_eq!(plan(config, "English", "ryan", Some("")), without);

    // VoiceDesign: no speaker row, the description as instruction rows; the same layout as a
    // CustomVoice request without a speaker ("" is accepted by the reference there too).
    let mut design = config.clone();
    design.tts_model_type = qwentts::model::ModelKind::VoiceDesign;
    let r = PromptRequest {
        text: "Hello.",
        language: "Chinese",
        voice: Voice::Design { instruct: "A calm voice." },
        non_streaming_mode: true,
    };
    let designed = plan_request(&design, &cv.tokenizer, &r).unwrap().0;
    assert_eq!(designed, plan(config, "Chinese", "", Some("A calm voice.")));
    assert_eq!(designed.len(), plan(config, "Chinese", "vivian", Some("A calm voice.")).len() - 1);
    // An empty description means no instruction rows.
    let r = PromptRequest { voice: Voice::Design { instruct: "" }, ..r };
    assert_eq!(plan_request(&design, &cv.tokenizer, &r).unwrap().0, plan(config, "Chinese", "", None));
}
