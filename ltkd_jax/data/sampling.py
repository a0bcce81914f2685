"""Epoch orders, process shares and seeds of the host pipeline: pure functions of ``(seed, epoch)``.

Nothing depends on the process count or on earlier epochs, so a run resumed at epoch ``e`` sees exactly the
stream an uninterrupted run sees at epoch ``e``. The layouts themselves are described in docs/data.md
("Host streams").
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

# Purposes of the seed sequences: the numbers are part of the streams (changing one changes every stream).
_ORDER, _AUGMENT, _TF_SHUFFLE = 0, 1, 2


def nonneg_int(value, what: str) -> int:
    """``value`` as an int, or a ValueError naming ``what`` when it is not an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


def resolve_processes(process_index: Optional[int], process_count: Optional[int]) -> Tuple[int, int]:
    """Defaults ``jax.process_index()`` / ``jax.process_count()`` (JAX imported only when needed)."""
    if process_index is None or process_count is None:
        import jax  # pylint: disable=import-outside-toplevel

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    count = nonneg_int(process_count, "process_count")
    if count < 1:
        raise ValueError(f"process_count must be >= 1, got {process_count!r}")
    index = nonneg_int(process_index, "process_index")
    if index >= count:
        raise ValueError(f"process_index must be in [0, {count}), got {process_index!r}")
    return index, count


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
    g = nonneg_int(global_batch_size, "global_batch_size")
    if g < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size!r}")
    if g % process_count:
        raise ValueError(f"global_batch_size={g} is not divisible by process_count={process_count}; "
                         f"use a multiple of {process_count}")
    return g // process_count


def seed_sequence(seed: int, epoch: int, purpose: int, *extra: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([nonneg_int(seed, "seed"), nonneg_int(epoch, "epoch"), purpose, *extra])


def epoch_order(num_examples: int, global_batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """(steps, G) int64 positions in ``[0, num_examples)``: the global batches of one epoch."""
    g = nonneg_int(global_batch_size, "global_batch_size")
    steps = num_examples // g if g else 0
    if steps < 1:
        raise ValueError(f"global_batch_size={global_batch_size} exceeds the {num_examples} training examples: "
                         f"an epoch would have no step")
    perm = np.random.default_rng(seed_sequence(seed, epoch, _ORDER)).permutation(num_examples)
    return perm[: steps * g].reshape(steps, g).astype(np.int64)


def _tf_seed(seed: int, epoch: int, purpose: int, *extra: int) -> int:
    """A non-negative int63 from ``(seed, epoch, purpose, *extra)`` for TensorFlow ops."""
    return int(seed_sequence(seed, epoch, purpose, *extra).generate_state(1, np.uint64)[0] >> np.uint64(1))


def augment_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's crops and flips (the same on every process: per example, by canonical index)."""
    return _tf_seed(seed, epoch, _AUGMENT)


def shuffle_seed(seed: int, epoch: int, process_index: int) -> int:
    """The seed of one process's tf.data shuffle buffer in one epoch."""
    return _tf_seed(seed, epoch, _TF_SHUFFLE, process_index)


def eval_layout(num_examples: int, global_batch_size: int, process_index: int, process_count: int):
    """``(positions, mask)``, each (steps, G/P): this process's eval slots; padded slots point at 0."""
    b = per_process_batch_size(global_batch_size, process_count)
    steps = max(1, -(-num_examples // global_batch_size))
    slots = (np.arange(steps, dtype=np.int64)[:, None] * global_batch_size
             + process_index * b + np.arange(b, dtype=np.int64)[None, :])
    mask = slots < num_examples
    return np.where(mask, slots, 0), mask
