"""Pure training and evaluation steps, and the optimiser; `jax.jit` is applied where they are called (loop.py).

The teacher is frozen during distillation: `teacher_forward` runs it once per batch (eval-mode batch norm, no
gradient) and its outputs are an argument of `train_step`, so one forward serves every student of a population
(population.py); its variables are an argument of the program, not a constant baked into it.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ltkd_jax import losses
from ltkd_jax.train.metrics import CALIBRATION_BINS
from ltkd_jax.train.state import TrainState


def step_decay_schedule(base_learning_rate: float, steps_per_epoch: int, decay_epochs: Sequence[int],
                        decay_rate: float) -> optax.Schedule:
    """`base * rate**(number of decay epochs already completed)`.

    mdistiller decays when its 1-based epoch exceeds a stage: at epoch 151 for stage 150, i.e. after
    `150 * steps_per_epoch` steps. This is the one place epochs become steps.
    """
    boundaries = {int(epoch) * steps_per_epoch: decay_rate for epoch in sorted(decay_epochs)}
    return optax.piecewise_constant_schedule(base_learning_rate, boundaries)


def sgd(learning_rate: optax.ScalarOrSchedule, *, momentum: float, weight_decay: float) -> optax.GradientTransformation:
    """torch.optim.SGD(momentum, weight_decay), no Nesterov, no dampening.

    PyTorch adds `weight_decay * param` to the gradient of every parameter before the momentum buffer
    (`buf = momentum * buf + grad`, `param -= lr * buf`); optax's `trace` is that buffer.
    """
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.trace(decay=momentum, nesterov=False),
        optax.scale_by_learning_rate(learning_rate),
    )


def _accuracy(logits, labels):
    """Top-1 accuracy in percent."""
    return 100.0 * jnp.mean(jnp.argmax(logits, -1) == labels)


def _class_counts(logits, labels):
    """Per-class example and correct counts (C,), so the host can report head/medium/tail train accuracy."""
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {"class_count": jnp.sum(one_hot, 0), "class_correct": jnp.sum(one_hot * correct[:, None], 0)}


def teacher_forward(teacher_model: nn.Module, teacher_variables, images, *, features: bool):
    """The frozen teacher's `(logits, features or None)` on a batch: eval-mode batch norm, no gradient. Run once
    per batch however many students it teaches."""
    out = teacher_model.apply(teacher_variables, images, train=False, **({"return_features": True} if features else {}))
    out = jax.lax.stop_gradient(out)
    return out if features else (out, None)


@flax.struct.dataclass
class Objective:
    """A run's loss weights: `ce_weight * CE + warmup(epoch) * distill_weight * distill`, the CE of the logits plus
    `ce_prior_weight` times the log class prior (1: the balanced softmax), and the temperature of the logged group
    sums. Its leaves are numbers: a vmapped group of a population stacks its members' (population.py)."""

    ce_weight: float = 1.0
    distill_weight: float = 1.0
    warmup_epochs: float = 0.0
    log_temperature: float = 1.0
    ce_prior_weight: float = 0.0


def train_step(state: TrainState, teacher_out, batch, objective: Objective = Objective(), *, model: nn.Module,
               tx: optax.GradientTransformation, steps_per_epoch: int, distill_loss: Optional[Callable] = None,
               feature_loss: Optional[Callable] = None, group_ids: Optional[np.ndarray] = None, num_groups: int = 3,
               class_counts: Optional[np.ndarray] = None):
    """One SGD step of `objective`.

    * Neither loss given: plain cross-entropy (teachers, the CE student); `teacher_out` is then None.
    * `distill_loss(student_logits, teacher_logits, labels)`: logit distillation (losses.get_distill_loss; one
      that takes the epoch as well gets this step's, `losses.taking_epoch`).
    * `class_counts`: the training counts, for a CE with a class prior (`objective.ce_prior_weight`).
    * `feature_loss(hints, teacher_features)`: feature distillation (FitNet, ReviewKD). `model` is then a
      student wrapper whose `apply(..., with_hints=True)` returns `(logits, hints)`, its connector modules
      trained with it; `teacher_out` holds the teacher's features (`teacher_forward(..., features=True)`).

    Returns the new state and metrics: scalars, per-class counts, and with `group_ids` the teacher's batch
    group-probability sums before and after rebalancing at `objective.log_temperature` (the paper's Fig. 3).
    """
    images, labels = batch["image"], batch["label"]
    epoch = state.step // steps_per_epoch + 1  # 1-based, as mdistiller's warm-up counts
    distilling = distill_loss is not None or feature_loss is not None
    if distilling:
        teacher_logits, teacher_features = teacher_out

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        if feature_loss is not None:
            (logits, hints), updates = model.apply(variables, images, train=True, with_hints=True,
                                                   mutable=["batch_stats"])
        else:
            logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
        if not distilling:
            ce = losses.cross_entropy(losses.with_log_prior(logits, class_counts, objective.ce_prior_weight), labels)
            return ce, (logits, updates, {"ce": ce})
        if feature_loss is not None:
            loss_of_batch = lambda *_: feature_loss(hints, teacher_features)  # noqa: E731
        else:
            loss_of_batch = distill_loss
        total, parts = losses.student_objective(
            logits, teacher_logits, labels, distill_loss=loss_of_batch, ce_weight=objective.ce_weight,
            distill_weight=objective.distill_weight, epoch=epoch, warmup_epochs=objective.warmup_epochs,
            class_counts=class_counts, prior_weight=objective.ce_prior_weight)
        return total, (logits, updates, parts)

    (loss, (logits, updates, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, param_updates),
                              batch_stats=updates["batch_stats"], opt_state=opt_state)
    metrics = {**parts, "loss": loss, "accuracy": _accuracy(logits, labels), **_class_counts(logits, labels)}
    if distilling:
        metrics["teacher_accuracy"] = _accuracy(teacher_logits, labels)
        if group_ids is not None:
            before, after = losses.teacher_group_sums(teacher_logits, group_ids, num_groups=num_groups,
                                                      temperature=objective.log_temperature)
            metrics["teacher_group_sums"] = before
            metrics["teacher_group_sums_rebalanced"] = after
    return new_state, metrics


def prediction_counts(probs, labels, mask, num_classes: int):
    """Per-class sums over one (padded, masked) batch of predicted probabilities, which the host adds up over the
    test set: the test examples, correct predictions and predictions of each class (C,), and per true class and
    confidence bin (C, CALIBRATION_BINS) the examples, correct predictions and summed top-1 confidence, from which
    metrics.calibration gives the expected calibration error of any set of classes. The evaluation and
    tools/diagnose both count with this."""
    mask = mask.astype(jnp.float32)
    predictions, confidence = jnp.argmax(probs, -1), jnp.max(probs, -1)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * mask[:, None]
    correct = (predictions == labels).astype(jnp.float32)
    # Equal-width bins over [0, 1]: bin b holds confidences in [b/B, (b+1)/B) (confidence 1 in the last).
    bins = jax.nn.one_hot(jnp.clip(jnp.floor(confidence * CALIBRATION_BINS).astype(jnp.int32), 0,
                                   CALIBRATION_BINS - 1), CALIBRATION_BINS, dtype=jnp.float32)
    by_bin = functools.partial(jnp.einsum, "nc,nb->cb", precision=jax.lax.Precision.HIGHEST)  # exact f32 sums
    return {
        "examples": jnp.sum(one_hot, 0),
        "correct": jnp.sum(one_hot * correct[:, None], 0),
        "predicted": jnp.sum(jax.nn.one_hot(predictions, num_classes, dtype=jnp.float32) * mask[:, None], 0),
        "bin_examples": by_bin(one_hot, bins),
        "bin_correct": by_bin(one_hot * correct[:, None], bins),
        "bin_confidence": by_bin(one_hot * confidence[:, None], bins),
    }


def eval_step(variables, batch, *, model: nn.Module, num_classes: int, teacher_predictions=None):
    """Per-class counts of one (padded, masked) batch (`prediction_counts`, and the summed test loss); the host
    adds them up over the test set. With the teacher's predictions (one forward shared by a population), also
    where the student agrees with them."""
    logits = model.apply(variables, batch["image"], train=False)
    labels, mask = batch["label"], batch["mask"]
    log_probs = jax.nn.log_softmax(logits, -1)
    counts = prediction_counts(jnp.exp(log_probs), labels, mask, num_classes)
    counts["loss_sum"] = -jnp.sum(jnp.take_along_axis(log_probs, labels[:, None], -1)[:, 0] * mask)
    if teacher_predictions is not None:
        one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * mask[:, None]
        counts["agree"] = jnp.sum(one_hot * (jnp.argmax(logits, -1) == teacher_predictions)[:, None], 0)
    return counts
