"""Our tfds builder for Tiny ImageNet, prepared offline from a small fake tiny-imagenet-200.zip."""
import zipfile

import numpy as np
import pytest

from ltkd_jax import data

tf = pytest.importorskip("tensorflow")


def _jpeg(rgb):
    return tf.io.encode_jpeg(tf.constant(rgb), quality=100).numpy()


def _fake_zip(path, wnids, train_per_class=2, val_per_class=1):
    rng = np.random.RandomState(0)
    annotations, truth = [], {}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")  # not sorted on purpose
        for w in wnids:
            for k in range(train_per_class):
                image = np.full((64, 64, 3), rng.randint(0, 256, size=3), np.uint8)
                name = f"{w}_{k}.JPEG"
                if w == wnids[0] and k == 0:  # Tiny ImageNet has some grayscale JPEGs
                    payload = tf.io.encode_jpeg(tf.constant(image[..., :1]), quality=100).numpy()
                else:
                    payload = _jpeg(image)
                zf.writestr(f"tiny-imagenet-200/train/{w}/images/{name}", payload)
                truth[name] = w
            zf.writestr(f"tiny-imagenet-200/train/{w}/{w}_boxes.txt", "")
        for j in range(len(wnids) * val_per_class):
            w = wnids[(j * 7) % len(wnids)]
            name = f"val_{j}.JPEG"
            zf.writestr(f"tiny-imagenet-200/val/images/{name}", _jpeg(np.zeros((64, 64, 3), np.uint8)))
            annotations.append(f"{name}\t{w}\t0\t0\t63\t63")
            truth[name] = w
        zf.writestr("tiny-imagenet-200/val/val_annotations.txt", "\n".join(annotations) + "\n")
        zf.writestr("tiny-imagenet-200/test/images/test_0.JPEG", _jpeg(np.zeros((64, 64, 3), np.uint8)))
    return truth


def test_tiny_imagenet_builder_from_zip(tmp_path):
    from ltkd_jax.data import prepare

    wnids = ["n%08d" % (199 - i) for i in range(200)]  # reverse order: labels must follow the *sorted* wnids
    manual = tmp_path / "manual"
    manual.mkdir()
    truth = _fake_zip(manual / "tiny-imagenet-200.zip", wnids)
    data_dir = tmp_path / "tfds"
    prepare.prepare("tiny_imagenet", data_dir=str(data_dir), manual_dir=str(manual))
    sorted_wnids = sorted(wnids)
    for split, n in (("train", 400), ("validation", 200)):
        images, labels = data.load_arrays("tiny_imagenet", split, str(data_dir))
        meta = data.split_metadata("tiny_imagenet", split, str(data_dir))
        assert images.shape == (n, 64, 64, 3) and images.dtype == np.uint8
        keys = [k.decode() for k in meta.keys]
        assert keys == sorted(keys)  # canonical order: ImageFolder's
        assert [sorted_wnids[l] for l in labels] == [truth[k] for k in keys]
    images, labels = data.load_arrays("tiny_imagenet", "train", str(data_dir))
    first = [k.decode() for k in data.split_metadata("tiny_imagenet", "train", str(data_dir)).keys].index(
        f"{wnids[0]}_0.JPEG")
    gray = images[first]  # the grayscale JPEG decodes to three equal channels
    assert np.all(gray[..., 0] == gray[..., 1]) and np.all(gray[..., 1] == gray[..., 2])
    info = data.get_info("tiny_imagenet", data_dir=str(data_dir), imbalance_factor=2)
    assert info.num_train == data.exponential_counts(np.full(200, 2), 2).sum() and info.num_eval == 200
    # once prepared, the zip is no longer needed: prepare again (caches only) without it
    (manual / "tiny-imagenet-200.zip").unlink()
    assert prepare.prepare("tiny_imagenet", data_dir=str(data_dir), manual_dir=str(manual)) == str(data_dir)
    assert data.load_arrays("tiny_imagenet", "validation", str(data_dir))[0].shape == (200, 64, 64, 3)


def test_tiny_imagenet_missing_zip(tmp_path):
    from ltkd_jax.data import prepare

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("nothing here")
    with pytest.raises(Exception, match="tiny-imagenet-200.zip"):
        prepare.prepare("tiny_imagenet", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "empty"))


def test_prepare_names_a_missing_manual_dir_and_a_data_dir_in_the_way(tmp_path, capsys):
    from ltkd_jax.data import prepare

    for name, files in (("tiny_imagenet", "tiny-imagenet-200.zip"),
                        ("imagenet2012", "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar")):
        assert prepare.main([name, f"--data_dir={tmp_path / 'tfds'}", f"--manual_dir={tmp_path / 'nowhere'}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{name}: {files} not found in manual dir {tmp_path / 'nowhere'}" in err
    (tmp_path / "half").mkdir()  # a folder with one of the two archives names the other one only
    (tmp_path / "half" / "ILSVRC2012_img_train.tar").write_bytes(b"")
    assert prepare.main(["imagenet2012", f"--data_dir={tmp_path / 'tfds'}", f"--manual_dir={tmp_path / 'half'}"]) == 2
    assert f"imagenet2012: ILSVRC2012_img_val.tar not found in manual dir {tmp_path / 'half'}" in capsys.readouterr().err
    assert not (tmp_path / "tfds").exists()  # nothing left behind
    (tmp_path / "afile").write_text("")
    assert prepare.main(["fashion_mnist", f"--data_dir={tmp_path / 'afile' / 'tfds'}"]) == 2
    assert f"cannot be created: {tmp_path / 'afile'} is a file" in capsys.readouterr().err


def test_prepare_says_at_once_that_a_download_cannot_start(tmp_path, monkeypatch):
    """Offline, tfds's downloader retries for minutes: prepare checks the host first (a proxy counts as a way
    out, since a direct connection may be blocked where the proxy gets through)."""
    from ltkd_jax.data import prepare

    asked = []
    with pytest.raises(prepare.PrepareError, match=r"cifar100: not prepared in .* and www.cs.toronto.edu cannot "
                                                   r"be reached \(no network\)"):
        prepare.prepare("cifar100", data_dir=str(tmp_path / "tfds"),
                        network_check=lambda host, port: asked.append((host, port)) or False)
    assert asked == [("www.cs.toronto.edu", 443)] and not (tmp_path / "tfds").exists()
    # a data set already prepared needs no network: only its caches are built
    built = []
    monkeypatch.setattr(prepare, "_is_prepared", lambda builder: True)
    monkeypatch.setattr(prepare, "_build_caches", lambda *args: built.append(args[0]))
    prepare.prepare("cifar100", data_dir=str(tmp_path / "tfds"),
                    network_check=lambda host, port: asked.append((host, port)) or False)
    assert built == ["cifar100"] and asked == [("www.cs.toronto.edu", 443)]
    monkeypatch.undo()

    def refused(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(prepare.socket, "create_connection", refused)
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not prepare._network_reachable("www.cs.toronto.edu", 443)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert prepare._network_reachable("www.cs.toronto.edu", 443)
