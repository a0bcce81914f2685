#!/usr/bin/env bash
# The prepared accelerator check of docs/benchmarks.md (about 5 minutes on an H100/H200):
#   resnet32x4 -> resnet8x4 at batch 64 fp32 (with one full CIFAR-100-LT-sized epoch through the trainer) and at
#   batch 512 bf16, each with 1 and 16 steps per dispatch, and PyTorch's fp32 reference step in the same process.
#
# Usage: OUT=DIR launch/gpu_bench.sh        (needs jax, flax, optax, orbax; torch for the reference; no TensorFlow)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; "$PY" -c \
    "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"; \
  "$PY" -c "import torch; print('torch', torch.__version__)" || true; } > "$OUT/versions.txt" 2>&1
"$PY" -m ltkd_jax.bench --batch_size=64 --dtype=float32 --steps_per_dispatch=1,16 --epoch \
    --json="$OUT/b64_fp32.json" | tee "$OUT/b64_fp32.md"
"$PY" -m ltkd_jax.bench --batch_size=512 --dtype=bfloat16 --steps_per_dispatch=1,16 \
    --json="$OUT/b512_bf16.json" | tee "$OUT/b512_bf16.md"
