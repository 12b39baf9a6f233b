#!/usr/bin/env bash
# One whole GPU session on the device machine (no Rust there): unpacks what
# tools/device/build.sh built, generates full-size random 0.6B-Base and 1.7B-Base checkpoints,
# runs every GPU test, then the benchmarks; logs under $OUT, summary last.
#
#   run tool:  command "./tools/device/run.sh", carry [".device"], timeout <= 600 s
#   QT_RUN_BENCH=0 skips the benchmarks; QT_MODELS="0.6B" limits the checkpoints;
#   QT_CODEC_BENCH=0 skips the GPU codec benchmark; QT_PREFIX_BENCH=0 the prefix cache's;
#   QT_TESTS="cuda_megakernel cuda_model:megakernel" limits the test binaries (NAME:FILTER or
#   QT_TEST_FILTER filters inside them); QT_SANITIZE=1 runs the megakernel tests under compute-sanitizer (memcheck,
#   racecheck, synccheck, initcheck; QT_SANITIZE_TOOLS picks, QT_SANITIZE_TIMEOUT bounds each); QT_REFBENCH=1 runs faster-qwen3-tts (../shared/tools/reference-bench,
#   carried as .refbench with its wheels in .whl) in the same call; QT_SOAK=N runs N
#   load/clone/generate/free cycles on the GPU (examples/soak.rs). QT_MEGAKERNEL_FLAGS=N (the
#   library reads it) runs every megakernel request with chain variant N (MkArgs.flags), so a
#   variant goes through the tests before it becomes the default; QT_FLAGS_TESTS="N M" runs
#   the megakernel tests once more per listed variant after the default ones.
#   QT_SPLITK=1 runs the codec, codec-encoder and speaker-encoder tests and the codec benchmark
#   once more with the codec's convolutions unchunked, unsplit over K (QT_CODEC_SPLIT_K=0; the
#   library splits by default): the comparison for the split's figures.
set -uo pipefail
cd "$(dirname "$0")/../.."
# Logs are gathered in one place and packed into $OUT/logs.tgz at the end (the device tool
# brings back at most 8 files).
final="${OUT:-.device}"
out=/tmp/qt-logs
rm -rf "$out" && mkdir -p "$out" "$final"
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
# QT_DEADLINE: seconds after the start by which everything must be done; every step's limit
# is cut to what is left of it (15 s kept for packing the logs), a step with < 20 s is skipped.
deadline=${QT_DEADLINE:-590}
run_step() {  # name, timeout seconds, command...
  local name="$1" limit="$2"; shift 2
  local left=$(( deadline - SECONDS - 15 ))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 20 ]; then results+=("$name: skipped (deadline)"); echo "== $name: skipped (deadline)"; return; fi
  echo "== $name"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  results+=("$name: exit $rc ($((SECONDS - t0)) s)")
  [ $rc -eq 0 ] || status=1
}
bin="$work/bin"
# The tests' shared data (checkpoint metadata) travels in the bundle: ../shared does not.
export QT_SHARED_DIR="$work"
models=()
full=""
for m in ${QT_MODELS:-0.6B 1.7B}; do
  dir="/tmp/random-$m-base"
  run_step "make_$m" 120 "$bin/make_random_checkpoint" --from "$work/checkpoints/Qwen3-TTS-12Hz-$m-Base" --out "$dir"
  models+=(--model "$dir")
  full="$full${full:+:}$dir"
done
export QT_FULL_MODELS="$full"
# CUDA models decode on their GPU (the library's default; QT_GPU_CODEC=0 decodes on the CPU).
export QT_GPU_CODEC="${QT_GPU_CODEC:-1}"
# The megakernel's API tests once more on the portable (cp.async) weight path first: a fault
# on one path leaves the other's results standing.
if [[ " ${QT_TESTS:-cuda_megakernel} " == *" cuda_megakernel"[:\ ]* ]] && [ -x "$bin/cuda_megakernel" ]; then
  run_step cuda_megakernel_portable "${QT_TEST_TIMEOUT:-300}" env QT_MEGAKERNEL_PORTABLE=1 \
    "$bin/cuda_megakernel" --include-ignored --test-threads 1 --nocapture ${QT_TEST_FILTER:-}
fi
# An entry NAME:FILTER runs only NAME's tests whose names contain FILTER.
for entry in ${QT_TESTS:-cuda_backend cuda_kernels cuda_audio_ops cuda_codec cuda_codec_encoder cuda_speaker_encoder cuda_model cuda_megakernel ffi}; do
  t="${entry%%:*}"; filter="${QT_TEST_FILTER:-}"
  [ "$t" != "$entry" ] && filter="${entry#*:}"
  [ -x "$bin/$t" ] && run_step "$t" "${QT_TEST_TIMEOUT:-300}" "$bin/$t" --include-ignored --test-threads 1 --nocapture $filter
done
# QT_FLAGS_TESTS="384 ...": the megakernel's API tests once more with each chain variant
# (MkArgs.flags) forced on, before a variant becomes the default.
# A variant whose tests fail (or hang) is left out of the benchmark (QT_BENCH_SKIP_FLAGS).
skip_flags=0
for f in ${QT_FLAGS_TESTS:-}; do
  [ -x "$bin/cuda_megakernel" ] || continue
  before=$status; status=0
  run_step "cuda_megakernel_flags$f" "${QT_TEST_TIMEOUT:-300}" \
    env QT_MEGAKERNEL_FLAGS="$f" "$bin/cuda_megakernel" --include-ignored --test-threads 1 --nocapture
  [ $status -ne 0 ] && skip_flags=$(( skip_flags | f ))
  [ $before -ne 0 ] && status=1
done
export QT_BENCH_SKIP_FLAGS=$skip_flags
# The README main command on the GPU (tiny checkpoint, cloned fixture voice, WAV out).
run_step cli_tiny_cuda 60 "$bin/qwentts" --device 0 --out "$out/tiny_cuda.wav"
if [ "${QT_RUN_BENCH:-1}" = 1 ]; then
  run_step bench_cuda 300 "$bin/bench_cuda" "${models[@]}" ${QT_BENCH_ARGS:-}
  sed -n '/^## summary/,$p' "$out/bench_cuda.log"
fi
# The codec decoder on the GPU (offline, 4-frame stream, first 1-frame chunk) on the first
# full-size checkpoint; QT_CODEC_BENCH=0 skips it.
if [ "${QT_CODEC_BENCH:-1}" = 1 ] && [ -x "$bin/bench_codec" ] && [ -n "$full" ]; then
  run_step bench_codec_cuda 120 "$bin/bench_codec" --model "${full%%:*}" --device 0 --seconds 8 --runs 5
fi
# The voice prefix cache: first frame of an ICL request (10 s reference) with the cache off,
# on a miss and on a hit, on the first full-size checkpoint; QT_PREFIX_BENCH=0 skips it.
if [ "${QT_PREFIX_BENCH:-1}" = 1 ] && [ -x "$bin/bench_prefix" ] && [ -n "$full" ]; then
  run_step bench_prefix_cuda 90 "$bin/bench_prefix" --model "${full%%:*}" --device 0 --runs 5
fi
# QT_SPLITK=1: the codec's convolutions unsplit (QT_CODEC_SPLIT_K=0) through the codec tests
# (CPU parity, streamed = offline to the bit) and the codec benchmark.
if [ "${QT_SPLITK:-0}" = 1 ]; then
  for t in cuda_audio_ops cuda_codec cuda_codec_encoder cuda_speaker_encoder; do
    [ -x "$bin/$t" ] && run_step "${t}_unsplit" "${QT_TEST_TIMEOUT:-300}" env QT_CODEC_SPLIT_K=0 \
      "$bin/$t" --include-ignored --test-threads 1 --nocapture
  done
  if [ -x "$bin/bench_codec" ] && [ -n "$full" ]; then
    run_step bench_codec_cuda_unsplit 120 env QT_CODEC_SPLIT_K=0 \
      "$bin/bench_codec" --model "${full%%:*}" --device 0 --seconds 8 --runs 5
  fi
fi
# Soak and sanitizers after the measurements, which a deadline must not cut.
# QT_SOAK=N: N load/clone/generate/free cycles on the GPU with device memory recorded.
if [ "${QT_SOAK:-0}" -gt 0 ] && [ -x "$bin/soak" ]; then
  run_step soak 200 "$bin/soak" --device 0 --cycles "$QT_SOAK" --every $(( (QT_SOAK + 9) / 10 ))
fi
if [ "${QT_SANITIZE:-0}" = 1 ]; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in ${QT_SANITIZE_TOOLS:-memcheck racecheck synccheck initcheck}; do
    run_step "sanitize_$tool" "${QT_SANITIZE_TIMEOUT:-90}" "$cs" --tool "$tool" --error-exitcode 1 \
      "$bin/cuda_megakernel" --include-ignored --test-threads 1 --exact greedy_codes_match_the_official_goldens
  done
  run_step sanitize_memcheck_sampler 90 "$cs" --tool memcheck --error-exitcode 1 \
    "$bin/cuda_megakernel" --include-ignored --test-threads 1 --exact device_sampler_matches_host_sampler
fi
# The reference bench gets what is left.
left=$(( deadline - SECONDS - 15 ))
if [ "${QT_REFBENCH:-0}" = 1 ] && [ -d .refbench ] && [ $left -gt 120 ]; then
  [ $left -gt 280 ] && left=280
  OUT="$out/refbench" run_step refbench "$left" bash .refbench/run_device.sh F $(( left - 10 ))
fi
tar -C "$out" -czf "$final/logs.tgz" . 2>/dev/null
echo "== results"
printf '%s\n' "${results[@]}"
[ -f "$out/bench_cuda.log" ] && sed -n '/^## summary/,$p' "$out/bench_cuda.log"
[ -f "$out/refbench/summary.txt" ] && cat "$out/refbench/summary.txt"
exit $status
