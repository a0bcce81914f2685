"""Accuracy summaries from per-class counts (host, numpy), and the run outputs process 0 writes: metrics.jsonl,
TensorBoard events, a terminal progress line. The run directory may be local or on an object store."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import socket
import sys
import time
from typing import Dict, Optional

import jax
import numpy as np
from etils import epath

from ltkd_jax import io
from ltkd_jax.data.longtail import shot_masks

GROUP_NAMES = ("head", "medium", "tail")
METRICS_FILE = "metrics.jsonl"  # in each run directory
CALIBRATION_BINS = 15  # equal-width confidence bins of the expected calibration error (MiSLAS's number)


def group_names(num_groups: int):
    return GROUP_NAMES if num_groups == 3 else tuple(f"group{k}" for k in range(num_groups))


def summarize(counts: Dict[str, np.ndarray], group_ids: np.ndarray, train_counts: np.ndarray) -> Dict:
    """Overall, per-group, per-shot and per-class accuracy (percent) from summed eval counts.

    Group and shot accuracies are over the test examples of those classes (on a balanced test set this is the
    mean of their per-class accuracies). A shot bucket with no class is left out. Test counts
    (`step.prediction_counts`) add calibration (`calibration`) and, per group, the share of the predictions that
    fall in its classes beside its share of the labels (`prediction_share_<group>`, `label_share_<group>`: a
    head-biased model predicts its head more often than the head's share of the test set).
    """
    examples = np.asarray(counts["examples"], np.float64)
    correct = np.asarray(counts["correct"], np.float64)
    group_ids = np.asarray(group_ids)
    num_groups = int(group_ids.max()) + 1

    def accuracy(select: Optional[np.ndarray] = None):
        n = examples[select].sum() if select is not None else examples.sum()
        c = correct[select].sum() if select is not None else correct.sum()
        return float(100.0 * c / n) if n else float("nan")

    summary = {"accuracy": accuracy(), "loss": float(counts["loss_sum"]) / max(examples.sum(), 1.0)}
    for k, name in enumerate(group_names(num_groups)):
        summary[f"accuracy_{name}"] = accuracy(group_ids == k)
    for name, select in shot_masks(train_counts).items():  # many / medium / few (> 100, 20-100, < 20 images)
        if select.any():
            key = "medium_shot" if name == "medium" else name  # "medium" is also a group name
            summary[f"accuracy_{key}"] = accuracy(select)
    # A class without test examples has no accuracy (NaN, null in metrics.jsonl).
    summary["per_class_accuracy"] = [float(x) for x in np.where(examples > 0, 100.0 * correct / np.maximum(examples, 1),
                                                                np.nan)]
    if "predicted" in counts:  # test records: calibration and where the predictions fall
        summary.update(calibration(counts, group_ids))
        total, predicted = max(examples.sum(), 1.0), np.asarray(counts["predicted"], np.float64)
        for k, name in enumerate(group_names(num_groups)):
            summary[f"prediction_share_{name}"] = float(100.0 * predicted[group_ids == k].sum() / total)
            summary[f"label_share_{name}"] = float(100.0 * examples[group_ids == k].sum() / total)
    if "agree" in counts:
        summary["teacher_agreement"] = float(100.0 * np.sum(counts["agree"]) / examples.sum())
    return summary


def calibration(counts: Dict[str, np.ndarray], group_ids: np.ndarray) -> Dict[str, float]:
    """Expected calibration error and mean top-1 confidence (percent), overall and over the test examples of each
    group, from the per-class bin sums of `step.prediction_counts`: ECE = sum over bins of
    |correct - summed confidence| / examples (each bin's |accuracy - confidence| weighted by its share)."""
    bin_examples, bin_correct, bin_confidence = (np.asarray(counts[key], np.float64)
                                                 for key in ("bin_examples", "bin_correct", "bin_confidence"))

    def of(select):
        n = bin_examples[select].sum()
        if not n:
            return float("nan"), float("nan")
        gap = np.abs(bin_correct[select].sum(0) - bin_confidence[select].sum(0)).sum()
        return float(100.0 * gap / n), float(100.0 * bin_confidence[select].sum() / n)

    result = dict(zip(("ece", "confidence"), of(np.ones(len(group_ids), bool))))
    for k, name in enumerate(group_names(int(np.max(group_ids)) + 1)):
        result[f"ece_{name}"], result[f"confidence_{name}"] = of(np.asarray(group_ids) == k)
    return result


def jsonable(value):
    """`value` as JSON holds it: arrays as lists, a non-finite number as null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: jsonable(v) for key, v in value.items()}
    if isinstance(value, (np.ndarray, jax.Array)):
        value = np.asarray(value).tolist()
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


class MetricsLog:
    """Appends one JSON object per line to `<workdir>/metrics.jsonl` and mirrors scalars to TensorBoard.

    Object stores (a `gs://` workdir) cannot append to a file: there the lines are kept in memory (seeded from
    the existing file, so a resumed run keeps its history) and the whole file is rewritten on every write. A run
    resumed at `resume_step` first drops the records after it (logged after its last intact checkpoint)."""

    def __init__(self, workdir: str, resume_step: Optional[int] = None):
        self.enabled = jax.process_index() == 0
        self.path = os.fspath(epath.Path(workdir) / METRICS_FILE)
        self._tb = None
        self._lines = None  # remote workdirs only: every line of the file
        if self.enabled:
            epath.Path(workdir).mkdir(parents=True, exist_ok=True)
            path = epath.Path(self.path)
            lines = path.read_text().splitlines(keepends=True) if path.exists() else []
            kept = [line for line in lines if line.strip() and (resume_step is None or _step(line) <= resume_step)]
            if len(kept) != len(lines):
                with io.atomic_open(path) as f:
                    f.writelines(kept)
            if not io.is_local(self.path):
                self._lines = kept
            self._tb = _tensorboard_writer(os.fspath(epath.Path(workdir) / "tensorboard"))

    def write(self, record: Dict) -> None:
        if not self.enabled:
            return
        record = {key: jsonable(value) for key, value in record.items()}
        line = json.dumps(record) + "\n"
        if self._lines is None:
            with epath.Path(self.path).open("a") as f:
                f.write(line)
        else:
            self._lines.append(line)
            io.write_file(self.path, "".join(self._lines))
        if self._tb is not None:
            self._tb(record)


def _step(line: str) -> float:
    """The step of a metrics line; infinite for a line a killed run left half-written (dropped on resume)."""
    try:
        return json.loads(line).get("step", 0)
    except ValueError:
        return math.inf


def read_metrics(path: str):
    path = epath.Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tensorboard_writer(logdir: str):
    """Scalar TensorBoard events (`_EventFile`); None where tensorboard is not installed (metrics.jsonl is always
    written)."""
    try:
        return _EventFile(logdir)
    except ImportError:
        return None


_EVENT_FILES = itertools.count()


class _EventFile:
    """One TensorBoard event file: tensorboard's record framing (TFRecord, masked CRC32C) of its Event protos, in a
    file opened through epath for the run's life. Not tensorboard's EventFileWriter: its file layer imports
    TensorFlow when installed (5 CPU-seconds and an accelerator grab at the start of every run whose data are
    already cached)."""

    def __init__(self, logdir: str):
        from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=import-outside-toplevel
        from tensorboard.summary.writer.record_writer import RecordWriter  # pylint: disable=import-outside-toplevel

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        directory = epath.Path(logdir)
        directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        # TensorBoard's naming; the counter keeps a run resumed within the same second in one process (tests) from
        # truncating the file its first part wrote.
        name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.{next(_EVENT_FILES)}"
        self._files = contextlib.ExitStack()  # holds it open: epath's remote open() is a context manager
        self._records = RecordWriter(self._files.enter_context((directory / name).open("wb")))
        self._add(self._event(wall_time=now, file_version="brain.Event:2"))

    def __call__(self, record: Dict) -> None:
        split, step = record.get("split", "train"), int(record.get("step", 0))
        values = []
        for key, value in record.items():
            if key in ("step", "split") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                values.append(self._summary.Value(tag=f"{split}/{key}", simple_value=float(value)))
            elif key.startswith("teacher_group_sums") and isinstance(value, list):
                values += [self._summary.Value(tag=f"{split}/{key}/group{k}", simple_value=float(v))
                           for k, v in enumerate(value)]
        self._add(self._event(wall_time=time.time(), step=step, summary=self._summary(value=values)))

    def _add(self, event) -> None:
        self._records.write(event.SerializeToString())
        self._records.flush()


class Progress:
    """One self-overwriting terminal line: stage, epoch, step, loss, images/s (process 0)."""

    def __init__(self, name: str, total_steps: int, batch_size: int):
        self.enabled = jax.process_index() == 0
        self.name, self.total_steps, self.batch_size = name, total_steps, batch_size
        self._last_time, self._last_step = time.time(), None
        self.images_per_sec: Optional[float] = None

    def update(self, step: int, epoch: int, loss: float) -> None:
        now = time.time()
        if self._last_step is not None and now > self._last_time:
            self.images_per_sec = (step - self._last_step) * self.batch_size / (now - self._last_time)
        self._last_time, self._last_step = now, step
        if self.enabled:
            rate = f"{self.images_per_sec:,.0f} img/s" if self.images_per_sec else "compiling"
            sys.stderr.write(f"\r[{self.name}] epoch {epoch} step {step}/{self.total_steps} loss {loss:.4f} "
                             f"{rate}   ")
            sys.stderr.flush()

    def restart_clock(self) -> None:
        """Start the next rate window now (after evaluation or a checkpoint: the rate is training's alone)."""
        self._last_time = time.time()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
