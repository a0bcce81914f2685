"""Training: the state and mesh (state.py), the pure steps and optimiser (step.py), the loop (loop.py),
checkpoints (checkpoint.py) and the run's metrics (metrics.py)."""

from ltkd_jax.train.loop import NonFiniteLoss, Preempted, Stage, jitted_train_steps, run_stage
from ltkd_jax.train.metrics import GROUP_NAMES, MetricsLog, Progress, group_names, read_metrics, summarize
from ltkd_jax.train.state import (TrainState, Teacher, abstract_state, check_batch_size, init_state, load_teacher,
                                  make_mesh)
from ltkd_jax.train.step import eval_step, sgd, step_decay_schedule, train_step
