"""The sweep's cost model: estimated device seconds of a run (or a population) from its config, scaled from a
measured anchor by the models' forward FLOPs (XLA's count of the lowered forward pass at the data set's resolution
and classes), with the data set's sizes from the data registry; and the plan summary the sweep prints with it."""
from __future__ import annotations

import math

import numpy as np

from ltkd_jax import experiment, methods
from ltkd_jax.data import longtail, registry
from ltkd_jax.tools import models_table

# A training step costs 3 forwards of the trained network (forward + backward) plus one teacher forward when
# distilling; evaluation (every `eval_every_epochs`, whole test set) one forward of the trained network plus the
# teacher's (the eval step also measures agreement with the teacher). FitNet/ReviewKD connectors are ignored.
# Each device's anchor is a measured rate, (data set, teacher forward or None, trained network, images/s), which
# gives its FLOP/s; assumed to hold for every model (bigger ImageNet convolutions would run faster, a host input
# pipeline may run slower), with a per-step floor for small networks.
DEVICES = {
    # One H200, JAX fp32, batch 64, resnet32x4 → resnet8x4 distillation (≈ 72 TFLOP/s of XLA-counted work); the
    # floor: 1 ms per batch-64 step (at most 64k img/s training, 256k img/s eval).
    "h200": dict(label="one NVIDIA H200 (fp32, batch 64)", anchor=("cifar100", "resnet32x4", "resnet8x4", 24_417),
                 max_train_ips=64_000, max_eval_ips=256_000),
    # Our Fashion-MNIST pilot: the 2-core CPU trained the demo teacher at 763 img/s.
    "cpu2": dict(label="the 2-core CPU", anchor=("fashion_mnist", None, "demo_resnet_teacher", 763),
                 max_train_ips=math.inf, max_eval_ips=math.inf),
}
COST_MODEL = (
    "cost model: images/s scaled from the anchor by the models' forward GFLOPs (train step = 3 × trained net "
    "+ 1 × teacher forward; eval every epoch on the full test set), training images per epoch from the "
    "exponential LT profile (ImageNet-LT approximated on a flat "
    f"{registry.get_spec('imagenet2012').full_train_per_class:,} images per class)")


def gflops(model: str, dataset: str, image_shape=None) -> float:
    """Forward GFLOPs per image of `model` on `dataset` (at `image_shape`, default the data set's own)."""
    spec = registry.get_spec(dataset)
    flops = models_table.forward_flops(model, tuple(image_shape or spec.image_shape), spec.num_classes)
    if flops is None:
        raise ValueError(f"XLA gives no cost analysis for {model} on this backend: the sweep cannot estimate hours")
    return flops / 1e9


def gflop_per_s(device: str) -> float:
    dataset, teacher, trained, images_per_s = DEVICES[device]["anchor"]
    return images_per_s * ((gflops(teacher, dataset) if teacher else 0.0) + 3 * gflops(trained, dataset))


def train_images(config) -> int:
    spec = registry.get_spec(config.dataset.name)
    counts = np.full(spec.num_classes, spec.full_train_per_class)
    return int(longtail.exponential_counts(counts, config.dataset.imbalance_factor).sum())


def population_seconds(configs, device: str = "h200") -> float:
    """Estimated device seconds of the runs of `configs` trained as one population (one data set, seed and
    batch): one teacher forward per training batch for all of them, each member's own training and evaluation
    work; the per-step floor (`max_train_ips`) is paid per member (assumed)."""
    spec, first, rate = DEVICES[device], configs[0], gflop_per_s(device)

    def forward(config, model):
        return gflops(model, config.dataset.name, experiment.image_shape(config))

    def teacher_gflops(config):
        return forward(config, config.teacher_model) if methods.METHODS[config.method].kind != "ce" else 0.0

    def trained_gflops(config):
        return forward(config, config.teacher_model if config.method == "teacher" else config.student_model)

    step_gflops = max(map(teacher_gflops, configs)) + sum(3 * trained_gflops(config) for config in configs)
    seconds_per_image = max(step_gflops / rate, len(configs) / spec["max_train_ips"])
    seconds = first.num_epochs * train_images(first) * seconds_per_image
    for config in configs:
        eval_ips = min(rate / (trained_gflops(config) + teacher_gflops(config)), spec["max_eval_ips"])
        evals = math.ceil(config.num_epochs / config.eval_every_epochs)
        seconds += evals * registry.get_spec(config.dataset.name).eval_images / eval_ips
    return seconds


def summary_lines(runs, tables, args, finished) -> list:
    """The summary lines of a sweep plan (`ltkd_jax.tools.sweep.Run`s): runs, jobs and estimated hours with and
    without populations; `finished`: the workdirs of the runs already finished (sweep.is_finished)."""
    def hours(chosen):
        return sum(population_seconds([m.config for m in r.members] or [r.config], args.device)
                   for r in chosen) / 3600

    solo = [member for r in runs for member in (r.members or (r,))]
    teachers = [r for r in runs if r.kind == "teacher"]
    students = [r for r in solo if r.kind == "student"]
    grouped = [r for r in runs if r.members]
    images = {(r.config.dataset.name, r.config.dataset.imbalance_factor): train_images(r.config) for r in solo}
    lines = [
        f"tables {','.join(tables)}: {len(solo)} runs ({len(teachers)} teacher, {len(students)} student); "
        f"seeds {','.join(map(str, args.seed_list))}; teacher seeds {args.teacher_seeds}",
        f"estimated device time: {hours(solo):.2f} h on {DEVICES[args.device]['label']} "
        f"(teachers {hours(teachers):.2f} h, students {hours(students):.2f} h)",
        f"as populations: {len(runs)} jobs ({len(grouped)} populations of {sum(len(r.members) for r in grouped)} "
        f"students), {hours(runs):.2f} h" + ("" if grouped else " (--no_populations: students one by one)"),
        COST_MODEL,
        "training images per epoch: " + ", ".join(
            f"{name} γ={longtail.gamma_text(gamma)}: {count:,}{' (approx.)' if name == 'imagenet2012' else ''}"
            for (name, gamma), count in sorted(images.items())),
    ]
    if len(tables) > 1:
        lines.append("per table (shared runs counted in each): " + "; ".join(
            f"{table}: {sum(table in r.tables for r in solo)} runs, "
            f"{hours([r for r in solo if table in r.tables]):.2f} h" for table in tables))
    lines.append(f"already finished under {args.runs_dir}: {sum(r.workdir in finished for r in solo)} of {len(solo)}")
    return lines
