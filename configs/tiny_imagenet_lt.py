"""TinyImageNet-LT (paper Tables III-IV); needs tiny-imagenet-200.zip in tfds's manual dir (docs/data.md).

    python -m ltkd_jax.main --config=configs/tiny_imagenet_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=runs/tiny
"""
from ltkd_jax import recipes


def get_config(arg=None):
    config = recipes.build_config("cifar100", arg)  # the paper trains Tiny-LT with the CIFAR recipe, at 64x64
    config.dataset.name = "tiny_imagenet"
    return config
