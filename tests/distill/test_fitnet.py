"""FitNet: the loss against a numpy MSE, ConvReg's three convs against numpy references of the PyTorch layers
(and PyTorch's ConvTranspose2d itself when it is installed), and PyTorch's default init bounds."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distill.reference import (nchw, nhwc, np_bn_eval, np_conv, np_conv_transpose, np_mse, random_features,
                               random_variables)
from ltkd_jax import distill
from ltkd_jax.distill import common, fitnet


def test_fitnet_loss_zero_on_match_and_mse_otherwise():
    rng = np.random.default_rng(2)
    loss_fn = distill.get_feature_loss("fitnet", "resnet32x4", "shufflenet_v1", (32, 32, 3), hint_layer=2)
    teacher = random_features(rng, common.feature_shapes("resnet32x4", (32, 32, 3)), 2)
    target = teacher["feats"][2]
    assert float(loss_fn(target, teacher)) == 0.0
    hints = jnp.asarray(rng.normal(size=target.shape), jnp.float32)
    got = float(loss_fn(hints, teacher))
    assert got > 0
    np.testing.assert_allclose(got, np_mse(hints, target), rtol=1e-5)
    with pytest.raises(ValueError, match="differs from the teacher"):
        loss_fn(hints[:, :8], teacher)


@pytest.mark.parametrize("student_hw,teacher_hw,kind", [((8, 8), (4, 4), "stride2"), ((4, 4), (8, 8), "transposed"),
                                                        ((6, 6), (4, 4), "kxk"), ((5, 5), (5, 5), "kxk")])
def test_convreg_matches_pytorch(student_hw, teacher_hw, kind):
    rng = np.random.default_rng(5)
    c_in, c_out = 3, 4
    module = fitnet.ConvReg(student_hw, teacher_hw, c_out)
    x = rng.normal(size=(2, *student_hw, c_in)).astype(np.float32)
    params, stats = random_variables(module, rng, jnp.asarray(x))
    got = jax.jit(lambda v, x: module.apply(v, x, train=False))({"params": params, "batch_stats": stats}, x)
    kernel, bias = params["conv"]["kernel"].astype(np.float64), params["conv"]["bias"]
    if kind == "stride2":
        assert kernel.shape[:2] == (3, 3)
        conv = np_conv(x, kernel, stride=2, pad=(1, 1))
    elif kind == "transposed":
        assert kernel.shape[:2] == (4, 4)
        # flax's transposed kernel is PyTorch's flipped spatially, (in, out) in the same order.
        weight = np.transpose(kernel[::-1, ::-1], (2, 3, 0, 1))
        conv = np_conv_transpose(x, weight, stride=2, pad=1)
    else:
        assert kernel.shape[:2] == (1 + student_hw[0] - teacher_hw[0],) * 2
        conv = np_conv(x, kernel)
    want = np.maximum(np_bn_eval(conv + bias, params["bn"], stats["bn"]), 0)
    assert got.shape == (2, *teacher_hw, c_out)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_convreg_pytorch_default_init_bounds():
    for student_hw, teacher_hw, fan_in in [((8, 8), (4, 4), 16 * 9), ((4, 4), (8, 8), 32 * 16),
                                           ((6, 6), (4, 4), 16 * 9)]:
        module = fitnet.ConvReg(student_hw, teacher_hw, 32)
        params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, *student_hw, 16)))["params"]["conv"]
        bound = 1 / np.sqrt(fan_in)  # transposed: PyTorch's fan-in is out_channels * k * k
        for leaf in (params["kernel"], params["bias"]):
            assert float(jnp.abs(leaf).max()) <= bound and float(jnp.abs(leaf).max()) > 0.8 * bound


def test_transposed_convreg_against_pytorch_when_installed():
    """ConvReg's transposed conv through PyTorch's ConvTranspose2d, when PyTorch is installed (not a dependency)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    module = fitnet.ConvReg((4, 4), (8, 8), 5)
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    params, stats = random_variables(module, rng, jnp.asarray(x))
    got = module.apply({"params": params, "batch_stats": stats}, jnp.asarray(x), train=False)
    deconv = torch.nn.ConvTranspose2d(3, 5, kernel_size=4, stride=2, padding=1)
    with torch.no_grad():
        deconv.weight.copy_(torch.from_numpy(np.ascontiguousarray(
            np.transpose(params["conv"]["kernel"][::-1, ::-1], (2, 3, 0, 1)))))
        deconv.bias.copy_(torch.from_numpy(params["conv"]["bias"]))
        want = np.maximum(np_bn_eval(nhwc(deconv(nchw(torch, x))), params["bn"], stats["bn"]), 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
