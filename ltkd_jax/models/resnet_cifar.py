"""CIFAR ResNets: mdistiller's ``cifar/resnet.py`` (resnet8x4, resnet32x4, resnet32, resnet110) and
``cifar/resnetv2.py`` (``ResNet50``, registered here as resnet50_cifar).

Topology, initialisation and feature shapes, with their sources: docs/models.md.
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltkd_jax.models.layers import Dtype, HeadInit, batch_norm, classifier, conv2d, global_avg_pool, model_outputs
from ltkd_jax.models.resnet_blocks import BasicBlock, Bottleneck, ResidualStage


class CifarResNet(nn.Module):
    """A ResNet for small images: 3x3 stride-1 stem and no max-pool, so stage 1 runs at full resolution."""

    num_classes: int
    stem_width: int
    stage_widths: Sequence[int]
    blocks_per_stage: Sequence[int]
    block: type[nn.Module] = BasicBlock
    dtype: Dtype = jnp.float32
    stem_stride: int = 1  # 2 only for the CPU-sized demo models

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
        x = jnp.asarray(x, self.dtype)
        x = conv2d(self.stem_width, 3, stride=self.stem_stride, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(x))
        feats, preacts = [x], [x]
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


def _depth_to_blocks(depth: int) -> int:
    """mdistiller's BasicBlock depth rule: depth = 6n + 2 (three stages of n two-conv blocks, stem, fc)."""
    if (depth - 2) % 6:
        raise ValueError(f"BasicBlock CIFAR ResNet depth must be 6n+2, got {depth}")
    return (depth - 2) // 6


def _resnet_basic(depth: int, widths: Sequence[int], num_classes: int, dtype: Dtype) -> CifarResNet:
    n = _depth_to_blocks(depth)
    return CifarResNet(num_classes, widths[0], tuple(widths[1:]), (n, n, n), BasicBlock, dtype)


def resnet8x4(num_classes: int, dtype: Dtype = jnp.float32) -> CifarResNet:
    return _resnet_basic(8, (32, 64, 128, 256), num_classes, dtype)


def resnet32x4(num_classes: int, dtype: Dtype = jnp.float32) -> CifarResNet:
    return _resnet_basic(32, (32, 64, 128, 256), num_classes, dtype)


def resnet32(num_classes: int, dtype: Dtype = jnp.float32) -> CifarResNet:
    return _resnet_basic(32, (16, 16, 32, 64), num_classes, dtype)


def resnet110(num_classes: int, dtype: Dtype = jnp.float32) -> CifarResNet:
    return _resnet_basic(110, (16, 16, 32, 64), num_classes, dtype)


def demo_resnet_teacher(num_classes: int, dtype: Dtype = jnp.float32) -> CifarResNet:
    """The demo's CPU-sized teacher (not in the paper): stride-2 stem, widths 24/48/96, 2 blocks per stage.

    A stride-1 stem at 28x28 is 5-10x slower on a 2-core CPU; the pilot runs sized the demo with these.
    """
    return CifarResNet(num_classes, 24, (24, 48, 96), (2, 2, 2), BasicBlock, dtype, stem_stride=2)


def demo_resnet_student(num_classes: int, dtype: Dtype = jnp.float32) -> CifarResNet:
    """The demo's CPU-sized student: stride-2 stem, widths 8/16/32, 1 block per stage."""
    return CifarResNet(num_classes, 8, (8, 16, 32), (1, 1, 1), BasicBlock, dtype, stem_stride=2)


def resnet50_cifar(num_classes: int, dtype: Dtype = jnp.float32) -> CifarResNet:
    """mdistiller ``resnetv2.ResNet50``: 64-wide stem, bottleneck stages 64/128/256/512 x4, blocks 3/4/6/3."""
    return CifarResNet(num_classes, 64, (64, 128, 256, 512), (3, 4, 6, 3), Bottleneck, dtype)
