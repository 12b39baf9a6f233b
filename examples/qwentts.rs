//! The command-line front end (README "Main command"): text and a voice in, a WAV file out.
//!
//! ```text
//! cargo run --release --example qwentts                          # tiny checkpoint, fixture voice
//! cargo run --release --example qwentts -- --model DIR --ref me.wav --ref-text "..." "Hello there."
//! cargo run --release --example qwentts -- --describe             # what the checkpoint is
//! ```
//!
//! Voices: `--ref WAV [--ref-text TEXT]` clones (Base models; with the transcript the clone
//! is in-context, the best quality), `--voice FILE` loads one saved with `--save-voice`,
//! `--speaker NAME` picks a built-in speaker (CustomVoice), `--design TEXT` describes one
//! (VoiceDesign). With none of them a Base model clones the shipped fixture recording
//! (`tests/fixtures/audio/ref_24k.wav` and its transcript) and a CustomVoice model uses its
//! first speaker, so the bare command works.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use qwentts::{Audio, AudioChunk, EngineKind, GenerateOptions, LoadOptions, Model, ModelKind, Voice};

const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-base");
const DEFAULT_REF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/audio/ref_24k.wav");
const DEFAULT_REF_TEXT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/audio/ref_24k.txt");
const DEFAULT_TEXT: &str = "Hello! This is qwentts-turbo, speaking Qwen3-TTS from Rust.";

const USAGE: &str = "usage: qwentts [OPTIONS] [TEXT]

  TEXT                what to say (default: a demo sentence)
  --model DIR         checkpoint directory (default: the shipped tiny-base)
  --ref WAV           clone the voice of this recording (Base models; any rate/channels)
  --ref-text TEXT     the recording's transcript: in-context cloning (without: x-vector only)
  --voice FILE        a voice saved with --save-voice
  --speaker NAME      a built-in speaker (CustomVoice models)
  --design TEXT       a voice description (VoiceDesign models)
  --instruct TEXT     a style instruction (1.7B CustomVoice)
  --save-voice FILE   save the voice for --voice
  --out WAV           output file (default: out.wav)
  --language NAME     auto (default), english, chinese, ...
  --seed N            sampling seed (default: random)
  --greedy            greedy decoding instead of sampling
  --max-frames N      at most N frames (12.5 per second of audio)
  --chunk-frames N    frames per streamed chunk once grown (default 4)
  --first-chunk-frames N
                      frames in the first chunk; later ones double up to
                      --chunk-frames (default 1; --chunk-frames or more: no ramp)
  --sample-rate HZ    output rate (default 24000)
  --threads N         CPU threads (default: all)
  --device N          run the talker, code predictor and codec decoder on CUDA device N
                      and clone voices on it (builds with the `cuda` feature; default:
                      the CPU; QT_GPU_CLONE=0 clones on the CPU)
  --engine E          how a CUDA model runs its frames: auto (default: the megakernel
                      where it can run), megakernel, or unfused (layer by layer)
  --describe          describe the checkpoint and exit";

/// What the command line asked for.
#[derive(Default)]
struct Args {
    text: Option<String>,
    model: Option<PathBuf>,
    reference: Option<PathBuf>,
    ref_text: Option<String>,
    voice: Option<PathBuf>,
    speaker: Option<String>,
    design: Option<String>,
    instruct: Option<String>,
    save_voice: Option<PathBuf>,
    out: Option<PathBuf>,
    language: Option<String>,
    seed: Option<u64>,
    greedy: bool,
    max_frames: Option<usize>,
    chunk_frames: Option<usize>,
    first_chunk_frames: Option<usize>,
    sample_rate: Option<u32>,
    threads: Option<usize>,
    device: Option<usize>,
    engine: EngineKind,
    describe: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn number<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: \"{v}\" is not a valid number"))
        }
        match arg.as_str() {
            "--model" => args.model = Some(value("--model")?.into()),
            "--ref" => args.reference = Some(value("--ref")?.into()),
            "--ref-text" => args.ref_text = Some(value("--ref-text")?),
            "--voice" => args.voice = Some(value("--voice")?.into()),
            "--speaker" => args.speaker = Some(value("--speaker")?),
            "--design" => args.design = Some(value("--design")?),
            "--instruct" => args.instruct = Some(value("--instruct")?),
            "--save-voice" => args.save_voice = Some(value("--save-voice")?.into()),
            "--out" => args.out = Some(value("--out")?.into()),
            "--language" => args.language = Some(value("--language")?),
            "--seed" => args.seed = Some(number("--seed", value("--seed")?)?),
            "--greedy" => args.greedy = true,
            "--max-frames" => args.max_frames = Some(number("--max-frames", value("--max-frames")?)?),
            "--chunk-frames" => args.chunk_frames = Some(number("--chunk-frames", value("--chunk-frames")?)?),
            "--first-chunk-frames" => {
                args.first_chunk_frames = Some(number("--first-chunk-frames", value("--first-chunk-frames")?)?)
            }
            "--sample-rate" => args.sample_rate = Some(number("--sample-rate", value("--sample-rate")?)?),
            "--threads" => args.threads = Some(number("--threads", value("--threads")?)?),
            "--device" => args.device = Some(number("--device", value("--device")?)?),
            "--engine" => {
                args.engine = match value("--engine")?.as_str() {
                    "auto" => EngineKind::Auto,
                    "megakernel" => EngineKind::Megakernel,
                    "unfused" => EngineKind::Unfused,
                    other => return Err(format!("--engine {other}: expected auto, megakernel or unfused")),
                }
            }
            "--describe" => args.describe = true,
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            text if args.text.is_none() => args.text = Some(text.to_owned()),
            extra => return Err(format!("unexpected argument \"{extra}\" (quote the text)")),
        }
    }
    let voices = [args.reference.is_some(), args.voice.is_some(), args.speaker.is_some(), args.design.is_some()];
    if voices.iter().filter(|&&v| v).count() > 1 {
        return Err("give at most one of --ref, --voice, --speaker, --design".into());
    }
    if args.ref_text.is_some() && args.reference.is_none() {
        return Err("--ref-text goes with --ref".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}\n");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    // 1. Model.
    let model_dir = args.model.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    let t = Instant::now();
    let model = Model::load(
        &model_dir,
        &LoadOptions {
            threads: args.threads,
            device: args.device.map_or(qwentts::Device::Cpu, qwentts::Device::Cuda),
            engine: args.engine,
            prefix_cache_bytes: None,
        },
    )
    .map_err(|e| format!("cannot load {}: {e}", model_dir.display()))?;
    let load_ms = ms(t);
    if args.describe {
        describe(&model, &model_dir, load_ms);
        return Ok(());
    }

    // 2. Voice.
    let t = Instant::now();
    let (voice, voice_label) = pick_voice(&model, args)?;
    let voice_ms = ms(t);
    if let Some(path) = &args.save_voice {
        voice.save(path).map_err(|e| e.to_string())?;
        println!("saved voice  {}", path.display());
    }

    // 3. Speech, streamed: the callback only counts chunks here; a player would play them.
    let mut options = GenerateOptions::defaults(&model);
    if args.greedy {
        options = options.greedy();
    }
    if let Some(language) = &args.language {
        options.language = language.clone();
    }
    options.instruct = args.instruct.clone();
    options.seed = args.seed;
    options.max_frames = args.max_frames;
    options.output_sample_rate = args.sample_rate;
    if let Some(n) = args.chunk_frames {
        options.chunk_frames = n;
    }
    if let Some(n) = args.first_chunk_frames {
        options.first_chunk_frames = Some(n);
    }
    let text = args.text.as_deref().unwrap_or(DEFAULT_TEXT);
    let mut chunks = 0usize;
    let mut on_chunk = |_: &AudioChunk<'_>| {
        chunks += 1;
        true
    };
    let audio = model.generate(&voice, text, &options, Some(&mut on_chunk)).map_err(|e| e.to_string())?;

    // 4. Output and the timing table.
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("out.wav"));
    audio.write_wav(&out).map_err(|e| e.to_string())?;
    report(&model, &model_dir, &voice_label, text, &audio, chunks, load_ms, voice_ms, &out);
    Ok(())
}

/// The voice the arguments name, and a line saying what it is.
fn pick_voice(model: &Model, args: &Args) -> Result<(Voice, String), String> {
    let err = |e: qwentts::Error| e.to_string();
    if let Some(path) = &args.voice {
        return Ok((model.load_voice(path).map_err(err)?, format!("loaded {}", path.display())));
    }
    if let Some(name) = &args.speaker {
        return Ok((model.voice_from_speaker(name).map_err(err)?, format!("built-in speaker {name}")));
    }
    if let Some(description) = &args.design {
        return Ok((Voice::design(description.clone()), format!("designed: {description}")));
    }
    let (path, ref_text) = match &args.reference {
        Some(path) => (path.clone(), args.ref_text.clone()),
        None => match model.info().kind {
            ModelKind::Base => {
                let text = std::fs::read_to_string(DEFAULT_REF_TEXT).map_err(|e| format!("{DEFAULT_REF_TEXT}: {e}"))?;
                (PathBuf::from(DEFAULT_REF), Some(text.trim().to_owned()))
            }
            ModelKind::CustomVoice => {
                let name = model.info().speakers.first().cloned().ok_or("this CustomVoice model lists no speakers")?;
                return Ok((
                    model.voice_from_speaker(&name).map_err(err)?,
                    format!("built-in speaker {name} (first listed)"),
                ));
            }
            ModelKind::VoiceDesign => {
                return Err("a VoiceDesign model needs --design \"a description of the voice\"".into());
            }
        },
    };
    let voice = model.clone_voice_from_file(&path, ref_text.as_deref()).map_err(err)?;
    let mode = match voice.reference() {
        Some(r) => format!("in-context, {} reference frames", r.frames(model.info().num_codebooks)),
        None => "x-vector only".to_owned(),
    };
    Ok((voice, format!("cloned from {} ({mode})", display_path(&path))))
}

#[allow(clippy::too_many_arguments)]
fn report(
    model: &Model,
    model_dir: &Path,
    voice: &str,
    text: &str,
    audio: &Audio,
    chunks: usize,
    load_ms: f64,
    voice_ms: f64,
    out: &Path,
) {
    let t = &audio.timings;
    println!(
        "model        {} (frame engine: {}, codec decoder on {})",
        display_path(model_dir),
        model.engine_name(),
        model.audio_device()
    );
    println!("voice        {voice}");
    println!("text         {text}");
    println!(
        "wrote        {} ({:.2} s at {} Hz, {} frames, {} chunks, finished: {:?})",
        out.display(),
        audio.seconds(),
        audio.sample_rate,
        audio.frames,
        chunks,
        audio.finish
    );
    println!();
    println!("  load          {load_ms:>9.1} ms");
    println!("  voice         {voice_ms:>9.1} ms");
    println!(
        "  prefill       {:>9.1} ms   (prompt → first frame; {} prompt rows, {} from the voice prefix cache)",
        t.prefill_ms, t.prompt_rows, t.reused_prompt_rows
    );
    println!("  per frame     {:>9.2} ms   (talker + code predictor; 80 ms of audio each)", t.frame_ms);
    // Decoding runs on the calling thread while the frame loop goes on on a worker, so it
    // overlaps the frames above rather than adding to them.
    println!(
        "  decode        {:>9.1} ms   (codec{})",
        t.decode_ms,
        if audio.sample_rate == 24_000 { "" } else { " + resampling" }
    );
    println!("  first chunk   {:>9.1} ms", t.first_chunk_ms);
    println!("  generate      {:>9.1} ms   (total of the call)", t.total_ms);
    println!("  real-time factor {:>6.3}      (below 1: faster than real time)", t.rtf);
}

fn describe(model: &Model, dir: &Path, load_ms: f64) {
    let info = model.info();
    println!("model        {}", display_path(dir));
    println!("kind         {:?} {}", info.kind, info.size_label);
    println!("talker       {} layers, hidden {}", info.talker_layers, info.talker_hidden_size);
    println!("predictor    {} layers, {} codebooks", info.code_predictor_layers, info.num_codebooks);
    println!("audio        {} Hz, {} frames/s", info.sample_rate, info.frame_rate);
    println!("voice clone  {}", if info.can_clone { "yes" } else { "no" });
    println!("languages    {}", info.languages.join(", "));
    if !info.speakers.is_empty() {
        println!("speakers     {}", info.speakers.join(", "));
    }
    println!("weights      {} tensors, {:.1} MB", info.tensor_count, info.weight_bytes as f64 / 1e6);
    println!("fingerprint  {}", model.fingerprint());
    println!("load time    {load_ms:.1} ms");
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Paths inside the crate shown relative to it (the defaults are long absolute paths).
fn display_path(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}
