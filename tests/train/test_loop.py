"""The training loop: optimiser, schedule, resume, SIGTERM, sharding, bad input (synthetic data, tiny model)."""
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from etils import epath
from tensorboard.backend.event_processing import event_accumulator

from ltkd_jax.data import device
from ltkd_jax.train import loop
from ltkd_jax.train import checkpoint, step as step_lib
from ltkd_jax.tools import diagnose
from ltkd_jax import losses, train
import synthetic

HERE = os.path.dirname(__file__)


def test_sgd_is_pytorch_sgd():
    """buf = m * buf + (g + wd * p); p -= lr * buf, on every parameter (numpy reference, 3 steps)."""
    lr, m, wd = 0.1, 0.9, 5e-4
    params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
    grads = [{"w": jnp.array([0.1, 0.2, -0.3]) * (k + 1), "b": jnp.array(0.05 * k)} for k in range(3)]
    tx = train.sgd(lr, momentum=m, weight_decay=wd)
    state = tx.init(params)
    ref_p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    ref_buf = {k: np.zeros_like(v) for k, v in ref_p.items()}
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        for k in ref_p:
            ref_buf[k] = m * ref_buf[k] + (np.asarray(g[k]) + wd * ref_p[k])
            ref_p[k] = ref_p[k] - lr * ref_buf[k]
    for k in ref_p:
        np.testing.assert_allclose(params[k], ref_p[k], rtol=1e-6)


def test_step_decay_schedule_in_epochs():
    schedule = train.step_decay_schedule(0.05, steps_per_epoch=10, decay_epochs=(150, 180, 210), decay_rate=0.1)
    # mdistiller: epoch e (1-based) uses base * 0.1 ** (number of stages < e).
    for epoch, want in [(1, 0.05), (150, 0.05), (151, 0.005), (180, 0.005), (181, 0.0005), (211, 0.00005)]:
        first_step_of_epoch = (epoch - 1) * 10
        assert float(schedule(first_step_of_epoch)) == pytest.approx(want, rel=1e-6)
        assert float(schedule(first_step_of_epoch + 9)) == pytest.approx(want, rel=1e-6)


def _preempted(workdir, calls, **overrides):
    """A run that sees SIGTERM at its `calls`-th check (one process checks once per dispatch) and saves there."""
    checks = iter(range(1, 10**6))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop.SigtermFlag, "agreed", lambda flag: next(checks) >= calls)
        with pytest.raises(train.Preempted) as raised:
            _train_teacher(workdir, **overrides)
    return str(raised.value)


def _train_teacher(workdir, **overrides):
    return train.run_stage(train.Stage("teacher", synthetic.TinyNet(), 0.05, 3, 0), synthetic.make_data(),
                             workdir, **{**synthetic.RECIPE, **overrides})


def _params(state):
    return jax.tree_util.tree_leaves(jax.device_get(state.params))


def _tests(workdir):
    return [r for r in train.read_metrics(os.path.join(workdir, "metrics.jsonl")) if r["split"] == "test"]


def test_teacher_run_logs_checkpoints_and_resumes_identically(tmp_path):
    full = _train_teacher(str(tmp_path / "full"))
    records = _tests(str(tmp_path / "full"))
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for key in ("step", "epoch", "split", "accuracy", "accuracy_head", "accuracy_medium", "accuracy_tail", "loss"):
        assert key in records[-1]
    assert len(records[-1]["per_class_accuracy"]) == 10
    train_records = [r for r in train.read_metrics(os.path.join(str(tmp_path / "full"), "metrics.jsonl"))
             if r["split"] == "train"]
    # lr 0.05, decayed x0.1 after epoch 2 (10 steps per epoch): the rate of each logged window's last step.
    assert {r["step"]: r["learning_rate"] for r in train_records}[20] == pytest.approx(0.05)
    assert {r["step"]: r["learning_rate"] for r in train_records}[24] == pytest.approx(0.005)
    # 165 images, batch 16: 10 steps per epoch, the remainder dropped.
    assert records[-1]["step"] == 30
    assert sorted(os.listdir(tmp_path / "full" / "checkpoints")) == ["20", "30"]  # keep the last 2
    assert len(os.listdir(tmp_path / "full" / "best")) == 1
    # The logged evaluation (uint8 batches, normalised inside the jitted step) is the model's accuracy on the
    # normalised test set, recomputed here through diagnose's separate eval path.
    data = synthetic.make_data()
    probs = diagnose.predictions(synthetic.TinyNet(), full.variables, data.test_images, data.augmentation, 64, 1.0)
    correct = probs.argmax(1) == data.test_labels
    per_class = [100 * correct[data.test_labels == c].mean() for c in range(10)]
    np.testing.assert_allclose(records[-1]["per_class_accuracy"], per_class, rtol=1e-5)
    # Its calibration (15 equal-width bins) and prediction shares, against float64 numpy on the same probabilities.
    confidence, groups = probs.max(1).astype(np.float64), synthetic.GROUP_IDS[data.test_labels]
    for k, name in enumerate(train.GROUP_NAMES):
        select = groups == k
        bins = np.minimum((confidence[select] * 15).astype(int), 14)
        ece = sum(abs(correct[select][bins == b].sum() - confidence[select][bins == b].sum())
                  for b in range(15)) / select.sum()
        assert records[-1][f"ece_{name}"] == pytest.approx(100 * ece, abs=1e-3)
        assert records[-1][f"prediction_share_{name}"] == pytest.approx(
            100 * np.mean(synthetic.GROUP_IDS[probs.argmax(1)] == k))
        assert records[-1][f"label_share_{name}"] == pytest.approx(100 * np.mean(select))

    assert "saved step 17" in _preempted(str(tmp_path / "cut"), 17)  # mid-epoch 2
    resumed = _train_teacher(str(tmp_path / "cut"))
    for a, b in zip(_params(full), _params(resumed)):
        np.testing.assert_array_equal(a, b)
    assert _tests(str(tmp_path / "cut"))[-1] == records[-1]


def test_sigterm_saves_and_the_rerun_ends_identically(tmp_path, monkeypatch):
    reference = _train_teacher(str(tmp_path / "full"))
    original = loop._log_train
    calls = []

    def log_then_signal(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop, "_log_train", log_then_signal)
    with pytest.raises(train.Preempted, match="SIGTERM: saved step 8"):
        _train_teacher(str(tmp_path / "killed"))
    monkeypatch.setattr(loop, "_log_train", original)
    assert "8" in os.listdir(tmp_path / "killed" / "checkpoints")
    resumed = _train_teacher(str(tmp_path / "killed"))
    for a, b in zip(_params(reference), _params(resumed)):
        np.testing.assert_array_equal(a, b)
    # Each part wrote its own TensorBoard event file (the same process, maybe the same second): together they hold
    # every logged training step once.
    events = event_accumulator.EventAccumulator(str(tmp_path / "killed" / "tensorboard"))
    events.Reload()
    assert len(os.listdir(tmp_path / "killed" / "tensorboard")) == 2
    assert [e.step for e in events.Scalars("train/loss")] == [
        r["step"] for r in train.read_metrics(str(tmp_path / "killed" / "metrics.jsonl")) if r["split"] == "train"]


def test_distillation_logs_group_sums_and_agreement(tmp_path):
    _train_teacher(str(tmp_path / "teacher"))
    teacher = train.load_teacher(synthetic.TinyNet(), str(tmp_path / "teacher"), (8, 8, 1))
    stage = train.Stage("ltkd", synthetic.TinyNet(), 0.05, 1, 1,
                        distill_loss=losses.get_distill_loss("ltkd", group_ids=synthetic.GROUP_IDS, alpha=1.0,
                                                             beta=1.0, temperature=4.0),
                        objective=train.Objective(warmup_epochs=2, log_temperature=4.0))
    train.run_stage(stage, synthetic.make_data(), str(tmp_path / "student"), teacher=teacher, **synthetic.RECIPE)
    records = train.read_metrics(str(tmp_path / "student" / "metrics.jsonl"))
    train_records = [r for r in records if r["split"] == "train"]
    assert all(len(r["teacher_group_sums"]) == 3 for r in train_records)
    # Sums over a batch of 16 probability vectors add up to 16, before and after rebalancing.
    assert sum(train_records[-1]["teacher_group_sums"]) == pytest.approx(16.0, rel=1e-4)
    assert sum(train_records[-1]["teacher_group_sums_rebalanced"]) == pytest.approx(16.0, rel=1e-4)
    assert np.ptp(train_records[-1]["teacher_group_sums_rebalanced"]) < np.ptp(train_records[-1]["teacher_group_sums"])
    assert 0.0 <= records[-1]["teacher_agreement"] <= 100.0
    # The TensorBoard events, read back by TensorBoard's own reader, hold the same scalars per step.
    events = event_accumulator.EventAccumulator(str(tmp_path / "student" / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/teacher_group_sums/group2")] == [
        (r["step"], pytest.approx(r["teacher_group_sums"][2])) for r in train_records]
    assert [(e.step, e.value) for e in events.Scalars("test/accuracy")] == [
        (r["step"], pytest.approx(r["accuracy"])) for r in records if r["split"] == "test"]


def test_input_wait_fraction_measures_a_starved_step(tmp_path, monkeypatch):
    """metrics.jsonl says what share of training the step waited on its input: ~0 for the device-resident
    feed, most of it when the feed takes 30 ms per batch for a step of a few ms."""
    _train_teacher(str(tmp_path / "resident"))
    resident = [r for r in train.read_metrics(str(tmp_path / "resident" / "metrics.jsonl"))
                if r["split"] == "train"]
    fractions = [r["input_wait_fraction"] for r in resident]
    # Median: a window of two tiny steps that opens an epoch also holds the epoch's permutation (~2 ms here).
    assert fractions and min(fractions) >= 0 and np.median(fractions) < 0.1

    resident_inputs = device.DeviceFeed.inputs

    def slow_inputs(self, step):
        time.sleep(0.03)
        return resident_inputs(self, step)

    monkeypatch.setattr(device.DeviceFeed, "inputs", slow_inputs)
    _train_teacher(str(tmp_path / "starved"))
    starved = [r for r in train.read_metrics(str(tmp_path / "starved" / "metrics.jsonl"))
               if r["split"] == "train"]
    assert all(0.5 < r["input_wait_fraction"] <= 1.0 for r in starved[1:])  # the first window compiles
    assert np.median([r["input_wait_fraction"] for r in starved]) > 0.5


def test_input_wait_fraction_of_a_device_bound_run_stays_low(tmp_path, monkeypatch):
    """Input that costs the host a fraction of a step, while the device computes, is not starvation: the window
    runs until its steps are done (a fraction taken before the log's device sync read ~1 here)."""
    from ltkd_jax.tools import bench
    from ltkd_jax import models
    data = bench.synthetic_data(1280, 64, (28, 28, 1), 10)
    resident_inputs = device.DeviceFeed.inputs

    def costly_inputs(self, step):
        time.sleep(0.002)
        return resident_inputs(self, step)

    monkeypatch.setattr(device.DeviceFeed, "inputs", costly_inputs)
    train.run_stage(train.Stage("teacher", models.get_model("demo_resnet_teacher", 10), 0.05, 1, 0), data,
                      str(tmp_path), **{**synthetic.RECIPE, "batch_size": 64, "log_every_steps": 5})
    records = [r for r in train.read_metrics(str(tmp_path / "metrics.jsonl")) if r["split"] == "train"]
    seconds_per_step = 64 / np.median([r["images_per_sec"] for r in records[1:]])
    assert seconds_per_step > 0.006  # the step is well over the 2 ms the input costs
    assert np.median([r["input_wait_fraction"] for r in records[1:]]) < 0.5


def test_several_steps_per_dispatch_resumed_mid_epoch_train_like_one(tmp_path):
    """K = 3 steps per dispatch on 10 steps per epoch (dispatches of 3, 3, 3, 1: none crosses an epoch, so one
    epoch permutation per dispatch is right), stopped at an unaligned step and resumed, ends where K = 1 ends."""
    reference = _train_teacher(str(tmp_path / "one"))
    assert "saved step 6" in _preempted(str(tmp_path / "three"), 2, steps_per_dispatch=3)  # after 3 and 6
    resumed = _train_teacher(str(tmp_path / "three"), steps_per_dispatch=3)
    assert int(resumed.step) == int(reference.step) == 30
    for a, b in zip(_params(reference), _params(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    one = train.read_metrics(str(tmp_path / "one" / "metrics.jsonl"))
    three = train.read_metrics(str(tmp_path / "three" / "metrics.jsonl"))
    test_one = [r for r in one if r["split"] == "test"]
    test_three = [r for r in three if r["split"] == "test"]
    assert [r["accuracy"] for r in test_three] == [r["accuracy"] for r in test_one]


def test_teacher_of_another_architecture_is_one_clear_error(tmp_path):
    _train_teacher(str(tmp_path / "teacher"), lr_decay_epochs=())
    with pytest.raises(checkpoint.CheckpointError, match="does not match the configured architecture"):
        train.load_teacher(synthetic.TinyNet(width=16), str(tmp_path / "teacher"), (8, 8, 1))
    with pytest.raises(checkpoint.CheckpointError, match="has no checkpoints/ directory"):
        train.load_teacher(synthetic.TinyNet(), str(tmp_path / "nowhere"), (8, 8, 1))


def test_corrupted_checkpoint_is_one_clear_error(tmp_path):
    _train_teacher(str(tmp_path / "teacher"))
    step_dir = tmp_path / "teacher" / "checkpoints" / "30"
    for root, _, files in os.walk(step_dir):
        for name in files:
            if name not in ("_CHECKPOINT_METADATA",):
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match=f"^teacher checkpoint {step_dir} is damaged: "
                                                         f"{step_dir / 'checksums.process_0.json'} is unreadable$"):
        train.load_teacher(synthetic.TinyNet(), str(tmp_path / "teacher"), (8, 8, 1))
    # Files that were garbage when their checksums were recorded: orbax's failure is still one line.
    checkpoint.write_checksums(epath.Path(step_dir))
    with pytest.raises(checkpoint.CheckpointError, match="unreadable or corrupted|no readable metadata"):
        train.load_teacher(synthetic.TinyNet(), str(tmp_path / "teacher"), (8, 8, 1))


def test_a_failed_close_does_not_hide_the_error_that_stopped_training(tmp_path, monkeypatch):
    def broken_close(self):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.Checkpointer, "close", broken_close)
    with pytest.raises(train.NonFiniteLoss):
        train.run_stage(train.Stage("teacher", synthetic.TinyNet(), 1e30, 1, 0), synthetic.make_data(),
                          str(tmp_path / "nan"), **synthetic.RECIPE)
    with pytest.raises(OSError, match="disk full"):  # after a successful run the close error is the error
        train.run_stage(train.Stage("teacher", synthetic.TinyNet(), 0.01, 1, 0), synthetic.make_data(),
                          str(tmp_path / "ok"), **synthetic.RECIPE)


def test_batch_not_divisible_by_devices(monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    with pytest.raises(ValueError, match="batch_size=20 is not divisible by the device count 8"):
        train.check_batch_size(20)


def _sharded_run(workdir, devices):
    out = subprocess.run([sys.executable, os.path.join(HERE, "sharded_run.py"), workdir],
                         env=synthetic.xla_env(devices), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_simulated_devices_match_one(tmp_path):
    one = _sharded_run(str(tmp_path / "one"), 1)
    eight = _sharded_run(str(tmp_path / "eight"), 8)
    assert (one["devices"], eight["devices"]) == (1, 8)
    assert not one["tensorflow_imported"] and not eight["tensorflow_imported"]
    for key in ("loss", "ce", "distill"):
        assert eight["train"][key] == pytest.approx(one["train"][key], rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(eight["train"]["teacher_group_sums"], one["train"]["teacher_group_sums"], rtol=1e-4)
    assert eight["test"]["loss"] == pytest.approx(one["test"]["loss"], rel=1e-4)
    assert eight["test"]["accuracy"] == pytest.approx(one["test"]["accuracy"], abs=100 / 70 + 1e-9)


def test_each_device_gathers_only_its_share_of_the_resident_batch():
    """The training set is replicated on the devices, the batch sharded: the compiled program of 8 simulated
    devices gathers (and crops) B/8 images per device, not the whole batch on each."""
    code = textwrap.dedent(r"""
        import re, sys
        sys.path.insert(0, %r)
        import jax
        from jax.sharding import NamedSharding, PartitionSpec as P
        from ltkd_jax import train
        from ltkd_jax.data import device
        import synthetic
        data, mesh = synthetic.make_data(), train.make_mesh()
        replicated = NamedSharding(mesh, P())
        tx = train.sgd(0.1, momentum=0.9, weight_decay=5e-4)
        state = train.placed_init_state(synthetic.TinyNet(), tx, (8, 8, 1), 0, replicated)
        feed = device.DeviceFeed(data, 16, 0, replicated)
        one, _, _ = train.jitted_train_steps([train.Stage("teacher", synthetic.TinyNet(), 0.1, 1, 0)], data, feed,
                                             [tx], 10, mesh)
        hlo = one.lower((state,), None, feed.inputs(0)).compile().as_text()
        print(jax.device_count(), sorted(set(re.findall(r"= u8\[(\d+),[^=]*? gather\(", hlo))))
        """) % os.path.dirname(HERE)  # tests/: synthetic.py
    out = subprocess.run([sys.executable, "-c", code], env=synthetic.xla_env(8), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "8 ['2']", out.stdout  # uint8 gathers of 16 / 8 images


def test_bfloat16_compute_keeps_float32_state_and_tracks_float32(tmp_path):
    from ltkd_jax import models
    import jax.numpy as jnp

    finals = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        model = models.get_model("demo_resnet_student", 10, dtype=dtype)
        state = train.run_stage(train.Stage("student", model, 0.05, 1, 0), synthetic.make_data(),
                                  str(tmp_path / jnp.dtype(dtype).name), **synthetic.RECIPE)
        leaves = jax.tree_util.tree_leaves((state.params, state.batch_stats, state.opt_state))
        assert {leaf.dtype for leaf in leaves if leaf.ndim} == {jnp.dtype(jnp.float32)}
        finals[jnp.dtype(dtype).name] = train.read_metrics(str(tmp_path / jnp.dtype(dtype).name /
                                                                     "metrics.jsonl"))
    first_fp32 = finals["float32"][0]["loss"]
    first_bf16 = finals["bfloat16"][0]["loss"]
    assert np.isfinite(first_bf16) and first_bf16 == pytest.approx(first_fp32, rel=0.02)


def _host_state(model, tx):
    """The initial state on this process's one device (the step's tests call the step function itself, jitted)."""
    return train.placed_init_state(model, tx, (8, 8, 1), 0, jax.sharding.SingleDeviceSharding(jax.devices()[0]))


@functools.partial(jax.jit, static_argnums=0)
def _train_mode_logits(model, state, images):
    return model.apply(state.variables, images, train=True, mutable=["batch_stats"])[0]


def test_a_balanced_softmax_teacher_step_adds_the_log_prior():
    """The CE of a debiased teacher's step is the balanced softmax of its logits (float64 by hand)."""
    data = synthetic.make_data()
    counts = np.array([40, 30, 20, 15, 12, 10, 8, 6, 5, 4])
    model, tx = synthetic.TinyNet(), train.sgd(0.1, momentum=0.9, weight_decay=0.0)
    state = _host_state(model, tx)
    batch = {"image": jnp.asarray(data.train_images[:16], jnp.float32) / 255.0,
             "label": jnp.asarray(data.train_labels[:16])}
    logits = _train_mode_logits(model, state, batch["image"])
    step = jax.jit(functools.partial(step_lib.train_step, objective=train.Objective(ce_prior_weight=1.0), model=model,
                                     tx=tx, steps_per_epoch=10, class_counts=counts))
    _, metrics = step(state, None, batch)
    z = np.asarray(logits, np.float64) + np.log(counts / counts.sum())
    z -= z.max(1, keepdims=True)
    labels = np.asarray(batch["label"])
    expected = -np.mean(z[np.arange(16), labels] - np.log(np.exp(z).sum(1)))
    np.testing.assert_allclose(float(metrics["ce"]), expected, rtol=1e-5)


def test_a_deferred_bkd_step_reads_its_epoch_from_the_step():
    """BKD with class weights after epoch 1 (10 steps per epoch): steps 0 and 9 distil with uniform weights (KD at
    T), step 10 (epoch 2) with the class-balanced ones; the population passes the same epoch (test_population)."""
    data = synthetic.make_data()
    model, tx = synthetic.TinyNet(), train.sgd(0.1, momentum=0.9, weight_decay=0.0)
    state = _host_state(model, tx)
    batch = {"image": jnp.asarray(data.train_images[:16], jnp.float32) / 255.0,
             "label": jnp.asarray(data.train_labels[:16])}
    teacher_logits = jnp.asarray(np.random.default_rng(0).normal(size=(16, 10)) * 3, jnp.float32)
    logits = _train_mode_logits(model, state, batch["image"])
    bkd = losses.get_distill_loss("bkd", class_counts=synthetic.COUNTS, temperature=2.0, reweight_epoch=1)
    expected = {weighted: float(losses.bkd_loss(logits, teacher_logits, synthetic.COUNTS, temperature=2.0,
                                                reweighted=weighted)) for weighted in (False, True)}
    assert abs(expected[True] - expected[False]) > 1e-3  # the weights matter on these counts
    step_fn = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, steps_per_epoch=10,
                                        distill_loss=bkd))
    for step, weighted in ((0, False), (9, False), (10, True)):  # the step is traced: one program for all three
        _, metrics = step_fn(state.replace(step=jnp.asarray(step)), (teacher_logits, None), batch)
        assert float(metrics["distill"]) == pytest.approx(expected[weighted], rel=1e-5), step
