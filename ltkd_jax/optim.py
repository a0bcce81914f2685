"""SGD as PyTorch does it, and the step-decay schedule (SPEC §4)."""

from __future__ import annotations

from typing import Sequence

import optax


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
