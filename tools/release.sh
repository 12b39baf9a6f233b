#!/usr/bin/env bash
# Builds the Linux x86_64 release archive: the library with the CUDA kernels embedded (nvcc
# from the pinned CUDA 13.0 wheels), installed by tools/install.sh into
# qwentts-VERSION-linux-x86_64/, packed as dist/qwentts-VERSION-linux-x86_64.tar.gz with its
# SHA-256 in dist/qwentts-VERSION-linux-x86_64.tar.gz.sha256 (`sha256sum -c` checks it).
#
#   tools/release.sh [--lib PATH] [--out DIR]
#     --lib  archive this libqwentts.so instead of building (the tests use it; a real release
#            builds with CUDA)
#     --out  where the archive goes (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
lib_args=(--cuda) out=dist
while [ $# -gt 0 ]; do
  case "$1" in
    --lib) lib_args=(--lib "${2:?--lib needs a path}"); shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    *) echo "release.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
name="qwentts-$version-linux-x86_64"
if [ "${lib_args[0]}" = "--cuda" ]; then source tools/cuda-wheels.sh; fi
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
./tools/install.sh --prefix "$stage/$name" "${lib_args[@]}"
commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
printf 'qwentts %s (commit %s), built %s\n' "$version" "$commit" "$(date -u +%Y-%m-%d)" > "$stage/$name/VERSION"
mkdir -p "$out"
# Reproducible member order and ownership; mtimes from the build.
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz" "$name"
(cd "$out" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "$out/$name.tar.gz"
cat "$out/$name.tar.gz.sha256"
