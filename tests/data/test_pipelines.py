"""The tf.data host pipeline on tfds mock data: cifar100, tiny_imagenet (200 classes, 64x64), imagenet2012
(variable sizes). Every pass over a mock split generates its examples afresh (about 1 ms each), so the cifar100
streams several tests read are collected once per module."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ltkd_jax import data

tfds = pytest.importorskip("tensorflow_datasets")

N_CIFAR = 1000   # mock examples per split (train and test yield the same mock examples); 485 kept at gamma 4
N_TINY = 2000    # 200 classes at gamma 2: fewer leave a class with no example
N_IMAGENET = 300
G = 64           # the global batch of the cifar100 training streams: 7 steps of the 485 kept examples


def _mock_cifar():
    return tfds.testing.mock_data(num_examples=N_CIFAR)


@pytest.fixture(scope="module")
def cifar_info(tmp_path_factory):
    with _mock_cifar():
        return data.get_info("cifar100", data_dir=str(tmp_path_factory.mktemp("cifar_data")), imbalance_factor=4)


@pytest.fixture
def cifar(cifar_info):
    with _mock_cifar():
        yield cifar_info


def _collect(batches):
    out = list(batches)
    assert len(out) == len(batches)
    return out


def _cat(batches, key):
    return np.concatenate([b[key] for b in batches])


def _train(info, **kw):
    return data.build_dataset(info, "train", **{"global_batch_size": G, "seed": 7, "epoch": 2, "process_index": 0,
                                                "process_count": 1, **kw})


@pytest.fixture(scope="module")
def stream(cifar_info):
    """(Batches, its batches): epoch 2 of seed 7 on one process, read by several tests."""
    with _mock_cifar():
        batches = _train(cifar_info)
        return batches, _collect(batches)


@pytest.fixture(scope="module")
def eval_two_processes(cifar_info):
    """The test split evaluated by two processes at a global batch of 300: [(Batches, its batches)] * 2."""
    with _mock_cifar():
        parts = [data.build_dataset(cifar_info, "eval", global_batch_size=300, process_index=i, process_count=2)
                 for i in range(2)]
        return [(batches, _collect(batches)) for batches in parts]


def test_cifar_info_is_ldam_subset(cifar):
    meta = data.split_metadata("cifar100", "train", cifar.data_dir)
    full = np.bincount(meta.labels, minlength=100)
    assert cifar.num_classes == 100 and cifar.image_shape == (32, 32, 3) and cifar.num_eval == N_CIFAR
    np.testing.assert_array_equal(cifar.full_train_counts, full)
    np.testing.assert_array_equal(cifar.train_counts, data.exponential_counts(full, 4))
    np.testing.assert_array_equal(cifar.lt_indices, data.select_indices(meta.labels, cifar.train_counts, seed=0))
    assert cifar.group_sizes.tolist() == [34, 33, 33]
    assert cifar.num_train == cifar.train_counts.sum()
    # canonical order = sorted tfds "id" (the original CIFAR file order for the real data)
    assert np.all(meta.keys[:-1] <= meta.keys[1:])


def test_train_batches_shapes_and_lt_histogram(cifar, stream):
    batches, out = stream
    assert batches.num_steps == cifar.num_train // G == cifar.steps_per_epoch(G)
    for b in out:
        assert set(b) == {"image", "label", "index"}
        assert b["image"].shape == (G, 32, 32, 3) and b["image"].dtype == np.uint8
        assert b["label"].shape == (G,) and b["label"].dtype == np.int32 and b["index"].dtype == np.int32
    idx = _cat(out, "index")
    assert np.unique(idx).size == idx.size == batches.num_steps * G
    assert np.isin(idx, cifar.lt_indices).all()
    labels = data.split_metadata("cifar100", "train", cifar.data_dir).labels
    np.testing.assert_array_equal(_cat(out, "label"), labels[idx])
    dropped = np.setdiff1d(cifar.lt_indices, idx)
    assert dropped.size == cifar.num_train % G
    hist = np.bincount(_cat(out, "label"), minlength=100)
    np.testing.assert_array_equal(hist + np.bincount(labels[dropped], minlength=100), cifar.train_counts)


def test_eval_pixels_are_the_device_paths_arrays(cifar, eval_two_processes):
    """The host pipeline's evaluation pixels and labels are those of load_arrays (the device-resident path)."""
    images, labels = data.load_arrays("cifar100", "test", cifar.data_dir)
    assert images.dtype == np.uint8 and images.shape == (N_CIFAR, 32, 32, 3) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, data.split_metadata("cifar100", "test", cifar.data_dir).labels)
    out = [b for _, part in eval_two_processes for b in part]
    m = _cat(out, "mask")
    idx, img = _cat(out, "index")[m], _cat(out, "image")[m]
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img, images[idx])  # the stored pixels; the device normalises
    np.testing.assert_array_equal(_cat(out, "label")[m], labels[idx])


def test_eval_exact_coverage_two_processes(cifar, eval_two_processes):
    g, p = 300, 2                             # 1000 examples: 4 steps, 200 padded slots
    seen, steps = [], []
    for batches, out in eval_two_processes:
        steps.append(len(out))
        for b in out:
            assert b["image"].shape == (g // p, 32, 32, 3) and b["mask"].dtype == np.bool_
            pad = ~b["mask"]
            assert np.all(b["index"][pad] == -1) and np.all(b["label"][pad] == 0) and np.all(b["image"][pad] == 0)
            seen.append(b["index"][b["mask"]])
    assert steps == [4, 4] == [cifar.eval_steps(g)] * 2
    seen = np.concatenate(seen)
    assert seen.size == N_CIFAR
    np.testing.assert_array_equal(np.sort(seen), np.arange(N_CIFAR))


def test_eval_pass_over_lt_training_subset(cifar):
    batches = data.build_dataset(cifar, "train", training=False, global_batch_size=100, process_index=0,
                                 process_count=1)
    assert not batches.training and len(batches) == -(-cifar.num_train // 100)
    out = _collect(batches)
    np.testing.assert_array_equal(np.sort(_cat(out, "index")[_cat(out, "mask")]), np.sort(cifar.lt_indices))
    with pytest.raises(ValueError, match="training streams read the 'train' split"):
        data.build_dataset(cifar, "test", training=True, global_batch_size=64, process_index=0, process_count=1)


def test_resume_gives_identical_stream(cifar, stream):
    uninterrupted = None
    for epoch in (1, 2):                      # an uninterrupted run's epochs (1 and) 2
        out = _collect(_train(cifar, epoch=epoch))
        if epoch == 2:
            uninterrupted = out
    _, resumed = stream                       # a fresh start at epoch 2
    for a, b in zip(uninterrupted, resumed, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    other = _collect(_train(cifar, epoch=3))
    assert not np.array_equal(_cat(other, "index"), _cat(resumed, "index"))
    tail = _collect(_train(cifar, start_step=5))
    assert len(tail) == len(resumed) - 5
    for a, b in zip(tail, resumed[5:], strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_two_processes_split_the_global_batch(cifar, stream):
    """Process p of 2 streams the examples of columns [32 p, 32 (p + 1)) of every global batch of the epoch
    order, each augmented exactly as a single process augments it."""
    _, single = stream
    order = data.epoch_order(cifar.num_train, G, seed=7, epoch=2)
    by_index = {int(i): (image, label) for b in single for i, image, label in zip(b["index"], b["image"], b["label"])}
    for i in range(2):
        part = _collect(_train(cifar, process_index=i, process_count=2))
        assert len(part) == len(single) and all(b["image"].shape == (G // 2, 32, 32, 3) for b in part)
        share = cifar.lt_indices[order[:, i * G // 2:(i + 1) * G // 2]].reshape(-1)
        np.testing.assert_array_equal(np.sort(_cat(part, "index")), np.sort(share))
        for b in part:  # same augmentation, whatever the number of processes
            for index, image, label in zip(b["index"], b["image"], b["label"]):
                np.testing.assert_array_equal(image, by_index[int(index)][0])
                assert label == by_index[int(index)][1]


def test_batch_and_process_errors(cifar):
    with pytest.raises(ValueError, match="global_batch_size=63 is not divisible by process_count=2"):
        data.build_dataset(cifar, "train", global_batch_size=63, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="exceeds the"):
        data.build_dataset(cifar, "train", global_batch_size=100_000, process_index=0, process_count=1)
    with pytest.raises(ValueError, match="pass them to get_info"):
        data.build_dataset(cifar, "train", global_batch_size=64, imbalance_factor=10)
    with pytest.raises(ValueError, match="image_size=64"):
        data.get_info("cifar100", data_dir=cifar.data_dir, image_size=64)


def test_write_split_beside_run(cifar, tmp_path):
    data.write_split(cifar, tmp_path)
    idx, groups = data.read_split(tmp_path)
    np.testing.assert_array_equal(idx, cifar.lt_indices)
    assert groups["dataset"] == "cifar100" and groups["imbalance_factor"] == 4.0 and len(groups["group_ids"]) == 100


def test_device_path_data_reads_without_tensorflow(cifar):
    """Once the caches exist, the device-resident path's arrays (get_info + load_arrays, as experiment.load_data
    reads them) need neither TensorFlow nor tfds (nor the mock)."""
    data.load_arrays("cifar100", "train", cifar.data_dir)
    data.load_arrays("cifar100", "test", cifar.data_dir)
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from ltkd_jax import data
        info = data.get_info("cifar100", data_dir={cifar.data_dir!r}, imbalance_factor=4)
        images, labels = data.load_arrays("cifar100", info.train_split, info.data_dir)
        assert images[info.lt_indices].shape == ({cifar.num_train}, 32, 32, 3) == (info.num_train, 32, 32, 3)
        assert np.bincount(labels[info.lt_indices], minlength=100).tolist() == info.train_counts.tolist()
        assert data.load_arrays("cifar100", info.eval_split, info.data_dir)[0].shape[0] == {N_CIFAR}
        bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_datasets")]
        assert not bad, bad
    """)
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


# --------------------------------------------------------------------------------------- tiny_imagenet


def test_tiny_imagenet_mock(tmp_path):
    d = str(tmp_path)
    with tfds.testing.mock_data(num_examples=N_TINY):
        info = data.get_info("tiny_imagenet", data_dir=d, imbalance_factor=2)
        assert info.num_classes == 200 and info.image_shape == (64, 64, 3)
        assert info.group_sizes.tolist() == [67, 67, 66] and info.eval_split == "validation"
        g = 100
        out = _collect(data.build_dataset(info, "train", global_batch_size=g, seed=0, epoch=0, process_index=0,
                                          process_count=1))
        assert out[0]["image"].shape == (g, 64, 64, 3) and out[0]["image"].dtype == np.uint8
        labels = data.split_metadata("tiny_imagenet", "train", d).labels
        idx = _cat(out, "index")
        dropped = np.setdiff1d(info.lt_indices, idx)
        hist = np.bincount(_cat(out, "label"), minlength=200) + np.bincount(labels[dropped], minlength=200)
        np.testing.assert_array_equal(hist, info.train_counts)
        ev = _collect(data.build_dataset(info, "eval", global_batch_size=g * 3, process_index=1, process_count=3))
        assert len(ev) == info.eval_steps(g * 3) == 7 and ev[0]["image"].shape == (g, 64, 64, 3)


# ---------------------------------------------------------------------------------------- imagenet2012


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("imagenet_data"))


def _oltr_file(path, meta, rows):
    with open(path, "w") as f:
        for i in rows:
            wnid = "n%08d" % meta.labels[i]
            f.write(f"train/{wnid}/{meta.keys[i].decode()} {meta.labels[i]}\n")


def test_imagenet_split_file_and_variable_sizes(imagenet_dir, tmp_path):
    with tfds.testing.mock_data(num_examples=N_IMAGENET):
        ds = tfds.load("imagenet2012", split="train", data_dir=imagenet_dir)
        sizes = {tuple(ex["image"].shape.as_list()) for ex in ds.take(8)}
        assert len(sizes) > 1  # the mock really has variable image sizes
        meta = data.split_metadata("imagenet2012", "train", imagenet_dir)
        ok = [i for i in range(N_IMAGENET) if meta.keys[i].strip() == meta.keys[i]]
        rows = ok[::2]
        _oltr_file(tmp_path / "ImageNet_LT_train.txt", meta, rows)
        info = data.get_info("imagenet2012", data_dir=imagenet_dir, split_file=str(tmp_path / "ImageNet_LT_train.txt"),
                             image_size=32)
        np.testing.assert_array_equal(info.lt_indices, rows)
        assert info.image_shape == (32, 32, 3) and info.group_sizes.tolist() == [334, 333, 333]
        np.testing.assert_array_equal(info.train_counts, np.bincount(meta.labels[rows], minlength=1000))
        g = 16
        out = _collect(data.build_dataset(info, "train", global_batch_size=g, seed=0, epoch=0, process_index=0,
                                          process_count=1))
        assert len(out) == len(rows) // g
        for b in out:
            assert b["image"].shape == (g, 32, 32, 3) and b["image"].dtype == np.uint8
            np.testing.assert_array_equal(b["label"], meta.labels[b["index"]])
        again = _collect(data.build_dataset(info, "train", global_batch_size=g, seed=0, epoch=0, process_index=0,
                                            process_count=1))
        for a, b in zip(out, again, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
        seen = []
        for i in range(2):
            ev = _collect(data.build_dataset(info, "eval", global_batch_size=128, process_index=i, process_count=2))
            assert len(ev) == 3 and ev[0]["image"].shape == (64, 32, 32, 3)
            seen += [b["index"][b["mask"]] for b in ev]
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(N_IMAGENET))
        with pytest.raises(ValueError, match="'imagenet2012' does not fit in memory; use the tf.data pipeline"):
            data.load_arrays("imagenet2012", "train", imagenet_dir)  # no device-resident ImageNet


def test_imagenet_split_file_errors(imagenet_dir, tmp_path):
    with tfds.testing.mock_data(num_examples=N_IMAGENET):
        meta = data.split_metadata("imagenet2012", "train", imagenet_dir)
        ok = [i for i in range(N_IMAGENET) if meta.keys[i].strip() == meta.keys[i]]
        bad = tmp_path / "missing.txt"
        bad.write_text("train/n01440764/n01440764_does_not_exist.JPEG 0\n")
        with pytest.raises(ValueError, match=r"missing.txt:1: n01440764_does_not_exist.JPEG is not in"):
            data.get_info("imagenet2012", data_dir=imagenet_dir, split_file=str(bad))
        wrong = tmp_path / "wrong.txt"
        i = ok[0]
        wrong.write_text(f"train/x/{meta.keys[i].decode()} {(meta.labels[i] + 1) % 1000}\n")
        with pytest.raises(ValueError, match="in the file but"):
            data.get_info("imagenet2012", data_dir=imagenet_dir, split_file=str(wrong))
        with pytest.raises(ValueError, match="not both"):
            data.get_info("imagenet2012", data_dir=imagenet_dir, split_file=str(wrong), imbalance_factor=5)


def test_tensorflow_never_sees_an_accelerator():
    tf = data.hide_accelerators_from_tf()
    assert tf.config.get_visible_devices("GPU") == [] and tf.config.get_visible_devices("TPU") == []
    assert data.hide_accelerators_from_tf() is tf  # idempotent
