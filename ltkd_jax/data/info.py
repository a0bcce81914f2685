"""The long-tailed view of a data set: :class:`DatasetInfo`, :func:`get_info`, :func:`write_split`; what training
needs of it, :class:`ExperimentData`, with the :class:`Augmentation` of its batches (no JAX here)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from etils import epath

from ltkd_jax import io
from ltkd_jax.data import longtail
from ltkd_jax.data.registry import DatasetSpec, get_spec
from ltkd_jax.data.source import class_names, load_npy, save_npy, split_metadata

LT_INDICES_FILE = "lt_indices.npy"
CLASS_GROUPS_FILE = "class_groups.json"
# How classes form groups: "thirds", the paper's (sorted by training count, cut into `num_groups` near-equal
# parts); "shots", the literature's many (> 100 images) / medium (20-100) / few (< 20) buckets (image folders).
GROUPINGS = ("thirds", "shots")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Zero-pad by `pad` and take a random crop of the original size (`crop` "pad_crop_flip"), or a random-resized
    crop (`crop` "random_resized_crop": images larger than 64 px), flip horizontally with probability 1/2, then
    normalise with per-channel `mean` / `std` of pixel values in [0, 1]."""

    pad: int
    flip: bool
    mean: Sequence[float]
    std: Sequence[float]
    crop: str = "pad_crop_flip"  # a DatasetSpec's `augment`


@dataclasses.dataclass(kw_only=True)
class ExperimentData:
    """What training needs to know of a long-tailed training set and its balanced test set. `feed(...)` gives its
    batches: `device.DeviceData` holds a small data set on the devices, `host.HostData` streams a large one."""

    name: str
    num_classes: int
    group_ids: np.ndarray  # (num_classes,) 0 = head ... tail
    train_counts: np.ndarray  # (num_classes,)
    augmentation: Augmentation
    num_train: int  # images of the long-tailed training set
    image_shape: tuple  # (H, W, C) of a batch's images
    class_names: Tuple[str, ...] = ()  # in label order (empty: the label index names the class)

    @property
    def num_groups(self) -> int:
        return int(self.group_ids.max()) + 1

    def feed(self, batch_size: int, seed: int, mesh):  # pylint: disable=unused-argument
        """The training and test batches for a global `batch_size`, its order drawn from `seed`, over `mesh`."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetInfo:
    """One (long-tailed) data set as its files and the split define it (built by :func:`get_info`)."""

    name: str
    spec: DatasetSpec
    data_dir: Optional[str]  # the tfds data dir (caches in <data_dir>/ltkd_jax/)
    num_classes: int
    image_shape: Tuple[int, int, int]  # (H, W, C) of the images in batches (after crop/resize)
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    train_split: str
    eval_split: str
    imbalance_factor: Optional[float]  # gamma; None: the full split or a split file
    split_seed: int  # seed of LDAM-DRW's selection RandomState (0 in the literature)
    split_file: Optional[str]  # OLTR-style split file used instead of the exponential profile
    full_train_counts: np.ndarray  # (C,) per-class counts of the full training split
    train_counts: np.ndarray  # (C,) per-class counts of the long-tailed subset
    lt_indices: np.ndarray  # (N_lt,) int64 canonical indices of the kept examples, class order
    group_ids: np.ndarray  # (C,) int32, 0 = head ... num_groups - 1 = tail
    num_groups: int
    num_eval: int  # examples of eval_split (all of them)
    class_names: Tuple[str, ...] = ()  # in label order (empty: the label index names the class)

    @property
    def num_train(self) -> int:
        """Size of the long-tailed training subset."""
        return int(self.lt_indices.size)

    @property
    def group_sizes(self) -> np.ndarray:
        return longtail.group_sizes(self.group_ids, self.num_groups)

    @property
    def shot_masks(self) -> Dict[str, np.ndarray]:
        """(C,) bool masks many (> 100) / medium (20..100) / few (< 20) training images."""
        return longtail.shot_masks(self.train_counts)

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Training steps per epoch (the remainder of the epoch is dropped)."""
        return self.num_train // int(global_batch_size)

    def eval_steps(self, global_batch_size: int) -> int:
        """Evaluation steps covering every evaluation example once (last batch padded)."""
        return -(-self.num_eval // int(global_batch_size))

    def summary(self) -> dict:
        """JSON-friendly description (what :func:`write_split` stores in ``class_groups.json``)."""
        shots = self.shot_masks
        return {
            "dataset": self.name, "train_split": self.train_split, "eval_split": self.eval_split,
            "imbalance_factor": self.imbalance_factor, "split_seed": self.split_seed, "split_file": self.split_file,
            "num_classes": self.num_classes, "class_names": list(self.class_names), "num_train": self.num_train,
            "num_eval": self.num_eval,
            "num_groups": self.num_groups, "group_ids": self.group_ids.tolist(),
            "group_sizes": self.group_sizes.tolist(),
            "groups": [np.flatnonzero(self.group_ids == g).tolist() for g in range(self.num_groups)],
            "train_counts": self.train_counts.tolist(), "full_train_counts": self.full_train_counts.tolist(),
            "shots": {k: np.flatnonzero(v).tolist() for k, v in shots.items()},
            "index_order": ("canonical order: sort of feature " + repr(self.spec.order_key)) if self.spec.order_key
            else "tfds stored order (shuffle_files=False)",
        }


def get_info(name: str, *, data_dir=None, imbalance_factor: Optional[float] = None, split_seed: int = 0,
             num_groups: int = 3, split_file: Optional[str] = None, image_size: Optional[int] = None,
             groups: str = GROUPINGS[0]) -> DatasetInfo:
    """Describe data set ``name`` and its long-tailed training subset (docs/data.md, "Long-tailed subsets").

    ``imbalance_factor`` is LDAM-DRW's gamma >= 1 (None, and no ``split_file``: the full training split); the
    selection's seed ``split_seed`` is independent of the training seed. ``split_file`` (exclusive with gamma):
    OLTR-style ``relative/path label`` lines, matched by file name. ``image_size``: ImageNet only (default 224).
    ``groups``: one of :data:`GROUPINGS` ("shots" ignores ``num_groups``).
    Reads cached labels with numpy only; the first call for a split scans it with tfds (TensorFlow).
    """
    spec = get_spec(name)
    if imbalance_factor is not None and split_file is not None:
        raise ValueError(f"give imbalance_factor ({imbalance_factor!r}) or split_file ({split_file!r}), not both")
    if spec.image_shape is not None:
        if image_size is not None and int(image_size) != spec.image_shape[0]:
            raise ValueError(f"image_size={image_size!r}: {name} images are {spec.image_shape[0]}x"
                             f"{spec.image_shape[1]}; only imagenet2012 takes another size")
        image_shape = spec.image_shape
    else:
        size = spec.default_image_size if image_size is None else int(image_size)
        if size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size!r}")
        image_shape = (size, size, 3)
    train = split_metadata(name, spec.train_split, data_dir)
    labels = train.labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise ValueError(f"{name}: label {int(labels.max())} outside [0, {spec.num_classes})")
    full_counts = np.bincount(labels, minlength=spec.num_classes)
    if split_file is not None:
        lt_indices = indices_from_split_file(split_file, train.keys, labels, name=name)
        counts = np.bincount(labels[lt_indices], minlength=spec.num_classes)
        gamma = None
    elif imbalance_factor is None:
        lt_indices = np.arange(labels.size, dtype=np.int64)
        counts = full_counts
        gamma = None
    else:
        counts = longtail.exponential_counts(full_counts, imbalance_factor)
        lt_indices = longtail.select_indices(labels, counts, seed=split_seed)
        gamma = float(imbalance_factor)
    if groups not in GROUPINGS:
        raise ValueError(f"dataset.groups={groups!r}; allowed: {', '.join(GROUPINGS)}")
    group_ids = longtail.class_groups(counts, num_groups) if groups == "thirds" else longtail.shot_groups(counts)
    num_eval = split_metadata(name, spec.eval_split, data_dir).num_examples
    return DatasetInfo(
        name=name, spec=spec, data_dir=None if data_dir is None else os.fspath(data_dir),
        num_classes=spec.num_classes, image_shape=tuple(image_shape), mean=spec.mean, std=spec.std,
        train_split=spec.train_split, eval_split=spec.eval_split, imbalance_factor=gamma,
        split_seed=int(split_seed), split_file=None if split_file is None else os.fspath(split_file),
        full_train_counts=full_counts.astype(np.int64), train_counts=np.asarray(counts, np.int64),
        lt_indices=lt_indices.astype(np.int64), group_ids=group_ids, num_groups=int(group_ids.max()) + 1,
        num_eval=int(num_eval), class_names=class_names(name, data_dir))


def indices_from_split_file(path, keys: Optional[np.ndarray], labels: np.ndarray, *, name: str = "") -> np.ndarray:
    """Canonical indices of the images listed in an OLTR-style split file (``relative/path label`` lines).

    Images are matched by file name (the path's last component) against the split's ``file_name`` feature;
    the label on each line must equal the data set's label. Returns the indices in the file's order.
    """
    if keys is None:
        raise ValueError(f"split files need a data set with file names (imagenet2012, tiny_imagenet), not {name!r}")
    names, file_labels, lines = [], [], []
    with epath.Path(path).open("r") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.strip().rsplit(None, 1)  # the path may contain spaces, the label cannot
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'relative/path label', got {line.strip()!r}")
            try:
                file_labels.append(int(fields[1]))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: label {fields[1]!r} is not an integer") from None
            names.append(fields[0].replace("\\", "/").rsplit("/", 1)[-1].encode())
            lines.append(lineno)
    if not names:
        raise ValueError(f"{path}: no 'relative/path label' lines")
    query = np.asarray(names, dtype=np.bytes_)
    pos = np.searchsorted(keys, query)
    pos_c = np.minimum(pos, keys.size - 1)
    found = (pos < keys.size) & (keys[pos_c] == query)
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        raise ValueError(f"{path}:{lines[i]}: {names[i].decode()} is not in the {name} training split "
                         f"({int((~found).sum())} of {len(names)} listed files missing)")
    file_labels = np.asarray(file_labels, np.int64)
    wrong = labels[pos] != file_labels
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise ValueError(f"{path}:{lines[i]}: {names[i].decode()} has label {int(file_labels[i])} in the file "
                         f"but {int(labels[pos[i]])} in the data set")
    uniq, first = np.unique(pos, return_index=True)
    if uniq.size != pos.size:
        dup = sorted(set(range(pos.size)) - set(first.tolist()))[0]
        raise ValueError(f"{path}:{lines[dup]}: {names[dup].decode()} is listed twice")
    return pos.astype(np.int64)


def write_split(info: DatasetInfo, directory) -> Dict[str, str]:
    """Write ``lt_indices.npy`` and ``class_groups.json`` (:meth:`DatasetInfo.summary`) beside a run, each under
    a temporary name then renamed (process 0 only; ``directory`` may be ``gs://...``). Returns
    ``{"lt_indices": path, "class_groups": path}``."""
    directory = epath.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    idx_path = os.fspath(directory / LT_INDICES_FILE)
    json_path = os.fspath(directory / CLASS_GROUPS_FILE)
    save_npy(idx_path, info.lt_indices.astype(np.int64))
    with io.atomic_open(json_path, "w") as f:
        json.dump(info.summary(), f, indent=1)
    return {"lt_indices": idx_path, "class_groups": json_path}


def read_split(directory) -> Tuple[np.ndarray, dict]:
    """``(lt_indices, class_groups_dict)`` as written by :func:`write_split` (e.g. to check a teacher's split)."""
    directory = epath.Path(directory)
    groups = json.loads((directory / CLASS_GROUPS_FILE).read_text())
    return load_npy(os.fspath(directory / LT_INDICES_FILE)), groups
