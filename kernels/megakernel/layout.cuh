/*
 * The frame megakernel's data layout, shared with the host: every struct here has a
 * #[repr(C)] twin in src/backend/cuda/megakernel/layout.rs, and both sides assert its size.
 * Fields are 4- or 8-byte values ordered so that neither side inserts padding of its own.
 *
 * A frame is a PROGRAM: a list of MkOp that every block of the persistent grid walks in the
 * same order (SPMD). Each op splits its work over the blocks (matvec rows, attention units,
 * embedding slices) or gives it to block 0 (sampling). Op i signals counters[i] once per
 * block when that block's share is written; an op that reads another's output first waits
 * until counters[wait] has reached counter_epoch * gridDim.x (monotone counters: no resets between
 * launches of one request). Weight loads do not depend on activations, so a block keeps its
 * shared-memory ring of weight pages filled with the pages of the ops ahead of it while it
 * waits (weight_ring.cuh).
 */
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>

namespace qt_mk {

typedef __nv_bfloat16 bf16;

constexpr int kThreads = 256;   // threads per block (8 warps)
constexpr int kWarps = kThreads / 32;
constexpr int kPageBytes = 16384;  // one weight page: whole rows of one matrix
constexpr int kMaxSegs = 3;      // matrices concatenated (by rows) in one matvec op
constexpr int kMaxRows = 2;      // input rows of a matvec (the code predictor's 2-row prefill)
constexpr int kMaxHeadDim = 256;
constexpr int kMaxVocab = 4096;  // logits a sampling op takes
constexpr int kMaxGroups = 16;   // codebooks per frame
constexpr int kMaxParts = 8;     // a row split over at most this many warps
constexpr int kMaxSlots = 16;    // weight-ring slots (MAX_SLOTS on the host)

enum OpKind : int32_t {
    kOpMatvec = 1,     // y = W x for the block's rows of up to 3 row-concatenated matrices
    kOpAttention = 2,  // QK-norm, RoPE, KV append and causal GQA attention of 1-2 rows
    kOpSample = 3,     // logits -> one code (block 0)
    kOpEmbedFrame = 4, // next talker input: sum of the frame's 16 codebook embeddings + text row
};

enum Epilogue : int32_t {
    kEpiStore = 0,    // out[row] = y (+ bias)
    kEpiAdd = 1,      // out[row] += y (+ bias): residual add
    kEpiSiluMul = 2,  // paired gate/up: out[row] = silu(gate) * up
};

enum SamplerKind : int32_t { kSamplerTalker = 0, kSamplerCodePredictor = 1 };

// Frame record statuses (MkRecord::status), written last.
enum RecordStatus : uint32_t {
    kRecordPending = 0,
    kRecordFrame = 1,    // codes[0..groups] hold a frame
    kRecordEos = 2,      // codebook 0 was EOS: no frame, generation over
    kRecordLimit = 3,    // the frame limit was reached (the token at the limit was not EOS)
    kRecordAborted = 4,  // the caller's abort flag was seen before this frame
    kRecordBadCode = 5,  // codebook 0 outside the codec's codes (codes[0] holds it)
};

// One matrix of a matvec op.
struct MkSeg {
    const bf16* w;     // [rows, k] row-major
    const bf16* bias;  // [rows] or null
    int32_t rows;
    int32_t vrow0;  // first output row of this matrix in the op's concatenated output
};

// One input row of a matvec op: k f32 values, or row `codes[code_slot]` of a bf16 table.
struct MkSrc {
    const float* f32;
    const bf16* table;
    int32_t code_slot;
    int32_t pad;
};

struct MkOp {
    int32_t kind;
    int32_t wait;        // op index whose counter this op waits for (-1: none)
    int32_t check_stop;  // after waiting: leave the kernel if this frame has stopped
    int32_t rows;        // input rows (matvec, attention)

    // --- matvec ---
    MkSeg seg[kMaxSegs];
    int32_t nseg;
    int32_t paired;  // 2 segments of equal rows, each block takes the same rows of both
    int32_t k;       // input width (bf16 elements per weight row)
    int32_t epilogue;
    MkSrc src[kMaxRows];
    const bf16* norm_w;  // RMSNorm weight [k] applied to every input row (null: none)
    float eps;
    int32_t out_stride;  // floats between output rows
    float* out;
    float* raw_copy;   // if set: input rows before the norm copied here (stride k), sliced over blocks
    float* norm_copy;  // if set: input row 0 after the norm copied here, sliced over blocks

    // --- attention ---
    const float* qkv;  // [rows][(heads + 2 kv_heads) head_dim]: q | k | v
    const bf16* q_norm;
    const bf16* k_norm;
    const float* inv_freq;  // [head_dim / 2] rotary inverse frequencies
    float* k_cache;         // [capacity][kv_heads head_dim], post-norm post-RoPE keys
    float* v_cache;
    float* partial;   // split-attention scratch [rows][heads][max_chunks][head_dim + 2]
    float* attn_out;  // [rows][heads head_dim]
    int32_t heads;
    int32_t kv_heads;
    int32_t head_dim;
    int32_t position;      // position of input row 0; < 0: the frame's talker position
    int32_t combine_base;  // first of this op's kv_heads combine counters
    int32_t max_chunks;    // most position chunks per KV head (partial is sized for it)

    // --- sample ---
    const float* logits;
    int32_t vocab;
    int32_t slot;     // code slot 0..groups-1 (also the Philox slot)
    int32_t sampler;  // SamplerKind
    int32_t last_slot;  // 1: this code completes the frame (write the record)

    // --- embed frame ---
    const bf16* tables[kMaxGroups];  // codebook g's table (talker codec embedding for g = 0)
    int32_t groups;
    int32_t dim;
    const float* text_rows;  // [trailing][dim]
    const float* pad_row;    // [dim]
    int32_t trailing;
    int32_t out_dim_pad;

    // --- producers (kFlagLL): the op whose output each input is, -1 where none is (written
    // before the kernel, by the host or an earlier launch). A producer outside this launch's
    // ops [first_op, i) is read the plain way: the launch boundary ordered it.
    int32_t src_op[kMaxRows];  // matvec: of each input row (a table row: the sampler of its code
                               // slot); attention: of qkv in src_op[0]; sample: of the logits
    int32_t out_op;            // kEpiAdd: the op that last wrote the residual rows it adds to
    int32_t pad_op;
    int32_t code_op[kMaxGroups];  // embed frame: the sampler of each code slot
};

struct MkSampler {
    int32_t do_sample;
    float temperature;
    int32_t top_k;
    float top_p;
    float top_p_cut;  // (float)(1 - top_p as Python's double), computed on the host
    int32_t pad;
};

struct MkTalkerSampler {
    MkSampler s;
    float penalty;
    int32_t min_new_tokens;
    int32_t eos;
    int32_t suppress_start;
    int32_t suppress_end;
    int32_t pad;
};

// Per-request device state (the seen bitmap follows in its own allocation).
struct MkState {
    uint32_t codes[kMaxGroups];  // the frame being made
    uint32_t stop;               // 0 while running, else the RecordStatus that ended it
    uint32_t pad[15];
};

// One frame's result in mapped host memory: the codes, then the status (written last).
struct MkRecord {
    uint32_t codes[kMaxGroups];
    uint32_t status;
    uint32_t pad[3];
};

// One weight page of a block's load plan (built on the host, load_plan.rs): one contiguous
// copy of whole rows of one matrix, in the order the block's matvecs consume them.
struct MkPage {
    const bf16* src;
    uint32_t bytes;
    uint32_t pad;
};
constexpr int kPlanChunk = 32;    // plan entries staged in shared memory at a time
constexpr int kPlanPadding = 64;  // zero entries after a block's last page (the prefetch reads ahead); PLAN_PADDING on the host
static_assert(kPlanPadding >= 2 * kPlanChunk, "the staged chunk and the one in registers read up to 2 chunks past a block's pages");

struct MkArgs {
    const MkOp* ops;
    uint32_t* counters;      // [n_ops], monotone
    uint32_t* combine;       // split-attention arrival counters (reset by the last arriver)
    MkState* state;
    uint32_t* seen;          // talker repetition-penalty bitmap [talker vocab / 32]
    MkRecord* records;       // mapped host memory, one per frame
    const uint32_t* abort;   // mapped host memory: non-zero asks to stop
    const uint32_t* forced;  // teacher forcing: [frames][groups] codes, or null
    float* dump;             // raw logits of every sample op [groups][dump_stride], or null
    int32_t total_ops;       // ops in the program
    int32_t n_ops;           // this launch runs ops [first_op, n_ops) and counts the rest as done
    int32_t first_op;
    uint32_t epoch;          // launches of this request so far, this one included
    int32_t frame;
    int32_t talker_position;
    int32_t frame_limit;     // frame whose codebook-0 token only decides EOS or limit
    int32_t cp_vocab;        // codebook size: codebook 0 must be below it (or EOS)
    int32_t groups;
    uint32_t seed_lo;
    uint32_t seed_hi;
    int32_t dump_stride;
    int32_t nslot;           // weight ring slots
    int32_t work_floats;     // floats in the work region
    int32_t ypart_floats;    // floats in the matvec partial-sum region
    MkTalkerSampler talker;
    MkSampler cp;
    uint32_t flags;          // kFlag* (experiments on the dependency chain; 0 = the default)
    uint64_t* trace;         // per (op, block) timestamps for the benchmarks (kTraceFields each), or null
    const MkPage* plan;           // the weight loader's plan: [gridDim.x][plan_stride] pages
    const uint32_t* plan_op0;    // [gridDim.x][total_ops + 1]: index of each op's first page in the block's plan
    int32_t plan_stride;         // pages per block row of plan (>= its pages + kPlanPadding)
    uint32_t counter_epoch;      // launches that advanced the counters (kFlagBlockFlags ones do not), this one included
    uint32_t* block_flags;       // kFlagBlockFlags: [total_ops][gridDim.x], block b's epoch of op i
    // kFlagLL: each activation float at ll_origin + i (i < ll_floats) has a twin at ll[i], a
    // 64-bit word {value bits, tag} stored in one piece; the code of slot g has ll_codes[g].
    unsigned long long* ll;
    const float* ll_origin;
    unsigned long long* ll_codes;
    int32_t ll_floats;
    uint32_t pad_ll;
};

// MkArgs.trace: for op i and block b, kTraceFields values at (i * gridDim.x + b) * kTraceFields,
// written by the block's sync thread: globaltimer ns at the op's start, after its wait and
// after its work (before the signal); the SM clock cycles the block waited for weight pages in
// the op; and SM clock stamps (cycles) after the wait, at the start and the end of a matvec's
// page loop (0 for other ops), and after the work: the phases of one block at clock resolution;
// and the cycles thread 0 spent issuing weight copies in the op (a copy whose issue stalls
// shows here, not as a page wait), and the cycles thread 0 spent refilling the loader's staged
// plan entries; and the SM clock once a matvec's input rows are in shared memory.
constexpr int kTraceFields = 11;
enum TraceField : int {
    kTraceStartNs = 0,
    kTraceReleasedNs = 1,
    kTraceDoneNs = 2,
    kTracePageWaitCycles = 3,
    kTraceReleasedClk = 4,
    kTraceLoopStartClk = 5,
    kTraceLoopEndClk = 6,
    kTraceDoneClk = 7,
    kTraceIssueCycles = 8,
    kTraceDecodeCycles = 9,
    kTraceInputsClk = 10,
};

// MkArgs.flags: variants of the chain, so one build can time them against each other.
constexpr uint32_t kFlagSyncThread0 = 1u;     // signal/wait on thread 0 (which issues the copies)
constexpr uint32_t kFlagGlobalOpFields = 2u;  // read op fields from the global op list
constexpr uint32_t kFlagRelaxedSpin = 4u;     // wait: spin on relaxed loads, one acquire fence after
constexpr uint32_t kFlagReleaseAdd = 8u;      // signal: one red.release.gpu instead of fence + atomicAdd
constexpr uint32_t kFlagSkipMath = 16u;       // matvec: wait for and release every page, skip its arithmetic (timing only: wrong results)
constexpr uint32_t kFlagNoStaging = 32u;      // op constants (norm weights, rotary frequencies) read after the wait, not staged before it (same results)
constexpr uint32_t kFlagNoEvictFirst = 64u;   // bulk weight copies without the L2 evict_first hint (same results)
constexpr uint32_t kFlagWarpRelease = 256u;   // cp.async.bulk path: pages freed per warp (empty mbarriers), warp 0 refills; no block barrier per page
constexpr uint32_t kFlagBlockFlags = 128u;    // dependencies: one flag per (op, block) stored with release, a warp polls them all (no atomics)
constexpr uint32_t kFlagLL = 512u;            // dependencies in the data: every activation also stored as {value, tag} words that its readers poll (ll.cuh); no counters, no fences

static_assert(sizeof(MkSeg) == 24, "MkSeg layout");
static_assert(sizeof(MkSrc) == 24, "MkSrc layout");
static_assert(sizeof(MkOp) == 544, "MkOp layout");
static_assert(sizeof(MkSampler) == 24, "MkSampler layout");
static_assert(sizeof(MkTalkerSampler) == 48, "MkTalkerSampler layout");
static_assert(sizeof(MkState) == 128, "MkState layout");
static_assert(sizeof(MkRecord) == 80, "MkRecord layout");
static_assert(sizeof(MkArgs) == 280, "MkArgs layout");
static_assert(sizeof(MkPage) == 16, "MkPage layout");

}  // namespace qt_mk
