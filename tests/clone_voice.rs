//! Voice cloning on the tiny Base checkpoint: the x-vector and reference codes of the
//! official `create_voice_clone_prompt`, every input path (file, PCM, other rates and
//! channel counts), and clean errors for bad audio and for checkpoints that cannot clone.

mod common;

use common::{Golden, assert_close, cases, checkpoint_dir, fixtures_dir};
use qwentts::audio::{ReferenceAudio, ReferenceLimits};
use qwentts::{ErrorKind, GenerateOptions, LoadOptions, Model, Voice};

fn model() -> Model {
    Model::load(checkpoint_dir("tiny-base"), &LoadOptions::default()).expect("tiny-base loads")
}

fn ref_wav() -> std::path::PathBuf {
    fixtures_dir().join("audio/ref_24k.wav")
}

fn transcript() -> String {
    let text = std::fs::read_to_string(fixtures_dir().join("audio/ref_24k.txt")).unwrap();
    assert_eq!(text.trim(), cases()["speaker"]["ref_text"].as_str().unwrap(), "fixture transcript");
    text.trim().to_owned()
}

#[test]
fn icl_clone_equals_the_official_prompt_item() {
    let model = model();
    let text = transcript();
    let voice = model.clone_voice_from_file(ref_wav(), Some(&text)).unwrap();
    let golden = Golden::open("speaker_base");

    let d = assert_close("x-vector", voice.embedding().unwrap(), &golden.f32("spk_embedding").data, 1e-4);
    eprintln!("x-vector: {d}");
    let reference = voice.reference().expect("ICL voice");
    let want = golden.u32("ref_codes");
    assert_eq!(reference.codes.len(), want.numel());
    assert_eq!(reference.codes, want.data, "reference codes");
    assert_eq!(reference.text, text);
    assert_eq!(voice.origin(), Some(model.fingerprint()));
}

#[test]
fn xvector_clone_has_no_reference_and_the_same_embedding() {
    let model = model();
    let icl = model.clone_voice_from_file(ref_wav(), Some(&transcript())).unwrap();
    let xvec = model.clone_voice_from_file(ref_wav(), None).unwrap();
    assert!(xvec.reference().is_none());
    assert_eq!(xvec.embedding(), icl.embedding());
    assert_eq!(xvec.origin(), Some(model.fingerprint()));
}

#[test]
fn pcm_and_prepared_audio_give_the_same_voice_as_the_file() {
    let model = model();
    let text = transcript();
    let from_file = model.clone_voice_from_file(ref_wav(), Some(&text)).unwrap();
    let audio = ReferenceAudio::from_file(&ref_wav(), &ReferenceLimits::default()).unwrap();
    assert_eq!(model.clone_voice(&audio, Some(&text)).unwrap(), from_file);
    let pcm = model.clone_voice_from_pcm(audio.samples(), 1, 24_000, Some(&text)).unwrap();
    assert_eq!(pcm, from_file);
    // Two identical channels mix to the same mono signal.
    let stereo: Vec<f32> = audio.samples().iter().flat_map(|&x| [x, x]).collect();
    assert_eq!(model.clone_voice_from_pcm(&stereo, 2, 24_000, Some(&text)).unwrap(), from_file);
}

#[test]
fn a_16k_stereo_file_clones_and_speaks() {
    let model = model();
    let path = fixtures_dir().join("audio/ref_16k_stereo.wav");
    let voice = model.clone_voice_from_file(&path, Some(&transcript())).unwrap();
    let embedding = voice.embedding().unwrap();
    assert_eq!(embedding.len(), model.info().talker_hidden_size);
    assert!(embedding.iter().all(|v| v.is_finite()));
    // Resampled to 24 kHz first: ceil(N24 / 1920) frames.
    let audio = ReferenceAudio::from_file(&path, &ReferenceLimits::default()).unwrap();
    assert_eq!(audio.source_sample_rate(), 16_000);
    let frames = audio.samples().len().div_ceil(1920);
    assert_eq!(voice.reference().unwrap().codes.len(), frames * 16);
    // (No comparison with the 24 kHz clone: this recording is band-limited to 8 kHz, which
    // empties the top third of the 0–12 kHz mel bins the speaker encoder reads.)
    let mut o = GenerateOptions::defaults(&model).greedy();
    o.max_frames = Some(3);
    let audio = model.generate(&voice, "Hello.", &o, None).unwrap();
    assert_eq!(audio.frames, 3);
}

#[test]
fn bad_audio_errors_propagate_with_their_kind() {
    let model = model();
    let err = model.clone_voice_from_file(fixtures_dir().join("audio/missing.wav"), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let junk = std::env::temp_dir().join(format!("qwentts-clone-junk-{}.wav", std::process::id()));
    std::fs::write(&junk, b"RIFF\0\0\0\0WAVEjunkjunkjunk").unwrap();
    let err = model.clone_voice_from_file(&junk, None).unwrap_err();
    std::fs::remove_file(&junk).ok();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    let silent = vec![0.0f32; 48_000];
    let err = model.clone_voice_from_pcm(&silent, 1, 24_000, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("silent"), "{err}");

    let short = vec![0.1f32; 1000];
    let err = model.clone_voice_from_pcm(&short, 1, 24_000, None).unwrap_err();
    assert!(err.message().contains("short"), "{err}");

    let mut nan = vec![0.1f32; 48_000];
    nan[100] = f32::NAN;
    assert_eq!(model.clone_voice_from_pcm(&nan, 1, 24_000, None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        model.clone_voice_from_pcm(&[0.1; 48_000], 0, 24_000, None).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(model.clone_voice_from_pcm(&[0.1; 48_000], 1, 0, None).unwrap_err().kind(), ErrorKind::InvalidArgument);

    // An empty transcript is a mistake, not a request for x-vector-only cloning.
    let err = model.clone_voice_from_file(ref_wav(), Some("  ")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn customvoice_checkpoints_refuse_to_clone() {
    let custom = Model::load(checkpoint_dir("tiny-customvoice"), &LoadOptions::default()).unwrap();
    assert!(!custom.info().can_clone);
    let err = custom.clone_voice_from_file(ref_wav(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("Base"), "{err}");
    // Refused before the audio is even read.
    let err = custom.clone_voice_from_file(fixtures_dir().join("audio/missing.wav"), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let err = custom.clone_voice_from_pcm(&[0.1; 48_000], 1, 24_000, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(custom.voice_from_embedding(vec![0.1; 16]).unwrap_err().kind(), ErrorKind::Unsupported);
}

#[test]
fn embeddings_are_checked_against_the_model() {
    let model = model();
    let golden = Golden::open("speaker_base").f32("spk_embedding").data;
    let voice = model.voice_from_embedding(golden.clone()).unwrap();
    assert_eq!(voice.origin(), Some(model.fingerprint()));
    assert_eq!(voice.embedding().unwrap(), &golden[..]);
    // Equality includes the origin: the bare voice of the same numbers is not the same voice.
    let bare = Voice::from_embedding(golden).unwrap();
    assert_eq!(bare.origin(), None);
    assert_ne!(voice, bare);
    let err = model.voice_from_embedding(vec![0.1; 7]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VoiceMismatch, "{err}");
    assert_eq!(model.voice_from_embedding(vec![f32::NAN; 32]).unwrap_err().kind(), ErrorKind::InvalidArgument);
}
