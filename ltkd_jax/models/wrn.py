"""Wide ResNets (Zagoruyko & Komodakis 2016) as mdistiller's ``cifar/wrn.py``: wrn_40_2, wrn_40_1.

Topology, initialisation and feature shapes, with their sources: docs/models.md. mdistiller builds the
pre-activation features by calling three batch norms a second time (block2's and block3's first bn1 and the final
bn1), so in train mode their running statistics update twice per step. Here each block returns the BN(input) it
computed, so every batch norm updates once per step, as in a plain forward pass; the features are the same.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltkd_jax.models.layers import Dtype, HeadInit, batch_norm, classifier, conv2d, global_avg_pool, model_outputs


class WideBasicBlock(nn.Module):
    """Pre-activation block; returns ``(output, BN(input))`` so the caller can expose the normalised input."""

    width: int
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        normalized_input = batch_norm(train, dtype=self.dtype, name="bn1")(x)
        activated = nn.relu(normalized_input)
        y = conv2d(self.width, 3, stride=self.stride, dtype=self.dtype, name="conv1")(activated)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn2")(y))
        y = conv2d(self.width, 3, dtype=self.dtype, name="conv2")(y)
        if x.shape[-1] == self.width:
            # The reference keys the identity shortcut on equal widths only; a strided identity cannot occur
            # in its configurations, and would be a shape error here rather than silently wrong.
            if self.stride != 1:
                raise ValueError("identity shortcut with stride != 1 is not defined for WRN blocks")
            shortcut = x
        else:
            shortcut = conv2d(self.width, 1, stride=self.stride, dtype=self.dtype, name="conv_shortcut")(activated)
        return shortcut + y, normalized_input


class WideStage(nn.Module):
    """Blocks of one width; returns ``(output, BN(input) of the first block)``."""

    width: int
    num_blocks: int
    stride: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        first_normalized_input = None
        for i in range(self.num_blocks):
            stride = self.stride if i == 0 else 1
            x, normalized_input = WideBasicBlock(self.width, stride, self.dtype, name=f"block{i}")(x, train)
            if i == 0:
                first_normalized_input = normalized_input
        return x, first_normalized_input


class WideResNet(nn.Module):
    num_classes: int
    depth: int
    widen_factor: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
        if (self.depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {self.depth}")
        blocks = (self.depth - 4) // 6
        widths = (16 * self.widen_factor, 32 * self.widen_factor, 64 * self.widen_factor)

        x = jnp.asarray(x, self.dtype)
        x = conv2d(16, 3, dtype=self.dtype, name="conv1")(x)
        feats, preacts = [x], [x]
        for i, width in enumerate(widths):
            x, normalized_input = WideStage(width, blocks, 1 if i == 0 else 2, self.dtype, name=f"block{i + 1}")(
                x, train
            )
            if i:
                # mdistiller's preact of stage i is the next stage's first BN applied to stage i's output.
                preacts.append(normalized_input)
            feats.append(x)
        final_bn = batch_norm(train, dtype=self.dtype, name="bn1")(x)
        preacts.append(final_bn)
        pooled = global_avg_pool(nn.relu(final_bn))
        logits = classifier(self.num_classes, pooled.shape[-1], HeadInit.TORCH_DEFAULT_ZERO_BIAS, dtype=self.dtype)(
            pooled
        )
        return model_outputs(logits, feats, preacts, pooled, return_features)


def wrn_40_2(num_classes: int, dtype: Dtype = jnp.float32) -> WideResNet:
    return WideResNet(num_classes, 40, 2, dtype)


def wrn_40_1(num_classes: int, dtype: Dtype = jnp.float32) -> WideResNet:
    return WideResNet(num_classes, 40, 1, dtype)
