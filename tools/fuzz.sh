#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, via libfuzzer-sys) of every parser a user can feed;
# the targets and what each asserts are in fuzz/README.md.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]   build, then run each target (default: all) for
#                                         SECONDS (default 10) from its committed corpus
#   QT_FUZZ_RUNS=N                        instead stop each target after N executions
#   QT_FUZZ_JOBS=N                        parallel workers per target (default 1)
#   QT_FUZZ_RSS_MB=N                      process memory limit (default 2048)
#
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags that cargo-fuzz
# passes on nightly (the same flags; `cargo fuzz run` works too where cargo-fuzz and nightly
# are installed). New inputs go to fuzz/target/corpus/<target>, crashes to
# fuzz/target/artifacts/<target>; the committed corpus in fuzz/corpus is only read.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"; shift || true
all=(safetensors_file configs tokenizer_files voice_file reference_audio text_prompt)
targets=("${@:-${all[@]}}")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

triple="$(rustc -vV | sed -n 's/^host: //p')"
# cargo-fuzz's defaults: SanitizerCoverage with inline 8-bit counters, the PC table and compare
# tracing; AddressSanitizer; debug assertions and overflow checks; `--cfg fuzzing`. Passing
# --target keeps these flags off build scripts and proc macros.
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Zsanitizer=address -Cdebug-assertions \
-Coverflow-checks --cfg fuzzing -Cforce-frame-pointers=yes"
cargo build --locked --manifest-path fuzz/Cargo.toml --release --target "$triple" --bins

bin="fuzz/target/$triple/release"
# A single allocation over 256 MB is a finding (no input here needs one: the model fixtures
# are tiny), and so is a process over 2 GB. QT_FUZZ_RSS_MB raises the process limit for runs
# of millions of executions: the tokenizer target's resident size creeps up by ~0.2 GB per
# million executions under ASan while its live heap stays flat (valgrind: nothing lost; the
# regex engine's caches fragment the heap), which would end a 10 M run as a false OOM.
limits=(-rss_limit_mb="${QT_FUZZ_RSS_MB:-2048}" -malloc_limit_mb=256 -timeout=20 -print_final_stats=1)
if [ -n "${QT_FUZZ_RUNS:-}" ]; then
  stop=(-runs="$QT_FUZZ_RUNS")
elif [ "$seconds" -gt 0 ] 2>/dev/null; then
  stop=(-max_total_time="$seconds")
else
  # libFuzzer reads -max_total_time=0 as "no limit".
  echo "error: SECONDS must be a positive number (or set QT_FUZZ_RUNS)" >&2; exit 2
fi
jobs="${QT_FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
  work="fuzz/target/corpus/$t" artifacts="fuzz/target/artifacts/$t/"
  mkdir -p "$work" "$artifacts"
  echo "== fuzz $t (${stop[*]}, $jobs job(s))"
  par=()
  [ "$jobs" -gt 1 ] && par=(-fork="$jobs")
  # Reference audio: inputs of at most 4 KiB (the seeds' headers and first frames) run ~4x
  # faster than whole one-second clips (resampling dominates); the decoders' per-frame paths
  # are the same.
  [ "$t" = reference_audio ] && par+=(-max_len=4096)
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" \
    "$bin/$t" "$work" "fuzz/corpus/$t" "${limits[@]}" "${stop[@]}" "${par[@]}" -artifact_prefix="$artifacts"
done
