//! The frame program: the op list (`MkOp`s) one launch of the frame megakernel walks, built
//! from the weights of the talker and the code predictor and from one request's buffers.
//!
//! Order (indices are what the launch ranges and the timing modes refer to):
//!
//! ```text
//! talker, per layer:   QKV (norm fused) · attention · O (+residual) · gate/up (norm fused) · down (+residual)
//!                      codec head (final norm fused; also writes the post-norm hidden state)
//! sample0              codebook 0 (talker chain); the frame may stop here
//! code predictor:      [projection] · 5 layers on 2 rows (positions 0, 1) · lm_head[0] · sample1
//!                      per codebook g = 2..: [projection] · 5 layers on 1 row (position g) · lm_head[g-1] · sample g
//! embed                next talker input: Σ of the 16 codebook embeddings + the step's text row
//! ```
//!
//! Every op waits for the op before it (a full dependency between consecutive ops; the
//! weight ring keeps streaming through the waits), except that ops reading nothing produced
//! in the launch would not need to; keeping the chain uniform makes every write-after-read
//! hazard impossible by construction (an op never starts before every block finished the
//! previous one).

use super::layout::*;

/// Shape of one decoder stack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StackShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
}

impl StackShape {
    pub fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    fn qkv_width(&self) -> usize {
        self.q_width() + 2 * self.kv_width()
    }
}

/// Device address of a weight and of its optional bias.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinearAddr {
    pub w: u64,
    pub bias: u64,
}

/// Device addresses of one decoder layer's weights (bf16).
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerAddrs {
    pub input_norm: u64,
    pub q: LinearAddr,
    pub k: LinearAddr,
    pub v: LinearAddr,
    pub o: LinearAddr,
    pub q_norm: u64,
    pub k_norm: u64,
    pub post_norm: u64,
    pub gate: LinearAddr,
    pub up: LinearAddr,
    pub down: LinearAddr,
}

/// One stack's weights.
#[derive(Debug, Clone)]
pub struct StackAddrs {
    pub shape: StackShape,
    pub layers: Vec<LayerAddrs>,
    pub final_norm: u64,
}

/// Every weight a frame reads.
#[derive(Debug, Clone)]
pub struct FrameWeights {
    pub talker: StackAddrs,
    /// `[talker_vocab, hidden]`.
    pub codec_head: u64,
    /// `Ec`: `[talker_vocab, hidden]`.
    pub codec_embedding: u64,
    pub talker_vocab: usize,
    pub cp: StackAddrs,
    /// `lm_head[j]`: `[cp_vocab, cp_hidden]`, j < groups - 1.
    pub cp_heads: Vec<u64>,
    /// `CPE[j]`: `[cp_vocab, talker_hidden]`, j < groups - 1.
    pub cp_embeddings: Vec<u64>,
    /// `small_to_mtp_projection` `[cp_hidden, talker_hidden]` (+ bias) where the widths differ.
    pub projection: Option<LinearAddr>,
    pub cp_vocab: usize,
    pub groups: usize,
}

impl FrameWeights {
    /// Why these shapes cannot run on the megakernel, if they cannot.
    pub fn unsupported(&self) -> Option<String> {
        let (t, c) = (&self.talker.shape, &self.cp.shape);
        let widths = [
            ("talker hidden", t.hidden),
            ("talker attention width", t.q_width()),
            ("talker intermediate", t.intermediate),
            ("code-predictor hidden", c.hidden),
            ("code-predictor attention width", c.q_width()),
            ("code-predictor intermediate", c.intermediate),
        ];
        for (what, k) in widths {
            if k == 0 || k % 8 != 0 || 2 * k > PAGE_BYTES {
                return Some(format!("{what} {k} is not a multiple of 8 up to {}", PAGE_BYTES / 2));
            }
        }
        for (what, s) in [("talker", t), ("code predictor", c)] {
            if s.kv_heads == 0 || s.heads % s.kv_heads != 0 {
                return Some(format!("{what}: {} heads cannot share {} key/value heads", s.heads, s.kv_heads));
            }
            if s.head_dim == 0 || s.head_dim % 4 != 0 || s.head_dim > MAX_HEAD_DIM {
                return Some(format!("{what}: head_dim {} is not a multiple of 4 up to {MAX_HEAD_DIM}", s.head_dim));
            }
        }
        if self.talker_vocab > MAX_VOCAB || self.cp_vocab > MAX_VOCAB {
            return Some(format!(
                "vocabularies {} / {} exceed the device sampler's {MAX_VOCAB}",
                self.talker_vocab, self.cp_vocab
            ));
        }
        if self.groups < 2 || self.groups > MAX_GROUPS {
            return Some(format!("{} codebooks per frame (2 to {MAX_GROUPS} supported)", self.groups));
        }
        if self.cp_heads.len() != self.groups - 1 || self.cp_embeddings.len() != self.groups - 1 {
            return Some("code-predictor heads/embeddings do not match the codebook count".into());
        }
        if self.projection.is_none() && c.hidden != t.hidden {
            return Some("code predictor narrower than the talker without a projection".into());
        }
        None
    }
}

/// Most position chunks per KV head of the talker's attention (scratch is sized for it).
pub const TALKER_MAX_CHUNKS: usize = 16;

/// Offsets (in 4-byte words) of one request's device buffers inside its arena.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArenaLayout {
    pub x_talker: usize,
    pub qkv_talker: usize,
    pub attn_talker: usize,
    pub act_talker: usize,
    pub logits_talker: usize,
    pub hidden_last: usize,
    pub x_cp: usize,
    pub qkv_cp: usize,
    pub attn_cp: usize,
    pub act_cp: usize,
    pub logits_cp: usize,
    pub cp_kv: usize,
    pub partial: usize,
    pub inv_freq_talker: usize,
    pub inv_freq_cp: usize,
    pub counters: usize,
    pub combine: usize,
    pub state: usize,
    pub seen: usize,
    /// [`flags::LL`](super::layout::flags::LL): the tagged twin (two words per float) of the
    /// activations `0..ll_floats` (every buffer up to `cp_kv`: all that ops of one launch
    /// hand each other), then one twin word per code slot.
    pub ll: usize,
    pub ll_floats: usize,
    pub ll_codes: usize,
    pub ops: usize,
    /// Words from `counters` to the end of `ll_codes`: what is zeroed per request.
    pub zero_words: usize,
    pub total_words: usize,
    pub n_ops: usize,
    pub n_combine: usize,
}

/// Ops in the program for these weights (without building it).
pub fn op_count(w: &FrameWeights) -> usize {
    let talker = w.talker.layers.len() * 5 + 2; // layers, head, sample0
    let per_cp_step = w.cp.layers.len() * 5 + 2 + usize::from(w.projection.is_some()); // [proj], layers, head, sample
    talker + (w.groups - 1) * per_cp_step + 1
}

fn align16(x: usize) -> usize {
    x.next_multiple_of(16)
}

impl ArenaLayout {
    pub fn new(w: &FrameWeights) -> Self {
        let (t, c) = (&w.talker.shape, &w.cp.shape);
        let mut at = 0usize;
        let mut take = |words: usize| {
            let o = at;
            at = align16(at + words.max(1));
            o
        };
        let n_ops = op_count(w);
        let n_att = w.talker.layers.len() + (w.groups - 1) * w.cp.layers.len();
        let n_combine = n_att * t.kv_heads.max(c.kv_heads);
        let mut l = ArenaLayout {
            x_talker: take(t.hidden),
            qkv_talker: take(t.qkv_width()),
            attn_talker: take(t.q_width()),
            act_talker: take(t.intermediate),
            logits_talker: take(w.talker_vocab),
            hidden_last: take(t.hidden),
            x_cp: take(MAX_ROWS * c.hidden),
            qkv_cp: take(MAX_ROWS * c.qkv_width()),
            attn_cp: take(MAX_ROWS * c.q_width()),
            act_cp: take(MAX_ROWS * c.intermediate),
            logits_cp: take(w.cp_vocab),
            cp_kv: take(w.cp.layers.len() * 2 * w.groups * c.kv_width()),
            partial: take(MAX_ROWS * t.heads.max(c.heads) * TALKER_MAX_CHUNKS * (t.head_dim.max(c.head_dim) + 2)),
            inv_freq_talker: take(t.head_dim / 2),
            inv_freq_cp: take(c.head_dim / 2),
            counters: 0,
            combine: 0,
            state: 0,
            seen: 0,
            ll: 0,
            ll_floats: 0,
            ll_codes: 0,
            ops: 0,
            zero_words: 0,
            total_words: 0,
            n_ops,
            n_combine,
        };
        l.counters = take(n_ops);
        l.combine = take(n_combine);
        l.state = take(size_of::<MkState>() / 4);
        l.seen = take(w.talker_vocab.div_ceil(32));
        l.ll_floats = l.cp_kv;
        l.ll = take(2 * l.ll_floats);
        l.ll_codes = take(2 * MAX_GROUPS);
        l.ops = take(n_ops * size_of::<MkOp>() / 4);
        l.zero_words = l.ops - l.counters;
        l.total_words = take(0);
        l
    }
}

/// Per-request addresses the program refers to besides the arena.
#[derive(Debug, Clone)]
pub struct RequestAddrs {
    /// Base address of the request's arena (4-byte words, laid out by [`ArenaLayout`]).
    pub arena: u64,
    /// The talker's K and V cache per layer (`[capacity, kv_width]` f32 each).
    pub talker_kv: Vec<(u64, u64)>,
    /// Text rows added to decode steps `[trailing, hidden]` and `P(tts_pad)` `[hidden]`.
    pub text_rows: u64,
    pub trailing: usize,
    pub pad_row: u64,
}

/// A built program and where its phases start.
#[derive(Debug, Clone)]
pub struct Program {
    pub ops: Vec<MkOp>,
    /// Index of the codebook-0 sampler: the talker ops are `0..sample0`.
    pub sample0: usize,
}

fn seg(a: LinearAddr, rows: usize, vrow0: usize) -> MkSeg {
    MkSeg { w: a.w, bias: a.bias, rows: rows as i32, vrow0: vrow0 as i32 }
}

fn src_f32(addr: u64) -> MkSrc {
    MkSrc { f32: addr, table: 0, code_slot: 0, pad: 0 }
}

fn src_table(table: u64, slot: usize) -> MkSrc {
    MkSrc { f32: 0, table, code_slot: slot as i32, pad: 0 }
}

struct Builder<'a> {
    ops: Vec<MkOp>,
    l: &'a ArenaLayout,
    arena: u64,
    /// Attention ops so far (each gets `kv_max` combine counters).
    n_att: usize,
    kv_max: usize,
    /// Byte ranges of activations and the op that wrote each, latest last: the producers
    /// that [`flags::LL`] readers poll for.
    writes: Vec<(u64, u64, i32)>,
    /// The sampler op of each code slot so far (-1: none yet).
    code_writer: [i32; MAX_GROUPS],
}

impl Builder<'_> {
    fn addr(&self, words: usize) -> u64 {
        self.arena + 4 * words as u64
    }

    /// The op that last wrote the float at `addr`, or -1 (written before the kernel).
    fn producer(&self, addr: u64) -> i32 {
        self.writes.iter().rev().find(|&&(lo, hi, _)| lo <= addr && addr < hi).map_or(-1, |w| w.2)
    }

    /// Gives the last op a side output (`raw_copy` / `norm_copy`) of `floats` at `addr`.
    fn side_copy(&mut self, addr: u64, floats: usize, set: impl FnOnce(&mut MkOp)) {
        let i = self.ops.len() - 1;
        set(&mut self.ops[i]);
        self.wrote(addr, floats, i);
    }

    fn wrote(&mut self, addr: u64, floats: usize, op: usize) {
        if addr != 0 && floats > 0 {
            self.writes.push((addr, addr + 4 * floats as u64, op as i32));
        }
    }

    /// Appends `op`, waiting for the op before it, with its producers (what it reads and who
    /// wrote it) filled in and its own writes recorded.
    fn push(&mut self, mut op: MkOp) -> usize {
        let i = self.ops.len();
        op.wait = i as i32 - 1;
        op.src_op = [-1; MAX_ROWS];
        op.out_op = -1;
        op.code_op = [-1; MAX_GROUPS];
        match op.kind {
            OP_MATVEC => {
                let rows = op.rows as usize;
                for r in 0..rows {
                    let s = op.src[r];
                    op.src_op[r] =
                        if s.f32 != 0 { self.producer(s.f32) } else { self.code_writer[s.code_slot as usize] };
                }
                if op.epilogue == EPI_ADD {
                    op.out_op = self.producer(op.out);
                }
                let out_rows: usize = op.seg[..op.nseg as usize].iter().map(|s| s.rows as usize).sum::<usize>()
                    / if op.paired != 0 { 2 } else { 1 };
                // (raw_copy / norm_copy are set, and recorded, by side_copy after the push.)
                self.wrote(op.out, (rows - 1) * op.out_stride as usize + out_rows, i);
            }
            OP_ATTENTION => {
                op.src_op[0] = self.producer(op.qkv);
                let width = (op.rows * op.heads * op.head_dim) as usize;
                self.wrote(op.attn_out, width, i);
            }
            OP_SAMPLE => {
                op.src_op[0] = self.producer(op.logits);
                self.code_writer[op.slot as usize] = i as i32;
            }
            OP_EMBED_FRAME => {
                op.code_op = self.code_writer;
                self.wrote(op.out, op.dim as usize, i);
            }
            _ => {}
        }
        self.ops.push(op);
        i
    }

    #[allow(clippy::too_many_arguments)]
    fn matvec(
        &mut self,
        segs: &[MkSeg],
        paired: bool,
        k: usize,
        src: &[MkSrc],
        norm: u64,
        eps: f32,
        out: u64,
        out_stride: usize,
        epilogue: i32,
    ) -> &mut MkOp {
        let mut op = MkOp { kind: OP_MATVEC, rows: src.len() as i32, ..Default::default() };
        op.seg[..segs.len()].copy_from_slice(segs);
        op.nseg = segs.len() as i32;
        op.paired = i32::from(paired);
        op.k = k as i32;
        op.src[..src.len()].copy_from_slice(src);
        op.norm_w = norm;
        op.eps = eps;
        op.out = out;
        op.out_stride = out_stride as i32;
        op.epilogue = epilogue;
        let i = self.push(op);
        &mut self.ops[i]
    }

    /// One decoder layer over `rows` rows whose residual stream is `x` (row stride hidden).
    /// `first_src`: the rows to read instead of `x`, copied into `x` by the QKV op.
    #[allow(clippy::too_many_arguments)]
    fn layer(
        &mut self,
        s: &StackShape,
        w: &LayerAddrs,
        rows: usize,
        x: u64,
        first_src: Option<&[MkSrc]>,
        bufs: LayerBufs,
        cache: (u64, u64),
        position: i32,
        max_chunks: usize,
    ) {
        let (h, q, kv, inter) = (s.hidden, s.q_width(), s.kv_width(), s.intermediate);
        let row = |base: u64, stride: usize, r: usize| base + 4 * (r * stride) as u64;
        let x_rows: Vec<MkSrc> = (0..rows).map(|r| src_f32(row(x, h, r))).collect();
        // 1. QKV (input norm fused).
        let qkv_src = first_src.unwrap_or(&x_rows);
        let segs = [seg(w.q, q, 0), seg(w.k, kv, q), seg(w.v, kv, q + kv)];
        self.matvec(&segs, false, h, qkv_src, w.input_norm, s.eps, bufs.qkv, s.qkv_width(), EPI_STORE);
        if first_src.is_some() {
            self.side_copy(x, rows * h, |op| op.raw_copy = x);
        }
        // 2. Attention.
        let mut op = MkOp { kind: OP_ATTENTION, rows: rows as i32, ..Default::default() };
        op.qkv = bufs.qkv;
        op.q_norm = w.q_norm;
        op.k_norm = w.k_norm;
        op.eps = s.eps;
        op.inv_freq = bufs.inv_freq;
        op.k_cache = cache.0;
        op.v_cache = cache.1;
        op.partial = self.addr(self.l.partial);
        op.attn_out = bufs.attn;
        op.heads = s.heads as i32;
        op.kv_heads = s.kv_heads as i32;
        op.head_dim = s.head_dim as i32;
        op.position = position;
        op.combine_base = (self.n_att * self.kv_max) as i32;
        op.max_chunks = max_chunks as i32;
        self.n_att += 1;
        self.push(op);
        // 3. O projection into the residual stream.
        let attn_rows: Vec<MkSrc> = (0..rows).map(|r| src_f32(row(bufs.attn, q, r))).collect();
        self.matvec(&[seg(w.o, h, 0)], false, q, &attn_rows, 0, s.eps, x, h, EPI_ADD);
        // 4. gate/up (post-attention norm fused): silu(gate) * up.
        let gu = [seg(w.gate, inter, 0), seg(w.up, inter, 0)];
        self.matvec(&gu, true, h, &x_rows, w.post_norm, s.eps, bufs.act, inter, EPI_SILU_MUL);
        // 5. Down projection into the residual stream.
        let act_rows: Vec<MkSrc> = (0..rows).map(|r| src_f32(row(bufs.act, inter, r))).collect();
        self.matvec(&[seg(w.down, h, 0)], false, inter, &act_rows, 0, s.eps, x, h, EPI_ADD);
    }

    fn sample(&mut self, logits: u64, vocab: usize, slot: usize, sampler: i32, last: bool) -> usize {
        let op = MkOp {
            kind: OP_SAMPLE,
            logits,
            vocab: vocab as i32,
            slot: slot as i32,
            sampler,
            last_slot: i32::from(last),
            ..Default::default()
        };
        self.push(op)
    }
}

/// Activation buffers of one stack.
#[derive(Clone, Copy)]
struct LayerBufs {
    qkv: u64,
    attn: u64,
    act: u64,
    inv_freq: u64,
}

/// Builds the frame program for weights `w` and one request's buffers.
pub fn build(w: &FrameWeights, l: &ArenaLayout, r: &RequestAddrs) -> Program {
    let (t, c) = (&w.talker.shape, &w.cp.shape);
    let mut b =
        Builder {
            ops: Vec::with_capacity(l.n_ops),
            l,
            arena: r.arena,
            n_att: 0,
            kv_max: t.kv_heads.max(c.kv_heads),
            writes: Vec::new(),
            code_writer: [-1; MAX_GROUPS],
        };
    let x_t = b.addr(l.x_talker);
    let tb = LayerBufs {
        qkv: b.addr(l.qkv_talker),
        attn: b.addr(l.attn_talker),
        act: b.addr(l.act_talker),
        inv_freq: b.addr(l.inv_freq_talker),
    };
    // --- talker step ---
    for (i, lw) in w.talker.layers.iter().enumerate() {
        b.layer(t, lw, 1, x_t, None, tb, r.talker_kv[i], -1, TALKER_MAX_CHUNKS);
    }
    let logits_t = b.addr(l.logits_talker);
    let hidden_last = b.addr(l.hidden_last);
    let head = LinearAddr { w: w.codec_head, bias: 0 };
    b.matvec(
        &[seg(head, w.talker_vocab, 0)],
        false,
        t.hidden,
        &[src_f32(x_t)],
        w.talker.final_norm,
        t.eps,
        logits_t,
        w.talker_vocab,
        EPI_STORE,
    );
    b.side_copy(hidden_last, t.hidden, |op| op.norm_copy = hidden_last);
    let sample0 = b.sample(logits_t, w.talker_vocab, 0, SAMPLER_TALKER, false);

    // --- code predictor ---
    let x_c = b.addr(l.x_cp);
    let cb = LayerBufs {
        qkv: b.addr(l.qkv_cp),
        attn: b.addr(l.attn_cp),
        act: b.addr(l.act_cp),
        inv_freq: b.addr(l.inv_freq_cp),
    };
    let logits_c = b.addr(l.logits_cp);
    let kv_plane = w.groups * c.kv_width(); // one layer's K (or V): [groups positions, kv_width]
    let cache = |layer: usize| {
        let base = b_addr(r.arena, l.cp_kv + layer * 2 * kv_plane);
        (base, base + 4 * kv_plane as u64)
    };
    for g in 1..w.groups {
        // Input rows in the talker's width: [h, Ec(c0)] for the first step, CPE[g-2](c_{g-1}) after.
        let inputs: Vec<MkSrc> = if g == 1 {
            vec![src_f32(hidden_last), src_table(w.codec_embedding, 0)]
        } else {
            vec![src_table(w.cp_embeddings[g - 2], g - 1)]
        };
        let rows = inputs.len();
        let first_src: Option<Vec<MkSrc>> = match w.projection {
            Some(p) => {
                let op = b.matvec(&[seg(p, c.hidden, 0)], false, t.hidden, &inputs, 0, c.eps, x_c, c.hidden, EPI_STORE);
                op.check_stop = i32::from(g == 1);
                None
            }
            None => Some(inputs),
        };
        let position = if g == 1 { 0 } else { g as i32 };
        for (i, lw) in w.cp.layers.iter().enumerate() {
            let first = if i == 0 { first_src.as_deref() } else { None };
            let before = b.ops.len();
            b.layer(c, lw, rows, x_c, first, cb, cache(i), position, 1);
            if g == 1 && i == 0 && w.projection.is_none() {
                b.ops[before].check_stop = 1;
            }
        }
        let head = LinearAddr { w: w.cp_heads[g - 1], bias: 0 };
        let last_row = x_c + 4 * ((rows - 1) * c.hidden) as u64;
        b.matvec(
            &[seg(head, w.cp_vocab, 0)],
            false,
            c.hidden,
            &[src_f32(last_row)],
            w.cp.final_norm,
            c.eps,
            logits_c,
            w.cp_vocab,
            EPI_STORE,
        );
        b.sample(logits_c, w.cp_vocab, g, SAMPLER_CODE_PREDICTOR, g + 1 == w.groups);
    }

    // --- next talker input ---
    let mut op = MkOp { kind: OP_EMBED_FRAME, ..Default::default() };
    op.tables[0] = w.codec_embedding;
    for (j, &e) in w.cp_embeddings.iter().enumerate() {
        op.tables[j + 1] = e;
    }
    op.groups = w.groups as i32;
    op.dim = t.hidden as i32;
    op.text_rows = r.text_rows;
    op.pad_row = r.pad_row;
    op.trailing = r.trailing as i32;
    op.out = x_t;
    b.push(op);

    debug_assert_eq!(b.ops.len(), l.n_ops, "op_count disagrees with the builder");
    Program { ops: b.ops, sample0 }
}

fn b_addr(arena: u64, words: usize) -> u64 {
    arena + 4 * words as u64
}

/// Work-region floats the kernel needs for these weights (largest of the matvec inputs, the
/// attention scratch and the sampler scratch).
pub fn work_floats(w: &FrameWeights) -> usize {
    let (t, c) = (&w.talker.shape, &w.cp.shape);
    let matvec = [t.hidden, t.q_width(), t.intermediate]
        .into_iter()
        .chain([c.hidden, c.q_width(), c.intermediate, t.hidden].map(|k| MAX_ROWS * k))
        .max()
        .unwrap_or(0);
    let attention = |s: &StackShape, rows: usize| {
        let grp = s.heads / s.kv_heads.max(1);
        // q, k, v rows; the warps' merge slots.
        rows * grp * s.head_dim + 2 * rows * s.head_dim + 8 * 4 * (s.head_dim + 2)
    };
    let sample = |n: usize| 4 * n.next_multiple_of(4) + SAMPLE_EXTRA_FLOATS;
    [matvec, attention(t, 1), attention(c, MAX_ROWS), sample(w.talker_vocab), sample(w.cp_vocab)]
        .into_iter()
        .max()
        .unwrap_or(0)
        .next_multiple_of(4)
}

/// Largest power of two R with R * k * 2 <= PAGE_BYTES (the kernel's `rows_per_page`).
pub fn rows_per_page(k: usize) -> usize {
    let fit = PAGE_BYTES / (2 * k.max(1));
    if fit == 0 { 0 } else { 1 << fit.ilog2() }
}

/// Partial-sum floats the largest matvec op of `ops` needs in any block of `grid`.
pub fn ypart_floats(ops: &[MkOp], grid: usize) -> usize {
    let mut most = 0;
    for op in ops.iter().filter(|o| o.kind == OP_MATVEC) {
        let k = op.k as usize;
        let rpp = rows_per_page(k);
        let parts = if rpp >= MAX_PARTS { 1 } else { MAX_PARTS / rpp.max(1) };
        let rows: usize = if op.paired != 0 {
            2 * (op.seg[0].rows as usize).div_ceil(grid)
        } else {
            (op.seg[..op.nseg as usize].iter().map(|s| s.rows as usize).sum::<usize>()).div_ceil(grid)
        };
        most = most.max(rows * parts * op.rows as usize);
    }
    most.next_multiple_of(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(hidden: usize, inter: usize, heads: usize, kv: usize, hd: usize) -> StackShape {
        StackShape { hidden, intermediate: inter, heads, kv_heads: kv, head_dim: hd, eps: 1e-6 }
    }

    fn weights(layers: usize, cp_layers: usize, proj: bool) -> FrameWeights {
        let stack = |s: StackShape, n: usize, base: u64| StackAddrs {
            shape: s,
            layers: (0..n)
                .map(|i| {
                    let a = base + 0x1000 * i as u64;
                    let lin = |o: u64| LinearAddr { w: a + o, bias: 0 };
                    LayerAddrs {
                        input_norm: a,
                        q: lin(0x10),
                        k: lin(0x20),
                        v: lin(0x30),
                        o: lin(0x40),
                        q_norm: a + 0x50,
                        k_norm: a + 0x60,
                        post_norm: a + 0x70,
                        gate: lin(0x80),
                        up: lin(0x90),
                        down: lin(0xa0),
                    }
                })
                .collect(),
            final_norm: base + 0xffff,
        };
        FrameWeights {
            talker: stack(shape(1024, 3072, 16, 8, 128), layers, 0x1000_0000),
            codec_head: 0x2000_0000,
            codec_embedding: 0x2100_0000,
            talker_vocab: 3072,
            cp: stack(shape(if proj { 512 } else { 1024 }, 3072, 16, 8, 128), cp_layers, 0x3000_0000),
            cp_heads: (0..15).map(|j| 0x4000_0000 + j * 0x10_0000).collect(),
            cp_embeddings: (0..15).map(|j| 0x5000_0000 + j * 0x10_0000).collect(),
            projection: proj.then_some(LinearAddr { w: 0x6000_0000, bias: 0x6100_0000 }),
            cp_vocab: 2048,
            groups: 16,
        }
    }

    fn request(layers: usize) -> RequestAddrs {
        RequestAddrs {
            arena: 0x7000_0000,
            talker_kv: (0..layers)
                .map(|i| (0x8000_0000 + i as u64 * 0x100_0000, 0x9000_0000 + i as u64 * 0x100_0000))
                .collect(),
            text_rows: 0xa000_0000,
            trailing: 3,
            pad_row: 0xb000_0000,
        }
    }

    #[test]
    fn program_shape_and_chain() {
        for proj in [false, true] {
            let w = weights(28, 5, proj);
            assert_eq!(w.unsupported(), None);
            let l = ArenaLayout::new(&w);
            let p = build(&w, &l, &request(28));
            assert_eq!(p.ops.len(), op_count(&w));
            assert_eq!(p.sample0, 28 * 5 + 1);
            assert_eq!(p.ops[p.sample0].kind, OP_SAMPLE);
            assert_eq!(p.ops[p.sample0].slot, 0);
            // Every op waits for the one before it.
            for (i, op) in p.ops.iter().enumerate() {
                assert_eq!(op.wait, i as i32 - 1, "op {i}");
            }
            // Samplers: one per codebook, in order, the last one closing the frame.
            let samples: Vec<&MkOp> = p.ops.iter().filter(|o| o.kind == OP_SAMPLE).collect();
            assert_eq!(samples.len(), 16);
            for (g, s) in samples.iter().enumerate() {
                assert_eq!(s.slot, g as i32);
                assert_eq!(s.last_slot, i32::from(g == 15));
            }
            // The op right after sample0 checks the stop flag.
            assert_eq!(p.ops[p.sample0 + 1].check_stop, 1);
            assert_eq!(p.ops.iter().filter(|o| o.check_stop != 0).count(), 1);
            // Combine counters stay inside their region.
            for op in p.ops.iter().filter(|o| o.kind == OP_ATTENTION) {
                assert!(op.combine_base as usize + op.kv_heads as usize <= l.n_combine);
            }
            // The code predictor's first step runs 2 rows at positions 0 and 1.
            let first_cp_att = p.ops[p.sample0..].iter().find(|o| o.kind == OP_ATTENTION).unwrap();
            assert_eq!((first_cp_att.rows, first_cp_att.position), (2, 0));
            assert_eq!(p.ops.last().unwrap().kind, OP_EMBED_FRAME);
            // Arena regions do not overlap and fit.
            assert!(l.ops + l.n_ops * size_of::<MkOp>() / 4 <= l.total_words);
            assert!(l.ll + 2 * l.ll_floats <= l.ll_codes && l.ll_codes + 2 * MAX_GROUPS <= l.ops);
            assert!(l.counters <= l.ll && l.ll_codes + 2 * MAX_GROUPS <= l.counters + l.zero_words, "LL twin zeroed per request");
            assert_eq!(l.ll % 2, 0, "LL words are 8-byte aligned");
            check_producers(&p, &l, proj);
        }
    }

    /// The LL producers: what each op reads was written by the op named, checked against the
    /// program's structure (not against the builder's own bookkeeping).
    fn check_producers(p: &Program, l: &ArenaLayout, proj: bool) {
        let ops = &p.ops;
        let arena = request(0).arena;
        // Every f32 input an op polls lies inside the twin's span.
        let in_span = |addr: u64| addr >= arena && addr < arena + 4 * l.ll_floats as u64;
        let layers = 28;
        // Talker: layer 0 reads the talker input (written by the previous launch's embed op);
        // afterwards QKV <- down, attention <- QKV, O <- attention (adding to down's rows, or
        // nothing for layer 0), gate/up <- O, down <- gate/up (adding to O's rows).
        for layer in 0..layers {
            let b = 5 * layer;
            let prev_down = if layer == 0 { -1 } else { b as i32 - 1 };
            assert_eq!(ops[b].src_op[0], prev_down, "talker layer {layer} QKV");
            assert_eq!(ops[b + 1].src_op[0], b as i32, "talker layer {layer} attention");
            assert_eq!(ops[b + 2].src_op[0], b as i32 + 1, "talker layer {layer} O");
            assert_eq!(ops[b + 2].out_op, prev_down, "talker layer {layer} O residual");
            assert_eq!(ops[b + 3].src_op[0], b as i32 + 2, "talker layer {layer} gate/up");
            assert_eq!(ops[b + 4].src_op[0], b as i32 + 3, "talker layer {layer} down");
            assert_eq!(ops[b + 4].out_op, b as i32 + 2, "talker layer {layer} down residual");
            assert!(in_span(ops[b].src[0].f32) && in_span(ops[b + 2].out));
        }
        let head = 5 * layers;
        assert_eq!(ops[head].src_op[0], head as i32 - 1);
        assert_eq!(ops[p.sample0].src_op[0], head as i32, "codebook 0 samples the head's logits");
        // Code predictor step 1: [hidden_last (the head's norm copy), codebook 0's row].
        let first = p.sample0 + 1;
        assert_eq!(ops[first].src_op[..2], [head as i32, p.sample0 as i32]);
        assert_eq!(ops[first].src[1].code_slot, 0);
        let samplers: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].kind == OP_SAMPLE).collect();
        for g in 1..16 {
            // Each step reads the previous step's code, and its sampler the step's head.
            let start = samplers[g - 1] + 1;
            if g > 1 {
                assert_eq!(ops[start].src_op[0], samplers[g - 1] as i32, "step {g} reads code {}", g - 1);
                assert_eq!(ops[start].src[0].code_slot, g as i32 - 1);
            }
            assert_eq!(ops[samplers[g]].src_op[0], samplers[g] as i32 - 1, "sampler {g} <- its head");
            // The first layer's O adds to the rows its first op copied (raw copy) or
            // projected into the code predictor's stream.
            let first_o = start + if proj { 3 } else { 2 };
            assert_eq!(ops[first_o].kind, OP_MATVEC);
            assert_eq!(ops[first_o].epilogue, EPI_ADD);
            assert_eq!(ops[first_o].out_op, start as i32, "step {g}: O adds to its stream's first writer");
        }
        let embed = ops.last().unwrap();
        let want: Vec<i32> = samplers.iter().map(|&s| s as i32).collect();
        assert_eq!(embed.code_op.to_vec(), want, "the embed op reads every sampler's code");
    }

    #[test]
    fn page_rows_and_partials() {
        assert_eq!(rows_per_page(1024), 8);
        assert_eq!(rows_per_page(2048), 4);
        assert_eq!(rows_per_page(3072), 2);
        assert_eq!(rows_per_page(6144), 1);
        assert_eq!(rows_per_page(32), 256);
        assert_eq!(rows_per_page(16384), 0);
        let w = weights(28, 5, false);
        let l = ArenaLayout::new(&w);
        let p = build(&w, &l, &request(28));
        assert!(ypart_floats(&p.ops, 132) >= 32);
        assert!(work_floats(&w) >= 4 * 3072);
    }

    #[test]
    fn unsupported_shapes_are_named() {
        let mut w = weights(2, 2, false);
        w.talker.shape.hidden = 1020;
        assert!(w.unsupported().unwrap().contains("talker hidden"));
        let mut w = weights(2, 2, false);
        w.cp.shape.head_dim = 130;
        assert!(w.unsupported().is_some());
        let mut w = weights(2, 2, false);
        w.cp.shape.hidden = 512;
        assert!(w.unsupported().unwrap().contains("projection"));
    }
}
