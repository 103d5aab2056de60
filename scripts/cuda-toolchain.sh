#!/usr/bin/env bash
# Installs a CUDA 13 compiler (nvcc, cicc, ptxas), the runtime headers and the libraries gen links
# (cudart, cuBLAS, cuRAND, NVRTC) from PyPI into a private prefix, so
# `cargo build --release --features cuda` works on a machine without a system CUDA toolkit — even one
# without a GPU. Prints the variables to export.
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
# The compiler and headers build candle's kernels; nvrtc, curand, cuBLAS and the runtime are what the
# binary links against. One pip call: pip --target does not merge into an existing nvidia/ tree.
if [ ! -x "$HOME_DIR/bin/nvcc" ] || [ ! -e "$HOME_DIR/lib/libcublas.so.13" ]; then
  python3 -m pip install --quiet --upgrade --target "$PREFIX" \
    "nvidia-cuda-nvcc==$VERSION" "nvidia-cuda-crt==$VERSION" "nvidia-nvvm==$VERSION" \
    "nvidia-cuda-runtime==$VERSION" "nvidia-cuda-cccl==$VERSION" "nvidia-cuda-nvrtc==$VERSION" \
    "nvidia-cublas==$VERSION" "nvidia-curand==10.*" >&2
fi
[ -x "$HOME_DIR/bin/nvcc" ] || { echo "error: no nvcc under $HOME_DIR after the install" >&2; exit 1; }
# The wheels ship lib/ where nvcc's profile expects lib64/, and only versioned libraries where the
# linker looks for libX.so.
[ -e "$HOME_DIR/lib64" ] || ln -s lib "$HOME_DIR/lib64"
for lib in cudart cublas cublasLt curand nvrtc; do
  versioned=$(ls "$HOME_DIR/lib/lib$lib.so."[0-9]* | head -n 1)
  ln -sf "$(basename "$versioned")" "$HOME_DIR/lib/lib$lib.so"
done
# libcuda comes with the GPU driver, not from PyPI. Link against a stub that defines the driver
# functions cudarc declares (what the toolkit's lib64/stubs holds); at run time the driver's real
# libcuda.so.1 is loaded. cudarc searches $CUDA_HOME/lib/stubs; keep it off LD_LIBRARY_PATH. Every
# stub function returns CUDA_ERROR_NO_DEVICE (100), so a binary run against it fails cleanly.
if [ ! -e "$HOME_DIR/lib/stubs/libcuda.so" ]; then
  here="$(cd "$(dirname "$0")/.." && pwd)"
  manifest=$(cd "$here" && cargo metadata --format-version 1 --features cuda 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')
  mkdir -p "$HOME_DIR/lib/stubs"
  grep -o 'pub unsafe fn cu[A-Za-z0-9_]*' "$(dirname "$manifest")/src/driver/sys/mod.rs" | sed 's/pub unsafe fn //' |
    sort -u | sed 's/.*/int &(void) { return 100; }/' > "$HOME_DIR/lib/stubs/cuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$HOME_DIR/lib/stubs/libcuda.so" "$HOME_DIR/lib/stubs/cuda_stub.c"
fi
"$HOME_DIR/bin/nvcc" --version >&2
echo "export CUDA_HOME=\"$HOME_DIR\""
echo "export CUDA_PATH=\"$HOME_DIR\""
echo "export PATH=\"$HOME_DIR/bin:\$PATH\""
# The GPU generation to compile kernels for when no GPU can be queried (90 = Hopper, e.g. H100/H200).
echo "export CUDA_COMPUTE_CAP=\"\${CUDA_COMPUTE_CAP:-90}\""
echo "export LD_LIBRARY_PATH=\"$HOME_DIR/lib:\${LD_LIBRARY_PATH:-}\""
