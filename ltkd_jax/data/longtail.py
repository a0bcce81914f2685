"""Long-tailed subsets, class groups and shot buckets (pure numpy, no TensorFlow, no JAX), as LDAM-DRW (Cao et
al., 2019) and OLTR (Liu et al., 2019) define them; each function raises a one-line ValueError naming the bad
value. The rules and the literature's totals: docs/data.md ("Long-tailed subsets")."""
from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

__all__ = ["exponential_counts", "select_indices", "class_groups", "group_sizes", "shot_groups", "shot_masks",
           "SHOT_THRESHOLDS"]

# Literature thresholds (OLTR, Liu et al. 2019): many-shot > 100, few-shot < 20, medium in between.
# The γ of a training split kept as it is (its own long tail, nothing subsampled), as config arguments and
# directory names write it.
NATURAL = "natural"
SHOT_THRESHOLDS = {"many_min_exclusive": 100, "few_max_exclusive": 20}


def _as_int_vector(values, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{what} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
            raise ValueError(f"{what} must hold whole numbers, got {arr.tolist()[:10]}")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        bad = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"{what} must be >= 0, got {int(arr[bad])} for class {bad}")
    return arr


def gamma_text(imbalance_factor) -> str:
    """γ as written in directory names and reports: `100` for 100.0, `12.5`; exact (repr), so two different
    values never share a teacher directory; `natural` for None (nothing subsampled)."""
    if imbalance_factor is None:
        return NATURAL
    gamma = float(imbalance_factor)
    return str(int(gamma)) if gamma.is_integer() else repr(gamma)


def exponential_counts(full_counts: Sequence[int], imbalance_factor: float) -> np.ndarray:
    """int64 (C,) per-class counts of the exponential profile (LDAM-DRW's ``get_img_num_per_cls``):
    ``floor(full_counts[c] * gamma ** (-c / (C - 1)))`` for ``gamma = imbalance_factor >= 1`` (1 keeps all).
    ValueError for a bad gamma or ``full_counts``, or a class whose count rounds to zero."""
    full = _as_int_vector(full_counts, "full_counts")
    try:
        gamma = float(imbalance_factor)
    except (TypeError, ValueError):
        raise ValueError(f"imbalance_factor must be a number >= 1, got {imbalance_factor!r}") from None
    if not math.isfinite(gamma) or gamma < 1.0:
        raise ValueError(f"imbalance_factor must be a finite number >= 1, got {imbalance_factor!r}")
    num_classes = full.size
    if num_classes == 1:
        counts = full.copy()
    else:
        # Exactly LDAM-DRW's arithmetic (Python doubles, int() truncation), so the literature totals come out.
        inv = 1.0 / gamma
        counts = np.array([int(int(n) * inv ** (c / (num_classes - 1.0))) for c, n in enumerate(full)], np.int64)
    if np.any(counts <= 0):
        bad = int(np.flatnonzero(counts <= 0)[0])
        raise ValueError(f"imbalance_factor={imbalance_factor!r} leaves class {bad} with {int(counts[bad])} examples "
                         f"(full count {int(full[bad])}); allowed: every class keeps >= 1 example, so use a smaller "
                         f"imbalance_factor")
    return counts


def select_indices(labels: Sequence[int], counts: Sequence[int], seed: int = 0) -> np.ndarray:
    """int64 indices into ``labels`` (the full split, file order) of the examples LDAM-DRW's rule keeps: one
    ``np.random.RandomState(seed)``; for each class ``c = 0 .. C-1``, ``idx = np.where(labels == c)[0]``,
    ``rng.shuffle(idx)``, keep ``idx[:counts[c]]``; concatenated in class order."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    counts = _as_int_vector(counts, "counts")
    num_classes = counts.size
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"label {bad} is outside the class range [0, {num_classes}) given by counts")
    available = np.bincount(labels.astype(np.int64), minlength=num_classes)
    short = np.flatnonzero(counts > available)
    if short.size:
        c = int(short[0])
        raise ValueError(f"counts[{c}]={int(counts[c])} exceeds the {int(available[c])} examples of class {c} "
                         f"in labels")
    rng = np.random.RandomState(seed)
    kept = []
    for c in range(num_classes):
        idx = np.where(labels == c)[0]
        rng.shuffle(idx)
        kept.append(idx[: counts[c]])
    return np.concatenate(kept).astype(np.int64) if kept else np.zeros((0,), np.int64)


def class_groups(counts: Sequence[int], num_groups: int = 3) -> np.ndarray:
    """Group id per class, 0 = head (most examples) ... ``num_groups - 1`` = tail: classes sorted by training count,
    descending, ties by label (a stable sort), cut with ``np.array_split`` (34/33/33 for 100 classes, 4/3/3 for 10)."""
    counts = _as_int_vector(counts, "counts")
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
        raise ValueError(f"num_groups must be an integer, got {num_groups!r}")
    if num_groups < 1 or num_groups > counts.size:
        raise ValueError(f"num_groups must be in [1, {counts.size}] (the number of classes), got {num_groups}")
    order = np.argsort(-counts, kind="stable")
    group_ids = np.empty(counts.size, dtype=np.int32)
    for g, chunk in enumerate(np.array_split(order, int(num_groups))):
        group_ids[chunk] = g
    return group_ids


def shot_groups(counts: Sequence[int]) -> np.ndarray:
    """Group id per class by the literature's shot buckets: many (> 100 training images), medium (20-100), few
    (< 20), in that order, buckets without a class left out (so every group has a class: 0 = head ...)."""
    masks = shot_masks(counts)
    present = [name for name in ("many", "medium", "few") if masks[name].any()]
    group_ids = np.empty(len(masks["many"]), dtype=np.int32)
    for g, name in enumerate(present):
        group_ids[masks[name]] = g
    return group_ids


def group_sizes(group_ids: Sequence[int], num_groups: int | None = None) -> np.ndarray:
    """Number of classes in each group."""
    group_ids = np.asarray(group_ids, dtype=np.int64)
    n = int(group_ids.max()) + 1 if num_groups is None else int(num_groups)
    return np.bincount(group_ids, minlength=n)


def shot_masks(counts: Sequence[int]) -> Dict[str, np.ndarray]:
    """Boolean (C,) masks ``{"many": > 100, "medium": 20..100, "few": < 20}`` training images per class."""
    counts = _as_int_vector(counts, "counts")
    many = counts > SHOT_THRESHOLDS["many_min_exclusive"]
    few = counts < SHOT_THRESHOLDS["few_max_exclusive"]
    return {"many": many, "medium": ~many & ~few, "few": few}
