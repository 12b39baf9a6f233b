//! The random-checkpoint generator (`examples/make_random_checkpoint.rs`), run in-process on
//! a shrunk 0.6B-Base config (full-size files take seconds and gigabytes; see tools/README.md):
//!
//! * the output loads with `Model::load`, has exactly the manifest's tensors in the released
//!   dtypes (BF16 main, F32 codec), and every value is finite and fits its role (norm scales
//!   near 1, layer scales = config, usage counts near 1, the codec-EOS row zero, weight
//!   spreads as planned);
//! * the bytes depend on the seed only: same seed → identical files, whatever the thread
//!   count; another seed → every random tensor differs;
//! * for all five full-size checkpoints the plan (no data written) agrees with the released
//!   `tensors.json` manifests, and disagreements are reported by name;
//! * bad arguments and bad metadata fail with messages that say what is wrong.

mod support;

#[path = "../examples/make_random_checkpoint.rs"]
#[allow(dead_code)]
mod tool;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use qwentts::model::{DType, SafeTensorsFile};
use serde_json::{Value, json};
use support::{CHECKPOINTS, TempDir, checkpoint_meta_dir, shared_dir};
use tool::{Command, Init, Options, TensorPlan};

const VARIANT: &str = "Qwen3-TTS-12Hz-0.6B-Base";
/// Bound of the generator's normal draws: 2√3.
const NORMAL_BOUND: f32 = 3.464_102;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// A metadata folder for a shrunk 0.6B-Base under `root/meta`, laid out like
/// `shared/checkpoints/`: no `tensors.json`, and the text tokenizer files only in the sibling
/// `root/tokenizer/` (so the fallback is exercised).
fn shrunk_meta(root: &Path) -> PathBuf {
    let real = checkpoint_meta_dir(VARIANT);
    let meta = root.join("meta");
    fs::create_dir_all(meta.join("speech_tokenizer")).unwrap();
    write_json(&meta.join("config.json"), &support::shrink_model_config(read_json(&real.join("config.json"))));
    write_json(
        &meta.join("speech_tokenizer/config.json"),
        &support::shrink_speech_config(read_json(&real.join("speech_tokenizer/config.json"))),
    );
    for file in ["generation_config.json", "preprocessor_config.json", "speech_tokenizer/preprocessor_config.json"] {
        fs::copy(real.join(file), meta.join(file)).unwrap();
    }
    let tokenizer = root.join("tokenizer");
    fs::create_dir_all(&tokenizer).unwrap();
    for file in ["tokenizer_config.json", "vocab.json", "merges.txt"] {
        fs::copy(shared_dir().join("checkpoints/tokenizer").join(file), tokenizer.join(file)).unwrap();
    }
    meta
}

fn options(meta: &Path, out: &Path, seed: u64, threads: usize) -> Options {
    let mut o = Options::new(meta, out);
    o.seed = seed;
    o.threads = threads;
    o
}

fn generate(meta: &Path, out: &Path, seed: u64, threads: usize) -> tool::Summary {
    tool::run(&options(meta, out, seed, threads)).unwrap_or_else(|e| panic!("generating {}: {e}", out.display()))
}

/// Value of a `Const` after rounding to the file's dtype.
fn rounded(value: f32, dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => half::bf16::from_f32(value).to_f32(),
        DType::F16 => half::f16::from_f32(value).to_f32(),
        DType::F32 => value,
    }
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Every tensor of `file` against its plan: same set, dtype, shape; values finite and as the
/// plan's rule says (constants exact, normals bounded with plausible mean and spread).
fn check_against_plan(file: &SafeTensorsFile, plans: &[TensorPlan], dtype: DType) {
    let names: BTreeSet<&str> = file.names().collect();
    let planned: BTreeSet<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, planned, "{}: tensor set", file.path().display());
    for plan in plans {
        let view = file.get(&plan.name).unwrap();
        assert_eq!(view.dtype, dtype, "{}", plan.name);
        assert_eq!(view.shape, plan.shape.as_slice(), "{}", plan.name);
        let mut values = view.to_f32_vec();
        assert!(values.iter().all(|v| v.is_finite()), "{}: non-finite values", plan.name);
        if let Some(z) = &plan.zeroed {
            let zeroed = &values[z.start as usize..z.end as usize];
            assert!(zeroed.iter().all(|&v| v == 0.0), "{}: zeroed range is not zero", plan.name);
            values.drain(z.start as usize..z.end as usize);
        }
        match plan.init {
            Init::Const(c) => {
                let c = rounded(c, dtype);
                assert!(values.iter().all(|&v| v == c), "{}: not all {c}", plan.name);
            }
            Init::Normal { mean, std } => {
                // Bound plus one bf16 rounding step of the largest value.
                let bound = (NORMAL_BOUND * std) * (1.0 + 1.0 / 128.0) + mean.abs() / 128.0;
                let worst = values.iter().map(|&v| (v - mean).abs()).fold(0.0, f32::max);
                assert!(worst <= bound, "{}: |x - {mean}| reaches {worst}, bound {bound}", plan.name);
                if values.len() >= 1000 {
                    let (m, s) = mean_std(&values);
                    let std = f64::from(std);
                    assert!((m - f64::from(mean)).abs() < 0.15 * std, "{}: mean {m}, planned {mean}", plan.name);
                    assert!((s / std - 1.0).abs() < 0.1, "{}: std {s}, planned {std}", plan.name);
                }
            }
        }
    }
}

#[test]
fn shrunk_checkpoint_loads_with_released_dtypes_and_sane_values() {
    let root = TempDir::new("random-ckpt");
    let meta = shrunk_meta(root.path());
    let out = root.path().join("out");
    let summary = generate(&meta, &out, 1, 2);

    // No manifest next to a shrunk config: the tensor set comes from the config alone.
    assert!(summary.notes.iter().all(|n| n.contains("absent")), "{:?}", summary.notes);
    assert!(summary.verify_seconds.is_some());
    let model = qwentts::Model::load(&out, &Default::default()).unwrap_or_else(|e| panic!("Model::load: {e}"));
    assert_eq!(model.info().tensor_count, summary.files.iter().map(|f| f.tensors).sum::<usize>());

    // The released layout, configs and tokenizer files copied byte for byte.
    for (file, source) in [
        ("config.json", meta.join("config.json")),
        ("generation_config.json", meta.join("generation_config.json")),
        ("preprocessor_config.json", meta.join("preprocessor_config.json")),
        ("speech_tokenizer/config.json", meta.join("speech_tokenizer/config.json")),
        ("speech_tokenizer/preprocessor_config.json", meta.join("speech_tokenizer/preprocessor_config.json")),
        ("tokenizer_config.json", root.path().join("tokenizer/tokenizer_config.json")),
        ("vocab.json", root.path().join("tokenizer/vocab.json")),
        ("merges.txt", root.path().join("tokenizer/merges.txt")),
    ] {
        assert_eq!(fs::read(out.join(file)).unwrap(), fs::read(&source).unwrap(), "{file}");
    }
    for f in &summary.files {
        assert_eq!(fs::metadata(&f.path).unwrap().len(), f.file_bytes, "{}", f.path.display());
    }
    assert!(!out.join("model.safetensors.partial").exists());

    // Every tensor as planned, in the released dtypes.
    let (plan, _) = tool::plan_checkpoint(&meta, tool::DEFAULT_EMBED_STD, false).unwrap();
    let main = SafeTensorsFile::open(&out.join("model.safetensors")).unwrap();
    let codec = SafeTensorsFile::open(&out.join("speech_tokenizer/model.safetensors")).unwrap();
    check_against_plan(&main, &plan.main, DType::BF16);
    check_against_plan(&codec, &plan.codec, DType::F32);

    // And the plan itself gives each role what it should (independently of init_rule).
    let values = |file: &SafeTensorsFile, name: &str| file.get(name).unwrap().to_f32_vec();
    for name in main.names().chain(codec.names()) {
        let file = if main.contains(name) { &main } else { &codec };
        let v = values(file, name);
        if name.ends_with("norm.weight") {
            assert!(v.iter().all(|&x| (0.9..=1.1).contains(&x)), "{name}: norm scale far from 1");
        } else if name.ends_with("layer_scale.scale") || name.ends_with(".gamma") {
            assert!(v.iter().all(|&x| x == 0.01), "{name}: layer scale is not the config's 0.01");
        } else if name.ends_with("cluster_usage") {
            assert!(v.iter().all(|&x| (0.6..=1.4).contains(&x)), "{name}: usage far from 1");
        } else if name.ends_with("initialized") {
            assert_eq!(v, [1.0], "{name}");
        } else if name.ends_with(".alpha") || name.ends_with(".beta") {
            assert!(v.iter().all(|&x| x.abs() < 0.25), "{name}: SnakeBeta log-parameter far from 0");
        }
    }
    let talker = &plan.model.talker_config;
    let head = values(&main, "talker.codec_head.weight");
    let h = talker.hidden_size;
    let eos = talker.codec_eos_token_id as usize;
    assert!(head[eos * h..(eos + 1) * h].iter().all(|&x| x == 0.0), "codec-EOS row of codec_head is not zero");
    assert!(head[(eos - 1) * h..eos * h].iter().any(|&x| x != 0.0));
    let (_, std) = mean_std(&values(&main, "talker.model.text_embedding.weight"));
    assert!((std / 0.02 - 1.0).abs() < 0.03, "text embedding std {std}, expected 0.02");
    let down = values(&main, "talker.model.layers.0.mlp.down_proj.weight");
    let (_, std) = mean_std(&down);
    let want = 1.0 / (talker.intermediate_size as f64).sqrt();
    assert!((std / want - 1.0).abs() < 0.1, "down_proj std {std}, expected 1/sqrt(fan_in) = {want}");

    // --keep-eos gives that row random values like the rest.
    let (keep, _) = tool::plan_checkpoint(&meta, tool::DEFAULT_EMBED_STD, true).unwrap();
    assert!(keep.main.iter().all(|p| p.zeroed.is_none()));
}

#[test]
fn bytes_depend_only_on_the_seed() {
    let root = TempDir::new("random-ckpt-seed");
    let meta = shrunk_meta(root.path());
    let files = ["model.safetensors", "speech_tokenizer/model.safetensors"];
    let read = |dir: &str| files.map(|f| fs::read(root.path().join(dir).join(f)).unwrap());
    generate(&meta, &root.path().join("a"), 7, 1);
    generate(&meta, &root.path().join("b"), 7, 3);
    generate(&meta, &root.path().join("c"), 8, 2);
    let (a, b, c) = (read("a"), read("b"), read("c"));
    assert!(a == b, "same seed, different thread count: the files differ");
    assert!(a != c, "different seeds: identical files");

    // Headers agree; every random tensor differs between seeds, constants do not.
    let (plan, _) = tool::plan_checkpoint(&meta, tool::DEFAULT_EMBED_STD, false).unwrap();
    for (i, plans) in [&plan.main, &plan.codec].into_iter().enumerate() {
        let (header, offsets) = tool::safetensors_header(plans);
        assert_eq!(a[i][..header.len()], header[..]);
        assert_eq!(c[i][..header.len()], header[..]);
        for (p, &offset) in plans.iter().zip(&offsets) {
            let range = header.len() + offset as usize..header.len() + (offset + p.bytes()) as usize;
            let same = a[i][range.clone()] == c[i][range];
            assert_eq!(same, matches!(p.init, Init::Const(_)), "{}: seeds 7 and 8 give same bytes = {same}", p.name);
        }
    }
}

#[test]
fn full_size_plans_match_the_released_manifests() {
    for name in CHECKPOINTS {
        let meta = checkpoint_meta_dir(name);
        let (plan, notes) =
            tool::plan_checkpoint(&meta, tool::DEFAULT_EMBED_STD, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(notes.len(), 2);
        assert!(notes.iter().all(|n| n.contains("match")), "{name}: {notes:?}");
        for (plans, manifest) in [(&plan.main, "tensors.json"), (&plan.codec, "speech_tokenizer/tensors.json")] {
            let released = read_json(&meta.join(manifest));
            let (header, offsets) = tool::safetensors_header(plans);
            assert_eq!(header.len() % 8, 0, "{name}: data section not 8-byte aligned");
            let end = offsets.last().unwrap() + plans.last().unwrap().bytes();
            assert_eq!(Some(end), released["bytes"].as_u64(), "{name}/{manifest}: data bytes");
            // Variance-preserving weights: std = gain / sqrt(fan_in) with gain ≤ 1.
            for p in plans.iter().filter(|p| p.name.ends_with(".weight") && p.shape.len() >= 2) {
                let Init::Normal { mean, std } = p.init else { panic!("{name}: {} is constant", p.name) };
                assert!(mean == 0.0 && std > 0.0 && std <= 1.0 / 2.0f32.sqrt(), "{name}: {} N({mean}, {std})", p.name);
            }
        }
        if name == VARIANT {
            assert_eq!(plan.main.len(), 478);
            assert_eq!(plan.main.iter().map(TensorPlan::numel).sum::<u64>(), 914_643_008);
            assert_eq!(plan.codec.len(), 496);
            assert_eq!(plan.codec.iter().map(TensorPlan::numel).sum::<u64>(), 170_557_441);
        }
    }
}

/// A `tensors.json` of `plans`, as the shared folder writes them.
fn manifest_of(plans: &[TensorPlan]) -> Value {
    let tensors: serde_json::Map<String, Value> =
        plans.iter().map(|p| (p.name.clone(), json!({ "dtype": p.dtype.name(), "shape": p.shape }))).collect();
    json!({
        "count": plans.len(),
        "bytes": plans.iter().map(TensorPlan::bytes).sum::<u64>(),
        "tensors": tensors,
    })
}

#[test]
fn manifest_disagreements_are_reported_by_name() {
    let root = TempDir::new("random-ckpt-manifest");
    let meta = shrunk_meta(root.path());
    let (plan, _) = tool::plan_checkpoint(&meta, tool::DEFAULT_EMBED_STD, false).unwrap();
    let path = root.path().join("tensors.json");
    let good = manifest_of(&plan.main);
    write_json(&path, &good);
    tool::check_manifest(&plan.main, &path).unwrap();

    let norm = "talker.model.norm.weight";
    type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;
    let edits: [(&str, Edit, &str); 5] = [
        ("shape", Box::new(|m| m["tensors"][norm]["shape"] = json!([7])), "shape"),
        ("dtype", Box::new(|m| m["tensors"][norm]["dtype"] = json!("F32")), "dtype BF16 as released, F32"),
        ("missing", Box::new(|m| drop(m["tensors"].as_object_mut().unwrap().remove(norm))), "not in the manifest"),
        (
            "extra",
            Box::new(|m| m["tensors"]["talker.extra.weight"] = json!({"dtype": "BF16", "shape": [1]})),
            "talker.extra.weight",
        ),
        ("count", Box::new(|m| m["count"] = json!(1)), "`count` is 1"),
    ];
    for (what, edit, want) in edits {
        let mut bad = good.clone();
        edit(&mut bad);
        write_json(&path, &bad);
        let err = tool::check_manifest(&plan.main, &path).expect_err(what);
        assert!(err.contains(want), "{what}: `{want}` not in: {err}");
        if what != "count" && what != "extra" {
            assert!(err.contains(norm), "{what}: tensor not named in: {err}");
        }
    }

    // Through a run: a disagreeing manifest stops it before anything is written.
    let mut bad = manifest_of(&plan.codec);
    bad["tensors"]["decoder.pre_conv.conv.weight"]["shape"] = json!([1, 2, 3]);
    write_json(&meta.join("speech_tokenizer/tensors.json"), &bad);
    let out = root.path().join("out");
    let err = tool::run(&options(&meta, &out, 0, 1)).unwrap_err();
    assert!(err.contains("decoder.pre_conv.conv.weight") && err.contains("[1, 2, 3]"), "{err}");
    assert!(!out.exists(), "a failed plan must not create --out");
}

#[test]
fn bad_arguments_and_metadata_fail_clearly() {
    let parse = |args: &[&str]| tool::parse_args(args.iter().map(OsString::from));
    let cases: [(&[&str], &str); 9] = [
        (&[], "--from DIR is required"),
        (&["--from", "m"], "--out DIR is required"),
        (&["--from"], "--from needs a value"),
        (&["--from", "m", "--out", "o", "--bogus"], "unknown argument `--bogus`"),
        (&["--from", "m", "--out", "o", "--seed", "x"], "--seed: cannot parse"),
        (&["--from", "m", "--out", "o", "--std", "-1"], "--std must be a positive"),
        (&["--from", "m", "--out", "o", "--std", "NaN"], "--std must be a positive"),
        (&["--from", "m", "--out", "o", "--threads", "0"], "--threads must be at least 1"),
        (&["--from", "", "--out", "o"], "--from is empty"),
    ];
    for (args, want) in cases {
        let err = parse(args).expect_err(want);
        assert!(err.contains(want), "{args:?}: `{want}` not in: {err}");
    }
    assert_eq!(parse(&["--out", "o", "-h"]), Ok(Command::Help));
    let Ok(Command::Run(o)) = parse(&[
        "--from",
        "m",
        "--out",
        "o",
        "--seed",
        "9",
        "--std",
        "0.5",
        "--threads",
        "3",
        "--keep-eos",
        "--force",
        "--no-verify",
    ]) else {
        panic!("a full command line did not parse");
    };
    let want = Options {
        seed: 9,
        embed_std: 0.5,
        threads: 3,
        keep_eos: true,
        force: true,
        verify: false,
        ..Options::new("m", "o")
    };
    assert_eq!(o, want);

    let root = TempDir::new("random-ckpt-bad");
    let out = root.path().join("out");
    let run = |from: &Path, out: &Path| tool::run(&options(from, out, 0, 1)).unwrap_err();

    let err = run(&root.path().join("absent"), &out);
    assert!(err.contains("absent") && err.contains("is not a directory"), "{err}");

    let empty = root.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let err = run(&empty, &out);
    assert!(err.contains("missing metadata files") && err.contains("config.json"), "{err}");
    assert!(err.contains("tokenizer") && err.contains("vocab.json"), "{err}");

    let meta = shrunk_meta(root.path());
    fs::write(meta.join("config.json"), "{ not json").unwrap();
    let err = run(&meta, &out);
    assert!(err.contains("config.json"), "{err}");
    assert!(!out.exists());

    let meta = shrunk_meta(&root.path().join("second"));
    let err = run(&meta, &meta);
    assert!(err.contains("is the --from directory"), "{err}");

    // A non-empty --out needs --force, which then overwrites a previous run's files.
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("note.txt"), "keep").unwrap();
    let err = run(&meta, &out);
    assert!(err.contains("is not empty") && err.contains("--force"), "{err}");
    let mut forced = options(&meta, &out, 0, 1);
    forced.force = true;
    tool::run(&forced).unwrap();
    forced.seed = 1;
    tool::run(&forced).unwrap_or_else(|e| panic!("second --force run: {e}"));
    assert_eq!(fs::read_to_string(out.join("note.txt")).unwrap(), "keep");
}
