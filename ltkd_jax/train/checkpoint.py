"""Orbax checkpoints of a TrainState: the last few, the best, atomic writes, verified reads, one-line errors.

Every process calls save and restore (orbax coordinates them; the primary process writes replicated
arrays). Orbax writes each checkpoint into a temporary directory and renames it when complete, so a killed run
never leaves a half-written checkpoint that a restore would pick up. Once a save is complete each process
records the size and SHA-256 of every file it wrote (`checksums.process_<i>.json` in the step's directory), and
every read checks them first: orbax never parses a damaged file. Run directories may be local or on an object
store (``gs://bucket/...``, shared by the hosts of a pod).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from typing import Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from etils import epath

from ltkd_jax.io import absolute, atomic_open, file_digest, first_line, is_local  # absolute: local paths kept absolute

CHECKSUMS = "checksums.process_{}.json"
# Files saved before their process recorded them (a run, or one of its processes, killed between saves): those are
# unverified, not damaged.
NO_CHECKSUMS = "files without checksums"
# Beyond the arrays, per checkpoint: orbax's metadata files and file-system blocks (a demo student's step is 0.13 MB
# of arrays in 0.2 MB on disk).
METADATA_BYTES = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, or not the configured architecture."""


def _manager(directory: str, **options) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        absolute(directory),
        # One process: asynchronous. save() returns once the arrays are copied to the host and the files are
        # written in the background (a sync save of a CIFAR student blocked ~0.1 s, a fifth of an epoch at GPU
        # speed); the next save, a restore and close() wait for it; orbax's rename-when-complete still holds.
        # Several processes: synchronous. Orbax 0.12.8's asynchronous finalize left one of two CPU processes
        # waiting at exit in tests/launch/test_multiprocess.py; the epochs of data sets one trains on pods are long.
        options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=jax.process_count() == 1,
                                             **options),
        item_handlers=ocp.StandardCheckpointHandler())


class Checkpointer:
    """`<dir>/checkpoints` keeps the last `keep` steps; `<dir>/best` the one with the best test accuracy."""

    def __init__(self, directory: str, keep: int = 2):
        self.directory = directory
        self.latest = _manager(epath.Path(directory) / "checkpoints", max_to_keep=keep)
        self.best = _manager(epath.Path(directory) / "best", max_to_keep=1, best_fn=lambda m: m["accuracy"],
                             best_mode="max", keep_checkpoints_without_metrics=False)
        best_step = self.best.best_step()
        metrics = self.best.metrics(best_step) if best_step is not None else None
        self.best_accuracy = float(metrics["accuracy"]) if metrics else -np.inf
        self._unrecorded = []  # step directories saved (maybe still being written) without checksums yet
        self._unrecorded_bytes = 0  # what they need on disk
        self.deleted = []  # damaged steps restore_latest deleted

    def save(self, step: int, state, accuracy: Optional[float] = None) -> None:
        """Save `step` to the last-N set, and to `best` when `accuracy` beats every earlier one (only then:
        an epoch that does not improve writes one checkpoint, not two)."""
        self.finish_writes()
        if step not in (self.latest.all_steps() or ()):
            self.latest.save(step, args=ocp.args.StandardSave(state), force=True)
            self._unrecorded.append(epath.Path(self.latest.directory) / str(step))
            self._unrecorded_bytes += bytes_needed(state)
        if accuracy is not None and accuracy > self.best_accuracy and step not in (self.best.all_steps() or ()):
            self.best.save(step, args=ocp.args.StandardSave(state), metrics={"accuracy": float(accuracy)},
                           force=True)
            self._unrecorded.append(epath.Path(self.best.directory) / str(step))
            self._unrecorded_bytes += bytes_needed(state)
            self.best_accuracy = float(accuracy)

    def finish_writes(self) -> None:
        """Checksums of the saves that were in flight, once complete (orbax's next save would wait for them too:
        the saves stay asynchronous, only the hashing runs here)."""
        if self._unrecorded:
            try:
                self.latest.wait_until_finished()
                self.best.wait_until_finished()
            except Exception as error:  # a background write failed: a full disk is the usual reason
                short = _shortage([self], self._unrecorded_bytes, self._unrecorded[-1].name)
                if short:
                    raise CheckpointError(short) from error
                raise
            for step_dir in self._unrecorded:
                write_checksums(step_dir)
            self._unrecorded, self._unrecorded_bytes = [], 0

    def restore_latest(self, abstract_state, what: str = "checkpoint", at_most: Optional[int] = None):
        """The newest intact step (<= `at_most`), or None. A damaged step is one warning line and is deleted (so
        that training saves that step again); the run goes on from the one before."""
        self.finish_writes()
        for step in sorted(self.latest.all_steps(), reverse=True):
            if at_most is not None and step > at_most:
                continue
            step_dir = epath.Path(self.latest.directory) / str(step)
            problem = damage(step_dir)
            if problem in (None, NO_CHECKSUMS):
                if problem:
                    _warn_unverified(what, step_dir, "restoring")
                return restore(self.latest, step, abstract_state, what)
            logging.warning("%s %s is damaged (%s): deleted it, resuming from the step before", what, step_dir,
                            problem)
            if jax.process_count() > 1:  # every process has checked the step before the primary deletes it
                multihost_utils.sync_global_devices(f"checked checkpoint {step}")
            self.latest.delete(step)
            self.deleted.append(step)
        return None

    def close(self):
        """Wait for the writes in flight (an error of a background write surfaces here), record their checksums
        and release both."""
        try:
            self.finish_writes()
        finally:
            try:
                self.latest.close()
            finally:
                self.best.close()


def bytes_needed(state) -> int:
    """Disk space one checkpoint of `state` takes at most (its arrays, whole, and metadata)."""
    return sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state)) + METADATA_BYTES


def free_bytes(directory: str) -> Optional[int]:
    """Free space of the file system `directory` is (or will be) on; None on an object store."""
    if not is_local(directory):
        return None
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def _shortage(checkpointers: Sequence[Checkpointer], needed: int, step) -> Optional[str]:
    """The error line when the file system of the checkpointers lacks `needed` bytes (as seen now), else None."""
    directory = checkpointers[0].directory
    free = free_bytes(directory)
    if free is None or free >= needed:
        return None
    last = checkpointers[0].latest.latest_step()
    return (f"not enough disk space for checkpoint {step} in {directory}: {free / 2**20:.1f} MiB free, "
            f"{needed / 2**20:.1f} MiB needed; free some and rerun the same command to resume from "
            + (f"step {last}" if last is not None else "the start"))


def ensure_space(checkpointers: Sequence[Checkpointer], states: Sequence, step: int) -> None:
    """Before anything of `step` is written (its test metrics, its checkpoints): a CheckpointError line, the same
    on every process, where the disk cannot take a last-N and a best checkpoint of every member. The saves in
    flight are waited for first (they take their space), so the previous checkpoint is complete and intact."""
    for ckpt in checkpointers:
        ckpt.finish_writes()
    needed = sum(2 * bytes_needed(state) for state in states)
    short = _shortage(checkpointers, needed, step)
    if jax.process_count() > 1:
        anywhere = bool(np.max(multihost_utils.process_allgather(np.int32(short is not None))))
        short = short or (f"not enough disk space for checkpoint {step} on another process" if anywhere else None)
    if short:
        raise CheckpointError(short)


def _owner(relative_path: str) -> int:
    """The process that wrote a file of a step: orbax puts each process's shards under `ocdbt.process_<i>/` and
    its array metadata in `array_metadatas/process_<i>`; the rest is the primary process's."""
    match = re.search(r"(?:^|/)(?:ocdbt\.)?process_(\d+)(?:/|$)", relative_path)
    return int(match.group(1)) if match else 0


def _files(directory: epath.Path, prefix: str = ""):
    """(relative path, path) of every file under `directory`, the checksum files aside."""
    for child in sorted(directory.iterdir(), key=lambda child: child.name):
        if child.is_dir():
            yield from _files(child, f"{prefix}{child.name}/")
        elif not child.name.startswith(CHECKSUMS.split("{")[0]):  # the checksum files and their temporary copies
            yield prefix + child.name, child


def write_checksums(step_dir: epath.Path) -> None:
    """Record (size, SHA-256) of the files this process wrote into the complete step `step_dir`, atomically."""
    index = jax.process_index()
    files = {name: file_digest(path) for name, path in _files(step_dir) if _owner(name) == index}
    with atomic_open(step_dir / CHECKSUMS.format(index)) as f:
        json.dump({"processes": jax.process_count(), "files": files}, f)


def damage(step_dir: epath.Path) -> Optional[str]:
    """Why the files of `step_dir` are not those its save recorded (one phrase naming the file), or None."""
    records = sorted(step_dir.glob(CHECKSUMS.format("*")))
    if not records:
        return NO_CHECKSUMS
    files, processes = {}, 0
    for record in records:
        try:
            saved = json.loads(record.read_text())
            files.update(saved["files"])
            processes = saved["processes"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return f"{record} is unreadable"
    for name, (size, sha) in sorted(files.items()):
        path = step_dir / name
        if not path.exists():
            return f"{path} is missing"
        found_size, found_sha = file_digest(path)
        if (found_size, found_sha) != (size, sha):
            how = f"{found_size} bytes, saved with {size}" if found_size != size else "SHA-256 differs from its save"
            return f"{path} has changed ({how})"
    # Orbax renamed the step into place only once every process had written it, so a process that recorded nothing
    # was killed between its save and the record (the next save, restore or close writes it): unverified.
    return NO_CHECKSUMS if len(records) < processes else None


def _warn_unverified(what: str, step_dir, doing: str) -> None:
    logging.warning("%s %s holds %s (a process stopped before recording them); %s it as it is", what, step_dir,
                    NO_CHECKSUMS, doing)


def restore_variables(run_dir: str, abstract_variables, what: str = "teacher checkpoint"):
    """`(variables, checkpoint path)`: only the model variables {params, batch_stats} of the last checkpoint of
    a run directory (a teacher), and the path of the step they came from.

    The optimiser state is not read, so a teacher trained with any optimiser settings loads.
    """
    directory = epath.Path(absolute(run_dir)) / "checkpoints"
    if not directory.is_dir():
        raise CheckpointError(f"{what} {run_dir} has no checkpoints/ directory")
    manager = ocp.CheckpointManager(directory, item_handlers=ocp.PyTreeCheckpointHandler(),
                                    options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        step = manager.latest_step()
        if step is None:
            raise CheckpointError(f"{what} {run_dir} holds no saved step")
        problem = damage(directory / str(step))
        if problem == NO_CHECKSUMS:
            _warn_unverified(what, directory / str(step), "loading")
        elif problem:
            raise CheckpointError(f"{what} {directory / str(step)} is damaged: {problem}")
        target = {"params": abstract_variables["params"], "batch_stats": abstract_variables.get("batch_stats", {})}
        variables = restore(manager, step, abstract_variables, what, args=ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
        return variables, os.fspath(directory / str(step))
    finally:
        manager.close()


def _first_line(error: Exception, limit: int = 200) -> str:
    text = first_line(error).split(" See full TensorStore details")[0]  # then a dump of the storage spec
    return f"{type(error).__name__}: {text if len(text) <= limit else text[:limit] + '...'}"


@contextlib.contextmanager
def _reading(what: str, path: str):
    """A restore: any failure becomes one CheckpointError line."""
    try:
        yield
    except Exception as error:  # orbax raises many types for a damaged directory
        raise CheckpointError(f"{what} {path} is unreadable or corrupted ({_first_line(error)})") from None


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, what: str, args=None):
    """Restore `step` into the structure, shapes and shardings of `abstract_state` (or as `args` says, after
    checking the stored tree against `abstract_state`), or raise CheckpointError."""
    path = os.fspath(epath.Path(manager.directory) / str(step))
    with _reading(what, path):
        stored = manager.item_metadata(step)
    variables = abstract_state if isinstance(abstract_state, dict) else abstract_state.variables
    _check_matches(stored, variables["params"], variables.get("batch_stats", {}), what, path)
    with _reading(what, path):
        return manager.restore(step, args=args or ocp.args.StandardRestore(abstract_state))


def _check_matches(stored, params, batch_stats, what: str, path: str) -> None:
    """The model variables `params` and `batch_stats` (names and shapes), or a one-line error naming the first
    difference.

    The optimiser state mirrors the parameters, so comparing `params` and `batch_stats` decides it.
    """
    stored = getattr(stored, "tree", stored)
    if stored is None:
        raise CheckpointError(f"{what} {path} has no readable metadata")

    def shapes(tree):
        flat, _ = jax.tree_util.tree_flatten_with_path(tree)
        return {jax.tree_util.keystr(key): tuple(leaf.shape) for key, leaf in flat}

    want = shapes({"params": params, "batch_stats": batch_stats})
    try:
        have = shapes({"params": stored["params"], "batch_stats": stored.get("batch_stats", {})})
    except (KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{what} {path} holds no model variables (params / batch_stats)") from None
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing or extra:
        name = (missing or extra)[0]
        kind = "lacks" if missing else "has an unexpected"
        raise CheckpointError(f"{what} {path} does not match the configured architecture: it {kind} variable "
                              f"{name} ({len(missing)} missing, {len(extra)} unexpected)")
    for name, shape in want.items():
        if have[name] != shape:
            raise CheckpointError(f"{what} {path} does not match the configured architecture: {name} has shape "
                                  f"{have[name]}, expected {shape}")
