//! Shared helpers for golden-fixture tests: fixture paths, a reader for the golden
//! safetensors files and `cases.json`, and tolerance checks that report what they measured.
//!
//! Use from a test crate with `mod common;`. Only std plus the crate's own dependencies
//! (safetensors, serde_json) are used.

#![allow(dead_code)] // each test crate uses a different subset

pub mod generation;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod rng;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// `<crate>/tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `<crate>/tests/fixtures/golden`.
pub fn golden_dir() -> PathBuf {
    fixtures_dir().join("golden")
}

/// A tiny checkpoint directory: "tiny-base" or "tiny-customvoice".
pub fn checkpoint_dir(name: &str) -> PathBuf {
    let dir = fixtures_dir().join(name);
    assert!(dir.join("config.json").is_file(), "fixture checkpoint {} is missing", dir.display());
    dir
}

/// `golden/cases.json`, parsed.
pub fn cases() -> Value {
    let path = golden_dir().join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// `value` as a string (panics naming `what` otherwise).
pub fn json_str<'v>(value: &'v Value, what: &str) -> &'v str {
    value.as_str().unwrap_or_else(|| panic!("cases.json: {what} is not a string: {value}"))
}

/// `value` as a non-negative integer (panics naming `what` otherwise).
pub fn json_usize(value: &Value, what: &str) -> usize {
    value.as_u64().unwrap_or_else(|| panic!("cases.json: {what} is not an integer: {value}")) as usize
}

/// `value` as a list of u32 ids (panics with the key path otherwise).
pub fn json_ids(value: &Value, what: &str) -> Vec<u32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: expected an array, got {value}"))
        .iter()
        .map(|v| v.as_u64().unwrap_or_else(|| panic!("{what}: non-integer {v}")) as u32)
        .collect()
}

/// A tensor read from a golden file, converted to host types.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Copy> Tensor<T> {
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Elements of one index along the first dimension (`t[i]`), flattened.
    pub fn index(&self, i: usize) -> &[T] {
        let inner: usize = self.shape[1..].iter().product();
        &self.data[i * inner..(i + 1) * inner]
    }

    /// Rows `start..end` along the first dimension, flattened.
    pub fn rows(&self, start: usize, end: usize) -> &[T] {
        let inner: usize = self.shape[1..].iter().product();
        &self.data[start * inner..end * inner]
    }
}

/// A golden safetensors file held in memory.
pub struct Golden {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Golden {
    /// Opens `golden/<name>.safetensors`.
    pub fn open(name: &str) -> Self {
        Self::open_path(&golden_dir().join(format!("{name}.safetensors")))
    }

    pub fn open_path(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        Golden { path: path.to_path_buf(), bytes }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated at open")
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tensors().names().into_iter().map(str::to_owned).collect();
        names.sort();
        names
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors().tensor(name).is_ok()
    }

    fn view(&self, name: &str, dtype: Dtype) -> (Vec<usize>, Vec<u8>) {
        let st = self.tensors();
        let view = st.tensor(name).unwrap_or_else(|_| panic!("{}: no tensor `{name}`", self.path.display()));
        assert_eq!(view.dtype(), dtype, "{}: `{name}` has dtype {:?}", self.path.display(), view.dtype());
        (view.shape().to_vec(), view.data().to_vec())
    }

    /// An F32 tensor.
    pub fn f32(&self, name: &str) -> Tensor<f32> {
        let (shape, data) = self.view(name, Dtype::F32);
        let data = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Tensor { shape, data }
    }

    /// An I64 tensor.
    pub fn i64(&self, name: &str) -> Tensor<i64> {
        let (shape, data) = self.view(name, Dtype::I64);
        let data = data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
        Tensor { shape, data }
    }

    /// An I64 tensor of non-negative ids/codes as u32.
    pub fn u32(&self, name: &str) -> Tensor<u32> {
        let t = self.i64(name);
        let data = t.data.iter().map(|&v| u32::try_from(v).expect("code out of u32 range")).collect();
        Tensor { shape: t.shape, data }
    }
}

/// How far `actual` is from `expected`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diff {
    /// `‖actual − expected‖₂ / ‖expected‖₂` (the absolute norm when `expected` is zero).
    pub rel: f64,
    /// `max |actual − expected|`.
    pub max_abs: f64,
    /// Index of the largest absolute difference.
    pub argmax: usize,
    /// Cosine similarity (1 when both are zero, 0 when only one is).
    pub cosine: f64,
    /// `max |expected|` (a logit vector's scale).
    pub scale: f64,
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rel {:.3e}, max abs {:.3e} (at {}), cosine {:.7}", self.rel, self.max_abs, self.argmax, self.cosine)
    }
}

/// Compares two equally long slices in f64. A NaN or an infinity on either side makes every
/// measure NaN, so that it fails every tolerance.
pub fn diff(actual: &[f32], expected: &[f32]) -> Diff {
    assert_eq!(actual.len(), expected.len(), "length mismatch: {} vs {}", actual.len(), expected.len());
    if let Some(i) = actual.iter().zip(expected).position(|(a, e)| !a.is_finite() || !e.is_finite()) {
        return Diff { rel: f64::NAN, max_abs: f64::NAN, argmax: i, cosine: f64::NAN, scale: f64::NAN };
    }
    let (mut num, mut den, mut max_abs, mut argmax) = (0f64, 0f64, 0f64, 0);
    let (mut dot, mut aa, mut scale) = (0f64, 0f64, 0f64);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let (a, e) = (f64::from(a), f64::from(e));
        let d = (a - e).abs();
        if d > max_abs {
            max_abs = d;
            argmax = i;
        }
        num += d * d;
        den += e * e;
        dot += a * e;
        aa += a * a;
        scale = scale.max(e.abs());
    }
    let rel = if den > 0.0 { (num / den).sqrt() } else { num.sqrt() };
    let cosine = match (aa > 0.0, den > 0.0) {
        (false, false) => 1.0,
        (true, true) => dot / (aa.sqrt() * den.sqrt()),
        _ => 0.0,
    };
    Diff { rel, max_abs, argmax, cosine, scale }
}

/// Asserts `diff(actual, expected).rel <= tol` (NaN fails), returning the measurement.
#[track_caller]
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tol: f64) -> Diff {
    let d = diff(actual, expected);
    assert!(
        d.rel <= tol,
        "{what}: {d} exceeds relative tolerance {tol:.1e} (actual {} vs expected {} at the worst index)",
        actual[d.argmax],
        expected[d.argmax]
    );
    d
}

/// The one argmax of the tests: the library's greedy pick, torch.argmax's rule (the first
/// maximum; a NaN counts as the maximum, so a NaN in compared logits cannot hide).
#[allow(unused_imports)] // not every test binary that includes this module uses it
pub use qwentts::model::sampling::argmax;

/// Tracks the worst [`Diff`] per named category over a test, for a one-line summary.
#[derive(Debug, Default)]
pub struct Worst {
    entries: BTreeMap<String, Diff>,
}

impl Worst {
    pub fn record(&mut self, category: &str, d: Diff) {
        let e = self.entries.entry(category.to_owned()).or_insert(d);
        if d.rel > e.rel || d.max_abs > e.max_abs || d.cosine < e.cosine {
            *e = Diff {
                rel: e.rel.max(d.rel),
                max_abs: e.max_abs.max(d.max_abs),
                argmax: d.argmax,
                cosine: e.cosine.min(d.cosine),
                scale: e.scale.max(d.scale),
            };
        }
    }

    /// Prints `category: rel …, max abs …` lines (shown with `--nocapture`).
    pub fn report(&self, title: &str) {
        eprintln!("{title}:");
        for (k, d) in &self.entries {
            eprintln!("  {k:<28} max rel {:.3e}  max abs {:.3e}", d.rel, d.max_abs);
        }
    }
}
