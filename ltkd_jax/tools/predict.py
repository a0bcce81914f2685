"""`python -m ltkd_jax.tools.predict --workdir=RUN IMAGE...` or `--model=PATH IMAGE...` (an exported SavedModel
directory or .tflite file, with its labels.txt): one line per image, `path<TAB>class name<TAB>probability`, the
`--top_k` most probable classes in turn. Images are read as training reads them (converted to the model's
channels, resized to its input size)."""
from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from ltkd_jax import io
from ltkd_jax.data import images as images_lib
from ltkd_jax.tools import export


def load_predictor(workdir: str = "", model: str = ""):
    """`(logits of float32 raw pixels, image shape, class names)` of a finished run or an exported artefact."""
    if model:
        artefact = export.Artefact(model)
        return artefact, artefact.image_shape, export.labels_of(model)
    _, info, network, variables = export.restore_run(workdir)
    return (jax.jit(export.predict_function(network, variables, info.mean, info.std)), info.image_shape,
            list(info.class_names))


def predict(paths, *, workdir: str = "", model: str = "", top_k: int = 1):
    """`[(path, [(class name, probability), ...])]`, the `top_k` most probable classes of each image."""
    logits_of, image_shape, names = load_predictor(workdir, model)
    if not 1 <= top_k <= len(names):
        raise ValueError(f"--top_k={top_k}; allowed: 1 to {len(names)} (the classes)")
    pixels = np.stack([images_lib.read_image(path, image_shape) for path in paths]).astype(np.float32)
    logits = np.asarray(logits_of(pixels), np.float64)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    return [(path, [(names[c], float(p[c])) for c in order]) for path, p, order in zip(paths, probabilities, best)]


def main(argv=None) -> int:
    """The command line: 2 for bad flags (argparse), 1 with one `error:` line for any other mistake."""
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.predict", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a finished run directory")
    source.add_argument("--model", help="an exported SavedModel directory or .tflite file")
    parser.add_argument("--top_k", type=int, default=1)
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    args = parser.parse_args(argv)
    try:
        rows = predict(args.images, workdir=args.workdir or "", model=args.model or "", top_k=args.top_k)
    except (ValueError, OSError) as error:  # a damaged checkpoint (CheckpointError) among them
        print(f"error: {io.first_line(error)}", file=sys.stderr)
        return 1
    for path, classes in rows:
        print("\t".join([path] + [f"{name}\t{probability:.4f}" for name, probability in classes]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
