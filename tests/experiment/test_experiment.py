"""The whole job from a config: teacher -> student on tfds mock data, the workdir, bad input, the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ltkd_jax import experiment, methods, recipes, train
from ltkd_jax.tools import paper_results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAIR = "demo_resnet_teacher-demo_resnet_student"


def tiny_config(method, data_dir, **overrides):
    config = recipes.build_config("fashion_mnist", f"{method},{PAIR},4")
    config.dataset.data_dir = str(data_dir)
    config.num_epochs = 1
    config.batch_size = 16
    config.log_every_steps = 2
    config.eval_batch_size = 64
    config.update_from_flattened_dict(overrides)
    return config


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def test_teacher_then_ltkd_student_end_to_end(tmp_path, mock_dir):
    with tfds.testing.mock_data(num_examples=320):
        config = tiny_config("ltkd", mock_dir)
        records = experiment.run(config, str(tmp_path / "runs" / "ltkd"))
    run_dir = tmp_path / "runs" / "ltkd"
    teacher_dir = experiment.teacher_workdir(config, str(run_dir))
    assert teacher_dir.startswith(str(tmp_path / "runs" / "teachers"))
    # The split written beside the run: the LT subset (gamma 4) and its groups.
    indices = np.load(run_dir / "lt_indices.npy")
    groups = json.loads((run_dir / "class_groups.json").read_text())
    counts = np.asarray(groups["train_counts"])
    full = np.asarray(groups["full_train_counts"])
    assert counts.tolist() == np.floor(full * 4.0 ** (-np.arange(10) / 9) + 1e-9).astype(int).tolist()
    assert len(indices) == counts.sum()
    assert [len(g) for g in groups["groups"]] == [4, 3, 3]
    test = [r for r in records if r["split"] == "test"]
    steps_per_epoch = int(counts.sum()) // 16
    assert test[-1]["step"] == steps_per_epoch and test[-1]["epoch"] == 1
    assert "teacher_agreement" in test[-1]
    train_records = [r for r in records if r["split"] == "train"]
    assert all("teacher_group_sums_rebalanced" in r for r in train_records)
    report = (run_dir / "report.md").read_text()
    assert "| last (1) |" in report and "| best (1) |" in report
    assert (f"| ECE | {test[-1]['ece']:.2f} | {test[-1]['ece_head']:.2f} | {test[-1]['ece_medium']:.2f} | "
            f"{test[-1]['ece_tail']:.2f} |") in report
    assert sum(test[-1][f"prediction_share_{g}"] for g in ("head", "medium", "tail")) == pytest.approx(100.0)
    assert (run_dir / "per_class_accuracy.png").exists() and (run_dir / "teacher_group_sums.png").exists()
    assert (run_dir / "config.json").exists() and os.path.isdir(os.path.join(teacher_dir, "checkpoints"))
    teacher_records = train.read_metrics(os.path.join(teacher_dir, "metrics.jsonl"))
    assert [r["split"] for r in teacher_records].count("test") == 1
    # The student records the exact teacher checkpoint it learned from (its own checkpoints hold only itself).
    teacher_step = teacher_records[-1]["step"]
    assert json.loads((run_dir / "teacher.json").read_text()) == {
        "checkpoint": os.path.join(teacher_dir, "checkpoints", str(teacher_step)), "model": config.teacher_model}
    assert f"checkpoint `{os.path.join(teacher_dir, 'checkpoints', str(teacher_step))}`" in report

    # A population (CE, logit and feature students) reuses the teacher (its metrics do not grow); each member
    # is the run its own command would be, in <workdir>/<member>; the finished run resumes as a no-op.
    methods = ("student", "dkd", "fitnet", "reviewkd")
    with tfds.testing.mock_data(num_examples=320):
        results = experiment.run(tiny_config("dkd", mock_dir, population=",".join(methods)),
                                 str(tmp_path / "runs" / "pop"))
        again = experiment.run(tiny_config("ltkd", mock_dir), str(run_dir))
    assert len(train.read_metrics(os.path.join(teacher_dir, "metrics.jsonl"))) == len(teacher_records)
    assert again == records
    assert list(results) == list(methods)
    for method in methods:
        member_dir = tmp_path / "runs" / "pop" / method
        stored = json.loads((member_dir / "config.json").read_text())
        assert experiment.config_differences(stored, tiny_config(method, mock_dir)) == []
        assert results[method] == train.read_metrics(str(member_dir / "metrics.jsonl"))
        assert results[method][-1]["step"] == steps_per_epoch and (member_dir / "report.md").exists()
        assert (member_dir / "teacher.json").exists() == (method != "student")
    for method in ("fitnet", "reviewkd"):
        distill = [r["distill"] for r in results[method] if r["split"] == "train"]
        assert all(np.isfinite(d) and d >= 0 for d in distill) and any(d > 0 for d in distill)  # in the objective
        # The connector is trained and checkpointed with the student (its parameters in the checkpoint's tree).
        metadata = [p.read_text() for p in (tmp_path / "runs" / "pop" / method / "checkpoints").glob(
            "*/default/_METADATA")]
        assert metadata and all("connector" in text for text in metadata)

    # Teacher-bias diagnostics on the same teacher: per-batch group sums add up to the batch size.
    from ltkd_jax.tools import diagnose
    with tfds.testing.mock_data(num_examples=320):
        result = diagnose.diagnose(teacher_dir, batch_size=16, out_dir=str(tmp_path / "diag"))
        with pytest.raises(ValueError, match=r"batch_size=1000000 is larger than the \d+ images of the smaller"):
            diagnose.diagnose(teacher_dir, batch_size=10**6, out_dir=str(tmp_path / "diag2"))
    assert not (tmp_path / "diag2").exists()
    for split in ("test", "train"):
        per_batch = np.asarray(result[split]["per_batch"])
        assert per_batch.shape[1] == 3 and np.allclose(per_batch.sum(1), 16, rtol=1e-4)
    assert set(result["calibration"]) == {"head", "medium", "tail"}
    assert (tmp_path / "diag" / "group_sums.png").exists()
    assert "| balanced test |" in diagnose.format_result(result)
    assert diagnose.main(["--teacher", str(tmp_path / "nowhere")]) == 1


def test_feature_method_options_are_config_fields(tmp_path):
    """FitNet's hint layer and ReviewKD's student_preact / mid_channel are fields with mdistiller's defaults,
    and overriding them changes the connector."""
    reviewkd = recipes.build_config("cifar100", "reviewkd,resnet32x4-resnet8x4,100")
    assert dict(reviewkd.distill) == {"student_preact": False, "mid_channel": 0}

    def connector_settings(config):  # what the run builds from the config
        return experiment.make_stage(config, config.student_model, distilled=True).model.connector.settings

    assert connector_settings(reviewkd).mid_channel == 256  # min(512, resnet8x4's last width)
    assert recipes.build_config("imagenet2012", "reviewkd,resnet34-resnet18,10").distill.student_preact is True
    reviewkd.distill.student_preact, reviewkd.distill.mid_channel = True, 64
    experiment.validate(reviewkd)
    settings = connector_settings(reviewkd)
    assert settings.student_key == "preact_feats" and settings.mid_channel == 64
    fitnet = recipes.build_config("cifar100", "fitnet,resnet32x4-resnet8x4,100")
    assert dict(fitnet.distill) == {"hint_layer": 2}  # mdistiller FITNET.HINT_LAYER
    fitnet.distill.hint_layer = 3
    assert connector_settings(fitnet).hint_layer == 3
    reviewkd.distill.mid_channel = -1
    with pytest.raises(ValueError, match=r"mid_channel=-1 is invalid: it must be a positive int, or 0 for min\(512"):
        experiment.validate(reviewkd)
    fitnet.distill.hint_layer = 9
    with pytest.raises(ValueError, match=r"hint_layer=9 is invalid for resnet32x4-resnet8x4"):
        experiment.validate(fitnet)
    # From the command line the overrides parse; the run then stops at the unprepared data set, not at the flags.
    out = subprocess.run([sys.executable, "-m", "ltkd_jax.main", "--config=configs/cifar100_lt.py:reviewkd,"
                          "resnet32x4-resnet8x4,100", "--config.distill.student_preact=True",
                          "--config.distill.mid_channel=64", f"--config.dataset.data_dir={tmp_path}/tfds",
                          f"--workdir={tmp_path}/run"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 1 and "'cifar100' split 'train' is not prepared" in out.stderr, out.stderr[-2000:]


CIFAR_PAIRS = paper_results.HOMOGENEOUS + paper_results.HETEROGENEOUS


@pytest.mark.parametrize("family, pairs", [("cifar100", CIFAR_PAIRS), ("tiny_imagenet", CIFAR_PAIRS),
                                           ("imagenet2012", paper_results.IMAGENET)])
def test_every_paper_pair_validates_for_every_method(family, pairs):
    for pair in pairs:
        for method in methods.METHODS:
            if family == "imagenet2012" and method == "fitnet":
                continue  # Table V has no FitNet row; still supported, checked below
            experiment.validate(recipes.build_config(family, f"{method},{pair},10"))
    experiment.validate(recipes.build_config("imagenet2012", f"fitnet,{pairs[0]},10"))


def test_host_pipeline_feed_trains_too(tmp_path, mock_dir):
    """The streaming path ImageNet uses (here the tf.data host pipeline), with per-process batch assembly."""
    with tfds.testing.mock_data(num_examples=320):
        records = experiment.run(tiny_config("student", mock_dir, **{"dataset.device_resident": False}),
                                 str(tmp_path / "run"))
    test = [r for r in records if r["split"] == "test"]
    assert len(test) == 1 and 0 <= test[0]["accuracy"] <= 100
    assert sum(1 for r in records if r["split"] == "train") >= 3


def test_host_feed_normalises_on_device_like_the_device_feed(mock_dir):
    """The host pipeline ships uint8; the step normalises. Evaluation batches of both feeds are the same uint8
    arrays, and a host training batch inside the step is (x / 255 - mean) / std of the shipped pixels."""
    import jax  # pylint: disable=import-outside-toplevel
    from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=import-outside-toplevel
    from ltkd_jax import train  # pylint: disable=import-outside-toplevel

    with tfds.testing.mock_data(num_examples=320):
        host_data, info = experiment.load_data(tiny_config("student", mock_dir, **{"dataset.device_resident": False}))
        device_data, _ = experiment.load_data(tiny_config("student", mock_dir))
        mesh = train.make_mesh()
        sharding = NamedSharding(mesh, P("data"))
        host_feed, device_feed = host_data.feed(16, 0, mesh), device_data.feed(16, 0, mesh)
        assert (host_feed.supports_scan, device_feed.supports_scan) == (False, True)
        host_eval = list(host_feed.eval_batches(64, sharding))
        device_eval = list(device_feed.eval_batches(64, sharding))
        assert len(host_eval) == len(device_eval) == -(-info.num_eval // 64)
        for a, b in zip(host_eval, device_eval, strict=True):
            assert a["image"].dtype == np.uint8  # normalised inside the jitted evaluation, as in training
            for key in ("image", "label", "mask"):
                np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
        shipped = host_feed.inputs(0)
        assert shipped["image"].dtype == np.uint8
        second = host_feed.inputs(1)
        assert not np.array_equal(np.asarray(second["label"]), np.asarray(shipped["label"])) or not np.array_equal(
            np.asarray(second["image"]), np.asarray(shipped["image"]))
        again = host_feed.inputs(0)  # asked out of order: the stream restarts there
        np.testing.assert_array_equal(np.asarray(again["image"]), np.asarray(shipped["image"]))
        stepped = jax.jit(lambda inputs: host_feed.batch(inputs, 0))(shipped)
        mean, std = np.float32(info.mean), np.float32(info.std)
        np.testing.assert_allclose(np.asarray(stepped["image"]),
                                   (np.asarray(shipped["image"]) / np.float32(255.0) - mean) / std, rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_array_equal(np.asarray(stepped["label"]), np.asarray(shipped["label"]))


def test_workdir_of_another_config_is_refused(tmp_path, mock_dir):
    with tfds.testing.mock_data(num_examples=320):
        experiment.run(tiny_config("student", mock_dir), str(tmp_path / "run"))
        with pytest.raises(ValueError, match=r"holds a run of another config \(learning_rate: 0.05 there, 0.1 now\)"):
            experiment.run(tiny_config("student", mock_dir, learning_rate=0.1), str(tmp_path / "run"))
        records = experiment.run(tiny_config("student", mock_dir, learning_rate=0.1, overwrite=True),
                                 str(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["learning_rate"] == 0.1
    assert [r["split"] for r in records].count("test") == 1


def test_workdir_check_compares_settings_not_the_argument_string(tmp_path):
    """A run started with another spelling of the same argument is the same run; a changed setting is not."""
    config = tiny_config("student", tmp_path / "tfds")
    experiment.check_workdir(config, str(tmp_path / "run"))
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    stored.update(arg="student,demo_resnet_teacher-demo_resnet_student,4.0")
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    experiment.check_workdir(config, str(tmp_path / "run"))  # accepted
    config.batch_size = 32
    with pytest.raises(ValueError, match=r"another config \(batch_size: 16 there, 32 now\)"):
        experiment.check_workdir(config, str(tmp_path / "run"))


@pytest.mark.parametrize("arg, overrides, message", [
    ("ltdk,demo_resnet_teacher-demo_resnet_student,4", {}, "unknown method 'ltdk'; known: teacher"),
    ("ltkd,demo_resnet_teacher-resnet9,4", {}, "unknown student model 'resnet9'; known:"),
    ("ltkd,demo_resnet_teacher-demo_resnet_student,0.5", {},
     "imbalance factor '0.5' is invalid: it must be a finite number >= 1"),
    ("ltkd,demo_resnet_teacher,4", {}, "pair 'demo_resnet_teacher' must be 'teacher-student'"),
    ("ltkd", {}, r"must be 'method,teacher-student\[,gamma\]'"),
    ("ltkd,demo_resnet_teacher-demo_resnet_student,4", {"dataset.name": "cifar10"},
     "unknown data set 'cifar10'; known: cifar100, fashion_mnist"),
    ("ltkd,demo_resnet_teacher-demo_resnet_student,4", {"dtype": "float16"}, "dtype 'float16' is invalid"),
    ("ltkd,demo_resnet_teacher-demo_resnet_student,4", {"dataset.imbalance_factor": 0},
     "imbalance factor 0 is invalid"),
    ("ltkd,demo_resnet_teacher-demo_resnet_student,inf", {}, "imbalance factor 'inf' is invalid: it must be a finite"),
    ("student,demo_resnet_teacher-demo_resnet_student,4", {"batch_size": 0},
     "batch_size=0 is invalid: it must be a positive multiple of the device count"),
    ("ltkd,demo_resnet_teacher-demo_resnet_student,4", {"distill.temperature": 0.0},
     r"distill.temperature=0.0 is invalid: it must be a finite number > 0"),
    ("kd,demo_resnet_teacher-demo_resnet_student,4", {"teacher_loss": "focal"},
     "teacher_loss 'focal' is invalid; allowed: cross_entropy, balanced_softmax"),
    ("bkd,demo_resnet_teacher-demo_resnet_student,4", {"distill.reweight_epoch": -1},
     "distill.reweight_epoch=-1 is invalid: it must be an integer >= 0"),
])
def test_bad_configs_fail_before_reading_data(tmp_path, arg, overrides, message):
    with pytest.raises(ValueError, match=message):  # from the config file itself, or from validate
        config = recipes.build_config("fashion_mnist", arg)
        config.dataset.data_dir = str(tmp_path / "nothing-here")
        config.update_from_flattened_dict(overrides)
        experiment.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_any_imbalance_factor_can_be_set_by_override(tmp_path):
    """The field is a float whatever the config argument's γ looked like; names and reports print it as written."""
    config = recipes.build_config("fashion_mnist", f"ltkd,{PAIR},100")
    config.update_from_flattened_dict({"dataset.imbalance_factor": 12.5})
    experiment.validate(config)
    assert "fashion_mnist_gamma12.5" in experiment.teacher_workdir(config, str(tmp_path / "ltkd"))
    hundred = recipes.build_config("fashion_mnist", f"ltkd,{PAIR},100")
    assert "fashion_mnist_gamma100/" in experiment.teacher_workdir(hundred, str(tmp_path / "ltkd"))


def test_batch_larger_than_the_data_leaves_no_workdir(tmp_path, mock_dir):
    """Refused before config.json is written, so the corrected command can use the same workdir."""
    with tfds.testing.mock_data(num_examples=320):
        with pytest.raises(ValueError, match=r"batch_size=4096 is larger than the \d+ training examples"):
            experiment.run(tiny_config("student", mock_dir, batch_size=4096), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("args, named", [  # named: the bad field or value the line must name (None: no check)
    (["--config=configs/nosuch.py"], None),  # the flag library's own line names no file
    (["--config", "configs/missing.py"], None),
    (["--config=configs/fashion_mnist_lt.py", "--config.batch_size=8", "--config.num_epoch=1"], "num_epoch"),
    (["--config=configs/fashion_mnist_lt.py", "--config.num_epochs=abc"], "abc"),
    (["--config=ltkd_jax/io.py"], "get_config"),
    (["--config=configs/fashion_mnist_lt.py", "--config.distil.alpha=1"], "distil"),
    (["--config=configs/fashion_mnist_lt.py", "--config.distill.gamma=1"], "gamma"),
    (["--config=configs/fashion_mnist_lt.py:ltdk,resnet32x4-resnet8x4,100"], "ltdk"),
    (["--config=README.md"], "README.md"),
    (["--config=configs/fashion_mnist_lt.py"], "--workdir"),
])
def test_cli_flag_mistakes_are_one_line(tmp_path, args, named):
    workdir = [] if named == "--workdir" else [f"--workdir={tmp_path}/run"]
    out = subprocess.run([sys.executable, "-m", "ltkd_jax.main", *args, *workdir],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert named is None or named in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_cli_process_layout_mistakes_are_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ltkd_jax.main", f"--config={ROOT}/configs/fashion_mnist_lt.py",
                          "--coordinator_address=localhost:1", "--num_processes=2", "--process_id=5",
                          f"--workdir={tmp_path}/run"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 1, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("error: "), out.stderr[-2000:]
    assert "process_id" in out.stderr and not (tmp_path / "run").exists()


def test_student_workdir_is_checked_before_its_teacher_trains(tmp_path, mock_dir):
    """A workdir holding another config (or a file in the way) costs no teacher training."""
    experiment.check_workdir(tiny_config("student", mock_dir), str(tmp_path / "runs" / "ltkd"))
    with pytest.raises(ValueError, match=r"holds a run of another config \(distill.alpha: None there, 1.0 now\)"):
        experiment.run(tiny_config("ltkd", mock_dir), str(tmp_path / "runs" / "ltkd"))
    assert not (tmp_path / "runs" / "teachers").exists()


def test_diagnose_checks_its_arguments_first(tmp_path, capsys):
    from ltkd_jax.tools import diagnose  # pylint: disable=import-outside-toplevel
    (tmp_path / "afile").write_text("")
    for args, message in ((["--batch_size=0"], "--batch_size=0 must be >= 1"),
                          (["--temperature=0"], "--temperature=0.0 must be a finite number > 0"),
                          (["--temperature=nan"], "--temperature=nan must be a finite number > 0"),
                          ([f"--out={tmp_path / 'afile' / 'd'}"], f"{tmp_path / 'afile'} is a file, not a directory")):
        with pytest.raises(SystemExit) as exit_info:
            diagnose.main([f"--teacher={tmp_path}", *args])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    (tmp_path / "diagnose").write_text("")  # where the default --out goes
    with pytest.raises(SystemExit):
        diagnose.main([f"--teacher={tmp_path}"])
    assert f"--out=<teacher>/diagnose: {tmp_path / 'diagnose'} is a file" in capsys.readouterr().err


def test_workdir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("")
    for workdir in (tmp_path / "afile", tmp_path / "afile" / "run"):
        with pytest.raises(ValueError, match=f"workdir {workdir} cannot be created: {tmp_path / 'afile'} is a file"):
            experiment.check_workdir(tiny_config("student", tmp_path), str(workdir))


@pytest.mark.parametrize("config_file", ["cifar100_lt.py", "tiny_imagenet_lt.py", "imagenet_lt.py",
                                         "fashion_mnist_lt.py"])
def test_config_files_load_and_validate(config_file):
    import importlib.util
    spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, "configs", config_file))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    experiment.validate(config)


def test_class_weights_that_never_start_are_warned_about(tmp_path, capsys):
    """BKD deferred past a shortened run's end trains as KD: one warning line per member that does."""
    config = tiny_config("bkd", tmp_path / "nothing-here", num_epochs=4, lr_decay_epochs=(2, 3),
                         population="bkd,bkd:distill.reweight_epoch=3,bkd:distill.reweight_epoch=4")
    with pytest.raises(FileNotFoundError):  # no data there: the warning came first
        experiment.run(config, str(tmp_path / "run"))
    err = capsys.readouterr().err
    assert err.count("warning: distill.reweight_epoch") == 1 and (
        f"warning: distill.reweight_epoch=4 is not before num_epochs=4 ({tmp_path / 'run' / 'bkd_reweight_epoch4'}):"
        " BKD's class weights never apply") in err


def test_decay_epochs_past_the_end_are_warned_about(tmp_path, capsys):
    config = tiny_config("student", tmp_path / "nothing-here", num_epochs=4)  # the data set's decay: (6, 8)
    with pytest.raises(FileNotFoundError):  # no data there: the warning came first
        experiment.run(config, str(tmp_path / "run"))
    assert "warning: lr_decay_epochs [6, 8] are not before num_epochs=4: the learning rate never decays" in (
        capsys.readouterr().err)
    config.lr_decay_epochs = (2, 3)
    with pytest.raises(FileNotFoundError):
        experiment.run(config, str(tmp_path / "run"))
    assert "warning" not in capsys.readouterr().err
    student = tiny_config("ltkd", tmp_path / "nothing-here", num_epochs=4, teacher_num_epochs=3,
                          lr_decay_epochs=(2, 3))  # the teacher's shorter schedule misses epoch 3
    with pytest.raises(FileNotFoundError):
        experiment.run(student, str(tmp_path / "ltkd"))
    assert capsys.readouterr().err.count("warning: lr_decay_epochs [3] are not before teacher_num_epochs=3") == 1


def test_demo_refuses_a_stale_workdir(tmp_path, monkeypatch):
    """A demo run dir from another version of its config is refused in one line naming the differing field."""
    from ltkd_jax.tools import demo
    from ltkd_jax.data import prepare

    monkeypatch.setattr(prepare, "prepare", lambda name, data_dir=None: str(tmp_path / "tfds"))
    stale = json.loads(demo.demo_config("student", str(tmp_path / "tfds")).to_json())
    stale["learning_rate"] = 0.5
    (tmp_path / "demo" / "student").mkdir(parents=True)
    (tmp_path / "demo" / "student" / "config.json").write_text(json.dumps(stale))
    with pytest.raises(ValueError) as error:
        demo.run_demo(str(tmp_path / "demo"), methods=("student",))
    assert str(error.value).startswith(f"workdir {tmp_path / 'demo' / 'student'} holds a run of another config "
                                       f"(learning_rate: 0.5 there, 0.05 now); use another --workdir")


def test_the_method_table_and_the_recipes_import_no_jax_and_registries_must_match_it():
    """Config files load while flags parse, before JAX starts; a registry that differs from the table fails at
    import."""
    code = ("import sys, ltkd_jax.config, ltkd_jax.methods, ltkd_jax.recipes; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]
    with pytest.raises(AssertionError, match="ltkd_new"):
        methods.check_registry("logit", [*methods.names("logit"), "ltkd_new"])


def test_a_debiased_teacher_trains_with_the_balanced_softmax_in_its_own_directory(tmp_path):
    """DiVE distils from a balanced-softmax teacher; any method can (`teacher_loss`); CE students stay plain."""
    dive = recipes.build_config("fashion_mnist", f"dive,{PAIR},100")
    kd = recipes.build_config("fashion_mnist", f"kd,{PAIR},100")
    assert (dive.ce_loss, dive.teacher_loss, dive.ce_weight, dive.distill_weight) == (
        "balanced_softmax", "balanced_softmax", 0.5, 0.5)
    workdir = str(tmp_path / "runs" / "x")
    assert experiment.teacher_workdir(dive, workdir) == experiment.teacher_workdir(kd, workdir) + "_balanced_softmax"
    teacher = experiment.teacher_config(dive)
    assert (teacher.method, teacher.ce_loss, teacher.ce_weight) == ("teacher", "balanced_softmax", 1.0)
    assert experiment.make_stage(teacher, teacher.teacher_model, distilled=False).objective.ce_prior_weight == 1.0
    assert experiment.make_stage(kd, kd.student_model, distilled=True).objective.ce_prior_weight == 0.0
    direct = recipes.build_config("fashion_mnist", "teacher,demo_resnet_teacher-demo_resnet_teacher,100")
    direct.teacher_loss = "balanced_softmax"  # a teacher trained on its own command follows teacher_loss too
    assert experiment.make_stage(direct, direct.student_model, distilled=False).objective.ce_prior_weight == 1.0
    kd.teacher_loss = "balanced_softmax"  # KD from a debiased teacher: the teacher changes, the student's CE not
    assert experiment.teacher_workdir(kd, workdir) == experiment.teacher_workdir(dive, workdir)
    assert experiment.teacher_config(kd).ce_loss == "balanced_softmax" and kd.ce_loss == "cross_entropy"


def test_teacher_config_is_the_recipe_with_cross_entropy_only():
    """Every student of one seed shares the teacher run: its config has nothing of the student's method."""
    kd = recipes.build_config("cifar100", "kd,resnet32x4-shufflenet_v1,100")
    ltkd = recipes.build_config("cifar100", "ltkd,resnet32x4-shufflenet_v1,100")
    teacher = experiment.teacher_config(kd)
    assert experiment.config_differences(json.loads(teacher.to_json()), experiment.teacher_config(ltkd)) == []
    assert (teacher.method, teacher.student_model, teacher.learning_rate) == ("teacher", "resnet32x4", 0.05)
    assert (teacher.ce_weight, teacher.distill_weight, teacher.warmup_epochs, dict(teacher.distill)) == (1, 1, 0, {})
    assert kd.learning_rate == 0.01  # the ShuffleNet student's own rate (mdistiller) does not reach the teacher
