//! Text tokenizer parity with the reference `Qwen2TokenizerFast` (transformers 4.57.3).
//!
//! Golden ids come from tools/fixtures/make_tokenizer_golden.py; the tokenizer files from
//! `$QT_SHARED_DIR/checkpoints/tokenizer`, else `../shared/checkpoints/tokenizer` next to the
//! crate. A missing directory fails the test: parity is never skipped silently.

use std::path::PathBuf;
use std::sync::OnceLock;

use qwentts::text::TextTokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    /// Present where the reference decode differs from `text` (NFD input decodes as NFC).
    decoded: Option<String>,
}

fn tokenizer_dir() -> PathBuf {
    match std::env::var_os("QT_SHARED_DIR") {
        Some(shared) => PathBuf::from(shared).join("checkpoints/tokenizer"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/checkpoints/tokenizer"),
    }
}

fn tokenizer() -> &'static TextTokenizer {
    static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let dir = tokenizer_dir();
        assert!(
            dir.join("vocab.json").is_file(),
            "tokenizer files not found in {} (set QT_SHARED_DIR to the shared/ directory)",
            dir.display()
        );
        let start = std::time::Instant::now();
        let tok = TextTokenizer::from_dir(&dir)
            .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()));
        eprintln!("tokenizer loaded in {:?}", start.elapsed());
        tok
    })
}

fn golden() -> Vec<Case> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let golden: Golden =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(golden.cases.len() >= 200, "golden corpus shrank to {} cases", golden.cases.len());
    golden.cases
}

#[test]
fn ids_match_reference_for_whole_corpus() {
    let tok = tokenizer();
    let cases = golden();
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let got = tok.encode(&c.text).unwrap();
            (got != c.ids)
                .then(|| format!("  {:?}\n    want {:?}\n    got  {:?}", c.text, c.ids, got))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} strings tokenised differently:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

#[test]
fn decode_matches_reference_and_round_trips() {
    let tok = tokenizer();
    let mismatches: Vec<String> = golden()
        .iter()
        .filter_map(|c| {
            // `decoded` is only recorded where the reference itself does not round-trip.
            let want = c.decoded.as_deref().unwrap_or(&c.text);
            let got = tok.decode(&c.ids).unwrap();
            (got != want)
                .then(|| format!("  ids of {:?}\n    want {want:?}\n    got  {got:?}", c.text))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} decodes differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn spec_examples() {
    let tok = tokenizer();
    let examples: [(&str, &[u32]); 4] = [
        ("Hello world.", &[9707, 1879, 13]),
        ("Okay. Yeah.", &[32313, 13, 21607, 13]),
        ("你好，世界。", &[108386, 3837, 99489, 1773]),
        ("<|im_start|>user\n", &[151644, 872, 198]),
    ];
    for (text, ids) in examples {
        assert_eq!(tok.encode(text).unwrap(), ids, "{text:?}");
    }
}

#[test]
fn vocabulary_and_added_tokens() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 151_676);
    for (token, id) in [
        ("<|endoftext|>", 151_643),
        ("<|im_start|>", 151_644),
        ("<|im_end|>", 151_645),
        ("<think>", 151_667),
        ("<tts_pad>", 151_671),
        ("<tts_text_bos>", 151_672),
        ("<tts_text_eod>", 151_673),
        ("<|audio_pad|>", 151_675),
        ("Ġworld", 1879),
    ] {
        assert_eq!(tok.token_to_id(token), Some(id), "{token}");
    }
    assert_eq!(tok.token_to_id("<|not_a_token|>"), None);
    assert!(tok.decode(&[151_676]).is_err());
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TextTokenizer>();
    // And actually usable from several threads at once (the BPE cache is per thread).
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_eq!(tokenizer().encode("Hello world.").unwrap(), [9707, 1879, 13]));
        }
    });
}

/// A small byte-level tokenizer's three files: the 256 byte symbols (ids 0..256), `extra`
/// vocabulary entries, one merge, and two added tokens after the vocabulary.
fn small_files(extra: &str) -> (String, String, String) {
    // GPT-2's byte-to-symbol table: printable Latin-1 bytes stand for themselves, the rest
    // are shifted to U+0100 and up.
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut shifted = 0;
    let mut symbols = Vec::new();
    for b in 0..256u32 {
        if printable(b) {
            symbols.push(char::from_u32(b).unwrap());
        } else {
            symbols.push(char::from_u32(256 + shifted).unwrap());
            shifted += 1;
        }
    }
    let mut entries: Vec<String> = symbols.iter().enumerate().map(|(i, c)| format!("{:?}: {i}", c.to_string())).collect();
    entries.push("\"he\": 256".to_owned());
    let vocab = format!("{{{}{extra}}}", entries.join(", "));
    let added = |id: u32, content: &str| {
        format!(r#""{id}": {{"content": "{content}", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}}"#)
    };
    let config = format!(r#"{{"added_tokens_decoder": {{{}, {}}}, "eos_token": "<|im_end|>"}}"#, added(257, "<|im_start|>"), added(258, "<|im_end|>"));
    (vocab, "#version: 0.2\nh e\n".to_owned(), config)
}

#[test]
fn from_texts_builds_and_refuses_vocabularies_whose_ids_are_not_0_to_n() {
    let (v, m, c) = small_files("");
    let t = TextTokenizer::from_texts(&v, &m, &c).expect("a well-formed small tokenizer");
    assert_eq!(t.vocab_size(), 259);
    let ids = t.encode("hehe<|im_end|>").unwrap();
    assert_eq!(ids, vec![256, 256, 258]);
    assert_eq!(t.decode(&ids).unwrap(), "hehe<|im_end|>");

    // Found by the tokenizer_files fuzzer: a repeated id built, and its encodings then held
    // ids at or past vocab_size().
    for (extra, want) in [
        (r#", "hh": 256"#, "id 256 is given to more than one token"),
        (r#", "hh": 300"#, "has id 300, past the 258 ids"),
    ] {
        let (v, m, c) = small_files(extra);
        let err = TextTokenizer::from_texts(&v, &m, &c).expect_err(extra);
        assert_eq!(err.kind(), qwentts::ErrorKind::BadTokenizer);
        assert!(err.to_string().contains("vocab.json") && err.to_string().contains(want), "{err}");
    }
}

/// Found by the tokenizer_files fuzzer: a merge of two tokens whose concatenation is longer
/// than every token panicked inside the BPE builder; now it is refused as a bad merges.txt.
/// Merges whose symbols or result are missing are refused with the same kind of error.
#[test]
fn from_texts_refuses_merges_whose_result_is_not_a_token() {
    // The small vocabulary's longest tokens are 2 bytes ("he", the shifted byte symbols), so
    // "he he" is the panicking case: 4 bytes into a 2-byte buffer.
    for (merges, want) in [
        ("#version: 0.2\nh e\nhe he\n", "the result \"hehe\" is not a token"),
        ("#version: 0.2\nh e\nhe x9\n", "\"x9\" is not a token"),
        ("#version: 0.2\nh e\nh h\n", "the result \"hh\" is not a token"),
    ] {
        let (v, _, c) = small_files("");
        let err = TextTokenizer::from_texts(&v, merges, &c).expect_err(merges);
        assert_eq!(err.kind(), qwentts::ErrorKind::BadTokenizer);
        let msg = err.to_string();
        assert!(msg.contains("merges.txt") && msg.contains(want), "{msg}");
    }
}
