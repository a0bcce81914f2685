"""TensorFlow / tfds access, kept out of module top level so ``import ltkd_jax.data`` never imports TF; and the
path helpers every module uses for run directories and data caches, local or on object stores (``gs://``)."""
from __future__ import annotations

import contextlib
import os
import threading
import uuid
import warnings
from typing import Optional

from etils import epath

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


# ------------------------------------------------------------------------------ local or remote paths
# Run directories, teachers and data caches may live on an object store (``gs://bucket/...``: multi-host pods
# share one). Every file operation on them goes through ``etils.epath.Path`` (local disk, or gs:// through
# tf.io.gfile / gcsfs); these helpers hold what differs.


def first_line(error: BaseException) -> str:
    """An exception's message cut to one line for a one-line error (its type's name when it has none)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def is_local(path: str | os.PathLike) -> bool:
    """False for URLs (``gs://bucket/...``, any ``scheme://``), True for file-system paths."""
    return "://" not in os.fspath(path)


def file_in_the_way(directory: str | os.PathLike) -> Optional[epath.Path]:
    """The file at `directory`, or above it, that keeps it from being a directory (None if nothing does). On
    object stores only `directory` itself is checked: they have no files above a directory."""
    directory = epath.Path(directory)
    for candidate in (directory, *(directory.parents if is_local(directory) else ())):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def local_output_file_problem(path: str) -> Optional[str]:
    """Why a local file could not be written at `path` (it is a directory, or its directory is missing), or
    None: for flags whose file is written after a long run."""
    if os.path.isdir(path):
        return "is a directory; give a file path"
    parent = os.path.dirname(os.path.abspath(path))
    return None if os.path.isdir(parent) else f"directory {parent} does not exist"


def absolute(path: str | os.PathLike) -> str:
    """``os.path.abspath`` of a local path; a URL unchanged (abspath would turn ``gs://b/x`` into
    ``<cwd>/gs:/b/x``)."""
    path = os.fspath(path)
    return os.path.abspath(path) if is_local(path) else path


def temporary_sibling(path: str | os.PathLike, suffix: str = "") -> epath.Path:
    """A temporary name beside ``path``: ``<path>.tmp<pid><suffix>`` locally; a random token instead of the pid
    on shared storage, where processes of different hosts may share a pid."""
    path = epath.Path(path)
    token = os.getpid() if is_local(path) else uuid.uuid4().hex
    return path.parent / f"{path.name}.tmp{token}{suffix}"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", suffix: str = ""):
    """Write a temporary sibling of ``path``, then rename it over ``path`` (on object stores the rename is a
    copy and a delete; readers still never see a partial file). The temporary file is removed on failure."""
    path = epath.Path(path)
    tmp = temporary_sibling(path, suffix)
    try:
        with tmp.open(mode) as f:
            yield f
        tmp.replace(path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except Exception:  # pylint: disable=broad-except  # keep the original error
            pass
        raise


def write_file(path: str | os.PathLike, data: str | bytes) -> None:
    """Write a whole file (text or bytes). Local paths: in place, like ``open(path, "w")``. Remote paths: through
    :func:`atomic_open` (an object store has no partial writes, but some backends -- TensorFlow's ``ram://`` --
    do not truncate an existing file opened with ``"w"``)."""
    mode = "wb" if isinstance(data, bytes) else "w"
    if is_local(path):
        with epath.Path(path).open(mode) as f:
            f.write(data)
    else:
        with atomic_open(path, mode) as f:
            f.write(data)


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

    from ltkd_jax.data import tiny_imagenet  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

    return tf, tfds
