"""TinyImageNet-LT (paper Tables III-IV); needs tiny-imagenet-200.zip in tfds's manual dir.

    python -m ltkd_jax.main --config=configs/tiny_imagenet_lt.py:ltkd,resnet32x4-resnet8x4,100 --workdir=runs/tiny
"""
from ltkd_jax import config_lib


def get_config(arg=None):
    return config_lib.build_config("tiny_imagenet", arg)
