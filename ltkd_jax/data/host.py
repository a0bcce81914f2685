"""The host input pipeline (tf.data): :func:`build_dataset`, and :class:`HostFeed` that feeds it to a trainer.

ImageNet streams through it, and any data set trained with ``dataset.device_resident`` off. Every process reads
the whole split's records in stored order (images are decoded only where kept), keeps its own examples (its
share of the epoch order of :mod:`ltkd_jax.data.sampling`, or its evaluation slots), shuffles them with a seeded
buffer and decodes + augments them with per-example stateless randomness. Importing this module imports
neither TensorFlow nor JAX. The rules of the streams: docs/data.md ("Host streams").
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Callable, Iterator, Optional, Union

import numpy as np

from ltkd_jax.data import sampling
from ltkd_jax.data.info import DatasetInfo, ExperimentData, get_info
from ltkd_jax.data.registry import get_spec
from ltkd_jax.data.source import split_metadata, stored_dataset

DEFAULT_SHUFFLE_BUFFER = 16_384  # records (encoded images) held by the tf.data shuffle for large data sets


@dataclasses.dataclass(frozen=True, repr=False)
class Batches:
    """One epoch (training) or one full pass (evaluation) of batches; iterate it (again) for the same stream.
    Batches: dicts of this process's numpy arrays (docs/data.md, "Input paths"); ``image`` is uint8, normalised on
    the device (a quarter of float32's bytes cross to it). ``num_steps`` counts the whole epoch or pass,
    ``len(batches)`` the batches the iterator yields (``num_steps - start_step``)."""

    info: DatasetInfo
    split: str
    training: bool
    epoch: int
    seed: int
    global_batch_size: int
    batch_size: int  # per process
    process_index: int
    process_count: int
    num_steps: int
    start_step: int
    make_iter: Callable[[], Iterator[dict]]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.make_iter())

    def __len__(self) -> int:
        return self.num_steps - self.start_step

    def __repr__(self):
        return (f"Batches({self.info.name}/{self.split}, {'train' if self.training else 'eval'}, "
                f"epoch={self.epoch}, steps={self.num_steps}, batch={self.batch_size}x{self.process_count} "
                f"processes)")


def build_dataset(dataset: Union[str, DatasetInfo], split: str = "train", *, global_batch_size: int,
                  data_dir=None, imbalance_factor: Optional[float] = None, split_seed: int = 0,
                  num_groups: int = 3, split_file: Optional[str] = None, image_size: Optional[int] = None,
                  seed: int = 0, epoch: int = 0, process_index: Optional[int] = None,
                  process_count: Optional[int] = None, training: Optional[bool] = None, start_step: int = 0,
                  shuffle_buffer_size: Optional[int] = None, prefetch: int = 2) -> Batches:
    """Batches of one epoch of training, or of one evaluation pass (the streams: docs/data.md, "Host streams").

    ``dataset``: a registry name (``data_dir`` ... ``image_size`` then as for :func:`get_info`), or a
    :class:`DatasetInfo` (then leave those out). ``split``: "train" (the LT training stream), "eval" (the
    evaluation split) or another tfds split (evaluated); ``training=False`` with "train" evaluates the LT subset.
    The stream depends on ``(seed, epoch)`` only, the LT subset on ``split_seed`` only; ``start_step`` skips
    batches (resume within an epoch). ``global_batch_size`` must divide by ``process_count`` (default: JAX's).
    ``shuffle_buffer_size``: default the whole local share for in-memory data sets, else 16,384 records.
    """
    info = _dataset_info(dataset, data_dir=data_dir, imbalance_factor=imbalance_factor, split_seed=split_seed,
                         num_groups=num_groups, split_file=split_file, image_size=image_size)
    process_index, process_count = sampling.resolve_processes(process_index, process_count)
    batch_size = sampling.per_process_batch_size(global_batch_size, process_count)
    seed, epoch = sampling.nonneg_int(seed, "seed"), sampling.nonneg_int(epoch, "epoch")
    start_step = sampling.nonneg_int(start_step, "start_step")
    if training is None:
        training = split == "train"
    elif training and split != "train":
        raise ValueError(f"training streams read the 'train' split, got split={split!r} with training=True")
    split = info.eval_split if split == "eval" else split
    common = dict(info=info, split=split, batch_size=batch_size, start_step=start_step, prefetch=prefetch)
    if training:
        order = sampling.epoch_order(info.num_train, global_batch_size, seed, epoch)
        share = order[:, process_index * batch_size:(process_index + 1) * batch_size]
        num_steps = order.shape[0]
        make = functools.partial(_train_batches, mine=info.lt_indices[share.reshape(-1)], num_steps=num_steps,
                                 seed=seed, epoch=epoch, process_index=process_index,
                                 shuffle_buffer_size=shuffle_buffer_size, **common)
    else:
        canon, mask = _eval_slots(info, split, global_batch_size, process_index, process_count)
        num_steps = canon.shape[0]
        make = functools.partial(_eval_batches, canon=canon, mask=mask, **common)
    if start_step > num_steps:
        raise ValueError(f"start_step={start_step} exceeds the {num_steps} steps of this epoch")
    return Batches(info=info, split=split, training=training, epoch=epoch, seed=seed,
                   global_batch_size=global_batch_size, batch_size=batch_size, process_index=process_index,
                   process_count=process_count, num_steps=num_steps, start_step=start_step, make_iter=make)


def _dataset_info(dataset: Union[str, DatasetInfo], *, split_seed: int, num_groups: int, **given) -> DatasetInfo:
    """``dataset`` itself when it is a DatasetInfo (and no data-set argument is given), else its get_info."""
    if not isinstance(dataset, DatasetInfo):
        get_spec(dataset)  # unknown names fail before any I/O
        return get_info(dataset, split_seed=split_seed, num_groups=num_groups, **given)
    given = sorted(k for k, v in given.items() if v is not None)
    if given or split_seed != 0 or num_groups != 3:
        raise ValueError(f"build_dataset: got a DatasetInfo and data-set arguments {given}; "
                         f"pass them to get_info instead")
    return dataset


def _eval_slots(info: DatasetInfo, split: str, global_batch_size: int, process_index: int, process_count: int):
    """``(canonical indices, mask)``, each (steps, G/P): this process's evaluation slots of ``split``."""
    if split == info.train_split:  # the long-tailed training subset, every kept example once
        positions, mask = sampling.eval_layout(info.num_train, global_batch_size, process_index, process_count)
        return info.lt_indices[positions], mask
    num = info.num_eval if split == info.eval_split else split_metadata(info.name, split, info.data_dir).num_examples
    return sampling.eval_layout(num, global_batch_size, process_index, process_count)


def _records(info: DatasetInfo, split: str, wanted: np.ndarray):
    """``(tf, records)``: the ``wanted`` examples (canonical indices) as {encoded image, label, index}, stored order."""
    from ltkd_jax.data import tf_env  # pylint: disable=import-outside-toplevel
    tf, tfds = tf_env.import_tfds()
    meta = split_metadata(info.name, split, info.data_dir)
    table = np.full(meta.num_examples, -1, dtype=np.int64)  # stored position -> canonical index, -1: not wanted
    table[meta.stored_positions[wanted]] = wanted
    ds = stored_dataset(info.spec, split, info.data_dir, decoders={"image": tfds.decode.SkipDecoding()})
    table_t = tf.constant(table)
    ds = ds.enumerate().map(lambda pos, ex: {"image": ex["image"], "label": tf.cast(ex["label"], tf.int32),
                                             "index": tf.gather(table_t, pos)})
    return tf, ds.filter(lambda ex: ex["index"] >= 0)


def _train_batches(*, info, split, batch_size, start_step, prefetch, mine, num_steps, seed, epoch, process_index,
                   shuffle_buffer_size):
    tf, ds = _records(info, split, mine)
    if shuffle_buffer_size is None:
        shuffle_buffer_size = mine.size if info.spec.in_memory else min(mine.size, DEFAULT_SHUFFLE_BUFFER)
    ds = ds.shuffle(int(max(1, shuffle_buffer_size)), seed=sampling.shuffle_seed(seed, epoch, process_index),
                    reshuffle_each_iteration=False)
    ds = augmented_batches(tf, ds, info, batch_size, sampling.augment_seed(seed, epoch))
    return ds.take(num_steps).skip(start_step).prefetch(prefetch).as_numpy_iterator()


def augmented_batches(tf, records, info, batch_size: int, aug_seed: int):
    """Decode + augment records ({image: encoded, label, index}) in parallel and batch them (remainder
    dropped): the training stream's work after the read and shuffle (``ltkd_jax.tools.input_bench`` times it)."""
    from ltkd_jax.data import tf_preprocess  # pylint: disable=import-outside-toplevel
    ds = records.map(tf_preprocess.train_fn(info, aug_seed), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True)


def _eval_batches(*, info, split, batch_size, start_step, prefetch, canon, mask):
    from ltkd_jax.data import tf_preprocess  # pylint: disable=import-outside-toplevel
    wanted = canon[mask]
    tf, ds = _records(info, split, wanted)
    ds = ds.map(tf_preprocess.eval_fn(info), num_parallel_calls=tf.data.AUTOTUNE)
    num_pad = canon.size - wanted.size
    if num_pad:
        padding = {"image": tf.zeros(info.image_shape, tf.uint8), "label": tf.constant(0, tf.int32),
                   "index": tf.constant(-1, tf.int32), "mask": tf.constant(False)}
        ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(num_pad))
    return ds.batch(batch_size).skip(start_step).prefetch(prefetch).as_numpy_iterator()


@dataclasses.dataclass(kw_only=True)
class HostData(ExperimentData):
    """A data set streamed through the host pipeline from its tfds files (ImageNet, or `dataset.device_resident`
    off)."""

    info: DatasetInfo
    num_train: int = dataclasses.field(init=False)
    image_shape: tuple = dataclasses.field(init=False)

    def __post_init__(self):
        self.num_train, self.image_shape = self.info.num_train, tuple(self.info.image_shape)

    def feed(self, batch_size: int, seed: int, mesh) -> "HostFeed":
        from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=import-outside-toplevel
        return HostFeed(self, batch_size, seed, NamedSharding(mesh, PartitionSpec("data")))


class HostFeed:
    """Batches from the host pipeline, each process feeding its share of the global batch as uint8 (normalised
    inside the step); the next batches are put on the devices while the current step runs.

    ``ltkd_jax.data.device`` (JAX) is imported where a batch is put on the devices, not by this module."""

    supports_scan = False

    def __init__(self, data: HostData, batch_size: int, seed: int, sharding, prefetch: int = 2):
        self.data, self.batch_size, self.seed, self.sharding, self.prefetch = data, batch_size, seed, sharding, prefetch
        self._stream, self._next_step = None, None

    def inputs(self, step: int) -> dict:
        """The batch of `step`: the next one of the stream, which (re)starts wherever a step is asked for out
        of order."""
        if step != self._next_step:
            self._stream = self._batches(step)
        self._next_step = step + 1
        return next(self._stream)

    def _batches(self, start_step: int):
        from ltkd_jax.data import device  # pylint: disable=import-outside-toplevel
        steps_per_epoch = self.data.num_train // self.batch_size
        epoch, position = divmod(start_step, steps_per_epoch)
        queue = collections.deque()
        while True:
            for batch in build_dataset(self.data.info, "train", global_batch_size=self.batch_size,
                                       seed=self.seed, epoch=epoch, start_step=position):
                queue.append(device.put_process_batch(batch, ("image", "label"), self.sharding))
                if len(queue) > self.prefetch:
                    yield queue.popleft()
            epoch, position = epoch + 1, 0
            while queue:  # the epoch's last batches before the next epoch's pipeline starts
                yield queue.popleft()

    def batch(self, inputs, step):
        from ltkd_jax.data import device  # pylint: disable=import-outside-toplevel
        return device.normalize_batch(inputs, self.data.augmentation)

    def eval_batches(self, eval_batch_size: int, sharding):
        from ltkd_jax.data import device  # pylint: disable=import-outside-toplevel
        for batch in build_dataset(self.data.info, "eval", global_batch_size=eval_batch_size):
            yield device.put_process_batch(batch, ("image", "label", "mask"), sharding)
