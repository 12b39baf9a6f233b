//! The code predictor ("sub-talker", MTP): a small decoder that predicts codebooks 1..15 of
//! a frame from the talker's hidden state and codebook 0 (spec §4).
//!
//! Per frame, with a fresh cache (positions restart at 0):
//!
//! ```text
//! pos 0,1   prefill [h, Ec(c0)]            → lm_head[0]   → c1
//! pos g     CPE[g-2](c_{g-1}), g = 2..15   → lm_head[g-1] → c_g
//! ```
//!
//! `h` is the talker's post-norm hidden state of the row that produced `c0`, `Ec` the
//! talker's codec embedding, `CPE[j]` this module's embedding of codebook `j+1`. Every input
//! row has the talker's width; when the predictor is narrower (1.7B) `small_to_mtp_projection`
//! (Linear with bias) maps each row first. The 15th code is never fed back.
//!
//! Code choice is a callback so that greedy decoding, seeded sampling and teacher forcing
//! all run the same forward code.

use super::config::TalkerConfig;
use super::kv_cache::KvCache;
use super::layers::{DecoderStack, Linear, LinearParts, StackDims, Workspace, load_weight};
use super::weights::SafeTensorsFile;
use crate::backend::Backend;
use crate::error::{Error, Result};

/// Code predictor weights.
pub struct CodePredictor<B: Backend> {
    stack: DecoderStack<B>,
    /// `CPE[j]`, j = 0..groups-1: `[vocab, talker_hidden]`, embeds codebook j+1.
    embeddings: Vec<B::Weight>,
    /// `lm_head[j]`: `[vocab, cp_hidden]`, predicts codebook j+1.
    heads: Vec<B::Weight>,
    /// `small_to_mtp_projection` (talker_hidden → cp_hidden); `None` where the widths agree
    /// (the reference uses `nn.Identity` there).
    projection: Option<Linear<B>>,
    talker_hidden: usize,
    vocab: usize,
    num_code_groups: usize,
}

/// One request's code-predictor state (cache and scratch for one frame at a time).
pub struct CodePredictorState<B: Backend> {
    kv: KvCache<B>,
    ws: Workspace<B>,
    /// Input rows in the talker's width `[2, talker_hidden]`.
    input: B::Buffer,
    /// Scratch row for `Ec(c0)` `[talker_hidden]`.
    row: B::Buffer,
    /// Residual stream in the predictor's width `[2, cp_hidden]`.
    x: B::Buffer,
    hidden: B::Buffer,
    last: B::Buffer,
    logits: B::Buffer,
    logits_host: Vec<f32>,
}

impl<B: Backend> CodePredictor<B> {
    /// Loads `talker.code_predictor.*` from the main checkpoint file.
    pub fn load(b: &B, file: &SafeTensorsFile, cfg: &TalkerConfig) -> Result<Self> {
        let p = &cfg.code_predictor_config;
        let dims = StackDims::code_predictor(p);
        let (th, ch, vocab) = (cfg.hidden_size, p.hidden_size, p.vocab_size);
        let groups = cfg.num_code_groups;
        if groups < 2 || p.num_code_groups != groups {
            return Err(Error::bad_config(format!(
                "code predictor: num_code_groups {} (predictor) vs {groups} (talker)",
                p.num_code_groups
            )));
        }
        let embeddings = (0..groups - 1)
            .map(|j| {
                load_weight(b, file, &format!("talker.code_predictor.model.codec_embedding.{j}.weight"), &[vocab, th])
            })
            .collect::<Result<Vec<_>>>()?;
        let heads = (0..groups - 1)
            .map(|j| load_weight(b, file, &format!("talker.code_predictor.lm_head.{j}.weight"), &[vocab, ch]))
            .collect::<Result<Vec<_>>>()?;
        let projection = if th != ch {
            Some(Linear::load(b, file, "talker.code_predictor.small_to_mtp_projection", th, ch, true)?)
        } else {
            None
        };
        Ok(CodePredictor {
            stack: DecoderStack::load(b, file, "talker.code_predictor.model", dims)?,
            embeddings,
            heads,
            projection,
            talker_hidden: th,
            vocab,
            num_code_groups: groups,
        })
    }

    pub fn dims(&self) -> &StackDims {
        self.stack.dims()
    }

    /// The decoder stack.
    pub fn stack(&self) -> &DecoderStack<B> {
        &self.stack
    }

    /// `lm_head[j]` `[vocab, cp_hidden]`, predicting codebook j + 1.
    pub fn heads(&self) -> &[B::Weight] {
        &self.heads
    }

    /// `CPE[j]` `[vocab, talker_hidden]`, embedding codebook j + 1.
    pub fn embeddings(&self) -> &[B::Weight] {
        &self.embeddings
    }

    /// `small_to_mtp_projection` (weight, bias) where the talker and predictor widths differ.
    pub fn projection(&self) -> Option<LinearParts<'_, B>> {
        self.projection.as_ref().map(|p| p.parts())
    }

    /// Entries per codebook (2048): the width of the logits.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Codebooks per frame, codebook 0 included (16).
    pub fn num_code_groups(&self) -> usize {
        self.num_code_groups
    }

    /// Whether `small_to_mtp_projection` is a real Linear (talker and predictor widths differ).
    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }

    /// State for one request.
    pub fn new_state(&self, b: &B) -> Result<CodePredictorState<B>> {
        let (th, ch) = (self.talker_hidden, self.stack.dims().hidden);
        Ok(CodePredictorState {
            // Positions 0..groups-1: 2 prefill rows + one row per code 2..groups-1.
            kv: self.stack.new_cache(b, self.num_code_groups)?,
            ws: self.stack.new_workspace(b, 2)?,
            input: b.alloc(2 * th)?,
            row: b.alloc(th)?,
            x: b.alloc(2 * ch)?,
            hidden: b.alloc(2 * ch)?,
            last: b.alloc(ch)?,
            logits: b.alloc(self.vocab)?,
            logits_host: vec![0.0; self.vocab],
        })
    }

    /// `out[r] = small_to_mtp_projection(rows[r])` for `n` rows of talker width: the
    /// predictor's input rows. A plain copy where the projection is the identity.
    pub fn project_input(
        &self,
        b: &B,
        s: &mut B::Stream,
        rows: &B::Buffer,
        n: usize,
        out: &mut B::Buffer,
    ) -> Result<()> {
        match &self.projection {
            Some(p) => p.apply(b, s, rows, n, out, false),
            None => b.copy(s, rows, 0, out, 0, n * self.talker_hidden),
        }
    }

    /// Predicts codebooks 1.. of one frame. `frame[0]` holds codebook 0 on entry; on return
    /// `frame[1..num_code_groups]` hold the chosen codes. `talker_hidden[..hidden]` is the
    /// talker's post-norm hidden state of the row that produced `frame[0]`, `codec0_table`
    /// the talker's codec embedding ([`Talker::codec_embedding`](super::talker::Talker::codec_embedding)).
    ///
    /// `choose(g, logits)` picks codebook `g` (1..num_code_groups) from its raw logits
    /// `[vocab]` (host memory; the chooser may modify them).
    #[allow(clippy::too_many_arguments)]
    pub fn predict<F>(
        &self,
        b: &B,
        s: &mut B::Stream,
        st: &mut CodePredictorState<B>,
        talker_hidden: &B::Buffer,
        codec0_table: &B::Weight,
        frame: &mut [u32],
        mut choose: F,
    ) -> Result<()>
    where
        F: FnMut(usize, &mut [f32]) -> u32,
    {
        let groups = self.num_code_groups;
        let (th, ch) = (self.talker_hidden, self.stack.dims().hidden);
        if frame.len() != groups {
            return Err(Error::invalid_argument(format!(
                "code predictor: a frame has {groups} codes, got a buffer of {}",
                frame.len()
            )));
        }

        // 1. Fresh cache: the predictor's positions restart at 0 every frame.
        st.kv.reset();

        // 2. Prefill rows in talker width: [h, Ec(c0)].
        b.copy(s, talker_hidden, 0, &mut st.input, 0, th)?;
        b.embedding(s, codec0_table, &frame[..1], &mut st.row, false)?;
        b.copy(s, &st.row, 0, &mut st.input, th, th)?;

        // 3. Both rows through the projection, then the stack at positions 0 and 1.
        self.project_input(b, s, &st.input, 2, &mut st.x)?;
        self.stack.forward(b, s, &mut st.x, 2, &mut st.kv, &mut st.ws, &mut st.hidden)?;

        // 4. lm_head[0] on the last row → codebook 1.
        b.copy(s, &st.hidden, ch, &mut st.last, 0, ch)?;
        frame[1] = self.head(b, s, st, 0, &mut choose)?;

        // 5. One row per further codebook: embed the previous code with CPE[g-2], project,
        //    run it at position g, score with lm_head[g-1].
        for g in 2..groups {
            b.embedding(s, &self.embeddings[g - 2], &frame[g - 1..g], &mut st.input, false)?;
            self.project_input(b, s, &st.input, 1, &mut st.x)?;
            self.stack.forward(b, s, &mut st.x, 1, &mut st.kv, &mut st.ws, &mut st.last)?;
            frame[g] = self.head(b, s, st, g - 1, &mut choose)?;
        }
        Ok(())
    }

    /// Logits of `lm_head[j]` on `st.last`, handed to the chooser for codebook `j + 1`.
    fn head<F>(&self, b: &B, s: &mut B::Stream, st: &mut CodePredictorState<B>, j: usize, choose: &mut F) -> Result<u32>
    where
        F: FnMut(usize, &mut [f32]) -> u32,
    {
        b.linear(s, &st.last, 1, &self.heads[j], None, &mut st.logits, false)?;
        b.read(s, &st.logits, 0, &mut st.logits_host)?;
        let code = choose(j + 1, &mut st.logits_host);
        if code as usize >= self.vocab {
            return Err(Error::invalid_argument(format!(
                "code predictor: code {code} chosen for codebook {} is outside 0..{}",
                j + 1,
                self.vocab
            )));
        }
        Ok(code)
    }

    /// Talker input rows of whole frames: `out[f] = Ec(c0) + Σ_{g=1..} CPE[g-1](c_g)` for the
    /// `frames.len() / num_code_groups` frames in `frames` (row-major `[n, groups]`), summed
    /// in f32 in codebook order as the reference's `cat(...).sum(1)`. The text-side vector
    /// is not included.
    pub fn embed_frames(
        &self,
        b: &B,
        s: &mut B::Stream,
        codec0_table: &B::Weight,
        frames: &[u32],
        out: &mut B::Buffer,
    ) -> Result<()> {
        let groups = self.num_code_groups;
        if !frames.len().is_multiple_of(groups) {
            return Err(Error::invalid_argument(format!(
                "frame embedding: {} codes is not a whole number of {groups}-code frames",
                frames.len()
            )));
        }
        // One pass over all frames and codebooks: codebook 0 from the talker's table, the rest
        // from the predictor's, summed in codebook order.
        let mut tables = Vec::with_capacity(groups);
        tables.push(codec0_table);
        tables.extend(self.embeddings.iter());
        b.embedding_sum(s, &tables, frames, out, false)
    }
}

// Weights are shared read-only between requests and threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<CodePredictor<crate::backend::cpu::CpuBackend>>();
};
