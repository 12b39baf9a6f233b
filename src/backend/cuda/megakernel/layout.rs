//! `#[repr(C)]` twins of `kernels/megakernel/layout.cuh` (and the sampler test case of
//! `kernels/megakernel.cu`). Field order, types and sizes must match the C structs exactly;
//! both sides assert the sizes. Device addresses are `u64` (0 = null).

use cudarc::driver::DeviceRepr;

/// Threads per block of every megakernel launch.
pub const THREADS: u32 = 256;
/// Bytes of one weight page in the shared-memory ring.
pub const PAGE_BYTES: usize = 16384;
/// Most row-concatenated matrices one matvec op reads.
pub const MAX_SEGS: usize = 3;
/// Most input rows of one matvec op.
pub const MAX_ROWS: usize = 2;
/// Largest head_dim the attention op takes.
pub const MAX_HEAD_DIM: usize = 256;
/// Largest vocabulary a sampling op takes.
pub const MAX_VOCAB: usize = 4096;
/// Most codebooks per frame.
pub const MAX_GROUPS: usize = 16;
/// Most parts a page row is split into (one per warp).
pub const MAX_PARTS: usize = 8;
/// Most weight-ring slots (the portable path's wait is unrolled up to 15 pending groups).
pub const MAX_SLOTS: usize = 16;
/// Floats of the sampler's scratch beyond its `4 n` (`kSampleExtraFloats`).
pub const SAMPLE_EXTRA_FLOATS: usize = 256 + 256 + 256 + 8;

pub const OP_MATVEC: i32 = 1;
pub const OP_ATTENTION: i32 = 2;
pub const OP_SAMPLE: i32 = 3;
pub const OP_EMBED_FRAME: i32 = 4;

pub const EPI_STORE: i32 = 0;
pub const EPI_ADD: i32 = 1;
pub const EPI_SILU_MUL: i32 = 2;

pub const SAMPLER_TALKER: i32 = 0;
pub const SAMPLER_CODE_PREDICTOR: i32 = 1;

/// `MkRecord::status` values.
pub const RECORD_PENDING: u32 = 0;
pub const RECORD_FRAME: u32 = 1;
pub const RECORD_EOS: u32 = 2;
pub const RECORD_LIMIT: u32 = 3;
pub const RECORD_ABORTED: u32 = 4;
pub const RECORD_BAD_CODE: u32 = 5;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MkSeg {
    pub w: u64,
    pub bias: u64,
    pub rows: i32,
    pub vrow0: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MkSrc {
    pub f32: u64,
    pub table: u64,
    pub code_slot: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MkOp {
    pub kind: i32,
    pub wait: i32,
    pub check_stop: i32,
    pub rows: i32,

    pub seg: [MkSeg; MAX_SEGS],
    pub nseg: i32,
    pub paired: i32,
    pub k: i32,
    pub epilogue: i32,
    pub src: [MkSrc; MAX_ROWS],
    pub norm_w: u64,
    pub eps: f32,
    pub out_stride: i32,
    pub out: u64,
    pub raw_copy: u64,
    pub norm_copy: u64,

    pub qkv: u64,
    pub q_norm: u64,
    pub k_norm: u64,
    pub inv_freq: u64,
    pub k_cache: u64,
    pub v_cache: u64,
    pub partial: u64,
    pub attn_out: u64,
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub position: i32,
    pub combine_base: i32,
    pub max_chunks: i32,

    pub logits: u64,
    pub vocab: i32,
    pub slot: i32,
    pub sampler: i32,
    pub last_slot: i32,

    pub tables: [u64; MAX_GROUPS],
    pub groups: i32,
    pub dim: i32,
    pub text_rows: u64,
    pub pad_row: u64,
    pub trailing: i32,
    pub out_dim_pad: i32,

    /// [`flags::LL`] producers (-1: none in the program, written before the kernel): of each
    /// matvec input row (a table row: the sampler of its code slot), of an attention op's qkv
    /// and of a sampler's logits (`src_op[0]`).
    pub src_op: [i32; MAX_ROWS],
    /// `EPI_ADD`: the op that last wrote the residual rows it adds to.
    pub out_op: i32,
    pub pad_op: i32,
    /// Embed frame: the sampler of each code slot.
    pub code_op: [i32; MAX_GROUPS],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MkSampler {
    pub do_sample: i32,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub top_p_cut: f32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MkTalkerSampler {
    pub s: MkSampler,
    pub penalty: f32,
    pub min_new_tokens: i32,
    pub eos: i32,
    pub suppress_start: i32,
    pub suppress_end: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MkState {
    pub codes: [u32; MAX_GROUPS],
    pub stop: u32,
    pub pad: [u32; 15],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MkRecord {
    pub codes: [u32; MAX_GROUPS],
    pub status: u32,
    pub pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MkArgs {
    pub ops: u64,
    pub counters: u64,
    pub combine: u64,
    pub state: u64,
    pub seen: u64,
    pub records: u64,
    pub abort: u64,
    pub forced: u64,
    pub dump: u64,
    pub total_ops: i32,
    pub n_ops: i32,
    pub first_op: i32,
    pub epoch: u32,
    pub frame: i32,
    pub talker_position: i32,
    pub frame_limit: i32,
    pub cp_vocab: i32,
    pub groups: i32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub dump_stride: i32,
    pub nslot: i32,
    pub work_floats: i32,
    pub ypart_floats: i32,
    pub talker: MkTalkerSampler,
    pub cp: MkSampler,
    /// `kFlag*` of layout.cuh: chain experiments for the benchmarks; 0 in production.
    pub flags: u32,
    /// Per (op, block) timestamps ([`TRACE_FIELDS`] u64 each) for the benchmarks, or 0.
    pub trace: u64,
    /// The weight loader's plan ([`LoadPlan`](super::load_plan::LoadPlan)): `[grid][plan_stride]` pages.
    pub plan: u64,
    /// `[grid][total_ops + 1]` u32: index in the block's plan of each op's first page.
    pub plan_op0: u64,
    /// Pages per block in `plan` (padding included).
    pub plan_stride: i32,
    /// Launches of this request that advanced the op counters, this one included (the
    /// counters' target is `counter_epoch * grid`; BLOCK_FLAGS launches leave them alone).
    pub counter_epoch: u32,
    /// [`flags::BLOCK_FLAGS`]: `[total_ops][grid]` u32, the epoch at which block b finished op i.
    pub block_flags: u64,
    /// [`flags::LL`]: `[ll_floats]` u64 words, the tagged twin of the arena's activations
    /// (`ll_origin + i` has `ll[i]`), and one word per code slot.
    pub ll: u64,
    pub ll_origin: u64,
    pub ll_codes: u64,
    pub ll_floats: i32,
    pub pad_ll: u32,
}

/// One weight page of a block's load plan (`MkPage`): one contiguous copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MkPage {
    /// Device address of the page's first byte.
    pub src: u64,
    pub bytes: u32,
    pub pad: u32,
}

/// u64 values per (op, block) in `MkArgs::trace` (`kTraceFields`), indexed by the `TRACE_*`
/// constants.
pub const TRACE_FIELDS: usize = 11;
/// Global-timer ns at the op's start.
pub const TRACE_START_NS: usize = 0;
/// Global-timer ns after the op's wait.
pub const TRACE_RELEASED_NS: usize = 1;
/// Global-timer ns after the op's work (before its signal).
pub const TRACE_DONE_NS: usize = 2;
/// SM cycles the block waited for weight pages in the op.
pub const TRACE_PAGE_WAIT_CYCLES: usize = 3;
/// SM clock after the wait.
pub const TRACE_RELEASED_CLK: usize = 4;
/// SM clock at the start of a matvec's page loop (0 for other ops).
pub const TRACE_LOOP_START_CLK: usize = 5;
/// SM clock at the end of a matvec's page loop (0 for other ops).
pub const TRACE_LOOP_END_CLK: usize = 6;
/// SM clock after the work.
pub const TRACE_DONE_CLK: usize = 7;
/// SM cycles thread 0 spent issuing weight copies in the op (a stalled issue shows here).
pub const TRACE_ISSUE_CYCLES: usize = 8;
/// SM cycles thread 0 spent refilling the weight loader's staged plan entries in the op.
pub const TRACE_DECODE_CYCLES: usize = 9;
/// SM clock once a matvec's input rows are in shared memory (0 for other ops).
pub const TRACE_INPUTS_CLK: usize = 10;

/// `MkArgs::flags` (`kFlag*` of layout.cuh): variants of the dependency chain that one build
/// times against each other. 0 is what production runs.
pub mod flags {
    /// Signal and wait on thread 0 (which also issues the weight copies).
    pub const SYNC_THREAD0: u32 = 1;
    /// Op fields read from the global op list, not a shared-memory copy.
    pub const GLOBAL_OP_FIELDS: u32 = 2;
    /// Spin on relaxed loads with one acquire fence after, not an acquire load per poll.
    pub const RELAXED_SPIN: u32 = 4;
    /// Signal with one `red.release.gpu`, not a fence and an atomic add.
    pub const RELEASE_ADD: u32 = 8;
    /// Matvec: wait for and release every weight page but skip its arithmetic (timing only;
    /// the results are wrong).
    pub const SKIP_MATH: u32 = 16;
    /// Op constants (RMSNorm weights, QK-norm weights, rotary frequencies) read from global
    /// memory after the op's wait, as before they were staged ahead of it (same results).
    pub const NO_STAGING: u32 = 32;
    /// Bulk weight copies without the L2 `evict_first` hint (same results; cp.async copies never carry it).
    pub const NO_EVICT_FIRST: u32 = 64;
    /// Dependencies through one flag per (op, block), stored with release semantics and
    /// polled by a whole warp, instead of one counter that every block increments atomically.
    pub const BLOCK_FLAGS: u32 = 128;
    /// cp.async.bulk path: each warp frees a weight page on the slot's "empty" mbarrier and
    /// warp 0 refills, instead of a block barrier per page.
    pub const WARP_RELEASE: u32 = 256;
    /// Dependencies carried by the data: every activation is also stored as a 64-bit
    /// {value, tag} word that its readers poll until the tag is the producer's; no counters,
    /// no fences, no separate load of the input after the wait.
    pub const LL: u32 = 512;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MkSampleCase {
    pub talker: MkTalkerSampler,
    pub cp: MkSampler,
    pub logits: u64,
    pub seen: u64,
    pub n: i32,
    pub is_talker: i32,
    pub generated: i32,
    pub frame: i32,
    pub slot: i32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub pad: i32,
}

const _: () = {
    assert!(size_of::<MkSeg>() == 24);
    assert!(size_of::<MkSrc>() == 24);
    assert!(size_of::<MkOp>() == 544);
    assert!(size_of::<MkSampler>() == 24);
    assert!(size_of::<MkTalkerSampler>() == 48);
    assert!(size_of::<MkState>() == 128);
    assert!(size_of::<MkRecord>() == 80);
    assert!(size_of::<MkArgs>() == 280);
    assert!(size_of::<MkPage>() == 16);
    assert!(size_of::<MkSampleCase>() == 120);
};

// SAFETY: plain-old-data with the layout of the kernels' structs (asserted above).
unsafe impl DeviceRepr for MkArgs {}
// SAFETY: as above.
unsafe impl DeviceRepr for MkPage {}
