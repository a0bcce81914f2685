"""ImageNet ResNets (resnet18, resnet34, resnet50) with torchvision's topology.

Topology, initialisation and feature shapes, with their sources: docs/models.md. mdistiller's ImageNet ResNet
returns as `preact_feats[0]` the stem after its in-place ReLU (the ReLU overwrites the BN output it kept); ours is
the true BN output, a pre-activation like the other entries. No method reads it: ReviewKD uses the deeper stages.
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
    max_pool,
    model_outputs,
)
from ltkd_jax.models.resnet_blocks import BasicBlock, Bottleneck, ResidualStage


class ImageNetResNet(nn.Module):
    num_classes: int
    blocks_per_stage: Sequence[int]
    block: type[nn.Module] = BasicBlock
    dtype: Dtype = jnp.float32

    stage_widths: Sequence[int] = (64, 128, 256, 512)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
        x = jnp.asarray(x, self.dtype)
        x = conv2d(64, 7, stride=2, dtype=self.dtype, name="conv1")(x)
        stem = batch_norm(train, dtype=self.dtype, name="bn1")(x)
        x = max_pool(nn.relu(stem), 3, 2, padding=1)
        feats, preacts = [nn.relu(stem)], [stem]
        for i, (width, num_blocks) in enumerate(zip(self.stage_widths, self.blocks_per_stage)):
            stride = 1 if i == 0 else 2
            x, preact = ResidualStage(self.block, width, num_blocks, stride, self.dtype, name=f"layer{i + 1}")(
                x, train
            )
            feats.append(x)
            preacts.append(preact)
        pooled = global_avg_pool(x)
        logits = classifier(self.num_classes, pooled.shape[-1], HeadInit.TORCH_DEFAULT, dtype=self.dtype)(pooled)
        return model_outputs(logits, feats, preacts, pooled, return_features)


def resnet18(num_classes: int, dtype: Dtype = jnp.float32) -> ImageNetResNet:
    return ImageNetResNet(num_classes, (2, 2, 2, 2), BasicBlock, dtype)


def resnet34(num_classes: int, dtype: Dtype = jnp.float32) -> ImageNetResNet:
    return ImageNetResNet(num_classes, (3, 4, 6, 3), BasicBlock, dtype)


def resnet50(num_classes: int, dtype: Dtype = jnp.float32) -> ImageNetResNet:
    return ImageNetResNet(num_classes, (3, 4, 6, 3), Bottleneck, dtype)
