//! What the fuzz targets share: the repository's fixture checkpoints, loaded once per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use qwentts::{LoadOptions, Model};

/// `tests/fixtures` of the repository this crate sits in.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn load(name: &str) -> Model {
    Model::load(fixtures_dir().join(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("fixture checkpoint {name} does not load: {e}"))
}

/// The tiny Base checkpoint (x-vector and ICL voices).
pub fn tiny_base() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load("tiny-base"))
}

/// The tiny CustomVoice checkpoint (built-in speakers).
pub fn tiny_customvoice() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load("tiny-customvoice"))
}

/// Splits `data` at the first `n - 1` occurrences of `sep` into exactly `n` parts (missing
/// parts are empty), so one input can carry several files or fields.
pub fn split_parts<'a>(data: &'a [u8], sep: &[u8], n: usize) -> Vec<&'a [u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest.windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + sep.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(n, &[]);
    parts
}
