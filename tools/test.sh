#!/usr/bin/env bash
# The project's test command (README "Test"). Installs what the tests need, then runs them all.
#
#   ./tools/test.sh            # everything CI runs
#
# Needs: a Rust toolchain (cargo), gcc/g++, and the shared data folder (../shared beside the
# checkout, or QT_SHARED_DIR). Installs, when missing: Debian's mono-mcs (C# sample),
# pkg-config and cmake (the installed package's consumers), portaudio19-dev (the streaming
# sample's audio callback) via apt,
# and the pinned CUDA 13.0 compiler wheels from PyPI (tools/cuda-wheels.sh, cached) so that
# every kernel in kernels/ is compiled (a kernel that does not compile fails the run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- shared data: real checkpoint configs, tokenizer files and tensor manifests -------------
if [ -z "${QT_SHARED_DIR:-}" ]; then
  export QT_SHARED_DIR="$(cd .. && pwd)/shared"
fi
if [ ! -d "$QT_SHARED_DIR/checkpoints" ]; then
  echo "error: $QT_SHARED_DIR/checkpoints not found; set QT_SHARED_DIR to the shared data folder" >&2
  exit 2
fi

# --- system packages the sample tests need ----------------------------------------------------
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "error: need root (or sudo) to apt-get install $*" >&2; exit 2
    fi
  fi
  log "installing $* (apt)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=()
command -v mcs >/dev/null 2>&1 && command -v mono >/dev/null 2>&1 || missing+=(mono-mcs)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
[ -f /usr/include/portaudio.h ] || missing+=(portaudio19-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# --- the tests ------------------------------------------------------------------------------
log "cargo test"
cargo test --locked --all-targets
cargo test --locked --doc

# --- the README's main command: tiny checkpoint, cloned fixture voice, a WAV out --------------
log "main command (README): cargo run --example qwentts"
cli_out="$(mktemp -d)/out.wav"
cargo run --locked --quiet --example qwentts -- --seed 1 --out "$cli_out"
test -s "$cli_out" || { echo "error: the main command wrote no WAV" >&2; exit 1; }

# --- CUDA backend: compile every kernel (no GPU needed) and check the no-driver path ----------
log "CUDA kernels: nvcc from the pinned CUDA 13.0 wheels"
source tools/cuda-wheels.sh
export QT_REQUIRE_KERNELS=1   # build.rs fails without nvcc; any nvcc error fails the build
started=$(date +%s)
# GPU tests are #[ignore]d here (cargo lists them as ignored); tools/device/run.sh runs them.
cargo test --locked --features cuda --test cuda_backend --test cuda_kernels --test cuda_audio_ops --test cuda_codec --test cuda_codec_encoder --test cuda_speaker_encoder --test cuda_model --test cuda_megakernel --test megakernel_program --test ffi
cargo build --locked --features cuda --example bench_cuda --example bench_codec
echo "CUDA feature build + tests: $(( $(date +%s) - started )) s"

# --- fuzzing: every target briefly from its committed corpus (fuzz/README.md) ------------------
# Replays the seeds and mutates for a few seconds; a crash, a hang or an allocation over 256 MB
# fails the run. The long runs (10 M executions each) are recorded in the issue notes.
log "fuzz targets (tools/fuzz.sh, ${QT_FUZZ_SECONDS:-10} s each)"
started=$(date +%s)
./tools/fuzz.sh "${QT_FUZZ_SECONDS:-10}"
echo "fuzz build + runs: $(( $(date +%s) - started )) s"
