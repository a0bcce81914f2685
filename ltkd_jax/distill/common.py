"""What FitNet and ReviewKD share: the image-shape check, the networks' abstract feature shapes, the hint-shape
check of their losses, and the wrapper that trains a registry student together with its method's connector."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from ltkd_jax import models


def image_shape(shape) -> tuple:
    """(H, W, C) from an image or batch shape; a ValueError for anything else."""
    dims = tuple(int(d) for d in shape)
    if len(dims) == 4:  # a batch shape: drop the batch
        dims = dims[1:]
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"image_shape {tuple(shape)!r} must be (height, width, channels)")
    return dims


@functools.lru_cache(maxsize=None)
def feature_shapes(name: str, image_hwc: tuple) -> dict:
    """{'feats': [(H, W, C)...], 'preact_feats': [...], 'pooled': C} of one model, cached (no compute)."""
    _, f = models.feature_shapes(name, 10, (1, *image_hwc))
    return {"feats": [tuple(x.shape[1:]) for x in f["feats"]],
            "preact_feats": [tuple(x.shape[1:]) for x in f["preact_feats"]],
            "pooled": int(f["pooled_feat"].shape[-1])}


def check_same_shape(what: str, hint: jax.Array, target: jax.Array) -> None:
    if hint.shape != target.shape:
        raise ValueError(f"{what}: student hint shape {tuple(hint.shape)} differs from the teacher's "
                         f"{tuple(target.shape)} (was the student built for another image_shape or pair?)")


class FeatureDistillStudent(nn.Module):
    """A registry student plus its distillation connector, trained and checkpointed as one params tree
    (``{"student": ..., "connector": ...}``). ``__call__`` returns logits, or ``(logits, hints)`` with
    ``with_hints=True``; ``init`` always creates the connector."""

    student: nn.Module
    connector: nn.Module

    def __call__(self, images: jax.Array, train: bool = False, with_hints: bool = False):
        if not (with_hints or self.is_initializing()):
            return self.student(images, train=train)
        logits, features = self.student(images, train=train, return_features=True)
        hints = self.connector(features, train=train)
        return (logits, hints) if with_hints else logits
