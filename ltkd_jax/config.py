"""The config grammar and the names a config may hold; no JAX here (config files load while flags parse).

A config string `"method,teacher-student,gamma"` picks the run, e.g. `"ltkd,resnet32x4-resnet8x4,100"`.
`method` is a registered distillation loss (`kd`, `dkd`, `ltkd`, the LTKD ablations), a feature method
(`fitnet`, `reviewkd`), or `teacher` / `student` (plain cross-entropy: the paper's Teacher and Student rows).
The recipes live in `configs/` (`configs/common.py` and one file per data set).
"""

from __future__ import annotations

import ast
import importlib
import json
import math

CE_METHODS = ("teacher", "student")
FEATURE_METHODS = ("fitnet", "reviewkd")  # ltkd_jax.distill
# losses.py, sorted; bkd, dive, kd_ls, ltkd_ls: long-tail and logit-standardisation baselines (not in the paper).
LOGIT_METHODS = ("bkd", "dive", "dkd", "kd", "kd_ls", "ltkd", "ltkd_inter_balanced", "ltkd_inter_biased",
                 "ltkd_intra_uniform", "ltkd_ls")
CE_LOSSES = ("cross_entropy", "balanced_softmax")  # a run's CE: plain, or of the logits + log class prior
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
    if config.method in ("ltkd", "ltkd_inter_biased", "ltkd_inter_balanced", "ltkd_intra_uniform", "ltkd_ls"):
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


# What the members of a population may set differently (with every `distill.*` field): the rest -- data, teacher,
# seed, batch, recipe -- is the population's, so that one teacher and one stream of batches serve them all.
MEMBER_FIELDS = ("arg", "method", "student_model", "learning_rate", "ce_weight", "distill_weight", "warmup_epochs")


def population_members(config) -> list:
    """`[(name, member config)]` of `config.population`, e.g. `"student,kd,dkd,ltkd:distill.alpha=2:distill.beta=8"`:
    each member is `method[:field=value...]`, built by the data set's config file for the population's pair and γ
    (so it has its method's defaults), then given the fields the population's config sets on top of what its
    own argument builds (where the member has them), then its own `field=value`s. A one-line ValueError names a
    member that cannot join."""
    base, population = flatten(build_config(config.dataset.name, config.arg).to_dict()), flatten(config.to_dict())
    common = {key: value for key, value in population.items()
              if base.get(key) != value and key not in ("arg", "method", "population")}
    _, teacher, student, _ = parse_arg(config.arg)
    gamma = config.arg.split(",")[2].strip()
    members = []
    for spec in (s.strip() for s in config.population.split(",")):
        method, *assignments = spec.split(":")
        if method not in METHODS or method == "teacher":
            raise ValueError(f"population member {spec!r}: unknown method {method!r}; known: "
                             f"{', '.join(m for m in METHODS if m != 'teacher')}")
        own = dict(_assignment(spec, text) for text in assignments)
        member = build_config(config.dataset.name, f"{method},{teacher}-{own.get('student_model', student)},{gamma}")
        fields = flatten(member.to_dict())
        member.lock()  # a member's field=value names a field its method has
        try:
            member.update_from_flattened_dict({k: v for k, v in common.items() if k in fields and k not in own})
            member.update_from_flattened_dict(own)
        except (AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"population member {spec!r}: {str(error).splitlines()[0]}") from None
        member.population = ""
        for key, value in flatten(member.to_dict()).items():
            if key not in MEMBER_FIELDS + ("population",) and not key.startswith("distill.") \
                    and population.get(key) != value:
                raise ValueError(f"population member {spec!r} has {key}={value!r} where the population has "
                                 f"{population.get(key)!r}; members differ only in {', '.join(MEMBER_FIELDS)} "
                                 "and distill.*")
        members.append((member_name(spec), member))
    names = [name for name, _ in members]
    if len(set(names)) != len(names):
        raise ValueError(f"population {config.population!r} names a member twice")
    return members


def _assignment(spec: str, text: str):
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
    for field, value in (_assignment(spec, text) for text in assignments):
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(field.rsplit(".", 1)[-1] + text)
    return "_".join(parts)
