"""Fashion-MNIST-LT: the data set this repository can run for real offline (the demo's data).

    python -m ltkd_jax.main --config=configs/fashion_mnist_lt.py:ltkd,demo_resnet_teacher-demo_resnet_student,100 \
        --workdir=runs/fmnist

Defaults are the CPU-sized demo recipe (config_lib._fashion_mnist_defaults): 10 epochs, decay at 60% / 80%,
warm-up 2 epochs, LTKD alpha = beta = 1.
"""
from ltkd_jax import config_lib


def get_config(arg=None):
    return config_lib.build_config("fashion_mnist", arg)
