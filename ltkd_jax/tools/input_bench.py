"""Throughput of the host input pipeline for ImageNet-LT: `python -m ltkd_jax.tools.input_bench`.

    python -m ltkd_jax.tools.input_bench --threads=1,2 --batch_size=256
    python -m ltkd_jax.tools.input_bench --step_img_per_s=12000     # also: host cores needed to feed that step

Times, per host thread, the tf.data work that feeds an ImageNet step (train augmentation, eval preprocessing,
and both with the copy to the devices) on in-memory JPEGs re-encoded from one photograph; docs/benchmarks.md ("The
ImageNet path") says what each row runs and why the figures are an upper bound of the decode rate.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import types
from typing import Dict, List

import numpy as np

# (height, width, share): the usual shapes of ImageNet's training JPEGs.
IMAGENET_SHAPES = ((375, 500, 0.5), (500, 375, 0.2), (333, 500, 0.15), (500, 500, 0.1), (600, 800, 0.05))


def imagenet_info(image_size: int = 224):
    """The parts of an ImageNet `DatasetInfo` the per-example preprocessing reads (no data needed)."""
    from ltkd_jax.data.registry import get_spec  # pylint: disable=import-outside-toplevel
    spec = get_spec("imagenet2012")
    return types.SimpleNamespace(spec=spec, image_shape=(image_size, image_size, 3))


def photo_jpegs(tf, num_images: int, seed: int = 0, quality: int = 90) -> List[bytes]:
    """`num_images` distinct JPEGs cut from one real photograph at ImageNet-like sizes (random crop, flip and
    brightness per image, so no two files are the same)."""
    import matplotlib.cbook  # pylint: disable=import-outside-toplevel
    with open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
        photo = tf.cast(tf.io.decode_jpeg(f.read(), channels=3), tf.float32)
    rng = np.random.default_rng(seed)
    shapes = np.array([s[:2] for s in IMAGENET_SHAPES])
    picks = rng.choice(len(shapes), size=num_images, p=[s[2] for s in IMAGENET_SHAPES])
    ph, pw = int(photo.shape[0]), int(photo.shape[1])
    out = []
    for k in picks:
        h, w = (int(v) for v in shapes[k])
        ch, cw = int(rng.integers(ph // 2, ph + 1)), int(rng.integers(pw // 2, pw + 1))
        top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        image = tf.image.resize(photo[top:top + ch, left:left + cw], (h, w), antialias=True)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        image = tf.clip_by_value(image * float(rng.uniform(0.7, 1.3)), 0.0, 255.0)
        out.append(tf.io.encode_jpeg(tf.cast(image, tf.uint8), quality=quality).numpy())
    return out


def _time_batches(iterator, num_batches: int, warmup: int, put=None) -> float:
    """Seconds per batch over `num_batches` after `warmup` batches (`put` applied to each batch)."""
    for _ in range(warmup):
        batch = next(iterator)
        if put is not None:
            put(batch)
    start = time.perf_counter()
    for _ in range(num_batches):
        batch = next(iterator)
        if put is not None:
            put(batch)
    return (time.perf_counter() - start) / num_batches


def pipeline_rows(args) -> List[Dict]:
    from ltkd_jax.data import host, tf_env, tf_preprocess

    tf = tf_env.hide_accelerators_from_tf()
    jpegs = photo_jpegs(tf, args.num_images)
    info = imagenet_info(args.image_size)
    records = tf.data.Dataset.from_tensor_slices({
        "image": tf.constant(jpegs), "label": tf.zeros(len(jpegs), tf.int32),
        "index": tf.range(len(jpegs), dtype=tf.int64)}).cache().repeat()
    put = None  # host only, unless --to_device
    if args.to_device:
        import jax  # pylint: disable=import-outside-toplevel
        from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=import-outside-toplevel
        from ltkd_jax import train  # pylint: disable=import-outside-toplevel
        from ltkd_jax.data import device  # pylint: disable=import-outside-toplevel

        sharding = NamedSharding(train.make_mesh(), PartitionSpec("data"))

        def put_on_devices(batch):  # as the trainer's host feed does: image and label, split over the devices
            jax.block_until_ready(device.put_process_batch(batch, ("image", "label"), sharding))
        put = put_on_devices

    rows = []
    for threads in args.threads:
        for kind in ("train", "eval"):
            if kind == "train":
                ds = host.augmented_batches(tf, records, info, args.batch_size, aug_seed=0)
            else:
                ds = records.map(tf_preprocess.eval_fn(info), num_parallel_calls=tf.data.AUTOTUNE)
                ds = ds.batch(args.batch_size, drop_remainder=True)
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            options.threading.max_intra_op_parallelism = 1
            ds = ds.prefetch(2).with_options(options)
            iterator = ds.as_numpy_iterator()
            sample = next(iterator)
            for with_put in ((False, True) if args.to_device else (False,)):
                seconds = _time_batches(iterator, args.num_batches, warmup=1, put=put if with_put else None)
                rows.append({"pipeline": kind + (" + to device" if with_put else ""), "threads": threads,
                             "img_per_s": args.batch_size / seconds,
                             "img_per_s_per_thread": args.batch_size / seconds / threads,
                             "mb_per_s": sample["image"].nbytes / seconds / 1e6,
                             "batch_dtype": str(sample["image"].dtype)})
    rows_info = {"mean_jpeg_kb": float(np.mean([len(j) for j in jpegs]) / 1e3)}
    for row in rows:
        row.update(rows_info)
    return rows


def format_table(rows: List[Dict]) -> str:
    lines = ["| pipeline | host threads | img/s | img/s per thread | batch dtype | MB/s out |",
             "|---|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['pipeline']} | {r['threads']} | {r['img_per_s']:,.0f} | "
                     f"{r['img_per_s_per_thread']:,.0f} | {r['batch_dtype']} | {r['mb_per_s']:,.0f} |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.input_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}", help="comma list of tf.data thread counts")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_images", type=int, default=512, help="distinct JPEGs cycled through")
    parser.add_argument("--num_batches", type=int, default=8, help="timed batches per row")
    parser.add_argument("--to_device", action="store_true",
                        help="also time putting each batch on the devices, split over them as the trainer does")
    parser.add_argument("--step_img_per_s", type=float, default=0.0,
                        help="a training step's rate (img/s per accelerator) to size the host for")
    args = parser.parse_args(argv)
    try:
        args.threads = sorted({int(k) for k in args.threads.split(",")})
    except ValueError:
        parser.error(f"--threads={args.threads!r} must be a comma list of integers")
    for name in ("batch_size", "image_size", "num_images", "num_batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} must be >= 1")
    if min(args.threads) < 1:
        parser.error(f"--threads values must be >= 1, got {min(args.threads)}")
    if not (math.isfinite(args.step_img_per_s) and args.step_img_per_s >= 0):
        parser.error(f"--step_img_per_s={args.step_img_per_s} must be a finite number >= 0 (0: no sizing line)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.to_device:  # the batch is split over the devices: check it divides before any work
        from ltkd_jax import train  # pylint: disable=import-outside-toplevel
        try:
            train.check_batch_size(args.batch_size)
        except ValueError as error:
            print(f"input_bench: error: {error}", file=sys.stderr)
            return 2
    rows = pipeline_rows(args)
    print(f"ImageNet host pipeline, {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"{args.num_images} JPEGs of {rows[0]['mean_jpeg_kb']:.0f} kB mean; {os.cpu_count()} host cores")
    print(format_table(rows))
    if args.step_img_per_s > 0:
        print()
        for r in rows:  # one thread is the best case per core; more threads show how it scales on this host
            if r["pipeline"] == "train":
                print(f"feeding {args.step_img_per_s:,.0f} img/s needs about "
                      f"{args.step_img_per_s / r['img_per_s_per_thread']:.0f} host cores per accelerator at the "
                      f"{r['threads']}-thread rate ({r['img_per_s_per_thread']:,.0f} img/s per thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
