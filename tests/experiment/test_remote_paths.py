"""Run directories, teachers and data caches on a non-local file system, for real and offline.

Two in-memory stand-ins for an object store, both reached through ``etils.epath`` exactly as ``gs://`` is:

* ``ram``: TensorFlow's ``ram://`` file system through ``tf.io.gfile`` -- epath's TensorFlow backend, the one
  that serves ``gs://`` in production when TensorFlow is installed. (epath knows only gs/s3/az/hf URLs, so the
  fixture registers ``ram://`` with it. TF's ram:// does not truncate a file re-opened with "w", which the
  production code copes with.)
* ``gs``: literal ``gs://bucket/...`` URLs through epath's fsspec backend (gcsfs's path), with fsspec's memory
  file system registered for the ``gs`` protocol. Like GCS it refuses to append to a file.

Not covered offline: saving / restoring orbax checkpoints (tensorstore writes the arrays and knows neither
stand-in; here only the URLs handed to orbax and the no-checkpoints error are checked), hence whole training
runs and ``diagnose`` on a trained teacher (its file writes are checked separately); TensorBoard events on gs://
(TF's real GCS client; the ram variant writes them); the real gcsfs / TF GCS clients themselves.
"""
import json
import os
import types
import uuid

import numpy as np
import pytest
from etils import epath
from etils.epath import backend as epath_backend
from etils.epath import gpath as epath_gpath
from etils.epath import register as epath_register

from ltkd_jax.train import checkpoint, metrics as train_metrics
from ltkd_jax import experiment, recipes, run_dir, train
from ltkd_jax.tools import diagnose, report, runs as runs_lib
from ltkd_jax import data
from ltkd_jax import io
from ltkd_jax.data import source, tf_env
from ltkd_jax.data import info as info_lib

tfds = pytest.importorskip("tensorflow_datasets")
fsspec_memory = pytest.importorskip("fsspec.implementations.memory")


class _MemoryGCS(fsspec_memory.MemoryFileSystem):
    """``gs://bucket/key`` in memory, listing keys without the protocol as gcsfs does; no appends."""

    protocol = ("gs", "gcs")
    root_marker = ""
    store = {}
    pseudo_dirs = [""]

    @classmethod
    def _strip_protocol(cls, path):
        path = os.fspath(path)
        for prefix in ("gs://", "gcs://"):
            path = path.removeprefix(prefix)
        return path.strip("/")

    def _open(self, path, mode="rb", **kwargs):
        if "a" in mode:
            raise NotImplementedError(f"object stores cannot append ({path})")
        return super()._open(path, mode=mode, **kwargs)


def _use_ram(monkeypatch):
    tf_env.hide_accelerators_from_tf()
    monkeypatch.setattr(epath_gpath, "_URI_PREFIXES", epath_gpath._URI_PREFIXES + ("ram://",))
    monkeypatch.setattr(epath_gpath, "_URI_SCHEMES", epath_gpath._URI_SCHEMES | {"ram"})
    monkeypatch.setitem(epath_gpath._URI_MAP_ROOT, "ram://", "/ram/")
    monkeypatch.setitem(epath_gpath._PREFIX_TO_BACKEND, "ram", epath_backend.tf_backend)
    monkeypatch.setitem(epath_register._URI_PREFIXES_TO_CLS, "ram://", epath_gpath.PosixGPath)
    return f"ram://ltkd-{uuid.uuid4().hex[:8]}"


def _use_memory_gcs(monkeypatch):
    import fsspec  # pylint: disable=import-outside-toplevel
    # epath: gs:// through fsspec, not through TF's (networked) GCS client
    monkeypatch.setattr(epath_gpath, "_is_tf_installed", lambda: False)
    monkeypatch.setattr(_MemoryGCS, "store", {})
    monkeypatch.setattr(_MemoryGCS, "pseudo_dirs", [""])
    for protocol in ("gs", "gcs"):
        fsspec.register_implementation(protocol, _MemoryGCS, clobber=True)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()
    monkeypatch.setattr(train_metrics, "_tensorboard_writer", lambda logdir: None)  # TF would dial GCS
    return f"gs://ltkd-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["ram", "gs"])
def remote(request, monkeypatch):
    """The root URL of an empty directory on a non-local file system."""
    root = (_use_ram if request.param == "ram" else _use_memory_gcs)(monkeypatch)
    assert not io.is_local(root)
    yield root
    try:
        epath.Path(root).rmtree(missing_ok=True)
    finally:
        if request.param == "gs":
            epath_backend.fsspec_backend._get_filesystem.cache_clear()


def _names(directory):
    """File names in a directory (tensorboard/, written only on the ram variant, left out)."""
    return sorted(p.name for p in epath.Path(directory).iterdir() if p.name != "tensorboard")


def _info(num_classes=10, per_class=60, gamma=10.0):
    counts = data.exponential_counts(np.full(num_classes, per_class), gamma)
    labels = np.repeat(np.arange(num_classes), per_class)
    spec = data.get_spec("fashion_mnist")
    return data.DatasetInfo(
        name="fashion_mnist", spec=spec, data_dir=None, num_classes=num_classes, image_shape=(28, 28, 1),
        mean=spec.mean, std=spec.std, train_split="train", eval_split="test", imbalance_factor=gamma,
        split_seed=0, split_file=None, full_train_counts=np.full(num_classes, per_class), train_counts=counts,
        lt_indices=data.select_indices(labels, counts), group_ids=data.class_groups(counts), num_groups=3,
        num_eval=100)


def _config(method="teacher", **overrides):
    config = recipes.build_config("fashion_mnist", f"{method},demo_resnet_teacher-demo_resnet_student,4")
    config.num_epochs = 1
    config.update_from_flattened_dict(overrides)
    return config


# ------------------------------------------------------------------------------------------- path helpers


def test_absolute_keeps_urls_and_absolutises_local_paths(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for url in ("gs://b/x", "gs://b/runs/ltkd/", "s3://b/x", "ram://x/y"):
        assert io.absolute(url) == url and not io.is_local(url)
    assert io.absolute("runs/x") == os.path.join(str(tmp_path), "runs", "x") and io.is_local("runs/x")
    assert io.absolute(tmp_path / "a") == str(tmp_path / "a")
    assert tf_env.resolve_data_dir("gs://b/tfds") == "gs://b/tfds"
    assert tf_env.resolve_data_dir("tfds") == str(tmp_path / "tfds")
    assert tf_env.cache_dir("gs://b/tfds", "cifar100", "train") == "gs://b/tfds/ltkd_jax/cifar100/train"


def test_checkpoint_managers_get_urls_intact(monkeypatch, tmp_path):
    seen = []

    class NoCheckpoints:  # records where a manager would live; holds nothing
        def __init__(self, directory, **kw):
            seen.append(directory)

        def best_step(self):
            return None

    monkeypatch.setattr(checkpoint.ocp, "CheckpointManager", NoCheckpoints)
    checkpoint.Checkpointer("gs://b/runs/ltkd")
    checkpoint.Checkpointer(str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    checkpoint.Checkpointer("rel")
    assert [os.fspath(d) for d in seen] == [
        "gs://b/runs/ltkd/checkpoints", "gs://b/runs/ltkd/best", str(tmp_path / "run" / "checkpoints"),
        str(tmp_path / "run" / "best"), str(tmp_path / "rel" / "checkpoints"), str(tmp_path / "rel" / "best")]


def test_teacher_workdir_keeps_gs_urls(tmp_path):
    config = _config("ltkd")
    teacher = experiment.teacher_workdir(config, "gs://b/runs/ltkd")
    assert teacher == "gs://b/runs/teachers/fashion_mnist_gamma4/demo_resnet_teacher_seed0_ep1_bs64"
    assert experiment.teacher_workdir(config, "gs://b/runs/ltkd/") == teacher
    config.teachers_dir = "gs://other/teachers"
    assert experiment.teacher_workdir(config, str(tmp_path / "runs" / "ltkd")).startswith(
        "gs://other/teachers/fashion_mnist_gamma4/")
    config.teachers_dir = ""
    assert experiment.teacher_workdir(config, str(tmp_path / "runs" / "ltkd")).startswith(
        str(tmp_path / "runs" / "teachers") + os.sep)


# -------------------------------------------------------------------------------- on a remote file system


def test_metrics_log_rewrites_remote_file_and_keeps_history_on_resume(remote):
    workdir = f"{remote}/runs/teacher"
    log = train.MetricsLog(workdir)
    assert log._lines == [] and log.path == f"{workdir}/metrics.jsonl"
    log.write({"step": 1, "split": "train", "loss": np.float32(2.5)})
    log.write({"step": 2, "split": "train", "loss": float("nan"), "acc": np.arange(2)})
    resumed = train.MetricsLog(workdir)  # a restarted run: history read back from the store
    resumed.write({"step": 3, "split": "test", "accuracy": 50.0})
    records = train.read_metrics(resumed.path)
    assert records == [{"step": 1, "split": "train", "loss": 2.5}, {"step": 2, "split": "train", "loss": None,
                                                                   "acc": [0, 1]},
                       {"step": 3, "split": "test", "accuracy": 50.0}]
    assert epath.Path(resumed.path).read_text().count("\n") == 3
    assert not [n for n in _names(workdir) if ".tmp" in n]
    if remote.startswith("ram://"):  # tensorboard's writer goes through tf.io.gfile, which knows ram://
        assert list(epath.Path(workdir, "tensorboard").glob("events.out.tfevents.*"))
    assert train.read_metrics(f"{remote}/nothing/metrics.jsonl") == []


def test_metrics_log_appends_locally(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n')
    log = train.MetricsLog(str(tmp_path))
    assert log._lines is None  # local files are appended to, not rewritten
    log.write({"step": 1})
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 0}\n{"step": 1}\n'


def test_check_workdir_remote(remote):
    workdir = f"{remote}/runs/teacher"
    config = _config()
    experiment.check_workdir(config, workdir)
    assert json.loads(epath.Path(workdir, "config.json").read_text()) == json.loads(config.to_json())
    config.log_every_steps = 7  # a runtime field: same run, config.json rewritten in place
    experiment.check_workdir(config, workdir)
    assert json.loads(epath.Path(workdir, "config.json").read_text())["log_every_steps"] == 7
    epath.Path(workdir, "metrics.jsonl").write_text('{"step": 1}\n')
    other = _config(seed=5)
    with pytest.raises(ValueError, match=r"holds a run of another config \(seed: 0 there, 5 now\)"):
        experiment.check_workdir(other, workdir)
    assert epath.Path(workdir, "metrics.jsonl").exists()
    other.overwrite = True
    experiment.check_workdir(other, workdir)  # the old run is deleted from the store
    assert _names(workdir) == ["config.json"]
    assert json.loads(epath.Path(workdir, "config.json").read_text())["seed"] == 5


def test_run_config_report_and_split_remote(remote, monkeypatch):
    """`experiment._run_config` on a remote workdir, training replaced by writing metrics: config.json, the
    split files, metrics.jsonl, report.md and its PNGs all land in the store."""
    workdir = f"{remote}/runs/teacher"
    info = _info()
    exp_data = types.SimpleNamespace(group_ids=info.group_ids, train_counts=info.train_counts,
                                     num_train=int(info.train_counts.sum()), class_names=info.class_names)

    def fake_population(stages, data_, workdirs, **kwargs):
        log = train.MetricsLog(workdirs[0])
        for step in (1, 2):
            log.write({"step": step, "epoch": 1, "split": "train", "loss": 1.0 / step,
                       "teacher_group_sums": [30.0, 20.0, 14.0], "teacher_group_sums_rebalanced": [21.0] * 3})
        log.write({"step": 2, "epoch": 1, "split": "test", "accuracy": 40.0, "accuracy_head": 60.0,
                   "accuracy_medium": 30.0, "accuracy_tail": 10.0, "per_class_accuracy": list(range(10))})

    monkeypatch.setattr(train, "run_population", fake_population)
    records, = experiment._run_configs([_config()], [workdir], exp_data, info, None)
    assert [r["split"] for r in records] == ["train", "train", "test"]
    assert _names(workdir) == ["class_groups.json", "config.json", "lt_indices.npy", "metrics.jsonl",
                               "per_class_accuracy.png", "report.md", "teacher_group_sums.png"]
    report = epath.Path(workdir, "report.md").read_text()
    assert "| last (1) | 60.00 | 30.00 | 10.00 | 40.00 |" in report and "![teacher_group_sums.png]" in report
    for png in ("per_class_accuracy.png", "teacher_group_sums.png"):
        assert epath.Path(workdir, png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    indices, groups = data.read_split(workdir)
    np.testing.assert_array_equal(indices, info.lt_indices)
    assert groups == json.loads(json.dumps(info.summary()))
    # A rerun rewrites report.md and the PNGs over the old ones (no leftovers, no doubled content).
    before = epath.Path(workdir, "report.md").read_text()
    run_dir.write_report(workdir, _config(), exp_data)
    assert epath.Path(workdir, "report.md").read_text() == before
    assert len(_names(workdir)) == 7


def test_write_split_remote_returns_urls(remote):
    paths = data.write_split(_info(), f"{remote}/run")
    assert paths == {"lt_indices": f"{remote}/run/lt_indices.npy",
                     "class_groups": f"{remote}/run/class_groups.json"}
    assert _names(f"{remote}/run") == ["class_groups.json", "lt_indices.npy"]


def test_restore_variables_remote_errors(remote):
    with pytest.raises(checkpoint.CheckpointError, match="has no checkpoints/ directory"):
        checkpoint.restore_variables(f"{remote}/teacher", {"params": {}})


def test_data_caches_on_remote_data_dir(remote):
    """The numpy caches of a split built from (mock) tfds data into a remote data dir, then read back with
    numpy only; mmap=True falls back to a full read there."""
    data_dir = f"{remote}/tfds"
    with tfds.testing.mock_data(num_examples=120):
        info = data.get_info("fashion_mnist", data_dir=data_dir, imbalance_factor=4)
        images, labels = data.load_arrays("fashion_mnist", "train", data_dir, mmap=True)
    assert info.data_dir == data_dir and isinstance(images, np.ndarray) and images.shape == (120, 28, 28, 1)
    cache = tf_env.cache_dir(data_dir, "fashion_mnist", "train")
    assert cache == f"{data_dir}/ltkd_jax/fashion_mnist/train"
    assert _names(cache) == sorted(["images.npy", "labels.npy", "meta.json", "stored_positions.npy",
                                    source.CHECKSUMS_FILE, source.CLASS_NAMES_FILE])
    assert json.loads(epath.Path(cache, "meta.json").read_text())["num_examples"] == 120
    # Outside the mock: everything comes from the caches in the store.
    again = data.get_info("fashion_mnist", data_dir=data_dir, imbalance_factor=4)
    images2, labels2 = data.load_arrays("fashion_mnist", "train", data_dir)
    np.testing.assert_array_equal(again.lt_indices, info.lt_indices)
    np.testing.assert_array_equal(images2, images)
    np.testing.assert_array_equal(labels2, labels)
    np.testing.assert_array_equal(labels, source.split_metadata("fashion_mnist", "train", data_dir).labels)


def test_split_file_on_remote_store(remote):
    keys = np.asarray([b"a.JPEG", b"b.JPEG", b"c.JPEG"], dtype=np.bytes_)
    path = f"{remote}/splits/ImageNet_LT_train.txt"
    epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
    epath.Path(path).write_text("train/x/c.JPEG 2\ntrain/y/a.JPEG 0\n")
    np.testing.assert_array_equal(
        info_lib.indices_from_split_file(path, keys, np.asarray([0, 1, 2]), name="tiny"), [2, 0])


def test_diagnose_files_remote(remote, capsys):
    assert diagnose.main([f"--teacher={remote}/no_run"]) == 1
    assert "is not a run directory (no config.json)" in capsys.readouterr().err
    result = {"uniform_share": [4.0, 3.0, 3.0], "batch_size": 10,
              "test": {"per_batch": [[4.0, 3.0, 3.0], [5.0, 3.0, 2.0]]},
              "train": {"per_batch": [[6.0, 3.0, 1.0], [7.0, 2.0, 1.0]]}}
    diagnose._plot(result, epath.Path(remote) / "group_sums.png")  # pylint: disable=protected-access
    assert epath.Path(remote, "group_sums.png").read_bytes()[:4] == b"\x89PNG"


def test_report_reads_and_writes_remote_runs_dir(remote, tmp_path, capsys):
    """The paper-table report of a sweep written to an object store equals the report of a local copy."""
    from tools import test_report  # pylint: disable=import-outside-toplevel

    local = str(tmp_path / "runs")
    for seed, tail in enumerate((40, 44)):
        test_report.make_run(local, "cifar100", f"kd,{test_report.PAIR},20", seed, test_report.finished(55, tail))
    test_report.make_run(local, "cifar100", f"ltkd,{test_report.PAIR},20", 0, [(1, 60, 50)])  # unfinished
    runs = epath.Path(remote) / "runs"
    for found in runs_lib.find_run_dirs(local):
        for name in ("config.json", "metrics.jsonl"):
            target = runs / os.path.relpath(found, local) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(epath.Path(found, name).read_text())

    assert runs_lib.find_run_dirs(os.fspath(runs)) == [os.fspath(runs / os.path.relpath(p, local))
                                                     for p in runs_lib.find_run_dirs(local)]
    assert report.main([local, "--table=I"]) == 0
    local_text = (tmp_path / "runs" / "report" / "tables.md").read_text()
    assert report.main([os.fspath(runs), "--table=I"]) == 0
    assert (runs / "report" / "tables.md").read_text() == local_text.replace(local, os.fspath(runs))
    assert "ltkd_resnet32x4-resnet8x4_20_[]_seed0 (epoch 1/240)" in local_text  # relative paths, also remote
    csv_text = (runs / "report" / "results.csv").read_text()
    assert csv_text == (tmp_path / "runs" / "report" / "results.csv").read_text() and "kd," in csv_text
    with pytest.raises(SystemExit):
        report.main([f"{remote}/missing"])
    assert "missing is not a directory" in capsys.readouterr().err
