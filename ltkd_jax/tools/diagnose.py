"""Teacher-bias diagnostics: `python -m ltkd_jax.tools.diagnose --teacher=RUN_DIR [--batch_size=64] [--out=DIR]`.

For a trained teacher (the run directory of a `teacher` run, or any run whose config names the model), prints
and plots its group-probability sums per batch (the paper's Fig. 3 measurement: sums over a batch of the
per-sample head / medium / tail probabilities, at T = 1 unless --temperature) on the balanced test set and on the
long-tailed training set, and its per-group calibration (mean confidence against accuracy, and the expected
calibration error over 15 bins) on the test set.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import jax
import numpy as np
from etils import epath

from ltkd_jax import experiment, io, models, train
from ltkd_jax.run_dir import pyplot, read_config, save_png
from ltkd_jax.data import device, longtail


def predictions(model, variables, images: np.ndarray, augmentation, batch_size: int, temperature: float):
    """Softmax(logits / T) of every image (host numpy), in eval mode, in order."""
    def probabilities(v, image):  # uint8 batches, normalised on the device as training does
        x = device.normalize(image, augmentation.mean, augmentation.std)
        return jax.nn.softmax(model.apply(v, x, train=False) / temperature, -1)

    apply = jax.jit(probabilities)
    out = []
    for batch in device.eval_batches(images, np.zeros(len(images), np.int32), batch_size):
        out.append(np.asarray(apply(variables, batch["image"]))[batch["mask"]])
    return np.concatenate(out)


def out_dir_of(run_dir: str, out_dir: str = "") -> epath.Path:
    """Where diagnose writes: `out_dir`, by default `<run_dir>/diagnose` (local or gs://)."""
    return epath.Path(out_dir or epath.Path(run_dir) / "diagnose")


def batch_group_sums(probs: np.ndarray, group_ids: np.ndarray, batch_size: int, seed: int = 0) -> np.ndarray:
    """(num_batches, G): per random batch of `batch_size` examples, the sum of each group's probabilities."""
    order = np.random.default_rng(seed).permutation(len(probs))
    num_batches = len(probs) // batch_size
    group_probs = probs @ np.eye(int(group_ids.max()) + 1)[group_ids]  # (N, G)
    batches = group_probs[order[:num_batches * batch_size]].reshape(num_batches, batch_size, -1)
    return batches.sum(1)


def calibration(probs: np.ndarray, labels: np.ndarray, group_ids: np.ndarray, train_counts: np.ndarray):
    """Per group of the true class: accuracy, mean confidence, ECE (%), counted and summarised as the evaluation
    does (train.prediction_counts, train.summarize)."""
    counts = jax.device_get(jax.jit(train.prediction_counts, static_argnums=3)(
        probs, labels, np.ones(len(labels), bool), len(group_ids)))
    summary = train.summarize({**counts, "loss_sum": 0.0}, group_ids, train_counts)
    return {name: {key: summary[f"{key}_{name}"] for key in ("accuracy", "confidence", "ece")}
            for name in train.group_names(int(group_ids.max()) + 1)}


def diagnose(run_dir: str, *, batch_size: int = 64, temperature: float = 1.0, out_dir: str = ""):
    config = read_config(run_dir, flag="--teacher")
    dataset = config.dataset.name
    model_name = config.teacher_model if config.method == "teacher" else config.student_model
    config.dataset.device_resident = True
    data, _ = experiment.load_data(config)
    if data.train_images is None:
        raise ValueError(f"diagnose needs an in-memory data set; {dataset!r} streams from the host")
    smallest = min(len(data.test_images), len(data.train_images))
    if batch_size > smallest:
        raise ValueError(f"batch_size={batch_size} is larger than the {smallest} images of the smaller split")
    model = models.get_model(model_name, data.num_classes)
    variables = train.load_teacher(model, run_dir, data.image_shape).variables
    result = {"run_dir": run_dir, "model": model_name, "dataset": dataset,
              "imbalance_factor": config.dataset.imbalance_factor, "batch_size": batch_size,
              "temperature": temperature,
              "uniform_share": (np.bincount(data.group_ids) / data.num_classes * batch_size).tolist()}
    for split, images, labels in (("test", data.test_images, data.test_labels),
                                  ("train", data.train_images, data.train_labels)):
        probs = predictions(model, variables, images, data.augmentation, 1024, temperature)
        sums = batch_group_sums(probs, data.group_ids, batch_size)
        result[split] = {"group_sums_mean": sums.mean(0).tolist(), "group_sums_std": sums.std(0).tolist(),
                         "per_batch": sums.tolist()}
        if split == "test":
            result["calibration"] = calibration(probs, labels, data.group_ids, data.train_counts)
    out_dir = out_dir_of(run_dir, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    io.write_file(out_dir / "diagnose.json", json.dumps(result))
    _plot(result, out_dir / "group_sums.png")
    return result


def _plot(result, path):
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = train.group_names(len(result["uniform_share"]))
    for k, name in enumerate(names):
        for split, style in (("test", "-"), ("train", ":")):
            series = [b[k] for b in result[split]["per_batch"]]
            ax.plot(series, style, color=f"C{k}", label=f"{name}, {'balanced test' if split == 'test' else 'LT train'}")
    ax.set_xlabel("batch")
    ax.set_ylabel(f"group-probability sum per batch of {result['batch_size']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)  # through epath: matplotlib cannot write to gs://


def format_result(result) -> str:
    names = train.group_names(len(result["uniform_share"]))
    gamma = longtail.gamma_text(result["imbalance_factor"])
    lines = [f"{result['model']} on {result['dataset']}-LT (γ = {gamma}): group-probability sums "
             f"per batch of {result['batch_size']} (T = {result['temperature']})", "",
             "| split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
             "| class share (uniform prediction) | " + " | ".join(f"{v:.2f}" for v in result["uniform_share"]) + " |"]
    for split, label in (("test", "balanced test"), ("train", "long-tailed train")):
        mean, std = result[split]["group_sums_mean"], result[split]["group_sums_std"]
        lines.append(f"| {label} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(mean, std)) + " |")
    lines += ["", "Calibration on the balanced test set (by the true class's group):", "",
              "| group | accuracy | mean confidence | ECE |", "|---|---|---|---|"]
    for name, row in result["calibration"].items():
        lines.append(f"| {name} | {row['accuracy']:.2f} | {row['confidence']:.2f} | {row['ece']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """The command line: 2 for bad flags (argparse), 1 with one `error:` line for any other mistake."""
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.diagnose", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="run directory of the teacher (holds config.json)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--out", default="", help="output directory (default <teacher>/diagnose)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size={args.batch_size} must be >= 1")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        parser.error(f"--temperature={args.temperature} must be a finite number > 0")
    blocking = io.file_in_the_way(out_dir_of(args.teacher, args.out))
    if blocking is not None:
        parser.error(f"--out={args.out or '<teacher>/diagnose'}: {blocking} is a file, not a directory")
    try:
        result = diagnose(args.teacher, batch_size=args.batch_size, temperature=args.temperature, out_dir=args.out)
    except (ValueError, OSError) as error:  # a corrupted checkpoint (CheckpointError) among them
        print(f"error: {io.first_line(error)}", file=sys.stderr)
        return 1
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
