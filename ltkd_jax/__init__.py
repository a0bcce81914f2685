"""ltkd_jax: Long-Tailed Knowledge Distillation (LTKD) in JAX/Flax.

Modules:
  losses  -- KD, DKD, LTKD and its ablations; the KL decomposition; the loss registry.
  models  -- teachers and students of the paper (Flax linen), by name.
  data    -- long-tailed subsets and input pipelines.
"""

__version__ = "0.1.0"
