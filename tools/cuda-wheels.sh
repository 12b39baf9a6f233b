# Sourced (not run): puts the pinned CUDA 13.0 compiler (nvcc, ptxas, headers) from PyPI wheels
# in CUDA_HOME, installing them into a cached venv on first use (deps.md §3: 195 MB download,
# ~15 s; later runs reuse it). Cache: $QT_CUDA_WHEELS_DIR, default ~/.cache/qwentts/cuda-13.0.
# Exact pins: mixing wheel versions breaks nvcc ("incompatible headers").
qt_cuda_dir="${QT_CUDA_WHEELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qwentts/cuda-13.0}"
qt_cuda_pins=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96
              nvidia-cuda-cccl==13.0.85 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88)
qt_cuda_stamp="$qt_cuda_dir/.pins"
if [ "$(cat "$qt_cuda_stamp" 2>/dev/null)" != "${qt_cuda_pins[*]}" ]; then
  echo "== installing CUDA 13.0 compiler wheels into $qt_cuda_dir: ${qt_cuda_pins[*]}"
  rm -rf "$qt_cuda_dir"
  python3 -m venv "$qt_cuda_dir/venv"
  "$qt_cuda_dir/venv/bin/pip" install --quiet --disable-pip-version-check "${qt_cuda_pins[@]}"
  echo "${qt_cuda_pins[*]}" > "$qt_cuda_stamp"
else
  echo "== CUDA 13.0 compiler wheels: cached in $qt_cuda_dir"
fi
CUDA_HOME="$(echo "$qt_cuda_dir"/venv/lib/python3*/site-packages/nvidia/cu13)"
export CUDA_HOME
"$CUDA_HOME/bin/nvcc" --version | tail -1
