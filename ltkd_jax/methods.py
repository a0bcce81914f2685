"""Every method a run may name, in one table: its kind, its label in reports, and its default settings with their
source. No JAX here: configs read it while flags parse; `losses.py` and `distill/` check at import that their
registries hold exactly the `logit` and `feature` rows.

A default is a dotted config field and its value, or a function of the pair ("teacher-student") giving it; the
recipe (`recipes.base`) applies them over the data set's numbers, and a data set's config file may change them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Union

KINDS = ("ce", "logit", "feature")  # plain cross-entropy; a loss of losses.py on logits; a ltkd_jax.distill method

# Pair-dependent defaults, from mdistiller's configs (configs/cifar100/*.yaml, configs/imagenet/*.yaml there).
DKD_BETA = {
    "resnet32x4-resnet8x4": 8.0, "resnet32x4-shufflenet_v1": 8.0, "wrn_40_2-shufflenet_v1": 8.0,
    "resnet50_cifar-mobilenet_v2": 8.0, "vgg13-vgg8": 6.0, "wrn_40_2-wrn_40_1": 6.0, "vgg13-mobilenet_v2": 6.0,
    "resnet110-resnet32": 2.0, "resnet34-resnet18": 0.5, "resnet50-mobilenet_v1": 2.0,
    "demo_resnet_teacher-demo_resnet_student": 8.0,  # assumed (as resnet32x4-resnet8x4)
}
REVIEWKD_WEIGHT = {"resnet34-resnet18": 1.0, "resnet50-mobilenet_v1": 8.0}  # 5.0 for the CIFAR pairs
STUDENT_PREACT_PAIRS = ("resnet34-resnet18", "resnet50-mobilenet_v1")  # ReviewKD reads pre-ReLU features there

Default = Union[float, int, bool, str, Callable[[str], object]]


@dataclasses.dataclass(frozen=True)
class Method:
    kind: str
    label: str  # its row in reports and tables
    defaults: Mapping[str, Default]
    source: str  # where the defaults come from ("assumed" where nothing says)

    def settings(self, pair: str) -> dict:
        """The defaults for `pair`, as {dotted field: value}."""
        return {field: value(pair) if callable(value) else value for field, value in self.defaults.items()}


_LTKD = {"distill.temperature": 4.0, "distill.alpha": 6.0, "distill.beta": 6.0}
METHODS: Mapping[str, Method] = {
    "teacher": Method("ce", "Teacher", {"warmup_epochs": 0}, "plain cross-entropy (the paper's Teacher rows)"),
    "student": Method("ce", "Student", {"warmup_epochs": 0}, "plain cross-entropy (the paper's Student rows)"),
    "kd": Method("logit", "KD", {"distill.temperature": 4.0, "ce_weight": 0.1, "distill_weight": 0.9,
                                 "warmup_epochs": 0}, "mdistiller KD"),
    "dkd": Method("logit", "DKD", {"distill.temperature": 4.0, "distill.alpha": 1.0,
                                   "distill.beta": lambda pair: DKD_BETA.get(pair, 8.0)},
                  "mdistiller DKD (beta per pair; warm-up the recipe's)"),
    "ltkd": Method("logit", "LTKD", _LTKD, "paper Fig. 4 (alpha = beta = 6, resnet32x4 -> resnet8x4, gamma 20); "
                   "T = 4, CE weight 1 and DKD's warm-up assumed"),
    "ltkd_inter_biased": Method("logit", "Inter only, biased", {k: v for k, v in _LTKD.items() if k != "distill.beta"},
                                "as ltkd (paper Table VI)"),
    "ltkd_inter_balanced": Method("logit", "Inter only, balanced (ours)",
                                  {k: v for k, v in _LTKD.items() if k != "distill.beta"},
                                  "as ltkd (paper Tables VI-VII)"),
    "ltkd_intra_uniform": Method("logit", "Intra only, uniform (ours)",
                                 {k: v for k, v in _LTKD.items() if k != "distill.alpha"}, "as ltkd (paper Table VII)"),
    "bkd": Method("logit", "BKD", {"distill.temperature": 2.0, "distill.alpha": 1.0, "distill.beta_cb": 0.9999,
                                   "distill.reweight_epoch": 0, "warmup_epochs": 0},
                  "EricZsy/BalancedKnowledgeDistillation, its CIFAR setting (class weights from epoch 0; on its "
                  "10-class data after epoch 160 of 200: distill.reweight_epoch)"),
    "dive": Method("logit", "DiVE", {"distill.temperature": 3.0, "distill.power": 0.5, "ce_weight": 0.5,
                                     "distill_weight": 0.5, "warmup_epochs": 0, "ce_loss": "balanced_softmax",
                                     "teacher_loss": "balanced_softmax"},
                   "He et al., ICCV 2021: (1 - alpha) balanced-softmax CE + alpha KD, alpha 0.5, a debiased teacher"),
    "kd_ls": Method("logit", "KD + LS", {"distill.temperature": 2.0, "ce_weight": 0.1, "distill_weight": 9.0,
                                         "warmup_epochs": 0},
                    "logit standardisation (Sun et al. 2024) README: base temperature 2, KD weight 9"),
    "ltkd_ls": Method("logit", "LTKD + LS", {**_LTKD, "distill.temperature": 2.0, "distill_weight": 9.0},
                      "LTKD on standardised logits at LS's base temperature 2 and KD weight 9"),
    "fitnet": Method("feature", "FitNet", {"distill_weight": 100.0, "warmup_epochs": 0, "distill.hint_layer": 2},
                     "mdistiller FITNET (FEAT_WEIGHT 100, HINT_LAYER 2)"),
    "reviewkd": Method("feature", "ReviewKD", {
        "distill_weight": lambda pair: REVIEWKD_WEIGHT.get(pair, 5.0),
        "distill.student_preact": lambda pair: pair in STUDENT_PREACT_PAIRS,
        "distill.mid_channel": 0},  # 0: min(512, the student's last width), as mdistiller
        "mdistiller REVIEWKD (weight per pair, pre-ReLU student features on ImageNet)"),
}
assert all(method.kind in KINDS for method in METHODS.values())


def names(kind: str | None = None) -> tuple:
    """The methods of `kind` (all when None), in table order."""
    return tuple(name for name, method in METHODS.items() if kind is None or method.kind == kind)


def label(name: str) -> str:
    return METHODS[name].label


def check_registry(kind: str, registered) -> None:
    """At import of a registry (losses.DISTILL_LOSSES, distill's methods): it must hold exactly the table's rows."""
    if set(registered) != set(names(kind)):
        raise AssertionError(f"the {kind} methods registered ({', '.join(sorted(registered))}) are not those of "
                             f"ltkd_jax/methods.py ({', '.join(sorted(names(kind)))})")
