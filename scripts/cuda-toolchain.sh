#!/usr/bin/env bash
# Installs a CUDA 13 compiler (nvcc, cicc, ptxas) and the runtime headers from PyPI into a private
# prefix, so `cargo build --release --features cuda` works on a machine without a system CUDA
# toolkit — even one without a GPU. Prints the variables to export.
#
#   eval "$(scripts/cuda-toolchain.sh)"        # then: cargo build --release --features cuda
#
# With a normal CUDA install (nvcc on PATH, CUDA_HOME set) none of this is needed: just build with
# `--features cuda`. (PyPI's CUDA 12 `nvidia-cuda-nvcc-cu12` wheels carry only ptxas, not nvcc; the
# CUDA 13 wheels carry the whole compiler, in one tree under nvidia/cu13.)
set -euo pipefail
PREFIX="${GEN_CUDA_PREFIX:-$HOME/.cache/gen-cuda13}"
VERSION="${GEN_CUDA_VERSION:-13.0.*}"
HOME_DIR="$PREFIX/nvidia/cu13"
if [ ! -x "$HOME_DIR/bin/nvcc" ]; then
  python3 -m pip install --quiet --target "$PREFIX" \
    "nvidia-cuda-nvcc==$VERSION" "nvidia-cuda-crt==$VERSION" "nvidia-nvvm==$VERSION" \
    "nvidia-cuda-runtime==$VERSION" "nvidia-cuda-cccl==$VERSION" >&2
fi
[ -x "$HOME_DIR/bin/nvcc" ] || { echo "error: no nvcc under $HOME_DIR after the install" >&2; exit 1; }
# The wheels ship lib/ where nvcc's profile expects lib64/.
[ -e "$HOME_DIR/lib64" ] || ln -s lib "$HOME_DIR/lib64"
"$HOME_DIR/bin/nvcc" --version >&2
echo "export CUDA_HOME=\"$HOME_DIR\""
echo "export CUDA_PATH=\"$HOME_DIR\""
echo "export PATH=\"$HOME_DIR/bin:\$PATH\""
# The GPU generation to compile kernels for when no GPU can be queried (90 = Hopper, e.g. H100/H200).
echo "export CUDA_COMPUTE_CAP=\"\${CUDA_COMPUTE_CAP:-90}\""
echo "export LD_LIBRARY_PATH=\"$HOME_DIR/lib:\${LD_LIBRARY_PATH:-}\""
