"""Input pipelines: :func:`build_dataset` over tf.data (any data set) or numpy (in-memory data sets).

Both backends share the sampling rules of :mod:`ltkd_jax.data.sampling`: the same examples land on the same
process in the same epoch. The numpy backend also reproduces the exact batch order; the tf.data backend
streams the tfds records, keeps this process's examples and shuffles them with a seeded buffer (the whole
local share for in-memory data sets), so its order within an epoch is its own but equally deterministic.
Every process of the tf backend reads the whole split's records (images are not decoded unless kept) and
keeps its own examples; the record order is fixed by :func:`ltkd_jax.data.source.read_config`.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterator, Optional, Union

import numpy as np

from ltkd_jax.data import augment, sampling
from ltkd_jax.data.info import DatasetInfo, get_info
from ltkd_jax.data.registry import get_spec
from ltkd_jax.data.source import load_arrays, split_metadata, stored_dataset

BACKENDS = ("auto", "numpy", "tf")
DEFAULT_SHUFFLE_BUFFER = 16_384  # records (encoded images) held by the tf.data shuffle for large data sets
_EVAL_ALIASES = ("eval",)


class Batches:
    """One epoch (training) or one full pass (evaluation) of batches; iterate it (again) for the same stream.

    Each batch is a dict of numpy arrays with this process's share of the global batch:
    ``image`` uint8 (B, H, W, C) augmented, not normalised (the device normalises: a quarter of the bytes of
    float32 cross to it), ``label`` int32 (B,), ``index`` int32 (B,) canonical example
    index (-1 for padding) and, for evaluation, ``mask`` bool (B,) (False on padding).

    Attributes: info, split, training, backend, epoch, seed, global_batch_size, batch_size (per process),
    process_index, process_count, num_steps (steps of the whole epoch/pass), start_step.
    ``len(batches)`` is the number of batches the iterator yields (``num_steps - start_step``).
    """

    def __init__(self, *, info, split, training, backend, epoch, seed, global_batch_size, batch_size,
                 process_index, process_count, num_steps, start_step, make_iter: Callable[[], Iterator[dict]]):
        self.info = info
        self.split = split
        self.training = training
        self.backend = backend
        self.epoch = epoch
        self.seed = seed
        self.global_batch_size = global_batch_size
        self.batch_size = batch_size
        self.process_index = process_index
        self.process_count = process_count
        self.num_steps = num_steps
        self.start_step = start_step
        self._make_iter = make_iter

    def __iter__(self) -> Iterator[dict]:
        return iter(self._make_iter())

    def __len__(self) -> int:
        return self.num_steps - self.start_step

    def __repr__(self):
        return (f"Batches({self.info.name}/{self.split}, {'train' if self.training else 'eval'}, "
                f"backend={self.backend}, epoch={self.epoch}, steps={self.num_steps}, batch={self.batch_size}"
                f"x{self.process_count} processes)")


def build_dataset(dataset: Union[str, DatasetInfo], split: str = "train", *, global_batch_size: int,
                  data_dir=None, imbalance_factor: Optional[float] = None, split_seed: int = 0,
                  num_groups: int = 3, split_file: Optional[str] = None, image_size: Optional[int] = None,
                  seed: int = 0, epoch: int = 0, process_index: Optional[int] = None,
                  process_count: Optional[int] = None, training: Optional[bool] = None,
                  backend: str = "auto", start_step: int = 0,
                  shuffle_buffer_size: Optional[int] = None, prefetch: int = 2) -> Batches:
    """Batches of one epoch of training, or of one evaluation pass.

    Args:
      dataset: a registry name, or a :class:`DatasetInfo` from :func:`get_info` (then the data-set arguments
        ``data_dir`` ... ``image_size`` must be left out).
      split: "train" -- the long-tailed training stream: shuffled per epoch, augmented, remainder dropped;
        "eval" -- the data set's evaluation split (cifar100/fashion_mnist "test", tiny_imagenet/imagenet2012
        "validation"); any other tfds split name -- evaluation over that split. Evaluation visits every
        example once, pads the last batch and marks it in ``mask``.
      global_batch_size: batch size summed over processes (must be divisible by ``process_count``).
      data_dir, imbalance_factor, split_seed, num_groups, split_file, image_size: see :func:`get_info`.
      seed: training seed (shuffling and augmentation); the LT subset depends on ``split_seed`` only.
      epoch: epoch number; the stream is a function of (seed, epoch) only, so resuming at epoch e is exact.
      process_index, process_count: this process and the number of processes (default: JAX's).
      training: default ``split == "train"``; ``split="train", training=False`` is an evaluation pass over the
        long-tailed training subset (no augmentation, every kept example once).
      backend: "numpy" (in-memory data sets, no TensorFlow once the cache exists), "tf" (tf.data) or "auto"
        (numpy for cifar100/tiny_imagenet/fashion_mnist, tf for imagenet2012).
      start_step: skip the first ``start_step`` batches (resume within an epoch).
      shuffle_buffer_size: tf backend only; default the whole local share for in-memory data sets, else
        16,384 encoded records.
      prefetch: tf backend only; batches prefetched by tf.data.
    """
    if isinstance(dataset, DatasetInfo):
        given = {k: v for k, v in dict(data_dir=data_dir, imbalance_factor=imbalance_factor,
                                        split_file=split_file, image_size=image_size).items() if v is not None}
        if given or split_seed != 0 or num_groups != 3:
            raise ValueError(f"build_dataset: got a DatasetInfo and data-set arguments {sorted(given)}; "
                             f"pass them to get_info instead")
        info = dataset
    else:
        get_spec(dataset)  # unknown names fail before any I/O
        info = get_info(dataset, data_dir=data_dir, imbalance_factor=imbalance_factor, split_seed=split_seed,
                        num_groups=num_groups, split_file=split_file, image_size=image_size)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = "numpy" if info.spec.in_memory else "tf"
    if backend == "numpy" and not info.spec.in_memory:
        raise ValueError(f"backend='numpy' needs an in-memory data set; {info.name} needs backend='tf'")
    process_index, process_count = sampling.resolve_processes(process_index, process_count)
    batch_size = sampling.per_process_batch_size(global_batch_size, process_count)
    seed = sampling._nonneg_int(seed, "seed")  # pylint: disable=protected-access
    epoch = sampling._nonneg_int(epoch, "epoch")  # pylint: disable=protected-access
    start_step = sampling._nonneg_int(start_step, "start_step")  # pylint: disable=protected-access
    if training is None:
        training = split == "train"
    elif training and split != "train":
        raise ValueError(f"training streams read the 'train' split, got split={split!r} with training=True")
    tfds_split = info.eval_split if split in _EVAL_ALIASES else split
    if training:
        indices = info.lt_indices
        order = sampling.epoch_order(indices.size, global_batch_size, seed, epoch)
        num_steps = order.shape[0]
    else:
        indices = info.lt_indices if tfds_split == info.train_split else None
        num = indices.size if indices is not None else None
        if num is None:
            num = info.num_eval if tfds_split == info.eval_split else split_metadata(
                info.name, tfds_split, info.data_dir).num_examples
        positions, mask = sampling.eval_layout(num, global_batch_size, process_index, process_count)
        num_steps = positions.shape[0]
    if start_step > num_steps:
        raise ValueError(f"start_step={start_step} exceeds the {num_steps} steps of this epoch")
    common = dict(info=info, split=tfds_split, process_index=process_index, batch_size=batch_size,
                  start_step=start_step)
    if training:
        sl = slice(process_index * batch_size, (process_index + 1) * batch_size)
        if backend == "numpy":
            make = functools.partial(_np_train, order=order, sl=sl, seed=seed, epoch=epoch, **common)
        else:
            make = functools.partial(_tf_train, order=order, sl=sl, seed=seed, epoch=epoch,
                                     shuffle_buffer_size=shuffle_buffer_size, prefetch=prefetch, **common)
    else:
        canon = positions if indices is None else indices[positions]
        if backend == "numpy":
            make = functools.partial(_np_eval, canon=canon, mask=mask, **common)
        else:
            make = functools.partial(_tf_eval, canon=canon, mask=mask, prefetch=prefetch, **common)
    return Batches(info=info, split=tfds_split, training=training, backend=backend, epoch=epoch, seed=seed,
                   global_batch_size=global_batch_size, batch_size=batch_size, process_index=process_index,
                   process_count=process_count, num_steps=num_steps, start_step=start_step, make_iter=make)


# ----------------------------------------------------------------------------------------------- numpy


@functools.lru_cache(maxsize=4)
def _arrays(name, split, data_dir):
    return load_arrays(name, split, data_dir)


def _np_train(*, info, split, process_index, batch_size, start_step, order, sl, seed, epoch):
    del process_index
    images, labels = _arrays(info.name, split, info.data_dir)
    dy, dx, flip = sampling.crop_flip_params(order.shape, info.spec.pad, seed, epoch)
    for s in range(start_step, order.shape[0]):
        canon = info.lt_indices[order[s, sl]]
        batch = augment.pad_crop_flip(images[canon], info.spec.pad, dy[s, sl], dx[s, sl], flip[s, sl])
        yield {"image": batch,
               "label": labels[canon].astype(np.int32),
               "index": canon.astype(np.int32)}
    del batch_size


def _np_eval(*, info, split, process_index, batch_size, start_step, canon, mask):
    del process_index, batch_size
    images, labels = _arrays(info.name, split, info.data_dir)
    for s in range(start_step, canon.shape[0]):
        idx, m = canon[s], mask[s]
        image = images[idx]
        image[~m] = 0
        yield {"image": image,
               "label": np.where(m, labels[idx], 0).astype(np.int32),
               "index": np.where(m, idx, -1).astype(np.int32),
               "mask": m.copy()}


# --------------------------------------------------------------------------------------------- tf.data


def _lookup_table(info, split, canon_wanted: np.ndarray) -> np.ndarray:
    """(N_split,) int64: canonical index for the stored positions this process reads, -1 elsewhere."""
    meta = split_metadata(info.name, split, info.data_dir)
    table = np.full(meta.num_examples, -1, dtype=np.int64)
    table[meta.stored_positions[canon_wanted]] = canon_wanted
    return table


def _records(info, split, table: np.ndarray):
    """This process's records (encoded image, label, canonical index), in stored order."""
    from ltkd_jax.data import _env  # pylint: disable=import-outside-toplevel

    tf, tfds = _env.import_tfds()
    ds = stored_dataset(info.spec, split, info.data_dir, decoders={"image": tfds.decode.SkipDecoding()})
    table_t = tf.constant(table)
    ds = ds.enumerate().map(lambda pos, ex: {
        "image": ex["image"],
        "label": tf.cast(ex["label"], tf.int32),
        "index": tf.gather(table_t, pos),
    })
    return tf, ds.filter(lambda ex: ex["index"] >= 0)


def _tf_train(*, info, split, process_index, batch_size, start_step, order, sl, seed, epoch,
              shuffle_buffer_size, prefetch):
    mine = info.lt_indices[order[:, sl].reshape(-1)]
    tf, ds = _records(info, split, _lookup_table(info, split, mine))
    if shuffle_buffer_size is None:
        shuffle_buffer_size = mine.size if info.spec.in_memory else min(mine.size, DEFAULT_SHUFFLE_BUFFER)
    ds = ds.shuffle(int(max(1, shuffle_buffer_size)),
                    seed=sampling.tf_seed(seed, epoch, sampling._TF_SHUFFLE, process_index),  # pylint: disable=protected-access
                    reshuffle_each_iteration=False)
    aug_seed = sampling.tf_seed(seed, epoch, sampling._AUGMENT)  # pylint: disable=protected-access
    ds = augmented_batches(tf, ds, info, batch_size, aug_seed)
    return ds.take(order.shape[0]).skip(start_step).prefetch(prefetch).as_numpy_iterator()


def augmented_batches(tf, records, info, batch_size: int, aug_seed: int):
    """Decode + augment records ({image: encoded, label, index}) in parallel and batch them (remainder
    dropped): the training stream's work after the read and shuffle (``ltkd_jax.input_bench`` times it)."""
    from ltkd_jax.data import tf_preprocess  # pylint: disable=import-outside-toplevel

    ds = records.map(tf_preprocess.train_fn(info, aug_seed), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True)


def _tf_eval(*, info, split, process_index, batch_size, start_step, canon, mask, prefetch):
    from ltkd_jax.data import tf_preprocess  # pylint: disable=import-outside-toplevel

    del process_index
    wanted = canon[mask]
    tf, ds = _records(info, split, _lookup_table(info, split, wanted))
    ds = ds.map(tf_preprocess.eval_fn(info), num_parallel_calls=tf.data.AUTOTUNE)
    num_pad = canon.size - wanted.size
    if num_pad:
        h, w, c = info.image_shape
        ds = ds.concatenate(tf.data.Dataset.from_tensors({
            "image": tf.zeros((h, w, c), tf.uint8),
            "label": tf.constant(0, tf.int32),
            "index": tf.constant(-1, tf.int32),
            "mask": tf.constant(False),
        }).repeat(num_pad))
    ds = ds.batch(batch_size).skip(start_step)
    return ds.prefetch(prefetch).as_numpy_iterator()
