"""MobileNets: V2 for CIFAR (mdistiller ``cifar/mobilenetv2.py`` ``mobile_half``) and V1 for ImageNet
(mdistiller ``imagenet/mobilenetv1.py``).

Topology, initialisation and feature shapes, with their sources: docs/models.md.
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltkd_jax.models.layers import (
    Dtype,
    HeadInit,
    batch_norm,
    classifier,
    conv2d,
    global_avg_pool,
    model_outputs,
    torch_default_kernel,
)

# (base width c, blocks n, first stride s) per block group, from the MobileNetV2 paper. The first group
# always has expansion 1; the others use the model's expansion (6 for mobile_half).
MOBILENET_V2_GROUPS = ((16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1))
# Block-group indices (zero-based) whose outputs mdistiller exposes after the stem.
_MOBILENET_V2_FEATURE_GROUPS = (1, 2, 4, 6)

# (output width, stride) of MobileNetV1's 13 depthwise-separable blocks.
MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
                       (512, 1), (512, 1), (1024, 2), (1024, 1))
# One-based block numbers whose pre-activation outputs mdistiller exposes.
_MOBILENET_V1_FEATURE_BLOCKS = (3, 5, 11, 13)


class InvertedResidual(nn.Module):
    out_width: int
    stride: int
    expansion: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        hidden = x.shape[-1] * self.expansion
        y = conv2d(hidden, 1, dtype=self.dtype, name="expand")(x)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="expand_bn")(y))
        y = conv2d(hidden, 3, stride=self.stride, groups=hidden, dtype=self.dtype, name="depthwise")(y)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="depthwise_bn")(y))
        y = conv2d(self.out_width, 1, dtype=self.dtype, name="project")(y)
        y = batch_norm(train, dtype=self.dtype, name="project_bn")(y)
        if self.stride == 1 and x.shape[-1] == self.out_width:
            return x + y
        return y


class InvertedResidualGroup(nn.Module):
    out_width: int
    num_blocks: int
    stride: int
    expansion: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for i in range(self.num_blocks):
            stride = self.stride if i == 0 else 1
            x = InvertedResidual(self.out_width, stride, self.expansion, self.dtype, name=f"block{i}")(x, train)
        return x


class MobileNetV2(nn.Module):
    num_classes: int
    width_mult: float = 0.5
    expansion: int = 6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
        x = jnp.asarray(x, self.dtype)
        x = conv2d(int(32 * self.width_mult), 3, stride=2, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(x))
        feats = [x]
        for i, (c, n, s) in enumerate(MOBILENET_V2_GROUPS):
            expansion = 1 if i == 0 else self.expansion
            x = InvertedResidualGroup(int(c * self.width_mult), n, s, expansion, self.dtype, name=f"blocks{i}")(
                x, train
            )
            if i in _MOBILENET_V2_FEATURE_GROUPS:
                feats.append(x)
        # mdistiller keeps 1280 for width multipliers <= 1 and scales it only above 1.
        last_width = int(1280 * self.width_mult) if self.width_mult > 1.0 else 1280
        x = conv2d(last_width, 1, dtype=self.dtype, name="conv2")(x)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="bn2")(x))
        pooled = global_avg_pool(x)
        logits = classifier(
            self.num_classes, pooled.shape[-1], HeadInit.NORMAL_001_ZERO_BIAS, dtype=self.dtype, name="classifier"
        )(pooled)
        return model_outputs(logits, feats, feats, pooled, return_features)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU; returns ``(output, pointwise BN output)``."""

    out_width: int
    stride: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        in_width = x.shape[-1]
        x = conv2d(
            in_width, 3, stride=self.stride, groups=in_width, kernel_init=torch_default_kernel, dtype=self.dtype,
            name="depthwise",
        )(x)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="depthwise_bn")(x))
        x = conv2d(self.out_width, 1, kernel_init=torch_default_kernel, dtype=self.dtype, name="pointwise")(x)
        preact = batch_norm(train, dtype=self.dtype, name="pointwise_bn")(x)
        return nn.relu(preact), preact


class MobileNetV1(nn.Module):
    num_classes: int
    blocks: Sequence[tuple[int, int]] = MOBILENET_V1_BLOCKS
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
        x = jnp.asarray(x, self.dtype)
        x = conv2d(32, 3, stride=2, kernel_init=torch_default_kernel, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(x))
        feats, preacts = [], []
        for number, (width, stride) in enumerate(self.blocks, start=1):
            x, preact = DepthwiseSeparable(width, stride, self.dtype, name=f"block{number}")(x, train)
            if number in _MOBILENET_V1_FEATURE_BLOCKS:
                feats.append(x)
                preacts.append(preact)
        pooled = global_avg_pool(x)
        logits = classifier(self.num_classes, pooled.shape[-1], HeadInit.TORCH_DEFAULT, dtype=self.dtype)(pooled)
        return model_outputs(logits, feats, preacts, pooled, return_features)


def mobilenet_v2(num_classes: int, dtype: Dtype = jnp.float32) -> MobileNetV2:
    """mdistiller ``mobile_half``: expansion 6, width multiplier 0.5."""
    return MobileNetV2(num_classes, width_mult=0.5, expansion=6, dtype=dtype)


def mobilenet_v1(num_classes: int, dtype: Dtype = jnp.float32) -> MobileNetV1:
    return MobileNetV1(num_classes, dtype=dtype)
