"""Post-activation residual blocks (He et al. 2016) shared by the CIFAR and ImageNet ResNets.

Shortcuts, ``preact`` outputs and initialisation, with their sources: docs/models.md.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltkd_jax.models.layers import Dtype, batch_norm, conv2d


class _ProjectionShortcut(nn.Module):
    """Strided 1x1 conv + BN, used where the residual branch changes resolution or width."""

    features: int
    stride: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = conv2d(self.features, 1, stride=self.stride, dtype=self.dtype, name="conv")(x)
        return batch_norm(train, dtype=self.dtype, name="bn")(x)


def _shortcut(block: nn.Module, x: jax.Array, out_features: int, train: bool) -> jax.Array:
    if block.stride != 1 or x.shape[-1] != out_features:
        return _ProjectionShortcut(out_features, block.stride, block.dtype, name="downsample")(x, train)
    return x


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, add shortcut, ReLU. Output width = ``width``."""

    width: int
    stride: int = 1
    dtype: Dtype = jnp.float32

    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        y = conv2d(self.width, 3, stride=self.stride, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(y))
        y = conv2d(self.width, 3, dtype=self.dtype, name="conv2")(y)
        y = batch_norm(train, dtype=self.dtype, name="bn2")(y)
        preact = y + _shortcut(self, x, self.width, train)
        return nn.relu(preact), preact


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, as torchvision's "v1.5"), 1x1 expand x4; post-activation."""

    width: int
    stride: int = 1
    dtype: Dtype = jnp.float32

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        out_features = self.width * self.expansion
        y = conv2d(self.width, 1, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(y))
        y = conv2d(self.width, 3, stride=self.stride, dtype=self.dtype, name="conv2")(y)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn2")(y))
        y = conv2d(out_features, 1, dtype=self.dtype, name="conv3")(y)
        y = batch_norm(train, dtype=self.dtype, name="bn3")(y)
        preact = y + _shortcut(self, x, out_features, train)
        return nn.relu(preact), preact


class ResidualStage(nn.Module):
    """``num_blocks`` blocks of one width; the first carries the stride.

    Returns ``(output, preact)`` of the last block, the stage's entry in ``feats`` / ``preact_feats``.
    """

    block: type[nn.Module]
    width: int
    num_blocks: int
    stride: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        preact = x
        for i in range(self.num_blocks):
            stride = self.stride if i == 0 else 1
            x, preact = self.block(self.width, stride, self.dtype, name=f"block{i}")(x, train)
        return x, preact
