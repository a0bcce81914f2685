"""Training: the state and mesh (state.py), the pure steps and optimiser (step.py), the loop (loop.py),
several students in one program (population.py), checkpoints (checkpoint.py) and the run's metrics (metrics.py)."""

from ltkd_jax.train.loop import NonFiniteLoss, Preempted, Stage, run_population, run_stage
from ltkd_jax.train.population import jitted_train_steps
from ltkd_jax.train.metrics import (CALIBRATION_BINS, GROUP_NAMES, METRICS_FILE, MetricsLog, Progress, calibration,
                                   group_names, read_metrics, summarize)
from ltkd_jax.train.state import (TrainState, Teacher, abstract_state, check_batch_size, init_state, load_teacher,
                                  make_mesh, placed_init_state, use_every_cpu_core)
from ltkd_jax.train.step import Objective, eval_step, prediction_counts, sgd, step_decay_schedule, teacher_forward, train_step
