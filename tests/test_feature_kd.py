"""FitNet / ReviewKD: per-pair settings against the references, shapes of every pair (abstract only), the losses
and resampling against numpy references of PyTorch's rules, gradient flow, and real distillation steps on the
CPU-sized demo pair (the paper pairs run through `jax.eval_shape` of the full step)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltkd_jax import feature_kd as fk
from ltkd_jax import models, optim, steps

CIFAR_PAIRS = ("resnet32x4-resnet8x4", "vgg13-vgg8", "wrn_40_2-wrn_40_1", "resnet110-resnet32",
               "resnet32x4-shufflenet_v1", "vgg13-mobilenet_v2", "wrn_40_2-shufflenet_v1",
               "resnet50_cifar-mobilenet_v2")
IMAGENET_PAIRS = ("resnet34-resnet18", "resnet50-mobilenet_v1")
DEMO_PAIR = "demo_resnet_teacher-demo_resnet_student"
NUM_CLASSES = 10



def _np_nearest(x, out_hw):  # PyTorch 'nearest' resize of NHWC: src = floor(dst * in / out)
    hi = (np.arange(out_hw[0]) * x.shape[1]) // out_hw[0]
    wi = (np.arange(out_hw[1]) * x.shape[2]) // out_hw[1]
    return x[:, hi][:, :, wi]

def _split(pair):
    teacher, student = pair.split("-")
    return teacher, student


# ----------------------------------------------------------------------------------------------------------------
# Settings against the references.

# mdistiller (cfg defaults = cifar100/reviewkd.yaml; imagenet/*/reviewkd.yaml) and the original ReviewKD code
# (CIFAR-100/model/reviewkd.py build_review_kd): IN, OUT, SHAPES, OUT_SHAPES (mdistiller notation).
REVIEWKD_REFERENCE = {
    "resnet32x4-resnet8x4": ([64, 128, 256, 256], [64, 128, 256, 256], [1, 8, 16, 32], [1, 8, 16, 32]),
    "vgg13-vgg8": ([128, 256, 512, 512, 512], [128, 256, 512, 512, 512], [1, 4, 4, 8, 16], [1, 4, 4, 8, 16]),
    "wrn_40_2-wrn_40_1": ([16, 32, 64, 64], [32, 64, 128, 128], [1, 8, 16, 32], [1, 8, 16, 32]),
    "resnet110-resnet32": ([16, 32, 64, 64], [16, 32, 64, 64], [1, 8, 16, 32], [1, 8, 16, 32]),
    "resnet32x4-shufflenet_v1": ([240, 480, 960, 960], [64, 128, 256, 256], [1, 4, 8, 16], [1, 8, 16, 32]),
    "vgg13-mobilenet_v2": ([12, 16, 48, 160, 1280], [128, 256, 512, 512, 512], [1, 2, 4, 8, 16],
                           [1, 4, 4, 8, 16]),
    "wrn_40_2-shufflenet_v1": ([240, 480, 960, 960], [32, 64, 128, 128], [1, 4, 8, 16], [1, 8, 16, 32]),
    "resnet50_cifar-mobilenet_v2": ([12, 16, 48, 160, 1280], [256, 512, 1024, 2048, 2048], [1, 2, 4, 8, 16],
                                    [1, 4, 8, 16, 32]),
    "resnet34-resnet18": ([64, 128, 256, 512, 512], [64, 128, 256, 512, 512], [1, 7, 14, 28, 56],
                          [1, 7, 14, 28, 56]),
    "resnet50-mobilenet_v1": ([128, 256, 512, 1024, 1024], [256, 512, 1024, 2048, 2048], [1, 7, 14, 28, 56],
                              [1, 7, 14, 28, 56]),
}
# FitNet at native size: (student hint (H, C), teacher hint (H, C), ConvReg's conv).
FITNET_EXPECTED = {
    "resnet32x4-resnet8x4": ((16, 128), (16, 128), "kxk"),
    "vgg13-vgg8": ((8, 256), (8, 256), "kxk"),
    "wrn_40_2-wrn_40_1": ((16, 32), (16, 64), "kxk"),
    "resnet110-resnet32": ((16, 32), (16, 32), "kxk"),
    "resnet32x4-shufflenet_v1": ((8, 480), (16, 128), "transposed"),
    "vgg13-mobilenet_v2": ((8, 16), (8, 256), "kxk"),
    "wrn_40_2-shufflenet_v1": ((8, 480), (16, 64), "transposed"),
    "resnet50_cifar-mobilenet_v2": ((8, 16), (16, 512), "transposed"),
    "resnet34-resnet18": ((28, 128), (28, 128), "kxk"),
    "resnet50-mobilenet_v1": ((14, 512), (28, 512), "transposed"),
}


def _native(pair):
    return (224, 224, 3) if pair in IMAGENET_PAIRS else (32, 32, 3)


@pytest.mark.parametrize("pair", CIFAR_PAIRS + IMAGENET_PAIRS)
def test_settings_match_the_references(pair):
    teacher, student = _split(pair)
    rk = fk.feature_settings("reviewkd", teacher, student, _native(pair)).as_mdistiller()
    assert (rk["IN_CHANNELS"], rk["OUT_CHANNELS"], rk["SHAPES"], rk["OUT_SHAPES"]) == REVIEWKD_REFERENCE[pair]
    assert rk["MID_CHANNEL"] == min(512, rk["IN_CHANNELS"][-1])  # mdistiller's rule (r50->mv1: 512)
    assert rk["STU_PREACT"] == (pair in IMAGENET_PAIRS)  # mdistiller: False on CIFAR, True in its ImageNet configs
    fit = fk.feature_settings("fitnet", teacher, student, _native(pair))
    assert fit.hint_layer == 2
    assert ((fit.student_shape[0], fit.student_shape[2]), (fit.teacher_shape[0], fit.teacher_shape[2]),
            fit.conv) == FITNET_EXPECTED[pair]
    assert pair in fk.PAIR_CHOICES and set(fk.PAIR_CHOICES[pair]) == set(fk.FEATURE_METHODS)


def test_options_override_defaults():
    rk = fk.feature_settings("reviewkd", "resnet50", "mobilenet_v1", (224, 224, 3), mid_channel=256,
                             student_preact=False)
    assert rk.mid_channel == 256 and rk.student_key == "feats"
    fit = fk.feature_settings("fitnet", "resnet32x4", "resnet8x4", (32, 32, 3), hint_layer=3)
    assert fit.student_shape == (8, 8, 256) and fit.conv == "kxk"


# ----------------------------------------------------------------------------------------------------------------
# Shapes of every pair, abstract only.


def _teacher_targets(method, teacher_name, image_shape, batch=2):
    """The teacher maps the loss compares with, from the registry's own abstract feature shapes."""
    shapes = fk._feature_shapes(teacher_name, image_shape)
    if method == "fitnet":
        return [(batch, *shapes["feats"][2])]
    return [(batch, *s) for s in shapes["preact_feats"][1:]] + [(batch, 1, 1, shapes["pooled"])]


def _check_connector_shapes(method, pair, image_shape, batch=2):
    """eval_shape of the connector alone on the student's abstract features at `image_shape`."""
    teacher_name, student_name = _split(pair)
    connector = fk.build_student(method, teacher_name, student_name, NUM_CLASSES, image_shape).connector
    shapes = fk._feature_shapes(student_name, image_shape)
    features = {key: [jax.ShapeDtypeStruct((batch, *s), jnp.float32) for s in shapes[key]]
                for key in ("feats", "preact_feats")}
    features["pooled_feat"] = jax.ShapeDtypeStruct((batch, shapes["pooled"]), jnp.float32)
    hints, _ = jax.eval_shape(lambda f: connector.init_with_output(jax.random.key(0), f, train=False), features)
    hints = [hints] if method == "fitnet" else hints
    assert [h.shape for h in hints] == _teacher_targets(method, teacher_name, image_shape, batch)


def _check_hint_shapes(method, pair, image_shape, batch=2, dtype=jnp.float32):
    """eval_shape of the wrapper's init (without hints), its hints and its eval logits."""
    teacher_name, student_name = _split(pair)
    model = fk.build_student(method, teacher_name, student_name, NUM_CLASSES, image_shape, dtype=dtype)

    def run(images):
        variables = model.init(jax.random.key(0), images[:1], train=False)
        (logits, hints), _ = model.apply(variables, images, train=True, with_hints=True, mutable=["batch_stats"])
        return variables, logits, hints, model.apply(variables, images, train=False)

    variables, logits, hints, eval_logits = jax.eval_shape(
        run, jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32))
    assert set(variables["params"]) == {"student", "connector"}
    assert variables["batch_stats"]["connector"]  # the connector's BN statistics exist from init
    assert logits.shape == eval_logits.shape == (batch, NUM_CLASSES)
    hints = [hints] if method == "fitnet" else hints
    assert [h.shape for h in hints] == _teacher_targets(method, teacher_name, image_shape, batch)
    assert all(h.dtype == dtype for h in hints)
    return variables


@functools.lru_cache(maxsize=None)
def _abstract_teacher_variables(teacher_name, image_shape):
    return models.abstract_variables(models.get_model(teacher_name, NUM_CLASSES), (1, *image_shape))


def _check_abstract_step(method, pair, image_shape, batch=2):
    """Connector output shapes, then eval_shape of one full `steps.train_step` from the abstract variables
    (the loss also checks the hint shapes against the teacher's while tracing)."""
    teacher_name, student_name = _split(pair)
    _check_connector_shapes(method, pair, image_shape, batch)
    model = fk.build_student(method, teacher_name, student_name, NUM_CLASSES, image_shape)
    variables = models.abstract_variables(model, (1, *image_shape))  # init without hints makes the connector
    assert set(variables["params"]) == {"student", "connector"} and variables["batch_stats"]["connector"]
    tx = optim.sgd(0.05, momentum=0.9, weight_decay=5e-4)
    step = functools.partial(steps.train_step, model=model, tx=tx, steps_per_epoch=10,
                             teacher_model=models.get_model(teacher_name, NUM_CLASSES),
                             feature_loss=fk.get_feature_loss(method, teacher_name, student_name, image_shape),
                             distill_loss=None, distill_weight=5.0, warmup_epochs=20)
    state = jax.eval_shape(lambda v: steps.TrainState.create(v, tx), variables)
    batch_shapes = {"image": jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32),
                    "label": jax.ShapeDtypeStruct((batch,), jnp.int32)}
    new_state, metrics = jax.eval_shape(step, state, _abstract_teacher_variables(teacher_name, image_shape),
                                        batch_shapes)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), new_state.params) == jax.tree_util.tree_map(
        lambda a: (a.shape, a.dtype), state.params)
    assert metrics["distill"].shape == metrics["loss"].shape == metrics["ce"].shape == ()
    assert metrics["distill"].dtype == jnp.float32


@pytest.mark.parametrize("method", fk.FEATURE_METHODS)
@pytest.mark.parametrize("pair", CIFAR_PAIRS)
def test_cifar_pairs_full_step_at_32(pair, method):
    _check_abstract_step(method, pair, (32, 32, 3))


@pytest.mark.parametrize("image_shape", [(64, 64, 3), (28, 28, 1)], ids=["tiny64", "fmnist28"])
def test_cifar_pairs_hint_shapes_at_other_sizes(image_shape):
    for pair in CIFAR_PAIRS + (DEMO_PAIR,):
        for method in fk.FEATURE_METHODS:
            _check_connector_shapes(method, pair, image_shape)


@pytest.mark.parametrize("method", fk.FEATURE_METHODS)
@pytest.mark.parametrize("pair", IMAGENET_PAIRS)
def test_imagenet_pairs_full_step_at_64(pair, method):
    _check_abstract_step(method, pair, (64, 64, 3))


@pytest.mark.parametrize("method", fk.FEATURE_METHODS)
def test_wrapper_hints_and_eval_logits(method):
    _check_hint_shapes(method, "resnet32x4-resnet8x4", (32, 32, 3))


def test_bfloat16_student_keeps_float32_params():
    variables = _check_hint_shapes("reviewkd", "resnet32x4-resnet8x4", (32, 32, 3), dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables["params"]))


# ----------------------------------------------------------------------------------------------------------------
# Resampling against numpy implementations of PyTorch's rules.


def _np_adaptive_avg_pool(x, out_hw):
    """PyTorch adaptive_avg_pool2d: cell i spans [floor(i*I/O), ceil((i+1)*I/O)). NHWC, float64."""
    n, h, w, c = x.shape
    oh, ow = out_hw
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        h0, h1 = int(np.floor(i * h / oh)), int(np.ceil((i + 1) * h / oh))
        for j in range(ow):
            w0, w1 = int(np.floor(j * w / ow)), int(np.ceil((j + 1) * w / ow))
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


def test_adaptive_avg_pool_matches_pytorch_rule():
    # A worked 1-d case of the rule (7 -> 4: windows [0,2) [1,4) [3,6) [5,7), overlapping).
    row = np.arange(7.0).reshape(1, 7, 1, 1)
    np.testing.assert_allclose(fk.adaptive_avg_pool2d(jnp.asarray(row, jnp.float32), (4, 1))[0, :, 0, 0],
                               [0.5, 2.0, 4.0, 5.5], rtol=1e-6)
    rng = np.random.default_rng(0)
    for in_hw, out_hw in [((7, 7), (4, 4)), ((8, 8), (4, 4)), ((14, 14), (4, 4)), ((5, 3), (4, 2)),
                          ((3, 3), (2, 2)), ((7, 7), (1, 1)), ((2, 2), (1, 1)), ((4, 4), (4, 4))]:
        x = rng.normal(size=(2, *in_hw, 3))
        got = fk.adaptive_avg_pool2d(jnp.asarray(x, jnp.float32), out_hw)
        np.testing.assert_allclose(got, _np_adaptive_avg_pool(x, out_hw), rtol=1e-5, atol=1e-6)


def test_resize_nearest_matches_pytorch_rule():
    np.testing.assert_array_equal(fk._nearest_indices(2, 4), [0, 0, 1, 1])
    np.testing.assert_array_equal(fk._nearest_indices(3, 7), [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(fk._nearest_indices(4, 3), [0, 1, 2])
    rng = np.random.default_rng(1)
    for in_hw, out_hw in [((1, 1), (4, 4)), ((4, 4), (7, 7)), ((7, 7), (14, 14)), ((2, 2), (3, 3)),
                          ((4, 4), (3, 3)), ((3, 5), (6, 4))]:
        x = rng.normal(size=(2, *in_hw, 2)).astype(np.float32)
        np.testing.assert_array_equal(fk.resize_nearest(jnp.asarray(x), out_hw), _np_nearest(x, out_hw))


# ----------------------------------------------------------------------------------------------------------------
# Losses against numpy references: zero on a perfect match, the reference value otherwise.


def _np_mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def _np_hcl(student_maps, teacher_maps):
    total = 0.0
    for fs, ft in zip(student_maps, teacher_maps):
        fs, ft = np.asarray(fs, np.float64), np.asarray(ft, np.float64)
        loss, cnt, tot = _np_mse(fs, ft), 1.0, 1.0
        for level in (4, 2, 1):
            if level >= fs.shape[1]:
                continue
            cnt /= 2.0
            loss += cnt * _np_mse(_np_adaptive_avg_pool(fs, (level, level)),
                                  _np_adaptive_avg_pool(ft, (level, level)))
            tot += cnt
        total += loss / tot
    return total


def _random_features(rng, feature_shapes, batch):
    return {key: [jnp.asarray(rng.normal(size=(batch, *s)), jnp.float32) for s in feature_shapes[key]]
            for key in ("feats", "preact_feats")} | {
        "pooled_feat": jnp.asarray(rng.normal(size=(batch, feature_shapes["pooled"])), jnp.float32)}


def test_fitnet_loss_zero_on_match_and_mse_otherwise():
    rng = np.random.default_rng(2)
    loss_fn = fk.get_feature_loss("fitnet", "resnet32x4", "shufflenet_v1", (32, 32, 3))
    teacher = _random_features(rng, fk._feature_shapes("resnet32x4", (32, 32, 3)), 2)
    target = teacher["feats"][2]
    assert float(loss_fn(target, teacher)) == 0.0
    hints = jnp.asarray(rng.normal(size=target.shape), jnp.float32)
    got = float(loss_fn(hints, teacher))
    assert got > 0
    np.testing.assert_allclose(got, _np_mse(hints, target), rtol=1e-5)
    with pytest.raises(ValueError, match="differs from the teacher"):
        loss_fn(hints[:, :8], teacher)


@pytest.mark.parametrize("pair,image_shape", [("resnet34-resnet18", (112, 112, 3)),  # 7x7 level: 7 -> 4 pooling
                                              ("vgg13-mobilenet_v2", (28, 28, 1)),  # 7 -> 4 and 3 -> 2 pooling
                                              ("resnet32x4-resnet8x4", (32, 32, 3))])
def test_reviewkd_hcl_zero_on_match_and_reference_otherwise(pair, image_shape):
    teacher_name, student_name = _split(pair)
    rng = np.random.default_rng(3)
    loss_fn = jax.jit(fk.get_feature_loss("reviewkd", teacher_name, student_name, image_shape))
    teacher = _random_features(rng, fk._feature_shapes(teacher_name, image_shape), 2)
    targets = teacher["preact_feats"][1:] + [teacher["pooled_feat"][:, None, None, :]]
    assert float(loss_fn(list(targets), teacher)) == 0.0
    hints = [t + jnp.asarray(rng.normal(size=t.shape), jnp.float32) for t in targets]
    got = float(loss_fn(hints, teacher))
    assert got > 0
    np.testing.assert_allclose(got, _np_hcl(hints, targets), rtol=1e-5)
    np.testing.assert_allclose(float(fk.hcl_loss([hints[0]], [targets[0]])), _np_hcl([hints[0]], [targets[0]]),
                               rtol=1e-5)


def test_no_gradient_reaches_the_teacher_features():
    rng = np.random.default_rng(4)
    teacher = _random_features(rng, fk._feature_shapes("demo_resnet_teacher", (28, 28, 1)), 2)
    for method in fk.FEATURE_METHODS:
        loss_fn = fk.get_feature_loss(method, "demo_resnet_teacher", "demo_resnet_student", (28, 28, 1))
        settings = fk.feature_settings(method, "demo_resnet_teacher", "demo_resnet_student", (28, 28, 1))
        if method == "fitnet":
            hints = jnp.asarray(rng.normal(size=(2, *settings.teacher_shape)), jnp.float32)
        else:
            hints = [jnp.asarray(rng.normal(size=(2, *hw, c)), jnp.float32)
                     for hw, c in zip(settings.out_shapes, settings.out_channels)]
        g_hints, g_teacher = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(hints, teacher)
        assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree_util.tree_leaves(g_hints))
        assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree_util.tree_leaves(g_teacher))


# ----------------------------------------------------------------------------------------------------------------
# Connector modules against numpy references of the PyTorch layers.


def _np_conv(x, kernel, stride=1, pad=(0, 0)):
    """PyTorch Conv2d (cross-correlation) on NHWC with an HWIO kernel."""
    kh, kw = kernel.shape[:2]
    x = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
            out += patch @ kernel[i, j]
    return out


def _np_conv_transpose(x, weight, stride, pad):
    """PyTorch ConvTranspose2d on NHWC with a PyTorch (in, out, kh, kw) weight: scatter, then crop `pad`."""
    n, h, w, _ = x.shape
    k = weight.shape[2]
    full = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, weight.shape[1]))
    for i in range(h):
        for j in range(w):
            full[:, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "nc,cokl->nklo", x[:, i, j], weight)
    oh, ow = (h - 1) * stride - 2 * pad + k, (w - 1) * stride - 2 * pad + k
    return full[:, pad:pad + oh, pad:pad + ow]


def _np_bn_eval(x, bn_params, bn_stats):
    return ((x - bn_stats["mean"]) / np.sqrt(bn_stats["var"] + 1e-5) * bn_params["scale"] + bn_params["bias"])


def _randomize(tree, rng, positive=False):
    """Random values of the same shapes (BN variances positive), so the numpy comparison is not trivial."""
    return jax.tree_util.tree_map(
        lambda a: np.asarray(rng.uniform(0.5, 1.5, a.shape) if positive else rng.normal(0, 0.3, a.shape),
                             np.float32), tree)


def _random_bn_stats(stats, rng):
    return {k: {"mean": _randomize(v["mean"], rng), "var": _randomize(v["var"], rng, positive=True)}
            if "mean" in v else _random_bn_stats(v, rng) for k, v in stats.items()}


def _random_variables(module, rng, *args):
    """Random params and BN statistics in the shapes `module.init` would give (nothing initialised)."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, train=False))
    return _randomize(shapes["params"], rng), _random_bn_stats(shapes["batch_stats"], rng)


@pytest.mark.parametrize("student_hw,teacher_hw,kind", [((8, 8), (4, 4), "stride2"), ((4, 4), (8, 8), "transposed"),
                                                        ((6, 6), (4, 4), "kxk"), ((5, 5), (5, 5), "kxk")])
def test_convreg_matches_pytorch(student_hw, teacher_hw, kind):
    rng = np.random.default_rng(5)
    c_in, c_out = 3, 4
    module = fk.ConvReg(student_hw, teacher_hw, c_out)
    x = rng.normal(size=(2, *student_hw, c_in)).astype(np.float32)
    params, stats = _random_variables(module, rng, jnp.asarray(x))
    got = jax.jit(lambda v, x: module.apply(v, x, train=False))({"params": params, "batch_stats": stats}, x)
    kernel, bias = params["conv"]["kernel"].astype(np.float64), params["conv"]["bias"]
    if kind == "stride2":
        assert kernel.shape[:2] == (3, 3)
        conv = _np_conv(x, kernel, stride=2, pad=(1, 1))
    elif kind == "transposed":
        assert kernel.shape[:2] == (4, 4)
        # flax's transposed kernel is PyTorch's flipped spatially, (in, out) in the same order.
        weight = np.transpose(kernel[::-1, ::-1], (2, 3, 0, 1))
        conv = _np_conv_transpose(x, weight, stride=2, pad=1)
    else:
        assert kernel.shape[:2] == (1 + student_hw[0] - teacher_hw[0],) * 2
        conv = _np_conv(x, kernel)
    want = np.maximum(_np_bn_eval(conv + bias, params["bn"], stats["bn"]), 0)
    assert got.shape == (2, *teacher_hw, c_out)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_convreg_pytorch_default_init_bounds():
    for student_hw, teacher_hw, fan_in in [((8, 8), (4, 4), 16 * 9), ((4, 4), (8, 8), 32 * 16),
                                           ((6, 6), (4, 4), 16 * 9)]:
        module = fk.ConvReg(student_hw, teacher_hw, 32)
        params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, *student_hw, 16)))["params"]["conv"]
        bound = 1 / np.sqrt(fan_in)  # transposed: PyTorch's fan-in is out_channels * k * k
        for leaf in (params["kernel"], params["bias"]):
            assert float(jnp.abs(leaf).max()) <= bound and float(jnp.abs(leaf).max()) > 0.8 * bound


def test_reviewkd_connector_matches_numpy_abf_chain():
    """The ABF chain (deepest first, attention fusion, nearest resizes) against a numpy forward (eval mode)."""
    teacher_name, student_name, image_shape = "vgg13", "mobilenet_v2", (28, 28, 1)  # resizes 4->3, 2->3
    settings = fk.feature_settings("reviewkd", teacher_name, student_name, image_shape)
    rng = np.random.default_rng(6)
    features = _random_features(rng, fk._feature_shapes(student_name, image_shape), 2)
    module = fk.ReviewKDConnector(settings)
    params, stats = _random_variables(module, rng, features)
    got = jax.jit(lambda v, f: module.apply(v, f, train=False))({"params": params, "batch_stats": stats}, features)

    maps = [np.asarray(m, np.float64) for m in features["feats"]] + [
        np.asarray(features["pooled_feat"], np.float64)[:, None, None, :]]
    k = len(settings.in_channels)
    maps = maps[-k:]
    want, residual = [None] * k, None
    for i in reversed(range(k)):
        p, s = params[f"abf{i}"], stats[f"abf{i}"]
        x = _np_bn_eval(_np_conv(maps[i], p["conv1"]["kernel"]), p["bn1"], s["bn1"])
        if i < k - 1:
            y = _np_nearest(residual, x.shape[1:3])
            z = 1 / (1 + np.exp(-(_np_conv(np.concatenate([x, y], -1), p["att_conv"]["kernel"])
                                  + p["att_conv"]["bias"])))
            x = x * z[..., :1] + y * z[..., 1:]
        x = _np_nearest(x, settings.out_shapes[i])
        want[i] = _np_bn_eval(_np_conv(x, p["conv2"]["kernel"], pad=(1, 1)), p["bn2"], s["bn2"])
        residual = x
    assert "att_conv" not in params[f"abf{k - 1}"]  # the deepest block does not fuse
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)


# ----------------------------------------------------------------------------------------------------------------
# Real distillation steps on the CPU-sized demo pair; gradient flow into connector and student.


def _he_variables(module, image_shape, rng):
    """Variables in `module.init`'s shapes, filled on the host (an RNG-heavy init compiles slowly on CPU):
    He-normal kernels, zero biases, unit BN scales and variances, zero means."""
    shapes = models.abstract_variables(module, (1, *image_shape))

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return np.asarray(rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape), np.float32)
        return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)

    return jax.tree_util.tree_map_with_path(fill, dict(shapes))


def _changed(a, b):
    return float(jnp.abs(jnp.asarray(a) - jnp.asarray(b)).max()) > 0


@pytest.mark.parametrize("method", fk.FEATURE_METHODS)
def test_real_step_on_demo_pair(method):
    teacher_name, student_name = _split(DEMO_PAIR)
    image_shape, batch = (28, 28, 1), 2
    model = fk.build_student(method, teacher_name, student_name, NUM_CLASSES, image_shape)
    teacher = models.get_model(teacher_name, NUM_CLASSES)
    feature_loss = fk.get_feature_loss(method, teacher_name, student_name, image_shape)
    # No weight decay and no CE: every parameter change is the feature loss's gradient.
    tx = optim.sgd(0.1, momentum=0.9, weight_decay=0.0)
    rng = np.random.default_rng(7)
    variables = _he_variables(model, image_shape, rng)
    teacher_variables = _he_variables(teacher, image_shape, rng)
    state = steps.TrainState.create(variables, tx)
    step = jax.jit(functools.partial(
        steps.train_step, model=model, tx=tx, steps_per_epoch=10, teacher_model=teacher, feature_loss=feature_loss,
        distill_loss=None, ce_weight=0.0, distill_weight=1.0, warmup_epochs=0))
    images = jax.random.normal(jax.random.key(2), (batch, *image_shape))
    new_state, metrics = step(state, teacher_variables, {"image": images, "label": jnp.array([1, 7], jnp.int32)})

    distill = float(metrics["distill"])
    assert np.isfinite(distill) and distill > 0
    np.testing.assert_allclose(float(metrics["loss"]), distill, rtol=1e-6)
    old, new = state.params, new_state.params
    # Every connector parameter is trained by the feature loss.
    for path, leaf in jax.tree_util.tree_leaves_with_path(new["connector"]):
        assert _changed(leaf, _get(old["connector"], path)), jax.tree_util.keystr(path)
    assert _changed(new["student"]["conv1"]["kernel"], old["student"]["conv1"]["kernel"])
    assert not _changed(new["student"]["fc"]["kernel"], old["student"]["fc"]["kernel"])  # after the hints
    deepest_stage = new["student"]["layer3"], old["student"]["layer3"]
    leaves = zip(jax.tree_util.tree_leaves(deepest_stage[0]), jax.tree_util.tree_leaves(deepest_stage[1]))
    # FitNet's hint is feats[2] (layer2's output), ReviewKD's deepest map is the pooled layer3 output.
    assert any(_changed(a, b) for a, b in leaves) == (method == "reviewkd")
    assert all(_changed(a, b) for a, b in zip(jax.tree_util.tree_leaves(new_state.batch_stats["connector"]),
                                              jax.tree_util.tree_leaves(state.batch_stats["connector"])))

    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        {"params": new_state.params, "batch_stats": new_state.batch_stats}, images)
    assert logits.shape == (batch, NUM_CLASSES) and bool(jnp.all(jnp.isfinite(logits)))


def _get(tree, path):
    for entry in path:
        tree = tree[entry.key]
    return tree


# ----------------------------------------------------------------------------------------------------------------
# Errors.


def test_errors_name_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown feature-distillation method 'at'; allowed: fitnet, reviewkd"):
        fk.build_student("at", "resnet32x4", "resnet8x4", 100, (32, 32, 3))
    with pytest.raises(ValueError, match=r"pair 'resnet8x4-resnet32x4'; supported: resnet32x4-resnet8x4, "):
        fk.get_feature_loss("fitnet", "resnet8x4", "resnet32x4", (32, 32, 3))
    with pytest.raises(ValueError, match=r"unknown reviewkd option 'hint_layer'; allowed: student_preact"):
        fk.feature_settings("reviewkd", "resnet32x4", "resnet8x4", (32, 32, 3), hint_layer=2)
    with pytest.raises(ValueError, match=r"hint_layer=9 is invalid"):
        fk.feature_settings("fitnet", "resnet32x4", "resnet8x4", (32, 32, 3), hint_layer=9)
    with pytest.raises(ValueError, match=r"cannot map a student hint of height 4 to a teacher hint of height 16"):
        fk.ConvReg((4, 4), (16, 16), 8).init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"image_shape"):
        fk.build_student("fitnet", "resnet32x4", "resnet8x4", 100, (32, 32))


def test_against_pytorch_when_installed():
    """The same operations through PyTorch itself, when it happens to be installed (it is not a dependency)."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(8)

    def nchw(x):
        return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(x, np.float32), (0, 3, 1, 2))))

    def nhwc(t):
        return np.transpose(t.detach().numpy(), (0, 2, 3, 1))

    for in_hw, out_hw in [((7, 7), (4, 4)), ((14, 14), (4, 4)), ((3, 3), (2, 2)), ((5, 3), (4, 2))]:
        x = rng.normal(size=(2, *in_hw, 3)).astype(np.float32)
        np.testing.assert_allclose(fk.adaptive_avg_pool2d(jnp.asarray(x), out_hw),
                                   nhwc(functional.adaptive_avg_pool2d(nchw(x), out_hw)), rtol=1e-5, atol=1e-6)
    for in_hw, out_hw in [((1, 1), (4, 4)), ((4, 4), (7, 7)), ((2, 2), (3, 3)), ((4, 4), (3, 3)), ((3, 5), (6, 4))]:
        x = rng.normal(size=(2, *in_hw, 2)).astype(np.float32)
        np.testing.assert_array_equal(fk.resize_nearest(jnp.asarray(x), out_hw),
                                      nhwc(functional.interpolate(nchw(x), out_hw, mode="nearest")))

    def torch_hcl(fstudent, fteacher):  # mdistiller's hcl_loss
        loss_all = 0.0
        for fs, ft in zip(fstudent, fteacher):
            h = fs.shape[2]
            loss, cnt, tot = functional.mse_loss(fs, ft, reduction="mean"), 1.0, 1.0
            for level in [4, 2, 1]:
                if level >= h:
                    continue
                cnt /= 2.0
                loss += functional.mse_loss(functional.adaptive_avg_pool2d(fs, (level, level)),
                                            functional.adaptive_avg_pool2d(ft, (level, level)), reduction="mean") * cnt
                tot += cnt
            loss_all = loss_all + loss / tot
        return loss_all

    shapes = [(2, 14, 14, 8), (2, 7, 7, 16), (2, 3, 3, 32), (2, 2, 2, 8), (2, 1, 1, 8)]
    fs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    ft = [rng.normal(size=s).astype(np.float32) for s in shapes]
    np.testing.assert_allclose(float(fk.hcl_loss([jnp.asarray(a) for a in fs], [jnp.asarray(b) for b in ft])),
                               float(torch_hcl([nchw(a) for a in fs], [nchw(b) for b in ft])), rtol=1e-5)

    module = fk.ConvReg((4, 4), (8, 8), 5)
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    params, stats = _random_variables(module, rng, jnp.asarray(x))
    got = module.apply({"params": params, "batch_stats": stats}, jnp.asarray(x), train=False)
    deconv = torch.nn.ConvTranspose2d(3, 5, kernel_size=4, stride=2, padding=1)
    with torch.no_grad():
        deconv.weight.copy_(torch.from_numpy(np.ascontiguousarray(
            np.transpose(params["conv"]["kernel"][::-1, ::-1], (2, 3, 0, 1)))))
        deconv.bias.copy_(torch.from_numpy(params["conv"]["bias"]))
        want = np.maximum(_np_bn_eval(nhwc(deconv(nchw(x))), params["bn"], stats["bn"]), 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
