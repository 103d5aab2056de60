#!/usr/bin/env bash
# Installs a CUDA compiler (nvcc) and the runtime headers from PyPI into a private prefix, so
# `cargo build --release --features cuda` works on a machine without a system CUDA toolkit — even one
# without a GPU (the binary then only reports that no GPU is found). Prints the variables to export.
#
#   eval "$(scripts/cuda-toolchain.sh)"        # then: cargo build --release --features cuda
#
# With a normal CUDA install (nvcc on PATH, CUDA_HOME set) none of this is needed: just build with
# `--features cuda`.
set -euo pipefail
PREFIX="${GEN_CUDA_PREFIX:-$HOME/.cache/gen-cuda}"
CUDA_MAJOR="${GEN_CUDA_MAJOR:-12}"
if [ ! -x "$PREFIX/nvidia/cuda_nvcc/bin/nvcc" ]; then
  python3 -m pip install --quiet --target "$PREFIX" \
    "nvidia-cuda-nvcc-cu${CUDA_MAJOR}" "nvidia-cuda-runtime-cu${CUDA_MAJOR}" "nvidia-cuda-cccl-cu${CUDA_MAJOR}" >&2
fi
NVCC_DIR="$PREFIX/nvidia/cuda_nvcc"
RT_DIR="$PREFIX/nvidia/cuda_runtime"
[ -x "$NVCC_DIR/bin/nvcc" ] || { echo "error: no nvcc under $NVCC_DIR after install" >&2; exit 1; }
# nvcc looks for headers and libraries relative to CUDA_HOME; merge the wheels into one tree.
HOME_DIR="$PREFIX/cuda-home"
mkdir -p "$HOME_DIR/include" "$HOME_DIR/lib64" "$HOME_DIR/bin"
for d in "$NVCC_DIR" "$RT_DIR" "$PREFIX/nvidia/cuda_cccl"; do
  [ -d "$d/include" ] && cp -rsf "$d/include/." "$HOME_DIR/include/" 2>/dev/null || true
  [ -d "$d/lib" ] && cp -rsf "$d/lib/." "$HOME_DIR/lib64/" 2>/dev/null || true
done
cp -rsf "$NVCC_DIR/bin/." "$HOME_DIR/bin/" 2>/dev/null || true
[ -d "$NVCC_DIR/nvvm" ] && ln -sfn "$NVCC_DIR/nvvm" "$HOME_DIR/nvvm"
echo "export CUDA_HOME=\"$HOME_DIR\""
echo "export CUDA_PATH=\"$HOME_DIR\""
echo "export PATH=\"$HOME_DIR/bin:\$PATH\""
echo "export CUDA_COMPUTE_CAP=\"\${CUDA_COMPUTE_CAP:-90}\""
echo "export LD_LIBRARY_PATH=\"$HOME_DIR/lib64:\${LD_LIBRARY_PATH:-}\""
