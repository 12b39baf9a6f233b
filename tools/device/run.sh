#!/usr/bin/env bash
# One whole GPU session on the device machine (no Rust there): runs the binaries that
# tools/device/build.sh put in .device/, logs under $OUT (or .device/logs), summary last.
#
#   run tool:  command "./tools/device/run.sh", carry [".device"], timeout <= 300 s
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-.device/logs}"
mkdir -p "$out"
{
  echo "commit: $(cat .device/COMMIT 2>/dev/null | tr '\n' ' ')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>&1
} | tee "$out/device.txt"
status=0
echo "== gpu_check"
./.device/gpu_check 2>&1 | tee "$out/gpu_check.log" || status=$?
echo "== summary"
sed -n '/^| W (rows/,$p' "$out/gpu_check.log"
echo "gpu_check exit status: $status"
exit $status
