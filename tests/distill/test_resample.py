"""Nearest resizing and adaptive average pooling against numpy implementations of PyTorch's rules (and
PyTorch itself when it is installed)."""
import jax.numpy as jnp
import numpy as np
import pytest

from distill.reference import nchw, nhwc, np_adaptive_avg_pool, np_nearest
from ltkd_jax.distill import resample


def test_adaptive_avg_pool_matches_pytorch_rule():
    # A worked 1-d case of the rule (7 -> 4: windows [0,2) [1,4) [3,6) [5,7), overlapping).
    row = np.arange(7.0).reshape(1, 7, 1, 1)
    np.testing.assert_allclose(resample.adaptive_avg_pool2d(jnp.asarray(row, jnp.float32), (4, 1))[0, :, 0, 0],
                               [0.5, 2.0, 4.0, 5.5], rtol=1e-6)
    rng = np.random.default_rng(0)
    for in_hw, out_hw in [((7, 7), (4, 4)), ((8, 8), (4, 4)), ((14, 14), (4, 4)), ((5, 3), (4, 2)),
                          ((3, 3), (2, 2)), ((7, 7), (1, 1)), ((2, 2), (1, 1)), ((4, 4), (4, 4))]:
        x = rng.normal(size=(2, *in_hw, 3))
        got = resample.adaptive_avg_pool2d(jnp.asarray(x, jnp.float32), out_hw)
        np.testing.assert_allclose(got, np_adaptive_avg_pool(x, out_hw), rtol=1e-5, atol=1e-6)


def test_resize_nearest_matches_pytorch_rule():
    np.testing.assert_array_equal(resample.nearest_indices(2, 4), [0, 0, 1, 1])
    np.testing.assert_array_equal(resample.nearest_indices(3, 7), [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(resample.nearest_indices(4, 3), [0, 1, 2])
    rng = np.random.default_rng(1)
    for in_hw, out_hw in [((1, 1), (4, 4)), ((4, 4), (7, 7)), ((7, 7), (14, 14)), ((2, 2), (3, 3)),
                          ((4, 4), (3, 3)), ((3, 5), (6, 4))]:
        x = rng.normal(size=(2, *in_hw, 2)).astype(np.float32)
        np.testing.assert_array_equal(resample.resize_nearest(jnp.asarray(x), out_hw), np_nearest(x, out_hw))


def test_resampling_against_pytorch_when_installed():
    """The same operations through PyTorch itself, when it happens to be installed (it is not a dependency)."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(8)
    for in_hw, out_hw in [((7, 7), (4, 4)), ((14, 14), (4, 4)), ((3, 3), (2, 2)), ((5, 3), (4, 2))]:
        x = rng.normal(size=(2, *in_hw, 3)).astype(np.float32)
        np.testing.assert_allclose(resample.adaptive_avg_pool2d(jnp.asarray(x), out_hw),
                                   nhwc(functional.adaptive_avg_pool2d(nchw(torch, x), out_hw)),
                                   rtol=1e-5, atol=1e-6)
    for in_hw, out_hw in [((1, 1), (4, 4)), ((4, 4), (7, 7)), ((2, 2), (3, 3)), ((4, 4), (3, 3)), ((3, 5), (6, 4))]:
        x = rng.normal(size=(2, *in_hw, 2)).astype(np.float32)
        np.testing.assert_array_equal(resample.resize_nearest(jnp.asarray(x), out_hw),
                                      nhwc(functional.interpolate(nchw(torch, x), out_hw, mode="nearest")))
