"""The sweep's cost model: estimated device seconds of a run (or a population) from its config, scaled from
measured anchors by the models' forward GFLOPs, with training images per epoch from the config's long-tailed
profile; and the plan summary the sweep prints with it."""
from __future__ import annotations

import math

import numpy as np

from ltkd_jax import config as config_lib
from ltkd_jax.data import longtail

# Forward GFLOPs per image (XLA cost analysis, `python -m ltkd_jax.tools.models_table`): CIFAR-style models at
# 32×32 with 100 classes, ImageNet models at 224×224 with 1000 classes. Other resolutions scale with the pixel
# count (TinyImageNet 64×64: ×4; Fashion-MNIST 28×28: ×0.766; ImageNet `image_size`: (size/224)²).
GFLOPS = {
    "resnet8x4": 0.328, "resnet32x4": 1.980, "resnet32": 0.129, "resnet110": 0.486, "vgg8": 0.149,
    "vgg13": 0.460, "wrn_40_1": 0.153, "wrn_40_2": 0.598, "shufflenet_v1": 0.086, "mobilenet_v2": 0.014,
    "resnet50_cifar": 2.472, "demo_resnet_teacher": 0.0253, "demo_resnet_student": 0.00145,
    "resnet18": 3.375, "resnet34": 6.778, "resnet50": 7.997, "mobilenet_v1": 1.156,
}
# A training step costs 3 forwards of the trained network (forward + backward) plus one teacher forward when
# distilling; evaluation (every `eval_every_epochs`, whole test set) one forward of the trained network plus the
# teacher's (the eval step also measures agreement with the teacher). FitNet/ReviewKD connectors are ignored.
DEVICES = {
    # Anchor (measured): one H200, JAX fp32, batch 64, resnet32x4 → resnet8x4 distillation at
    # 24,417 img/s = 24,417 × (1.980 + 3 × 0.328) GFLOP/s ≈ 72 TFLOP/s of XLA-counted work. Assumed to hold for
    # every model (bigger ImageNet convolutions would run faster, a host input pipeline may run slower), with a
    # floor of 1 ms per batch-64 step for the small networks (at most 64k img/s training, 256k img/s eval).
    "h200": dict(label="one NVIDIA H200 (fp32, batch 64)", gflop_per_s=24_417 * (1.980 + 3 * 0.328),
                 max_train_ips=64_000, max_eval_ips=256_000),
    # Anchor (measured, our Fashion-MNIST pilot): the 2-core CPU trained the demo teacher at 763 img/s on 28×28.
    "cpu2": dict(label="the 2-core CPU", gflop_per_s=763 * 3 * 0.0253 * (28 * 28) / (32 * 32),
                 max_train_ips=math.inf, max_eval_ips=math.inf),
}
FULL_CLASS_COUNTS = {
    "cifar100": np.full(100, 500), "tiny_imagenet": np.full(200, 500), "fashion_mnist": np.full(10, 6000),
    # Approximation: ImageNet's real per-class counts range over 732-1300 (1,281,167 in all); the exponential
    # profile is applied here to a flat 1,281 per class.
    "imagenet2012": np.full(1000, 1281),
}
EVAL_IMAGES = {"cifar100": 10_000, "tiny_imagenet": 10_000, "imagenet2012": 50_000, "fashion_mnist": 10_000}
PIXEL_SCALE = {"tiny_imagenet": 4.0, "fashion_mnist": (28 * 28) / (32 * 32)}
COST_MODEL = (
    "cost model: images/s scaled from the anchor by the models' forward GFLOPs (train step = 3 × trained net "
    "+ 1 × teacher forward; eval every epoch on the full test set), training images per epoch from the "
    "exponential LT profile (ImageNet-LT approximated on a flat 1,281 images per class)")


def resolution_scale(config) -> float:
    if config.dataset.name == "imagenet2012":
        return ((config.dataset.image_size or 224) / 224) ** 2
    return PIXEL_SCALE.get(config.dataset.name, 1.0)


def train_images(config) -> int:
    counts = FULL_CLASS_COUNTS[config.dataset.name]
    return int(longtail.exponential_counts(counts, config.dataset.imbalance_factor).sum())


def population_seconds(configs, device: str = "h200") -> float:
    """Estimated device seconds of the runs of `configs` trained as one population (one data set, seed and
    batch): one teacher forward per training batch for all of them, each member's own training and evaluation
    work; the per-step floor (`max_train_ips`) is paid per member (assumed)."""
    spec, first = DEVICES[device], configs[0]
    scale = resolution_scale(first)

    def teacher_gflops(config):
        return GFLOPS[config.teacher_model] if config.method not in config_lib.CE_METHODS else 0.0

    def trained_gflops(config):
        return GFLOPS[config.teacher_model if config.method == "teacher" else config.student_model]

    step_gflops = max(map(teacher_gflops, configs)) + sum(3 * trained_gflops(config) for config in configs)
    seconds_per_image = max(step_gflops * scale / spec["gflop_per_s"], len(configs) / spec["max_train_ips"])
    seconds = first.num_epochs * train_images(first) * seconds_per_image
    for config in configs:
        eval_ips = min(spec["gflop_per_s"] / ((trained_gflops(config) + teacher_gflops(config)) * scale),
                       spec["max_eval_ips"])
        evals = math.ceil(config.num_epochs / config.eval_every_epochs)
        seconds += evals * EVAL_IMAGES[config.dataset.name] / eval_ips
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
    images = {(r.config.dataset.name, r.config.dataset.imbalance_factor): train_images(r.config) for r in runs}
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
