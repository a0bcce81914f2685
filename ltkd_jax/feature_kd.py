"""Feature-distillation baselines: FitNet and ReviewKD (SPEC §1 "Feature baselines"), as mdistiller runs them.

    student = build_student("reviewkd", "resnet32x4", "resnet8x4", num_classes=100, image_shape=(32, 32, 3))
    loss_fn = get_feature_loss("reviewkd", "resnet32x4", "resnet8x4", image_shape=(32, 32, 3))
    variables = student.init(rng, images, train=False)          # params: {"student": ..., "connector": ...}
    logits = student.apply(variables, images, train=False)      # evaluation: logits only
    (logits, hints), updates = student.apply(variables, images, train=True, with_hints=True,
                                             mutable=["batch_stats"])
    _, teacher_features = teacher.apply(teacher_variables, images, train=False, return_features=True)
    loss = loss_fn(hints, teacher_features)                     # unweighted: FitNet MSE / ReviewKD HCL

`build_student` wraps the registry student (submodule ``student``) together with the method's trainable
connector (submodule ``connector``: FitNet's conv regressor, ReviewKD's ABF blocks), so one params tree is
optimised and checkpointed. The connector is created at ``init`` even without ``with_hints``. Every connector
shape is derived from ``models.feature_shapes`` of the two networks at ``image_shape``, so the same code serves
32x32 (CIFAR), 64x64 (Tiny ImageNet), 28x28x1 (Fashion-MNIST) and 224x224 (ImageNet) inputs. The losses are
unweighted (the trainer applies ``distill_weight`` and the warm-up) and never send a gradient to the teacher.

FitNet (mdistiller ``distillers/FitNet.py`` + ``_common.ConvReg``)
    Hint layer 2 of ``feats`` (the post-activation list) for both networks. Regressor = conv + BN + ReLU; the
    conv follows ConvReg on the two heights s (student) and t (teacher), in this order:
    s == 2t -> 3x3 stride 2 padding 1; 2s == t -> 4x4 transposed stride 2 padding 1; s >= t -> (1+s-t)x(1+s-t)
    (1x1 when equal), no padding; otherwise unsupported. All with bias and PyTorch's default init.
    Loss: ``mean((regressor(f_s) - f_t)**2)``.

ReviewKD (mdistiller ``distillers/ReviewKD.py``)
    Teacher maps: ``preact_feats[1:] + [pooled as 1x1]`` (K maps). Student maps: the last K of
    ``feats + [pooled]`` (``preact_feats`` on ImageNet pairs, mdistiller's STU_PREACT) -- mdistiller feeds the
    whole list and its ``zip`` drops the shallowest extras, which is the same thing. ABF blocks run deepest to
    shallowest: 1x1 conv + BN to ``mid = min(512, in_channels[-1])``; for all but the deepest, fusion with the
    deeper residual (nearest-resized to this map) through a 2-channel 1x1 conv + sigmoid attention; nearest
    resize to the teacher's size when it differs; 3x3 conv + BN to the teacher's width. Loss: the hierarchical
    context loss, per level ``(mse + sum_l w_l mse(pool_l)) / (1 + sum_l w_l)`` with ``pool_l`` PyTorch's
    adaptive average pooling to l x l for l in 4, 2, 1 (only l < H), weights 1/2, 1/4, 1/8 in the order used,
    summed over the K levels.

Per-pair settings (``PAIR_CHOICES`` holds the provenance, ``feature_settings(...)`` the derived numbers), at
32x32 for CIFAR pairs, 224x224 for ImageNet pairs, 28x28x1 for the demo pair. ReviewKD in mdistiller's notation
(IN / OUT_CHANNELS shallow -> deep, SHAPES / OUT_SHAPES deep -> shallow); source M = mdistiller (cfg defaults +
cifar100/reviewkd.yaml; imagenet/<pair>/reviewkd.yaml), R = the original ReviewKD code (dvlab-research/ReviewKD,
CIFAR-100/model/reviewkd.py, build_review_kd), D = derived by us from the feature maps:

| pair (teacher-student) | IN_CHANNELS | OUT_CHANNELS | SHAPES | OUT_SHAPES | MID | src |
|---|---|---|---|---|---|---|
| resnet32x4-resnet8x4 | 64,128,256,256 | 64,128,256,256 | 1,8,16,32 | = | 256 | M |
| vgg13-vgg8 | 128,256,512,512,512 | 128,256,512,512,512 | 1,4,4,8,16 | = | 512 | R |
| wrn_40_2-wrn_40_1 | 16,32,64,64 | 32,64,128,128 | 1,8,16,32 | = | 64 | R |
| resnet110-resnet32 | 16,32,64,64 | 16,32,64,64 | 1,8,16,32 | = | 64 | R |
| resnet32x4-shufflenet_v1 | 240,480,960,960 | 64,128,256,256 | 1,4,8,16 | 1,8,16,32 | 512 | R |
| vgg13-mobilenet_v2 | 12,16,48,160,1280 | 128,256,512,512,512 | 1,2,4,8,16 | 1,4,4,8,16 | 512 | R |
| wrn_40_2-shufflenet_v1 | 240,480,960,960 | 32,64,128,128 | 1,4,8,16 | 1,8,16,32 | 512 | R |
| resnet50_cifar-mobilenet_v2 | 12,16,48,160,1280 | 256,512,1024,2048,2048 | 1,2,4,8,16 | 1,4,8,16,32 | 512 | R |
| resnet34-resnet18 | 64,128,256,512,512 | 64,128,256,512,512 | 1,7,14,28,56 | = | 512 | M |
| resnet50-mobilenet_v1 | 128,256,512,1024,1024 | 256,512,1024,2048,2048 | 1,7,14,28,56 | = | 512 | M |
| demo_resnet_teacher-demo_resnet_student | 8,16,32,32 | 24,48,96,96 | 1,4,7,14 | = | 32 | D |

FitNet hint maps (height x channels, student -> teacher) and ConvReg's conv; mdistiller configures only
r32x4->r8x4 (cifar100/fitnet.yaml), every other pair applies the same rule (hint layer 2, ConvReg):

| pair | hint | conv |
|---|---|---|
| resnet32x4-resnet8x4 | 16x128 -> 16x128 | 1x1 |
| vgg13-vgg8 | 8x256 -> 8x256 | 1x1 |
| wrn_40_2-wrn_40_1 | 16x32 -> 16x64 | 1x1 |
| resnet110-resnet32 | 16x32 -> 16x32 | 1x1 |
| resnet32x4-shufflenet_v1 | 8x480 -> 16x128 | 4x4 transposed |
| vgg13-mobilenet_v2 | 8x16 -> 8x256 | 1x1 |
| wrn_40_2-shufflenet_v1 | 8x480 -> 16x64 | 4x4 transposed |
| resnet50_cifar-mobilenet_v2 | 8x16 -> 16x512 | 4x4 transposed |
| resnet34-resnet18 | 28x128 -> 28x128 | 1x1 |
| resnet50-mobilenet_v1 | 14x512 -> 28x512 | 4x4 transposed (Table V has no FitNet row; supported anyway) |
| demo pair (28x28x1) | 7x16 -> 7x48 | 1x1 |

Our choices (no reference defines them): mdistiller has ReviewKD settings only for r32x4->r8x4 on CIFAR (its
cfg defaults); the other CIFAR pairs' numbers are the original ReviewKD code's (dvlab-research/ReviewKD,
CIFAR-100/model/reviewkd.py), which our derivation reproduces exactly, but we run them with mdistiller's feature
lists (student post-ReLU ``feats`` on CIFAR, STU_PREACT False) and mid-channel rule. At 64x64 (Tiny) and
28x28 (Fashion-MNIST) every shape is derived from the real feature maps (ours). r50->mv1 uses mid 512:
mdistiller's code computes ``min(512, in_channels[-1])`` and never reads its config's MAX_MID_CHANNEL 256 (the
original ReviewKD ImageNet code used 256; pass ``mid_channel=256`` for that). FitNet on ImageNet pairs and on
every CIFAR pair but r32x4->r8x4 has no mdistiller config: hint layer 2 and ConvReg's rule applied (ours).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ltkd_jax import models
from ltkd_jax.models.layers import batch_norm, torch_default_bias, torch_default_kernel

__all__ = [
    "FEATURE_METHODS",
    "SUPPORTED_PAIRS",
    "PAIR_CHOICES",
    "FitNetSettings",
    "ReviewKDSettings",
    "feature_settings",
    "build_student",
    "get_feature_loss",
    "fitnet_loss",
    "hcl_loss",
    "reviewkd_teacher_maps",
    "adaptive_avg_pool2d",
    "resize_nearest",
    "ConvReg",
    "ABF",
    "FitNetConnector",
    "ReviewKDConnector",
    "FeatureDistillStudent",
]

FEATURE_METHODS = ("fitnet", "reviewkd")
FITNET_HINT_LAYER = 2  # mdistiller CFG.FITNET.HINT_LAYER
REVIEWKD_MAX_MID_CHANNEL = 512  # mdistiller: mid_channel = min(512, in_channels[-1])
HCL_LEVELS = (4, 2, 1)

_CIFAR_PAIR_SOURCE = {
    "fitnet": "mdistiller hint layer 2 + ConvReg rule (mdistiller's CIFAR FitNet config is r32x4->r8x4 only)",
    "reviewkd": "channels/shapes of the original ReviewKD code (CIFAR-100 build_review_kd), derived from the "
                "feature maps; mdistiller's feature lists (student feats, STU_PREACT False) and mid rule",
}
# pair -> method -> where its settings come from; the supported pairs (paper Tables I-V + the demo pair).
PAIR_CHOICES = {
    "resnet32x4-resnet8x4": {
        "fitnet": "mdistiller configs/cifar100/fitnet.yaml (+ CFG.FITNET defaults)",
        "reviewkd": "mdistiller configs/cifar100/reviewkd.yaml + CFG.REVIEWKD defaults "
                    "(SHAPES [1,8,16,32], IN/OUT_CHANNELS [64,128,256,256], STU_PREACT False)",
    },
    "vgg13-vgg8": dict(_CIFAR_PAIR_SOURCE),
    "wrn_40_2-wrn_40_1": dict(_CIFAR_PAIR_SOURCE),
    "resnet110-resnet32": dict(_CIFAR_PAIR_SOURCE),
    "resnet32x4-shufflenet_v1": dict(_CIFAR_PAIR_SOURCE),
    "vgg13-mobilenet_v2": dict(_CIFAR_PAIR_SOURCE),
    "wrn_40_2-shufflenet_v1": dict(_CIFAR_PAIR_SOURCE),
    "resnet50_cifar-mobilenet_v2": dict(_CIFAR_PAIR_SOURCE),
    "resnet34-resnet18": {
        "fitnet": "ours: hint layer 2 + ConvReg rule (mdistiller has no ImageNet FitNet config)",
        "reviewkd": "mdistiller configs/imagenet/r34_r18/reviewkd.yaml (STU_PREACT True)",
    },
    "resnet50-mobilenet_v1": {
        "fitnet": "ours: hint layer 2 + ConvReg rule (mdistiller has no ImageNet FitNet config)",
        "reviewkd": "mdistiller configs/imagenet/r50_mv1/reviewkd.yaml (STU_PREACT True); mid 512 as its code "
                    "computes (its MAX_MID_CHANNEL 256 is never read)",
    },
    "demo_resnet_teacher-demo_resnet_student": {
        "fitnet": "ours: hint layer 2 + ConvReg rule",
        "reviewkd": "ours: derived from the feature maps, CIFAR conventions (student feats)",
    },
}
SUPPORTED_PAIRS = tuple(PAIR_CHOICES)
# mdistiller's ImageNet ReviewKD configs set STU_PREACT True; its CIFAR default is False.
STUDENT_PREACT_PAIRS = ("resnet34-resnet18", "resnet50-mobilenet_v1")

_OPTIONS = {"fitnet": ("hint_layer",), "reviewkd": ("student_preact", "mid_channel")}


# ----------------------------------------------------------------------------------------------------------------
# Settings: everything a connector needs, derived from the two networks' abstract feature shapes.


@dataclasses.dataclass(frozen=True)
class FitNetSettings:
    hint_layer: int
    student_shape: tuple  # (H, W, C) of the student's feats[hint_layer]
    teacher_shape: tuple  # (H, W, C) of the teacher's feats[hint_layer]

    @property
    def conv(self) -> str:
        """ConvReg's choice: 'stride2' (3x3 s2 p1), 'transposed' (4x4 transposed s2 p1) or 'kxk' (no padding)."""
        return _convreg_kind(self.student_shape[:2], self.teacher_shape[:2])


@dataclasses.dataclass(frozen=True)
class ReviewKDSettings:
    student_key: str  # 'feats' or 'preact_feats'
    in_channels: tuple  # student widths, shallow -> deep (mdistiller IN_CHANNELS)
    out_channels: tuple  # teacher widths, shallow -> deep (OUT_CHANNELS)
    shapes: tuple  # (H, W) of the student maps, shallow -> deep
    out_shapes: tuple  # (H, W) of the teacher maps, shallow -> deep
    mid_channel: int

    def as_mdistiller(self) -> dict:
        """The same numbers in mdistiller's config notation (SHAPES / OUT_SHAPES deep -> shallow, square)."""
        return {"IN_CHANNELS": list(self.in_channels), "OUT_CHANNELS": list(self.out_channels),
                "SHAPES": [h for h, _ in self.shapes[::-1]], "OUT_SHAPES": [h for h, _ in self.out_shapes[::-1]],
                "MID_CHANNEL": self.mid_channel, "STU_PREACT": self.student_key == "preact_feats"}


def _image_shape(image_shape) -> tuple:
    shape = tuple(int(d) for d in image_shape)
    if len(shape) == 4:  # a batch shape: drop the batch
        shape = shape[1:]
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape {tuple(image_shape)!r} must be (height, width, channels)")
    return shape


@functools.lru_cache(maxsize=None)
def _feature_shapes(name: str, image_shape: tuple) -> dict:
    """{'feats': [(H, W, C)...], 'preact_feats': [...], 'pooled': C} of one model, cached (no compute)."""
    _, f = models.feature_shapes(name, 10, (1, *image_shape))
    return {"feats": [tuple(x.shape[1:]) for x in f["feats"]],
            "preact_feats": [tuple(x.shape[1:]) for x in f["preact_feats"]],
            "pooled": int(f["pooled_feat"].shape[-1])}


def _check_method_and_pair(method: str, teacher_name: str, student_name: str) -> None:
    if method not in FEATURE_METHODS:
        raise ValueError(f"unknown feature-distillation method {method!r}; allowed: {', '.join(FEATURE_METHODS)}")
    pair = f"{teacher_name}-{student_name}"
    if pair not in PAIR_CHOICES:
        raise ValueError(f"{method} does not support the teacher-student pair {pair!r}; supported: "
                         f"{', '.join(SUPPORTED_PAIRS)}")


def _convreg_kind(student_hw, teacher_hw) -> str:
    s, t = student_hw[0], teacher_hw[0]
    if s == 2 * t:
        return "stride2"
    if 2 * s == t:
        return "transposed"
    if s >= t:
        return "kxk"
    raise ValueError(f"FitNet's regressor cannot map a student hint of height {s} to a teacher hint of height {t} "
                     "(supported: student 2x the teacher, half of it, or at least as large)")


def feature_settings(method: str, teacher_name: str, student_name: str, image_shape, **options):
    """The connector settings of `method` for the pair at `image_shape` (H, W, C): a `FitNetSettings` or a
    `ReviewKDSettings`. Options: fitnet `hint_layer` (default 2); reviewkd `student_preact` (default: True
    on ImageNet pairs, as mdistiller) and `mid_channel` (default, or 0: min(512, deepest student width))."""
    _check_method_and_pair(method, teacher_name, student_name)
    unknown = sorted(set(options) - set(_OPTIONS[method]))
    if unknown:
        raise ValueError(f"unknown {method} option {unknown[0]!r}; allowed: {', '.join(_OPTIONS[method])}")
    image_shape = _image_shape(image_shape)
    student = _feature_shapes(student_name, image_shape)
    teacher = _feature_shapes(teacher_name, image_shape)
    if method == "fitnet":
        layer = options.get("hint_layer")
        layer = FITNET_HINT_LAYER if layer is None else layer
        limit = min(len(student["feats"]), len(teacher["feats"]))
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < limit:
            raise ValueError(f"hint_layer={layer!r} is invalid for {teacher_name}-{student_name}: "
                             f"it must be an int in [0, {limit - 1}]")
        settings = FitNetSettings(layer, student["feats"][layer], teacher["feats"][layer])
        _convreg_kind(settings.student_shape[:2], settings.teacher_shape[:2])  # raises for unsupported sizes
        return settings

    preact = options.get("student_preact")
    if preact is None:
        preact = f"{teacher_name}-{student_name}" in STUDENT_PREACT_PAIRS
    key = "preact_feats" if preact else "feats"
    teacher_maps = [s for s in teacher["preact_feats"][1:]] + [(1, 1, teacher["pooled"])]
    student_maps = list(student[key]) + [(1, 1, student["pooled"])]
    k = len(teacher_maps)
    if len(student_maps) < k:
        raise ValueError(f"reviewkd needs {k} student maps for teacher {teacher_name}, "
                         f"student {student_name} has {len(student_maps)}")
    student_maps = student_maps[-k:]
    in_channels = tuple(c for _, _, c in student_maps)
    mid = options.get("mid_channel")
    if mid is None or (type(mid) is int and mid == 0):  # pylint: disable=unidiomatic-typecheck  # not False
        mid = min(REVIEWKD_MAX_MID_CHANNEL, in_channels[-1])
    if isinstance(mid, bool) or not isinstance(mid, int) or mid < 1:
        raise ValueError(f"mid_channel={mid!r} is invalid: it must be a positive int, or 0 for min("
                         f"{REVIEWKD_MAX_MID_CHANNEL}, the student's last width)")
    return ReviewKDSettings(
        student_key=key, in_channels=in_channels, out_channels=tuple(c for _, _, c in teacher_maps),
        shapes=tuple((h, w) for h, w, _ in student_maps), out_shapes=tuple((h, w) for h, w, _ in teacher_maps),
        mid_channel=mid)


# ----------------------------------------------------------------------------------------------------------------
# PyTorch-exact resampling: nearest interpolation and adaptive average pooling, as static index / weight tables.


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """F.interpolate(mode='nearest') source indices: floor(i * float32(in / out)), clipped (PyTorch's rule)."""
    if in_size == out_size:
        return np.arange(out_size)
    scale = np.float32(in_size) / np.float32(out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def resize_nearest(x: jax.Array, size: Sequence[int]) -> jax.Array:
    """PyTorch `F.interpolate(x, size, mode='nearest')` on an NHWC array."""
    h, w = int(size[0]), int(size[1])
    if x.shape[1:3] == (h, w):
        return x
    x = jnp.take(x, _nearest_indices(x.shape[1], h), axis=1)
    return jnp.take(x, _nearest_indices(x.shape[2], w), axis=2)


def _adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) averaging weights of PyTorch's adaptive pooling: cell i averages
    [floor(i * in / out), ceil((i + 1) * in / out)), so cells may overlap when `in` is not a multiple."""
    m = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool2d(x: jax.Array, size: Sequence[int]) -> jax.Array:
    """PyTorch `F.adaptive_avg_pool2d(x, size)` on an NHWC array, in float32."""
    ph = jnp.asarray(_adaptive_pool_matrix(x.shape[1], int(size[0])))
    pw = jnp.asarray(_adaptive_pool_matrix(x.shape[2], int(size[1])))
    return jnp.einsum("oh,nhwc,pw->nopc", ph, x.astype(jnp.float32), pw, precision=jax.lax.Precision.HIGHEST)


# ----------------------------------------------------------------------------------------------------------------
# Losses (unweighted). The teacher's maps are wrapped in stop_gradient here as well as in the trainer.


def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))


def _check_same_shape(what: str, hint: jax.Array, target: jax.Array) -> None:
    if hint.shape != target.shape:
        raise ValueError(f"{what}: student hint shape {tuple(hint.shape)} differs from the teacher's "
                         f"{tuple(target.shape)} (was the student built for another image_shape or pair?)")


def fitnet_loss(hint: jax.Array, teacher_map: jax.Array) -> jax.Array:
    """FitNet: mean squared error between the regressed student hint and the teacher's map."""
    _check_same_shape("fitnet", hint, teacher_map)
    return _mse(hint, jax.lax.stop_gradient(teacher_map))


def hcl_loss(student_maps: Sequence[jax.Array], teacher_maps: Sequence[jax.Array]) -> jax.Array:
    """ReviewKD's hierarchical context loss, summed over levels (NHWC maps)."""
    if len(student_maps) != len(teacher_maps):
        raise ValueError(f"reviewkd: {len(student_maps)} student maps but {len(teacher_maps)} teacher maps")
    total = jnp.zeros((), jnp.float32)
    for i, (fs, ft) in enumerate(zip(student_maps, teacher_maps)):
        _check_same_shape(f"reviewkd level {i}", fs, ft)
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


def get_feature_loss(method: str, teacher_name: str, student_name: str, image_shape,
                     **options) -> Callable[[Any, Any], jax.Array]:
    """`loss(hints, teacher_features) -> scalar` (unweighted) for the wrapper of `build_student` with the same
    arguments; `teacher_features` is the teacher's `return_features=True` dict. Options as `feature_settings`."""
    settings = feature_settings(method, teacher_name, student_name, image_shape, **options)
    if method == "fitnet":
        layer = settings.hint_layer

        def loss(hints, teacher_features):
            return fitnet_loss(hints, teacher_features["feats"][layer])
    else:
        def loss(hints, teacher_features):
            return hcl_loss(hints, reviewkd_teacher_maps(teacher_features))
    loss.__name__ = f"{method}_loss"
    return loss


# ----------------------------------------------------------------------------------------------------------------
# Connector modules.

# PyTorch kaiming_uniform_(a=1): gain 1, bound sqrt(3 / fan_in).
_kaiming_uniform_a1 = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
# PyTorch's default ConvTranspose2d init takes its fan-in from weight dim 1, i.e. out_channels * k * k; in flax's
# (k, k, in, out) kernel that is the fan-out.
_torch_default_transposed_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


class ConvReg(nn.Module):
    """mdistiller's ConvReg: conv (chosen from the two heights) + BN + ReLU, mapping a student map of
    spatial size `student_hw` to `teacher_channels` maps of size `teacher_hw`."""

    student_hw: tuple
    teacher_hw: tuple
    teacher_channels: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kind = _convreg_kind(self.student_hw, self.teacher_hw)
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


class ABF(nn.Module):
    """ReviewKD's attention-based fusion block. Returns (output for the loss, residual for the next block)."""

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


def build_student(method: str, teacher_name: str, student_name: str, num_classes: int, image_shape,
                  dtype=jnp.float32, **options) -> FeatureDistillStudent:
    """The registry student `student_name` wrapped with `method`'s connector for `teacher_name` at
    `image_shape` (H, W, C). Options as `feature_settings` (pass the same to `get_feature_loss`)."""
    settings = feature_settings(method, teacher_name, student_name, image_shape, **options)
    dtype = jnp.dtype(dtype)  # also accepts the config's 'float32' / 'bfloat16'
    student = models.get_model(student_name, num_classes, dtype=dtype)
    if method == "fitnet":
        connector = FitNetConnector(settings, dtype=dtype)
    else:
        connector = ReviewKDConnector(settings, dtype=dtype)
    return FeatureDistillStudent(student=student, connector=connector)

