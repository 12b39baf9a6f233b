//! A default cap on generated frames, scaled to the text.
//!
//! The talker stops when it samples EOS, but on roughly 0.3–0.5 % of requests it never does and
//! babbles or idles until `max_new_tokens`: 8192 steps in `generation_config.json`, i.e. 655 s of
//! audio and minutes of GPU time for a sentence. A request that sets no cap of its own gets this
//! budget instead, which is far above any real reading of the text yet bounds a runaway to a
//! small multiple of the normal cost.
//!
//! Speaking rate in frames (12.5 per second) per text token of the Qwen2 tokenizer, measured on
//! sample text with the checkpoint's tokenizer:
//! * English: 1.36 tokens per word; at 150 words per minute that is 3.4 tokens/s, so
//!   **~3.7 frames per token**;
//! * Chinese: 1.9 characters per token; at 4.5 characters/s, **~5.2 frames per token**;
//! * Japanese: 2.0 characters per token; at ~6 characters/s, ~4.2 frames per token.
//!
//! The budget allows [`FRAME_BUDGET_PER_TOKEN`] = 20 frames per token — about 4× the Chinese
//! rate and 5× the English one, enough for slow or instructed-slow speech with long pauses —
//! plus [`FRAME_BUDGET_BASE`] = 100 frames (8 s) for leading and trailing silence and for very
//! short texts, where one token ("Hi") can carry a whole utterance. A runaway request then
//! costs a small multiple of a normal one (~6× for a paragraph, ~8× for a short sentence)
//! instead of up to ~200×.
//!
//! Examples: 0 tokens → 100 frames (8 s); 10 tokens (a short sentence, ~3 s spoken) → 300 (24 s);
//! 100 tokens (~30 s spoken) → 2100 (168 s); 405 tokens or more → the 8192 cap.

/// Frames allowed whatever the text length: 8 s.
pub const FRAME_BUDGET_BASE: usize = 100;

/// Frames allowed per text token: ~4–5× a normal speaking rate (see the module docs).
pub const FRAME_BUDGET_PER_TOKEN: usize = 20;

/// Default cap on generated frames for a text of `text_tokens` tokens (the text to speak as the
/// text tokenizer splits it, without the chat-template tokens and without an ICL reference
/// transcript): `FRAME_BUDGET_BASE + FRAME_BUDGET_PER_TOKEN * text_tokens`, never more than
/// `max_new_tokens` (the configured or caller's hard cap always wins, even below the base).
/// Use it where `max_new_tokens` would go. Non-decreasing in both arguments.
pub fn default_frame_budget(text_tokens: usize, max_new_tokens: usize) -> usize {
    FRAME_BUDGET_PER_TOKEN
        .saturating_mul(text_tokens)
        .saturating_add(FRAME_BUDGET_BASE)
        .min(max_new_tokens)
}
