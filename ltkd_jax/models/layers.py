"""Building blocks shared by every model family: initialisers, convolution / batch-norm factories,
pooling and the classifier head.

Conventions (all models):
  * images are NHWC; every model infers its input channels from the input;
  * parameters are float32, computation runs in the module's ``dtype`` (float32 or bfloat16);
  * batch norm follows PyTorch's numerics (:class:`BatchNorm`): eps 1e-5, running-average momentum 0.1 in
    PyTorch's convention, the unbiased batch variance in the running average; statistics in float32;
  * convolution padding is explicit (``k // 2`` each side) because flax's ``'SAME'`` pads a strided
    convolution asymmetrically, which would not match PyTorch's ``padding=k//2``.
"""
from __future__ import annotations

import enum
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

BN_MOMENTUM = 0.9  # flax convention: new = momentum * old + (1 - momentum) * batch  (PyTorch momentum=0.1)
BN_EPSILON = 1e-5

# PyTorch `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, which is also what mdistiller's hand-written
# `normal_(0, sqrt(2 / (k*k*out_channels)))` loops compute. Untruncated normal, as in PyTorch.
# PyTorch's fan-out of a grouped kernel is out_channels * k * k (the group count does not enter); flax's
# fan-out of an HWIO kernel is the same product, so depthwise convolutions match too.
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

# PyTorch's default for Conv2d / Linear weights: kaiming_uniform_(a=sqrt(5)), i.e. U(-b, b) with
# b = sqrt(6 / ((1 + 5) * fan_in)) = 1 / sqrt(fan_in). variance_scaling's uniform bound is sqrt(3 * scale / fan_in).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default bias init for Conv2d / Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    The bias initialiser only sees the bias shape, so the fan-in is bound here by the caller.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class HeadInit(enum.Enum):
    """How a model's final linear layer is initialised; each value names the reference that uses it."""

    TORCH_DEFAULT = "torch_default"  # PyTorch default weight and bias (ResNets, ShuffleNet, MobileNetV1)
    TORCH_DEFAULT_ZERO_BIAS = "torch_default_zero_bias"  # default weight, zero bias (mdistiller WRN)
    NORMAL_001_ZERO_BIAS = "normal_001_zero_bias"  # N(0, 0.01) weight, zero bias (mdistiller VGG, MobileNetV2)


def conv2d(features: int, kernel_size: int, *, stride: int = 1, groups: int = 1, use_bias: bool = False,
           kernel_init: nn.initializers.Initializer = kaiming_normal_fan_out, dtype: Dtype = jnp.float32,
           name: str | None = None) -> nn.Conv:
    """A square convolution padded like PyTorch's ``Conv2d(padding=kernel_size // 2)``. Its bias (if any) starts
    at zero: every reference conv that has a bias zeroes it at init."""
    pad = kernel_size // 2
    return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, use_bias=use_bias, kernel_init=kernel_init,
                   bias_init=nn.initializers.zeros, dtype=dtype, param_dtype=jnp.float32, name=name)


class BatchNorm(nn.Module):
    """PyTorch's BatchNorm2d. Train mode normalises with the biased batch variance and puts the unbiased one
    (× n / (n − 1), n values per channel) into the running average, as torch does (flax's nn.BatchNorm keeps
    the biased one: 0.4% lower running variances on MobileNetV2's 2×2 maps at batch 64). Eval mode uses the
    running statistics. Variables as nn.BatchNorm's (params scale / bias, batch_stats mean / var)."""

    use_running_average: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        x32 = x.astype(jnp.float32)  # statistics in float32 even when computing in bfloat16
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x32, axes)
            var = jnp.maximum(jnp.mean(jnp.square(x32), axes) - jnp.square(mean), 0.0)  # one pass, as flax's
            if not self.is_initializing():
                n = x.size // features
                running_mean.value = BN_MOMENTUM * running_mean.value + (1 - BN_MOMENTUM) * mean
                running_var.value = BN_MOMENTUM * running_var.value + (1 - BN_MOMENTUM) * var * (n / max(n - 1, 1))
        return ((x32 - mean) * (jax.lax.rsqrt(var + BN_EPSILON) * scale) + bias).astype(self.dtype)


def batch_norm(train: bool, *, dtype: Dtype = jnp.float32, name: str | None = None) -> BatchNorm:
    """PyTorch's BatchNorm2d (scale 1, bias 0, eps 1e-5, momentum 0.1): ``train=True`` normalises with the batch
    statistics and updates ``batch_stats`` (pass ``mutable=['batch_stats']``), ``train=False`` uses them."""
    return BatchNorm(use_running_average=not train, dtype=dtype, name=name)


def max_pool(x: jax.Array, window: int, stride: int, padding: int = 0) -> jax.Array:
    """PyTorch MaxPool2d (floor mode); padding cells are -inf so they never win."""
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=((padding, padding),) * 2)


def avg_pool(x: jax.Array, window: int, stride: int, padding: int = 0) -> jax.Array:
    """PyTorch AvgPool2d with its default ``count_include_pad=True`` (zero padding counts in the mean)."""
    return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=((padding, padding),) * 2,
                       count_include_pad=True)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over H and W: (N, H, W, C) -> (N, C), accumulated in float32, returned in the input dtype.

    The references use fixed-size AvgPool2d windows that equal the final map at their native input size;
    a global mean is identical there and lets every model run at any input size.
    """
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)


def classifier(num_classes: int, in_features: int, init: HeadInit, *, dtype: Dtype, name: str = "fc") -> nn.Dense:
    """The final linear layer, initialised as the reference model does (see :class:`HeadInit`)."""
    if init is HeadInit.TORCH_DEFAULT:
        kernel_init, bias_init = torch_default_kernel, torch_default_bias(in_features)
    elif init is HeadInit.TORCH_DEFAULT_ZERO_BIAS:
        kernel_init, bias_init = torch_default_kernel, nn.initializers.zeros
    elif init is HeadInit.NORMAL_001_ZERO_BIAS:
        kernel_init, bias_init = nn.initializers.normal(stddev=0.01), nn.initializers.zeros
    else:  # pragma: no cover - exhaustive over the enum
        raise ValueError(f"unknown head init {init!r}")
    return nn.Dense(num_classes, kernel_init=kernel_init, bias_init=bias_init, dtype=dtype, param_dtype=jnp.float32,
                    name=name)


def model_outputs(logits: jax.Array, feats: list[jax.Array], preact_feats: list[jax.Array], pooled_feat: jax.Array,
                  return_features: bool):
    """Logits in float32, plus mdistiller's feature dict when asked for.

    Features stay in the compute dtype (casting large bfloat16 maps to float32 costs memory for nothing;
    the feature losses upcast what they use).
    """
    logits = logits.astype(jnp.float32)
    if not return_features:
        return logits
    return logits, {"feats": list(feats), "preact_feats": list(preact_feats), "pooled_feat": pooled_feat}
