"""One training stage (a teacher, a CE student or a distilled student): the jitted loop, evaluation every
epoch, checkpoints with resume and save-on-SIGTERM, and the run's logs.

Parallelism: one 1-D `data` mesh over every device of every process. The batch is sharded along it;
parameters and optimiser state are replicated; the step is `jax.jit` with the state donated. Batch-norm
statistics and LTKD's rebalancing sums are therefore over the global batch (the step sees global arrays).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import signal
import time
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ltkd_jax import checkpointing, device_input, evaluation, losses, metrics_log, optim, steps


@dataclasses.dataclass(kw_only=True)
class ExperimentData:
    """A long-tailed training set and its balanced test set.

    Small data sets come as host numpy arrays (uint8 images), moved once to the devices and batched inside
    the jitted step (`DeviceFeed`). Large ones (ImageNet) leave the arrays None and give `host_info`, a
    `ltkd_jax.data.DatasetInfo` streamed through the host pipeline (`HostFeed`).
    """

    name: str
    num_classes: int
    group_ids: np.ndarray  # (num_classes,) 0 = head ... tail
    train_counts: np.ndarray  # (num_classes,)
    augmentation: device_input.Augmentation
    train_images: Optional[np.ndarray] = None  # (N, H, W, C) uint8, the long-tailed subset
    train_labels: Optional[np.ndarray] = None  # (N,) int32
    test_images: Optional[np.ndarray] = None
    test_labels: Optional[np.ndarray] = None
    host_info: Any = None

    @property
    def num_groups(self) -> int:
        return int(self.group_ids.max()) + 1

    @property
    def num_train(self) -> int:
        return len(self.train_labels) if self.train_labels is not None else len(self.host_info.lt_indices)

    @property
    def image_shape(self):
        if self.train_images is not None:
            return self.train_images.shape[1:]
        return tuple(self.host_info.image_shape)


class DeviceFeed:
    """The whole training set on the devices (replicated); step `s`'s batch is a pure function of
    `(seed, s)` computed inside the jitted step, so nothing crosses from the host per step. `inputs(step)`
    gives the dispatch starting at `step` the arrays and its epoch's permutation (drawn on the device once per
    epoch; a dispatch never crosses an epoch)."""

    supports_scan = True

    def __init__(self, data: ExperimentData, batch_size: int, seed: int, replicated):
        self.data, self.batch_size = data, batch_size
        self.key = jax.random.fold_in(jax.random.key(seed), 1)
        self.arrays = jax.device_put({"image": data.train_images, "label": data.train_labels.astype(np.int32)},
                                     replicated)
        self.steps_per_epoch = data.num_train // batch_size
        self._permutation = jax.jit(functools.partial(device_input.epoch_permutation, num_examples=data.num_train),
                                    out_shardings=replicated)
        self._epoch, self._order = None, None

    def inputs(self, step: int) -> dict:
        epoch = step // self.steps_per_epoch
        if epoch != self._epoch:
            self._epoch, self._order = epoch, self._permutation(self.key, epoch)
        return {**self.arrays, "order": self._order}

    def batch(self, inputs, step):
        return device_input.train_batch(inputs, self.key, step, batch_size=self.batch_size,
                                        augmentation=self.data.augmentation)

    def eval_batches(self, eval_batch_size: int, sharding):
        for batch in device_input.eval_batches(self.data.test_images, self.data.test_labels, eval_batch_size):
            yield {k: global_array(v, sharding, eval_batch_size) for k, v in batch.items()}


class HostFeed:
    """Batches from the host input pipeline (tf.data for ImageNet), each process feeding its share of the
    global batch as uint8 (normalised inside the step); the next batches are put on the devices while the
    current step runs."""

    supports_scan = False

    def __init__(self, data: ExperimentData, batch_size: int, seed: int, sharding, prefetch: int = 2):
        self.data, self.batch_size, self.seed, self.sharding, self.prefetch = (
            data, batch_size, seed, sharding, prefetch)
        self._stream, self._next_step = None, None

    def inputs(self, step: int) -> dict:
        """The batch of `step`: the next one of the stream, which (re)starts wherever a step is asked for out
        of order."""
        if step != self._next_step:
            self._stream = self._batches(step)
        self._next_step = step + 1
        return next(self._stream)

    def _batches(self, start_step: int):
        from ltkd_jax.data import build_dataset  # pylint: disable=import-outside-toplevel
        steps_per_epoch = self.data.num_train // self.batch_size
        epoch, position = divmod(start_step, steps_per_epoch)
        queue = collections.deque()
        while True:
            for batch in build_dataset(self.data.host_info, "train", global_batch_size=self.batch_size,
                                       seed=self.seed, epoch=epoch, start_step=position):
                queue.append(put_process_batch(batch, ("image", "label"), self.sharding))
                if len(queue) > self.prefetch:
                    yield queue.popleft()
            epoch, position = epoch + 1, 0
            while queue:  # the epoch's last batches before the next epoch's pipeline starts
                yield queue.popleft()

    def batch(self, inputs, step):
        return device_input.normalize_batch(inputs, self.data.augmentation)

    def eval_batches(self, eval_batch_size: int, sharding):
        from ltkd_jax.data import build_dataset  # pylint: disable=import-outside-toplevel
        for batch in build_dataset(self.data.host_info, "eval", global_batch_size=eval_batch_size):
            yield put_process_batch(batch, ("image", "label", "mask"), sharding)


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


@dataclasses.dataclass(frozen=True)
class Teacher:
    model: nn.Module
    variables: dict
    checkpoint: str  # the checkpoint step directory the variables came from (a label for an untrained one)


def jitted_train_steps(stage: Stage, data: ExperimentData, feed, tx, steps_per_epoch: int, mesh: Mesh,
                       teacher_model: Optional[nn.Module] = None, schedule: Optional[Callable] = None):
    """The stage's jitted training programs: `one(state, teacher_variables, inputs)` and
    `many(state, teacher_variables, inputs, num_steps)` (num_steps steps in one dispatch with `lax.scan`).

    The batch is sharded over the mesh's data axis, the state replicated and donated. `inputs` is whatever the
    feed yields: the device-resident arrays (the batch is drawn inside the program) or a host batch.
    """
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    step_fn = functools.partial(
        steps.train_step, model=stage.model, tx=tx, steps_per_epoch=steps_per_epoch, teacher_model=teacher_model,
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


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("data",))


def check_batch_size(batch_size: int, num_train: Optional[int] = None) -> None:
    """A global batch the devices can share (and, given `num_train`, that the training set fills once)."""
    if num_train is not None and batch_size > num_train:
        raise ValueError(f"batch_size={batch_size} is larger than the {num_train} training examples")
    devices = jax.device_count()
    if batch_size % devices:
        raise ValueError(f"batch_size={batch_size} is not divisible by the device count {devices}; "
                         f"use a multiple of {devices}")


def put_process_batch(batch: dict, keys, sharding: NamedSharding) -> dict:
    """This process's share of a global batch from the host pipeline (`keys` of it) as global arrays."""
    return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in keys}


def global_array(local: np.ndarray, sharding: NamedSharding, global_batch: int) -> jax.Array:
    """This process's share of a global batch as a slice of the host array (every process holds the same
    global batch), assembled into one global array."""
    per_process = global_batch // jax.process_count()
    start = jax.process_index() * per_process
    return jax.make_array_from_process_local_data(sharding, local[start:start + per_process])


def init_state(model: nn.Module, tx, image_shape, seed: int) -> steps.TrainState:
    variables = model.init(jax.random.key(seed), jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False)
    return steps.TrainState.create(variables, tx)


def abstract_state(model: nn.Module, tx, image_shape, sharding) -> steps.TrainState:
    shapes = jax.eval_shape(functools.partial(init_state, model, tx, image_shape), 0)
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def load_teacher(model: nn.Module, run_dir: str, image_shape) -> Teacher:
    """The teacher with its variables (params + batch_stats) from the last checkpoint of its run directory,
    replicated over the mesh."""
    replicated = NamedSharding(make_mesh(), P())
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1,) + tuple(image_shape)),
                                               train=False))
    target = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes)
    variables, checkpoint = checkpointing.restore_variables(run_dir, target)
    return Teacher(model, variables, checkpoint)


class _SigtermFlag:
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


def run_stage(stage: Stage, data: ExperimentData, workdir: str, *, batch_size: int, lr_decay_epochs,
              lr_decay_rate: float, momentum: float, weight_decay: float, teacher: Optional[Teacher] = None,
              keep_checkpoints: int = 2, eval_batch_size: Optional[int] = None, eval_every_epochs: int = 1,
              checkpoint_every_epochs: int = 1,
              log_every_steps: int = 50, steps_per_dispatch: int = 1, stop_after_steps: Optional[int] = None):
    """Train `stage` to its last epoch, resuming from `workdir` if it holds checkpoints; returns the final
    state. Metrics go to `workdir/metrics.jsonl`. `stop_after_steps` simulates an interruption (tests)."""
    check_batch_size(batch_size, data.num_train)
    eval_batch_size = eval_batch_size or batch_size
    check_batch_size(eval_batch_size)
    steps_per_epoch = data.num_train // batch_size
    total_steps = steps_per_epoch * stage.num_epochs
    mesh = make_mesh()
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))
    image_shape = data.image_shape

    schedule = optim.step_decay_schedule(stage.learning_rate, steps_per_epoch, lr_decay_epochs, lr_decay_rate)
    tx = optim.sgd(schedule, momentum=momentum, weight_decay=weight_decay)
    ckpt = checkpointing.Checkpointer(workdir, keep=keep_checkpoints)
    log = metrics_log.MetricsLog(workdir)
    finished = False
    try:
        state = ckpt.restore_latest(abstract_state(stage.model, tx, image_shape, replicated))
        if state is None:
            state = jax.device_put(init_state(stage.model, tx, image_shape, stage.seed), replicated)
        start_step = int(state.step)

        distilling = stage.distills
        if data.train_images is not None:
            feed = DeviceFeed(data, batch_size, stage.seed, replicated)
        else:
            feed = HostFeed(data, batch_size, stage.seed, batch_sharding)
        if not feed.supports_scan:
            steps_per_dispatch = 1  # host batches arrive one at a time
        jit_one, jit_many = jitted_train_steps(stage, data, feed, tx, steps_per_epoch, mesh,
                                               teacher.model if distilling else None, schedule)
        teacher_variables = jax.device_put(teacher.variables, replicated) if distilling else None

        def eval_counts(variables, batch, teacher_variables):  # uint8 batches of either feed, normalised here
            return steps.eval_step(variables, device_input.normalize_batch(batch, data.augmentation),
                                   model=stage.model,
                                   num_classes=data.num_classes, teacher_model=teacher.model if distilling else None,
                                   teacher_variables=teacher_variables)

        eval_fn = jax.jit(eval_counts, out_shardings=replicated)

        def evaluate(state):
            totals = None
            for batch in feed.eval_batches(eval_batch_size, batch_sharding):
                counts = eval_fn(state.variables, batch, teacher_variables=teacher_variables)
                totals = counts if totals is None else jax.tree_util.tree_map(jnp.add, totals, counts)
            return evaluation.summarize(jax.device_get(totals), data.group_ids, data.train_counts)

        progress = metrics_log.Progress(stage.name, total_steps, batch_size)
        window = []
        # Host time spent getting the next batch, over the window's wall time up to the moment its steps are done
        # (measured after the log's device sync): ~0 for the device-resident feed; near 1 when the host input
        # pipeline (ImageNet) is the bottleneck, as images_per_sec below the bare step's rate then confirms.
        input_wait, window_start = 0.0, time.perf_counter()
        step = start_step
        with _SigtermFlag() as sigterm:
            while step < total_steps:
                epoch = step // steps_per_epoch + 1
                left_in_epoch = epoch * steps_per_epoch - step
                waited = time.perf_counter()
                step_inputs = feed.inputs(step)
                input_wait += time.perf_counter() - waited
                if steps_per_dispatch > 1 and left_in_epoch >= steps_per_dispatch:
                    state, metrics = jit_many(state, teacher_variables, step_inputs, steps_per_dispatch)
                    previous, step = step, step + steps_per_dispatch
                else:
                    state, metrics = jit_one(state, teacher_variables, step_inputs)
                    previous, step = step, step + 1
                window.append(metrics)
                epoch_done = step % steps_per_epoch == 0
                log_now = step // log_every_steps != previous // log_every_steps or epoch_done
                if log_now:
                    _log_train(log, progress, window, step, epoch, data, input_wait=input_wait,
                               window_start=window_start)
                    window, input_wait, window_start = [], 0.0, time.perf_counter()
                if epoch_done:
                    summary = None
                    if epoch % eval_every_epochs == 0 or step == total_steps:
                        summary = evaluate(state)
                        log.write({"step": step, "epoch": epoch, "split": "test",
                                   **{k: v for k, v in summary.items()}})
                    if epoch % checkpoint_every_epochs == 0 or step == total_steps:
                        ckpt.save(step, state, accuracy=summary["accuracy"] if summary else None)
                    progress.restart_clock()
                    window_start = time.perf_counter()
                if stop_after_steps is not None and step >= stop_after_steps and step < total_steps:
                    ckpt.save(step, state)
                    raise Preempted(f"stopped after step {step} (resume with the same command)")
                # Every process must take the same decision at the same step: agree only where all log.
                if (log_now or jax.process_count() == 1) and sigterm.agreed():
                    ckpt.save(step, state)
                    raise Preempted(f"SIGTERM: saved step {step} to {workdir}; rerun the same command to resume")
        progress.done()
        finished = True
        return state
    finally:
        if finished:
            ckpt.close()  # waits for the last asynchronous writes; their errors are this run's errors
        else:  # keep the error that stopped training (NaN loss, SIGTERM, ...) in front of a failed write
            try:
                ckpt.close()
            except Exception as error:  # pylint: disable=broad-except
                logging.warning("closing the checkpoints after a failed run also failed: %s", error)


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
    summary = evaluation.summarize(counts, data.group_ids, data.train_counts)
    record.update({k: v for k, v in summary.items() if k.startswith("accuracy_")})
    for key in ("teacher_group_sums", "teacher_group_sums_rebalanced"):
        if key in fetched[0]:
            record[key] = np.mean([m[key] for m in fetched], axis=0).tolist()
    log.write(record)
