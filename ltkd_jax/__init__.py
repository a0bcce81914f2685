"""ltkd_jax: Long-Tailed Knowledge Distillation (LTKD) in JAX/Flax.

`losses` (KD, DKD, LTKD, the registry), `distill/` (FitNet, ReviewKD), `models/`, `data/` (long-tailed subsets,
input pipelines), `train/` (state, step, loop, checkpoints, metrics), `experiment` (one run from a config),
`main` (the command line), `tools/` (report, sweep, diagnose, bench, demo).
"""

__version__ = "0.1.0"
