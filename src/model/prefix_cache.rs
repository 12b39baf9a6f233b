//! Voice prefix reuse: the talker keys and values of a prompt's voice prefix, computed once
//! per voice and reused by every later request with that voice.
//!
//! A prompt's first rows ([`PromptPlan::voice_prefix`]) depend on the voice, the language and
//! the instruction, not on the text: the role and control rows and, for an ICL voice, its
//! reference transcript paired with its first reference frames (13 of the 35 rows of the
//! spec's worked example with a 2 s reference). A game or server that speaks many lines
//! with one voice need not run them through the talker for every line.
//!
//! **Codes never depend on whether the cache hit.** With a cache, every prefill whose prefix
//! fits the cache's budget runs the prefix as a forward of its own (positions `0..P`) and the
//! rest of the prompt as a second forward after it; a hit copies in the keys and values that
//! the first forward produced when the entry was made instead of running it again. The rest
//! of the prompt sees the prefix only through those keys and values, so a hit and a miss give
//! the same bits on every backend. For that the prefix rows' text vectors are projected in a
//! batch of their own too ([`PromptEmbeds::materialize`]): a GPU picks its matrix kernels by
//! row count, so a batch shared with the text would make them depend on the text. Without a
//! cache (or for a prefix larger than its budget) the prompt runs as one forward, as before;
//! the split changes logits by rounding only (on the CPU in the last bits; on a GPU as much as
//! its kernels for different row counts differ).
//!
//! Keys are compared in full, never by hash alone: the prefix rows and every value they
//! refer to (the x-vector's bits, the reference frames' codes). The cache is bounded in
//! bytes; the least recently used entries go first. An entry is published only after the
//! prefill that made it has finished on its stream (the prefill ends by reading the logits
//! to the host), so another request's stream never copies from a half-written entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::kv_cache::KvPrefix;
use super::layers::LayerObserver;
use super::prompt::{CodecPart, PromptEmbeds, PromptPlan, PromptRow, VoiceData};
use super::talker::{Talker, TalkerState};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// The default budget of a model's prefix cache: 64 MiB. A row of the released 0.6B and 1.7B
/// talkers takes 28 layers × (1024 key + 1024 value) × 4 bytes = 224 KiB, so an x-vector
/// voice (9 rows) takes 2 MiB and an in-context one with a 25-token transcript 7.4 MiB.
pub const DEFAULT_PREFIX_CACHE_BYTES: usize = 64 << 20;

/// Everything a voice prefix's keys and values depend on besides the weights.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrefixKey {
    rows: Vec<PromptRow>,
    /// Bits of the speaker x-vector, when a prefix row holds it.
    speaker: Vec<u32>,
    /// Codes of the reference frames the prefix rows hold, `[frames, groups]`.
    ref_codes: Vec<u32>,
}

impl PrefixKey {
    /// The key of `plan`'s voice prefix with `voice`'s data (`groups` codes per reference
    /// frame); `None` when the plan has no prefix or `voice` lacks what it refers to (the
    /// prompt's materialisation reports that).
    pub fn of(plan: &PromptPlan, voice: VoiceData<'_>, groups: usize) -> Option<PrefixKey> {
        let rows = plan.rows.get(..plan.voice_prefix).filter(|r| !r.is_empty())?;
        let speaker = if rows.iter().any(|r| r.codec == CodecPart::Speaker) {
            voice.speaker_vector?.iter().map(|v| v.to_bits()).collect()
        } else {
            Vec::new()
        };
        let frames = rows
            .iter()
            .filter_map(|r| if let CodecPart::RefFrame(i) = r.codec { Some(i + 1) } else { None })
            .max()
            .unwrap_or(0);
        let ref_codes = match frames {
            0 => Vec::new(),
            _ => voice.ref_codes?.get(..frames.checked_mul(groups)?)?.to_vec(),
        };
        Some(PrefixKey { rows: rows.to_vec(), speaker, ref_codes })
    }

    /// Prompt rows the prefix covers.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }
}

/// A snapshot of a [`PrefixCache`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Voice prefixes held.
    pub entries: usize,
    /// Bytes they occupy (device memory on a GPU).
    pub bytes: usize,
    /// The most bytes the cache holds.
    pub budget: usize,
    /// Prefills that reused a held prefix.
    pub hits: u64,
    /// Prefills that computed theirs. (A prefix larger than the whole budget is never split
    /// off: its prefills count as neither hits nor misses.)
    pub misses: u64,
}

/// How a prompt was prefilled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefillReport {
    /// Prompt rows.
    pub rows: usize,
    /// Of those, rows whose keys and values came from the voice prefix cache.
    pub reused_rows: usize,
}

struct Slot<B: Backend> {
    prefix: Arc<KvPrefix<B>>,
    last_use: u64,
}

struct Entries<B: Backend> {
    slots: HashMap<PrefixKey, Slot<B>>,
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

/// Voice prefixes of one model's talker, shared by every request on it (see the module
/// docs). Thread-safe; a lookup or an insertion holds a lock for a hash and a few compares.
pub struct PrefixCache<B: Backend> {
    budget: usize,
    entries: Mutex<Entries<B>>,
}

impl<B: Backend> std::fmt::Debug for PrefixCache<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixCache").field("stats", &self.stats()).finish()
    }
}

impl<B: Backend> PrefixCache<B> {
    /// An empty cache holding at most `budget` bytes of keys and values.
    pub fn new(budget: usize) -> Self {
        let entries = Entries { slots: HashMap::new(), bytes: 0, clock: 0, hits: 0, misses: 0 };
        PrefixCache { budget, entries: Mutex::new(entries) }
    }

    /// Counters and occupancy now.
    pub fn stats(&self) -> PrefixCacheStats {
        let e = self.lock();
        PrefixCacheStats { entries: e.slots.len(), bytes: e.bytes, budget: self.budget, hits: e.hits, misses: e.misses }
    }

    /// Forgets every entry (the counters stay).
    pub fn clear(&self) {
        let mut e = self.lock();
        e.slots.clear();
        e.bytes = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<B>> {
        // The map is consistent between statements; a panic elsewhere cannot break it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The prefix held for `key`, counting a hit or a miss.
    fn get(&self, key: &PrefixKey) -> Option<Arc<KvPrefix<B>>> {
        let mut e = self.lock();
        e.clock += 1;
        let now = e.clock;
        match e.slots.get_mut(key) {
            Some(slot) => {
                slot.last_use = now;
                let prefix = slot.prefix.clone();
                e.hits += 1;
                Some(prefix)
            }
            None => {
                e.misses += 1;
                None
            }
        }
    }

    /// Holds `prefix` for `key`, evicting the least recently used entries to stay within the
    /// budget. A prefix larger than the whole budget is not held; a key already held (two
    /// requests missed at once) keeps its entry, which has the same values.
    fn insert(&self, key: PrefixKey, prefix: KvPrefix<B>) {
        let size = prefix.bytes();
        if size > self.budget {
            return;
        }
        let mut e = self.lock();
        if e.slots.contains_key(&key) {
            return;
        }
        while e.bytes + size > self.budget {
            let Some(oldest) = e.slots.iter().min_by_key(|(_, s)| s.last_use).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(slot) = e.slots.remove(&oldest) {
                e.bytes -= slot.prefix.bytes();
            }
        }
        e.clock += 1;
        let last_use = e.clock;
        e.bytes += size;
        e.slots.insert(key, Slot { prefix: Arc::new(prefix), last_use });
    }
}

/// How one request's prompt is prefilled: in one pass, or as its voice prefix (copied from the
/// cache or computed as a pass of its own) and then the rest.
pub struct PrefillSplit<'c, B: Backend> {
    cache: Option<&'c PrefixCache<B>>,
    key: Option<PrefixKey>,
}

impl<'c, B: Backend> PrefillSplit<'c, B> {
    /// The split for `plan` with `voice` (`groups` codes per reference frame): through `cache`
    /// when there is one, the plan has a voice prefix and its keys and values fit the cache's
    /// budget; else one pass. The decision depends only on the model and the key, so every
    /// request with one voice prefix is split the same way (hit or miss).
    pub fn decide(
        cache: Option<&'c PrefixCache<B>>,
        talker: &Talker<B>,
        plan: &PromptPlan,
        voice: VoiceData<'_>,
        groups: usize,
    ) -> Self {
        let layers = talker.stack().layers().len();
        let width = talker.dims().kv_width();
        let key = cache.and_then(|c| {
            PrefixKey::of(plan, voice, groups)
                .filter(|k| k.rows() < plan.len() && KvPrefix::<B>::bytes_for(layers, k.rows(), width) <= c.budget)
        });
        PrefillSplit { cache: key.as_ref().and(cache), key }
    }

    /// Rows of the voice prefix when the prompt is split, 0 when it runs in one pass.
    pub fn prefix_rows(&self) -> usize {
        self.key.as_ref().map_or(0, PrefixKey::rows)
    }
}

/// Rows `first..first + count` of the prompt, copied into a buffer of their own (a forward
/// consumes its input as the residual stream).
fn prompt_rows<B: Backend>(
    b: &B,
    s: &mut B::Stream,
    prompt: &PromptEmbeds<B>,
    hidden: usize,
    first: usize,
    count: usize,
) -> Result<B::Buffer> {
    let mut x = b.alloc(count * hidden)?;
    b.copy(s, prompt.embeds(), first * hidden, &mut x, 0, count * hidden)?;
    Ok(x)
}

/// Runs the prompt through the talker into the empty state `st`, leaving the last row's
/// logits in it (on the host) and its keys and values in the cache, as
/// [`Talker::forward_observed`] over the whole prompt does. Split as `split` says: the voice
/// prefix copied in from the cache or computed as a forward of its own and then offered to
/// the cache, then the rest (see the module docs); else one forward, which consumes the
/// prompt's rows. `prompt` must have been materialised with `split.prefix_rows()` rows in a
/// batch of their own. `observe` sees every layer of every forward (the stop poll).
pub fn prefill<B: Backend>(
    b: &B,
    s: &mut B::Stream,
    talker: &Talker<B>,
    st: &mut TalkerState<B>,
    prompt: &mut PromptEmbeds<B>,
    split: PrefillSplit<'_, B>,
    mut observe: Option<&mut LayerObserver<'_, B>>,
) -> Result<PrefillReport> {
    let rows = prompt.len();
    let h = talker.hidden_size();
    if prompt.own_batch_rows() != split.prefix_rows() {
        return Err(Error::invalid_argument(format!(
            "prefill: the prompt's text was projected for a {}-row prefix, the split has {} rows",
            prompt.own_batch_rows(),
            split.prefix_rows()
        )));
    }
    let (Some(cache), Some(key)) = (split.cache, split.key) else {
        talker.forward_observed(b, s, st, prompt.embeds_mut(), rows, observe)?;
        return Ok(PrefillReport { rows, reused_rows: 0 });
    };
    let p = key.rows();
    // 1. The prefix: copied from the cache (the entry is held until the copies are done: the
    //    forward below ends with a host read on this stream), or computed alone.
    let held = cache.get(&key);
    let reused_rows = if held.is_some() { p } else { 0 };
    let made = match &held {
        Some(prefix) => {
            st.kv_mut().load_prefix(b, s, prefix)?;
            None
        }
        None => {
            let mut x = prompt_rows(b, s, prompt, h, 0, p)?;
            talker.feed_observed(b, s, st, &mut x, p, observe.as_deref_mut())?;
            Some(st.kv().save_prefix(b, s, p)?)
        }
    };
    // 2. The rest of the prompt at positions p.., the last row's logits to the host.
    let mut x = prompt_rows(b, s, prompt, h, p, rows - p)?;
    talker.forward_observed(b, s, st, &mut x, rows - p, observe)?;
    // 3. A new prefix is complete now (its copies were queued before that read).
    if let Some(prefix) = made {
        cache.insert(key, prefix);
    }
    drop(held);
    Ok(PrefillReport { rows, reused_rows })
}
