#!/usr/bin/env bash
# Installs the C/C++/C# library for consumers under PREFIX:
#
#   PREFIX/lib/libqwentts.so                  the shared library (kernels embedded when built
#                                             with --features cuda)
#   PREFIX/include/qwentts.h                  the C header (C11 and C++)
#   PREFIX/include/qwentts.hpp                the C++17 RAII wrapper
#   PREFIX/lib/pkgconfig/qwentts.pc           pkg-config --cflags --libs qwentts
#   PREFIX/lib/cmake/qwentts/                 find_package(qwentts) -> target qwentts::qwentts
#   PREFIX/share/qwentts/bindings/csharp/     the C# P/Invoke sources (add them to a project)
#   PREFIX/share/doc/qwentts/                 README, BENCHMARKS, the samples
#
# The pkg-config and CMake files locate everything relative to themselves, so the tree can be
# moved or unpacked anywhere (tools/release.sh archives it).
#
#   tools/install.sh --prefix DIR [--cuda] [--lib PATH]
#     --cuda      build with the CUDA backend (needs nvcc: source tools/cuda-wheels.sh)
#     --lib PATH  install this libqwentts.so instead of building one (the tests use it)
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="" lib="" features=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --lib) lib="${2:?--lib needs a path}"; shift 2 ;;
    --cuda) features=(--features cuda); shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$prefix" ] || { echo "install.sh: --prefix DIR is required" >&2; exit 2; }

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
if [ -z "$lib" ]; then
  if [ ${#features[@]} -gt 0 ]; then export QT_REQUIRE_KERNELS=1; fi
  cargo build --locked --release --lib "${features[@]}"
  lib=target/release/libqwentts.so
fi
[ -f "$lib" ] || { echo "install.sh: $lib not found" >&2; exit 1; }

mkdir -p "$prefix"/{lib/pkgconfig,lib/cmake/qwentts,include,share/qwentts/bindings/csharp,share/doc/qwentts}
install -m 755 "$lib" "$prefix/lib/libqwentts.so"
install -m 644 include/qwentts.h bindings/cpp/qwentts.hpp "$prefix/include/"
install -m 644 bindings/csharp/*.cs "$prefix/share/qwentts/bindings/csharp/"
install -m 644 README.md BENCHMARKS.md "$prefix/share/doc/qwentts/"
cp -r examples/c examples/cpp examples/csharp "$prefix/share/doc/qwentts/"
sed "s/@VERSION@/$version/" tools/package/qwentts.pc.in > "$prefix/lib/pkgconfig/qwentts.pc"
install -m 644 tools/package/qwenttsConfig.cmake "$prefix/lib/cmake/qwentts/"
sed "s/@VERSION@/$version/" tools/package/qwenttsConfigVersion.cmake.in > "$prefix/lib/cmake/qwentts/qwenttsConfigVersion.cmake"
echo "installed qwentts $version under $prefix"
