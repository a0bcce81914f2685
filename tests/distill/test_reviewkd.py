"""ReviewKD: the HCL loss against a numpy reference of mdistiller's (and mdistiller's own code through PyTorch
when it is installed), and the ABF chain against a numpy forward of the PyTorch layers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distill.reference import (nchw, np_bn_eval, np_conv, np_hcl, np_nearest, options, random_features,
                               random_variables, split)
from ltkd_jax import distill
from ltkd_jax.distill import common, reviewkd


@pytest.mark.parametrize("pair,image_shape", [("resnet34-resnet18", (112, 112, 3)),  # 7x7 level: 7 -> 4 pooling
                                              ("vgg13-mobilenet_v2", (28, 28, 1)),  # 7 -> 4 and 3 -> 2 pooling
                                              ("resnet32x4-resnet8x4", (32, 32, 3))])
def test_reviewkd_hcl_zero_on_match_and_reference_otherwise(pair, image_shape):
    teacher_name, student_name = split(pair)
    rng = np.random.default_rng(3)
    loss_fn = jax.jit(distill.get_feature_loss("reviewkd", teacher_name, student_name, image_shape,
                                               **options("reviewkd", teacher_name, student_name)))
    teacher = random_features(rng, common.feature_shapes(teacher_name, image_shape), 2)
    targets = teacher["preact_feats"][1:] + [teacher["pooled_feat"][:, None, None, :]]
    assert float(loss_fn(list(targets), teacher)) == 0.0
    hints = [t + jnp.asarray(rng.normal(size=t.shape), jnp.float32) for t in targets]
    got = float(loss_fn(hints, teacher))
    assert got > 0
    np.testing.assert_allclose(got, np_hcl(hints, targets), rtol=1e-5)
    np.testing.assert_allclose(float(reviewkd.hcl_loss([hints[0]], [targets[0]])), np_hcl([hints[0]], [targets[0]]),
                               rtol=1e-5)


def test_reviewkd_connector_matches_numpy_abf_chain():
    """The ABF chain (deepest first, attention fusion, nearest resizes) against a numpy forward (eval mode)."""
    teacher_name, student_name, image_shape = "vgg13", "mobilenet_v2", (28, 28, 1)  # resizes 4->3, 2->3
    settings = distill.feature_settings("reviewkd", teacher_name, student_name, image_shape,
                                        **options("reviewkd", teacher_name, student_name))
    rng = np.random.default_rng(6)
    features = random_features(rng, common.feature_shapes(student_name, image_shape), 2)
    module = reviewkd.ReviewKDConnector(settings)
    params, stats = random_variables(module, rng, features)
    got = jax.jit(lambda v, f: module.apply(v, f, train=False))({"params": params, "batch_stats": stats}, features)

    maps = [np.asarray(m, np.float64) for m in features["feats"]] + [
        np.asarray(features["pooled_feat"], np.float64)[:, None, None, :]]
    k = len(settings.in_channels)
    maps = maps[-k:]
    want, residual = [None] * k, None
    for i in reversed(range(k)):
        p, s = params[f"abf{i}"], stats[f"abf{i}"]
        x = np_bn_eval(np_conv(maps[i], p["conv1"]["kernel"]), p["bn1"], s["bn1"])
        if i < k - 1:
            y = np_nearest(residual, x.shape[1:3])
            z = 1 / (1 + np.exp(-(np_conv(np.concatenate([x, y], -1), p["att_conv"]["kernel"])
                                  + p["att_conv"]["bias"])))
            x = x * z[..., :1] + y * z[..., 1:]
        x = np_nearest(x, settings.out_shapes[i])
        want[i] = np_bn_eval(np_conv(x, p["conv2"]["kernel"], pad=(1, 1)), p["bn2"], s["bn2"])
        residual = x
    assert "att_conv" not in params[f"abf{k - 1}"]  # the deepest block does not fuse
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)


def test_hcl_against_pytorch_when_installed():
    """mdistiller's hcl_loss itself, through PyTorch, when it happens to be installed (it is not a dependency)."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(8)

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
    np.testing.assert_allclose(float(reviewkd.hcl_loss([jnp.asarray(a) for a in fs], [jnp.asarray(b) for b in ft])),
                               float(torch_hcl([nchw(torch, a) for a in fs], [nchw(torch, b) for b in ft])),
                               rtol=1e-5)
