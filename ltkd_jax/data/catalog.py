"""Any tfds image-classification data set by name, `--config.dataset.name=tfds:oxford_flowers102`: features
`image` and `label`, its splits named by `dataset.train_split` / `dataset.eval_split` (default train / test). Its images are decoded once
into the numpy caches of the registry's data sets, converted to `dataset.image_size` (default 32) and to the
channels the data set stores (grayscale stays grayscale), then train device-resident, normalised with the training
images' own mean and std (`source.register_normalized`)."""
from __future__ import annotations

import functools
from typing import Optional

from ltkd_jax.data import registry, tf_env

PREFIX = "tfds:"


def is_catalog_name(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


@functools.lru_cache(maxsize=None)
def catalog_spec(name: str, image_size: int = 0, data_dir=None, train_split: Optional[str] = None,
                 eval_split: Optional[str] = None) -> registry.DatasetSpec:
    """The spec of the tfds data set `tfds:<tfds name>` (one line naming what is wrong where it is none)."""
    tfds_name = name[len(PREFIX):]
    _, tfds = tf_env.import_tfds()
    try:
        builder = tfds.builder(tfds_name, data_dir=tf_env.resolve_data_dir(data_dir))
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"dataset.name={name!r}: tfds has no data set {tfds_name!r}") from None
    features = builder.info.features
    keys = sorted(features.keys()) if hasattr(features, "keys") else []
    if not {"image", "label"} <= set(keys) or not hasattr(features["label"], "num_classes"):
        raise ValueError(f"dataset.name={name!r} is not an image classification data set: it needs features 'image' "
                         f"and 'label' (a class label); it has {', '.join(keys) or 'none'}")
    size = registry.user_image_size(image_size)
    label = features["label"]
    names = tuple(label.names) if getattr(label, "names", None) else tuple(str(c) for c in range(label.num_classes))
    return registry.user_spec(
        name=f"tfds_{tfds_name.replace('/', '_').replace(':', '_')}_{size}px", tfds_name=tfds_name,
        num_classes=label.num_classes, size=size, channels=features["image"].shape[-1] or 3,
        train_split=train_split or "train", eval_split=eval_split or "test", class_names=names, resize=True)
