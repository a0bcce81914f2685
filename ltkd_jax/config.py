"""The config grammar and the names a config may hold; no JAX here (config files load while flags parse).

A config string `"method,teacher-student,gamma"` picks the run, e.g. `"ltkd,resnet32x4-resnet8x4,100"`.
`method` is a registered distillation loss (`kd`, `dkd`, `ltkd`, the LTKD ablations), a feature method
(`fitnet`, `reviewkd`), or `teacher` / `student` (plain cross-entropy: the paper's Teacher and Student rows).
The recipes live in `configs/` (`configs/common.py` and one file per data set).
"""

from __future__ import annotations

import importlib
import json
import math

CE_METHODS = ("teacher", "student")
FEATURE_METHODS = ("fitnet", "reviewkd")  # ltkd_jax.distill
LOGIT_METHODS = ("dkd", "kd", "ltkd", "ltkd_inter_balanced", "ltkd_inter_biased", "ltkd_intra_uniform")  # losses.py
METHODS = CE_METHODS + LOGIT_METHODS + FEATURE_METHODS


def parse_arg(arg: str):
    """`"method,teacher-student,gamma"` -> (method, teacher, student, gamma), or a one-line ValueError."""
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) != 3:
        raise ValueError(f"config argument {arg!r} must be 'method,teacher-student,gamma', "
                         "e.g. 'ltkd,resnet32x4-resnet8x4,100'")
    method, pair, gamma = parts
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if pair.count("-") != 1:
        raise ValueError(f"pair {pair!r} must be 'teacher-student', e.g. 'resnet32x4-resnet8x4'")
    teacher, student = pair.split("-")
    try:
        imbalance_factor = float(gamma)
    except ValueError:
        raise ValueError(f"imbalance factor {gamma!r} is not a number") from None
    if not (math.isfinite(imbalance_factor) and imbalance_factor >= 1):
        raise ValueError(f"imbalance factor {gamma!r} is invalid: it must be a finite number >= 1 (1 = balanced)")
    return method, teacher, student, imbalance_factor


def build_config(dataset: str, arg: str | None = None):
    """The config `configs/<dataset's file>.py:arg` builds (the file's default argument when `arg` is None)."""
    from configs import CONFIG_FILES  # pylint: disable=import-outside-toplevel  # the repository's configs/
    if dataset not in CONFIG_FILES:
        raise ValueError(f"unknown data set {dataset!r}; known: {', '.join(sorted(CONFIG_FILES))}")
    module = CONFIG_FILES[dataset].removesuffix(".py").replace("/", ".")
    return importlib.import_module(module).get_config(arg)


def distill_hparams(config) -> dict:
    """Keyword arguments of `losses.get_distill_loss` for this config (num_groups from the data set)."""
    hparams = dict(config.distill)
    if config.method.startswith("ltkd"):
        hparams["num_groups"] = config.dataset.num_groups
    return hparams


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
