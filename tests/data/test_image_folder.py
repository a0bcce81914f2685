"""A folder of images as a data set: real Fashion-MNIST images from Debian's package written as PNG files with a
long tail of our own (not the exponential profile) train end to end through the folder path (teacher, then a
population), and the three commands of the README (train, export, predict) work on it; each mistake in a folder
is one line naming it, with nothing written."""
import gzip
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ltkd_jax import data, experiment, recipes, run_dir
from ltkd_jax.data import folder, longtail
from ltkd_jax.data.prepare import fashion_mnist as fm
from ltkd_jax.tools import export, predict

HAVE_DEBIAN = all(os.path.isfile(os.path.join(fm.DEBIAN_DIR, n)) for n in fm.FILE_NAMES)

NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
# Fashion-MNIST labels 0-9 as folder names that sort in label order; a step profile of 4 head, 3 medium, 3 tail.
FOLDERS = tuple(f"{label}_{name}" for label, name in enumerate(NAMES))
TRAIN_COUNTS = np.array([60, 60, 60, 60, 24, 24, 24, 8, 8, 8])
TEST_PER_CLASS = 12


def write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(image))


def write_folder(root, images, labels, counts, split):
    """The first `counts[c]` images of each class as `root/split/<class folder>/<index>.png`; their indices."""
    chosen = np.concatenate([np.flatnonzero(labels == c)[:count] for c, count in enumerate(counts)])
    for index in chosen:
        write_png(os.path.join(root, split, FOLDERS[labels[index]], f"{index:05d}.png"), images[index])
    return chosen


def read_idx(split):
    """Debian's Fashion-MNIST split as (uint8 images (N, 28, 28, 1), labels), read from its IDX files here (the
    format: a big-endian header, then the bytes), independently of the package's tfds path."""
    def payload(name, header_bytes):
        with gzip.open(os.path.join(fm.DEBIAN_DIR, f"{split}-{name}-idx{1 if name == 'labels' else 3}-ubyte.gz")) as f:
            return np.frombuffer(f.read()[header_bytes:], np.uint8)
    labels = payload("labels", 8)
    return payload("images", 16).reshape(len(labels), 28, 28, 1), labels


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory):
    """(folder, the Debian arrays, train and test indices written, work dir): PNG files of Debian's images."""
    if not HAVE_DEBIAN:
        pytest.skip(f"{fm.DEBIAN_DIR} missing: apt-get install {fm.APT_PACKAGE}")
    tmp = tmp_path_factory.mktemp("folder")
    root = str(tmp / "clothes")
    arrays = {"train": read_idx("train"), "test": read_idx("t10k")}
    train = write_folder(root, *arrays["train"], TRAIN_COUNTS, "train")
    test = write_folder(root, *arrays["test"], [TEST_PER_CLASS] * 10, "test")
    return root, arrays, train, test, str(tmp)


def folder_config(root, work, method="ltkd", **overrides):
    config = recipes.build_config("image_folder", f"{method},demo_resnet_teacher-demo_resnet_student")
    config.dataset.path, config.dataset.image_size, config.dataset.data_dir = root, 28, os.path.join(work, "cache")
    config.num_epochs, config.lr_decay_epochs, config.warmup_epochs = 2, (1,), 1
    config.batch_size, config.eval_batch_size, config.log_every_steps = 32, 128, 5
    config.update_from_flattened_dict(overrides)
    return config


def test_counts_groups_names_and_pixels_of_a_folder(fashion_folder):
    root, arrays, train, test, work = fashion_folder
    config = folder_config(root, work)
    info = experiment.dataset_info(config)
    assert info.class_names == FOLDERS
    assert info.train_counts.tolist() == TRAIN_COUNTS.tolist() and info.imbalance_factor is None
    assert info.group_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]  # thirds of 10 classes: 4 / 3 / 3
    assert info.image_shape == (28, 28, 1) and info.num_eval == 10 * TEST_PER_CLASS
    # The registry path groups the same images' counts the same way.
    registry_counts = np.bincount(arrays["train"][1][train], minlength=10)
    assert longtail.class_groups(registry_counts, 3).tolist() == info.group_ids.tolist()
    # The caches hold the very pixels (PNG is lossless), in canonical order: sorted relative paths.
    images, labels = data.load_arrays(info.name, "train", info.data_dir)
    np.testing.assert_array_equal(images, arrays["train"][0][train])
    np.testing.assert_array_equal(labels, arrays["train"][1][train])
    # The mean and std are the training images' own.
    pixels = arrays["train"][0][train].astype(np.float64) / 255
    assert info.mean == pytest.approx((pixels.mean(),), abs=1e-9) and info.std == pytest.approx((pixels.std(),),
                                                                                                  abs=1e-9)
    # Shot buckets: 60 and 24 images are medium-shot (20-100), 8 few-shot; no many-shot class, no empty group.
    shots = experiment.dataset_info(folder_config(root, work, **{"dataset.groups": "shots"}))
    assert shots.group_ids.tolist() == [0] * 7 + [1] * 3 and shots.num_groups == 2
    # A γ subsamples the folder as it does a registry data set.
    thinned = experiment.dataset_info(folder_config(root, work, **{"dataset.imbalance_factor": 3.0}))
    assert thinned.train_counts.tolist() == longtail.exponential_counts(TRAIN_COUNTS, 3.0).tolist()


def test_train_export_and_predict_a_folder(fashion_folder, tmp_path, capsys):
    """The README's three steps on the folder (training as `main` runs it): a teacher and a student,kd,ltkd
    population, each member's report naming the classes; the LTKD student exported as a SavedModel, a float and an int8 TFLite model, each evaluated
    on the test split; predictions from the run and from an artefact agree."""
    root, _, _, test, work = fashion_folder
    workdir = str(tmp_path / "runs" / "mine")
    experiment.run(folder_config(root, work, population="student,kd,ltkd"), workdir)
    for member in ("student", "kd", "ltkd"):
        report = open(os.path.join(workdir, member, "report.md")).read()
        assert "| 9 9_boot | 8 | tail |" in report
        groups = json.load(open(os.path.join(workdir, member, "class_groups.json")))
        assert groups["class_names"] == list(FOLDERS) and groups["train_counts"] == TRAIN_COUNTS.tolist()
    teachers = os.listdir(os.path.join(workdir, "..", "teachers"))  # named by the folder's fingerprint
    assert len(teachers) == 1 and teachers[0].startswith("image_folder_clothes_") and teachers[0].endswith("_natural")

    student = os.path.join(workdir, "ltkd")
    out = tmp_path / "exported"
    evaluations = {}
    for fmt, quantize, path in (("saved_model", "none", out / "saved_model"), ("tflite", "none", out / "m.tflite"),
                                ("tflite", "int8", out / "m_int8.tflite")):
        assert export.main([f"--workdir={student}", f"--format={fmt}", f"--quantize={quantize}",
                            f"--out={path}"]) == 0
        evaluations[path.name] = json.loads((out / f"{path.name}.evaluation.json").read_text())
    assert "| tflite int8 |" in capsys.readouterr().out
    last = [r for r in run_dir.read_metrics(student) if r["split"] == "test"][-1]
    for name, evaluation in evaluations.items():
        # The JAX model the export evaluates is the run's: its accuracies are the run's last test record's.
        for key in ("accuracy", "accuracy_head", "accuracy_medium", "accuracy_tail"):
            assert evaluation["jax"][key] == pytest.approx(last[key], abs=1e-9), (name, key)
        assert evaluation["bytes"] > 0 and set(evaluation["artefact"]) >= {"accuracy_tail", "per_class_accuracy"}
    for name in ("saved_model", "m.tflite"):  # float artefacts: the same logits (tolerance as for every family)
        assert evaluations[name]["max_abs_logit_difference"] < 1e-3 and evaluations[name]["argmax_agreement"] == 100
    assert (out / "m.labels.txt").read_text().splitlines() == list(FOLDERS)
    assert (out / "m_int8.labels.txt").read_text().splitlines() == list(FOLDERS)
    assert (out / "saved_model" / "labels.txt").read_text().splitlines() == list(FOLDERS)
    assert evaluations["m_int8.tflite"]["bytes"] < evaluations["m.tflite"]["bytes"]
    assert not [p for p in out.iterdir() if p.name.startswith(".export_")]  # no staging left
    # Exporting again replaces the SavedModel; a directory that is not one is refused in one line.
    assert export.main([f"--workdir={student}", "--format=saved_model", f"--out={out / 'saved_model'}"]) == 0
    (out / "notes").mkdir()
    capsys.readouterr()
    assert export.main([f"--workdir={student}", "--format=saved_model", f"--out={out / 'notes'}"]) == 1
    assert "is a directory that is not a SavedModel" in capsys.readouterr().err

    images = [os.path.join(root, "test", FOLDERS[c], sorted(os.listdir(os.path.join(root, "test", FOLDERS[c])))[0])
              for c in (0, 9)]
    capsys.readouterr()
    assert predict.main([f"--workdir={student}", "--top_k=2", *images]) == 0
    from_run = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert predict.main([f"--model={out / 'm.tflite'}", "--top_k=2", *images]) == 0
    from_tflite = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[0] for row in from_run] == images and all(len(row) == 5 for row in from_run)
    assert [row[1::2] for row in from_run] == [row[1::2] for row in from_tflite]
    for run_row, tflite_row in zip(from_run, from_tflite):
        assert float(run_row[2]) == pytest.approx(float(tflite_row[2]), abs=1e-3)
        assert set(run_row[1::2]) <= set(FOLDERS)


def _folder(tmp_path, layout):
    """A small folder: {relative path: image array or bytes}."""
    for relative, content in layout.items():
        path = tmp_path / "f" / relative
        if isinstance(content, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        else:
            write_png(str(path), content)
    return str(tmp_path / "f")


GRAY = np.full((10, 12, 1), 90, np.uint8)


@pytest.mark.parametrize("layout,named", [
    ({"test/a/1.png": GRAY}, "no train/ directory"),
    ({"train/a/1.png": GRAY, "train/b/notes.txt": b"x", "test/a/1.png": GRAY}, "train/b holds no image files"),
    ({"train/a/1.png": GRAY, "test/a/1.png": GRAY}, "1 class folder"),
    ({"train/a/1.png": GRAY, "train/b/1.png": GRAY, "test/c/1.png": GRAY}, "class 'c' is not among"),
    ({"train/a/1.png": GRAY, "train/b/1.png": GRAY}, "neither a test/ nor a val/"),
    ({"train/a/1.png": GRAY, "train/b/2.png": b"not a png", "val/a/1.png": GRAY}, "train/b/2.png cannot be read"),
    ({"train/a/1.png": GRAY, "train/b/1.png": GRAY, "test/a/1.png": GRAY, "test/b/1.png": GRAY},
     "dataset.num_groups=3 is more than the folder's 2 classes"),
])
def test_a_broken_folder_is_one_line_and_nothing_is_written(tmp_path, layout, named):
    root = _folder(tmp_path, layout)
    config = folder_config(root, str(tmp_path), **{"dataset.num_groups": 3 if "num_groups" in named else 2})
    with pytest.raises(ValueError, match=named) as error:
        experiment.run(config, str(tmp_path / "runs" / "mine"))
    assert len(str(error.value).splitlines()) == 1
    assert not (tmp_path / "runs").exists()
    cached = [p.name for p in (tmp_path / "cache").rglob("*")] if (tmp_path / "cache").exists() else []
    assert "images.npy" not in cached and not [name for name in cached if name.startswith(".")]


def test_grey_and_colour_files_of_any_size_read_as_the_model_takes_them(tmp_path):
    colour = np.zeros((40, 30, 3), np.uint8)
    colour[..., 0] = 200
    root = _folder(tmp_path, {"train/a/1.png": GRAY, "train/b/1.png": colour, "test/a/1.png": GRAY})
    name = data.register_normalized(folder.folder_spec(root, 16), str(tmp_path / "cache"))
    spec = data.get_spec(name)
    assert spec.image_shape == (16, 16, 3) and spec.class_names == ("a", "b")  # one colour class: RGB
    images, labels = data.load_arrays(name, "train", str(tmp_path / "cache"))
    assert images.shape == (2, 16, 16, 3) and labels.tolist() == [0, 1]
    np.testing.assert_array_equal(images[0], 90)  # grey to RGB: every channel the grey value
    assert np.abs(images[1, ..., 0].astype(int) - 200).max() <= 1 and images[1, ..., 1:].max() == 0
    with pytest.raises(ValueError, match="dataset.path is empty"):
        experiment.validate(folder_config("", str(tmp_path)))


def test_any_tfds_image_data_set_by_name(tmp_path):
    """`tfds:<name>` (configs/image_folder.py's recipe): classes, counts and pixels from tfds (here its mock data),
    converted to the image size asked; a name that is no data set, or none with image and label features, is one
    line naming it, with nothing written."""
    config = recipes.build_config("tfds:cifar10", "kd,demo_resnet_teacher-demo_resnet_student")
    config.dataset.name, config.dataset.data_dir = "tfds:cifar10", str(tmp_path / "cache")
    with tfds.testing.mock_data(num_examples=48):
        stored = list(tfds.as_numpy(tfds.load("cifar10", split="train", data_dir=str(tmp_path / "cache"),
                                              shuffle_files=False)))  # (batch_size=-1 aborts under the mock)
        images, labels = np.stack([ex["image"] for ex in stored]), np.array([ex["label"] for ex in stored])
        config.dataset.image_size = 32  # cifar10's own size: the very pixels
        data_32, info = experiment.load_data(config)
        np.testing.assert_array_equal(data_32.train_images, images)
        assert info.train_counts.tolist() == np.bincount(labels, minlength=10).tolist()
        assert info.mean == pytest.approx(tuple(images.reshape(-1, 3).mean(0) / 255), abs=1e-9)
        config.dataset.image_size = 16
        data_16, info_16 = experiment.load_data(config)
    assert data_16.train_images.shape == (48, 16, 16, 3) and info_16.name != info.name
    assert np.abs(data_16.train_images.mean() - images.mean()) < 2  # resized with antialiasing: the same light
    for name, named in (("tfds:no_such_set", "tfds has no data set 'no_such_set'"),
                        ("tfds:imdb_reviews", "needs features 'image' and 'label'")):
        config.dataset.name = name
        with pytest.raises(ValueError, match=named):
            experiment.run(config, str(tmp_path / "runs" / "x"))
    assert not (tmp_path / "runs").exists()


def test_a_changed_folder_is_another_data_set_and_shot_groups_export(fashion_folder, tmp_path, capsys):
    """A class with no test images has no accuracy (null, "–"); a run of two shot groups exports; an image added
    to the folder gives it another fingerprint: a new teacher, and the run directory of the old one is refused in
    one line (so is its export)."""
    root, arrays, train, _, work = fashion_folder
    copy = str(tmp_path / "clothes")
    import shutil
    shutil.copytree(root, copy)
    shutil.rmtree(os.path.join(copy, "test", FOLDERS[9]))  # no test image of class 9
    config = folder_config(copy, work, method="student", num_epochs=1, **{"dataset.groups": "shots"})
    workdir = str(tmp_path / "runs" / "shots")
    records = experiment.run(config, workdir)
    last = [r for r in records if r["split"] == "test"][-1]
    assert last["per_class_accuracy"][9] is None and last["per_class_accuracy"][0] is not None
    assert "| 9 9_boot | 8 | group1 | – |" in open(os.path.join(workdir, "report.md")).read()
    assert export.main([f"--workdir={workdir}", "--format=tflite", f"--out={tmp_path / 's.tflite'}"]) == 0
    evaluation = json.loads((tmp_path / "s.tflite.evaluation.json").read_text())
    assert evaluation["num_groups"] == 2 and evaluation["jax"]["per_class_accuracy"][9] is None
    assert "| model | group0 | group1 | all |" in capsys.readouterr().out
    # A run that has not finished (its config asks for a second epoch) is not exported.
    unfinished = tmp_path / "runs" / "unfinished"
    shutil.copytree(workdir, unfinished)
    stored = json.loads((unfinished / "config.json").read_text())
    (unfinished / "config.json").write_text(json.dumps({**stored, "num_epochs": 2}))
    assert export.main([f"--workdir={unfinished}", "--format=tflite", f"--out={tmp_path / 'u.tflite'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not finished" in err[0] and not (tmp_path / "u.tflite").exists()
    write_png(os.path.join(copy, "train", FOLDERS[0], "extra.png"), arrays["train"][0][train[0]])
    with pytest.raises(ValueError, match="holds a run of another config .data"):
        experiment.run(config, workdir)
    assert export.main([f"--workdir={workdir}", "--format=tflite", f"--out={tmp_path / 't.tflite'}"]) == 1
    assert "changed since it was trained" in capsys.readouterr().err and not (tmp_path / "t.tflite").exists()
