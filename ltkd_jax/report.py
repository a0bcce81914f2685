"""Aggregate run directories into the paper's tables (SPEC §5): mean ± std over seeds, the paper's numbers beside.

    python -m ltkd_jax.report RUNS_DIR [--table=I[,II,...]] [--out=DIR] [--epoch=last|best] [--include_unfinished]

Walks RUNS_DIR (local or gs://) for run directories (`config.json` + `metrics.jsonl`), takes each run's test record
of the last epoch (default) or of its best epoch (highest overall accuracy, mdistiller's convention; T from that
same epoch), and groups runs over seeds by (data set, γ, method, architecture(s), α/β, variant):
- a `teacher` run is keyed by the teacher architecture and a `student` (CE) run by the student architecture, so
  the Teacher / Student rows of every pair sharing a network come from the same runs, as in the paper;
- α/β are part of the key (Fig. 4); the paper tables use the groups with the config's default α/β;
- "variant" lists any other config field that differs from `config_lib.build_config`'s default for that run
  (seed and bookkeeping fields excepted), e.g. `num_epochs=1` for a smoke sweep; each variant gets its own tables.
Unfinished runs (no test record of the config's last epoch) are left out unless --include_unfinished.

Writes `<out>/tables.md` (also printed), `<out>/results.csv` (every group found) and, for Fig. 4,
`<out>/fig4.png`; `--out` defaults to `RUNS_DIR/report`.

Ranking rule (the paper's, checked against every Δ row and every legible underline of Tables I-V): per column,
**bold** marks the best and <u>underline</u> the second best among the method rows — Student and every
distillation method — with the Teacher row excluded (Table I, ResNet32×4 – ResNet8×4, γ = 100: the Teacher's T
15.28 beats ReviewKD's 15.09, yet Δ = 27.21 − 15.09; Table II, ResNet32×4 – ShuffleNetV1, γ = 10: DKD's 50.23 is
underlined below the Teacher's 50.72). The paper's numbers cannot tell whether Student is ranked (it never places
first or second); we rank it. Ties share the mark. Δ = best − second best (the paper's Δ row); we add
"LTKD − best other", signed, which equals Δ whenever LTKD is best. Table VI: Δ = Ours − Biased, as the paper.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from etils import epath

from ltkd_jax import config_lib, metrics_log, paper_results
from ltkd_jax.data import _env
from ltkd_jax.run_report import final_and_best, save_png

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
# Fields that do not define what was trained (seeds are aggregated over; the rest is bookkeeping).
IGNORED_FIELDS = ("seed", "teacher_seed", "teachers_dir", "teacher_checkpoint", "overwrite", "log_every_steps",
                  "arg", "arg_error", "dataset.data_dir", "checkpoint_every_epochs", "keep_checkpoints",
                  "steps_per_dispatch", "eval_batch_size", "eval_every_epochs")
HP_FIELDS = ("distill.alpha", "distill.beta")
METRICS = (("T", "accuracy_tail"), ("All", "accuracy"), ("head", "accuracy_head"), ("medium", "accuracy_medium"),
           ("many", "accuracy_many"), ("medium_shot", "accuracy_medium_shot"), ("few", "accuracy_few"))
PAPER_COLUMNS = METRICS[:2]  # the paper's tables report tail (T) and overall (All) accuracy
RANK_EXCLUDED = ("teacher",)
EPOCH_TEXT = {
    "last": "last — each run's final-epoch test accuracy (mdistiller reports the best epoch: --epoch=best)",
    "best": "best — each run's epoch of highest overall test accuracy, T from that same epoch (mdistiller's "
            "convention; the final epoch: --epoch=last)",
}


# ---------------------------------------------------------------------------------------------------------------
# Runs.


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
        if {CONFIG_FILE, METRICS_FILE} <= {child.name for child in children}:
            found.append(os.fspath(directory))
            return  # not into a run's own outputs (checkpoints: thousands of files on a remote store)
        for child in children:
            # Not through symlinks (os.walk's rule: a link back up, or to another run, would count runs twice).
            if not (_env.is_local(child) and os.path.islink(child)) and child.is_dir():
                visit(child)

    visit(epath.Path(root))
    return found


def _relative(path: str, root: str) -> str:
    """`path` relative to `root` (os.path.relpath would mangle gs:// URLs)."""
    return os.fspath(path)[len(os.fspath(epath.Path(root))):].lstrip("/") or "."


def load_run(path: str, epoch: str = "last") -> Optional[RunResult]:
    """The run in `path` with its chosen test record, or None without one (or with an unreadable file)."""
    try:
        config = json.loads((epath.Path(path) / CONFIG_FILE).read_text())
        records = metrics_log.read_metrics(epath.Path(path) / METRICS_FILE)
    except (OSError, ValueError):
        return None
    # A config.json or metrics record that is valid JSON but not an object (`[1, 2]`) is not an ltkd_jax run's.
    if not isinstance(config, dict) or not all(isinstance(r, dict) for r in records):
        return None
    try:
        last, best = final_and_best(records)
        if last is None:
            return None
        num_epochs = int(config.get("num_epochs", 0))
        last_epoch = max(int(r.get("epoch", 0)) for r in records if r.get("split") == "test")
    except (KeyError, TypeError, ValueError):  # a test record without accuracy, a non-numeric epoch, ...
        return None
    return RunResult(path, config, best if epoch == "best" else last, last_epoch >= num_epochs, last_epoch)


def _gamma(value):
    value = float(value)
    return int(value) if value == int(value) else value


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
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def group_key(config: dict) -> GroupKey:
    dataset = config["dataset"]["name"]
    gamma = _gamma(config["dataset"]["imbalance_factor"])
    method = config["method"]
    teacher, student = config["teacher_model"], config["student_model"]
    if method == "teacher":
        student = ""
    elif method == "student":
        teacher = ""
    arg = f"{method},{config['teacher_model']}-{config['student_model']},{gamma}"
    defaults = config_lib.default_flat_config(dataset, arg)
    flat = config_lib.flatten(config)
    # A field the run's config.json lacks was written before the field existed: not a variant.
    differing = sorted(k for k in flat if k not in IGNORED_FIELDS and flat[k] != defaults.get(k))
    variant = ", ".join(f"{k}={_format_field(flat.get(k))}" for k in differing if k not in HP_FIELDS)
    distill = config.get("distill", {})
    alpha, beta = distill.get("alpha"), distill.get("beta")
    return GroupKey(dataset, gamma, method, teacher, student,
                    None if alpha is None else float(alpha), None if beta is None else float(beta),
                    not any(k in HP_FIELDS for k in differing), variant)


@dataclasses.dataclass
class Group:
    key: GroupKey
    runs: List[RunResult]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> List[int]:
        return sorted(r.config.get("seed", 0) for r in self.runs)

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
            skipped.append(f"{_relative(path, root)} (epoch {run.last_epoch}/{run.config.get('num_epochs')})")
            continue
        try:
            key = group_key(run.config)
        except (KeyError, TypeError, ValueError):  # a config.json that is not an ltkd_jax run's
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


# ---------------------------------------------------------------------------------------------------------------
# Cells, ranking.


def fmt(mean: Optional[float], std: Optional[float] = None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def fmt_delta(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:+.2f}"


def rank(values: Dict[str, Optional[float]], excluded: Sequence[str] = RANK_EXCLUDED):
    """({row: 'best' | 'second'}, best − second best) among the rows not excluded that have a value."""
    ranked = sorted((v for r, v in values.items() if v is not None and r not in excluded), reverse=True)
    marks: Dict[str, str] = {}
    if not ranked:
        return marks, None
    for row, value in values.items():
        if value is None or row in excluded:
            continue
        if value == ranked[0]:
            marks[row] = "best"
        elif len(ranked) > 1 and value == ranked[1] and ranked[1] < ranked[0]:
            marks[row] = "second"
    return marks, (ranked[0] - ranked[1] if len(ranked) > 1 else None)


def mark(text: str, how: Optional[str]) -> str:
    if text == "–" or how is None:
        return text
    return f"**{text}**" if how == "best" else f"<u>{text}</u>"


def _fill_cells(ours: Dict, stds: Dict, key: Tuple, group) -> None:
    """Mean and std of a run group's T and All accuracy under `key + (column,)`; None where no runs."""
    for col, metric in PAPER_COLUMNS:
        ours[key + (col,)] = group.mean(metric) if group else None
        stds[key + (col,)] = group.std(metric) if group else None


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align_first_left: int = 1) -> List[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < align_first_left else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Tables.


class Report:
    def __init__(self, groups: Dict[GroupKey, Group], epoch: str = "last"):
        self.groups = groups
        self.epoch = epoch

    # -- lookups --
    def find(self, dataset, gamma, method, pair, variant, alpha=None, beta=None) -> Optional[Group]:
        teacher, student = pair.split("-")
        for key, group in self.groups.items():
            if (key.dataset, key.method, key.variant) != (dataset, method, variant):
                continue
            if float(key.gamma) != float(gamma):
                continue
            if method == "teacher" and key.teacher != teacher or method == "student" and key.student != student:
                continue
            if method not in ("teacher", "student") and key.pair != pair:
                continue
            if alpha is None and not key.default_hp:
                continue
            if alpha is not None and (key.alpha, key.beta) != (float(alpha), float(beta)):
                continue
            return group
        return None

    def variants(self, layout) -> List[str]:
        found = {k.variant for k in self.groups if k.dataset == layout["dataset"]
                 and any(float(k.gamma) == float(g) for g in layout["gammas"])}
        return sorted(found, key=lambda v: (v != "", v))

    def has_data(self, name: str) -> bool:
        """Whether a run of a cell proper to table `name` exists (a cell no other table has: the Teacher rows,
        Table VII's KD / LTKD / inter-only rows and Fig. 4's default point belong to several tables, and alone do
        not make a table appear when no --table is given)."""
        layout = paper_results.LAYOUTS[name]
        for variant in self.variants(layout):
            for pair, gamma, method, alpha, beta in _own_cells(name):
                if self.find(layout["dataset"], gamma, method, pair, variant, alpha, beta) is not None:
                    return True
        return False

    # -- rendering --
    def render(self, name: str) -> List[str]:
        layout = paper_results.LAYOUTS[name]
        lines = []
        for variant in self.variants(layout):
            title = layout["title"] + (f" — variant: {variant}" if variant else "")
            lines += [f"## {title}", ""]
            if layout["kind"] == "main":
                lines += self._main(name, layout, variant)
                if layout.get("extra"):
                    lines += self._fashion_ablation(layout, variant)
            elif layout["kind"] == "ablation":
                lines += self._ablation(name, layout, variant)
            else:
                lines += self._sweep(layout, variant)
        return lines

    def _n_note(self, counts: Dict[str, int]) -> str:
        present = {k: v for k, v in counts.items() if v}
        if not present:
            return "n: no runs"
        common = max(set(present.values()), key=list(present.values()).count)
        odd = [f"{k}: {v}" for k, v in present.items() if v != common]
        return f"n = {common} (seeds) per cell" + (f", except {'; '.join(odd)}" if odd else "")

    def _main(self, name, layout, variant) -> List[str]:
        dataset, gammas = layout["dataset"], layout["gammas"]
        methods = list(layout["methods"])
        has_paper = name in paper_results.MAIN_TABLES
        lines = []
        header = ["Method"] + [f"γ={g} {col}" for g in gammas for col in ("T", "All")]
        for pair in layout["pairs"]:
            lines += [f"### {paper_results.PAIR_LABELS.get(pair, pair)}", ""]
            ours: Dict[Tuple, Optional[float]] = {}
            stds: Dict[Tuple, Optional[float]] = {}
            counts: Dict[str, int] = {}
            for method in methods:
                for g in gammas:
                    group = self.find(dataset, g, method, pair, variant)
                    counts[f"{paper_results.METHOD_LABELS[method]} γ={g}"] = group.n if group else 0
                    _fill_cells(ours, stds, (method, g), group)
            lines += self._ranked_block(header, methods, gammas, ours, stds)
            lines += ["", self._n_note(counts) + f"; epoch: {self.epoch}.", ""]
            if has_paper:
                paper = {(m, g, col): (v[i] if v else None)
                         for m in methods for g in gammas
                         for v in [paper_results.table_value(name, pair, g, m)]
                         for i, col in enumerate(("T", "All"))}
                lines += [f"Paper (Table {name}):", ""]
                lines += self._ranked_block(header, methods, gammas, paper, {})
                lines += ["", "Ours − paper:", ""]
                rows = []
                for m in methods:
                    row = [paper_results.METHOD_LABELS[m]]
                    for g in gammas:
                        for col in ("T", "All"):
                            a, b = ours[(m, g, col)], paper[(m, g, col)]
                            row.append(fmt_delta(a - b) if a is not None and b is not None else "–")
                    rows.append(row)
                lines += _table(header, rows) + [""]
        return lines

    def _ranked_block(self, header, methods, gammas, values, stds) -> List[str]:
        marks, deltas, ltkd_gap = {}, {}, {}
        for g in gammas:
            for col in ("T", "All"):
                column = {m: values[(m, g, col)] for m in methods}
                column_marks, delta = rank(column)
                for m, how in column_marks.items():
                    marks[(m, g, col)] = how
                deltas[(g, col)] = delta
                others = [v for m, v in column.items() if m not in RANK_EXCLUDED + ("ltkd",) and v is not None]
                ltkd = column.get("ltkd")
                ltkd_gap[(g, col)] = ltkd - max(others) if ltkd is not None and others else None
        rows = []
        for m in methods:
            row = [paper_results.METHOD_LABELS[m]]
            for g in gammas:
                for col in ("T", "All"):
                    row.append(mark(fmt(values[(m, g, col)], stds.get((m, g, col))), marks.get((m, g, col))))
            rows.append(row)
        rows.append(["Δ (best − 2nd)"] + [fmt_delta(deltas[(g, c)]) for g in gammas for c in ("T", "All")])
        if "ltkd" in methods:
            rows.append(["LTKD − best other"] + [fmt_delta(ltkd_gap[(g, c)]) for g in gammas for c in ("T", "All")])
        return _table(header, rows)

    def _ablation(self, name, layout, variant) -> List[str]:
        dataset, gamma = layout["dataset"], layout["gammas"][0]
        methods, pairs = list(layout["methods"]), list(layout["pairs"])
        labels = paper_results.ABLATION_LABELS.get(name, {})
        header = ["Loss", "Inter", "Intra"] + [f"{paper_results.PAIR_LABELS[p]} {c}" for p in pairs
                                                for c in ("T", "All")]
        ours, stds, counts = {}, {}, {}
        for m in methods:
            for p in pairs:
                group = self.find(dataset, gamma, m, p, variant)
                counts[f"{labels.get(m, m)} {p}"] = group.n if group else 0
                _fill_cells(ours, stds, (m, p), group)
        lines = self._ablation_block(name, header, methods, pairs, ours, stds, labels)
        lines += ["", self._n_note(counts) + f"; epoch: {self.epoch}.", ""]
        if name in paper_results.ABLATION_TABLES:
            paper = {(m, p, col): (v[i] if v else None) for m in methods for p in pairs
                     for v in [paper_results.table_value(name, p, gamma, m)] for i, col in enumerate(("T", "All"))}
            lines += [f"Paper (Table {name}):", ""]
            lines += self._ablation_block(name, header, methods, pairs, paper, {}, labels) + [""]
            rows = []
            for m in methods:
                row = [labels.get(m, m), *paper_results.ABLATION_COMPONENTS[m]]
                for p in pairs:
                    for col in ("T", "All"):
                        a, b = ours[(m, p, col)], paper[(m, p, col)]
                        row.append(fmt_delta(a - b) if a is not None and b is not None else "–")
                rows.append(row)
            lines += ["Ours − paper:", ""] + _table(header, rows, 3) + [""]
        return lines

    def _ablation_block(self, name, header, methods, pairs, values, stds, labels) -> List[str]:
        marks = {}
        for p in pairs:
            for col in ("T", "All"):
                column_marks, _ = rank({m: values[(m, p, col)] for m in methods}, excluded=())
                for m, how in column_marks.items():
                    if name == "VI" and how == "second":
                        continue  # two rows: only the better one is marked
                    marks[(m, p, col)] = how
        rows = []
        for m in methods:
            row = [labels.get(m, paper_results.METHOD_LABELS.get(m, m)), *paper_results.ABLATION_COMPONENTS[m]]
            for p in pairs:
                for col in ("T", "All"):
                    row.append(mark(fmt(values[(m, p, col)], stds.get((m, p, col))), marks.get((m, p, col))))
            rows.append(row)
        if name == "VI":
            first, second = methods
            row = ["Δ (Ours − Biased)", "", ""]
            for p in pairs:
                for col in ("T", "All"):
                    a, b = values[(second, p, col)], values[(first, p, col)]
                    row.append(fmt_delta(a - b) if a is not None and b is not None else "–")
            rows.append(row)
        return _table(header, rows, 3)

    def _fashion_ablation(self, layout, variant) -> List[str]:
        lines = []
        for gamma, extra in layout["extra"].items():
            methods = ["kd", *extra, "ltkd"]
            lines += [f"### Ablation at γ = {gamma}", ""]
            sub = dict(layout, kind="ablation", gammas=(gamma,), methods=tuple(methods))
            lines += self._ablation("fashion_mnist", sub, variant)
        return lines

    def _sweep(self, layout, variant) -> List[str]:
        dataset, gamma, pair = layout["dataset"], layout["gammas"][0], layout["pairs"][0]
        lines = []
        self.fig4_series = {}
        series = (("β = 1, α varied", [p for p in layout["points"] if p[1] == 1.0]),
                  ("α = 6, β varied", [p for p in layout["points"] if p[0] == 6.0]))
        header = ["α", "β", "T", "All", "n", "paper T", "paper All"]
        for title, points in series:
            values = {}
            for point in points:
                group = self.find(dataset, gamma, "ltkd", pair, variant, *point)
                values[point] = group
            marks = {}
            for col, metric in PAPER_COLUMNS:
                column_marks, _ = rank({p: (g.mean(metric) if g else None) for p, g in values.items()}, ())
                for p, how in column_marks.items():
                    marks[(p, col)] = how
            rows = []
            for point, group in values.items():
                paper = paper_results.fig4_value(*point) or (None, None)
                cells = []
                for col, metric in PAPER_COLUMNS:
                    text = fmt(group.mean(metric), group.std(metric)) if group else "–"
                    cells.append(mark(text, marks.get((point, col))))
                rows.append([f"{point[0]:g}", f"{point[1]:g}", *cells, str(group.n if group else 0),
                             fmt(paper[0]), fmt(paper[1])])
            lines += [f"### {title}", ""] + _table(header, rows, 2) + [""]
            self.fig4_series[title] = values
        ref = paper_results.FIG4_REFERENCE["reviewkd"]
        lines += [f"Paper reference line: ReviewKD T {ref[0]:.2f}, All {ref[1]:.2f} (Table I). Paper values are "
                  f"those its text states (Fig. 4 itself is an image); epoch: {self.epoch}.", ""]
        return lines

    # -- CSV --
    def csv_rows(self) -> List[dict]:
        rows = []
        for key in sorted(self.groups, key=lambda k: (k.dataset, float(k.gamma), k.teacher, k.student, k.method,
                                                       k.alpha or 0, k.beta or 0, k.variant)):
            group = self.groups[key]
            if key.default_hp:
                paper, source = paper_results.lookup(key.dataset, key.gamma, key.method, teacher=key.teacher,
                                                     student=key.student, with_source=True)
            else:
                paper, source = None, None
                if (key.dataset, float(key.gamma), key.method, key.pair) == (
                        "cifar100", 20.0, "ltkd", "resnet32x4-resnet8x4"):
                    paper, source = paper_results.fig4_value(key.alpha, key.beta), "Fig. 4"
            row = dict(dataset=key.dataset, gamma=key.gamma, method=key.method, teacher=key.teacher,
                       student=key.student, alpha="" if key.alpha is None else key.alpha,
                       beta="" if key.beta is None else key.beta, variant=key.variant, epoch=self.epoch,
                       n=group.n, seeds=" ".join(map(str, group.seeds)),
                       epochs=" ".join(str(r.record.get("epoch")) for r in group.runs))
            for name, metric in METRICS:
                mean, std = group.mean(metric), group.std(metric)
                row[f"{name}_mean"] = "" if mean is None else round(mean, 4)
                row[f"{name}_std"] = "" if std is None else round(std, 4)
            for i, name in enumerate(("T", "All")):
                value = paper[i] if paper else None
                row[f"paper_{name}"] = "" if value is None else value
                mean = group.mean("accuracy_tail" if name == "T" else "accuracy")
                row[f"diff_{name}"] = "" if value is None or mean is None else round(mean - value, 4)
            row["paper_source"] = source or ""
            rows.append(row)
        return rows


def _cells(layout):
    """(pair, gamma, method, alpha, beta) of every cell of a layout."""
    for pair in layout["pairs"]:
        for gamma in layout["gammas"]:
            if layout["kind"] == "sweep":
                for alpha, beta in layout["points"]:
                    yield pair, gamma, "ltkd", alpha, beta
            else:
                methods = tuple(layout["methods"]) + tuple(layout.get("extra", {}).get(gamma, ()))
                for method in methods:
                    yield pair, gamma, method, None, None


def _cell_identity(dataset, pair, gamma, method, alpha, beta):
    """What a cell is run as: Teacher / Student rows by network, α/β only where they are not the defaults."""
    teacher, student = pair.split("-")
    network = teacher if method == "teacher" else student if method == "student" else pair
    if alpha is not None:
        defaults = config_lib.build_config(dataset, f"{method},{pair},{gamma}").distill
        if (float(defaults.alpha), float(defaults.beta)) == (float(alpha), float(beta)):
            alpha = beta = None
    return dataset, float(gamma), method, network, alpha, beta


def _own_cells(name: str):
    """The cells of table `name` that no other table has."""
    layouts = paper_results.LAYOUTS
    others = {_cell_identity(layouts[other]["dataset"], *cell) for other in layouts if other != name
              for cell in _cells(layouts[other])}
    dataset = layouts[name]["dataset"]
    return [cell for cell in _cells(layouts[name]) if _cell_identity(dataset, *cell) not in others]


CSV_FIELDS = (["dataset", "gamma", "method", "teacher", "student", "alpha", "beta", "variant", "epoch", "n", "seeds",
               "epochs"] + [f"{name}_{s}" for name, _ in METRICS for s in ("mean", "std")]
              + ["paper_T", "paper_All", "diff_T", "diff_All", "paper_source"])


def write_csv(rows: Sequence[dict], path: str) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _env.write_file(path, buffer.getvalue())


def plot_fig4(report: Report, path: str) -> Optional[str]:
    series = getattr(report, "fig4_series", None)
    if not series:
        return None
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    fig, axes = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    ref = paper_results.FIG4_REFERENCE["reviewkd"]
    for ax, (col, metric, ref_value) in zip(axes, (("All", "accuracy", ref[1]), ("T", "accuracy_tail", ref[0]))):
        for (title, values), color, axis in zip(series.items(), ("tab:blue", "tab:red"), (0, 1)):
            xs = [p[axis] for p, g in values.items() if g is not None]
            ys = [values[p].mean(metric) for p in values if values[p] is not None]
            errs = [values[p].std(metric) or 0.0 for p in values if values[p] is not None]
            if xs:
                ax.errorbar(xs, ys, yerr=errs, color=color, marker="o", capsize=3, label=f"ours: {title}")
            paper = [(p[axis], paper_results.fig4_value(*p)[0 if col == "T" else 1]) for p in values]
            paper = [(x, y) for x, y in paper if y is not None]
            if paper:
                ax.scatter(*zip(*paper), color=color, marker="x", s=60, label=f"paper: {title}")
        ax.axhline(ref_value, color="gray", linestyle="--", label="paper ReviewKD")
        ax.set_ylabel(f"{col} accuracy (%)")
    axes[-1].set_xlabel("α (blue, β = 1) / β (red, α = 6)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)
    return path


def build(root: str, tables: Optional[Sequence[str]] = None, epoch: str = "last",
          include_unfinished: bool = False):
    """(markdown text, csv rows, report) for the runs under `root`."""
    groups, notes = collect(root, epoch, include_unfinished)
    report = Report(groups, epoch)
    names = list(tables) if tables else [n for n in paper_results.TABLE_NAMES if report.has_data(n)]
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


def parse_tables(text: Optional[str]) -> Optional[List[str]]:
    """The tables of `--table`, or None (every table with data) where none is given."""
    return paper_results.parse_tables(text) or None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.report", description=__doc__.split("\n\n")[0])
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
        tables = parse_tables(args.table)
    except ValueError as error:
        parser.error(str(error))
    out = epath.Path(args.out or epath.Path(args.runs_dir) / "report")
    blocking = _env.file_in_the_way(out)
    if blocking is not None:
        where = f"--out={args.out}" if args.out else f"the default --out {out}"
        what = "is an existing file" if blocking == out else f"lies under the file {blocking}"
        parser.error(f"{where} {what}, not a directory; give a directory (created if missing)")
    text, rows, report = build(args.runs_dir, tables, args.epoch, args.include_unfinished)
    out.mkdir(parents=True, exist_ok=True)
    _env.write_file(out / "tables.md", text)
    write_csv(rows, out / "results.csv")
    plot = plot_fig4(report, out / "fig4.png")
    sys.stdout.write(text)
    sys.stdout.write(f"\nwrote {out / 'tables.md'}, {out / 'results.csv'}" + (f", {plot}" if plot else "") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
