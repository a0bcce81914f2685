"""Feature-distillation baselines, FitNet and ReviewKD, as mdistiller runs them (docs/feature_baselines.md).

    student = build_student("reviewkd", "resnet32x4", "resnet8x4", num_classes=100, image_shape=(32, 32, 3))
    loss_fn = get_feature_loss("reviewkd", "resnet32x4", "resnet8x4", image_shape=(32, 32, 3))
    (logits, hints), updates = student.apply(variables, images, train=True, with_hints=True, mutable=["batch_stats"])
    loss = loss_fn(hints, teacher_features)  # the teacher's return_features=True dict; unweighted

The connector (params ``connector``, beside ``student``) is sized from both networks' feature maps at `image_shape`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ltkd_jax import methods, models
from ltkd_jax.distill import common, fitnet, reviewkd

_METHODS = {"fitnet": fitnet, "reviewkd": reviewkd}  # each: OPTIONS, derive_settings, make_loss, Connector
methods.check_registry("feature", _METHODS)
# Paper Tables I-V (CIFAR-100, then ImageNet) and the Fashion-MNIST demo pair, as "teacher-student".
SUPPORTED_PAIRS = (
    "resnet32x4-resnet8x4", "vgg13-vgg8", "wrn_40_2-wrn_40_1", "resnet110-resnet32", "resnet32x4-shufflenet_v1",
    "vgg13-mobilenet_v2", "wrn_40_2-shufflenet_v1", "resnet50_cifar-mobilenet_v2",
    "resnet34-resnet18", "resnet50-mobilenet_v1",
    "demo_resnet_teacher-demo_resnet_student",
)


def feature_settings(method: str, teacher_name: str, student_name: str, image_shape, **options):
    """The connector settings of `method` for the pair at `image_shape` (H, W, C): a `FitNetSettings` or a
    `ReviewKDSettings`. Options (the config's `distill.*`; defaults in ltkd_jax/methods.py): fitnet
    `hint_layer`; reviewkd `student_preact` and `mid_channel` (0: min(512, deepest student width))."""
    if method not in _METHODS:
        raise ValueError(f"unknown feature-distillation method {method!r}; allowed: {', '.join(_METHODS)}")
    pair = f"{teacher_name}-{student_name}"
    if pair not in SUPPORTED_PAIRS:
        raise ValueError(f"{method} does not support the teacher-student pair {pair!r}; supported: "
                         f"{', '.join(SUPPORTED_PAIRS)}")
    module = _METHODS[method]
    unknown = sorted(set(options) - set(module.OPTIONS))
    if unknown:
        raise ValueError(f"unknown {method} option {unknown[0]!r}; allowed: {', '.join(module.OPTIONS)}")
    missing = [p.name for p in inspect.signature(module.derive_settings).parameters.values()
               if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in options]
    if missing:
        raise ValueError(f"{method} needs option {missing[0]!r}")
    shape = common.image_shape(image_shape)
    return module.derive_settings(teacher_name, student_name, common.feature_shapes(teacher_name, shape),
                                  common.feature_shapes(student_name, shape), **options)


def build_student(method: str, teacher_name: str, student_name: str, num_classes: int, image_shape,
                  dtype=jnp.float32, **options) -> common.FeatureDistillStudent:
    """The registry student `student_name` wrapped with `method`'s connector for `teacher_name` at
    `image_shape` (H, W, C). Options as `feature_settings` (pass the same to `get_feature_loss`)."""
    settings = feature_settings(method, teacher_name, student_name, image_shape, **options)
    dtype = jnp.dtype(dtype)  # also accepts the config's 'float32' / 'bfloat16'
    return common.FeatureDistillStudent(student=models.get_model(student_name, num_classes, dtype=dtype),
                                        connector=_METHODS[method].Connector(settings, dtype=dtype))


def get_feature_loss(method: str, teacher_name: str, student_name: str, image_shape,
                     **options) -> Callable[[Any, Any], jax.Array]:
    """`loss(hints, teacher_features) -> scalar` (unweighted) for the wrapper of `build_student` with the same
    arguments; `teacher_features` is the teacher's `return_features=True` dict. Options as `feature_settings`."""
    loss = _METHODS[method].make_loss(feature_settings(method, teacher_name, student_name, image_shape, **options))
    loss.__name__ = f"{method}_loss"
    return loss
