"""Shared test set-up: CPU only, quiet TensorFlow, and one XLA
compilation cache for the whole session (its subprocesses too): many tests compile the same tiny programs,
and a cache hit is bit-identical to compiling again. It starts empty, so each session still compiles once.

The tests compile hundreds of small programs and run few steps of each, so XLA:CPU's LLVM code generation runs
at optimisation level 1 instead of its default 2: a demo-model benchmark process takes half the CPU time with the
same step time (level 0 would compile faster still but run convolutions ten times slower). XLA's own HLO passes,
which fix the numerics (fusion, reduction order), are unchanged, and LLVM without fast-math does not reorder
floating-point arithmetic. Subprocesses inherit the flag; a test that adds its own (a device count) appends to
it (synthetic.xla_env)."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=1"]).strip()
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="ltkd_jax_tests_xla_cache_")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache_dir, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
