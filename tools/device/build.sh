#!/usr/bin/env bash
# Builds, HERE (no GPU needed), everything tools/device/run.sh runs on the GPU machine, into
# .device/ (ignored by git; name it in the device call's `carry`): the CUDA test binaries,
# bench_cuda, make_random_checkpoint and the metadata of the 0.6B/1.7B Base checkpoints
# (../shared does not travel), packed into one xz archive to stay inside the 64 MiB carry.
# Installs the pinned CUDA 13.0 compiler wheels first so the kernels are compiled in.
#
#   ./tools/device/build.sh        then, on the device:  ./tools/device/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/cuda-wheels.sh
export QT_REQUIRE_KERNELS=1
# The lent machines are H100s and H200s: SASS for sm_90a alone compiles faster (build.rs).
export QT_CUDA_ARCHS="${QT_CUDA_ARCHS:-90a}"
shared="${QT_SHARED_DIR:-../shared}"
rm -rf .device && mkdir -p .device/bin .device/checkpoints
echo "== cargo build --release (bench_cuda, bench_codec, bench_prefix, make_random_checkpoint, CUDA test binaries)"
cargo build --locked --release --features cuda --example bench_cuda --example make_random_checkpoint --example qwentts --example soak --example bench_codec --example bench_prefix
cp target/release/examples/{bench_cuda,make_random_checkpoint,qwentts,soak,bench_codec,bench_prefix} .device/bin/
tests=()
for t in cuda_backend cuda_kernels cuda_audio_ops cuda_codec cuda_codec_encoder cuda_speaker_encoder cuda_model cuda_megakernel ffi; do [ -f "tests/$t.rs" ] && tests+=(--test "$t"); done
cargo test --locked --release --features cuda --no-run --message-format=json "${tests[@]}" \
  | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        shutil.copy(m["executable"], ".device/bin/" + m["target"]["name"])
        print("test binary:", m["target"]["name"])
'
strip .device/bin/*
# All five metadata folders (~0.7 MB): the random checkpoints and the tests' synthetic ones.
cp -r "$shared"/checkpoints/. .device/checkpoints/
chmod -R u+w .device/checkpoints
{ git rev-parse --short=12 HEAD 2>/dev/null || echo unknown; } > .device/COMMIT
git status --porcelain --untracked-files=no | grep -q . && echo "+dirty" >> .device/COMMIT || true
# Where this tree lives here: the test binaries find tests/fixtures through this path.
pwd > .device/BUILD_ROOT
tar -C .device -cJf .device.tar.xz . && rm -rf .device && mkdir .device && mv .device.tar.xz .device/bundle.tar.xz
ls -la .device
