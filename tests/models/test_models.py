"""Tests of the model zoo (ltkd_jax/models).

Cheap by design (2-core CPU): parameter counts and shapes are checked abstractly with `jax.eval_shape`
(tracing only, no compile); numerical checks use small models, tiny batches and few compiles.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltkd_jax import models
from ltkd_jax.models import layers
from ltkd_jax.models.resnet_cifar import CifarResNet
from ltkd_jax.models.resnet_imagenet import ImageNetResNet
from ltkd_jax.models.resnet_blocks import BasicBlock, Bottleneck
from ltkd_jax.models.shufflenet import ShuffleNetV1, channel_shuffle
from ltkd_jax.models.vgg import VGG
from ltkd_jax.models.wrn import WideResNet

# Learnable parameters of mdistiller / torchvision (100 classes for CIFAR models, 1000 for ImageNet ones).
EXPECTED_PARAMS = {
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "resnet32": 472_756,
    "resnet110": 1_736_564,
    "vgg8": 3_965_028,
    "vgg13": 9_462_180,
    "wrn_40_2": 2_255_156,
    "wrn_40_1": 569_780,
    "shufflenet_v1": 949_258,
    "mobilenet_v2": 812_836,
    "resnet50_cifar": 23_705_252,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenet_v1": 4_231_976,
    # The demo's CPU-sized models (ours): convs + BN + fc, counted by hand for 3-channel input, 100 classes.
    "demo_resnet_teacher": 401_404,
    "demo_resnet_student": 22_924,
}
IMAGENET_MODELS = ("resnet18", "resnet34", "resnet50", "mobilenet_v1")
CIFAR_MODELS = tuple(n for n in EXPECTED_PARAMS if n not in IMAGENET_MODELS)

# feats (H, W, C) at the native resolution (32x32x3 CIFAR, 224x224x3 ImageNet), and the pooled feature width.
EXPECTED_FEATS = {
    "demo_resnet_teacher": ([(16, 16, 24), (16, 16, 24), (8, 8, 48), (4, 4, 96)], 96),
    "demo_resnet_student": ([(16, 16, 8), (16, 16, 8), (8, 8, 16), (4, 4, 32)], 32),
    "resnet8x4": ([(32, 32, 32), (32, 32, 64), (16, 16, 128), (8, 8, 256)], 256),
    "resnet32x4": ([(32, 32, 32), (32, 32, 64), (16, 16, 128), (8, 8, 256)], 256),
    "resnet32": ([(32, 32, 16), (32, 32, 16), (16, 16, 32), (8, 8, 64)], 64),
    "resnet110": ([(32, 32, 16), (32, 32, 16), (16, 16, 32), (8, 8, 64)], 64),
    "resnet50_cifar": ([(32, 32, 64), (32, 32, 256), (16, 16, 512), (8, 8, 1024), (4, 4, 2048)], 2048),
    "vgg8": ([(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512), (4, 4, 512)], 512),
    "vgg13": ([(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512), (4, 4, 512)], 512),
    "wrn_40_2": ([(32, 32, 16), (32, 32, 32), (16, 16, 64), (8, 8, 128)], 128),
    "wrn_40_1": ([(32, 32, 16), (32, 32, 16), (16, 16, 32), (8, 8, 64)], 64),
    "shufflenet_v1": ([(32, 32, 24), (16, 16, 240), (8, 8, 480), (4, 4, 960)], 960),
    "mobilenet_v2": ([(16, 16, 16), (16, 16, 12), (8, 8, 16), (4, 4, 48), (2, 2, 160)], 1280),
    "resnet18": ([(112, 112, 64), (56, 56, 64), (28, 28, 128), (14, 14, 256), (7, 7, 512)], 512),
    "resnet34": ([(112, 112, 64), (56, 56, 64), (28, 28, 128), (14, 14, 256), (7, 7, 512)], 512),
    "resnet50": ([(112, 112, 64), (56, 56, 256), (28, 28, 512), (14, 14, 1024), (7, 7, 2048)], 2048),
    "mobilenet_v1": ([(56, 56, 128), (28, 28, 256), (14, 14, 512), (7, 7, 1024)], 1024),
}

BATCH = 2


def _num_params(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


@functools.lru_cache(maxsize=None)
def abstract_forward(name: str, input_shape: tuple[int, ...], num_classes: int):
    """(logits, features, variables) as ShapeDtypeStructs: one trace, nothing computed."""
    model = models.get_model(name, num_classes)

    def init_and_forward(rng, images):
        (logits, features), variables = model.init_with_output(rng, images, train=False, return_features=True)
        return logits, features, variables

    return jax.eval_shape(init_and_forward, jax.random.key(0), jax.ShapeDtypeStruct(input_shape, jnp.float32))


def _native_input(name: str) -> tuple[int, ...]:
    return (BATCH, *models.native_resolution(name))


# --------------------------------------------------------------------------------------------- registry


def test_registry_names_are_sorted_and_complete():
    assert models.MODEL_NAMES == tuple(sorted(EXPECTED_PARAMS))


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_native_resolution(name):
    expected = (224, 224, 3) if name in IMAGENET_MODELS else (32, 32, 3)
    assert models.native_resolution(name) == expected


@pytest.mark.parametrize("bad", ["resnet9000", "ResNet8x4", ""])
def test_unknown_name_raises_one_line_value_error_listing_known_names(bad):
    for call in (lambda: models.get_model(bad, 10), lambda: models.native_resolution(bad)):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert repr(bad) in message
        assert all(name in message for name in models.MODEL_NAMES)


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, True])
def test_bad_num_classes_raises(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        models.get_model("resnet8x4", num_classes)


# ------------------------------------------------------------------------------------------ parameters


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_parameter_count_matches_reference(name):
    num_classes = 1000 if name in IMAGENET_MODELS else 100
    _, _, variables = abstract_forward(name, _native_input(name), num_classes)
    assert set(variables) == {"params", "batch_stats"}
    assert _num_params(variables["params"]) == EXPECTED_PARAMS[name]
    assert models.count_params(variables["params"]) == EXPECTED_PARAMS[name]
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)}
    assert dtypes == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("name", ["resnet8x4", "mobilenet_v2"])
def test_bfloat16_model_keeps_float32_parameters(name):
    model = models.get_model(name, 10, dtype=jnp.bfloat16)
    variables = models.abstract_variables(model, (1, 32, 32, 3))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}


# --------------------------------------------------------------------------------------------- shapes


def _check_features(features, expected_feats, pooled_width, batch):
    feats, preacts, pooled = features["feats"], features["preact_feats"], features["pooled_feat"]
    assert [f.shape for f in feats] == [(batch, *s) for s in expected_feats]
    assert [p.shape for p in preacts] == [f.shape for f in feats]
    assert pooled.shape == (batch, pooled_width)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_native_output_and_feature_shapes(name):
    num_classes = 1000 if name in IMAGENET_MODELS else 100  # the parameter-count test's trace, reused
    logits, features, _ = abstract_forward(name, _native_input(name), num_classes)
    assert logits.shape == (BATCH, num_classes) and logits.dtype == jnp.float32
    _check_features(features, *EXPECTED_FEATS[name], BATCH)


@pytest.mark.parametrize("name", CIFAR_MODELS)
@pytest.mark.parametrize("input_shape, num_classes", [((64, 64, 3), 200), ((28, 28, 1), 10)])
def test_cifar_models_run_at_tiny_imagenet_and_fashion_mnist_sizes(name, input_shape, num_classes):
    logits, features, _ = abstract_forward(name, (BATCH, *input_shape), num_classes)
    assert logits.shape == (BATCH, num_classes) and logits.dtype == jnp.float32
    expected, pooled_width = EXPECTED_FEATS[name]
    feats = features["feats"]
    assert [f.shape[-1] for f in feats] == [c for _, _, c in expected]
    assert features["pooled_feat"].shape == (BATCH, pooled_width)
    if input_shape[0] == 64 and not name.startswith("vgg"):
        # Every stride is exact at 64 px, so each map is twice its 32 px size.
        assert [f.shape[1:] for f in feats] == [(2 * h, 2 * w, c) for h, w, c in expected]
    if input_shape[0] == 64 and name.startswith("vgg"):
        # mdistiller's extra pool3 at 64 px keeps the last stage at 4x4.
        assert [f.shape[1:3] for f in feats] == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_imagenet_models_run_at_64px(name):
    logits, features, _ = abstract_forward(name, (BATCH, 64, 64, 3), 200)
    assert logits.shape == (BATCH, 200)
    expected, pooled_width = EXPECTED_FEATS[name]
    assert [f.shape[1:] for f in features["feats"]] == [(h * 64 // 224, w * 64 // 224, c) for h, w, c in expected]
    assert features["pooled_feat"].shape == (BATCH, pooled_width)


# ------------------------------------------------------------------------------- layer-level numerics


def _torch_conv2d_reference(x, w, stride, pad):
    """Direct NHWC cross-correlation with symmetric zero padding, as PyTorch's Conv2d(padding=pad)."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = w.shape[0]
    out_hw = (x.shape[1] - k) // stride + 1
    out = np.zeros((x.shape[0], out_hw, out_hw, w.shape[-1]))
    for i in range(out_hw):
        for j in range(out_hw):
            patch = x[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out


@pytest.mark.parametrize("kernel, stride, size", [(3, 2, 8), (3, 1, 5), (7, 2, 10), (1, 2, 6)])
def test_conv_padding_matches_pytorch(kernel, stride, size):
    # flax's 'SAME' would pad a strided conv on an even input asymmetrically; PyTorch pads k//2 on both sides.
    conv = layers.conv2d(4, kernel, stride=stride)
    x = np.random.default_rng(0).normal(size=(1, size, size, 3)).astype(np.float32)
    variables = conv.init(jax.random.key(0), x)
    got = conv.apply(variables, x)
    want = _torch_conv2d_reference(x, np.asarray(variables["params"]["kernel"]), stride, kernel // 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_avg_pool_counts_padding_like_pytorch():
    out = np.asarray(layers.avg_pool(jnp.ones((1, 4, 4, 1)), 3, 2, padding=1))[0, :, :, 0]
    np.testing.assert_allclose(out, [[4 / 9, 6 / 9], [6 / 9, 1.0]], rtol=1e-6)


def test_max_pool_padding_never_wins():
    x = -jnp.arange(1.0, 17.0).reshape(1, 4, 4, 1)
    out = np.asarray(layers.max_pool(x, 3, 2, padding=1))[0, :, :, 0]
    np.testing.assert_array_equal(out, [[-1.0, -2.0], [-5.0, -6.0]])


def test_channel_shuffle_matches_nchw_reference():
    n, c, h, w, g = 2, 12, 3, 3, 3
    x_nchw = np.random.default_rng(1).normal(size=(n, c, h, w))
    reference = x_nchw.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    got = channel_shuffle(jnp.asarray(x_nchw.transpose(0, 2, 3, 1)), g)
    np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), reference, rtol=1e-6)


def test_global_avg_pool_is_spatial_mean_in_input_dtype():
    x = jnp.arange(2 * 3 * 5 * 4, dtype=jnp.bfloat16).reshape(2, 3, 5, 4) / 100
    out = layers.global_avg_pool(x)
    assert out.dtype == jnp.bfloat16 and out.shape == (2, 4)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(x, np.float32).mean((1, 2)), rtol=1e-2)


def test_initialisers_follow_pytorch():
    key = jax.random.key(0)
    # kaiming-normal fan-out of a 3x3x64->128 kernel: std sqrt(2 / (9 * 128)), untruncated.
    w = np.asarray(layers.kaiming_normal_fan_out(key, (3, 3, 64, 128)))
    np.testing.assert_allclose(w.std(), np.sqrt(2 / (9 * 128)), rtol=0.02)
    assert np.abs(w).max() > 3 * w.std()  # not truncated at 2 std
    # PyTorch default weight and bias: U(+-1/sqrt(fan_in)), fan_in = 3 * 3 * (in_channels / groups).
    w = np.asarray(layers.torch_default_kernel(key, (3, 3, 16, 256)))  # grouped: 16 inputs per group
    bound = 1 / np.sqrt(9 * 16)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.03)
    b = np.asarray(layers.torch_default_bias(256)(key, (4096,)))
    assert np.abs(b).max() <= 1 / 16 and np.abs(b).max() > 0.98 / 16


# How each reference initialises its convolutions and its classifier (mdistiller's init loops, else PyTorch's
# defaults). Conv: "fan_out" = kaiming-normal fan-out, "torch" = PyTorch default kaiming-uniform(a=sqrt 5).
# Head: (weight std as a function of fan-in, bias is zero).
_CONV_INIT = {name: "fan_out" for name in EXPECTED_PARAMS} | {"shufflenet_v1": "torch", "mobilenet_v1": "torch"}
_TORCH_HEAD = (lambda fan_in: 1 / np.sqrt(3 * fan_in), False)
_HEAD_INIT = {name: _TORCH_HEAD for name in EXPECTED_PARAMS} | {
    "vgg8": (lambda fan_in: 0.01, True),
    "vgg13": (lambda fan_in: 0.01, True),
    "mobilenet_v2": (lambda fan_in: 0.01, True),
    "wrn_40_2": (lambda fan_in: 1 / np.sqrt(3 * fan_in), True),
    "wrn_40_1": (lambda fan_in: 1 / np.sqrt(3 * fan_in), True),
}


def _record_layers(model, input_shape):
    """Every Conv / Dense the model calls, with its initialisers, found by intercepting an abstract init."""
    calls = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, (nn.Conv, nn.Dense)):
            calls.append((context.module, args[0].shape[-1]))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        models.abstract_variables(model, input_shape)
    return calls


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_initialisers_are_wired_as_in_each_reference(name):
    calls = _record_layers(models.get_model(name, 1000), (1, 32, 32, 3))
    convs = [m for m, _ in calls if isinstance(m, nn.Conv)]
    (head, fan_in), = [(m, f) for m, f in calls if isinstance(m, nn.Dense)]
    expected_conv_init = {"fan_out": layers.kaiming_normal_fan_out, "torch": layers.torch_default_kernel}
    assert all(conv.kernel_init is expected_conv_init[_CONV_INIT[name]] for conv in convs)
    # Only VGG's convs carry a bias, and the reference zeroes it.
    assert all(conv.use_bias == name.startswith("vgg") for conv in convs)
    assert all(conv.bias_init is nn.initializers.zeros for conv in convs if conv.use_bias)
    # Sample the head's initialisers at its real shape and compare with the reference's distribution.
    weight_std, zero_bias = _HEAD_INIT[name]
    kernel = np.asarray(head.kernel_init(jax.random.key(0), (fan_in, 1000)))
    np.testing.assert_allclose(kernel.std(), weight_std(fan_in), rtol=0.05)
    bias = np.asarray(head.bias_init(jax.random.key(1), (1000,)))
    if zero_bias:
        assert np.all(bias == 0)
    else:  # PyTorch default: U(+-1/sqrt(fan_in))
        assert 0.95 / np.sqrt(fan_in) < np.abs(bias).max() <= 1 / np.sqrt(fan_in)


def test_real_initialisation_of_vgg8():
    model = models.get_model("vgg8", 1000)
    # Parameters do not depend on the forward pass, so XLA drops it; the 'rbg' generator compiles faster than
    # threefry for many initialisers, and only statistics are checked here.
    params = jax.jit(lambda rng: model.init(rng, jnp.zeros((1, 8, 8, 3)), train=False)["params"])(
        jax.random.key(0, impl="rbg")
    )
    conv = params["block3"]["conv0"]
    np.testing.assert_allclose(np.asarray(conv["kernel"]).std(), np.sqrt(2 / (9 * 512)), rtol=0.02)
    assert np.all(np.asarray(conv["bias"]) == 0)
    np.testing.assert_allclose(np.asarray(params["classifier"]["kernel"]).std(), 0.01, rtol=0.02)
    assert np.all(np.asarray(params["classifier"]["bias"]) == 0)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if "bn" in jax.tree_util.keystr(path):  # batch norm starts at scale 1, bias 0
            assert np.all(np.asarray(leaf) == (1.0 if path[-1].key == "scale" else 0.0))


# ------------------------------------------------------------------------------------ real forwards


@pytest.fixture(scope="module")
def resnet8x4_setup():
    model = models.get_model("resnet8x4", 10)
    images = jax.random.normal(jax.random.key(1), (4, 16, 16, 3), jnp.float32) * 2.0 + 0.5
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0, impl="rbg"), images)
    return model, variables, images


def _is_stem(module, _):
    return module.name in ("conv1", "bn1") and len(module.scope.path) == 1


def _stem_intermediates(model, variables, images, train):
    """Run once (jitted: one compilation, not one per operation), capturing the stem conv and stem BN outputs;
    returns (logits, conv, bn, new batch_stats)."""
    logits, state = jax.jit(functools.partial(model.apply, train=train, mutable=["batch_stats", "intermediates"],
                                              capture_intermediates=_is_stem))(variables, images)
    inter = state["intermediates"]
    return logits, np.asarray(inter["conv1"]["__call__"][0]), np.asarray(inter["bn1"]["__call__"][0]), state[
        "batch_stats"
    ]


@functools.partial(jax.jit, static_argnums=0, static_argnames=("train", "return_features"))
def _apply(model, variables, images, train, return_features=False):
    """`model.apply` jitted, as the steps run it; train mode also returns the updated batch statistics."""
    if train:
        return model.apply(variables, images, train=True, mutable=["batch_stats"], return_features=return_features)
    return model.apply(variables, images, train=False, return_features=return_features)


def test_train_mode_uses_batch_statistics_and_updates_running_stats(resnet8x4_setup):
    model, variables, images = resnet8x4_setup
    _, conv, bn, new_stats = _stem_intermediates(model, variables, images, train=True)
    mean, var = conv.mean((0, 1, 2)), conv.var((0, 1, 2))
    np.testing.assert_allclose(bn, (conv - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
    # PyTorch momentum 0.1 from the initial (0, 1) running statistics, the unbiased variance in the average.
    n = conv.size // conv.shape[-1]
    np.testing.assert_allclose(new_stats["bn1"]["mean"], 0.1 * mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new_stats["bn1"]["var"], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-4, atol=1e-6)
    # Every batch norm got new statistics.
    changed = jax.tree_util.tree_map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                                     variables["batch_stats"], new_stats)
    assert all(jax.tree_util.tree_leaves(changed))


def test_batch_norm_step_follows_pytorch_by_hand():
    """One train-mode step of the batch norm, by hand in float64: PyTorch's BatchNorm2d normalises with the biased
    batch variance and averages the unbiased one (n / (n - 1), n = 16 values per channel here) into the running
    variance, momentum 0.1, from arbitrary running statistics; eval mode then normalises with those."""
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (4, 2, 2, 5)).astype(np.float32)
    params = {"scale": rng.uniform(0.5, 2.0, 5).astype(np.float32), "bias": rng.normal(size=5).astype(np.float32)}
    stats = {"mean": rng.normal(size=5).astype(np.float32), "var": rng.uniform(0.5, 2.0, 5).astype(np.float32)}
    y, updated = layers.batch_norm(True).apply({"params": params, "batch_stats": stats}, x, mutable=["batch_stats"])
    rows = x.astype(np.float64).reshape(-1, 5)
    mean, biased, unbiased = rows.mean(0), rows.var(0), rows.var(0, ddof=1)
    expected = (rows - mean) / np.sqrt(biased + 1e-5) * params["scale"] + params["bias"]
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 5), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.9 * stats["mean"] + 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(updated["batch_stats"]["var"], 0.9 * stats["var"] + 0.1 * unbiased, rtol=1e-6)
    running = {k: np.asarray(v, np.float64) for k, v in updated["batch_stats"].items()}
    y_eval = layers.batch_norm(False).apply({"params": params, "batch_stats": updated["batch_stats"]}, x)
    expected = (rows - running["mean"]) / np.sqrt(running["var"] + 1e-5) * params["scale"] + params["bias"]
    np.testing.assert_allclose(np.asarray(y_eval).reshape(-1, 5), expected, rtol=1e-5, atol=1e-5)


def test_eval_mode_uses_running_statistics_and_leaves_them_alone(resnet8x4_setup):
    model, variables, images = resnet8x4_setup
    _, _, _, trained_stats = _stem_intermediates(model, variables, images, train=True)
    variables = {"params": variables["params"], "batch_stats": trained_stats}
    logits, conv, bn, stats_after = _stem_intermediates(model, variables, images, train=False)
    running = trained_stats["bn1"]
    np.testing.assert_allclose(
        bn, (conv - running["mean"]) / np.sqrt(running["var"] + 1e-5), rtol=1e-4, atol=1e-4
    )
    jax.tree_util.tree_map(np.testing.assert_array_equal, stats_after, trained_stats)
    # Eval output of one image does not depend on the rest of the batch; train output does.
    single = _apply(model, variables, images[:1], train=False)
    np.testing.assert_allclose(single[0], logits[0], rtol=1e-4, atol=1e-5)
    train_single, _ = _apply(model, variables, images[:2], train=True)
    train_full, _ = _apply(model, variables, images, train=True)
    assert not np.allclose(train_single[0], train_full[0], atol=1e-4)


def test_features_are_consistent_with_logits(resnet8x4_setup):
    model, variables, images = resnet8x4_setup
    logits = _apply(model, variables, images, train=False)
    logits_f, features = _apply(model, variables, images, train=False, return_features=True)
    np.testing.assert_allclose(logits_f, logits, rtol=1e-6)
    feats, preacts, pooled = features["feats"], features["preact_feats"], features["pooled_feat"]
    for f, p in zip(feats, preacts):
        np.testing.assert_allclose(f, jax.nn.relu(p), rtol=1e-6)
    np.testing.assert_allclose(pooled, np.asarray(feats[-1]).mean((1, 2)), rtol=1e-5, atol=1e-6)
    fc = variables["params"]["fc"]
    np.testing.assert_allclose(logits, pooled @ fc["kernel"] + fc["bias"], rtol=1e-4, atol=1e-5)


def test_bfloat16_forward_is_close_to_float32(resnet8x4_setup):
    _, variables, images = resnet8x4_setup
    model_bf16 = models.get_model("resnet8x4", 10, dtype=jnp.bfloat16)
    model_f32 = models.get_model("resnet8x4", 10)
    ref, _ = _apply(model_f32, variables, images, train=True)
    (got, features), state = _apply(model_bf16, variables, images, train=True, return_features=True)
    assert got.dtype == jnp.float32
    assert features["feats"][-1].dtype == jnp.bfloat16
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(state)} == {jnp.dtype(jnp.float32)}
    scale = np.abs(np.asarray(ref)).max()
    np.testing.assert_allclose(got, ref, atol=0.05 * scale)


# Small members of each family, so that per-family feature semantics get a real (cheap) forward.
_SMALL_FAMILY_MODELS = {
    "wrn": WideResNet(num_classes=5, depth=10, widen_factor=1),
    "vgg": VGG(num_classes=5, stages=((8,), (8, 8), (16,), (16,), (16,))),
    "shufflenet": ShuffleNetV1(num_classes=5, stage_widths=(48, 96, 192), units_per_stage=(1, 2, 1)),
    "imagenet_resnet": ImageNetResNet(num_classes=5, blocks_per_stage=(1, 1, 1, 1), block=BasicBlock,
                                      stage_widths=(8, 8, 16, 16)),
    "bottleneck_resnet": CifarResNet(num_classes=5, stem_width=8, stage_widths=(4, 8), blocks_per_stage=(1, 1),
                                     block=Bottleneck),
}


def _batch_normalized(x):
    """What a freshly initialised batch norm (scale 1, bias 0) outputs in train mode."""
    x = np.asarray(x, np.float64)
    return (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + 1e-5)


@pytest.mark.parametrize("family", sorted(_SMALL_FAMILY_MODELS))
def test_feature_semantics_per_family(family):
    model = _SMALL_FAMILY_MODELS[family]

    @jax.jit
    def init_and_train_forward(rng, images):
        variables = model.init(rng, images, train=False)
        (logits, features), _ = model.apply(
            variables, images, train=True, return_features=True, mutable=["batch_stats"]
        )
        return logits, features

    images = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    logits, features = init_and_train_forward(jax.random.key(0, impl="rbg"), images)
    feats, preacts, pooled = features["feats"], features["preact_feats"], features["pooled_feat"]
    assert logits.shape == (2, 5) and np.all(np.isfinite(logits))
    if family == "wrn":
        # feats are raw block sums; each later preact is the following batch norm's output (before its ReLU);
        # pooled is taken after the final BN-ReLU.
        np.testing.assert_array_equal(preacts[0], feats[0])
        for f, p in zip(feats[1:], preacts[1:]):
            np.testing.assert_allclose(p, _batch_normalized(f), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(pooled, np.maximum(preacts[-1], 0).mean((1, 2)), rtol=1e-5, atol=1e-6)
    else:
        for f, p in zip(feats, preacts):
            np.testing.assert_allclose(f, jax.nn.relu(p), rtol=1e-6)
        np.testing.assert_allclose(pooled, np.asarray(feats[-1]).mean((1, 2)), rtol=1e-5, atol=1e-6)
        if family == "imagenet_resnet":
            # The stem entry is the stem batch norm's output, read before its ReLU and the max-pool.
            assert preacts[0].shape == (2, 16, 16, 64)
            assert np.any(np.asarray(preacts[0]) < 0)
