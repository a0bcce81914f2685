"""The embedded default (`make demo`, or `python -m ltkd_jax.main` without --config): Fashion-MNIST-LT
(γ = 100) on the CPU. One teacher is trained once; a CE student and KD, DKD and LTKD students follow; the
last-epoch accuracies per group end up in one markdown table."""

from __future__ import annotations

import os

import jax

from ltkd_jax import config_lib, experiment, metrics_log, run_report

PAIR = "demo_resnet_teacher-demo_resnet_student"
IMBALANCE_FACTOR = 100
METHODS = ("student", "kd", "dkd", "ltkd")


def demo_config(method: str, data_dir: str = ""):
    config = config_lib.build_config("fashion_mnist", f"{method},{PAIR},{IMBALANCE_FACTOR}")
    config.dataset.data_dir = data_dir
    config.log_every_steps = 20
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
    rows = []
    teacher_dir = None
    for method in methods:
        config = demo_config(method, data_dir)
        config.update_from_flattened_dict(config_overrides)
        run_dir = os.path.join(workdir, method)
        try:
            records = experiment.run(config, run_dir)
        except experiment.WorkdirConflict as error:  # the demo has no --config to overwrite with
            raise ValueError(f"workdir {error.workdir} holds a demo run of another config ({error.difference}); "
                             f"delete {workdir} or pass another --workdir") from None
        rows.append((method, run_report.final_and_best(records)[0]))
        if method != "student":
            teacher_dir = experiment.teacher_workdir(config, run_dir)
    if teacher_dir:
        teacher_records = metrics_log.read_metrics(os.path.join(teacher_dir, "metrics.jsonl"))
        rows.insert(0, ("teacher", run_report.final_and_best(teacher_records)[0]))
    table = results_table(rows)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.md"), "w") as f:
            f.write(table + "\n")
        print(f"\nFashion-MNIST-LT (γ = {IMBALANCE_FACTOR}), last-epoch test accuracy (%), "
              f"runs in {os.path.abspath(workdir)}:\n")
        print(table)
    return table
