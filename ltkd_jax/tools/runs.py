"""The runs under a directory and their groups over seeds: what `report` tabulates and `sweep` checks as finished.
A group is one data set, γ, method, architecture pair, α/β and variant (the fields that differ from the config
file's default)."""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Dict, List, Optional

import numpy as np
from etils import epath
from scipy import stats  # jax's own dependency: Student t quantiles and tests

from ltkd_jax import config as config_lib, experiment, io, recipes, train
from ltkd_jax.data import longtail
from ltkd_jax.run_dir import CONFIG_FILE, final_and_best

# Fields that do not define what was trained: seeds are aggregated over, the rest is bookkeeping.
IGNORED_FIELDS = experiment.RUNTIME_FIELDS + ("seed", "teacher_seed")
HP_FIELDS = ("distill.alpha", "distill.beta")


@functools.lru_cache(maxsize=None)
def default_flat_config(dataset: str, arg: str) -> dict:
    """`flat_config` of the config `arg` builds for `dataset` with no overrides (cached, so shared: read it, do not
    change it; reports and sweeps ask once per run)."""
    return config_lib.flat_config(recipes.build_config(dataset, arg))


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
        if {CONFIG_FILE, train.METRICS_FILE} <= {child.name for child in children}:
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
        config = json.loads((epath.Path(path) / CONFIG_FILE).read_text())
        records = train.read_metrics(epath.Path(path) / train.METRICS_FILE)
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
    gamma = longtail.gamma_text(config["dataset"]["imbalance_factor"])
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

    def ci95(self, metric: str) -> Optional[float]:
        return ci95(self.values(metric))

    def by_seed(self, metric: str) -> Dict[int, float]:
        return {int(r.config["seed"]): float(r.record[metric]) for r in self.runs if r.record.get(metric) is not None}


def ci95(values) -> Optional[float]:
    """Half-width of the 95% confidence interval of the mean of `values` (Student t, n - 1 degrees of freedom);
    None for fewer than 2."""
    if len(values) < 2:
        return None
    return float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))


def paired_differences(a: Group, b: Group, metric: str) -> np.ndarray:
    """The per-seed differences a - b of `metric` over the seeds both groups have (runs of one seed share teacher,
    data and batches)."""
    x, y = a.by_seed(metric), b.by_seed(metric)
    return np.array([x[s] - y[s] for s in sorted(set(x) & set(y))])


def paired_p(a: Group, b: Group, metric: str) -> Optional[float]:
    """Two-sided p-value of a paired t-test on `paired_differences`; None with fewer than 2 common seeds. A
    difference that is the same at every seed (no spread) is certain: p = 0 (1 where it is zero)."""
    differences = paired_differences(a, b, metric)
    if len(differences) < 2:
        return None
    if np.ptp(differences) == 0:
        return 0.0 if differences[0] != 0 else 1.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


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


def cell_key(dataset: str, pair: str, gamma, method: str, settings=()) -> GroupKey:
    """The group a table cell's runs fall in: its config (as the sweep plans it) with the cell's settings."""
    student = pair.split("-")[1]
    g = longtail.gamma_text(gamma)
    config = recipes.build_config(dataset, f"student,{student}-{student},{g}" if method == "student"
                                  else f"{method},{pair},{g}")
    config.update_from_flattened_dict(dict(settings))
    return group_key(json.loads(config.to_json()))


def describe(key: GroupKey) -> str:
    what = key.teacher if key.method == "teacher" else key.student if key.method == "student" else key.pair
    hp = "" if key.default_hp else f" α={key.alpha:g} β={key.beta:g}"
    variant = f" [{key.variant}]" if key.variant else ""
    return f"{key.dataset} γ={key.gamma} {key.method} {what}{hp}{variant}"
