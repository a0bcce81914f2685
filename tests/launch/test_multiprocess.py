"""Several processes for real: `launch/local.sh 2` runs the command line as two JAX processes (gloo collectives on
the CPU) and must end where one process with the same devices ends, also after one of them died and the command
was run again; its checkpoints restore in one process with one device."""
import os
import shlex
import subprocess
import time

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from ltkd_jax import data as data_lib
from ltkd_jax import models, train
import mock_main
import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAIR = "demo_resnet_teacher-demo_resnet_student"
# docs/reliability.md: a process whose peer died exits within jax.distributed's heartbeat time-out (100 s), at once
# where a collective sees the peer's connection close.
SURVIVOR_EXIT_SECONDS = 100


def _environment(devices_per_process):
    return dict(synthetic.xla_env(), LTKD_MAIN="mock_main", PYTHONPATH=os.path.join(ROOT, "tests"),
                DEVICES_PER_PROCESS=str(devices_per_process))  # launch/local.sh sets the device count


def _args(workdir, data_dir, *extra):
    return [f"--config={ROOT}/configs/fashion_mnist_lt.py:ltkd,{PAIR},4", f"--workdir={workdir}",
            "--config.num_epochs=2", "--config.teacher_num_epochs=1", "--config.batch_size=16",
            "--config.eval_batch_size=64",
            "--config.log_every_steps=2", f"--config.dataset.data_dir={data_dir}", "--config.population=kd,ltkd",
            *extra]


def _launch(num_processes, workdir, data_dir, devices_per_process=1, *extra):
    out = subprocess.run(["bash", os.path.join(ROOT, "launch", "local.sh"), str(num_processes), "--",
                          *_args(workdir, data_dir, *extra)],
                         env=_environment(devices_per_process), cwd=ROOT, capture_output=True, text=True, timeout=600)
    logs = "".join(open(os.path.join(workdir, f"process_{i}.log")).read()[-2000:]
                   for i in range(num_processes) if os.path.exists(os.path.join(workdir, f"process_{i}.log")))
    assert out.returncode == 0, out.stderr[-3000:] + logs
    return [train.read_metrics(os.path.join(workdir, member, "metrics.jsonl")) for member in ("kd", "ltkd")]


def _one_dies(workdir, data_dir, step, *extra):
    """The 2-process command with each process started on its own (no launcher to stop the survivor): process 1
    dies by SIGKILL once it logs `step`. Returns process 0's exit status and its seconds past process 1's death."""
    env = dict(_environment(1), MOCK_DIE_AT=f"1:{step}")
    commands = subprocess.run(["bash", os.path.join(ROOT, "launch", "local.sh"), "2", "--dry_run", "--",
                               *_args(workdir, data_dir, *extra)], env=env, cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.splitlines()
    os.makedirs(workdir, exist_ok=True)
    logs = [open(os.path.join(workdir, f"process_{i}.log"), "w") for i in range(2)]
    processes = [subprocess.Popen(shlex.split(command), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
                 for command, log in zip(commands, logs)]
    try:
        assert processes[1].wait(timeout=300) == -9
        died = time.monotonic()
        status = processes[0].wait(timeout=SURVIVOR_EXIT_SECONDS + 60)
        return status, time.monotonic() - died
    finally:
        for process in processes:
            process.kill()
        for log in logs:
            log.close()


def test_two_processes_match_one_and_their_checkpoint_restores_in_one(tmp_path):
    data_dir = str(tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=mock_main.NUM_EXAMPLES):  # build the caches once, before the race
        for split in ("train", "test"):
            data_lib.load_arrays("fashion_mnist", split, data_dir)
    # One process holding two devices against two processes holding one each: the same global mesh, batch
    # shards and programs, so teacher and student end with the same metrics; only the collectives differ
    # (in-process against gloo across processes). (Against a single device the float32 sums run in another
    # order, and on these random-label mock images ~20 SGD steps amplify that to ~1e-2; the 8-device test in
    # tests/train/test_loop.py covers that comparison on a stable problem.)
    # The two-process run distils from the teacher the first run trained (the loop, its collectives and the
    # checkpoints are the same for teacher and student; training the teacher twice only costs time).
    # The students are a population (KD and LTKD sharing the teacher's forward pass), each member compared.
    # Process 1 of the two-process run dies in the second epoch; process 0 must not hang, and the same command
    # again resumes both from the first epoch's checkpoint to the uninterrupted end.
    ones = _launch(1, str(tmp_path / "one" / "pop"), data_dir, 2)
    teachers = f"--config.teachers_dir={tmp_path / 'one' / 'teachers'}"
    steps_per_epoch = [r for r in ones[0] if r["split"] == "test"][0]["step"]
    status, seconds = _one_dies(str(tmp_path / "two" / "pop"), data_dir, steps_per_epoch + 2, teachers)
    assert status != 0 and seconds < SURVIVOR_EXIT_SECONDS, (status, seconds)
    print(f"process 0 exited with status {status} {seconds:.1f} s after process 1 died")  # pytest -s shows it
    # The first epoch's checkpoints, which process 0 alone had recorded when process 1 died: resumed from, not
    # deleted as damaged and trained again.
    first_epoch = [tmp_path / "two" / "pop" / member / "checkpoints" / str(steps_per_epoch)
                   for member in ("kd", "ltkd")]
    saved = [os.stat(step_dir).st_ino for step_dir in first_epoch]
    twos = _launch(2, str(tmp_path / "two" / "pop"), data_dir, 1, teachers)
    assert [os.stat(step_dir).st_ino for step_dir in first_epoch] == saved
    assert not (tmp_path / "two" / "teachers").exists()
    for one, two in zip(ones, twos):
        _same_run(one, two)
    assert os.path.exists(tmp_path / "two" / "pop" / "process_1.log")

    # The 2-process checkpoints restore in this single process and hold the same students.
    model = models.get_model("demo_resnet_student", 10)
    assert jax.device_count() == 1
    for member in ("kd", "ltkd"):
        restored_two = train.load_teacher(model, str(tmp_path / "two" / "pop" / member), (28, 28, 1)).variables
        restored_one = train.load_teacher(model, str(tmp_path / "one" / "pop" / member), (28, 28, 1)).variables
        for a, b in zip(jax.tree_util.tree_leaves(restored_one), jax.tree_util.tree_leaves(restored_two)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def _same_run(one, two):
    """Two metrics.jsonl record lists of the same run: same steps, losses, group sums and accuracies."""
    test_one = [r for r in one if r["split"] == "test"][-1]
    test_two = [r for r in two if r["split"] == "test"][-1]
    assert test_two["step"] == test_one["step"]
    assert test_two["loss"] == pytest.approx(test_one["loss"], rel=1e-5)
    assert test_two["accuracy"] == test_one["accuracy"]
    assert test_two["per_class_accuracy"] == test_one["per_class_accuracy"]
    train_one = [r for r in one if r["split"] == "train"]
    train_two = [r for r in two if r["split"] == "train"]
    assert [r["step"] for r in train_two] == [r["step"] for r in train_one]
    for a, b in zip(train_one, train_two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        np.testing.assert_allclose(b["teacher_group_sums"], a["teacher_group_sums"], rtol=1e-5)
