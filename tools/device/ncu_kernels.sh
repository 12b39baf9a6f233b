#!/usr/bin/env bash
# Per-kernel GPU time (Nsight Compute, clocks and caches left alone) of the first launches of
# the unfused kernels in a program: where the prompt prefill's time goes. Run on the device
# machine after tools/device/run.sh has unpacked the bundle into /tmp/qt-device and made the
# random checkpoints; prints one row per kernel and grid, then the total.
#
#   tools/device/ncu_kernels.sh [MODEL_DIR]       (QT_NCU_LAUNCHES bounds the launches profiled,
#                                                  QT_NCU_KERNELS is the kernel-name regex)
set -uo pipefail
bin=/tmp/qt-device/bin
model="${1:-/tmp/random-0.6B-base}"
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
[ -n "$ncu" ] || { echo "ncu not found"; exit 2; }
regex="${QT_NCU_KERNELS:-qt_(gemm|rms|head|attention|silu|add|embedding|linear)}"
timeout -k 5 "${QT_NCU_TIMEOUT:-150}" "$ncu" --clock-control none --cache-control none \
  --metrics gpu__time_duration.sum --kernel-name "regex:$regex" --launch-count "${QT_NCU_LAUNCHES:-700}" --csv \
  "$bin/bench_cuda" --model "$model" --megakernel-only --frames 2 --runs 1 > /tmp/ncu.csv 2> /tmp/ncu.err
echo "ncu exit $?"; tail -n 3 /tmp/ncu.err
python3 - <<'EOF'
import csv, collections
# The program's own output is mixed in: the table starts at the header row.
rows = list(csv.reader(open("/tmp/ncu.csv", errors="replace")))
start = next((i for i, r in enumerate(rows) if "Kernel Name" in r and "Metric Value" in r), None)
if start is None:
    raise SystemExit("no ncu table")
head = rows[start]
body = [r for r in rows[start + 1:] if len(r) == len(head)]
ki, gi, bi, mi, vi, ui = (head.index(c) for c in ("Kernel Name", "Grid Size", "Block Size", "Metric Name", "Metric Value", "Metric Unit"))
agg = collections.defaultdict(lambda: [0, 0.0])
for r in body:
    if r[mi] != "gpu__time_duration.sum":
        continue
    v = float(r[vi].replace(",", ""))
    unit = r[ui].strip().lower()
    v = v / 1000.0 if unit in ("nsecond", "ns") else v * 1000.0 if unit in ("msecond", "ms") else v
    key = (r[ki].split("(")[0], r[gi], r[bi])
    agg[key][0] += 1
    agg[key][1] += v
total = sum(v for _, v in agg.values())
print(f"{'kernel':32} {'grid':>16} {'block':>12} {'launches':>8} {'us total':>10} {'us each':>8}")
for (k, g, b), (n, v) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"{k:32} {g:>16} {b:>12} {n:8d} {v:10.1f} {v / n:8.2f}")
print(f"total {sum(n for n, _ in agg.values())} launches, {total:.1f} us of kernel time "
      f"(ncu units: {sorted(set(r[ui] for r in body))})")
EOF
