"""``python -m ltkd_jax.tools.models_table [NAME ...]``: a markdown table of each model's parameter count and forward cost
(every model without NAMEs).

Parameters are counted abstractly (``jax.eval_shape``); GFLOPs are XLA's cost analysis of the compiled
eval-mode forward pass for one image at the model's native resolution (CIFAR models with 100 classes,
ImageNet models with 1000). Nothing is run on data.
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from ltkd_jax.models import MODEL_NAMES, abstract_variables, count_params, get_model, is_cifar_model, native_resolution


def xla_flops(lowered, compiled: bool = True) -> Optional[float]:
    """'flops' of XLA's cost analysis of the compiled executable or (`compiled=False`: no second compile, within
    0.3% for the CIFAR pair on XLA:CPU) of the lowered HLO; the other one where that fails, else None."""
    analyses = [lambda: lowered.compile().cost_analysis(), lowered.cost_analysis]
    for analyse in analyses if compiled else analyses[::-1]:
        try:
            analysis = analyse()
        except Exception:  # pylint: disable=broad-except  # some backends cannot analyse one of them
            continue
        if isinstance(analysis, (list, tuple)):  # older jax returned one dict per computation
            analysis = analysis[0] if analysis else None
        if analysis and analysis.get("flops", 0) > 0:
            return float(analysis["flops"])
    return None


def flops_per_multiply_add() -> float:
    """How many FLOPs XLA's cost analysis books for one multiply-add, measured on a (1, 64) x (64, 64) matmul."""
    spec = jax.ShapeDtypeStruct((1, 64), jnp.float32), jax.ShapeDtypeStruct((64, 64), jnp.float32)
    return xla_flops(jax.jit(jnp.matmul).lower(*spec)) / (64 * 64)


@functools.lru_cache(maxsize=None)
def forward_flops(name: str, image_shape: tuple, num_classes: int, compiled: bool = False) -> Optional[float]:
    """XLA's FLOPs of `name`'s eval-mode forward pass for one image of `image_shape` (H, W, C) with `num_classes`
    outputs: of the compiled executable, or (`compiled=False`) of the lowered HLO, no compile (cached)."""
    model = get_model(name, num_classes)
    input_shape = (1, *image_shape)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    lowered = forward.lower(abstract_variables(model, input_shape), jax.ShapeDtypeStruct(input_shape, jnp.float32))
    return xla_flops(lowered, compiled=compiled)


def model_row(name: str) -> tuple[str, str, int, float]:
    num_classes, resolution = (100 if is_cifar_model(name) else 1000), native_resolution(name)
    variables = abstract_variables(get_model(name, num_classes), (1, *resolution))
    flops = forward_flops(name, resolution, num_classes, compiled=True)
    return name, "x".join(map(str, resolution)), count_params(variables["params"]), flops / 1e9


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ltkd_jax.tools.models_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="models to list (default: all)")
    names = parser.parse_args(argv).names or list(MODEL_NAMES)
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown:
        parser.error(f"unknown model {', '.join(map(repr, unknown))}; known: {', '.join(MODEL_NAMES)}")
    print("| name | input | params | GFLOPs |")
    print("|---|---|---:|---:|")
    for name in names:
        name, resolution, params, gflops = model_row(name)
        print(f"| {name} | {resolution} | {params:,} | {gflops:.3f} |")
    per_mac = flops_per_multiply_add()
    print()
    print(
        f"Forward pass, one image, eval mode, XLA cost analysis on {jax.default_backend()}; "
        f"one multiply-add counts as {per_mac:g} FLOPs, and taps that fall on a convolution's zero padding are "
        "not counted (so convolutional nets come out up to ~10% below 2 x their usual MAC counts). "
        "CIFAR models have 100 classes, ImageNet models 1000."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
