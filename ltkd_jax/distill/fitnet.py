"""FitNet (mdistiller `distillers/FitNet.py` + `_common.ConvReg`): the student's hint map, regressed by a conv +
BN + ReLU onto the teacher's map of the same layer, matched by mean squared error. Hint layer and ConvReg's
choice of conv per pair: docs/feature_baselines.md."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltkd_jax.distill.common import check_same_shape
from ltkd_jax.models.layers import batch_norm, torch_default_bias, torch_default_kernel

OPTIONS = ("hint_layer",)  # an index into `feats` (the post-activation list); its default: ltkd_jax/methods.py

# PyTorch's default ConvTranspose2d init takes its fan-in from weight dim 1, i.e. out_channels * k * k; in flax's
# (k, k, in, out) kernel that is the fan-out.
_torch_default_transposed_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def convreg_kind(student_hw, teacher_hw) -> str:
    """ConvReg's conv from the two heights: 'stride2' (3x3 s2 p1), 'transposed' (4x4 transposed s2 p1) or 'kxk'
    ((1+s-t) x (1+s-t), no padding)."""
    s, t = student_hw[0], teacher_hw[0]
    if s == 2 * t:
        return "stride2"
    if 2 * s == t:
        return "transposed"
    if s >= t:
        return "kxk"
    raise ValueError(f"FitNet's regressor cannot map a student hint of height {s} to a teacher hint of height {t} "
                     "(supported: student 2x the teacher, half of it, or at least as large)")


@dataclasses.dataclass(frozen=True)
class FitNetSettings:
    hint_layer: int
    student_shape: tuple  # (H, W, C) of the student's feats[hint_layer]
    teacher_shape: tuple  # (H, W, C) of the teacher's feats[hint_layer]

    @property
    def conv(self) -> str:
        """ConvReg's choice (see `convreg_kind`)."""
        return convreg_kind(self.student_shape[:2], self.teacher_shape[:2])


def derive_settings(teacher_name: str, student_name: str, teacher: dict, student: dict, *,
                    hint_layer) -> FitNetSettings:
    """Settings from the two networks' `common.feature_shapes`."""
    layer = hint_layer
    limit = min(len(student["feats"]), len(teacher["feats"]))
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < limit:
        raise ValueError(f"hint_layer={layer!r} is invalid for {teacher_name}-{student_name}: "
                         f"it must be an int in [0, {limit - 1}]")
    settings = FitNetSettings(layer, student["feats"][layer], teacher["feats"][layer])
    convreg_kind(settings.student_shape[:2], settings.teacher_shape[:2])  # raises for sizes ConvReg cannot map
    return settings


def fitnet_loss(hint: jax.Array, teacher_map: jax.Array) -> jax.Array:
    """FitNet: mean squared error between the regressed student hint and the teacher's map (no gradient to it)."""
    check_same_shape("fitnet", hint, teacher_map)
    target = jax.lax.stop_gradient(teacher_map)
    return jnp.mean(jnp.square(hint.astype(jnp.float32) - target.astype(jnp.float32)))


def make_loss(settings: FitNetSettings) -> Callable[[Any, Any], jax.Array]:
    """`loss(hint, teacher_features)` against the teacher's feats[hint_layer]."""
    return lambda hint, teacher_features: fitnet_loss(hint, teacher_features["feats"][settings.hint_layer])


class ConvReg(nn.Module):
    """mdistiller's ConvReg: conv (chosen from the two heights) + BN + ReLU, mapping a student map of
    spatial size `student_hw` to `teacher_channels` maps of size `teacher_hw`."""

    student_hw: tuple
    teacher_hw: tuple
    teacher_channels: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kind = convreg_kind(self.student_hw, self.teacher_hw)
        c_in, c_out = x.shape[-1], self.teacher_channels
        common = dict(dtype=self.dtype, param_dtype=jnp.float32, name="conv")
        if kind == "stride2":
            conv = nn.Conv(c_out, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), kernel_init=torch_default_kernel,
                           bias_init=torch_default_bias(c_in * 9), **common)
        elif kind == "transposed":
            # PyTorch ConvTranspose2d(k=4, s=2, p=1) == a stride-1 conv of the 2x-dilated input padded by
            # k - 1 - p = 2 on each side (with the kernel flipped, immaterial for a learned kernel): output 2x.
            conv = nn.ConvTranspose(c_out, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                                    kernel_init=_torch_default_transposed_kernel,
                                    bias_init=torch_default_bias(c_out * 16), **common)
        else:
            kh = 1 + self.student_hw[0] - self.teacher_hw[0]
            kw = 1 + self.student_hw[1] - self.teacher_hw[1]
            conv = nn.Conv(c_out, (kh, kw), padding="VALID", kernel_init=torch_default_kernel,
                           bias_init=torch_default_bias(c_in * kh * kw), **common)
        x = conv(jnp.asarray(x, self.dtype))
        return nn.relu(batch_norm(train, dtype=self.dtype, name="bn")(x))


class FitNetConnector(nn.Module):
    """Regresses the student's feats[hint_layer] onto the teacher's hint map; returns the regressed map."""

    settings: FitNetSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, train: bool = False) -> jax.Array:
        s = self.settings
        x = features["feats"][s.hint_layer]
        if tuple(x.shape[1:]) != tuple(s.student_shape):
            raise ValueError(f"fitnet: student hint shape {tuple(x.shape[1:])} differs from the "
                             f"{tuple(s.student_shape)} the connector was built for (another image_shape?)")
        return ConvReg(tuple(s.student_shape[:2]), tuple(s.teacher_shape[:2]), s.teacher_shape[2], self.dtype,
                       name="conv_reg")(x, train)


Connector = FitNetConnector
