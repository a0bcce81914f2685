"""Model zoo: the CIFAR and ImageNet networks of mdistiller / torchvision in Flax linen.

    model = get_model("resnet8x4", num_classes=100)               # or dtype=jnp.bfloat16
    variables = model.init(rng, images, train=False)              # images NHWC float
    logits = model.apply(variables, images, train=False)          # float32 (N, num_classes)
    logits, state = model.apply(variables, images, train=True, mutable=["batch_stats"])
    logits, features = model.apply(variables, images, return_features=True)

``features`` is mdistiller's dict: ``feats`` (stage outputs, stem first), ``preact_feats`` (the same before
their final ReLU) and ``pooled_feat`` (the (N, C) vector fed to the classifier); docs/models.md lists
each model's shapes. Every model pools globally, so CIFAR models also run at 64x64 (Tiny ImageNet) and
28x28x1 (Fashion-MNIST); input channels come from the input.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltkd_jax.models.layers import Dtype
from ltkd_jax.models.mobilenet import mobilenet_v1, mobilenet_v2
from ltkd_jax.models.resnet_cifar import (demo_resnet_student, demo_resnet_teacher, resnet8x4, resnet32, resnet32x4,
                                          resnet50_cifar, resnet110)
from ltkd_jax.models.resnet_imagenet import resnet18, resnet34, resnet50
from ltkd_jax.models.shufflenet import shufflenet_v1
from ltkd_jax.models.vgg import vgg8, vgg13
from ltkd_jax.models.wrn import wrn_40_1, wrn_40_2

CIFAR_RESOLUTION = (32, 32, 3)
IMAGENET_RESOLUTION = (224, 224, 3)


class _Entry(NamedTuple):
    build: Callable[..., nn.Module]
    resolution: tuple[int, int, int]


_REGISTRY: dict[str, _Entry] = {
    # CIFAR-style (32x32 native; also 64x64 and 28x28x1 through global pooling).
    "resnet8x4": _Entry(resnet8x4, CIFAR_RESOLUTION),
    "resnet32x4": _Entry(resnet32x4, CIFAR_RESOLUTION),
    "resnet32": _Entry(resnet32, CIFAR_RESOLUTION),
    "resnet110": _Entry(resnet110, CIFAR_RESOLUTION),
    "resnet50_cifar": _Entry(resnet50_cifar, CIFAR_RESOLUTION),
    "vgg8": _Entry(vgg8, CIFAR_RESOLUTION),
    "vgg13": _Entry(vgg13, CIFAR_RESOLUTION),
    "wrn_40_2": _Entry(wrn_40_2, CIFAR_RESOLUTION),
    "wrn_40_1": _Entry(wrn_40_1, CIFAR_RESOLUTION),
    "shufflenet_v1": _Entry(shufflenet_v1, CIFAR_RESOLUTION),
    "mobilenet_v2": _Entry(mobilenet_v2, CIFAR_RESOLUTION),
    # CPU-sized demo models (Fashion-MNIST; not in the paper).
    "demo_resnet_teacher": _Entry(demo_resnet_teacher, CIFAR_RESOLUTION),
    "demo_resnet_student": _Entry(demo_resnet_student, CIFAR_RESOLUTION),
    # ImageNet-style (224x224 native).
    "resnet18": _Entry(resnet18, IMAGENET_RESOLUTION),
    "resnet34": _Entry(resnet34, IMAGENET_RESOLUTION),
    "resnet50": _Entry(resnet50, IMAGENET_RESOLUTION),
    "mobilenet_v1": _Entry(mobilenet_v1, IMAGENET_RESOLUTION),
}

MODEL_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model name {name!r}; known names: {', '.join(MODEL_NAMES)}") from None


def get_model(name: str, num_classes: int, dtype: Dtype = jnp.float32) -> nn.Module:
    """Build the named model with a ``num_classes``-way classifier, computing in ``dtype`` (params float32)."""
    entry = _entry(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"dtype must be float32 or bfloat16, got {jnp.dtype(dtype).name!r}")
    return entry.build(num_classes, dtype=dtype)


def native_resolution(name: str) -> tuple[int, int, int]:
    """(H, W, C) of the images the model was designed for: 32x32x3 for CIFAR models, 224x224x3 for ImageNet."""
    return _entry(name).resolution


def is_cifar_model(name: str) -> bool:
    return _entry(name).resolution == CIFAR_RESOLUTION


def abstract_variables(model: nn.Module, input_shape: tuple[int, ...]):
    """Shapes and dtypes of ``model``'s variables for inputs of ``input_shape`` (NHWC), without computing them."""
    images = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    return jax.eval_shape(lambda rng, x: model.init(rng, x, train=False), jax.random.key(0), images)


def count_params(params) -> int:
    """Number of scalars in a parameter tree (arrays or ShapeDtypeStructs)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


def feature_shapes(name: str, num_classes: int, input_shape: tuple[int, ...] | None = None):
    """Abstract ``(logits, features)`` of the named model for a batch of one at ``input_shape`` (default: its
    native resolution), e.g. to size FitNet / ReviewKD adapters. Nothing is computed."""
    model = get_model(name, num_classes)
    input_shape = input_shape or (1, *native_resolution(name))
    images = jax.ShapeDtypeStruct(input_shape, jnp.float32)

    def forward(rng, x):  # one trace: init's own forward pass already returns the outputs
        return model.init_with_output(rng, x, train=False, return_features=True)[0]

    return jax.eval_shape(forward, jax.random.key(0), images)


__all__ = ["MODEL_NAMES", "abstract_variables", "count_params", "feature_shapes", "get_model", "is_cifar_model",
           "native_resolution"]
