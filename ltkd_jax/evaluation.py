"""Host-side accuracy summaries from per-class counts (numpy only)."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from ltkd_jax.data.longtail import shot_masks

GROUP_NAMES = ("head", "medium", "tail")


def group_names(num_groups: int):
    return GROUP_NAMES if num_groups == 3 else tuple(f"group{k}" for k in range(num_groups))


def summarize(counts: Dict[str, np.ndarray], group_ids: np.ndarray, train_counts: np.ndarray) -> Dict:
    """Overall, per-group, per-shot and per-class accuracy (percent) from summed eval counts.

    Group and shot accuracies are over the test examples of those classes (on a balanced test set this is the
    mean of their per-class accuracies). A shot bucket with no class is left out.
    """
    examples = np.asarray(counts["examples"], np.float64)
    correct = np.asarray(counts["correct"], np.float64)
    group_ids = np.asarray(group_ids)
    num_groups = int(group_ids.max()) + 1

    def accuracy(select: Optional[np.ndarray] = None):
        n = examples[select].sum() if select is not None else examples.sum()
        c = correct[select].sum() if select is not None else correct.sum()
        return float(100.0 * c / n) if n else float("nan")

    summary = {"accuracy": accuracy(), "loss": float(counts["loss_sum"]) / max(examples.sum(), 1.0)}
    for k, name in enumerate(group_names(num_groups)):
        summary[f"accuracy_{name}"] = accuracy(group_ids == k)
    for name, select in shot_masks(train_counts).items():  # many / medium / few (> 100, 20-100, < 20 images)
        if select.any():
            key = "medium_shot" if name == "medium" else name  # "medium" is also a group name
            summary[f"accuracy_{key}"] = accuracy(select)
    summary["per_class_accuracy"] = [float(x) for x in 100.0 * correct / np.maximum(examples, 1)]
    if "agree" in counts:
        summary["teacher_agreement"] = float(100.0 * np.sum(counts["agree"]) / examples.sum())
    return summary
