//! Token selection: the logits-processor chains of the official pipeline, and the draw.
//!
//! # What the reference does
//!
//! Both the talker (codebook 0) and the code predictor (codebooks 1..15) pick tokens through
//! transformers' `generate` (qwen-tts 0.1.1, transformers 4.57.3), which casts the last
//! position's logits to f32 and runs a processor chain built by `_get_logits_processor`:
//!
//! * talker (`Qwen3TTSForConditionalGeneration.generate`): RepetitionPenalty over the
//!   codebook-0 ids generated so far (the prompt is embeddings only, so nothing else) →
//!   MinLength and MinNewTokensLength (EOS masked while fewer than 2 tokens exist; one check
//!   here, the two agree because the prompt has no ids) → SuppressTokens
//!   (`[vocab - 1024, vocab)` except EOS) → when sampling: Temperature → TopK → TopP;
//! * code predictor: when sampling, Temperature → TopK → TopP; nothing else (no penalty, no
//!   suppression, no EOS).
//!
//! A processor whose parameter is neutral is not built (temperature 1, top_k 0, top_p 1,
//! penalty 1); skipping it here is exact because each would be the identity anyway. With
//! `do_sample = false` the warpers (temperature, top-k, top-p) are dropped, the rest still runs,
//! and the token is the first maximal index (`torch.argmax`). With sampling, transformers draws
//! with `torch.multinomial(softmax(scores))`; that stream cannot be reproduced outside torch, so
//! we draw with [`draw`] from a counter-based uniform ([`crate::model::rng::Philox`]).
//!
//! Every processor below reproduces transformers' CPU arithmetic bit for bit (the fixture test
//! `tests/sampling.rs` checks the processed scores against the real classes):
//! * the penalty and temperature divide (`s / p`, one IEEE division, as torch does on the CPU).
//!   On CUDA torch multiplies by the reciprocal instead, `s * f32(1.0 / p)` with the reciprocal
//!   taken in double (`div_true_kernel_cuda`; measured on an H100, torch 2.11), so a reference
//!   run on a GPU differs from this by an ulp on some scores;
//! * top-k keeps everything tied with the k-th largest score (`scores < kth` is what is
//!   masked), so more than k tokens can survive; with bf16 logits that is common;
//! * top-p sorts ascending, removes the prefix whose cumulative probability is ≤ `1 - top_p`
//!   and always keeps the largest. Tied scores straddling the cut are ordered by id, so the
//!   lower ids go first: that is what torch's CUDA sort does for rows of 100 ids and more
//!   (stable; measured on an H100), i.e. the official GPU runtime. torch's CPU sort is not
//!   stable, and a CPU reference can keep the other token of such a tie.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::model::config::{GenerationConfig, TalkerConfig};

/// `min_new_tokens` hard-coded in `Qwen3TTSForConditionalGeneration.generate`.
pub const TALKER_MIN_NEW_TOKENS: usize = 2;

/// The talker suppresses the last this-many ids of its vocabulary (control, language and
/// speaker tokens), except EOS, so codebook 0 is a code (`< vocab - 1024`) or EOS.
pub const TALKER_SUPPRESSED_TAIL: u32 = 1024;

/// Warper settings shared by both samplers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// false: argmax, and temperature/top_k/top_p are ignored.
    pub do_sample: bool,
    pub temperature: f32,
    /// Keep the `top_k` largest scores (and ties with the smallest of them); 0 = off.
    pub top_k: usize,
    /// Nucleus cut; 1.0 = off.
    pub top_p: f32,
}

impl SamplerConfig {
    /// Argmax decoding.
    pub fn greedy() -> Self {
        SamplerConfig { do_sample: false, temperature: 1.0, top_k: 0, top_p: 1.0 }
    }

    /// The talker's settings from `generation_config.json`.
    pub fn talker(generation: &GenerationConfig) -> Self {
        SamplerConfig {
            do_sample: generation.do_sample,
            temperature: generation.temperature,
            top_k: generation.top_k,
            top_p: generation.top_p,
        }
    }

    /// The code predictor's settings (`subtalker_*` in `generation_config.json`).
    pub fn code_predictor(generation: &GenerationConfig) -> Self {
        SamplerConfig {
            do_sample: generation.subtalker_dosample,
            temperature: generation.subtalker_temperature,
            top_k: generation.subtalker_top_k,
            top_p: generation.subtalker_top_p,
        }
    }

    /// Checks the warper settings when sampling (greedy ignores them, as transformers does).
    pub fn validate(&self) -> Result<()> {
        self.validate_as("")
    }

    /// [`validate`](Self::validate) with the fields' names given a prefix in the messages
    /// (`"sub_"` for the C API's code-predictor settings, `"code_predictor."` in Rust).
    pub fn validate_as(&self, prefix: &str) -> Result<()> {
        if !self.do_sample {
            return Ok(());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::invalid_argument(format!(
                "{prefix}temperature is {}; it must be a positive finite number when sampling \
                 (for greedy decoding turn sampling off instead)",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid_argument(format!(
                "{prefix}top_p is {}; it must be in (0, 1], where 1 turns top-p off",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// The talker's full chain: warpers plus penalty, minimum length and suppression.
#[derive(Clone, Debug, PartialEq)]
pub struct TalkerSamplerConfig {
    pub sampler: SamplerConfig,
    /// > 1 discourages repeating an earlier codebook-0 id; 1.0 = off. Applied when greedy too.
    pub repetition_penalty: f32,
    /// EOS is masked while fewer than this many tokens have been generated.
    pub min_new_tokens: usize,
    pub eos_token: u32,
    /// Ids masked at every step, except `eos_token`.
    pub suppress: Range<u32>,
}

impl TalkerSamplerConfig {
    /// The official talker chain for a checkpoint: `generation_config.json` settings,
    /// `min_new_tokens` 2, suppression of `[vocab - 1024, vocab)` except EOS.
    pub fn new(generation: &GenerationConfig, talker: &TalkerConfig) -> Self {
        let vocab = talker.vocab_size as u32;
        TalkerSamplerConfig {
            sampler: SamplerConfig::talker(generation),
            repetition_penalty: generation.repetition_penalty,
            min_new_tokens: TALKER_MIN_NEW_TOKENS,
            eos_token: talker.codec_eos_token_id,
            suppress: vocab.saturating_sub(TALKER_SUPPRESSED_TAIL)..vocab,
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.sampler.validate()?;
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(Error::invalid_argument(format!(
                "repetition_penalty is {}; it must be a positive finite number (1 turns it off)",
                self.repetition_penalty
            )));
        }
        Ok(())
    }
}

/// Applies the talker's processor chain in transformers' order to `logits` (in place, f32)
/// given the previously generated codebook-0 ids, then picks a token with `uniform` (ignored
/// when greedy).
pub fn sample_talker(logits: &mut [f32], generated: &[u32], cfg: &TalkerSamplerConfig, uniform: f32) -> u32 {
    process_talker(logits, generated, cfg);
    pick(logits, cfg.sampler.do_sample, uniform)
}

/// The code predictor's chain: temperature → top-k → top-p → draw (or argmax).
pub fn sample_code_predictor(logits: &mut [f32], cfg: &SamplerConfig, uniform: f32) -> u32 {
    process_code_predictor(logits, cfg);
    pick(logits, cfg.do_sample, uniform)
}

/// The talker's processors without the pick: what transformers hands to softmax/argmax.
pub fn process_talker(logits: &mut [f32], generated: &[u32], cfg: &TalkerSamplerConfig) {
    apply_repetition_penalty(logits, generated, cfg.repetition_penalty);
    apply_min_new_tokens(logits, generated.len(), cfg.min_new_tokens, cfg.eos_token);
    apply_suppression(logits, cfg.suppress.clone(), cfg.eos_token);
    if cfg.sampler.do_sample {
        apply_warpers(logits, &cfg.sampler);
    }
}

/// The code predictor's processors without the pick.
pub fn process_code_predictor(logits: &mut [f32], cfg: &SamplerConfig) {
    if cfg.do_sample {
        apply_warpers(logits, cfg);
    }
}

fn apply_warpers(logits: &mut [f32], cfg: &SamplerConfig) {
    apply_temperature(logits, cfg.temperature);
    apply_top_k(logits, cfg.top_k);
    apply_top_p(logits, cfg.top_p);
}

fn pick(scores: &[f32], do_sample: bool, uniform: f32) -> u32 {
    if do_sample { draw(scores, uniform) } else { argmax(scores) }
}

/// `RepetitionPenaltyLogitsProcessor`: every distinct id in `generated` once (transformers
/// gathers the original scores, so repeats do not compound): `s < 0 ? s * p : s / p`.
pub fn apply_repetition_penalty(logits: &mut [f32], generated: &[u32], penalty: f32) {
    if penalty == 1.0 || generated.is_empty() {
        return;
    }
    let mut seen = vec![0u64; logits.len().div_ceil(64)];
    for &id in generated {
        let i = id as usize;
        // Ids come from this vocabulary; one that does not (transformers would raise) is ignored.
        if i >= logits.len() || seen[i / 64] & (1 << (i % 64)) != 0 {
            continue;
        }
        seen[i / 64] |= 1 << (i % 64);
        let s = logits[i];
        logits[i] = if s < 0.0 { s * penalty } else { s / penalty };
    }
}

/// `MinLengthLogitsProcessor` / `MinNewTokensLengthLogitsProcessor`: EOS is −inf while fewer
/// than `min_new_tokens` tokens have been generated.
pub fn apply_min_new_tokens(logits: &mut [f32], generated: usize, min_new_tokens: usize, eos: u32) {
    if generated < min_new_tokens
        && let Some(s) = logits.get_mut(eos as usize)
    {
        *s = f32::NEG_INFINITY;
    }
}

/// `SuppressTokensLogitsProcessor`: ids in `suppress` (clipped to the vocabulary) become −inf,
/// except `keep` (EOS).
pub fn apply_suppression(logits: &mut [f32], suppress: Range<u32>, keep: u32) {
    let end = (suppress.end as usize).min(logits.len());
    let start = (suppress.start as usize).min(end);
    for (i, s) in logits[start..end].iter_mut().enumerate() {
        if start + i != keep as usize {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TemperatureLogitsWarper`: `s / t` (an IEEE division, as torch does on the CPU).
pub fn apply_temperature(logits: &mut [f32], temperature: f32) {
    if temperature != 1.0 {
        for s in logits {
            *s /= temperature;
        }
    }
}

/// `TopKLogitsWarper`: scores below the k-th largest become −inf; ties with it survive.
/// `k = 0` is off; `k >= len` removes nothing.
pub fn apply_top_k(logits: &mut [f32], k: usize) {
    if k == 0 || k >= logits.len() {
        return;
    }
    // The k-th largest value with duplicates counted, as `torch.topk(scores, k)[0][-1]`.
    // total_cmp orders -0.0 below 0.0, which IEEE `<` below cannot tell apart, and puts NaN
    // above +inf, as topk does.
    let mut scratch = logits.to_vec();
    let kth = *scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1;
    for s in logits {
        if *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TopPLogitsWarper` (min_tokens_to_keep = 1): sort ascending, softmax, cumulative sum;
/// tokens whose cumulative probability is ≤ `1 - top_p` become −inf; the largest always stays.
///
/// Arithmetic as torch's CPU kernels do it: probabilities in f32 (`exp(s - max) * (1/sum)`),
/// cumulative sum accumulated in f64 and rounded to f32 per element (CPU cumsum accumulates
/// floats in double), compared with `1 - top_p` computed in double and rounded to f32.
/// Rounding can still differ from torch's vectorised exp and sum by an ulp, which matters only
/// when a cumulative probability lands within an ulp of the cut.
pub fn apply_top_p(logits: &mut [f32], top_p: f32) {
    if top_p >= 1.0 || top_p.is_nan() || logits.is_empty() {
        return;
    }
    // Ascending by score, ties by id: the order a stable sort gives.
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| cmp_nan_last(logits[a as usize], logits[b as usize]).then(a.cmp(&b)));
    let max = logits[*order.last().unwrap() as usize];
    if !max.is_finite() {
        // All −inf (or a NaN/+inf logit): torch's probabilities are NaN and nothing is removed.
        return;
    }
    let weights: Vec<f32> = order.iter().map(|&i| canonical_exp(logits[i as usize] - max)).collect();
    let inv = 1.0 / weights.iter().sum::<f32>();
    let cut = top_p_cut(top_p);
    let mut cum = 0f64;
    for (&i, &w) in order[..order.len() - 1].iter().zip(&weights) {
        cum += f64::from(w * inv);
        // The running sum only grows: once past the cut, everything after stays.
        if cum as f32 > cut {
            break;
        }
        logits[i as usize] = f32::NEG_INFINITY;
    }
}

/// The cumulative-probability threshold of [`apply_top_p`]: `1 - top_p` computed on the double
/// a Python caller passed, rounded to f32 (device samplers take it precomputed).
pub fn top_p_cut(top_p: f32) -> f32 {
    (1.0 - python_float(top_p)) as f32
}

/// IEEE order, with NaN above everything (where torch.sort puts it).
fn cmp_nan_last(a: f32, b: f32) -> std::cmp::Ordering {
    a.partial_cmp(&b).unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

/// The double a Python caller would have passed for `x`: its shortest decimal form read back
/// as f64 (0.9f32 → "0.9" → 0.9). transformers computes `1 - top_p` on that double; doing it on
/// the f32 would give 0.100000024 instead of 0.1 for top_p 0.9.
fn python_float(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// Greedy pick: the first index of the maximum (`torch.argmax`; a NaN counts as the maximum).
pub fn argmax(scores: &[f32]) -> u32 {
    debug_assert!(!scores.is_empty());
    let mut best = 0;
    let mut best_score = f32::NEG_INFINITY;
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            return i as u32;
        }
        if s > best_score {
            best = i;
            best_score = s;
        }
    }
    best as u32
}

/// The canonical draw: the token for `uniform` ∈ [0, 1) from processed scores.
///
/// This exact procedure is the contract every backend reproduces bit for bit:
/// 1. `m` = the maximum score (if it is not finite, i.e. everything is −inf, return
///    [`argmax`]);
/// 2. weights `w_i = canonical_exp(s_i − m)` in f32, the subtraction in f32 (the softmax
///    numerators; −inf scores give 0);
/// 3. `total` = the f32 sum of all `w_i` accumulated sequentially in ascending id order;
/// 4. `target = uniform * total` (one f32 multiply);
/// 5. walk ids in ascending order keeping the same sequential f32 running sum; return the
///    first id with `w_i > 0` whose running sum exceeds `target`;
/// 6. if none does (`uniform * total` rounded up to `total`), return the last id with
///    `w_i > 0`.
///
/// Adding a zero weight leaves an f32 sum unchanged, so a kernel may compact the ids with
/// non-zero weight (after top-k, about k of them) in id order and scan only those. All
/// operations are single IEEE-754 roundings: a CUDA port must use `__fadd_rn`/`__fmul_rn` (or
/// compile without FMA contraction) and the same [`canonical_exp`].
pub fn draw(scores: &[f32], uniform: f32) -> u32 {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return argmax(scores);
    }
    let total = scores.iter().fold(0f32, |acc, &s| acc + canonical_exp(s - max));
    let target = uniform * total;
    let mut running = 0f32;
    let mut last = None;
    for (i, &s) in scores.iter().enumerate() {
        let w = canonical_exp(s - max);
        if w > 0.0 {
            running += w;
            if running > target {
                return i as u32;
            }
            last = Some(i);
        }
    }
    // The max itself has weight 1, so some weight is non-zero.
    last.unwrap_or(0) as u32
}

/// exp(x) for x ≤ 0 (and −inf, NaN → 0), from single-precision operations that any IEEE-754
/// backend evaluates identically, so the draw does not depend on a platform's `expf`.
///
/// Cody–Waite reduction `x = k·ln2 + r`, |r| ≤ ln2/2, with ln2 split so `k·LN2_HI` is exact;
/// e^r from Cephes' degree-5 `expf` polynomial; the result scaled by 2^k built from its
/// exponent bits. Arguments below −86 return 0: e^−86 ≈ 4e−38 is the last value that stays a
/// normal float through the scaling, so no backend's denormal mode can matter, and a token
/// that unlikely relative to the best one is never drawn in practice. Accuracy is about 1 ulp.
///
/// The operation sequence is the definition: evaluate each `*` and `+` with one rounding (no
/// FMA contraction), `floor` exactly, and multiply by the power of two last.
pub fn canonical_exp(x: f32) -> f32 {
    debug_assert!(x <= 0.0 || x.is_nan(), "canonical_exp is defined for x <= 0, got {x}");
    if x.is_nan() || x < EXP_MIN_ARG {
        return 0.0;
    }
    let k = (x * LOG2E + 0.5).floor();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    let y = (p * (r * r) + r) + 1.0;
    // k ∈ [-124, 0] here, so 2^k is a normal float.
    y * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

const EXP_MIN_ARG: f32 = -86.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO; LN2_HI = 355/512 has 9 significant bits, so `k * LN2_HI` is exact.
const LN2_HI: f32 = 355.0 / 512.0;
const LN2_LO: f32 = -2.121_944_4e-4;
/// (e^r − 1 − r) / r² ≈ Σ EXP_POLY[i]·r^(5−i) on [−ln2/2, ln2/2]: Cephes `expf`'s
/// coefficients (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
/// 1.6666665459e-1, 5.0000001201e-1) rounded to f32, written in their shortest form.
const EXP_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_6e-1, 0.5];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_exp_is_accurate() {
        assert_eq!(canonical_exp(0.0), 1.0);
        assert_eq!(canonical_exp(-0.0), 1.0);
        assert_eq!(canonical_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(canonical_exp(f32::NAN), 0.0);
        assert_eq!(canonical_exp(-86.5), 0.0);
        assert!(canonical_exp(-86.0) >= f32::MIN_POSITIVE);
        let mut worst = 0f64;
        let mut x = 0f32;
        while x >= EXP_MIN_ARG {
            let want = f64::from(x).exp();
            let got = f64::from(canonical_exp(x));
            worst = worst.max(((got - want) / want).abs());
            x = x - 1.0e-3 - x.abs() * 1.0e-6;
        }
        // 2 ulp of f32 is 2^-22 relative at worst.
        assert!(worst < 2.4e-7, "max relative error {worst:e}");
    }

    #[test]
    fn python_float_matches_the_decimal() {
        assert_eq!(python_float(0.9), 0.9f64);
        assert_eq!((1.0 - python_float(0.9)) as f32, 0.1f32);
        assert_eq!(python_float(1.0), 1.0);
    }

    #[test]
    fn top_k_keeps_ties() {
        let mut s = [1.0, 3.0, 2.0, 2.0, -1.0];
        apply_top_k(&mut s, 2);
        assert_eq!(s, [f32::NEG_INFINITY, 3.0, 2.0, 2.0, f32::NEG_INFINITY]);
    }

    #[test]
    fn top_p_splits_ties_lower_id_first() {
        // Probabilities 0.1, 0.1, 0.8; cut 1 - 0.85 = 0.15 falls between the two tied tokens:
        // ascending by (score, id) id 0 is removed (cumulative 0.1), id 1 stays (0.2).
        let mut s = [0.0, 0.0, 8f32.ln()];
        apply_top_p(&mut s, 0.85);
        assert_eq!(s, [f32::NEG_INFINITY, 0.0, 8f32.ln()]);
        // The largest always stays, even at top_p -> 0.
        let mut s = [1.0, 2.0, 2.0];
        apply_top_p(&mut s, 1e-9);
        assert_eq!(s, [f32::NEG_INFINITY, f32::NEG_INFINITY, 2.0]);
    }

    #[test]
    fn penalty_applies_once_per_id() {
        let mut s = [2.0f32, -2.0, 1.0];
        apply_repetition_penalty(&mut s, &[0, 1, 0, 0, 1, 7], 2.0);
        assert_eq!(s, [1.0, -4.0, 1.0]);
    }
}
