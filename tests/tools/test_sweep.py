"""ltkd_jax.tools.sweep: every table's plan, checked against counts and settings computed here independently.

No training: `--dry_run` output is parsed, every command's flags go through ml_collections' own flag parser (as
`ltkd_jax.main` parses them), every student's teacher is matched to an earlier teacher job (a command with
`--config.teacher_only=True`) that trains the teacher config the student expects, where the student looks for it,
and every population job trains exactly the runs it replaces (the sweep plans; these tests verify its plans).
"""
import json
import os
import shlex

import pytest
from absl import flags

from ltkd_jax import config as config_lib, experiment, recipes
from ltkd_jax.tools import cost

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# ml_collections loads config files with importlib's deprecated load_module().
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


@pytest.fixture(scope="module")
def sweep():
    from ltkd_jax.tools import sweep as module  # pylint: disable=import-outside-toplevel
    return module


# Written out from the paper / the brief, not taken from the code under test.
HOMO = ["resnet32x4-resnet8x4", "vgg13-vgg8", "wrn_40_2-wrn_40_1", "resnet110-resnet32"]
HETERO = ["resnet32x4-shufflenet_v1", "vgg13-mobilenet_v2", "wrn_40_2-shufflenet_v1", "resnet50_cifar-mobilenet_v2"]
INET = ["resnet34-resnet18", "resnet50-mobilenet_v1"]
ABL = ["resnet32x4-resnet8x4", "resnet32x4-shufflenet_v1", "vgg13-vgg8", "vgg13-mobilenet_v2", "wrn_40_2-wrn_40_1",
       "wrn_40_2-shufflenet_v1"]
DISTILL = ["kd", "fitnet", "dkd", "reviewkd", "ltkd"]
SEEDS = [0, 1, 2]
DKD_BETA_SPEC = {"resnet32x4-resnet8x4": 8, "resnet32x4-shufflenet_v1": 8, "wrn_40_2-shufflenet_v1": 8,
                 "resnet50_cifar-mobilenet_v2": 8, "vgg13-vgg8": 6, "wrn_40_2-wrn_40_1": 6, "vgg13-mobilenet_v2": 6,
                 "resnet110-resnet32": 2, "resnet34-resnet18": 0.5, "resnet50-mobilenet_v1": 2,
                 "demo_resnet_teacher-demo_resnet_student": 8}  # the demo pair: config_lib's choice


def expected_runs(table):
    """{(kind, method, network(s), gamma, seed, alpha, beta)} of a table, teachers and CE students deduplicated."""
    def main(pairs, gammas, methods):
        runs = set()
        for pair in pairs:
            t, s = pair.split("-")
            for g in gammas:
                for seed in SEEDS:
                    runs.add(("teacher", "teacher", t, g, seed, None, None))
                    runs.add(("student", "student", s, g, seed, None, None))
                    runs |= {("student", m, pair, g, seed, None, None) for m in methods}
        return runs

    def ablation(methods):
        runs = set()
        for pair in ABL:
            for seed in SEEDS:
                runs.add(("teacher", "teacher", pair.split("-")[0], 20, seed, None, None))
                runs |= {("student", m, pair, 20, seed, None, None) for m in methods}
        return runs

    if table in ("I", "III"):
        return main(HOMO, [10, 20, 100], DISTILL)
    if table in ("II", "IV"):
        return main(HETERO, [10, 20, 100], DISTILL)
    if table == "V":
        return main(INET, [5, 10, 20], ["kd", "dkd", "reviewkd", "ltkd"])
    if table == "VI":
        return ablation(["ltkd_inter_biased", "ltkd_inter_balanced"])
    if table == "VII":
        return ablation(["kd", "ltkd_inter_balanced", "ltkd_intra_uniform", "ltkd"])
    if table == "fig4":
        points = {(a, 1.0) for a in (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)} | {(6.0, b) for b in (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)}
        runs = {("teacher", "teacher", "resnet32x4", 20, s, None, None) for s in SEEDS}
        return runs | {("student", "ltkd", "resnet32x4-resnet8x4", 20, s, a, b) for s in SEEDS for a, b in points}
    if table == "fashion_mnist":
        pair = "demo_resnet_teacher-demo_resnet_student"
        runs = main([pair], [10, 100], ["kd", "dkd", "ltkd"])
        return runs | {("student", m, pair, 100, s, None, None) for s in SEEDS
                       for m in ("ltkd_inter_biased", "ltkd_inter_balanced", "ltkd_intra_uniform")}
    if table == "fashion_mnist_beyond":
        return main(["demo_resnet_teacher-demo_resnet_student"], [10, 100], BEYOND)
    raise KeyError(table)


EXPECTED_COUNTS = {
    "I": 4 * 3 * 5 * 3 + 4 * 3 * 3 + 4 * 3 * 3,  # distillation + CE students + teachers (3 seeds each) = 252
    "II": 4 * 3 * 5 * 3 + 2 * 3 * 3 + 4 * 3 * 3,  # two students (ShuffleNetV1, MobileNetV2) shared by 2 pairs: 234
    "III": 252, "IV": 234,
    "V": 2 * 3 * 4 * 3 + 2 * 3 * 3 + 2 * 3 * 3,  # no FitNet: 108
    "VI": 6 * 2 * 3 + 3 * 3,  # 3 teacher networks: 45
    "VII": 6 * 4 * 3 + 3 * 3,  # 81
    "fig4": 11 * 3 + 3,  # 11 distinct (alpha, beta) points: (6, 1) is on both lines: 36
    "fashion_mnist": 2 * 3 + 2 * 3 + 2 * 3 * 3 + 3 * 3,  # 39
    # DiVE's balanced-softmax teacher is a teacher job of its own: 2 per (γ, seed), 6 methods, CE students: 54
    "fashion_mnist_beyond": 2 * 3 * 2 + 2 * 3 * 6 + 2 * 3,
}
BEYOND = ["kd", "bkd", "dive", "kd_ls", "ltkd_ls", "ltkd"]


def parse_with_flags(args):
    """(config, workdir) of ltkd_jax.main's arguments `args`, by its flag parser (`--config` and `--workdir`)."""
    from ltkd_jax.tools import sweep  # pylint: disable=import-outside-toplevel
    return sweep.main_config(args), next(a[len("--workdir="):] for a in args if a.startswith("--workdir="))


def is_teacher_job(command):
    return "--config.teacher_only=True" in shlex.split(command)


def teacher_config_json(config):
    return json.loads(experiment.teacher_config(config).to_json())


def dry_run(sweep, capsys, *argv, grouped=False):
    """(commands, comment lines) of a dry run; by default one command per run (`--no_populations`)."""
    assert sweep.main([*argv, "--dry_run", *([] if grouped else ["--no_populations"])]) == 0
    out = capsys.readouterr().out.splitlines()
    return [line for line in out if line and not line.startswith("#")], [l for l in out if l.startswith("#")]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("table", ["I", "II", "III", "IV", "V", "VI", "VII", "fig4", "fashion_mnist",
                                   "fashion_mnist_beyond"])
def test_dry_run_lists_exactly_the_table(sweep, capsys, table):
    commands, comments = dry_run(sweep, capsys, table)
    assert len(commands) == EXPECTED_COUNTS[table]
    assert any(f"{EXPECTED_COUNTS[table]} runs" in c for c in comments)
    assert any("estimated device time" in c and " h on " in c for c in comments)
    full_check = table in ("VI", "VII", "fig4", "fashion_mnist", "fashion_mnist_beyond")  # others: seed 0 only
    found, teachers_at, workdirs = set(), {}, set()
    for index, command in enumerate(commands):
        words = shlex.split(command)
        assert words[:3] == ["python", "-m", "ltkd_jax.main"]
        args = words[3:]
        config_arg = args[0]
        assert config_arg.startswith("--config=configs/") and ":" in config_arg
        family, arg = config_arg[len("--config="):].split(":")
        method, teacher, student, gamma = config_lib.parse_arg(arg)
        dataset = {"configs/cifar100_lt.py": "cifar100", "configs/tiny_imagenet_lt.py": "tiny_imagenet",
                   "configs/imagenet_lt.py": "imagenet2012", "configs/fashion_mnist_lt.py": "fashion_mnist"}[family]
        assert recipes.build_config(dataset, arg).method == method
        assert args[1].startswith("--workdir=") and args[1] not in workdirs, f"two runs want {args[1]}"
        workdirs.add(args[1])
        overrides = dict(a[len("--config."):].split("=", 1) for a in args[2:])
        seed = int(overrides["seed"])
        alpha = beta = None
        if table == "fig4" and method == "ltkd":
            defaults = recipes.build_config(dataset, arg).distill
            alpha = float(overrides.get("distill.alpha", defaults.alpha))
            beta = float(overrides.get("distill.beta", defaults.beta))
        if is_teacher_job(command):  # a distilling student's command that trains only its teacher
            assert method not in ("teacher", "student")
            seed = int(overrides["teacher_seed"])
            found.add(("teacher", "teacher", teacher, gamma, seed, None, None))
        elif method == "student":
            assert teacher == student
            found.add(("student", "student", student, gamma, seed, None, None))
        else:
            assert method != "teacher"
            found.add(("student", method, f"{teacher}-{student}", gamma, seed,
                       alpha if table == "fig4" else None, beta if table == "fig4" else None))
        if not (full_check or seed == 0):
            continue
        config, workdir = parse_with_flags(args)
        assert config.method == method and config.dataset.name == dataset
        if is_teacher_job(command):
            assert config.teacher_only and config.teacher_seed == seed
            assert experiment.teacher_workdir(config, workdir) == workdir  # it trains where its --workdir says
            teachers_at[workdir] = (index, teacher_config_json(config))
            continue
        assert config.seed == seed and not config.teacher_only
        if method == "student":
            continue
        # The student's teacher: an earlier job, at the path the student will look in, training the config the
        # student would train it with (so the student finds it finished instead of training it again).
        assert config.teachers_dir == os.path.join("runs", "teachers")
        assert config.teacher_seed == seed  # paired teacher seeds
        path = experiment.teacher_workdir(config, workdir)
        assert path in teachers_at, f"{workdir}: teacher {path} is not listed before it"
        assert experiment.config_differences(teachers_at[path][1], experiment.teacher_config(config)) == []
        if method == "dkd":
            assert config.distill.beta == DKD_BETA_SPEC[f"{teacher}-{student}"]
            assert config.distill.alpha == 1.0
        if table == "fig4":
            assert (config.distill.alpha, config.distill.beta) == (alpha, beta)
    assert found == expected_runs(table)
    kinds = ["teacher" if is_teacher_job(c) else "student" for c in commands]
    assert kinds == sorted(kinds, key=lambda k: k != "teacher")  # all teachers first


def test_fig4_default_point_is_table_one_run(sweep, capsys):
    fig4, _ = dry_run(sweep, capsys, "fig4", "--seeds=0")
    table1, _ = dry_run(sweep, capsys, "I", "--seeds=0", "--gammas=20", "--methods=ltkd")
    shared = set(fig4) & set(table1)
    ltkd = [c for c in shared if ":ltkd," in c and not is_teacher_job(c)]
    assert len(ltkd) == 1 and "distill" not in ltkd[0] and ltkd[0].split()[4].endswith("/seed0/ltkd")
    alphas = sorted(c.split("--config.distill.alpha=")[1].split()[0] for c in fig4
                    if "distill.alpha=" in c and not is_teacher_job(c))
    assert alphas == ["1.0", "10.0", "2.0", "4.0", "8.0"]  # alpha = 6 is the default: no override


def test_tables_share_runs(sweep, capsys):
    both, _ = dry_run(sweep, capsys, "I,II")
    # Tables I and II share the resnet32x4, vgg13 and wrn_40_2 teachers (3 γ × 3 seeds each).
    assert len(both) == 252 + 234 - 3 * 3 * 3
    with_vii, _ = dry_run(sweep, capsys, "I,VII")
    # VII reuses Table I's KD and LTKD runs of its three homogeneous pairs at γ = 20, and their teachers.
    assert len(with_vii) == 252 + 81 - 3 * 2 * 3 - 3 * 3
    assert len(set(both)) == len(both)


def test_shared_teacher_seed(sweep, capsys):
    commands, _ = dry_run(sweep, capsys, "I", "--teacher_seeds=shared")
    teachers = [c for c in commands if is_teacher_job(c)]
    assert len(teachers) == 4 * 3 and all(parse_with_flags(shlex.split(c)[3:])[0].teacher_seed == 0 for c in teachers)
    assert len(commands) == 12 + 216
    assert all("--config.teacher_seed=0" in c for c in commands if ":student," not in c)


def test_extra_overrides_reach_teachers(sweep, capsys):
    commands, _ = dry_run(sweep, capsys, "fashion_mnist", "--seeds=1", "--gammas=100", "--methods=kd",
                          "--config.num_epochs=1", "--config.lr_decay_epochs=(1,)")
    assert len(commands) == 2
    teacher, student = (shlex.split(c)[3:] for c in commands)
    t_config, t_dir = parse_with_flags(teacher)
    s_config, s_dir = parse_with_flags(student)
    assert t_dir.endswith("demo_resnet_teacher_seed1_ep1_bs64") and t_config.lr_decay_epochs == (1,)
    assert t_config.teacher_only and experiment.teacher_workdir(t_config, t_dir) == t_dir
    assert experiment.teacher_workdir(s_config, s_dir) == t_dir
    assert experiment.config_differences(teacher_config_json(t_config), experiment.teacher_config(s_config)) == []
    assert experiment.teacher_config(s_config).num_epochs == 1
    assert sweep.main(["I", "--dry_run", "--config.no_such_field=1"]) == 2
    assert sweep.main(["I", "--dry_run", "--config.seed=3"]) == 2
    assert sweep.main(["I", "--dry_run", "--config.teacher_only=True"]) == 2
    capsys.readouterr()


def test_slurm_dependencies_and_tpu_order(sweep, capsys, tmp_path):
    assert sweep.main(["VI", "--dry_run", "--launcher=slurm", "--seeds=0,1"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l and not l.startswith("#")]
    assert lines[0] == "set -euo pipefail"
    job_of = {}
    students = 0  # population jobs: the two ablation students of each pair and seed
    for line in lines[1:]:
        words = shlex.split(line.split("=", 1)[1][2:-1] if line.startswith("TEACHER_") else line)
        assert words[0] == "sbatch" and "launch/slurm.sbatch" in words and "--gres=gpu:1" in words
        args = words[words.index("--") + 1:]
        config, workdir = parse_with_flags(args)
        if line.startswith("TEACHER_"):
            assert "--parsable" in words
            job_of[workdir] = line.split("=", 1)[0]
        else:
            students += 1
            assert config.population == "ltkd_inter_biased,ltkd_inter_balanced" and "--job-name=ltkd-population" in words
            var = job_of[experiment.teacher_workdir(config, workdir)]
            assert f"--dependency=afterok:${{{var}%%;*}}" in line
    assert students == 6 * 2 and len(job_of) == 3 * 2
    assert sweep.main(["fig4", "--dry_run", "--launcher=tpu", "--seeds=0"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l and not l.startswith("#")]
    assert len(lines) == 2 and all(l.startswith("launch/tpu_vm.sh -- --config=configs/cifar100_lt.py:") for l in lines)
    assert is_teacher_job(lines[0]) and lines[1].count("ltkd") == 1 + 11  # one population of Fig. 4's 11 points
    sweep_file = tmp_path / "sweep.txt"
    assert sweep.main(["fig4", "--dry_run", "--launcher=tpu", "--seeds=0", f"--sweep_file={sweep_file}"]) == 0
    capsys.readouterr()
    args = [l for l in sweep_file.read_text().splitlines() if not l.startswith("#")]
    assert args == [l[len("launch/tpu_vm.sh -- "):] for l in lines]


def test_cost_model_anchor():
    """The anchor pair's FLOPs are those `python -m ltkd_jax.tools.models_table` prints (within XLA's lowered vs
    compiled count); the anchor's own run trains at its measured rate, and a population shares the teacher."""
    t, s = cost.gflops("resnet32x4", "cifar100"), cost.gflops("resnet8x4", "cifar100")
    assert (t, s) == pytest.approx((1.980, 0.328), rel=0.01)
    config = recipes.build_config("cifar100", "kd,resnet32x4-resnet8x4,20")
    config.eval_every_epochs = 10 ** 6  # one evaluation
    seconds = cost.population_seconds([config], "h200")
    train = 240 * 15907 / 24417  # the anchor: 24,417 img/s, CIFAR-100-LT γ=20 has 15,907 images
    evaluation = 10000 * (t + s) / (24417 * (t + 3 * s))
    assert seconds == pytest.approx(train + evaluation, rel=1e-9)
    # A population of KD and LTKD students: one teacher forward per batch, each student's own evaluation.
    ltkd = recipes.build_config("cifar100", "ltkd,resnet32x4-resnet8x4,20")
    ltkd.eval_every_epochs = 10 ** 6
    together = 240 * 15907 * (t + 2 * 3 * s) / (24417 * (t + 3 * s)) + 2 * evaluation
    assert cost.population_seconds([config, ltkd], "h200") == pytest.approx(together, rel=1e-9)


def test_cost_model_sizes_and_resolution():
    """Training images from the full per-class counts thinned by LDAM-DRW's profile (n_i = n_max γ^(-i/(C-1)),
    floored); the CPU anchor's own run (the Fashion-MNIST teacher, 10 epochs, evaluated each) at its measured
    763 img/s, evaluation at 3x that; FLOPs at the run's resolution."""
    assert cost.train_images(recipes.build_config("tiny_imagenet", "kd,vgg13-vgg8,10")) == 39072
    assert cost.train_images(recipes.build_config("cifar100", "kd,vgg13-vgg8,100")) == 10847
    student = recipes.build_config("fashion_mnist", "kd,demo_resnet_teacher-demo_resnet_student,100")
    images = sum(int(6000 * 0.01 ** (i / 9)) for i in range(10))
    assert cost.train_images(student) == images
    teacher = experiment.teacher_config(student)
    assert cost.population_seconds([teacher], "cpu2") == pytest.approx(10 * images / 763 + 10 * 10000 / (3 * 763))
    assert cost.gflops("resnet8x4", "tiny_imagenet") == pytest.approx(4 * cost.gflops("resnet8x4", "cifar100"),
                                                                      rel=0.05)  # 4x the pixels
    imagenet = recipes.build_config("imagenet2012", "kd,resnet34-resnet18,10")
    full = cost.population_seconds([imagenet])
    imagenet.dataset.image_size = 112
    assert cost.population_seconds([imagenet]) == pytest.approx(full / 4, rel=0.05)


def test_local_launcher_skips_finished_and_failed(sweep, capsys, monkeypatch, tmp_path):
    runs_dir = str(tmp_path / "runs")
    argv = ["fashion_mnist", f"--runs_dir={runs_dir}", "--seeds=0,1", "--gammas=100", "--methods=kd"]
    plan = sweep.build_plan(["fashion_mnist"], runs_dir=runs_dir, seeds=[0, 1], gammas=[100], methods=["kd"])
    assert [r.kind for r in plan] == ["teacher", "teacher", "student", "student"]
    done, other = plan[0], plan[1]  # teacher seed 0: finished; teacher seed 1: finished with another config
    for run, learning_rate in ((done, done.config.learning_rate), (other, 2 * other.config.learning_rate)):
        stored = json.loads(run.config.to_json())
        stored["learning_rate"] = learning_rate
        os.makedirs(run.workdir)
        with open(os.path.join(run.workdir, "config.json"), "w") as f:
            json.dump(stored, f, indent=2)
        with open(os.path.join(run.workdir, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"epoch": run.config.num_epochs, "split": "test", "accuracy": 80.0}) + "\n")
    assert sweep.is_finished(done) and not sweep.is_finished(other)
    calls = []

    def fake_call(command, cwd):
        calls.append(command)
        return 1 if "demo_resnet_teacher_seed1" in " ".join(command) else 0  # teacher seed 1 fails

    monkeypatch.setattr(sweep.subprocess, "call", fake_call)
    assert sweep.main(argv) == 1
    out = capsys.readouterr().out
    assert "already finished under" in out and ": 1 of 4" in out
    ran = [" ".join(c) for c in calls]
    assert len(ran) == 2 and "teacher_seed1" in ran[0] and "seed0/kd" in ran[1]
    assert "teacher failed, skipped" in out and "finished, skipped" in out


def test_bad_seeds_are_one_line(sweep, capsys):
    with pytest.raises(SystemExit):
        sweep.main(["I", "--dry_run", "--seeds=a"])
    assert "--seeds='a' must be comma-separated integers" in capsys.readouterr().err


def _error_of(sweep, capsys, *argv):
    """The one error line of a refused command line (argparse's exit 2 or main's return 2), nothing planned."""
    try:
        code = sweep.main([*argv, "--dry_run"])
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "Traceback" not in captured.err
    return captured.err.strip().splitlines()[-1]


def test_bad_selections_name_the_allowed_values(sweep, capsys):
    err = _error_of(sweep, capsys, "fashion_mnist", "--methods=foo")
    assert "--methods: foo not in table fashion_mnist; allowed: teacher, student, kd, dkd, ltkd," in err
    assert "--gammas: 0 not in table fashion_mnist; allowed: 10, 100" in _error_of(sweep, capsys, "fashion_mnist",
                                                                                  "--gammas=0")
    assert "--gammas: 7 not in table I; allowed: 10, 20, 100" in _error_of(sweep, capsys, "I", "--gammas=20,7")
    assert "--pairs: a-b not in table VI; allowed: resnet32x4-resnet8x4," in _error_of(sweep, capsys, "VI",
                                                                                      "--pairs=a-b")
    assert "--methods: fitnet, foo not in table V;" in _error_of(sweep, capsys, "V", "--methods=kd,fitnet,foo")
    # Each value is in one of the tables, but no cell has both.
    assert "--methods with --gammas select no run of table I,V" in _error_of(sweep, capsys, "I,V", "--methods=fitnet",
                                                                             "--gammas=5")
    assert "--gammas='abc' must be comma-separated numbers" in _error_of(sweep, capsys, "I", "--gammas=abc")
    assert "--methods='' is empty" in _error_of(sweep, capsys, "I", "--methods=")
    with pytest.raises(ValueError, match="--methods: foo not in table I"):
        sweep.build_plan(["I"], methods=["foo"])


def test_negative_seeds_and_missing_sweep_file_directory(sweep, capsys, tmp_path):
    assert "--seeds='0,-1': seeds must be non-negative integers" in _error_of(sweep, capsys, "I", "--seeds=0,-1")
    err = _error_of(sweep, capsys, "fig4", "--launcher=tpu", "--sweep_file=/nonexistent/x")
    assert "--sweep_file=/nonexistent/x: directory /nonexistent does not exist" in err
    assert "is a directory" in _error_of(sweep, capsys, "fig4", f"--sweep_file={tmp_path}")
    assert list(tmp_path.iterdir()) == []


def test_bad_override_values_are_the_flag_parsers_own_line(sweep, capsys):
    """A value ltkd_jax.main's flag parser refuses is refused when planning, in one line: that parser's own."""
    for override in ("--config.batch_size=abc", "--config.lr_decay_epochs=(1,", "--config.dataset=3"):
        err = _error_of(sweep, capsys, "fashion_mnist", override)
        with pytest.raises(flags.Error) as refused:
            parse_with_flags(["--config=configs/fashion_mnist_lt.py", "--workdir=w", override])
        assert err.startswith("error: the --config=configs/fashion_mnist_lt.py:") and " is invalid: " in err
        assert err.endswith(str(refused.value).splitlines()[0]) and override.split("=")[0] in err


def test_every_planned_config_passes_experiment_validate(sweep, capsys):
    """What ltkd_jax.main would refuse at start-up is refused when planning, naming the run."""
    err = _error_of(sweep, capsys, "fashion_mnist", "--config.student_model=nosuch")
    assert err.startswith("error: the --config=configs/fashion_mnist_lt.py:") and "is invalid: " in err
    assert "'nosuch'" in err
    err = _error_of(sweep, capsys, "VI", "--seeds=0", "--config.dtype=float16")
    assert "is invalid: " in err and "'float16'" in err
    with pytest.raises(ValueError, match="nosuch"):
        sweep.build_plan(["fashion_mnist"], extra_overrides=["--config.student_model=nosuch"])


def test_teacher_job_trains_the_teacher_its_student_then_reuses(sweep, tmp_path):
    """The planned teacher job, run as ltkd_jax.main would run it, leaves a finished teacher where the student
    looks; the student then reloads it (the teacher's records stay as they were) and finishes."""
    tfds = pytest.importorskip("tensorflow_datasets")
    extra = ["--config.num_epochs=1", "--config.batch_size=16", "--config.eval_batch_size=64",
             f"--config.dataset.data_dir={tmp_path / 'tfds'}"]
    teacher, student = sweep.build_plan(["fashion_mnist"], runs_dir=str(tmp_path / "runs"), seeds=[0], gammas=[10],
                                        methods=["kd"], extra_overrides=extra)
    assert (teacher.kind, student.kind, student.teacher_workdir) == ("teacher", "student", teacher.workdir)
    assert not sweep.is_finished(teacher)
    with tfds.testing.mock_data(num_examples=320):
        experiment.run(sweep.main_config(teacher.args), teacher.workdir)
        assert sweep.is_finished(teacher) and not os.path.exists(student.workdir)
        teacher_records = open(os.path.join(teacher.workdir, "metrics.jsonl")).read()
        experiment.run(sweep.main_config(student.args), student.workdir)
    assert sweep.is_finished(student)
    assert open(os.path.join(teacher.workdir, "metrics.jsonl")).read() == teacher_records


@pytest.mark.parametrize("table, args", [("fashion_mnist", ()), ("fig4", ("--seeds=0",)), ("VII", ("--seeds=1",)),
                                         ("fashion_mnist_beyond", ("--seeds=0",)), ("fashion_mnist_study", ("--seeds=0",)), ("I", ("--seeds=2",)),
                                         ("IV", ("--seeds=0",)), ("V", ("--seeds=1",))])
def test_populations_train_exactly_the_solo_runs(sweep, capsys, table, args):
    """Grouped, the plan trains the same configs in the same directories as one job per run: each population
    holds the distilled students of one teacher job and seed, and its members are those runs' configs."""
    solo_commands, _ = dry_run(sweep, capsys, table, *args)
    commands, comments = dry_run(sweep, capsys, table, *args, grouped=True)
    planned = {}
    for command in solo_commands:
        config, workdir = parse_with_flags(shlex.split(command)[3:])
        planned[workdir] = json.loads(config.to_json())
    trained, populations = {}, 0
    for command in commands:
        config, workdir = parse_with_flags(shlex.split(command)[3:])
        if not config.population:
            trained[workdir] = config
            continue
        populations += 1
        members = recipes.population_members(config)
        assert len(members) > 1 and config.seed == config.teacher_seed
        for name, member in members:
            trained[os.path.join(workdir, name)] = member
    assert trained.keys() == planned.keys()
    for workdir, config in planned.items():
        assert experiment.config_differences(config, trained[workdir]) == [], workdir
    seeds = [int(seed) for seed in args[0][len("--seeds="):].split(",")] if args else SEEDS
    if table == "fashion_mnist_study":  # per γ and seed: the grid's population, and DiVE's with its own teacher
        assert populations == 2 * 2 * len(seeds)
    else:
        distilled = {(r[2], r[3], r[4]) for r in expected_runs(table)
                     if r[0] == "student" and r[1] != "student" and r[4] in seeds}
        assert populations == len(distilled)  # one per (pair, γ, seed)
    summary = next(c for c in comments if "as populations:" in c)
    assert f"as populations: {len(commands)} jobs ({populations} populations of " in summary
    hours = [float(c.split(" h")[0].split()[-1]) for c in comments if "estimated device time:" in c or "as pop" in c]
    assert hours[1] <= hours[0] and len(commands) < len(solo_commands)  # the teacher's forward pass is shared


def test_the_study_grid_is_every_point_of_every_method(sweep, capsys):
    """fashion_mnist_study: per γ and seed, the CE student, and every grid point (written out here) as a member of
    its teacher's population (DiVE's own balanced-softmax teacher: a population of its own)."""
    def points(method, **axes):
        keys = list(axes)
        found = [{}]
        for key in keys:
            found = [dict(point, **{key: value}) for point in found for value in axes[key]]
        return [(method, point) for point in found]

    expected = (points("kd", temperature=[4.0, 2.0]) + points("dkd", alpha=[1.0], beta=[8.0, 2.0])
                + [("ltkd", {"alpha": w, "beta": w, "temperature": 4.0}) for w in (1.0, 2.0, 4.0, 6.0)]
                + points("bkd", temperature=[2.0, 4.0], alpha=[0.5, 1.0, 2.0], reweight_epoch=[0])
                + points("bkd", temperature=[2.0], alpha=[1.0], reweight_epoch=[8])
                + points("dive", temperature=[3.0, 6.0], power=[0.5, 1.0]))
    commands, _ = dry_run(sweep, capsys, "fashion_mnist_study", "--seeds=0,1", "--teacher_seeds=shared",
                          grouped=True)
    found, students = {}, set()
    for command in commands:
        config, _ = parse_with_flags(shlex.split(command)[3:])
        if config.method == "student":
            students.add((config.dataset.imbalance_factor, config.seed))
        for _, member in recipes.population_members(config) if config.population else ():
            distill = member.distill.to_dict()
            fields = next(point for method, point in expected if method == member.method)  # the method's axes
            found.setdefault((config.dataset.imbalance_factor, config.seed), []).append(
                (member.method, {key: distill[key] for key in fields}))
    cells = {(g, s) for g in (10.0, 100.0) for s in (0, 1)}
    assert students == cells and set(found) == cells
    for members in found.values():
        assert sorted(map(repr, members)) == sorted(map(repr, expected))


def test_two_populations_of_one_directory_are_finished_each_by_its_members(sweep, capsys, monkeypatch, tmp_path):
    """The study's grid population and DiVE's share <seed>/ (members in their own subdirectories): DiVE's finished
    members skip only DiVE's job."""
    plan = sweep.build_plan(["fashion_mnist_study"], runs_dir=str(tmp_path), seeds=[0], gammas=[100],
                            teacher_seeds="shared")
    grid, dive = [run for run in plan if run.members]
    assert grid.workdir == dive.workdir and {m.config.method for m in dive.members} == {"dive"}
    for member in dive.members:
        os.makedirs(member.workdir)
        with open(os.path.join(member.workdir, "config.json"), "w") as f:
            f.write(member.config.to_json())
        with open(os.path.join(member.workdir, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"epoch": member.config.num_epochs, "split": "test", "accuracy": 80.0}) + "\n")
    finished = {m.workdir for run in plan for m in (run.members or (run,)) if sweep.is_finished(m)}
    calls = []
    monkeypatch.setattr(sweep.subprocess, "call", lambda command, cwd: calls.append(command) or 0)
    assert sweep.run_local(plan, finished) == 0
    launched = [next(a for a in command if a.startswith("--config.population=")) for command in calls
                if any(a.startswith("--config.population=") for a in command)]
    assert len(launched) == 1 and "bkd" in launched[0] and "dive" not in launched[0]
    assert "finished, skipped" in capsys.readouterr().out
