"""ImageNet-LT (paper Table V: gamma in {5, 10, 20}); needs ImageNet in tfds's manual dir.

    python -m ltkd_jax.main --config=configs/imagenet_lt.py:ltkd,resnet34-resnet18,10 --workdir=runs/inet

For the literature's OLTR split instead of the exponential profile: --config.dataset.split_file=ImageNet_LT_train.txt
"""
from ltkd_jax import config_lib


def get_config(arg=None):
    return config_lib.build_config("imagenet2012", arg)
