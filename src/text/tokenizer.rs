//! Qwen2 byte-level BPE, id-for-id equal to the `Qwen2TokenizerFast` that transformers 4.57.3
//! builds for the Qwen3-TTS checkpoints.
//!
//! The checkpoints ship `vocab.json`, `merges.txt` and `tokenizer_config.json` but no
//! `tokenizer.json`, so transformers assembles the fast tokenizer at load time
//! (`convert_slow_tokenizer.Qwen2Converter`). We assemble the same pipeline with the
//! `tokenizers` crate:
//!
//! 1. **Added tokens** (`added_tokens_decoder`, ids 151643..=151675) are cut out of the raw text
//!    first and each becomes its own id. All have `normalized: false`, so they match the text
//!    before NFC; special and non-special ones alike (`<think>` is not special) are atomic.
//! 2. **NFC** normalisation of the remaining text.
//! 3. **Split** with the Qwen2 regex (below), matches kept as pre-tokens ("isolated"), then
//!    **ByteLevel**: UTF-8 bytes mapped through the GPT-2 byte-to-char table, no prefix space,
//!    no second regex.
//! 4. **BPE** with merges ranked by their order in `merges.txt`; no unknown token and no byte
//!    fallback, since all 256 byte symbols are in the vocabulary.
//!
//! Decoding is the ByteLevel decoder: symbols back to bytes, bytes to UTF-8 (invalid sequences
//! become U+FFFD, as Python's `errors="replace"`); added tokens come out verbatim.
//!
//! No BOS/EOS is ever added: the prompt builder writes `<|im_start|>` etc. into the text.
//!
//! # Split regex: Qwen2, deliberately not what the official loader does
//!
//! ```text
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! `Qwen3TTSModel.from_pretrained` passes `fix_mistral_regex=True`. In transformers 4.57.3, for a
//! local directory whose `config.json` says `transformers_version` 4.57.3, that flag replaces
//! this regex with Mistral's case-aware one, so "iPhone" becomes "i" + "Phone" and some Thai
//! text splits differently. The Qwen models were trained with the Qwen2 regex (QwenLM/Qwen3-VL
//! #1998, huggingface/transformers #42591 and #44031) and loading by hub id does not patch, so
//! we implement the Qwen2 regex. `tests/fixtures/tokenizer/golden.json` records, per string, the
//! ids the official local-directory path would give where they differ.
//!
//! Files that transformers would reject (a merge line without exactly two symbols, a merge
//! symbol missing from the vocabulary) are rejected here too, with an error naming the file.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, ErrorKind, Result};

/// The split regex of `Qwen2Converter` / `Qwen2Tokenizer.PRETOKENIZE_REGEX` (see module docs).
const QWEN2_SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Text to token ids and back. Immutable after loading; share it freely between threads.
pub struct TextTokenizer {
    inner: Tokenizer,
    vocab_size: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size)
            .finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// Loads `vocab.json`, `merges.txt` and `tokenizer_config.json` from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_files(
            &dir.join("vocab.json"),
            &dir.join("merges.txt"),
            &dir.join("tokenizer_config.json"),
        )
    }

    /// Loads the three files from their paths (each at most [`MAX_TOKENIZER_FILE_BYTES`]).
    pub fn from_files(vocab: &Path, merges: &Path, tokenizer_config: &Path) -> Result<Self> {
        let vocab_text = read_text(vocab)?;
        let merges_text = read_text(merges)?;
        let config_text = read_text(tokenizer_config)?;
        Self::build((vocab, &vocab_text), (merges, &merges_text), (tokenizer_config, &config_text))
    }

    /// The same from the files' contents already in memory (messages name them `vocab.json`,
    /// `merges.txt` and `tokenizer_config.json`).
    pub fn from_texts(vocab_json: &str, merges_txt: &str, tokenizer_config_json: &str) -> Result<Self> {
        Self::build(
            (Path::new("vocab.json"), vocab_json),
            (Path::new("merges.txt"), merges_txt),
            (Path::new("tokenizer_config.json"), tokenizer_config_json),
        )
    }

    /// Each argument is (the file's name for messages, its text).
    fn build(
        (vocab, vocab_text): (&Path, &str),
        (merges, merges_text): (&Path, &str),
        (tokenizer_config, config_text): (&Path, &str),
    ) -> Result<Self> {
        let vocab_map: Vocab = serde_json::from_str(vocab_text)
            .map_err(|e| bad(vocab, format!("expected a JSON object of token -> id: {e}")))?;
        check_dense_ids(&vocab_map).map_err(|what| bad(vocab, what))?;
        let merge_list = parse_merges(merges_text, merges)?;
        check_merges_in_vocab(&vocab_map, &merge_list)
            .map_err(|what| bad(merges, format!("{what} of {}", vocab.display())))?;
        let added = parse_added_tokens(config_text, tokenizer_config)?;

        let bpe = BPE::builder()
            .vocab_and_merges(vocab_map, merge_list)
            .build()
            // The only realistic failure: a merge names a symbol (or result) absent from the vocab.
            .map_err(|e| bad(merges, format!("inconsistent with {}: {e}", vocab.display())))?;

        let mut inner = Tokenizer::new(bpe);
        inner
            .with_normalizer(Some(NFC))
            .map_err(|e| bad(vocab, format!("cannot install the NFC normalizer: {e}")))?;
        let split = Split::new(
            SplitPattern::Regex(QWEN2_SPLIT_REGEX.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .expect("the Qwen2 split regex compiles");
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ])));
        // The converter's ByteLevel post-processor only trims offsets; we never expose offsets,
        // so there is none here.
        inner.with_decoder(Some(ByteLevel::default()));

        // One batch, in id order, as transformers does; then check the ids it handed out.
        inner
            .add_tokens(added.iter().map(|(_, token)| token.clone()))
            .map_err(|e| bad(tokenizer_config, format!("cannot add added tokens: {e}")))?;
        for (id, token) in &added {
            let got = inner.token_to_id(&token.content);
            if got != Some(*id) {
                return Err(bad(
                    tokenizer_config,
                    format!(
                        "added token {:?} is declared as id {id} but would get {got:?}; \
                         added ids must follow the {} vocabulary entries of {} contiguously",
                        token.content,
                        inner.get_vocab_size(false),
                        vocab.display()
                    ),
                ));
            }
        }

        let vocab_size = inner.get_vocab_size(true);
        Ok(TextTokenizer { inner, vocab_size })
    }

    /// Token ids of `text`. Adds no BOS/EOS; added tokens written in the text map to their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // `encode_fast` skips offset tracking, which we do not use; ids are identical.
        let encoding = self.inner.encode_fast(text, false).map_err(|e| {
            Error::new(ErrorKind::BadTokenizer, format!("tokenizing text failed: {e}"))
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, added tokens included verbatim. Byte sequences that are not valid UTF-8
    /// (a token run cut inside a character) decode to U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        // The underlying decoder silently drops unknown ids; an unknown id here is a caller bug.
        if let Some(&id) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(Error::invalid_argument(format!(
                "token id {id} is not in the text vocabulary ({} tokens)",
                self.vocab_size
            )));
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::new(ErrorKind::BadTokenizer, format!("decoding ids failed: {e}")))
    }

    /// Id of a vocabulary symbol or added token, e.g. `"<|im_start|>"` -> 151644. BPE symbols
    /// are in byte-level form (`"Ġworld"`, not `" world"`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// BPE vocabulary plus added tokens: 151676 for every Qwen3-TTS checkpoint.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

// Other threads and the C API share one tokenizer; keep that a compile-time fact.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TextTokenizer>();
};

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::BadTokenizer, format!("{}: {what}", path.display()))
}

/// Largest tokenizer file read (the released vocab.json is 2.7 MB, merges.txt 1.6 MB).
pub const MAX_TOKENIZER_FILE_BYTES: u64 = 64 << 20;

fn read_text(path: &Path) -> Result<String> {
    let bytes = crate::files::read_bounded(path, MAX_TOKENIZER_FILE_BYTES, |size| {
        bad(path, format!("{size} bytes is too large for a tokenizer file (at most {MAX_TOKENIZER_FILE_BYTES})"))
    })?;
    String::from_utf8(bytes).map_err(|e| bad(path, format!("not UTF-8: {e}")))
}

/// The vocabulary's ids must be 0..n, each once (as in every released vocab.json): a repeated
/// id would decode ambiguously, and an id past n would fall outside the `vocab_size` the rest
/// of the library sizes from.
fn check_dense_ids(vocab: &Vocab) -> std::result::Result<(), String> {
    let n = vocab.len();
    let mut seen = vec![false; n];
    // Sorted, so that of several bad entries the same one is reported every time.
    let mut entries: Vec<(&String, &u32)> = vocab.iter().collect();
    entries.sort_unstable_by_key(|&(token, &id)| (id, token));
    for (token, &id) in entries {
        match seen.get_mut(id as usize) {
            None => return Err(format!("token {token:?} has id {id}, past the {n} ids of the vocabulary (0..{n})")),
            Some(true) => return Err(format!("id {id} is given to more than one token (one of them {token:?})")),
            Some(slot) => *slot = true,
        }
    }
    Ok(())
}

/// Every merge's two symbols and their concatenation must be vocabulary tokens. The BPE
/// builder checks this too, but it copies the concatenation into a buffer as long as the
/// longest token first, and panics when the two are longer than that (found by the
/// tokenizer_files fuzzer); a merge whose result is not a token is refused here, before that.
fn check_merges_in_vocab(vocab: &Vocab, merges: &Merges) -> std::result::Result<(), String> {
    let mut joined = String::new();
    for (rank, (left, right)) in merges.iter().enumerate() {
        for symbol in [left, right] {
            if !vocab.contains_key(symbol) {
                return Err(format!("merge {} ({left} {right}): {symbol:?} is not a token", rank + 1));
            }
        }
        joined.clear();
        joined.push_str(left);
        joined.push_str(right);
        if !vocab.contains_key(&joined) {
            return Err(format!("merge {} ({left} {right}): the result {joined:?} is not a token", rank + 1));
        }
    }
    Ok(())
}

/// `merges.txt` as `Qwen2Tokenizer` reads it: one "left right" pair per line, an optional
/// `#version:` first line, blank lines skipped, rank = order of first appearance.
fn parse_merges(text: &str, path: &Path) -> Result<Merges> {
    // Lines average ~11 bytes; a slight overestimate spares the rehashing.
    let mut merges = Merges::with_capacity(text.len() / 10);
    // transformers keys ranks by a dict, so a repeated pair keeps its first position.
    let mut seen = HashSet::with_capacity(text.len() / 10);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("#version:")) {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(left), Some(right), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(
                path,
                format!("line {}: expected two space-separated symbols, found {line:?}", i + 1),
            ));
        };
        if seen.insert((left, right)) {
            merges.push((left.to_owned(), right.to_owned()));
        }
    }
    if merges.is_empty() {
        return Err(bad(path, "no merges"));
    }
    Ok(merges)
}

/// One `added_tokens_decoder` entry; defaults are those of `tokenizers.AddedToken`.
#[derive(Deserialize)]
struct AddedTokenEntry {
    content: String,
    #[serde(default)]
    single_word: bool,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
    normalized: Option<bool>,
    #[serde(default)]
    special: bool,
}

#[derive(Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    added_tokens_decoder: BTreeMap<String, AddedTokenEntry>,
    #[serde(default)]
    additional_special_tokens: Vec<serde_json::Value>,
    #[serde(default)]
    bos_token: serde_json::Value,
    #[serde(default)]
    eos_token: serde_json::Value,
    #[serde(default)]
    pad_token: serde_json::Value,
    #[serde(default)]
    unk_token: serde_json::Value,
}

/// The added tokens of `tokenizer_config.json`, sorted by id.
fn parse_added_tokens(text: &str, path: &Path) -> Result<Vec<(u32, AddedToken)>> {
    let config: TokenizerConfig =
        serde_json::from_str(text).map_err(|e| bad(path, format!("malformed: {e}")))?;
    if config.added_tokens_decoder.is_empty() {
        return Err(bad(
            path,
            "no added_tokens_decoder (needed for <|im_start|> and the TTS tokens)",
        ));
    }
    let mut added = Vec::with_capacity(config.added_tokens_decoder.len());
    for (key, entry) in config.added_tokens_decoder {
        let id: u32 = key.parse().map_err(|_| {
            bad(path, format!("added_tokens_decoder key {key:?} is not a token id"))
        })?;
        let token = AddedToken::from(entry.content, entry.special)
            .single_word(entry.single_word)
            .lstrip(entry.lstrip)
            .rstrip(entry.rstrip)
            .normalized(entry.normalized.unwrap_or(!entry.special));
        added.push((id, token));
    }
    added.sort_by_key(|&(id, _)| id);

    // transformers would append a special token missing from added_tokens_decoder under a fresh
    // id. No checkpoint does that; refuse rather than guess the id.
    let named = [&config.bos_token, &config.eos_token, &config.pad_token, &config.unk_token];
    for value in named.into_iter().chain(&config.additional_special_tokens) {
        // Either a plain string or a serialised AddedToken object.
        let content = value.as_str().or_else(|| value.get("content").and_then(|c| c.as_str()));
        if let Some(content) = content
            && !added.iter().any(|(_, t)| t.content == content)
        {
            return Err(bad(
                path,
                format!("special token {content:?} is not in added_tokens_decoder"),
            ));
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A tiny but complete tokenizer in a scratch directory: "a", "b" and the merge "a b".
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("qt-tokenizer-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let s = Scratch(dir);
            s.write("vocab.json", r#"{"a": 0, "b": 1, "ab": 2}"#);
            s.write("merges.txt", "#version: 0.2\na b\n");
            s.write(
                "tokenizer_config.json",
                r#"{"added_tokens_decoder": {"3": {"content": "<|x|>", "special": true, "normalized": false}},
                    "eos_token": "<|x|>"}"#,
            );
            s
        }
        fn write(&self, file: &str, text: &str) {
            std::fs::write(self.0.join(file), text).unwrap();
        }
        fn load(&self) -> Result<TextTokenizer> {
            TextTokenizer::from_dir(&self.0)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn tiny_tokenizer_round_trips() {
        let tok = Scratch::new("ok").load().unwrap();
        assert_eq!(tok.vocab_size(), 4);
        assert_eq!(tok.encode("ab<|x|>ba").unwrap(), [2, 3, 1, 0]);
        assert_eq!(tok.decode(&[2, 3, 1, 0]).unwrap(), "ab<|x|>ba");
        assert_eq!(tok.token_to_id("<|x|>"), Some(3));
    }

    #[test]
    fn missing_file_is_not_found_and_named() {
        let s = Scratch::new("missing");
        std::fs::remove_file(s.0.join("merges.txt")).unwrap();
        let err = s.load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("merges.txt"), "{err}");
    }

    #[test]
    fn malformed_vocab_is_bad_tokenizer_and_named() {
        let s = Scratch::new("badvocab");
        s.write("vocab.json", r#"{"a": 0, "b": "#);
        let err = s.load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadTokenizer);
        assert!(err.message().contains("vocab.json"), "{err}");
    }

    #[test]
    fn malformed_merges_are_bad_tokenizer_and_name_the_line() {
        let s = Scratch::new("badmerges");
        s.write("merges.txt", "a b\nab\n");
        let err = s.load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadTokenizer);
        assert!(err.message().contains("merges.txt") && err.message().contains("line 2"), "{err}");

        s.write("merges.txt", "a c\n");
        let err = s.load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadTokenizer);
        assert!(err.message().contains("merges.txt"), "{err}");
    }

    #[test]
    fn added_token_ids_must_match_declaration() {
        let s = Scratch::new("badadded");
        s.write(
            "tokenizer_config.json",
            r#"{"added_tokens_decoder": {"7": {"content": "<|x|>"}}}"#,
        );
        let err = s.load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadTokenizer);
        assert!(
            err.message().contains("tokenizer_config.json") && err.message().contains("7"),
            "{err}"
        );
    }

    #[test]
    fn undeclared_special_token_is_refused() {
        let s = Scratch::new("undeclared");
        s.write(
            "tokenizer_config.json",
            r#"{"added_tokens_decoder": {"3": {"content": "<|x|>"}}, "pad_token": "<|pad|>"}"#,
        );
        let err = s.load().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadTokenizer);
        assert!(err.message().contains("<|pad|>"), "{err}");
    }

    #[test]
    fn unknown_id_is_invalid_argument() {
        let tok = Scratch::new("unknownid").load().unwrap();
        assert_eq!(tok.decode(&[0, 99]).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}
