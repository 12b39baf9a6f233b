//! The weight loader's plan: for every block of the grid, the list of weight pages it copies
//! into its shared-memory ring, in the order it consumes them (`MkArgs.plan`,
//! `kernels/megakernel/weight_ring.cuh`).
//!
//! The kernel used to work this out itself: whenever its loader crossed into the next op it
//! read that op's descriptor from global memory and split the op's rows over the blocks. Those
//! reads form a chain of dependent loads that the weight stream (gigabytes per frame) keeps
//! evicting from L2, and every thread of the block waited for them at the next page's barrier:
//! 1.3–3.4 µs per matvec op in the traces (BENCHMARKS.md). The split depends only on the
//! weights and the grid, so it is computed once here, and the kernel reads its plan as a
//! sequential stream it can prefetch.
//!
//! The split must be the consumer's exactly (`block_runs` in weight_ring.cuh): the same
//! integer arithmetic, the same run and page order.

use super::layout::{MkOp, MkPage, OP_MATVEC};
use super::program::rows_per_page;

/// Entries past each block's last page: the kernel prefetches the next 32-entry chunk of its
/// plan before it needs it, so reads up to two chunks ahead must stay inside the block's row.
/// The kernel's `kPlanPadding` (layout.cuh, which asserts it covers two of its chunks).
pub const PLAN_PADDING: usize = 64;

/// Every block's pages for one program shape and grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// `[grid][stride]` pages (unused entries zero).
    pub pages: Vec<MkPage>,
    /// `[grid][ops + 1]`: index in the block's row of each op's first page (the last entry is
    /// the block's page count).
    pub op_first: Vec<u32>,
    /// Entries per block row.
    pub stride: usize,
    pub grid: usize,
}

/// One contiguous row range of one matrix that a block computes (`Runs` in the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRun {
    /// Device address of the run's first weight row.
    pub w: u64,
    pub rows: usize,
}

/// The runs of matvec `op` that block `b` of `g` computes, in the kernel's order.
pub fn block_runs(op: &MkOp, b: usize, g: usize) -> Vec<BlockRun> {
    let k = op.k as u64;
    let slice = |n: usize| ((n as u64 * b as u64 / g as u64) as usize, (n as u64 * (b as u64 + 1) / g as u64) as usize);
    let mut runs = Vec::new();
    if op.paired != 0 {
        let (lo, hi) = slice(op.seg[0].rows as usize);
        if hi > lo {
            for s in &op.seg[..2] {
                runs.push(BlockRun { w: s.w + 2 * lo as u64 * k, rows: hi - lo });
            }
        }
        return runs;
    }
    let segs = &op.seg[..op.nseg as usize];
    let total: usize = segs.iter().map(|s| s.rows as usize).sum();
    let (lo, hi) = slice(total);
    let mut base = 0;
    for s in segs {
        let rows = s.rows as usize;
        let (a, e) = (lo.max(base), hi.min(base + rows));
        if e > a {
            runs.push(BlockRun { w: s.w + 2 * (a - base) as u64 * k, rows: e - a });
        }
        base += rows;
    }
    runs
}

/// The pages of block `b`: each run cut into pages of `rows_per_page(k)` whole rows.
fn block_pages(ops: &[MkOp], b: usize, g: usize, op_first: &mut Vec<u32>) -> Vec<MkPage> {
    let mut pages = Vec::new();
    for op in ops {
        op_first.push(pages.len() as u32);
        if op.kind != OP_MATVEC {
            continue;
        }
        let k = op.k as usize;
        let rpp = rows_per_page(k);
        for run in block_runs(op, b, g) {
            let mut row = 0;
            while row < run.rows {
                let rows = rpp.min(run.rows - row);
                pages.push(MkPage { src: run.w + 2 * (row * k) as u64, bytes: (2 * rows * k) as u32, pad: 0 });
                row += rows;
            }
        }
    }
    op_first.push(pages.len() as u32);
    pages
}

impl LoadPlan {
    /// The plan of `ops` (weight addresses as the kernel will see them) on a grid of `grid`.
    pub fn new(ops: &[MkOp], grid: usize) -> Self {
        let mut op_first = Vec::with_capacity(grid * (ops.len() + 1));
        let rows: Vec<Vec<MkPage>> = (0..grid).map(|b| block_pages(ops, b, grid, &mut op_first)).collect();
        let stride = rows.iter().map(Vec::len).max().unwrap_or(0) + PLAN_PADDING;
        let mut pages = vec![MkPage::default(); grid * stride];
        for (b, row) in rows.iter().enumerate() {
            pages[b * stride..b * stride + row.len()].copy_from_slice(row);
        }
        LoadPlan { pages, op_first, stride, grid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::megakernel::layout::{MkSeg, PAGE_BYTES};

    fn matvec(segs: &[(u64, i32)], k: i32, paired: bool) -> MkOp {
        let mut op = MkOp { kind: OP_MATVEC, k, nseg: segs.len() as i32, paired: paired as i32, ..Default::default() };
        for (i, &(w, rows)) in segs.iter().enumerate() {
            op.seg[i] = MkSeg { w, rows, ..Default::default() };
        }
        op
    }

    /// Every weight byte of every matvec op is copied exactly once over the grid, in pages of
    /// whole rows that fit the ring, and each block's pages of an op follow its runs in order.
    #[test]
    fn pages_cover_every_weight_row_once() {
        let ops = vec![
            matvec(&[(0x1000_0000, 2048), (0x2000_0000, 1024), (0x3000_0000, 1024)], 1024, false),
            MkOp { kind: 2, ..Default::default() },
            matvec(&[(0x4000_0000, 3072), (0x5000_0000, 3072)], 1024, true),
            matvec(&[(0x6000_0000, 1024)], 3072, false),
            matvec(&[(0x7000_0000, 15)], 24, false),
        ];
        for grid in [1usize, 7, 132, 264] {
            let plan = LoadPlan::new(&ops, grid);
            assert_eq!(plan.op_first.len(), grid * (ops.len() + 1));
            for (i, op) in ops.iter().enumerate() {
                let mut covered: Vec<(u64, u64)> = Vec::new();
                for b in 0..grid {
                    let first = &plan.op_first[b * (ops.len() + 1)..];
                    let row = &plan.pages[b * plan.stride..];
                    let pages = &row[first[i] as usize..first[i + 1] as usize];
                    let runs = if op.kind == OP_MATVEC { block_runs(op, b, grid) } else { Vec::new() };
                    let mut expect = Vec::new();
                    for r in &runs {
                        let bytes = 2 * r.rows as u64 * op.k as u64;
                        let mut at = 0;
                        while at < bytes {
                            let n = (2 * rows_per_page(op.k as usize) as u64 * op.k as u64).min(bytes - at);
                            expect.push((r.w + at, n));
                            at += n;
                        }
                    }
                    let got: Vec<(u64, u64)> = pages.iter().map(|p| (p.src, p.bytes as u64)).collect();
                    assert_eq!(got, expect, "op {i}, block {b} of {grid}");
                    for p in pages {
                        assert!(p.bytes as usize <= PAGE_BYTES && p.bytes % (2 * op.k as u32) == 0);
                    }
                    covered.extend(got);
                }
                covered.sort();
                let segs = &op.seg[..op.nseg as usize];
                let mut want: Vec<(u64, u64)> = Vec::new();
                if op.kind == OP_MATVEC {
                    for s in segs {
                        want.push((s.w, 2 * s.rows as u64 * op.k as u64));
                    }
                }
                // Merge the covered pages into contiguous ranges per matrix.
                let mut merged: Vec<(u64, u64)> = Vec::new();
                for (a, n) in covered {
                    match merged.last_mut() {
                        Some((s, m)) if *s + *m == a => *m += n,
                        _ => merged.push((a, n)),
                    }
                }
                want.sort();
                assert_eq!(merged, want, "op {i} on a grid of {grid}");
            }
            // Padding past the longest row stays zero (the kernel prefetches into it).
            for b in 0..grid {
                let n = plan.op_first[b * (ops.len() + 1) + ops.len()] as usize;
                assert!(n + PLAN_PADDING <= plan.stride);
                assert!(plan.pages[b * plan.stride + n..(b + 1) * plan.stride].iter().all(|p| *p == MkPage::default()));
            }
        }
    }
}
