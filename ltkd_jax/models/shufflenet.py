"""ShuffleNet V1 for CIFAR as mdistiller's ``cifar/ShuffleNetv1.py`` (``ShuffleV1``): groups 3, stage outputs
240/480/960 with 4/8/4 units.

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
    avg_pool,
    batch_norm,
    classifier,
    conv2d,
    global_avg_pool,
    model_outputs,
    torch_default_kernel,
)

STEM_WIDTH = 24


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """Interleave channels across groups: channel a*(C/g)+b moves to b*g+a (the NHWC form of the reference's
    NCHW reshape-transpose-reshape)."""
    if groups == 1:
        return x
    n, h, w, c = x.shape
    return x.reshape(n, h, w, groups, c // groups).swapaxes(3, 4).reshape(n, h, w, c)


class ShuffleUnit(nn.Module):
    """One ShuffleNet V1 unit; returns ``(output, preact)``.

    ``branch_width`` is the conv branch's output width (the stage width, minus the input width for the
    concatenating stride-2 unit).
    """

    branch_width: int
    stride: int
    groups: int
    group_first_conv: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        def conv(features, kernel, stride=1, groups=1, name=None):
            return conv2d(
                features, kernel, stride=stride, groups=groups, kernel_init=torch_default_kernel, dtype=self.dtype,
                name=name,
            )

        mid = self.branch_width // 4
        first_groups = self.groups if self.group_first_conv else 1
        y = conv(mid, 1, groups=first_groups, name="conv1")(x)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(y))
        y = channel_shuffle(y, first_groups)
        y = conv(mid, 3, stride=self.stride, groups=mid, name="conv2")(y)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn2")(y))
        y = conv(self.branch_width, 1, groups=self.groups, name="conv3")(y)
        y = batch_norm(train, dtype=self.dtype, name="bn3")(y)
        if self.stride == 2:
            preact = jnp.concatenate([y, avg_pool(x, 3, 2, padding=1)], axis=-1)
        else:
            preact = y + x
        return nn.relu(preact), preact


class ShuffleStage(nn.Module):
    """A stride-2 concatenating unit then ``num_units - 1`` residual units; returns the last ``(out, preact)``."""

    width: int
    num_units: int
    groups: int
    is_first_stage: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        preact = x
        for i in range(self.num_units):
            first = i == 0
            x, preact = ShuffleUnit(
                branch_width=self.width - x.shape[-1] if first else self.width,
                stride=2 if first else 1,
                groups=self.groups,
                # The reference does not group the first 1x1 conv when its input is the narrow stem.
                group_first_conv=not (first and self.is_first_stage),
                dtype=self.dtype,
                name=f"unit{i}",
            )(x, train)
        return x, preact


class ShuffleNetV1(nn.Module):
    num_classes: int
    stage_widths: Sequence[int] = (240, 480, 960)
    units_per_stage: Sequence[int] = (4, 8, 4)
    groups: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
        x = jnp.asarray(x, self.dtype)
        x = conv2d(STEM_WIDTH, 1, kernel_init=torch_default_kernel, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(x))
        feats, preacts = [x], [x]
        for i, (width, units) in enumerate(zip(self.stage_widths, self.units_per_stage)):
            x, preact = ShuffleStage(width, units, self.groups, i == 0, self.dtype, name=f"layer{i + 1}")(x, train)
            feats.append(x)
            preacts.append(preact)
        pooled = global_avg_pool(x)
        logits = classifier(
            self.num_classes, pooled.shape[-1], HeadInit.TORCH_DEFAULT, dtype=self.dtype, name="linear"
        )(pooled)
        return model_outputs(logits, feats, preacts, pooled, return_features)


def shufflenet_v1(num_classes: int, dtype: Dtype = jnp.float32) -> ShuffleNetV1:
    return ShuffleNetV1(num_classes, dtype=dtype)
