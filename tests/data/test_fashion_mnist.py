"""Offline Fashion-MNIST: gzip header restoration, checksums, prepare (real Debian files when installed)."""
import gzip
import hashlib
import os
import shutil
import struct

import numpy as np
import pytest

from ltkd_jax import data
from ltkd_jax.data.prepare import fashion_mnist as fm
from ltkd_jax.data import prepare

HAVE_DEBIAN = all(os.path.isfile(os.path.join(fm.DEBIAN_DIR, n)) for n in fm.FILE_NAMES)
needs_debian = pytest.mark.skipif(not HAVE_DEBIAN, reason=f"{fm.DEBIAN_DIR} missing: apt-get install "
                                                          f"{fm.APT_PACKAGE}")


def _debian_style(payload_gz: bytes, mtime=1591372800) -> bytes:
    """What Debian's packaging did: FNAME dropped, MTIME changed, XFL 0 / OS 3 kept, payload untouched."""
    return b"\x1f\x8b\x08\x00" + struct.pack("<I", mtime) + b"\x00\x03" + payload_gz


def test_restore_gzip_header_synthetic():
    raw = b"IDX-ish content " * 100
    upstream = gzip.compress(raw, mtime=1504176606)
    start = fm._payload_offset(upstream, "x")  # Python writes no FNAME through gzip.compress
    payload = upstream[start:]
    restored = fm.restore_gzip(_debian_style(payload), "train-labels-idx1-ubyte.gz")
    assert restored[:10] == b"\x1f\x8b\x08\x08" + struct.pack("<I", 1504176606) + b"\x00\x03"
    assert restored[10:34] == b"train-labels-idx1-ubyte\x00"
    assert restored[34:] == payload and gzip.decompress(restored) == raw
    # a header with FEXTRA, FNAME, FCOMMENT and FHCRC is skipped correctly too
    odd = b"\x1f\x8b\x08\x1e" + b"\0" * 6 + b"\x02\x00ab" + b"name\0" + b"comment\0" + b"\x12\x34" + payload
    assert fm.restore_gzip(odd, "t10k-images-idx3-ubyte.gz") == fm.original_header(
        "t10k-images-idx3-ubyte.gz") + payload
    assert fm.original_header("t10k-images-idx3-ubyte.gz")[4:8] == struct.pack("<I", 1504176627)
    with pytest.raises(ValueError, match="not a gzip"):
        fm.restore_gzip(b"PK\x03\x04" + b"\0" * 20, "x.gz")


def test_checksum_mismatch_is_one_clear_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in fm.FILE_NAMES:
        (src / name).write_bytes(_debian_style(gzip.compress(b"not fashion mnist")[10:]))
    with pytest.raises(fm.ChecksumError) as err:
        fm.restore_files(str(src), str(tmp_path / "out"))
    assert "\n" not in str(err.value) and "sha256" in str(err.value) and "tfds expects" in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing written before every file verified


def test_missing_files_and_no_network(tmp_path, capsys):
    asked = []
    with pytest.raises(prepare.PrepareError, match="apt-get install dataset-fashion-mnist"):
        prepare.prepare("fashion_mnist", data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path / "none"),
                        network_check=lambda host, port: asked.append((host, port)) or False)
    assert asked == [("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)]
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / fm.FILE_NAMES[0]).write_bytes(b"x")
    with pytest.raises(ValueError, match="lacks"):
        fm.find_debian_files(str(partial))
    # the CLI: one line on stderr, exit status 2
    rc = prepare.main(["no_such_set", f"--data_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "known: cifar100" in err


@needs_debian
def test_real_fashion_mnist(tmp_path):
    """Debian's files: restored checksums equal tfds's registered ones; prepare offline; 60000/10000."""
    expected = fm.registered_checksums()
    restored = fm.restore_files(fm.DEBIAN_DIR, str(tmp_path / "manual"))
    for name, path in restored.items():
        with open(path, "rb") as f:
            blob = f.read()
        assert (len(blob), hashlib.sha256(blob).hexdigest()) == expected[name]
    for split, n in (("train", 60000), ("t10k", 10000)):
        with gzip.open(restored[f"{split}-labels-idx1-ubyte.gz"]) as f:
            magic, count = struct.unpack(">II", f.read(8))
            labels = np.frombuffer(f.read(), np.uint8)
        assert magic == 2049 and count == n == labels.size
        assert np.bincount(labels).tolist() == [n // 10] * 10
    data_dir = tmp_path / "tfds"
    prepare.prepare("fashion_mnist", data_dir=str(data_dir), network_check=lambda host, port: False)
    assert sorted(os.listdir(data_dir / "downloads" / "manual")) == sorted(fm.FILE_NAMES)
    arrays = {split: data.load_arrays("fashion_mnist", split, str(data_dir)) for split in ("train", "test")}
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = arrays[split]
        assert images.shape == (n, 28, 28, 1) and images.dtype == np.uint8
        assert np.bincount(labels).tolist() == [n // 10] * 10
    x = arrays["train"][0].astype(np.float64) / 255.0
    assert abs(x.mean() - data.get_spec("fashion_mnist").mean[0]) < 5e-4
    assert abs(x.std() - data.get_spec("fashion_mnist").std[0]) < 5e-4
    info = data.get_info("fashion_mnist", data_dir=str(data_dir), imbalance_factor=100)
    assert info.train_counts.tolist() == data.exponential_counts(np.full(10, 6000), 100).tolist()
    assert info.group_sizes.tolist() == [4, 3, 3]
    b = next(iter(data.build_dataset(info, "train", global_batch_size=64, process_index=0, process_count=1)))
    assert b["image"].shape == (64, 28, 28, 1)

    # A damaged cache is found before it is used: one line naming the file and the command that rebuilds it,
    # which does. (The test split: its cache is the cheaper one to build again; one rebuild for both faults.)
    cache = data.tf_env.cache_dir(str(data_dir), "fashion_mnist", "test")
    images, labels = (os.path.join(cache, f) for f in ("images.npy", "labels.npy"))
    with open(labels, "rb") as f:
        intact_labels = f.read()
    with open(labels, "r+b") as f:  # one label changed, same size
        f.seek(-1, os.SEEK_END)
        f.write(bytes([(intact_labels[-1] + 1) % 10]))
    _assert_damaged(labels, data_dir)
    with open(labels, "wb") as f:
        f.write(intact_labels)
    with open(images, "r+b") as f:  # truncated
        f.truncate(os.path.getsize(images) // 2)
    _assert_damaged(images, data_dir)
    prepare.prepare("fashion_mnist", data_dir=str(data_dir), network_check=lambda host, port: False)
    for rebuilt, original in zip(data.load_arrays("fashion_mnist", "test", str(data_dir)), arrays["test"]):
        np.testing.assert_array_equal(rebuilt, original)
    shutil.rmtree(data_dir)


def _assert_damaged(path, data_dir):
    with pytest.raises(ValueError) as raised:
        data.load_arrays("fashion_mnist", "test", str(data_dir))
    message = str(raised.value)
    assert "\n" not in message and path in message
    assert f"python -m ltkd_jax.data.prepare fashion_mnist --data_dir={data_dir}" in message
