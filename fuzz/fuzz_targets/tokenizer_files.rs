//! The text tokenizer's three files: `vocab.json`, `merges.txt`, `tokenizer_config.json`,
//! separated by NUL bytes in one input. A tokenizer that builds must encode any text to ids
//! inside its vocabulary and decode them again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qwentts::text::TextTokenizer;
use qwentts_fuzz::split_parts;

fuzz_target!(|data: &[u8]| {
    let parts = split_parts(data, b"\0", 3);
    let Ok([vocab, merges, config]) = <[&[u8]; 3]>::try_from(parts.as_slice()).map(|p| p.map(std::str::from_utf8)) else {
        return;
    };
    let (Ok(vocab), Ok(merges), Ok(config)) = (vocab, merges, config) else { return };
    let Ok(tokenizer) = TextTokenizer::from_texts(vocab, merges, config) else { return };
    for text in ["Hello, world! 你好 <|im_start|>assistant\n", merges, config] {
        let ids = tokenizer.encode(text).expect("encoding never fails once built");
        assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()), "ids inside the vocabulary");
        tokenizer.decode(&ids).expect("ids it made decode");
    }
});
