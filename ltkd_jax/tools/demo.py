"""`make demo` = `python -m ltkd_jax.tools.demo [--workdir=DIR]`: Fashion-MNIST-LT
(γ = 100) on the CPU. One teacher is trained once; then a CE student and KD, DKD and LTKD students train
together as one population (one teacher forward pass per batch for all); the last-epoch accuracies per group
end up in one markdown table."""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
from absl import logging

from ltkd_jax import experiment, io, recipes, run_dir, train
from ltkd_jax.data.info import CLASS_GROUPS_FILE
from ltkd_jax.methods import label
from ltkd_jax.tools import report_plots

PAIR = "demo_resnet_teacher-demo_resnet_student"
IMBALANCE_FACTOR = 100
METHODS = ("student", "kd", "dkd", "ltkd")


def demo_config(method: str, data_dir: str = ""):
    config = recipes.build_config("fashion_mnist", f"{method},{PAIR},{IMBALANCE_FACTOR}")
    config.dataset.data_dir = data_dir
    config.log_every_steps = 20
    # 7 of the study's 10 epochs (decay and warm-up scaled with them) keep `make demo` under 8 min on a 2-core
    # CPU; the table still shows the teacher's head bias and LTKD's tail gain.
    config.num_epochs, config.lr_decay_epochs, config.warmup_epochs = 7, (4, 6), 1
    # The table needs the last epoch only: six test-set passes fewer save ~45 s on the 2-core CPU.
    config.eval_every_epochs = config.num_epochs
    return config


def results_table(rows) -> str:
    lines = ["| method | head | medium | tail | all |", "|---|---|---|---|---|"]
    for method, record in rows:
        lines.append(f"| {method} | " + " | ".join(f"{record[k]:.2f}" for k in (
            "accuracy_head", "accuracy_medium", "accuracy_tail", "accuracy")) + " |")
    return "\n".join(lines)


def run_demo(workdir: str, data_dir: str = "", methods=METHODS, **config_overrides) -> str:
    from ltkd_jax.data import prepare  # pylint: disable=import-outside-toplevel

    if jax.process_index() == 0:
        print("Preparing Fashion-MNIST offline ...", flush=True)
    data_dir = prepare.prepare("fashion_mnist", data_dir=data_dir or None)
    # One population: the students share one program and one teacher forward pass per batch.
    distilled = [method for method in methods if method != "student"]
    config = demo_config((distilled or methods)[0], data_dir)
    config.update_from_flattened_dict(config_overrides)
    config.population = ",".join(methods)
    results = experiment.run(config, workdir)
    rows = [(method, run_dir.final_and_best(results[method])[0]) for method in methods]
    if distilled:
        teacher_dir = experiment.teacher_workdir(config, workdir)
        teacher_records = run_dir.read_metrics(teacher_dir)
        rows.insert(0, ("teacher", run_dir.final_and_best(teacher_records)[0]))
    table = results_table(rows)
    if jax.process_index() == 0:
        figures = _figures(workdir, rows, os.path.join(workdir, methods[0]))
        with open(os.path.join(workdir, "results.md"), "w") as f:
            f.write(f"{ONE_SEED}\n\n{table}\n" + "".join(f"\n![{name}]({name})\n" for name in figures))
        print(f"\nFashion-MNIST-LT (γ = {IMBALANCE_FACTOR}), last-epoch test accuracy (%), {ONE_SEED}; "
              f"runs in {os.path.abspath(workdir)}:\n")
        print(table)
        if figures:
            print(f"\nfigures: {', '.join(os.path.join(workdir, name) for name in figures)}")
    return table


ONE_SEED = "one seed (student seed 0, one teacher); several seeds with intervals: docs/results_fashion_mnist_lt.md"


def _figures(workdir: str, rows, member_dir: str):
    """The methods side by side per group, and per class, as the report draws them (one seed: no bars)."""
    try:
        info = json.loads(open(os.path.join(member_dir, CLASS_GROUPS_FILE)).read())
    except (OSError, ValueError):
        return []
    series = [(label(method), [record]) for method, record in rows]
    title = f"Fashion-MNIST-LT, γ = {IMBALANCE_FACTOR}, demo pair"
    written = [report_plots.plot_groups(series, int(info["num_groups"]), os.path.join(workdir, "results_groups.png"),
                                        title),
               report_plots.plot_per_class([s for s in series if s[0] != label("teacher")], info,
                                           os.path.join(workdir, "results_per_class.png"), title)]
    return [os.path.basename(path) for path in written if path]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="workdirs/demo", help="where the runs and results.md go")
    parser.add_argument("--data_dir", default="", help="tfds data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every checkpoint and read at INFO
    config = demo_config("kd")
    train.use_every_cpu_core(config.batch_size, config.eval_batch_size)
    try:
        run_demo(args.workdir, args.data_dir)
    except (ValueError, OSError) as error:
        print(f"error: {io.first_line(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
