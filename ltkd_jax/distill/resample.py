"""PyTorch-exact resampling of NHWC maps, as static index / weight tables: `F.interpolate(mode='nearest')` and
`F.adaptive_avg_pool2d`, the two ReviewKD's fusion blocks and loss use (docs/feature_baselines.md)."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """F.interpolate(mode='nearest') source indices: floor(i * float32(in / out)), clipped (PyTorch's rule)."""
    if in_size == out_size:
        return np.arange(out_size)
    scale = np.float32(in_size) / np.float32(out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def resize_nearest(x: jax.Array, size: Sequence[int]) -> jax.Array:
    """PyTorch `F.interpolate(x, size, mode='nearest')` on an NHWC array."""
    h, w = int(size[0]), int(size[1])
    if x.shape[1:3] == (h, w):
        return x
    x = jnp.take(x, nearest_indices(x.shape[1], h), axis=1)
    return jnp.take(x, nearest_indices(x.shape[2], w), axis=2)


def _adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) averaging weights of PyTorch's adaptive pooling: cell i averages
    [floor(i * in / out), ceil((i + 1) * in / out)), so cells may overlap when `in` is not a multiple."""
    m = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool2d(x: jax.Array, size: Sequence[int]) -> jax.Array:
    """PyTorch `F.adaptive_avg_pool2d(x, size)` on an NHWC array, in float32."""
    ph = jnp.asarray(_adaptive_pool_matrix(x.shape[1], int(size[0])))
    pw = jnp.asarray(_adaptive_pool_matrix(x.shape[2], int(size[1])))
    return jnp.einsum("oh,nhwc,pw->nopc", ph, x.astype(jnp.float32), pw, precision=jax.lax.Precision.HIGHEST)
