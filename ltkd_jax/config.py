"""The config grammar: `"method,teacher-student,gamma"` picks a run (e.g. `"ltkd,resnet32x4-resnet8x4,100"`), a
population member is `method[:field=value...]`; dotted views of a config. No JAX here (config files load while
flags parse). The methods are the rows of `methods.py`; the recipe is `recipes.py` with the files in `configs/`.
"""

from __future__ import annotations

import ast
import json
import math

from ltkd_jax import methods
from ltkd_jax.data import longtail

CE_LOSSES = ("cross_entropy", "balanced_softmax")  # a run's CE: plain, or of the logits + log class prior


def parse_arg(arg: str):
    """`"method,teacher-student,gamma"` -> (method, teacher, student, gamma), or a one-line ValueError. A missing
    gamma, or `natural`, is None: the training split's own long tail, nothing subsampled."""
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) not in (2, 3):
        raise ValueError(f"config argument {arg!r} must be 'method,teacher-student[,gamma]', "
                         "e.g. 'ltkd,resnet32x4-resnet8x4,100'")
    method, pair, gamma = parts + [longtail.NATURAL] * (3 - len(parts))
    if method not in methods.METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(methods.METHODS)}")
    if pair.count("-") != 1:
        raise ValueError(f"pair {pair!r} must be 'teacher-student', e.g. 'resnet32x4-resnet8x4'")
    teacher, student = pair.split("-")
    if gamma == longtail.NATURAL:
        return method, teacher, student, None
    try:
        imbalance_factor = float(gamma)
    except ValueError:
        raise ValueError(f"imbalance factor {gamma!r} is not a number (or 'natural')") from None
    if not (math.isfinite(imbalance_factor) and imbalance_factor >= 1):
        raise ValueError(f"imbalance factor {gamma!r} is invalid: it must be a finite number >= 1 (1 = balanced)")
    return method, teacher, student, imbalance_factor


def flatten(tree: dict) -> dict:
    """{dotted path: value} of a nested dict (empty sub-dicts have no entries)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{sub}": leaf for sub, leaf in flatten(value).items()})
        else:
            flat[key] = value
    return flat


def flat_config(config) -> dict:
    """{dotted field: value} of a config, as its JSON holds it (tuples become lists)."""
    return flatten(json.loads(config.to_json()))


def assignment(spec: str, text: str):
    field, equals, value = text.partition("=")
    if not equals or not field:
        raise ValueError(f"population member {spec!r}: {text!r} must be field=value")
    try:
        return field, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return field, value  # a bare word: a string


def member_name(spec: str) -> str:
    """A member's run directory: `ltkd:distill.alpha=2.0:learning_rate=0.1` -> `ltkd_alpha2_learning_rate0.1`."""
    method, *assignments = spec.split(":")
    parts = [method]
    for field, value in (assignment(spec, text) for text in assignments):
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(field.rsplit(".", 1)[-1] + text)
    return "_".join(parts)
