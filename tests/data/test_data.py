"""Long-tailed subsets, groups, shots, sampling and the split files (pure numpy, fast)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ltkd_jax import data
from ltkd_jax.data import sampling


# ------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize("gamma,total", [(10, 19_573), (20, 15_907), (50, 12_608), (100, 10_847)])
def test_cifar100_lt_totals(gamma, total):
    counts = data.exponential_counts(np.full(100, 500), gamma)
    assert counts.dtype == np.int64 and counts.shape == (100,)
    assert counts.sum() == total
    assert counts[0] == 500
    assert counts.min() == counts[-1] == 500 // gamma
    assert np.all(np.diff(counts) <= 0)


@pytest.mark.parametrize("gamma,total", [(10, 39_072), (20, 31_711), (100, 21_549)])
def test_tiny_lt_totals(gamma, total):
    counts = data.exponential_counts(np.full(200, 500), gamma)
    assert counts.sum() == total and counts.min() == 500 // gamma


def _ldam_counts(img_max, cls_num, imb_factor):
    """LDAM-DRW's get_img_num_per_cls('exp'), imb_factor = 1 / gamma, written from scratch."""
    return [int(img_max * (imb_factor ** (cls_idx / (cls_num - 1.0)))) for cls_idx in range(cls_num)]


@pytest.mark.parametrize("classes,img_max", [(100, 500), (200, 500), (10, 6000), (10, 5000)])
@pytest.mark.parametrize("gamma", [1, 2, 5, 10, 20, 50, 100, 200, 256])
def test_counts_equal_ldam_formula(classes, img_max, gamma):
    if img_max < gamma:
        pytest.skip("tail would be empty")
    got = data.exponential_counts(np.full(classes, img_max), gamma)
    assert got.tolist() == _ldam_counts(img_max, classes, 1 / gamma)


def test_counts_per_class_full_counts_and_gamma_one():
    full = np.array([1300, 732, 1000, 900])
    assert data.exponential_counts(full, 1).tolist() == full.tolist()
    got = data.exponential_counts(full, 10)
    assert got.tolist() == [int(n * 0.1 ** (c / 3.0)) for c, n in enumerate(full)]
    assert data.exponential_counts([7], 50).tolist() == [7]  # one class: nothing to decay


@pytest.mark.parametrize("gamma", [0.5, 0, -3, float("nan"), float("inf"), "ten", None])
def test_bad_imbalance_factor(gamma):
    with pytest.raises(ValueError, match="imbalance_factor"):
        data.exponential_counts(np.full(10, 100), gamma)


def test_counts_rounding_to_zero_raise():
    with pytest.raises(ValueError, match=r"imbalance_factor=10 leaves class 7 with 0 examples"):
        data.exponential_counts(np.full(10, 5), 10)
    with pytest.raises(ValueError, match="class 1"):
        data.exponential_counts([10, 0, 10], 1)


@pytest.mark.parametrize("bad", [[], [[1, 2]], [3, -1], [1.5, 2]])
def test_bad_full_counts(bad):
    with pytest.raises(ValueError, match="full_counts"):
        data.exponential_counts(bad, 2)


# ---------------------------------------------------------------------------------------- selection


def _ldam_select(targets, img_num_per_cls, seed):
    """LDAM-DRW's IMBALANCECIFAR.gen_imbalanced_data, from scratch (global numpy RNG, np.unique classes)."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        targets_np = np.array(targets, dtype=np.int64)
        classes = np.unique(targets_np)
        selected = []
        for the_class, the_img_num in zip(classes, img_num_per_cls):
            idx = np.where(targets_np == the_class)[0]
            np.random.shuffle(idx)
            selected.append(idx[:the_img_num])
        return np.concatenate(selected)
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("classes,per_class,gamma,seed", [(100, 500, 100, 0), (100, 500, 10, 0),
                                                           (10, 60, 5, 3), (200, 50, 20, 0)])
def test_select_indices_matches_ldam(classes, per_class, gamma, seed):
    labels = np.random.RandomState(1234).permutation(np.repeat(np.arange(classes), per_class))
    counts = data.exponential_counts(np.bincount(labels), gamma)
    got = data.select_indices(labels, counts, seed=seed)
    want = _ldam_select(labels.tolist(), _ldam_counts(per_class, classes, 1 / gamma), seed)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64
    assert np.bincount(labels[got], minlength=classes).tolist() == counts.tolist()
    assert np.unique(got).size == got.size


def test_select_indices_is_class_ordered_and_seeded():
    labels = np.tile(np.arange(5), 40)
    counts = np.array([40, 30, 20, 10, 5])
    a = data.select_indices(labels, counts, seed=0)
    assert np.all(np.diff(labels[a]) >= 0)
    assert not np.array_equal(a, data.select_indices(labels, counts, seed=1))
    np.testing.assert_array_equal(a, data.select_indices(labels, counts, seed=0))


def test_select_indices_bad_values():
    with pytest.raises(ValueError, match=r"label 5 is outside the class range \[0, 5\)"):
        data.select_indices([0, 1, 5], [1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"label -1"):
        data.select_indices([0, -1], [1, 1])
    with pytest.raises(ValueError, match=r"counts\[1\]=3 exceeds the 1 examples of class 1"):
        data.select_indices([0, 1, 0], [1, 3])
    with pytest.raises(ValueError, match="integers"):
        data.select_indices([0.0, 1.0], [1, 1])


# ------------------------------------------------------------------------------------------- groups


@pytest.mark.parametrize("classes,sizes", [(10, [4, 3, 3]), (100, [34, 33, 33]), (200, [67, 67, 66]),
                                           (1000, [334, 333, 333])])
def test_group_sizes(classes, sizes):
    counts = data.exponential_counts(np.full(classes, 1300), 10)
    groups = data.class_groups(counts)
    assert groups.shape == (classes,) and groups.dtype == np.int32
    assert data.group_sizes(groups).tolist() == sizes
    # exponential profile: classes already sorted, so groups are contiguous label ranges
    np.testing.assert_array_equal(groups, np.repeat(np.arange(3), sizes))


def test_groups_sort_by_count_desc_ties_by_label():
    counts = np.array([5, 50, 5, 50, 20, 20])
    np.testing.assert_array_equal(data.class_groups(counts, 3), [2, 0, 2, 0, 1, 1])
    np.testing.assert_array_equal(data.class_groups(np.full(6, 7), 3), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.class_groups(counts, 1), np.zeros(6))


@pytest.mark.parametrize("num_groups", [0, -1, 7, 2.5, True])
def test_bad_num_groups(num_groups):
    with pytest.raises(ValueError, match="num_groups"):
        data.class_groups(np.arange(6, 0, -1), num_groups)


def test_shot_masks_cifar100_lt():
    masks = data.shot_masks(data.exponential_counts(np.full(100, 500), 100))
    assert {k: int(v.sum()) for k, v in masks.items()} == {"many": 35, "medium": 35, "few": 30}
    m = data.shot_masks([101, 100, 20, 19])
    assert m["many"].tolist() == [True, False, False, False]
    assert m["medium"].tolist() == [False, True, True, False]
    assert m["few"].tolist() == [False, False, False, True]


def test_unknown_dataset_one_line_error():
    with pytest.raises(ValueError) as err:
        data.get_spec("cifar10")
    msg = str(err.value)
    assert "\n" not in msg and "'cifar10'" in msg
    for name in ("cifar100", "fashion_mnist", "imagenet2012", "tiny_imagenet"):
        assert name in msg
    with pytest.raises(ValueError, match="known: cifar100"):
        data.build_dataset("mnist", "train", global_batch_size=8, process_index=0, process_count=1)


# ----------------------------------------------------------------------------------------- sampling


def test_epoch_order_is_function_of_seed_and_epoch():
    a = data.epoch_order(1000, 64, seed=3, epoch=5)
    assert a.shape == (15, 64) and np.unique(a).size == a.size and a.max() < 1000
    np.testing.assert_array_equal(a, data.epoch_order(1000, 64, seed=3, epoch=5))
    assert not np.array_equal(a, data.epoch_order(1000, 64, seed=3, epoch=6))
    assert not np.array_equal(a, data.epoch_order(1000, 64, seed=4, epoch=5))
    with pytest.raises(ValueError, match="exceeds the 10 training examples"):
        data.epoch_order(10, 64, 0, 0)
    with pytest.raises(ValueError, match="epoch"):
        data.epoch_order(100, 8, 0, -1)


def test_process_arguments():
    with pytest.raises(ValueError, match="global_batch_size=10 is not divisible by process_count=4"):
        sampling.per_process_batch_size(10, 4)
    with pytest.raises(ValueError, match=r"process_index must be in \[0, 2\), got 2"):
        sampling.resolve_processes(2, 2)
    with pytest.raises(ValueError, match="process_count must be >= 1"):
        sampling.resolve_processes(0, 0)
    assert sampling.resolve_processes(None, None) == (0, 1)  # JAX's defaults on this single CPU process


@pytest.mark.parametrize("n,g,p", [(1000, 64, 1), (1000, 64, 2), (7, 4, 2), (64, 64, 4), (1, 8, 8)])
def test_eval_layout_covers_once(n, g, p):
    seen = []
    steps = None
    for i in range(p):
        pos, mask = data.eval_layout(n, g, i, p)
        assert pos.shape == (-(-n // g), g // p) and mask.shape == pos.shape
        steps = pos.shape[0] if steps is None else steps
        assert pos.shape[0] == steps
        seen.append(pos[mask])
    seen = np.sort(np.concatenate(seen))
    np.testing.assert_array_equal(seen, np.arange(n))


# ------------------------------------------------------------------------------------- import hygiene


def test_import_does_not_pull_tensorflow_or_jax():
    code = ("import sys, ltkd_jax.data, ltkd_jax.data.longtail, ltkd_jax.data.host, ltkd_jax.data.prepare;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'jax')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


def test_write_split_files(tmp_path):
    counts = data.exponential_counts(np.full(10, 60), 10)
    labels = np.repeat(np.arange(10), 60)
    idx = data.select_indices(labels, counts)
    spec = data.get_spec("fashion_mnist")
    info = data.DatasetInfo(
        name="fashion_mnist", spec=spec, data_dir=None, num_classes=10, image_shape=(28, 28, 1),
        mean=spec.mean, std=spec.std, train_split="train", eval_split="test", imbalance_factor=10.0,
        split_seed=0, split_file=None, full_train_counts=np.full(10, 60), train_counts=counts, lt_indices=idx,
        group_ids=data.class_groups(counts), num_groups=3, num_eval=100)
    paths = data.write_split(info, tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run")) == ["class_groups.json", "lt_indices.npy"]
    loaded, groups = data.read_split(tmp_path / "run")
    np.testing.assert_array_equal(loaded, idx)
    with open(paths["class_groups"]) as f:
        assert json.load(f) == groups
    assert groups["group_ids"] == info.group_ids.tolist() and groups["group_sizes"] == [4, 3, 3]
    assert groups["train_counts"] == counts.tolist() and groups["num_train"] == int(counts.sum())
    assert groups["groups"][2] == [7, 8, 9]
    assert info.steps_per_epoch(64) == int(counts.sum()) // 64 and info.eval_steps(64) == 2
