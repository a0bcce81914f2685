"""The report's comparison figures: methods side by side per group (mean and 95% confidence bars over seeds), their
per-class accuracy against the classes' training counts, and a grid study's points per method. Each takes
`series = [(label, [test record of each seed, ...]), ...]`, so the demo's single runs draw with them too."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ltkd_jax.run_dir import pyplot, save_png
from ltkd_jax.tools.runs import ci95
from ltkd_jax.train import group_names

Series = Sequence[Tuple[str, Sequence[dict]]]
GROUP_SHADES = ("#dde8f5", "#f5eedd", "#f5dde0", "#e3f5dd", "#ece0f5")


def _values(records, metric) -> List[float]:
    return [float(r[metric]) for r in records if r.get(metric) is not None]


def _group_metrics(num_groups: int):
    return [(name, f"accuracy_{name}") for name in group_names(num_groups)] + [("all", "accuracy")]


def plot_groups(series: Series, num_groups: int, path, title: str = "") -> Optional[str]:
    """Bars per group (and overall) for every series, side by side, with 95% confidence bars where there are
    several seeds."""
    plt = pyplot()
    series = [(label, records) for label, records in series if records]
    if plt is None or not series:
        return None
    metrics = _group_metrics(num_groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(series) * len(metrics)), 3.8))
    width, lowest = 0.8 / len(series), 100.0
    for i, (label, records) in enumerate(series):
        means = [np.mean(_values(records, m)) if _values(records, m) else np.nan for _, m in metrics]
        errors = [ci95(_values(records, m)) or 0.0 for _, m in metrics]
        ax.bar(np.arange(len(metrics)) + (i - (len(series) - 1) / 2) * width, means, width, yerr=errors,
               capsize=2, label=label, color=f"C{i % 10}")
        lowest = min([lowest, *(m - e for m, e in zip(means, errors) if np.isfinite(m))])
    ax.set_ylim(max(0.0, 10 * np.floor(lowest / 10) - 10), 100)  # the differences, not the bars' common base
    seeds = sorted({len(records) for _, records in series})
    ax.set_xticks(np.arange(len(metrics)), [name for name, _ in metrics])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + (f" (n = {', '.join(map(str, seeds))} seeds; bars: 95% CI)" if max(seeds) > 1
                          else " (one seed)"), fontsize=9)
    ax.legend(fontsize=7, ncol=min(4, len(series)))
    fig.tight_layout()
    save_png(fig, path)
    return str(path)


def plot_per_class(series: Series, class_info: dict, path, title: str = "") -> Optional[str]:
    """Each series' per-class test accuracy (mean over seeds) over the classes ordered by training count, the
    groups shaded behind, class names where the data set has them; the training counts on a second axis."""
    plt = pyplot()
    series = [(label, records) for label, records in series if records]
    if plt is None or not series:
        return None
    counts, group_ids = np.asarray(class_info["train_counts"]), np.asarray(class_info["group_ids"])
    names = class_info.get("class_names")
    order = np.argsort(-counts, kind="stable")
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.3 * len(order)), 4.0))
    for k, name in enumerate(group_names(int(group_ids.max()) + 1)):
        where = np.flatnonzero(group_ids[order] == k)
        if len(where):
            ax.axvspan(where.min() - 0.5, where.max() + 0.5, color=GROUP_SHADES[k % len(GROUP_SHADES)], zorder=0)
            ax.text((where.min() + where.max()) / 2, 101, name, ha="center", fontsize=8)
    for i, (label, records) in enumerate(series):
        per_class = np.array([[np.nan if a is None else a for a in r["per_class_accuracy"]] for r in records],
                             np.float64)
        seen = np.sum(~np.isnan(per_class), 0)  # a class without test images has no accuracy: a gap
        mean = np.where(seen > 0, np.nansum(per_class, 0) / np.maximum(seen, 1), np.nan)
        ax.plot(x, mean[order], marker="o", markersize=3, label=label, color=f"C{i % 10}")
    if names and len(order) <= 40:  # names where they can be read
        ax.set_xticks(x, [names[c] for c in order], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("class, by training count (descending)")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_ylim(0, 108)
    twin = ax.twinx()
    twin.plot(x, counts[order], color="gray", linestyle="--", linewidth=1)
    twin.set_ylabel("training images (dashed)", color="gray")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=min(4, len(series)), loc="lower left")
    fig.tight_layout()
    save_png(fig, path)
    return str(path)


def plot_grid(points, num_groups: int, path, title: str = "") -> Optional[str]:
    """A grid study: per group (and overall), every point of each method's grid as a dot with its 95% confidence
    bar, the methods side by side: how far each method moves with its weights. `points`: [(method label,
    point label, records)]."""
    plt = pyplot()
    points = [p for p in points if p[2]]
    if plt is None or not points:
        return None
    methods = list(dict.fromkeys(method for method, _, _ in points))
    metrics = _group_metrics(num_groups)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6), sharey=False)
    for ax, (name, metric) in zip(np.atleast_1d(axes), metrics):
        for m, method in enumerate(methods):
            mine = [(label, records) for method_, label, records in points if method_ == method]
            for j, (_, records) in enumerate(mine):
                values = _values(records, metric)
                if values:
                    offset = (j - (len(mine) - 1) / 2) * min(0.12, 0.7 / max(len(mine), 1))
                    ax.errorbar(m + offset, np.mean(values), yerr=ci95(values) or 0.0, fmt="o", markersize=3,
                                capsize=2, color=f"C{m % 10}")
        ax.set_xticks(np.arange(len(methods)), methods, rotation=45, ha="right", fontsize=7)
        ax.set_title(name, fontsize=9)
    np.atleast_1d(axes)[0].set_ylabel("test accuracy (%)")
    fig.suptitle(title + " — every grid point, 95% CI over seeds", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
    return str(path)
