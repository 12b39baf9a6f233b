/*
 * The frame megakernel: one persistent, cooperative launch per codec frame runs the talker
 * step (all layers, final norm, codec head), samples codebook 0, runs the code predictor's 15
 * codebook steps (its 2-row prefill as one weight pass, the per-group heads and samplers) and
 * builds the next talker input. Codes leave through mapped host memory: the host never waits
 * on the device between frames. The program (the op list) and its data layout are described
 * in megakernel/layout.cuh; the pieces are megakernel/{sync,weight_ring,matvec,attention,
 * sampling}.cuh.
 *
 * Launch    grid = SMs x (blocks per SM from the occupancy query, 1 with the large shared
 *           memory ring), blockDim = kThreads, cooperative (co-residency of every block is
 *           what makes the spin waits safe), dynamic shared memory:
 *             [nslot weight pages][nslot mbarriers][work floats][ypart floats][misc]
 *           Two instantiations: qt_mk_frame_tma (cp.async.bulk weight pages, sm_90+) and
 *           qt_mk_frame_portable (cp.async, sm_80+); the host picks by compute capability.
 *           The program also runs with only its talker ops (first_op = 0, n_ops = the
 *           codebook-0 sampler) or only its code-predictor ops, for timing.
 * Stop      The talker's sampler (block 0) decides whether the frame goes on (EOS, the frame
 *           limit, the abort flag, a code outside the codebook); every block reads that
 *           decision after waiting for the sampler, so all blocks leave together.
 * Determinism No atomics in sums; the same seed gives the same codes on every run.
 */
#include "common.cuh"
#include "megakernel/attention.cuh"
#include "megakernel/layout.cuh"
#include "megakernel/ll.cuh"
#include "megakernel/matvec.cuh"
#include "megakernel/sampling.cuh"
#include "megakernel/stage.cuh"
#include "megakernel/sync.cuh"
#include "megakernel/weight_ring.cuh"

namespace qt_mk {

struct Smem {
    unsigned char* pages;
    uint64_t* bars;
    float* work;
    float* ypart;
    float* scratch;  // kWarps floats
    int* flag;
};

__device__ __forceinline__ Smem carve(unsigned char* base, const MkArgs& a) {
    Smem s;
    size_t off = 0;
    s.pages = base;
    off += (size_t)a.nslot * kPageBytes;
    s.bars = reinterpret_cast<uint64_t*>(base + off);
    off += (size_t)a.nslot * 8;
    off = (off + 15) & ~(size_t)15;
    s.work = reinterpret_cast<float*>(base + off);
    off += (size_t)a.work_floats * 4;
    off = (off + 15) & ~(size_t)15;
    s.ypart = reinterpret_cast<float*>(base + off);
    off += (size_t)a.ypart_floats * 4;
    s.scratch = reinterpret_cast<float*>(base + off);
    off += kWarps * 4;
    s.flag = reinterpret_cast<int*>(base + off);
    return s;
}

// The sampler's shared memory inside the work region: 4 n + 256 + 2 kThreads + 8 floats (n
// rounded up to a multiple of 4; SAMPLE_EXTRA_FLOATS on the host, which sizes the region).

__device__ __forceinline__ SampleSmem sample_smem(float* work, int n) {
    const int n4 = (n + 3) & ~3;
    SampleSmem s;
    s.s = work;
    s.w = s.s + n4;
    s.id = reinterpret_cast<int*>(s.w + n4);
    s.rank = s.id + n4;
    s.hist = s.rank + n4;
    s.fscratch = reinterpret_cast<float*>(s.hist + 256);
    s.iscratch = reinterpret_cast<int*>(s.fscratch + kThreads);
    return s;
}

// Writes one frame record to mapped host memory: codes first (`code0`, then codes 1..ncodes
// from the frame state, which this thread wrote), status last.
__device__ void write_record(const MkArgs& a, uint32_t code0, int ncodes, uint32_t status) {
    volatile MkRecord* r = a.records + a.frame;
    r->codes[0] = code0;
    for (int i = 1; i < ncodes; ++i) r->codes[i] = a.state->codes[i];
    __threadfence_system();
    r->status = status;
    __threadfence_system();
}

// `index`: the op's place in the program (kFlagLL tags).
__device__ void run_sample(const MkOp& op, const MkArgs& a, float* work, int index) {
    if (blockIdx.x != 0) return;
    const SampleSmem sm = sample_smem(work, op.vocab);
    const int n = op.vocab;
    const uint32_t in_tag = ll_in_tag(a, op.src_op[0], index);
    if (in_tag != 0u) {
        const float* logits = op.logits;
        float* s = sm.s;
        ll_gather(a, n, in_tag, [logits](int e) { return logits + e; }, [s](int e) { return s + e; });
    } else {
        for (int i = threadIdx.x; i < n; i += kThreads) sm.s[i] = ld_cg(op.logits + i);
    }
    __syncthreads();
    if (a.dump != nullptr)
        for (int i = threadIdx.x; i < n; i += kThreads) a.dump[(size_t)op.slot * a.dump_stride + i] = sm.s[i];
    const bool talker = op.sampler == kSamplerTalker;
    int code;
    if (a.forced != nullptr) {
        code = (int)a.forced[(size_t)a.frame * a.groups + op.slot];
    } else {
        SampleRequest q;
        q.n = n;
        q.talker = talker;
        q.t = a.talker;
        q.s = a.cp;
        q.seen = a.seen;
        q.generated = a.frame;
        q.uniform = philox_uniform(a.seed_lo, a.seed_hi, (uint32_t)a.frame, (uint32_t)op.slot);
        code = sample_block(sm, q);
    }
    // Block-uniform code; the record's system fences run on the sync thread (not thread 0,
    // whose fence could wait for its weight copies in flight).
    if (threadIdx.x != sync_thread_of(a)) return;
    a.state->codes[op.slot] = (uint32_t)code;
    const uint32_t out_tag = ll_on(a) ? ll_tag(a, index) : 0u;
    if (talker) {
        if (code >= 0 && code < n) a.seen[code >> 5] |= 1u << (code & 31);
        uint32_t stop = 0;
        if (*reinterpret_cast<const volatile uint32_t*>(a.abort) != 0)
            stop = kRecordAborted;
        else if (code == a.talker.eos)
            stop = kRecordEos;
        else if (a.frame >= a.frame_limit)
            stop = kRecordLimit;
        else if (code < 0 || code >= a.cp_vocab)
            stop = kRecordBadCode;
        if (stop != 0) a.state->stop = stop;
        // kFlagLL: the code word after the stop decision (release), before the record's
        // system fences, which no op of this launch waits for.
        if (out_tag != 0u) ll_code_store(a, op.slot, (uint32_t)code, out_tag);
        if (stop != 0) write_record(a, (uint32_t)code, 1, stop);
    } else {
        if (out_tag != 0u) ll_code_store(a, op.slot, (uint32_t)code, out_tag);
        if (op.last_slot) write_record(a, a.state->codes[0], a.groups, kRecordFrame);
    }
}

// out[i] = sum_g table_g[code_g][i] (f32 adds in codebook order) + text[i], sliced over blocks.
__device__ void run_embed_frame(const MkOp& op, const MkArgs& a, int index) {
    int lo, hi;
    block_slice(op.dim, blockIdx.x, gridDim.x, lo, hi);
    const float* text = a.frame < op.trailing ? op.text_rows + (size_t)a.frame * op.dim : op.pad_row;
    // In shared memory: a per-thread array indexed by a loop counter would be local memory.
    __shared__ uint32_t codes[kMaxGroups];
    if (threadIdx.x < op.groups) codes[threadIdx.x] = ll_code(a, threadIdx.x, ll_in_tag(a, op.code_op[threadIdx.x], index));
    __syncthreads();
    for (int i = lo + threadIdx.x; i < hi; i += kThreads) {
        float v = 0.0f;
        for (int g = 0; g < op.groups; ++g) v += __bfloat162float(op.tables[g][(size_t)codes[g] * op.dim + i]);
        op.out[i] = v + ld_cg(text + i);
    }
}

template <bool kTma>
__device__ void frame(const MkArgs& a) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    // An earlier frame ended the request. One read per block, shared by the barrier: a
    // per-thread read could see block 0's sampler set the flag later in this very launch
    // (when it starts at the sampler) and send one warp home while its siblings go on.
    __shared__ int stopped;
    if (threadIdx.x == 0) stopped = ld_cg_u32(&a.state->stop) != 0;
    __syncthreads();
    if (stopped) return;
    // Ops this launch skips still count as done, so every counter advances by gridDim.x per
    // launch and the targets counter_epoch * gridDim.x hold for every op in every launch
    // (kFlagBlockFlags launches use their own flags and leave the counters alone).
    const bool block_flags = (a.flags & kFlagBlockFlags) != 0;
    const bool ll = ll_on(a);  // dependencies in the data: no counters, no flags
    if (threadIdx.x == 0 && !ll) {
        if (!block_flags) {
            for (int i = 0; i < a.first_op; ++i) atomicAdd(a.counters + i, 1u);
            for (int i = a.n_ops; i < a.total_ops; ++i) atomicAdd(a.counters + i, 1u);
        } else {
            // Relaxed atomic stores: other blocks poll these flags in this very launch.
            for (int i = 0; i < a.first_op; ++i) st_relaxed(a.block_flags + (size_t)i * gridDim.x + blockIdx.x, a.epoch);
            for (int i = a.n_ops; i < a.total_ops; ++i) st_relaxed(a.block_flags + (size_t)i * gridDim.x + blockIdx.x, a.epoch);
        }
    }
    const Smem sm = carve(smem_raw, a);
    __shared__ __align__(16) MkPage plan_chunk[kPlanChunk];
    WeightRing<kTma> ring;
    __shared__ __align__(8) uint64_t empty_bars[kMaxSlots];
    ring.init(sm.pages, sm.bars, empty_bars, plan_chunk, a.nslot, a);
    ring.top_up();
    // The op's constants (norm weights, rotary frequencies), staged ahead of its wait.
    __shared__ __align__(16) uint32_t consts[kStageWords];
    const bool staging = (a.flags & kFlagNoStaging) == 0;
    const uint32_t target = a.counter_epoch * gridDim.x;

    // The op being run, copied to shared memory. The waits' acquire loads invalidate L1, so
    // fields read from the global op list would each be an L2 round trip, many of them in
    // dependent chains; one coalesced copy (issued before the wait, so its latency hides
    // behind it) makes every later field read a shared-memory read. The program is constant
    // while the kernel runs, hence the read-only path.
    __shared__ __align__(16) unsigned char op_raw[sizeof(MkOp)];
    static_assert(sizeof(MkOp) % 16 == 0, "MkOp copies in 16-byte pieces");
    const bool global_fields = (a.flags & kFlagGlobalOpFields) != 0;
    const int sync_thread = (a.flags & kFlagSyncThread0) != 0 ? 0 : kSyncThread;
    const bool relaxed_spin = (a.flags & kFlagRelaxedSpin) != 0;
    const bool release_add = (a.flags & kFlagReleaseAdd) != 0;
    // Trace record of the current op (benchmarks only): written by the sync thread.
    uint64_t* trace = nullptr;
    long long page_wait0 = 0, issue0 = 0, decode0 = 0;

    for (int i = a.first_op; i < a.n_ops; ++i) {
        if (a.trace != nullptr && threadIdx.x == 0) {
            issue0 = ring.issue_cycles;
            decode0 = ring.decode_cycles;
        }
        if (a.trace != nullptr && threadIdx.x == sync_thread) {
            trace = a.trace + ((size_t)i * gridDim.x + blockIdx.x) * kTraceFields;
            trace[kTraceStartNs] = global_ns();
            trace[kTraceLoopStartClk] = trace[kTraceLoopEndClk] = trace[kTraceInputsClk] = 0;
            page_wait0 = ring.wait_cycles;
        }
        // Every thread is past the previous op's signal (its barrier): op_raw is free.
        if (threadIdx.x < (int)(sizeof(MkOp) / 16))
            reinterpret_cast<uint4*>(op_raw)[threadIdx.x] = __ldg(reinterpret_cast<const uint4*>(a.ops + i) + threadIdx.x);
        __syncthreads();
        const MkOp& op = global_fields ? a.ops[i] : *reinterpret_cast<const MkOp*>(op_raw);
        // Constant loads issued before the wait land during it; they are stored to shared
        // memory after it (consts is free: every thread is past the previous op) and the op's
        // first barrier publishes them.
        const Stage stage = staging ? stage_of(op) : Stage{};
        uint32_t staged[kStagePerThread];
        stage_load(stage, staged);
        if (op.wait >= 0 && !ll) {
            if (block_flags)
                wait_flags(a.block_flags + (size_t)op.wait * gridDim.x, a.epoch, sync_thread);
            else
                wait_counter(a.counters + op.wait, target, sync_thread, relaxed_spin);
        }
        stage_store(stage, staged, consts);
        if (trace != nullptr) {
            trace[kTraceReleasedNs] = global_ns();
            trace[kTraceReleasedClk] = (uint64_t)clock64();
        }
        if (op.check_stop) {
            // kFlagLL: the stop decision is ordered before codebook 0's code word, which one
            // thread acquires first (without LL, the wait ordered it).
            __shared__ int stop_now;
            if (threadIdx.x == sync_thread) {
                for (int r = 0; r < op.rows; ++r)
                    if (op.src[r].table != nullptr && op.src[r].code_slot == 0)
                        (void)ll_code(a, 0, ll_in_tag(a, op.src_op[r], i));
                stop_now = ld_cg_u32(&a.state->stop) != 0;
            }
            __syncthreads();
            if (stop_now) {
                ring.drain();
                return;
            }
        }
        switch (op.kind) {
            case kOpMatvec: {
                MatvecSmem ms;
                ms.xs = sm.work;
                ms.ypart = sm.ypart;
                ms.scratch = sm.scratch;
                ms.norm_w = stage.total > 0 ? reinterpret_cast<const bf16*>(consts) : op.norm_w;
                run_matvec<kTma>(op, a, ring, ms, trace, i);
                break;
            }
            case kOpAttention: {
                const int grp = op.heads / op.kv_heads;
                AttentionSmem as;
                as.q = sm.work;
                as.k = as.q + (size_t)op.rows * grp * op.head_dim;
                as.v = as.k + (size_t)op.rows * op.head_dim;
                as.merge = as.v + (size_t)op.rows * op.head_dim;
                as.flag = sm.flag;
                as.inv_freq = op.inv_freq;
                as.q_norm = op.q_norm;
                as.k_norm = op.k_norm;
                if (stage.total > 0) {
                    // stage_of's layout: frequencies, then the q and k norm weights.
                    const int hd = op.head_dim;
                    as.inv_freq = reinterpret_cast<const float*>(consts);
                    if (op.q_norm != nullptr) as.q_norm = reinterpret_cast<const bf16*>(consts + hd / 2);
                    if (op.k_norm != nullptr) as.k_norm = reinterpret_cast<const bf16*>(consts + hd);
                }
                run_attention(op, a, as, i);
                break;
            }
            case kOpSample:
                run_sample(op, a, sm.work, i);
                break;
            case kOpEmbedFrame:
                run_embed_frame(op, a, i);
                break;
            default:
                break;
        }
        if (trace != nullptr) {
            trace[kTraceDoneNs] = global_ns();
            trace[kTraceDoneClk] = (uint64_t)clock64();
            trace[kTracePageWaitCycles] = (uint64_t)(ring.wait_cycles - page_wait0);
        }
        if (a.trace != nullptr && threadIdx.x == 0) {
            uint64_t* rec = a.trace + ((size_t)i * gridDim.x + blockIdx.x) * kTraceFields;
            rec[kTraceIssueCycles] = (uint64_t)(ring.issue_cycles - issue0);
            rec[kTraceDecodeCycles] = (uint64_t)(ring.decode_cycles - decode0);
        }
        if (ll)
            __syncthreads();  // the op's shared memory is free for the next (the signals' barrier, without a signal)
        else if (block_flags)
            signal_flag(a.block_flags + (size_t)i * gridDim.x, a.epoch, sync_thread);
        else
            signal_counter(a.counters + i, sync_thread, release_add);
    }
    ring.drain();
}

}  // namespace qt_mk

extern "C" __global__ void __launch_bounds__(qt_mk::kThreads, 1) qt_mk_frame_tma(const qt_mk::MkArgs a) {
    qt_mk::frame<true>(a);
}

extern "C" __global__ void __launch_bounds__(qt_mk::kThreads, 1) qt_mk_frame_portable(const qt_mk::MkArgs a) {
    qt_mk::frame<false>(a);
}

// ---- sampler parity test entry -------------------------------------------------------------

namespace qt_mk {
// One test vector: logits, the chain to run and the draw's coordinates.
struct MkSampleCase {
    MkTalkerSampler talker;
    MkSampler cp;
    const float* logits;
    const uint32_t* seen;
    int32_t n;
    int32_t is_talker;
    int32_t generated;
    int32_t frame;
    int32_t slot;
    uint32_t seed_lo;
    uint32_t seed_hi;
    int32_t pad;
};
static_assert(sizeof(MkSampleCase) == 120, "MkSampleCase layout");
}  // namespace qt_mk

/*
 * qt_mk_sample_cases: block i runs the megakernel's sampler on case i and writes the code to
 * out[i]. grid = cases, blockDim = kThreads, dynamic shared memory = sampler work bytes.
 */
extern "C" __global__ void __launch_bounds__(qt_mk::kThreads)
    qt_mk_sample_cases(const qt_mk::MkSampleCase* cases, unsigned int* out) {
    using namespace qt_mk;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const MkSampleCase& c = cases[blockIdx.x];
    const SampleSmem sm = sample_smem(reinterpret_cast<float*>(smem_raw), c.n);
    for (int i = threadIdx.x; i < c.n; i += kThreads) sm.s[i] = c.logits[i];
    __syncthreads();
    SampleRequest q;
    q.n = c.n;
    q.talker = c.is_talker != 0;
    q.t = c.talker;
    q.s = c.cp;
    q.seen = c.seen;
    q.generated = c.generated;
    q.uniform = philox_uniform(c.seed_lo, c.seed_hi, (uint32_t)c.frame, (uint32_t)c.slot);
    const int code = sample_block(sm, q);
    if (threadIdx.x == 0) out[blockIdx.x] = (unsigned int)code;
}
