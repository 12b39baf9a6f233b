//! The talker: the large decoder that predicts codebook 0 of every frame.
//!
//! Its inputs are never token ids: each row is the sum of a text-side vector and a
//! codec-side vector built by the prompt code (spec §3.1, §5), so this module offers the two
//! embeddings separately:
//!
//! * text side `P(t) = fc2(silu(fc1(text_embedding[t])))` (both Linear layers biased),
//! * codec side `Ec(c) = codec_embedding[c]` over the 3072-entry codec vocabulary,
//!
//! and a forward that takes ready rows, runs them through the stack at the next cache
//! positions and returns codec logits of the last row. The post-norm hidden state of that row
//! stays on the device for the code predictor.
//!
//! [`Talker`] holds only immutable weights and is shared between requests; everything a
//! request mutates (KV cache, workspace, outputs) is in its [`TalkerState`].

use super::config::TalkerConfig;
use super::kv_cache::KvCache;
use super::layers::{DecoderStack, LayerObserver, Linear, StackDims, Workspace, load_weight};
use super::weights::SafeTensorsFile;
use crate::backend::Backend;
use crate::error::Result;

/// Talker weights.
pub struct Talker<B: Backend> {
    text_embedding: B::Weight,
    text_fc1: Linear<B>,
    text_fc2: Linear<B>,
    codec_embedding: B::Weight,
    stack: DecoderStack<B>,
    codec_head: B::Weight,
    text_hidden: usize,
    text_vocab: usize,
    vocab: usize,
}

/// One request's talker state.
pub struct TalkerState<B: Backend> {
    kv: KvCache<B>,
    ws: Workspace<B>,
    /// Post-norm hidden states of every row of the last forward `[rows, hidden]`.
    hidden: B::Buffer,
    hidden_rows: usize,
    /// Post-norm hidden state of the last row: the code predictor's first input.
    last_hidden: B::Buffer,
    /// A one-row input buffer for decode steps (see [`Talker::step`]); `None` only while a
    /// step is running on it.
    input: Option<B::Buffer>,
    logits: B::Buffer,
    logits_host: Vec<f32>,
}

impl<B: Backend> TalkerState<B> {
    /// Positions already in the cache (the position the next row will take).
    pub fn position(&self) -> usize {
        self.kv.len()
    }

    /// Largest number of positions this state can hold.
    pub fn capacity(&self) -> usize {
        self.kv.capacity()
    }

    /// Forgets the sequence; buffers are kept for the next one.
    pub fn reset(&mut self) {
        self.kv.reset();
        self.hidden_rows = 0;
    }

    /// Post-norm hidden states `[rows, hidden]` of every row of the last forward; only the
    /// first [`hidden_rows`](Self::hidden_rows) rows are meaningful.
    pub fn hidden(&self) -> &B::Buffer {
        &self.hidden
    }

    /// Rows written to [`hidden`](Self::hidden) by the last forward.
    pub fn hidden_rows(&self) -> usize {
        self.hidden_rows
    }

    /// The KV cache (the megakernel engine continues in it after the prefill).
    pub fn kv(&self) -> &KvCache<B> {
        &self.kv
    }

    /// The KV cache, to fill its first positions from a saved voice prefix.
    pub(crate) fn kv_mut(&mut self) -> &mut KvCache<B> {
        &mut self.kv
    }

    /// Raw codec logits of the last row of the last forward, on the device `[vocab]`.
    pub fn logits_device(&self) -> &B::Buffer {
        &self.logits
    }

    /// Post-norm hidden state `[hidden]` of the last row of the last forward.
    pub fn last_hidden(&self) -> &B::Buffer {
        &self.last_hidden
    }

    /// The one-row input of [`Talker::step`]; write the next decode row here. The step uses
    /// it as the residual stream, so its contents are garbage afterwards.
    pub fn input_mut(&mut self) -> &mut B::Buffer {
        self.input.as_mut().expect("the step input is only detached during Talker::step")
    }

    /// Host copy of the last row's codec logits from the last forward.
    pub fn logits(&self) -> &[f32] {
        &self.logits_host
    }

    /// The same host copy, for sampling (the logits processors edit scores in place).
    pub fn logits_mut(&mut self) -> &mut [f32] {
        &mut self.logits_host
    }
}

impl<B: Backend> Talker<B> {
    /// Loads `talker.model.*`, `talker.text_projection.*` and `talker.codec_head` from the
    /// main checkpoint file, checking every shape against `cfg`.
    pub fn load(b: &B, file: &SafeTensorsFile, cfg: &TalkerConfig) -> Result<Self> {
        let dims = StackDims::talker(cfg);
        let (h, th) = (cfg.hidden_size, cfg.text_hidden_size);
        Ok(Talker {
            text_embedding: load_weight(b, file, "talker.model.text_embedding.weight", &[cfg.text_vocab_size, th])?,
            // Qwen3TTSTalkerResizeMLP(text_hidden, text_hidden, hidden, bias=True)
            text_fc1: Linear::load(b, file, "talker.text_projection.linear_fc1", th, th, true)?,
            text_fc2: Linear::load(b, file, "talker.text_projection.linear_fc2", th, h, true)?,
            codec_embedding: load_weight(b, file, "talker.model.codec_embedding.weight", &[cfg.vocab_size, h])?,
            stack: DecoderStack::load(b, file, "talker.model", dims)?,
            codec_head: load_weight(b, file, "talker.codec_head.weight", &[cfg.vocab_size, h])?,
            text_hidden: th,
            text_vocab: cfg.text_vocab_size,
            vocab: cfg.vocab_size,
        })
    }

    pub fn dims(&self) -> &StackDims {
        self.stack.dims()
    }

    /// Width of every talker row.
    pub fn hidden_size(&self) -> usize {
        self.stack.dims().hidden
    }

    /// Codec vocabulary size (3072): the width of the logits.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Rows of the text embedding.
    pub fn text_vocab_size(&self) -> usize {
        self.text_vocab
    }

    /// The decoder stack (for tests and tracing).
    pub fn stack(&self) -> &DecoderStack<B> {
        &self.stack
    }

    /// The codec head `[vocab, hidden]` (no bias).
    pub fn codec_head(&self) -> &B::Weight {
        &self.codec_head
    }

    /// `Ec`: the talker's codec embedding table `[vocab, hidden]` (codebook 0 and control
    /// tokens); the code predictor's prefill and the frame embedding read it too.
    pub fn codec_embedding(&self) -> &B::Weight {
        &self.codec_embedding
    }

    /// State for one request whose sequence (prompt + generated frames) fits `capacity`
    /// positions.
    pub fn new_state(&self, b: &B, capacity: usize) -> Result<TalkerState<B>> {
        let h = self.hidden_size();
        Ok(TalkerState {
            kv: self.stack.new_cache(b, capacity)?,
            ws: self.stack.new_workspace(b, 1)?,
            hidden: b.alloc(h)?,
            hidden_rows: 0,
            last_hidden: b.alloc(h)?,
            input: Some(b.alloc(h)?),
            logits: b.alloc(self.vocab)?,
            logits_host: vec![0.0; self.vocab],
        })
    }

    /// Text-side rows `out[r] = P(ids[r])` `[ids.len(), hidden]`, all ids in one batch.
    pub fn project_text(&self, b: &B, s: &mut B::Stream, ids: &[u32], out: &mut B::Buffer) -> Result<()> {
        let n = ids.len();
        if n == 0 {
            return Ok(());
        }
        // 1. Gather text embeddings [n, text_hidden].
        let mut e = b.alloc(n * self.text_hidden)?;
        b.embedding(s, &self.text_embedding, ids, &mut e, false)?;
        // 2. fc1 + bias, silu.
        let mut m = b.alloc(n * self.text_hidden)?;
        self.text_fc1.apply(b, s, &e, n, &mut m, false)?;
        b.silu(s, &mut m, n * self.text_hidden)?;
        // 3. fc2 + bias down to the talker width.
        self.text_fc2.apply(b, s, &m, n, out, false)
    }

    /// Codec-side rows `out[r] (+)= Ec(ids[r])` `[ids.len(), hidden]`.
    pub fn embed_codec(
        &self,
        b: &B,
        s: &mut B::Stream,
        ids: &[u32],
        out: &mut B::Buffer,
        accumulate: bool,
    ) -> Result<()> {
        b.embedding(s, &self.codec_embedding, ids, out, accumulate)
    }

    /// `out[r] = codec_head(hidden[r])` for `rows` post-norm rows: raw logits `[rows, vocab]`.
    pub fn codec_logits(
        &self,
        b: &B,
        s: &mut B::Stream,
        hidden: &B::Buffer,
        rows: usize,
        out: &mut B::Buffer,
    ) -> Result<()> {
        b.linear(s, hidden, rows, &self.codec_head, None, out, false)
    }

    /// Feeds `rows` input rows `x[rows, hidden]` (consumed: it is the residual stream) at the
    /// next positions of `st`. Returns the raw codec logits of the last row, on the host
    /// (for sampling, which may modify them in place); the last row's post-norm hidden state
    /// stays on the device in [`TalkerState::last_hidden`].
    pub fn forward<'s>(
        &self,
        b: &B,
        s: &mut B::Stream,
        st: &'s mut TalkerState<B>,
        x: &mut B::Buffer,
        rows: usize,
    ) -> Result<&'s mut [f32]> {
        self.forward_observed(b, s, st, x, rows, None)
    }

    /// [`forward`](Self::forward) with a per-layer observer (see [`LayerObserver`]).
    pub fn forward_observed<'s>(
        &self,
        b: &B,
        s: &mut B::Stream,
        st: &'s mut TalkerState<B>,
        x: &mut B::Buffer,
        rows: usize,
        observe: Option<&mut LayerObserver<'_, B>>,
    ) -> Result<&'s mut [f32]> {
        let h = self.hidden_size();
        // 1. The stack: every row at the next positions, final norm into st.hidden.
        self.feed_observed(b, s, st, x, rows, observe)?;
        // 2. Keep the last row's post-norm hidden: the code predictor's first input.
        b.copy(s, &st.hidden, (rows - 1) * h, &mut st.last_hidden, 0, h)?;
        // 3. Codec head on that row only; the host needs nothing else for sampling.
        b.linear(s, &st.last_hidden, 1, &self.codec_head, None, &mut st.logits, false)?;
        b.read(s, &st.logits, 0, &mut st.logits_host)?;
        Ok(&mut st.logits_host)
    }

    /// Feeds `rows` rows through the stack at the next positions of `st` (their keys and
    /// values join the cache, their post-norm hidden states land in [`TalkerState::hidden`])
    /// without the codec head: for prompt rows whose logits nothing reads (a voice prefix).
    /// The last forward's logits and last hidden state are left as they were.
    pub fn feed_observed(
        &self,
        b: &B,
        s: &mut B::Stream,
        st: &mut TalkerState<B>,
        x: &mut B::Buffer,
        rows: usize,
        observe: Option<&mut LayerObserver<'_, B>>,
    ) -> Result<()> {
        let h = self.hidden_size();
        if b.buffer_len(&st.hidden) < rows * h {
            st.hidden = b.alloc(rows * h)?;
        }
        self.stack.forward_observed(b, s, x, rows, &mut st.kv, &mut st.ws, &mut st.hidden, observe)?;
        st.hidden_rows = rows;
        Ok(())
    }

    /// One decode step on the row in [`TalkerState::input_mut`].
    pub fn step<'s>(&self, b: &B, s: &mut B::Stream, st: &'s mut TalkerState<B>) -> Result<&'s mut [f32]> {
        // The input row doubles as the residual stream; detach it from the state for the call.
        let mut x = st.input.take().expect("the step input is only detached during Talker::step");
        let result = self.forward(b, s, st, &mut x, 1).map(|_| ());
        st.input = Some(x);
        result?;
        Ok(&mut st.logits_host)
    }
}

// Weights are shared read-only between requests and threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Talker<crate::backend::cpu::CpuBackend>>();
};
