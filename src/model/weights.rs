//! A safetensors file, memory-mapped (or already in memory): the header parsed once, tensor
//! bytes borrowed from the mapping.
//!
//! Layout of the container: an 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`), then the
//! data section; offsets are relative to the start of the data section.
//!
//! The `safetensors` crate parses and validates the header. Its errors are correct but terse
//! ("invalid offset", "metadata incomplete buffer"), and an unknown dtype surfaces as a serde
//! message without the tensor name. When it rejects a file we therefore re-read the header as
//! plain JSON and say exactly what is wrong and where ([`diagnose_header`]); the happy path
//! parses the header once.
//!
//! Nothing is copied at load: [`TensorView::bytes`] points into the map. Data offsets in real
//! files are not aligned to the element size, so conversions read bytes, never cast slices.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};

/// Size of the little-endian header-length prefix.
const PREFIX_LEN: usize = 8;

pub use crate::tensor::{DType, TensorView};

fn dtype_from_safetensors(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::BF16 => Some(DType::BF16),
        Dtype::F16 => Some(DType::F16),
        Dtype::F32 => Some(DType::F32),
        _ => None,
    }
}

/// Where one tensor lives in the map.
#[derive(Debug)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    /// Absolute byte range in the mapped file.
    start: usize,
    end: usize,
}

/// Where a file's bytes live: mapped from disk ([`SafeTensorsFile::open`]) or owned
/// ([`SafeTensorsFile::from_bytes`]).
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// An opened, validated safetensors file. Immutable and shareable across threads.
pub struct SafeTensorsFile {
    path: PathBuf,
    map: Bytes,
    /// Sorted by name, so listings and error reports are deterministic.
    entries: BTreeMap<String, Entry>,
    /// Offset of the data section in the file.
    data_start: usize,
}

impl fmt::Debug for SafeTensorsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeTensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .field("data_bytes", &self.data_bytes())
            .finish()
    }
}

impl SafeTensorsFile {
    /// Maps `path` and validates its header: sizes, offsets, dtypes (BF16, F16 or F32 only).
    ///
    /// Errors: `NotFound`/`Io` if the file cannot be opened; `BadWeights` with a message that
    /// names the file and the offending tensor for every kind of corruption.
    pub fn open(path: &Path) -> Result<Self> {
        let file = crate::files::open_regular(path)?;
        let file_len = file.metadata().map_err(|e| Error::from_io(&e, path))?.len();
        let bad = |msg: String| Error::bad_weights(format!("{}: {msg}", path.display()));

        // Checked before mapping: an empty file cannot be mapped on every platform.
        if file_len < PREFIX_LEN as u64 {
            return Err(bad(format!(
                "file is {file_len} bytes long, shorter than the 8-byte header-length prefix of a safetensors file"
            )));
        }

        // SAFETY: the map is read-only and we never hand out `&mut`. Like every mmap-based
        // loader (llama.cpp, candle) we rely on the checkpoint not being modified or truncated
        // by another process while it is loaded; that would be undefined behaviour (SIGBUS).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::from_io(&e, path))?;
        Self::index(path.to_path_buf(), Bytes::Mapped(map))
    }

    /// The same validation as [`open`](Self::open) over bytes already in memory (a checkpoint
    /// embedded in a program or unpacked from an archive); `name` stands for the file in
    /// messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        Self::index(name.into(), Bytes::Owned(bytes))
    }

    /// Parses and validates the header; the safetensors crate checks that the tensors' byte
    /// ranges tile the data section exactly, so every range lies inside `map`.
    fn index(path: PathBuf, map: Bytes) -> Result<Self> {
        let bad = |msg: String| Error::bad_weights(format!("{}: {msg}", path.display()));
        if map.len() < PREFIX_LEN {
            return Err(bad(format!(
                "file is {} bytes long, shorter than the 8-byte header-length prefix of a safetensors file",
                map.len()
            )));
        }
        let header_len = u64::from_le_bytes(map[..PREFIX_LEN].try_into().expect("8 bytes"));
        let after_prefix = (map.len() - PREFIX_LEN) as u64;
        if header_len > after_prefix {
            return Err(bad(format!(
                "header length field says {header_len} bytes, but only {after_prefix} bytes follow the 8-byte prefix \
                 (corrupt length or truncated file)"
            )));
        }

        let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| bad(explain(&map, e)))?;
        let data_start = PREFIX_LEN + header_len;

        let mut entries = BTreeMap::new();
        // Sorted first, so that of several bad tensors the same one is reported every time.
        let infos: BTreeMap<String, _> = metadata.tensors().into_iter().collect();
        for (name, info) in infos {
            let Some(dtype) = dtype_from_safetensors(info.dtype) else {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {:?}, which this library does not read (supported: BF16, F16, F32)",
                    info.dtype
                )));
            };
            let (begin, end) = info.data_offsets;
            entries.insert(
                name,
                Entry { dtype, shape: info.shape.clone(), start: data_start + begin, end: data_start + end },
            );
        }
        Ok(SafeTensorsFile { path, map, entries, data_start })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of tensor data (the file size minus the prefix and the JSON header).
    pub fn data_bytes(&self) -> u64 {
        (self.map.len() - self.data_start) as u64
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The tensor called `name`, or a `MissingTensor` error naming it and this file.
    pub fn get(&self, name: &str) -> Result<TensorView<'_>> {
        let Some((key, e)) = self.entries.get_key_value(name) else {
            return Err(Error::new(
                ErrorKind::MissingTensor,
                format!("{}: tensor `{name}` not found", self.path.display()),
            ));
        };
        Ok(TensorView { name: key, dtype: e.dtype, shape: &e.shape, bytes: &self.map[e.start..e.end] })
    }

    /// Like [`get`](Self::get), and the shape must equal `shape` (`ShapeMismatch` otherwise).
    pub fn require(&self, name: &str, shape: &[usize]) -> Result<TensorView<'_>> {
        let view = self.get(name)?;
        if view.shape != shape {
            return Err(Error::new(
                ErrorKind::ShapeMismatch,
                format!("{}: tensor `{name}` has shape {:?}, expected {shape:?}", self.path.display(), view.shape),
            ));
        }
        Ok(view)
    }
}

/// Turns a safetensors parse error into a specific message (without the file name).
fn explain(file: &[u8], err: SafeTensorError) -> String {
    use SafeTensorError as E;
    match err {
        E::HeaderTooSmall => "file is shorter than the 8-byte header-length prefix".into(),
        E::InvalidHeaderLength => "header length field points past the end of the file".into(),
        E::HeaderTooLarge => "header length field exceeds the 100 MB safetensors limit".into(),
        E::InvalidHeader(utf8) => {
            format!("header is not valid UTF-8 (invalid byte at header offset {})", utf8.valid_up_to())
        }
        // Everything else concerns the header's content: say what is wrong and with which tensor.
        other => {
            let header_len = u64::from_le_bytes(file[..PREFIX_LEN].try_into().expect("8 bytes")) as usize;
            let header = &file[PREFIX_LEN..PREFIX_LEN + header_len];
            let data_len = (file.len() - PREFIX_LEN - header_len) as u64;
            match serde_json::from_slice::<Value>(header) {
                Err(json) => format!("header is not valid JSON: {json}"),
                Ok(value) => diagnose_header(&value, data_len).unwrap_or_else(|| format!("invalid header: {other}")),
            }
        }
    }
}

/// One tensor entry of a header, read leniently for diagnosis.
struct RawEntry<'a> {
    name: &'a str,
    begin: u64,
    end: u64,
}

/// Finds the first specific problem in a safetensors header whose JSON parsed, checking in
/// the order a reader needs: entry structure, dtype, size vs. shape, overlaps, bounds,
/// truncation, gaps. `data_len` is the number of bytes after the header. Returns `None` if
/// the header looks valid (the caller then reports the crate's own message).
pub(crate) fn diagnose_header(header: &Value, data_len: u64) -> Option<String> {
    let Some(object) = header.as_object() else {
        return Some("header is not a JSON object".into());
    };
    let mut entries = Vec::new();
    for (name, info) in object {
        if name == "__metadata__" {
            let ok = info.as_object().is_some_and(|m| m.values().all(Value::is_string));
            if !ok {
                return Some("`__metadata__` must be an object of string values".into());
            }
            continue;
        }
        let entry = match check_entry(name, info) {
            Ok(entry) => entry,
            Err(msg) => return Some(msg),
        };
        entries.push(entry);
    }

    // Layout: sorted by position, tensors must tile [0, data_len) exactly.
    entries.sort_by_key(|e| (e.begin, e.end));
    for pair in entries.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.begin < a.end {
            return Some(format!(
                "tensors `{}` (bytes {}..{}) and `{}` (bytes {}..{}) overlap",
                a.name, a.begin, a.end, b.name, b.begin, b.end
            ));
        }
    }
    let declared = entries.last().map_or(0, |e| e.end);
    let contiguous = entries.first().is_none_or(|e| e.begin == 0) && entries.windows(2).all(|p| p[1].begin == p[0].end);
    if let Some(past) = entries.iter().find(|e| e.end > data_len) {
        // A self-consistent layout that runs past the end means the file lost its tail; a
        // single tensor pointing elsewhere means its offsets are wrong.
        return Some(if contiguous {
            format!(
                "file is truncated: the header declares {declared} bytes of tensor data but only {data_len} are present; \
                 tensor `{}` (bytes {}..{}) is cut off",
                past.name, past.begin, past.end
            )
        } else {
            format!(
                "tensor `{}` has data_offsets [{}, {}] outside the data section ({data_len} bytes)",
                past.name, past.begin, past.end
            )
        });
    }
    if let Some(first) = entries.first().filter(|e| e.begin != 0) {
        return Some(format!(
            "first tensor `{}` starts at data byte {}, not 0 (unused bytes)",
            first.name, first.begin
        ));
    }
    if let Some(pair) = entries.windows(2).find(|p| p[1].begin != p[0].end) {
        return Some(format!(
            "{} unused bytes between tensors `{}` and `{}`: data_offsets must be contiguous",
            pair[1].begin - pair[0].end,
            pair[0].name,
            pair[1].name
        ));
    }
    if declared != data_len {
        return Some(format!(
            "{} bytes of data after the last tensor: the header declares {declared} bytes, the file holds {data_len}",
            data_len - declared
        ));
    }
    None
}

/// Checks one header entry: structure, dtype, and that the byte range matches shape × dtype.
fn check_entry<'a>(name: &'a str, info: &Value) -> std::result::Result<RawEntry<'a>, String> {
    let Some(fields) = info.as_object() else {
        return Err(format!("tensor `{name}`: entry must be an object with dtype, shape and data_offsets"));
    };
    let dtype_name = match fields.get("dtype") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("tensor `{name}`: dtype must be a string, found {other}")),
        None => return Err(format!("tensor `{name}`: missing dtype")),
    };
    // The crate's own enum decides which names exist, so this stays in step with it.
    let Ok(dtype) = serde_json::from_value::<Dtype>(Value::String(dtype_name.to_owned())) else {
        return Err(format!("tensor `{name}` has unknown dtype \"{dtype_name}\""));
    };
    let shape: Option<Vec<u64>> =
        fields.get("shape").and_then(Value::as_array).and_then(|dims| dims.iter().map(Value::as_u64).collect());
    let Some(shape) = shape else {
        return Err(format!("tensor `{name}`: shape must be a list of non-negative integers"));
    };
    let offsets: Option<Vec<u64>> =
        fields.get("data_offsets").and_then(Value::as_array).and_then(|o| o.iter().map(Value::as_u64).collect());
    let (begin, end) = match offsets.as_deref() {
        Some(&[begin, end]) => (begin, end),
        _ => return Err(format!("tensor `{name}`: data_offsets must be [begin, end] with non-negative integers")),
    };
    if begin > end {
        return Err(format!("tensor `{name}` has data_offsets [{begin}, {end}]: begin is after end"));
    }
    let bits = shape.iter().try_fold(dtype.bitsize() as u64, |acc, &d| acc.checked_mul(d));
    let Some(bits) = bits else {
        return Err(format!("tensor `{name}`: shape {shape:?} overflows"));
    };
    if !bits.is_multiple_of(8) {
        return Err(format!("tensor `{name}`: shape {shape:?} of dtype {dtype:?} does not fill whole bytes"));
    }
    if end - begin != bits / 8 {
        return Err(format!(
            "tensor `{name}` has shape {shape:?} and dtype {dtype:?}, which need {} bytes, but its data_offsets [{begin}, {end}] span {} bytes",
            bits / 8,
            end - begin
        ));
    }
    Ok(RawEntry { name, begin, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(dtype: &str, shape: &[u64], b: u64, e: u64) -> Value {
        json!({"dtype": dtype, "shape": shape, "data_offsets": [b, e]})
    }

    #[test]
    fn diagnosis_names_each_problem() {
        let ok = json!({"a": entry("F32", &[2], 0, 8), "b": entry("BF16", &[3], 8, 14)});
        assert_eq!(diagnose_header(&ok, 14), None);

        let cases = [
            (json!({"a": entry("F8_FOO", &[2], 0, 2)}), 2, "unknown dtype \"F8_FOO\""),
            (json!({"a": entry("F32", &[2], 0, 4)}), 4, "need 8 bytes"),
            (json!({"a": entry("F32", &[2], 8, 0)}), 8, "begin is after end"),
            (json!({"a": entry("F32", &[2], 0, 8), "b": entry("F32", &[2], 0, 8)}), 16, "overlap"),
            (json!({"a": entry("F32", &[2], 0, 8), "b": entry("F32", &[2], 24, 32)}), 16, "outside the data section"),
            (json!({"a": entry("F32", &[2], 0, 8), "b": entry("F32", &[2], 8, 16)}), 12, "truncated"),
            (json!({"a": entry("F32", &[2], 0, 8), "b": entry("F32", &[2], 12, 20)}), 20, "unused bytes"),
            (json!({"a": entry("F32", &[2], 0, 8)}), 12, "after the last tensor"),
            (json!({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}), 4, "non-negative"),
        ];
        for (header, len, want) in cases {
            let msg = diagnose_header(&header, len).unwrap_or_default();
            assert!(msg.contains(want), "{header}: expected `{want}` in `{msg}`");
        }
    }

    #[test]
    fn bf16_conversion_ignores_alignment() {
        // 1.0 and -2.0 in BF16, starting at an odd address.
        let raw = [0u8, 0x80, 0x3f, 0x00, 0xc0];
        let shape = [2];
        let view = TensorView { name: "t", dtype: DType::BF16, shape: &shape, bytes: &raw[1..] };
        assert_eq!(view.to_f32_vec(), vec![1.0, -2.0]);
    }
}
