"""ReviewKD (mdistiller `distillers/ReviewKD.py`): attention-based fusion (ABF) blocks, run deepest to shallowest,
turn the student's last K maps into K teacher-shaped maps, matched by the hierarchical context loss (HCL).
Per-pair channels and shapes, and where each comes from: docs/feature_baselines.md."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ltkd_jax.distill.common import check_same_shape
from ltkd_jax.distill.resample import adaptive_avg_pool2d, resize_nearest
from ltkd_jax.models.layers import batch_norm, torch_default_bias, torch_default_kernel

MAX_MID_CHANNEL = 512  # mdistiller: mid_channel = min(512, in_channels[-1])
HCL_LEVELS = (4, 2, 1)
OPTIONS = ("student_preact", "mid_channel")  # their defaults: ltkd_jax/methods.py

# PyTorch kaiming_uniform_(a=1): gain 1, bound sqrt(3 / fan_in).
_kaiming_uniform_a1 = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class ReviewKDSettings:
    student_key: str  # 'feats' or 'preact_feats'
    in_channels: tuple  # student widths, shallow -> deep (mdistiller IN_CHANNELS)
    out_channels: tuple  # teacher widths, shallow -> deep (OUT_CHANNELS)
    shapes: tuple  # (H, W) of the student maps, shallow -> deep
    out_shapes: tuple  # (H, W) of the teacher maps, shallow -> deep
    mid_channel: int


def derive_settings(teacher_name: str, student_name: str, teacher: dict, student: dict, *,
                    student_preact: bool, mid_channel=0) -> ReviewKDSettings:
    """Settings from the two networks' `common.feature_shapes`. Teacher maps: preact_feats[1:] + the pooled
    feature as 1x1; student maps: the last K of feats (preact_feats with `student_preact`) + pooled.
    `mid_channel` 0 means min(MAX_MID_CHANNEL, deepest width)."""
    key = "preact_feats" if student_preact else "feats"
    teacher_maps = list(teacher["preact_feats"][1:]) + [(1, 1, teacher["pooled"])]
    student_maps = list(student[key]) + [(1, 1, student["pooled"])]
    k = len(teacher_maps)
    if len(student_maps) < k:
        raise ValueError(f"reviewkd needs {k} student maps for teacher {teacher_name}, "
                         f"student {student_name} has {len(student_maps)}")
    student_maps = student_maps[-k:]
    in_channels = tuple(c for _, _, c in student_maps)
    mid = mid_channel
    if mid is None or (type(mid) is int and mid == 0):  # pylint: disable=unidiomatic-typecheck  # not False
        mid = min(MAX_MID_CHANNEL, in_channels[-1])
    if isinstance(mid, bool) or not isinstance(mid, int) or mid < 1:
        raise ValueError(f"mid_channel={mid!r} is invalid: it must be a positive int, or 0 for min("
                         f"{MAX_MID_CHANNEL}, the student's last width)")
    return ReviewKDSettings(
        student_key=key, in_channels=in_channels, out_channels=tuple(c for _, _, c in teacher_maps),
        shapes=tuple((h, w) for h, w, _ in student_maps), out_shapes=tuple((h, w) for h, w, _ in teacher_maps),
        mid_channel=mid)


def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))


def hcl_loss(student_maps: Sequence[jax.Array], teacher_maps: Sequence[jax.Array]) -> jax.Array:
    """ReviewKD's hierarchical context loss, summed over levels (NHWC maps): per level
    (mse + sum_l w_l mse(pool_l)) / (1 + sum_l w_l), pool_l adaptive average pooling to l x l for each l in
    `HCL_LEVELS` below the map's height, w_l = 1/2, 1/4, 1/8 in that order. No gradient reaches the teacher."""
    if len(student_maps) != len(teacher_maps):
        raise ValueError(f"reviewkd: {len(student_maps)} student maps but {len(teacher_maps)} teacher maps")
    total = jnp.zeros((), jnp.float32)
    for i, (fs, ft) in enumerate(zip(student_maps, teacher_maps)):
        check_same_shape(f"reviewkd level {i}", fs, ft)
        ft = jax.lax.stop_gradient(ft)
        loss, weight, weight_sum = _mse(fs, ft), 1.0, 1.0
        for level in HCL_LEVELS:
            if level >= fs.shape[1]:
                continue
            weight /= 2.0
            loss = loss + weight * _mse(adaptive_avg_pool2d(fs, (level, level)),
                                        adaptive_avg_pool2d(ft, (level, level)))
            weight_sum += weight
        total = total + loss / weight_sum
    return total


def reviewkd_teacher_maps(teacher_features) -> list:
    """The teacher maps ReviewKD matches: preact_feats[1:] + the pooled feature as a 1x1 map."""
    pooled = teacher_features["pooled_feat"]
    return list(teacher_features["preact_feats"][1:]) + [pooled[:, None, None, :]]


def make_loss(settings: ReviewKDSettings) -> Callable[[Any, Any], jax.Array]:  # pylint: disable=unused-argument
    """`loss(hints, teacher_features)`: HCL against `reviewkd_teacher_maps`."""
    return lambda hints, teacher_features: hcl_loss(hints, reviewkd_teacher_maps(teacher_features))


class ABF(nn.Module):
    """ReviewKD's attention-based fusion block: 1x1 conv + BN to `mid_channels`; unless the deepest, fusion with
    the deeper block's residual (nearest-resized here) by a 2-channel 1x1 conv + sigmoid attention; a nearest
    resize to `out_hw`; 3x3 conv + BN to `out_channels`. Returns (output for the loss, residual for the next)."""

    mid_channels: int
    out_channels: int
    fuse: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, residual: Optional[jax.Array], out_hw: tuple, train: bool = False):
        x = nn.Conv(self.mid_channels, (1, 1), use_bias=False, kernel_init=_kaiming_uniform_a1, dtype=self.dtype,
                    param_dtype=jnp.float32, name="conv1")(jnp.asarray(x, self.dtype))
        x = batch_norm(train, dtype=self.dtype, name="bn1")(x)
        if self.fuse:
            y = resize_nearest(jnp.asarray(residual, self.dtype), x.shape[1:3])
            z = nn.Conv(2, (1, 1), use_bias=True, kernel_init=torch_default_kernel,
                        bias_init=torch_default_bias(2 * self.mid_channels), dtype=self.dtype,
                        param_dtype=jnp.float32, name="att_conv")(jnp.concatenate([x, y], axis=-1))
            z = nn.sigmoid(z)
            x = x * z[..., 0:1] + y * z[..., 1:2]
        if tuple(x.shape[1:3]) != tuple(out_hw):
            x = resize_nearest(x, out_hw)
        out = nn.Conv(self.out_channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                      kernel_init=_kaiming_uniform_a1, dtype=self.dtype, param_dtype=jnp.float32, name="conv2")(x)
        out = batch_norm(train, dtype=self.dtype, name="bn2")(out)
        return out, x


class ReviewKDConnector(nn.Module):
    """ABF blocks ``abf0`` (shallowest) ... ``abf{K-1}`` (deepest, on the pooled feature); returns the K
    transformed maps shallow -> deep, each shaped like the matching teacher map."""

    settings: ReviewKDSettings
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, train: bool = False) -> list:
        s = self.settings
        k = len(s.in_channels)
        maps = list(features[s.student_key]) + [features["pooled_feat"][:, None, None, :]]
        maps = maps[-k:]
        got = [tuple(m.shape[1:]) for m in maps]
        want = [(h, w, c) for (h, w), c in zip(s.shapes, s.in_channels)]
        if got != want:
            raise ValueError(f"reviewkd: student maps {got} differ from the {want} the connector was built for "
                             "(another image_shape?)")
        results = [None] * k
        residual = None
        for i in reversed(range(k)):
            results[i], residual = ABF(s.mid_channel, s.out_channels[i], fuse=i < k - 1, dtype=self.dtype,
                                       name=f"abf{i}")(maps[i], residual, s.out_shapes[i], train)
        return results


Connector = ReviewKDConnector
