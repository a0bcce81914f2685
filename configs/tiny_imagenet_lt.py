"""TinyImageNet-LT (paper Tables III-IV); needs tiny-imagenet-200.zip in tfds's manual dir (docs/data.md).

    python -m ltkd_jax.main --config=configs/tiny_imagenet_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=runs/tiny
"""
from configs import cifar100_lt


def get_config(arg=None):
    config = cifar100_lt.get_config(arg)  # the paper trains Tiny-LT with the CIFAR recipe, at 64x64
    config.dataset.name = "tiny_imagenet"
    return config
