#!/usr/bin/env bash
# One whole GPU session on the device machine (no Rust there): unpacks what
# tools/device/build.sh built, generates full-size random 0.6B-Base and 1.7B-Base checkpoints,
# runs every GPU test, then the benchmarks; logs under $OUT, summary last.
#
#   run tool:  command "./tools/device/run.sh", carry [".device"], timeout <= 600 s
#   QT_RUN_BENCH=0 skips the benchmarks; QT_MODELS="0.6B" limits the checkpoints.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-.device/logs}"
mkdir -p "$out"
work=/tmp/qt-device
rm -rf "$work" && mkdir -p "$work"
tar -C "$work" -xJf .device/bundle.tar.xz || { echo "no .device/bundle.tar.xz: run tools/device/build.sh and carry .device"; exit 2; }
# Test binaries locate tests/fixtures by the path they were built at.
root="$(cat "$work/BUILD_ROOT")"
if [ "$root" != "$PWD" ] && [ ! -e "$root" ]; then mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"; fi
{
  echo "commit: $(tr '\n' ' ' < "$work/COMMIT")"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>&1
} | tee "$out/device.txt"
status=0
results=()
run_step() {  # name, command...
  local name="$1"; shift
  echo "== $name"
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  results+=("$name: exit $rc ($((SECONDS - t0)) s)")
  [ $rc -eq 0 ] || status=1
}
bin="$work/bin"
# The tests' shared data (checkpoint metadata) travels in the bundle: ../shared does not.
export QT_SHARED_DIR="$work"
for t in cuda_backend cuda_kernels cuda_model ffi; do
  [ -x "$bin/$t" ] && run_step "$t" "$bin/$t" --include-ignored --test-threads 1 --nocapture
done
# The README main command on the GPU (tiny checkpoint, cloned fixture voice, WAV out).
run_step cli_tiny_cuda "$bin/qwentts" --device 0 --out "$out/tiny_cuda.wav"
models=()
for m in ${QT_MODELS:-0.6B 1.7B}; do
  dir="/tmp/random-$m-base"
  run_step "make_$m" "$bin/make_random_checkpoint" --from "$work/checkpoints/Qwen3-TTS-12Hz-$m-Base" --out "$dir"
  models+=(--model "$dir")
done
if [ "${QT_RUN_BENCH:-1}" = 1 ]; then
  run_step bench_cuda "$bin/bench_cuda" "${models[@]}" ${QT_BENCH_ARGS:-}
  sed -n '/^## summary/,$p' "$out/bench_cuda.log"
fi
echo "== results"
printf '%s\n' "${results[@]}"
exit $status
