#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds gen with CUDA, checks that training on CUDA follows training
# on CPU from the same seed (losses agree to 1e-3 relative over the first steps), then prints CUDA
# throughput for training and sampling and runs the tau regression on the GPU. Exits non-zero on any
# mismatch or failure.
#
#   scripts/gpu-check.sh [DATA]     # DATA: a recipe corpus; default the small test fixture
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-tests/fixtures/recipes_small.json}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

if ! command -v nvcc >/dev/null && [ -z "${CUDA_HOME:-}" ]; then
  eval "$(scripts/cuda-toolchain.sh)"
fi
cargo build --release --features cuda
GEN=target/release/gen

# (a) Same seed, same steps, CPU (fused kernels) vs CUDA (op-level path).
compare() {
  local name="$1"; shift
  for dev in cpu cuda; do
    "$GEN" train-recipes --data "$DATA" --out "$OUT/$name-$dev" --device "$dev" --steps 5 --log-every 1 \
      --eval-every 5 --warmup 2 --seed 3 "$@" > /dev/null
  done
  python3 - "$OUT/$name-cpu/metrics.jsonl" "$OUT/$name-cuda/metrics.jsonl" "$name" <<'PY'
import json, sys
def losses(p):
    return [r["train_bpc"] for r in map(json.loads, open(p)) if "train_bpc" in r]
a, b, name = losses(sys.argv[1]), losses(sys.argv[2]), sys.argv[3]
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(json.dumps({"check": name, "cpu": a, "cuda": b, "max_rel_diff": worst}))
sys.exit(0 if len(a) == len(b) == 5 and worst <= 1e-3 else 1)
PY
}
compare lstm-S --arch lstm --embed 64 --hidden 256 --layers 1 --batch 32 --seq 128
compare lstm-M --arch lstm --embed 64 --hidden 512 --layers 2 --batch 32 --seq 128
compare transformer --arch transformer --dim 128 --layers 4 --heads 4 --context 256 --batch 16

# (b) Throughput on the GPU.
"$GEN" bench train --device cuda --arch lstm --embed 64 --hidden 512 --layers 2 --batch 128 --seq 128 --steps 20
"$GEN" bench train --device cuda --arch lstm --embed 64 --hidden 256 --layers 1 --batch 32 --seq 128 --steps 20
"$GEN" bench train --device cuda --arch transformer --dim 128 --layers 4 --heads 4 --context 256 --batch 16 --steps 20
"$GEN" bench sample --device cuda --arch lstm --hidden 256 --chars 2000
"$GEN" bench sample --device cuda --arch lstm --hidden 512 --layers 2 --batch 32 --chars 2000
"$GEN" bench sample --device cuda --arch transformer --dim 128 --layers 4 --heads 4 --context 256 --chars 2000

# (c) The tau regression on the GPU.
"$GEN" tau-rnn --device cuda --out "$OUT/tau" --json > "$OUT/tau.json"
python3 -c "import json,sys; r=json.load(open('$OUT/tau.json')); print(json.dumps({k: r[k] for k in r if k != 'models'}))" || true
echo "gpu-check: all checks passed"
