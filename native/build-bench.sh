#!/bin/sh
# Builds native/build/vit_bench, the standalone kernel benchmark (no Node needed): the same
# per-variant objects as the addon (native/variants.conf), plus bench_main.cc, and the GPU model
# (native/cuda/) with its CUDA kernels where nvcc is found (TFPIPE_CUDA_BUILD=0 leaves them out).
#   sh native/build-bench.sh && native/build/vit_bench --threads 1,2
#   native/build/vit_bench --device cuda --parity --bench
# CXX picks the compiler; TFPIPE_NATIVE_CFLAGS replaces -O3 -ffp-contract=fast. For a cross
# build, TFPIPE_ARCH names the target (as uname -m) and TFPIPE_BENCH_OUT the binary, e.g.
#   CXX=aarch64-linux-gnu-g++ TFPIPE_ARCH=aarch64 TFPIPE_BENCH_OUT=native/build/vit_bench-arm64 sh native/build-bench.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cxx=${CXX:-g++}
opt=${TFPIPE_NATIVE_CFLAGS:--O3 -ffp-contract=fast}
arch=${TFPIPE_ARCH:-$(uname -m)}
out=${TFPIPE_BENCH_OUT:-$here/build/vit_bench}
case "$arch" in arm64) arch=aarch64 ;; amd64) arch=x86_64 ;; esac
obj="$here/build/bench-obj-$arch"
mkdir -p "$obj"
variants=$(grep -v '^#' "$here/variants.conf" | awk -v a="$arch" '$2 == a { print $1 }')
[ -n "$variants" ] || variants=$(grep -v '^#' "$here/variants.conf" | awk '$2 == "other" { print $1 }')
have=""
objects=""
for v in $variants; do
  flags=$(grep -v '^#' "$here/variants.conf" | awk -v a="$arch" -v n="$v" '$1 == n && ($2 == a || $2 == "other") { for (i = 3; i <= NF; i++) printf "%s ", $i; exit }')
  # shellcheck disable=SC2086
  if $cxx $opt -std=c++17 -pthread -fno-exceptions $flags "-DTFPIPE_ISA=$v" -I"$here/src" -c "$here/src/model.cc" -o "$obj/model-$v.o"; then
    have="$have -DTFPIPE_HAVE_$(echo "$v" | tr '[:lower:]' '[:upper:]')"
    objects="$objects $obj/model-$v.o"
  else
    echo "vit_bench: the $v variant does not compile here; left out" >&2
  fi
done
[ -n "$objects" ] || { echo "vit_bench: no variant compiled" >&2; exit 1; }
for u in dispatch pool workspace profile layout loss optimizer; do
  extra=""
  [ "$u" = dispatch ] && extra="$have"
  # shellcheck disable=SC2086
  $cxx $opt -std=c++17 -pthread $extra -I"$here/src" -c "$here/src/$u.cc" -o "$obj/$u.o"
  objects="$objects $obj/$u.o"
done
for u in bench_main gpu_bench; do
  # shellcheck disable=SC2086
  $cxx $opt -std=c++17 -pthread -I"$here" -c "$here/$u.cc" -o "$obj/$u.o"
  objects="$objects $obj/$u.o"
done
# The GPU model: the host executor always, the device executor where nvcc builds it.
nvcc=${NVCC:-nvcc}
gpu="host only"
# shellcheck disable=SC2086
$cxx $opt -std=c++17 -pthread -c "$here/cuda/host_exec.cc" -o "$obj/host_exec.o"
objects="$objects $obj/host_exec.o"
if [ "${TFPIPE_CUDA_BUILD:-1}" != 0 ] && command -v "$nvcc" >/dev/null 2>&1; then
  arch=${TFPIPE_CUDA_ARCH:-$(grep -v '^#' "$here/cuda/targets.conf" | tr '\n' ' ')}
  # The CUDA units around the executor of cuda/device_exec.cuh (as native/build.mjs builds them).
  cuda_objects=""
  for u in device_exec gemm_check; do
    # shellcheck disable=SC2086
    "$nvcc" -O3 -std=c++17 $arch -c "$here/cuda/$u.cu" -o "$obj/$u.o"
    cuda_objects="$cuda_objects $obj/$u.o"
  done
  # shellcheck disable=SC2086
  $cxx $opt -std=c++17 -pthread -c "$here/cuda/cublaslt.cc" -o "$obj/cublaslt.o"
  # shellcheck disable=SC2086
  "$nvcc" -O3 -cudart static -Xcompiler -pthread $objects $cuda_objects "$obj/cublaslt.o" -ldl -o "$out"
  gpu="cuda ($arch)"
else
  # shellcheck disable=SC2086
  $cxx $opt -std=c++17 -pthread -c "$here/cuda/no_device.cc" -o "$obj/no_device.o"
  # shellcheck disable=SC2086
  $cxx $opt -pthread $objects "$obj/no_device.o" -o "$out"
fi
echo "built $out (variants:$(echo "$have" | sed 's/-DTFPIPE_HAVE_/ /g' | tr '[:upper:]' '[:lower:]'); gpu: $gpu)"
