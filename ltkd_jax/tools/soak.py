"""Many short real runs back to back, with the default settings, counting the ones that fail or abort.

    python -m ltkd_jax.tools.soak --runs=30 [--epochs=1] [--workdir=workdirs/soak]

Each run is `python -m ltkd_jax.main` on Fashion-MNIST-LT (configs/fashion_mnist_lt.py) in a process of its own, as
a user starts it: teachers (a new seed each cycle), solo students of every logit method, and populations. A run
that exits non-zero is a failure; one killed by a signal (XLA's abort is SIGABRT) is an abort. Exits 1 if any run
did not succeed. Not a test: it takes about a minute a run on a 2-core CPU (docs/benchmarks.md has the counts).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from ltkd_jax import recipes
from ltkd_jax.data import prepare

CONFIG = recipes.CONFIG_FILES["fashion_mnist"]  # relative to the checkout the runs start in
PAIR = "demo_resnet_teacher-demo_resnet_student"
# One cycle: a teacher of its own, solo students, a population (members share one teacher forward).
CYCLE = ("teacher", "student", "kd", "dkd", "ltkd", "bkd", "dive", "kd_ls", "ltkd_ls", "population")
POPULATION = "kd,dkd,ltkd"


def command(kind: str, cycle: int, workdir: str, epochs: int, data_dir: str) -> list:
    method = "kd" if kind in ("teacher", "population") else kind
    args = [sys.executable, "-m", "ltkd_jax.main", f"--config={CONFIG}:{method},{PAIR},100",
            f"--workdir={os.path.join(workdir, f'cycle{cycle}_{kind}')}", f"--config.num_epochs={epochs}",
            f"--config.teacher_num_epochs={epochs}", f"--config.teachers_dir={os.path.join(workdir, 'teachers')}",
            f"--config.dataset.data_dir={data_dir}"]
    if kind == "teacher":  # a new teacher every cycle; the students share seed 0's
        args += ["--config.teacher_only=True", f"--config.teacher_seed={cycle + 1}"]
    if kind == "population":
        args.append(f"--config.population={POPULATION}")
    return args


def outcome(returncode: int) -> str:
    if returncode == 0:
        return "ok"
    if returncode < 0:
        return f"aborted ({signal.Signals(-returncode).name})"
    return f"failed (exit {returncode})"


def soak(runs: int, epochs: int, workdir: str, data_dir: str = "") -> dict:
    """Run `runs` runs of the cycle in turn; returns {'ok': n, 'failed': n, 'aborted': n}."""
    data_dir = prepare.prepare("fashion_mnist", data_dir=data_dir or None)
    os.makedirs(workdir, exist_ok=True)
    counts = {"ok": 0, "failed": 0, "aborted": 0}
    for index in range(runs):
        kind, cycle = CYCLE[index % len(CYCLE)], index // len(CYCLE)
        start = time.perf_counter()
        log_path = os.path.join(workdir, f"cycle{cycle}_{kind}.log")
        with open(log_path, "w") as log:
            returncode = subprocess.call(command(kind, cycle, workdir, epochs, data_dir), cwd=recipes.REPO_ROOT,
                                         stdout=log, stderr=subprocess.STDOUT)
        result = outcome(returncode)
        counts[result.split()[0]] += 1
        print(f"run {index + 1}/{runs} {kind} (cycle {cycle}): {result} in {time.perf_counter() - start:.0f} s"
              + ("" if returncode == 0 else f"; log: {log_path}"), flush=True)
    print(f"soak: {runs} runs: {counts['ok']} ok, {counts['failed']} failed, {counts['aborted']} aborted")
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="number of runs (cycling through %s)" % ", ".join(CYCLE))
    parser.add_argument("--epochs", type=int, default=1, help="epochs of every teacher and student")
    parser.add_argument("--workdir", default="workdirs/soak", help="run directories and each run's log")
    parser.add_argument("--data_dir", default="", help="tfds data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.epochs < 1:
        parser.error(f"--runs={args.runs} and --epochs={args.epochs} must both be >= 1")
    counts = soak(args.runs, args.epochs, os.path.abspath(args.workdir), args.data_dir)
    return 0 if counts["ok"] == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
