"""Faults a long run meets, survived with nothing lost: SIGKILL anywhere (mid-training, while an asynchronous
checkpoint is written, before its checksums), a full disk, a non-finite loss or state. Each ends where the
uninterrupted run ends once the same command runs again. (A damaged data cache: tests/data/test_fashion_mnist.py;
a dead process of two: tests/launch/test_multiprocess.py.)"""
import os
import subprocess
import sys
import uuid

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath
from orbax.checkpoint._src.path import atomicity

from ltkd_jax import train
from ltkd_jax.train import checkpoint, loop, step as step_lib
from train import fault_run
import synthetic

HERE = os.path.dirname(os.path.abspath(__file__))
TIMING = ("images_per_sec", "input_wait_fraction")  # wall-clock fields: the only ones a rerun may change


def _fault_run(workdir, fault=None):
    env = {k: v for k, v in os.environ.items() if k != "FAULT"}
    if fault:
        env["FAULT"] = fault
    return subprocess.run([sys.executable, os.path.join(HERE, "fault_run.py"), str(workdir)], env=env,
                          capture_output=True, text=True, timeout=300)


def _records(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in train.read_metrics(os.path.join(run_dir, "metrics.jsonl"))]


def _final_variables(run_dir):
    return jax.device_get(train.load_teacher(synthetic.TinyNet(), str(run_dir), (8, 8, 1)).variables)


def _assert_same_run(run_dir, reference_dir):
    assert _records(run_dir) == _records(reference_dir)
    for a, b in zip(jax.tree_util.tree_leaves(_final_variables(run_dir)),
                    jax.tree_util.tree_leaves(_final_variables(reference_dir))):
        np.testing.assert_array_equal(a, b)


def test_sigkill_anywhere_then_the_same_command_ends_as_the_uninterrupted_run(tmp_path):
    fault_run.run(str(tmp_path / "reference"))  # the uninterrupted command, here (the same program and devices)
    killed, student = tmp_path / "killed", tmp_path / "killed" / "student" / "checkpoints"
    # Each kill leaves what SIGKILL leaves (no handler runs); each rerun is the same command.
    out = _fault_run(killed, "step:teacher:13")  # the teacher mid-epoch 2 (its epoch-1 save may be uncommitted)
    assert out.returncode == -9, out.stderr[-2000:]
    out = _fault_run(killed, "writing:student:2")  # the student's 2nd save written in the background, uncommitted
    assert out.returncode == -9, out.stderr[-2000:]
    assert [p.name for p in student.iterdir() if p.name.endswith(".orbax-checkpoint-tmp")]
    out = _fault_run(killed, "saved:student:1")  # a complete save without its checksums
    assert out.returncode == -9, out.stderr[-2000:]
    assert [p for p in student.iterdir() if checkpoint.damage(p) == checkpoint.NO_CHECKSUMS]
    out = _fault_run(killed)
    assert out.returncode == 0, out.stderr[-2000:]
    for stage in ("teacher", "student"):
        _assert_same_run(killed / stage, tmp_path / "reference" / stage)
        assert not [p for p in (killed / stage / "checkpoints").iterdir() if "tmp" in p.name]


# ------------------------------------------------------------------------------------------ a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (needs the right to mount: root, as in CI); unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                         capture_output=True, text=True)
    if out.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory, leave_bytes: int):
    """A filler file that leaves about `leave_bytes` free on `directory`'s file system."""
    filler = epath.Path(directory) / f"filler-{uuid.uuid4().hex}"
    free = checkpoint.free_bytes(os.fspath(directory))
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))
    return filler


def _teacher(workdir):
    return train.run_stage(train.Stage("teacher", synthetic.TinyNet(), 0.05, 3, 0), synthetic.make_data(),
                           str(workdir), **synthetic.RECIPE)


def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes_once_space_is_back(tmp_path, small_disk,
                                                                                         monkeypatch):
    _teacher(tmp_path / "reference")
    workdir = small_disk / "run"
    fillers = []
    ensure_space = checkpoint.ensure_space

    def fill_before_step_20(checkpointers, states, step):  # step 10's checkpoint complete, little space left
        if step == 20 and not fillers:
            for ckpt in checkpointers:
                ckpt.finish_writes()
            fillers.append(_fill(small_disk, 64 << 10))
        ensure_space(checkpointers, states, step)

    monkeypatch.setattr(checkpoint, "ensure_space", fill_before_step_20)
    with pytest.raises(checkpoint.CheckpointError) as raised:
        _teacher(workdir)
    message = str(raised.value)
    assert "\n" not in message and str(workdir) in message and "MiB needed" in message and "step 10" in message
    assert os.listdir(workdir / "checkpoints") == ["10"]  # nothing of step 20 written; step 10 intact
    assert checkpoint.damage(workdir / "checkpoints" / "10") is None
    assert [r["step"] for r in train.read_metrics(os.fspath(workdir / "metrics.jsonl")) if r["split"] == "test"] == [10]

    # Space runs out while a save is written in the background (after the check): the same line, at the next
    # save; the step being written never becomes a checkpoint.
    fillers.pop().unlink()
    monkeypatch.setattr(checkpoint, "ensure_space", ensure_space)
    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def fill_then_commit(self):  # orbax's last step of a background write: its commit file, the rename
        if self.get_final().name == "20" and not fillers:
            fillers.append(_fill(small_disk, 0))
        return await finalize(self)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", fill_then_commit)
    with pytest.raises(checkpoint.CheckpointError, match="not enough disk space") as raised:
        _teacher(workdir)
    assert "\n" not in str(raised.value) and str(workdir) in str(raised.value)
    assert "20" not in os.listdir(workdir / "checkpoints") and checkpoint.damage(workdir / "checkpoints" / "10") is None
    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", finalize)
    fillers.pop().unlink()
    _teacher(workdir)
    _assert_same_run(workdir, tmp_path / "reference")


# --------------------------------------------------------------------------------------- non-finite values


def _poisoned_train_step(at_step: int, what: str):
    """train_step, except that from `at_step` on the loss (`what="loss"`) or, at that step only, the updated
    parameters (`what="params"`, the loss still finite) are NaN."""
    original = step_lib.train_step

    def train_step(state, teacher_out, batch, **kwargs):
        new_state, metrics_ = original(state, teacher_out, batch, **kwargs)
        hit = state.step + 1 >= at_step if what == "loss" else state.step + 1 == at_step
        if what == "loss":
            metrics_ = {**metrics_, "loss": jnp.where(hit, jnp.nan, metrics_["loss"])}
        else:
            new_state = new_state.replace(params=jax.tree_util.tree_map(
                lambda p: jnp.where(hit, jnp.nan, p), new_state.params))
        return new_state, metrics_
    return train_step


@pytest.mark.parametrize("what, at_step", [("loss", 13), ("params", 20)])
def test_a_non_finite_loss_or_state_names_step_and_member_and_is_never_saved(tmp_path, monkeypatch, what, at_step):
    monkeypatch.setattr(step_lib, "train_step", _poisoned_train_step(at_step, what))
    with pytest.raises(loop.NonFiniteLoss) as raised:
        _teacher(tmp_path / "run")
    message = str(raised.value)
    assert "\n" not in message and f"step {at_step}" in message and "teacher" in message
    assert str(tmp_path / "run") in message
    # The last checkpoint is the one before, and no checkpoint holds a non-finite value.
    steps = sorted(int(s) for s in os.listdir(tmp_path / "run" / "checkpoints"))
    assert steps == [10]
    variables = _final_variables(tmp_path / "run")
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(variables))
    assert os.listdir(tmp_path / "run" / "best") == ["10"]
