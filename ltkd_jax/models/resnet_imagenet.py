"""ImageNet ResNets (resnet18, resnet34, resnet50) with torchvision's topology.

7x7 stride-2 stem conv-BN-ReLU, 3x3 stride-2 max-pool (padding 1), four stages of post-activation blocks
(widths 64/128/256/512, strides 1/2/2/2; bottleneck stride on the 3x3 conv), global average pooling, linear.
Init as torchvision and mdistiller's ``imagenet/resnet.py``: kaiming-normal fan-out convs, BN 1/0, PyTorch
default linear. (mdistiller moves each block's final ReLU to the start of the next block; the function is the
same, only where the pre-activation features are read from differs, and we expose them the same way.)

Features, as mdistiller's ``imagenet/resnet.py``: ``preact_feats = [stem BN output (before ReLU and
max-pool), stage1, ..., stage4 before the last ReLU]``, ``feats`` = ReLU of each, ``pooled_feat`` (N, C).
Shapes at 224x224x3:

  resnet18 / resnet34: feats (N,112,112,64) (N,56,56,64) (N,28,28,128) (N,14,14,256) (N,7,7,512); pooled (N,512)
  resnet50:            feats (N,112,112,64) (N,56,56,256) (N,28,28,512) (N,14,14,1024) (N,7,7,2048);
                       pooled (N,2048)
At 32x32 input the spatial sizes are 16, 8, 4, 2, 1.
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
