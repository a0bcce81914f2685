"""Orbax checkpoints of a TrainState: the last few, the best, atomic writes, one-line errors.

Every process calls save and restore (orbax coordinates them; the primary process writes replicated
arrays). Orbax writes each checkpoint into a temporary directory and renames it when complete, so a killed run
never leaves a half-written checkpoint that a restore would pick up. Run directories may be local or on an
object store (``gs://bucket/...``, shared by the hosts of a pod): orbax reads and writes both.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import sys
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from ltkd_jax.data._env import absolute, first_line  # absolute: local paths made so, gs:// URLs kept


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, or not the configured architecture."""


def _manager(directory: str, **options) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        absolute(directory),
        # One process: asynchronous. save() returns once the arrays are copied to the host and the files are
        # written in the background (a sync save of a CIFAR student blocked ~0.1 s, a fifth of an epoch at GPU
        # speed); the next save, a restore and close() wait for it; orbax's rename-when-complete still holds.
        # Several processes: synchronous. Orbax 0.12.8's asynchronous finalize left one of two CPU processes
        # waiting at exit in tests/test_multiprocess.py; the epochs of data sets one trains on pods are long.
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

    def save(self, step: int, state, accuracy: Optional[float] = None) -> None:
        """Save `step` to the last-N set, and to `best` when `accuracy` beats every earlier one (only then:
        an epoch that does not improve writes one checkpoint, not two)."""
        if step not in (self.latest.all_steps() or ()):
            self.latest.save(step, args=ocp.args.StandardSave(state), force=True)
        if accuracy is not None and accuracy > self.best_accuracy and step not in (self.best.all_steps() or ()):
            self.best.save(step, args=ocp.args.StandardSave(state), metrics={"accuracy": float(accuracy)},
                           force=True)
            self.best_accuracy = float(accuracy)

    def restore_latest(self, abstract_state, what: str = "checkpoint"):
        self.latest.wait_until_finished()
        step = self.latest.latest_step()
        if step is None:
            return None
        return restore(self.latest, step, abstract_state, what)

    def close(self):
        """Wait for the writes in flight (an error of a background write surfaces here) and release both."""
        try:
            self.latest.close()
        finally:
            self.best.close()


def restore_variables(run_dir: str, abstract_variables, what: str = "teacher checkpoint"):
    """`(variables, checkpoint path)`: only the model variables {params, batch_stats} of the last checkpoint of
    a run directory (a teacher), and the path of the step they came from.

    The optimiser state is not read, so a teacher trained with any optimiser settings loads.
    """
    directory = epath.Path(absolute(run_dir)) / "checkpoints"
    if not directory.is_dir():
        raise CheckpointError(f"{what} {run_dir} has no checkpoints/ directory")
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # orbax warns three times that a read-only manager is read-only
    try:
        manager = ocp.CheckpointManager(directory, item_handlers=ocp.PyTreeCheckpointHandler(),
                                        options=ocp.CheckpointManagerOptions(read_only=True))
    finally:
        logging.set_verbosity(verbosity)
    try:
        step = manager.latest_step()
        if step is None:
            raise CheckpointError(f"{what} {run_dir} holds no saved step")
        target = {"params": abstract_variables["params"], "batch_stats": abstract_variables.get("batch_stats", {})}
        variables = restore(manager, step, abstract_variables, what, args=ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
        return variables, os.fspath(directory / str(step))
    finally:
        manager.close()


def _first_line(error: Exception, limit: int = 200) -> str:
    text = first_line(error).split(" See full TensorStore details")[0]  # then a dump of the storage spec
    return f"{type(error).__name__}: {text if len(text) <= limit else text[:limit] + '...'}"


class _WithoutLoopClosedTracebacks(io.TextIOBase):
    """stderr without the tracebacks that tensorstore's threads print when orbax has closed its event loop
    after a failed read (`RuntimeError: Event loop is closed`: tens to thousands of lines after one bad file).

    A traceback is held until its exception line and dropped whole if that is the closed-loop error; other
    tracebacks and output pass unchanged. The threads' tracebacks interleave, so stray lines of theirs that
    arrive outside a held block are dropped too."""

    LOOP_CLOSED = "RuntimeError: Event loop is closed"
    STRAY = ("in call_soon_threadsafe", "    self._check_closed()", "in _check_closed",
             "raise RuntimeError('Event loop is closed')", LOOP_CLOSED)

    def __init__(self, stream):
        super().__init__()
        self.stream, self.partial, self.held = stream, "", None

    def _without_strays(self):
        """The held traceback without lines of the closed-loop tracebacks (a header alone was a cut-off one)."""
        kept = [held for held in self.held or [] if not any(s in held for s in self.STRAY)]
        return kept if len(kept) > 1 else []

    def write(self, text):
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            if line.startswith("Traceback (most recent call last):"):
                out += self.held or []
                self.held = [line]
            elif self.held is not None and line.startswith((" ", "\t")):
                self.held.append(line)
            elif self.held is not None:  # the exception line ends the held traceback
                if line.strip() != self.LOOP_CLOSED:
                    out += self._without_strays() + [line]
                self.held = None
            elif not any(stray in line for stray in self.STRAY):
                out.append(line)
        if out:
            self.stream.write("\n".join(out) + "\n")
        return len(text)

    def flush(self):
        if self.partial and self.held is None:
            self.stream.write(self.partial)
            self.partial = ""
        self.stream.flush()

    def release(self, failed_read: bool = False):
        """Whatever is held, and the stream underneath. After a failed read a held traceback is most likely a
        closed-loop one cut off by the failure: its stray lines are dropped; otherwise all is passed on."""
        held = self._without_strays() if failed_read else self.held or []
        self.stream.write("".join(line + "\n" for line in held) + self.partial)
        self.held, self.partial = None, ""
        self.stream.flush()
        return self.stream


class _WithoutOrphanedReads:
    """After a failed restore, orbax's unfinished read coroutines are collected unawaited: not worth a
    message each (other unraisable exceptions go to the previous hook)."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, unraisable):
        if not inspect.iscoroutine(unraisable.object):
            self.previous(unraisable)


def quiet_failed_reads() -> None:
    """For a process about to exit on a CheckpointError (the CLI): the reads orbax left running go on printing
    closed-loop tracebacks and unawaited-coroutine warnings from other threads until the exit; drop them."""
    if not isinstance(sys.stderr, _WithoutLoopClosedTracebacks):
        sys.stderr = _WithoutLoopClosedTracebacks(sys.stderr)
    if not isinstance(sys.unraisablehook, _WithoutOrphanedReads):
        sys.unraisablehook = _WithoutOrphanedReads(sys.unraisablehook)


def exit_after_failed_read(message: str, code: int) -> None:
    """A command line's end after a CheckpointError: `message` on a quieted stderr, then exit at once. The
    interpreter's shutdown would let the orphaned reads print again, past any filter; nothing is left to save
    (the checkpointer closed before the error got out)."""
    quiet_failed_reads()
    sys.stderr.write(message)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


@contextlib.contextmanager
def _reading(what: str, path: str):
    """A restore: any failure becomes one CheckpointError line; the closed-loop tracebacks of a failing read
    are dropped while it runs (after it, see quiet_failed_reads)."""
    stderr = sys.stderr
    if isinstance(stderr, _WithoutLoopClosedTracebacks):
        stderr = None  # already filtered (a failed read earlier in this process): leave it
    else:
        sys.stderr = _WithoutLoopClosedTracebacks(stderr)
    failed = False
    try:
        yield
    except Exception as error:  # orbax raises many types for a damaged directory
        failed = True
        raise CheckpointError(f"{what} {path} is unreadable or corrupted ({_first_line(error)})") from None
    finally:
        if stderr is not None:
            filtered = sys.stderr
            sys.stderr = filtered.release(failed) if isinstance(filtered, _WithoutLoopClosedTracebacks) else stderr


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, what: str, args=None):
    """Restore `step` into the structure, shapes and shardings of `abstract_state` (or as `args` says, after
    checking the stored tree against `abstract_state`), or raise CheckpointError."""
    path = os.fspath(epath.Path(manager.directory) / str(step))
    with _reading(what, path):
        stored = manager.item_metadata(step)
    _check_matches(stored, abstract_state, what, path)
    with _reading(what, path):
        return manager.restore(step, args=args or ocp.args.StandardRestore(abstract_state))


def _check_matches(stored, abstract_state, what: str, path: str) -> None:
    """Same model variables (names and shapes), or a one-line error naming the first difference.

    The optimiser state mirrors the parameters, so comparing `params` and `batch_stats` decides it.
    """
    stored = getattr(stored, "tree", stored)
    if stored is None:
        raise CheckpointError(f"{what} {path} has no readable metadata")

    def shapes(tree):
        flat, _ = jax.tree_util.tree_flatten_with_path(tree)
        return {jax.tree_util.keystr(key): tuple(leaf.shape) for key, leaf in flat}

    if isinstance(abstract_state, dict):
        abstract_state = type("Variables", (), {"params": abstract_state["params"],
                                                "batch_stats": abstract_state.get("batch_stats", {})})
    want = shapes({"params": abstract_state.params, "batch_stats": abstract_state.batch_stats})
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
