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
 * The loader follows the block's PLAN (MkArgs.plan, built on the host by load_plan.rs with the
 * same split as block_runs below), so pages arrive in use order. The plan is read as a stream:
 * kPlanChunk entries staged in shared memory, the next chunk already loaded into warp 0's
 * registers, so the loader never waits on a global load (decoding the next op's descriptor
 * from global memory at each op crossing cost 1.3-3.4 us per matvec op). Bulk copies carry the
 * L2 evict_first hint: the weights are read once per frame and should not push the
 * activations, the KV cache and the program out of L2. A slot is refilled only after every
 * thread has finished with it (a block barrier, or its "empty" mbarrier with
 * kFlagWarpRelease).
 */
#pragma once
#include "common.cuh"
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

using qt::smem_addr;

template <bool kTma>
struct WeightRing {
    unsigned char* pages;  // nslot * kPageBytes, 128-byte aligned
    uint64_t* bars;        // nslot mbarriers (kTma)
    MkPage* chunk;         // kPlanChunk staged plan entries (shared memory)
    int nslot;
    uint32_t issued, consumed;
    // Plan cursor: the block's plan row, the next page to issue, the end of this launch's
    // pages, and the plan index of chunk[0].
    const MkPage* plan;
    uint32_t next, end, chunk_base;
    // Warp 0: lane l holds plan entry chunk_base + kPlanChunk + l (the next chunk, in flight).
    uint4 ahead;
    uint64_t policy;  // L2 evict_first cache policy of the weight copies
    bool hint;
    // kFlagWarpRelease (kTma only): a warp frees a page by arriving on the slot's "empty"
    // mbarrier (kWarps arrivals) instead of a block barrier, and warp 0 alone refills the
    // slots whose empty barrier has completed. Warp 0's `issued` and `next` are then the only
    // current ones.
    uint64_t* empty;
    bool warp_release;
    // SM clock cycles this thread has spent in wait_page, issuing copies and refilling the
    // staged plan (MkArgs.trace).
    long long wait_cycles, issue_cycles, decode_cycles;

    __device__ void init(unsigned char* page_mem, uint64_t* bar_mem, uint64_t* empty_mem, MkPage* chunk_mem, int slots,
                         const MkArgs& a) {
        pages = page_mem;
        bars = bar_mem;
        empty = empty_mem;
        warp_release = kTma && (a.flags & kFlagWarpRelease) != 0;
        chunk = chunk_mem;
        nslot = slots;
        issued = consumed = 0;
        wait_cycles = issue_cycles = decode_cycles = 0;
        plan = a.plan + (size_t)blockIdx.x * a.plan_stride;
        const uint32_t* op0 = a.plan_op0 + (size_t)blockIdx.x * (a.total_ops + 1);
        next = __ldg(op0 + a.first_op);
        end = __ldg(op0 + a.n_ops);
        chunk_base = next;
        hint = (a.flags & kFlagNoEvictFirst) == 0;
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
        if (threadIdx.x < kPlanChunk) {
            const uint4* src = reinterpret_cast<const uint4*>(plan);
            reinterpret_cast<uint4*>(chunk)[threadIdx.x] = __ldg(src + next + threadIdx.x);
            ahead = __ldg(src + next + kPlanChunk + threadIdx.x);
        }
        if constexpr (kTma) {
#if __CUDA_ARCH__ >= 900
            if (threadIdx.x == 0) {
                for (int s = 0; s < nslot; ++s) {
                    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bars[s])) : "memory");
                    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(&empty[s])), "r"(kWarps)
                                 : "memory");
                }
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
                if (hint)
                    asm volatile(
                        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], "
                        "%2, [%3], %4;" ::"r"(smem_addr(dst)),
                        "l"(src), "r"(bytes), "r"(bar), "l"(policy)
                        : "memory");
                else
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
            // No cache hint here: cp.async with .L2::cache_hint raised an illegal-instruction
            // error on the H100 (driver 580.159.04) at 5e52c5d, where the bulk copy's hint works.
            for (int c = threadIdx.x; c < bytes / 16; c += kThreads)
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst + 16 * c)),
                             "l"(s + 16 * c)
                             : "memory");
            asm volatile("cp.async.commit_group;" ::: "memory");
        }
        ++issued;
        issue_cycles += clock64() - t0;
    }

    // Moves the staged plan on by one chunk: the chunk warp 0 holds in registers goes to
    // shared memory, and the one after it is loaded into the registers. Block-uniform, or
    // warp 0 alone (kFlagWarpRelease: only warp 0 reads the chunk then).
    __device__ void next_chunk() {
        const long long t0 = clock64();
        if (warp_release) __syncwarp(); else __syncthreads();  // every reader is done with the old chunk
        chunk_base += kPlanChunk;
        if (threadIdx.x < kPlanChunk) {
            reinterpret_cast<uint4*>(chunk)[threadIdx.x] = ahead;
            ahead = __ldg(reinterpret_cast<const uint4*>(plan) + chunk_base + kPlanChunk + threadIdx.x);
        }
        if (warp_release) __syncwarp(); else __syncthreads();
        decode_cycles += clock64() - t0;
    }

    // Whether every warp has released page `page` (warp 0, without waiting): its slot can be
    // refilled.
    __device__ bool page_freed(uint32_t page) {
        uint32_t done = 0;
#if __CUDA_ARCH__ >= 900
        const uint32_t bar = smem_addr(&empty[page % (uint32_t)nslot]);
        const uint32_t phase = (page / (uint32_t)nslot) & 1u;
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, "
            "p;\n}"
            : "=r"(done)
            : "r"(bar), "r"(phase)
            : "memory");
#endif
        return __all_sync(0xffffffffu, done != 0);
    }

    // Issues the block's next pages until the ring is full or this launch's pages are all
    // issued. Block-uniform (at the start, and after each block-wide release), or warp 0
    // alone with kFlagWarpRelease: it stops at the first slot whose previous page some warp
    // still reads (a later release, or the end of the op's page loop, tries again), so warp 0
    // never waits for the slowest warp.
    __device__ void top_up() {
        while (issued - consumed < (uint32_t)nslot && next < end) {
            if (warp_release && issued >= (uint32_t)nslot && !page_freed(issued - (uint32_t)nslot)) break;
            if (next - chunk_base >= (uint32_t)kPlanChunk) next_chunk();
            const MkPage& p = chunk[next - chunk_base];
            issue(p.src, (int)p.bytes);
            ++next;
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

    // This thread is done with the oldest page: free its slot and refill. Block-uniform; with
    // kFlagWarpRelease each warp arrives on the slot's empty barrier and goes on, and warp 0
    // refills.
    __device__ void release() {
        if (warp_release) {
#if __CUDA_ARCH__ >= 900
            __syncwarp();
            if ((threadIdx.x & 31) == 0)
                asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(
                                 smem_addr(&empty[consumed % (uint32_t)nslot]))
                             : "memory");
            ++consumed;
            if (threadIdx.x < 32) top_up();
#endif
            return;
        }
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
