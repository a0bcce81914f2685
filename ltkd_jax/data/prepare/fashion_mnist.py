"""Offline Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``).

Debian's packaging rewrote every gzip header (name dropped, timestamp changed; payload and trailer untouched);
putting back the upstream header restores files whose sha256 equals tfds's registered checksums, so tfds prepares
``fashion_mnist`` from them with no network. The header's bytes: docs/data.md ("Preparation").
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import struct
from typing import Dict, Tuple

from ltkd_jax import io

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
APT_PACKAGE = "dataset-fashion-mnist"
# Original gzip MTIMEs of the upstream files (zalandoresearch/fashion-mnist).
ORIGINAL_MTIME = {
    "train-images-idx3-ubyte.gz": 1504176606,
    "train-labels-idx1-ubyte.gz": 1504176606,
    "t10k-images-idx3-ubyte.gz": 1504176627,
    "t10k-labels-idx1-ubyte.gz": 1504176627,
}
FILE_NAMES = tuple(ORIGINAL_MTIME)
_XFL, _OS = 0, 3
_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16


class ChecksumError(ValueError):
    """A Fashion-MNIST file whose sha256 differs from tfds's registered checksum."""


def _payload_offset(data: bytes, what: str) -> int:
    """Offset of the deflate stream after a gzip member header (RFC 1952)."""
    if len(data) < 18 or data[:3] != b"\x1f\x8b\x08":
        raise ValueError(f"{what} is not a gzip (deflate) file")
    flags = data[3]
    pos = 10
    if flags & _FEXTRA:
        (xlen,) = struct.unpack("<H", data[pos:pos + 2])
        pos += 2 + xlen
    for flag in (_FNAME, _FCOMMENT):
        if flags & flag:
            pos = data.index(b"\x00", pos) + 1
    if flags & _FHCRC:
        pos += 2
    return pos


def original_header(file_name: str) -> bytes:
    """The upstream gzip header of one Fashion-MNIST file."""
    if file_name not in ORIGINAL_MTIME:
        raise ValueError(f"{file_name!r} is not a Fashion-MNIST file; allowed: {', '.join(FILE_NAMES)}")
    mtime = ORIGINAL_MTIME[file_name]
    return (b"\x1f\x8b\x08" + bytes([_FNAME]) + struct.pack("<I", mtime) + bytes([_XFL, _OS])
            + file_name[:-len(".gz")].encode("latin-1") + b"\x00")


def restore_gzip(data: bytes, file_name: str) -> bytes:
    """``data`` with its gzip header replaced by the upstream one (the payload is kept byte for byte)."""
    start = _payload_offset(data, file_name)
    return original_header(file_name) + data[start:]


def registered_checksums() -> Dict[str, Tuple[int, str]]:
    """``{file name: (size, sha256)}`` registered in tfds for ``fashion_mnist`` (imports tfds)."""
    from ltkd_jax.data import tf_env  # pylint: disable=import-outside-toplevel
    _, tfds = tf_env.import_tfds()
    infos = tfds.builder_cls("fashion_mnist").url_infos or {}
    out = {}
    for url, info in infos.items():
        name = info.filename or url.rsplit("/", 1)[-1]
        out[name] = (int(info.size), str(info.checksum))
    missing = [n for n in FILE_NAMES if n not in out]
    if missing:
        raise RuntimeError(f"tfds registers no checksum for {', '.join(missing)} (tfds version change?)")
    return out


def find_debian_files(source_dir: str = DEBIAN_DIR) -> Dict[str, str]:
    """``{file name: path}`` of the four files in ``source_dir``; empty if none, ValueError if some missing."""
    present = {n: os.path.join(source_dir, n) for n in FILE_NAMES if os.path.isfile(os.path.join(source_dir, n))}
    if present and len(present) != len(FILE_NAMES):
        missing = sorted(set(FILE_NAMES) - set(present))
        raise ValueError(f"{source_dir} lacks {', '.join(missing)}; reinstall with: apt-get install --reinstall "
                         f"{APT_PACKAGE}")
    return present


def restore_files(source_dir: str, target_dir: str) -> Dict[str, str]:
    """Restore the four files from ``source_dir`` into ``target_dir``, verifying each sha256 first.

    Files already carrying the upstream header are copied as they are. Raises :class:`ChecksumError` (one
    line) if a restored file's size or sha256 differs from tfds's registered value; nothing is written then.
    """
    files = find_debian_files(source_dir)
    if not files:
        raise FileNotFoundError(f"no Fashion-MNIST files in {source_dir}; install them with: apt-get install "
                                f"{APT_PACKAGE}")
    expected = registered_checksums()
    restored = {}
    for name, path in files.items():
        data = pathlib.Path(path).read_bytes()
        if not _matches(data, expected[name]):
            data = restore_gzip(data, name)
        if not _matches(data, expected[name]):
            size, sha = expected[name]
            raise ChecksumError(f"{path}: sha256 {hashlib.sha256(data).hexdigest()} ({len(data)} bytes) after "
                                f"restoring the gzip header, tfds expects {sha} ({size} bytes); the file is "
                                f"corrupt or not the upstream release")
        restored[name] = data
    os.makedirs(target_dir, exist_ok=True)
    out = {}
    for name, data in restored.items():
        dst = os.path.join(target_dir, name)
        if not (os.path.isfile(dst) and _matches(pathlib.Path(dst).read_bytes(), expected[name])):
            with io.atomic_open(dst, "wb") as f:
                f.write(data)
        out[name] = dst
    return out


def _matches(data: bytes, size_and_sha256: Tuple[int, str]) -> bool:
    size, sha = size_and_sha256
    return len(data) == size and hashlib.sha256(data).hexdigest() == sha
