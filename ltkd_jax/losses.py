"""Distillation losses: KD, DKD, LTKD (and its ablations), BKD, DiVE, logit standardisation, the (balanced)
cross-entropy and the warm-up; the registry of the `logit` methods.

Pure functions of logits, safe under `jax.jit`, no Python loop over classes or batch. `p = softmax(z / T)`;
every scalar loss is a batch mean times `T**2` (mdistiller's "batchmean"). `group_ids` maps classes to groups:
(C,) shared by the batch, or (B, C) per sample (DKD's target / non-target split). All in log space from the
logits (group log-sum-exps), so values and gradients stay finite for logits of magnitude 100 at T = 1.

The KL decomposition (paper §III-A), per sample:
    KL(p_t || p_s) = KL(P_t || P_s) + sum_k P_t,k * KL(p~_t,k || p~_s,k)
with `P` the group probabilities and `p~_k` the distribution within group k. LTKD replaces `P_t` in the first
term by the batch-rebalanced `P^_t` and drops the weights `P_t,k` of the second.
"""

from __future__ import annotations

import inspect
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ltkd_jax import methods

__all__ = ["kd_loss", "dkd_loss", "ltkd_loss", "kd_decomposition", "rebalance_group_log_probs", "teacher_group_sums",
           "cross_entropy", "warmup_factor", "student_objective", "DISTILL_LOSSES", "get_distill_loss",
           "validate_group_ids", "bkd_loss", "dive_loss", "standardize_logits", "log_class_prior"]


# Validation of the class -> group map (host side, before tracing).
def validate_group_ids(group_ids, num_groups: int, num_classes: int | None = None) -> None:
    """Raise one clear ValueError if `group_ids` is not a valid class->group map.

    Checked when `group_ids` is concrete (numpy or a committed jax array); a traced map (e.g. DKD's per-sample
    map built from labels inside jit) cannot be inspected and is trusted.
    """
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
        raise ValueError(f"num_groups={num_groups!r} is invalid: it must be a positive integer")
    if isinstance(group_ids, jax.core.Tracer):
        return
    ids = np.asarray(group_ids)
    if ids.ndim not in (1, 2):
        raise ValueError(f"group_ids has shape {ids.shape}; expected (C,) or (B, C)")
    if num_classes is not None and ids.shape[-1] != num_classes:
        raise ValueError(f"group_ids has {ids.shape[-1]} classes but the logits have {num_classes}; they must agree")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"group_ids must be integers, got dtype {ids.dtype}")
    bad = ids[(ids < 0) | (ids >= num_groups)]
    if bad.size:
        raise ValueError(
            f"group id {int(bad.flat[0])} is outside [0, {num_groups}) (num_groups={num_groups})")
    rows = ids.reshape(-1, ids.shape[-1])
    present = np.zeros((rows.shape[0], num_groups), dtype=bool)
    present[np.arange(rows.shape[0])[:, None], rows] = True
    empty = np.argwhere(~present)
    if empty.size:
        row, group = empty[0]
        where = "" if ids.ndim == 1 else f" in sample {row}"
        raise ValueError(f"group {group} has no class{where}; every group in [0, {num_groups}) needs one")


def _check_logits(student_logits, teacher_logits) -> None:
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(
            f"student logits {student_logits.shape} and teacher logits {teacher_logits.shape} must both be (B, C)")


def _check_temperature(temperature) -> None:
    if not isinstance(temperature, jax.core.Tracer) and not float(temperature) > 0:
        raise ValueError(f"temperature={temperature!r} is invalid: it must be > 0")


# Log-space group algebra.
def _group_masks(group_ids, num_groups: int) -> jax.Array:
    """One-hot membership, (C, G) or (B, C, G), boolean."""
    return jnp.asarray(group_ids)[..., None] == jnp.arange(num_groups)


def _masked_logsumexp(values: jax.Array, mask: jax.Array) -> jax.Array:
    """log sum_{i in group} exp(values_i) for every group: values (B, C), mask (C, G) or (B, C, G) -> (B, G).

    An empty group gives -inf with a zero (not NaN) gradient.
    """
    masked = jnp.where(mask, values[..., None], -jnp.inf)  # (B, C, G)
    peak = jnp.max(masked, axis=-2, keepdims=True)
    peak = jax.lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0.0))
    summed = jnp.sum(jnp.where(mask, jnp.exp(masked - peak), 0.0), axis=-2)
    safe = jnp.where(summed > 0, summed, 1.0)
    return jnp.where(summed > 0, jnp.log(safe) + peak[..., 0, :], -jnp.inf)


def _segment_sum(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Sum of per-class values over each group's classes: (B, C) -> (B, G), a one-hot contraction."""
    return jnp.sum(jnp.where(mask, values[..., None], 0.0), axis=-2)


def _grouped_log_probs(logits: jax.Array, mask: jax.Array, temperature):
    """Group log-probabilities (B, G) and within-group log-probabilities (B, C) of softmax(logits / T)."""
    scaled = logits.astype(jnp.float32) / temperature
    group_lse = _masked_logsumexp(scaled, mask)  # (B, G)
    log_group_probs = group_lse - jax.nn.logsumexp(group_lse, axis=-1, keepdims=True)
    own_group_lse = _segment_sum(group_lse, jnp.swapaxes(mask, -1, -2))  # pick each class's group: (B, C)
    log_within = scaled - own_group_lse
    return log_group_probs, log_within


def _kl_from_logs(log_p: jax.Array, log_q: jax.Array, axis: int = -1) -> jax.Array:
    """KL(p || q) from log-probabilities; terms with p = 0 contribute 0 (and no NaN gradient)."""
    return jnp.sum(_kl_terms(log_p, log_q), axis=axis)


def _kl_terms(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    p = jnp.exp(log_p)
    finite = jnp.isfinite(log_p)
    diff = jnp.where(finite, log_p, 0.0) - jnp.where(finite, log_q, 0.0)
    return jnp.where(finite, p * diff, 0.0)


def rebalance_group_log_probs(log_group_probs: jax.Array) -> jax.Array:
    """LTKD's rebalanced teacher group distribution, in log space (paper §III-B).

    With `S_k = sum_b P[b, k]` over the whole (global) batch and `w_k = mean(S) / S_k`,
    `P^[b, k] = w_k P[b, k] / sum_j w_j P[b, j]`. The weights are a function of the teacher alone and carry no
    gradient. Under `jit` on a sharded batch the sum is over the global array, as the method requires.
    """
    log_sums = jax.nn.logsumexp(log_group_probs, axis=0)  # log S_k, (G,)
    num_groups = log_group_probs.shape[-1]
    log_mean = jax.nn.logsumexp(log_sums) - jnp.log(num_groups)
    log_weights = jax.lax.stop_gradient(log_mean - log_sums)  # log w_k
    scaled = log_group_probs + log_weights
    return scaled - jax.nn.logsumexp(scaled, axis=-1, keepdims=True)


# Public losses.
def kd_decomposition(student_logits, teacher_logits, group_ids, *, num_groups: int, temperature: float):
    """The per-sample terms of KD's KL decomposition.

    Returns `(inter, intra)`: `inter` (B,) is `KL(P_t || P_s)` between the group distributions and `intra`
    (B, G) the un-weighted within-group KLs `KL(p~_t,k || p~_s,k)`. Then, per sample,
    `KL(p_t || p_s) = inter + sum_k P_t,k * intra[:, k]`.
    """
    _check_logits(student_logits, teacher_logits)
    _check_temperature(temperature)
    validate_group_ids(group_ids, num_groups, student_logits.shape[-1])
    _, _, inter, intra = _decompose(student_logits, teacher_logits, group_ids, num_groups, temperature)
    return inter, intra


def _decompose(student_logits, teacher_logits, group_ids, num_groups, temperature):
    """(teacher and student group log-probs (B, G), inter (B,), intra (B, G))."""
    mask = _group_masks(group_ids, num_groups)
    log_group_t, log_within_t = _grouped_log_probs(teacher_logits, mask, temperature)
    log_group_s, log_within_s = _grouped_log_probs(student_logits, mask, temperature)
    intra = _segment_sum(_kl_terms(log_within_t, log_within_s), mask)
    return log_group_t, log_group_s, _kl_from_logs(log_group_t, log_group_s), intra


def kd_loss(student_logits, teacher_logits, *, temperature: float):
    """Hinton's KD: `T**2 * mean_b KL(softmax(z_t/T) || softmax(z_s/T))`."""
    _check_logits(student_logits, teacher_logits)
    _check_temperature(temperature)
    log_p_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    log_p_t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    return temperature**2 * jnp.mean(_kl_from_logs(log_p_t, log_p_s))


def ltkd_loss(student_logits, teacher_logits, group_ids, *, alpha: float, beta: float, temperature: float,
              num_groups: int = 3, rebalance: bool = True, uniform_intra: bool = True):
    """Long-Tailed KD: `T**2 * (alpha * inter + beta * intra)`, batch means.

    inter: `KL(P^_t || P_s)`, the teacher's group distribution rebalanced over the batch (or `KL(P_t || P_s)`
      with `rebalance=False`).
    intra: `sum_k KL(p~_t,k || p~_s,k)` (or weighted by `P_t,k` with `uniform_intra=False`, which with
      `rebalance=False` and `alpha = beta = 1` is exactly plain KD).
    """
    _check_logits(student_logits, teacher_logits)
    _check_temperature(temperature)
    validate_group_ids(group_ids, num_groups, student_logits.shape[-1])
    return _ltkd(student_logits, teacher_logits, group_ids, alpha=alpha, beta=beta, temperature=temperature,
                 num_groups=num_groups, rebalance=rebalance, uniform_intra=uniform_intra)


def _ltkd(student_logits, teacher_logits, group_ids, *, alpha, beta, temperature, num_groups, rebalance,
          uniform_intra):
    log_group_t, log_group_s, inter, intra = _decompose(student_logits, teacher_logits, group_ids, num_groups,
                                                        temperature)
    if rebalance:
        inter = _kl_from_logs(rebalance_group_log_probs(log_group_t), log_group_s)
    weights = 1.0 if uniform_intra else jnp.exp(log_group_t)  # KD's P_t,k, or LTKD's uniform 1
    return temperature**2 * (alpha * jnp.mean(inter) + beta * jnp.mean(jnp.sum(weights * intra, axis=-1)))


def dkd_loss(student_logits, teacher_logits, labels, *, alpha: float, beta: float, temperature: float):
    """Decoupled KD (Zhao et al. 2022): `T**2 * mean_b [alpha * TCKD + beta * NCKD]`.

    It is the two-group case of the decomposition with per-sample groups {target, non-target}, no rebalancing
    and an un-weighted within-group term (the target group has one class, so its within-group KL is zero).
    """
    _check_logits(student_logits, teacher_logits)
    _check_temperature(temperature)
    num_classes = student_logits.shape[-1]
    group_ids = 1 - jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)  # 0: target, 1: non-target
    return _ltkd(student_logits, teacher_logits, group_ids, alpha=alpha, beta=beta, temperature=temperature,
                 num_groups=2, rebalance=False, uniform_intra=True)


def teacher_group_sums(teacher_logits, group_ids, *, num_groups: int = 3, temperature: float = 1.0):
    """The teacher's batch sums of group probabilities before and after rebalancing (the paper's Fig. 3).

    Returns `(before, after)`, each (G,): `sum_b P_t[b, k]` and `sum_b P^_t[b, k]`. Each adds up to the batch
    size. Before per-sample renormalisation the rescaled sums `w_k S_k` are exactly equal; `after` is what the
    student is actually taught, after each sample is renormalised to sum to one.
    """
    validate_group_ids(group_ids, num_groups, teacher_logits.shape[-1])
    mask = _group_masks(group_ids, num_groups)
    log_group_t, _ = _grouped_log_probs(teacher_logits, mask, temperature)
    before = jnp.sum(jnp.exp(log_group_t), axis=0)
    after = jnp.sum(jnp.exp(rebalance_group_log_probs(log_group_t)), axis=0)
    return before, after


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy with integer labels."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1))


# Long-tail-aware KD baselines (not in the paper), each as its authors' code computes it.
def log_class_prior(class_counts) -> jax.Array:
    """log(n_c / N) of the training counts: cross-entropy of `logits + log_class_prior` is the balanced softmax
    (Ren et al. 2020), which is logit adjustment (Menon et al. 2021) with tau = 1."""
    counts = jnp.maximum(jnp.asarray(class_counts, jnp.float32), 1.0)  # an empty class: finite, very unlikely
    return jnp.log(counts) - jnp.log(jnp.sum(counts))


def with_log_prior(logits, class_counts, weight):
    """`logits + weight * log_class_prior(class_counts)`; the logits themselves where the weight is a plain 0."""
    if isinstance(weight, (int, float)) and weight == 0:
        return logits
    if class_counts is None:
        raise ValueError(f"a class-prior weight of {weight} needs the training class counts")
    return logits + weight * log_class_prior(class_counts)


def bkd_loss(student_logits, teacher_logits, class_counts, *, temperature: float, alpha: float = 1.0,
             beta_cb: float = 0.9999, reweighted=True):
    """Balanced KD (Zhang et al. 2021, EricZsy/BalancedKnowledgeDistillation): `alpha * T**2 * KL(q || p_s)`,
    q = w * softmax(t / T) renormalised per sample, w_c = (1 - beta_cb) / (1 - beta_cb**n_c) (class-balanced
    weights of the training counts) normalised to sum to C. Its cross-entropy is the plain one. `reweighted`
    False (a traced bool is fine): uniform weights, i.e. plain KD at T (the authors' deferred schedule, whose
    weights are uniform until their re-weighting epoch: beta_cb = 0 there)."""
    if class_counts is None:
        raise ValueError("bkd needs the training class counts")
    _check_logits(student_logits, teacher_logits)
    _check_temperature(temperature)
    counts = np.maximum(np.asarray(class_counts, np.float64), 1.0)  # an empty class: finite weights
    weights = (1.0 - beta_cb) / (1.0 - np.power(beta_cb, counts))
    log_weights = jnp.asarray(np.log(weights / weights.sum() * len(counts)), jnp.float32)
    log_weights = jnp.where(reweighted, log_weights, 0.0)
    log_q = jax.nn.log_softmax(jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature) + log_weights)
    log_p_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    return alpha * temperature**2 * jnp.mean(_kl_from_logs(log_q, log_p_s))


def dive_loss(student_logits, teacher_logits, *, temperature: float, power: float):
    """DiVE's distillation term (He et al. 2021): `T**2 * KL(q || softmax(s / T))`, q = softmax(t / T)**power
    renormalised (= softmax(power * t / T)). Its (1 - alpha) balanced-softmax CE is the student objective's."""
    _check_logits(student_logits, teacher_logits)
    _check_temperature(temperature)
    log_q = jax.nn.log_softmax(power * teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    log_p_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    return temperature**2 * jnp.mean(_kl_from_logs(log_q, log_p_s))


def standardize_logits(logits) -> jax.Array:
    """Logit standardisation (Sun et al. 2024): each row's z-score, (z - mean) / (std + 1e-7), unbiased std."""
    logits = jnp.asarray(logits, jnp.float32)
    mean = jnp.mean(logits, axis=-1, keepdims=True)
    return (logits - mean) / (jnp.std(logits, axis=-1, ddof=1, keepdims=True) + 1e-7)


def warmup_factor(epoch, warmup_epochs):
    """`min(epoch / warmup_epochs, 1)` with epochs counted from 1 as in mdistiller; no warm-up when 0."""
    if isinstance(warmup_epochs, (int, float)) and warmup_epochs <= 0:
        return jnp.ones_like(jnp.asarray(epoch, jnp.float32))
    return jnp.minimum(jnp.asarray(epoch, jnp.float32) / warmup_epochs, 1.0)


def taking_epoch(loss: Callable) -> Callable:
    """`loss` as `loss(student_logits, teacher_logits, labels, epoch)`. A loss that changes with the 1-based epoch
    (BKD's deferred class weights) is marked `takes_epoch`; the others ignore it."""
    if getattr(loss, "takes_epoch", False):
        return loss

    def with_epoch(student_logits, teacher_logits, labels, epoch):
        del epoch  # the same loss every epoch
        return loss(student_logits, teacher_logits, labels)
    with_epoch.takes_epoch = True
    return with_epoch


def student_objective(student_logits, teacher_logits, labels, *, distill_loss: Callable, ce_weight: float,
                      distill_weight: float = 1.0, epoch=1, warmup_epochs: float = 0, class_counts=None,
                      prior_weight=0.0):
    """`ce_weight * CE + warmup(epoch) * distill_weight * distill`. Returns (total, parts). The CE is of the logits
    plus `prior_weight` times the log class prior of `class_counts` (1: balanced softmax, DiVE's student)."""
    ce = cross_entropy(with_log_prior(student_logits, class_counts, prior_weight), labels)
    distill = taking_epoch(distill_loss)(student_logits, teacher_logits, labels, epoch)
    total = ce_weight * ce + warmup_factor(epoch, warmup_epochs) * distill_weight * distill
    return total, {"ce": ce, "distill": distill}


# ----------------------------------------------------------------------------------------------------------------
# Registry: a config names its distillation loss (a `logit` row of ltkd_jax/methods.py) and gives its
# hyper-parameters; the experiment's constants are bound when the loss is built.
#
# Every entry takes the hyper-parameters and the constants it needs (`group_ids`, `num_groups`, `class_counts`:
# host numpy, fixed for a run) and builds `loss(student_logits, teacher_logits, labels) -> scalar`.
# The LTKD ablations are the rows of the paper's Tables VI-VII:
#   ltkd_inter_biased    inter only, teacher group distribution as is        (Table VI "Biased")
#   ltkd_inter_balanced  inter only, rebalanced                              (Table VI "Ours", VII "Inter only")
#   ltkd_intra_uniform   intra only, uniform group weights                   (Table VII "Intra only")
#   ltkd                 both                                                (Table VII "Inter + Intra")
# Table VII's "Baseline" is plain `kd`. bkd, dive, kd_ls (KD on standardised logits) and ltkd_ls: the long-tail
# and logit-standardisation baselines above.


def _kd_entry(*, temperature):
    return lambda student_logits, teacher_logits, labels: kd_loss(student_logits, teacher_logits,
                                                                  temperature=temperature)


def _dkd_entry(*, alpha, beta, temperature):
    return lambda student_logits, teacher_logits, labels: dkd_loss(student_logits, teacher_logits, labels,
                                                                   alpha=alpha, beta=beta, temperature=temperature)


def _ltkd_entry(*, group_ids, num_groups, alpha, beta, temperature, rebalance=True, uniform_intra=True):
    if group_ids is None:  # built to check hyper-parameters only (experiment.validate): no data yet
        return _needs("the class groups (group_ids)")
    return lambda student_logits, teacher_logits, labels: ltkd_loss(
        student_logits, teacher_logits, group_ids, alpha=alpha, beta=beta, temperature=temperature,
        num_groups=num_groups, rebalance=rebalance, uniform_intra=uniform_intra)


def _inter_only(*, rebalance):
    def entry(*, group_ids, num_groups, alpha, temperature):
        return _ltkd_entry(group_ids=group_ids, num_groups=num_groups, alpha=alpha, beta=0.0,
                           temperature=temperature, rebalance=rebalance)
    return entry


def _intra_only(*, group_ids, num_groups, beta, temperature):
    return _ltkd_entry(group_ids=group_ids, num_groups=num_groups, alpha=0.0, beta=beta, temperature=temperature)


def _needs(what: str):
    def loss(*_):
        raise ValueError(f"this loss was built without {what}; pass them to get_distill_loss")
    return loss


def _bkd_entry(*, class_counts, temperature, alpha=1.0, beta_cb=0.9999, reweight_epoch=0):
    """Class weights from the epoch after `reweight_epoch` (0: from the start, the authors' CIFAR setting)."""
    if isinstance(reweight_epoch, bool) or not isinstance(reweight_epoch, int) or reweight_epoch < 0:
        raise ValueError(f"distill.reweight_epoch={reweight_epoch!r} is invalid: it must be an integer >= 0 (the "
                         "epochs trained before BKD's class weights apply)")
    def loss(student_logits, teacher_logits, labels, epoch):
        del labels
        return bkd_loss(student_logits, teacher_logits, class_counts, temperature=temperature, alpha=alpha,
                        beta_cb=beta_cb, reweighted=epoch > reweight_epoch)
    loss.takes_epoch = True
    return loss


def _dive_entry(*, temperature, power):
    return lambda student_logits, teacher_logits, labels: dive_loss(student_logits, teacher_logits,
                                                                    temperature=temperature, power=power)


def _standardized(entry):
    """The loss `entry` builds, on z-scored logits (logit standardisation: KD or LTKD at a base temperature)."""
    def standardized_entry(**settings):
        loss = entry(**settings)
        return lambda student_logits, teacher_logits, labels: loss(
            standardize_logits(student_logits), standardize_logits(teacher_logits), labels)
    standardized_entry.__signature__ = inspect.signature(entry)  # the constants it needs are the entry's
    return standardized_entry


DISTILL_LOSSES: Mapping[str, Callable[..., Callable]] = {
    "kd": _kd_entry,
    "dkd": _dkd_entry,
    "ltkd": _ltkd_entry,
    "ltkd_inter_biased": _inter_only(rebalance=False),
    "ltkd_inter_balanced": _inter_only(rebalance=True),
    "ltkd_intra_uniform": _intra_only,
    "bkd": _bkd_entry,
    "dive": _dive_entry,
    "kd_ls": _standardized(_kd_entry),
    "ltkd_ls": _standardized(_ltkd_entry),
}
methods.check_registry("logit", DISTILL_LOSSES)
CONSTANTS = ("group_ids", "num_groups", "class_counts")  # what an experiment binds; the rest are hyper-parameters


def get_distill_loss(name: str, *, group_ids=None, num_groups: int = 3, class_counts=None, **hparams) -> Callable:
    """The registered loss `name` with the experiment's constants and its hyper-parameters bound:
    `loss(student_logits, teacher_logits, labels)` (a loss that changes with the epoch, BKD's, also takes the
    1-based epoch: `taking_epoch` gives every loss that form), e.g. `get_distill_loss("ltkd", group_ids=ids, num_groups=3,
    alpha=6, beta=6, temperature=4)`. An unknown name or hyper-parameter raises one ValueError line."""
    if name not in DISTILL_LOSSES:
        raise ValueError(f"unknown distillation loss {name!r}; known: {', '.join(sorted(DISTILL_LOSSES))}")
    entry = DISTILL_LOSSES[name]
    parameters = inspect.signature(entry).parameters
    unknown = sorted(set(hparams) - set(parameters) - set(CONSTANTS))
    if unknown or set(hparams) & set(CONSTANTS):
        bad = unknown[0] if unknown else sorted(set(hparams) & set(CONSTANTS))[0]
        raise ValueError(f"{name} has no hyper-parameter {bad!r}; it takes "
                         f"{', '.join(p for p in parameters if p not in CONSTANTS)}")
    constants = dict(group_ids=group_ids, num_groups=num_groups, class_counts=class_counts)
    missing = [p.name for p in parameters.values()
               if p.default is inspect.Parameter.empty and p.name not in hparams and p.name not in CONSTANTS]
    if missing:
        raise ValueError(f"{name} needs hyper-parameter {missing[0]!r}")
    return entry(**{k: v for k, v in constants.items() if k in parameters}, **hparams)
