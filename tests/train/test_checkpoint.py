"""Checkpointer: last-N and best sets, asynchronous writes that a restore and a reopen see complete, and the
checksums that catch a damaged checkpoint before orbax reads it."""
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath

from ltkd_jax import train
from ltkd_jax.train import checkpoint
import synthetic

EPOCHS = 3  # 10 steps each: checkpoints 20 and 30 are kept
TIMING = ("images_per_sec", "input_wait_fraction")


def _state(value):
    return {"params": {"w": jnp.full((64, 64), value, jnp.float32)}, "step": jnp.asarray(int(value), jnp.int32)}


def _abstract():
    return jax.eval_shape(lambda: _state(0))


def test_best_written_only_on_improvement_and_reopened(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
    best_writes = []
    save_best = ckpt.best.save
    ckpt.best.save = lambda step, **kw: (best_writes.append(step), save_best(step, **kw))[1]
    for step, accuracy in [(1, 10.0), (2, 30.0), (3, 20.0), (4, 30.0), (5, 50.0), (6, None)]:
        ckpt.save(step, _state(step), accuracy=accuracy)
    assert best_writes == [1, 2, 5]  # 3 is worse, 4 only ties, 6 has no accuracy
    ckpt.close()
    reopened = checkpoint.Checkpointer(str(tmp_path), keep=2)
    assert reopened.best_accuracy == 50.0 and reopened.best.all_steps() == [5]
    assert sorted(reopened.latest.all_steps()) == [5, 6]
    restored = reopened.restore_latest(_abstract())
    np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.full((64, 64), 6.0, np.float32))
    reopened.save(7, _state(7), accuracy=40.0)  # below the reopened best: best stays at 5
    reopened.close()
    assert checkpoint.Checkpointer(str(tmp_path)).best.all_steps() == [5]


def test_restore_right_after_an_async_save_sees_it(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=3)
    ckpt.save(1, _state(1))
    ckpt.save(2, _state(2))
    restored = ckpt.restore_latest(_abstract())  # no close() in between: the restore waits for the write
    assert int(restored["step"]) == 2
    ckpt.close()


def test_restore_errors_stay_one_line():
    """A failed orbax read: the message loses tensorstore's spec dump and stays short."""
    spec_dump = Exception("Encountered error while reading array index: (slice(0, 96, 1),). See full TensorStore "
                          "details: <bound method spec of TensorStore({\n 'driver': 'zarr'})>")
    assert checkpoint._first_line(spec_dump) == (  # pylint: disable=protected-access
        "Exception: Encountered error while reading array index: (slice(0, 96, 1),).")
    long_message = checkpoint._first_line(ValueError("x" * 500))  # pylint: disable=protected-access
    assert long_message.endswith(" " + "x" * 200 + "...")


def _teacher_run(workdir):
    return train.run_stage(train.Stage("teacher", synthetic.TinyNet(), 0.05, EPOCHS, 0), synthetic.make_data(),
                           str(workdir), **synthetic.RECIPE)


def _records(workdir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in train.read_metrics(f"{workdir}/metrics.jsonl")]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished") / "teacher"
    state = _teacher_run(workdir)
    return workdir, [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state)]


def _copy(source, tmp_path):
    """A copy of the finished run to damage."""
    workdir = tmp_path / "teacher"
    shutil.copytree(source, workdir)
    return workdir


def _record_reads(monkeypatch):
    """The steps handed to orbax from now on (checkpoint.restore still reads them)."""
    read, restore = [], checkpoint.restore
    monkeypatch.setattr(checkpoint, "restore", lambda manager, step, *args, **kwargs: (
        read.append(step), restore(manager, step, *args, **kwargs))[1])
    return read


def _assert_same_leaves(state, final_leaves):
    for ours, theirs in zip(jax.tree_util.tree_leaves(state), final_leaves):
        np.testing.assert_array_equal(np.asarray(ours), theirs)


def _damage(workdir, how):
    """Damage the largest array file of the latest step (30) as `how` says; returns its path."""
    step_dir = workdir / "checkpoints" / "30"
    target = synthetic.largest_array_file(step_dir)
    blob = bytearray(target.read_bytes())
    if how == "flip":
        blob[len(blob) // 2] ^= 0x01
        target.write_bytes(bytes(blob))
    elif how == "truncate":
        target.write_bytes(bytes(blob[:len(blob) // 2]))
    else:
        target.unlink()
    return step_dir, target


def test_every_saved_file_has_its_checksum(finished_run):
    workdir, _ = finished_run
    for step_dir in [*(workdir / "checkpoints").iterdir(), *(workdir / "best").iterdir()]:
        recorded = json.loads((step_dir / "checksums.process_0.json").read_text())
        files = {str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file()}
        assert recorded["processes"] == 1 and set(recorded["files"]) == files - {"checksums.process_0.json"}
        assert checkpoint.damage(epath.Path(step_dir)) is None


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_latest_checkpoint_is_skipped_before_any_read(finished_run, tmp_path, monkeypatch, caplog, how):
    """A byte flipped inside an array file, a truncated file or a deleted one: caught by the checksums before
    orbax opens the step; one warning line, and the run resumes from the step before and ends as it did."""
    source, final_leaves = finished_run
    workdir = _copy(source, tmp_path)
    step_dir, target = _damage(workdir, how)
    problem = checkpoint.damage(epath.Path(step_dir))
    assert str(target) in problem and ("missing" in problem if how == "delete" else "has changed" in problem)
    read = _record_reads(monkeypatch)
    with caplog.at_level(logging.WARNING):
        state = _teacher_run(workdir)
    assert read == [20]  # step 30 was never handed to orbax
    warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(warnings) == 1 and str(target) in warnings[0] and "\n" not in warnings[0]
    _assert_same_leaves(state, final_leaves)
    assert _records(workdir) == _records(source)  # the records after step 20 were replaced, not repeated
    assert sorted(os.listdir(workdir / "checkpoints")) == ["20", "30"]
    assert checkpoint.damage(epath.Path(step_dir)) is None  # step 30 saved again


def test_a_damaged_teacher_checkpoint_is_one_error_naming_the_file(finished_run, tmp_path, monkeypatch):
    source, _ = finished_run
    workdir = _copy(source, tmp_path)
    _, target = _damage(workdir, "flip")
    monkeypatch.setattr(checkpoint, "restore", lambda *args, **kwargs: pytest.fail("read a damaged checkpoint"))
    with pytest.raises(checkpoint.CheckpointError) as error:
        train.load_teacher(synthetic.TinyNet(), str(workdir), (8, 8, 1))
    message = str(error.value)
    assert message.startswith(f"teacher checkpoint {workdir / 'checkpoints' / '30'} is damaged: {target} has changed")
    assert "\n" not in message


def test_a_step_without_checksums_is_restored_unverified(finished_run, tmp_path, monkeypatch, caplog):
    """A run killed after a save finished but before its checksums were written: the step is complete (orbax
    renames it only then), so it is restored with a warning, not thrown away."""
    source, final_leaves = finished_run
    workdir = _copy(source, tmp_path)
    (workdir / "checkpoints" / "30" / "checksums.process_0.json").unlink()
    read = _record_reads(monkeypatch)
    with caplog.at_level(logging.WARNING):
        state = _teacher_run(workdir)
        train.load_teacher(synthetic.TinyNet(), str(workdir), (8, 8, 1))
    assert read[0] == 30 and sorted(os.listdir(workdir / "checkpoints")) == ["20", "30"]
    assert sum(checkpoint.NO_CHECKSUMS in r.getMessage() for r in caplog.records) == 2
    _assert_same_leaves(state, final_leaves)


def test_a_step_one_process_recorded_is_restored_and_its_files_verified(finished_run, tmp_path, monkeypatch):
    """A 2-process run whose process 1 was killed between a save and its record: the step is complete (orbax
    renames it once every process wrote it); process 0's files are checked, the rest is restored unverified. (It
    was taken for damaged, deleted, and the run went back a checkpoint.)"""
    source, final_leaves = finished_run
    workdir = _copy(source, tmp_path)
    record = workdir / "checkpoints" / "30" / "checksums.process_0.json"
    record.write_text(json.dumps(dict(json.loads(record.read_text()), processes=2)))
    assert checkpoint.damage(workdir / "checkpoints" / "30") == checkpoint.NO_CHECKSUMS
    read = _record_reads(monkeypatch)
    _assert_same_leaves(_teacher_run(workdir), final_leaves)
    assert read[0] == 30 and sorted(os.listdir(workdir / "checkpoints")) == ["20", "30"]
    _, target = _damage(workdir, "flip")  # a recorded file changed is still damage
    problem = checkpoint.damage(workdir / "checkpoints" / "30")
    assert "has changed" in problem and str(target) in problem


def test_a_resumed_log_drops_what_was_logged_after_its_checkpoint(tmp_path):
    """Records after the resumed step (and a last line a kill left half-written) go; the rest stays as it was."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 5, "split": "test"}\n{"step": 9}\n{"step": 1')
    train.MetricsLog(str(tmp_path), resume_step=5)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 5, "split": "test"}\n'
    train.MetricsLog(str(tmp_path))  # a fresh run's log: nothing dropped
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 5, "split": "test"}\n'
