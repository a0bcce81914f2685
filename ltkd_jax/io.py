"""Paths of run directories and data caches, local or on an object store (``gs://bucket/...``, shared by the
hosts of a pod): every file operation goes through ``etils.epath.Path``; these helpers hold what differs."""
from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from typing import Optional

from etils import epath


def first_line(error: BaseException) -> str:
    """An exception's message cut to one line for a one-line error (its type's name when it has none). A KeyError's
    message is its first argument (its str() is that argument's repr)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str) \
        else str(error)
    return (message.strip().splitlines() or [type(error).__name__])[0]


def root_cause(error: BaseException) -> BaseException:
    """The exception at the bottom of `error`'s chain (its cause's cause ...): what went wrong first."""
    while True:
        inner = error.__cause__ if error.__cause__ is not None else (
            None if error.__suppress_context__ else error.__context__)
        if inner is None:
            return error
        error = inner


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


def file_digest(path: str | os.PathLike) -> list:
    """``[size in bytes, SHA-256 hex digest]`` of a file: what checkpoints and data caches record once written and
    verify before they are read."""
    sha, size = hashlib.sha256(), 0
    with epath.Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            size += len(chunk)
    return [size, sha.hexdigest()]
