"""A run's directory: the names of the files the experiment writes there, the teacher record, and `report.md`
(results of the last and best epoch, per-class accuracy, the group-sum plot). The files others own keep their names
there: `train.METRICS_FILE`, the checkpoints (`train/checkpoint.py`), the split (`data.write_split`).

The run directory may be local or remote (`gs://...`): files are written through `etils.epath`, plots rendered
into memory first (matplotlib writes local files only)."""

from __future__ import annotations

from io import BytesIO
import json
import os

import numpy as np
from etils import epath

from ltkd_jax import io, train
from ltkd_jax.data import longtail

CONFIG_FILE = "config.json"  # the run's config: the same config resumes, another is refused
TEACHER_FILE = "teacher.json"  # a student's record of the teacher checkpoint it was distilled from
REPORT_FILE = "report.md"

COLUMNS = ("accuracy_head", "accuracy_medium", "accuracy_tail", "accuracy", "accuracy_many", "accuracy_medium_shot",
           "accuracy_few")
HEADERS = ("head", "medium", "tail", "all", "many", "medium-shot", "few")


def read_config(workdir, flag: str = "--workdir"):
    """The config a run directory was trained with (its config.json); a directory without one is one line naming
    it as the command line's `flag` gave it."""
    import ml_collections  # pylint: disable=import-outside-toplevel

    path = epath.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise ValueError(f"{flag}={os.fspath(workdir)!r} is not a run directory (no {CONFIG_FILE})")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def read_metrics(workdir) -> list:
    """The records of the run in `workdir` (none before its first log line)."""
    return train.read_metrics(os.fspath(epath.Path(workdir) / train.METRICS_FILE))


def write_teacher_record(workdir, checkpoint: str, model: str) -> None:
    with io.atomic_open(epath.Path(workdir) / TEACHER_FILE) as f:
        json.dump({"checkpoint": checkpoint, "model": model}, f, indent=2)


def final_and_best(records):
    """The last and the best (highest overall accuracy) test records of a run; mdistiller reports the best."""
    tests = [r for r in records if r.get("split") == "test"]
    if not tests:
        return None, None
    return tests[-1], max(tests, key=lambda r: r["accuracy"])


def _cell(value):
    return "–" if value is None else f"{value:.2f}"


def write_report(workdir: str, config, data) -> str:
    records = read_metrics(workdir)
    last, best = final_and_best(records)
    lines = [f"# {config.method}: {config.teacher_model} → {config.student_model} on {config.dataset.name}-LT "
             f"(γ = {longtail.gamma_text(config.dataset.imbalance_factor)})", ""]
    if last is None:
        lines.append("No evaluation yet.")
    else:
        lines += ["| epoch | " + " | ".join(HEADERS) + " |", "|---" * (len(HEADERS) + 1) + "|"]
        for label, record in (("last", last), ("best", best)):
            lines.append(f"| {label} ({record['epoch']}) | "
                         + " | ".join(_cell(record.get(c)) for c in COLUMNS) + " |")
        try:
            teacher = json.loads((epath.Path(workdir) / TEACHER_FILE).read_text())
            lines += ["", f"Teacher: {teacher['model']}, checkpoint `{teacher['checkpoint']}`"]
        except (OSError, ValueError, KeyError, TypeError):  # a teacher run (no file), or a file edited by hand
            pass
        if "teacher_agreement" in last:
            lines += ["", f"Agreement with the teacher (last epoch): {last['teacher_agreement']:.2f}%"]
        group_of = np.asarray(data.group_ids)
        names = train.group_names(int(group_of.max()) + 1)
        if "ece" in last:
            lines += ["", f"## Calibration and where the predictions fall (last epoch; ECE over {train.CALIBRATION_BINS} "
                      "bins, %)", "", "| | all | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|",
                      "| ECE | " + " | ".join(_cell(last.get(k)) for k in ["ece"] + [f"ece_{n}" for n in names]) + " |",
                      "| mean confidence | " + " | ".join(_cell(last.get(k)) for k in
                                                       ["confidence"] + [f"confidence_{n}" for n in names]) + " |",
                      "| share of predictions | 100.00 | "
                      + " | ".join(_cell(last.get(f"prediction_share_{n}")) for n in names) + " |",
                      "| share of test labels | 100.00 | "
                      + " | ".join(_cell(last.get(f"label_share_{n}")) for n in names) + " |"]
        lines += ["", "## Per-class accuracy (last epoch)", "", "| class | train images | group | accuracy |",
                  "|---|---|---|---|"]
        for c, accuracy in enumerate(last["per_class_accuracy"]):
            label = f"{c} {data.class_names[c]}" if data.class_names else f"{c}"
            lines.append(f"| {label} | {int(data.train_counts[c])} | {names[group_of[c]]} | {_cell(accuracy)} |")
        plots = _plots(workdir, records, last, data)
        if plots:
            lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    text = "\n".join(lines) + "\n"
    io.write_file(epath.Path(workdir) / REPORT_FILE, text)
    return text


def save_png(fig, path) -> None:
    """`fig` as a PNG at `path`, local or remote (rendered in memory, written through epath); closes `fig`."""
    buffer = BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        pyplot().close(fig)
    io.write_file(path, buffer.getvalue())


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None where matplotlib is not installed (optional)."""
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return plt


def _plots(workdir, records, last, data):
    plt = pyplot()
    if plt is None:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    order = np.argsort(-np.asarray(data.train_counts), kind="stable")
    per_class = np.asarray([np.nan if a is None else a for a in last["per_class_accuracy"]], np.float64)
    ax.bar(np.arange(len(order)), per_class[order], color="tab:blue", width=1.0)
    if data.class_names and len(order) <= 40:  # names where they can be read
        ax.set_xticks(np.arange(len(order)), [data.class_names[c] for c in order], rotation=60, ha="right",
                      fontsize=7)
    ax.set_xlabel("class, by training count (descending)")
    ax.set_ylabel("test accuracy (%)")
    twin = ax.twinx()
    twin.plot(np.arange(len(order)), np.asarray(data.train_counts)[order], color="tab:red")
    twin.set_ylabel("training images", color="tab:red")
    fig.tight_layout()
    save_png(fig, epath.Path(workdir) / "per_class_accuracy.png")
    written.append("per_class_accuracy.png")
    sums = [(r["step"], r["teacher_group_sums"], r.get("teacher_group_sums_rebalanced")) for r in records
            if r.get("split") == "train" and r.get("teacher_group_sums")]
    if sums:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        steps = [s for s, _, _ in sums]
        names = train.group_names(len(sums[0][1]))
        for k, name in enumerate(names):
            line, = ax.plot(steps, [b[k] for _, b, _ in sums], label=f"{name}")
            if sums[0][2] is not None:
                ax.plot(steps, [a[k] for _, _, a in sums], linestyle=":", color=line.get_color(),
                        label=f"{name}, rebalanced")
        ax.set_xlabel("step")
        ax.set_ylabel("teacher's group-probability sum per batch")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_png(fig, epath.Path(workdir) / "teacher_group_sums.png")
        written.append("teacher_group_sums.png")
    return written
