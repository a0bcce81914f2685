"""The training state, the device mesh and the devices a CPU host gets (`use_every_cpu_core`), the global batch they
share (`check_batch_size`), and the frozen teacher loaded from its run directory.

Parallelism: one 1-D `data` mesh over every device of every process. The batch is sharded along it;
parameters and optimiser state are replicated. Batch-norm statistics and LTKD's rebalancing sums are therefore
over the global batch (the step sees global arrays).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ltkd_jax import models
from ltkd_jax.train import checkpoint


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    @classmethod
    def create(cls, variables, tx: optax.GradientTransformation):
        params = variables["params"]
        return cls(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get("batch_stats", {}),
                   opt_state=tx.init(params))

    @property
    def variables(self):
        return {"params": self.params, "batch_stats": self.batch_stats}


@dataclasses.dataclass(frozen=True)
class Teacher:
    model: nn.Module
    variables: dict
    checkpoint: str  # the checkpoint step directory the variables came from (a label for an untrained one)


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("data",))


def check_batch_size(batch_size: int, num_train: Optional[int] = None, name: str = "batch_size") -> None:
    """A global batch the devices can share (and, given `num_train`, that the training set fills once)."""
    devices = jax.device_count()
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"{name}={batch_size!r} is invalid: it must be a positive multiple of the device "
                         f"count {devices}")
    if num_train is not None and batch_size > num_train:
        raise ValueError(f"{name}={batch_size} is larger than the {num_train} training examples")
    if batch_size % devices:
        raise ValueError(f"{name}={batch_size} is not divisible by the device count {devices}; "
                         f"use a multiple of {devices}")


def use_every_cpu_core(*batch_sizes: int) -> None:
    """One XLA CPU device per core (as many as divide every batch size): XLA:CPU runs each convolution on one
    thread, so one device leaves the other cores idle, while devices run their shards of the batch in parallel.
    Call it before JAX starts its backends; it changes nothing where the device count is already set (XLA_FLAGS'
    forced count) and nothing on an accelerator (only the CPU backend's count is set)."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    cores = os.cpu_count() or 1
    count = max(n for n in range(1, cores + 1) if all(size % n == 0 for size in batch_sizes))
    jax.config.update("jax_num_cpu_devices", count)


def init_state(model: nn.Module, tx, image_shape, seed: int) -> TrainState:
    variables = model.init(jax.random.key(seed), jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False)
    return TrainState.create(variables, tx)


def placed_init_state(model: nn.Module, tx, image_shape, seed: int, sharding) -> TrainState:
    """`init_state` as one jitted program whose result is laid out by `sharding` (as flax's imagenet example
    jits its init): run op by op, a model's initialisation compiles and dispatches every initializer and layer
    separately (a demo ResNet: 6.7 against 4.6 CPU-seconds in a fresh process; more on an accelerator)."""
    return jax.jit(init_state, static_argnums=(0, 1, 2), out_shardings=sharding)(model, tx, tuple(image_shape), seed)


def abstract_state(model: nn.Module, tx, image_shape, sharding) -> TrainState:
    return _placed(jax.eval_shape(functools.partial(init_state, model, tx, image_shape), 0), sharding)


def _placed(shapes, sharding):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def load_teacher(model: nn.Module, run_dir: str, image_shape) -> Teacher:
    """The teacher with its variables (params + batch_stats) from the last checkpoint of its run directory,
    replicated over the mesh."""
    target = _placed(models.abstract_variables(model, (1, *image_shape)), NamedSharding(make_mesh(), P()))
    variables, step_dir = checkpoint.restore_variables(run_dir, target)
    return Teacher(model, variables, step_dir)
