"""The data sets this package knows, by name (no TensorFlow import)."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
# Fashion-MNIST: mean/std of the 60,000 training images' pixels in [0, 1] (0.2860 / 0.3530; the values the
# Fashion-MNIST literature uses).
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one data set (the fields: docs/data.md, "Data sets" and "Canonical order")."""

    name: str  # the registry key
    tfds_name: str
    num_classes: int
    image_shape: Optional[Tuple[int, int, int]]  # (H, W, C) as stored; None where it varies (ImageNet)
    train_split: str
    eval_split: str
    mean: Tuple[float, ...]  # per-channel normalisation of pixels in [0, 1]
    std: Tuple[float, ...]
    augment: str  # "pad_crop_flip" or "random_resized_crop" (ImageNet; eval resize + centre crop)
    pad: int  # zero padding of "pad_crop_flip"
    in_memory: bool  # the splits fit in memory: numpy image caches, the device-resident path
    order_key: Optional[str]  # feature whose sort order is the canonical one; None: tfds's stored order
    manual_files: Tuple[str, ...] = ()  # raw files put in the manual dir by hand (empty: tfds downloads)
    default_image_size: Optional[int] = None  # output size where image_shape is None
    # Sizes of the full (balanced) data set, for estimates made before any data is read (tools/cost.py): training
    # images per class (the long-tailed profile thins them) and images in the eval split.
    full_train_per_class: int = 0
    eval_images: int = 0
    folder: Optional[str] = None  # an image folder's root (data/folder.py); None: a tfds data set
    class_names: Tuple[str, ...] = ()  # known without reading the data (a folder's); else tfds's label names
    resize: bool = False  # the stored images vary in size or channels: converted to image_shape when cached


DATASETS = {
    "cifar100": DatasetSpec(
        name="cifar100", tfds_name="cifar100", num_classes=100, image_shape=(32, 32, 3),
        train_split="train", eval_split="test", mean=CIFAR100_MEAN, std=CIFAR100_STD,
        augment="pad_crop_flip", pad=4, in_memory=True, order_key="id", full_train_per_class=500,
        eval_images=10_000),
    "tiny_imagenet": DatasetSpec(
        name="tiny_imagenet", tfds_name="tiny_imagenet", num_classes=200, image_shape=(64, 64, 3),
        train_split="train", eval_split="validation", mean=IMAGENET_MEAN, std=IMAGENET_STD,
        augment="pad_crop_flip", pad=8, in_memory=True, order_key="file_name",
        manual_files=("tiny-imagenet-200.zip",), full_train_per_class=500, eval_images=10_000),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist", tfds_name="fashion_mnist", num_classes=10, image_shape=(28, 28, 1),
        train_split="train", eval_split="test", mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD,
        augment="pad_crop_flip", pad=2, in_memory=True, order_key=None, full_train_per_class=6000,
        eval_images=10_000),
    "imagenet2012": DatasetSpec(
        name="imagenet2012", tfds_name="imagenet2012", num_classes=1000, image_shape=None,
        train_split="train", eval_split="validation", mean=IMAGENET_MEAN, std=IMAGENET_STD,
        augment="random_resized_crop", pad=0, in_memory=False, order_key="file_name",
        manual_files=("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"), default_image_size=224,
        # Approximation: the 1,281,167 training images range over 732-1,300 per class; 1,281 is their mean.
        full_train_per_class=1281, eval_images=50_000),
}


LARGEST_PAD_CROP_SIZE = 64  # as the built-in sets: pad-crop-flip up to 64 px (Tiny-ImageNet), random-resized above


DEFAULT_USER_IMAGE_SIZE = 32  # a data set of the user's (a folder, a tfds: name): the CIFAR models' size


def augmentation_for(image_size: int) -> str:
    """The training augmentation of a data set of the user's, by its image size."""
    return "pad_crop_flip" if image_size <= LARGEST_PAD_CROP_SIZE else "random_resized_crop"


def user_image_size(image_size) -> int:
    """`dataset.image_size` of a data set of the user's (0: the default), or a one-line ValueError."""
    size = int(image_size or 0) or DEFAULT_USER_IMAGE_SIZE
    if size < 8:
        raise ValueError(f"image_size={image_size!r} must be >= 8")
    return size


def user_spec(*, name: str, num_classes: int, size: int, channels: int, train_split: str, eval_split: str,
              class_names, **fields) -> DatasetSpec:
    """The spec of a data set of the user's: square `size` images cached in memory, augmented by their size, in
    stored order; mean and std placeholders until `source.register_normalized` fills in the training images'."""
    return DatasetSpec(
        name=name, tfds_name=fields.pop("tfds_name", ""), num_classes=int(num_classes),
        image_shape=(size, size, channels), train_split=train_split, eval_split=eval_split, mean=(0.0,) * channels,
        std=(1.0,) * channels, augment=augmentation_for(size), pad=max(size // 8, 1), in_memory=True, order_key=None,
        class_names=tuple(class_names), **fields)


# A folder of images (data/folder.py): `dataset.path` names it; registered under a name of its own once read.
IMAGE_FOLDER = "image_folder"
_BUILT_IN = tuple(sorted(DATASETS))


def known_names():
    return tuple(sorted(_BUILT_IN + (IMAGE_FOLDER,)))


def register(spec: DatasetSpec) -> None:
    """Make `spec` known by its name in this process (an image folder's, once checked)."""
    DATASETS[spec.name] = spec


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; unknown names raise a one-line ValueError listing known ones."""
    if name == IMAGE_FOLDER:
        raise ValueError(f"data set {IMAGE_FOLDER!r} needs the folder: set dataset.path (configs/image_folder.py)")
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(known_names())}") from None
