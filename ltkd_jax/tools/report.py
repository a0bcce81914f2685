"""Aggregate run directories into the paper's tables: mean ± std over seeds, the paper's numbers beside.

    python -m ltkd_jax.tools.report RUNS_DIR [--table=I[,II,...]] [--out=DIR] [--epoch=last|best] [--include_unfinished]

Groups the run directories under RUNS_DIR (local or gs://) over seeds by data set, γ, method, architectures, α/β
and variant (fields that differ from the config file's default); writes `<out>/tables.md` (also printed),
`results.csv` and `fig4.png` (`--out`: default `RUNS_DIR/report`). docs/scaling.md ("Sweeps") has the details.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
from io import StringIO
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
from etils import epath

from ltkd_jax import config as config_lib, experiment, io, train
from ltkd_jax.tools import paper_results
from ltkd_jax.tools.report_tables import CSV_FIELDS, Report
from ltkd_jax.tools.run_report import METRICS_FILE, final_and_best, pyplot, save_png

# Fields that do not define what was trained: seeds are aggregated over, the rest is bookkeeping.
IGNORED_FIELDS = experiment.RUNTIME_FIELDS + ("seed", "teacher_seed")
HP_FIELDS = ("distill.alpha", "distill.beta")
EPOCH_TEXT = {
    "last": "last — each run's final-epoch test accuracy (mdistiller reports the best epoch: --epoch=best)",
    "best": "best — each run's epoch of highest overall test accuracy, T from that same epoch (mdistiller's "
            "convention; the final epoch: --epoch=last)",
}


@functools.lru_cache(maxsize=None)
def default_flat_config(dataset: str, arg: str) -> dict:
    """`flat_config` of the config `arg` builds for `dataset` with no overrides (cached, so shared: read it, do not
    change it; reports and sweeps ask once per run)."""
    return config_lib.flat_config(config_lib.build_config(dataset, arg))


@dataclasses.dataclass
class RunResult:
    path: str
    config: dict
    record: dict  # the chosen test record
    finished: bool
    last_epoch: int


def find_run_dirs(root: str) -> List[str]:
    """Run directories under `root`, local or on an object store (gs://...), in sorted order."""
    found = []

    def visit(directory: epath.Path):  # not Path.walk: its fsspec backend drops the gs:// of the paths it yields
        children = sorted(directory.iterdir(), key=lambda child: child.name)
        if {experiment.CONFIG_FILE, METRICS_FILE} <= {child.name for child in children}:
            found.append(os.fspath(directory))
            return  # not into a run's own outputs (checkpoints: thousands of files on a remote store)
        for child in children:
            # Not through symlinks (os.walk's rule: a link back up, or to another run, would count runs twice).
            if not (io.is_local(child) and os.path.islink(child)) and child.is_dir():
                visit(child)

    visit(epath.Path(root))
    return found


def _relative(path: str, root: str) -> str:
    """`path` relative to `root` (os.path.relpath would mangle gs:// URLs)."""
    return os.fspath(path)[len(os.fspath(epath.Path(root))):].lstrip("/") or "."


def load_run(path: str, epoch: str = "last") -> Optional[RunResult]:
    """The run in `path` with its chosen test record, or None without one (or with an unreadable file)."""
    try:
        config = json.loads((epath.Path(path) / experiment.CONFIG_FILE).read_text())
        records = train.read_metrics(epath.Path(path) / METRICS_FILE)
    except (OSError, ValueError):
        return None
    # A config.json or metrics record that is valid JSON but not an object (`[1, 2]`) is not an ltkd_jax run's.
    if not isinstance(config, dict) or not all(isinstance(r, dict) for r in records):
        return None
    try:
        last, best = final_and_best(records)
        if last is None:
            return None
        last_epoch = max(int(r["epoch"]) for r in records if r.get("split") == "test")
        finished = last_epoch >= int(config["num_epochs"])
    except (KeyError, TypeError, ValueError):  # a test record without accuracy, a non-numeric epoch, ...
        return None
    return RunResult(path, config, best if epoch == "best" else last, finished, last_epoch)


@dataclasses.dataclass(frozen=True)
class GroupKey:
    dataset: str
    gamma: object
    method: str
    teacher: str  # '' for student (CE) runs
    student: str  # '' for teacher runs
    alpha: Optional[float]
    beta: Optional[float]
    default_hp: bool  # alpha/beta are the config's defaults
    variant: str  # other non-default fields, "k=v, ..." ('' = the config's defaults)

    @property
    def pair(self) -> str:
        return f"{self.teacher}-{self.student}"


def _format_field(value) -> str:
    if isinstance(value, list):
        return "(" + ",".join(_format_field(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_key(config: dict) -> GroupKey:
    dataset, method = config["dataset"]["name"], config["method"]
    gamma = float(config["dataset"]["imbalance_factor"])
    gamma = int(gamma) if gamma == int(gamma) else gamma
    teacher, student = config["teacher_model"], config["student_model"]
    defaults = default_flat_config(dataset, f"{method},{teacher}-{student},{gamma}")
    flat = config_lib.flatten(config)
    differing = sorted(k for k in set(flat) | set(defaults) if k not in IGNORED_FIELDS
                       and flat.get(k) != defaults.get(k))
    variant = ", ".join(f"{k}={_format_field(flat.get(k))}" for k in differing if k not in HP_FIELDS)
    alpha, beta = config["distill"].get("alpha"), config["distill"].get("beta")
    return GroupKey(dataset, gamma, method, "" if method == "student" else teacher,
                    "" if method == "teacher" else student, None if alpha is None else float(alpha),
                    None if beta is None else float(beta), not any(k in HP_FIELDS for k in differing), variant)


@dataclasses.dataclass
class Group:
    key: GroupKey
    runs: List[RunResult]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> List[int]:
        return sorted(r.config["seed"] for r in self.runs)

    def values(self, metric: str) -> List[float]:
        return [float(r.record[metric]) for r in self.runs if r.record.get(metric) is not None]

    def mean(self, metric: str) -> Optional[float]:
        values = self.values(metric)
        return float(np.mean(values)) if values else None

    def std(self, metric: str) -> Optional[float]:
        values = self.values(metric)
        return float(np.std(values, ddof=1)) if len(values) > 1 else None


def collect(root: str, epoch: str = "last", include_unfinished: bool = False):
    """(groups by key, notes): every run under `root` aggregated over seeds."""
    groups: Dict[GroupKey, Group] = {}
    skipped, unreadable = [], []
    for path in find_run_dirs(root):
        run = load_run(path, epoch)
        if run is None:
            unreadable.append(path)
            continue
        if not run.finished and not include_unfinished:
            skipped.append(f"{_relative(path, root)} (epoch {run.last_epoch}/{run.config['num_epochs']})")
            continue
        try:
            key = group_key(run.config)
        except (KeyError, TypeError, ValueError, AttributeError):  # a config.json that is not an ltkd_jax run's
            unreadable.append(path)
            continue
        groups.setdefault(key, Group(key, [])).runs.append(run)
    notes = []
    if skipped:
        notes.append(f"{len(skipped)} unfinished runs left out (--include_unfinished to use them): "
                     + "; ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    if unreadable:
        notes.append(f"{len(unreadable)} run directories unreadable or without a test record: "
                     + "; ".join(_relative(p, root) for p in unreadable[:10]))
    for group in groups.values():
        if len(set(group.seeds)) != len(group.seeds):
            notes.append(f"duplicate seeds {group.seeds} in {describe(group.key)}")
    return groups, notes


def describe(key: GroupKey) -> str:
    what = key.teacher if key.method == "teacher" else key.student if key.method == "student" else key.pair
    hp = "" if key.default_hp else f" α={key.alpha:g} β={key.beta:g}"
    variant = f" [{key.variant}]" if key.variant else ""
    return f"{key.dataset} γ={key.gamma} {key.method} {what}{hp}{variant}"


def _cell_identity(dataset, pair, gamma, method, alpha, beta):
    """What a cell is run as: Teacher / Student rows by network, α/β only where they are not the defaults."""
    teacher, student = pair.split("-")
    network = teacher if method == "teacher" else student if method == "student" else pair
    if alpha is not None:
        defaults = default_flat_config(dataset, f"{method},{pair},{gamma}")
        if (float(defaults["distill.alpha"]), float(defaults["distill.beta"])) == (float(alpha), float(beta)):
            alpha = beta = None
    return dataset, float(gamma), method, network, alpha, beta


def _own_cells(name: str):
    """The cells of table `name` that no other table has."""
    layouts = paper_results.LAYOUTS
    others = {_cell_identity(layouts[other]["dataset"], *cell) for other in layouts if other != name
              for cell in paper_results.cells(other)}
    return [cell for cell in paper_results.cells(name)
            if _cell_identity(layouts[name]["dataset"], *cell) not in others]


def tables_with_runs(report: Report) -> List[str]:
    """The tables with a run of a cell proper to them (cells several tables share -- the Teacher rows, Table VII's
    KD / LTKD rows, Fig. 4's default point -- alone do not make a table appear)."""
    def has_runs(name):
        layout = paper_results.LAYOUTS[name]
        return any(report.find(layout["dataset"], gamma, method, pair, variant, alpha, beta) is not None
                   for variant in report.variants(layout) for pair, gamma, method, alpha, beta in _own_cells(name))

    return [name for name in paper_results.TABLE_NAMES if has_runs(name)]


def write_csv(rows: Sequence[dict], path: str) -> None:
    buffer = StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    io.write_file(path, buffer.getvalue())


def plot_fig4(report: Report, path: str) -> Optional[str]:
    plt = pyplot()
    if not report.fig4_series or plt is None:
        return None
    fig, axes = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    ref = paper_results.FIG4_REFERENCE["reviewkd"]
    for ax, (i, col, metric) in zip(axes, ((1, "All", "accuracy"), (0, "T", "accuracy_tail"))):
        for (title, found), color, axis in zip(report.fig4_series.items(), ("tab:blue", "tab:red"), (0, 1)):
            ours = [(p[axis], g.mean(metric), g.std(metric) or 0.0) for p, g in found.items() if g is not None]
            if ours:
                xs, ys, errs = zip(*ours)
                ax.errorbar(xs, ys, yerr=errs, color=color, marker="o", capsize=3, label=f"ours: {title}")
            paper = [(p[axis], paper_results.fig4_value(*p)[i]) for p in found]
            paper = [(x, y) for x, y in paper if y is not None]
            if paper:
                ax.scatter(*zip(*paper), color=color, marker="x", s=60, label=f"paper: {title}")
        ax.axhline(ref[i], color="gray", linestyle="--", label="paper ReviewKD")
        ax.set_ylabel(f"{col} accuracy (%)")
    axes[-1].set_xlabel("α (blue, β = 1) / β (red, α = 6)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_png(fig, path)
    return path


def build(root: str, tables: Optional[Sequence[str]] = None, epoch: str = "last",
          include_unfinished: bool = False):
    """(markdown text, csv rows, report) for the runs under `root`."""
    groups, notes = collect(root, epoch, include_unfinished)
    report = Report(groups, epoch)
    names = list(tables) if tables else tables_with_runs(report)
    lines = [f"# LTKD results: {root}", "",
             f"Epoch: {EPOCH_TEXT[epoch]}.",
             "T = tail-group accuracy, All = overall top-1 accuracy (%); cells are mean ± std over seeds (std with "
             "ddof = 1; one seed shows its value alone); n = seeds per cell.",
             "**Bold**: best, <u>underline</u>: second best per column among the method rows, Teacher excluded "
             "(the paper's rule); Δ = best − second best; LTKD − best other: signed gap to the best non-LTKD "
             "method row.",
             f"{sum(g.n for g in groups.values())} runs in {len(groups)} groups.", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    if not names:
        lines += ["No run of a known table found.", ""]
    for name in names:
        lines += report.render(name)
    return "\n".join(lines) + "\n", report.csv_rows(), report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir")
    parser.add_argument("--table", help=f"{', '.join(paper_results.TABLE_NAMES)}, paper, or several joined by commas "
                                        "(default: every table with runs)")
    parser.add_argument("--out", help="output directory (default RUNS_DIR/report)")
    parser.add_argument("--epoch", choices=("last", "best"), default="last")
    parser.add_argument("--include_unfinished", action="store_true")
    args = parser.parse_args(argv)
    if not epath.Path(args.runs_dir).is_dir():
        parser.error(f"{args.runs_dir} is not a directory")
    try:
        tables = paper_results.parse_tables(args.table) or None  # None: every table with runs
    except ValueError as error:
        parser.error(str(error))
    out = epath.Path(args.out or epath.Path(args.runs_dir) / "report")
    blocking = io.file_in_the_way(out)
    if blocking is not None:
        where = f"--out={args.out}" if args.out else f"the default --out {out}"
        what = "is an existing file" if blocking == out else f"lies under the file {blocking}"
        parser.error(f"{where} {what}, not a directory; give a directory (created if missing)")
    text, rows, report = build(args.runs_dir, tables, args.epoch, args.include_unfinished)
    out.mkdir(parents=True, exist_ok=True)
    io.write_file(out / "tables.md", text)
    write_csv(rows, out / "results.csv")
    plot = plot_fig4(report, out / "fig4.png")
    sys.stdout.write(text)
    sys.stdout.write(f"\nwrote {out / 'tables.md'}, {out / 'results.csv'}" + (f", {plot}" if plot else "") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
