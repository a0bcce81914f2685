"""VGG with batch norm for CIFAR, as mdistiller's ``cifar/vgg.py`` (vgg8 = ``vgg8_bn``, vgg13 = ``vgg13_bn``).

Topology, initialisation and feature shapes, with their sources: docs/models.md.
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltkd_jax.models.layers import (Dtype, HeadInit, batch_norm, classifier, conv2d, global_avg_pool, max_pool,
                                    model_outputs)

# Conv widths per stage (mdistiller cfg "S" and "B").
VGG8_STAGES = ((64,), (128,), (256,), (512,), (512,))
VGG13_STAGES = ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))

# Inputs at least this tall get the extra pool before the last stage (mdistiller tests `h == 64`).
_POOL3_MIN_HEIGHT = 64


class VGGStage(nn.Module):
    """conv-BN-ReLU repeated, without the final ReLU: returns the last BN's output (pre-activation)."""

    widths: Sequence[int]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for i, width in enumerate(self.widths):
            if i:
                x = nn.relu(x)
            x = conv2d(width, 3, use_bias=True, dtype=self.dtype, name=f"conv{i}")(x)
            x = batch_norm(train, dtype=self.dtype, name=f"bn{i}")(x)
        return x


class VGG(nn.Module):
    num_classes: int
    stages: Sequence[Sequence[int]]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
        x = jnp.asarray(x, self.dtype)
        use_pool3 = x.shape[1] >= _POOL3_MIN_HEIGHT
        feats, preacts = [], []
        for i, widths in enumerate(self.stages):
            if i == 4 and use_pool3:
                x = max_pool(x, 2, 2)
            preact = VGGStage(widths, self.dtype, name=f"block{i}")(x, train)
            x = nn.relu(preact)
            feats.append(x)
            preacts.append(x if i == 0 else preact)
            if i < 3:
                x = max_pool(x, 2, 2)
        pooled = global_avg_pool(x)
        logits = classifier(self.num_classes, pooled.shape[-1], HeadInit.NORMAL_001_ZERO_BIAS, dtype=self.dtype,
                            name="classifier")(pooled)
        return model_outputs(logits, feats, preacts, pooled, return_features)


def vgg8(num_classes: int, dtype: Dtype = jnp.float32) -> VGG:
    return VGG(num_classes, VGG8_STAGES, dtype)


def vgg13(num_classes: int, dtype: Dtype = jnp.float32) -> VGG:
    return VGG(num_classes, VGG13_STAGES, dtype)
