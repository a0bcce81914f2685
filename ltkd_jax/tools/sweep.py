"""Enumerate, print and launch the runs of a paper table: pairs × γ × methods × seeds.

    python -m ltkd_jax.tools.sweep TABLE [--dry_run] [--launcher=local|slurm|tpu] [--seeds=0,1,2] [--runs_dir=runs]
        [--teacher_seeds=paired|shared] [--methods=kd,ltkd] [--gammas=20] [--pairs=vgg13-vgg8] [--device=h200|cpu2]
        [--no_populations] [--config.FIELD=VALUE ...]

TABLE: I-VII, fig4, fashion_mnist and fashion_mnist_study (our offline studies), `paper` (I-VII and fig4), or several joined by commas.
Teachers are jobs of their own, listed first; the distilled students of one teacher and seed are one population
job (`--no_populations`: one job each). docs/scaling.md ("Sweeps") has the rest.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Set, Tuple

import jax
from absl import flags
from ml_collections import config_flags

from ltkd_jax import config as config_lib, experiment, io, recipes
from ltkd_jax.data import longtail
from ltkd_jax.tools import cost, paper_results
from ltkd_jax.tools.runs import default_flat_config, load_run

REPO_ROOT = recipes.REPO_ROOT  # the checkout the printed commands run in (their config files are relative to it)
# Fields a sweep sets itself: not accepted as extra overrides.
SWEEP_FIELDS = ("seed", "teacher_seed", "teachers_dir", "teacher_only", "population")

# ---------------------------------------------------------------------------------------------------------------
# The plan.


@dataclasses.dataclass
class Run:
    kind: str  # "teacher" (a teacher job), "population" (students trained together) or "student" (the others)
    args: Tuple[str, ...]  # ltkd_jax.main's arguments
    workdir: str  # where the run's results land
    config: object  # the config trained there (for the cost estimate and the finished check; a population: None)
    teacher_workdir: Optional[str] = None  # the teacher job this run needs
    tables: List[str] = dataclasses.field(default_factory=list)
    member: Tuple[Tuple[str, ...], str] = ((), "")  # a distilled student's (shared args, population member spec)
    members: Tuple["Run", ...] = ()  # a population's students

    def command(self, python: str = "python") -> str:
        return shlex.join([python, "-m", "ltkd_jax.main", *self.args])


def main_config(args: Sequence[str]):
    """The config `python -m ltkd_jax.main ARGS` builds, by its own flag parser (config files from REPO_ROOT)."""
    argv = ["ltkd_jax.main", *(f"--config={os.path.join(REPO_ROOT, a[len('--config='):])}"
                               if a.startswith("--config=") else a for a in args)]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "", flag_values=values)
    values(argv)
    return values.config


class Planner:
    def __init__(self, runs_dir: str, teacher_seeds: str = "paired", extra_overrides: Sequence[str] = ()):
        self.extra = {item: item[len("--config."):].split("=", 1)[0] for item in extra_overrides}  # -> its field
        for item, field in self.extra.items():
            if field in SWEEP_FIELDS:
                raise ValueError(f"{item!r}: the sweep sets {field} itself (use --seeds / --teacher_seeds)")
        self.runs_dir, self.teacher_seeds = runs_dir, teacher_seeds
        self.used_extra: Set[str] = set()
        self.planned: Dict[str, Run] = {}  # by workdir

    def _extra_for(self, dataset: str, arg: str) -> List[str]:
        """The extra overrides whose field (or group of fields) this run's config has."""
        fields = default_flat_config(dataset, arg)
        chosen = [item for item, field in self.extra.items()
                  if field in fields or any(key.startswith(field + ".") for key in fields)]
        self.used_extra.update(chosen)
        return chosen

    def _job(self, dataset: str, arg: str, workdir: str, overrides: Sequence[str], hparams: Sequence[str] = ()):
        """(arguments, config) of one ltkd_jax.main run, its config built and checked as ltkd_jax.main does."""
        args = (f"--config={recipes.CONFIG_FILES[dataset]}:{arg}", f"--workdir={workdir}", *overrides, *hparams,
                *self._extra_for(dataset, arg))
        try:
            config = main_config(args)
            experiment.validate(config)
        except (flags.Error, ValueError) as error:  # what ltkd_jax.main would refuse at start-up
            raise ValueError(f"the {args[0]} run at {workdir} is invalid: {io.first_line(error)}") from None
        return args, config

    def _add(self, run: Run, table: str) -> None:
        """`run`, once per workdir (a teacher of several students, a run of several tables); two different runs
        that want one workdir (a selection with extra `--config.*` fields can make them) are one error line."""
        existing = self.planned.setdefault(run.workdir, run)
        differing = (existing.args != run.args if run.kind != "teacher"  # a teacher's students differ, its config not
                     else experiment.config_differences(json.loads(existing.config.to_json()), run.config))
        if differing:
            raise ValueError(f"two different runs want {run.workdir}: {existing.command()} and {run.command()}")
        if table not in existing.tables:
            existing.tables.append(table)

    def add(self, table: str, dataset: str, pair: str, gamma, method: str, settings, seed: int) -> None:
        """One cell's run at <runs_dir>/<data set>_gamma<γ>/<T>-<S>/<method>[_alphaA][_betaB]/seed<s> (or
        .../<S>/student/seed<s>), and its teacher job at experiment.teacher_workdir under <runs_dir>/teachers.
        Paired teacher seeds (the paper's three runs, its Teacher row averaged over them): seed s distils from
        teacher seed s; shared: from teacher seed 0."""
        teacher, student = pair.split("-")
        g = longtail.gamma_text(gamma)
        cell = os.path.join(self.runs_dir, f"{dataset}_gamma{g}")
        if method == "student":  # the Student row: the network alone, shared by every pair that has it
            workdir = os.path.join(cell, student, "student", f"seed{seed}")
            args, config = self._job(dataset, f"student,{student}-{student},{g}", workdir, [f"--config.seed={seed}"])
            self._add(Run("student", args, workdir, config), table)
            return
        # The Teacher row is the teacher job itself, planned through the pair's KD student (every student of a
        # teacher seed shares that job: experiment.teacher_config keeps nothing of the student's method).
        arg = f"{'kd' if method == 'teacher' else method},{pair},{g}"
        hparams, spec = _hparams(dataset, arg, settings)
        # <seed>/<member>: the directory a population of that seed's students gives each member.
        workdir = os.path.join(cell, pair, f"seed{seed}", config_lib.member_name(spec))
        teacher_seed = seed if self.teacher_seeds == "paired" else 0
        shared = [f"--config.seed={seed}", f"--config.teacher_seed={teacher_seed}",
                  f"--config.teachers_dir={os.path.join(self.runs_dir, 'teachers')}"]
        args, config = self._job(dataset, arg, workdir, shared, hparams)
        teacher_dir = experiment.teacher_workdir(config, workdir)
        job = (args[0], f"--workdir={teacher_dir}", *args[2:], "--config.teacher_only=True")
        self._add(Run("teacher", job, teacher_dir, experiment.teacher_config(config)), table)
        if method != "teacher":
            shared_args = tuple(a for i, a in enumerate(args) if i != 1 and a not in hparams)
            self._add(Run("student", args, workdir, config, teacher_dir, member=(shared_args, spec)), table)

    def runs(self) -> List[Run]:
        unused = [item for item in self.extra if item not in self.used_extra]
        if unused:
            raise ValueError(f"no run of this sweep has the field of {', '.join(unused)}")
        return sorted(self.planned.values(), key=lambda run: run.kind != "teacher")  # teachers first


def _hparams(dataset: str, arg: str, settings) -> Tuple[List[str], str]:
    """A cell's settings (Fig. 4's α/β, a grid point) as overrides and as a population member's spec
    (`ltkd:distill.alpha=2.0`), only where they are not the config's defaults (so Fig. 4's α = β = 6 point is
    Table I's LTKD run)."""
    defaults, overrides, spec = default_flat_config(dataset, arg), [], arg.split(",")[0]
    for field, value in settings:
        if field not in defaults:
            raise ValueError(f"{arg.split(',')[0]} has no config field {field} (a setting of its table)")
        if defaults[field] != value:
            overrides.append(f"--config.{field}={value!r}")
            spec += f":{field}={value!r}"
    return overrides, spec


def populations(runs: Sequence[Run]) -> List[Run]:
    """The plan with the distilled students of one teacher job and seed (one directory, same shared arguments)
    merged into one population job in that directory, each member where its solo run would be; the others as
    they were."""
    groups: Dict[object, List[Run]] = {}
    for run in runs:
        # [0]: the config file and method; a student of another teacher (DiVE's debiased one) stays apart.
        key = ((os.path.dirname(run.workdir), run.member[0][1:], run.teacher_workdir) if run.member[1]
               else run.workdir)
        groups.setdefault(key, []).append(run)
    planned = []
    for members in groups.values():
        if len(members) == 1:
            planned.extend(members)
            continue
        shared, workdir = members[0].member[0], os.path.dirname(members[0].workdir)
        args = (shared[0], f"--workdir={workdir}", *shared[1:],
                f"--config.population={','.join(m.member[1] for m in members)}")
        tables = list(dict.fromkeys(t for member in members for t in member.tables))
        planned.append(Run("population", args, workdir, None, members[0].teacher_workdir, tables,
                           members=tuple(members)))
    return planned


def _csv(text: Optional[str], cast=str):
    return None if not text else [cast(x.strip()) for x in text.split(",") if x.strip()]


def selected(method: str, gamma, pair: str, methods=None, gammas=None, pairs=None) -> bool:
    """Whether the cell (method, gamma, pair) passes the --methods / --gammas / --pairs selection (None: all)."""
    return ((not methods or method in methods) and (not gammas or float(gamma) in [float(g) for g in gammas])
            and (not pairs or pair in pairs))


def check_selection(tables: Sequence[str], methods=None, gammas=None, pairs=None) -> None:
    """A one-line ValueError where --methods / --gammas / --pairs name a value no table of `tables` has, or
    together select no cell."""
    entries = [(method, float(gamma), pair) for table in tables
               for pair, gamma, method, _ in paper_results.cells(table)]
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
    if not any(selected(*e, methods, gammas, pairs) for e in entries):
        flags_given = [f for f, v in (("--methods", methods), ("--gammas", gammas), ("--pairs", pairs)) if v]
        raise ValueError(f"{' with '.join(flags_given)} select no run of table {names}")


def build_plan(tables: Sequence[str], *, runs_dir: str = "runs", seeds: Sequence[int] = (0, 1, 2),
               teacher_seeds: str = "paired", extra_overrides: Sequence[str] = (), methods=None, gammas=None,
               pairs=None, grouped: bool = True) -> List[Run]:
    """Every run of `tables`, teacher jobs first, each listed once; `grouped`: students as populations."""
    check_selection(tables, methods, gammas, pairs)
    planner = Planner(runs_dir, teacher_seeds, extra_overrides)
    for table in tables:
        dataset = paper_results.LAYOUTS[table]["dataset"]
        for pair, gamma, method, settings in paper_results.cells(table):
            if not selected(method, gamma, pair, methods, gammas, pairs):
                continue
            # The paper's Teacher row averages one teacher per seed; shared: teacher seed 0 for every student.
            for seed in [0] if method == "teacher" and teacher_seeds == "shared" else seeds:
                planner.add(table, dataset, pair, gamma, method, settings, seed)
    return populations(planner.runs()) if grouped else planner.runs()


def is_finished(run: Run) -> bool:
    """The directory (local or gs://) holds this run's config and a test record of its last epoch (a
    population: each of its members')."""
    if run.members:
        return all(map(is_finished, run.members))
    result = load_run(run.workdir)
    return (result is not None and result.finished
            and not experiment.config_differences(result.config, run.config))


# ---------------------------------------------------------------------------------------------------------------
# Output.


def slurm_lines(runs: Sequence[Run], sbatch_args: str = "") -> List[str]:
    """A bash script: teacher job ids in shell variables, each student submitted with afterok on its teacher."""
    lines, job_vars = ["set -euo pipefail"], {}
    for run in runs:
        sbatch = ["sbatch", *(["--parsable"] if run.kind == "teacher" else []),
                  f"--job-name=ltkd-{'population' if run.members else run.config.method}", *shlex.split(sbatch_args)]
        if run.teacher_workdir:
            sbatch.append(f"--dependency=afterok:${{{job_vars[run.teacher_workdir]}%%;*}}")
        command = " ".join(sbatch) + " " + shlex.join(["launch/slurm.sbatch", "--", *run.args])
        if run.kind == "teacher":
            job_vars[run.workdir] = f"TEACHER_{len(job_vars)}"
            command = f"{job_vars[run.workdir]}=$({command})"
        lines.append(command)
    return lines


def tpu_lines(runs: Sequence[Run]) -> List[str]:
    return [shlex.join(["launch/tpu_vm.sh", "--", *run.args]) for run in runs]


def run_local(runs: Sequence[Run], finished: Set[str]) -> int:
    """Run the runs one after another, skipping those whose workdirs are `finished` (a population: its members';
    two populations of one seed, with different teachers, share a directory) and the students of failed
    teachers."""
    failed = set()
    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}]"
        if all(r.workdir in finished for r in (run.members or (run,))):
            print(f"# {head} finished, skipped: {run.workdir}", flush=True)
            continue
        if run.teacher_workdir in failed:
            print(f"# {head} teacher failed, skipped: {run.workdir}", flush=True)
            failed.add(run.workdir)
            continue
        print(f"# {head} {run.command()}", flush=True)
        code = subprocess.call([sys.executable, "-m", "ltkd_jax.main", *run.args], cwd=REPO_ROOT)
        if code != 0:
            print(f"# {head} failed with exit status {code}: {run.workdir}", flush=True)
            failed.add(run.workdir)
    if failed:
        print(f"# {len(failed)} runs failed or were skipped after a failed teacher", flush=True)
    return 1 if failed else 0


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(
        prog="python -m ltkd_jax.tools.sweep", description=__doc__.split("\n\n")[0],
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
    parser.add_argument("--device", choices=tuple(cost.DEVICES), default="h200", help="device of the cost estimate")
    parser.add_argument("--no_populations", action="store_true",
                        help="one job per student (default: the students of a teacher and seed train together)")
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
        args.tables = paper_results.parse_tables(args.table_arg)
    except ValueError as error:
        parser.error(str(error))
    if not args.tables:
        parser.error("no table given")
    for name, cast, kind in (("seeds", int, "integers"), ("methods", str, "values"), ("gammas", float, "numbers"),
                             ("pairs", str, "values")):
        text = getattr(args, name)
        try:
            values = _csv(text, cast)
        except ValueError:
            parser.error(f"--{name}={text!r} must be comma-separated {kind}")
        if text is not None and not values:
            parser.error(f"--{name}={text!r} is empty; give comma-separated values or leave the flag out")
        setattr(args, f"{name[:-1]}_list", values)
    if min(args.seed_list) < 0:
        parser.error(f"--seeds={args.seeds!r}: seeds must be non-negative integers")
    problem = args.sweep_file and io.local_output_file_problem(args.sweep_file)  # written after planning
    if problem:
        parser.error(f"--sweep_file={args.sweep_file}: {problem}")
    args.extra = rest
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    runs_dir = args.runs_dir
    if os.path.abspath(os.getcwd()) != REPO_ROOT and not os.path.isabs(runs_dir) and "://" not in runs_dir:
        runs_dir = os.path.abspath(runs_dir)  # the commands run from the repository root
    # Planning validates every run's config, which starts jax: on the CPU, so the sweep claims no accelerator
    # (whose memory jax would take from the runs it launches) and does not judge the batch by this host's
    # devices (ltkd_jax.main checks it again on the machines that run it).
    jax.config.update("jax_platforms", "cpu")
    try:
        runs = build_plan(args.tables, runs_dir=runs_dir, seeds=args.seed_list, teacher_seeds=args.teacher_seeds,
                          extra_overrides=args.extra, methods=args.method_list, gammas=args.gamma_list,
                          pairs=args.pair_list, grouped=not args.no_populations)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finished = {r.workdir for run in runs for r in (run.members or (run,)) if is_finished(r)}  # reads each once
    summary = ["# " + line for line in cost.summary_lines(runs, args.tables, args, finished)]
    if args.sweep_file:
        with open(args.sweep_file, "w") as f:
            f.write("\n".join(summary + [shlex.join(run.args) for run in runs]) + "\n")
    if args.launcher == "local" and not args.dry_run:
        print("\n".join(summary), flush=True)
        return run_local(runs, finished)
    body = {"slurm": lambda: slurm_lines(runs, args.sbatch_args), "tpu": lambda: tpu_lines(runs),
            "local": lambda: [run.command() for run in runs]}[args.launcher]()
    try:
        print("\n".join((["#!/bin/bash"] if args.launcher != "local" else []) + summary + body))
    except BrokenPipeError:  # `| head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
