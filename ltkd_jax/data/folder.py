"""A folder of images as a data set, torchvision ImageFolder's layout: `DIR/train/<class>/<image>` and
`DIR/test/<class>/<image>` (or `DIR/val/`). Classes are the sorted folder names of `train/`; images are PNG, JPEG,
BMP or GIF files of any size, grayscale or colour, resized to `dataset.image_size` (default 32).

:func:`folder_spec` checks the folder and names its :class:`DatasetSpec` by a fingerprint of its listing and the
image size (a changed folder gets new caches); `source.register_normalized` registers it and builds its numpy
caches once (the same caches as the registry's data sets; canonical order: sorted relative paths; docs/data.md). The per-channel
mean and std are those of the training images, computed once. Grayscale folders (every class's first image has
one channel) train on one channel, any other on RGB.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Dict, List, Tuple

import numpy as np
from ltkd_jax.data import images as images_lib
from ltkd_jax.data import registry

TRAIN_SPLIT = "train"
EVAL_SPLITS = ("test", "val")  # the first one present is evaluated


@dataclasses.dataclass(frozen=True)
class Listing:
    """The files of one split in canonical order (sorted relative paths) and their labels."""

    files: Tuple[str, ...]  # relative to the folder root, '/'-separated
    labels: np.ndarray  # (N,) int32


def _images_in(directory: str) -> List[str]:
    return sorted(name for name in os.listdir(directory)
                  if images_lib.is_image_file(name) and os.path.isfile(os.path.join(directory, name)))


def list_folder(root: str) -> Tuple[Tuple[str, ...], Dict[str, Listing]]:
    """`(class names, {split: Listing})` of the folder `root`; every mistake in its layout is a one-line ValueError
    naming the directory."""
    train = os.path.join(root, TRAIN_SPLIT)
    if not os.path.isdir(train):
        raise ValueError(f"image folder {root} has no {TRAIN_SPLIT}/ directory (expected "
                         f"{os.path.join(root, TRAIN_SPLIT, '<class>', '<image>')})")
    classes = tuple(sorted(name for name in os.listdir(train) if os.path.isdir(os.path.join(train, name))))
    if len(classes) < 2:
        raise ValueError(f"image folder {train} has {len(classes)} class folder{'s' if len(classes) != 1 else ''} "
                         f"({', '.join(classes) or 'none'}); at least 2 are needed")
    eval_split = next((s for s in EVAL_SPLITS if os.path.isdir(os.path.join(root, s))), None)
    if eval_split is None:
        raise ValueError(f"image folder {root} has neither a test/ nor a val/ directory to evaluate on")
    unknown = sorted(name for name in os.listdir(os.path.join(root, eval_split))
                     if os.path.isdir(os.path.join(root, eval_split, name)) and name not in classes)
    if unknown:
        raise ValueError(f"image folder {os.path.join(root, eval_split, unknown[0])}: class {unknown[0]!r} is not "
                         f"among the {len(classes)} training classes ({', '.join(classes)})")
    listings = {}
    for split in (TRAIN_SPLIT, eval_split):
        files, labels = [], []
        for label, name in enumerate(classes):
            directory = os.path.join(root, split, name)
            found = _images_in(directory) if os.path.isdir(directory) else []
            if split == TRAIN_SPLIT and not found:
                raise ValueError(f"image folder {directory} holds no image files "
                                 f"({', '.join(images_lib.IMAGE_EXTENSIONS)})")
            files += [f"{split}/{name}/{file}" for file in found]
            labels += [label] * len(found)
        if not files:
            raise ValueError(f"image folder {os.path.join(root, split)} holds no image files")
        listings[split] = Listing(tuple(files), np.asarray(labels, np.int32))
    return classes, listings


def _fingerprint(root: str, listings: Dict[str, Listing], image_size: int) -> str:
    digest = hashlib.sha256(f"{root}\n{image_size}\n".encode())
    for listing in listings.values():
        for file in listing.files:
            stat = os.stat(os.path.join(root, file))
            digest.update(f"{file}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def folder_spec(path: str, image_size: int = 0) -> registry.DatasetSpec:
    """The spec of the checked folder `path`, named `image_folder_<folder name>_<fingerprint>` (its mean and std
    are filled in by `source.register_normalized`, which registers it)."""
    root = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root} does not exist")
    size = registry.user_image_size(image_size)
    classes, listings = list_folder(root)
    name = f"{registry.IMAGE_FOLDER}_{os.path.basename(root)}_{_fingerprint(root, listings, size)}"
    eval_split = next(split for split in listings if split != TRAIN_SPLIT)
    train = listings[TRAIN_SPLIT]
    firsts = [train.files[int(np.argmax(train.labels == label))] for label in range(len(classes))]
    grey = all(images_lib.native_channels(os.path.join(root, file)) == 1 for file in firsts)
    return registry.user_spec(name=name, num_classes=len(classes), size=size, channels=1 if grey else 3,
                              train_split=TRAIN_SPLIT, eval_split=eval_split, class_names=classes, folder=root)


def split_files(spec, split: str) -> Listing:
    """The files and labels of `split` of a registered folder (canonical order)."""
    _, listings = list_folder(spec.folder)
    return listings[split]


def read_split(spec, split: str, out: np.ndarray) -> None:
    """Decode every image of `split` into `out` (N, H, W, C) in canonical order; the first unreadable file is a
    one-line ValueError naming it."""
    for index, file in enumerate(split_files(spec, split).files):
        out[index] = images_lib.read_image(os.path.join(spec.folder, file), spec.image_shape)
