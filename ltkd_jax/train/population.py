"""The training program of a population: the students of one teacher (same data, batch and seed, hence the same
batches) step together in one jitted program, and the teacher runs once per batch for all of them.

Members of one architecture and learning rate trained by logit distillation form a *group*: their states are
stacked and stepped with `jax.vmap`, their loss weights passed as arrays and each member's loss picked with
`lax.switch` (under vmap every member evaluates every loss of its group: cheap, logits only), so their
convolutions run as one. Every other member (the CE student, feature methods, a lone architecture) is a
*singleton*, stepped as a solo run steps. A stage trained alone is a population of one singleton.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ltkd_jax import losses
from ltkd_jax.train import step as step_lib


def units(stages: Sequence, batched: bool) -> tuple:
    """Member indices of each unit (a vmapped group or a singleton), in order of first member."""
    groups = {}
    for index, stage in enumerate(stages):
        key = index
        if batched and stage.distill_loss is not None and stage.feature_loss is None:
            try:
                key = (stage.model, stage.learning_rate, stage.num_epochs)
                hash(key)  # flax modules hash (and compare) by their fields
            except TypeError:  # a module with an unhashable field stays alone
                key = index
        groups.setdefault(key, []).append(index)
    return tuple(tuple(members) for members in groups.values())


def unit_states(states, unit_list) -> tuple:
    """The carry of the program from the members' states: each group's stacked along a leading member axis."""
    return tuple(states[unit[0]] if len(unit) == 1 else
                 jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[states[m] for m in unit])
                 for unit in unit_list)


def unstack(unit_outputs, unit_list, num_members: int) -> list:
    """Each member's own state (or metrics), in member order: slices of its group's stacked one."""
    members = [None] * num_members
    for unit, output in zip(unit_list, unit_outputs):
        for position, member in enumerate(unit):
            members[member] = output if len(unit) == 1 else jax.tree_util.tree_map(lambda x, p=position: x[p], output)
    return members


def _member_step(stage, data, tx, steps_per_epoch):
    return functools.partial(step_lib.train_step, objective=stage.objective, model=stage.model, tx=tx,
                             steps_per_epoch=steps_per_epoch, distill_loss=stage.distill_loss,
                             feature_loss=stage.feature_loss, group_ids=data.group_ids if stage.distills else None,
                             num_groups=data.num_groups, class_counts=data.train_counts)


def _group_step(stages, data, tx, steps_per_epoch):
    """`step(stacked_state, teacher_out, batch)` of a group: one vmapped train_step over the members' stacked
    objectives, each member's loss picked by its index."""
    member_losses = [losses.taking_epoch(stage.distill_loss) for stage in stages]  # one signature for lax.switch
    objectives = jax.tree_util.tree_map(lambda *leaves: np.asarray(leaves, np.float32),
                                        *[stage.objective for stage in stages])

    def member(state, objective, index, teacher_out, batch):
        def member_loss(student_logits, teacher_logits, labels, epoch):
            return jax.lax.switch(index, member_losses, student_logits, teacher_logits, labels, epoch)
        member_loss.takes_epoch = True
        return step_lib.train_step(
            state, teacher_out, batch, objective, model=stages[0].model, tx=tx, steps_per_epoch=steps_per_epoch,
            distill_loss=member_loss, group_ids=data.group_ids,
            num_groups=data.num_groups, class_counts=data.train_counts)

    def step(state, teacher_out, batch):
        return jax.vmap(member, in_axes=(0, 0, 0, None, None))(state, objectives, np.arange(len(stages)),
                                                              teacher_out, batch)
    return step


def jitted_train_steps(stages: Sequence, data, feed, txs: Sequence, steps_per_epoch: int, mesh: Mesh,
                       teacher_model=None, schedules: Optional[Sequence[Callable]] = None, batched: bool = True):
    """The population's jitted programs over its unit states (`units(stages, batched)`):
    `one(unit_states, teacher_variables, inputs)` and `many(unit_states, teacher_variables, inputs, num_steps)`
    (num_steps steps in one dispatch with `lax.scan`). Both return the new unit states and one metrics dict
    per member. The batch is sharded over the mesh's data axis, the states replicated and donated; `inputs` is
    whatever the feed yields. Returns `(one, many, unit_list)`."""
    replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    unit_list = units(stages, batched)
    unit_steps = [_member_step(stages[unit[0]], data, txs[unit[0]], steps_per_epoch) if len(unit) == 1
                  else _group_step([stages[m] for m in unit], data, txs[unit[0]], steps_per_epoch)
                  for unit in unit_list]
    distilling = any(stage.distills for stage in stages)
    features = any(stage.feature_loss is not None for stage in stages)

    def one_step(unit_states, teacher_variables, inputs):
        step = jnp.reshape(unit_states[0].step, (-1,))[0]  # every member is at the same step
        batch = jax.lax.with_sharding_constraint(feed.batch(inputs, step), batch_sharding)
        teacher_out = (step_lib.teacher_forward(teacher_model, teacher_variables, batch["image"], features=features)
                       if distilling else None)
        new_states, unit_metrics = zip(*[
            unit_step(state, teacher_out if stages[unit[0]].distills else None, batch)
            for unit, unit_step, state in zip(unit_list, unit_steps, unit_states)])
        member_metrics = unstack(unit_metrics, unit_list, len(stages))
        if schedules is not None:  # logged from the device: no schedule arithmetic on the host
            for metrics, schedule in zip(member_metrics, schedules):
                metrics["learning_rate"] = schedule(step)
        return tuple(new_states), tuple(member_metrics)

    def many_steps(unit_states, teacher_variables, inputs, num_steps):
        def body(carry, _):
            return one_step(carry, teacher_variables, inputs)
        unit_states, metrics = jax.lax.scan(body, unit_states, None, length=num_steps)
        return unit_states, tuple({key: jnp.sum(value, 0) if key.startswith("class_")
                                   else value[-1] if key == "learning_rate" else jnp.mean(value, 0)
                                   for key, value in member.items()} for member in metrics)

    return (jax.jit(one_step, donate_argnums=0, out_shardings=replicated),
            jax.jit(many_steps, donate_argnums=0, static_argnums=3, out_shardings=replicated), unit_list)
