"""CIFAR-100-LT (paper Tables I-II, ablations VI-VII, Fig. 4).

    python -m ltkd_jax.main --config=configs/cifar100_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=runs/c100

The argument is `method,teacher-student,gamma` (methods: the rows of ltkd_jax/methods.py). Override any field, e.g.
`--config.seed=1`.
"""
from ltkd_jax import recipes


def get_config(arg=None):
    # mdistiller's CIFAR-100 recipe: 240 epochs, batch 64, lr 0.05 x0.1 at 150/180/210, weight decay 5e-4;
    # DKD / LTKD / ReviewKD warm their distillation loss up over 20 epochs.
    config = recipes.base("cifar100", arg or "ltkd,resnet32x4-resnet8x4,100", num_epochs=240, batch_size=64,
                          learning_rate=0.05, lr_decay_epochs=(150, 180, 210), weight_decay=5e-4, warmup_epochs=20)
    if config.student_model in recipes.LOW_LR_STUDENTS and config.method != "teacher":
        config.learning_rate = 0.01
    return config
