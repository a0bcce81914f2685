"""The public `ltkd_jax.distill` API: per-pair settings against mdistiller and the original ReviewKD code, the
shapes of every pair (abstract only: `jax.eval_shape` of the connector, the wrapper and one full training step),
gradient flow, real distillation steps on the CPU-sized demo pair, and the one-line errors."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distill.reference import CIFAR_PAIRS, DEMO_PAIR, IMAGENET_PAIRS, options, random_features, split
from ltkd_jax import distill, methods, models, train
from ltkd_jax.distill import common, fitnet

NUM_CLASSES = 10

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


# ----------------------------------------------------------------------------------------------------------------
# Settings against the references.


def test_supported_pairs_are_the_papers_and_the_demo():
    assert distill.SUPPORTED_PAIRS == CIFAR_PAIRS + IMAGENET_PAIRS + (DEMO_PAIR,)


def _as_mdistiller(settings) -> dict:
    """ReviewKD's settings in mdistiller's config notation (SHAPES / OUT_SHAPES deep -> shallow, square)."""
    return {"IN_CHANNELS": list(settings.in_channels), "OUT_CHANNELS": list(settings.out_channels),
            "SHAPES": [h for h, _ in settings.shapes[::-1]], "OUT_SHAPES": [h for h, _ in settings.out_shapes[::-1]],
            "MID_CHANNEL": settings.mid_channel, "STU_PREACT": settings.student_key == "preact_feats"}


@pytest.mark.parametrize("pair", CIFAR_PAIRS + IMAGENET_PAIRS)
def test_settings_match_the_references(pair):
    teacher, student = split(pair)
    rk = _as_mdistiller(distill.feature_settings("reviewkd", teacher, student, _native(pair),
                                                 **options("reviewkd", teacher, student)))
    assert (rk["IN_CHANNELS"], rk["OUT_CHANNELS"], rk["SHAPES"], rk["OUT_SHAPES"]) == REVIEWKD_REFERENCE[pair]
    assert rk["MID_CHANNEL"] == min(512, rk["IN_CHANNELS"][-1])  # mdistiller's rule (r50->mv1: 512)
    assert rk["STU_PREACT"] == (pair in IMAGENET_PAIRS)  # mdistiller: False on CIFAR, True in its ImageNet configs
    fit = distill.feature_settings("fitnet", teacher, student, _native(pair), **options("fitnet", teacher, student))
    assert fit.hint_layer == 2  # mdistiller FITNET.HINT_LAYER
    assert ((fit.student_shape[0], fit.student_shape[2]), (fit.teacher_shape[0], fit.teacher_shape[2]),
            fit.conv) == FITNET_EXPECTED[pair]
    assert pair in distill.SUPPORTED_PAIRS


def test_options_override_defaults():
    rk = distill.feature_settings("reviewkd", "resnet50", "mobilenet_v1", (224, 224, 3), mid_channel=256,
                                  student_preact=False)
    assert rk.mid_channel == 256 and rk.student_key == "feats"
    fit = distill.feature_settings("fitnet", "resnet32x4", "resnet8x4", (32, 32, 3), hint_layer=3)
    assert fit.student_shape == (8, 8, 256) and fit.conv == "kxk"


# ----------------------------------------------------------------------------------------------------------------
# Shapes of every pair, abstract only.


def _teacher_targets(method, teacher_name, image_shape, batch=2):
    """The teacher maps the loss compares with, from the registry's own abstract feature shapes."""
    shapes = common.feature_shapes(teacher_name, image_shape)
    if method == "fitnet":
        return [(batch, *shapes["feats"][2])]
    return [(batch, *s) for s in shapes["preact_feats"][1:]] + [(batch, 1, 1, shapes["pooled"])]


def _check_connector_shapes(method, pair, image_shape, batch=2):
    """eval_shape of the connector alone on the student's abstract features at `image_shape`."""
    teacher_name, student_name = split(pair)
    connector = distill.build_student(method, teacher_name, student_name, NUM_CLASSES, image_shape,
                                      **options(method, teacher_name, student_name)).connector
    shapes = common.feature_shapes(student_name, image_shape)
    features = {key: [jax.ShapeDtypeStruct((batch, *s), jnp.float32) for s in shapes[key]]
                for key in ("feats", "preact_feats")}
    features["pooled_feat"] = jax.ShapeDtypeStruct((batch, shapes["pooled"]), jnp.float32)
    hints, _ = jax.eval_shape(lambda f: connector.init_with_output(jax.random.key(0), f, train=False), features)
    hints = [hints] if method == "fitnet" else hints
    assert [h.shape for h in hints] == _teacher_targets(method, teacher_name, image_shape, batch)


def _check_hint_shapes(method, pair, image_shape, batch=2, dtype=jnp.float32):
    """eval_shape of the wrapper's init (without hints), its hints and its eval logits."""
    teacher_name, student_name = split(pair)
    model = distill.build_student(method, teacher_name, student_name, NUM_CLASSES, image_shape, dtype=dtype,
                                  **options(method, teacher_name, student_name))

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


def _feature_step(teacher_model, **step_options):
    """`step(state, teacher_variables, batch)`: the teacher's forward pass, then `train.train_step` on its features."""
    def step(state, teacher_variables, batch):
        teacher_out = train.teacher_forward(teacher_model, teacher_variables, batch["image"], features=True)
        return train.train_step(state, teacher_out, batch, **step_options)
    return step


def _check_abstract_step(method, pair, image_shape, batch=2):
    """Connector output shapes, then eval_shape of one full `train.train_step` from the abstract variables
    (the loss also checks the hint shapes against the teacher's while tracing)."""
    teacher_name, student_name = split(pair)
    _check_connector_shapes(method, pair, image_shape, batch)
    model = distill.build_student(method, teacher_name, student_name, NUM_CLASSES, image_shape,
                                  **options(method, teacher_name, student_name))
    variables = models.abstract_variables(model, (1, *image_shape))  # init without hints makes the connector
    assert set(variables["params"]) == {"student", "connector"} and variables["batch_stats"]["connector"]
    tx = train.sgd(0.05, momentum=0.9, weight_decay=5e-4)
    feature_loss = distill.get_feature_loss(method, teacher_name, student_name, image_shape,
                                            **options(method, teacher_name, student_name))
    step = _feature_step(models.get_model(teacher_name, NUM_CLASSES), model=model, tx=tx, steps_per_epoch=10,
                         feature_loss=feature_loss, objective=train.Objective(distill_weight=5.0, warmup_epochs=20))
    state = jax.eval_shape(lambda v: train.TrainState.create(v, tx), variables)
    batch_shapes = {"image": jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32),
                    "label": jax.ShapeDtypeStruct((batch,), jnp.int32)}
    new_state, metrics = jax.eval_shape(step, state, _abstract_teacher_variables(teacher_name, image_shape),
                                        batch_shapes)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), new_state.params) == jax.tree_util.tree_map(
        lambda a: (a.shape, a.dtype), state.params)
    assert metrics["distill"].shape == metrics["loss"].shape == metrics["ce"].shape == ()
    assert metrics["distill"].dtype == jnp.float32


@pytest.mark.parametrize("method", methods.names("feature"))
@pytest.mark.parametrize("pair", CIFAR_PAIRS)
def test_cifar_pairs_full_step_at_32(pair, method):
    _check_abstract_step(method, pair, (32, 32, 3))


@pytest.mark.parametrize("image_shape", [(64, 64, 3), (28, 28, 1)], ids=["tiny64", "fmnist28"])
def test_cifar_pairs_hint_shapes_at_other_sizes(image_shape):
    for pair in CIFAR_PAIRS + (DEMO_PAIR,):
        for method in methods.names("feature"):
            _check_connector_shapes(method, pair, image_shape)


@pytest.mark.parametrize("method", methods.names("feature"))
@pytest.mark.parametrize("pair", IMAGENET_PAIRS)
def test_imagenet_pairs_full_step_at_64(pair, method):
    _check_abstract_step(method, pair, (64, 64, 3))


@pytest.mark.parametrize("method", methods.names("feature"))
def test_wrapper_hints_and_eval_logits(method):
    _check_hint_shapes(method, "resnet32x4-resnet8x4", (32, 32, 3))


def test_bfloat16_student_keeps_float32_params():
    variables = _check_hint_shapes("reviewkd", "resnet32x4-resnet8x4", (32, 32, 3), dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables["params"]))


# ----------------------------------------------------------------------------------------------------------------
# Gradient flow; real distillation steps on the CPU-sized demo pair.


def test_no_gradient_reaches_the_teacher_features():
    rng = np.random.default_rng(4)
    teacher = random_features(rng, common.feature_shapes("demo_resnet_teacher", (28, 28, 1)), 2)
    for method in methods.names("feature"):
        demo = ("demo_resnet_teacher", "demo_resnet_student")
        loss_fn = distill.get_feature_loss(method, *demo, (28, 28, 1), **options(method, *demo))
        settings = distill.feature_settings(method, *demo, (28, 28, 1), **options(method, *demo))
        if method == "fitnet":
            hints = jnp.asarray(rng.normal(size=(2, *settings.teacher_shape)), jnp.float32)
        else:
            hints = [jnp.asarray(rng.normal(size=(2, *hw, c)), jnp.float32)
                     for hw, c in zip(settings.out_shapes, settings.out_channels)]
        g_hints, g_teacher = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(hints, teacher)
        assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree_util.tree_leaves(g_hints))
        assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree_util.tree_leaves(g_teacher))


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
    return bool(np.any(np.asarray(a) != np.asarray(b)))


def _get(tree, path):
    for entry in path:
        tree = tree[entry.key]
    return tree


@pytest.mark.parametrize("method", methods.names("feature"))
def test_real_step_on_demo_pair(method):
    teacher_name, student_name = split(DEMO_PAIR)
    image_shape, batch = (28, 28, 1), 2
    model = distill.build_student(method, teacher_name, student_name, NUM_CLASSES, image_shape,
                                  **options(method, teacher_name, student_name))
    teacher = models.get_model(teacher_name, NUM_CLASSES)
    feature_loss = distill.get_feature_loss(method, teacher_name, student_name, image_shape,
                                            **options(method, teacher_name, student_name))
    # No weight decay and no CE: every parameter change is the feature loss's gradient.
    tx = train.sgd(0.1, momentum=0.9, weight_decay=0.0)
    rng = np.random.default_rng(7)
    variables = _he_variables(model, image_shape, rng)
    teacher_variables = _he_variables(teacher, image_shape, rng)
    state = jax.jit(train.TrainState.create, static_argnums=1)(variables, tx)  # one program, not one per leaf
    step = jax.jit(_feature_step(teacher, model=model, tx=tx, steps_per_epoch=10, feature_loss=feature_loss,
                                 objective=train.Objective(ce_weight=0.0, distill_weight=1.0, warmup_epochs=0)))
    images = jax.random.normal(jax.random.key(2), (batch, *image_shape))
    batch_arrays = {"image": images, "label": jnp.array([1, 7], jnp.int32)}
    # Compiling dominates this test; LLVM's optimisation of the CPU code is a third of it and buys one step nothing.
    step = step.lower(state, teacher_variables, batch_arrays).compile({"xla_backend_optimization_level": 0})
    new_state, metrics = step(state, teacher_variables, batch_arrays)

    distill_value = float(metrics["distill"])
    assert np.isfinite(distill_value) and distill_value > 0
    np.testing.assert_allclose(float(metrics["loss"]), distill_value, rtol=1e-6)
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


# ----------------------------------------------------------------------------------------------------------------
# Errors.


def test_errors_name_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown feature-distillation method 'at'; allowed: fitnet, reviewkd"):
        distill.build_student("at", "resnet32x4", "resnet8x4", 100, (32, 32, 3))
    with pytest.raises(ValueError, match=r"pair 'resnet8x4-resnet32x4'; supported: resnet32x4-resnet8x4, "):
        distill.get_feature_loss("fitnet", "resnet8x4", "resnet32x4", (32, 32, 3), hint_layer=2)
    with pytest.raises(ValueError, match=r"unknown reviewkd option 'hint_layer'; allowed: student_preact"):
        distill.feature_settings("reviewkd", "resnet32x4", "resnet8x4", (32, 32, 3), hint_layer=2)
    with pytest.raises(ValueError, match=r"hint_layer=9 is invalid"):
        distill.feature_settings("fitnet", "resnet32x4", "resnet8x4", (32, 32, 3), hint_layer=9)
    with pytest.raises(ValueError, match=r"cannot map a student hint of height 4 to a teacher hint of height 16"):
        fitnet.ConvReg((4, 4), (16, 16), 8).init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match=r"image_shape"):
        distill.build_student("fitnet", "resnet32x4", "resnet8x4", 100, (32, 32), hint_layer=2)
