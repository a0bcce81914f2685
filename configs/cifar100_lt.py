"""CIFAR-100-LT (paper Tables I-II, ablations VI-VII, Fig. 4).

    python -m ltkd_jax.main --config=configs/cifar100_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=runs/c100

The argument is `method,teacher-student,gamma`; methods: teacher, student, kd, dkd, ltkd, ltkd_inter_biased,
ltkd_inter_balanced, ltkd_intra_uniform, fitnet, reviewkd. Override any field, e.g. `--config.seed=1`.
"""
from ltkd_jax import config_lib


def get_config(arg=None):
    return config_lib.build_config("cifar100", arg)
