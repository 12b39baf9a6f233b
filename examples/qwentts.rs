//! The command-line front end (README "Main command").
//!
//! ```text
//! cargo run --release --example qwentts -- [--model DIR]
//! ```
//!
//! Today it loads a checkpoint directory (by default the shipped tiny one,
//! `tests/fixtures/tiny-base`) and describes it. Speech synthesis arrives with the
//! generation work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use qwentts::{LoadOptions, Model};

const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-base");

fn usage() -> ! {
    eprintln!("usage: qwentts [--model DIR]\n\n  --model DIR   checkpoint directory (default: {DEFAULT_MODEL})");
    std::process::exit(2)
}

fn main() -> ExitCode {
    let mut model_dir = PathBuf::from(DEFAULT_MODEL);
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--model") => model_dir = args.next().map(PathBuf::from).unwrap_or_else(|| usage()),
            Some("-h") | Some("--help") => usage(),
            _ => usage(),
        }
    }

    let started = Instant::now();
    let model = match Model::load(&model_dir, &LoadOptions::default()) {
        Ok(model) => model,
        Err(err) => {
            eprintln!("error: cannot load {}: {err}", model_dir.display());
            return ExitCode::FAILURE;
        }
    };
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let info = model.info();

    println!("model        {}", model_dir.display());
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
    println!("load time    {load_ms:.1} ms");
    ExitCode::SUCCESS
}
