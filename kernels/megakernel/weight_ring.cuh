/*
 * The weight stream of one block: a ring of `nslot` shared-memory pages of kPageBytes, kept
 * filled with the block's weight pages of the ops ahead, in the order the block will use them.
 *
 * Work of a matvec op for block b (of G): its rows of the op's output, as up to 3 RUNS
 * (contiguous row ranges of one matrix). Row-concatenated matrices (q | k | v) are split
 * evenly over the blocks as one matrix of their summed rows; a PAIRED op (gate, up) gives
 * each block the same rows of both matrices (silu(gate) * up needs them together). A run is
 * cut into pages of R whole rows, R the largest power of two with R * k * 2 <= kPageBytes:
 * every page is ONE contiguous copy from global memory.
 *
 * Two load paths, chosen per kernel instantiation:
 *  * kTma (sm_90+): thread 0 issues one cp.async.bulk per page (the copy engine), completing on
 *    the slot's mbarrier; consumers wait on the mbarrier's phase (page / nslot) & 1.
 *  * portable (sm_80+): every thread copies its 16-byte pieces with cp.async and commits one
 *    group per page; consumers wait until at most (issued - consumed - 1) groups are pending.
 * Both keep up to nslot pages in flight while the block waits for activations (sync.cuh).
 * The loader walks the same op list and the same runs as the consumer, so pages arrive in use
 * order. A slot is refilled only after every thread has finished with it (block barrier).
 */
#pragma once
#include "megakernel/layout.cuh"

namespace qt_mk {

// A block's runs of one op. Every element is read and written through at() / push(), which
// index the arrays with constants only: a dynamically indexed array would live in local
// memory, and with 216 KB of shared memory the L1 left over cannot hold 256 threads' stacks,
// so each access was an L2 round trip (the first traces: ~2 µs per weight page).
struct Runs {
    int n;
    const bf16* w[3];  // first weight row of the run
    int rows[3];
    int seg[3];        // segment index
    int seg_row0[3];   // first row of the run within its segment
    int y_off[3];      // first block-local output row of the run

    template <typename T>
    __device__ __forceinline__ static T at(const T (&a)[3], int i) {
        return i == 0 ? a[0] : (i == 1 ? a[1] : a[2]);
    }
    template <typename T>
    __device__ __forceinline__ static void put(T (&a)[3], int i, T v) {
        if (i == 0)
            a[0] = v;
        else if (i == 1)
            a[1] = v;
        else
            a[2] = v;
    }
    __device__ __forceinline__ void push(const bf16* w_, int rows_, int seg_, int seg_row0_, int y_off_) {
        put(w, n, w_);
        put(rows, n, rows_);
        put(seg, n, seg_);
        put(seg_row0, n, seg_row0_);
        put(y_off, n, y_off_);
        ++n;
    }
};

// Largest power of two R with R * k * 2 <= kPageBytes (0 when one row does not fit).
__device__ __forceinline__ int rows_per_page(int k) {
    const int fit = kPageBytes / (2 * k);
    if (fit <= 0) return 0;
    return 1 << (31 - __clz(fit));
}

__device__ __forceinline__ void block_runs(const MkOp& op, int b, int g, Runs& r) {
    r.n = 0;
    if (op.paired) {
        const int n = op.seg[0].rows;
        const int lo = (int)(((long long)n * b) / g), hi = (int)(((long long)n * (b + 1)) / g);
        if (hi <= lo) return;
        for (int s = 0; s < 2; ++s) r.push(op.seg[s].w + (size_t)lo * op.k, hi - lo, s, lo, s * (hi - lo));
        return;
    }
    int total = 0;
    for (int s = 0; s < op.nseg; ++s) total += op.seg[s].rows;
    const int lo = (int)(((long long)total * b) / g), hi = (int)(((long long)total * (b + 1)) / g);
    int base = 0, y = 0;
    for (int s = 0; s < op.nseg; ++s) {
        const int a = max(lo, base), e = min(hi, base + op.seg[s].rows);
        if (e > a) {
            r.push(op.seg[s].w + (size_t)(a - base) * op.k, e - a, s, a - base, y);
            y += e - a;
        }
        base += op.seg[s].rows;
    }
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

template <bool kTma>
struct WeightRing {
    unsigned char* pages;  // nslot * kPageBytes, 128-byte aligned
    uint64_t* bars;        // nslot mbarriers (kTma)
    int nslot;
    uint32_t issued, consumed;
    // Loader cursor: op, run, page within the run.
    int lop, lrun, lpage;
    int n_ops;
    const MkOp* ops;
    int block, grid;
    // The loader's current op, decoded once (not at every page: each decode is a chain of
    // global reads that L1 cannot keep across the waits' acquires).
    int cached_op;
    Runs cruns;
    int ck, crpp;
    // SM clock cycles this thread has spent in wait_page, issuing copies and decoding the
    // loader's next op (MkArgs.trace).
    long long wait_cycles, issue_cycles, decode_cycles;

    __device__ void init(unsigned char* page_mem, uint64_t* bar_mem, int slots, const MkOp* op_list, int first_op,
                         int op_count) {
        pages = page_mem;
        bars = bar_mem;
        nslot = slots;
        issued = consumed = 0;
        lop = first_op;
        lrun = lpage = 0;
        cached_op = -1;
        wait_cycles = issue_cycles = decode_cycles = 0;
        ops = op_list;
        n_ops = op_count;
        block = blockIdx.x;
        grid = gridDim.x;
        if constexpr (kTma) {
#if __CUDA_ARCH__ >= 900
            if (threadIdx.x == 0) {
                for (int s = 0; s < nslot; ++s)
                    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bars[s])) : "memory");
                asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
            }
#endif
        }
        __syncthreads();
    }

    __device__ __forceinline__ unsigned char* slot_ptr(uint32_t page) const {
        return pages + (size_t)(page % (uint32_t)nslot) * kPageBytes;
    }

    __device__ void issue(const bf16* src, int bytes) {
        const long long t0 = clock64();
        unsigned char* dst = slot_ptr(issued);
        if constexpr (kTma) {
#if __CUDA_ARCH__ >= 900
            if (threadIdx.x == 0) {
                const uint32_t bar = smem_addr(&bars[issued % (uint32_t)nslot]);
                asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
                             : "memory");
                asm volatile(
                    "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                        smem_addr(dst)),
                    "l"(src), "r"(bytes), "r"(bar)
                    : "memory");
            }
#else
            __trap();
#endif
        } else {
            const char* s = reinterpret_cast<const char*>(src);
            for (int c = threadIdx.x; c < bytes / 16; c += kThreads)
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst + 16 * c)),
                             "l"(s + 16 * c)
                             : "memory");
            asm volatile("cp.async.commit_group;" ::: "memory");
        }
        ++issued;
        issue_cycles += clock64() - t0;
    }

    // Issues pages of the ops ahead until the ring is full or the program ends. Block-uniform.
    __device__ void top_up() {
        while (issued - consumed < (uint32_t)nslot && lop < n_ops) {
            if (cached_op != lop) {
                const long long t0 = clock64();
                const MkOp& op = ops[lop];
                cached_op = lop;
                if (op.kind == kOpMatvec) {
                    block_runs(op, block, grid, cruns);
                    ck = op.k;
                    crpp = rows_per_page(op.k);
                } else {
                    cruns.n = 0;
                }
                decode_cycles += clock64() - t0;
            }
            const Runs& r = cruns;
            if (lrun >= r.n) {
                ++lop;
                lrun = lpage = 0;
                continue;
            }
            const int run_rows = Runs::at(r.rows, lrun);
            const int pages_in_run = (run_rows + crpp - 1) / crpp;
            if (lpage >= pages_in_run) {
                ++lrun;
                lpage = 0;
                continue;
            }
            const int rows = min(crpp, run_rows - lpage * crpp);
            issue(Runs::at(r.w, lrun) + (size_t)lpage * crpp * ck, rows * ck * 2);
            ++lpage;
        }
    }

    template <int N>
    __device__ __forceinline__ static void wait_group() {
        asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
    }

    // Waits until the next page to consume has landed (all threads); returns its slot.
    __device__ const unsigned char* wait_page() {
        const long long t0 = clock64();
        if constexpr (kTma) {
#if __CUDA_ARCH__ >= 900
            const uint32_t bar = smem_addr(&bars[consumed % (uint32_t)nslot]);
            const uint32_t phase = (consumed / (uint32_t)nslot) & 1u;
            uint32_t done = 0;
            while (!done) {
                asm volatile(
                    "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, "
                    "p;\n}"
                    : "=r"(done)
                    : "r"(bar), "r"(phase)
                    : "memory");
            }
#else
            __trap();
#endif
        } else {
            // Groups committed after the one we need may stay pending.
            switch (issued - consumed - 1) {
                case 0: wait_group<0>(); break;
                case 1: wait_group<1>(); break;
                case 2: wait_group<2>(); break;
                case 3: wait_group<3>(); break;
                case 4: wait_group<4>(); break;
                case 5: wait_group<5>(); break;
                case 6: wait_group<6>(); break;
                case 7: wait_group<7>(); break;
                case 8: wait_group<8>(); break;
                case 9: wait_group<9>(); break;
                case 10: wait_group<10>(); break;
                case 11: wait_group<11>(); break;
                case 12: wait_group<12>(); break;
                case 13: wait_group<13>(); break;
                case 14: wait_group<14>(); break;
                default: wait_group<15>(); break;
            }
            __syncthreads();  // every thread's pieces are in: the page is complete
        }
        wait_cycles += clock64() - t0;
        return slot_ptr(consumed);
    }

    // The block is done with the oldest page: free its slot and refill.
    __device__ void release() {
        __syncthreads();
        ++consumed;
        top_up();
    }

    // Before the kernel returns early: no copy may still be writing shared memory.
    __device__ void drain() {
        if constexpr (kTma) {
            while (consumed < issued) {
                wait_page();
                ++consumed;
            }
        } else {
            asm volatile("cp.async.wait_all;" ::: "memory");
        }
        __syncthreads();
    }
};

}  // namespace qt_mk
