"""Throughput of the distillation training step: `python -m ltkd_jax.tools.bench`.

    python -m ltkd_jax.tools.bench --teacher=resnet32x4 --student=resnet8x4 --batch_size=64 --dtype=float32
    python -m ltkd_jax.tools.bench --batch_size=512 --dtype=bfloat16 --steps_per_dispatch=1,16 --epoch

Rows (img/s, medians over timed windows; compile time; TFLOP/s from XLA's cost analysis against the dtype's
dense peak): the bare step, the trainer's end-to-end program, --epoch, --population, PyTorch. docs/benchmarks.md
says what each row times and has the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import sys
import tempfile
import time
from typing import Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ltkd_jax import experiment, io, models, recipes, run_dir, train
from ltkd_jax.data import device, longtail
from ltkd_jax.tools import models_table
from ltkd_jax.train import population as train_population
from ltkd_jax.train.dispatch import InFlight

# Dense peak TFLOP/s per chip (vendor figures, no sparsity) for (float32, bfloat16) inputs; the GPUs' float32
# column is their TF32 peak, as JAX's default precision runs fp32 there (docs/benchmarks.md).
PEAK_TFLOPS = {
    "H100": (494.7, 989.4), "H100 PCIe": (378.0, 756.0), "H200": (494.7, 989.4), "A100": (156.0, 312.0),
    "L4": (60.0, 121.0),
    "TPU v4": (None, 275.0), "TPU v5 lite": (None, 197.0), "TPU v5p": (None, 459.0), "TPU v6 lite": (None, 918.0),
}

# The benchmarked methods: their stage and SGD recipe are what the CIFAR-100-LT config builds for this pair and γ.
BENCH_METHODS = ("kd", "dkd", "ltkd")


@functools.lru_cache(maxsize=None)
def cifar_config(method: str):
    return recipes.build_config("cifar100", f"{method},resnet32x4-resnet8x4,100")


def make_stage(method: str, student_model, num_epochs: int, data: device.ExperimentData) -> train.Stage:
    """The stage an experiment trains for `method` (its loss bound to `data`'s groups and counts), with the
    benchmarked student and epochs."""
    config = cifar_config(method)
    stage = experiment.make_stage(config, config.student_model, distilled=True, group_ids=data.group_ids,
                                  class_counts=data.train_counts)
    return dataclasses.replace(stage, model=student_model, num_epochs=num_epochs)


def device_peak(dtype: str, kind: Optional[str] = None) -> Optional[float]:
    """The peak of the most specific `PEAK_TFLOPS` name whose words are all words of the device kind ("NVIDIA
    H100 PCIe" is "H100 PCIe", "NVIDIA L40S" is none: not an L4)."""
    words = set(re.split(r"[^a-z0-9]+", (kind or jax.devices()[0].device_kind).lower()))
    matches = [name for name in PEAK_TFLOPS if set(name.lower().split()) <= words]
    if not matches:
        return None
    fp32, bf16 = PEAK_TFLOPS[max(matches, key=lambda name: len(name.split()))]
    return bf16 if dtype == "bfloat16" else fp32


def synthetic_data(num_train: int, num_test: int, image_shape, num_classes: int, seed: int = 0):
    """Random uint8 images with long-tailed labels: what the device-resident feed holds for CIFAR-100-LT."""
    rng = np.random.default_rng(seed)
    # CIFAR-100-LT's gamma = 100 profile (10,847 images for 100 classes), repeated or cut to num_train.
    counts = longtail.exponential_counts(np.full(num_classes, 500), 100)
    labels = np.resize(np.repeat(np.arange(num_classes), counts), num_train).astype(np.int32)
    train_counts = np.bincount(labels, minlength=num_classes)
    return device.DeviceData(
        name="synthetic", num_classes=num_classes, group_ids=longtail.class_groups(train_counts),
        train_counts=train_counts,
        augmentation=device.Augmentation(pad=4, flip=True, mean=(0.5,) * image_shape[-1],
                                               std=(0.25,) * image_shape[-1]),
        train_images=rng.integers(0, 256, (len(labels),) + tuple(image_shape), dtype=np.uint8),
        train_labels=labels,
        test_images=rng.integers(0, 256, (num_test,) + tuple(image_shape), dtype=np.uint8),
        test_labels=rng.integers(0, num_classes, num_test).astype(np.int32))


class StaticFeed:
    """One fixed uint8 batch already on the devices, normalised inside the step as the host feed's batches are:
    the step alone, no data work."""

    supports_scan = True

    def __init__(self, batch, augmentation: device.Augmentation):
        self._batch, self.augmentation = batch, augmentation

    def inputs(self, step):
        return self._batch

    def batch(self, inputs, step):
        return device.normalize_batch(inputs, self.augmentation)


def _time_program(call, state, num_steps_per_call: int, steps: int, windows: int):
    """(first-call seconds, i.e. compile + one step; median seconds per step; final state)."""
    start = time.perf_counter()
    state, metrics = call(state)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    state, metrics = call(state)  # one warm call
    jax.block_until_ready(metrics)
    calls = max(1, steps // num_steps_per_call)
    times = []
    for _ in range(windows):
        start, in_flight = time.perf_counter(), InFlight()  # as training dispatches
        for _ in range(calls):
            state, metrics = call(state)
            in_flight.add(metrics)
        in_flight.wait()
        times.append((time.perf_counter() - start) / (calls * num_steps_per_call))
    return compile_s, float(np.median(times)), state


def _setup(args, num_train: int, num_test: int = 256):
    """(image shape, teacher and student models, synthetic data, mesh, replicated sharding, steps per epoch, the
    method's CIFAR recipe's SGD, teacher variables) of a timed program."""
    image_shape, dtype = (args.image_size, args.image_size, args.channels), jnp.dtype(args.dtype)
    teacher_model = models.get_model(args.teacher, args.num_classes, dtype=dtype)
    student_model = models.get_model(args.student, args.num_classes, dtype=dtype)
    data = synthetic_data(num_train, num_test, image_shape, args.num_classes)
    mesh = train.make_mesh()
    replicated = NamedSharding(mesh, P())
    steps_per_epoch = data.num_train // args.batch_size
    config = cifar_config(args.method)
    tx = train.sgd(train.step_decay_schedule(config.learning_rate, steps_per_epoch, config.lr_decay_epochs,
                                             config.lr_decay_rate),
                   momentum=config.momentum, weight_decay=config.weight_decay)
    teacher_variables = jax.jit(functools.partial(teacher_model.init, train=False), out_shardings=replicated)(
        jax.random.key(1), jnp.zeros((1,) + image_shape))
    return image_shape, teacher_model, student_model, data, mesh, replicated, steps_per_epoch, tx, teacher_variables


def jax_rows(args) -> List[Dict]:
    image_shape, teacher_model, student_model, data, mesh, replicated, steps_per_epoch, tx, teacher_variables = \
        _setup(args, args.batch_size if args.step_only else args.num_train)
    stage = make_stage(args.method, student_model, 1, data)
    fresh_state = lambda: (train.placed_init_state(student_model, tx, image_shape, 0, replicated),)  # noqa: E731

    device_feed = None if args.step_only else device.DeviceFeed(data, args.batch_size, 0, replicated)
    fixed_batch = jax.device_put({"image": data.train_images[:args.batch_size],
                                  "label": data.train_labels[:args.batch_size]}, NamedSharding(mesh, P("data")))
    rows = []
    for name, feed, dispatch in ([("jax step", StaticFeed(fixed_batch, data.augmentation), 1)]
                                 + [(f"jax end-to-end{'' if k == 1 else f' x{k}'}", device_feed, k)
                                    for k in ([] if args.step_only else args.steps_per_dispatch)]):
        one, many, _ = train.jitted_train_steps([stage], data, feed, [tx], steps_per_epoch, mesh, teacher_model)
        inputs = feed.inputs(0)
        program, extra = (one, ()) if dispatch == 1 else (many, (dispatch,))
        call = lambda state, f=program, x=inputs, e=extra: f(state, teacher_variables, x, *e)  # noqa: E731
        compile_s, seconds, state = _time_program(call, fresh_state(), dispatch, args.steps, args.windows)
        if args.profile_dir and name == ("jax step" if args.step_only else "jax end-to-end"):
            _trace(call, state, args.profile_dir)
        row = {"name": name, "batch": args.batch_size, "dtype": args.dtype, "img_per_s": args.batch_size / seconds,
               "ms_per_step": seconds * 1e3, "compile_s": compile_s, "steps_per_dispatch": dispatch}
        if dispatch == 1:
            abstract = (train.abstract_state(student_model, tx, image_shape, replicated),)
            flops = models_table.xla_flops(one.lower(abstract, teacher_variables, inputs), compiled=False)
            if flops:
                row["tflops"] = flops / seconds / 1e12
                peak = device_peak(args.dtype)
                if peak:
                    row["fraction_of_peak"] = row["tflops"] / peak
        rows.append(row)
    return rows


def population_rows(args) -> List[Dict]:
    """Populations of each size N in `args.population` (kd, dkd, ltkd, kd, ...; one teacher forward per batch)
    against N solo programs, end to end: img/s per student (each sees the whole batch); ms/step is that of N
    solo steps or of one population step. `--vmap`: auto (the trainer's default: vmapped on accelerators, one
    member after another on the CPU), on or off."""
    image_shape, teacher_model, student_model, data, mesh, replicated, steps_per_epoch, tx, teacher_variables = \
        _setup(args, args.num_train)
    feed = device.DeviceFeed(data, args.batch_size, 0, replicated)
    inputs = feed.inputs(0)
    batched = {"auto": jax.default_backend() != "cpu", "on": True, "off": False}[args.vmap]

    def seconds_per_step(members, batched):
        one, _, unit_list = train.jitted_train_steps(members, data, feed, [tx] * len(members), steps_per_epoch, mesh,
                                                     teacher_model, batched=batched)
        states = [train.placed_init_state(student_model, tx, image_shape, 0, replicated) for _ in members]
        carry = jax.jit(train_population.unit_states, static_argnums=1, out_shardings=replicated)(states, unit_list)
        compile_s, seconds, _ = _time_program(lambda c: one(c, teacher_variables, inputs), carry, 1, args.steps,
                                              args.windows)
        return compile_s, seconds

    solo_stages = [make_stage(method, student_model, 1, data) for method in BENCH_METHODS]
    solo = float(np.mean([seconds_per_step([stage], False)[1] for stage in solo_stages]))  # one step, mean method
    rows = [{"name": "jax solo program (per student, mean of kd/dkd/ltkd)", "batch": args.batch_size,
             "dtype": args.dtype, "img_per_s": args.batch_size / solo, "ms_per_step": solo * 1e3}]
    for size in args.population:
        stages = [make_stage(BENCH_METHODS[i % len(BENCH_METHODS)], student_model, 1, data) for i in range(size)]
        compile_s, seconds = seconds_per_step(stages, batched and size > 1)
        how = "vmapped" if batched and size > 1 else "one after another"
        rows.append({"name": f"jax population of {size}, {how} (per student: {size * solo / seconds:.2f}x solo)",
                     "batch": args.batch_size, "dtype": args.dtype, "img_per_s": size * args.batch_size / seconds,
                     "ms_per_step": seconds * 1e3, "compile_s": compile_s})
    return rows


def _trace(call, state, profile_dir: str, num_calls: int = 10) -> None:
    """A `jax.profiler` trace of `num_calls` warm calls (TensorBoard's profile plugin or xprof read it). A
    profiler that cannot start (no CUPTI, say) costs the trace, not the measurements: one warning line."""
    try:
        with jax.profiler.trace(profile_dir):
            for _ in range(num_calls):
                state, metrics = call(state)
            jax.block_until_ready(metrics)
    except Exception as error:  # pylint: disable=broad-except
        print(f"bench: warning: no profile written to {profile_dir}: {io.first_line(error)}",
              file=sys.stderr)


def epoch_rows(args, dispatch: int) -> List[Dict]:
    """Two CIFAR-100-LT-sized epochs through `train.run_stage` with `dispatch` steps per dispatch (teacher
    forward included): their wall time (compiles, evaluation and checkpoints included), and the rate the trainer
    logged in the second epoch, once everything is compiled."""
    _, teacher_model, student_model, data, _, _, steps_per_epoch, _, teacher_variables = _setup(
        args, args.epoch_examples, 10_000)
    teacher = train.Teacher(teacher_model, teacher_variables, "random")
    stage = make_stage(args.method, student_model, 2, data)
    # About 8 windows per epoch, each a whole number of dispatches.
    log_every = dispatch * max(1, round(steps_per_epoch / 8 / dispatch))
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        config = cifar_config(args.method)
        train.run_stage(stage, data, workdir, batch_size=args.batch_size, lr_decay_epochs=config.lr_decay_epochs,
                        lr_decay_rate=config.lr_decay_rate, momentum=config.momentum,
                        weight_decay=config.weight_decay, teacher=teacher, eval_batch_size=1024,
                        log_every_steps=log_every, steps_per_dispatch=dispatch)
        seconds = time.perf_counter() - start
        logged = [r for r in run_dir.read_metrics(workdir)
                  if r["split"] == "train" and r["epoch"] == 2]
    images = 2 * steps_per_epoch * args.batch_size
    per_dispatch = "" if dispatch == 1 else f" x{dispatch}"
    rows = [{"name": f"jax 2 epochs{per_dispatch} ({images:,} images, eval + checkpoint each, compile included)",
             "batch": args.batch_size, "dtype": args.dtype, "img_per_s": images / seconds, "seconds": seconds}]
    rate = float(np.median([r["images_per_sec"] for r in logged]))
    rows.append({"name": f"jax trainer loop{per_dispatch} (logged img/s, median of epoch 2)", "batch": args.batch_size,
                 "dtype": args.dtype, "img_per_s": rate, "ms_per_step": args.batch_size / rate * 1e3,
                 "input_wait_fraction": float(np.median([r["input_wait_fraction"] for r in logged]))})
    return rows


def torch_row(args) -> Optional[Dict]:
    """mdistiller's KD step in PyTorch, fp32 eager, on the same shapes (CIFAR ResNet pairs only)."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    from ltkd_jax.tools import torch_reference  # pylint: disable=import-outside-toplevel
    if not (torch_reference.supports(args.teacher) and torch_reference.supports(args.student)):
        return None
    seconds = torch_reference.time_kd_step(args.teacher, args.student, batch_size=args.batch_size,
                                           image_size=args.image_size, channels=args.channels,
                                           num_classes=args.num_classes, steps=args.steps, windows=args.windows)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"name": f"torch reference (fp32 eager, {device})", "batch": args.batch_size, "dtype": "float32",
            "img_per_s": args.batch_size / seconds, "ms_per_step": seconds * 1e3}


def format_table(rows: List[Dict]) -> str:
    lines = ["| variant | batch | dtype | img/s | ms/step | compile s | TFLOP/s | of peak |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        def cell(key, fmt):
            return fmt.format(r[key]) if r.get(key) is not None else "–"
        lines.append(f"| {r['name']} | {r['batch']} | {r['dtype']} | {r['img_per_s']:,.0f} | "
                     f"{cell('ms_per_step', '{:.2f}')} | {cell('compile_s', '{:.1f}')} | {cell('tflops', '{:.2f}')} | "
                     f"{cell('fraction_of_peak', '{:.1%}')} |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--method", default="kd", choices=BENCH_METHODS)
    parser.add_argument("--batch_size", type=int, default=64, help="global batch")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--num_train", type=int, default=10_847, help="device-resident training set size")
    parser.add_argument("--steps", type=int, default=60, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--steps_per_dispatch", default="1", help="comma list, e.g. 1,16")
    parser.add_argument("--population", default="", help="comma list of population sizes N: img/s per student "
                        "of N students trained in one program against N solo programs (only these rows)")
    parser.add_argument("--vmap", choices=("auto", "on", "off"), default="auto",
                        help="--population: vmap members of one architecture (auto: on accelerators only)")
    parser.add_argument("--epoch", action="store_true", help="also time two epochs through the trainer")
    parser.add_argument("--epoch_examples", type=int, default=10_847)
    parser.add_argument("--step_only", action="store_true",
                        help="only the bare step (e.g. an ImageNet pair, whose data streams from the host)")
    parser.add_argument("--profile_dir", default="",
                        help="write a jax.profiler trace of the end-to-end step (--step_only: the bare step) here")
    parser.add_argument("--no_torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    for name in ("steps_per_dispatch", "population"):
        text = getattr(args, name)
        try:
            values = sorted({int(k) for k in text.split(",")}) if text else []
        except ValueError:
            values = [0]  # not integers: the same error as a non-positive one
        if min(values, default=1) < 1:
            parser.error(f"--{name}={text!r} must be a comma list of positive integers")
        setattr(args, name, values)
    for name in ("batch_size", "image_size", "channels", "num_classes", "num_train", "steps", "windows",
                 "epoch_examples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} must be >= 1 (a positive integer)")
    if args.num_classes < 3:
        parser.error(f"--num_classes={args.num_classes} must be >= 3 (the head / medium / tail groups)")
    # The end-to-end rows draw each batch from the num_train device-resident images, the epoch rows from
    # epoch_examples: each must hold at least one batch (--step_only times one batch alone: num_train unused).
    if not args.step_only and args.batch_size > args.num_train:
        parser.error(f"--batch_size={args.batch_size} is larger than --num_train={args.num_train}; the end-to-end "
                     "rows need at least one batch of training images (or use --step_only)")
    if args.epoch and args.batch_size > args.epoch_examples:
        parser.error(f"--batch_size={args.batch_size} is larger than --epoch_examples={args.epoch_examples}; "
                     "an epoch needs at least one batch")
    problem = args.json and io.local_output_file_problem(args.json)  # written after the benchmark
    if problem:
        parser.error(f"--json={args.json}: {problem}")
    if args.step_only and args.epoch:
        parser.error("--epoch runs the trainer's end-to-end program; it cannot go with --step_only")
    for name in (args.teacher, args.student):
        if name not in models.MODEL_NAMES:
            parser.error(f"unknown model {name!r}; known: {', '.join(models.MODEL_NAMES)}")
    return args


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = parse_args(argv)
    try:
        train.check_batch_size(args.batch_size)
    except ValueError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    device = jax.devices()[0]
    header = (f"{args.teacher} -> {args.student} ({args.method}), {args.image_size}x{args.image_size}x"
              f"{args.channels}, {args.num_classes} classes; {jax.device_count()} x {device.device_kind} "
              f"({device.platform}); jax {jax.__version__}")
    print(header, flush=True)
    reference = None
    if args.population:
        rows = population_rows(args)
    else:
        rows = jax_rows(args)
        if args.epoch:  # through the trainer with the fastest steps-per-dispatch just measured
            fastest = max((r for r in rows if r["name"].startswith("jax end-to-end")), key=lambda r: r["img_per_s"])
            rows += epoch_rows(args, dispatch=fastest["steps_per_dispatch"])
        reference = None if args.no_torch else torch_row(args)
        rows += [reference] if reference else []
    print(format_table(rows))
    if reference and not args.step_only:
        best = max(r["img_per_s"] for r in rows if r["name"].startswith("jax end-to-end"))
        print(f"\nend-to-end JAX / PyTorch reference: {best / reference['img_per_s']:.2f}x")
        for r in rows:
            if r["name"].startswith("jax trainer loop"):
                print(f"trainer loop / PyTorch reference: {r['img_per_s'] / reference['img_per_s']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "device_kind": device.device_kind, "jax": jax.__version__, "rows": rows},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
