"""TensorFlow / tfds access, kept out of module top level so ``import ltkd_jax.data`` never imports TF, and
where the data caches live."""
from __future__ import annotations

import os
import threading
import warnings

from etils import epath

from ltkd_jax.io import absolute

_LOCK = threading.Lock()
_HIDDEN = False

ENV_DATA_DIR = "TFDS_DATA_DIR"
CACHE_SUBDIR = "ltkd_jax"


def default_data_dir() -> str:
    """``$TFDS_DATA_DIR`` if set, else ``~/tensorflow_datasets`` (tfds's own default)."""
    return os.path.expanduser(os.environ.get(ENV_DATA_DIR) or "~/tensorflow_datasets")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    return absolute(os.path.expanduser(os.fspath(data_dir))) if data_dir else default_data_dir()


def cache_dir(data_dir: str | os.PathLike | None, name: str, split: str) -> str:
    """Where the numpy caches of one split live: ``<data_dir>/ltkd_jax/<name>/<split>/``."""
    return os.fspath(epath.Path(resolve_data_dir(data_dir)) / CACHE_SUBDIR / name / split.replace("/", "_"))


def hide_accelerators_from_tf():
    """Import TensorFlow with every GPU and TPU hidden from it, and return the ``tf`` module.

    tf.data only needs the host CPU; an accelerator grabbed by TensorFlow is memory JAX cannot use. Call this
    before building any TensorFlow pipeline (every function of this package that touches TF does). If TF had
    already initialised its devices (somebody imported and used it first) the devices cannot be hidden any more;
    we then warn when TF does see a GPU/TPU.
    """
    global _HIDDEN
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    with _LOCK:
        if _HIDDEN:
            return tf
        for kind in ("GPU", "TPU"):
            try:
                tf.config.set_visible_devices([], kind)
            except (RuntimeError, ValueError) as err:  # devices already initialised / kind unknown
                try:
                    visible = tf.config.get_visible_devices(kind)
                except Exception:  # pragma: no cover - defensive
                    visible = []
                if visible:
                    warnings.warn(f"TensorFlow already initialised and sees {kind}s ({err}); "
                                  "call ltkd_jax.data.hide_accelerators_from_tf() before anything uses TF")
        _HIDDEN = True
    return tf


def import_tfds():
    """``(tf, tfds)`` with accelerators hidden and our ``tiny_imagenet`` builder registered."""
    tf = hide_accelerators_from_tf()
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    from ltkd_jax.data.prepare import tiny_imagenet  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

    return tf, tfds
