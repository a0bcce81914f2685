"""Reading tfds splits in a fixed order, and the numpy caches built from them.

Examples are counted in *canonical order* everywhere (docs/data.md, "Canonical order"). Caches live in
``<data_dir>/ltkd_jax/<name>/<split>/`` (possibly remote, through ``etils.epath``) and read with numpy only;
TensorFlow is imported only to build a missing one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Optional, Tuple

import numpy as np
from etils import epath

from ltkd_jax import io
from ltkd_jax.data import tf_env
from ltkd_jax.data.registry import DatasetSpec, get_spec, register

# (size, SHA-256) of every cache file of a split, recorded once the file is complete, verified before it is read.
CHECKSUMS_FILE = "checksums.json"
CLASS_NAMES_FILE = "class_names.json"  # beside the training split's caches
NORMALIZATION_FILE = "normalization.json"  # the training images' mean and std, beside their cache
INTERLEAVE_CYCLE_LENGTH = 16
INTERLEAVE_BLOCK_LENGTH = 16
_SCAN_BATCH = 4096


def read_config():
    """The tfds ReadConfig of every read here: deterministic, no auto-cache, fixed interleave."""
    tf, tfds = tf_env.import_tfds()
    options = tf.data.Options()
    options.deterministic = True
    return tfds.ReadConfig(options=options, try_autocache=False, interleave_cycle_length=INTERLEAVE_CYCLE_LENGTH,
                           interleave_block_length=INTERLEAVE_BLOCK_LENGTH)


def builder(spec: DatasetSpec, data_dir=None):
    _, tfds = tf_env.import_tfds()
    return tfds.builder(spec.tfds_name, data_dir=tf_env.resolve_data_dir(data_dir))


def stored_dataset(spec: DatasetSpec, split: str, data_dir=None, decoders=None):
    """The split as a tf.data.Dataset in stored order (one pass, deterministic)."""
    b = builder(spec, data_dir)
    try:
        return b.as_dataset(split=split, shuffle_files=False, read_config=read_config(), decoders=decoders)
    except AssertionError as err:  # tfds: "could not find data in ..."
        where = tf_env.resolve_data_dir(data_dir)
        raise FileNotFoundError(f"data set {spec.name!r} split {split!r} is not prepared in {where} "
                                f"({io.first_line(err)}); run: python -m ltkd_jax.data.prepare {spec.name} "
                                f"--data_dir={where}") from None


@dataclasses.dataclass(frozen=True, eq=False)
class SplitMeta:
    """Labels and order of one split. ``labels``/``keys`` are in canonical order."""

    labels: np.ndarray            # (N,) int32
    stored_positions: np.ndarray  # (N,) int64: canonical index -> stored position
    keys: Optional[np.ndarray]    # (N,) bytes, sorted, or None

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])

    def canonical_of_stored(self) -> np.ndarray:
        """(N,) int64: stored position -> canonical index."""
        inv = np.empty_like(self.stored_positions)
        inv[self.stored_positions] = np.arange(self.stored_positions.size, dtype=np.int64)
        return inv


class DataCacheError(ValueError):
    """A numpy cache file that is not the one written (truncated, changed, missing)."""

    def __init__(self, path, problem: str, rebuild: str):
        super().__init__(f"data cache {path} is damaged ({problem}); rebuild it with: {rebuild}")
        self.path, self.problem = path, problem


def save_npy(path, array: np.ndarray):
    """``array`` to the .npy file ``path`` (local or remote), written under a temporary name and renamed."""
    with io.atomic_open(path, "wb", suffix=".npy") as f:
        np.save(f, array)


def load_npy(path, mmap: bool = False) -> np.ndarray:
    """A .npy file; ``mmap`` memory-maps it where it is on a local disk (remote files are read whole)."""
    if mmap and io.is_local(path):
        return np.load(path, mmap_mode="r")
    with epath.Path(path).open("rb") as f:
        return np.load(f)


def _checksums(directory: epath.Path) -> dict:
    path = directory / CHECKSUMS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def record_checksum(path) -> None:
    """Record the (size, SHA-256) of the complete cache file ``path`` beside it."""
    path = epath.Path(path)
    records = {**_checksums(path.parent), path.name: io.file_digest(path)}
    with io.atomic_open(path.parent / CHECKSUMS_FILE) as f:
        json.dump(records, f, indent=1)


def verify(path, name: str, data_dir) -> None:
    """A DataCacheError line naming ``path`` and the command that rebuilds it, unless the file is the one recorded
    (a cache written before checksums were recorded is recorded as it is)."""
    path = epath.Path(path)
    recorded = _checksums(path.parent).get(path.name)
    if recorded is None:  # a cache built before checksums were recorded: recorded as it is, where writable
        if path.exists():
            try:
                record_checksum(path)
            except OSError as error:
                logging.warning("data cache %s stays unverified: its checksum cannot be recorded (%s)", path,
                                io.first_line(error))
        return
    problem = "it is missing" if not path.exists() else None
    if problem is None:
        size, sha = io.file_digest(path)
        if size != recorded[0]:
            problem = f"{size} bytes, written with {recorded[0]}"
        elif sha != recorded[1]:
            problem = "its SHA-256 differs from the one recorded when it was written"
    if problem:
        where = tf_env.resolve_data_dir(data_dir)
        raise DataCacheError(path, problem, f"python -m ltkd_jax.data.prepare {name} --data_dir={where}")


def split_metadata(name: str, split: str, data_dir=None) -> SplitMeta:
    """Labels (canonical order) and the canonical<->stored mapping of a split, cached as .npy files."""
    spec = get_spec(name)
    d = epath.Path(tf_env.cache_dir(data_dir, name, split))
    labels_p, pos_p, keys_p = (os.fspath(d / f) for f in ("labels.npy", "stored_positions.npy", "keys.npy"))
    files = (labels_p, pos_p) + ((keys_p,) if spec.order_key else ())
    if all(epath.Path(f).exists() for f in files):
        for f in files:
            verify(f, name, data_dir)
        keys = load_npy(keys_p) if spec.order_key else None
        return SplitMeta(load_npy(labels_p), load_npy(pos_p), keys)
    meta = _scan(spec, split, data_dir) if spec.folder is None else _folder_meta(spec, split)
    d.mkdir(parents=True, exist_ok=True)
    if meta.keys is not None:
        save_npy(keys_p, meta.keys)
    save_npy(pos_p, meta.stored_positions)
    save_npy(labels_p, meta.labels)
    for f in files:
        record_checksum(f)
    version = str(builder(spec, data_dir).version) if spec.folder is None else None
    with io.atomic_open(d / "meta.json", "w") as f:
        json.dump({"name": name, "tfds_name": spec.tfds_name, "tfds_version": version, "folder": spec.folder,
                   "split": split,
                   "num_examples": meta.num_examples, "order_key": spec.order_key,
                   "interleave": [INTERLEAVE_CYCLE_LENGTH, INTERLEAVE_BLOCK_LENGTH]}, f, indent=1)
    return meta


def class_names(name: str, data_dir=None) -> Tuple[str, ...]:
    """The class names in label order: tfds's label names (the label index as text where it has none), cached
    beside the training split's labels."""
    spec = get_spec(name)
    if spec.class_names:
        return spec.class_names
    path = epath.Path(tf_env.cache_dir(data_dir, name, spec.train_split)) / CLASS_NAMES_FILE
    if path.exists():
        return tuple(json.loads(path.read_text()))
    label = builder(spec, data_dir).info.features["label"]
    names = list(getattr(label, "names", None) or [])
    if len(names) != spec.num_classes:
        names = [str(c) for c in range(spec.num_classes)]
    try:  # best-effort, as a first checksum: a read-only cache still loads
        path.parent.mkdir(parents=True, exist_ok=True)
        with io.atomic_open(path) as f:
            json.dump(names, f)
    except OSError as error:
        logging.warning("class names of %s not cached in %s (%s)", name, path.parent, io.first_line(error))
    return tuple(names)


def register_normalized(spec: DatasetSpec, data_dir) -> str:
    """Register `spec` (a data set of the user's: a folder, a tfds name) with the per-channel mean and std of its
    training images, computed from their cache once (built here if missing); returns its name."""
    register(spec)
    path = epath.Path(tf_env.cache_dir(data_dir, spec.name, spec.train_split)) / NORMALIZATION_FILE
    if not path.exists():
        images, _ = load_arrays(spec.name, spec.train_split, data_dir, mmap=True)
        channels = spec.image_shape[-1]
        total, squares = np.zeros(channels), np.zeros(channels)
        for start in range(0, len(images), _SCAN_BATCH):  # float64 sums of pixels in [0, 1], a slice at a time
            chunk = np.asarray(images[start:start + _SCAN_BATCH], np.float64).reshape(-1, channels) / 255.0
            total, squares = total + chunk.sum(0), squares + (chunk ** 2).sum(0)
        count = max(images.size // channels, 1)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-12))
        with io.atomic_open(path) as f:
            json.dump({"mean": mean.tolist(), "std": std.tolist()}, f)
    stored = json.loads(path.read_text())
    register(dataclasses.replace(spec, mean=tuple(stored["mean"]), std=tuple(stored["std"])))
    return spec.name


def _folder_meta(spec: DatasetSpec, split: str) -> SplitMeta:
    from ltkd_jax.data import folder  # pylint: disable=import-outside-toplevel  (folder imports the registry)

    labels = folder.split_files(spec, split).labels
    return SplitMeta(labels, np.arange(labels.size, dtype=np.int64), None)


def _scan(spec: DatasetSpec, split: str, data_dir) -> SplitMeta:
    _, tfds = tf_env.import_tfds()
    # Images are read but not decoded. (PartialDecoding would skip more work, but tfds's mock data generates
    # different examples for a different feature set, so the scan would disagree with the pipelines in tests.)
    ds = stored_dataset(spec, split, data_dir, decoders={"image": tfds.decode.SkipDecoding()})
    key = spec.order_key
    ds = ds.map(lambda ex: (ex["label"], ex[key]) if key else (ex["label"], ex["label"]))
    labels, keys = [], []
    for lab, k in ds.batch(_SCAN_BATCH).as_numpy_iterator():
        labels.append(lab)
        keys.append(k)
    labels_s = np.concatenate(labels).astype(np.int32) if labels else np.zeros((0,), np.int32)
    if key:
        keys_s = np.asarray(np.concatenate(keys), dtype=np.bytes_)
        order = np.argsort(keys_s, kind="stable").astype(np.int64)
        return SplitMeta(labels_s[order], order, keys_s[order])
    return SplitMeta(labels_s, np.arange(labels_s.size, dtype=np.int64), None)


def load_arrays(name: str, split: str, data_dir=None, *, mmap: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of a whole split in canonical order: uint8 (N, H, W, C) and int32 (N,); in-memory data
    sets only (cifar100, tiny_imagenet, fashion_mnist). Read from the numpy cache, built once if missing (this
    imports TensorFlow); ``mmap=True`` memory-maps the images (local data dirs only: a remote cache is read whole)."""
    spec = get_spec(name)
    if not spec.in_memory or spec.image_shape is None:
        raise ValueError(f"load_arrays: {name!r} does not fit in memory; use the tf.data pipeline "
                         f"(in-memory data sets: cifar100, fashion_mnist, tiny_imagenet)")
    d = tf_env.cache_dir(data_dir, name, split)
    images_p = os.fspath(epath.Path(d) / "images.npy")
    meta = split_metadata(name, split, data_dir)
    if not epath.Path(images_p).exists():
        _build_images(spec, split, data_dir, meta, images_p)
        record_checksum(images_p)
    verify(images_p, name, data_dir)
    images = load_npy(images_p, mmap)
    if images.shape[0] != meta.num_examples:
        raise ValueError(f"cache {images_p} holds {images.shape[0]} images but labels.npy {meta.num_examples}; "
                         f"delete {d} and rebuild")
    return images, meta.labels


def _fill(spec: DatasetSpec, split: str, data_dir, out: np.ndarray, inv: np.ndarray) -> int:
    """Every image of the split into `out` at its canonical index; returns how many were read."""
    if spec.folder is not None:
        from ltkd_jax.data import folder  # pylint: disable=import-outside-toplevel

        folder.read_split(spec, split, out)
        return len(out)
    if spec.resize:  # images of any size and channels: to the spec's shape
        from ltkd_jax.data import images as images_lib  # pylint: disable=import-outside-toplevel

        ds = stored_dataset(spec, split, data_dir).map(lambda ex: images_lib.convert(ex["image"], spec.image_shape))
    else:
        ds = stored_dataset(spec, split, data_dir).map(lambda ex: ex["image"])
    ds = ds.batch(_SCAN_BATCH)
    start = 0
    for images in ds.as_numpy_iterator():
        out[inv[start:start + images.shape[0]]] = images
        start += images.shape[0]
    return start


def _build_images(spec: DatasetSpec, split: str, data_dir, meta: SplitMeta, path: str):
    inv = meta.canonical_of_stored()
    shape = (meta.num_examples,) + spec.image_shape
    local = io.is_local(path)
    if local:  # filled in place on disk
        tmp = io.temporary_sibling(path, ".npy")
        out = np.lib.format.open_memmap(os.fspath(tmp), mode="w+", dtype=np.uint8, shape=shape)
    else:  # an object store cannot be memory-mapped: fill in memory, then upload
        out = np.empty(shape, np.uint8)
    try:
        start = _fill(spec, split, data_dir, out, inv)
    except BaseException:
        if local:
            del out
            tmp.unlink(missing_ok=True)  # nothing half-written is left
        raise
    if start != meta.num_examples:
        raise ValueError(f"{spec.name}/{split}: read {start} images, metadata says {meta.num_examples}; "
                         f"delete {epath.Path(path).parent} and retry")
    if not local:
        save_npy(path, out)
        return
    out.flush()
    del out
    tmp.replace(path)
