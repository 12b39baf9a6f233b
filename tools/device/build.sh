#!/usr/bin/env bash
# Builds, HERE (no GPU needed), what tools/device/run.sh runs on the GPU machine, into .device/
# (ignored by git; name it in the device call's `carry`). Installs the pinned CUDA 13.0
# compiler wheels first (tools/cuda-wheels.sh) so the kernels are compiled into the binary.
#
#   ./tools/device/build.sh        then, on the device:  ./tools/device/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/cuda-wheels.sh
export QT_REQUIRE_KERNELS=1
echo "== cargo build --release --features cuda --example gpu_check"
cargo build --locked --release --features cuda --example gpu_check
mkdir -p .device
cp target/release/examples/gpu_check .device/gpu_check
git rev-parse --short=12 HEAD > .device/COMMIT 2>/dev/null || echo unknown > .device/COMMIT
git status --porcelain --untracked-files=no | grep -q . && echo "+dirty" >> .device/COMMIT || true
ls -la .device
