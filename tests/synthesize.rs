//! End-to-end text → audio on the tiny Base checkpoint: the returned waveform equals the
//! official output (greedy, fixed golden voice), streamed chunks concatenate to it, the
//! callbacks can abort, and output resampling equals a resample of the 24 kHz result.

mod common;

use common::{Golden, assert_close, cases, checkpoint_dir};
use qwentts::audio::resample;
use qwentts::audio::resample::resampled_len;
use qwentts::{Audio, AudioChunk, ErrorKind, FinishReason, GenerateHooks, GenerateOptions, LoadOptions, Model, Voice};
use serde_json::Value;

fn model() -> Model {
    Model::load(checkpoint_dir("tiny-base"), &LoadOptions::default()).expect("tiny-base loads")
}

/// The fixed prompt item of the greedy goldens (speaker_base's x-vector; ICL adds its
/// reference codes and transcript).
fn golden_voice(icl: bool) -> Voice {
    let speaker = Golden::open("speaker_base");
    let embedding = speaker.f32("spk_embedding").data;
    if icl {
        let text = cases()["speaker"]["ref_text"].as_str().unwrap().to_owned();
        Voice::with_reference(embedding, speaker.u32("ref_codes").data, text).unwrap()
    } else {
        Voice::from_embedding(embedding).unwrap()
    }
}

fn case(name: &str) -> Value {
    cases()["greedy_base"][name].clone()
}

/// Greedy options of a golden case (max_new_tokens N → N − 1 frames).
fn options(model: &Model, case: &Value) -> GenerateOptions {
    let mut o = GenerateOptions::defaults(model).greedy();
    o.language = case["languages"][0].as_str().unwrap().to_owned();
    o.non_streaming_mode = Some(case["non_streaming_mode"].as_bool().unwrap());
    o.max_frames = Some(case["generate_kwargs"]["max_new_tokens"].as_u64().unwrap() as usize - 1);
    o
}

/// Runs `generate` with a chunk callback that records every chunk.
fn generate_streamed(
    model: &Model,
    voice: &Voice,
    text: &str,
    options: &GenerateOptions,
) -> (Audio, Vec<(Vec<f32>, AudioChunkInfo)>) {
    let mut chunks = Vec::new();
    let mut sink = |c: &AudioChunk<'_>| {
        chunks.push((c.samples.to_vec(), AudioChunkInfo::of(c)));
        true
    };
    let audio = model.generate(voice, text, options, Some(&mut sink)).unwrap();
    (audio, chunks)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct AudioChunkInfo {
    sample_rate: u32,
    index: usize,
    first_sample: usize,
    frames: usize,
    is_last: bool,
}

impl AudioChunkInfo {
    fn of(c: &AudioChunk<'_>) -> Self {
        AudioChunkInfo {
            sample_rate: c.sample_rate,
            index: c.index,
            first_sample: c.first_sample,
            frames: c.frames,
            is_last: c.is_last,
        }
    }
}

/// Chunks are in order, contiguous, with exactly one `is_last` at the end; returns their
/// concatenation.
fn check_chunk_sequence(chunks: &[(Vec<f32>, AudioChunkInfo)], rate: u32) -> Vec<f32> {
    let mut all = Vec::new();
    for (i, (samples, info)) in chunks.iter().enumerate() {
        assert_eq!(info.index, i, "chunk indices count up");
        assert_eq!(info.first_sample, all.len(), "chunk {i} starts where the previous ended");
        assert_eq!(info.sample_rate, rate);
        assert_eq!(info.is_last, i + 1 == chunks.len(), "is_last exactly on the final chunk");
        all.extend_from_slice(samples);
    }
    all
}

#[test]
fn xvector_voice_matches_the_official_waveform_and_streams_exactly() {
    let model = model();
    let case = case("xvec_en");
    let golden = Golden::open("greedy_base");
    let text = case["text"].as_str().unwrap();
    let (audio, chunks) = generate_streamed(&model, &golden_voice(false), text, &options(&model, &case));

    let want = golden.f32("xvec_en.wave").data;
    assert_eq!((audio.sample_rate, audio.samples.len()), (24_000, want.len()));
    let d = assert_close("xvec_en wave", &audio.samples, &want, 1e-4);
    eprintln!("xvec_en: {d}");
    assert_eq!(audio.codes, golden.u32("xvec_en.codes").data, "codes");
    assert_eq!((audio.frames, audio.finish, audio.chunk_offset), (18, FinishReason::Eos, 0));

    // The default chunks: 1 frame (1920 samples), 2, then 4 at a time, the last one shorter,
    // concatenating exactly.
    let streamed = check_chunk_sequence(&chunks, 24_000);
    assert_eq!(streamed, audio.samples, "chunks concatenate to the returned audio");
    let sizes: Vec<usize> = chunks.iter().map(|(s, _)| s.len()).collect();
    assert_eq!(sizes, [1920, 3840, 7680, 7680, 7680, 5760]);
    let frames: Vec<usize> = chunks.iter().map(|(_, c)| c.frames).collect();
    assert_eq!(frames, [1, 3, 7, 11, 15, 18]);

    // The result does not depend on whether a callback listens.
    let silent = model.generate(&golden_voice(false), text, &options(&model, &case), None).unwrap();
    assert_eq!(silent.samples, audio.samples);

    let t = audio.timings;
    assert!(t.total_ms > 0.0 && t.prefill_ms > 0.0 && t.frame_ms > 0.0 && t.decode_ms > 0.0 && t.rtf > 0.0, "{t:?}");
    assert!(t.first_chunk_ms > 0.0 && t.first_chunk_ms <= t.total_ms, "{t:?}");
}

#[test]
fn icl_voice_matches_the_official_cut_and_documents_its_leading_sample() {
    let model = model();
    let case = case("icl_en2_cut");
    let golden = Golden::open("greedy_base");
    let text = case["text"].as_str().unwrap();
    let (audio, chunks) = generate_streamed(&model, &golden_voice(true), text, &options(&model, &case));

    // 39 reference + 35 generated frames: cut = int(39/74 · 142080) = 74879 = 39·1920 − 1,
    // so the official output keeps one reference sample in front of the generated audio.
    let want = golden.f32("icl_en2_cut.wave").data;
    assert_eq!(audio.samples.len(), want.len());
    assert_eq!(want.len(), 35 * 1920 + 1);
    let d = assert_close("icl_en2_cut wave", &audio.samples, &want, 1e-4);
    eprintln!("icl_en2_cut: {d}");
    assert_eq!(audio.codes, golden.u32("icl_en2_cut.codes").data, "codes");
    assert_eq!((audio.frames, audio.finish), (35, FinishReason::FrameLimit));

    // Chunks start at the reference boundary: they are the audio after that one sample.
    assert_eq!(audio.chunk_offset, 1);
    let streamed = check_chunk_sequence(&chunks, 24_000);
    assert_eq!(streamed, audio.samples[1..], "chunks concatenate to samples[chunk_offset..]");
}

#[test]
fn chunk_size_changes_the_pieces_not_the_audio() {
    let model = model();
    let case = case("xvec_en");
    let text = case["text"].as_str().unwrap();
    let reference = model.generate(&golden_voice(false), text, &options(&model, &case), None).unwrap();
    for chunk_frames in [1, 5, 18, 100] {
        let mut o = options(&model, &case);
        o.chunk_frames = chunk_frames;
        o.first_chunk_frames = None;
        let (audio, chunks) = generate_streamed(&model, &golden_voice(false), text, &o);
        assert_eq!(check_chunk_sequence(&chunks, 24_000), audio.samples, "chunk_frames {chunk_frames}");
        // Decoding in other pieces may round differently in the last bits, no more.
        assert_close(&format!("chunk_frames {chunk_frames}"), &audio.samples, &reference.samples, 1e-5);
        let full_chunks = 18 / chunk_frames;
        // 18 frames: full chunks, then the remainder, or an empty end marker when none is left.
        assert_eq!(chunks.len(), full_chunks + 1, "chunk_frames {chunk_frames}");
        if 18 % chunk_frames == 0 {
            assert!(chunks.last().unwrap().0.is_empty(), "end marker is empty");
        }
    }
}

#[test]
fn chunks_grow_from_the_first_chunk_to_chunk_frames() {
    let model = model();
    let case = case("xvec_en");
    let text = case["text"].as_str().unwrap();
    let reference = model.generate(&golden_voice(false), text, &options(&model, &case), None).unwrap();
    // (first_chunk_frames, chunk_frames) → frames generated when each chunk was sent (18 in all).
    let cases: [(Option<usize>, usize, &[usize]); 6] = [
        (Some(1), 8, &[1, 3, 7, 15, 18]),
        (Some(3), 5, &[3, 8, 13, 18, 18]),
        (Some(2), 2, &[2, 4, 6, 8, 10, 12, 14, 16, 18, 18]),
        // A first chunk of at least chunk_frames, or none, means no ramp.
        (Some(9), 6, &[6, 12, 18, 18]),
        (None, 6, &[6, 12, 18, 18]),
        (Some(1), 1, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 18]),
    ];
    for (first, full, want) in cases {
        let mut o = options(&model, &case);
        (o.first_chunk_frames, o.chunk_frames) = (first, full);
        let (audio, chunks) = generate_streamed(&model, &golden_voice(false), text, &o);
        let frames: Vec<usize> = chunks.iter().map(|(_, c)| c.frames).collect();
        assert_eq!(frames, want, "first_chunk_frames {first:?}, chunk_frames {full}");
        assert_eq!(check_chunk_sequence(&chunks, 24_000), audio.samples);
        assert_close(&format!("first {first:?}, chunks of {full}"), &audio.samples, &reference.samples, 1e-5);
    }
    let mut o = options(&model, &case);
    o.first_chunk_frames = Some(0);
    let e = model.generate(&golden_voice(false), text, &o, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("first_chunk_frames"), "{e}");
}

#[test]
fn the_chunk_callback_aborts() {
    let model = model();
    let case = case("icl_en2_cut");
    let text = case["text"].as_str().unwrap();
    let mut calls = 0;
    let mut sink = |c: &AudioChunk<'_>| {
        calls += 1;
        assert!(!c.is_last);
        c.index < 1 // stop after the second chunk
    };
    let mut o = options(&model, &case);
    o.first_chunk_frames = None; // chunks of 4
    let audio = model.generate(&golden_voice(true), text, &o, Some(&mut sink)).unwrap();
    assert_eq!(calls, 2, "no chunk after the callback said stop");
    assert_eq!(audio.finish, FinishReason::Aborted);
    assert_eq!(audio.frames, 8);
    assert_eq!(audio.codes, Golden::open("greedy_base").u32("icl_en2_cut.codes").rows(0, 8));
    // ICL cut for 39 + 8 frames lands on the boundary: nothing in front.
    assert_eq!(audio.chunk_offset, 0);
    assert_eq!(audio.samples.len(), 8 * 1920);
}

#[test]
fn the_abort_poll_stops_between_frames_and_keeps_their_audio() {
    let model = model();
    let case = case("xvec_en");
    let text = case["text"].as_str().unwrap();
    let full = model.generate(&golden_voice(false), text, &options(&model, &case), None).unwrap();
    // Without a chunk callback: every frame made before the stop, decoded. Poll 1 comes
    // before the prefill, polls 2..=L + 1 after each of its L layers, poll L + 1 + n after
    // frame n.
    let layers = model.info().talker_layers;
    let mut polls = 0;
    let mut should_abort = || {
        polls += 1;
        polls == layers + 1 + 3
    };
    let hooks = GenerateHooks { on_chunk: None, should_abort: Some(&mut should_abort) };
    let audio = model.generate_with(&golden_voice(false), text, &options(&model, &case), hooks).unwrap();
    assert_eq!((audio.finish, audio.frames), (FinishReason::Aborted, 3));
    assert_eq!(audio.samples.len(), 3 * 1920);
    assert_close("aborted prefix", &audio.samples, &full.samples[..3 * 1920], 1e-5);
    assert_eq!(audio.codes, full.codes[..3 * 16]);
}

/// With a chunk callback, an aborted result is exactly what was delivered (issue 11, item 8):
/// frames made after the last chunk are dropped from samples, frames and codes alike.
#[test]
fn an_aborted_stream_returns_exactly_the_delivered_chunks() {
    let model = model();
    let case = case("xvec_en");
    let text = case["text"].as_str().unwrap();
    let full = model.generate(&golden_voice(false), text, &options(&model, &case), None).unwrap();
    // Poll 1 comes before the prefill, then one after each of the prefill's L layers, then
    // poll L + 1 + n after frame n (before that frame's chunk is sent); chunks of 1, 2, then 4
    // frames (the default) are sent after frames 1, 3, 7, 11, ...
    let l = model.info().talker_layers;
    let stops = [(1, 0), (2, 0), (l + 1, 0), (l + 2, 0), (l + 3, 1), (l + 4, 1), (l + 5, 3), (l + 9, 7), (l + 12, 7), (l + 13, 11)];
    for (stop_at_poll, want_frames) in stops {
        let mut polls = 0;
        let mut should_abort = || {
            polls += 1;
            polls == stop_at_poll
        };
        let mut heard: Vec<f32> = Vec::new();
        let mut last_seen = false;
        let mut on_chunk = |c: &AudioChunk<'_>| {
            heard.extend_from_slice(c.samples);
            last_seen |= c.is_last;
            true
        };
        let hooks = GenerateHooks { on_chunk: Some(&mut on_chunk), should_abort: Some(&mut should_abort) };
        let audio = model.generate_with(&golden_voice(false), text, &options(&model, &case), hooks).unwrap();
        let at = format!("stop at poll {stop_at_poll}");
        assert_eq!(polls, stop_at_poll, "{at}: no poll after the one that stopped it");
        assert_eq!((audio.finish, audio.frames), (FinishReason::Aborted, want_frames), "{at}");
        assert!(!last_seen, "{at}: no final chunk after an abort");
        assert_eq!(audio.samples[audio.chunk_offset..], heard[..], "{at}: result = delivered chunks");
        assert_eq!(heard.len(), want_frames * 1920, "{at}");
        assert_eq!(audio.codes, full.codes[..want_frames * 16], "{at}");
        assert_close(&at, &heard, &full.samples[..want_frames * 1920], 1e-5);
    }
}

#[test]
fn output_rate_48k_is_a_resample_of_the_24k_audio() {
    let model = model();
    for (name, icl) in [("xvec_en", false), ("icl_en2_cut", true)] {
        let case = case(name);
        let text = case["text"].as_str().unwrap();
        let base = model.generate(&golden_voice(icl), text, &options(&model, &case), None).unwrap();
        for rate in [48_000, 44_100, 16_000] {
            let mut o = options(&model, &case);
            o.output_sample_rate = Some(rate);
            let (audio, chunks) = generate_streamed(&model, &golden_voice(icl), text, &o);
            let stream = &base.samples[base.chunk_offset..];
            assert_eq!(audio.sample_rate, rate);
            assert_eq!(audio.chunk_offset, 0, "resampled output starts at the boundary");
            assert_eq!(audio.samples.len(), resampled_len(stream.len(), 24_000, rate), "{name} at {rate} Hz");
            let want = resample(stream, 24_000, rate).unwrap();
            assert_eq!(audio.samples, want, "{name} at {rate} Hz: streamed resampling equals a one-shot resample");
            assert_eq!(check_chunk_sequence(&chunks, rate), audio.samples, "{name} at {rate} Hz: chunks");
        }
    }
}

#[test]
fn bad_options_are_rejected_before_any_work() {
    let model = model();
    let voice = golden_voice(false);
    let mut o = GenerateOptions::defaults(&model);
    o.chunk_frames = 0;
    assert_eq!(model.generate(&voice, "Hi.", &o, None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let mut o = GenerateOptions::defaults(&model);
    o.output_sample_rate = Some(0);
    assert_eq!(model.generate(&voice, "Hi.", &o, None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    o.output_sample_rate = Some(10_000_000);
    assert_eq!(model.generate(&voice, "Hi.", &o, None).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn voices_of_another_model_family_are_refused() {
    let base = model();
    let custom = Model::load(checkpoint_dir("tiny-customvoice"), &LoadOptions::default()).unwrap();
    let cloned = base.voice_from_embedding(Golden::open("speaker_base").f32("spk_embedding").data).unwrap();
    let err = custom.generate(&cloned, "Hi.", &GenerateOptions::defaults(&custom), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VoiceMismatch, "{err}");
    assert!(err.message().contains("kind: voice base, model custom_voice"), "{err}");
    // A bare embedding of the wrong width is a mismatch too.
    let err = base
        .generate(&Voice::from_embedding(vec![0.1; 16]).unwrap(), "Hi.", &GenerateOptions::defaults(&base), None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VoiceMismatch, "{err}");
}

#[test]
fn builtin_speakers_speak_without_cloning() {
    let custom = Model::load(checkpoint_dir("tiny-customvoice"), &LoadOptions::default()).unwrap();
    let all = cases();
    let (name, case) = all["greedy_customvoice"].as_object().unwrap().iter().next().unwrap();
    let voice = custom.voice_from_speaker(case["speaker"].as_str().unwrap()).unwrap();
    let mut o = options(&custom, case);
    o.instruct = case["instruct"].as_str().map(str::to_owned);
    let audio = custom.generate(&voice, case["text"].as_str().unwrap(), &o, None).unwrap();
    assert_eq!(audio.codes, Golden::open("greedy_customvoice").u32(&format!("{name}.codes")).data, "{name}");
    assert_eq!(audio.samples.len(), audio.frames * 1920);
    assert!(custom.voice_from_speaker("nobody").is_err());
}

#[test]
fn wav_output_is_16_bit_pcm_and_clamped() {
    let audio = Audio {
        samples: vec![0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0],
        sample_rate: 48_000,
        frames: 0,
        codes: Vec::new(),
        chunk_offset: 0,
        finish: FinishReason::Eos,
        timings: Default::default(),
    };
    let bytes = audio.to_wav_bytes().unwrap();
    let mut reader = hound::WavReader::new(std::io::Cursor::new(&bytes)).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 48_000, 16));
    let pcm: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(pcm, [0, 16384, -16384, 32767, -32767, 32767, -32767]);

    let path = std::env::temp_dir().join(format!("qwentts-synthesize-{}.wav", std::process::id()));
    audio.write_wav(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    std::fs::remove_file(&path).ok();
}

#[test]
fn models_voices_and_audio_are_shareable_and_generation_runs_concurrently() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Model>();
    shareable::<Voice>();
    shareable::<Audio>();

    let model = model();
    let case = case("xvec_en");
    let text = case["text"].as_str().unwrap();
    let voice = golden_voice(false);
    let options = options(&model, &case);
    let reference = model.generate(&voice, text, &options, None).unwrap().samples;
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..3).map(|_| s.spawn(|| model.generate(&voice, text, &options, None).unwrap())).collect();
        for run in runs {
            assert_eq!(run.join().unwrap().samples, reference);
        }
    });
}
