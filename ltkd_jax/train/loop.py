"""One training stage (a teacher, a CE student or a distilled student): the jitted loop, evaluation every
epoch, checkpoints with resume and save-on-SIGTERM, and the run's logs. The step is `jax.jit` with the state
donated, the batch sharded over the mesh's data axis (see state.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
import time
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ltkd_jax.data import device, host
from ltkd_jax.train import checkpoint, metrics as metrics_lib, step as step_lib
from ltkd_jax.train.state import Teacher, abstract_state, init_state, make_mesh


@dataclasses.dataclass(frozen=True)
class Stage:
    """What one stage trains: a model with CE (distill_loss None) or distilled from a frozen teacher."""

    name: str
    model: nn.Module
    learning_rate: float
    num_epochs: int
    seed: int
    distill_loss: Optional[Callable] = None  # logits: loss(student_logits, teacher_logits, labels, group_ids)
    feature_loss: Optional[Callable] = None  # features: loss(hints, teacher_features) (FitNet, ReviewKD)
    ce_weight: float = 1.0
    distill_weight: float = 1.0
    warmup_epochs: float = 0
    log_temperature: float = 1.0

    @property
    def distills(self) -> bool:
        return self.distill_loss is not None or self.feature_loss is not None


def jitted_train_steps(stage: Stage, data: device.ExperimentData, feed, tx, steps_per_epoch: int, mesh: Mesh,
                       teacher_model: Optional[nn.Module] = None, schedule: Optional[Callable] = None):
    """The stage's jitted training programs: `one(state, teacher_variables, inputs)` and
    `many(state, teacher_variables, inputs, num_steps)` (num_steps steps in one dispatch with `lax.scan`).

    The batch is sharded over the mesh's data axis, the state replicated and donated. `inputs` is whatever the
    feed yields: the device-resident arrays (the batch is drawn inside the program) or a host batch.
    """
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    step_fn = functools.partial(
        step_lib.train_step, model=stage.model, tx=tx, steps_per_epoch=steps_per_epoch, teacher_model=teacher_model,
        distill_loss=stage.distill_loss, feature_loss=stage.feature_loss,
        group_ids=data.group_ids if stage.distills else None, num_groups=data.num_groups,
        ce_weight=stage.ce_weight, distill_weight=stage.distill_weight, warmup_epochs=stage.warmup_epochs,
        log_temperature=stage.log_temperature)

    def one_step(state, teacher_variables, inputs):
        batch = jax.lax.with_sharding_constraint(feed.batch(inputs, state.step), batch_sharding)
        learning_rate = schedule(state.step) if schedule is not None else None
        state, metrics = step_fn(state, teacher_variables, batch)
        if learning_rate is not None:  # logged from the device: no schedule arithmetic on the host
            metrics["learning_rate"] = learning_rate
        return state, metrics

    def many_steps(state, teacher_variables, inputs, num_steps):
        def body(carry, _):
            return one_step(carry, teacher_variables, inputs)
        state, metrics = jax.lax.scan(body, state, None, length=num_steps)
        return state, {key: jnp.sum(value, 0) if key.startswith("class_")
                       else value[-1] if key == "learning_rate" else jnp.mean(value, 0)
                       for key, value in metrics.items()}

    return (jax.jit(one_step, donate_argnums=0, out_shardings=(replicated, replicated)),
            jax.jit(many_steps, donate_argnums=0, static_argnums=3, out_shardings=(replicated, replicated)))


class Preempted(Exception):
    """Raised after the state was saved on SIGTERM; rerunning the same command resumes."""


class NonFiniteLoss(FloatingPointError):
    pass


class SigtermFlag:
    """Set by SIGTERM (preemptible TPUs send it before taking the machine)."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self) -> bool:
        """True on every process if any process was signalled (all must save together)."""
        if jax.process_count() == 1:
            return self.raised
        return bool(np.max(multihost_utils.process_allgather(np.int32(self.raised))))


def run_stage(stage: Stage, data: device.ExperimentData, workdir: str, *, batch_size: int, lr_decay_epochs,
              lr_decay_rate: float, momentum: float, weight_decay: float, teacher: Optional[Teacher] = None,
              keep_checkpoints: int = 2, eval_batch_size: Optional[int] = None, eval_every_epochs: int = 1,
              checkpoint_every_epochs: int = 1, log_every_steps: int = 50, steps_per_dispatch: int = 1):
    """Train `stage` to its last epoch, resuming from `workdir` if it holds checkpoints; returns the final
    state. Metrics go to `workdir/metrics.jsonl`. The batch sizes were checked by experiment.validate."""
    steps_per_epoch = data.num_train // batch_size
    total_steps = steps_per_epoch * stage.num_epochs
    mesh = make_mesh()
    replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    schedule = step_lib.step_decay_schedule(stage.learning_rate, steps_per_epoch, lr_decay_epochs, lr_decay_rate)
    tx = step_lib.sgd(schedule, momentum=momentum, weight_decay=weight_decay)
    ckpt = checkpoint.Checkpointer(workdir, keep=keep_checkpoints)
    log = metrics_lib.MetricsLog(workdir)
    finished = False
    try:
        state = ckpt.restore_latest(abstract_state(stage.model, tx, data.image_shape, replicated))
        if state is None:
            state = jax.device_put(init_state(stage.model, tx, data.image_shape, stage.seed), replicated)
        if data.train_images is not None:
            feed = device.DeviceFeed(data, batch_size, stage.seed, replicated)
        else:  # host batches arrive one at a time
            feed, steps_per_dispatch = host.HostFeed(data, batch_size, stage.seed, batch_sharding), 1
        teacher_model = teacher.model if stage.distills else None
        jit_one, jit_many = jitted_train_steps(stage, data, feed, tx, steps_per_epoch, mesh, teacher_model, schedule)
        teacher_variables = jax.device_put(teacher.variables, replicated) if stage.distills else None
        evaluate = _evaluator(stage, data, feed, teacher_model, teacher_variables, eval_batch_size or batch_size,
                              batch_sharding, replicated)
        progress = metrics_lib.Progress(stage.name, total_steps, batch_size)
        window = _Window(log, progress, data)
        step = int(state.step)
        with SigtermFlag() as sigterm:
            while step < total_steps:
                epoch, left_in_epoch = step // steps_per_epoch + 1, steps_per_epoch - step % steps_per_epoch
                step_inputs = window.timed_input(feed.inputs, step)
                if steps_per_dispatch > 1 and left_in_epoch >= steps_per_dispatch:
                    state, metrics = jit_many(state, teacher_variables, step_inputs, steps_per_dispatch)
                    previous, step = step, step + steps_per_dispatch
                else:
                    state, metrics = jit_one(state, teacher_variables, step_inputs)
                    previous, step = step, step + 1
                epoch_done = step % steps_per_epoch == 0
                log_now = step // log_every_steps != previous // log_every_steps or epoch_done
                window.add(metrics, step, epoch, log_now)
                if epoch_done:
                    summary = None
                    if epoch % eval_every_epochs == 0 or step == total_steps:
                        summary = evaluate(state)
                        log.write({"step": step, "epoch": epoch, "split": "test", **summary})
                    if epoch % checkpoint_every_epochs == 0 or step == total_steps:
                        ckpt.save(step, state, accuracy=summary["accuracy"] if summary else None)
                    window.restart()
                # Every process must take the same decision at the same step: agree only where all log.
                if (log_now or jax.process_count() == 1) and sigterm.agreed():
                    ckpt.save(step, state)
                    raise Preempted(f"SIGTERM: saved step {step} to {workdir}; rerun the same command to resume")
        progress.done()
        finished = True
        return state
    finally:
        _close(ckpt, finished)


def _close(ckpt, finished: bool) -> None:
    """Wait for the last asynchronous writes: their errors are this run's errors, unless training already failed
    (NaN loss, SIGTERM, ...): then that error stays in front and a failed write is only logged."""
    if finished:
        ckpt.close()
        return
    try:
        ckpt.close()
    except Exception as error:  # pylint: disable=broad-except
        logging.warning("closing the checkpoints after a failed run also failed: %s", error)


def _evaluator(stage, data, feed, teacher_model, teacher_variables, eval_batch_size, batch_sharding, replicated):
    """`evaluate(state)`: the test-set summary (accuracy per class, group and shot), jitted once per stage."""
    def eval_counts(variables, batch, teacher_variables):  # uint8 batches of either feed, normalised here
        return step_lib.eval_step(variables, device.normalize_batch(batch, data.augmentation), model=stage.model,
                                  num_classes=data.num_classes, teacher_model=teacher_model,
                                  teacher_variables=teacher_variables)

    eval_fn = jax.jit(eval_counts, out_shardings=replicated)

    def evaluate(state):
        totals = None
        for batch in feed.eval_batches(eval_batch_size, batch_sharding):
            counts = eval_fn(state.variables, batch, teacher_variables=teacher_variables)
            totals = counts if totals is None else jax.tree_util.tree_map(jnp.add, totals, counts)
        return metrics_lib.summarize(jax.device_get(totals), data.group_ids, data.train_counts)

    return evaluate


class _Window:
    """The training metrics since the last log line, and the host time spent getting their inputs.

    The input wait is measured over the window's wall time up to the moment its steps are done (after the log's
    device sync): ~0 for the device-resident feed; near 1 when the host input pipeline (ImageNet) is the
    bottleneck, as images_per_sec below the bare step's rate then confirms."""

    def __init__(self, log, progress, data):
        self.log, self.progress, self.data = log, progress, data
        self.metrics, self.input_wait, self.start = [], 0.0, time.perf_counter()

    def timed_input(self, inputs, step):
        waited = time.perf_counter()
        step_inputs = inputs(step)
        self.input_wait += time.perf_counter() - waited
        return step_inputs

    def add(self, metrics, step, epoch, log_now):
        self.metrics.append(metrics)
        if log_now:
            _log_train(self.log, self.progress, self.metrics, step, epoch, self.data, input_wait=self.input_wait,
                       window_start=self.start)
            self.metrics, self.input_wait, self.start = [], 0.0, time.perf_counter()

    def restart(self):
        """After evaluation and checkpoints: their time is not training time."""
        self.progress.restart_clock()
        self.start = time.perf_counter()


def _log_train(log, progress, window, step, epoch, data, input_wait: float, window_start: float):
    fetched = jax.device_get(window)  # waits for the window's steps: the window ends when they are done
    input_wait_fraction = input_wait / max(time.perf_counter() - window_start, 1e-9)
    loss = float(np.mean([m["loss"] for m in fetched]))
    if not np.isfinite(loss):
        raise NonFiniteLoss(f"training loss became {loss} at step {step} (epoch {epoch}); lower the learning "
                            f"rate or check the inputs")
    progress.update(step, epoch, loss)
    record = {"step": step, "epoch": epoch, "split": "train", "images_per_sec": progress.images_per_sec,
              "input_wait_fraction": input_wait_fraction,
              "learning_rate": float(fetched[-1]["learning_rate"])}  # the rate of the window's last step
    for key in fetched[0]:
        if key in ("learning_rate", "class_count", "class_correct", "teacher_group_sums",
                   "teacher_group_sums_rebalanced"):
            continue
        record[key] = float(np.mean([m[key] for m in fetched]))
    counts = {"examples": sum(m["class_count"] for m in fetched),
              "correct": sum(m["class_correct"] for m in fetched), "loss_sum": 0.0}
    summary = metrics_lib.summarize(counts, data.group_ids, data.train_counts)
    record.update({k: v for k, v in summary.items() if k.startswith("accuracy_")})
    for key in ("teacher_group_sums", "teacher_group_sums_rebalanced"):
        if key in fetched[0]:
            record[key] = np.mean([m[key] for m in fetched], axis=0).tolist()
    log.write(record)
