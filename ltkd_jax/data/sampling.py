"""Epoch orders, process sharding and augmentation randomness, shared by the numpy and tf.data pipelines.

Everything is a pure function of ``(seed, epoch)`` (never of the process count or of earlier epochs), so a
run resumed at epoch ``e`` sees exactly the stream an uninterrupted run sees at epoch ``e``.

Training: the LT subset is permuted with ``default_rng(SeedSequence([seed, epoch, 0]))``; the first
``steps * G`` entries (``steps = N // G``, the remainder dropped) form ``steps`` global batches of ``G``;
process ``p`` of ``P`` takes columns ``[p * G/P, (p + 1) * G/P)`` of every global batch.

Evaluation: canonical indices ``0 .. N-1`` padded to ``ceil(N / G) * G`` slots; global batch ``s`` is slots
``[s G, (s + 1) G)`` and process ``p`` takes its ``G/P`` columns. Padding slots have ``mask = False``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

_ORDER, _AUGMENT, _TF_SHUFFLE = 0, 1, 2


def _nonneg_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


def resolve_processes(process_index: Optional[int], process_count: Optional[int]) -> Tuple[int, int]:
    """Defaults ``jax.process_index()`` / ``jax.process_count()`` (JAX imported only when needed)."""
    if process_index is None or process_count is None:
        import jax  # pylint: disable=import-outside-toplevel

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    count = _nonneg_int(process_count, "process_count")
    if count < 1:
        raise ValueError(f"process_count must be >= 1, got {process_count!r}")
    index = _nonneg_int(process_index, "process_index")
    if index >= count:
        raise ValueError(f"process_index must be in [0, {count}), got {process_index!r}")
    return index, count


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
    g = _nonneg_int(global_batch_size, "global_batch_size")
    if g < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size!r}")
    if g % process_count:
        raise ValueError(f"global_batch_size={g} is not divisible by process_count={process_count}; "
                         f"use a multiple of {process_count}")
    return g // process_count


def seed_sequence(seed: int, epoch: int, purpose: int, *extra: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([_nonneg_int(seed, "seed"), _nonneg_int(epoch, "epoch"), purpose, *extra])


def epoch_order(num_examples: int, global_batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """(steps, G) int64 positions in ``[0, num_examples)``: the global batches of one epoch."""
    g = _nonneg_int(global_batch_size, "global_batch_size")
    steps = num_examples // g if g else 0
    if steps < 1:
        raise ValueError(f"global_batch_size={global_batch_size} exceeds the {num_examples} training examples: "
                         f"an epoch would have no step")
    perm = np.random.default_rng(seed_sequence(seed, epoch, _ORDER)).permutation(num_examples)
    return perm[: steps * g].reshape(steps, g).astype(np.int64)


def crop_flip_params(shape, pad: int, seed: int, epoch: int):
    """Per-slot ``(dy, dx, flip)`` for pad+crop+flip: offsets in ``[0, 2 pad]``, flip a fair coin."""
    rng = np.random.default_rng(seed_sequence(seed, epoch, _AUGMENT))
    dy = rng.integers(0, 2 * pad + 1, size=shape)
    dx = rng.integers(0, 2 * pad + 1, size=shape)
    flip = rng.random(size=shape) < 0.5
    return dy, dx, flip


def tf_seed(seed: int, epoch: int, purpose: int, *extra: int) -> int:
    """A non-negative int63 from ``(seed, epoch, purpose, *extra)`` for TensorFlow ops."""
    return int(seed_sequence(seed, epoch, purpose, *extra).generate_state(1, np.uint64)[0] >> np.uint64(1))


def eval_layout(num_examples: int, global_batch_size: int, process_index: int, process_count: int):
    """``(positions, mask)``, each (steps, G/P): this process's eval slots; padded slots point at 0."""
    b = per_process_batch_size(global_batch_size, process_count)
    steps = max(1, -(-num_examples // global_batch_size))
    slots = (np.arange(steps, dtype=np.int64)[:, None] * global_batch_size
             + process_index * b + np.arange(b, dtype=np.int64)[None, :])
    mask = slots < num_examples
    return np.where(mask, slots, 0), mask
