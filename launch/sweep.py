"""Enumerate, print and launch the runs of a paper table (SPEC §5): pairs × γ × methods × seeds.

    python launch/sweep.py TABLE [--dry_run] [--launcher=local|slurm|tpu] [--seeds=0,1,2] [--runs_dir=runs]
                           [--teacher_seeds=paired|shared] [--methods=kd,ltkd] [--gammas=20] [--pairs=vgg13-vgg8]
                           [--device=h200|cpu2] [--config.FIELD=VALUE ...]

TABLE: I, II (CIFAR-100-LT), III, IV (TinyImageNet-LT), V (ImageNet-LT), VI, VII (ablations, CIFAR-100-LT γ=20),
fig4 (LTKD's α/β on resnet32x4 → resnet8x4, CIFAR-100-LT γ=20), fashion_mnist (this repository's offline study),
`paper` (I-VII and fig4), or several joined by commas (`I,II`): runs shared between tables are listed once.
Extra `--config.FIELD=VALUE` arguments go to every run that has the field (e.g. `--config.num_epochs=1` for a smoke
sweep; teachers get the equivalent teacher settings); an override that no run has is an error.

Design
- Teachers are trained once. A teacher run is `python -m ltkd_jax.main --config=<family>:teacher,T-T,γ` with
  `--workdir` set to exactly the path `experiment.teacher_workdir` computes for its students
  (`<runs_dir>/teachers/<data set>_gamma<γ>/<T>_seed<s>_ep<E>_bs<B>`) and the overrides that make its resolved
  config equal `experiment.teacher_config(student config)`; a student finds that directory finished and only
  reloads the checkpoint. Every student run passes `--config.teachers_dir=<runs_dir>/teachers`. Teacher runs are
  listed first. The paper's Teacher row is these runs.
- Teacher seeds (`--teacher_seeds=paired`, the default): the paper repeats each experiment three times and
  reports a Teacher row averaged over them, so each seed s gets its own teacher (teacher seed s) and the student
  of seed s distils from it (`--config.teacher_seed=s`). Table I: 4 teachers × 3 γ × 3 seeds = 36 teacher runs.
  `--teacher_seeds=shared`: one teacher (seed 0) per (data set, γ, architecture) for every student seed.
- The Student row is a cross-entropy run of the student architecture alone (`student,S-S,γ`), one per
  (data set, γ, architecture, seed): pairs that share a student share it, as the paper's tables do (Table II lists
  identical Student rows for the two ShuffleNetV1 and the two MobileNetV2 pairs).
- Run directories: `<runs_dir>/<data set>_gamma<γ>/<T>-<S>/<method>[_alphaA][_betaB]/seed<s>` (the suffix only
  for α/β that differ from the config's defaults, so Fig. 4's α=6, β=6 point is Table I's LTKD run), and
  `<runs_dir>/<data set>_gamma<γ>/<S>/student/seed<s>`.
- Launchers: `local` prints the commands, and without --dry_run runs them one after another (teachers first),
  skipping runs whose directory holds the same config and a test record of the last epoch, and skipping students
  whose teacher failed. `slurm` prints a bash script of `sbatch --parsable launch/slurm.sbatch -- <args>` lines:
  teacher job ids are kept in shell variables and every student is submitted with
  `--dependency=afterok:$TEACHER_JOB` (pipe it into bash). `tpu` prints `launch/tpu_vm.sh <args>` lines, teachers
  first, to be run in order (each waits for its run); `--sweep_file=FILE` also writes the runs' arguments for
  `launch/tpu_vm.sh --sweep=FILE` (one VM session, the runs one after another). The slurm and tpu launchers only
  print. `--sbatch_args` (default `--nodes=1 --ntasks-per-node=1 --gres=gpu:1`) goes to every sbatch.
- Cost estimate (printed with every plan): see `COST_MODEL`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Set, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ltkd_jax import config_lib, experiment, paper_results, report  # noqa: E402
from ltkd_jax.data import _env, longtail  # noqa: E402

# Fields a sweep sets itself: not accepted as extra overrides.
SWEEP_FIELDS = ("seed", "teacher_seed", "teachers_dir")

# ---------------------------------------------------------------------------------------------------------------
# Cost model.
#
# Forward GFLOPs per image (XLA cost analysis, `python -m ltkd_jax.models`): CIFAR-style models at 32×32 with 100
# classes, ImageNet models at 224×224 with 1000 classes. Other resolutions scale with the pixel count
# (TinyImageNet 64×64: ×4; Fashion-MNIST 28×28: ×0.766; ImageNet `image_size`: (size/224)²).
GFLOPS = {
    "resnet8x4": 0.328, "resnet32x4": 1.980, "resnet32": 0.129, "resnet110": 0.486, "vgg8": 0.149,
    "vgg13": 0.460, "wrn_40_1": 0.153, "wrn_40_2": 0.598, "shufflenet_v1": 0.086, "mobilenet_v2": 0.014,
    "resnet50_cifar": 2.472, "demo_resnet_teacher": 0.0253, "demo_resnet_student": 0.00145,
    "resnet18": 3.375, "resnet34": 6.778, "resnet50": 7.997, "mobilenet_v1": 1.156,
}
# A training step costs 3 forwards of the trained network (forward + backward) plus one teacher forward when
# distilling; evaluation (every `eval_every_epochs`, whole test set) one forward of the trained network plus the
# teacher's (the eval step also measures agreement with the teacher). FitNet/ReviewKD connectors are ignored.
DEVICES = {
    # Anchor (reference/ANCHOR_THROUGHPUT.md): one H200, JAX fp32, batch 64, resnet32x4 → resnet8x4 distillation
    # at 24,417 img/s = 24,417 × (1.980 + 3 × 0.328) GFLOP/s ≈ 72 TFLOP/s of XLA-counted work. Assumed to hold for
    # every model (bigger ImageNet convolutions would run faster, a host input pipeline may run slower), with a
    # floor of 1 ms per batch-64 step for the small networks (at most 64k img/s training, 256k img/s eval).
    "h200": dict(label="one NVIDIA H200 (fp32, batch 64)", gflop_per_s=24_417 * (1.980 + 3 * 0.328),
                 max_train_ips=64_000, max_eval_ips=256_000),
    # Anchor (reference/PILOT_FASHION_MNIST.md): the 2-core CPU trained the demo teacher at 763 img/s on 28×28.
    "cpu2": dict(label="the 2-core CPU", gflop_per_s=763 * 3 * 0.0253 * (28 * 28) / (32 * 32),
                 max_train_ips=math.inf, max_eval_ips=math.inf),
}
FULL_CLASS_COUNTS = {
    "cifar100": np.full(100, 500), "tiny_imagenet": np.full(200, 500), "fashion_mnist": np.full(10, 6000),
    # Approximation: ImageNet's real per-class counts range over 732-1300 (1,281,167 in all); the exponential
    # profile is applied here to a flat 1,281 per class.
    "imagenet2012": np.full(1000, 1281),
}
EVAL_IMAGES = {"cifar100": 10_000, "tiny_imagenet": 10_000, "imagenet2012": 50_000, "fashion_mnist": 10_000}
COST_MODEL = (
    "cost model: images/s scaled from the anchor by the models' forward GFLOPs (train step = 3 × trained net "
    "+ 1 × teacher forward; eval every epoch on the full test set), training images per epoch from the "
    "exponential LT profile (ImageNet-LT approximated on a flat 1,281 images per class)")


def resolution_scale(config) -> float:
    name = config.dataset.name
    if name == "tiny_imagenet":
        return 4.0
    if name == "fashion_mnist":
        return (28 * 28) / (32 * 32)
    if name == "imagenet2012":
        return ((config.dataset.image_size or 224) / 224) ** 2
    return 1.0


def train_images(config) -> int:
    name = config.dataset.name
    return int(longtail.exponential_counts(FULL_CLASS_COUNTS[name], config.dataset.imbalance_factor).sum())


def run_seconds(config, device: str = "h200") -> float:
    """Estimated device seconds of one run (its resolved config) on `device`."""
    spec = DEVICES[device]
    distilling = config.method not in config_lib.CE_METHODS
    trained = config.teacher_model if config.method == "teacher" else config.student_model
    scale = resolution_scale(config)
    train_cost = (3 * GFLOPS[trained] + (GFLOPS[config.teacher_model] if distilling else 0.0)) * scale
    eval_cost = (GFLOPS[trained] + (GFLOPS[config.teacher_model] if distilling else 0.0)) * scale
    train_ips = min(spec["gflop_per_s"] / train_cost, spec["max_train_ips"])
    eval_ips = min(spec["gflop_per_s"] / eval_cost, spec["max_eval_ips"])
    epochs = config.num_epochs
    evals = math.ceil(epochs / config.eval_every_epochs)
    return (epochs * train_images(config) / train_ips
            + evals * EVAL_IMAGES[config.dataset.name] / eval_ips)


# ---------------------------------------------------------------------------------------------------------------
# Config overrides (what `--config.FIELD=VALUE` does to a config in ltkd_jax.main).


def has_field(config, path: str) -> bool:
    node = config
    for part in path.split("."):
        if not hasattr(node, "keys") or part not in node.keys():
            return False
        node = node[part]
    return True


def format_value(value) -> str:
    """A value as `--config.FIELD=` takes it (ml_collections parses it by the field's type)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple)):
        inner = ",".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parse_value(current, text: str):
    """`text` parsed as ml_collections does for a field whose current value is `current`."""
    import ast  # pylint: disable=import-outside-toplevel
    if isinstance(current, bool):
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, tuple):
        try:
            value = ast.literal_eval(text)
        except (SyntaxError, ValueError):  # ast's own text names its internal nodes ("<ast.Name object at 0x..>")
            raise ValueError(f"{text!r} is not a tuple such as (6,8)") from None
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if isinstance(current, str):
        return text
    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError):
        return text


def apply_overrides(config, overrides: Sequence[str]):
    """Apply `--config.a.b=value` strings to `config` in place (unknown fields raise, as a locked config does)."""
    for item in overrides:
        if not item.startswith("--config.") or "=" not in item:
            raise ValueError(f"override {item!r} must look like --config.FIELD=VALUE")
        path, text = item[len("--config."):].split("=", 1)
        if not has_field(config, path):
            raise ValueError(f"config has no field {path!r} (override {item!r})")
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        current = node[leaf]
        try:
            node[leaf] = parse_value(current, text)
        except (SyntaxError, TypeError, ValueError) as error:  # a value of another type (a locked config refuses)
            reason = _env.first_line(error)
            now = "a group of fields" if hasattr(current, "keys") else format_value(current)
            raise ValueError(f"--config.{path}={text!r} is not a valid value of field {path} "
                             f"({type(current).__name__}, now {now}): {reason}") from None
    return config


def overrides_between(base, target) -> List[str]:
    """The `--config.FIELD=VALUE` strings that turn `base` into `target` (same fields, other values)."""
    flat_base, flat_target = config_lib.flat_config(base), config_lib.flat_config(target)
    if set(flat_base) != set(flat_target):
        raise ValueError(f"configs have different fields: {sorted(set(flat_base) ^ set(flat_target))}")
    return [f"--config.{path}={format_value(flat_target[path])}" for path in flat_target
            if flat_target[path] != flat_base[path]]


# ---------------------------------------------------------------------------------------------------------------
# The plan.


@dataclasses.dataclass
class Run:
    kind: str  # "teacher" or "student" (every non-teacher run, the CE Student row included)
    dataset: str
    arg: str  # "method,teacher-student,gamma"
    workdir: str
    overrides: Tuple[str, ...]
    config: object  # the resolved ml_collections config
    teacher_workdir: Optional[str] = None  # the teacher run this run needs
    tables: List[str] = dataclasses.field(default_factory=list)

    @property
    def config_flag(self) -> str:
        return f"--config={paper_results.CONFIG_FILES[self.dataset]}:{self.arg}"

    def args(self) -> List[str]:
        return [self.config_flag, f"--workdir={self.workdir}", *self.overrides]

    def command(self, python: str = "python") -> str:
        return shlex.join([python, "-m", "ltkd_jax.main", *self.args()])

    @property
    def method(self) -> str:
        return self.config.method


def table_entries(table: str) -> List[Tuple[str, object, str, Dict[str, float]]]:
    """(pair, gamma, method, hyper-parameters) of every cell of a table (seeds not included)."""
    layout = paper_results.LAYOUTS[table]
    entries = []
    for pair in layout["pairs"]:
        for gamma in layout["gammas"]:
            if layout["kind"] == "sweep":
                for alpha, beta in layout["points"]:
                    entries.append((pair, gamma, "ltkd", {"distill.alpha": alpha, "distill.beta": beta}))
                continue
            methods = tuple(layout["methods"]) + tuple(layout.get("extra", {}).get(gamma, ()))
            entries += [(pair, gamma, method, {}) for method in methods]
    return entries


def _build(dataset: str, arg: str):
    config = config_lib.build_config(dataset, arg)
    if config.arg_error:
        raise ValueError(config.arg_error)
    return config


class Planner:
    def __init__(self, runs_dir: str, seeds: Sequence[int], teacher_seeds: str = "paired",
                 extra_overrides: Sequence[str] = ()):
        if teacher_seeds not in ("paired", "shared"):
            raise ValueError(f"--teacher_seeds={teacher_seeds!r}: use 'paired' or 'shared'")
        for item in extra_overrides:
            field = item[len("--config."):].split("=", 1)[0] if item.startswith("--config.") else ""
            if field in SWEEP_FIELDS:
                raise ValueError(f"{item!r}: the sweep sets {field} itself (use --seeds / --teacher_seeds)")
        self.runs_dir = runs_dir
        self.seeds = list(seeds)
        self.teacher_seeds = teacher_seeds
        self.extra = list(extra_overrides)
        self.used_extra = set()
        self.teachers: Dict[str, Run] = {}
        self.students: Dict[str, Run] = {}

    def _extra_for(self, config) -> List[str]:
        chosen = []
        for item in self.extra:
            if has_field(config, item[len("--config."):].split("=", 1)[0]):
                chosen.append(item)
                self.used_extra.add(item)
        return chosen

    def _teacher_seed(self, seed: int) -> int:
        return seed if self.teacher_seeds == "paired" else 0

    def _add(self, registry: Dict[str, Run], run: Run, table: str) -> Run:
        existing = registry.get(run.workdir)
        if existing is None:
            try:  # what ltkd_jax.main would refuse at start-up (bad overrides: batch_size=0, a model name, ...)
                experiment.validate(run.config)
            except ValueError as error:
                raise ValueError(f"the {run.config_flag} run at {run.workdir} is invalid: "
                                 f"{_env.first_line(error)}") from None
            registry[run.workdir] = run
            existing = run
        elif existing.args() != run.args():
            raise ValueError(f"two different runs want {run.workdir}:\n  {existing.command()}\n  {run.command()}")
        if table not in existing.tables:
            existing.tables.append(table)
        return existing

    def add_teacher_for(self, student_config, student_workdir: str, table: str) -> Run:
        """The run that trains `student_config`'s teacher, at the path the student will look for it."""
        target = experiment.teacher_config(student_config)
        gamma = longtail.gamma_text(target.dataset.imbalance_factor)
        arg = f"teacher,{target.teacher_model}-{target.teacher_model},{gamma}"
        base = _build(target.dataset.name, arg)
        overrides = overrides_between(base, target)
        # The seed first and always explicit, then whatever else differs from the teacher's defaults.
        overrides = [f"--config.seed={target.seed}"] + [o for o in overrides if not o.startswith("--config.seed=")]
        config = apply_overrides(base, overrides)
        if experiment.config_differences(json.loads(config.to_json()), target):
            raise AssertionError(f"teacher overrides {overrides} do not reproduce the teacher config")
        workdir = experiment.teacher_workdir(student_config, student_workdir)
        run = Run("teacher", target.dataset.name, arg, workdir, tuple(overrides), config, tables=[])
        return self._add(self.teachers, run, table)

    def add(self, table: str, dataset: str, pair: str, gamma, method: str, hparams: Dict[str, float], seed: int):
        teacher, student = pair.split("-")
        g = longtail.gamma_text(gamma)
        cell = os.path.join(self.runs_dir, f"{dataset}_gamma{g}")
        teachers_dir = os.path.join(self.runs_dir, "teachers")
        if method == "teacher":
            # The Teacher row: the shared teacher run itself, found through a teacher-method probe config
            # (teacher_config reads only the recipe and teacher_* fields, identical for every student).
            probe_arg = f"teacher,{teacher}-{teacher},{g}"
            probe = _build(dataset, probe_arg)
            probe_overrides = [f"--config.teacher_seed={self._teacher_seed(seed)}",
                               f"--config.teachers_dir={teachers_dir}", *self._extra_for(probe)]
            probe = apply_overrides(probe, probe_overrides)
            self.add_teacher_for(probe, os.path.join(cell, "probe"), table)
            return
        if method == "student":
            arg = f"student,{student}-{student},{g}"
            workdir = os.path.join(cell, student, "student", f"seed{seed}")
            config = _build(dataset, arg)
            overrides = [f"--config.seed={seed}", *self._extra_for(config)]
            apply_overrides(config, overrides)
            self._add(self.students, Run("student", dataset, arg, workdir, tuple(overrides), config), table)
            return
        arg = f"{method},{pair},{g}"
        config = _build(dataset, arg)
        hp_overrides, suffix = [], ""
        for path, value in sorted(hparams.items()):
            current = config
            for part in path.split("."):
                current = current[part]
            if float(current) != float(value):
                hp_overrides.append(f"--config.{path}={format_value(float(value))}")
                suffix += f"_{path.split('.')[-1]}{float(value):g}"
        workdir = os.path.join(cell, pair, method + suffix, f"seed{seed}")
        overrides = [f"--config.seed={seed}", f"--config.teacher_seed={self._teacher_seed(seed)}",
                     f"--config.teachers_dir={teachers_dir}", *hp_overrides]
        apply_overrides(config, overrides)
        extra = self._extra_for(config)
        apply_overrides(config, extra)
        teacher_run = self.add_teacher_for(config, workdir, table)
        run = Run("student", dataset, arg, workdir, tuple(overrides + extra), config,
                  teacher_workdir=teacher_run.workdir)
        self._add(self.students, run, table)

    def runs(self) -> List[Run]:
        unused = [item for item in self.extra if item not in self.used_extra]
        if unused:
            raise ValueError(f"no run of this sweep has the field of {', '.join(unused)}")
        return list(self.teachers.values()) + list(self.students.values())


def parse_tables(text: str) -> List[str]:
    tables = paper_results.parse_tables(text)
    if not tables:
        raise ValueError("no table given")
    return tables


def _csv(text: Optional[str], cast=str):
    return None if not text else [cast(x.strip()) for x in text.split(",") if x.strip()]


def selected(method: str, gamma, pair: str, methods=None, gammas=None, pairs=None) -> bool:
    """Whether the cell (method, gamma, pair) passes the --methods / --gammas / --pairs selection (None: all)."""
    return ((not methods or method in methods) and (not gammas or float(gamma) in [float(g) for g in gammas])
            and (not pairs or pair in pairs))


def check_selection(tables: Sequence[str], methods=None, gammas=None, pairs=None) -> None:
    """A one-line ValueError where --methods / --gammas / --pairs name a value no table of `tables` has, or
    together select no cell."""
    entries = [(method, float(gamma), pair) for table in tables for pair, gamma, method, _ in table_entries(table)]
    names = ",".join(tables)
    for flag, given, allowed, show in (
            ("--methods", methods, [m for m, _, _ in entries], str),
            ("--gammas", [float(g) for g in gammas or ()], [g for _, g, _ in entries], longtail.gamma_text),
            ("--pairs", pairs, [p for _, _, p in entries], str)):
        allowed = list(dict.fromkeys(allowed))
        unknown = [show(v) for v in given or () if v not in allowed]
        if unknown:
            raise ValueError(f"{flag}: {', '.join(unknown)} not in table {names}; allowed: "
                             f"{', '.join(show(v) for v in allowed)}")
    chosen = [e for e in entries if selected(*e, methods, gammas, pairs)]
    if not chosen:
        flags_given = [f for f, v in (("--methods", methods), ("--gammas", gammas), ("--pairs", pairs)) if v]
        raise ValueError(f"{' with '.join(flags_given)} select no run of table {names}")


def build_plan(tables: Sequence[str], *, runs_dir: str = "runs", seeds: Sequence[int] = (0, 1, 2),
               teacher_seeds: str = "paired", extra_overrides: Sequence[str] = (), methods=None, gammas=None,
               pairs=None) -> List[Run]:
    """Every run of `tables`, teachers first, each listed once."""
    check_selection(tables, methods, gammas, pairs)
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds) or not seeds:
        raise ValueError(f"seeds {list(seeds)} are invalid: give non-negative integers")
    planner = Planner(runs_dir, seeds, teacher_seeds, extra_overrides)
    for table in tables:
        dataset = paper_results.LAYOUTS[table]["dataset"]
        for pair, gamma, method, hparams in table_entries(table):
            if not selected(method, gamma, pair, methods, gammas, pairs):
                continue
            teacher_row_seeds = planner.seeds if teacher_seeds == "paired" else [0]
            for seed in (teacher_row_seeds if method == "teacher" else planner.seeds):
                planner.add(table, dataset, pair, gamma, method, hparams, seed)
    return planner.runs()


# ---------------------------------------------------------------------------------------------------------------
# Status of a run directory.


def is_finished(run: Run) -> bool:
    """The directory (local or gs://) holds this run's config and a test record of its last epoch."""
    result = report.load_run(run.workdir)
    return (result is not None and result.finished
            and not experiment.config_differences(result.config, run.config))


# ---------------------------------------------------------------------------------------------------------------
# Output.


def summary_lines(runs: Sequence[Run], tables: Sequence[str], args, finished: Set[str]) -> List[str]:
    """The plan's summary; `finished`: the workdirs of the runs that are already finished (see is_finished)."""
    teachers = [r for r in runs if r.kind == "teacher"]
    students = [r for r in runs if r.kind == "student"]
    device = DEVICES[args.device]
    t_hours = sum(run_seconds(r.config, args.device) for r in teachers) / 3600
    s_hours = sum(run_seconds(r.config, args.device) for r in students) / 3600
    lines = [
        f"tables {','.join(tables)}: {len(runs)} runs ({len(teachers)} teacher, {len(students)} student); "
        f"seeds {','.join(map(str, args.seed_list))}; teacher seeds {args.teacher_seeds}",
        f"estimated device time: {t_hours + s_hours:.2f} h on {device['label']} "
        f"(teachers {t_hours:.2f} h, students {s_hours:.2f} h)",
        COST_MODEL,
        "training images per epoch: " + ", ".join(
            f"{name} γ={longtail.gamma_text(gamma)}: {count:,}{' (approx.)' if name == 'imagenet2012' else ''}"
            for (name, gamma), count in sorted({(r.config.dataset.name, r.config.dataset.imbalance_factor):
                                                train_images(r.config) for r in runs}.items())),
    ]
    per_table = []
    for table in tables:
        mine = [r for r in runs if table in r.tables]
        hours = sum(run_seconds(r.config, args.device) for r in mine) / 3600
        per_table.append(f"{table}: {len(mine)} runs, {hours:.2f} h")
    if len(tables) > 1:
        lines.append("per table (shared runs counted in each): " + "; ".join(per_table))
    count = sum(r.workdir in finished for r in runs)
    lines.append(f"already finished under {args.runs_dir}: {count} of {len(runs)}")
    return lines


def slurm_lines(runs: Sequence[Run], sbatch_args: str = "") -> List[str]:
    lines = ["set -euo pipefail"]
    job_vars = {}
    for run in runs:
        sbatch = ["sbatch"] + (["--parsable"] if run.kind == "teacher" else []) + [f"--job-name=ltkd-{run.method}"]
        sbatch += shlex.split(sbatch_args)
        if run.teacher_workdir:
            sbatch.append(f"--dependency=afterok:${{{job_vars[run.teacher_workdir]}%%;*}}")
        command = " ".join(sbatch) + " " + shlex.join(["launch/slurm.sbatch", "--", *run.args()])
        if run.kind == "teacher":
            var = f"TEACHER_{len(job_vars)}"
            job_vars[run.workdir] = var
            lines.append(f"{var}=$({command})")
        else:
            lines.append(command)
    return lines


def tpu_lines(runs: Sequence[Run]) -> List[str]:
    return [shlex.join(["launch/tpu_vm.sh", "--", *run.args()]) for run in runs]


def run_local(runs: Sequence[Run], finished: Set[str]) -> int:
    """Run the runs one after another, skipping the `finished` workdirs and the students of failed teachers."""
    failed = set()
    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}]"
        if run.workdir in finished:
            print(f"# {head} finished, skipped: {run.workdir}", flush=True)
            continue
        if run.teacher_workdir in failed:
            print(f"# {head} teacher failed, skipped: {run.workdir}", flush=True)
            failed.add(run.workdir)
            continue
        print(f"# {head} {run.command()}", flush=True)
        code = subprocess.call([sys.executable, "-m", "ltkd_jax.main", *run.args()], cwd=REPO_ROOT)
        if code != 0:
            print(f"# {head} failed with exit status {code}: {run.workdir}", flush=True)
            failed.add(run.workdir)
    if failed:
        print(f"# {len(failed)} runs failed or were skipped after a failed teacher", flush=True)
    return 1 if failed else 0


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(
        prog="launch/sweep.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Extra --config.FIELD=VALUE arguments are passed to every run that has the field.")
    parser.add_argument("table_arg", metavar="TABLE",
                        help=f"{', '.join(paper_results.TABLE_NAMES)}, paper, or several joined by commas")
    parser.add_argument("--dry_run", action="store_true", help="print the plan only")
    parser.add_argument("--launcher", choices=("local", "slurm", "tpu"), default="local")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--teacher_seeds", choices=("paired", "shared"), default="paired",
                        help="paired: teacher seed s for student seed s (default); shared: teacher seed 0 for all")
    parser.add_argument("--methods", help="only these methods (comma-separated); teachers a run needs stay")
    parser.add_argument("--gammas", help="only these imbalance factors")
    parser.add_argument("--pairs", help="only these teacher-student pairs")
    parser.add_argument("--device", choices=tuple(DEVICES), default="h200", help="device of the cost estimate")
    parser.add_argument("--sbatch_args", default="--nodes=1 --ntasks-per-node=1 --gres=gpu:1",
                        help="sbatch options of every job (slurm launcher; default: one GPU per run, the paper's "
                             "batch-64 recipe; launch/slurm.sbatch's own default is 2 nodes x 8 GPUs)")
    parser.add_argument("--sweep_file", help="also write every run's ltkd_jax.main arguments, one run per line, "
                                             "teachers first (for `launch/tpu_vm.sh --sweep=FILE`)")
    args, rest = parser.parse_known_args(argv)
    bad = [item for item in rest if not (item.startswith("--config.") and "=" in item)]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    try:
        args.tables = parse_tables(args.table_arg)
    except ValueError as error:
        parser.error(str(error))
    try:
        args.seed_list = _csv(args.seeds, int)
    except ValueError:
        parser.error(f"--seeds={args.seeds!r} must be comma-separated integers")
    if not args.seed_list:
        parser.error("--seeds is empty")
    if min(args.seed_list) < 0:
        parser.error(f"--seeds={args.seeds!r}: seeds must be non-negative integers")
    args.method_list, args.pair_list = _csv(args.methods), _csv(args.pairs)
    try:
        args.gamma_list = _csv(args.gammas, float)
    except ValueError:
        parser.error(f"--gammas={args.gammas!r} must be comma-separated numbers")
    for flag, text, values in (("--methods", args.methods, args.method_list),
                               ("--gammas", args.gammas, args.gamma_list), ("--pairs", args.pairs, args.pair_list)):
        if text is not None and not values:
            parser.error(f"{flag}={text!r} is empty; give comma-separated values or leave the flag out")
    problem = args.sweep_file and _env.local_output_file_problem(args.sweep_file)  # written after planning
    if problem:
        parser.error(f"--sweep_file={args.sweep_file}: {problem}")
    args.extra = rest
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    runs_dir = args.runs_dir
    if os.path.abspath(os.getcwd()) != REPO_ROOT and not os.path.isabs(runs_dir) and "://" not in runs_dir:
        runs_dir = os.path.abspath(runs_dir)  # the commands run from the repository root
    # Planning validates every run's config (device count, feature-KD shapes), which starts jax: on the CPU, so
    # the sweep claims no accelerator (whose memory jax would take from the runs it launches) and does not judge
    # the batch by this host's devices (ltkd_jax.main checks it again on the machines that run it).
    jax.config.update("jax_platforms", "cpu")
    try:
        runs = build_plan(args.tables, runs_dir=runs_dir, seeds=args.seed_list, teacher_seeds=args.teacher_seeds,
                          extra_overrides=args.extra, methods=args.method_list, gammas=args.gamma_list,
                          pairs=args.pair_list)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    header = ["#!/bin/bash"] if args.launcher != "local" else []
    finished = {run.workdir for run in runs if is_finished(run)}  # reads every run's directory, once
    summary = ["# " + line for line in summary_lines(runs, args.tables, args, finished)]
    if args.launcher == "slurm":
        body = slurm_lines(runs, args.sbatch_args)
    elif args.launcher == "tpu":
        body = tpu_lines(runs)
    else:
        body = [run.command() for run in runs]
    if args.sweep_file:
        with open(args.sweep_file, "w") as f:
            f.write("\n".join(summary + [shlex.join(run.args()) for run in runs]) + "\n")
    if args.dry_run or args.launcher != "local":
        try:
            print("\n".join(header + summary + body))
        except BrokenPipeError:  # `| head`
            sys.stderr.close()
        return 0
    print("\n".join(summary), flush=True)
    return run_local(runs, finished)


if __name__ == "__main__":
    sys.exit(main())
