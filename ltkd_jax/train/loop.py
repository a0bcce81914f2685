"""The training loop of a stage (a teacher, a CE student or a distilled student) or of a population of students
(population.py): the jitted steps, evaluation every epoch, checkpoints with resume and save-on-SIGTERM, and each
run's logs in its own workdir. The step is `jax.jit` with the states donated, the batch sharded over the mesh's
data axis (see state.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from ltkd_jax.data import device
from ltkd_jax.train import checkpoint, metrics as metrics_lib, population, step as step_lib
from ltkd_jax.train.dispatch import InFlight
from ltkd_jax.train.state import Teacher, abstract_state, make_mesh, placed_init_state


@dataclasses.dataclass(frozen=True)
class Stage:
    """What one stage trains: a model with CE (distill_loss None) or distilled from a frozen teacher."""

    name: str
    model: nn.Module
    learning_rate: float
    num_epochs: int
    seed: int
    distill_loss: Optional[Callable] = None  # logits: loss(student_logits, teacher_logits, labels)
    feature_loss: Optional[Callable] = None  # features: loss(hints, teacher_features) (FitNet, ReviewKD)
    objective: step_lib.Objective = step_lib.Objective()

    @property
    def distills(self) -> bool:
        return self.distill_loss is not None or self.feature_loss is not None


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


def run_stage(stage: Stage, data: device.ExperimentData, workdir: str, **kwargs):
    """Train `stage` alone (a population of one); returns its final state."""
    return run_population([stage], data, [workdir], **kwargs)[0]


def run_population(stages, data: device.ExperimentData, workdirs, *, batch_size: int, lr_decay_epochs,
                   lr_decay_rate: float, momentum: float, weight_decay: float, teacher: Optional[Teacher] = None,
                   keep_checkpoints: int = 2, eval_batch_size: Optional[int] = None, eval_every_epochs: int = 1,
                   checkpoint_every_epochs: int = 1, log_every_steps: int = 50, steps_per_dispatch: int = 1,
                   batched: Optional[bool] = None):
    """Train every stage (one seed, one batch; see population.py) to its last epoch in one program, each in its
    workdir as a solo run would: resuming from its checkpoints, metrics in `workdir/metrics.jsonl`. Returns the
    final states. The batch sizes were checked by experiment.validate. `batched=None` vmaps members of one
    architecture on accelerators and steps them one after another on the CPU, where vmapped convolutions ran
    no faster than separate ones (docs/benchmarks.md)."""
    if batched is None:
        batched = jax.default_backend() != "cpu"
    steps_per_epoch = data.num_train // batch_size
    total_steps = steps_per_epoch * stages[0].num_epochs
    if len({(stage.seed, stage.num_epochs) for stage in stages}) > 1:
        raise ValueError("the members of a population must share their seed and number of epochs")
    mesh = make_mesh()
    replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    # One schedule and optimiser per learning rate: members that share them share their jitted initialisation
    # (the optimiser is a static argument of it), compiled once instead of once per member.
    schedule_of = {rate: step_lib.step_decay_schedule(rate, steps_per_epoch, lr_decay_epochs, lr_decay_rate)
                   for rate in {stage.learning_rate for stage in stages}}
    tx_of = {rate: step_lib.sgd(schedule, momentum=momentum, weight_decay=weight_decay)
             for rate, schedule in schedule_of.items()}
    schedules = [schedule_of[stage.learning_rate] for stage in stages]
    txs = [tx_of[stage.learning_rate] for stage in stages]
    ckpts = [checkpoint.Checkpointer(workdir, keep=keep_checkpoints) for workdir in workdirs]
    finished = False
    try:
        states = _restore_or_init(stages, ckpts, txs, data, replicated)
        step = int(states[0].step)
        feed = data.feed(batch_size, stages[0].seed, mesh)
        if not feed.supports_scan:  # host batches arrive one at a time
            steps_per_dispatch = 1
        distills = any(stage.distills for stage in stages)
        jit_one, jit_many, unit_list = population.jitted_train_steps(
            stages, data, feed, txs, steps_per_epoch, mesh, teacher.model if distills else None, schedules, batched)
        unit_states = jax.jit(population.unit_states, static_argnums=1, out_shardings=replicated)(states, unit_list)
        teacher_variables = jax.device_put(teacher.variables, replicated) if distills else None
        evaluate = _evaluator(stages, data, feed, teacher, teacher_variables, eval_batch_size or batch_size,
                              batch_sharding, replicated)
        logs = [metrics_lib.MetricsLog(workdir, resume_step=step) for workdir in workdirs]
        window = _Window(logs, [metrics_lib.Progress(stage.name, total_steps, batch_size) for stage in stages], data)
        for progress in window.progresses[1:]:  # one terminal line: the first member's
            progress.enabled = False
        del states  # donated to the unit states
        in_flight = InFlight()
        with SigtermFlag() as sigterm:
            while step < total_steps:
                epoch, left_in_epoch = step // steps_per_epoch + 1, steps_per_epoch - step % steps_per_epoch
                step_inputs = window.timed_input(feed.inputs, step)
                if steps_per_dispatch > 1 and left_in_epoch >= steps_per_dispatch:
                    unit_states, metrics = jit_many(unit_states, teacher_variables, step_inputs, steps_per_dispatch)
                    previous, step = step, step + steps_per_dispatch
                else:
                    unit_states, metrics = jit_one(unit_states, teacher_variables, step_inputs)
                    previous, step = step, step + 1
                in_flight.add(metrics)
                epoch_done = step % steps_per_epoch == 0
                log_now = step // log_every_steps != previous // log_every_steps or epoch_done
                window.add(metrics, previous, step, epoch, log_now)
                if epoch_done:
                    evaluate_now = epoch % eval_every_epochs == 0 or step == total_steps
                    save_now = epoch % checkpoint_every_epochs == 0 or step == total_steps
                    member_states = population.unstack(unit_states, unit_list, len(stages))
                    if save_now:  # nothing of this epoch is written unless all of it can be, and is finite
                        _check_savable(member_states, stages, workdirs, ckpts, step)
                    summaries = evaluate(member_states) if evaluate_now else [None] * len(stages)
                    for state, summary, log, ckpt in zip(member_states, summaries, logs, ckpts):
                        if summary is not None:
                            log.write({"step": step, "epoch": epoch, "split": "test", **summary})
                        if save_now:
                            ckpt.save(step, state, accuracy=summary["accuracy"] if summary else None)
                    window.restart()
                # Every process must take the same decision at the same step: agree only where all log.
                if (log_now or jax.process_count() == 1) and sigterm.agreed():
                    member_states = population.unstack(unit_states, unit_list, len(stages))
                    _check_savable(member_states, stages, workdirs, ckpts, step)
                    for state, ckpt in zip(member_states, ckpts):
                        ckpt.save(step, state)
                        ckpt.finish_writes()  # "saved" below is true once the write is complete
                    raise Preempted(f"SIGTERM: saved step {step} to {', '.join(workdirs)}; rerun the same "
                                    "command to resume")
        for progress in window.progresses:
            progress.done()
        finished = True
        return population.unstack(unit_states, unit_list, len(stages))
    finally:
        for ckpt in ckpts:
            _close(ckpt, finished)


def _restore_or_init(stages, ckpts, txs, data, replicated) -> list:
    """Each member's newest intact checkpoint, or its initial state. A member sent back to an earlier checkpoint
    (its latest was damaged) takes the population with it; members that still differ are an error."""
    abstracts = [abstract_state(stage.model, tx, data.image_shape, replicated) for stage, tx in zip(stages, txs)]
    states = [ckpt.restore_latest(abstract) for ckpt, abstract in zip(ckpts, abstracts)]
    steps = [0 if state is None else int(state.step) for state in states]
    while len(set(steps)) > 1 and any(ckpt.deleted for ckpt in ckpts):  # until the members agree (0: afresh)
        for ckpt in ckpts:
            ckpt.deleted = []
        states = [ckpt.restore_latest(abstract, at_most=min(steps)) for ckpt, abstract in zip(ckpts, abstracts)]
        steps = [0 if state is None else int(state.step) for state in states]
    if len(set(steps)) > 1:
        raise ValueError("the members of a population resume from different steps (" + ", ".join(
            f"{stage.name} at {step}" for stage, step in zip(stages, steps)) + "); train them separately")
    return [placed_init_state(stage.model, tx, data.image_shape, stage.seed, replicated)
            if state is None else state for stage, tx, state in zip(stages, txs, states)]


@jax.jit
def _finite(state) -> jax.Array:
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(state)
                                if jnp.issubdtype(leaf.dtype, jnp.inexact)]))


def _check_savable(states, stages, workdirs, ckpts, step: int) -> None:
    """Before any member's save of `step`: a state with a non-finite value is never saved (the error names the
    member; its last checkpoint stays), and the disk must take every member's checkpoint."""
    for state, stage, workdir in zip(states, stages, workdirs):
        if not bool(_finite(state)):
            raise NonFiniteLoss(f"the parameters of {stage.name} ({workdir}) are not finite after step {step}; "
                                "not saved: lower the learning rate or check the inputs")
    checkpoint.ensure_space(ckpts, states, step)


def _close(ckpt, finished: bool) -> None:
    """Wait for the last asynchronous writes: their errors are this run's errors, unless training already failed
    (NaN loss, SIGTERM, ...): then that error stays in front and a failed write is only logged."""
    try:
        ckpt.close()
    except Exception as error:  # pylint: disable=broad-except
        if finished:
            raise
        logging.warning("closing the checkpoints after a failed run also failed: %s", error)


def _evaluator(stages, data, feed, teacher, teacher_variables, eval_batch_size, batch_sharding, replicated):
    """`evaluate(states)`: each member's test-set summary (accuracy per class, group and shot), from one jitted
    program that runs the teacher (for the agreement counts) once per batch for every member."""
    teacher_model = teacher.model if teacher_variables is not None else None

    def eval_counts(member_variables, batch, teacher_variables):  # uint8 batches of either feed, normalised here
        batch = device.normalize_batch(batch, data.augmentation)
        teacher_predictions = None if teacher_model is None else jnp.argmax(
            teacher_model.apply(teacher_variables, batch["image"], train=False), -1)
        return [step_lib.eval_step(variables, batch, model=stage.model, num_classes=data.num_classes,
                                   teacher_predictions=teacher_predictions if stage.distills else None)
                for stage, variables in zip(stages, member_variables)]

    def add_counts(totals, member_variables, batch, teacher_variables):
        return jax.tree_util.tree_map(jnp.add, totals, eval_counts(member_variables, batch, teacher_variables))

    program = jax.jit(add_counts, out_shardings=replicated)

    zeros = []  # the counts' zero totals, made by the first evaluation (immutable: every evaluation starts there)

    def evaluate(states):
        member_variables, totals, in_flight = [state.variables for state in states], None, InFlight()
        for batch in feed.eval_batches(eval_batch_size, batch_sharding):
            if not zeros:
                zeros.append(jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype, device=replicated),
                                                    jax.eval_shape(eval_counts, member_variables, batch,
                                                                   teacher_variables)))
            if totals is None:
                totals = zeros[0]
            totals = in_flight.add(program(totals, member_variables, batch, teacher_variables))
        return [metrics_lib.summarize(member, data.group_ids, data.train_counts) for member in jax.device_get(totals)]
    return evaluate


class _Window:
    """Each member's training metrics since the last log line, and the host time spent getting their inputs, as a
    fraction of the window's wall time to the end of its steps (~0 device-resident; near 1 host-bound)."""

    def __init__(self, logs, progresses, data):
        self.logs, self.progresses, self.data = logs, progresses, data
        self.metrics, self.steps, self.input_wait, self.start = [], [], 0.0, time.perf_counter()

    def timed_input(self, inputs, step):
        waited = time.perf_counter()
        step_inputs = inputs(step)
        self.input_wait += time.perf_counter() - waited
        return step_inputs

    def add(self, member_metrics, previous, step, epoch, log_now):
        self.metrics.append(member_metrics)
        self.steps.append((previous, step))
        if log_now:
            fetched = jax.device_get(self.metrics)  # waits for the window's steps: the window ends when they are done
            input_wait_fraction = self.input_wait / max(time.perf_counter() - self.start, 1e-9)
            for member, (log, progress) in enumerate(zip(self.logs, self.progresses)):
                _log_train(log, progress, [m[member] for m in fetched], self.steps, epoch, self.data,
                           input_wait_fraction)
            self.metrics, self.steps, self.input_wait, self.start = [], [], 0.0, time.perf_counter()

    def restart(self):
        """After evaluation and checkpoints: their time is not training time."""
        for progress in self.progresses:
            progress.restart_clock()
        self.start = time.perf_counter()


def _log_train(log, progress, fetched, steps, epoch, data, input_wait_fraction: float):
    """One train record of a member from its metrics of the window's dispatches (each `(previous, last)` step)."""
    losses = [float(m["loss"]) for m in fetched]
    if not np.all(np.isfinite(losses)):
        first = next(i for i, loss in enumerate(losses) if not np.isfinite(loss))
        previous, last = steps[first]
        when = f"at step {last}" if last == previous + 1 else f"in steps {previous + 1}-{last}"  # a scan's mean
        raise NonFiniteLoss(f"training loss of {progress.name} ({os.path.dirname(log.path)}) became {losses[first]} "
                            f"{when}; its last checkpoint is kept: lower the learning rate or check the inputs")
    step, loss = steps[-1][1], float(np.mean(losses))
    progress.update(step, epoch, loss)
    record = {"step": step, "epoch": epoch, "split": "train", "images_per_sec": progress.images_per_sec,
              "input_wait_fraction": input_wait_fraction,
              "learning_rate": float(fetched[-1]["learning_rate"])}  # the rate of the window's last step
    vectors = ("learning_rate", "class_count", "class_correct", "teacher_group_sums", "teacher_group_sums_rebalanced")
    record.update({key: float(np.mean([m[key] for m in fetched])) for key in fetched[0] if key not in vectors})
    counts = {"examples": sum(m["class_count"] for m in fetched),
              "correct": sum(m["class_correct"] for m in fetched), "loss_sum": 0.0}
    summary = metrics_lib.summarize(counts, data.group_ids, data.train_counts)
    record.update({k: v for k, v in summary.items() if k.startswith("accuracy_")})
    record.update({key: np.mean([m[key] for m in fetched], axis=0).tolist()
                   for key in vectors[3:] if key in fetched[0]})
    log.write(record)
