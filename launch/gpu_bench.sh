#!/usr/bin/env bash
# The prepared accelerator check of docs/benchmarks.md (4-6 minutes expected on an H100/H200), in order of importance:
#   1. resnet32x4 -> resnet8x4 at batch 64 fp32: bare step, end to end with 1 and 16 steps per dispatch, two
#      CIFAR-100-LT-sized epochs through the trainer (and its logged steady-state rate), PyTorch's fp32 reference
#      step in the same process, and a jax.profiler trace of the end-to-end step;
#   2. the same pair at batch 512 bf16;
#   3. populations (issue 18): N = 1, 3, 9 resnet8x4 students of one resnet32x4 teacher in one vmapped program
#      against N solo programs, img/s per student, at batch 64 fp32 and bf16;
#   4. resnet34 -> resnet18 at 224x224, batch 256, bf16 and fp32, the bare step: the rate ImageNet-LT's host
#      pipeline must feed (compare with `python -m ltkd_jax.tools.input_bench` on the training host).
# Each part runs under its own time limit (540 s in all, so the whole script stays inside the device tool's 600 s
# per command) and even if an earlier one failed or ran out of time; the exit status says whether all passed.
#
# Usage: [OUT=DIR] [PYTHON=INTERPRETER] launch/gpu_bench.sh
#
# Needs jax with an accelerator, flax, optax and orbax (torch for the reference; no TensorFlow), and ml_collections
# (the benchmark reads its recipe from configs/). PYTHON defaults to <repo>/.venv/bin/python if present, else
# python3 (`make` builds .venv with CPU-only jax: on a GPU host set PYTHON to an interpreter with jax[cuda12]).
# Pure-Python wheels in <repo>/.whl/ go on PYTHONPATH (a wheel is a zip Python imports from): for a host without
# ml_collections and without the network, on the development machine run
#     pip download --no-deps ml-collections==1.1.0 -d .whl
# in the repository and carry .whl (git-ignored) with the checkout. Writes under OUT (default
# <repo>/workdirs/gpu_bench; 6 files, none deeper than OUT): bench.log (versions and every table), one JSON per
# part, trace_b64_fp32.tgz (open with TensorBoard's profile plugin or xprof; dropped if over 15 MB).
set -uo pipefail
caller_dir=$PWD
cd "$(dirname "$0")/.." || exit 2
[[ -z ${OUT:-} || $OUT == /* ]] || OUT=$caller_dir/$OUT  # relative settings are the caller's
[[ ${PYTHON:-} != */* || $PYTHON == /* ]] || PYTHON=$caller_dir/$PYTHON
# shellcheck disable=SC2034  # both read by common.sh's die and usage
PROG=gpu_bench.sh SCRIPT=launch/gpu_bench.sh
# shellcheck source=common.sh disable=SC1091
source launch/common.sh
case ${1:-} in
    -h|--help) usage; exit 0 ;;
    "") ;;
    *) die "unexpected argument '$1' (settings go in OUT and PYTHON; see --help)" ;;
esac
OUT=${OUT:-workdirs/gpu_bench}
PY=$(pick_python)  # the repository's .venv, if any (we are in the repository root)
path=$PWD
for wheel in .whl/*.whl; do  # pure-Python wheels (see above); none: the pattern itself, not a file
    [[ ! -f $wheel ]] || path+=":$PWD/$wheel"
done
export PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# One start of jax: a problem comes back marked with '!', else the versions line that bench.log gets.
versions=$("$PY" -c '
try:
    import jax, flax, optax, orbax.checkpoint as o, ml_collections
except Exception as error:
    print("!cannot import", getattr(error, "name", None) or error)
else:
    if jax.default_backend() == "cpu":
        print("!has a jax that sees no accelerator")
    else:
        print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "orbax", o.__version__,
              jax.devices())
' 2>/dev/null) || versions="!does not run"
case $versions in
    '!cannot import ml_collections') die "$PY cannot import ml_collections (the benchmark reads its recipe from" \
        "configs/); install it, or put its wheel in .whl/: pip download --no-deps ml-collections==1.1.0 -d .whl" ;;
    '!'*) die "$PY ${versions#!}; set PYTHON to an interpreter with jax for the accelerator, flax, optax and orbax" ;;
esac
mkdir -p "$OUT"
LOG="$OUT/bench.log"
failed=0

part() {  # part NAME SECONDS ARGS...: one benchmark run within SECONDS, its table appended to bench.log
  local name=$1 seconds=$2
  shift 2
  echo "== $name: python -m ltkd_jax.tools.bench $* (limit ${seconds}s)" | tee -a "$LOG"
  if ! timeout "$seconds" "$PY" -m ltkd_jax.tools.bench "$@" --json="$OUT/$name.json" 2>&1 | tee -a "$LOG"; then
    echo "== $name FAILED" | tee -a "$LOG"
    failed=1
  fi
}

{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  if [[ -n $versions ]]; then printf '%s\n' "$versions"; fi
  "$PY" -c "import torch; print('torch', torch.__version__, torch.version.cuda)" || true; } 2>&1 | tee "$LOG"

part b64_fp32 170 --batch_size=64 --dtype=float32 --steps_per_dispatch=1,16 --epoch --profile_dir="$OUT/trace"
part b512_bf16 100 --batch_size=512 --dtype=bfloat16 --steps_per_dispatch=1,16
part population_b64_fp32 70 --batch_size=64 --dtype=float32 --population=1,3,9
part population_b64_bf16 60 --batch_size=64 --dtype=bfloat16 --population=1,3,9
part imagenet_r34_r18_b256_bf16 70 --teacher=resnet34 --student=resnet18 --image_size=224 --num_classes=1000 \
  --batch_size=256 --dtype=bfloat16 --step_only --steps=30
part imagenet_r34_r18_b256_fp32 70 --teacher=resnet34 --student=resnet18 --image_size=224 --num_classes=1000 \
  --batch_size=256 --dtype=float32 --step_only --steps=30

if [ -d "$OUT/trace" ]; then
  tar -czf "$OUT/trace_b64_fp32.tgz" -C "$OUT" trace && rm -rf "$OUT/trace"
  if [ "$(wc -c < "$OUT/trace_b64_fp32.tgz")" -gt 15000000 ]; then
    echo "== trace over 15 MB: dropped (the device tool brings back files up to 16 MiB)" | tee -a "$LOG"
    rm -f "$OUT/trace_b64_fp32.tgz"
  fi
fi
exit "$failed"
